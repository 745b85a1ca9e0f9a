/**
 * Privacy: a chat workload whose bodies, interests, invite codes and client
 * addresses are canaries (unique random strings, random 127/8 addresses), and
 * the tokens, session ids and chat ids the relay hands out, recorded as
 * canaries too; then a search for every one of them where it must not be:
 *
 * - (a) one relay process (at LOG_LEVEL trace) and (b) two relay processes
 *   with Redis behind nginx (startLocalCluster; clients also write canary
 *   addresses in X-Forwarded-For, which nginx must overwrite):
 * - their logs (every line of every process) and nginx's (access and error);
 * - Redis, every key and value (SCAN, then GET/HGETALL/...), once the chats
 *   ended and the resume window passed; Redis's persistence settings and its
 *   directory (no dump.rdb, no appendonly file);
 * - a heap snapshot of every relay (`--heapsnapshot-signal=SIGUSR2`, written
 *   to a temp dir removed afterwards) taken once the window passed: a snapshot
 *   follows a full GC, so only live memory counts;
 * - the relay's open files before, during and after the workload (no regular
 *   file open for writing: /proc/<pid>/fd and the access mode in fdinfo).
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Redis } from 'ioredis';
import { startLocalCluster } from '../../deploy/cluster.js';
import { freePort, redisKeys, type TestRedis } from '../fixtures/redis.js';
import { type ConnectOptions, sleep, TestClient } from '../fixtures/ws-client.js';
import { Canaries, type CanaryKind, describeHits, type Hit } from './canary.js';
import { type Check, type CheckOptions, exactly, fmt, type Row } from './table.js';

const MAIN = fileURLToPath(new URL('../../src/main.js', import.meta.url));
const RESUME_WINDOW_MS = 1000;
/** What every relay here runs with: the most verbose log, and short windows so the "after" comes soon. */
const RELAY_ENV = {
  LOG_LEVEL: 'trace',
  RESUME_WINDOW_MS: String(RESUME_WINDOW_MS),
  UNUSED_RESUME_WINDOW_MS: '500',
  INVITE_TTL_MS: '1000',
  REMATCH_COOLDOWN_MS: '0',
  // A matched waiter's interest-wait timer keeps its ticket (id, interests) until this runs out.
  MATCH_INTEREST_WAIT_MS: '1000',
  // The workload talks faster than a person (rate limits are the abuse check's business).
  RATE_LIMIT_PER_SEC: '1000',
  RATE_LIMIT_BURST: '1000',
  DRAIN_GRACE_MS: '0',
};
/** After the window: the sweep that drops expired sessions and buffers runs on timers; give it this long. */
const SWEEP_MS = 1500;

export interface PrivacySizes {
  chats: number;
  messages: number;
}
/** For `npm test` (test/reliability-abuse.test.ts). */
export const TINY: PrivacySizes = { chats: 3, messages: 3 };
const QUICK: PrivacySizes = { chats: 6, messages: 8 };
const FULL: PrivacySizes = { chats: 24, messages: 40 };

const BODY_KINDS: CanaryKind[] = ['body'];
/** What must be gone from memory and Redis once the window passed. */
const OTHER_KINDS: CanaryKind[] = ['interest', 'guess', 'token', 'session', 'chat', 'address'];
/**
 * What may stay, on purpose, and how long: a reported session's id (its tally, REPORT_WINDOW_MS) and an invite
 * code (the InviteBook remembers used and expired codes for another INVITE_TTL_MS, to answer `invite_used` or
 * `invite_expired`; lru-cache drops a stale entry only when touched or pushed out, so in memory it can stay longer).
 */
const KEPT_KINDS: CanaryKind[] = ['reported', 'invite', 'moved'];

// ---------------------------------------------------------------------------
// Open files.

interface OpenFile {
  path: string;
  writable: boolean;
}

/** Regular files `pid` holds open, with whether each is open for writing (O_WRONLY or O_RDWR in fdinfo). */
export function openFiles(pid: number): OpenFile[] {
  const out: OpenFile[] = [];
  let fds: string[];
  try {
    fds = readdirSync(`/proc/${pid}/fd`);
  } catch {
    return out;
  }
  for (const fd of fds) {
    try {
      if (!statSync(`/proc/${pid}/fd/${fd}`).isFile()) continue;
      const path = readlinkSync(`/proc/${pid}/fd/${fd}`);
      const flags = Number.parseInt(
        /^flags:\s*([0-7]+)/m.exec(readFileSync(`/proc/${pid}/fdinfo/${fd}`, 'utf8'))?.[1] ?? '0',
        8,
      );
      out.push({ path, writable: (flags & 3) !== 0 });
    } catch {
      // closed meanwhile
    }
  }
  return out;
}

/** Samples `pids`' open files every 100 ms until stopped; keeps every regular file seen open for writing. */
function watchFiles(pids: () => number[]) {
  const writable = new Set<string>();
  let samples = 0;
  let readOnly = 0;
  const sample = () => {
    samples++;
    for (const pid of pids())
      for (const f of openFiles(pid)) {
        if (f.writable) writable.add(`${pid}:${f.path}`);
        else readOnly++;
      }
  };
  sample();
  const timer = setInterval(sample, 100);
  return {
    stop() {
      clearInterval(timer);
      sample();
      return { writable: [...writable], samples, readOnly };
    },
  };
}

// ---------------------------------------------------------------------------
// A relay process of our own (cwd: a temp dir, where its heap snapshot lands).

interface OwnRelay {
  child: ChildProcess;
  dir: string;
  url: string;
  http: string;
  output: () => string;
  stop(): Promise<void>;
}

function spawnOwnRelay(): Promise<OwnRelay> {
  const dir = mkdtempSync(join(tmpdir(), 'relay-privacy-'));
  const child = spawn(process.execPath, ['--heapsnapshot-signal=SIGUSR2', '--enable-source-maps', MAIN], {
    cwd: dir,
    env: { ...process.env, HOST: '127.0.0.1', PORT: '0', ...RELAY_ENV },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  const kill = () => child.kill('SIGKILL');
  process.once('exit', kill);
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  child.stderr?.on('data', (d: Buffer) => {
    out += d.toString('utf8');
  });
  return new Promise((resolve, reject) => {
    child.stdout?.on('data', (d: Buffer) => {
      out += d.toString('utf8');
      const line = out.split('\n').find((l) => l.includes('"msg":"listening"'));
      const port = line ? /"port":(\d+)/.exec(line)?.[1] : undefined;
      if (port)
        resolve({
          child,
          dir,
          url: `ws://127.0.0.1:${port}/ws`,
          http: `http://127.0.0.1:${port}`,
          output: () => out,
          async stop() {
            if (child.exitCode === null && child.signalCode === null) child.kill('SIGTERM');
            await exited;
            process.removeListener('exit', kill);
            rmSync(dir, { recursive: true, force: true });
          },
        });
    });
    exited.then(() => {
      rmSync(dir, { recursive: true, force: true });
      reject(new Error(`relay exited before listening: ${out}`));
    });
  });
}

/** SIGUSR2, then waits until the snapshot is written (the process answers HTTP again) and returns its bytes. */
async function heapSnapshot(pid: number, dir: string, http: string, get: typeof fetchStatus): Promise<Buffer> {
  const before = new Set(readdirSync(dir));
  process.kill(pid, 'SIGUSR2');
  const deadline = Date.now() + 60_000;
  for (;;) {
    await sleep(200);
    const file = readdirSync(dir).find((f) => f.endsWith('.heapsnapshot') && !before.has(f));
    // Writing the snapshot blocks the relay's thread: once it answers, the file is complete.
    if (file && (await get(`${http}/readyz`).catch(() => 0)) > 0) {
      const bytes = readFileSync(join(dir, file));
      // To find what holds a canary (test/reliability/retainers.mjs-style analysis), keep the file.
      if (process.env.PRIVACY_KEEP_SNAPSHOTS) writeFileSync(join(process.env.PRIVACY_KEEP_SNAPSHOTS, file), bytes);
      rmSync(join(dir, file), { force: true });
      return bytes;
    }
    if (Date.now() > deadline) throw new Error(`no heap snapshot from ${pid} within 60 s`);
  }
}

function fetchStatus(url: string, ca?: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(
      url,
      { ...(ca ? { ca } : {}), timeout: 2000 },
      (res) => {
        res.resume();
        resolve(res.statusCode ?? 0);
      },
    );
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', reject);
    req.end();
  });
}

// ---------------------------------------------------------------------------
// The workload.

interface Target {
  /** The WebSocket URL for a client (a routing key picks the instance behind nginx). */
  url: (route: string) => string;
  /** Base URL for POST /api/v1/invites. */
  http: string;
  ca?: string;
  origin?: string;
  /** Clients also send a canary address in X-Forwarded-For (through nginx, which must overwrite it). */
  forgedForwardedFor: boolean;
}

function postInvite(target: Target, localAddress: string, headers: Record<string, string>): Promise<string> {
  const url = `${target.http}/api/v1/invites`;
  return new Promise((resolve, reject) => {
    const req = (url.startsWith('https:') ? httpsRequest : httpRequest)(
      url,
      {
        method: 'POST',
        localAddress,
        headers: { ...headers, ...(target.origin ? { Origin: target.origin } : {}) },
        ...(target.ca ? { ca: target.ca } : {}),
      },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => {
          if (res.statusCode !== 201) return reject(new Error(`POST invites: ${res.statusCode} ${body}`));
          resolve((JSON.parse(body) as { code: string }).code);
        });
      },
    );
    req.on('error', reject);
    req.end();
  });
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const randomCode = () => Array.from(randomBytes(10), (b) => CROCKFORD[b & 31]).join('');

/**
 * `sizes.chats` chats, one after another, each between two canary addresses: paired on a canary interest or
 * by an invite code, canary bodies both ways (one side acks, the other leaves its inbox unacknowledged), a drop
 * and a resume (elsewhere, behind nginx), canaries in bad input too, and an end by report, leave or drop.
 */
async function workload(target: Target, canaries: Canaries, sizes: PrivacySizes): Promise<void> {
  for (let k = 0; k < sizes.chats; k++) {
    const side = () => {
      const localAddress = canaries.address();
      const headers: Record<string, string> = target.forgedForwardedFor
        ? { 'X-Forwarded-For': canaries.address(), 'X-Real-IP': canaries.address() }
        : {};
      const opts: ConnectOptions = {
        localAddress,
        headers,
        ...(target.origin ? { origin: target.origin } : {}),
        ...(target.ca ? { ca: target.ca } : {}),
      };
      return { localAddress, headers, opts };
    };
    const sa = side();
    const sb = side();
    let [a, wa] = await TestClient.hello(target.url(`a${k}`), sa.opts);
    const [b, wb] = await TestClient.hello(target.url(`b${k}`), sb.opts);
    canaries.add('token', wa.token);
    canaries.add('token', wb.token);
    // a drops and resumes below; behind nginx, perhaps on the other instance, which then keeps its id (alone)
    // to forward to for FORWARD_MS (60 s).
    canaries.add(target.forgedForwardedFor ? 'moved' : 'session', wa.id);
    // b is reported in every third chat (below).
    canaries.add(k % 3 === 0 ? 'reported' : 'session', wb.id);
    if (k % 2 === 0) {
      const shared = canaries.make('interest');
      a.send({ type: 'find', interests: [shared, canaries.make('interest')] });
      await a.next('queued');
      b.send({ type: 'find', interests: [canaries.make('interest'), shared] });
    } else {
      const code = await postInvite(target, sa.localAddress, sa.headers);
      canaries.add('invite', code);
      a.send({ type: 'join', code });
      await a.next('queued');
      b.send({ type: 'join', code: code.toLowerCase() });
    }
    const matched = await a.next('matched');
    await b.next('matched');
    canaries.add('chat', matched.chat);
    // Canaries in what is refused: a body too long, a guessed invite code, an unknown frame type.
    a.send({ type: 'msg', id: 'too-long', body: canaries.make('body').repeat(400) });
    await a.next('error');
    const guess = randomCode();
    canaries.add('guess', guess);
    b.sendRaw(`{"type":"${canaries.make('body')}","body":"${canaries.make('body')}"}`);
    await b.next('error');
    // Both ways; b acknowledges, a does not (its inbox stays buffered until its session ends).
    let aSeq = 0;
    for (let m = 0; m < sizes.messages; m++) {
      a.send({ type: 'msg', id: `a${m}`, body: canaries.make('body') });
      b.send({ type: 'msg', id: `b${m}`, body: canaries.make('body'), kind: 'text' });
      const got = await b.next('msg');
      b.send({ type: 'ack', seq: got.seq });
      aSeq = (await a.next('msg')).seq;
      if (m % 4 === 0) b.send({ type: 'typing' } as never);
    }
    // a drops and resumes (behind nginx: with another routing key, so perhaps on another instance).
    a.close();
    await b.next('partner');
    b.send({ type: 'msg', id: 'while-away', body: canaries.make('body') });
    await b.next('sent');
    a = await TestClient.resume(target.url(`a${k}-again`), wa, aSeq, sa.opts);
    const back = await a.next('welcome');
    if (!back.resumed) throw new Error(`chat ${k}: the resume was refused`);
    await a.next('msg');
    a.send({ type: 'join', code: guess });
    await a.next('error');
    // The end: a report, a leave, or a drop on both sides (the sessions then wait out the window).
    if (k % 3 === 0) {
      a.send({ type: 'report' });
      await a.next('ended');
      a.ws.close(1000);
      b.ws.close(1000);
    } else if (k % 3 === 1) {
      a.ws.close(1000);
      await b.next('ended');
      b.ws.close(1000);
    } else {
      a.close();
      b.close();
    }
  }
  // An invite nobody joins: it must expire.
  const lone = side0(canaries, target);
  canaries.add('invite', await postInvite(target, lone.localAddress, lone.headers));
}

function side0(canaries: Canaries, target: Target) {
  const localAddress = canaries.address();
  return {
    localAddress,
    headers: target.forgedForwardedFor ? { 'X-Forwarded-For': canaries.address() } : ({} as Record<string, string>),
  };
}

// ---------------------------------------------------------------------------
// Rows.

/** ", not counted: kept on purpose: 2 of 2 reported session ids, 4 of 4 invite codes" (or nothing). */
function keptHits(canaries: Canaries, hits: Hit[]): string {
  if (hits.length === 0) return '';
  const n = (k: CanaryKind) => hits.filter((h) => h.kind === k).length;
  const moved = canaries.count('moved') ? `, ${n('moved')} of ${canaries.count('moved')} moved session ids` : '';
  return ` (kept on purpose, not counted: ${n('reported')} of ${canaries.count('reported')} reported session ids, ${n('invite')} of ${canaries.count('invite')} invite codes${moved})`;
}

const kept = (canaries: Canaries, snap: Buffer) => keptHits(canaries, canaries.scan(snap, KEPT_KINDS));

const hitsRow = (test: string, hits: Hit[], log: (l: string) => void): Row => {
  for (const h of hits.slice(0, 5)) log(`  ${test}: ${h.kind} ${h.canary} in …${h.around}…`);
  if (process.env.PRIVACY_KEEP_SNAPSHOTS) for (const h of hits) log(`  FULL ${h.kind} ${h.full}`);
  return { test, figure: describeHits(hits), pass: hits.length === 0 };
};

function fileRows(label: string, files: { writable: string[]; samples: number; readOnly: number }): Row {
  return {
    test: `${label}: regular files a relay held open for writing (before, during, after)`,
    figure: `${files.writable.length}${files.writable.length ? ` (${files.writable.join(', ')})` : ''} in ${files.samples} samples`,
    pass: files.writable.length === 0 && files.samples >= 3,
  };
}

async function single(opts: { log: (l: string) => void }, sizes: PrivacySizes): Promise<Row[]> {
  const relay = await spawnOwnRelay();
  const rows: Row[] = [];
  const canaries = new Canaries();
  try {
    const pid = relay.child.pid as number;
    const files = watchFiles(() => [pid]);
    opts.log(`one relay: ${sizes.chats} chats`);
    await workload({ url: () => relay.url, http: relay.http, forgedForwardedFor: false }, canaries, sizes);
    await sleep(RESUME_WINDOW_MS + SWEEP_MS);
    const seen = files.stop();
    rows.push(fileRows('one relay', seen));
    opts.log('one relay: heap snapshot');
    const snap = await heapSnapshot(pid, relay.dir, relay.http, (u) => fetchStatus(u));
    rows.push(
      hitsRow(
        `one relay: canary bodies (${canaries.count('body')}) in a heap snapshot (${fmt(Math.round(snap.length / 1e5) / 10)} MB) after the window`,
        canaries.scan(snap, BODY_KINDS),
        opts.log,
      ),
      hitsRow(
        `one relay: interests, guessed codes, tokens, ids, addresses in the heap snapshot${kept(canaries, snap)}`,
        canaries.scan(snap, OTHER_KINDS),
        opts.log,
      ),
    );
    await relay.stop();
    rows.push(
      hitsRow(
        `one relay: canaries (${canaries.size}) in its log (LOG_LEVEL trace, ${fmt(relay.output().split('\n').length)} lines)`,
        canaries.scan(relay.output()),
        opts.log,
      ),
    );
  } finally {
    await relay.stop();
  }
  return rows;
}

async function cluster(opts: { log: (l: string) => void }, sizes: PrivacySizes): Promise<Row[]> {
  const diag = mkdtempSync(join(tmpdir(), 'relay-privacy-heap-'));
  const lines: Record<string, string[]> = { relay: [], nginx: [], redis: [] };
  const httpsPort = await freePort();
  const c = await startLocalCluster({
    instances: 2,
    httpsPort,
    httpPort: await freePort(),
    relayPorts: [await freePort(), await freePort()],
    redisPort: await freePort(),
    relayEnv: { ...RELAY_ENV, NODE_OPTIONS: `--heapsnapshot-signal=SIGUSR2 --diagnostic-dir=${diag}` },
    output: (source, line) => {
      const key = source.startsWith('relay') ? 'relay' : source;
      const list = lines[key] ?? [];
      list.push(line);
      lines[key] = list;
    },
  });
  const rows: Row[] = [];
  const canaries = new Canaries();
  try {
    const ca = readFileSync(c.ca, 'utf8');
    const pids = () => c.instances.map((i) => i.process.pid as number);
    const files = watchFiles(pids);
    opts.log(`cluster: ${sizes.chats} chats through nginx`);
    await workload(
      {
        url: (route) => `wss://127.0.0.1:${httpsPort}/ws?route=${route}`,
        http: `https://127.0.0.1:${httpsPort}`,
        ca,
        origin: `https://127.0.0.1:${httpsPort}`,
        forgedForwardedFor: true,
      },
      canaries,
      sizes,
    );
    await sleep(RESUME_WINDOW_MS + SWEEP_MS);
    rows.push(fileRows('cluster', files.stop()));

    // Redis: every key and value, its persistence settings, its directory.
    const target = {
      options: { host: '127.0.0.1', port: c.redisPort, password: c.redisPassword },
    } as unknown as TestRedis;
    const keys = await redisKeys(target);
    const dump = keys.map((k) => `${k.key}\n${k.value}`).join('\n');
    rows.push(
      hitsRow(
        `cluster: canaries in Redis after the window (${keys.length} keys, ${fmt(dump.length)} bytes)${keptHits(canaries, canaries.scan(dump, KEPT_KINDS))}`,
        canaries.scan(dump, [...BODY_KINDS, ...OTHER_KINDS]),
        opts.log,
      ),
    );
    const redis = new Redis({ host: '127.0.0.1', port: c.redisPort, password: c.redisPassword, lazyConnect: true });
    redis.on('error', () => {});
    await redis.connect();
    const save = ((await redis.config('GET', 'save')) as string[])[1];
    const aof = ((await redis.config('GET', 'appendonly')) as string[])[1];
    const rdir = ((await redis.config('GET', 'dir')) as string[])[1] ?? c.dir;
    redis.disconnect();
    const persisted = readdirSync(rdir).filter((f) => /\.rdb$|^appendonly|\.aof$/.test(f));
    rows.push({
      test: 'cluster: Redis persistence (CONFIG GET save, appendonly) and files in its dir',
      figure: `save "${save}", appendonly ${aof}, ${persisted.length} files${persisted.length ? ` (${persisted.join(', ')})` : ''}`,
      pass: save === '' && aof === 'no' && persisted.length === 0,
    });

    opts.log('cluster: heap snapshots');
    let bodyHits: Hit[] = [];
    let otherHits: Hit[] = [];
    let keptFound: Hit[] = [];
    let bytes = 0;
    for (const i of c.instances) {
      const snap = await heapSnapshot(i.process.pid as number, diag, i.http, (u) => fetchStatus(u));
      bytes += snap.length;
      bodyHits = bodyHits.concat(canaries.scan(snap, BODY_KINDS));
      otherHits = otherHits.concat(canaries.scan(snap, OTHER_KINDS));
      keptFound = keptFound.concat(canaries.scan(snap, KEPT_KINDS));
    }
    rows.push(
      hitsRow(
        `cluster: canary bodies (${canaries.count('body')}) in both relays' heap snapshots (${fmt(Math.round(bytes / 1e5) / 10)} MB)`,
        bodyHits,
        opts.log,
      ),
      hitsRow(
        `cluster: interests, guessed codes, tokens, ids, addresses in the heap snapshots${keptHits(canaries, keptFound)}`,
        otherHits,
        opts.log,
      ),
    );
    const logFiles = readdirSync(c.dir).filter((f) => f.endsWith('.log'));
    const nginxText = [...(lines.nginx ?? []), ...logFiles.map((f) => readFileSync(join(c.dir, f), 'utf8'))].join('\n');
    await c.stop();
    rows.push(
      hitsRow(
        `cluster: canaries (${canaries.size}) in both relays' logs (trace, ${fmt(lines.relay?.length ?? 0)} lines)`,
        canaries.scan((lines.relay ?? []).join('\n')),
        opts.log,
      ),
      hitsRow(
        `cluster: canaries in nginx's logs (${fmt(lines.nginx?.length ?? 0)} lines, ${logFiles.length} log files)`,
        canaries.scan(nginxText),
        opts.log,
      ),
      hitsRow(
        `cluster: canaries in Redis's log (${fmt(lines.redis?.length ?? 0)} lines)`,
        canaries.scan((lines.redis ?? []).join('\n')),
        opts.log,
      ),
    );
    rows.push(exactly('cluster: the access log had lines (it was on)', (lines.nginx?.length ?? 0) > 0 ? 1 : 0, 1));
  } finally {
    await c.stop();
    rmSync(diag, { recursive: true, force: true });
  }
  return rows;
}

export const privacy: Check = {
  name: 'privacy',
  run: (opts) => runPrivacy(opts, opts.quick ? QUICK : FULL),
};

export async function runPrivacy(opts: CheckOptions, sizes: PrivacySizes): Promise<Row[]> {
  return [...(await single(opts, sizes)), ...(await cluster(opts, sizes))];
}
