// Server processes for the bench: start one relay (ours or a peer) on a free
// port, wait for it to listen, and read its CPU time and RSS from /proc (Linux),
// which costs the server nothing and works the same for every relay.
import { spawn } from 'node:child_process';
import { createWriteStream, mkdirSync, readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const TICKS_PER_SECOND = 100;
const PAGE_BYTES = 4096;

export const RELAYS = {
  ours: {
    label: 'ours (uWebSockets.js)',
    transport: 'ws',
    command: ['node', `${ROOT}dist/src/main.js`],
    // Limits opened up so the bench measures the relay, not its abuse protection; and no rematch
    // cool-down, which the peers do not have (the journey's last two users would wait for each other).
    env: {
      REMATCH_COOLDOWN_MS: '0',
      LOG_LEVEL: 'warn',
      MAX_CONNECTIONS_PER_ADDRESS: '0',
      MAX_SESSIONS_PER_ADDRESS: '0',
      RATE_LIMIT_PER_SEC: '1000000',
      RATE_LIMIT_BURST: '1000000',
      FLOOD_CLOSE_AFTER: '1000000',
      MAX_ERRORS_PER_MINUTE: '1000000',
      MAX_QUEUE_LENGTH: '1000000',
      IDLE_TIMEOUT_S: '120',
      INVITES_PER_MINUTE: '100000000',
      MAX_INVITES: '2000000',
    },
  },
  ws: { label: 'ws peer', transport: 'ws', command: ['node', `${ROOT}bench/peers/ws-relay.mjs`], env: {} },
  socketio: {
    label: 'Socket.IO peer',
    transport: 'socketio',
    command: ['node', `${ROOT}bench/peers/socketio-relay.mjs`],
    env: {},
  },
  // The least work a relay on uWebSockets.js can do for this generator (see its header): capacity and
  // throughput only, as the upper bound ours is reported against.
  floor: {
    label: 'floor (bare uWebSockets.js)',
    transport: 'ws',
    command: ['node', `${ROOT}bench/peers/floor-relay.mjs`],
    env: {},
  },
};

/**
 * Starts relay `name` on `port` (`env` adds to its environment: a cluster instance's Redis and name).
 * Ready once it answers HTTP at all (ours: /healthz 200; the peers and the floor: 404), or, with
 * `readyPath`, once that path answers 200 (a cluster instance: /readyz, when its broker is up).
 */
export async function startRelay(name, port, env = {}, readyPath = null) {
  const relay = RELAYS[name];
  const [cmd, ...args] = relay.command;
  // BENCH_RELAY_NODE_ARGS="--cpu-prof --cpu-prof-dir=/tmp/prof": flags for each relay's node (profiles are
  // written on a clean exit, SIGTERM for ours); NODE_OPTIONS does not take --cpu-prof.
  if (cmd === 'node' && process.env.BENCH_RELAY_NODE_ARGS)
    args.unshift(...process.env.BENCH_RELAY_NODE_ARGS.split(' '));
  // BENCH_RELAY_LOG_DIR=dir keeps each relay's log (ours: JSON lines, at `info` there unless LOG_LEVEL says).
  const logDir = process.env.BENCH_RELAY_LOG_DIR;
  const logLevel = logDir ? { LOG_LEVEL: process.env.LOG_LEVEL ?? 'info' } : {};
  const child = spawn(cmd, args, {
    env: { ...process.env, ...relay.env, ...logLevel, ...env, PORT: String(port), HOST: '127.0.0.1' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  let exited = null;
  const exit = new Promise((resolve) =>
    child.once('exit', (code, signal) => {
      exited = code ?? signal;
      resolve(exited);
    }),
  );
  const deadline = Date.now() + 15_000;
  for (;;) {
    if (exited !== null) throw new Error(`${name} exited with ${exited}`);
    if (Date.now() > deadline) {
      child.kill('SIGKILL');
      throw new Error(`${name} did not start`);
    }
    try {
      const res = await fetch(`http://127.0.0.1:${port}${readyPath ?? '/healthz'}`, {
        signal: AbortSignal.timeout(1000),
      });
      await res.arrayBuffer();
      if (!readyPath || res.status === 200) break;
    } catch {}
    await new Promise((r) => setTimeout(r, 100));
  }
  if (logDir) {
    mkdirSync(logDir, { recursive: true });
    child.stdout.pipe(createWriteStream(`${logDir}/${env.INSTANCE_ID ?? name}-${port}.log`));
  } else child.stdout.resume();
  const signal = (sig) => {
    if (exited === null) child.kill(sig);
    return exit;
  };
  return {
    name,
    url: `ws://127.0.0.1:${port}/ws`,
    http: `http://127.0.0.1:${port}`,
    pid: child.pid,
    sample: () => sample(child.pid),
    /** Resolves with the exit code (or signal) once the process has gone. */
    exit,
    stop: () => signal('SIGKILL'),
    /** SIGTERM: a drain (ours: `draining`, then 1001 after DRAIN_GRACE_MS); resolves on exit. */
    terminate: () => signal('SIGTERM'),
  };
}

/** CPU seconds used so far and resident memory in bytes. */
export function sample(pid) {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  const cpuSeconds = (Number(fields[11]) + Number(fields[12])) / TICKS_PER_SECOND;
  const rssBytes = Number(fields[21]) * PAGE_BYTES;
  return { cpuSeconds, rssBytes };
}

/**
 * Relays already running elsewhere (several instances, or behind a TLS proxy): the
 * generator spreads its clients over `urls`. Server CPU and RSS cannot be read, so
 * those figures come out as n/a.
 */
export function externalRelay(urls, transport = 'ws') {
  const first = new URL(urls[0]);
  return {
    name: 'target',
    url: urls[0],
    urls,
    transport,
    http: `${first.protocol === 'wss:' ? 'https' : 'http'}://${first.host}`,
    sample: () => ({ cpuSeconds: Number.NaN, rssBytes: Number.NaN }),
    stop: async () => {},
  };
}
