import t from 'tap';
import { startTestServer } from './fixtures/server.js';
import { pairedClients, TestClient } from './fixtures/ws-client.js';

t.test('every recoverable error code, with the socket kept open', async (t) => {
  const srv = await startTestServer({ maxMessageBytes: 100 });
  t.teardown(srv.close);
  const [c] = await TestClient.hello(srv.url);
  const cases: [string | Buffer, string][] = [
    ['{"type":', 'bad_json'],
    ['"just a string"', 'bad_json'],
    ['{"type":7}', 'bad_json'],
    [Buffer.from([0, 1, 2]), 'bad_frame'],
    ['{"type":"teleport"}', 'unknown_type'],
    ['{"type":"__proto__"}', 'unknown_type'],
    ['{"type":"typing","on":"yes"}', 'bad_field'],
    ['{"type":"ack","seq":-1}', 'bad_field'],
    ['{"type":"find","interests":["a","b","c","d","e","f"]}', 'bad_field'],
    [`{"type":"find","interests":["${'x'.repeat(33)}"]}`, 'bad_field'],
    ['{"type":"find","interests":["chess\\u202egnp.exe"]}', 'bad_field'],
    ['{"type":"find","interests":["\\ud800"]}', 'bad_field'],
    ['{"type":"msg","body":"no id"}', 'bad_field'],
    ['{"type":"msg","id":"1","body":""}', 'bad_field'],
    ['{"type":"join"}', 'bad_field'],
    ['{"type":"msg","id":"1","body":"hi"}', 'not_in_chat'],
    ['{"type":"ack","seq":1}', 'not_in_chat'],
    ['{"type":"read","seq":1}', 'not_in_chat'],
    ['{"type":"typing","on":true}', 'not_in_chat'],
    ['{"type":"leave"}', 'not_in_chat'],
    ['{"type":"report"}', 'not_in_chat'],
    ['{"type":"block"}', 'not_in_chat'],
    ['{"type":"cancel"}', 'not_queued'],
    ['{"type":"join","code":"0000000000"}', 'invite_unknown'],
  ];
  for (const [frame, code] of cases) {
    c.sendRaw(frame, Buffer.isBuffer(frame));
    const err = await c.next('error');
    t.equal(err.code, code, `${String(frame)} -> ${code}`);
    t.type(err.message, 'string');
  }
  c.send({ type: 'ping', t: 'still here' });
  t.same(await c.next('pong'), { type: 'pong', t: 'still here' });
});

t.test('message size is enforced in UTF-8 bytes, and the error names the message', async (t) => {
  const srv = await startTestServer({ maxMessageBytes: 100 });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: 'ok', body: 'é'.repeat(50) });
  t.match(await b.next('msg'), { id: 'ok' }, '100 bytes pass');
  a.send({ type: 'msg', id: 'big', body: `${'é'.repeat(50)}x` });
  t.match(await a.next('error'), { code: 'message_too_long', id: 'big' }, '101 bytes do not');
});

t.test('a frame over MAX_PAYLOAD_BYTES is refused by uWebSockets.js before parsing', async (t) => {
  const srv = await startTestServer({ maxPayloadBytes: 1024, maxMessageBytes: 512 });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: 'x', body: 'x'.repeat(2000) });
  // uWS drops the TCP connection without a close frame, which clients report as 1006.
  t.equal((await a.closeEvent()).code, 1006);
  t.same(await b.next('partner'), { type: 'partner', state: 'away' }, 'the sender is away, not gone');
  t.equal(b.all('msg').length, 0, 'nothing of the oversized frame was relayed');
});

t.test('rate limit: refused frames get rate_limited with a retry hint; a flood closes 4429', async (t) => {
  const srv = await startTestServer({ rateLimitPerSec: 1, rateLimitBurst: 5, floodCloseAfter: 8 });
  t.teardown(srv.close);
  const [c] = await TestClient.hello(srv.url);
  for (let i = 0; i < 7; i++) c.send({ type: 'ping', t: i });
  for (let i = 0; i < 5; i++) t.same(await c.next('pong'), { type: 'pong', t: i });
  const err = await c.next('error');
  t.match(err, { code: 'rate_limited' });
  t.ok((err.retryAfterMs ?? 0) > 0, 'says when to retry');
  await c.next('error');
  t.equal(c.ws.readyState, c.ws.OPEN, 'a short excess is not fatal');
  for (let i = 0; i < 10; i++) c.send({ type: 'ping' });
  t.same(await c.closeEvent(), { code: 4429, reason: 'flood' });
  const metrics = await (await fetch(`${srv.http}/metrics`)).text();
  t.match(metrics, /^relay_closes_total\{code="4429"\} 1$/m, 'counted once');
});

t.test('repeated protocol errors close with 4422', async (t) => {
  const srv = await startTestServer({ maxErrorsPerMinute: 3 });
  t.teardown(srv.close);
  const [c] = await TestClient.hello(srv.url);
  for (let i = 0; i < 4; i++) c.sendRaw('garbage');
  t.same(await c.closeEvent(), { code: 4422, reason: 'too_many_errors' });
  t.equal(c.all('error').length, 4, 'each error was explained before the close');
});

t.test('connection caps: per address (429, with TRUST_PROXY) and in total (503)', async (t) => {
  const srv = await startTestServer({ maxConnectionsPerAddress: 2, trustProxy: true, maxConnections: 4 });
  t.teardown(srv.close);
  const via = (ip: string) => ({ headers: { 'X-Forwarded-For': `203.0.113.9, ${ip}` } });
  await TestClient.open(srv.url, via('192.0.2.1'));
  await TestClient.open(srv.url, via('192.0.2.1'));
  await t.rejects(TestClient.open(srv.url, via('192.0.2.1')), /HTTP 429/, 'third from one address');
  await TestClient.open(srv.url, via('192.0.2.2'));
  await TestClient.open(srv.url, via('192.0.2.3'));
  await t.rejects(TestClient.open(srv.url, via('192.0.2.4')), /HTTP 503/, 'over the process total');
});

t.test('behind a CDN and nginx (TRUST_PROXY_HOPS=2): each client is counted by the address the CDN saw', async (t) => {
  const srv = await startTestServer({ maxConnectionsPerAddress: 1, trustProxy: true, trustProxyHops: 2 });
  t.teardown(srv.close);
  // The CDN appends the client's address, nginx appends the CDN's.
  const via = (client: string, spoof?: string) => ({
    headers: { 'X-Forwarded-For': `${spoof ? `${spoof}, ` : ''}${client}, 198.51.100.7` },
  });
  await TestClient.open(srv.url, via('192.0.2.1'));
  await TestClient.open(srv.url, via('192.0.2.2'));
  await t.rejects(
    TestClient.open(srv.url, via('192.0.2.1', '10.9.9.9')),
    /HTTP 429/,
    'a spoofed first entry is ignored',
  );
  await TestClient.open(srv.url, via('192.0.2.3'));
});

t.test('an IPv6 client is counted by its /64', async (t) => {
  const srv = await startTestServer({ maxConnectionsPerAddress: 1, trustProxy: true });
  t.teardown(srv.close);
  const from = (ip: string) => ({ headers: { 'X-Forwarded-For': ip } });
  await TestClient.open(srv.url, from('2001:db8:1:2::1'));
  await t.rejects(TestClient.open(srv.url, from('2001:db8:1:2:ffff::9')), /HTTP 429/, 'same /64');
  await TestClient.open(srv.url, from('2001:db8:1:3::1'));
  await TestClient.open(srv.url, from('::ffff:192.0.2.1'));
  await t.rejects(TestClient.open(srv.url, from('192.0.2.1')), /HTTP 429/, 'a mapped IPv4 address is that address');
});

t.test('without TRUST_PROXY, forwarding headers are ignored', async (t) => {
  const srv = await startTestServer({ maxConnectionsPerAddress: 1 });
  t.teardown(srv.close);
  await TestClient.open(srv.url, { headers: { 'X-Forwarded-For': '192.0.2.1' } });
  await t.rejects(TestClient.open(srv.url, { headers: { 'X-Forwarded-For': '192.0.2.2' } }), /HTTP 429/);
  await TestClient.open(srv.url, { localAddress: '127.0.0.2' });
});

t.test('allowed origins: others get 403, non-browser clients without Origin are allowed', async (t) => {
  const srv = await startTestServer({ allowedOrigins: ['https://chat.example'] });
  t.teardown(srv.close);
  await TestClient.open(srv.url, { origin: 'https://chat.example' });
  await TestClient.open(srv.url);
  await t.rejects(TestClient.open(srv.url, { origin: 'https://evil.example' }), /HTTP 403/);
  const res = await fetch(`${srv.http}/api/v1/invites`, {
    method: 'POST',
    headers: { Origin: 'https://evil.example' },
  });
  t.equal(res.status, 403);
});

t.test('the waiting queue is bounded: queue_full', async (t) => {
  const srv = await startTestServer({ maxQueueLength: 2, matchInterestWaitMs: 60_000 });
  t.teardown(srv.close);
  for (const tag of ['a', 'b']) {
    const [c] = await TestClient.hello(srv.url);
    c.send({ type: 'find', interests: [tag] });
    await c.next('queued');
  }
  const [late] = await TestClient.hello(srv.url);
  late.send({ type: 'find', interests: ['c'] });
  t.match(await late.next('error'), { code: 'queue_full' });
});

t.test('sessions are bounded: a hello past MAX_SESSIONS closes with 4503', async (t) => {
  const srv = await startTestServer({ maxSessions: 2 });
  t.teardown(srv.close);
  await TestClient.hello(srv.url);
  await TestClient.hello(srv.url);
  const c = await TestClient.open(srv.url);
  c.send({ type: 'hello', v: 1 });
  t.same(await c.closeEvent(), { code: 4503, reason: 'server_full' });
});

t.test('a client that stops reading is closed with 4413; its messages wait for its resume', async (t) => {
  const srv = await startTestServer({
    maxBackpressureBytes: 64 * 1024,
    rateLimitPerSec: 100_000,
    rateLimitBurst: 100_000,
    bufferSessionMaxBytes: 64 * 1024 * 1024,
  });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  b.ws.pause();
  const body = 'x'.repeat(4000);
  let sent = 0;
  while (a.all('partner').length === 0 && sent < 20_000) {
    for (let i = 0; i < 200; i++) a.send({ type: 'msg', id: String(sent++), body });
    await new Promise((r) => setTimeout(r, 5));
  }
  t.same(await a.next('partner'), { type: 'partner', state: 'away' }, 'the slow reader was cut off');
  const metrics = await (await fetch(`${srv.http}/metrics`)).text();
  t.match(metrics, /relay_closes_total\{code="4413"\} 1/);
});

t.test('a socket that stops answering is closed by the idle timeout (the partner sees it away)', async (t) => {
  const srv = await startTestServer({ idleTimeoutS: 8 });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  // A paused socket neither reads the server's pings nor answers them, like a vanished phone.
  b.ws.pause();
  const started = Date.now();
  t.same(await a.next('partner', 20_000), { type: 'partner', state: 'away' });
  // uWS checks timeouts on a 4 s tick, so the close comes between 4 s and 8 s after b's last frame.
  t.ok(Date.now() - started >= 4000, 'not before the idle timeout (less its 4 s tick)');
  t.equal(srv.server.relay.connections, 1);
});
