/**
 * The page through the production topology on loopback (`npm run cluster`):
 * https:// from nginx with TLS, three instances on Redis behind it. Two pages
 * chat while every instance is restarted in turn (SIGTERM, drain, a new
 * process on the same port); the pages follow by themselves through nginx,
 * and every message arrives once, in order, on both sides.
 */
import t from 'tap';
import { startLocalCluster } from '../deploy/cluster.js';
import { launchBrowser, matchedPages, messages, send, type TestPage } from './fixtures/browser.js';
import { freePort } from './fixtures/redis.js';

const nginxErrors: string[] = [];
const browser = await launchBrowser();
t.teardown(() => browser.close());
const httpsPort = await freePort();
const cluster = await startLocalCluster({
  instances: 3,
  httpsPort,
  httpPort: await freePort(),
  relayPorts: [await freePort(), await freePort(), await freePort()],
  redisPort: await freePort(),
  // Longer than the page's spread of reconnects after `draining` (up to 3 s), as the default 5 s is: a page that
  // has not moved when its instance exits resumes elsewhere only if its partner's instance still lives.
  relayEnv: { DRAIN_GRACE_MS: '3500', LOG_LEVEL: 'warn' },
  output: (source, line) => {
    if (source === 'nginx' && /\[(error|warn|crit)\]/.test(line)) nginxErrors.push(line);
  },
});
t.teardown(() => cluster.stop());

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

async function allArrived(p: TestPage, count: number): Promise<void> {
  await p.page
    .locator('#log li[data-from="them"]')
    .nth(count - 1)
    .waitFor({ timeout: 30_000 });
  await p.page.waitForTimeout(500);
}

t.test('two pages chat through nginx while every instance restarts in turn; nothing lost or doubled', async (t) => {
  const url = `https://127.0.0.1:${httpsPort}/`;
  const [a, b] = await matchedPages(browser, url, url, { ignoreHTTPSErrors: true });
  t.teardown(async () => {
    await a.context.close();
    await b.context.close();
  });
  t.match(
    a.sockets[0],
    new RegExp(`^wss://127\\.0\\.0\\.1:${httpsPort}/ws\\?route=[A-Za-z0-9_-]{22}$`),
    'a routing key',
  );
  t.not(a.sockets[0], b.sockets[0], 'one per tab');
  const typedA: string[] = [];
  const typedB: string[] = [];
  let n = 0;
  const say = async () => {
    n++;
    await send(a.page, `a ${n}`);
    typedA.push(`a ${n}`);
    await send(b.page, `b ${n}`);
    typedB.push(`b ${n}`);
  };
  t.teardown(async () => {
    if (process.env.DEBUG_GATEWAY) {
      const short = (w: string[]) => w.slice(-40).map((f) => f.replace(/"body":"[^"]*"/, '"body":…'));
      console.error(nginxErrors);
      console.error('A', a.sockets, await a.page.locator('#status').innerText(), short(a.wire));
      console.error('B', b.sockets, await b.page.locator('#status').innerText(), short(b.wire));
    }
  });
  for (let i = 0; i < 3; i++) await say();
  for (let i = 0; i < cluster.instances.length; i++) {
    const instance = cluster.instances[i];
    if (!instance) throw new Error('no instance');
    instance.process.kill('SIGTERM');
    // Keep talking through the drain and the restart.
    for (let k = 0; k < 3; k++) {
      await say();
      await sleep(300);
    }
    await instance.exited;
    t.equal(instance.process.exitCode, 0, `${instance.id} drained and exited`);
    await cluster.restartInstance(i);
    await say();
  }
  await allArrived(a, typedB.length);
  await allArrived(b, typedA.length);
  t.same(await messages(b.page, 'them'), typedA, 'b got all of a, once, in order');
  t.same(await messages(a.page, 'them'), typedB, 'a got all of b, once, in order');
  // A reconnect that meets an instance just as it exits can get 502 from nginx once (the browser logs it); the
  // page tries again by itself. Anything else in the console is a problem.
  const handshake =
    /WebSocket connection to .* failed: Error during WebSocket handshake: Unexpected response code: 50[23]/;
  t.same(
    [...a.problems, ...b.problems].filter((p) => !handshake.test(p)),
    [],
    'no console errors or CSP violations',
  );
  t.ok(
    a.sockets.every((s) => s === a.sockets[0]),
    'the page kept its routing key on every reconnect',
  );
});
