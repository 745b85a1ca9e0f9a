/**
 * Builds the uWebSockets.js app from the two edges (HTTP routes, /ws) around
 * one Relay, and owns listening, draining and closing.
 */
import {
  App,
  type TemplatedApp,
  type us_listen_socket,
  us_listen_socket_close,
  us_socket_local_port,
} from 'uWebSockets.js';
import { readBuildInfo } from './build-info.js';
import { type Clock, systemClock } from './clock.js';
import type { Config } from './config.js';
import { registerHttpRoutes } from './http-routes.js';
import type { Logger } from './logger.js';
import { RelayMetrics, type RelayStats } from './metrics.js';
import { registerPageRoutes } from './page-routes.js';
import { Relay } from './relay.js';
import { UPGRADE_REFUSALS, wsBehavior } from './ws-handler.js';

const SWEEP_INTERVAL_MS = 5000;

export interface RelayServer {
  readonly relay: Relay;
  readonly metrics: RelayMetrics;
  readonly port: number;
  readonly draining: boolean;
  /** Readiness goes 503, new sockets and invites are refused, clients are told `draining`. */
  beginDrain(): void;
  /** Closes every socket (1001) and the listener. Safe to call twice. */
  close(): void;
}

export interface ServerDeps {
  logger: Logger;
  clock?: Clock;
}

export function startServer(config: Config, { logger, clock = systemClock }: ServerDeps): Promise<RelayServer> {
  // Gauges read the relay when scraped, which is always after it exists.
  const metrics: RelayMetrics = new RelayMetrics((): RelayStats => relay.stats(), readBuildInfo(), UPGRADE_REFUSALS);
  const relay: Relay = new Relay({ config, clock, metrics });
  let draining = false;
  let closed = false;
  const isDraining = () => draining;

  const app = App();
  app.ws('/ws', wsBehavior({ config, clock, relay, metrics, logger, isDraining }));
  registerPageRoutes(app, logger);
  registerHttpRoutes(app, { config, clock, relay, metrics, logger, isDraining });

  const sweeper = setInterval(() => relay.sweep(), SWEEP_INTERVAL_MS);
  sweeper.unref();

  return new Promise((resolve, reject) => {
    listenExclusive(app, config.host, config.port, (listenSocket) => {
      if (!listenSocket) {
        clearInterval(sweeper);
        reject(new Error(`cannot listen on ${config.host}:${config.port}`));
        return;
      }
      const port = us_socket_local_port(listenSocket);
      logger.info({ host: config.host, port }, 'listening');
      resolve({
        relay: relay,
        metrics,
        port,
        get draining() {
          return draining;
        },
        beginDrain() {
          if (draining) return;
          draining = true;
          relay.announceDraining();
        },
        close() {
          if (closed) return;
          closed = true;
          draining = true;
          clearInterval(sweeper);
          relay.closeAll();
          us_listen_socket_close(listenSocket);
          // Also ends sockets that never said hello.
          app.close();
        },
      });
    });
  });
}

/** Exported by uWebSockets.js, but its type declarations only name it inside a non-exported enum. */
const LIBUS_LISTEN_EXCLUSIVE_PORT = 1;

/**
 * uWebSockets.js shares a port with any process already listening on it
 * (SO_REUSEPORT), so a second relay started on a busy port would say
 * "listening" and take half the connections, and resumes would land on a
 * process that does not hold the session. Exclusive, the second start fails.
 * (The binding takes host, port, options; its type declarations lack that form.)
 */
function listenExclusive(
  app: TemplatedApp,
  host: string,
  port: number,
  cb: (listenSocket: us_listen_socket | false) => void,
): void {
  const listen = app.listen as unknown as (h: string, p: number, o: number, c: typeof cb) => TemplatedApp;
  listen.call(app, host, port, LIBUS_LISTEN_EXCLUSIVE_PORT, cb);
}
