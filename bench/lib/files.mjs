// The file-transfer bench (issue 14): 10 MB files, end to end encrypted, between two typed clients in this
// process (src/file-transfer.ts over `ws`, as the page does it in a browser), through one relay and through two
// instances on Redis. It reports each transfer's time and throughput and the server CPU per MB (the relays', and
// Redis's, read from /proc), with the default byte budget (FILE_RATE_BYTES_PER_SEC) and with it opened up, so
// what the relay costs is seen apart from what the budget allows. Every file is checked by SHA-256.
import { randomBytes } from 'node:crypto';
import { fileURLToPath } from 'node:url';
import { startRelay } from './proc.mjs';
import { startRedis } from './redis.mjs';

// The peers are the file-transfer tests' own (test/fixtures/file-peers.ts), built into dist by `npm run build`.
const DIST = fileURLToPath(new URL('../../dist/', import.meta.url));
const { bytesSource } = await import(`${DIST}src/file-transfer.js`);
const { pairedPeers, sha256 } = await import(`${DIST}test/fixtures/file-peers.js`);

export const FILES_START = '<!-- files section: written by `npm run bench -- --files` -->';
export const FILES_END = '<!-- end of files section -->';

const MB = 1024 * 1024;
const OPEN_BUDGET = { FILE_RATE_BYTES_PER_SEC: String(1024 * MB), FILE_RATE_BURST_BYTES: String(MB) };
const QUIET = { record: false };

/** One setup (one relay or two instances on Redis, a budget), `rounds` transfers of `size` bytes. */
async function run(label, { instances, budget }, size, rounds, nextPort) {
  const env = budget === 'open' ? OPEN_BUDGET : {};
  const redis = instances > 1 ? await startRedis(nextPort()) : null;
  const secret = randomBytes(32).toString('base64');
  const relays = [];
  try {
    for (let i = 0; i < instances; i++)
      relays.push(
        await startRelay(
          'ours',
          nextPort(),
          redis ? { ...env, REDIS_URL: redis.url, CLUSTER_SECRET: secret, INSTANCE_ID: `f${i}` } : env,
          redis ? '/readyz' : null,
        ),
      );
    const [a, b] = await pairedPeers(relays[0].url, relays.at(-1).url, QUIET, QUIET);
    const procs = [...relays, ...(redis ? [redis] : [])];
    const transfers = [];
    for (let r = 0; r < rounds; r++) {
      const file = randomBytes(size);
      const cpu0 = procs.map((p) => p.sample().cpuSeconds);
      const t0 = performance.now();
      const t = await a.files.send({ name: 'bench.bin', type: 'application/octet-stream', size }, bytesSource(file));
      const got = await b.outcome(t.id);
      const parts = b.completed.find((c) => c.t.id === t.id)?.parts ?? [];
      b.completed.length = 0;
      const ms = performance.now() - t0;
      const cpu = procs.map((p, i) => p.sample().cpuSeconds - cpu0[i]);
      const relayCpu = cpu.slice(0, relays.length).reduce((s, x) => s + x, 0);
      const redisCpu = redis ? (cpu.at(-1) ?? 0) : 0;
      transfers.push({
        ms,
        ok: got.state === 'complete' && sha256(parts) === sha256([file]),
        chunks: t.chunks,
        relayCpuMsPerMB: (relayCpu * 1000) / (size / MB),
        redisCpuMsPerMB: (redisCpu * 1000) / (size / MB),
      });
    }
    a.files.dispose();
    b.files.dispose();
    a.client.close();
    b.client.close();
    const median = (xs) => [...xs].sort((x, y) => x - y)[Math.floor(xs.length / 2)];
    return {
      label,
      instances,
      budget,
      sizeBytes: size,
      rounds,
      ok: transfers.every((x) => x.ok),
      ms: median(transfers.map((x) => x.ms)),
      mbPerSecond: size / MB / (median(transfers.map((x) => x.ms)) / 1000),
      relayCpuMsPerMB: median(transfers.map((x) => x.relayCpuMsPerMB)),
      redisCpuMsPerMB: median(transfers.map((x) => x.redisCpuMsPerMB)),
      chunks: transfers[0]?.chunks ?? 0,
      transfers,
    };
  } finally {
    // A profiled relay (BENCH_RELAY_NODE_ARGS=--cpu-prof) writes its profile only on a clean exit.
    for (const r of relays) await (process.env.BENCH_RELAY_NODE_ARGS ? r.terminate() : r.stop());
    await redis?.stop();
  }
}

export async function filesBench(P, basePort) {
  let port = basePort;
  const nextPort = () => port++;
  const size = P.files.sizeBytes;
  const out = [];
  for (const [label, setup] of [
    ['one relay, default budget (4 MiB/s)', { instances: 1, budget: 'default' }],
    ['one relay, budget opened', { instances: 1, budget: 'open' }],
    ['two instances on Redis, default budget', { instances: 2, budget: 'default' }],
    ['two instances on Redis, budget opened', { instances: 2, budget: 'open' }],
  ]) {
    const r = await run(label, setup, size, P.files.rounds, nextPort);
    console.log(
      `files: ${label}: ${(size / MB).toFixed(0)} MB in ${Math.round(r.ms)} ms (${r.mbPerSecond.toFixed(1)} MB/s), relay CPU ${r.relayCpuMsPerMB.toFixed(1)} ms/MB${r.instances > 1 ? `, Redis ${r.redisCpuMsPerMB.toFixed(1)} ms/MB` : ''}${r.ok ? '' : ', FAILED'}`,
    );
    out.push(r);
  }
  return out;
}

/** Runs that broke (a transfer that did not arrive whole). */
export const filesProblems = (files) =>
  (files ?? []).filter((r) => !r.ok).map((r) => `files: ${r.label}: a transfer failed`);

const fmt = (x, d = 0) => x.toLocaleString('en-US', { minimumFractionDigits: d, maximumFractionDigits: d });

export function filesSection(results) {
  const files = results.files ?? [];
  const size = files[0]?.sizeBytes ?? 0;
  const rows = files.map(
    (r) =>
      `| ${r.label} | ${fmt(r.ms)} ms | ${fmt(r.mbPerSecond, 1)} MB/s | ${fmt(r.relayCpuMsPerMB, 1)} ms | ${r.instances > 1 ? `${fmt(r.redisCpuMsPerMB, 1)} ms` : 'n/a'} | ${r.ok ? `${r.rounds} of ${r.rounds}` : '**no**'} |`,
  );
  return `${FILES_START}
## Files: a ${fmt(size / MB)} MB transfer, end to end encrypted

${results.date}, ${results.machine?.cpus ?? '?'} vCPUs. Two typed clients in the bench process (src/file-transfer.ts
over \`ws\`, sealing and opening every chunk with WebCrypto as the page does) send a ${fmt(size / MB)} MB file
${files[0]?.rounds ?? 0} times per setup; the median is shown. ${fmt(files[0]?.chunks ?? 0)} chunks of 46 KiB each
(base64url in \`msg\` frames, ADR 0008), at most 8 in flight. CPU is the server processes' own (from /proc), per MB
of file. "Budget opened" sets \`FILE_RATE_BYTES_PER_SEC\` to 1 GiB/s, so the time is the relay's and the clients',
not the per-session budget's. Every file arrived with the same SHA-256 (column "whole").

The budget counts a part's body, base64url included, so a file's own bytes move at about three quarters of it
(about 3 MiB/s at the default 4 MiB/s). Across instances each chunk is also encoded into a bus envelope, published
to Redis and decoded on the other side, so the relays spend several times the CPU per MB of one relay; Redis
itself little.

| setup | time | throughput | relay CPU per MB | Redis CPU per MB | whole |
| --- | --- | --- | --- | --- | --- |
${rows.join('\n')}

Re-run: \`npm run bench -- --files\`.
${FILES_END}
`;
}
