// The cluster bench (`npm run bench -- --cluster`): one Redis and three instances
// of ours on loopback form one relay, driven by the same generator as the rest of
// the bench; the same load also runs against one instance without Redis in the
// same run, as the figure to compare with. Phases:
// - pairing: clients spread round-robin over the instances all `find` at once;
//   pairs per second, and every chat checked to have exactly two members, each
//   matched once;
// - traffic: pairs whose two sides are on different instances (each pair shares
//   an interest no one else has, so the relay pairs exactly those two; checked
//   from the chat ids afterwards), a 64 B closed loop (messages per CPU-second of
//   every relay process plus Redis) and two open-loop rates (latency: the target's
//   rate, and a light one that tells a tail caused by the load from one caused by the path);
// - rolling restart: typed, reconnecting clients chat at a steady rate while each
//   instance in turn gets SIGTERM, drains and exits, and a replacement starts on a
//   new port; every message is then checked to have arrived exactly once, in order;
// - SIGKILL of one instance under the same load: lost, duplicated, and the time
//   until every chat flows again in both directions.
import { execFileSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { loadavg } from 'node:os';
import { fileURLToPath } from 'node:url';
import { startRelay } from './proc.mjs';
import { startRedis } from './redis.mjs';
import { monotonicMs, per, percentiles, quiesce, sleep, sum } from './util.mjs';
import { WorkerPool } from './workers.mjs';

export const INSTANCES = 3;
/** BENCH_DEBUG=1: every chat with a message lost, duplicated or out of order goes to a file, with both sides' frames. */
const DEBUG = process.env.BENCH_DEBUG === '1';

function writeDebug(stopped, phase) {
  const chats = new Map();
  for (const c of stopped.flatMap((r) => r.clients)) {
    if (c.chat === null) continue;
    if (!chats.has(c.chat)) chats.set(c.chat, []);
    chats.get(c.chat).push(c);
  }
  const out = [];
  for (const [chat, m] of chats) {
    if (m.length !== 2) {
      out.push({ chat, members: m.length });
      continue;
    }
    for (const [from, to] of [m, [m[1], m[0]]]) {
      const seen = new Set(to.seen);
      const missing = [];
      for (let i = 0; i < from.sent; i++) if (!seen.has(i)) missing.push(i);
      if (missing.length > 0 || to.duplicates > 0 || to.outOfOrder > 0)
        out.push({
          chat,
          missing,
          duplicates: to.duplicates,
          outOfOrder: to.outOfOrder,
          sender: from.log,
          receiver: to.log,
        });
    }
  }
  const dir = fileURLToPath(new URL('../results/cluster-debug/', import.meta.url));
  mkdirSync(dir, { recursive: true });
  const file = `${dir}${phase}-${Date.now()}.json`;
  writeFileSync(file, JSON.stringify(out, null, 1));
  console.log(`  debug: ${out.length} chat directions with a message lost, duplicated or out of order: ${file}`);
}

/** The 1-minute load average and the CPU pressure (PSI `some avg60`, % of time some task waited for a core). */
export function contention() {
  let cpuPressure = null;
  try {
    cpuPressure = Number(readFileSync('/proc/pressure/cpu', 'utf8').match(/some avg10=\S+ avg60=(\S+)/)?.[1]);
  } catch {}
  return { loadAverage: loadavg()[0], cpuPressure };
}

/** CPU seconds used so far by each process (relays and Redis), read from /proc. */
function cpuOf(procs) {
  return procs.map((p) => ({ name: p.name, cpuSeconds: p.sample().cpuSeconds }));
}
const cpuSince = (before, procs) => {
  const now = cpuOf(procs);
  return now.map((p, i) => ({ name: p.name, cpuSeconds: p.cpuSeconds - before[i].cpuSeconds }));
};

/** One Redis and INSTANCES instances of ours; `instances[slot]` is null while that slot is out of rotation. */
export async function startCluster(C, nextPort) {
  const redis = await startRedis(nextPort());
  const secret = randomBytes(32).toString('base64');
  let started = 0;
  const launch = async () => {
    const id = `n${started++}`;
    const relay = await startRelay(
      'ours',
      nextPort(),
      { REDIS_URL: redis.url, CLUSTER_SECRET: secret, INSTANCE_ID: id, DRAIN_GRACE_MS: String(C.drainGraceMs) },
      '/readyz',
    );
    return { ...relay, name: id };
  };
  const instances = [];
  try {
    for (let i = 0; i < INSTANCES; i++) instances.push(await launch());
  } catch (err) {
    for (const i of instances) await i.stop();
    await redis.stop();
    throw err;
  }
  return {
    redis,
    instances,
    launch,
    live: () => instances.filter(Boolean),
    urls: () => instances.filter(Boolean).map((i) => i.url),
    procs: () => [...instances.filter(Boolean), redis],
    async stop() {
      for (const i of instances) await i?.stop();
      await redis.stop();
    },
  };
}

/** A chat is good when it has exactly two members; a client is good when it was matched exactly once. */
export function checkPairs(results) {
  const members = new Map();
  let doubles = 0;
  let unmatched = 0;
  for (const r of results)
    r.chats.forEach((chat, i) => {
      if (r.matches[i] > 1) doubles++;
      if (chat === null) unmatched++;
      else {
        if (!members.has(chat)) members.set(chat, []);
        members.get(chat).push(r.slots[i]);
      }
    });
  let two = 0;
  let cross = 0;
  let one = 0;
  let more = 0;
  for (const slots of members.values()) {
    if (slots.length === 1) one++;
    else if (slots.length > 2) more++;
    else {
      two++;
      if (slots[0] !== slots[1]) cross++;
    }
  }
  return {
    chats: two,
    crossInstance: cross,
    // A chat only one client was told of (its partner never got `matched`), or one with three or more.
    chatsOfOne: one,
    chatsOfMore: more,
    chatsNotOfTwo: one + more,
    matchedTwice: doubles,
    unmatched,
    // Error frames during the finds: a refused `find` leaves its client unmatched (this generator never asks again).
    errorFrames: mergeCounts(results.map((r) => r.errorCodes)),
  };
}

async function withPool(workers, urls, fn) {
  const pool = new WorkerPool(workers);
  try {
    await pool.init({ urls, transport: 'ws' });
    return await fn(pool);
  } finally {
    await pool.stop();
  }
}

/**
 * Pairing rate: `clients` spread round-robin over the instances, all asking at once. Random: plain `find`,
 * the relay pairs whoever is next in line. `tagged`: each pair's two sides on different instances share an
 * interest no one else has, so every pair the relay makes crosses instances.
 */
export function pairing(relay, C, P, tagged = false) {
  return withPool(P.workers, relay.urls(), async (pool) => {
    // Tagged pairs are made inside each generator process: an even number of clients in each.
    const count = (i) => 2 * per(Math.floor(C.pairingClients / 2), P.workers)[i];
    const conn = await pool.all('connect', (i) => ({ count: count(i), concurrency: 128 }));
    const procs = relay.procs();
    const cpu0 = cpuOf(procs);
    const found = await pool.all('find', { tagged, timeoutMs: 60_000, stallMs: 3000 });
    const cpu = cpuSince(cpu0, procs);
    const ms = Math.max(...found.map((r) => r.ms));
    const check = checkPairs(await pool.all('pairs'));
    await pool.all('close', { code: 1000 });
    const cpuSeconds = sum(cpu, (p) => p.cpuSeconds);
    const r = {
      tagged,
      clients: sum(conn, (x) => x.connected),
      connectErrors: sum(conn, (x) => x.errors),
      ms: Math.round(ms),
      ...check,
      pairsPerSec: Math.round(check.chats / (ms / 1000)),
      pairsPerCpuSecond: Math.round(check.chats / Math.max(cpuSeconds, 0.01)),
      cpu,
    };
    console.log(
      `  ${relay.label}${tagged ? ', tagged' : ''}: ${r.chats} pairs in ${r.ms} ms (${r.pairsPerSec}/s, ${r.crossInstance} cross-instance), ` +
        `${r.matchedTwice} matched twice, ${r.chatsNotOfTwo} chats not of two`,
    );
    return r;
  });
}

/** Throughput (64 B closed loop) and latency (fixed open-loop rate), every pair split over two instances. */
export function traffic(relay, C, P) {
  return withPool(P.trafficWorkers, relay.urls(), async (pool) => {
    const n = pool.workers.length;
    // Pairs are made inside each generator process: an even number of clients in each.
    const conn = await pool.all('connect', (i) => ({ count: 2 * per(C.pairs, n)[i], concurrency: 32 }));
    await pool.all('find', { tagged: true, timeoutMs: 30_000 });
    const pairs = checkPairs(await pool.all('pairs'));
    const procs = relay.procs();
    const run = async (args) => {
      const warmupMs = Math.min(1000, C.trafficMs / 2);
      const cpu = (async () => {
        await sleep(warmupMs);
        const a = cpuOf(procs);
        await sleep(C.trafficMs);
        return cpuSince(a, procs);
      })();
      const share = args.rate === undefined ? {} : { rate: args.rate / n };
      const results = await pool.all('traffic', { ms: C.trafficMs, warmupMs, ...args, ...share });
      const serverCpu = await cpu;
      const drainMs = await quiesce(pool);
      const received = sum(results, (r) => r.received);
      const seconds = results[0].seconds;
      const cpuSeconds = sum(serverCpu, (p) => p.cpuSeconds);
      return {
        rate: Math.round(received / seconds),
        perCpuSecond: Math.round(received / Math.max(cpuSeconds, 0.01)),
        // Each process's share of a core, relays and Redis.
        cpuShare: Object.fromEntries(serverCpu.map((p) => [p.name, p.cpuSeconds / seconds])),
        generatorCpuShare: sum(results, (r) => r.cpuMs) / 1000 / seconds,
        latencyMs: percentiles(results.map((r) => r.histogram)),
        drainMs,
        // Error frames the generator got in this phase (it never sends a refused message again).
        errorFrames: mergeCounts(results.map((r) => r.errorCodes)),
      };
    };
    const closed = await run({ size: 64, window: 16 });
    const fixed = { offered: P.fixedRate, ...(await run({ size: 64, rate: P.fixedRate })) };
    const light = { offered: C.lightRate, ...(await run({ size: 64, rate: C.lightRate })) };
    await pool.all('close', { code: 1000 });
    console.log(
      `  ${relay.label}: 64 B closed loop ${closed.rate} msg/s, ${closed.perCpuSecond} per CPU-s (relays + Redis); ` +
        `p99 at ${P.fixedRate} msg/s = ${fixed.latencyMs.p99} ms, at ${C.lightRate} msg/s = ${light.latencyMs.p99} ms; ` +
        `${pairs.crossInstance}/${pairs.chats} pairs cross-instance`,
    );
    return { clients: sum(conn, (x) => x.connected), pairs, closed, fixed, light };
  });
}

export function mergeCounts(list) {
  const out = {};
  for (const o of list) for (const [k, v] of Object.entries(o ?? {})) out[k] = (out[k] ?? 0) + v;
  return out;
}

/** Joins both sides of every chat: what one side sent against what the other received, exactly once and in order. */
export function verify(stopped, phase) {
  if (DEBUG) writeDebug(stopped, phase);
  const clients = stopped.flatMap((r) => r.clients);
  const chats = new Map();
  for (const c of clients) {
    if (c.chat === null) continue;
    if (!chats.has(c.chat)) chats.set(c.chat, []);
    chats.get(c.chat).push(c);
  }
  let sent = 0;
  let received = 0;
  let lost = 0;
  let extra = 0;
  let notOfTwo = 0;
  let cross = 0;
  for (const m of chats.values()) {
    if (m.length !== 2) {
      notOfTwo++;
      continue;
    }
    if (m[0].pairedOn !== m[1].pairedOn) cross++;
    for (const [from, to] of [m, [m[1], m[0]]]) {
      sent += from.sent;
      received += to.received;
      lost += Math.max(0, from.sent - to.received);
      extra += Math.max(0, to.received - from.sent);
    }
  }
  const endReasons = {};
  for (const c of clients) for (const reason of c.ended) endReasons[reason] = (endReasons[reason] ?? 0) + 1;
  const errors = {};
  for (const r of stopped)
    for (const [code, k] of Object.entries(r.errorFrames)) errors[code] = (errors[code] ?? 0) + k;
  return {
    clients: clients.length,
    chats: chats.size,
    crossInstance: cross,
    chatsNotOfTwo: notOfTwo,
    unpaired: clients.filter((c) => c.chat === null).length,
    sent,
    received,
    lost,
    duplicated: sum(clients, (c) => c.duplicates),
    outOfOrder: sum(clients, (c) => c.outOfOrder),
    // Received but never sent (a counter past what the sender reports): should not exist.
    unexplained: extra,
    // Still unconfirmed or undelivered at the sender when the wait ended.
    pending: sum(stopped, (r) => r.pending),
    reconnects: sum(clients, (c) => c.reconnects),
    // Chats whose side on a stopped instance had to be rebuilt from the partner's (`resend`), not handed over.
    rebuilt: clients.filter((c) => c.resends > 0).length,
    // Welcomes with `resumed: false` after a chat had started: sessions the relay could not resume.
    freshIdentities: sum(clients, (c) => c.fresh),
    endReasons,
    errors,
    drainMs: Math.round(Math.max(...stopped.map((r) => r.drainMs))),
    latencyMs: percentiles(stopped.map((r) => r.histogram)),
  };
}

/**
 * Stops sending and waits until every message sent has arrived, or nothing has arrived for `quietMs` (what is
 * missing then stays missing), or 30 s; then each client's counts.
 */
export async function settle(chat, quietMs = 3000) {
  await chat('stop');
  const started = Date.now();
  let last = -1;
  let lastChange = started;
  for (;;) {
    const p = await chat('progress');
    const sent = sum(p, (x) => x.sent);
    const received = sum(p, (x) => x.received);
    if (received !== last) lastChange = Date.now();
    last = received;
    if (received >= sent || Date.now() - lastChange > quietMs || Date.now() - started > 30_000) break;
    await sleep(100);
  }
  const drainMs = Date.now() - started;
  return (await chat('stats')).map((r) => ({ ...r, drainMs }));
}

/** Typed, reconnecting clients in pairs across instances, chatting at `rate` msg/s in total. */
async function chatting(pool, cl, C) {
  const n = pool.workers.length;
  const chat = (op, args = {}) =>
    pool.all('chatters', (i) => ({ op, ...(typeof args === 'function' ? args(i) : args) }));
  await chat('setUrls', {
    urls: cl.urls(),
    // As the page does, scaled to the bench's shorter grace: most clients move before the server closes them.
    drainJitterMs: Math.round(C.drainGraceMs / 2),
    dropJitterMs: 100,
    connectWhileOpen: process.env.BENCH_CLOSE_FIRST !== '1',
  });
  const opened = await chat('open', (i) => ({ count: 2 * per(C.chatPairs, n)[i] }));
  await chat('pair', { timeoutMs: 30_000 });
  await chat('run', { rate: C.chatRate / n });
  return { chat, connectErrors: sum(opened, (r) => r.failed) };
}

/** Every instance in turn: out of rotation, SIGTERM, drained and gone, and a replacement on a new port. */
export async function rolling(cl, C, P) {
  return withPool(P.trafficWorkers, cl.urls(), async (pool) => {
    const { chat, connectErrors } = await chatting(pool, cl, C);
    await sleep(C.steadyMs);
    const rounds = [];
    for (let slot = 0; slot < INSTANCES; slot++) {
      const old = cl.instances[slot];
      cl.instances[slot] = null;
      await chat('setUrls', { urls: cl.urls() });
      const t0 = Date.now();
      const exit = await old.terminate();
      const drainMs = Date.now() - t0;
      const t1 = Date.now();
      const replacement = await cl.launch();
      cl.instances[slot] = replacement;
      await chat('setUrls', { urls: cl.urls() });
      rounds.push({ stopped: old.name, exit, drainMs, started: replacement.name, startMs: Date.now() - t1 });
      console.log(
        `  rolling restart: ${old.name} drained and exited (${exit}) in ${drainMs} ms, ${replacement.name} up`,
      );
      await sleep(C.steadyMs);
    }
    const result = {
      pairs: C.chatPairs,
      rate: C.chatRate,
      connectErrors,
      rounds,
      ...verify(await settle(chat), 'rolling'),
    };
    await chat('close');
    console.log(
      `  rolling restart: ${result.sent} sent, ${result.lost} lost, ${result.duplicated} duplicated, ` +
        `${result.outOfOrder} out of order, ${result.reconnects} reconnects`,
    );
    return result;
  });
}

/** SIGKILL of one instance under load: clients reconnect elsewhere, chats are rebuilt from the partners' sides. */
export async function kill(cl, C, P) {
  return withPool(P.trafficWorkers, cl.urls(), async (pool) => {
    const { chat, connectErrors } = await chatting(pool, cl, C);
    await sleep(C.steadyMs);
    const victim = cl.instances[0];
    const on = sum(await chat('mark', { url: victim.url }), (r) => r.on);
    await victim.stop();
    const at = monotonicMs();
    cl.instances[0] = null;
    await chat('setUrls', { urls: cl.urls() });
    await chat('killed', { at });
    const deadline = Date.now() + C.recoveryTimeoutMs;
    while (Date.now() < deadline && sum(await chat('waiting'), (r) => r.waiting) > 0) await sleep(100);
    await sleep(C.afterKillMs);
    const stopped = await settle(chat);
    const result = { killed: victim.name, pairs: C.chatPairs, rate: C.chatRate, connectErrors, clientsOnIt: on };
    Object.assign(result, verify(stopped, 'kill'), recovery(stopped));
    await chat('close');
    console.log(
      `  SIGKILL ${victim.name}: ${result.affectedChats} chats affected, all flowing again after ` +
        `${Math.round(result.recoveryMs.max)} ms; ${result.lost} lost, ${result.duplicated} duplicated`,
    );
    return result;
  });
}

/** For each chat with a side on the killed instance: when both directions had a message sent after the kill. */
function recovery(stopped) {
  const chats = new Map();
  for (const c of stopped.flatMap((r) => r.clients)) {
    if (c.chat === null) continue;
    if (!chats.has(c.chat)) chats.set(c.chat, []);
    chats.get(c.chat).push(c);
  }
  const times = [];
  let never = 0;
  for (const m of chats.values()) {
    if (!m.some((c) => c.atKill)) continue;
    if (m.length !== 2 || m.some((c) => c.recovered === null)) never++;
    else times.push(Math.max(...m.map((c) => c.recovered)));
  }
  times.sort((a, b) => a - b);
  const q = (p) => times[Math.min(times.length - 1, Math.floor((p / 100) * times.length))] ?? Number.NaN;
  return {
    affectedChats: times.length + never,
    neverRecovered: never,
    recoveryMs: { p50: q(50), p99: q(99), max: times.at(-1) ?? Number.NaN },
  };
}

/** The whole cluster bench; `C` is the profile's `cluster` part. */
export async function clusterBench(P, firstPort) {
  const C = P.cluster;
  let port = firstPort;
  const nextPort = () => port++;
  // Before and after: the 1-minute load average, and the share of the last minute in which some task waited
  // for a core (Linux PSI). Other processes' work on the machine shows there.
  const out = { instances: INSTANCES, drainGraceMs: C.drainGraceMs, phaseSeconds: {}, contention: [contention()] };
  const timed = async (name, fn) => {
    const t0 = Date.now();
    const r = await fn();
    out.phaseSeconds[name] = Math.round((Date.now() - t0) / 100) / 10;
    return r;
  };

  console.log('cluster: one instance without Redis, the same load');
  const one = await startRelay('ours', nextPort());
  try {
    const single = { label: 'single', urls: () => [one.url], procs: () => [{ ...one, name: 'single' }] };
    out.single = {
      pairing: await timed('single pairing', () => pairing(single, C, P)),
      pairingTagged: await timed('single pairing, tagged', () => pairing(single, C, P, true)),
      traffic: await timed('single traffic', () => traffic(single, C, P)),
    };
  } finally {
    await one.stop();
  }

  console.log(`cluster: ${INSTANCES} instances and one Redis`);
  const cl = await startCluster(C, nextPort);
  try {
    cl.label = 'cluster';
    out.redisVersion = execFileSync(process.env.REDIS_SERVER ?? 'redis-server', ['--version'], {
      encoding: 'utf8',
    }).match(/v=(\S+)/)?.[1];
    out.pairing = await timed('pairing', () => pairing(cl, C, P));
    out.pairingCross = await timed('pairing, tagged', () => pairing(cl, C, P, true));
    out.traffic = await timed('traffic', () => traffic(cl, C, P));
    out.rolling = await timed('rolling restart', () => rolling(cl, C, P));
    out.kill = await timed('SIGKILL', () => kill(cl, C, P));
  } finally {
    await cl.stop();
  }
  out.contention.push(contention());
  console.log(`  cluster phases (s): ${JSON.stringify(out.phaseSeconds)}`);
  return out;
}

/**
 * `broken`: the machinery failed (clients that could not connect, phases that formed no chat or moved no
 * message); the smoke run fails on it. `findings`: the relay missed a promise (lost, duplicated or
 * reordered messages, double or missed pairings); reported, as every other figure is, not failed on.
 */
export function clusterProblems(c) {
  const broken = [];
  const findings = [];
  if (!c) return { broken, findings };
  for (const [name, r] of [
    ['single pairing', c.single.pairing],
    ['single pairing, tagged', c.single.pairingTagged],
    ['cluster pairing', c.pairing],
    ['cluster pairing, tagged', c.pairingCross],
  ]) {
    if (r.connectErrors > 0) broken.push(`${name}: ${r.connectErrors} clients failed to connect`);
    if (r.chats === 0) broken.push(`${name}: no chat formed`);
    if (r.unmatched > 0) findings.push(`${name}: ${r.unmatched} clients never matched`);
    if (r.matchedTwice > 0 || r.chatsNotOfTwo > 0)
      findings.push(`${name}: ${r.matchedTwice} clients matched twice, ${r.chatsNotOfTwo} chats not of two`);
  }
  for (const [name, t] of [
    ['single traffic', c.single.traffic],
    ['cluster traffic', c.traffic],
  ])
    if (!(t.closed.rate > 0 && t.fixed.rate > 0)) broken.push(`${name}: no message went through`);
  if (c.traffic.pairs.crossInstance < c.traffic.pairs.chats)
    broken.push(`cluster traffic: ${c.traffic.pairs.chats - c.traffic.pairs.crossInstance} pairs on one instance`);
  for (const [name, r] of [
    ['rolling restart', c.rolling],
    ['SIGKILL', c.kill],
  ]) {
    if (r.connectErrors > 0) broken.push(`${name}: ${r.connectErrors} clients failed to connect`);
    if (r.chats === 0 || r.received === 0) broken.push(`${name}: no chat or no message`);
    if (r.lost > 0 || r.duplicated > 0 || r.outOfOrder > 0)
      findings.push(`${name}: ${r.lost} lost, ${r.duplicated} duplicated, ${r.outOfOrder} out of order`);
  }
  for (const r of c.rolling.rounds)
    if (r.exit !== 0) broken.push(`rolling restart: ${r.stopped} exited with ${r.exit}`);
  if (c.kill.neverRecovered > 0) findings.push(`SIGKILL: ${c.kill.neverRecovered} chats never flowed again`);
  return { broken, findings };
}
