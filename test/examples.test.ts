/**
 * The examples in examples/ run as the README says, against a real relay, so they cannot rot.
 */
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { freePort } from './fixtures/redis.js';
import { startTestServer } from './fixtures/server.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const EXAMPLE = 'examples/typed-client.mjs';

/** Runs `node examples/<file> [args]` from the repository root, as the README says. */
function runExample(
  args: string[],
  timeoutMs = 30_000,
): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [EXAMPLE, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (c: Buffer) => {
      stdout += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      stderr += c.toString();
    });
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${EXAMPLE} still running after ${timeoutMs} ms\n${stdout}\n${stderr}`));
    }, timeoutMs);
    child.once('exit', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

/** A loopback port nothing listens on (bound, then released). */

t.test('examples/typed-client.mjs: two clients match, chat both ways, resume after a drop, exit 0', async (t) => {
  const server = await startTestServer();
  t.teardown(() => server.close());
  const { code, stdout, stderr } = await runExample([server.url]);
  t.equal(code, 0, 'exit 0');
  t.equal(stderr, '', 'nothing on stderr');
  const lines = stdout.trim().split('\n');
  const uuid = '[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}';
  const expected = [
    new RegExp(`^alice connected as ${uuid}$`),
    new RegExp(`^bob connected as ${uuid}$`),
    new RegExp(`^matched in chat ${uuid} \\(via random\\)$`),
    /^bob received #1: hello, stranger$/,
    /^alice sees #1 delivered$/,
    /^alice received #1: hi alice$/,
    /^bob dropped; alice sees her partner away$/,
    /^bob resumed: true, same id: true, same chat: true$/,
    /^bob received #2 after resuming: are you still there\?$/,
    /^alice sees her partner back$/,
    /^alice left; bob sees the chat ended \(partner_left\)$/,
    /^both closed$/,
  ];
  t.equal(lines.length, expected.length, 'one line per step');
  expected.forEach((re, i) => {
    t.match(lines[i], re, `line ${i + 1}`);
  });
});

t.test('examples/typed-client.mjs: no relay there -> exit 1 at once with a clear message', async (t) => {
  const port = await freePort();
  const { code, stdout, stderr } = await runExample([`ws://127.0.0.1:${port}/ws`]);
  t.equal(code, 1, 'exit 1');
  t.equal(stdout, '', 'nothing on stdout');
  // "cannot reach", not the watchdog's "no answer": a refused connection fails at once.
  t.match(stderr, /^typed-client example failed: cannot reach the relay at ws:\/\/127\.0\.0\.1:\d+\/ws .*npm start/);
});

t.test('examples/typed-client.mjs: a relay that never answers -> exit 1 at the timeout', async (t) => {
  // Accepts TCP connections and says nothing: the WebSocket upgrade never completes.
  const silent = createServer(() => {});
  await new Promise<void>((resolve) => silent.listen(0, '127.0.0.1', resolve));
  t.teardown(() => silent.close());
  const address = silent.address();
  if (address === null || typeof address === 'string') throw new Error('no port');
  const { code, stderr } = await runExample([`ws://127.0.0.1:${address.port}/ws`]);
  t.equal(code, 1, 'exit 1');
  t.match(stderr, /^typed-client example failed: no answer from ws:\/\/127\.0\.0\.1:\d+\/ws within 10 s/);
});

t.test('the README shows the example: the exact command, and the code of its snippet', async (t) => {
  const readme = readFileSync(new URL('README.md', `file://${ROOT}`), 'utf8');
  const example = readFileSync(new URL(EXAMPLE, `file://${ROOT}`), 'utf8');
  t.ok(readme.includes(`npm run build && node ${EXAMPLE}`), 'the README gives the command');
  const section = readme.slice(
    readme.indexOf('### From code: the typed client'),
    readme.indexOf('## Running the tests'),
  );
  const snippet = /```js\n([\s\S]*?)```/.exec(section)?.[1];
  t.ok(snippet, 'the section has a js snippet');
  const code = (snippet ?? '')
    .split('\n')
    .map((l) => l.replace(/ \/\/ .*$/, '').trim()) // trailing comments explain; the code must match
    .filter((l) => l && !l.startsWith('//'));
  t.ok(code.length >= 5, 'the snippet has code');
  for (const line of code) t.ok(example.includes(line), `the example has: ${line}`);
});

t.test('README shell blocks are copy-pasteable: no prompts', async (t) => {
  const readme = readFileSync(new URL('README.md', `file://${ROOT}`), 'utf8');
  const blocks = [...readme.matchAll(/```(?:sh|bash|shell)\n([\s\S]*?)```/g)].map((m) => m[1] ?? '');
  t.ok(blocks.length > 0, 'there are shell blocks');
  for (const block of blocks)
    for (const line of block.split('\n')) t.notOk(/^\s*[>$] /.test(line), `not a prompt: ${line}`);
});
