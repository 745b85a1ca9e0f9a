// autocannon against our relay's HTTP endpoints (the peers have none): the
// liveness probe and invite creation, with the server's CPU per request.
import autocannon from 'autocannon';

const ENDPOINTS = [
  { name: 'GET /healthz', path: '/healthz', method: 'GET', expect: 200 },
  { name: 'POST /api/v1/invites', path: '/api/v1/invites', method: 'POST', expect: 201 },
];

export async function httpBench(relay, seconds) {
  const out = [];
  for (const e of ENDPOINTS) {
    const before = relay.sample().cpuSeconds;
    const r = await autocannon({
      url: `${relay.http}${e.path}`,
      method: e.method,
      connections: 64,
      duration: seconds,
    });
    const cpu = relay.sample().cpuSeconds - before;
    const ok = r['2xx'];
    out.push({
      endpoint: e.name,
      requestsPerSec: Math.round(r.requests.average),
      perServerCpuSecond: Math.round(ok / Math.max(cpu, 0.01)),
      latencyMs: { p50: r.latency.p50, p99: r.latency.p99, max: r.latency.max },
      ok,
      other: r.non2xx + r.errors + r.timeouts,
    });
    console.log(
      `  ${e.name}: ${out.at(-1).requestsPerSec} req/s, p99 ${r.latency.p99} ms, ${out.at(-1).other} not ${e.expect}`,
    );
  }
  return out;
}
