/**
 * Files end to end over real sockets against real relays (issue 14): whole and unreadable to the relay, flow
 * control, cancel either way, drops and resumes, refusal of tampered, reordered, replayed and oversize
 * transfers, the server's chunk limits and byte budget, and a transfer across instances on Redis.
 */
import t from 'tap';
import { ConfigError, loadConfig } from '../src/config.js';
import { bytesSource, chunkDataBytes, FileTooLargeError } from '../src/file-transfer.js';
import { FILE_KIND } from '../src/protocol.js';
import { until } from './fixtures/chatters.js';
import { startTestCluster } from './fixtures/cluster.js';
import { fakeFile, pairedPeers, sha256 } from './fixtures/file-peers.js';
import { startTestServer } from './fixtures/server.js';
import { pairedClients, sleep } from './fixtures/ws-client.js';

const MB = 1024 * 1024;
const DEFAULTS = loadConfig({});
const fileMessages = (wire: string[]) => wire.filter((f) => f.includes(`"kind":"${FILE_KIND}"`));

t.test('a 5 MB file arrives whole (same SHA-256), and only ciphertext crosses the wire', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await pairedPeers(srv.url);
  const file = fakeFile(5 * MB);
  const sent = await a.files.send(
    { name: 'holiday-secret.png', type: 'image/png', size: file.length },
    bytesSource(file),
  );
  const [mine, theirs] = await Promise.all([a.outcome(sent.id), b.outcome(sent.id)]);
  t.equal(mine.state, 'complete', 'the sender sees it delivered in full');
  t.equal(theirs.state, 'complete', 'the receiver has it all');
  const got = b.completed.find((c) => c.t.id === sent.id)?.parts ?? [];
  t.equal(sha256(got), sha256([file]), 'same SHA-256');
  t.same(b.offers[0]?.meta, { name: 'holiday-secret.png', type: 'image/png', size: file.length }, 'name, type, size');
  const chunks = Math.ceil(file.length / chunkDataBytes(DEFAULTS.maxChunkBytes));
  t.equal(sent.chunks, chunks);
  t.equal(fileMessages(b.wire).filter((f) => f.startsWith('{"type":"msg"')).length, chunks + 1, 'offer + chunks');
  const wire = [...a.wire, ...b.wire].join('\n');
  for (const secret of [
    'holiday-secret',
    'image/png',
    'iVBORw0KGgo',
    Buffer.from(file.subarray(0, 12)).toString('base64url'),
  ])
    t.notOk(wire.includes(secret), `"${secret}" never crosses the wire`);
  await until('the relay to release every chunk', () => srv.server.relay.buffer.messages === 0);
  t.equal(a.client.unconfirmed + a.client.undelivered, 0, 'the sender keeps nothing');
});

t.test('flow control: a receiver that does not acknowledge holds the sender at its window', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await pairedPeers(srv.url, srv.url, { autoAck: false });
  b.client.send({ type: 'ack', seq: b.client.lastSeq });
  const window = DEFAULTS.fileWindowChunks;
  const file = fakeFile(2 * MB);
  const sent = await a.files.send(
    { name: 'a.bin', type: 'application/octet-stream', size: file.length },
    bytesSource(file),
  );
  const chunkMsgs = () => fileMessages(b.wire).filter((f) => f.startsWith('{"type":"msg"')).length - 1;
  await until('a window of chunks', () => chunkMsgs() === window);
  await sleep(300);
  t.equal(chunkMsgs(), window, `no more than ${window} chunks while none is acknowledged`);
  t.ok(
    srv.server.relay.buffer.messages <= window + 1,
    `the relay buffers the window only (${srv.server.relay.buffer.messages})`,
  );
  t.ok(
    srv.server.relay.buffer.bytes <= (window + 1) * (DEFAULTS.maxChunkBytes + 256),
    `${srv.server.relay.buffer.bytes} bytes buffered`,
  );
  b.client.on('msg', () => queueMicrotask(() => b.client.send({ type: 'ack', seq: b.client.lastSeq })));
  b.client.send({ type: 'ack', seq: b.client.lastSeq });
  t.equal((await b.outcome(sent.id)).state, 'complete', 'acknowledging lets the rest through');
  t.equal(sha256(b.completed[0]?.parts ?? []), sha256([file]));
});

t.test('either side cancels: both are told, and nothing of the transfer stays anywhere', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await pairedPeers(srv.url);
  const file = fakeFile(3 * MB);
  const meta = { name: 'x.bin', type: 'application/octet-stream', size: file.length };
  const one = await a.files.send(meta, bytesSource(file));
  await until('some progress', () => one.doneChunks >= 3);
  a.files.cancel(one.id);
  t.equal((await a.outcome(one.id)).state, 'cancelled');
  const seen = await b.outcome(one.id);
  t.equal(seen.state, 'cancelled', 'the receiver is told the sender cancelled');
  t.equal(seen.endedBy, 'partner');
  t.equal(b.completed.length, 0, 'nothing is shown');

  const two = await a.files.send(meta, bytesSource(file));
  await until('the offer', () => b.offers.some((o) => o.id === two.id));
  await until('some chunks', () => two.doneChunks >= 2);
  b.files.cancel(two.id);
  const back = await a.outcome(two.id);
  t.equal(back.state, 'declined', 'the sender is told the receiver declined');
  t.equal(back.endedBy, 'partner');
  t.ok(two.doneChunks < two.chunks, `it stopped early (${two.doneChunks} of ${two.chunks})`);
  await until('the relay to hold nothing', () => srv.server.relay.buffer.messages === 0);
  await until('the sender to keep nothing', () => a.client.unconfirmed + a.client.undelivered === 0);
  t.pass('relay buffer and sender outbox are empty');

  // The chat goes on afterwards, with text and a new transfer.
  const small = fakeFile(10_000);
  const three = await a.files.send({ ...meta, size: small.length }, bytesSource(small));
  t.equal((await b.outcome(three.id)).state, 'complete', 'a later transfer still works');
});

t.test('the chat ends mid-transfer: the relay keeps nothing of it, and the sender sends nothing more', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await pairedPeers(srv.url, srv.url, { autoAck: false });
  const file = fakeFile(2 * MB);
  const sent = await a.files.send(
    { name: 'a.bin', type: 'application/octet-stream', size: file.length },
    bytesSource(file),
  );
  await until('a window held in the relay', () => srv.server.relay.buffer.messages >= DEFAULTS.fileWindowChunks);
  const parts = () => fileMessages(a.wire).filter((f) => f.startsWith('{"type":"msg"')).length;
  b.client.send({ type: 'leave' });
  await a.client.next('ended');
  a.files.dispose();
  t.equal(sent.state, 'cancelled', 'the transfer stopped with the chat');
  const after = parts();
  await until(
    'the relay to drop the lane',
    () => srv.server.relay.buffer.messages === 0 && srv.server.relay.buffer.bytes === 0,
  );
  t.pass('no byte of it is buffered any more');
  b.client.send({ type: 'ack', seq: b.client.lastSeq });
  await sleep(200);
  t.equal(parts(), after, 'and the sender sent no further part');
});

t.test('a network cut in the middle of a 5 MB transfer, on either side: it completes after the resume', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await pairedPeers(srv.url);
  const file = fakeFile(5 * MB);
  const sent = await a.files.send(
    { name: 'x.bin', type: 'application/octet-stream', size: file.length },
    bytesSource(file),
  );
  await until('a third of it', () => sent.doneChunks >= sent.chunks / 3);
  b.client.drop();
  await sleep(200);
  await b.client.connect();
  await until('two thirds', () => sent.doneChunks >= (2 * sent.chunks) / 3);
  a.client.drop();
  await sleep(200);
  await a.client.connect();
  t.equal((await b.outcome(sent.id)).state, 'complete');
  t.equal(sha256(b.completed[0]?.parts ?? []), sha256([file]), 'same SHA-256 after two cuts');
  t.equal((await a.outcome(sent.id)).state, 'complete');
});

t.test('tampered, reordered, replayed and oversize transfers are refused, never shown', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await pairedPeers(srv.url);
  const file = fakeFile(300_000);
  const meta = { name: 'x.bin', type: 'application/octet-stream', size: file.length };
  const realSend = a.client.sendMessage.bind(a.client);
  const intercept = (mangle: (body: string, n: number) => string[] | string) => {
    let n = 0;
    a.client.sendMessage = (body: string, kind?: string) => {
      if (kind !== FILE_KIND) return realSend(body, kind);
      const out = mangle(body, n++);
      let id = '';
      for (const b of Array.isArray(out) ? out : [out]) id = realSend(b, kind);
      return id;
    };
  };

  // One byte of the third chunk's ciphertext flipped on the way.
  intercept((body, n) => (n === 3 ? `${body.slice(0, 100)}${body[100] === 'A' ? 'B' : 'A'}${body.slice(101)}` : body));
  const tampered = await a.files.send(meta, bytesSource(file));
  t.equal((await b.outcome(tampered.id)).state, 'broken', 'a tampered chunk breaks the transfer');
  // The sender may have seen every chunk delivered before the receiver's verdict came: it is told all the same.
  await until('the sender to hear', () => a.ended.some((e) => e.id === tampered.id));
  t.equal(tampered.state, 'broken', 'and the sender is told');

  // Chunks 2 and 3 swapped.
  let held = '';
  intercept((body, n) => {
    if (n === 2) {
      held = body;
      return [];
    }
    return n === 3 ? [body, held] : body;
  });
  const reordered = await a.files.send(meta, bytesSource(file));
  t.equal((await b.outcome(reordered.id)).state, 'broken', 'a reordered transfer is refused');

  // A whole transfer replayed after it completed: ignored.
  const bodies: string[] = [];
  intercept((body) => {
    bodies.push(body);
    return body;
  });
  const clean = await a.files.send(meta, bytesSource(file));
  t.equal((await b.outcome(clean.id)).state, 'complete');
  const offers = b.offers.length;
  a.client.sendMessage = realSend;
  for (const body of bodies) a.client.sendMessage(body, FILE_KIND);
  a.client.sendMessage('replay done', 'text');
  await b.client.next('msg', (f) => f.body === 'replay done');
  await b.files.settled();
  t.equal(b.offers.length, offers, 'a replayed transfer offers nothing');
  t.equal(b.completed.filter((c) => c.t.id === clean.id).length, 1, 'and completes nothing again');
  t.equal(b.completed.length, 1, 'only the clean transfer was ever shown');

  // Over MAX_FILE_BYTES: the sender refuses at once, with a clear error.
  const big = { size: DEFAULTS.maxFileBytes + 1, read: async () => new Uint8Array(0) };
  const refusal = await a.files.send({ ...meta, size: big.size }, big).catch((err: unknown) => err);
  t.ok(refusal instanceof FileTooLargeError, 'FileTooLargeError');
  t.equal(
    (refusal as Error).message,
    'This file is 10,485,761 bytes; the most one transfer may carry is 10,485,760 bytes.',
    'a clear message',
  );
  t.equal(
    new FileTooLargeError(12 * MB, 10 * MB).message,
    'This file is 12.0 MB; the most one transfer may carry is 10.0 MB.',
  );
  // A sender that ignores the limit: the receiver refuses the offer and takes nothing.
  const limits = a.client.limits;
  if (!limits) throw new Error('no limits');
  a.client.limits = { ...limits, maxFileBytes: limits.maxFileBytes * 2 };
  const forged = await a.files.send(
    { ...meta, size: big.size },
    { size: big.size, read: async (_o, n) => new Uint8Array(n) },
  );
  t.equal((await b.outcome(forged.id)).state, 'too_large', 'the receiver refuses an offer over its limit');
  t.equal((await a.outcome(forged.id)).state, 'too_large', 'and the sender is told why');
  a.client.limits = limits;
});

t.test('the relay enforces the chunk size and a byte budget apart from the message rate', async (t) => {
  const srv = await startTestServer({
    maxChunkBytes: 20_000,
    maxPayloadBytes: 24_000,
    fileRatePerSec: 40_000,
    fileRateBurst: 40_000,
    fileWindowChunks: 4,
    rateLimitPerSec: 5,
    rateLimitBurst: 8,
  });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: 'big', body: 'x'.repeat(20_001), kind: FILE_KIND });
  const tooBig = await a.next('error');
  t.equal(tooBig.code, 'message_too_long');
  t.match(tooBig.message, /File chunk body is larger than 20000 bytes/);
  a.send({ type: 'msg', id: 'long', body: 'x'.repeat(5000) });
  t.equal((await a.next('error')).code, 'message_too_long', 'text keeps MAX_MESSAGE_BYTES');
  // Two 19,999-byte chunks fit the 40,000-byte burst; the third is refused for rate and names itself.
  for (const id of ['c1', 'c2', 'c3']) a.send({ type: 'msg', id, body: 'y'.repeat(19_999), kind: FILE_KIND });
  await until('c2 sent', () => a.all('sent').some((f) => f.id === 'c2'));
  await until('c3 refused', () => a.all('error').some((f) => f.id === 'c3'));
  const refused = a.all('error').find((f) => f.id === 'c3') ?? { code: '', retryAfterMs: 0 };
  t.equal(refused.code, 'rate_limited');
  t.ok(
    (refused.retryAfterMs ?? 0) > 0 && (refused.retryAfterMs ?? 0) <= 1000,
    `retry after ${refused.retryAfterMs} ms`,
  );
  // c3 holds later messages back (order) until it comes again, after its hint.
  await sleep(refused.retryAfterMs ?? 1000);
  a.send({ type: 'msg', id: 'c3', body: 'y'.repeat(19_999), kind: FILE_KIND });
  await until('c3 sent', () => a.all('sent').some((f) => f.id === 'c3'));
  // The message rate is untouched by the chunks: of a burst of 8 frames, the two refused ones above took 2, and
  // five texts go through at once (had the three chunks taken frames too, two of these would be refused).
  for (const id of ['t1', 't2', 't3', 't4', 't5']) a.send({ type: 'msg', id, body: 'hi' });
  await until('t5 sent', () => a.all('sent').some((f) => f.id === 't5'));
  t.equal(a.all('error').filter((e) => e.id?.startsWith('t')).length, 0, 'no text was refused');
  // Even a tiny chunk costs 4 KiB: ten of them in a row exceed the 40,000-byte burst.
  for (let i = 0; i < 10; i++) a.send({ type: 'msg', id: `s${i}`, body: 'z', kind: FILE_KIND });
  await until('a tiny chunk refused', () =>
    a.all('error').some((f) => f.code === 'rate_limited' && (f.id ?? '').startsWith('s')),
  );
  t.pass('tiny chunks are not free');
  t.ok(b.all('msg').length >= 7, 'the partner got what was admitted');
  a.close();
  b.close();
});

t.test('the file limits are fitted to the frame limit, the byte burst and the buffer lane', async (t) => {
  const d = loadConfig({});
  t.equal(d.maxChunkBytes, 64_000, 'defaults are kept as they are');
  t.equal(d.fileWindowChunks, 8);
  // A configuration from before files (16 KiB frames) still starts, with chunks that fit its frames.
  const old = loadConfig({ MAX_PAYLOAD_BYTES: '16384' });
  t.equal(old.maxChunkBytes, 16_384 - 256, 'a chunk fits one frame with its JSON');
  t.ok(chunkDataBytes(old.maxChunkBytes) >= 11 * 1024, 'and still carries 11 KiB of data');
  t.equal(loadConfig({ FILE_RATE_BURST_BYTES: '20000' }).maxChunkBytes, 20_000, 'a chunk fits the byte burst');
  // The window fits half of the recipient's lane, in bytes and in messages.
  t.equal(loadConfig({ BUFFER_SESSION_MAX_BYTES: String(256 * 1024) }).fileWindowChunks, 2);
  t.equal(loadConfig({ BUFFER_SESSION_MAX_MESSAGES: '5' }).fileWindowChunks, 2);
  t.equal(loadConfig({ BUFFER_SESSION_MAX_MESSAGES: '1' }).fileWindowChunks, 1, 'never below one');
  t.throws(() => loadConfig({ FILE_WINDOW_CHUNKS: '0' }), ConfigError, 'out of range is still an error');
});

t.test('across instances on Redis: a transfer crosses, and survives the receiver moving instance midway', async (t) => {
  const cluster = await startTestCluster('redis', { nodes: 3 });
  t.teardown(cluster.close);
  const [n0, n1, n2] = cluster.nodes.map((n) => n.url) as [string, string, string];
  let bAt = n1;
  const [a, b] = await pairedPeers(n0, () => bAt);
  const file = fakeFile(5 * MB);
  const sent = await a.files.send(
    { name: 'x.bin', type: 'application/octet-stream', size: file.length },
    bytesSource(file),
  );
  await until('half of it', () => sent.doneChunks >= sent.chunks / 2, 30_000);
  bAt = n2;
  b.client.drop();
  await b.client.connect();
  t.equal((await b.outcome(sent.id)).state, 'complete');
  t.equal(sha256(b.completed[0]?.parts ?? []), sha256([file]), 'same SHA-256 across three instances');
  t.equal((await a.outcome(sent.id)).state, 'complete');
});
