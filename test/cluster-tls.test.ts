/**
 * `rediss://`: instances reach Redis over TLS (a password in the URL too) and
 * form one relay; the certificate is checked against the CA Node trusts
 * (NODE_EXTRA_CA_CERTS for a private CA), so an instance that does not trust
 * it stays up, degraded, and says why without a word of the secret.
 */
import { Redis } from 'ioredis';
import t from 'tap';
import { CLUSTER_SECRET } from './fixtures/cluster.js';
import { startRedis } from './fixtures/redis.js';
import { spawnRelay } from './fixtures/relay-process.js';
import { makeCertificates } from './fixtures/tls.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

const PASSWORD = 'tls-test-password-9f2c';

t.test('rediss://: two instances over TLS with a password form one relay', async (t) => {
  const certs = makeCertificates();
  const redis = await startRedis({ password: PASSWORD, tls: certs });
  t.teardown(redis.stop);
  t.match(redis.url, /^rediss:\/\//);
  const env = (id: string) => ({
    REDIS_URL: redis.url,
    CLUSTER_SECRET,
    INSTANCE_ID: id,
    NODE_EXTRA_CA_CERTS: certs.ca,
  });
  const [n0, n1] = await Promise.all([spawnRelay(env('t0')), spawnRelay(env('t1'))]);
  t.teardown(() => {
    n0?.kill('SIGKILL');
    n1?.kill('SIGKILL');
  });
  if (!n0 || !n1) throw new Error('unreachable');
  for (const n of [n0, n1]) t.same(await (await fetch(`${n.http}/readyz`)).json(), { status: 'ready', broker: 'up' });

  // Every connection of both instances came in on the TLS port, none on the plain one.
  const admin = new Redis(redis.options);
  t.teardown(() => admin.disconnect());
  const clients = String(await admin.client('LIST'))
    .trim()
    .split('\n')
    .filter((l) => /name=relay-t[01]/.test(l));
  t.equal(clients.length, 4, 'two connections per instance (commands, subscriber)');
  t.ok(
    clients.every((l) => l.includes(`laddr=127.0.0.1:${redis.tlsPort} `)),
    'all on the TLS port',
  );

  const [a] = await TestClient.hello(n0.url);
  const [b] = await TestClient.hello(n1.url);
  a.send({ type: 'find' });
  await a.next('queued');
  b.send({ type: 'find' });
  const ma = await a.next('matched');
  t.equal((await b.next('matched')).chat, ma.chat, 'paired across the two instances');
  a.send({ type: 'msg', id: 'm1', body: 'over TLS' });
  t.match(await a.next('sent'), { id: 'm1', seq: 1 });
  t.match(await b.next('msg'), { body: 'over TLS' });
  a.close();
  b.close();
});

t.test('rediss:// to a certificate the instance does not trust: up, degraded, and the log says why', async (t) => {
  const certs = makeCertificates();
  const redis = await startRedis({ password: PASSWORD, tls: certs });
  t.teardown(redis.stop);
  // No NODE_EXTRA_CA_CERTS: Node's own CAs do not know this one.
  const relay = await spawnRelay({ REDIS_URL: redis.url, CLUSTER_SECRET, INSTANCE_ID: 'untrusting' });
  t.teardown(() => relay.kill('SIGKILL'));
  t.match(await (await fetch(`${relay.http}/readyz`)).json(), { status: 'degraded', broker: 'down' });
  await sleep(1500);
  t.equal(relay.child.exitCode, null, 'still running: no crash, no crash loop');
  const [a] = await TestClient.hello(relay.url);
  a.send({ type: 'find' });
  t.match(await a.next('queued'), { type: 'queued' }, 'serves its own visitors alone');
  a.close();
  const log = JSON.stringify(relay.logs) + relay.stderr();
  t.notOk(log.includes(PASSWORD), 'the password is not in the log');
  t.notOk(log.includes(CLUSTER_SECRET), 'the secret is not in the log');
  t.match(log, /certificate/, 'the log names the certificate problem');
});
