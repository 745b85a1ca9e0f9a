#!/usr/bin/env node
import { copyFileSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
// `npm run bench [-- --quick | --smoke] [-- --relays=ours,ws,socketio]`
// Runs the same generator against our relay and the two reference peers, one
// relay at a time on this machine's loopback, and writes results/<stamp>/
// (results.json, report.md, *.svg). A full run also refreshes bench/RESULTS.md.
import { cpus, totalmem } from 'node:os';
import { fileURLToPath } from 'node:url';
import hdr from 'hdr-histogram-js';
import { startRelay } from './lib/proc.mjs';
import { report } from './lib/report.mjs';
import { WorkerPool } from './lib/workers.mjs';

const HERE = fileURLToPath(new URL('./', import.meta.url));
const arg = (name) => process.argv.find((a) => a.startsWith(`--${name}`));
const mode = arg('smoke') ? 'smoke' : arg('quick') ? 'quick' : 'full';
const relays = (arg('relays')?.split('=')[1] ?? 'ours,ws,socketio').split(',');

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
  },
  quick: {
    workers: 3,
    steps: [3000, 9000],
    holdMs: 5000,
    pairs: 100,
    trafficMs: 3000,
    sizes: [64, 512, 4096],
    storm: 4000,
    fixedRate: 10_000,
  },
  full: {
    workers: 4,
    steps: [2500, 5000, 10000, 15000, 19500],
    holdMs: 120_000,
    pairs: 200,
    trafficMs: 8000,
    sizes: [64, 512, 4096],
    storm: 10_000,
    fixedRate: 10_000,
  },
};
const P = PROFILES[mode];
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const per = (total, n) => Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));

function percentiles(encoded) {
  const h = hdr.build();
  for (const e of encoded) h.add(hdr.decodeFromCompressedBase64(e));
  const q = (p) => h.getValueAtPercentile(p) / 1000; // µs -> ms
  return { count: h.totalCount, p50: q(50), p90: q(90), p99: q(99), p999: q(99.9), max: h.maxValue / 1000 };
}

async function withRelay(name, port, fn) {
  const relay = await startRelay(name, port);
  const pool = new WorkerPool(P.workers);
  try {
    await pool.init({ ...relay, transport: name === 'socketio' ? 'socketio' : 'ws' });
    return await fn(relay, pool);
  } finally {
    pool.stop();
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
      const t0 = Date.now();
      const conn = await pool.all('connect', (i) => ({ count: per(add, P.workers)[i], concurrency: 64 }));
      const setupMs = Date.now() - t0;
      const t1 = Date.now();
      await pool.all('find');
      const pairMs = Date.now() - t1;
      have = conn.reduce((s, r) => s + r.connected, 0);
      await sleep(1000);
      const rss = relay.sample().rssBytes;
      steps.push({
        sessions: have,
        setupPerSec: Math.round(add / (setupMs / 1000)),
        pairMs,
        rssBytes: rss,
        rssPerSessionBytes: Math.round((rss - base) / have),
        errors: conn.reduce((s, r) => s + r.errors, 0),
      });
      console.log(
        `  ${name}: ${have} paired sessions, ${steps.at(-1).setupPerSec}/s setup, ${(rss / 2 ** 20).toFixed(0)} MB`,
      );
      if (have < target) break;
    }
    const held = await pool.all('hold', { ms: P.holdMs, everyMs: 20_000 });
    const alive = held.reduce((s, r) => s + r.alive, 0);
    return { baseRssBytes: base, steps, held: { ms: P.holdMs, alive }, maxSessions: alive };
  });
}

/** Throughput (closed loop) per size, then latency at 25/50/75% of the 64 B maximum and at a fixed rate. */
async function throughput(name, port) {
  return withRelay(name, port, async (relay, pool) => {
    await pool.all('connect', (i) => ({ count: per(P.pairs * 2, P.workers)[i], concurrency: 32 }));
    await pool.all('find');
    const run = async (args) => {
      const warmupMs = Math.min(1000, P.trafficMs / 2);
      const cpu = (async () => {
        await sleep(warmupMs);
        const a = relay.sample();
        await sleep(P.trafficMs);
        return relay.sample().cpuSeconds - a.cpuSeconds;
      })();
      const results = await pool.all('traffic', { ms: P.trafficMs, warmupMs, ...args });
      const serverCpu = await cpu;
      const received = results.reduce((s, r) => s + r.received, 0);
      const seconds = results[0].seconds;
      return {
        rate: Math.round(received / seconds),
        perServerCpuSecond: Math.round(received / Math.max(serverCpu, 0.01)),
        serverCpuShare: serverCpu / seconds,
        generatorCpuShare: results.reduce((s, r) => s + r.cpuMs, 0) / 1000 / seconds,
        latencyMs: percentiles(results.map((r) => r.histogram)),
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
  });
}

/** Resume storm: all clients stop reading, get messages, drop at once, and resume at once. */
async function storm(name, port) {
  return withRelay(name, port, async (_relay, pool) => {
    await pool.all('connect', (i) => ({ count: per(P.storm, P.workers)[i], concurrency: 64 }));
    await pool.all('find');
    await pool.all('stormDrop', { messages: 5 });
    await sleep(500);
    const res = await pool.all('stormResume', { messages: 5, concurrency: 64 });
    const resumed = res.reduce((s, r) => s + r.resumed, 0);
    const ms = Math.max(...res.map((r) => r.ms));
    console.log(`  ${name}: ${resumed}/${P.storm} resumed with their messages in ${Math.round(ms)} ms`);
    return { clients: P.storm, resumed, ms: Math.round(ms) };
  });
}

const results = {
  mode,
  date: new Date().toISOString(),
  machine: {
    cpus: `${cpus().length} x ${cpus()[0]?.model ?? 'unknown'}`,
    memoryGiB: Math.round(totalmem() / 2 ** 30),
    node: process.version,
    fileLimit: readFileSync('/proc/self/limits', 'utf8').match(/Max open files\s+(\d+)/)?.[1],
  },
  profile: P,
  relays: {},
};
let port = 18080;
for (const name of relays) {
  console.log(`${name}:`);
  results.relays[name] = {
    capacity: await capacity(name, port++),
    throughput: await throughput(name, port++),
    storm: await storm(name, port++),
  };
}

const stamp = results.date.replace(/[:.]/g, '-');
const dir = `${HERE}results/${mode}-${stamp}/`;
mkdirSync(dir, { recursive: true });
writeFileSync(`${dir}results.json`, `${JSON.stringify(results, null, 2)}\n`);
const { markdown, charts } = report(results);
for (const [file, svg] of Object.entries(charts)) writeFileSync(`${dir}${file}`, svg);
writeFileSync(`${dir}report.md`, markdown);
console.log(`\nreport: ${dir}report.md`);
if (mode === 'full') {
  writeFileSync(`${HERE}RESULTS.md`, markdown.replaceAll('](./', '](./results-latest/'));
  mkdirSync(`${HERE}results-latest`, { recursive: true });
  for (const file of [...Object.keys(charts), 'results.json'])
    copyFileSync(`${dir}${file}`, `${HERE}results-latest/${file}`);
  console.log('bench/RESULTS.md updated');
}
process.exit(0);
