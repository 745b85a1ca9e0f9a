/**
 * Instances as real processes over a real Redis: a SIGTERM drains one while
 * its chats are busy, a SIGKILL kills one outright, and in both cases every
 * chat goes on with nothing lost, doubled or reordered (clients reconnect to
 * another instance, as they would through the proxy). Bad cluster settings
 * stop the start with exit 2.
 */
import t, { type Test } from 'tap';
import { type Chatter, chats, talking } from './fixtures/chatters.js';
import { CLUSTER_SECRET } from './fixtures/cluster.js';
import { redisKeys, startRedis, type TestRedis } from './fixtures/redis.js';
import { type RelayProcess, spawnRelay } from './fixtures/relay-process.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

async function startInstances(redis: TestRedis, n: number, env: Record<string, string> = {}): Promise<RelayProcess[]> {
  const prefix = `p${Math.random().toString(36).slice(2, 8)}:`;
  return Promise.all(
    Array.from({ length: n }, (_, i) =>
      spawnRelay({
        REDIS_URL: redis.url,
        CLUSTER_SECRET,
        REDIS_PREFIX: prefix,
        INSTANCE_ID: `p${i}`,
        DRAIN_GRACE_MS: '1000',
        MAX_SESSIONS_PER_ADDRESS: '0',
        MAX_CONNECTIONS_PER_ADDRESS: '0',
        ...env,
      }),
    ),
  );
}

/** The `at`-th live instance's URL, asked again on every connect (a moved client goes to the next one). */
function rotating(live: () => RelayProcess[], at: number): () => string {
  let n = at;
  return () => {
    const nodes = live();
    return (nodes[n++ % nodes.length] as RelayProcess).url;
  };
}

/**
 * Three instances on a fresh Redis and `count` chats across them, each side saying something every `everyMs`
 * until `quiet()`; then `settled()` waits for every message to be confirmed and delivered, and checks that every
 * chat is still on and every message arrived once, in order. `live` is what the clients reconnect to.
 */
async function busyCluster(t: Test, count: number, everyMs: number) {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const nodes = await startInstances(redis, 3);
  t.teardown(() => {
    for (const n of nodes) n.kill('SIGKILL');
  });
  const cluster = { redis, nodes, live: [...nodes] };
  // Each pair's sides start on different instances; a moved client goes to the next live one.
  const pairs = await chats(count, (i) => rotating(() => cluster.live, i));
  // The same object the clients' `live` list is read from: a test that takes an instance out sets `live` here.
  return Object.assign(cluster, { pairs, ...talking(t, pairs, everyMs) });
}

t.test(
  'SIGTERM on a busy instance: its clients move, every chat goes on, nothing lost, doubled or reordered',
  async (t) => {
    const busy = await busyCluster(t, 12, 20);
    const { nodes } = busy;
    await sleep(500);
    const victim = nodes[0] as RelayProcess;
    busy.live = nodes.slice(1);
    const started = Date.now();
    victim.kill('SIGTERM');
    const exit = await victim.exited;
    t.same(exit, { code: 0, signal: null }, 'the drained instance exits cleanly');
    t.ok(Date.now() - started < 10_000, `within 10 s (${Date.now() - started} ms)`);
    await sleep(500);
    await busy.settled(15_000);
    t.ok(
      victim.logs.some((l) => l.msg === 'draining'),
      'it drained',
    );
  },
);

t.test(
  'SIGKILL: partners see the partner away within 6 s; clients resume elsewhere; nothing they hold is lost',
  async (t) => {
    const busy = await busyCluster(t, 9, 25);
    const { nodes } = busy;
    // One more chat whose side on the victim never comes back: its partner must see it away.
    const lonely = await chats(1, (i) => rotating(() => [nodes[0] as RelayProcess, nodes[1] as RelayProcess], i));
    const [ghost, waiter] = lonely[0] as [Chatter, Chatter];
    t.teardown(() => {
      ghost.stop();
      waiter.stop();
    });
    ghost.client.onClosed(() => ghost.stop());
    const away = waiter.client.next('partner', (f) => f.state === 'away', 8000);
    await sleep(500);
    const victim = nodes[0] as RelayProcess;
    busy.live = nodes.slice(1);
    const killedAt = Date.now();
    victim.kill('SIGKILL');
    await victim.exited;
    await away;
    const awayMs = Date.now() - killedAt;
    t.ok(awayMs <= 6000, `the partner saw it away after ${awayMs} ms`);
    await sleep(1000);
    await busy.settled(20_000);
    waiter.stop();
  },
);

t.test(
  'a killed instance: invisible to matching within 6 s, and no trace of it in Redis after the resume window',
  async (t) => {
    const redis = await startRedis({ tcp: true });
    t.teardown(redis.stop);
    const nodes = await startInstances(redis, 2, { RESUME_WINDOW_MS: '3000' });
    t.teardown(() => {
      for (const n of nodes) n.kill('SIGKILL');
    });
    const [victim, survivor] = nodes as [RelayProcess, RelayProcess];
    const [ghost, ghostWelcome] = await TestClient.hello(victim.url);
    ghost.send({ type: 'find' });
    await ghost.next('queued');
    victim.kill('SIGKILL');
    await victim.exited;
    const killedAt = Date.now();
    await sleep(5600);
    const [first] = await TestClient.hello(survivor.url);
    first.send({ type: 'find' });
    t.same(
      await first.next('queued'),
      { type: 'queued' },
      `not paired with the dead instance's waiter after ${Date.now() - killedAt} ms`,
    );
    const [second] = await TestClient.hello(survivor.url);
    second.send({ type: 'find' });
    t.equal((await first.next('matched')).chat, (await second.next('matched')).chat, 'the living are paired');
    await sleep(3000);
    const keys = await redisKeys(redis);
    t.same(
      keys.filter(
        (k) => k.key.includes(ghostWelcome.id) || k.value.includes(ghostWelcome.id) || k.value.includes('p0'),
      ),
      [],
      'nothing of the dead instance or its session is left a resume window later',
    );
    first.close();
    second.close();
  },
);

t.test('cluster settings are checked at start: exit 2 with a clear message', async (t) => {
  for (const [env, expect] of [
    [{ REDIS_URL: 'redis://127.0.0.1:1' }, /CLUSTER_SECRET: required with Redis/],
    [
      { REDIS_URL: 'redis://127.0.0.1:1', CLUSTER_SECRET: 'c2hvcnQ=' },
      /CLUSTER_SECRET: expected base64 of at least 32/,
    ],
    [{ REDIS_URL: 'http://x', CLUSTER_SECRET }, /REDIS_URL: expected redis:/],
    [{ REDIS_CLUSTER_NODES: 'nohost', CLUSTER_SECRET }, /REDIS_CLUSTER_NODES: expected host:port/],
  ] as const) {
    const relay = spawnRelay(env);
    await t.rejects(relay, expect, Object.keys(env).join(' + '));
  }
  const secret = 'c2hvcnQ=';
  await spawnRelay({ REDIS_URL: 'redis://127.0.0.1:1', CLUSTER_SECRET: secret }).catch((err: Error) =>
    t.notMatch(err.message, secret, 'the secret is never echoed'),
  );
});

t.test('Redis down at start: the instance starts anyway, says so, and serves alone', async (t) => {
  const relay = await spawnRelay({ REDIS_URL: 'redis://127.0.0.1:1', CLUSTER_SECRET });
  t.teardown(() => relay.kill('SIGKILL'));
  t.match(await (await fetch(`${relay.http}/readyz`)).json(), { status: 'degraded', broker: 'down' });
  t.ok(relay.logs.some((l) => String(l.msg).startsWith('broker unavailable at start')));
  relay.kill('SIGTERM');
  t.same((await relay.exited).code, 0);
});
