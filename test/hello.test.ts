import t from 'tap';
import { startTestServer } from './fixtures/server.js';
import { TestClient } from './fixtures/ws-client.js';

const UUID_V4 = /^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/;

t.test('hello gets an anonymous identity with a separate secret token', async (t) => {
  const srv = await startTestServer({ resumeWindowMs: 30_000 });
  t.teardown(srv.close);
  const [, w1] = await TestClient.hello(srv.url);
  const [, w2] = await TestClient.hello(srv.url);
  t.match(w1.id, UUID_V4, 'id is a UUID v4');
  t.match(w1.token, /^[A-Za-z0-9_-]{43}$/, 'token is 256 bits of base64url');
  t.not(w1.id, w2.id, 'ids are unique');
  t.not(w1.token, w2.token, 'tokens are unique');
  t.equal(w1.resumed, false);
  t.equal(w1.resumeWindowMs, 30_000);
  t.equal(w1.state, 'idle');
  t.equal(w1.chat, null);
  t.match(w1.limits, { maxMessageBytes: 4096, maxInterests: 5, maxInterestLength: 32 });
  t.ok(w1.limits.bufferMessages >= 300, 'at least 300 messages buffered per direction');
});

t.test("a session's token resumes it and no other", async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [c1, w1] = await TestClient.hello(srv.url);
  const [c2, w2] = await TestClient.hello(srv.url);
  c1.close();
  c2.close();
  const crossed = await TestClient.open(srv.url);
  crossed.send({ type: 'hello', v: 1, resume: { id: w2.id, token: w1.token, lastSeq: 0 } });
  t.match(await crossed.next('welcome'), { resumed: false }, "one session's token does not open another");
  const own = await TestClient.resume(srv.url, w2);
  t.match(await own.next('welcome'), { resumed: true, id: w2.id }, 'its own does');
});

t.test('a frame other than hello first closes with 4400', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  for (const first of ['{"type":"find"}', 'not json', '{"type":"hello"}', '[]']) {
    const c = await TestClient.open(srv.url);
    c.sendRaw(first);
    const close = await c.closeEvent();
    t.equal(close.code, 4400, `${first} -> 4400`);
    t.equal(close.reason, 'protocol_violation');
  }
  const c = await TestClient.open(srv.url);
  c.sendRaw(Buffer.from([1, 2, 3]), true);
  t.equal((await c.closeEvent()).code, 4400, 'binary before hello -> 4400');
});

t.test('an unsupported protocol version closes with 4426', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const c = await TestClient.open(srv.url);
  c.send({ type: 'hello', v: 2 });
  t.same(await c.closeEvent(), { code: 4426, reason: 'unsupported_version' });
});

t.test('no hello within HELLO_TIMEOUT_MS closes with 4408; a hello in time is kept', async (t) => {
  const srv = await startTestServer({ helloTimeoutMs: 300 });
  t.teardown(srv.close);
  const silent = await TestClient.open(srv.url);
  const polite = await TestClient.open(srv.url);
  polite.send({ type: 'hello', v: 1 });
  await polite.next('welcome');
  t.same(await silent.closeEvent(2000), { code: 4408, reason: 'hello_timeout' });
  polite.send({ type: 'ping', t: 7 });
  t.same(await polite.next('pong'), { type: 'pong', t: 7 }, 'hello in time keeps the socket');
});

t.test('a second hello is a recoverable error', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [c] = await TestClient.hello(srv.url);
  c.send({ type: 'hello', v: 1 });
  t.match(await c.next('error'), { code: 'already_hello' });
  c.send({ type: 'ping' });
  t.same(await c.next('pong'), { type: 'pong' });
});
