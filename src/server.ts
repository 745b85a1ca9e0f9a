/**
 * Builds the uWebSockets.js app from the two edges (HTTP routes, /ws) around
 * one Relay and its Broker, and owns listening, draining and closing. The
 * broker is the in-memory one unless Redis is configured (or a test passes
 * one, to run several instances on one simulated network).
 */
import {
  App,
  SSLApp,
  type TemplatedApp,
  type us_listen_socket,
  us_listen_socket_close,
  us_socket_local_port,
} from 'uWebSockets.js';
import { Buffer } from 'node:buffer';
import { randomBytes } from 'node:crypto';
import type { Broker } from './broker.js';
import { MemoryNetwork } from './broker-memory.js';
import { readBuildInfo } from './build-info.js';
import { type Clock, systemClock } from './clock.js';
import { type Config, usesRedis } from './config.js';
import { registerHttpRoutes } from './http-routes.js';
import { clusterKeys, type RelayKeys, randomKeys } from './keys.js';
import type { Logger } from './logger.js';
import { errorSummary } from './logger.js';
import { RelayMetrics, type RelayStats } from './metrics.js';
import { registerPageRoutes } from './page-routes.js';
import { Relay } from './relay.js';
import { UPGRADE_REFUSALS, wsBehavior } from './ws-handler.js';

const SWEEP_INTERVAL_MS = 5000;

export interface RelayServer {
  readonly relay: Relay;
  readonly broker: Broker;
  readonly metrics: RelayMetrics;
  readonly port: number;
  readonly draining: boolean;
  /** Readiness goes 503, new sockets and invites are refused, clients are told `draining`. */
  beginDrain(): void;
  /** Closes every socket (1001) and the listener, and leaves the cluster. Safe to call twice. */
  close(): Promise<void>;
}

export interface ServerDeps {
  logger: Logger;
  clock?: Clock;
  /** Instead of the one the configuration asks for (tests: an instance of a simulated network). */
  broker?: Broker;
}

/** The instance's name: INSTANCE_ID, or a random one (never derived from the host: it is logged). */
export const instanceName = (config: Config): string => config.instanceId || randomBytes(6).toString('hex');

/** The broker the configuration asks for. Only the Redis one loads ioredis. */
export async function brokerFor(config: Config, clock: Clock, logger: Logger, nodeId: string): Promise<Broker> {
  if (usesRedis(config)) {
    const { RedisBroker } = await import('./broker-redis.js');
    return new RedisBroker({ config, clock, logger, nodeId });
  }
  return new MemoryNetwork({
    clock,
    interestWaitMs: config.matchInterestWaitMs,
    maxQueueLength: config.maxQueueLength,
    inviteTtlMs: config.inviteTtlMs,
    maxInvites: config.maxInvites,
    reportThreshold: config.reportThreshold,
    reportWindowMs: config.reportWindowMs,
    reportCooldownMs: config.reportCooldownMs,
  }).node(nodeId);
}

export async function startServer(config: Config, deps: ServerDeps): Promise<RelayServer> {
  const { logger, clock = systemClock } = deps;
  const broker = deps.broker ?? (await brokerFor(config, clock, logger, instanceName(config)));
  // With a shared secret (required with Redis), every instance checks every token; alone, keys die with the process.
  const keys: RelayKeys = config.clusterSecret
    ? clusterKeys(Buffer.from(config.clusterSecret, 'base64'))
    : randomKeys();
  // Gauges read the relay when scraped, which is always after it exists.
  const metrics: RelayMetrics = new RelayMetrics(
    (): RelayStats => relay.stats(),
    readBuildInfo(),
    UPGRADE_REFUSALS,
    broker,
  );
  const relay: Relay = new Relay({
    config,
    clock,
    metrics,
    broker,
    keys,
    onFault: (what, err) => logger.warn({ store: what, err: errorSummary(err) }, 'broker call failed'),
  });
  await relay.start();
  let draining = false;
  let closed = false;
  const isDraining = () => draining;

  // TLS here only when asked (the proxy usually terminates it): uWebSockets.js reads the files once, at start.
  const app = config.tlsCertFile
    ? SSLApp({ cert_file_name: config.tlsCertFile, key_file_name: config.tlsKeyFile })
    : App();
  const edge = { config, clock, relay, broker, keys, metrics, logger, isDraining };
  app.ws('/ws', wsBehavior(edge));
  registerPageRoutes(app, logger);
  registerHttpRoutes(app, edge);

  const sweeper = setInterval(() => relay.sweep(), SWEEP_INTERVAL_MS);
  sweeper.unref();
  // Shared keys expire a resume window after their last refresh, so a dead instance leaves no trace for longer.
  // Three refreshes per window, whatever the window: a floor above a third of it let a short window's keys (a
  // waiter's ticket, a directory entry) expire while their session was alive.
  const refresher = setInterval(() => relay.refreshShared(), Math.max(10, Math.floor(config.resumeWindowMs / 3)));
  refresher.unref();

  return new Promise((resolve, reject) => {
    listenExclusive(app, config.host, config.port, (listenSocket) => {
      if (!listenSocket) {
        clearInterval(sweeper);
        clearInterval(refresher);
        void broker.close();
        reject(new Error(`cannot listen on ${config.host}:${config.port}`));
        return;
      }
      const port = us_socket_local_port(listenSocket);
      const tls = config.tlsCertFile !== '';
      logger.info({ host: config.host, port, tls, instance: broker.nodeId, clustered: broker.clustered }, 'listening');
      resolve({
        relay: relay,
        broker,
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
        async close() {
          if (closed) return;
          closed = true;
          draining = true;
          clearInterval(sweeper);
          clearInterval(refresher);
          relay.closeAll();
          us_listen_socket_close(listenSocket);
          // Also ends sockets that never said hello.
          app.close();
          await broker.close();
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
