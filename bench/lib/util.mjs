// Small helpers the orchestrators share (run.mjs, cluster.mjs).
import hdr from 'hdr-histogram-js';

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** `total` split into `n` shares that differ by at most one. */
export const per = (total, n) => Array.from({ length: n }, (_, i) => Math.floor(total / n) + (i < total % n ? 1 : 0));

export const sum = (xs, f) => xs.reduce((s, x) => s + f(x), 0);

/** The same clock as the generator's timestamps (process.hrtime is one monotonic clock for every process here). */
export const monotonicMs = () => Number(process.hrtime.bigint()) / 1e6;

/** Percentiles (ms) of the generator processes' HDR histograms (µs), merged. */
export function percentiles(encoded) {
  const h = hdr.build();
  for (const e of encoded) h.add(hdr.decodeFromCompressedBase64(e));
  const q = (p) => h.getValueAtPercentile(p) / 1000; // µs -> ms
  return { count: h.totalCount, p50: q(50), p90: q(90), p99: q(99), p999: q(99.9), max: h.maxValue / 1000 };
}

/** Waits until every message sent has been received (no backlog carried into the next phase). */
export async function quiesce(pool) {
  const started = Date.now();
  for (;;) {
    const c = await pool.all('counts');
    const sent = c.reduce((s, r) => s + r.sent, 0);
    const received = c.reduce((s, r) => s + r.received, 0);
    if (received >= sent || Date.now() - started > 30_000) return Date.now() - started;
    await sleep(100);
  }
}
