import t from 'tap';
import { ManualClock } from './fixtures/manual-clock.js';
import { startTestServer } from './fixtures/server.js';
import { pairedClients, TestClient } from './fixtures/ws-client.js';

t.test('find pairs two strangers into one chat, one of them the initiator', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a] = await TestClient.hello(srv.url);
  const [b] = await TestClient.hello(srv.url);
  a.send({ type: 'find' });
  t.same(await a.any(), { type: 'queued' });
  b.send({ type: 'find' });
  t.same(await b.any(), { type: 'queued' }, 'the second finder is also told queued first');
  const ma = await a.any();
  const mb = await b.any();
  t.match(ma, { type: 'matched', interests: [], via: 'random' });
  t.equal(ma.type === 'matched' && mb.type === 'matched' && ma.chat === mb.chat, true, 'same chat');
  t.equal(ma.type === 'matched' && mb.type === 'matched' && ma.initiator !== mb.initiator, true, 'one initiator');
});

t.test('messages are relayed with per-direction seqs, sent/delivered/read receipts', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);

  a.send({ type: 'msg', id: 'a1', body: 'hello' });
  a.send({ type: 'msg', id: 'a2', body: 'ciphertext==', kind: 'e2e' });
  b.send({ type: 'msg', id: 'b1', body: 'hi' });
  t.same(await a.next('sent'), { type: 'sent', id: 'a1', seq: 1 });
  t.same(await a.next('sent'), { type: 'sent', id: 'a2', seq: 2 });
  t.same(await b.next('sent'), { type: 'sent', id: 'b1', seq: 1 }, 'seqs are per direction');
  const m1 = await b.next('msg');
  t.match(m1, { type: 'msg', seq: 1, id: 'a1', body: 'hello' });
  t.type(m1.ts, 'number');
  t.notOk('kind' in m1, 'no kind when none was sent');
  t.match(await b.next('msg'), { seq: 2, id: 'a2', body: 'ciphertext==', kind: 'e2e' }, 'kind is relayed opaquely');
  t.match(await a.next('msg'), { seq: 1, id: 'b1', body: 'hi' });

  t.equal(srv.server.relay.buffer.messages, 3, 'unacked messages are buffered');
  b.send({ type: 'ack', seq: 2 });
  t.same(await a.next('delivered'), { type: 'delivered', seq: 2 });
  t.equal(srv.server.relay.buffer.messages, 1, 'ack frees what it covers');
  b.send({ type: 'read', seq: 2 });
  t.same(await a.next('read'), { type: 'read', seq: 2 });
  b.send({ type: 'ack', seq: 9 });
  t.match(await b.next('error'), { code: 'bad_field' }, 'ack beyond the last seq is refused');
});

t.test('a retried client id is acknowledged again, not relayed twice', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: 'x', body: 'once' });
  a.send({ type: 'msg', id: 'x', body: 'once' });
  a.send({ type: 'msg', id: 'y', body: 'twice?' });
  t.same(await a.next('sent'), { type: 'sent', id: 'x', seq: 1 });
  t.same(await a.next('sent'), { type: 'sent', id: 'x', seq: 1 }, 'same seq for the retry');
  t.same(await a.next('sent'), { type: 'sent', id: 'y', seq: 2 });
  await b.next('msg');
  await b.next('msg');
  b.send({ type: 'ping' });
  await b.next('pong');
  t.same(
    b.all('msg').map((m) => m.id),
    ['x', 'y'],
    'the partner got each message once',
  );
});

t.test('typing is forwarded and never buffered', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'typing', on: true });
  t.same(await b.next('typing'), { type: 'typing', on: true });
  a.send({ type: 'typing', on: false });
  t.same(await b.next('typing'), { type: 'typing', on: false });
  t.equal(srv.server.relay.buffer.messages, 0);
});

t.test('leave ends the chat for both and frees its buffers at once', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: '1', body: 'bye' });
  await b.next('msg');
  t.equal(srv.server.relay.buffer.messages, 1);
  b.send({ type: 'leave' });
  t.same(await b.next('ended'), { type: 'ended', reason: 'you_left' });
  t.same(await a.next('ended'), { type: 'ended', reason: 'partner_left' });
  t.equal(srv.server.relay.buffer.messages, 0, 'buffer freed');
  t.equal(srv.server.relay.stats().activeChats, 0);
  a.send({ type: 'msg', id: '2', body: 'anyone?' });
  t.match(await a.next('error'), { code: 'not_in_chat', id: '2' });
});

t.test('no instant rematch with someone you just left; a third person is paired instead', async (t) => {
  const srv = await startTestServer({ rematchCooldownMs: 60_000 });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'leave' });
  await a.next('ended');
  await b.next('ended');
  a.send({ type: 'find' });
  await a.next('queued');
  b.send({ type: 'find' });
  await b.next('queued');
  const [c] = await TestClient.hello(srv.url);
  c.send({ type: 'find' });
  const mc = await c.next('matched');
  const ma = await a.next('matched');
  t.equal(ma.chat, mc.chat, 'the longest waiter (a) gets the newcomer');
  t.equal(b.all('matched').length, 1, 'b is still waiting, not paired with a again');
});

t.test('two people alone are paired again the moment their rematch cool-down ends', async (t) => {
  // Next in one window, New chat in the other: both wait; nobody else arrives.
  const clock = new ManualClock(Date.now());
  const srv = await startTestServer({ rematchCooldownMs: 30_000 }, clock);
  t.teardown(srv.close);
  const { a, b, chat } = await pairedClients(srv.url);
  a.send({ type: 'leave' });
  a.send({ type: 'find' });
  await a.next('queued');
  await b.next('ended');
  b.send({ type: 'find' });
  await b.next('queued');
  clock.advance(29_999);
  for (const c of [a, b]) {
    c.send({ type: 'ping' });
    await c.next('pong');
    t.equal(c.all('matched').length, 1, 'not before the cool-down ends');
  }
  clock.advance(1);
  const [ma, mb] = await Promise.all([a.next('matched'), b.next('matched')]);
  t.equal(ma.chat, mb.chat, 'paired with each other');
  t.not(ma.chat, chat, 'in a new chat');
  t.equal(srv.server.relay.stats().queueLength, 0);
});

t.test(
  'report ends the chat, blocks the pair for good, and enough reports put the reported on cool-down',
  async (t) => {
    const srv = await startTestServer({ rematchCooldownMs: 0, reportThreshold: 2 });
    t.teardown(srv.close);
    const { a: bad, b: r1 } = await pairedClients(srv.url);
    r1.send({ type: 'report' });
    t.same(await r1.next('ended'), { type: 'ended', reason: 'you_reported' });
    t.same(await bad.next('ended'), { type: 'ended', reason: 'partner_left' }, 'the reported is not told why');
    bad.send({ type: 'find' });
    await bad.next('queued');
    r1.send({ type: 'find' });
    await r1.next('queued');
    await new Promise((r) => setTimeout(r, 100));
    t.equal(bad.all('matched').length, 1, 'reporter and reported are never paired again');

    // A second reporter from another address reaches the threshold.
    const [r2] = await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
    r1.send({ type: 'cancel' });
    await r1.next('cancelled');
    r2.send({ type: 'find' });
    await r2.next('matched');
    await bad.next('matched');
    r2.send({ type: 'report' });
    await bad.next('ended');
    bad.send({ type: 'find' });
    const err = await bad.next('error');
    t.match(err, { code: 'cooldown' });
    t.ok((err.retryAfterMs ?? 0) > 0, 'cool-down says how long');
  },
);

t.test('block ends the chat and blocks the pair without counting as a report', async (t) => {
  const srv = await startTestServer({ rematchCooldownMs: 0, reportThreshold: 1 });
  t.teardown(srv.close);
  const { a: other, b: blocker } = await pairedClients(srv.url);
  blocker.send({ type: 'block' });
  t.same(await blocker.next('ended'), { type: 'ended', reason: 'you_blocked' });
  t.same(await other.next('ended'), { type: 'ended', reason: 'partner_left' }, 'the blocked is not told why');
  other.send({ type: 'find' });
  t.same(await other.next('queued'), { type: 'queued' }, 'no cool-down even with a threshold of one report');
  blocker.send({ type: 'find' });
  await blocker.next('queued');
  await new Promise((r) => setTimeout(r, 100));
  t.equal(other.all('matched').length, 1, 'blocker and blocked are never paired again');
  const [third] = await TestClient.hello(srv.url);
  third.send({ type: 'find' });
  const m = await third.next('matched');
  const mo = await other.next('matched');
  t.equal(mo.chat, m.chat, 'the newcomer is paired with the longest waiter');
  blocker.send({ type: 'ping' });
  await blocker.next('pong');
  t.equal(blocker.all('matched').length, 1, 'and the blocker waits on');
});

t.test(
  'a queued client whose socket drops leaves the queue: a newcomer waits instead of meeting a ghost',
  async (t) => {
    const srv = await startTestServer();
    t.teardown(srv.close);
    const [ghost] = await TestClient.hello(srv.url);
    ghost.send({ type: 'find' });
    await ghost.next('queued');
    t.equal(srv.server.relay.stats().queueLength, 1);
    ghost.close();
    await ghost.closed;
    await srv.connectionsDownTo(0);
    t.equal(srv.server.relay.stats().queueLength, 0, 'the queue is empty');
    const [newcomer] = await TestClient.hello(srv.url);
    newcomer.send({ type: 'find' });
    t.same(await newcomer.next('queued'), { type: 'queued' });
    newcomer.send({ type: 'ping' });
    await newcomer.next('pong');
    t.equal(newcomer.all('matched').length, 0, 'nobody to be matched with');
    t.equal(srv.server.relay.stats().activeChats, 0);
  },
);

t.test('find and join refuse a second chat; cancel leaves the queue', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a } = await pairedClients(srv.url);
  a.send({ type: 'find' });
  t.match(await a.next('error'), { code: 'already_in_chat' });
  a.send({ type: 'join', code: 'ABCDEFGHJK' });
  t.match(await a.next('error'), { code: 'already_in_chat' });
  const [c] = await TestClient.hello(srv.url);
  c.send({ type: 'cancel' });
  t.match(await c.next('error'), { code: 'not_queued' });
  c.send({ type: 'find' });
  await c.next('queued');
  c.send({ type: 'find' });
  t.match(await c.next('error'), { code: 'already_queued' });
  c.send({ type: 'cancel' });
  t.same(await c.next('cancelled'), { type: 'cancelled' });
  t.equal(srv.server.relay.stats().queueLength, 0);
});

t.test('shared interests are preferred, then anyone after the wait', async (t) => {
  const srv = await startTestServer({ matchInterestWaitMs: 400 });
  t.teardown(srv.close);
  const [a] = await TestClient.hello(srv.url);
  const [b] = await TestClient.hello(srv.url);
  const [c] = await TestClient.hello(srv.url);
  a.send({ type: 'find', interests: ['Music', 'chess'] });
  await a.next('queued');
  b.send({ type: 'find' });
  await b.next('queued');
  c.send({ type: 'find', interests: ['CHESS', 'go'] });
  const mc = await c.next('matched');
  t.same(mc.interests, ['chess'], 'matched on the shared interest, case-insensitively');
  t.equal((await a.next('matched')).chat, mc.chat);
  const [d] = await TestClient.hello(srv.url);
  d.send({ type: 'find', interests: ['knitting'] });
  await d.next('queued');
  const started = Date.now();
  const md = await d.next('matched', 3000);
  t.ok(Date.now() - started >= 300, 'waited for an interest match first');
  t.same(md.interests, [], 'then took anyone');
  t.equal((await b.next('matched')).chat, md.chat);
});
