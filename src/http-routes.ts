/**
 * HTTP endpoints: liveness, readiness, Prometheus metrics, invite creation,
 * and a JSON 404 for everything else (the page itself is page-routes.ts).
 */

import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { LRUCache } from 'lru-cache';
import { type EdgeDeps, originAllowed, reply, replyJson, requestAddress } from './http-util.js';
import { entryBound, TokenBucket } from './limits.js';
import { errorSummary } from './logger.js';

export function registerHttpRoutes(app: TemplatedApp, deps: EdgeDeps): void {
  const { config, clock, relay, metrics, logger } = deps;
  // One bucket per client address (keyed digest), forgotten after a quiet minute.
  const inviteBuckets = new LRUCache<string, TokenBucket>({ ...entryBound(100_000), ttl: 60_000 });
  const invitePolicy = { clock, perSecond: config.invitesPerMinute / 60, burst: config.invitesPerMinute };

  app.get('/healthz', (res) => replyJson(res, '200 OK', { status: 'ok' }));

  app.get('/readyz', (res) =>
    deps.isDraining()
      ? replyJson(res, '503 Service Unavailable', { status: 'draining' })
      : replyJson(res, '200 OK', { status: 'ready' }),
  );

  app.get('/metrics', (res) => {
    const state = watchAbort(res);
    metrics.render().then(
      (text) => {
        if (!state.aborted) reply(res, '200 OK', text, metrics.contentType);
      },
      (err: unknown) => {
        logger.error({ err: errorSummary(err) }, 'metrics rendering failed');
        if (!state.aborted) replyJson(res, '500 Internal Server Error', { error: 'metrics_unavailable' });
      },
    );
  });

  app.post('/api/v1/invites', (res, req) => {
    const address = requestAddress(res, req, config);
    if (!originAllowed(req.getHeader('origin'), config))
      return replyJson(res, '403 Forbidden', { error: 'origin_not_allowed' });
    if (deps.isDraining()) return replyJson(res, '503 Service Unavailable', { error: 'draining' });
    let bucket = inviteBuckets.get(address);
    if (!bucket) {
      bucket = new TokenBucket(invitePolicy);
      inviteBuckets.set(address, bucket);
    }
    if (!bucket.take()) {
      const retryAfterS = Math.ceil(bucket.msUntilToken() / 1000);
      return replyJson(res, '429 Too Many Requests', { error: 'rate_limited' }, [['Retry-After', String(retryAfterS)]]);
    }
    const invite = relay.invites.create();
    if (!invite) return replyJson(res, '503 Service Unavailable', { error: 'too_many_invites' });
    metrics.invitesCreated.inc();
    replyJson(res, '201 Created', { code: invite.code, expiresAt: new Date(invite.expiresAt).toISOString() });
  });

  app.any('/*', (res) => replyJson(res, '404 Not Found', { error: 'not_found' }));
}

/** uWS requires an abort handler before any async reply; the flag says whether replying is still allowed. */
function watchAbort(res: HttpResponse): { aborted: boolean } {
  const state = { aborted: false };
  res.onAborted(() => {
    state.aborted = true;
  });
  return state;
}
