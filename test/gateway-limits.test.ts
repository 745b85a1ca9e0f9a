/**
 * The gateway's defences and its optional inner TLS, on loopback: nginx's
 * per-address limits with the shipped defaults, the client address the relay
 * sees (nginx's, never one the client wrote), and TLS from nginx to relays
 * that serve HTTPS themselves (TLS_CERT_FILE) — zero trust inside the network.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request } from 'node:https';
import t from 'tap';
import WebSocket from 'ws';
import { getJson, startLocalCluster } from '../deploy/cluster.js';
import { DEFAULT_LIMITS } from '../deploy/nginx-config.js';
import { freePort } from './fixtures/redis.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

const httpsPort = await freePort();
const cluster = await startLocalCluster({
  instances: 2,
  httpsPort,
  httpPort: await freePort(),
  relayPorts: [await freePort(), await freePort()],
  redisPort: await freePort(),
  relayTls: true,
  // The relay's own per-address socket cap off, so a refusal below is nginx's; its session cap low, to see
  // which address it counts.
  relayEnv: { MAX_CONNECTIONS_PER_ADDRESS: '0', MAX_SESSIONS_PER_ADDRESS: '3', LOG_LEVEL: 'warn' },
  output: () => {},
});
t.teardown(() => cluster.stop());
const ca = readFileSync(cluster.ca, 'utf8');
const origin = `https://127.0.0.1:${httpsPort}`;
const wss = `wss://127.0.0.1:${httpsPort}/ws`;

/** Opens a socket from `localAddress`; the HTTP status if the upgrade was refused. */
function upgrade(
  localAddress: string,
  headers: Record<string, string> = {},
  route = randomBytes(9).toString('base64url'),
): Promise<WebSocket | number> {
  return new Promise((resolve) => {
    const ws = new WebSocket(`${wss}?route=${route}`, {
      ca,
      localAddress,
      headers: { Origin: origin, ...headers },
    });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => resolve(res.statusCode ?? 0));
    ws.once('error', () => resolve(0));
  });
}

t.test('TLS from nginx to the relays: a chat goes through; each relay speaks only HTTPS', async (t) => {
  const a = await TestClient.open(`${wss}?route=aaaaaaaaaa`, { ca, origin });
  const b = await TestClient.open(`${wss}?route=bbbbbbbbbb`, { ca, origin });
  for (const c of [a, b]) c.send({ type: 'hello', v: 1 });
  await a.next('welcome');
  await b.next('welcome');
  a.send({ type: 'find', interests: ['inner-tls'] });
  await a.next('queued');
  b.send({ type: 'find', interests: ['inner-tls'] });
  await a.next('matched');
  await b.next('matched');
  a.send({ type: 'msg', id: 'm1', body: 'tls all the way' });
  t.match(await b.next('msg'), { body: 'tls all the way' });
  a.close();
  b.close();
  const relay = cluster.instances[0];
  if (!relay) throw new Error('no instance');
  t.match(relay.http, /^https:/);
  t.same(await getJson(`${relay.http}/readyz`, cluster.ca), { status: 200, body: { status: 'ready', broker: 'up' } });
  const plain = await fetch(relay.http.replace('https:', 'http:'))
    .then((r) => r.status)
    .catch(() => 'refused');
  t.equal(plain, 'refused', 'plain HTTP to a relay gets no answer');
});

t.test(
  `at most ${DEFAULT_LIMITS.wsConnectionsPerAddress} WebSockets per address at the gateway (429 beyond)`,
  async (t) => {
    const results = await Promise.all(Array.from({ length: 25 }, () => upgrade('127.0.0.5')));
    const open = results.filter((r): r is WebSocket => typeof r !== 'number');
    const refused = results.filter((r) => r === 429);
    t.equal(open.length, DEFAULT_LIMITS.wsConnectionsPerAddress);
    t.equal(refused.length, 25 - DEFAULT_LIMITS.wsConnectionsPerAddress, 'the rest answered 429 by nginx');
    // Another address is not affected.
    const other = await upgrade('127.0.0.6');
    t.type(other, WebSocket, 'another address still gets in');
    for (const ws of open) ws.close();
    if (typeof other !== 'number') other.close();
    await sleep(300);
    const again = await upgrade('127.0.0.5');
    t.type(again, WebSocket, 'room again once they closed');
    if (typeof again !== 'number') again.close();
  },
);

t.test('/api/ requests per address are rate-limited at the gateway', async (t) => {
  const statuses = await Promise.all(
    Array.from(
      { length: 60 },
      () =>
        new Promise<number>((resolve) => {
          const req = request(
            `https://127.0.0.1:${httpsPort}/api/v1/nothing-here`,
            { ca, localAddress: '127.0.0.7', agent: false },
            (res) => {
              res.resume();
              resolve(res.statusCode ?? 0);
            },
          );
          req.on('error', () => resolve(0));
          req.end();
        }),
    ),
  );
  const limited = statuses.filter((s) => s === 429).length;
  t.ok(limited >= 60 - (DEFAULT_LIMITS.apiBurst + 1 + 5), `${limited} of 60 answered 429`);
  t.ok(
    statuses.every((s) => s === 429 || s === 404),
    'the others reached the relay',
  );
});

t.test('the relay counts the address nginx saw, not one the client wrote in X-Forwarded-For', async (t) => {
  const sessions: TestClient[] = [];
  const closes: number[] = [];
  // One routing key: all four reach the same instance (the session cap is per instance).
  for (let i = 0; i < 4; i++) {
    const ws = await upgrade('127.0.0.8', { 'X-Forwarded-For': `198.51.100.${i + 1}` }, 'same-instance-key');
    if (typeof ws === 'number') throw new Error(`upgrade refused: ${ws}`);
    const c = new TestClient(ws);
    c.send({ type: 'hello', v: 1 });
    const first = await Promise.race([c.next('welcome').then(() => 0), c.closed.then((x) => x.code)]);
    if (first === 0) sessions.push(c);
    else closes.push(first);
  }
  t.equal(sessions.length, 3, 'three sessions (MAX_SESSIONS_PER_ADDRESS) from one real address');
  t.same(closes, [4430], 'the fourth is refused: too_many_sessions, whatever X-Forwarded-For said');
  for (const c of sessions) c.close();
});
