import t from 'tap';
import WebSocket from 'ws';
import { startTestServer } from './fixtures/server.js';

const CLIENTS = 2000;

/** Lean clients (no per-frame bookkeeping beyond what the test checks) so 2,000 fit in one test process. */
interface LeanClient {
  ws: WebSocket;
  id: Promise<string>;
  matched: Promise<string>;
  seen: { matched: number };
}

function openClient(url: string): Promise<LeanClient> {
  return new Promise((resolve, reject) => {
    const ws = new WebSocket(url);
    let onId: (id: string) => void = () => {};
    let onMatched: (chat: string) => void = () => {};
    const id = new Promise<string>((r) => (onId = r));
    const matched = new Promise<string>((r) => (onMatched = r));
    const seen = { matched: 0 };
    ws.on('message', (data) => {
      const f = JSON.parse(data.toString()) as { type: string; id?: string; chat?: string };
      if (f.type === 'welcome' && f.id) onId(f.id);
      if (f.type === 'matched' && f.chat) {
        seen.matched++;
        onMatched(f.chat);
      }
    });
    ws.once('open', () => {
      ws.send('{"type":"hello","v":1}');
      resolve({ ws, id, matched, seen });
    });
    ws.once('error', reject);
  });
}

t.test(`${CLIENTS} simultaneous finds pair into exactly ${CLIENTS / 2} chats`, async (t) => {
  const srv = await startTestServer({ maxConnections: 10_000 });
  const clients: LeanClient[] = [];
  t.teardown(() => {
    for (const c of clients) c.ws.terminate();
    srv.close();
  });
  for (let i = 0; i < CLIENTS; i += 250) {
    const batch = await Promise.all(Array.from({ length: Math.min(250, CLIENTS - i) }, () => openClient(srv.url)));
    clients.push(...batch);
  }
  const ids = await Promise.all(clients.map((c) => c.id));
  t.equal(new Set(ids).size, CLIENTS, 'every client has its own identity');

  // Everyone at once: the frames land in the server back to back.
  for (const c of clients) c.ws.send('{"type":"find"}');
  const chats = await Promise.all(clients.map((c) => c.matched));

  const members = new Map<string, string[]>();
  chats.forEach((chat, i) => {
    const list = members.get(chat) ?? [];
    list.push(ids[i] as string);
    members.set(chat, list);
  });
  t.equal(members.size, CLIENTS / 2, 'exactly half as many chats as clients');
  t.ok(
    [...members.values()].every((m) => m.length === 2 && new Set(m).size === 2),
    'every chat has exactly two distinct members',
  );
  // Who was matched with whom, as the server holds it: each member's chat partner is the other member.
  const relay = srv.server.relay;
  const agree = [...members.entries()].every(([chat, [x, y]]) => {
    const sx = relay.sessions.get(x as string);
    const sy = relay.sessions.get(y as string);
    return sx?.chat?.id === chat && sy?.chat?.id === chat && sx.chat.partner === sy.id && sy.chat.partner === sx.id;
  });
  t.ok(agree, "the server pairs each client with the one its matched frame's chat names, and no one else");
  t.equal(relay.stats().queueLength, 0, 'nobody is left alone in the queue');
  t.ok(
    clients.every((c) => c.seen.matched === 1),
    'nobody is matched twice',
  );
  t.equal(srv.server.relay.stats().activeChats, CLIENTS / 2);
});
