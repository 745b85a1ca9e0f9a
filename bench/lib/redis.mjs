// One redis-server on loopback for the cluster bench. It never persists: the
// arguments always carry `--save "" --appendonly no` and a temp `--dir`, and
// the server is asked after it starts (CONFIG GET) and refused if either is
// on. It cannot outlive the bench: an exit hook kills it and removes its dir.
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { createConnection } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { sample } from './proc.mjs';

const REDIS_SERVER = process.env.REDIS_SERVER ?? 'redis-server';

/** The arguments every bench Redis starts with; `--save ""` and `--appendonly no` are not optional. */
export function redisArgs(port, dir) {
  return [
    '--port',
    String(port),
    '--bind',
    '127.0.0.1',
    '--save',
    '',
    '--appendonly',
    'no',
    '--dir',
    dir,
    '--protected-mode',
    'yes',
    '--loglevel',
    'warning',
  ];
}

const encode = (args) => `*${args.length}\r\n${args.map((a) => `$${Buffer.byteLength(a)}\r\n${a}\r\n`).join('')}`;

/** One command; resolves with the raw reply text (RESP), rejects on a socket error or after `timeoutMs`. */
export function redisCommand(port, args, timeoutMs = 500) {
  return new Promise((resolve, reject) => {
    const sock = createConnection(port, '127.0.0.1');
    let text = '';
    const timer = setTimeout(() => done(new Error(`redis: no answer within ${timeoutMs} ms`)), timeoutMs);
    const done = (err, value) => {
      clearTimeout(timer);
      sock.destroy();
      if (err) reject(err);
      else resolve(value);
    };
    sock.on('connect', () => sock.write(encode(args)));
    sock.on('error', (err) => done(err));
    sock.on('data', (chunk) => {
      text += chunk.toString('utf8');
      // Enough for PING and a two-element CONFIG GET: a complete reply ends with CRLF after its last element.
      const want = args[0] === 'CONFIG' ? 5 : 1;
      if (text.split('\r\n').length > want) done(null, text);
    });
  });
}

/** Reads back `save` and `appendonly`: throws unless the server persists nothing. */
export async function assertNoPersistence(port) {
  const save = (await redisCommand(port, ['CONFIG', 'GET', 'save'])).split('\r\n');
  const aof = (await redisCommand(port, ['CONFIG', 'GET', 'appendonly'])).split('\r\n');
  // *2 / $4 / save / $0 / (empty)  and  *2 / $10 / appendonly / $2 / no
  if (save[4] !== '' || aof[4] !== 'no')
    throw new Error(`redis on ${port} would persist (save "${save[4]}", appendonly ${aof[4]})`);
}

const running = new Set();
let hooked = false;
function hook() {
  if (hooked) return;
  hooked = true;
  process.on('exit', () => {
    for (const r of running) {
      r.child.kill('SIGKILL');
      rmSync(r.dir, { recursive: true, force: true });
    }
  });
}

/** Starts redis-server on 127.0.0.1:`port`; resolves once it answers PING and has shown it persists nothing. */
export async function startRedis(port) {
  hook();
  const dir = mkdtempSync(join(tmpdir(), 'bench-redis-'));
  const child = spawn(REDIS_SERVER, redisArgs(port, dir), { stdio: ['ignore', 'ignore', 'inherit'] });
  const entry = { child, dir };
  running.add(entry);
  let exited = null;
  child.once('exit', (code) => {
    exited = code ?? -1;
  });
  child.once('error', (err) => {
    exited = String(err.code ?? err.message);
  });
  const deadline = Date.now() + 5000;
  for (;;) {
    if (exited !== null) {
      running.delete(entry);
      rmSync(dir, { recursive: true, force: true });
      throw new Error(`redis-server exited (${exited}): is it installed (npm run system-deps)?`);
    }
    if (Date.now() > deadline) throw new Error('redis-server did not start');
    try {
      if ((await redisCommand(port, ['PING'], 200)).startsWith('+PONG')) break;
    } catch {
      await new Promise((r) => setTimeout(r, 50));
    }
  }
  await assertNoPersistence(port);
  return {
    name: 'redis',
    url: `redis://127.0.0.1:${port}`,
    pid: child.pid,
    sample: () => sample(child.pid),
    stop: () =>
      new Promise((resolve) => {
        const finish = () => {
          running.delete(entry);
          rmSync(dir, { recursive: true, force: true });
          resolve();
        };
        if (child.exitCode !== null || child.signalCode !== null) return finish();
        child.once('exit', finish);
        child.kill('SIGKILL');
      }),
  };
}
