/**
 * Waiters in Redis whose ticket expired. A ticket (`t:<id>`) names the
 * interest queues its waiter is in; once its TTL runs out (its instance died,
 * or stopped refreshing) nothing could take the waiter out of those queues:
 * it stayed in `qi:<tag>` for good, scanned first by every find on that tag
 * (64 of them, and interest matching on the tag stops). Found by the
 * reliability hammer (a Redis key left after every client was gone). And the
 * refresh that keeps tickets and directory entries alive ran less often than
 * their TTL with a resume window under 3 s, so a waiting session's ticket
 * expired while it waited.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import type { Ticket } from '../src/broker.js';
import { startTestCluster } from './fixtures/cluster.js';
import { url } from './fixtures/cluster-scenarios.js';
import { redisKeys, startRedis, type TestRedis } from './fixtures/redis.js';
import { startBroker } from './fixtures/redis-broker.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

t.test('a waiter whose ticket expired is taken out of the interest queue by the next find on that tag', async (t) => {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const matches: [string, string][] = [];
  const b = await startBroker(t, redis, 'n0', { match: (x, y) => matches.push([x.id, y.id]) });
  const admin = new Redis(redis.options);
  t.teardown(() => admin.disconnect());
  const ticket = (id: string, since: number): Ticket => ({ id, node: 'n0', interests: ['chess'], since });
  const now = Date.now();
  t.equal(await b.matchmaker.find(ticket('ghost', now)), 'queued');
  await admin.del('relay:{mq}:t:ghost');
  t.equal(await b.matchmaker.find(ticket('y', now + 1)), 'queued');
  t.same(await admin.zrange('relay:{mq}:qi:chess', 0, -1), ['y'], 'the ghost is out of the interest queue');
  t.same(await admin.zrange('relay:{mq}:q', 0, -1), ['y'], 'and out of the random queue');
  await b.matchmaker.find(ticket('z', now + 2));
  t.same(matches, [['y', 'z']], 'the living are paired on their interest');
});

t.test('a short resume window: a waiting session keeps its ticket and directory entry, and is found', async (t) => {
  const cluster = await startTestCluster('redis', {
    nodes: 2,
    overrides: { resumeWindowMs: 1000, unusedResumeWindowMs: 1000 },
  });
  t.teardown(cluster.close);
  const [a, wa] = await TestClient.hello(url(cluster, 0));
  a.send({ type: 'find', interests: ['chess'] });
  await a.next('queued');
  await sleep(3500);
  const keys = (await redisKeys(cluster.redis as TestRedis)).map((k) => k.key);
  t.ok(
    keys.some((k) => k.endsWith(`t:${wa.id}`)),
    'its ticket is still there after 3.5 resume windows',
  );
  t.ok(
    keys.some((k) => k.endsWith(`d:${wa.id}`)),
    'so is its directory entry',
  );
  const [b] = await TestClient.hello(url(cluster, 1));
  b.send({ type: 'find', interests: ['chess'] });
  t.equal((await a.next('matched')).chat, (await b.next('matched')).chat, 'a newcomer on another instance finds it');
  a.close();
  b.close();
});
