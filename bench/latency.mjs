#!/usr/bin/env node
// Latency only, for quick iterations on the cross-instance path (not part of `npm run bench`):
// `node bench/latency.mjs [--single] [--rates=2000,10000] [--rounds=3] [--ms=5000] [--pairs=200] [--dist=dir]
// [--pairing=N]`.
// Starts one Redis and three instances (or, with --single, one instance without Redis), pairs every
// chat across two instances as the cluster bench does, then runs each open-loop rate `rounds` times
// and prints the generator's percentiles, its own event-loop delay, and per instance the relay's
// cross-instance delivery histogram (sender's instance -> recipient's, Date.now resolution),
// event-loop lag (prom-client's: its 10 ms sampling interval included) and GC time from /metrics over the
// same run, and the CPU time of the relays and of Redis per 1000 messages. Build first (`npm run build`).
import { checkPairs, contention, pairing, startCluster } from './lib/cluster.mjs';
import { RELAYS, startRelay } from './lib/proc.mjs';
import { per, percentiles, quiesce, sum } from './lib/util.mjs';
import { WorkerPool } from './lib/workers.mjs';

const arg = (name, dflt) => process.argv.find((a) => a.startsWith(`--${name}=`))?.split('=')[1] ?? dflt;
const single = process.argv.includes('--single');
const rates = arg('rates', '2000,10000').split(',').map(Number);
const rounds = Number(arg('rounds', 3));
const ms = Number(arg('ms', 5000));
const pairs = Number(arg('pairs', 200));
const workers = Number(arg('workers', 2));

// --dist=<dir>: another build of ours (its `src/main.js`), for A/B runs of two builds under the same conditions.
if (arg('dist')) RELAYS.ours.command = ['node', `${arg('dist')}/src/main.js`];

let port = Number(arg('port', 19200));
const nextPort = () => port++;

/** Cross-delivery buckets (cumulative counts), GC seconds and event-loop lag of one instance. */
async function scrape(http) {
  const text = await (await fetch(`${http}/metrics`)).text();
  const buckets = {};
  const gc = {};
  let lagP99 = Number.NaN;
  let lagMax = Number.NaN;
  for (const line of text.split('\n')) {
    let m = line.match(/^relay_cross_instance_delivery_seconds_bucket\{le="([^"]+)"\} (\S+)/);
    if (m) buckets[m[1]] = Number(m[2]);
    m = line.match(/^nodejs_gc_duration_seconds_(sum|count)\{kind="([^"]+)"[^}]*\} (\S+)/);
    if (m) {
      gc[m[2]] ??= { sum: 0, count: 0 };
      gc[m[2]][m[1]] = Number(m[3]);
    }
    m = line.match(/^nodejs_eventloop_lag_p99_seconds (\S+)/);
    if (m) lagP99 = Number(m[1]);
    m = line.match(/^nodejs_eventloop_lag_max_seconds (\S+)/);
    if (m) lagMax = Number(m[1]);
  }
  return { buckets, gc, lagP99, lagMax };
}

/** GC time (ms) and count by kind over the run. */
const gcDelta = (a, b) =>
  Object.entries(b.gc)
    .map(([k, v]) => `${k} ${(1000 * (v.sum - (a.gc[k]?.sum ?? 0))).toFixed(0)}ms/${v.count - (a.gc[k]?.count ?? 0)}`)
    .join(' ');

function bucketDelta(a, b) {
  const total = (b.buckets['+Inf'] ?? 0) - (a.buckets['+Inf'] ?? 0);
  const out = {};
  for (const le of Object.keys(b.buckets)) {
    if (le === '+Inf') continue;
    const over = total - (b.buckets[le] - (a.buckets[le] ?? 0));
    out[`>${Number(le) * 1000}ms`] = total ? `${((100 * over) / total).toFixed(2)}%` : '-';
  }
  return { total, over: out };
}

const cl = single ? null : await startCluster({ drainGraceMs: 1500 }, nextPort);
const one = single ? await startRelay('ours', nextPort()) : null;
const urls = single ? [one.url] : cl.urls();
const https = single ? [one.http] : cl.live().map((i) => i.http);
const procs = single ? [one] : cl.procs();
/** CPU seconds of the relays and of Redis (last, in a cluster) so far. */
const cpuNow = () => procs.map((p) => p.sample().cpuSeconds);
// --pairing=N: first the cluster bench's pairing phases (random, then tagged) with N clients, for their cost.
if (arg('pairing')) {
  const relay = { label: single ? 'single' : 'cluster', urls: () => urls, procs: () => procs };
  const C = { pairingClients: Number(arg('pairing')) };
  for (const tagged of [false, true]) await pairing(relay, C, { workers: 3 }, tagged);
}
const pool = new WorkerPool(workers);
try {
  await pool.init({ urls, transport: 'ws' });
  const n = pool.workers.length;
  await pool.all('connect', (i) => ({ count: 2 * per(pairs, n)[i], concurrency: 32 }));
  await pool.all('find', { tagged: true, timeoutMs: 30_000 });
  const check = checkPairs(await pool.all('pairs'));
  console.log(`${single ? 'single' : 'cluster'}: ${check.chats} chats, ${check.crossInstance} cross-instance`);
  // Warm the JIT: one closed-loop burst.
  await pool.all('traffic', { ms: 1000, warmupMs: 500, size: 64, window: 16 });
  await quiesce(pool);
  for (let r = 0; r < rounds; r++)
    for (const rate of rates) {
      const before = await Promise.all(https.map(scrape));
      const psi0 = contention().cpuPressure;
      const cpu0 = cpuNow();
      const results = await pool.all('traffic', { ms, warmupMs: 1000, size: 64, rate: rate / n });
      const after = await Promise.all(https.map(scrape));
      const cpu = cpuNow().map((c, i) => c - cpu0[i]);
      await quiesce(pool);
      // Over the warm-up and the recorded part (both at this rate): the messages sent meanwhile.
      const sent = (sum(results, (x) => x.received) * (ms + 1000)) / ms;
      const perK = (list) => ((1e6 * sum(list, (c) => c)) / sent).toFixed(1);
      const l = percentiles(results.map((x) => x.histogram));
      const received = sum(results, (x) => x.received);
      const gen = results.map((x) => `${x.loopDelayMs.p99.toFixed(1)}/${x.loopDelayMs.max.toFixed(1)}`).join(' ');
      console.log(
        `rate ${rate}: got ${Math.round(received / results[0].seconds)}/s p50 ${l.p50} p90 ${l.p90} p99 ${l.p99} ` +
          `p99.9 ${l.p999} max ${l.max} ms | CPU ms per 1000 msgs: relays ${perK(cpu.slice(0, https.length))}` +
          `${single ? '' : `, redis ${perK(cpu.slice(https.length))}`} | generator loop delay p99/max ${gen} ms | psi ${psi0}->${contention().cpuPressure}`,
      );
      after.forEach((a, i) => {
        const b = before[i];
        const d = bucketDelta(b, a);
        console.log(
          `   inst ${i}: cross ${d.total} ${JSON.stringify(d.over)} gc ${gcDelta(b, a)} lag p99 ${(a.lagP99 * 1000).toFixed(1)} max ${(a.lagMax * 1000).toFixed(1)} ms`,
        );
      });
    }
} finally {
  await pool.stop();
  await cl?.stop();
  await one?.stop();
}
