#!/usr/bin/env node
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
// `npm run bench [-- --quick | --smoke] [-- --relays=ours,ws,socketio,floor] [-- --cluster] [-- --gateway]`
// Runs the same generator against our relay, the two reference peers and the
// floor (a bare uWebSockets.js relay doing the least work the generator accepts),
// one relay at a time on this machine's loopback, and writes results/<stamp>/
// (results.json, report.md, *.svg). A full run also refreshes bench/RESULTS.md.
// --cluster runs the cluster bench instead (lib/cluster.mjs: three instances and
// one Redis, against one instance in the same run); a full one refreshes the
// cluster section of bench/RESULTS.md. --gateway runs the gateway bench (lib/gateway.mjs: nginx with TLS in
// front of the instances and Redis, as deployed, through wss://; --instances=N for its connection phase); a
// full one refreshes the gateway section. --files runs the file-transfer bench (lib/files.mjs: 10 MB transfers
// through one relay and through two instances on Redis); a full one refreshes the files section.
// --smoke runs all four, with tiny counts.
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import { clusterBench, clusterProblems } from './lib/cluster.mjs';
import { CLUSTER_END, CLUSTER_START, clusterReport, clusterSection } from './lib/cluster-report.mjs';
import { FILES_END, FILES_START, filesBench, filesProblems, filesSection } from './lib/files.mjs';
import { gatewayBench, gatewayProblems } from './lib/gateway.mjs';
import { GATEWAY_END, GATEWAY_START, gatewayCharts, gatewayReport, gatewaySection } from './lib/gateway-report.mjs';
import { httpBench } from './lib/http.mjs';
import { artilleryInstalled, journey } from './lib/journey.mjs';
import { externalRelay, startRelay } from './lib/proc.mjs';
import { report } from './lib/report.mjs';
import { per, percentiles, quiesce, sleep, sum } from './lib/util.mjs';
import { WorkerPool } from './lib/workers.mjs';

const HERE = fileURLToPath(new URL('./', import.meta.url));
const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}`));
// --from=<results.json>: no bench run; the report (and, from a full run, RESULTS.md) written again from that
// run's figures, with the same kind flags (--cluster, --gateway) as the run had.
const from = arg('from') ? JSON.parse(readFileSync(arg('from').split('=')[1], 'utf8')) : null;
const mode = from ? from.mode : arg('smoke') ? 'smoke' : arg('quick') ? 'quick' : 'full';
// --targets=ws://a:8080/ws,wss://b/ws drives relays that are already running (several instances, a TLS
// proxy) instead of starting them here: the generator spreads its clients over the URLs.
const targets = arg('targets')?.split('=')[1]?.split(',');
const clusterOnly = Boolean(arg('cluster'));
const gatewayOnly = Boolean(arg('gateway'));
const filesOnly = Boolean(arg('files'));
const relays =
  clusterOnly || gatewayOnly || filesOnly
    ? []
    : targets
      ? ['target']
      : (arg('relays')?.split('=')[1] ?? 'ours,ws,socketio,floor').split(',');
// The cluster bench runs with --cluster, and in the smoke run (so CI covers it), not with --targets.
const withCluster = clusterOnly || (mode === 'smoke' && !gatewayOnly && !filesOnly && !targets && !arg('relays'));
// The gateway bench likewise: with --gateway, and in the smoke run.
const withGateway = gatewayOnly || (mode === 'smoke' && !clusterOnly && !filesOnly && !targets && !arg('relays'));
// The file-transfer bench likewise: with --files, and in the smoke run.
const withFiles = filesOnly || (mode === 'smoke' && !clusterOnly && !gatewayOnly && !targets && !arg('relays'));
const launch = (name, port) => (targets ? externalRelay(targets) : startRelay(name, port));

// Every run is bounded in count and time; the full profile is what RESULTS.md shows.
const PROFILES = {
  smoke: {
    workers: 2,
    steps: [200],
    holdMs: 1000,
    pairs: 10,
    trafficMs: 1000,
    sizes: [64],
    storm: 200,
    fixedRate: 500,
    httpSeconds: 1,
    journey: { seconds: 2, arrivalRate: 10 },
    settleMs: 500,
    trafficWorkers: 2,
    cluster: {
      pairingClients: 300,
      pairs: 10,
      lightRate: 100,
      trafficMs: 1000,
      chatPairs: 10,
      chatRate: 200,
      steadyMs: 500,
      drainGraceMs: 1000,
      recoveryTimeoutMs: 20_000,
      afterKillMs: 500,
    },
    gateway: {
      instances: 4,
      nginxWorkers: 2,
      workers: 2,
      addressesPerWorker: 4,
      concurrency: 32,
      steps: [400],
      holdMs: 1000,
      settleMs: 300,
      // Not the 3-instance connection phase: the same code as the connection phase, and 10 s more.
      threeTarget: 0,
      threeHoldMs: 500,
      pairs: 10,
      trafficMs: 1000,
      lightRate: 100,
      storm: 200,
      stormConcurrency: 64,
      chatPairs: 10,
      chatRate: 200,
      steadyMs: 500,
      // One instance restarted, not three: each waits out nginx's fail_timeout (5 s) after its restart. And no
      // second rolling restart with max_fails=0 (the diagnosis): it would double the smoke run's gateway time.
      rollInstances: 1,
      variant: false,
      drainGraceMs: 1000,
    },
    files: { sizeBytes: 1024 * 1024, rounds: 1 },
  },
  quick: {
    workers: 3,
    steps: [2000, 6000],
    holdMs: 2000,
    pairs: 100,
    trafficMs: 1500,
    sizes: [64, 512, 4096],
    storm: 3000,
    fixedRate: 10_000,
    httpSeconds: 2,
    journey: { seconds: 3, arrivalRate: 40 },
    settleMs: 1000,
    trafficWorkers: 2,
    cluster: {
      pairingClients: 4000,
      pairs: 100,
      lightRate: 2000,
      trafficMs: 1500,
      chatPairs: 100,
      chatRate: 2000,
      steadyMs: 2000,
      drainGraceMs: 1500,
      recoveryTimeoutMs: 30_000,
      afterKillMs: 2000,
    },
    gateway: {
      instances: 4,
      nginxWorkers: 4,
      workers: 4,
      addressesPerWorker: 16,
      concurrency: 64,
      steps: [3000, 6000],
      holdMs: 5000,
      settleMs: 1000,
      threeTarget: 6000,
      threeHoldMs: 2000,
      pairs: 100,
      trafficMs: 1500,
      lightRate: 2000,
      storm: 2000,
      stormConcurrency: 64,
      chatPairs: 100,
      chatRate: 2000,
      steadyMs: 2000,
      drainGraceMs: 1500,
    },
    files: { sizeBytes: 10 * 1024 * 1024, rounds: 1 },
  },
  full: {
    // One generator process per core: more only queue behind each other (19,500 sockets fit in two).
    workers: 2,
    steps: [2500, 5000, 10000, 15000, 19500],
    holdMs: 120_000,
    pairs: 200,
    trafficMs: 8000,
    sizes: [64, 512, 4096],
    storm: 10_000,
    fixedRate: 10_000,
    httpSeconds: 10,
    journey: { seconds: 30, arrivalRate: 100 },
    trafficWorkers: 2,
    // Three instances, Redis and the generator share the machine: the same pairs and rates as the single
    // server's throughput phase, and enough clients that pairing runs for seconds, not milliseconds.
    cluster: {
      pairingClients: 10_000,
      pairs: 200,
      // A second, light open-loop rate: whether the tail at fixedRate comes from the load or from the path.
      lightRate: 2000,
      trafficMs: 8000,
      chatPairs: 200,
      chatRate: 4000,
      steadyMs: 5000,
      drainGraceMs: 1500,
      recoveryTimeoutMs: 30_000,
      afterKillMs: 5000,
    },
    // nginx with TLS in front, as deployed. A process here holds at most 20,000 files: the connection phase
    // runs 4 instances (each caps itself at 19,744 sockets, so 3 hold fewer than 60,000), nginx 24 workers
    // (two descriptors per proxied WebSocket, 19,900 connections each; before `reuseport` nginx spread them
    // unevenly: in one run a worker of 12 held a fifth of them) and 6 generator processes (12,500
    // sockets each) over 192 source addresses. The rest runs on 3 instances, as deployed.
    gateway: {
      instances: 4,
      nginxWorkers: 24,
      // Traffic, storm and rolling restart on 3 instances hold a few hundred to 10,000 sockets: nginx as
      // deployed, a worker per core (compose: worker_processes auto).
      trafficNginxWorkers: cpus().length,
      workers: 6,
      addressesPerWorker: 32,
      concurrency: 64,
      steps: [15_000, 30_000, 45_000, 60_000, 75_000],
      holdMs: 120_000,
      settleMs: 2000,
      threeTarget: 60_000,
      threeHoldMs: 10_000,
      pairs: 200,
      trafficMs: 8000,
      lightRate: 2000,
      storm: 10_000,
      stormConcurrency: 64,
      chatPairs: 200,
      chatRate: 4000,
      steadyMs: 5000,
      drainGraceMs: 1500,
    },
    files: { sizeBytes: 10 * 1024 * 1024, rounds: 3 },
  },
};
const P = { ...PROFILES[mode] };
// --workers=N: generator processes (and source addresses 127.0.0.2..) for the connection phases; a
// bigger machine, or a cluster measured toward 60,000 sessions, needs more (at most ~19,500 sockets each).
if (arg('workers')) P.workers = Number(arg('workers').split('=')[1]);
// --instances=N: relay instances for the gateway bench's connection phase (its other phases run on 3).
if (arg('instances')) P.gateway = { ...P.gateway, instances: Number(arg('instances').split('=')[1]) };

async function withRelay(name, port, fn, workers = P.workers) {
  const relay = await launch(name, port);
  const pool = new WorkerPool(workers);
  try {
    await pool.init({ ...relay, transport: name === 'socketio' ? 'socketio' : 'ws' });
    return await fn(relay, pool);
  } finally {
    await pool.stop();
    await relay.stop();
  }
}

/** Capacity: ramp paired sessions in steps; setup rate, pairing time and RSS per session at each; then hold. */
async function capacity(name, port) {
  return withRelay(name, port, async (relay, pool) => {
    const base = relay.sample().rssBytes;
    const steps = [];
    let have = 0;
    for (const target of P.steps) {
      const add = target - have;
      const generator0 = sum(await pool.all('counts'), (r) => r.workerCpuMs);
      const cpu0 = relay.sample().cpuSeconds;
      const t0 = Date.now();
      const conn = await pool.all('connect', (i) => ({ count: per(add, P.workers)[i], concurrency: 128 }));
      const setupMs = Date.now() - t0;
      const setupCpu = relay.sample().cpuSeconds - cpu0;
      const generatorMs = sum(conn, (r) => r.workerCpuMs) - generator0;
      const t1 = Date.now();
      await pool.all('find');
      const pairMs = Date.now() - t1;
      const pairCpu = relay.sample().cpuSeconds - cpu0 - setupCpu;
      const before = have;
      have = conn.reduce((s, r) => s + r.connected, 0);
      await sleep(P.settleMs ?? 2000);
      const rss = relay.sample().rssBytes;
      const previous = steps.at(-1);
      steps.push({
        sessions: have,
        setupPerSec: Math.round((have - before) / (setupMs / 1000)),
        setupPerServerCpuSecond: Math.round((have - before) / Math.max(setupCpu, 0.01)),
        // CPU per session set up, each side: what bounds the setup rate when both share the machine.
        serverCpuPerSetupUs: Math.round((setupCpu * 1e6) / (have - before)),
        generatorCpuPerSetupUs: Math.round((generatorMs * 1e3) / (have - before)),
        pairMs,
        // Server CPU for the step's connects (upgrade, hello, welcome) and for its pairing (find, matched).
        setupCpuSeconds: setupCpu,
        pairCpuSeconds: pairCpu,
        rssBytes: rss,
        rssPerSessionBytes: Math.round((rss - base) / have),
        // What one more session costs: the step's growth over the previous step (fixed costs cancel out).
        marginalRssPerSessionBytes: previous
          ? Math.round((rss - previous.rssBytes) / (have - previous.sessions))
          : undefined,
        errors: conn.reduce((s, r) => s + r.errors, 0),
        lastError: conn.find((r) => r.lastError)?.lastError,
      });
      const s = steps.at(-1);
      console.log(
        `  ${name}: ${have} paired sessions, ${s.setupPerSec}/s setup (${s.setupPerServerCpuSecond} per server CPU-s), ${(rss / 2 ** 20).toFixed(0)} MB`,
      );
      if (have < target) break;
    }
    const held = await pool.all('hold', { ms: P.holdMs, everyMs: 20_000 });
    const alive = held.reduce((s, r) => s + r.alive, 0);
    const heldRss = relay.sample().rssBytes;
    const first = steps[0];
    const last = steps.at(-1);
    const rampCpu = sum(steps, (s) => s.setupCpuSeconds + s.pairCpuSeconds);
    return {
      baseRssBytes: base,
      steps,
      // Whole sessions (connect, hello, welcome, find, matched) per server CPU-second over the whole ramp:
      // more CPU time than any one step, so less noise from /proc's 10 ms ticks.
      pairedSetupsPerServerCpuSecond: Math.round(last.sessions / Math.max(rampCpu, 0.01)),
      held: { ms: P.holdMs, alive, rssBytes: heldRss },
      maxSessions: alive,
      // Idle sessions after the hold (the connect storm's garbage collected), over the idle base: the headline.
      rssPerSessionBytes: Math.round((heldRss - base) / Math.max(alive, 1)),
      // The slope over the ramp, right after each connect storm; with one step, the average over the base.
      rampRssPerSessionBytes:
        steps.length > 1
          ? Math.round((last.rssBytes - first.rssBytes) / (last.sessions - first.sessions))
          : last.rssPerSessionBytes,
    };
  });
}

/** Throughput (closed loop) per size, then latency at 25/50/75% of the 64 B maximum and at a fixed rate. */
async function throughput(name, port) {
  return withRelay(
    name,
    port,
    async (relay, pool) => {
      await pool.all('connect', (i) => ({ count: per(P.pairs * 2, pool.workers.length)[i], concurrency: 32 }));
      await pool.all('find');
      const run = async (args) => {
        const warmupMs = Math.min(1000, P.trafficMs / 2);
        const cpu = (async () => {
          await sleep(warmupMs);
          const a = relay.sample();
          await sleep(P.trafficMs);
          return relay.sample().cpuSeconds - a.cpuSeconds;
        })();
        // An open-loop rate is the total: each generator process offers its share.
        const share = args.rate === undefined ? {} : { rate: args.rate / pool.workers.length };
        const results = await pool.all('traffic', { ms: P.trafficMs, warmupMs, ...args, ...share });
        const serverCpu = await cpu;
        const drainMs = await quiesce(pool);
        const received = results.reduce((s, r) => s + r.received, 0);
        const seconds = results[0].seconds;
        return {
          rate: Math.round(received / seconds),
          perServerCpuSecond: Math.round(received / Math.max(serverCpu, 0.01)),
          serverCpuShare: serverCpu / seconds,
          generatorCpuShare: results.reduce((s, r) => s + r.cpuMs, 0) / 1000 / seconds,
          latencyMs: percentiles(results.map((r) => r.histogram)),
          // Time after the phase until everything sent had arrived: a backlog the relay could not keep up with.
          drainMs,
        };
      };
      const closed = {};
      for (const size of P.sizes) {
        closed[size] = await run({ size, window: 16 });
        console.log(
          `  ${name}: ${size} B closed loop ${closed[size].rate} msg/s, ${closed[size].perServerCpuSecond} per server CPU-s`,
        );
      }
      const max = closed[64].rate;
      const open = [];
      for (const fraction of [0.25, 0.5, 0.75]) {
        const r = await run({ size: 64, rate: Math.round(max * fraction) });
        open.push({ fraction, offered: Math.round(max * fraction), ...r });
      }
      const fixed = await run({ size: 64, rate: P.fixedRate });
      console.log(`  ${name}: p99 at ${P.fixedRate} msg/s = ${fixed.latencyMs.p99} ms`);
      return { closed, open, fixed: { offered: P.fixedRate, ...fixed } };
    },
    // Two generator processes for two cores: more would queue behind each other for CPU and show as latency.
    P.trafficWorkers,
  );
}

/** Resume storm: all clients stop reading, get messages, drop at once, and resume at once. */
async function storm(name, port) {
  return withRelay(name, port, async (_relay, pool) => {
    await pool.all('connect', (i) => ({ count: per(P.storm, P.workers)[i], concurrency: 64 }));
    await pool.all('find');
    await pool.all('stormDeafen');
    const dropped = await pool.all('stormDrop', { messages: 5 });
    const unconfirmed = dropped.reduce((s, r) => s + r.unconfirmed, 0);
    await sleep(500);
    const res = await pool.all('stormResume', { messages: 5, concurrency: 64 });
    const resumed = res.reduce((s, r) => s + r.resumed, 0);
    const ms = Math.max(...res.map((r) => r.ms));
    console.log(`  ${name}: ${resumed}/${P.storm} resumed with their messages in ${Math.round(ms)} ms`);
    return {
      clients: P.storm,
      resumed,
      ms: Math.round(ms),
      // Before the drop: how long the relay took to confirm every client's 5 messages, and any it never did.
      confirmMs: Math.round(Math.max(...dropped.map((r) => r.confirmMs))),
      unconfirmed,
    };
  });
}

const results = from ?? {
  mode,
  date: new Date().toISOString(),
  machine: {
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    cores: cpus().length,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    fileLimit: readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+)/)?.[1],
  },
  profile: P,
  relays: {},
};
/** The artillery journey (ours and the ws peer speak plain WebSocket) and, for ours, autocannon on HTTP. */
async function userFacing(name, port) {
  const relay = await launch(name, port);
  try {
    return {
      journey: name !== 'socketio' && artilleryInstalled() ? await journey(relay, P.journey) : null,
      // autocannon checks certificates, so an https target is left out.
      http:
        name === 'ours' || (name === 'target' && relay.http.startsWith('http:'))
          ? await httpBench(relay, P.httpSeconds)
          : null,
    };
  } finally {
    await relay.stop();
  }
}

if (relays.length > 0 && !artilleryInstalled())
  console.log('artillery is not installed (npm --prefix bench/artillery install): journey skipped');
let port = 18080;
for (const name of from ? [] : relays) {
  console.log(`${name}:`);
  // The floor keeps no buffer and speaks no more protocol than these two phases need: no storm, no journey.
  const floor = name === 'floor';
  results.relays[name] = {
    capacity: await capacity(name, port++),
    throughput: await throughput(name, port++),
    storm: floor ? null : await storm(name, port++),
    ...(floor ? {} : await userFacing(name, port++)),
  };
}

// Ports 18080 and up are the relays' above; the cluster's (Redis, then instances) start well clear of them.
if (withCluster && !from) results.cluster = await clusterBench(P, 18200);
// The gateway's clusters take 18600 and up (nginx, Redis, instances): clear of both.
if (withGateway && !from) results.gateway = await gatewayBench(P);
// The file bench's relays and Redis take 18900 and up.
if (withFiles && !from) results.files = await filesBench(P, 18900);
// --merge=<results.json>, with --from: the figures of a `BENCH_GATEWAY_PHASES=connections-am,three-am` run (the
// connection phases with nginx's accept_mutex on, a diagnosis) go beside this run's, under their own date.
if (from && arg('merge')) {
  const other = JSON.parse(readFileSync(arg('merge').split('=')[1], 'utf8'));
  results.gateway.acceptMutexRun = {
    date: other.date,
    mode: other.mode,
    contention: other.gateway.contention,
    phaseSeconds: other.gateway.phaseSeconds,
    connections: other.gateway.connectionsAcceptMutex,
    three: other.gateway.threeAcceptMutex,
    edgeLog: other.gateway.edgeLog,
  };
}

const stamp = results.date.replace(/[:.]/g, '-');
const dir = `${HERE}results/${clusterOnly ? 'cluster-' : gatewayOnly ? 'gateway-' : filesOnly ? 'files-' : ''}${mode}-${stamp}/`;
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}results.json`, `${JSON.stringify(results, null, 2)}\n`);
// BENCH_GATEWAY_PHASES runs some of the gateway's phases only: results.json, no report.
const partial = Boolean(process.env.BENCH_GATEWAY_PHASES);
const { markdown, charts } = filesOnly
  ? { markdown: filesSection(results), charts: {} }
  : clusterOnly
    ? { markdown: clusterReport(results), charts: {} }
    : gatewayOnly
      ? partial
        ? { markdown: '# Gateway phases only (BENCH_GATEWAY_PHASES): see results.json\n', charts: {} }
        : { markdown: gatewayReport(results), charts: gatewayCharts(results) }
      : report(results);
if (!gatewayOnly && results.gateway) Object.assign(charts, gatewayCharts(results));
for (const [file, svg] of Object.entries(charts)) writeFileSync(`${dir}${file}`, svg);
writeFileSync(
  `${dir}report.md`,
  clusterOnly || gatewayOnly || filesOnly
    ? markdown
    : [
        markdown,
        results.cluster && clusterSection(results),
        results.gateway && gatewaySection(results, './'),
        results.files && filesSection(results),
      ]
        .filter(Boolean)
        .join('\n'),
);
console.log(`\nreport: ${dir}report.md`);
// RESULTS.md holds the latest full run of each: the relays' (the whole file), the cluster's and the gateway's
// (each its own section, between markers, which the other kinds of run keep as they are).
const previous = (() => {
  try {
    return readFileSync(`${HERE}RESULTS.md`, 'utf8');
  } catch {
    return '';
  }
})();
const section = (start, end) =>
  previous.includes(start) ? previous.slice(previous.indexOf(start), previous.indexOf(end) + end.length) : '';
const kept = section(CLUSTER_START, CLUSTER_END);
const keptGateway = section(GATEWAY_START, GATEWAY_END);
const keptFiles = section(FILES_START, FILES_END);
if (mode === 'full' && filesOnly) {
  const fresh = filesSection(results).trimEnd();
  writeFileSync(
    `${HERE}RESULTS.md`,
    keptFiles ? previous.replace(keptFiles, () => fresh) : `${previous.trimEnd()}\n\n${fresh}\n`,
  );
  console.log('bench/RESULTS.md: files section updated');
} else if (mode === 'full' && gatewayOnly && !partial) {
  const fresh = gatewaySection(results, './results-latest/').trimEnd();
  writeFileSync(
    `${HERE}RESULTS.md`,
    keptGateway ? previous.replace(keptGateway, () => fresh) : `${previous.trimEnd()}\n\n${fresh}\n`,
  );
  mkdirSync(`${HERE}results-latest`, { recursive: true });
  copyFileSync(`${dir}results.json`, `${HERE}results-latest/gateway-results.json`);
  for (const file of Object.keys(charts)) copyFileSync(`${dir}${file}`, `${HERE}results-latest/${file}`);
  console.log('bench/RESULTS.md: gateway section updated');
} else if (mode === 'full' && gatewayOnly) {
  console.log('partial gateway run: bench/RESULTS.md left as it is');
} else if (mode === 'full' && clusterOnly) {
  const section = clusterSection(results);
  writeFileSync(
    `${HERE}RESULTS.md`,
    kept ? previous.replace(kept, () => section.trimEnd()) : `${previous.trimEnd()}\n\n${section}`,
  );
  mkdirSync(`${HERE}results-latest`, { recursive: true });
  copyFileSync(`${dir}results.json`, `${HERE}results-latest/cluster-results.json`);
  console.log('bench/RESULTS.md: cluster section updated');
} else if (mode === 'full') {
  const relaysMarkdown = markdown.replaceAll('](./', '](./results-latest/');
  writeFileSync(
    `${HERE}RESULTS.md`,
    [relaysMarkdown.trimEnd(), kept, keptGateway, keptFiles].filter(Boolean).join('\n\n').concat('\n'),
  );
  mkdirSync(`${HERE}results-latest`, { recursive: true });
  for (const file of [...Object.keys(charts), 'results.json'])
    copyFileSync(`${dir}${file}`, `${HERE}results-latest/${file}`);
  console.log('bench/RESULTS.md updated');
}

// Figures are reported, not judged; but a run where the machinery broke (clients that
// could not connect or resume, failed journeys, refused requests) says so, and the smoke
// run in CI fails on it, so the benches cannot rot unnoticed.
const problems = [];
for (const [name, r] of Object.entries(results.relays)) {
  const connectErrors = r.capacity.steps.reduce((s, x) => s + x.errors, 0);
  if (connectErrors > 0) problems.push(`${name}: ${connectErrors} clients failed to connect`);
  if (r.storm && r.storm.resumed < r.storm.clients)
    problems.push(`${name}: ${r.storm.clients - r.storm.resumed} did not resume`);
  if (r.journey && r.journey.failed > 0) problems.push(`${name}: ${r.journey.failed} journeys failed`);
  for (const h of r.http ?? []) if (h.other > 0) problems.push(`${name}: ${h.other} ${h.endpoint} not 2xx`);
}
const cluster = clusterProblems(results.cluster);
problems.push(...cluster.broken);
if (cluster.findings.length > 0)
  console.log(`\ncluster: the relay missed these (see the report):\n  ${cluster.findings.join('\n  ')}`);
const gateway = gatewayProblems(results.gateway);
problems.push(...gateway.broken);
problems.push(...filesProblems(results.files));
if (gateway.findings.length > 0)
  console.log(`\ngateway: missed these (see the report):\n  ${gateway.findings.join('\n  ')}`);
if (problems.length > 0) console.log(`\nproblems:\n  ${problems.join('\n  ')}`);
process.exit(mode === 'smoke' && problems.length > 0 ? 1 : 0);
