/**
 * Small helpers shared by the HTTP routes and the WebSocket upgrade: the
 * client address (keyed digest only), the Origin policy, and JSON replies.
 */

import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import { Buffer } from 'node:buffer';
import { type AddressKey, addressKey, forwardedAddress } from './address.js';
import type { Broker } from './broker.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { RelayKeys } from './keys.js';
import type { Logger } from './logger.js';
import type { RelayMetrics } from './metrics.js';
import type { Relay } from './relay.js';

/** What both edges (HTTP routes and /ws) are built from. */
export interface EdgeDeps {
  config: Config;
  clock: Clock;
  relay: Relay;
  broker: Broker;
  keys: RelayKeys;
  metrics: RelayMetrics;
  logger: Logger;
  isDraining: () => boolean;
}

/** Must be called synchronously inside the handler: uWS request objects do not outlive it. */
export function requestAddress(res: HttpResponse, req: HttpRequest, config: Config, key: Buffer): AddressKey {
  if (config.trustProxy) {
    const forwarded = forwardedAddress(req.getHeader(config.clientAddressHeader), config.trustProxyHops);
    if (forwarded) return addressKey(key, forwarded);
  }
  return addressKey(key, Buffer.from(res.getRemoteAddressAsText()).toString());
}

/** Browsers always send Origin on WebSocket and cross-origin POST; other clients may not, and are allowed. */
export function originAllowed(origin: string, config: Config): boolean {
  if (config.allowedOrigins.length === 0 || origin === '') return true;
  return config.allowedOrigins.includes('*') || config.allowedOrigins.includes(origin);
}

const COMMON_HEADERS: readonly (readonly [string, string])[] = [
  ['Cache-Control', 'no-store'],
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'no-referrer'],
];

/** What a client must send to open the WebSocket (RFC 6455: Upgrade and the one version spoken). */
export const UPGRADE_HEADERS: [string, string][] = [
  ['Upgrade', 'websocket'],
  ['Connection', 'Upgrade'],
  ['Sec-WebSocket-Version', '13'],
];

export interface ReplyOptions {
  contentType?: string;
  headers?: readonly (readonly [string, string])[];
  /** Ends the keep-alive connection after the reply (a refused upgrade frees its descriptor). */
  closeConnection?: boolean;
  /** A HEAD request: the same headers, Content-Length included, and no body. */
  head?: boolean;
}

export function reply(res: HttpResponse, status: string, body: string | Buffer, opts: ReplyOptions = {}): void {
  res.cork(() => {
    res.writeStatus(status);
    res.writeHeader('Content-Type', opts.contentType ?? 'application/json');
    for (const [k, v] of COMMON_HEADERS) res.writeHeader(k, v);
    for (const [k, v] of opts.headers ?? []) res.writeHeader(k, v);
    endReply(res, body, opts);
  });
}

/**
 * The end of every reply. For HEAD, uWebSockets.js would send the body as for
 * GET, and its own Content-Length argument to endWithoutBody is broken in this
 * version (it aborts, or writes a second header), so the length is written here.
 */
export function endReply(res: HttpResponse, body: string | Buffer, opts: ReplyOptions): void {
  if (!opts.head) {
    res.end(body, opts.closeConnection ?? false);
    return;
  }
  res.writeHeader('Content-Length', String(typeof body === 'string' ? Buffer.byteLength(body) : body.length));
  res.endWithoutBody();
}

export const replyJson = (res: HttpResponse, status: string, value: unknown, opts: ReplyOptions = {}): void =>
  reply(res, status, JSON.stringify(value), opts);

/** A route's handler; `head` is true when it answers a HEAD request as if it were the GET. */
export type Handler = (res: HttpResponse, req: HttpRequest, head: boolean) => void;

/**
 * Registers one path: GET (and HEAD, answered by the GET handler without a
 * body) and POST as given; any other method gets 405 with an Allow header.
 */
export function route(app: TemplatedApp, path: string, handlers: { get?: Handler; post?: Handler }): void {
  const { get, post } = handlers;
  const allow: string[] = [];
  if (get) {
    app.get(path, (res, req) => get(res, req, false));
    app.head(path, (res, req) => get(res, req, true));
    allow.push('GET', 'HEAD');
  }
  if (post) {
    app.post(path, (res, req) => post(res, req, false));
    allow.push('POST');
  }
  app.any(path, (res, req) =>
    replyJson(
      res,
      '405 Method Not Allowed',
      { error: 'method_not_allowed' },
      { headers: [['Allow', allow.join(', ')]], head: req.getMethod() === 'head' },
    ),
  );
}
