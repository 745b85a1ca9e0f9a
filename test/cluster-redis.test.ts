import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import { startTestCluster } from './fixtures/cluster.js';
import { runScenarios, url } from './fixtures/cluster-scenarios.js';
import { redisKeys, type TestRedis } from './fixtures/redis.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

runScenarios(t, 'redis', () => startTestCluster('redis'));

t.test('redis: no body, token or address in any key, at any time; no trace of a session once it is gone', async (t) => {
  const cluster = await startTestCluster('redis', { overrides: { resumeWindowMs: 1500, unusedResumeWindowMs: 1500 } });
  t.teardown(cluster.close);
  const redis = cluster.redis as TestRedis;
  const canary = `CANARY${randomBytes(8).toString('hex')}`;
  const [a, wa] = await TestClient.hello(url(cluster, 0), { localAddress: '127.0.0.2' });
  const [b, wb] = await TestClient.hello(url(cluster, 1), { localAddress: '127.0.0.3' });
  a.send({ type: 'find', interests: ['privacy'] });
  await a.next('queued');
  b.send({ type: 'find', interests: ['privacy'] });
  await a.next('matched');
  await b.next('matched');
  for (let i = 0; i < 5; i++) a.send({ type: 'msg', id: `a${i}`, body: `${canary}-${i}` });
  for (let i = 0; i < 5; i++) await b.next('msg');
  b.close();
  await a.next('partner');
  a.send({ type: 'msg', id: 'buffered', body: `${canary}-buffered` });
  await a.next('sent');
  // b resumes elsewhere: its buffered message crosses in the hand-off, in transit only.
  const b2 = await TestClient.resume(url(cluster, 2), wb, 5);
  t.match(await b2.next('msg'), { body: `${canary}-buffered` });
  const secrets = [canary, wa.token, wb.token, '127.0.0.2', '127.0.0.3'];
  const leaks = (dump: { key: string; value: string }[]) =>
    dump.filter((k) => secrets.some((s) => k.key.includes(s) || k.value.includes(s)));
  const during = await redisKeys(redis);
  t.ok(during.length > 0, 'the scan sees the keys');
  t.same(leaks(during), [], 'while the chat runs, no key holds a body, a token or an address');
  t.ok(
    during.every((k) => k.ttlMs > 0),
    `every key expires (${during.filter((k) => k.ttlMs <= 0).map((k) => k.key)})`,
  );
  // Dropped, not left: each session waits out its resume window, then ends.
  a.close();
  b2.close();
  for (const node of cluster.nodes) await node.connectionsDownTo(0);
  await sleep(1500 + 300);
  const after = await redisKeys(redis);
  t.same(leaks(after), []);
  const ids = [wa.id, wb.id];
  t.same(
    after.filter((k) => ids.some((id) => k.key.includes(id) || k.value.includes(id))).map((k) => `${k.key} ${k.ttlMs}`),
    [],
    'a resume window after both left, no key names or holds either session',
  );
  for (const node of cluster.nodes) {
    const text = node.logs.lines.join('\n');
    for (const s of [...secrets, ...ids]) t.notOk(text.includes(s), `instance logs do not contain ${s.slice(0, 8)}…`);
  }
});

t.test('redis: the Redis this project starts never persists', async (t) => {
  const cluster = await startTestCluster('redis', { nodes: 1 });
  t.teardown(cluster.close);
  const client = new Redis(cluster.redis?.options ?? {});
  t.teardown(() => client.disconnect());
  t.same(await client.config('GET', 'save'), ['save', '']);
  t.same(await client.config('GET', 'appendonly'), ['appendonly', 'no']);
});
