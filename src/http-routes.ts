/**
 * HTTP endpoints: liveness, readiness, Prometheus metrics, invite creation,
 * what a GET of /ws that is not an upgrade gets, and a JSON 404 for everything
 * else (the page itself is page-routes.ts). Every route answers HEAD like GET
 * and a method it does not serve with 405 and Allow.
 */

import type { HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { LRUCache } from 'lru-cache';
import { type EdgeDeps, originAllowed, reply, replyJson, requestAddress, route, UPGRADE_HEADERS } from './http-util.js';
import { entryBound, TokenBucket } from './limits.js';
import { errorSummary } from './logger.js';

export function registerHttpRoutes(app: TemplatedApp, deps: EdgeDeps): void {
  const { config, clock, metrics, logger } = deps;
  // One bucket per client address (keyed digest), forgotten after a quiet minute.
  const inviteBuckets = new LRUCache<string, TokenBucket>({ ...entryBound(100_000), ttl: 60_000 });
  const invitePolicy = { clock, perSecond: config.invitesPerMinute / 60, burst: config.invitesPerMinute };

  route(app, '/healthz', { get: (res, _req, head) => replyJson(res, '200 OK', { status: 'ok' }, { head }) });

  // Draining takes an instance out of rotation. A broker outage does not: every instance would fail at once, and
  // alone each still serves chats with both sides on it. It answers 200 `degraded` instead (docs/operations.md).
  route(app, '/readyz', {
    get: (res, _req, head) => {
      const broker = deps.broker.clustered ? { broker: deps.broker.up ? 'up' : 'down' } : {};
      if (deps.isDraining())
        return replyJson(res, '503 Service Unavailable', { status: 'draining', ...broker }, { head });
      const status = deps.broker.up ? 'ready' : 'degraded';
      replyJson(res, '200 OK', { status, ...broker }, { head });
    },
  });

  route(app, '/metrics', {
    get: (res, _req, head) => {
      const state = watchAbort(res);
      metrics.render().then(
        (text) => {
          if (!state.aborted) reply(res, '200 OK', text, { contentType: metrics.contentType, head });
        },
        (err: unknown) => {
          logger.error({ err: errorSummary(err) }, 'metrics rendering failed');
          if (!state.aborted) replyJson(res, '500 Internal Server Error', { error: 'metrics_unavailable' }, { head });
        },
      );
    },
  });

  route(app, '/api/v1/invites', {
    post: (res, req) => {
      const address = requestAddress(res, req, config, deps.keys.address);
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
        return replyJson(
          res,
          '429 Too Many Requests',
          { error: 'rate_limited' },
          { headers: [['Retry-After', String(retryAfterS)]] },
        );
      }
      const state = watchAbort(res);
      deps.broker.invites.create().then(
        (invite) => {
          if (state.aborted) return;
          if (!invite) return replyJson(res, '503 Service Unavailable', { error: 'too_many_invites' });
          metrics.invitesCreated.inc();
          replyJson(res, '201 Created', { code: invite.code, expiresAt: new Date(invite.expiresAt).toISOString() });
        },
        (err: unknown) => {
          logger.warn({ err: errorSummary(err) }, 'invite not created: shared state unavailable');
          if (!state.aborted)
            replyJson(res, '503 Service Unavailable', { error: 'unavailable' }, { headers: [['Retry-After', '1']] });
        },
      );
    },
  });

  // A GET of /ws that uWebSockets.js did not take as an upgrade (no key, or a key of the wrong length).
  route(app, '/ws', {
    get: (res, req, head) =>
      req.getHeader('upgrade') === ''
        ? replyJson(res, '426 Upgrade Required', { error: 'upgrade_required' }, { headers: UPGRADE_HEADERS, head })
        : replyJson(res, '400 Bad Request', { error: 'bad_handshake' }, { head, closeConnection: true }),
  });

  app.any('/*', (res, req) =>
    replyJson(res, '404 Not Found', { error: 'not_found' }, { head: req.getMethod() === 'head' }),
  );
}

/** uWS requires an abort handler before any async reply; the flag says whether replying is still allowed. */
function watchAbort(res: HttpResponse): { aborted: boolean } {
  const state = { aborted: false };
  res.onAborted(() => {
    state.aborted = true;
  });
  return state;
}
