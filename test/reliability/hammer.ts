/**
 * The hammer: many clients doing random things at once for a bounded time
 * (open, hello, find with and without interests, msg, ack, read, typing,
 * leave, cancel, report, block, ping, resume with a saved or a wrong token,
 * abrupt termination, garbage, binary, invalid UTF-8 and oversized frames, a
 * second hello, invite create and join), against one relay process and
 * against three over one redis-server. Each client draws its operations from
 * its own RNG seeded from one printed seed (HAMMER_SEED=<n> re-runs the same
 * sequence per client; the interleaving between clients is the machine's).
 *
 * Then: every process alive with no error line and no stack trace, and once
 * every client is gone and the resume window has passed, nothing left:
 * 0 sessions, sockets, queued, buffered messages, open invites; in the cluster
 * no Redis key but the instances' liveness set; and resident memory back near
 * its level after a warm-up wave (the same traffic, shorter), after a forced GC.
 */
import { request } from 'node:http';
import WebSocket from 'ws';
import {
  allZero,
  collectGarbage,
  health,
  mb,
  PERMANENT_KEYS,
  pollUntil,
  type RelayGauges,
  startTarget,
  type Target,
} from './relay-stats.js';
import { type Check, type CheckOptions, exactly, fmt, type Row } from './table.js';

/** A small fast PRNG (mulberry32): the same seed gives the same sequence. */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Source addresses 127.0.0.2 … 127.0.0.251: the relay's per-address limits stay at their defaults. */
export const sourceAddress = (i: number): string => `127.0.0.${2 + (i % 250)}`;

/** The relay's settings for these runs: short windows, so "everything is gone" can be checked within seconds. */
export const SHORT_WINDOWS: Record<string, string> = {
  RESUME_WINDOW_MS: '1000',
  UNUSED_RESUME_WINDOW_MS: '500',
  HELLO_TIMEOUT_MS: '3000',
  INVITE_TTL_MS: '2000',
  REPORT_WINDOW_MS: '1000',
  REPORT_COOLDOWN_MS: '1000',
};
/** The relay's sweep of stale buffer entries runs every 5 s (src/server.ts, not configurable). */
const SWEEP_MS = 5000;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const INTERESTS = ['music', 'chess', 'films', 'cats', 'go', 'hiking'];
const GARBAGE = [
  'not json',
  '{',
  '[]',
  'null',
  '42',
  '"hello"',
  '{"type":5}',
  '{"type":"msg"}',
  '{"type":"msg","id":123,"body":[]}',
  '{"type":"msg","id":"x","body":"y","kind":{}}',
  '{"type":"find","interests":"music"}',
  '{"type":"find","interests":[1,2,3]}',
  '{"type":"find","interests":["a","b","c","d","e","f","g"]}',
  '{"type":"find","interests":["\\u202eevil"]}',
  '{"type":"ack","seq":-1}',
  '{"type":"ack","seq":1e309}',
  '{"type":"read","seq":"7"}',
  '{"type":"typing","on":"yes"}',
  '{"type":"join","code":null}',
  '{"type":"join","code":"0000000000"}',
  '{"type":"hello","v":2}',
  '{"type":"ping","t":{"deep":[1,2,3]}}',
  '{"type":"nope"}',
  '{"type":"find","__proto__":{"polluted":true}}',
  '{"type":"constructor"}',
  `${'['.repeat(5000)}${']'.repeat(5000)}`,
  '\u0000\u0001\u0002',
  '\ud800',
];

export interface HammerTally {
  ops: Map<string, number>;
  errors: Map<string, number>;
  closes: Map<number, number>;
  http: Map<number, number>;
  refused: number;
}

const bump = <K>(m: Map<K, number>, k: K) => m.set(k, (m.get(k) ?? 0) + 1);

/** One simulated client. Its RNG alone decides what it does. */
class Agent {
  ws: WebSocket | null = null;
  saved: { id: string; token: string } | null = null;
  lastSeq = 0;
  sent = 0;
  readonly #rand: () => number;

  constructor(
    readonly index: number,
    seed: number,
    readonly target: Target,
    readonly tally: HammerTally,
    readonly invites: string[],
  ) {
    this.#rand = rng((seed + Math.imul(index + 1, 0x9e3779b9)) >>> 0);
  }

  pick<T>(xs: readonly T[]): T {
    return xs[Math.floor(this.#rand() * xs.length)] as T;
  }

  get open(): boolean {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  async run(deadline: number): Promise<void> {
    while (Date.now() < deadline) {
      await this.step();
      await sleep(100 + this.#rand() * 500);
    }
    // Gone for good: half leave with a close frame, half just drop (those wait out the resume window).
    const ws = this.ws;
    if (ws && this.#rand() < 0.5) ws.close(1000);
    else ws?.terminate();
  }

  /** Opens a socket to instance `at` from this client's address; resolves once open, or false. */
  async connect(at: number): Promise<boolean> {
    this.ws?.terminate();
    const ws = new WebSocket(this.target.url(at), {
      localAddress: sourceAddress(this.index),
      perMessageDeflate: false,
    });
    this.ws = ws;
    ws.on('message', (data, isBinary) => {
      if (!isBinary) this.#frame(data.toString());
    });
    ws.on('close', (code) => bump(this.tally.closes, code));
    ws.on('error', () => {});
    return new Promise((resolve) => {
      const timer = setTimeout(() => resolve(false), 5000);
      ws.once('open', () => {
        clearTimeout(timer);
        resolve(true);
      });
      ws.once('unexpected-response', (_req, res) => {
        bump(this.tally.http, res.statusCode ?? 0);
        this.tally.refused++;
        res.resume();
        ws.terminate();
      });
      ws.once('close', () => {
        clearTimeout(timer);
        resolve(false);
      });
    });
  }

  #frame(text: string): void {
    let f: { type: string; [k: string]: unknown };
    try {
      f = JSON.parse(text) as typeof f;
    } catch {
      bump(this.tally.errors, 'client: frame not JSON');
      return;
    }
    switch (f.type) {
      case 'welcome':
        this.saved = { id: f.id as string, token: f.token as string };
        if (!f.resumed) this.lastSeq = 0;
        break;
      case 'matched':
        this.lastSeq = 0;
        break;
      case 'msg':
        this.lastSeq = Math.max(this.lastSeq, f.seq as number);
        break;
      case 'error':
        bump(this.tally.errors, f.code as string);
        break;
    }
  }

  send(frame: unknown): void {
    this.ws?.send(JSON.stringify(frame));
  }

  /** One operation, chosen at random among those that make sense (and some that do not). */
  async step(): Promise<void> {
    const r = this.#rand();
    const n = this.target.relays.length;
    const op = this.open ? this.#liveOp(r) : this.#offlineOp(r);
    bump(this.tally.ops, op);
    switch (op) {
      case 'open':
        if (await this.connect(this.index)) this.send({ type: 'hello', v: 1 });
        break;
      case 'resume': {
        const saved = this.saved;
        if (saved && (await this.connect(Math.floor(this.#rand() * n))))
          this.send({ type: 'hello', v: 1, resume: { ...saved, lastSeq: this.lastSeq } });
        break;
      }
      case 'resume-wrong-token': {
        const saved = this.saved;
        if (saved && (await this.connect(Math.floor(this.#rand() * n))))
          this.send({ type: 'hello', v: 1, resume: { id: saved.id, token: `${saved.token.slice(1)}A`, lastSeq: 0 } });
        break;
      }
      case 'garbage-first':
        if (await this.connect(this.index)) this.ws?.send(this.pick(GARBAGE));
        break;
      case 'open-silent':
        await this.connect(this.index);
        break;
      case 'find':
        this.send({ type: 'find' });
        break;
      case 'find-interests': {
        const k = 1 + Math.floor(this.#rand() * 3);
        this.send({ type: 'find', interests: Array.from({ length: k }, () => this.pick(INTERESTS)) });
        break;
      }
      case 'msg':
        this.send({
          type: 'msg',
          id: `m${this.index}-${this.sent++}`,
          body: `hammer ${this.sent} ${'x'.repeat(this.#rand() * 200)}`,
        });
        break;
      case 'msg-too-long':
        this.send({ type: 'msg', id: `m${this.index}-${this.sent++}`, body: 'y'.repeat(5000) });
        break;
      case 'ack':
        this.send({ type: 'ack', seq: this.lastSeq });
        break;
      case 'read':
        this.send({ type: 'read', seq: this.lastSeq });
        break;
      case 'typing':
        this.send({ type: 'typing', on: this.#rand() < 0.5 });
        break;
      case 'leave':
        this.send({ type: 'leave' });
        break;
      case 'cancel':
        this.send({ type: 'cancel' });
        break;
      case 'report':
        this.send({ type: 'report' });
        break;
      case 'block':
        this.send({ type: 'block' });
        break;
      case 'ping':
        this.send({ type: 'ping', t: this.sent });
        break;
      case 'invite-create': {
        const code = await createInvite(
          this.target.http(Math.floor(this.#rand() * n)),
          sourceAddress(this.index),
          this.tally,
        );
        if (code && this.open) {
          this.send({ type: 'join', code });
          if (this.invites.length < 100) this.invites.push(code);
        }
        break;
      }
      case 'invite-join': {
        const code =
          this.invites.length > 0
            ? this.invites.splice(Math.floor(this.#rand() * this.invites.length), 1)[0]
            : undefined;
        this.send({ type: 'join', code: code ?? 'ZZZZZZZZZZ' });
        break;
      }
      case 'garbage':
        this.ws?.send(this.pick(GARBAGE));
        break;
      case 'binary':
        this.ws?.send(Buffer.from([1, 2, 3, 255]), { binary: true });
        break;
      case 'invalid-utf8':
        this.ws?.send(Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), { binary: false });
        break;
      case 'oversized':
        this.ws?.send(JSON.stringify({ type: 'msg', id: 'big', body: 'z'.repeat(20_000) }));
        break;
      case 'hello-again':
        this.send({ type: 'hello', v: 1 });
        break;
      case 'close-leave':
        this.ws?.close(1000);
        break;
      case 'close-drop':
        this.ws?.close(4000);
        break;
      case 'terminate':
        this.ws?.terminate();
        break;
    }
  }

  #offlineOp(r: number): string {
    const ops: [string, number][] = [
      ['open', 5],
      ['resume', this.saved ? 4 : 0],
      ['resume-wrong-token', this.saved ? 0.7 : 0],
      ['garbage-first', 0.7],
      ['open-silent', 0.3],
    ];
    return weighted(ops, r);
  }

  #liveOp(r: number): string {
    return weighted(LIVE_OPS, r);
  }
}

const LIVE_OPS: [string, number][] = [
  ['find', 4],
  ['find-interests', 3],
  ['msg', 9],
  ['msg-too-long', 0.4],
  ['ack', 3],
  ['read', 2],
  ['typing', 3],
  ['leave', 1.2],
  ['cancel', 0.8],
  ['report', 0.4],
  ['block', 0.2],
  ['ping', 0.8],
  ['invite-create', 0.5],
  ['invite-join', 0.8],
  ['garbage', 1.2],
  ['binary', 0.3],
  ['invalid-utf8', 0.2],
  ['oversized', 0.2],
  ['hello-again', 0.2],
  ['close-leave', 0.5],
  ['close-drop', 0.5],
  ['terminate', 0.8],
];

function weighted(ops: readonly [string, number][], r: number): string {
  const total = ops.reduce((s, [, w]) => s + w, 0);
  let x = r * total;
  for (const [name, w] of ops) {
    x -= w;
    if (x < 0) return name;
  }
  return (ops.at(-1) as [string, number])[0];
}

/** POST /api/v1/invites from `localAddress`; the code, or null (429 past INVITES_PER_MINUTE, counted). */
function createInvite(http: string, localAddress: string, tally: HammerTally): Promise<string | null> {
  return new Promise((resolve) => {
    const req = request(`${http}/api/v1/invites`, { method: 'POST', localAddress, agent: false }, (res) => {
      bump(tally.http, res.statusCode ?? 0);
      let body = '';
      res.on('data', (d) => {
        body += d;
      });
      res.on('end', () => {
        if (res.statusCode !== 201) return resolve(null);
        resolve((JSON.parse(body) as { code: string }).code);
      });
      res.on('error', () => resolve(null));
    });
    req.on('error', () => resolve(null));
    req.end();
  });
}

const emptyTally = (): HammerTally => ({
  ops: new Map(),
  errors: new Map(),
  closes: new Map(),
  http: new Map(),
  refused: 0,
});

/** `clients` agents hammer `target` for `ms`; then each leaves or drops; resolves once every socket is closed. */
export async function hammerWave(target: Target, clients: number, ms: number, seed: number): Promise<HammerTally> {
  const tally = emptyTally();
  const invites: string[] = [];
  const agents = Array.from({ length: clients }, (_, i) => new Agent(i, seed, target, tally, invites));
  const deadline = Date.now() + ms;
  // Started over the first second, not all in one instant.
  await Promise.all(
    agents.map(async (a, i) => {
      await sleep((i / clients) * 1000);
      await a.run(deadline);
    }),
  );
  await pollUntil(
    async () => agents.filter((a) => a.ws && a.ws.readyState !== WebSocket.CLOSED).length,
    (n) => n === 0,
    5000,
    100,
  );
  for (const a of agents) a.ws?.terminate();
  return tally;
}

export interface HammerOptions {
  clients: number;
  durationMs: number;
  warmupMs: number;
  seed: number;
  instances: readonly (1 | 3)[];
  /** RSS after the run may exceed the post-warm-up baseline by this percentage or these MB, whichever is larger. */
  rssPercent: number;
  rssMb: number;
}

export function hammerOptions(quick: boolean): HammerOptions {
  const seed = process.env.HAMMER_SEED ? Number(process.env.HAMMER_SEED) : Math.floor(Math.random() * 2 ** 31);
  return {
    clients: quick ? 200 : 1000,
    durationMs: quick ? 15_000 : 60_000,
    warmupMs: quick ? 3000 : 10_000,
    seed,
    instances: [1, 3],
    rssPercent: 20,
    rssMb: 15,
  };
}

const GAUGE_KEYS: (keyof RelayGauges)[] = [
  'sessions',
  'connections',
  'bufferMessages',
  'bufferBytes',
  'queueLength',
  'activeChats',
  'openInvites',
];

/** Waits (up to the resume window, two sweeps and the invite TTL twice, plus slack) until nothing is left. */
async function settle(
  target: Target,
  log: (l: string) => void,
): Promise<{ gauges: RelayGauges; keys: string[]; ms: number }> {
  const limit = Number(SHORT_WINDOWS.RESUME_WINDOW_MS) + 2 * SWEEP_MS + 2 * Number(SHORT_WINDOWS.INVITE_TTL_MS) + 5000;
  const start = Date.now();
  let said = 0;
  const g = await pollUntil(
    async () => {
      const v = await target.gauges();
      // A slow settle says what is still there, every 5 s.
      if (Date.now() - start >= (said + 1) * 5000) {
        said++;
        log(`still there after ${said * 5} s: ${JSON.stringify(v)}`);
      }
      return v;
    },
    (v) => allZero(v, GAUGE_KEYS),
    limit,
  );
  const k = await pollUntil(
    async () => (await target.keys()).filter((key) => !PERMANENT_KEYS.includes(key)),
    (keys) => keys.length === 0,
    Math.max(1000, limit - (Date.now() - start)),
  );
  return { gauges: g.value, keys: k.value, ms: Date.now() - start };
}

const summary = (m: Map<string | number, number>, top = 8): string =>
  [...m.entries()]
    .sort((a, b) => b[1] - a[1])
    .slice(0, top)
    .map(([k, v]) => `${k} ${v}`)
    .join(', ');

export async function hammerTarget(instances: 1 | 3, o: HammerOptions, log: (l: string) => void): Promise<Row[]> {
  const target = await startTarget(instances, SHORT_WINDOWS);
  const name = `hammer, ${target.name}`;
  try {
    log(`${name}: warm-up, ${o.clients} clients for ${o.warmupMs / 1000} s`);
    await hammerWave(target, o.clients, o.warmupMs, o.seed ^ 0x5bd1e995);
    await settle(target, log);
    const base = await Promise.all(target.relays.map((r) => collectGarbage(r)));
    log(
      `${name}: baseline RSS ${base.map((b) => `${mb(b.rss)} MB`).join(', ')}; ${o.clients} clients for ${o.durationMs / 1000} s, seed ${o.seed}`,
    );
    const t0 = Date.now();
    const tally = await hammerWave(target, o.clients, o.durationMs, o.seed);
    const ranS = (Date.now() - t0) / 1000;
    const ops = [...tally.ops.values()].reduce((a, b) => a + b, 0);
    log(`${name}: ops: ${summary(tally.ops, 30)}`);
    log(
      `${name}: errors: ${summary(tally.errors, 20)}; closes: ${summary(tally.closes, 20)}; http: ${summary(tally.http)}`,
    );
    const h = health(target.relays);
    const left = await settle(target, log);
    const after = await Promise.all(target.relays.map((r) => collectGarbage(r)));
    const h2 = health(target.relays);
    const dead = Math.max(h.dead, h2.dead);
    const crashes = h2.crashes;
    const stderr = h2.stderr;
    const internal = tally.closes.get(1011) ?? 0;
    if (crashes.length + stderr.length > 0) log(`${name}: ${[...crashes, ...stderr.slice(0, 20)].join(' | ')}`);
    const g = left.gauges;
    // A client waits 0.1-0.6 s between operations (about 2.8 a second unloaded); a starved machine halves that.
    const minOps = (o.clients * (o.durationMs / 1000)) / 2;
    const rows: Row[] = [
      {
        test: `${name}: operations done (${o.clients} clients from ${Math.min(o.clients, 250)} addresses, seed ${o.seed})`,
        figure: `${fmt(ops)} in ${fmt(Math.round(ranS))} s (at least ${fmt(minOps)}: 1 per client per 2 s)`,
        pass: ops >= minOps,
      },
      {
        test: `${name}: uncaught exceptions, crashes, internal errors`,
        figure: `${fmt(dead + crashes.length + stderr.length + internal)} (${instances - dead} of ${instances} alive, ${crashes.length} error/fatal log lines, ${stderr.length} stderr lines, ${internal} closes 1011)`,
        pass: dead + crashes.length + stderr.length + internal === 0,
      },
      exactly(`${name}: sessions once all gone + resume window (${SHORT_WINDOWS.RESUME_WINDOW_MS} ms)`, g.sessions, 0),
      exactly(`${name}: open sockets then`, g.connections, 0),
      {
        test: `${name}: buffered messages then`,
        figure: `${fmt(g.bufferMessages)} messages, ${fmt(g.bufferBytes)} B${g.bufferMessages + g.bufferBytes === 0 ? '' : ' (expected 0)'}`,
        pass: g.bufferMessages === 0 && g.bufferBytes === 0,
      },
      {
        test: `${name}: waiting queue, chats, open invites then`,
        figure: `${g.queueLength} queued, ${g.activeChats} chats, ${g.openInvites} invites (after ${fmt(left.ms / 1000)} s)`,
        pass: g.queueLength === 0 && g.activeChats === 0 && g.openInvites === 0,
      },
    ];
    if (target.redis)
      rows.push({
        test: `${name}: Redis keys left (besides ${PERMANENT_KEYS.join(', ')})`,
        figure: `${left.keys.length}${left.keys.length ? ` (${[...new Set(left.keys.map((k) => k.replace(/[:][^:]*$/, ':*')))].join(', ')})` : ''}`,
        pass: left.keys.length === 0,
      });
    const growth = after.map((a, i) => {
      const b = (base[i] as { rss: number }).rss;
      return { before: b, after: a.rss, pct: ((a.rss - b) / b) * 100, mb: (a.rss - b) / 1024 / 1024 };
    });
    const worst = growth.reduce((w, x) => (x.mb > w.mb ? x : w));
    const bound = Math.max((o.rssPercent / 100) * worst.before, o.rssMb * 1024 * 1024);
    rows.push({
      test: `${name}: RSS vs after warm-up (forced GC)`,
      figure: `${worst.pct >= 0 ? '+' : ''}${fmt(Math.round(worst.pct * 10) / 10)}% (${mb(worst.before)} → ${mb(worst.after)} MB${instances > 1 ? ', worst instance' : ''}; at most +${o.rssPercent}% or +${o.rssMb} MB)`,
      pass: worst.after - worst.before <= bound,
    });
    return rows;
  } finally {
    await target.stop();
  }
}

export const hammer: Check = {
  name: 'hammer',
  async run({ quick, log }: CheckOptions): Promise<Row[]> {
    const o = hammerOptions(quick);
    log(`seed ${o.seed} (re-run: HAMMER_SEED=${o.seed})`);
    const rows: Row[] = [];
    for (const n of o.instances) rows.push(...(await hammerTarget(n, o, log)));
    return rows;
  },
};
