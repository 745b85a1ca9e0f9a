import t from 'tap';
import { startTestServer } from './fixtures/server.js';
import { alteredToken, pairedClients, pairedRelayClients, sleep, TestClient } from './fixtures/ws-client.js';

t.test('resume after a drop: every message sent meanwhile, in order, exactly once', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b, chat } = await pairedClients(srv.url);
  const wb = b.welcome();
  a.send({ type: 'msg', id: 'm1', body: 'one' });
  a.send({ type: 'msg', id: 'm2', body: 'two' });
  await b.next('msg');
  await b.next('msg');
  b.send({ type: 'ack', seq: 1 });
  await a.next('delivered');
  b.close();
  t.same(await a.next('partner'), { type: 'partner', state: 'away' });
  for (let i = 3; i <= 7; i++) a.send({ type: 'msg', id: `m${i}`, body: `body ${i}` });
  for (let i = 3; i <= 7; i++) await a.next('sent');

  // b received seq 2 but only acked 1: it says lastSeq 2 and must get 3..7 only.
  const b2 = await TestClient.resume(srv.url, wb, 2);
  const welcome = await b2.any();
  t.match(welcome, {
    type: 'welcome',
    id: wb.id,
    resumed: true,
    state: 'chatting',
    chat: { id: chat, partner: 'here', sentSeq: 0, deliveredSeq: 0 },
  });
  const replayed = [];
  for (let i = 0; i < 5; i++) replayed.push(await b2.any());
  t.same(
    replayed.map((f) => (f.type === 'msg' ? [f.seq, f.id, f.body] : f.type)),
    [3, 4, 5, 6, 7].map((n) => [n, `m${n}`, `body ${n}`]),
    'missed messages arrive in order',
  );
  t.same(await a.next('partner'), { type: 'partner', state: 'back' });
  a.send({ type: 'msg', id: 'm8', body: 'live again' });
  t.match(await b2.next('msg'), { seq: 8, body: 'live again' });
  b2.send({ type: 'ping' });
  await b2.next('pong');
  t.equal(b2.all('msg').length, 6, 'nothing delivered twice');
  const metrics = await (await fetch(`${srv.http}/metrics`)).text();
  t.match(metrics, /^relay_buffered_delivery_seconds_count 5$/m, 'the five replayed messages are timed, live ones not');
});

t.test('a resume while the old socket is open replaces it with 4409', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  const wa = a.welcome();
  b.send({ type: 'msg', id: 'x', body: 'while a has two tabs' });
  await a.next('msg');
  const a2 = await TestClient.resume(srv.url, wa, 0);
  t.match(await a2.next('welcome'), { resumed: true, state: 'chatting' });
  t.match(await a2.next('msg'), { seq: 1, id: 'x' }, 'unacked message replayed to the new socket');
  t.same(await a.closeEvent(), { code: 4409, reason: 'session_replaced' });
  b.send({ type: 'ping' });
  await b.next('pong');
  t.equal(b.all('partner').length, 0, 'partner never saw the session go away');
});

t.test('a wrong token, a prefix of the right one, or an unknown id gets a fresh identity, not an error', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, wa] = await TestClient.hello(srv.url);
  a.send({ type: 'find' });
  await a.next('queued');
  a.close();
  const [, wb] = await TestClient.hello(srv.url);
  const cases: [string, Record<string, unknown>][] = [
    ['the last character changed', { id: wa.id, token: alteredToken(wa.token), lastSeq: 0 }],
    ['the first character changed', { id: wa.id, token: alteredToken(wa.token, 0), lastSeq: 0 }],
    ['all but the last character', { id: wa.id, token: wa.token.slice(0, -1), lastSeq: 0 }],
    ['one character', { id: wa.id, token: wa.token.slice(0, 1), lastSeq: 0 }],
    ['the token with one more character', { id: wa.id, token: `${wa.token}A`, lastSeq: 0 }],
    ["another session's token", { id: wa.id, token: wb.token, lastSeq: 0 }],
    ['an unknown id', { id: '00000000-0000-4000-8000-000000000000', token: wa.token, lastSeq: 0 }],
    ['a short token', { id: wa.id, token: 'short', lastSeq: 0 }],
    ['a malformed resume', { nonsense: true }],
  ];
  for (const [name, resume] of cases) {
    const c = await TestClient.open(srv.url);
    c.send({ type: 'hello', v: 1, resume } as Record<string, unknown>);
    const w = await c.next('welcome');
    t.equal(w.resumed, false, `fresh identity for ${name}`);
    t.not(w.id, wa.id);
    c.send({ type: 'ping' });
    await c.next('pong');
  }
  const right = await TestClient.resume(srv.url, wa);
  t.match(await right.next('welcome'), { resumed: true, id: wa.id }, 'and the right token still resumes');
});

t.test('when the resume window passes, the partner is told and the session is gone', async (t) => {
  const srv = await startTestServer({ resumeWindowMs: 300 });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  const wb = b.welcome();
  a.send({ type: 'msg', id: '1', body: 'are you there?' });
  await b.next('msg');
  b.close();
  await a.next('partner');
  t.same(await a.next('ended', 2000), { type: 'ended', reason: 'partner_gone' });
  t.equal(srv.server.relay.buffer.messages, 0, 'its buffer is freed');
  const b2 = await TestClient.resume(srv.url, wb, 1);
  const w = await b2.next('welcome');
  t.equal(w.resumed, false, 'expired session cannot be resumed');
  t.not(w.id, wb.id);
});

t.test('a chat that ended while you were away is reported on resume', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  const wb = b.welcome();
  b.close();
  await a.next('partner');
  a.send({ type: 'leave' });
  await a.next('ended');
  const b2 = await TestClient.resume(srv.url, wb, 0);
  t.match(await b2.any(), { type: 'welcome', resumed: true, state: 'idle', chat: null });
  t.same(await b2.any(), { type: 'ended', reason: 'partner_left' });
});

t.test('messages lost to the buffer bound are reported as a gap, never a silent hole', async (t) => {
  const srv = await startTestServer({ bufferSessionMaxMessages: 3 });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  const wb = b.welcome();
  b.close();
  await a.next('partner');
  for (let i = 1; i <= 6; i++) a.send({ type: 'msg', id: `m${i}`, body: `m${i}` });
  for (let i = 1; i <= 6; i++) await a.next('sent');
  t.equal(srv.server.relay.buffer.messages, 3, 'bound holds');
  const b2 = await TestClient.resume(srv.url, wb, 0);
  await b2.next('welcome');
  t.same(await b2.any(), { type: 'gap', from: 1, to: 3 });
  t.same(
    [await b2.any(), await b2.any(), await b2.any()].map((f) => (f.type === 'msg' ? f.seq : f.type)),
    [4, 5, 6],
  );
});

t.test('the typed client resumes by itself, re-sends unconfirmed messages once, drops duplicates', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { alice, bob } = await pairedRelayClients(srv.url, (fn) => t.teardown(fn));
  const received: string[] = [];
  bob.on('msg', (m) => received.push(m.body));

  alice.sendMessage('before');
  await bob.next('msg');
  alice.drop();
  await bob.next('partner');
  // Typed while offline: kept as unconfirmed and sent on reconnect.
  alice.sendMessage('offline 1');
  const last = alice.sendMessage('offline 2');
  t.equal(alice.unconfirmed, 2);
  const confirmed = alice.next('sent', (s) => s.id === last);
  const w = await alice.connect();
  t.equal(w.resumed, true);
  await confirmed;
  t.equal(alice.unconfirmed, 0, 'all confirmed');

  bob.drop();
  alice.sendMessage('while bob is away');
  await alice.next('sent');
  // Replayed frames can arrive in the same packet as the welcome: listen before connecting.
  const replayed = bob.next('msg', (m) => m.body === 'while bob is away');
  await bob.connect();
  await replayed;
  await sleep(50);
  t.same(received, ['before', 'offline 1', 'offline 2', 'while bob is away'], 'each message exactly once, in order');
  t.equal(srv.server.relay.buffer.messages, 0, 'auto-acks freed the buffer');
});

t.test("the resumed welcome carries the chat's receipts: delivered but not read, then read", async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b, chat } = await pairedClients(srv.url);
  const wa = a.welcome();
  for (const id of ['m1', 'm2', 'm3']) a.send({ type: 'msg', id, body: id });
  for (let i = 0; i < 3; i++) await b.next('msg');
  b.send({ type: 'ack', seq: 2 });
  t.same(await a.next('delivered'), { type: 'delivered', seq: 2 });
  a.close();
  await b.next('partner');
  const a2 = await TestClient.resume(srv.url, wa);
  t.match(
    await a2.next('welcome'),
    { resumed: true, chat: { id: chat, sentSeq: 3, deliveredSeq: 2, readSeq: 0 } },
    'three sent, two delivered, none read',
  );
  b.send({ type: 'read', seq: 1 });
  b.send({ type: 'ack', seq: 3 });
  t.same(await a2.next('read'), { type: 'read', seq: 1 });
  t.same(await a2.next('delivered'), { type: 'delivered', seq: 3 });
  a2.close();
  await b.next('partner');
  const a3 = await TestClient.resume(srv.url, wa);
  t.match(await a3.next('welcome'), { chat: { sentSeq: 3, deliveredSeq: 3, readSeq: 1 } }, 'and after a read');
  const wb = b.welcome();
  b.close();
  await a3.next('partner');
  const b2 = await TestClient.resume(srv.url, wb, 3);
  t.match(
    await b2.next('welcome'),
    { chat: { id: chat, sentSeq: 0, deliveredSeq: 0, readSeq: 0, initiator: false } },
    "the partner's own side: it sent nothing",
  );
});
