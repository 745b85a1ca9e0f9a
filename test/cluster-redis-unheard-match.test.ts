/**
 * A match made while the waiter's instance could not hear. Instance A's find
 * claims a waiter on instance B just after B lost its Redis link: the
 * `matched` A publishes reaches no subscriber, and pub/sub keeps nothing. A
 * sends it again until B hears; B, back, finds again for its waiters but
 * leaves alone one that was claimed meanwhile (a refind). Found by the
 * gateway bench at 75,000 sessions on 2 cores: 310 chats announced to one side
 * only, their other side queued again for a second partner.
 */
import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import type { Ticket } from '../src/broker.js';
import { HEARTBEAT_MS, LIVENESS_MS } from '../src/broker-redis.js';
import { CLUSTER_SECRET } from './fixtures/cluster.js';
import { startRedis, type TestRedis } from './fixtures/redis.js';
import { startBroker } from './fixtures/redis-broker.js';
import { startTestServer } from './fixtures/server.js';
import { TcpProxy } from './fixtures/tcp-proxy.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

const ticket = (id: string, node: string): Ticket => ({ id, node, since: Date.now(), interests: [] });

async function redisFor(t: Test): Promise<{ redis: TestRedis; admin: Redis }> {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const admin = new Redis(redis.options);
  t.teardown(() => admin.disconnect());
  return { redis, admin };
}

t.test('refind: a waiter claimed by a live instance stays claimed; otherwise it finds as usual', async (t) => {
  const { redis, admin } = await redisFor(t);
  const matches: string[] = [];
  const n0 = await startBroker(t, redis, 'n0', { match: (a, b) => matches.push(`${a.id}+${b.id}`) });
  const n1 = await startBroker(t, redis, 'n1', { match: (a, b) => matches.push(`${a.id}+${b.id}`) });
  const queue = async () => admin.zrange('relay:{mq}:q', 0, -1);

  t.equal(await n1.matchmaker.find(ticket('waiter', 'n1')), 'queued');
  t.equal(await n0.matchmaker.find(ticket('finder', 'n0')), 'matched', 'n0 claims the waiter');
  t.equal(await n1.matchmaker.refind(ticket('waiter', 'n1')), 'matched', 'refind: its match is on its way');
  t.same(await queue(), [], 'and it is not queued again');

  // Redis lost the claim (it restarted empty; the instances' liveness is kept here): the waiter is queued again.
  await admin.del('relay:{mq}:c:waiter');
  t.equal(await n1.matchmaker.refind(ticket('waiter', 'n1')), 'queued', 'no ticket and no claim: queued');
  t.same(await queue(), ['waiter']);

  // A waiter still queued is found for as usual: here it takes a finder that came meanwhile.
  await n1.matchmaker.cancel('waiter');
  t.equal(await n0.matchmaker.find(ticket('other', 'n0')), 'queued');
  t.equal(await n1.matchmaker.refind(ticket('waiter', 'n1')), 'matched');
  t.same(await queue(), [], 'the two are paired');

  // A claim by an instance that is gone since will never be announced: the waiter finds again.
  t.equal(await n1.matchmaker.find(ticket('late', 'n1')), 'queued');
  t.equal(await n0.matchmaker.find(ticket('gone-finder', 'n0')), 'matched');
  await n0.close();
  t.equal(await n1.matchmaker.refind(ticket('late', 'n1')), 'queued', 'claimed by a gone instance: queued again');
  t.same(await queue(), ['late']);

  // Found afresh, a waiter has no claim on it; the session's end leaves none behind.
  t.same(await admin.keys('*c:*'), ['relay:{mq}:c:other'], 'the one claim left is on the last waiter claimed');
  await n1.matchmaker.forget('other');
  t.same(await admin.keys('*c:*'), [], 'and its end removes it');
  t.same(matches, ['waiter+finder', 'other+waiter', 'late+gone-finder']);
});

/**
 * Instance B's waiter is claimed by A's find while B is cut off from Redis for `cutMs`; the `matched` for it is heard
 * by no one. Returns once B is ready again.
 */
async function claimedWhileCutOff(t: Test, cutMs: number) {
  const { redis, admin } = await redisFor(t);
  const proxy = await TcpProxy.start(Number(new URL(redis.url).port));
  t.teardown(() => proxy.close());
  const through = new URL(redis.url);
  through.port = String(proxy.port);
  const prefix = `um${randomBytes(3).toString('hex')}:`;
  const settings = { clusterSecret: CLUSTER_SECRET, redisPrefix: prefix };
  const a = await startTestServer({ ...settings, redisUrl: redis.url });
  t.teardown(a.close);
  const b = await startTestServer({ ...settings, redisUrl: through.toString().replace(/\/$/, '') });
  t.teardown(b.close);
  const ready = async (s: { http: string }) => (await (await fetch(`${s.http}/readyz`)).json()) as { status: string };
  const until = async (what: string, done: () => Promise<boolean>) => {
    const deadline = Date.now() + 10_000;
    while (!(await done())) {
      if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
      await sleep(25);
    }
  };

  const [waiter, w] = await TestClient.hello(b.url);
  waiter.send({ type: 'find', interests: ['cut-off'] });
  await waiter.next('queued');

  // B loses Redis (its subscription with it) and knows it.
  proxy.refuse(true);
  proxy.cut();
  const cutAt = Date.now();
  await until('B degraded', async () => (await ready(b)).status === 'degraded');

  // Within B's liveness, A's find claims B's waiter.
  const [finder] = await TestClient.hello(a.url);
  finder.send({ type: 'find', interests: ['cut-off'] });
  const chat = (await finder.next('matched')).chat;
  await sleep(cutMs - (Date.now() - cutAt));

  proxy.refuse(false);
  await until('B ready', async () => (await ready(b)).status === 'ready');
  return { admin, prefix, a, waiter, waiterId: w.id, finder, chat };
}

/** Each side sends one message (again after `unavailable`, as a client does) and the other gets it. */
async function talk(t: Test, finder: TestClient, waiter: TestClient) {
  for (const [from, to, body] of [
    [finder, waiter, 'to the one who could not hear'],
    [waiter, finder, 'and back'],
  ] as const) {
    let sent = false;
    for (let tries = 0; !sent && tries < 40; tries++) {
      from.send({ type: 'msg', id: `m-${body.length}`, body });
      const reply = await from.any(500).catch(() => null);
      sent = reply?.type === 'sent';
      if (!sent) await sleep(50);
    }
    t.ok(sent, `sent: ${body}`);
    t.match(await to.next('msg', 2000), { body });
  }
}

t.test('a match published while its waiter could not hear reaches it once its instance is back', async (t) => {
  // Long enough for a few unheard sends again, short of B's liveness.
  const { admin, prefix, a, waiter, waiterId, finder, chat } = await claimedWhileCutOff(t, 1500);
  t.equal((await waiter.next('matched', 10_000)).chat, chat, 'the waiter gets the same chat');

  const queued = await admin.zrange(`${prefix}{mq}:q`, 0, -1);
  t.notOk(queued.includes(waiterId), 'the waiter is not queued again for a second partner');
  const [third] = await TestClient.hello(a.url);
  third.send({ type: 'find', interests: ['cut-off'] });
  await third.next('queued');
  await sleep(300);
  t.equal(third.frames.filter((f) => f.type === 'matched').length, 0, 'a third client with the same interest waits');
  await talk(t, finder, waiter);
});

t.test('cut off past its liveness: the partner is told away, then back, and the chat goes on', async (t) => {
  const { waiter, finder, chat } = await claimedWhileCutOff(t, LIVENESS_MS + 2 * HEARTBEAT_MS);
  t.match(await finder.next('partner'), { state: 'away' }, 'A took B for dead meanwhile');
  t.equal((await waiter.next('matched', 10_000)).chat, chat, 'the waiter gets the same chat');
  t.match(await finder.next('partner', 5000), { state: 'back' }, 'and its partner is back');
  await talk(t, finder, waiter);
});
