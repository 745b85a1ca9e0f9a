// The gateway bench (`npm run bench -- --gateway`): the production topology on
// loopback, from deploy/cluster.ts's startLocalCluster (Redis, relay instances,
// nginx terminating TLS with a CA made for the run), driven through wss:// by
// the bench's generator processes from many 127.0.0.x source addresses, each
// client with its own `?route=` key as each tab of the page has, and the run's
// CA trusted (certificates checked). Phases:
// - connections: paired sessions ramped in steps and held (the setup rate, which
//   is the rate of full TLS handshakes, as no client reuses a TLS session, and
//   RSS per session of nginx, each instance and Redis). A process here can hold
//   at most 20,000 files, and an instance caps itself below that (19,744
//   sockets), so this phase runs `instances` instances (4 by default: 60,000 do
//   not fit in 3); nginx gets enough workers for two descriptors per WebSocket;
// - on three instances, as deployed: cross-instance 64 B messages through TLS
//   (closed loop, per CPU-second of nginx, the instances and Redis; then p99 at
//   an open-loop rate); a resume storm (every client drops at once and resumes
//   through nginx with its route key); a rolling restart (SIGTERM to each
//   instance in turn, its drain, a replacement on the same port; typed clients
//   reconnect through nginx and every message is checked to arrive exactly
//   once); last, how many sessions the three instances held when asked for the
//   connection phase's target.
// Which instance a key lands on is computed as nginx does (chash.mjs), so each
// pair's two sides can be put on two instances; each instance's own count of
// open sockets (/metrics) checks the prediction.
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { startLocalCluster } from '../../dist/deploy/cluster.js';
import { checkPairs, contention, mergeCounts, settle, verify } from './cluster.mjs';
import { RELAYS } from './proc.mjs';
import { per, percentiles, quiesce, sleep, sum } from './util.mjs';
import { WorkerPool } from './workers.mjs';

/** nginx's HTTPS port for the first cluster; each cluster takes 50 ports (clear of 18080+ and the cluster bench's 18200+). */
export const GATEWAY_FIRST_PORT = 18600;
/** nginx/nginx.conf.template: `max_fails=1 fail_timeout=5s` on every instance. */
const NGINX_FAIL_TIMEOUT_MS = 5000;
const TICKS_PER_SECOND = 100;
const PAGE_BYTES = 4096;

// ---- the processes on the path, read from /proc

const childrenOf = (pid) => {
  try {
    return readFileSync(`/proc/${pid}/task/${pid}/children`, 'utf8').split(' ').filter(Boolean).map(Number);
  } catch {
    return [];
  }
};

function stat(pid) {
  try {
    const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const fields = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return {
      comm: s.slice(s.indexOf('(') + 1, s.lastIndexOf(')')),
      cpuSeconds: (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND,
      rssBytes: Number(fields[21]) * PAGE_BYTES,
    };
  } catch {
    return { comm: '', cpuSeconds: 0, rssBytes: 0 };
  }
}

/** Proportional set size: shared pages (nginx's workers share their master's) counted once across processes. */
function pss(pid) {
  try {
    return Number(readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/^Pss:\s+(\d+) kB/m)?.[1]) * 1024;
  } catch {
    return Number.NaN;
  }
}

function openFiles(pid) {
  try {
    return readdirSync(`/proc/${pid}/fd`).length;
  } catch {
    return Number.NaN;
  }
}

/** CPU seconds so far, RSS and (with `withPss`) PSS of each group of processes. */
function readGroups(groups, withPss = false) {
  const out = {};
  for (const g of groups) {
    const s = g.pids.map(stat);
    out[g.name] = {
      cpuSeconds: sum(s, (x) => x.cpuSeconds),
      rssBytes: sum(s, (x) => x.rssBytes),
      ...(withPss ? { pssBytes: sum(g.pids, pss) } : {}),
    };
  }
  return out;
}

const cpuSince = (before, groups) => {
  const now = readGroups(groups);
  return Object.fromEntries(Object.keys(now).map((k) => [k, now[k].cpuSeconds - (before[k]?.cpuSeconds ?? 0)]));
};

/** Open WebSockets on each instance, from its own /metrics (reached directly, as Prometheus does). */
async function socketsPerInstance(cl) {
  return Promise.all(
    cl.instances.map(async (i) => {
      try {
        const text = await (await fetch(`${i.http}/metrics`, { signal: AbortSignal.timeout(5000) })).text();
        return Number(/^relay_connections(?:\{[^}]*\})? (\d+)/m.exec(text)?.[1] ?? Number.NaN);
      } catch {
        return Number.NaN;
      }
    }),
  );
}

// ---- the cluster

/**
 * What nginx and the instances print: counted by kind (numbers and times taken out), so a run can say what went
 * wrong at the edge ("worker_connections are not enough", upstream errors) without keeping thousands of lines.
 */
function outputLog() {
  const kinds = {};
  return {
    kinds,
    output(source, line) {
      if (source === 'nginx' && line.startsWith('{')) return; // access log (off here)
      const kind = `${source.replace(/\d+$/, '')}: ${line
        .replace(/^\d{4}\/\d\d\/\d\d \d\d:\d\d:\d\d /, '')
        .replace(/"time":"[^"]*"|"pid":\d+|"hostname":"[^"]*"|"instance":"[^"]*"/g, '')
        .replace(/\d+/g, 'N')
        .slice(0, 200)}`;
      if (!(kind in kinds) && Object.keys(kinds).length < 200) kinds[kind] = 0;
      if (kind in kinds) kinds[kind]++;
      if (/\[(emerg|alert|crit)\]/.test(line)) console.log(`  ${source}: ${line}`);
    },
    /** The counts since the last call, most frequent first, and reset. */
    take() {
      const out = Object.entries(kinds)
        .sort((a, b) => b[1] - a[1])
        .slice(0, 12)
        .map(([line, count]) => ({ line, count }));
      for (const k of Object.keys(kinds)) delete kinds[k];
      return out;
    },
  };
}

/** Redis, `instances` instances and nginx on loopback from `firstPort` (nginx's HTTPS port). */
async function startGateway(G, instances, firstPort, log) {
  const relayPorts = Array.from({ length: instances }, (_, i) => firstPort + 10 + i);
  const cl = await startLocalCluster({
    instances,
    httpsPort: firstPort,
    httpPort: firstPort + 1,
    redisPort: firstPort + 2,
    relayPorts,
    // The bench's opened-up relay limits (as for every bench of ours), and a short drain.
    relayEnv: { ...RELAYS.ours.env, DRAIN_GRACE_MS: String(G.drainGraceMs) },
    // Every client comes from one of a few hundred loopback addresses: thousands of sockets each. (nginx takes at
    // most 65,535 for limit_conn.)
    limits: { wsConnectionsPerAddress: 60_000, upgradesPerSecond: 1_000_000, upgradesBurst: 1_000_000 },
    nginxWorkers: G.nginxWorkers,
    workerShutdownTimeout: '5s',
    output: log.output,
  });
  // startLocalCluster does not say Redis's pid: it is the redis-server among this process's children.
  const redisPid = childrenOf(process.pid).find((pid) => stat(pid).comm === 'redis-server');
  // nginx's workers (new ones after a reload); every one seen is remembered for the exit hook.
  const seen = new Set();
  const nginxWorkers = () => {
    const pids = childrenOf(cl.nginxPid);
    for (const pid of pids) seen.add(pid);
    return pids;
  };
  nginxWorkers();
  // startLocalCluster's exit hook SIGKILLs nginx's master only; its workers would live on, holding the port.
  const killWorkers = () => {
    for (const pid of seen) {
      try {
        if (stat(pid).comm === 'nginx') process.kill(pid, 'SIGKILL');
      } catch {}
    }
  };
  process.once('exit', killWorkers);
  const upstreams = relayPorts.map((p) => `127.0.0.1:${p}`);
  const ca = readFileSync(cl.ca, 'utf8');
  const url = `wss://127.0.0.1:${cl.httpsPort}/ws`;
  return {
    cl,
    instances,
    url,
    async stop() {
      await cl.stop();
      process.removeListener('exit', killWorkers);
    },
    nginxWorkers,
    /** nginx (master and workers), each instance (its current process) and Redis. */
    groups: () => [
      { name: 'nginx', pids: [cl.nginxPid, ...nginxWorkers()] },
      ...cl.instances.map((i) => ({ name: i.id, pids: [i.process.pid] })),
      { name: 'redis', pids: redisPid ? [redisPid] : [] },
    ],
    /** A pool of generator processes for this gateway: each client with its own route key (a new prefix per pool). */
    async pool(workers, addressesPerWorker, balancedRoutes = false) {
      const pool = new WorkerPool(workers, addressesPerWorker);
      await pool.init({
        urls: [url],
        transport: 'ws',
        // Every client pings every 20 s from its connect on, as the page does.
        gateway: {
          ca,
          upstreams,
          routePrefix: `r${randomBytes(3).toString('hex')}`,
          pingEveryMs: 20_000,
          keepTlsSessions: true,
          balancedRoutes,
          // Below Linux's ephemeral range, which nginx needs for its own connections to the instances (and
          // below the bench's servers' ports, 18080 and up).
          ports: [1024, 17_000],
        },
      });
      return pool;
    },
  };
}

/** `balanced`: route keys chosen so clients spread evenly over the instances (else random, as the page's). */
async function withPool(gw, workers, addressesPerWorker, fn, balanced = false) {
  const pool = await gw.pool(workers, addressesPerWorker, balanced);
  try {
    return await fn(pool);
  } finally {
    await pool.stop();
  }
}

function mergeFailures(list) {
  const out = {};
  for (const f of list)
    for (const [code, x] of Object.entries(f)) {
      const o = out[code];
      out[code] = o
        ? {
            count: o.count + x.count,
            min: Math.min(o.min, x.min),
            p50: Math.max(o.p50, x.p50),
            max: Math.max(o.max, x.max),
          }
        : { ...x };
    }
  return out;
}

const perSlot = (pairsResults, n) => {
  const counts = Array(n).fill(0);
  for (const r of pairsResults) for (const s of r.slots) counts[s]++;
  return counts;
};

// ---- phases

/**
 * Paired sessions through nginx, ramped to each of `steps` (connect, then `find` in pairs whose sides are on two
 * instances), then held for `holdMs` with a ping from every client every 20 s (nginx closes a WebSocket idle for 75 s).
 */
async function connections(gw, G, steps, holdMs, label) {
  return withPool(gw, G.workers, G.addressesPerWorker, async (pool) => {
    await sleep(500);
    const groups = gw.groups();
    const base = readGroups(groups, true);
    const out = {
      label,
      instances: gw.instances,
      nginxWorkers: gw.nginxWorkers().length,
      generators: G.workers,
      sourceAddresses: G.workers * G.addressesPerWorker,
      base,
      steps: [],
    };
    let have = 0;
    let errors = 0;
    for (const target of steps) {
      const add = target - have;
      const cpu0 = readGroups(groups);
      const generator0 = sum(await pool.all('counts'), (r) => r.workerCpuMs);
      const t0 = Date.now();
      const conn = await pool.all('connect', (i) => ({
        count: 2 * per(Math.floor(add / 2), G.workers)[i],
        concurrency: G.concurrency,
      }));
      const setupMs = Date.now() - t0;
      const setupCpu = cpuSince(cpu0, groups);
      const generatorMs = sum(conn, (r) => r.workerCpuMs) - generator0;
      const cpu1 = readGroups(groups);
      const t1 = Date.now();
      // Pairing through Redis is slow on a busy machine: a client is given up on only after 15 s without a match.
      const found = await pool.all('find', { tagged: true, timeoutMs: 120_000, stallMs: 15_000 });
      const pairMs = Date.now() - t1;
      const pairCpu = cpuSince(cpu1, groups);
      const before = have;
      have = sum(conn, (r) => r.connected);
      // Asked for, not connected (the worker's `errors` also counts error frames, such as a refused `find`).
      const stepErrors = 2 * Math.floor(add / 2) - (have - before);
      errors += stepErrors;
      await sleep(G.settleMs);
      const mem = readGroups(groups, true);
      const added = Math.max(1, have - before);
      const step = {
        target,
        sessions: have,
        matched: sum(found, (r) => r.matched),
        setupMs,
        // Each new session is one full TLS handshake (no client resumes a TLS session), an upgrade and hello/welcome.
        setupPerSec: Math.round((have - before) / (setupMs / 1000)),
        pairMs,
        cpuPerSetupUs: Object.fromEntries(Object.entries(setupCpu).map(([k, v]) => [k, Math.round((v * 1e6) / added)])),
        generatorCpuPerSetupUs: Math.round((generatorMs * 1e3) / added),
        setupCpuShare: Object.fromEntries(Object.entries(setupCpu).map(([k, v]) => [k, v / (setupMs / 1000)])),
        pairCpuSeconds: pairCpu,
        rssBytes: Object.fromEntries(Object.entries(mem).map(([k, v]) => [k, v.rssBytes])),
        nginxPssBytes: mem.nginx.pssBytes,
        perInstance: await socketsPerInstance(gw.cl),
        nginxWorkerFiles: gw.nginxWorkers().map(openFiles),
        errors: stepErrors,
        lastError: stepErrors > 0 ? conn.find((r) => r.lastError)?.lastError : undefined,
        // Per error code: how many, and how long after its start a failed connect failed (ms), over all workers.
        failedAfterMs: mergeFailures(conn.map((r) => r.failedAfterMs ?? {})),
        errorFrames: mergeCounts(found.map((r) => r.errorCodes)),
        contention: contention(),
      };
      out.steps.push(step);
      console.log(
        `  ${label}: ${have} sessions (${step.matched} matched) in ${setupMs} ms, ${step.setupPerSec}/s TLS setups; ` +
          `per instance ${step.perInstance.join('/')}; nginx ${(mem.nginx.rssBytes / 2 ** 20).toFixed(0)} MB; ` +
          `${stepErrors} failed${step.lastError ? ` (${step.lastError})` : ''}`,
      );
      if (have < target) break;
    }
    const t = Date.now();
    const held = await pool.all('hold', { ms: holdMs, everyMs: 20_000 });
    const alive = sum(held, (r) => r.alive);
    const after = readGroups(groups, true);
    const perInstance = await socketsPerInstance(gw.cl);
    const pairs = checkPairs(await pool.all('pairs'));
    const perSession = {};
    for (const [k, v] of Object.entries(after)) {
      const i = gw.cl.instances.findIndex((x) => x.id === k);
      // Each instance's growth over its own sockets; nginx's and Redis's over all sessions.
      const sessions = i >= 0 ? perInstance[i] : alive;
      perSession[k] = Math.round((v.rssBytes - base[k].rssBytes) / Math.max(1, sessions));
    }
    out.held = {
      ms: Date.now() - t,
      alive,
      matched: pairs.chats * 2,
      pairs,
      perInstance,
      nginxWorkerFiles: gw.nginxWorkers().map(openFiles),
      rssBytes: Object.fromEntries(Object.entries(after).map(([k, v]) => [k, v.rssBytes])),
      nginxPssBytes: after.nginx.pssBytes,
      rssPerSessionBytes: perSession,
      nginxPssPerSessionBytes: Math.round((after.nginx.pssBytes - base.nginx.pssBytes) / Math.max(1, alive)),
    };
    out.connectErrors = errors;
    await pool.all('close', { code: 1000 });
    console.log(
      `  ${label}: ${alive} held for ${Math.round(out.held.ms / 1000)} s (${pairs.chats} pairs, ${pairs.crossInstance} ` +
        `cross-instance); RSS per session: ${Object.entries(perSession)
          .map(([k, v]) => `${k} ${v} B`)
          .join(', ')}`,
    );
    return out;
  });
}

/** 64 B closed loop and open-loop rates, every pair's two sides on two instances, all through nginx and TLS. */
async function traffic(gw, G, P) {
  return withPool(
    gw,
    P.trafficWorkers,
    G.addressesPerWorker,
    async (pool) => {
      const n = pool.workers.length;
      const conn = await pool.all('connect', (i) => ({ count: 2 * per(G.pairs, n)[i], concurrency: 32 }));
      await pool.all('find', { tagged: true, timeoutMs: 30_000 });
      const placed = await pool.all('pairs');
      const pairs = checkPairs(placed);
      await sleep(300);
      // The hash computed here against where the sockets are.
      const routing = { predicted: perSlot(placed, gw.instances), measured: await socketsPerInstance(gw.cl) };
      const groups = gw.groups();
      const run = async (args) => {
        const warmupMs = Math.min(1000, G.trafficMs / 2);
        const cpu = (async () => {
          await sleep(warmupMs);
          const a = readGroups(groups);
          await sleep(G.trafficMs);
          return cpuSince(a, groups);
        })();
        const share = args.rate === undefined ? {} : { rate: args.rate / n };
        const results = await pool.all('traffic', { ms: G.trafficMs, warmupMs, ...args, ...share });
        const serverCpu = await cpu;
        const drainMs = await quiesce(pool);
        const received = sum(results, (r) => r.received);
        const seconds = results[0].seconds;
        const cpuSeconds = sum(Object.values(serverCpu), (v) => v);
        return {
          rate: Math.round(received / seconds),
          perCpuSecond: Math.round(received / Math.max(cpuSeconds, 0.01)),
          cpuShare: Object.fromEntries(Object.entries(serverCpu).map(([k, v]) => [k, v / seconds])),
          generatorCpuShare: sum(results, (r) => r.cpuMs) / 1000 / seconds,
          latencyMs: percentiles(results.map((r) => r.histogram)),
          drainMs,
          errorFrames: mergeCounts(results.map((r) => r.errorCodes)),
        };
      };
      const closed = await run({ size: 64, window: 16 });
      const fixed = { offered: P.fixedRate, ...(await run({ size: 64, rate: P.fixedRate })) };
      const light = { offered: G.lightRate, ...(await run({ size: 64, rate: G.lightRate })) };
      await pool.all('close', { code: 1000 });
      console.log(
        `  traffic: 64 B closed loop ${closed.rate} msg/s, ${closed.perCpuSecond} per CPU-s (nginx + relays + Redis); ` +
          `p99 at ${P.fixedRate} msg/s = ${fixed.latencyMs.p99} ms, at ${G.lightRate} msg/s = ${light.latencyMs.p99} ms; ` +
          `${pairs.crossInstance}/${pairs.chats} pairs cross-instance; sockets per instance predicted ` +
          `${routing.predicted.join('/')}, measured ${routing.measured.join('/')}`,
      );
      return { clients: sum(conn, (x) => x.connected), pairs, routing, closed, fixed, light };
    },
    true,
  );
}

/** Resume storm through nginx: every client stops reading, gets 5 messages, drops at once and resumes at once. */
async function storm(gw, G) {
  return withPool(
    gw,
    G.workers,
    G.addressesPerWorker,
    async (pool) => {
      const conn = await pool.all('connect', (i) => ({
        count: 2 * per(Math.floor(G.storm / 2), G.workers)[i],
        concurrency: G.concurrency,
      }));
      const clients = sum(conn, (r) => r.connected);
      await pool.all('find', { tagged: true, timeoutMs: 60_000 });
      await pool.all('stormDeafen');
      const dropped = await pool.all('stormDrop', { messages: 5 });
      await sleep(500);
      const groups = gw.groups();
      const cpu0 = readGroups(groups);
      const res = await pool.all('stormResume', { messages: 5, concurrency: G.stormConcurrency });
      const cpu = cpuSince(cpu0, groups);
      const resumed = sum(res, (r) => r.resumed);
      const ms = Math.max(...res.map((r) => r.ms));
      await pool.all('close', { code: 1000 });
      console.log(`  resume storm: ${resumed}/${clients} resumed with their messages in ${Math.round(ms)} ms`);
      return {
        clients,
        resumed,
        ms: Math.round(ms),
        resumeErrors: sum(res, (r) => r.errors) - sum(conn, (r) => r.errors),
        // Resumed TLS sessions (abbreviated handshakes) among the storm's connections; the rest were full handshakes.
        tlsResumed: sum(res, (r) => r.tlsResumed),
        confirmMs: Math.round(Math.max(...dropped.map((r) => r.confirmMs))),
        unconfirmed: sum(dropped, (r) => r.unconfirmed),
        cpuShare: Object.fromEntries(Object.entries(cpu).map(([k, v]) => [k, v / (ms / 1000)])),
        // The clients' side of every handshake is on this machine too: the generator processes' CPU meanwhile.
        generatorCpuShare: sum(res, (r) => r.cpuMs) / ms,
      };
    },
    true,
  );
}

/**
 * Rolling restart through nginx: typed clients (each with its route key) chat at `chatRate`; each instance in turn
 * gets SIGTERM, drains and exits, and a replacement starts on the same port (startLocalCluster's restartInstance).
 * Clients reconnect through nginx with the same key: while an instance drains or is gone nginx sends them on to the
 * next instance on its ring; once it is back, new sockets with its keys go to it again.
 */
async function rolling(gw, G, P, label = 'rolling restart') {
  return withPool(
    gw,
    P.trafficWorkers,
    G.addressesPerWorker,
    async (pool) => {
      const n = pool.workers.length;
      const chat = (op, args = {}) =>
        pool.all('chatters', (i) => ({ op, ...(typeof args === 'function' ? args(i) : args) }));
      await chat('setUrls', {
        urls: [gw.url],
        drainJitterMs: Math.round(G.drainGraceMs / 2),
        dropJitterMs: 100,
        connectWhileOpen: process.env.BENCH_CLOSE_FIRST !== '1',
      });
      const opened = await chat('open', (i) => ({ count: 2 * per(G.chatPairs, n)[i] }));
      await chat('pair', { timeoutMs: 30_000 });
      await chat('run', { rate: G.chatRate / n });
      await sleep(G.steadyMs);
      const rounds = [];
      for (let i = 0; i < Math.min(G.rollInstances ?? 3, gw.cl.instances.length); i++) {
        const old = gw.cl.instances[i];
        const before = await socketsPerInstance(gw.cl);
        const t0 = Date.now();
        old.process.kill('SIGTERM');
        await old.exited;
        const drainMs = Date.now() - t0;
        const t1 = Date.now();
        await restart(gw.cl, i);
        const startMs = Date.now() - t1;
        rounds.push({
          stopped: old.id,
          exit: old.process.exitCode ?? old.process.signalCode,
          drainMs,
          startMs,
          socketsBefore: before,
        });
        console.log(
          `  ${label}: ${old.id} drained and exited (${old.process.exitCode}) in ${drainMs} ms, ` +
            `back on its port after ${startMs} ms`,
        );
        // nginx took the instance out for fail_timeout (5 s) when it refused or was gone: the next one is stopped
        // only once it is back in rotation (as an operator would wait), else nginx may have none left for some keys.
        await sleep(Math.max(G.steadyMs, NGINX_FAIL_TIMEOUT_MS + 1000));
      }
      const afterAll = await socketsPerInstance(gw.cl);
      const result = {
        pairs: G.chatPairs,
        rate: G.chatRate,
        connectErrors: sum(opened, (r) => r.failed),
        rounds,
        socketsAfter: afterAll,
        // A client refused by nginx (no instance in rotation) retries with backoff; nothing new for 8 s is the end.
        ...verify(await settle(chat, NGINX_FAIL_TIMEOUT_MS + 3000), 'gateway-rolling'),
      };
      await chat('close');
      console.log(
        `  ${label}: ${result.sent} sent, ${result.lost} lost, ${result.duplicated} duplicated, ` +
          `${result.outOfOrder} out of order, ${result.reconnects} reconnects`,
      );
      return result;
    },
    true,
  );
}

/**
 * The diagnosis variant: the same gateway with `max_fails=0` on every instance in nginx's upstreams instead of the
 * template's `max_fails=1 fail_timeout=5s` (the rendered file rewritten, then `nginx -s reload`), so nginx never
 * takes an instance out of rotation; a refused or failed attempt still goes on to the next instance per request
 * (`proxy_next_upstream`). Not a configuration of the project: a measurement of what the template's costs.
 */
async function withoutPassiveFailures(gw) {
  const file = join(gw.cl.dir, 'nginx.conf');
  const text = readFileSync(file, 'utf8');
  const patched = text.replaceAll(' max_fails=1 fail_timeout=5s;', ' max_fails=0;');
  if (patched === text) throw new Error(`${file}: no "max_fails=1 fail_timeout=5s" to change`);
  writeFileSync(file, patched);
  await gw.cl.reloadNginx();
  // The old workers finish within worker_shutdown_timeout (5 s); the new ones start with no failure state.
  await sleep(6000);
}

/**
 * Another diagnosis: `accept_mutex on` in nginx's events block (the rendered file rewritten, then reloaded). The
 * template leaves it off, and then the kernel hands new connections to whichever worker it wakes, which on this
 * machine put a fifth of them on one worker of 12 and ran it out of its 19,900 connections; with the mutex, a
 * worker more than 7/8 full stops taking new ones. Run only when BENCH_GATEWAY_PHASES names `connections-am` or
 * `three-am`: not a configuration of the project, and it doubles the long phases.
 */
async function withAcceptMutex(gw) {
  const file = join(gw.cl.dir, 'nginx.conf');
  const text = readFileSync(file, 'utf8');
  const patched = text.replace(/events \{\n/, 'events {\n    accept_mutex on;\n');
  if (patched === text) throw new Error(`${file}: no events block`);
  writeFileSync(file, patched);
  await gw.cl.reloadNginx();
  await sleep(6000);
}

/**
 * startLocalCluster's restartInstance, given longer: it gives a new instance 15 s to be ready (Redis connected),
 * which a busy machine has overrun; the process keeps starting, and this waits up to a minute for its /readyz.
 */
async function restart(cl, i) {
  try {
    await cl.restartInstance(i);
  } catch (err) {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const instance = cl.instances[i];
      if (instance.process.exitCode !== null) throw err;
      try {
        const res = await fetch(`${instance.http}/readyz`, { signal: AbortSignal.timeout(1000) });
        if (res.status === 200 && (await res.json()).broker === 'up') return;
      } catch {}
      if (Date.now() > deadline) throw err;
      await sleep(200);
    }
  }
}

/** The whole gateway bench; `G` is the profile's `gateway` part. */
export async function gatewayBench(P, firstPort = GATEWAY_FIRST_PORT) {
  const G = P.gateway;
  // BENCH_GATEWAY_PHASES=connections,traffic,storm,rolling,variant,three: only those (for working on one; the report
  // needs them all); connections-am and three-am run only when named (withAcceptMutex).
  const only = process.env.BENCH_GATEWAY_PHASES?.split(',');
  const want = (phase) => !only || only.includes(phase);
  const log = outputLog();
  const out = {
    instances: G.instances,
    nginxWorkers: G.nginxWorkers,
    generators: G.workers,
    sourceAddresses: G.workers * G.addressesPerWorker,
    drainGraceMs: G.drainGraceMs,
    phaseSeconds: {},
    contention: [contention()],
    edgeLog: {},
  };
  const timed = async (name, fn) => {
    const t0 = Date.now();
    try {
      return await fn();
    } finally {
      out.phaseSeconds[name] = Math.round((Date.now() - t0) / 100) / 10;
      out.edgeLog[name] = log.take();
    }
  };
  out.nginxVersion = spawnSync('nginx', ['-v'], { encoding: 'utf8' }).stderr?.match(/nginx\/(\S+)/)?.[1];
  out.redisVersion = spawnSync('redis-server', ['--version'], { encoding: 'utf8' }).stdout?.match(/v=(\S+)/)?.[1];

  console.log(`gateway: ${G.instances} instances, Redis and nginx (${G.nginxWorkers} workers), TLS on loopback`);
  if (want('connections')) {
    const big = await startGateway(G, G.instances, firstPort, log);
    try {
      out.connections = await timed('connections', () =>
        connections(big, G, G.steps, G.holdMs, `${G.instances} instances`),
      );
    } finally {
      await big.stop();
    }
    out.contention.push(contention());
  }

  console.log('gateway: 3 instances, Redis and nginx, TLS on loopback');
  // As deployed: nginx with a worker per core (the connection phases need many more for the file limit).
  const three = await startGateway(
    { ...G, nginxWorkers: G.trafficNginxWorkers ?? G.nginxWorkers },
    3,
    firstPort + 50,
    log,
  );
  try {
    if (want('traffic')) out.traffic = await timed('traffic', () => traffic(three, G, P));
    if (want('storm')) out.storm = await timed('resume storm', () => storm(three, G));
    if (want('rolling')) out.rolling = await timed('rolling restart', () => rolling(three, G, P));
  } finally {
    await three.stop();
  }
  // A fresh cluster of 3 for the last phase: after a rolling restart nginx keeps a restarted instance out of
  // rotation until a WebSocket it sent there after fail_timeout closes (see the report), which would skew this.
  // The template now has max_fails=0 itself (this variant's finding), so the variant runs only if it comes back.
  const templateHasMaxFails = readFileSync(new URL('../../nginx/compose/nginx.conf', import.meta.url), 'utf8').includes(
    'max_fails=1',
  );
  if (!templateHasMaxFails && want('variant') && G.variant !== false)
    console.log('gateway: the max_fails=0 variant is skipped: the template already has max_fails=0');
  if (templateHasMaxFails && want('variant') && G.variant !== false) {
    console.log('gateway: 3 instances, nginx with max_fails=0 (a diagnosis of the rolling restart, not the template)');
    const variant = await startGateway(G, 3, firstPort + 150, log);
    try {
      await withoutPassiveFailures(variant);
      out.rollingMaxFails0 = await timed('rolling restart, max_fails=0', () =>
        rolling(variant, G, P, 'rolling restart, max_fails=0'),
      );
    } finally {
      await variant.stop();
    }
  }
  if (only?.includes('connections-am')) {
    const big = await startGateway(G, G.instances, firstPort, log);
    try {
      await withAcceptMutex(big);
      out.connectionsAcceptMutex = await timed('connections, accept_mutex on', () =>
        connections(big, G, G.steps, G.holdMs, `${G.instances} instances, accept_mutex on`),
      );
    } finally {
      await big.stop();
    }
    out.contention.push(contention());
  }
  if (only?.includes('three-am')) {
    const fresh = await startGateway(G, 3, firstPort + 100, log);
    try {
      await withAcceptMutex(fresh);
      out.threeAcceptMutex = await timed('3 instances, connections, accept_mutex on', () =>
        connections(fresh, G, [G.threeTarget], G.threeHoldMs, '3 instances, accept_mutex on'),
      );
    } finally {
      await fresh.stop();
    }
    out.contention.push(contention());
  }
  if (want('three') && G.threeTarget > 0) {
    console.log("gateway: 3 fresh instances, asked for the connection phase's load");
    const fresh = await startGateway(G, 3, firstPort + 100, log);
    try {
      out.three = await timed('3 instances, connections', () =>
        connections(fresh, G, [G.threeTarget], G.threeHoldMs, '3 instances'),
      );
    } finally {
      await fresh.stop();
    }
  }
  out.contention.push(contention());
  console.log(`  gateway phases (s): ${JSON.stringify(out.phaseSeconds)}`);
  return out;
}

/** As clusterProblems: `broken` fails the smoke run; `findings` are reported. */
export function gatewayProblems(g) {
  const broken = [];
  const findings = [];
  if (!g) return { broken, findings };
  const c = g.connections;
  if (c) {
    if (c.connectErrors > 0) broken.push(`gateway connections: ${c.connectErrors} clients failed to connect`);
    if (c.held.alive === 0) broken.push('gateway connections: no session held');
    if (c.held.pairs.chats === 0) broken.push('gateway connections: no pair formed');
  }
  const t = g.traffic;
  if (t) {
    if (!(t.closed.rate > 0 && t.fixed.rate > 0)) broken.push('gateway traffic: no message went through');
    if (t.routing.predicted.join() !== t.routing.measured.join())
      broken.push(
        `gateway traffic: sockets per instance ${t.routing.measured.join('/')}, the hash said ` +
          t.routing.predicted.join('/'),
      );
  }
  if (g.storm && g.storm.resumed < g.storm.clients)
    findings.push(`gateway storm: ${g.storm.clients - g.storm.resumed} not resumed`);
  const r = g.rolling;
  if (r) {
    if (r.connectErrors > 0) broken.push(`gateway rolling restart: ${r.connectErrors} clients failed to connect`);
    if (r.chats === 0 || r.received === 0) broken.push('gateway rolling restart: no chat or no message');
    if (r.lost > 0 || r.duplicated > 0 || r.outOfOrder > 0)
      findings.push(
        `gateway rolling restart: ${r.lost} lost, ${r.duplicated} duplicated, ${r.outOfOrder} out of order`,
      );
    for (const x of r.rounds)
      if (x.exit !== 0) broken.push(`gateway rolling restart: ${x.stopped} exited with ${x.exit}`);
  }
  return { broken, findings };
}
