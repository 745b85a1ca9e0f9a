import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { TestClient } from './fixtures/ws-client.js';

const MAIN = fileURLToPath(new URL('../src/main.js', import.meta.url));

function startProcess(env: Record<string, string>): { child: ChildProcess; stdout: string[]; port: Promise<number> } {
  const child = spawn(process.execPath, [MAIN], { env: { ...process.env, PORT: '0', ...env }, stdio: 'pipe' });
  const stdout: string[] = [];
  const port = new Promise<number>((resolve, reject) => {
    child.stdout?.on('data', (chunk: Buffer) => {
      for (const line of chunk.toString().split('\n').filter(Boolean)) {
        stdout.push(line);
        const parsed = JSON.parse(line) as { msg?: string; port?: number };
        if (parsed.msg === 'listening' && parsed.port) resolve(parsed.port);
      }
    });
    child.once('exit', () => reject(new Error('exited before listening')));
  });
  return { child, stdout, port };
}

t.test('SIGTERM drains: readiness 503, clients told, closed with 1001, exit 0', async (t) => {
  // A grace long enough for the checks below to run inside it on a loaded machine (600 ms was not: the upgrade
  // below then met a closed listener, ECONNREFUSED, instead of the draining server's 503).
  const { child, stdout, port: portP } = startProcess({ DRAIN_GRACE_MS: '3000' });
  t.teardown(() => child.kill('SIGKILL'));
  const port = await portP;
  const url = `ws://127.0.0.1:${port}/ws`;
  const [c] = await TestClient.hello(url);
  const exited = once(child, 'exit');
  child.kill('SIGTERM');
  t.same(await c.next('draining'), { type: 'draining' });
  const ready = await fetch(`http://127.0.0.1:${port}/readyz`);
  t.equal(ready.status, 503, 'readiness fails while draining');
  t.same(await ready.json(), { status: 'draining' });
  await t.rejects(TestClient.open(url), /HTTP 503/, 'no new sockets while draining');
  t.equal((await c.closeEvent(8000)).code, 1001, 'closed with 1001 after the grace period');
  const [code] = await exited;
  t.equal(code, 0, 'exit 0');
  t.ok(
    stdout.some((l) => l.includes('"msg":"draining"')),
    'the drain is logged',
  );
  c.close();
});

t.test('bad settings stop the start with one message naming every problem', async (t) => {
  const child = spawn(process.execPath, [MAIN], {
    env: { ...process.env, PORT: 'eighty', RATE_LIMIT_BURST: '0', TRUST_PROXY: 'maybe' },
    stdio: 'pipe',
  });
  let stderr = '';
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const [code] = await once(child, 'exit');
  t.equal(code, 2);
  t.match(stderr, /PORT: expected an integer/);
  t.match(stderr, /RATE_LIMIT_BURST: expected an integer from 1/);
  t.match(stderr, /TRUST_PROXY: expected true or false/);
});
