/**
 * A `find` whose reply is lost to a command timeout may still have run in
 * Redis and claimed a waiting partner. Only the instance that called it can
 * announce that match (the partner's own retries answer `gone`), so it asks
 * again and gets the match its find made. Found by the gateway bench: under
 * overload, instances timed out on finds that had run, and their partners
 * were left out of every queue and never matched.
 */
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import type { Ticket } from '../src/broker.js';
import { CLUSTER_SECRET } from './fixtures/cluster.js';
import { startRedis, type TestRedis } from './fixtures/redis.js';
import { startBroker } from './fixtures/redis-broker.js';
import { startTestServer } from './fixtures/server.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

async function twoInstances(t: Test) {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const matches: [string, string, string][] = [];
  // Commands time out after 1 s here, so a pause of 1.4 s loses a reply.
  const start = (nodeId: string) =>
    startBroker(
      t,
      redis,
      nodeId,
      { match: (first, second) => matches.push([nodeId, first.id, second.id]) },
      { REDIS_COMMAND_TIMEOUT_MS: '1000' },
    );
  return { redis, matches, n0: await start('n0'), n1: await start('n1') };
}

const ticket = (id: string, node: string): Ticket => ({ id, node, since: Date.now(), interests: [] });

/** Redis stops answering while the find is on its socket, for longer than the instance's command timeout. */
async function withLostReply<T>(redis: TestRedis, call: () => Promise<T>): Promise<T> {
  redis.pause();
  const pending = call();
  const resumed = new Promise<void>((resolve) =>
    setTimeout(() => {
      redis.resume();
      resolve();
    }, 1400),
  );
  try {
    return await pending;
  } finally {
    await resumed;
  }
}

t.test('a find that ran but whose reply was lost announces its match once', async (t) => {
  const { redis, matches, n0, n1 } = await twoInstances(t);
  t.equal(await n1.matchmaker.find(ticket('waiter', 'n1')), 'queued');
  const outcome = await withLostReply(redis, () => n0.matchmaker.find(ticket('finder', 'n0')));
  t.equal(outcome, 'matched', 'the finder is told it matched');
  t.same(matches, [['n0', 'waiter', 'finder']], 'one match, announced by the instance that made it');
});

t.test('asked again, a find answers only its own match, never an older one', async (t) => {
  const { redis, matches, n0, n1 } = await twoInstances(t);
  t.equal(await n1.matchmaker.find(ticket('waiter', 'n1')), 'queued');
  t.equal(await n0.matchmaker.find(ticket('finder', 'n0')), 'matched');
  t.equal(matches.length, 1);
  // The chat ends; the finder looks again, nobody waits, and this reply is lost.
  const outcome = await withLostReply(redis, () => n0.matchmaker.find(ticket('finder', 'n0')));
  t.equal(outcome, 'queued', 'queued, not matched again with the old partner');
  t.equal(matches.length, 1, 'no second match');
});

t.test('asked again after its waiter was claimed meanwhile, a find neither queues nor pairs it twice', async (t) => {
  const { redis, matches, n0, n1 } = await twoInstances(t);
  const x = ticket('x', 'n0');
  // Called as the matchmaker does after a timeout (mode 2), with the same ticket.
  // The lost call queued x (its reply was late, say, behind a busy event loop); then another find claimed it.
  t.equal(await n0.matchmaker.find(x), 'queued');
  t.equal(await n1.matchmaker.find(ticket('y', 'n1')), 'matched');
  t.same(matches, [['n1', 'x', 'y']]);
  // n0's timeout fires now and it asks again: the script must not put x back in line for a second partner.
  await n1.matchmaker.find(ticket('z', 'n1'));
  const again = await n0.run('relayFind', 'x', 'n0', x.since, x.since, Date.now(), 1000, 64, 60_000, 2);
  t.same(
    again,
    ['gone'],
    "no ticket and no match of its own: 'gone' (the claim's maker announces it), nothing changed",
  );
  t.same(matches, [['n1', 'x', 'y']], 'x was not paired with z');
  const admin = new Redis(redis.options);
  t.teardown(() => admin.disconnect());
  t.equal(await admin.zscore('relay:{mq}:q', 'x'), null, 'x is not queued again');
  t.not(await admin.zscore('relay:{mq}:q', 'z'), null, 'z waits for someone else');
});

t.test('asked again after its call found the queue full, a find answers full again', async (t) => {
  const { n0 } = await twoInstances(t);
  const now = Date.now();
  const call = (mode: number, maxLen: number) =>
    n0.run('relayFind', 'w', 'n0', now, now, now, maxLen, 64, 60_000, mode);
  t.same(await call(0, 0), ['full']);
  // Without the record, no ticket would read as claimed ('gone'), and the waiter would wait for nothing.
  t.same(await call(2, 0), ['full']);
});

t.test('a find whose reply is lost twice: the client is told unavailable and leaves no ticket behind', async (t) => {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const server = await startTestServer({
    redisUrl: redis.url,
    clusterSecret: CLUSTER_SECRET,
    redisCommandTimeoutMs: 200,
  });
  t.teardown(server.close);
  const [client, welcome] = await TestClient.hello(server.url);
  // Each call (the cool-down lookup, the find, the find asked again) gives up after 200 ms; Redis answers them all
  // after 900 ms.
  redis.pause();
  client.send({ type: 'find' });
  const resumed = sleep(900).then(() => redis.resume());
  t.match(await client.next('error', 3000), { code: 'unavailable' });
  await resumed;
  const admin = new Redis(redis.options);
  t.teardown(() => admin.disconnect());
  // The lost calls ran once Redis answered, and queued the ticket; the relay took it out again.
  const deadline = Date.now() + 3000;
  while ((await admin.zscore('relay:{mq}:q', welcome.id)) !== null && Date.now() < deadline) await sleep(25);
  t.equal(await admin.zscore('relay:{mq}:q', welcome.id), null, 'not queued for a partner it would never take');
  t.equal(await admin.exists(`relay:{mq}:t:${welcome.id}`), 0, 'no ticket');
});
