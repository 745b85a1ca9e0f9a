/**
 * Composition root: the only file that touches process.*. Reads the
 * environment, builds the server, wires the signals.
 */
import { ConfigError, loadConfig } from './config.js';
import { openFileLimit, socketsWithin } from './file-limit.js';
import { createLogger, errorSummary } from './logger.js';
import { startServer } from './server.js';
import { createShutdown } from './shutdown.js';

async function main(): Promise<void> {
  let config: ReturnType<typeof loadConfig>;
  try {
    config = loadConfig(process.env);
  } catch (err) {
    if (!(err instanceof ConfigError)) throw err;
    createLogger('info').fatal({ problems: err.problems }, 'invalid configuration');
    process.stderr.write(`${err.message}\nSee README.md, "Configuration", for every setting and its default.\n`);
    process.exit(2);
  }
  const logger = createLogger(config.logLevel);
  const fileLimit = openFileLimit();
  const maxConnections = fileLimit === null ? config.maxConnections : socketsWithin(fileLimit);
  if (config.maxConnections > maxConnections) {
    // A warning only when someone asked for more; the default is meant to be capped by the machine.
    const level = process.env.MAX_CONNECTIONS === undefined ? 'info' : 'warn';
    logger[level](
      { configured: config.maxConnections, openFileLimit: fileLimit, maxConnections },
      'open WebSockets capped by the open-file limit (raise ulimit -n to hold more)',
    );
    config = Object.freeze({ ...config, maxConnections });
  }
  const server = await startServer(config, { logger });
  const shutdown = createShutdown({
    server,
    logger,
    graceMs: config.drainGraceMs,
    timeoutMs: config.shutdownTimeoutMs,
    exit: (code) => process.exit(code),
  });
  process.on('SIGTERM', () => shutdown('SIGTERM'));
  process.on('SIGINT', () => shutdown('SIGINT'));
  process.on('uncaughtException', (err) => {
    logger.fatal({ err: errorSummary(err) }, 'uncaught exception');
    process.exit(1);
  });
}

main().catch((err: unknown) => {
  process.stderr.write(`failed to start: ${err instanceof Error ? err.message : String(err)}\n`);
  process.exit(1);
});
