/**
 * The uWebSockets.js edge for /ws: admission at upgrade (draining, Origin,
 * connection caps), the hello handshake, and handing frames to the relay.
 * No exception escapes into uWS; copies are taken of everything kept.
 */

import type { WebSocketBehavior } from 'uWebSockets.js';
import { Buffer } from 'node:buffer';
import type { AddressKey } from './address.js';
import type { TimerHandle } from './clock.js';
import { type CloseReason, closeCode } from './errors.js';
import { type EdgeDeps, originAllowed, replyJson, requestAddress } from './http-util.js';
import { KeyedCounter } from './limits.js';
import { errorSummary } from './logger.js';
import { decodeClientFrame, PROTOCOL_VERSION } from './protocol.js';
import type { Session } from './session.js';
import { UwsConnection } from './ws-connection.js';

interface SocketData {
  address: AddressKey;
  conn: UwsConnection | null;
  session: Session | null;
  helloTimer: TimerHandle | null;
}

const INTERNAL_ERROR = 1011;

export function wsBehavior(deps: EdgeDeps): WebSocketBehavior<SocketData> {
  const { config, clock, relay, metrics, logger } = deps;
  const perAddress = new KeyedCounter(config.maxConnectionsPerAddress);
  const countClose = (code: number): void => {
    metrics.closes.inc({ code: String(code) });
  };
  const closeWith = (conn: UwsConnection, reason: CloseReason): void => conn.close(closeCode(reason), reason);

  const refuse = (
    res: Parameters<NonNullable<WebSocketBehavior<SocketData>['upgrade']>>[0],
    status: string,
    reason: string,
  ) => {
    metrics.upgradesRefused.inc({ reason });
    replyJson(res, status, { error: reason });
  };

  return {
    // compression stays at its default, DISABLED: per-message deflate costs memory per socket and CPU per frame.
    maxPayloadLength: config.maxPayloadBytes,
    idleTimeout: config.idleTimeoutS,
    sendPingsAutomatically: true,
    // We close slow readers ourselves (with 4413) well before uWS would drop frames.
    maxBackpressure: config.maxBackpressureBytes + 2 * config.maxPayloadBytes + 64 * 1024,
    closeOnBackpressureLimit: false,

    upgrade(res, req, context) {
      const key = req.getHeader('sec-websocket-key');
      const protocol = req.getHeader('sec-websocket-protocol');
      const extensions = req.getHeader('sec-websocket-extensions');
      const origin = req.getHeader('origin');
      const address = requestAddress(res, req, config);
      if (deps.isDraining()) return refuse(res, '503 Service Unavailable', 'draining');
      if (!originAllowed(origin, config)) return refuse(res, '403 Forbidden', 'origin_not_allowed');
      if (relay.connections >= config.maxConnections)
        return refuse(res, '503 Service Unavailable', 'too_many_connections');
      if (config.maxConnectionsPerAddress > 0 && perAddress.get(address) >= config.maxConnectionsPerAddress)
        return refuse(res, '429 Too Many Requests', 'too_many_connections_from_address');
      const data: SocketData = { address, conn: null, session: null, helloTimer: null };
      res.upgrade(data, key, protocol, extensions, context);
    },

    open(ws) {
      const data = ws.getUserData();
      const conn = new UwsConnection(ws, config.maxBackpressureBytes, countClose);
      data.conn = conn;
      perAddress.tryAcquire(data.address);
      relay.connectionOpened();
      data.helloTimer = clock.schedule(config.helloTimeoutMs, () => {
        data.helloTimer = null;
        if (!data.session) closeWith(conn, 'hello_timeout');
      });
    },

    message(ws, message, isBinary) {
      const data = ws.getUserData();
      const conn = data.conn;
      if (!conn || conn.closed) return;
      try {
        // toString copies: uWS reuses `message` once this handler returns.
        const text = isBinary ? null : Buffer.from(message).toString('utf8');
        if (data.session) return relay.receive(data.session, text);
        // Before hello, only a well-formed hello is acceptable.
        const decoded = text === null ? null : decodeClientFrame(text, config);
        if (!decoded?.ok || decoded.frame.type !== 'hello') return closeWith(conn, 'protocol_violation');
        if (decoded.frame.v !== PROTOCOL_VERSION) return closeWith(conn, 'unsupported_version');
        data.helloTimer?.cancel();
        data.helloTimer = null;
        data.session = relay.hello(conn, decoded.frame, data.address);
      } catch (err) {
        logger.error({ err: errorSummary(err) }, 'unexpected error while handling a frame');
        conn.close(INTERNAL_ERROR, 'internal_error');
      }
    },

    close(ws) {
      const data = ws.getUserData();
      const conn = data.conn;
      if (conn) conn.closed = true;
      data.helloTimer?.cancel();
      perAddress.release(data.address);
      relay.connectionClosed();
      try {
        if (data.session && conn) relay.disconnected(data.session, conn);
      } catch (err) {
        logger.error({ err: errorSummary(err) }, 'unexpected error while closing a session');
      }
    },
  };
}
