/**
 * The Redis fixture itself: the servers it starts answer, never persist,
 * restart empty, can crash and hang on demand, form a working cluster with
 * sharded pub/sub, and do not outlive the test process.
 */
import { spawn } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import { dirname } from 'node:path';
import { Cluster, Redis, type RedisOptions } from 'ioredis';
import t from 'tap';
import { redisKeys, startRedis, startRedisCluster } from './fixtures/redis.js';

/** A client that fails at once instead of retrying, so a dead or hung Redis shows. */
function client(t: { teardown(fn: () => void): void }, target: string | RedisOptions, commandTimeout = 1000): Redis {
  const opts: RedisOptions = { maxRetriesPerRequest: 0, retryStrategy: () => null, commandTimeout };
  const c = typeof target === 'string' ? new Redis(target, opts) : new Redis({ ...target, ...opts });
  c.on('error', () => {});
  t.teardown(() => c.disconnect());
  return c;
}

/** Redis's "never persists" settings, as CONFIG GET answers them. */
async function persistence(c: Redis): Promise<{ save: unknown; appendonly: unknown }> {
  const get = async (name: string) => ((await c.config('GET', name)) as string[])[1];
  return { save: await get('save'), appendonly: await get('appendonly') };
}

/** True once `pid` has no running process (gone, or a zombie nobody reaped). */
function gone(pid: number): boolean {
  try {
    return /^\d+ \(.*\) Z/.test(readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return true;
  }
}

async function until(what: string, ok: () => boolean, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!ok()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting until ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

t.test('a Redis on a unix socket: answers, never persists, restarts empty, and a kill shows', async (t) => {
  const redis = await startRedis();
  t.teardown(redis.stop);
  t.notMatch(redis.url, /^redis/, 'a unix socket is a bare path for ioredis');
  t.match(redis.options, { path: redis.url });

  const c = client(t, redis.url);
  await c.set('k', 'v');
  t.equal(await client(t, redis.options).get('k'), 'v', 'url and options reach the same server');
  t.same(await persistence(c), { save: '', appendonly: 'no' }, 'Redis never persists');
  const dir = ((await c.config('GET', 'dir')) as string[])[1] ?? '';
  t.equal(dir, dirname(redis.url), 'it writes only to its own temp dir');
  t.not(dir, process.cwd());

  const pid = redis.pid;
  await redis.restart();
  t.not(redis.pid, pid, 'a new process');
  t.ok(gone(pid));
  const c2 = client(t, redis.url);
  t.equal(await c2.dbsize(), 0, 'restarted empty');
  t.same(await persistence(c2), { save: '', appendonly: 'no' });

  await redis.kill();
  await t.rejects(client(t, redis.url).ping(), 'a command fails once it is killed');
  await redis.stop();
  t.notOk(existsSync(dir), 'stop() removes the temp dir');
});

t.test('a Redis on TCP with a password: the url carries it, a pause hangs it, restart keeps the port', async (t) => {
  const redis = await startRedis({ tcp: true, password: 's3cret:/@?' });
  t.teardown(redis.stop);
  const { port } = redis.options;
  t.match(redis.url, /^redis:\/\/:[^@]+@127\.0\.0\.1:\d+$/);
  t.match(redis.options, { host: '127.0.0.1', password: 's3cret:/@?' });

  await t.rejects(client(t, { host: '127.0.0.1', port }).get('k'), /NOAUTH/, 'the password is required');
  const c = client(t, redis.url, 200);
  t.equal(await c.ping(), 'PONG');
  t.same(await persistence(c), { save: '', appendonly: 'no' });

  redis.pause();
  await t.rejects(c.ping(), /timed out/i, 'a paused Redis does not answer');
  redis.resume();
  t.equal(await client(t, redis.options).ping(), 'PONG', 'and answers again once resumed');

  await c.set('k', 'v');
  await redis.restart();
  const c2 = client(t, redis.url);
  t.equal(c2.options.port, port);
  t.equal(await c2.get('k'), null, 'same port, empty');
});

t.test('a paused Redis still stops', async (t) => {
  const redis = await startRedis();
  const pid = redis.pid;
  redis.pause();
  await redis.stop();
  t.ok(gone(pid));
});

t.test('redisKeys dumps every key in every database with its type and TTL', async (t) => {
  const redis = await startRedis();
  t.teardown(redis.stop);
  const c = client(t, redis.options);
  await c.set('s', 'canary-1', 'PX', 60_000);
  await c.rpush('l', 'a', 'canary-2');
  await c.sadd('set', 'canary-3');
  await c.zadd('z', 1, 'canary-4');
  await c.hset('h', 'f', 'canary-5');
  await c.xadd('x', '*', 'f', 'canary-6');
  await c.select(3);
  await c.set('other-db', 'canary-7');
  const keys = await redisKeys(redis);
  t.same(
    keys.map((k) => [k.db, k.key, k.type]),
    [
      [0, 'h', 'hash'],
      [0, 'l', 'list'],
      [0, 's', 'string'],
      [0, 'set', 'set'],
      [0, 'x', 'stream'],
      [0, 'z', 'zset'],
      [3, 'other-db', 'string'],
    ],
  );
  for (let i = 1; i <= 7; i++)
    t.ok(
      keys.some((k) => k.value.includes(`canary-${i}`)),
      `canary-${i} found`,
    );
  t.ok(keys.every((k) => k.node === redis.options.path));
  const s = keys.find((k) => k.key === 's');
  t.ok(s && s.ttlMs > 0 && s.ttlMs <= 60_000, 'a TTL');
  t.equal(keys.find((k) => k.key === 'l')?.ttlMs, -1, 'no TTL');
});

t.test('a cluster of 3 masters: state ok, sharded pub/sub, and redisKeys sees every master', async (t) => {
  const cluster = await startRedisCluster({ masters: 3 });
  t.teardown(cluster.stop);
  t.equal(cluster.nodes.length, 3);
  t.equal(cluster.nodesSetting, cluster.nodes.map((n) => `127.0.0.1:${n.port}`).join(','));

  for (const node of cluster.nodes) {
    const c = client(t, node);
    t.match(await c.cluster('INFO'), /^cluster_state:ok\r$/m, `cluster_state:ok on ${node.port}`);
    t.same(await persistence(c), { save: '', appendonly: 'no' });
    t.match((await c.role())[0], 'master');
  }

  const pub = new Cluster(cluster.nodes, { shardedSubscribers: true });
  const sub = new Cluster(cluster.nodes, { shardedSubscribers: true });
  t.teardown(() => {
    pub.disconnect();
    sub.disconnect();
  });
  const got = new Promise<[string, string]>((resolve) =>
    sub.on('smessage', (ch: string, msg: string) => resolve([ch, msg])),
  );
  await sub.ssubscribe('relay:{room}');
  await pub.spublish('relay:{room}', 'hello');
  t.same(await got, ['relay:{room}', 'hello'], 'SPUBLISH reaches SSUBSCRIBE');

  // Enough keys that every master holds some.
  for (let i = 0; i < 30; i++) await pub.set(`key-${i}`, `canary-${i}`);
  const keys = await redisKeys(cluster);
  t.equal(keys.length, 30);
  t.equal(new Set(keys.map((k) => k.node)).size, 3, 'keys found on all 3 masters');
  for (let i = 0; i < 30; i++) t.ok(keys.some((k) => k.value === `canary-${i}`));

  const killed = cluster.nodes[0];
  await cluster.killNode(0);
  await t.rejects(client(t, { host: '127.0.0.1', port: killed?.port }).ping(), 'a killed node does not answer');
  t.ok(
    (await redisKeys(cluster)).every((k) => k.node !== `127.0.0.1:${killed?.port}`),
    'redisKeys skips it',
  );
});

const fixture = new URL('./fixtures/redis.js', import.meta.url).href;

/** Runs a node process that starts a Redis, prints `pid dir`, then runs `then`. */
async function orphanCandidate(then: string): Promise<{ pid: number; dir: string; child: ReturnType<typeof spawn> }> {
  const code = `const { startRedis } = await import(${JSON.stringify(fixture)});
    const r = await startRedis(); console.log(r.pid, r.options.path.replace(/\\/redis\\.sock$/, '')); ${then}`;
  const env = { ...process.env };
  delete env.NODE_OPTIONS; // not tap's loaders: a plain node process
  const child = spawn(process.execPath, ['--input-type=module', '-e', code], {
    env,
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  const line = await new Promise<string>((resolve) => child.stdout?.once('data', (d: Buffer) => resolve(String(d))));
  const [pid, dir] = line.trim().split(' ');
  return { pid: Number(pid), dir: dir ?? '', child };
}

t.test('a Redis does not outlive its test process', async (t) => {
  const forgotten = await orphanCandidate('/* never stopped: the process just ends */');
  await until('the forgotten Redis is gone', () => gone(forgotten.pid));
  t.pass('a Redis that was never stopped dies when the process exits');
  t.notOk(existsSync(forgotten.dir), 'and its temp dir is removed');

  const killed = await orphanCandidate('setInterval(() => {}, 1000);');
  t.notOk(gone(killed.pid), 'its Redis runs while the process does');
  killed.child.kill('SIGKILL');
  await until("the SIGKILLed process's Redis is gone", () => gone(killed.pid));
  t.pass('a Redis whose test process was SIGKILLed dies too');
  await until('its temp dir is removed', () => !existsSync(killed.dir));
});
