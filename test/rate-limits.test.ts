/**
 * Rate limits by what a frame costs: messages keep their order through a
 * refusal, typing never crowds out messages, receipts that move forward are
 * free, and the typed client paces itself and recovers from a refusal.
 */
import t from 'tap';
import type { ServerFrame } from '../src/protocol.js';
import { ManualClock } from './fixtures/manual-clock.js';
import { startTestServer } from './fixtures/server.js';
import { pairedClients, pairedRelayClients, type TestClient } from './fixtures/ws-client.js';

/** Waits until the server has handled everything `c` sent so far (pings are answered in order). */
async function settled(c: TestClient, token: string): Promise<void> {
  c.send({ type: 'ping', t: token });
  for (;;) {
    const pong = await c.next('pong');
    if (pong.t === token) return;
  }
}

const bodies = (frames: ServerFrame[]) => frames.flatMap((f) => (f.type === 'msg' ? [f.body] : []));

t.test('a refused msg names its id and retry hint, and holds later messages back until it is sent again', async (t) => {
  const clock = new ManualClock(Date.now());
  // Pings and everything else share the budget: enough burst for the pairing and the settle pings.
  const srv = await startTestServer({ rateLimitPerSec: 1, rateLimitBurst: 5, floodCloseAfter: 100 }, clock);
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  // a has spent 1 of 5 on find (hello is outside the budget): m1 to m4 fit, m5 does not.
  for (const id of ['m1', 'm2', 'm3']) a.send({ type: 'msg', id, body: id });
  a.send({ type: 'msg', id: 'm4', body: 'm4' });
  a.send({ type: 'msg', id: 'm5', body: 'm5' });
  const refused = await a.next('error');
  t.match(refused, { code: 'rate_limited', id: 'm5' }, 'the refusal names the message');
  t.ok((refused.retryAfterMs ?? 0) >= 1, 'and says when to retry');
  clock.advance(5000);
  // The budget is back, but m6 was written after m5: it waits behind it.
  a.send({ type: 'msg', id: 'm6', body: 'm6' });
  t.match(await a.next('error'), { code: 'rate_limited', id: 'm6' }, 'a later message is held back');
  a.send({ type: 'msg', id: 'm5', body: 'm5' });
  a.send({ type: 'msg', id: 'm6', body: 'm6' });
  await settled(a, 'done');
  const sent = a.all('sent').map((s) => [s.id, s.seq]);
  t.same(sent, [
    ['m1', 1],
    ['m2', 2],
    ['m3', 3],
    ['m4', 4],
    ['m5', 5],
    ['m6', 6],
  ]);
  await settled(b, 'done');
  t.same(bodies(b.frames), ['m1', 'm2', 'm3', 'm4', 'm5', 'm6'], 'the partner gets them in the order written');
});

t.test('a hold lapses if the refused message never comes back', async (t) => {
  const clock = new ManualClock(Date.now());
  const srv = await startTestServer({ rateLimitPerSec: 1, rateLimitBurst: 2, floodCloseAfter: 100 }, clock);
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: 'kept', body: 'kept' });
  a.send({ type: 'msg', id: 'given-up', body: 'given-up' });
  const refused = await a.next('error');
  t.match(refused, { code: 'rate_limited', id: 'given-up' });
  clock.advance((refused.retryAfterMs ?? 0) + 10_000);
  a.send({ type: 'msg', id: 'next', body: 'next' });
  t.match(await a.next('sent'), { id: 'kept' });
  t.match(await a.next('sent'), { id: 'next' }, 'accepted once the hold has lapsed');
  await settled(b, 'x');
  t.same(bodies(b.frames), ['kept', 'next']);
});

t.test('typing has its own budget: a typing storm neither crowds out messages nor earns errors', async (t) => {
  const clock = new ManualClock(Date.now());
  const srv = await startTestServer(
    { rateLimitPerSec: 1, rateLimitBurst: 4, typingRatePerSec: 1, typingRateBurst: 3 },
    clock,
  );
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  for (let i = 0; i < 20; i++) a.send({ type: 'typing', on: i % 2 === 0 });
  a.send({ type: 'msg', id: 'after-typing', body: 'still goes through' });
  t.match(await b.next('msg'), { id: 'after-typing' });
  t.equal(b.all('typing').length, 3, 'typing past its budget is dropped');
  t.equal(a.all('error').length, 0, 'silently');
  t.equal(a.ws.readyState, a.ws.OPEN);
});

t.test('a typing flood still closes the socket with 4429', async (t) => {
  const clock = new ManualClock(Date.now());
  const srv = await startTestServer({ typingRatePerSec: 1, typingRateBurst: 2, floodCloseAfter: 10 }, clock);
  t.teardown(srv.close);
  const { a } = await pairedClients(srv.url);
  for (let i = 0; i < 20; i++) a.send({ type: 'typing', on: true });
  t.same(await a.closeEvent(), { code: 4429, reason: 'flood' });
});

t.test('acks and reads that move forward are free; stale ones cost a frame', async (t) => {
  const clock = new ManualClock(Date.now());
  const srv = await startTestServer({ rateLimitPerSec: 1, rateLimitBurst: 3, floodCloseAfter: 100 }, clock);
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  for (let i = 1; i <= 6; i++) {
    clock.advance(1000);
    a.send({ type: 'msg', id: `m${i}`, body: `m${i}` });
    await a.next('sent');
  }
  // b's budget is full again (3): twelve forward receipts must not touch it.
  for (let seq = 1; seq <= 6; seq++) {
    b.send({ type: 'ack', seq });
    b.send({ type: 'read', seq });
  }
  for (let seq = 1; seq <= 6; seq++) {
    t.same(await a.next('delivered'), { type: 'delivered', seq });
    t.same(await a.next('read'), { type: 'read', seq });
  }
  b.send({ type: 'ack', seq: 6 });
  b.send({ type: 'read', seq: 6 });
  b.send({ type: 'ack', seq: 2 });
  b.send({ type: 'read', seq: 1 });
  t.match(await b.next('error'), { code: 'rate_limited' }, 'four stale receipts spend the three frames and more');
  t.equal(b.all('error').length, 1);
});

t.test('the typed client paces itself: 30 messages at once arrive in order, once, with no refusal', async (t) => {
  const srv = await startTestServer({ rateLimitPerSec: 40, rateLimitBurst: 5 });
  t.teardown(srv.close);
  const { alice, bob } = await pairedRelayClients(srv.url, (fn) => t.teardown(fn));
  const got: string[] = [];
  bob.on('msg', (m) => got.push(m.body));
  const errors: string[] = [];
  alice.on('error', (e) => errors.push(e.code));
  const expected = Array.from({ length: 30 }, (_, i) => `quick ${i}`);
  for (const text of expected) alice.sendMessage(text);
  await bob.next('msg', (m) => m.body === 'quick 29', 5000);
  t.same(got, expected);
  t.same(errors, [], 'the outbox stayed inside the budget the welcome announced');
  await alice.next('sent', () => alice.unconfirmed === 0);
  t.equal(alice.unconfirmed, 0);
});

t.test('the typed client recovers from a refusal it could not foresee: paused, then in order', async (t) => {
  const srv = await startTestServer({ rateLimitPerSec: 20, rateLimitBurst: 5, floodCloseAfter: 100 });
  t.teardown(srv.close);
  const { alice, bob } = await pairedRelayClients(srv.url, (fn) => t.teardown(fn));
  const got: string[] = [];
  bob.on('msg', (m) => got.push(m.body));
  const refusals: (string | undefined)[] = [];
  alice.on('error', (e) => refusals.push(e.id));
  // Stale acks cost the server's budget (4 of 5 are left after find) but not the client's idea of it
  // (it counts receipts as free), so its first message meets an empty bucket.
  for (let i = 0; i < 4; i++) alice.send({ type: 'ack', seq: 0 });
  const expected = Array.from({ length: 12 }, (_, i) => `m${i}`);
  for (const text of expected) alice.sendMessage(text);
  await bob.next('msg', (m) => m.body === 'm11', 10_000);
  t.ok(refusals.length > 0, 'the server did refuse');
  t.ok(
    refusals.every((id) => id !== undefined),
    'every refusal named its message',
  );
  t.same(got, expected, 'every message once, in the order written');
  await alice.next('sent', () => alice.unconfirmed === 0);
});
