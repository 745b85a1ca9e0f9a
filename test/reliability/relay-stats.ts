/**
 * What a relay process holds, read from outside it: its /metrics gauges
 * (sockets, sessions, queue, buffered messages and bytes, open invites) and its
 * resident memory from /proc/<pid>/status. With the inspector on
 * (`spawnInspectable`), a full garbage collection can be forced and the V8 heap
 * read right after it, with no hook in src/: the relay is started with
 * `NODE_OPTIONS=--inspect=127.0.0.1:0` and driven over the inspector protocol
 * (HeapProfiler.collectGarbage, then process.memoryUsage()).
 */
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { CLUSTER_SECRET } from '../fixtures/cluster.js';
import { redisKeys, startRedis, type TestRedis } from '../fixtures/redis.js';
import { type RelayProcess, spawnRelay } from '../fixtures/relay-process.js';

export interface RelayGauges {
  connections: number;
  sessions: number;
  queueLength: number;
  activeChats: number;
  bufferMessages: number;
  bufferBytes: number;
  openInvites: number;
}

const GAUGES: Record<keyof RelayGauges, string> = {
  connections: 'relay_connections',
  sessions: 'relay_sessions',
  queueLength: 'relay_queue_length',
  activeChats: 'relay_active_chats',
  bufferMessages: 'relay_buffer_messages',
  bufferBytes: 'relay_buffer_bytes',
  openInvites: 'relay_open_invites',
};

/** The value of an unlabelled metric in Prometheus text, or NaN if absent. */
export function metricValue(text: string, name: string): number {
  const line = text.split('\n').find((l) => l.startsWith(`${name} `));
  return line === undefined
    ? Number.NaN
    : Number(
        line
          .slice(name.length + 1)
          .trim()
          .split(' ')[0],
      );
}

/** /metrics of the relay at `http` (`http://127.0.0.1:port`; the route needs no header). */
export async function relayGauges(http: string): Promise<RelayGauges> {
  const res = await fetch(`${http}/metrics`);
  if (res.status !== 200) throw new Error(`/metrics answered ${res.status}`);
  const text = await res.text();
  const out = {} as RelayGauges;
  for (const [key, name] of Object.entries(GAUGES) as [keyof RelayGauges, string][]) out[key] = metricValue(text, name);
  return out;
}

/** Several instances' gauges added up. */
export async function totalGauges(https: readonly string[]): Promise<RelayGauges> {
  const all = await Promise.all(https.map(relayGauges));
  const sum = {} as RelayGauges;
  for (const key of Object.keys(GAUGES) as (keyof RelayGauges)[]) sum[key] = all.reduce((n, g) => n + g[key], 0);
  return sum;
}

export const allZero = (g: RelayGauges, keys: readonly (keyof RelayGauges)[] = Object.keys(GAUGES) as never): boolean =>
  keys.every((k) => g[k] === 0);

/** VmRSS of `pid` in bytes, from /proc/<pid>/status. */
export function rssBytes(pid: number): number {
  const m = /^VmRSS:\s+(\d+)\s+kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  if (!m) throw new Error(`no VmRSS for ${pid}`);
  return Number(m[1]) * 1024;
}

// ---------------------------------------------------------------------------
// Process health: what "no uncaught exception" is read from.

const INSPECTOR_NOISE =
  /^(Debugger listening on |For help, see: |Debugger attached\.|Debugger ending on |Waiting for the debugger)/;

/** stderr lines that are not the inspector's own notices (a stack trace, a warning, a crash). */
export const strayStderr = (stderr: string): string[] =>
  stderr.split('\n').filter((l) => l.trim() !== '' && !INSPECTOR_NOISE.test(l));

/** Log lines at error or fatal (pino levels 50 and 60): an unexpected exception, a failed close, a crash. */
export const crashLines = (logs: readonly Record<string, unknown>[]): Record<string, unknown>[] =>
  logs.filter((l) => typeof l.level === 'number' && l.level >= 50);

export const alive = (relay: RelayProcess): boolean => relay.child.exitCode === null && relay.child.signalCode === null;

/** One line per process: alive or how it ended, error/fatal log lines (their msg only), stray stderr lines. */
export function health(relays: readonly RelayProcess[]): { dead: number; crashes: string[]; stderr: string[] } {
  const crashes = relays.flatMap((r) => crashLines(r.logs).map((l) => String(l.msg)));
  const stderr = relays.flatMap((r) => strayStderr(r.stderr()));
  return { dead: relays.filter((r) => !alive(r)).length, crashes, stderr };
}

// ---------------------------------------------------------------------------
// Forcing a GC through the inspector (no src change needed).

/** A relay process started with its inspector on a free loopback port (announced on stderr). */
export function spawnInspectable(env: Record<string, string>): Promise<RelayProcess> {
  return spawnRelay({ ...env, NODE_OPTIONS: '--inspect=127.0.0.1:0' });
}

export interface HeapFigures {
  heapUsed: number;
  rss: number;
}

/**
 * Connects to `relay`'s inspector, forces full garbage collections (twice, so
 * what the first one's finalizers freed goes too) and reads
 * process.memoryUsage() in the relay. Needs `spawnInspectable`.
 */
export async function collectGarbage(relay: RelayProcess, timeoutMs = 15_000): Promise<HeapFigures> {
  const url = /Debugger listening on (ws:\/\/\S+)/.exec(relay.stderr())?.[1];
  if (!url) throw new Error('the relay has no inspector (start it with spawnInspectable)');
  const ws = new WebSocket(url);
  await new Promise<void>((resolve, reject) => {
    ws.once('open', () => resolve());
    ws.once('error', reject);
  });
  let next = 1;
  const pending = new Map<number, { resolve: (v: unknown) => void; reject: (e: Error) => void }>();
  ws.on('message', (data) => {
    const m = JSON.parse(data.toString()) as { id?: number; result?: unknown; error?: { message: string } };
    const p = m.id === undefined ? undefined : pending.get(m.id);
    if (!p || m.id === undefined) return;
    pending.delete(m.id);
    if (m.error) p.reject(new Error(m.error.message));
    else p.resolve(m.result);
  });
  const call = (method: string, params: Record<string, unknown> = {}): Promise<unknown> =>
    new Promise((resolve, reject) => {
      const id = next++;
      pending.set(id, { resolve, reject });
      ws.send(JSON.stringify({ id, method, params }));
    });
  const timer = setTimeout(() => ws.terminate(), timeoutMs);
  try {
    await call('HeapProfiler.enable');
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.collectGarbage');
    await call('HeapProfiler.disable');
    const r = (await call('Runtime.evaluate', {
      expression: 'JSON.stringify(process.memoryUsage())',
      returnByValue: true,
    })) as { result: { value: string } };
    const usage = JSON.parse(r.result.value) as { heapUsed: number; rss: number };
    return { heapUsed: usage.heapUsed, rss: usage.rss };
  } finally {
    clearTimeout(timer);
    ws.close();
  }
}

/** Polls `read` every `everyMs` until `done` says yes or `timeoutMs` passes; returns the last value read. */
export async function pollUntil<T>(
  read: () => Promise<T>,
  done: (v: T) => boolean,
  timeoutMs: number,
  everyMs = 250,
): Promise<{ value: T; ok: boolean; ms: number }> {
  const start = Date.now();
  for (;;) {
    const value = await read();
    if (done(value)) return { value, ok: true, ms: Date.now() - start };
    if (Date.now() - start >= timeoutMs) return { value, ok: false, ms: Date.now() - start };
    await new Promise((r) => setTimeout(r, everyMs));
  }
}

export const mb = (bytes: number): number => Math.round((bytes / 1024 / 1024) * 10) / 10;

// ---------------------------------------------------------------------------
// A target: one relay process, or three over one redis-server (no nginx).

export interface Target {
  /** `one relay` or `cluster of 3`. */
  readonly name: string;
  readonly relays: RelayProcess[];
  readonly redis: TestRedis | null;
  /** The Redis key prefix (cluster only). */
  readonly prefix: string;
  /** Instance `i % n`'s WebSocket URL. */
  url(i: number): string;
  http(i: number): string;
  gauges(): Promise<RelayGauges>;
  /** Every Redis key under the prefix (cluster only; [] alone). */
  keys(): Promise<string[]>;
  stop(): Promise<void>;
}

/** Keys that stay while the instances run: the liveness set and its age (docs/operations.md). */
export const PERMANENT_KEYS = ['{mq}:nodes', '{mq}:nodes-since'];

export async function startTarget(instances: 1 | 3, env: Record<string, string>): Promise<Target> {
  const redis = instances === 1 ? null : await startRedis({ tcp: true });
  const prefix = `rel${Math.random().toString(36).slice(2, 8)}:`;
  const cluster: Record<string, string> = redis ? { REDIS_URL: redis.url, CLUSTER_SECRET, REDIS_PREFIX: prefix } : {};
  let relays: RelayProcess[];
  try {
    relays = await Promise.all(
      Array.from({ length: instances }, (_, i) =>
        spawnInspectable({ DRAIN_GRACE_MS: '0', INSTANCE_ID: `h${i}`, ...cluster, ...env }),
      ),
    );
  } catch (err) {
    await redis?.stop();
    throw err;
  }
  const https = relays.map((r) => r.http);
  return {
    name: instances === 1 ? 'one relay' : 'cluster of 3',
    relays,
    redis,
    prefix,
    url: (i) => (relays[i % relays.length] as RelayProcess).url,
    http: (i) => https[i % https.length] as string,
    gauges: () => totalGauges(https),
    keys: async () =>
      redis
        ? (await redisKeys(redis))
            .map((k) => k.key)
            .filter((k) => k.startsWith(prefix))
            .map((k) => k.slice(prefix.length))
        : [],
    stop: async () => {
      for (const r of relays) if (alive(r)) r.kill('SIGTERM');
      await Promise.race([Promise.all(relays.map((r) => r.exited)), new Promise((r) => setTimeout(r, 5000))]);
      for (const r of relays) if (alive(r)) r.kill('SIGKILL');
      await redis?.stop();
    },
  };
}
