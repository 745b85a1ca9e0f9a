/**
 * The uWebSockets.js edge for /ws: admission at upgrade (draining, Origin,
 * connection caps), the hello handshake, and handing frames to the relay.
 * No exception escapes into uWS; copies are taken of everything kept.
 */

import type { HttpResponse, WebSocketBehavior } from 'uWebSockets.js';
import { Buffer } from 'node:buffer';
import type { AddressKey } from './address.js';
import type { TimerHandle } from './clock.js';
import { type CloseReason, closeCode } from './errors.js';
import { type EdgeDeps, originAllowed, replyJson, requestAddress, UPGRADE_HEADERS } from './http-util.js';
import { KeyedCounter } from './limits.js';
import { errorSummary } from './logger.js';
import { decodeClientFrame, PROTOCOL_VERSION } from './protocol.js';
import type { Session } from './session.js';
import { UwsConnection, type WriteOptions } from './ws-connection.js';

/**
 * A socket's state lives on its connection object. uWS copies the user data's
 * own properties onto its socket object (the prototype is lost), so the user
 * data is just `{ conn }`: one copied property instead of four, and no second
 * object per socket (memory per session is a target in bench/).
 */
interface SocketData {
  conn: SocketState;
}

class SocketState extends UwsConnection {
  session: Session | null = null;
  helloTimer: TimerHandle | null = null;
  /** Frames that came while the hello was being answered by another instance (a resume from elsewhere). */
  pending: (string | null)[] | null = null;
  /** The client closed with 1000 or 1001 (it is done), in case that happens while the hello is pending. */
  leaving = false;

  constructor(
    readonly address: AddressKey,
    options: WriteOptions,
  ) {
    super(options);
  }
}

/** Every reason an upgrade is refused (a metrics label each). */
export const UPGRADE_REFUSALS = [
  'bad_handshake',
  'unsupported_websocket_version',
  'draining',
  'origin_not_allowed',
  'too_many_connections',
  'too_many_connections_from_address',
] as const;
type UpgradeRefusal = (typeof UPGRADE_REFUSALS)[number];

const hasToken = (header: string, token: string): boolean =>
  header.split(',').some((t) => t.trim().toLowerCase() === token);

/** `Upgrade: websocket`, `Connection: Upgrade` and a key that is 16 bytes in base64. */
export function isWebSocketHandshake(upgrade: string, connection: string, key: string): boolean {
  return hasToken(upgrade, 'websocket') && hasToken(connection, 'upgrade') && /^[A-Za-z0-9+/]{22}==$/.test(key);
}

export function wsBehavior(deps: EdgeDeps): WebSocketBehavior<SocketData> {
  const { config, clock, relay, metrics, logger } = deps;
  const perAddress = new KeyedCounter(config.maxConnectionsPerAddress);
  const writeOptions: WriteOptions = {
    maxBackpressure: config.maxBackpressureBytes,
    onClose: (code) => metrics.closes.inc({ code: String(code) }),
  };
  const closeWith = (conn: SocketState, reason: CloseReason): void => conn.close(closeCode(reason), reason);

  const refuse = (res: HttpResponse, status: string, reason: UpgradeRefusal, headers: [string, string][] = []) => {
    metrics.upgradesRefused.inc({ reason });
    // Closed after the reply: a client refused for want of room should not keep a descriptor busy.
    replyJson(res, status, { error: reason }, { headers, closeConnection: true });
  };

  /** A hello answered later: the session takes the frames that waited, or learns its socket is already gone. */
  const adopted = (conn: SocketState, session: Session | null): void => {
    const waiting = conn.pending ?? [];
    conn.pending = null;
    conn.session = session;
    if (!session) return;
    try {
      if (conn.closed) return relay.disconnected(session, conn, conn.leaving);
      for (const text of waiting) if (conn.session && !conn.closed) relay.receive(session, text);
    } catch (err) {
      logger.error({ err: errorSummary(err) }, 'unexpected error while handling a frame');
      closeWith(conn, 'internal_error');
    }
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
      const address = requestAddress(res, req, config, deps.keys.address);
      // uWebSockets.js upgrades anything with a 24-character key; RFC 6455 asks for more (section 4.2.1).
      if (!isWebSocketHandshake(req.getHeader('upgrade'), req.getHeader('connection'), key))
        return refuse(res, '400 Bad Request', 'bad_handshake');
      if (req.getHeader('sec-websocket-version') !== '13')
        return refuse(res, '426 Upgrade Required', 'unsupported_websocket_version', UPGRADE_HEADERS);
      if (deps.isDraining()) return refuse(res, '503 Service Unavailable', 'draining');
      if (!originAllowed(origin, config)) return refuse(res, '403 Forbidden', 'origin_not_allowed');
      if (relay.connections >= config.maxConnections)
        return refuse(res, '503 Service Unavailable', 'too_many_connections');
      if (config.maxConnectionsPerAddress > 0 && perAddress.get(address) >= config.maxConnectionsPerAddress)
        return refuse(res, '429 Too Many Requests', 'too_many_connections_from_address');
      const data: SocketData = { conn: new SocketState(address, writeOptions) };
      res.upgrade(data, key, protocol, extensions, context);
    },

    open(ws) {
      const conn = ws.getUserData().conn;
      conn.attach(ws);
      perAddress.tryAcquire(conn.address);
      relay.connectionOpened();
      conn.helloTimer = clock.schedule(config.helloTimeoutMs, () => {
        conn.helloTimer = null;
        if (!conn.session) closeWith(conn, 'hello_timeout');
      });
    },

    message(ws, message, isBinary) {
      const conn = ws.getUserData().conn;
      if (conn.closed) return;
      try {
        // toString copies: uWS reuses `message` once this handler returns.
        const text = isBinary ? null : Buffer.from(message).toString('utf8');
        if (conn.session) return relay.receive(conn.session, text);
        if (conn.pending) {
          // Bounded: a client that floods before its welcome is closed like any flood.
          if (conn.pending.length >= config.rateLimitBurst) return closeWith(conn, 'flood');
          conn.pending.push(text);
          return;
        }
        // Before hello, only a well-formed hello is acceptable.
        const decoded = text === null ? null : decodeClientFrame(text, config);
        if (!decoded?.ok || decoded.frame.type !== 'hello') return closeWith(conn, 'protocol_violation');
        if (decoded.frame.v !== PROTOCOL_VERSION) return closeWith(conn, 'unsupported_version');
        conn.helloTimer?.cancel();
        conn.helloTimer = null;
        const session = relay.hello(conn, decoded.frame, conn.address);
        if (!(session instanceof Promise)) {
          conn.session = session;
          return;
        }
        conn.pending = [];
        session.then(
          (s) => adopted(conn, s),
          (err: unknown) => {
            logger.error({ err: errorSummary(err) }, 'unexpected error while resuming a session');
            closeWith(conn, 'internal_error');
          },
        );
      } catch (err) {
        logger.error({ err: errorSummary(err) }, 'unexpected error while handling a frame');
        closeWith(conn, 'internal_error');
      }
    },

    close(ws, code) {
      const conn = ws.getUserData().conn;
      // The client's own close frame with 1000 or 1001 says it is done (browsers send 1001 when a tab closes or
      // reloads): no resume will come. A drop (1006), any other code, or a close of ours keeps the session.
      const leaving = !conn.closed && (code === 1000 || code === 1001);
      conn.closed = true;
      conn.leaving = leaving;
      conn.helloTimer?.cancel();
      perAddress.release(conn.address);
      relay.connectionClosed();
      try {
        if (conn.session) relay.disconnected(conn.session, conn, leaving);
      } catch (err) {
        logger.error({ err: errorSummary(err) }, 'unexpected error while closing a session');
      }
    },
  };
}
