/**
 * Small helpers shared by the HTTP routes and the WebSocket upgrade: the
 * client address (keyed digest only), the Origin policy, and JSON replies.
 */

import type { HttpRequest, HttpResponse } from 'uWebSockets.js';
import { Buffer } from 'node:buffer';
import { type AddressKey, addressKey, forwardedAddress } from './address.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import type { Logger } from './logger.js';
import type { RelayMetrics } from './metrics.js';
import type { Relay } from './relay.js';

/** What both edges (HTTP routes and /ws) are built from. */
export interface EdgeDeps {
  config: Config;
  clock: Clock;
  relay: Relay;
  metrics: RelayMetrics;
  logger: Logger;
  isDraining: () => boolean;
}

/** Must be called synchronously inside the handler: uWS request objects do not outlive it. */
export function requestAddress(res: HttpResponse, req: HttpRequest, config: Config): AddressKey {
  if (config.trustProxy) {
    const forwarded = forwardedAddress(req.getHeader(config.clientAddressHeader), config.trustProxyHops);
    if (forwarded) return addressKey(forwarded);
  }
  return addressKey(Buffer.from(res.getRemoteAddressAsText()).toString());
}

/** Browsers always send Origin on WebSocket and cross-origin POST; other clients may not, and are allowed. */
export function originAllowed(origin: string, config: Config): boolean {
  if (config.allowedOrigins.length === 0 || origin === '') return true;
  return config.allowedOrigins.includes('*') || config.allowedOrigins.includes(origin);
}

const COMMON_HEADERS: [string, string][] = [
  ['Cache-Control', 'no-store'],
  ['X-Content-Type-Options', 'nosniff'],
  ['Referrer-Policy', 'no-referrer'],
];

/** `closeConnection` ends the keep-alive connection after the reply (a refused upgrade frees its descriptor). */
export function reply(
  res: HttpResponse,
  status: string,
  body: string,
  contentType = 'application/json',
  headers: [string, string][] = [],
  closeConnection = false,
): void {
  res.cork(() => {
    res.writeStatus(status);
    res.writeHeader('Content-Type', contentType);
    for (const [k, v] of COMMON_HEADERS) res.writeHeader(k, v);
    for (const [k, v] of headers) res.writeHeader(k, v);
    res.end(body, closeConnection);
  });
}

export const replyJson = (
  res: HttpResponse,
  status: string,
  value: unknown,
  headers: [string, string][] = [],
  closeConnection = false,
): void => reply(res, status, JSON.stringify(value), 'application/json', headers, closeConnection);
