/**
 * Delivery under churn (issue 13). Two parts:
 *
 * 1. The model-based test (model.ts): random sequences of send, ack, drop,
 *    resume, move, window expiry, buffer overflow and rate refusals against
 *    real relay instances; B must hold every message once and in order, or
 *    an explicit `gap`/`ended` where the bounds say so.
 * 2. A soak: many pairs chatting across 3 relay processes on one Redis while
 *    clients drop at random (and resume, often on another instance), and a
 *    few are kept away past the resume window. Nothing lost, doubled or
 *    reordered for the rest; the explicit signal for every one kept away.
 *
 * The busy-cluster helpers here are shared with faults.ts.
 */
import { type Chatter, chats, until } from '../fixtures/chatters.js';
import { CLUSTER_SECRET } from '../fixtures/cluster.js';
import { startRedis, type TestRedis } from '../fixtures/redis.js';
import { type RelayProcess, spawnRelay } from '../fixtures/relay-process.js';
import { sleep } from '../fixtures/ws-client.js';
import { runModel } from './model.js';
import { type Check, exactly, fmt, type Row } from './table.js';

/** Where one chatter connects: the live instances in turn (or always the same one), or nowhere while `away`. */
export interface Route {
  away: boolean;
  /** Moves to the next live instance on every connect (otherwise stays on the one it started on, while it lives). */
  moving: boolean;
  at: number;
}

export interface Busy {
  redis: TestRedis;
  /** The instances' REDIS_PREFIX (a replacement instance joins with it). */
  prefix: string;
  nodes: RelayProcess[];
  /** What clients connect to; a test that takes an instance out removes it here first. */
  live: RelayProcess[];
  pairs: [Chatter, Chatter][];
  routes: Map<Chatter, Route>;
  /** Pairs that talk (a test takes a pair out to watch it alone). */
  active: Set<[Chatter, Chatter]>;
  talking: boolean;
  stopTalking(): Promise<void>;
  close(): Promise<void>;
}

export const relayEnv = (redis: TestRedis, prefix: string, i: number, env: Record<string, string> = {}) => ({
  REDIS_URL: redis.url,
  CLUSTER_SECRET,
  REDIS_PREFIX: prefix,
  INSTANCE_ID: `r${i}`,
  DRAIN_GRACE_MS: '1000',
  MAX_SESSIONS_PER_ADDRESS: '0',
  MAX_CONNECTIONS_PER_ADDRESS: '0',
  LOG_LEVEL: 'info',
  ...env,
});

/** Three relay processes on a fresh Redis and `count` chats across them, talking every `everyMs` per side. */
export async function busyCluster(
  count: number,
  everyMs: number,
  env: Record<string, string> = {},
  prepare?: (redis: TestRedis) => Promise<(i: number) => Record<string, string>>,
): Promise<Busy> {
  const redis = await startRedis({ tcp: true });
  const envFor = prepare ? await prepare(redis) : () => ({});
  const prefix = `f${Math.random().toString(36).slice(2, 8)}:`;
  const nodes = await Promise.all(
    [0, 1, 2].map((i) => spawnRelay(relayEnv(redis, prefix, i, { ...env, ...envFor(i) }))),
  );
  const made: Route[] = [];
  const busy: Busy = {
    redis,
    prefix,
    nodes,
    live: [...nodes],
    pairs: [],
    routes: new Map(),
    active: new Set(),
    talking: true,
    stopTalking: async () => {},
    close: async () => {
      for (const [a, b] of busy.pairs) {
        a.stop();
        b.stop();
      }
      for (const n of nodes) n.kill('SIGKILL');
      await Promise.all(nodes.map((n) => n.exited));
      await redis.stop();
    },
  };
  const urlFor = (slot: number) => {
    const route: Route = { away: false, moving: slot % 2 === 0, at: slot };
    made.push(route);
    return () => {
      if (route.away) return 'ws://127.0.0.1:1/ws';
      const live = busy.live;
      const node = live[(route.moving ? route.at++ : route.at) % live.length] as RelayProcess;
      return node.url;
    };
  };
  try {
    busy.pairs = await chats(count, urlFor);
  } catch (err) {
    await busy.close();
    throw err;
  }
  busy.pairs.flat().forEach((c, i) => {
    busy.routes.set(c, made[i] as Route);
  });
  for (const p of busy.pairs) busy.active.add(p);
  const talk = (async () => {
    while (busy.talking) {
      for (const [a, b] of busy.active) {
        a.say();
        b.say();
      }
      await sleep(everyMs);
    }
  })();
  busy.stopTalking = async () => {
    busy.talking = false;
    await talk;
  };
  return busy;
}

export interface Tally {
  sent: number;
  delivered: number;
  lost: number;
  duplicated: number;
  reordered: number;
  /** Chatters whose chat ended or that are not connected. */
  offChat: number;
}

/** Every message of `pairs`, both ways: lost, doubled, out of order. */
export function tally(pairs: Iterable<[Chatter, Chatter]>): Tally {
  const t: Tally = { sent: 0, delivered: 0, lost: 0, duplicated: 0, reordered: 0, offChat: 0 };
  for (const [a, b] of pairs) {
    for (const c of [a, b]) if (c.client.chatId === null || !c.client.connected) t.offChat++;
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      t.sent += from.sent.length;
      t.delivered += to.received.length;
      const got = new Set(to.received);
      t.lost += from.sent.filter((m) => !got.has(m)).length;
      t.duplicated += to.received.length - got.size;
      let last = -1;
      for (const m of to.received) {
        const n = Number(m.slice(m.lastIndexOf('-') + 1));
        if (n < last) t.reordered++;
        last = Math.max(last, n);
      }
    }
  }
  return t;
}

/** Waits (up to `timeoutMs`) until every chatter of `pairs` is connected with nothing unconfirmed or undelivered. */
export async function settle(pairs: Iterable<[Chatter, Chatter]>, timeoutMs: number): Promise<boolean> {
  const all = [...pairs].flat();
  return until('settled', () => all.every((c) => c.settled), timeoutMs).then(
    () => true,
    () => false,
  );
}

/** Rows saying 0 lost, 0 duplicated, 0 reordered (with sent and delivered in the first figure). */
export function deliveryRows(label: string, t: Tally): Row[] {
  return [
    {
      test: `${label}: lost (of sent)`,
      figure: `${fmt(t.lost)} of ${fmt(t.sent)} sent (${fmt(t.delivered)} delivered)`,
      pass: t.lost === 0 && t.sent > 0,
    },
    exactly(`${label}: duplicated`, t.duplicated, 0),
    exactly(`${label}: reordered`, t.reordered, 0),
    exactly(`${label}: chats still on at the end`, t.offChat, 0, ' off'),
  ];
}

export interface SoakOptions {
  pairs: number;
  durationMs: number;
  /** How many pairs have one side kept away past the resume window. */
  keptAway: number;
  resumeWindowMs: number;
  log: (line: string) => void;
}

export async function soak(o: SoakOptions): Promise<Row[]> {
  const busy = await busyCluster(o.pairs, 1000, { RESUME_WINDOW_MS: String(o.resumeWindowMs) });
  try {
    o.log(`soak: ${o.pairs} pairs on 3 instances, ${o.durationMs / 1000} s`);
    const started = Date.now();
    let drops = 0;
    // Pairs whose one side is kept away past the window: watched apart from the others.
    const awayPairs = busy.pairs.slice(0, o.keptAway);
    const awayResults: Promise<boolean>[] = [];
    const keepAway = async (pair: [Chatter, Chatter]) => {
      const [gone, partner] = pair;
      const route = busy.routes.get(gone) as Route;
      const ended = partner.client
        .next('ended', () => true, o.resumeWindowMs + 8000)
        .then(
          () => true,
          () => false,
        );
      busy.active.delete(pair);
      route.away = true;
      gone.client.drop();
      await sleep(o.resumeWindowMs + 1500);
      const welcome = gone.client
        .next('welcome', () => true, 8000)
        .then(
          (w) => !w.resumed,
          () => false,
        );
      route.away = false;
      const [sawEnded, fresh] = await Promise.all([ended, welcome]);
      gone.stop();
      partner.stop();
      return sawEnded && fresh;
    };
    const candidates = busy.pairs.slice(o.keptAway).flat();
    let awayStarted = 0;
    while (Date.now() - started < o.durationMs) {
      // About one drop per client every 10 s, at random; kept-away pairs spread over the first half.
      const k = Math.max(1, Math.round(candidates.length / 50));
      for (let i = 0; i < k; i++) {
        const c = candidates[Math.floor(Math.random() * candidates.length)] as Chatter;
        if (c.client.connected) {
          c.client.drop();
          drops++;
        }
      }
      const due = Math.floor(((Date.now() - started) / (o.durationMs / 2)) * awayPairs.length);
      while (awayStarted < Math.min(due + 1, awayPairs.length))
        awayResults.push(keepAway(awayPairs[awayStarted++] as [Chatter, Chatter]));
      await sleep(200);
    }
    await busy.stopTalking();
    const signals = await Promise.all(awayResults);
    const rest = busy.pairs.slice(o.keptAway);
    const settled = await settle(rest, 30_000);
    const t = tally(rest);
    o.log(
      `soak: ${drops} drops, sent ${t.sent}, delivered ${t.delivered}, settled ${settled}, kept away ${signals.length}`,
    );
    const seen = signals.filter(Boolean).length;
    return [
      {
        test: 'soak under churn: clients dropped and resumed',
        figure: `${fmt(drops)} drops over ${fmt(o.pairs)} pairs in ${fmt(o.durationMs / 1000)} s`,
        pass: drops > 0,
      },
      ...deliveryRows('soak under churn', t),
      {
        test: 'soak: kept away past the window, explicit signal (ended + fresh welcome)',
        figure: `${seen} of ${signals.length} (${signals.length ? Math.round((seen / signals.length) * 100) : 0}%)`,
        pass: signals.length > 0 && seen === signals.length,
      },
    ];
  } finally {
    await busy.close();
  }
}

export const churn: Check = {
  name: 'churn',
  async run({ quick, log }) {
    const runs = quick ? 100 : 1000;
    const t0 = Date.now();
    const m = await runModel(runs);
    log(
      `model: ${m.sequences} sequences, ${m.commands} commands in ${Math.round((Date.now() - t0) / 1000)} s; ${m.firstViolation ?? ''}`,
    );
    const rows: Row[] = [
      {
        test: 'model-based delivery: command sequences run',
        figure: `${fmt(m.sequences)} sequences, ${fmt(m.commands)} commands (${fmt(m.moves)} moves, ${fmt(m.rateRefusals)} rate refusals)`,
        pass: m.sequences >= runs,
      },
      {
        test: 'model-based delivery: violations (hole, duplicate, reorder, wrong gap)',
        figure: `${fmt(m.violations)}${m.firstViolation ? `: ${m.firstViolation}` : ''}`,
        pass: m.violations === 0,
      },
      {
        test: 'model: buffer overflow while away, reported as gap',
        figure: `${fmt(m.gapsSeen)} of ${fmt(m.overflowResumes)} resumes past the bound`,
        pass: m.overflowResumes > 0 && m.gapsSeen === m.overflowResumes,
      },
      {
        test: 'model: resume window passed, ended + fresh welcome',
        figure: `${fmt(m.expirySignals)} of ${fmt(m.expiries)}`,
        pass: m.expiries > 0 && m.expirySignals === m.expiries,
      },
    ];
    rows.push(
      ...(await soak(
        quick
          ? { pairs: 50, durationMs: 30_000, keptAway: 4, resumeWindowMs: 5000, log }
          : { pairs: 300, durationMs: 180_000, keptAway: 20, resumeWindowMs: 5000, log },
      )),
    );
    return rows;
  },
};
