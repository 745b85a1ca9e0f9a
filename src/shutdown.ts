/**
 * Ordered, idempotent shutdown with a watchdog: drain (readiness 503, clients
 * told `draining`), wait the grace period, close every socket with 1001, exit 0.
 * If anything hangs past the timeout, exit 1.
 */
import type { Logger } from './logger.js';
import type { RelayServer } from './server.js';

export interface ShutdownOptions {
  server: RelayServer;
  logger: Logger;
  graceMs: number;
  timeoutMs: number;
  exit: (code: number) => void;
}

export function createShutdown({
  server,
  logger,
  graceMs,
  timeoutMs,
  exit,
}: ShutdownOptions): (signal: string) => void {
  let started = false;
  return (signal) => {
    if (started) return;
    started = true;
    logger.info({ signal, graceMs }, 'draining');
    const watchdog = setTimeout(() => {
      logger.error({ timeoutMs }, 'shutdown timed out');
      exit(1);
    }, timeoutMs);
    watchdog.unref();
    server.beginDrain();
    setTimeout(() => {
      server.close().then(
        () => {
          clearTimeout(watchdog);
          logger.info('closed');
          exit(0);
        },
        () => {
          clearTimeout(watchdog);
          logger.error('close failed');
          exit(1);
        },
      );
    }, graceMs);
  };
}
