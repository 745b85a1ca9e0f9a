import { randomBytes } from 'node:crypto';
import { Redis } from 'ioredis';
import t from 'tap';
import { CLUSTER_SECRET, startTestCluster } from './fixtures/cluster.js';
import { pairAcross, runScenarios, url } from './fixtures/cluster-scenarios.js';
import { redisKeys, startRedis, type TestRedis } from './fixtures/redis.js';
import { startTestServer } from './fixtures/server.js';
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

t.test(
  'redis: a password in REDIS_URL works, and a wrong one leaves the instance degraded, never crashed',
  async (t) => {
    const redis = await startRedis({ tcp: true, password: 'pw-in-the-url' });
    t.teardown(redis.stop);
    const prefix = `pw${randomBytes(3).toString('hex')}:`;
    const good = await startTestServer({ redisUrl: redis.url, clusterSecret: CLUSTER_SECRET, redisPrefix: prefix });
    t.teardown(good.close);
    t.match(redis.url, /^redis:\/\/:pw-in-the-url@127\.0\.0\.1:\d+$/);
    t.same(await (await fetch(`${good.http}/readyz`)).json(), { status: 'ready', broker: 'up' });
    const bad = await startTestServer({
      redisUrl: redis.url.replace('pw-in-the-url', 'wrong'),
      clusterSecret: CLUSTER_SECRET,
      redisPrefix: prefix,
    });
    t.teardown(bad.close);
    t.same(await (await fetch(`${bad.http}/readyz`)).json(), { status: 'degraded', broker: 'down' });
    t.notOk(bad.logs.lines.join('\n').includes('pw-in-the-url'), 'the password is never logged');
    const why = bad.logs.lines.filter((l) => l.includes('broker connection error'));
    t.ok(
      why.some((l) => l.includes('WRONGPASS')),
      'the log says why',
    );
    t.notOk(why.join('').includes(':wrong@'), 'and not the URL it was given');
  },
);

t.test('redis: subscriber connections killed by Redis come back and the bus flows again within 2 s', async (t) => {
  const cluster = await startTestCluster('redis', { nodes: 2 });
  t.teardown(cluster.close);
  const { a, b } = await pairAcross(cluster, 0, 1);
  const admin = new Redis(cluster.redis?.options ?? {});
  t.teardown(() => admin.disconnect());
  t.ok(Number(await admin.client('KILL', 'TYPE', 'pubsub')) >= 2, 'both instances lost their subscriptions');
  const killedAt = Date.now();
  let got = false;
  // Sent again (same id, as a client does after `unavailable`) until it crosses.
  while (!got && Date.now() - killedAt < 2000) {
    a.send({ type: 'msg', id: 'after', body: 'still there?' });
    const reply = await a.any(500).catch(() => null);
    got = reply?.type === 'sent';
    if (!got) await sleep(50);
  }
  t.ok(got, `a message crossed again after ${Date.now() - killedAt} ms`);
  t.match(await b.next('msg', 2000), { body: 'still there?' });
});

t.test('redis: report cool-downs hold across instances (reported on one, refused on another)', async (t) => {
  const cluster = await startTestCluster('redis', { overrides: { reportThreshold: 1 } });
  t.teardown(cluster.close);
  const { a, b, wb } = await pairAcross(cluster, 0, 1);
  a.send({ type: 'report' });
  t.same(await a.next('ended'), { type: 'ended', reason: 'you_reported' });
  t.same(await b.next('ended'), { type: 'ended', reason: 'partner_left' });
  b.send({ type: 'find' });
  t.match(await b.next('error'), { code: 'cooldown' }, 'the reported session may not find');
  // The same session on another instance, and another session from the same address, are on cool-down too.
  const b2 = await TestClient.resume(url(cluster, 2), wb, 0);
  await b2.next('welcome');
  b2.send({ type: 'find' });
  t.match(await b2.next('error'), { code: 'cooldown' });
  const [sameAddress] = await TestClient.hello(url(cluster, 2));
  sameAddress.send({ type: 'find' });
  t.match(await sameAddress.next('error'), { code: 'cooldown' }, 'its address is on cool-down everywhere');
});

t.test('redis: a garbage payload on an instance channel is dropped and logged; the chat on it goes on', async (t) => {
  const cluster = await startTestCluster('redis', { nodes: 2 });
  t.teardown(cluster.close);
  const { a, b } = await pairAcross(cluster, 0, 1);
  const admin = new Redis(cluster.redis?.options ?? {});
  t.teardown(() => admin.disconnect());
  const channel = (await admin.pubsub('CHANNELS', '*{node:n1}')) as string[];
  t.equal(channel.length, 1, 'n1 listens on its own channel');
  const garbage = ['not json', '{"t":"msg"}', JSON.stringify([{ t: 'msg', to: 'nobody' }, 42]), '['.repeat(5000)];
  for (const text of garbage) t.equal(await admin.publish(channel[0] as string, text), 1);
  a.send({ type: 'msg', id: 'm1', body: 'after the garbage' });
  t.match(await b.next('msg'), { body: 'after the garbage' });
  const warned = cluster.nodes[1]?.logs.lines.filter((l) => l.includes('dropped malformed envelopes')) ?? [];
  t.equal(warned.length, garbage.length, 'one warning per bad payload, with no content in it');
  t.notOk(warned.join('').includes('nobody'));
});
