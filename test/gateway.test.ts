/**
 * The production topology without Docker (`npm run cluster`'s startLocalCluster):
 * Debian's nginx terminating TLS with a generated certificate in front of three
 * relay processes on one Redis. Everything goes through wss:// and https:// as
 * a user's browser would, with the CA of that run as the only trust.
 */
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { createServer as createTlsServer, type SecureVersion, connect as tlsConnect } from 'node:tls';
import t from 'tap';
import WebSocket from 'ws';
import { type LocalCluster, startLocalCluster } from '../deploy/cluster.js';
import { COMPOSE_CONFIG, composeGateway, redactErrorLine, renderGateway } from '../deploy/nginx-config.js';
import type { WebSocketLike } from '../src/client.js';
import { chats, talking } from './fixtures/chatters.js';
import { freePort } from './fixtures/redis.js';
import { steadyCounts } from './fixtures/steady.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

const logs: string[] = [];
const httpsPort = await freePort();
const httpPort = await freePort();
const cluster: LocalCluster = await startLocalCluster({
  instances: 3,
  httpsPort,
  httpPort,
  relayPorts: [await freePort(), await freePort(), await freePort()],
  redisPort: await freePort(),
  relayEnv: {
    MAX_CONNECTIONS_PER_ADDRESS: '0',
    MAX_SESSIONS_PER_ADDRESS: '0',
    DRAIN_GRACE_MS: '1000',
    LOG_LEVEL: 'info',
  },
  // Every test client comes from 127.0.0.1: the per-address limits are tested on their own below.
  limits: { wsConnectionsPerAddress: 5000, upgradesPerSecond: 5000, upgradesBurst: 5000 },
  workerShutdownTimeout: '3s',
  output: (source, line) => logs.push(`${source} ${line}`),
});
t.teardown(() => cluster.stop());
const ca = readFileSync(cluster.ca, 'utf8');
const origin = `https://127.0.0.1:${httpsPort}`;
const wss = (route?: string) => `wss://127.0.0.1:${httpsPort}/ws${route ? `?route=${route}` : ''}`;
const newRoute = () => randomBytes(12).toString('base64url');
const tls = { ca, origin };
const secureSocket = (u: string) => new WebSocket(u, { ca, headers: { Origin: origin } }) as unknown as WebSocketLike;

interface Answer {
  status: number;
  headers: string[];
  body: string;
}

function get(url: string, headers: Record<string, string> = {}): Promise<Answer> {
  const u = new URL(url);
  const request = u.protocol === 'https:' ? httpsRequest : httpRequest;
  return new Promise((resolve, reject) => {
    const req = request(url, { ca, headers, servername: 'localhost' }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.rawHeaders, body }));
    });
    req.on('error', reject);
    req.end();
  });
}

const header = (a: Answer, name: string) =>
  a.headers.filter((_, i) => i % 2 === 0 && a.headers[i]?.toLowerCase() === name.toLowerCase()).length;
const headerValue = (a: Answer, name: string) =>
  a.headers[a.headers.findIndex((h, i) => i % 2 === 0 && h.toLowerCase() === name.toLowerCase()) + 1];

/** Open WebSockets on each instance, from its own /metrics (reached directly, as Prometheus does). */
async function connectionsPerInstance(): Promise<number[]> {
  return Promise.all(
    cluster.instances.map(async (i) => {
      if (i.process.exitCode !== null) return 0;
      const text = await (await fetch(`${i.http}/metrics`)).text();
      return Number(/^relay_connections(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? Number.NaN);
    }),
  );
}

/** Waits (up to 3 s) until instance `i` holds `count` sockets; whether it did. */
async function settle(count: number | undefined, i: number): Promise<boolean> {
  const deadline = Date.now() + 3000;
  while (Date.now() < deadline) {
    if ((await connectionsPerInstance())[i] === count) return true;
    await sleep(25);
  }
  return false;
}

/** Opens a socket with `route` and says which instance took it. */
async function openOn(route: string): Promise<{ client: TestClient; instance: number }> {
  const before = await steadyCounts(connectionsPerInstance);
  const client = await TestClient.open(wss(route), tls);
  // Once welcomed, the socket is surely counted by its instance.
  client.send({ type: 'hello', v: 1 });
  await client.next('welcome');
  let instance = -1;
  for (let tries = 0; tries < 100 && instance < 0; tries++) {
    const after = await connectionsPerInstance();
    instance = after.findIndex((n, i) => n === (before[i] ?? 0) + 1);
    if (instance < 0) await sleep(50);
  }
  if (instance < 0) throw new Error('could not tell which instance took the socket');
  return { client, instance };
}

t.test('the page over HTTPS, with its security headers once each; HTTP redirects; private paths refused', async (t) => {
  const page = await get(`https://127.0.0.1:${httpsPort}/`);
  t.equal(page.status, 200);
  t.match(page.body, /<html/);
  for (const name of [
    'Content-Security-Policy',
    'X-Content-Type-Options',
    'Referrer-Policy',
    'Cross-Origin-Opener-Policy',
    'Cross-Origin-Resource-Policy',
    'Permissions-Policy',
    'Strict-Transport-Security',
  ])
    t.equal(header(page, name), 1, `${name} exactly once`);
  t.match(headerValue(page, 'Strict-Transport-Security'), /max-age=\d{8}/);
  t.equal(header(page, 'uWebSockets'), 0, 'the relay does not name its server');
  t.equal(headerValue(page, 'Server'), 'nginx', 'nginx does not say its version');

  const redirect = await get(`http://127.0.0.1:${httpPort}/some/path?x=1`);
  t.equal(redirect.status, 301);
  t.equal(headerValue(redirect, 'Location'), `https://127.0.0.1:${httpsPort}/some/path?x=1`);

  for (const path of ['/metrics', '/readyz']) {
    t.equal((await get(`https://127.0.0.1:${httpsPort}${path}`)).status, 404, `${path} is not reachable from outside`);
    t.equal((await fetch(`${cluster.instances[0]?.http}${path}`)).status, 200, `${path} answers on the instance`);
  }
  t.equal((await get(`https://127.0.0.1:${httpsPort}/healthz`)).status, 200);
});

t.test('TLS 1.2 and 1.3 are accepted, TLS 1.1 refused', async (t) => {
  const handshake = (port: number, version: SecureVersion, caText = ca) =>
    new Promise<string>((resolve) => {
      const socket = tlsConnect({
        host: '127.0.0.1',
        port,
        servername: 'localhost',
        ca: caText,
        minVersion: version,
        maxVersion: version,
        // TLS 1.1 needs OpenSSL's security level 0 on the client side, or the client refuses first.
        ciphers: 'DEFAULT@SECLEVEL=0',
      });
      socket.once('secureConnect', () => {
        resolve(socket.getProtocol() ?? 'unknown');
        socket.end();
      });
      socket.once('error', (err: NodeJS.ErrnoException) => resolve(`refused: ${err.code ?? err.message}`));
    });
  t.equal(await handshake(httpsPort, 'TLSv1.3'), 'TLSv1.3');
  t.equal(await handshake(httpsPort, 'TLSv1.2'), 'TLSv1.2');
  // Control: this client can speak TLS 1.1 to a server that allows it, so a refusal below is nginx's.
  const key = readFileSync(`${cluster.dir}/server.key`);
  const cert = readFileSync(`${cluster.dir}/server.pem`);
  const control = createTlsServer({ key, cert, minVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, (s) => s.end());
  await new Promise<void>((r) => control.listen(0, '127.0.0.1', r));
  t.teardown(() => control.close());
  const controlPort = (control.address() as { port: number }).port;
  t.equal(await handshake(controlPort, 'TLSv1.1'), 'TLSv1.1', 'control: TLS 1.1 works where it is allowed');
  t.match(await handshake(httpsPort, 'TLSv1.1'), /^refused/, 'nginx refuses TLS 1.1');
});

t.test('two clients pair across instances and chat over wss://', async (t) => {
  const a = await openOn(newRoute());
  let b = await openOn(newRoute());
  for (let tries = 0; b.instance === a.instance && tries < 20; tries++) {
    b.client.close();
    await b.client.closed;
    b = await openOn(newRoute());
  }
  t.not(a.instance, b.instance, 'on two different instances');
  a.client.send({ type: 'find', interests: ['gateway-pair'] });
  await a.client.next('queued');
  b.client.send({ type: 'find', interests: ['gateway-pair'] });
  t.equal((await a.client.next('matched')).chat, (await b.client.next('matched')).chat);
  a.client.send({ type: 'msg', id: 'm1', body: 'through nginx' });
  t.match(await b.client.next('msg'), { body: 'through nginx' });
  b.client.send({ type: 'msg', id: 'r1', body: 'and back' });
  t.match(await a.client.next('msg'), { body: 'and back' });
  a.client.close();
  b.client.close();
  await Promise.all([a.client.closed, b.client.closed]);
});

t.test('a client that reconnects with its routing key lands on the same instance and resumes', async (t) => {
  const route = newRoute();
  const first = await openOn(route);
  const welcome = first.client.welcome();
  const baseline = await connectionsPerInstance();
  first.client.ws.terminate();
  await first.client.closed;
  // Gone from the instance too (nginx closes its side a moment later).
  await settle((baseline[first.instance] ?? 0) - 1, first.instance);
  for (let i = 0; i < 3; i++) {
    const again = await TestClient.resume(wss(route), welcome, 0, tls);
    t.match(await again.next('welcome'), { resumed: true, id: welcome.id }, `reconnect ${i + 1} resumed`);
    t.ok(await settle(baseline[first.instance], first.instance), `reconnect ${i + 1} on the same instance`);
    again.ws.terminate();
    await again.closed;
    await settle((baseline[first.instance] ?? 0) - 1, first.instance);
  }
});

t.test('300 new clients spread over the 3 instances within 20% of even', async (t) => {
  const before = await connectionsPerInstance();
  const clients = await Promise.all(Array.from({ length: 300 }, () => TestClient.open(wss(newRoute()), tls)));
  await sleep(200);
  const after = await connectionsPerInstance();
  const added = after.map((n, i) => n - (before[i] ?? 0));
  t.equal(
    added.reduce((s, n) => s + n, 0),
    300,
  );
  for (const [i, n] of added.entries()) t.ok(n >= 80 && n <= 120, `instance ${i + 1} took ${n} of 300`);
  // Without a routing key (an old client), requests are spread too, never all on one instance.
  const keyless = await Promise.all(Array.from({ length: 60 }, () => TestClient.open(wss(), tls)));
  await sleep(200);
  const later = await connectionsPerInstance();
  const spread = later.map((n, i) => n - (after[i] ?? 0));
  t.ok(
    spread.every((n) => n > 0),
    `keyless sockets on every instance (${spread})`,
  );
  for (const c of [...clients, ...keyless]) c.close();
});

t.test('stopping one instance: its clients move to the others and resume; the other chats go on', async (t) => {
  const pairs = await chats(
    8,
    () => {
      const route = newRoute();
      return () => wss(route);
    },
    secureSocket,
  );
  const busy = talking(t, pairs, 40);
  await sleep(600);
  const victim = cluster.instances[0];
  if (!victim) throw new Error('no instance');
  const onVictim = (await connectionsPerInstance())[0] ?? 0;
  t.ok(onVictim > 0, `the stopped instance had ${onVictim} of the chatters`);
  victim.process.kill('SIGTERM');
  await victim.exited;
  t.equal(victim.process.exitCode, 0, 'it drained and exited cleanly');
  await sleep(800);
  await busy.settled(15_000);
  const now = await connectionsPerInstance();
  t.equal(now[0], 0);
  t.equal((now[1] ?? 0) + (now[2] ?? 0) >= 16, true, 'every chatter is connected to the other two');
  await cluster.restartInstance(0);
});

t.test('nginx -s reload under 1,000 open sockets: every chat goes on, nothing lost', async (t) => {
  const idle = await Promise.all(Array.from({ length: 960 }, () => TestClient.open(wss(newRoute()), tls)));
  t.teardown(() => {
    for (const c of idle) c.close();
  });
  const pairs = await chats(
    20,
    () => {
      const route = newRoute();
      return () => wss(route);
    },
    secureSocket,
  );
  const busy = talking(t, pairs, 50);
  await sleep(500);
  const open = (await connectionsPerInstance()).reduce((s, n) => s + n, 0);
  t.ok(open >= 1000, `${open} sockets open before the reload`);
  await cluster.reloadNginx();
  // Old workers keep their sockets up to worker_shutdown_timeout (3 s here), then close them; clients resume.
  await sleep(4000);
  await busy.settled(15_000);
});

t.test('the rendered compose config is current, and nginx accepts the loopback one', async (t) => {
  const committed = readFileSync(COMPOSE_CONFIG, 'utf8');
  t.equal(committed.slice(committed.indexOf('\n') + 1), renderGateway(composeGateway()), 'run `npm run render-nginx`');
  const out = execFileSync('nginx', ['-t', '-p', cluster.dir, '-c', `${cluster.dir}/nginx.conf`, '-e', 'stderr'], {
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  t.ok(out !== undefined);
});

t.test('no client address, query string or routing key in any log line', async (t) => {
  const route = newRoute();
  const c = await TestClient.open(wss(route), tls);
  c.close();
  await get(`https://127.0.0.1:${httpsPort}/ws?route=${route}`);
  await sleep(300);
  const nginxLines = logs.filter((l) => l.startsWith('nginx '));
  t.ok(
    nginxLines.some((l) => l.includes('"path":"/ws"')),
    'access lines were written',
  );
  t.same(
    logs.filter((l) => l.includes(route) || l.includes('route=') || /client: [^-]/.test(l)),
    [],
    'no routing key, query string or client address in any line of nginx, the instances or Redis',
  );
  // The filter on its own, and the same rules as the container's sed script.
  const samples = [
    '2026/11/29 04:00:00 [error] 7#7: *9 connect() failed (111: Connection refused) while connecting to upstream, client: 203.0.113.9, server: _, request: "GET /ws?route=SECRETKEY123 HTTP/1.1", upstream: "http://127.0.0.1:9001/ws?route=SECRETKEY123", host: "chat.example", referrer: "https://elsewhere.example/?q=1"',
    '2026/11/29 04:00:00 [warn] 7#7: *3 an upstream response is buffered, client: 2001:db8::1, server: _, request: "POST /api/v1/invites HTTP/1.1"',
  ];
  for (const line of samples) {
    const js = redactErrorLine(line);
    const sed = execFileSync('sed', ['-f', 'nginx/compose/redact-errors.sed'], { input: `${line}\n` })
      .toString()
      .trimEnd();
    t.equal(sed, js, 'sed and TypeScript agree');
    for (const secret of ['203.0.113.9', '2001:db8', 'SECRETKEY123', 'elsewhere.example'])
      t.notOk(js.includes(secret), `no ${secret}`);
    t.match(js, /\[(error|warn)\]/, 'the level and reason stay');
  }
  t.match(redactErrorLine(samples[0] as string), /upstream: "http:\/\/127\.0\.0\.1:9001\/ws"/, 'the instance stays');
});
