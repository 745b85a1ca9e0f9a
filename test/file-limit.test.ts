// Near the open-file limit the server must refuse, not spin: without a cap
// below the limit, accept() fails with EMFILE and uWebSockets.js retries the
// stuck connection on every loop turn (100% CPU, nobody served).
import { spawn } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { openFileLimit, socketsWithin } from '../src/file-limit.js';
import { TestClient } from './fixtures/ws-client.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

t.test('the soft limit is read from /proc/self/limits', async (t) => {
  const limits = (soft: string) =>
    `Limit                     Soft Limit           Hard Limit           Units\nMax open files            ${soft}                20000                files\n`;
  t.equal(
    openFileLimit(() => limits('1024')),
    1024,
  );
  t.equal(
    openFileLimit(() => limits('unlimited')),
    null,
  );
  t.equal(
    openFileLimit(() => {
      throw new Error('ENOENT');
    }),
    null,
    'no /proc: no cap',
  );
  t.equal(socketsWithin(20_000), 19_744, 'a reserve of at most 256 (19,500 sessions still fit under 20,000)');
  t.equal(socketsWithin(200), 150, 'a quarter of a small limit');
});

t.test('past the open-file limit, upgrades are refused with 503 and the server keeps serving', async (t) => {
  // The relay under a 200-file limit: at most 150 sockets.
  const child = spawn('/bin/sh', ['-c', `ulimit -n 200 && exec "${process.execPath}" "${MAIN}"`], {
    env: { ...process.env, PORT: '0', MAX_CONNECTIONS_PER_ADDRESS: '0', LOG_LEVEL: 'info' },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  t.teardown(() => child.kill('SIGKILL'));
  const lines: Record<string, unknown>[] = [];
  const port = await new Promise<number>((resolve, reject) => {
    child.stdout.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        const entry = JSON.parse(line) as Record<string, unknown>;
        lines.push(entry);
        if (entry.msg === 'listening') resolve(entry.port as number);
      }
    });
    child.once('exit', () => reject(new Error('exited before listening')));
  });
  t.match(
    lines.find((l) => typeof l.msg === 'string' && l.msg.includes('capped by the open-file limit')),
    { openFileLimit: 200, maxConnections: 150, configured: 100_000 },
    'the cap is logged',
  );
  const url = `ws://127.0.0.1:${port}/ws`;
  const outcomes = await Promise.allSettled(Array.from({ length: 180 }, () => TestClient.open(url).then((c) => c)));
  const open = outcomes.filter((o) => o.status === 'fulfilled');
  const refused = outcomes.filter((o) => o.status === 'rejected' && String(o.reason).includes('HTTP 503'));
  t.equal(open.length, 150, 'up to the cap');
  t.equal(refused.length, 30, 'the rest refused at once with 503, none left hanging');
  const health = await fetch(`http://127.0.0.1:${port}/healthz`);
  t.equal(health.status, 200, 'still serving');
  for (const o of open) if (o.status === 'fulfilled') o.value.close();
});
