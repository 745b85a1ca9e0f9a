/**
 * `npm run cluster`: the production topology on loopback, without Docker.
 * One Redis (no persistence, a random password), N relay instances sharing a
 * random CLUSTER_SECRET, and nginx in front (TLS with a generated certificate,
 * sticky WebSocket routing), all from the distribution's nginx and
 * redis-server. Prints the public URL and each instance's local address;
 * Ctrl-C or SIGTERM drains the instances and stops everything, leaving no
 * file behind (the run directory is removed).
 *
 *   npm run cluster [-- --instances=3 --https-port=8443 --http-port=8880 --relay-port=9001 --redis-port=6390]
 *
 * `startLocalCluster` is the same as a library, for the tests and the gateway bench.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { createReadStream, existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { get as httpGet } from 'node:http';
import { get as httpsGet } from 'node:https';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { makeCertificates } from './certificates.js';
import { type GatewayLimits, localGateway, redactErrorLine, renderGateway } from './nginx-config.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

export interface LocalClusterOptions {
  instances?: number;
  httpsPort?: number;
  httpPort?: number;
  /** The first instance's port; the others follow. */
  relayPort?: number;
  /** Or each instance's port. */
  relayPorts?: number[];
  redisPort?: number;
  /** Extra environment for every instance (limits, DRAIN_GRACE_MS, LOG_LEVEL...). */
  relayEnv?: Record<string, string>;
  limits?: Partial<GatewayLimits>;
  nginxWorkers?: number;
  /** TLS from nginx to the relays too (each relay serves HTTPS with a certificate from the run's CA). */
  relayTls?: boolean;
  workerShutdownTimeout?: string;
  /** Where the instances', nginx's and Redis's output goes (default: this process's stdout and stderr). */
  output?: (source: string, line: string, stream: 'stdout' | 'stderr') => void;
}

export interface LocalInstance {
  readonly id: string;
  readonly port: number;
  /** ws://127.0.0.1:port/ws, straight to the instance (not through nginx). */
  readonly url: string;
  readonly http: string;
  process: ChildProcess;
  /** Resolves when the current process has exited. */
  exited: Promise<void>;
}

export interface LocalCluster {
  /** https://localhost:<https port>/ */
  readonly publicUrl: string;
  /** wss://localhost:<https port>/ws */
  readonly wsUrl: string;
  readonly httpsPort: number;
  readonly httpPort: number;
  /** The CA that signed nginx's certificate (trust it to check the connection). */
  readonly ca: string;
  readonly instances: LocalInstance[];
  readonly redisPassword: string;
  readonly redisPort: number;
  readonly nginxPid: number;
  readonly dir: string;
  /** Starts instance `i` again after it stopped (same id and port). */
  restartInstance(i: number): Promise<void>;
  /** `nginx -s reload`: new workers with the same configuration; old ones finish within worker_shutdown_timeout. */
  reloadNginx(): Promise<void>;
  /** Drains every instance (SIGTERM), stops nginx and Redis, removes the run directory. */
  stop(): Promise<void>;
}

type Output = NonNullable<LocalClusterOptions['output']>;

const defaultOutput: Output = (_source, line, stream) => {
  (stream === 'stdout' ? process.stdout : process.stderr).write(`${line}\n`);
};

function pipeLines(child: ChildProcess, source: string, output: Output, filter = (l: string) => l): void {
  if (child.stdout) createInterface({ input: child.stdout }).on('line', (l) => output(source, filter(l), 'stdout'));
  if (child.stderr) createInterface({ input: child.stderr }).on('line', (l) => output(source, filter(l), 'stderr'));
}

const exitOf = (child: ChildProcess): Promise<void> =>
  new Promise((resolve) => {
    if (child.exitCode !== null || child.signalCode !== null) resolve();
    else child.once('exit', () => resolve());
  });

/** GET `url` (http or https, trusting `ca`), parsed as JSON. */
export function getJson(url: string, ca: string): Promise<{ status: number; body: unknown }> {
  const get = url.startsWith('https:') ? httpsGet : httpGet;
  return new Promise((resolve, reject) => {
    const req = get(url, { ca: readFileSync(ca), timeout: 1000 }, (res) => {
      let text = '';
      res.on('data', (d: Buffer) => {
        text += d.toString();
      });
      res.on('end', () => {
        try {
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(text) });
        } catch (err) {
          reject(err);
        }
      });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
  });
}

async function waitFor(what: string, check: () => Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      if (await check()) return;
    } catch {}
    if (Date.now() > deadline) throw new Error(`${what} did not come up within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

/** Where `bin` is: on PATH, or in the sbin directories nginx lives in (often not on a user's PATH). */
function program(bin: string): string | null {
  const dirs = [...(process.env.PATH ?? '').split(delimiter), '/usr/sbin', '/usr/bin', '/sbin', '/usr/local/sbin'];
  const dir = dirs.find((d) => d && existsSync(join(d, bin)));
  return dir ? join(dir, bin) : null;
}

export async function startLocalCluster(opts: LocalClusterOptions = {}): Promise<LocalCluster> {
  const missing = ['nginx', 'redis-server', 'openssl'].filter((bin) => !program(bin));
  if (missing.length > 0)
    throw new Error(
      `needs ${missing.join(', ')}: on Debian or Ubuntu, \`sudo npm run system-deps\` or ` +
        '`sudo apt-get install -y nginx redis-server openssl`',
    );
  const n = opts.instances ?? 3;
  const httpsPort = opts.httpsPort ?? 8443;
  const httpPort = opts.httpPort ?? 8880;
  const relayPort = opts.relayPort ?? 9001;
  const redisPort = opts.redisPort ?? 6390;
  const output = opts.output ?? defaultOutput;
  const dir = mkdtempSync(join(tmpdir(), 'relay-cluster-'));
  const children: ChildProcess[] = [];
  const cleanup = () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    rmSync(dir, { recursive: true, force: true });
  };
  process.once('exit', cleanup);
  try {
    const certs = makeCertificates(dir);
    const redisPassword = randomBytes(24).toString('hex');
    // Redis: loopback only, a password, and never any persistence.
    const redis = spawn(
      program('redis-server') as string,
      [
        '--port',
        String(redisPort),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        dir,
        '--requirepass',
        redisPassword,
        '--loglevel',
        'warning',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    children.push(redis);
    pipeLines(redis, 'redis', output);

    const secret = randomBytes(32).toString('base64');
    const origin = `https://localhost${httpsPort === 443 ? '' : `:${httpsPort}`}`;
    const instances: LocalInstance[] = [];
    const launch = (i: number): LocalInstance => {
      const id = `relay${i + 1}`;
      const port = opts.relayPorts?.[i] ?? relayPort + i;
      const child = spawn(process.execPath, ['--enable-source-maps', MAIN], {
        env: {
          ...process.env,
          HOST: '127.0.0.1',
          PORT: String(port),
          INSTANCE_ID: id,
          REDIS_URL: `redis://:${redisPassword}@127.0.0.1:${redisPort}`,
          CLUSTER_SECRET: secret,
          // nginx is the only way in, and it sets X-Forwarded-For to the client's address.
          TRUST_PROXY: 'true',
          TRUST_PROXY_HOPS: '1',
          ALLOWED_ORIGINS: `${origin},https://127.0.0.1:${httpsPort}`,
          ...(opts.relayTls ? { TLS_CERT_FILE: certs.cert, TLS_KEY_FILE: certs.key } : {}),
          ...opts.relayEnv,
        },
        stdio: ['ignore', 'pipe', 'pipe'],
      });
      children.push(child);
      pipeLines(child, id, output);
      const scheme = opts.relayTls ? 's' : '';
      const instance: LocalInstance = {
        id,
        port,
        url: `ws${scheme}://127.0.0.1:${port}/ws`,
        http: `http${scheme}://127.0.0.1:${port}`,
        process: child,
        exited: exitOf(child),
      };
      return instance;
    };
    for (let i = 0; i < n; i++) instances.push(launch(i));
    const ready = (i: LocalInstance) =>
      waitFor(`${i.id} on ${i.http}`, async () => {
        if (i.process.exitCode !== null) throw new Error(`${i.id} exited with ${i.process.exitCode}`);
        const res = await getJson(`${i.http}/readyz`, certs.ca);
        return res.status === 200 && (res.body as { broker?: string }).broker === 'up';
      });
    await Promise.all(instances.map(ready));

    // nginx opens its access log by path, and a child's stdout here is a socket it cannot open: a FIFO
    // carries the lines (JSON, no address, no query string) to `output` instead.
    const accessLog = join(dir, 'access.fifo');
    execFileSync('mkfifo', ['-m', '600', accessLog]);
    const config = join(dir, 'nginx.conf');
    writeFileSync(
      config,
      renderGateway(
        localGateway({
          relays: instances.map((i) => `127.0.0.1:${i.port}`),
          dir,
          certificate: certs.cert,
          certificateKey: certs.key,
          httpsPort,
          httpPort,
          accessLog,
          limits: opts.limits ?? {},
          relayTls: opts.relayTls ? { trustedCertificate: certs.ca, serverName: 'localhost' } : null,
          ...(opts.nginxWorkers ? { workerProcesses: opts.nginxWorkers } : {}),
          ...(opts.workerShutdownTimeout ? { workerShutdownTimeout: opts.workerShutdownTimeout } : {}),
        }),
      ),
    );
    const nginxArgs = ['-p', dir, '-c', config, '-e', 'stderr'];
    const nginxBin = program('nginx') as string;
    const nginx = spawn(nginxBin, [...nginxArgs, '-g', 'daemon off;'], { stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(nginx);
    pipeLines(nginx, 'nginx', output, redactErrorLine);
    createInterface({ input: createReadStream(accessLog) }).on('line', (l) => output('nginx', l, 'stdout'));
    await waitFor(`nginx on 127.0.0.1:${httpsPort}`, async () => {
      if (nginx.exitCode !== null) throw new Error(`nginx exited with ${nginx.exitCode}`);
      const res = await fetch(`http://127.0.0.1:${httpPort}/`, {
        redirect: 'manual',
        signal: AbortSignal.timeout(1000),
      });
      return res.status === 301;
    });

    let stopping: Promise<void> | null = null;
    return {
      publicUrl: `${origin}/`,
      wsUrl: `wss://localhost${httpsPort === 443 ? '' : `:${httpsPort}`}/ws`,
      httpsPort,
      httpPort,
      ca: certs.ca,
      instances,
      redisPassword,
      redisPort,
      nginxPid: nginx.pid ?? 0,
      dir,
      async restartInstance(i: number) {
        const old = instances[i];
        if (!old) throw new Error(`no instance ${i}`);
        await old.exited;
        instances[i] = launch(i);
        await ready(instances[i] as LocalInstance);
      },
      async reloadNginx() {
        await new Promise<void>((resolve, reject) => {
          const r = spawn(nginxBin, [...nginxArgs, '-s', 'reload'], { stdio: 'ignore' });
          r.on('exit', (code) => (code === 0 ? resolve() : reject(new Error(`nginx -s reload exited ${code}`))));
        });
      },
      stop() {
        stopping ??= (async () => {
          // Instances first (each drains: `draining`, then 1001), then the gateway, then the bus.
          for (const i of instances) if (i.process.exitCode === null) i.process.kill('SIGTERM');
          await Promise.all(instances.map((i) => i.exited));
          if (nginx.exitCode === null) nginx.kill('SIGQUIT');
          await exitOf(nginx);
          if (redis.exitCode === null) redis.kill('SIGTERM');
          await exitOf(redis);
          process.removeListener('exit', cleanup);
          cleanup();
        })();
        return stopping;
      },
    };
  } catch (err) {
    cleanup();
    process.removeListener('exit', cleanup);
    throw err;
  }
}

function flag(name: string, fallback: number): number {
  const arg = process.argv.find((a) => a.startsWith(`--${name}=`));
  if (!arg) return fallback;
  const value = Number(arg.slice(name.length + 3));
  if (!Number.isInteger(value) || value < 1 || value > 65_535) {
    console.error(`--${name}: expected a whole number, got ${arg.slice(name.length + 3)}`);
    process.exit(2);
  }
  return value;
}

async function main(): Promise<void> {
  const cluster = await startLocalCluster({
    instances: flag('instances', 3),
    httpsPort: flag('https-port', 8443),
    httpPort: flag('http-port', 8880),
    relayPort: flag('relay-port', 9001),
    redisPort: flag('redis-port', 6390),
  });
  const lines = [
    '',
    `  open ${cluster.publicUrl}   (certificate signed by a local CA made for this run: ${cluster.ca})`,
    `  http://localhost:${cluster.httpPort}/ redirects there`,
    ...cluster.instances.map((i) => `  ${i.id}: ${i.http}  (/metrics, /readyz)`),
    `  redis: 127.0.0.1:${cluster.redisPort} (no persistence, password per run)`,
    '  Ctrl-C drains the instances and stops everything.',
    '',
  ];
  process.stderr.write(`${lines.join('\n')}\n`);
  let stopping = false;
  const stop = () => {
    if (stopping) return;
    stopping = true;
    process.stderr.write('stopping: draining the instances\n');
    void cluster.stop().then(() => process.exit(0));
  };
  process.on('SIGINT', stop);
  process.on('SIGTERM', stop);
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  main().catch((err: unknown) => {
    console.error(`npm run cluster: ${err instanceof Error ? err.message : String(err)}`);
    process.exit(1);
  });
}
