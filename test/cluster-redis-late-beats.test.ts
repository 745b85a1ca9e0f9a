/**
 * An instance whose beats ran late past the liveness bound (its event loop
 * starved under overload) was taken for dead by the others: their finds
 * dropped its waiters, and nothing failed on its side to tell it so. Its
 * waiters' own retries answered `gone`, and they waited for good. Its next
 * beat now notices the lapse and it finds again for them.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { LIVENESS_MS } from '../src/broker-redis.js';
import { type Clock, systemClock } from '../src/clock.js';
import { FIND } from '../src/redis-scripts.js';
import { CLUSTER_SECRET } from './fixtures/cluster.js';
import { startRedis } from './fixtures/redis.js';
import { startTestServer } from './fixtures/server.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

t.test('an instance taken for dead while alive finds again for the waiters the others dropped', async (t) => {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const admin = new Redis(redis.options);
  t.teardown(() => admin.disconnect());
  // This instance's clock, which the test moves on: its beats read it, so a jump is a beat that came late.
  let offset = 0;
  const clock: Clock = { now: () => Date.now() + offset, schedule: systemClock.schedule };
  const server = await startTestServer({ redisUrl: redis.url, clusterSecret: CLUSTER_SECRET }, clock);
  t.teardown(server.close);
  const node = server.server.broker.nodeId;

  const [waiter, w] = await TestClient.hello(server.url);
  waiter.send({ type: 'find', interests: ['late'] });
  await waiter.next('queued');
  t.not(await admin.zscore('relay:{mq}:q', w.id), null, 'the waiter is queued');

  // In one transaction: the instance's liveness has lapsed, and another instance's find meets its waiter, takes it
  // for dead and drops it (as it must for an instance that died).
  const now = Date.now();
  const [, [err, reply]] = (await admin
    .multi()
    .zadd('relay:{mq}:nodes', now - 1, node)
    .eval(FIND, 1, 'relay:{mq}:', 'other', 'elsewhere', now, now + 60_000, now, 1000, 64, 60_000, 0, 'late')
    .exec()) as [unknown, [Error | null, string[]]];
  t.equal(err, null);
  t.same(reply?.[0], 'queued', "the other instance's find queued its own waiter");
  t.equal(await admin.zscore('relay:{mq}:q', w.id), null, 'and dropped this one');
  await admin.eval(
    "redis.call('ZREM', KEYS[1] .. 'q', ARGV[1]); redis.call('ZREM', KEYS[1] .. 'qi:late', ARGV[1]); redis.call('DEL', KEYS[1] .. 't:' .. ARGV[1])",
    1,
    'relay:{mq}:',
    'other',
  );

  // The instance's next beat comes a liveness bound after its last one.
  offset = LIVENESS_MS + 1000;
  const deadline = Date.now() + 5000;
  while ((await admin.zscore('relay:{mq}:q', w.id)) === null && Date.now() < deadline) await sleep(50);
  t.not(await admin.zscore('relay:{mq}:q', w.id), null, 'the waiter is queued again');
  t.ok(
    server.logs.lines.some((l) => l.includes('beat too late')),
    'and the instance said why',
  );
  t.equal(waiter.frames.filter((f) => f.type === 'error').length, 0, 'its client saw nothing of it');
});
