/**
 * The container's HEALTHCHECK: exits 0 if this instance answers `/readyz` with
 * 200 (ready, or degraded while Redis is away: still serving), 1 otherwise
 * (draining, not listening, stuck). Needs nothing the image lacks: no curl.
 */
const port = process.env.PORT || '8080';
try {
  const res = await fetch(`http://127.0.0.1:${port}/readyz`, { signal: AbortSignal.timeout(2000) });
  process.exit(res.status === 200 ? 0 : 1);
} catch {
  process.exit(1);
}
