/**
 * How long sessions live and how many there may be: a client that closes on
 * purpose has left at once, one that drops keeps its session for the resume
 * window, sessions that never did anything get a short one, and neither one
 * address nor a full process can lock newcomers out with abandoned sessions.
 */
import t from 'tap';
import type { WelcomeFrame } from '../src/protocol.js';
import { ManualClock } from './fixtures/manual-clock.js';
import { startTestServer, type TestServer } from './fixtures/server.js';
import { pairedClients, TestClient } from './fixtures/ws-client.js';

async function metric(srv: TestServer, pattern: RegExp): Promise<string | undefined> {
  const text = await (await fetch(`${srv.http}/metrics`)).text();
  return pattern.exec(text)?.[1];
}

/** True if `welcome`'s session can still be resumed (the resuming socket is then closed again). */
async function resumable(srv: TestServer, welcome: WelcomeFrame, from?: string): Promise<boolean> {
  const c = await TestClient.open(srv.url, from ? { localAddress: from } : {});
  c.send({ type: 'hello', v: 1, resume: { id: welcome.id, token: welcome.token, lastSeq: 0 } });
  const w = await c.next('welcome');
  c.close();
  return w.resumed;
}

for (const code of [1000, 1001]) {
  t.test(
    `a client that closes with ${code} has left: the partner is told at once and the session is gone`,
    async (t) => {
      const srv = await startTestServer();
      t.teardown(srv.close);
      const { a, b } = await pairedClients(srv.url);
      const wb = b.welcome();
      b.ws.close(code);
      t.same(await a.any(), { type: 'ended', reason: 'partner_left' }, 'ended straight away, no "away" first');
      t.equal(srv.server.relay.sessions.size, 1);
      t.equal(srv.server.relay.stats().activeChats, 0);
      t.equal(await metric(srv, /^relay_sessions_ended_total\{reason="left"\} (\d+)$/m), '1');
      t.equal(await resumable(srv, wb), false, 'it cannot be resumed');
    },
  );
}

t.test('a drop, or a close with any other code, keeps the session for its resume window', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  for (const drop of [
    (c: TestClient) => c.close(),
    (c: TestClient) => c.ws.close(),
    (c: TestClient) => c.ws.close(4000),
  ]) {
    const { a, b } = await pairedClients(srv.url);
    drop(b);
    t.same(await a.next('partner'), { type: 'partner', state: 'away' });
    const b2 = await TestClient.resume(srv.url, b.welcome());
    t.match(await b2.next('welcome'), { resumed: true, state: 'chatting' });
    t.same(await a.next('partner'), { type: 'partner', state: 'back' });
  }
});

t.test('a session that never looked for a partner gets the short resume window', async (t) => {
  const clock = new ManualClock(Date.now());
  const srv = await startTestServer({ resumeWindowMs: 60_000, unusedResumeWindowMs: 1000 }, clock);
  t.teardown(srv.close);
  const [idle, wIdle] = await TestClient.hello(srv.url);
  const [looked, wLooked] = await TestClient.hello(srv.url);
  looked.send({ type: 'find' });
  await looked.next('queued');
  looked.send({ type: 'cancel' });
  await looked.next('cancelled');
  idle.close();
  looked.close();
  await idle.closed;
  await looked.closed;
  await srv.connectionsDownTo(0);
  clock.advance(1000);
  t.equal(srv.server.relay.sessions.size, 1, 'the unused one is gone after 1 s');
  t.equal(await resumable(srv, wIdle), false);
  t.equal(await resumable(srv, wLooked), true, 'the one that looked keeps the full window');
});

t.test('one address that abandons sessions in a loop holds at most its cap, and locks nobody out', async (t) => {
  // The attack from the issue: "upgrade, hello, read welcome, close", 20 sockets at a time.
  const srv = await startTestServer({ maxSessionsPerAddress: 40, maxSessions: 200 });
  t.teardown(srv.close);
  const [early, wEarly] = await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  early.close();
  const loop = async () => {
    for (let i = 0; i < 25; i++) {
      const [c] = await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
      c.close();
    }
  };
  await Promise.all(Array.from({ length: 20 }, loop));
  t.ok(
    srv.server.relay.sessions.size <= 40,
    `500 abandoned sessions left at most 40 (${srv.server.relay.sessions.size})`,
  );
  const [, visitor] = await TestClient.hello(srv.url, { localAddress: '127.0.0.3' });
  t.equal(visitor.resumed, false, 'a visitor from another address gets in');
  t.equal(await resumable(srv, wEarly, '127.0.0.2'), false, "the address's oldest went first");
  t.ok(Number(await metric(srv, /^relay_sessions_ended_total\{reason="evicted"\} (\d+)$/m)) >= 460);
});

t.test('an address whose sessions are all connected gets 4430 past its cap', async (t) => {
  const srv = await startTestServer({ maxSessionsPerAddress: 2 });
  t.teardown(srv.close);
  await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  const third = await TestClient.open(srv.url, { localAddress: '127.0.0.2' });
  third.send({ type: 'hello', v: 1 });
  t.same(await third.closeEvent(), { code: 4430, reason: 'too_many_sessions' });
  const [, other] = await TestClient.hello(srv.url, { localAddress: '127.0.0.3' });
  t.equal(other.resumed, false, 'other addresses are not affected');
});

t.test("an address's away sessions in a chat go only after its idle ones, and the partner is told", async (t) => {
  const srv = await startTestServer({ maxSessionsPerAddress: 3 });
  t.teardown(srv.close);
  const [x, wx] = await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  const [partner] = await TestClient.hello(srv.url, { localAddress: '127.0.0.3' });
  x.send({ type: 'find' });
  await x.next('queued');
  partner.send({ type: 'find' });
  await partner.next('matched');
  x.close();
  await partner.next('partner');
  const [idle, wIdle] = await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  idle.close();
  await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  await srv.connectionsDownTo(2);
  // Full (3): the next one evicts the idle away session, not the one in a chat.
  await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  t.equal(partner.all('ended').length, 0, 'the chat goes on');
  t.equal(await resumable(srv, wIdle, '127.0.0.4'), false, 'the idle one went');
  // Full again, with no idle away session left: the one in a chat goes, and its partner is told.
  await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  t.same(await partner.next('ended'), { type: 'ended', reason: 'partner_gone' });
  t.equal(await resumable(srv, wx, '127.0.0.4'), false);
});

t.test('a full process evicts its oldest idle away session before it refuses a newcomer', async (t) => {
  const srv = await startTestServer({ maxSessions: 3 });
  t.teardown(srv.close);
  const away: WelcomeFrame[] = [];
  for (const ip of ['127.0.0.2', '127.0.0.3']) {
    const [c, w] = await TestClient.hello(srv.url, { localAddress: ip });
    c.close();
    away.push(w);
  }
  await TestClient.hello(srv.url, { localAddress: '127.0.0.4' });
  await srv.connectionsDownTo(1);
  const [, newcomer] = await TestClient.hello(srv.url, { localAddress: '127.0.0.5' });
  t.equal(newcomer.resumed, false, 'the newcomer is welcomed');
  t.equal(srv.server.relay.sessions.size, 3);
  const [oldest, younger] = away as [WelcomeFrame, WelcomeFrame];
  // In this order: a failed resume is a newcomer too, and would evict the younger one.
  t.equal(await resumable(srv, younger, '127.0.0.6'), true, 'the younger away session is still there');
  t.equal(await resumable(srv, oldest, '127.0.0.6'), false, 'the oldest went');
});

t.test('a full process with nothing to evict refuses a newcomer with 4503', async (t) => {
  const srv = await startTestServer({ maxSessions: 2 });
  t.teardown(srv.close);
  const [a] = await TestClient.hello(srv.url);
  const [b] = await TestClient.hello(srv.url);
  a.send({ type: 'find' });
  await a.next('queued');
  b.send({ type: 'find' });
  await b.next('matched');
  b.close();
  await a.next('partner');
  const c = await TestClient.open(srv.url);
  c.send({ type: 'hello', v: 1 });
  t.same(await c.closeEvent(), { code: 4503, reason: 'server_full' }, 'an away session in a chat is not evicted');
  t.equal(a.all('ended').length, 0);
});
