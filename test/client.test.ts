/**
 * The typed client on its own, against a scripted socket: what it keeps, what it sends again, what it drops.
 */
import t from 'tap';
import { RelayClient, type WebSocketLike } from '../src/client.js';
import { ChatCipher } from '../src/e2e.js';
import { bytesSource, chunkDataBytes, FileTransfers } from '../src/file-transfer.js';
import { FILE_KIND, type ServerFrame } from '../src/protocol.js';

/** A socket whose server side the test plays: frames the client wrote are in `written`. */
class ScriptedSocket implements WebSocketLike {
  readyState = 0;
  readonly written: Record<string, unknown>[] = [];
  onopen: ((ev: unknown) => void) | null = null;
  onmessage: ((ev: { data: unknown }) => void) | null = null;
  onclose: ((ev: { code: number; reason: string }) => void) | null = null;
  onerror: ((ev: unknown) => void) | null = null;
  send(data: string): void {
    this.written.push(JSON.parse(data) as Record<string, unknown>);
  }
  close(): void {
    this.readyState = 3;
  }
  open(): void {
    this.readyState = 1;
    this.onopen?.({});
  }
  serve(frame: ServerFrame | Record<string, unknown>): void {
    this.onmessage?.({ data: JSON.stringify(frame) });
  }
}

const limits = {
  maxPayloadBytes: 65536,
  maxMessageBytes: 4096,
  rateLimitPerSec: 1000,
  rateLimitBurst: 1000,
  maxInterests: 5,
  maxInterestLength: 32,
  bufferMessages: 500,
  maxChunkBytes: 64_000,
  maxFileBytes: 10 * 1024 * 1024,
  fileRateBytesPerSec: 4 * 1024 * 1024,
  fileRateBurstBytes: 1024 * 1024,
  fileWindowChunks: 8,
};
const welcome = (resumed: boolean, chat: string | null) => ({
  type: 'welcome',
  id: 'me',
  token: 't',
  resumed,
  resumeWindowMs: 120000,
  limits,
  state: chat ? 'chatting' : 'idle',
  chat: chat
    ? {
        id: chat,
        partner: 'here',
        interests: [],
        initiator: true,
        via: 'random',
        sentSeq: 0,
        deliveredSeq: 0,
        readSeq: 0,
      }
    : null,
});

async function connected(): Promise<{ client: RelayClient; sockets: ScriptedSocket[] }> {
  const sockets: ScriptedSocket[] = [];
  const client = new RelayClient({
    url: 'ws://test',
    createSocket: () => {
      const s = new ScriptedSocket();
      sockets.push(s);
      return s;
    },
  });
  const ready = client.connect();
  sockets[0]?.open();
  sockets[0]?.serve(welcome(false, null));
  await ready;
  sockets[0]?.serve({ type: 'matched', chat: 'c1', interests: [], initiator: true, via: 'random' });
  return { client, sockets };
}

t.test('a message that comes twice under two seqs (after a rebuild) is shown once and acked', async (t) => {
  const { client, sockets } = await connected();
  const shown: string[] = [];
  client.on('msg', (m) => shown.push(m.body));
  const s = sockets[0] as ScriptedSocket;
  s.serve({ type: 'msg', seq: 1, id: 'x', body: 'hello', ts: 1 });
  s.serve({ type: 'msg', seq: 2, id: 'x', body: 'hello', ts: 1 });
  s.serve({ type: 'msg', seq: 3, id: 'y', body: 'next', ts: 2 });
  await new Promise((r) => setTimeout(r, 0));
  t.same(shown, ['hello', 'next']);
  t.equal(client.lastSeq, 3);
  t.same(s.written.filter((f) => f.type === 'ack').at(-1), { type: 'ack', seq: 3 }, 'everything is acked');
});

t.test(
  'kept until delivered, sent again on resend; written again after a new socket replaces an open one',
  async (t) => {
    const { client, sockets } = await connected();
    const s = sockets[0] as ScriptedSocket;
    const a = client.sendMessage('a');
    const b = client.sendMessage('b');
    s.serve({ type: 'sent', id: a, seq: 1 });
    t.equal(client.unconfirmed, 1);
    t.equal(client.undelivered, 1);
    s.serve({ type: 'resend', after: 0 });
    t.same(
      s.written.filter((f) => f.type === 'msg').map((f) => f.id),
      [a, b, a, b],
      'the undelivered one first, then the unconfirmed one',
    );
    // The re-sent `a` is stored again (its seq again) and delivered; `b` is still on its way.
    s.serve({ type: 'sent', id: a, seq: 1 });
    s.serve({ type: 'delivered', seq: 1 });
    t.equal(client.undelivered, 0);
    // A drain: the page reconnects while the old socket is still open; what the old one had in flight goes again.
    const next = client.connect();
    const s2 = sockets[1] as ScriptedSocket;
    s2.open();
    s2.serve(welcome(true, 'c1'));
    await next;
    t.same(
      s2.written.filter((f) => f.type === 'msg').map((f) => f.id),
      [b],
      'the unconfirmed message is written to the new socket',
    );
  },
);

t.test('unavailable pauses the outbox and sends again from the refused message, in order', async (t) => {
  const { client, sockets } = await connected();
  const s = sockets[0] as ScriptedSocket;
  const [one, two, three] = [client.sendMessage('1'), client.sendMessage('2'), client.sendMessage('3')];
  s.serve({ type: 'sent', id: one, seq: 1 });
  s.serve({ type: 'error', code: 'unavailable', message: 'x', id: two, retryAfterMs: 5 });
  await new Promise((r) => setTimeout(r, 30));
  t.same(
    s.written.filter((f) => f.type === 'msg').map((f) => f.id),
    [one, two, three, two, three],
  );
});

t.test("a resumed welcome's deliveredSeq releases what the partner got while the client was away", async (t) => {
  const { client, sockets } = await connected();
  const first = sockets[0] as ScriptedSocket;
  client.sendMessage('one');
  client.sendMessage('two');
  const ids = first.written.filter((f) => f.type === 'msg').map((f) => f.id as string);
  first.serve({ type: 'sent', id: ids[0] as string, seq: 1 });
  first.serve({ type: 'sent', id: ids[1] as string, seq: 2 });
  t.equal(client.undelivered, 2, 'both kept until delivered');
  // The link drops; meanwhile the partner acknowledges the first. That `delivered` went to no socket.
  const again = client.connect();
  const second = sockets[1] as ScriptedSocket;
  second.open();
  const w = welcome(true, 'c1');
  second.serve({ ...w, chat: { ...(w.chat as object), sentSeq: 2, deliveredSeq: 1 } });
  await again;
  t.equal(client.undelivered, 1, 'the welcome said seq 1 arrived: only seq 2 is still kept');
  second.serve({ type: 'resend', after: 1 });
  t.same(
    second.written.filter((f) => f.type === 'msg').map((f) => f.body),
    ['two'],
    'a resend sends only what was not delivered',
  );
});

t.test(
  'a file whose last parts are confirmed again after a resume, under seqs already delivered, completes',
  async (t) => {
    const { client, sockets } = await connected();
    const [mine, theirs] = [await ChatCipher.create(4096), await ChatCipher.create(4096)];
    t.ok(await mine.accept(theirs.offer(), 'c1'));
    t.ok(await theirs.accept(mine.offer(), 'c1'));
    const done: string[] = [];
    const files = new FileTransfers(client, mine, { complete: (tr) => done.push(tr.state) });
    const size = 2 * chunkDataBytes(limits.maxChunkBytes) + 10;
    const tr = await files.send({ name: 'x', type: 'y', size }, bytesSource(new Uint8Array(size)));
    const s = sockets[0] as ScriptedSocket;
    const parts = () => s.written.filter((f) => f.type === 'msg' && f.kind === FILE_KIND);
    while (parts().length < 4) await new Promise((r) => setTimeout(r, 5));
    const [offer, c1, c2, c3] = parts().map((f) => f.id as string) as [string, string, string, string];
    const ids = [offer, c1, c2, c3];
    // The offer and the first chunk are confirmed; the socket dies before the other two are.
    s.serve({ type: 'sent', id: offer, seq: 1 });
    s.serve({ type: 'sent', id: c1, seq: 2 });
    s.close();
    s.onclose?.({ code: 1006, reason: '' });
    const again = client.connect();
    const s2 = sockets[1] as ScriptedSocket;
    s2.open();
    // Meanwhile the partner received and acknowledged all four: the welcome says so.
    const w = welcome(true, 'c1');
    s2.serve({ ...w, chat: { ...(w.chat as object), deliveredSeq: 4 } });
    await again;
    t.same(
      s2.written.filter((f) => f.type === 'msg').map((f) => f.id),
      ids.slice(2),
      'the two unconfirmed parts are written again',
    );
    s2.serve({ type: 'sent', id: c2, seq: 3 });
    s2.serve({ type: 'sent', id: c3, seq: 4 });
    t.equal(tr.state, 'complete', 'no later delivered mark is needed');
    t.same(done, ['complete']);
  },
);
