/**
 * The project's own Dockerfile, nginx/Dockerfile and docker-compose.yml, built and run for real: the same checks
 * as test/gateway.test.ts (which runs the topology without Docker), through the published HTTPS port with the
 * gateway's generated certificate as the only trust. Base images are deploy/base-images.sh's local stand-ins
 * (no registry is reached); nothing else in the compose file is changed. Skips, saying why, when no Docker
 * engine answers or no compose command is installed.
 */
import { execFile, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { copyFileSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import WebSocket from 'ws';
import { makeCertificates } from '../deploy/certificates.js';
import type { WebSocketLike } from '../src/client.js';
import { chats, talking } from './fixtures/chatters.js';
import { freePort } from './fixtures/redis.js';
import { steadyCounts } from './fixtures/steady.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const RELAYS = ['relay1', 'relay2', 'relay3'] as const;
const SERVICES = [...RELAYS, 'redis', 'nginx'] as const;
/** deploy/base-images.sh's stand-ins for node:20-bookworm-slim, nginx and redis. */
const BASE_IMAGES = ['relay-base/node:20', 'relay-base/nginx:bookworm', 'relay-base/redis:bookworm'] as const;

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

/** Runs a command to its end (never throws): exit code and output. */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 600_000): Promise<Run> {
  return new Promise((resolve) => {
    execFile(cmd, args, { cwd: ROOT, env, timeout: timeoutMs, maxBuffer: 64 * 1024 * 1024 }, (err, stdout, stderr) => {
      const code = err ? (typeof err.code === 'number' ? err.code : 1) : 0;
      resolve({ code, stdout: stdout.toString(), stderr: stderr.toString() });
    });
  });
}

/** Runs a command that must succeed; its stdout, or an error with the end of its output. */
async function must(cmd: string, args: string[], env?: NodeJS.ProcessEnv, timeoutMs?: number): Promise<string> {
  const r = await run(cmd, args, env, timeoutMs);
  if (r.code !== 0)
    throw new Error(`${cmd} ${args.join(' ')} exited ${r.code}:\n${`${r.stdout}\n${r.stderr}`.trim().slice(-3000)}`);
  return r.stdout;
}

/** Why this test cannot run here, or null. */
function unavailable(): string | null {
  const info = spawnSync('docker', ['info', '--format', '{{.ServerVersion}}'], { encoding: 'utf8', timeout: 20_000 });
  if (info.error) return `no docker command (${(info.error as NodeJS.ErrnoException).code ?? info.error.message})`;
  if (info.status !== 0) return `no Docker engine answers (\`docker info\`: ${info.stderr.trim().split('\n')[0]})`;
  const missing = BASE_IMAGES.filter(
    (i) => spawnSync('docker', ['image', 'inspect', i], { timeout: 20_000 }).status !== 0,
  );
  if (missing.length > 0 && process.getuid?.() !== 0)
    return `no ${missing.join(', ')}, and only root can make them (deploy/base-images.sh runs debootstrap)`;
  return null;
}

/** `docker compose` (v2) where the plugin is installed, else `docker-compose` (v1), else null. */
function composeCommand(): string[] | null {
  if (spawnSync('docker', ['compose', 'version'], { timeout: 20_000 }).status === 0) return ['docker', 'compose'];
  if (spawnSync('docker-compose', ['version'], { timeout: 20_000 }).status === 0) return ['docker-compose'];
  return null;
}

const why = unavailable();
const compose = why ? null : composeCommand();
if (why || !compose) {
  const reason = `${why ?? 'no compose command (neither `docker compose` nor `docker-compose`)'}: the container test needs one (.ci/run starts dockerd when it runs as root)`;
  console.log(`docker.test: skipped: ${reason}`);
  t.plan(0, reason);
} else {
  await main(compose);
}

/** The open-file limit the engine lets a container have: this machine's hard limit, at most the compose defaults. */
function fileLimit(fallback: number): string {
  const hard = spawnSync('sh', ['-c', 'ulimit -Hn'], { encoding: 'utf8' }).stdout.trim();
  return hard === 'unlimited' || !/^\d+$/.test(hard) ? String(fallback) : String(Math.min(Number(hard), fallback));
}

async function main(composeCmd: string[]): Promise<void> {
  // Cold (no base image, no build cache): about 6 minutes of builds on a busy 2-core machine before any check.
  t.setTimeout(15 * 60_000);
  const project = `relaytest${randomBytes(4).toString('hex')}`;
  // Chosen just before `up` (see below), when the builds are done.
  let httpsPort = 0;
  let httpPort = 0;
  let origin = '';
  const env: NodeJS.ProcessEnv = {
    ...process.env,
    // Only the base images differ from a user's `docker compose up`, and the tags of what is built here.
    NODE_IMAGE: BASE_IMAGES[0],
    NGINX_IMAGE: BASE_IMAGES[1],
    REDIS_IMAGE: BASE_IMAGES[2],
    RELAY_IMAGE: 'relay:docker-test',
    GATEWAY_IMAGE: 'relay-gateway:docker-test',
    RELAY_NOFILE: fileLimit(65_536),
    GATEWAY_NOFILE: fileLimit(131_072),
    LOG_LEVEL: 'info',
  };
  const choosePorts = async () => {
    httpsPort = await freePort();
    httpPort = await freePort();
    origin = `https://127.0.0.1:${httpsPort}`;
    // Published on loopback only.
    env.HTTPS_PORT = `127.0.0.1:${httpsPort}`;
    env.HTTP_PORT = `127.0.0.1:${httpPort}`;
    env.ALLOWED_ORIGINS = origin;
  };
  const [cmd, ...base] = composeCmd as [string, ...string[]];
  const dc = (args: string[], timeoutMs?: number) => must(cmd, [...base, '-p', project, ...args], env, timeoutMs);
  const down = () => run(cmd, [...base, '-p', project, 'down', '-v', '--remove-orphans'], env, 120_000);
  let downDone = false;
  t.teardown(async () => {
    if (!downDone) await down();
  });

  const containers = new Map<string, string>();
  const id = (service: string) => {
    const c = containers.get(service);
    if (!c) throw new Error(`no container for ${service}`);
    return c;
  };
  const inspect = async (service: string, format: string) =>
    (await must('docker', ['inspect', '-f', format, id(service)])).trim();

  let ca = '';
  await t.test('base images, build, and every service up and healthy', async (t) => {
    const started = Date.now();
    // A run killed before its teardown (a timeout, Ctrl-C) leaves its project: gone after 30 minutes, longer
    // than any run may take, so a run going on beside this one is never touched.
    const leftovers = await run('docker', ['ps', '-aq', '--filter', 'label=com.docker.compose.project']);
    for (const c of leftovers.stdout.split('\n').filter(Boolean)) {
      const info = await run('docker', [
        'inspect',
        '-f',
        '{{index .Config.Labels "com.docker.compose.project"}} {{.Created}}',
        c,
      ]);
      const [name, created] = info.stdout.trim().split(' ');
      if (name && /^relaytest[0-9a-f]{8}$/.test(name) && Date.now() - Date.parse(created ?? '') > 30 * 60_000) {
        t.comment(`removing ${name}, left by an earlier run`);
        await run(cmd, [...base, '-p', name, 'down', '-v', '--remove-orphans'], env, 120_000);
      }
    }
    await must('bash', ['deploy/base-images.sh'], process.env, 600_000);
    await dc(['build'], 900_000);
    t.comment(`base images and build: ${Math.round((Date.now() - started) / 1000)} s`);
    // A free port can be taken by another process before docker binds it (a busy machine): then new ones.
    let up: Run = { code: 1, stdout: '', stderr: '' };
    for (let attempt = 1; attempt <= 3; attempt++) {
      await choosePorts();
      up = await run(cmd, [...base, '-p', project, 'up', '-d'], env, 300_000);
      if (up.code === 0 || !/address already in use/.test(up.stderr)) break;
      t.comment(`port ${httpsPort} or ${httpPort} was taken before docker bound it: again with others`);
      await down();
    }
    t.equal(up.code, 0, `up -d${up.code ? `: ${up.stderr.trim().split('\n').slice(-3).join(' | ')}` : ''}`);
    for (const service of ['secrets', ...SERVICES]) {
      const c = (await dc(['ps', '-q', service])).trim();
      t.match(c, /^[0-9a-f]{12,}$/, `${service} has a container`);
      containers.set(service, c);
    }
    const deadline = Date.now() + 120_000;
    let states: string[] = [];
    for (;;) {
      states = await Promise.all(
        SERVICES.map((s) => inspect(s, '{{.State.Status}} {{if .State.Health}}{{.State.Health.Status}}{{end}}')),
      );
      if (states.every((s) => s === 'running healthy') || Date.now() > deadline) break;
      await sleep(1000);
    }
    for (const [i, s] of SERVICES.entries()) t.equal(states[i], 'running healthy', `${s} is running and healthy`);
    t.equal(await inspect('secrets', '{{.State.Status}} {{.State.ExitCode}}'), 'exited 0', 'the secrets job ran once');
    t.comment(`up and healthy: ${Math.round((Date.now() - started) / 1000)} s after the start`);
    if (!states.every((s) => s === 'running healthy')) {
      const health = await Promise.all(
        SERVICES.map((s) => inspect(s, `${s} {{if .State.Health}}{{json .State.Health.Log}}{{end}}`)),
      );
      const logs = await run(cmd, [...base, '-p', project, 'logs', '--no-color', '--tail', '20'], env);
      t.comment(`${health.join('\n').slice(-3000)}\n${logs.stdout.slice(-4000)}`);
      return;
    }
    // Everything below talks to the gateway as a browser would, with the certificate it made as the only trust.
    ca = await must('docker', ['exec', id('nginx'), 'cat', '/etc/nginx/certs/fullchain.pem']);
    t.match(ca, /^-----BEGIN CERTIFICATE-----/, 'the gateway made its certificate');
  });
  // Not up: the checks below would only fail again (the failures above say why; the teardown runs `down -v`).
  if (!ca) return;

  const wss = (route?: string) => `wss://127.0.0.1:${httpsPort}/ws${route ? `?route=${route}` : ''}`;
  const newRoute = () => randomBytes(12).toString('base64url');
  const routes: string[] = [];
  const route = () => {
    const r = newRoute();
    routes.push(r);
    return r;
  };
  const tls = { ca, origin };
  const secureSocket = (u: string) => new WebSocket(u, { ca, headers: { Origin: origin } }) as unknown as WebSocketLike;
  const stopped = new Set<string>();

  /**
   * Open WebSockets on each relay (null: not reachable), from its own /metrics on the private network, as Prometheus
   * reads them. Asked from inside a running relay's container with bash's /dev/tcp: a `node -e` there takes seconds
   * to start on a busy host, and this runs a few times per socket.
   */
  async function connectionsPerRelay(): Promise<(number | null)[]> {
    const via = RELAYS.find((r) => !stopped.has(r));
    if (!via) throw new Error('no relay running');
    // One relay's count: an HTTP/1.1 GET over /dev/tcp, the first relay_connections line of the answer.
    const one = String.raw`exec 3<>"/dev/tcp/$0/8080" && printf 'GET /metrics HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n' "$0" >&3 && grep -a -m1 -E '^relay_connections(\{[^}]*\})? [0-9]+' <&3`;
    const all = `for h in ${RELAYS.join(' ')}; do n=$(timeout 3 bash -c "$1" "$h" 2>/dev/null) && echo "\${n##* }" || echo null; done`;
    const out = await must('docker', ['exec', id(via), 'bash', '-c', all, 'metrics', one]);
    const counts = out
      .trim()
      .split('\n')
      .map((l) => (l.trim() === 'null' ? null : Number(l.trim())));
    if (counts.length !== RELAYS.length || counts.some((n) => Number.isNaN(n))) throw new Error(`metrics: ${out}`);
    return counts;
  }

  /** Opens a socket through the gateway with `r` as its routing key, says hello, and says which relay took it. */
  async function openOn(r: string): Promise<{ client: TestClient; relay: number }> {
    const before = await steadyCounts(connectionsPerRelay, 300, 5000);
    // Hello at once: finding the relay takes a few `docker exec`s, longer than a hello may wait on a busy host.
    const [client] = await TestClient.hello(wss(r), tls);
    for (let tries = 0; tries < 20; tries++) {
      const after = await connectionsPerRelay();
      const relay = after.findIndex((n, i) => n !== null && n === (before[i] ?? 0) + 1);
      if (relay >= 0) return { client, relay };
      await sleep(100);
    }
    throw new Error('could not tell which relay took the socket');
  }

  interface Answer {
    status: number;
    headers: Record<string, string | string[] | undefined>;
    body: string;
  }
  const get = (url: string, trust = ca): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const request = url.startsWith('https:') ? httpsRequest : httpRequest;
      const req = request(url, { ca: trust }, (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      });
      req.on('error', reject);
      req.end();
    });

  await t.test(
    'only the gateway is published; the private network has no way out; secrets for uid 1000 only',
    async (t) => {
      for (const s of ['secrets', ...SERVICES]) {
        const ports = (await must('docker', ['port', id(s)])).trim();
        if (s === 'nginx')
          t.match(ports, new RegExp(`443/tcp -> 127\\.0\\.0\\.1:${httpsPort}`), 'nginx publishes HTTPS');
        else t.equal(ports, '', `${s} publishes nothing`);
      }
      const internal = (
        await must('docker', ['network', 'inspect', '-f', '{{.Internal}}', `${project}_private`])
      ).trim();
      t.equal(internal, 'true', 'the private network is internal');
      t.equal((await must('docker', ['exec', id('relay1'), 'id', '-u'])).trim(), '1000', 'the relay runs as uid 1000');
      t.equal(
        (
          await must('docker', ['exec', id('relay1'), 'stat', '-c', '%a %u', '/run/relay-secrets/cluster_secret'])
        ).trim(),
        '440 1000',
        'the cluster secret is readable by the relay user only (and root)',
      );
      t.equal(
        (await must('docker', ['exec', id('relay1'), 'cat', '/proc/1/comm'])).trim(),
        'tini',
        'tini is PID 1 (signals reach node, zombies are reaped)',
      );
    },
  );

  await t.test('Redis: a password, and no persistence', async (t) => {
    const cli = async (auth: boolean, ...args: string[]) => {
      const password = auth ? 'REDISCLI_AUTH="$(cat /run/relay-secrets/redis_password)" ' : '';
      const r = await run('docker', ['exec', id('redis'), 'sh', '-c', `${password}redis-cli ${args.join(' ')}`]);
      return `${r.stdout}${r.stderr}`.split('\n');
    };
    t.match((await cli(false, 'ping'))[0], /NOAUTH/, 'refused without the password');
    t.equal((await cli(true, 'ping'))[0], 'PONG');
    t.same((await cli(true, 'config', 'get', 'save')).slice(0, 2), ['save', ''], 'no snapshots');
    t.same((await cli(true, 'config', 'get', 'appendonly')).slice(0, 2), ['appendonly', 'no'], 'no AOF');
  });

  await t.test('HTTPS on the published port serves the page; HTTP redirects; private paths refused', async (t) => {
    const page = await get(`${origin}/`);
    t.equal(page.status, 200);
    t.match(page.body, /<html/);
    t.match(String(page.headers['strict-transport-security']), /max-age=\d{8}/);
    t.ok(page.headers['content-security-policy'], 'the relay sets its CSP');
    t.equal(page.headers.server, 'nginx', 'nginx does not say its version');
    const redirect = await get(`http://127.0.0.1:${httpPort}/some/path?x=1`);
    t.equal(redirect.status, 301);
    // The rendered config redirects to the standard port (443) of the same host: this test publishes another one.
    t.equal(redirect.headers.location, 'https://127.0.0.1/some/path?x=1');
    for (const path of ['/metrics', '/readyz']) t.equal((await get(`${origin}${path}`)).status, 404, `${path} refused`);
    t.equal((await get(`${origin}/healthz`)).status, 200);
  });

  await t.test('two clients pair and chat across relays over wss://', async (t) => {
    const a = await openOn(route());
    let b = await openOn(route());
    for (let tries = 0; b.relay === a.relay && tries < 20; tries++) {
      b.client.close();
      await b.client.closed;
      b = await openOn(route());
    }
    t.not(a.relay, b.relay, `on two different relays (relay${a.relay + 1} and relay${b.relay + 1})`);
    a.client.send({ type: 'find', interests: ['docker-pair'] });
    await a.client.next('queued');
    b.client.send({ type: 'find', interests: ['docker-pair'] });
    t.equal((await a.client.next('matched')).chat, (await b.client.next('matched')).chat, 'matched to each other');
    a.client.send({ type: 'msg', id: 'm1', body: 'secret body across containers' });
    t.match(await b.client.next('msg'), { body: 'secret body across containers' });
    b.client.send({ type: 'msg', id: 'r1', body: 'secret reply across containers' });
    t.match(await a.client.next('msg'), { body: 'secret reply across containers' });
    a.client.close();
    b.client.close();
    await Promise.all([a.client.closed, b.client.closed]);
  });

  await t.test('docker stop on one relay: it drains, exits 0, and its clients move on with nothing lost', async (t) => {
    // 12 sockets from one address: within the gateway's 20 per address even while the moved ones reconnect.
    const pairs = await chats(
      6,
      () => {
        const r = route();
        return () => wss(r);
      },
      secureSocket,
    );
    const busy = talking(t, pairs, 40);
    await sleep(800);
    const counts = await connectionsPerRelay();
    const victim = counts.reduce<number>((best, n, i) => ((n ?? 0) > (counts[best] ?? 0) ? i : best), 0);
    const name = RELAYS[victim] as string;
    t.ok((counts[victim] ?? 0) > 0, `${name} holds ${counts[victim]} of the 12 chatters (${JSON.stringify(counts)})`);
    const since = Date.now();
    await must('docker', ['stop', id(name)], env, 60_000);
    stopped.add(name);
    t.comment(`docker stop ${name}: ${Date.now() - since} ms`);
    t.equal(await inspect(name, '{{.State.ExitCode}}'), '0', 'a clean exit, code 0');
    const lines = (await must('docker', ['logs', id(name)])).split('\n').filter((l) => l.startsWith('{'));
    const msgs = lines.map((l) => (JSON.parse(l) as { msg?: string }).msg);
    const draining = msgs.indexOf('draining');
    t.ok(draining >= 0, 'its log says draining');
    t.match(lines[draining] ?? '', /"signal":"SIGTERM"/, 'on SIGTERM (docker stop, through tini)');
    t.ok(msgs.indexOf('closed') > draining, 'then closed');
    await busy.settled(30_000);
    const now = await connectionsPerRelay();
    t.equal(now[victim], null, `${name} is gone`);
    const rest = now.reduce<number>((s, n) => s + (n ?? 0), 0);
    t.ok(rest >= 12, `every chatter is connected to the other two relays (${JSON.stringify(now)})`);
  });

  await t.test('the stopped relay started again is healthy and takes new sockets through the gateway', async (t) => {
    const name = RELAYS.find((r) => stopped.has(r));
    if (!name) throw new Error('no relay was stopped');
    await dc(['start', name], 60_000);
    stopped.delete(name);
    const deadline = Date.now() + 60_000;
    let health = '';
    while (Date.now() < deadline) {
      health = await inspect(name, '{{.State.Health.Status}}');
      if (health === 'healthy') break;
      await sleep(1000);
    }
    t.equal(health, 'healthy', `${name} is healthy again`);
    // nginx resolved the relays' names when it started: the restarted container must still be reachable there.
    const index = RELAYS.indexOf(name as (typeof RELAYS)[number]);
    let landed = false;
    for (let tries = 0; tries < 12 && !landed; tries++) {
      const { client, relay } = await openOn(route());
      landed = relay === index;
      client.close();
      await client.closed;
    }
    t.ok(landed, `new sockets reach ${name} again`);
  });

  await t.test('no routing key, client address or message body in any log line', async (t) => {
    const logs = (await dc(['logs', '--no-color'])).split('\n');
    t.ok(
      logs.some((l) => l.includes('"path":"/ws"')),
      'the gateway wrote access lines',
    );
    const gateway = (
      await must('docker', ['network', 'inspect', '-f', '{{range .IPAM.Config}}{{.Gateway}}{{end}}', `${project}_edge`])
    ).trim();
    t.match(
      gateway,
      /^\d+\.\d+\.\d+\.\d+$/,
      `the clients' address as the gateway sees it: the edge network's ${gateway}`,
    );
    const address = new RegExp(`(^|[^\\d.])${gateway.replaceAll('.', '\\.')}($|[^\\d])`);
    const leaks = logs.filter(
      (l) =>
        routes.some((r) => l.includes(r)) ||
        l.includes('route=') ||
        address.test(l) ||
        l.includes('secret body') ||
        l.includes('secret reply') ||
        /"body"/.test(l),
    );
    t.same(leaks, [], 'none in the logs of nginx, the relays, Redis or the secrets job');
  });

  await t.test('CERTS_DIR: a mounted certificate is served instead of the generated one', async (t) => {
    const dir = mkdtempSync(join(tmpdir(), 'relay-certs-'));
    t.teardown(() => rmSync(dir, { recursive: true, force: true }));
    const made = makeCertificates(dir);
    copyFileSync(made.cert, join(dir, 'fullchain.pem'));
    copyFileSync(made.key, join(dir, 'privkey.pem'));
    // The user's way: the same command with CERTS_DIR set; only the gateway is recreated.
    await must(cmd, [...base, '-p', project, 'up', '-d', '--no-deps', 'nginx'], { ...env, CERTS_DIR: dir }, 120_000);
    containers.set('nginx', (await dc(['ps', '-q', 'nginx'])).trim());
    const deadline = Date.now() + 60_000;
    let health = '';
    while (Date.now() < deadline) {
      health = await inspect('nginx', '{{.State.Health.Status}}');
      if (health === 'healthy') break;
      await sleep(1000);
    }
    t.equal(health, 'healthy', 'the gateway is healthy with the mounted certificate');
    const logs = await run('docker', ['logs', id('nginx')]);
    t.match(logs.stderr, /using the certificate in \/etc\/nginx\/certs/, 'it says it uses the mounted one');
    const page = await get(`${origin}/`, readFileSync(made.ca, 'utf8'));
    t.equal(page.status, 200, 'HTTPS verifies against the CA that signed the mounted certificate');
    await t.rejects(get(`${origin}/`), 'and no longer against the generated one');
  });

  await t.test('down -v leaves no container, network or volume of the project', async (t) => {
    const r = await down();
    downDone = true;
    t.equal(r.code, 0, `down -v: ${r.stderr.trim().split('\n').slice(-3).join(' | ')}`);
    const label = `label=com.docker.compose.project=${project}`;
    t.equal((await must('docker', ['ps', '-aq', '--filter', label])).trim(), '', 'no container');
    const named = (out: string) =>
      out.split('\n').filter((n) => n.startsWith(`${project}_`) || n.startsWith(`${project}-`));
    t.same(named(await must('docker', ['ps', '-a', '--format', '{{.Names}}'])), [], 'no container by name');
    t.same(named(await must('docker', ['network', 'ls', '--format', '{{.Name}}'])), [], 'no network');
    t.same(named(await must('docker', ['volume', 'ls', '--format', '{{.Name}}'])), [], 'no volume');
  });
}
