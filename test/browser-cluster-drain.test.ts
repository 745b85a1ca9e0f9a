/**
 * The page when one instance of a clustered relay (Redis driver) drains mid-chat:
 * two pages chat, each through its own proxy in front of a different instance.
 * Page A's proxy is pointed at a third instance and A's instance drains while
 * both sides keep typing; the page moves by itself (a resume on another
 * instance continues the same chat). Nothing is lost or doubled, receipts go on
 * to "Read", the chat never shows as over, and A ends up on the new instance.
 * Screenshots are written to $SCREENSHOT_DIR, or a temporary directory.
 */
import { mkdirSync, mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import t, { type Test } from 'tap';
import type { WelcomeFrame } from '../src/protocol.js';
import { launchBrowser, matchedPages, messages, send, statusText, type TestPage } from './fixtures/browser.js';
import { startTestCluster, type TestCluster } from './fixtures/cluster.js';
import type { TestServer } from './fixtures/server.js';
import { TcpProxy } from './fixtures/tcp-proxy.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR ?? mkdtempSync(join(tmpdir(), 'browser-cluster-drain-'));
mkdirSync(SCREENSHOT_DIR, { recursive: true });

const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** Every text the status line showed, in order (the page's own copy: a MutationObserver in the page). */
async function recordStatus(p: TestPage): Promise<() => Promise<string[]>> {
  await p.page.evaluate(`{
    const status = document.getElementById('status');
    window.__statuses = [status.innerText];
    new MutationObserver(() => {
      const text = status.innerText;
      if (window.__statuses[window.__statuses.length - 1] !== text) window.__statuses.push(text);
    }).observe(status, { childList: true, characterData: true, subtree: true });
  }`);
  return async () => (await p.page.evaluate('window.__statuses')) as string[];
}

/** The welcomes the page received, in order, as seen on the wire. */
const welcomes = (p: TestPage): WelcomeFrame[] =>
  p.wire.map((f) => JSON.parse(f) as { type: string }).filter((f): f is WelcomeFrame => f.type === 'welcome');

/** Types `count` messages `${prefix} 1`… on `p`, `gapMs` apart; each is recorded in `typed` once on its way. */
async function typeSeries(p: TestPage, prefix: string, count: number, gapMs: number, typed: string[]): Promise<void> {
  for (let i = 1; i <= count; i++) {
    const text = `${prefix} ${i}`;
    await send(p.page, text);
    typed.push(text);
    if (i < count) await sleep(gapMs);
  }
}

/** Waits until `p` shows exactly as many messages from the other side as were typed there, then lets duplicates show. */
async function allArrived(p: TestPage, expected: string[], timeout = 20_000): Promise<void> {
  await p.page
    .locator('#log li[data-from="them"]')
    .nth(expected.length - 1)
    .waitFor({ timeout });
  await p.page.waitForTimeout(500);
}

/** Waits until every message of mine on `p` shows "Read". */
async function allRead(p: TestPage, count: number, timeout = 20_000): Promise<void> {
  await p.page
    .locator('#log li[data-from="me"][data-status="read"]')
    .nth(count - 1)
    .waitFor({ timeout });
}

interface Setup {
  cluster: TestCluster;
  from: TestServer;
  to: TestServer;
  other: TestServer;
  proxyA: TcpProxy;
  a: TestPage;
  b: TestPage;
  statusesA: () => Promise<string[]>;
  statusesB: () => Promise<string[]>;
}

/** A on n0 and B on n1 (each through its own proxy), matched across instances; n2 waits. */
async function setup(t: Test): Promise<Setup> {
  const cluster = await startTestCluster('redis', { nodes: 3 });
  const [from, other, to] = cluster.nodes as [TestServer, TestServer, TestServer];
  const proxyA = await TcpProxy.start(from.server.port);
  const proxyB = await TcpProxy.start(other.server.port);
  t.teardown(async () => {
    proxyA.close();
    proxyB.close();
    await cluster.close();
  });
  const [a, b] = await matchedPages(browser, `${proxyA.http}/`, `${proxyB.http}/`);
  t.teardown(async () => {
    await a.context.close();
    await b.context.close();
  });
  t.equal(from.server.relay.connections, 1, 'a starts on n0');
  t.equal(other.server.relay.connections, 1, 'b is on n1');
  return {
    cluster,
    from,
    to,
    other,
    proxyA,
    a,
    b,
    statusesA: await recordStatus(a),
    statusesB: await recordStatus(b),
  };
}

/**
 * The chat goes on while A's instance drains: messages before, during and after the move on both sides.
 * `closeFrom` closes A's old instance (with 1001 for what is still on it) at the moment the test chooses.
 */
async function chatThroughDrain(
  t: Test,
  s: Setup,
  closeFrom: (drainedAt: number) => Promise<void>,
  shot: string,
): Promise<void> {
  const { a, b, from, to, other } = s;
  const typedA: string[] = [];
  const typedB: string[] = [];
  const idA = welcomes(a)[0]?.id;
  t.ok(idA, 'a has an identity');

  await Promise.all([typeSeries(a, 'a before', 3, 150, typedA), typeSeries(b, 'b before', 3, 150, typedB)]);
  await b.page.locator('#log li[data-from="them"]', { hasText: 'a before 3' }).waitFor();
  await a.page.locator('#log li[data-from="them"]', { hasText: 'b before 3' }).waitFor();

  // The load balancer now sends a's new connections to n2; n0 drains (its clients are told `draining`).
  s.proxyA.retarget(to.server.port);
  from.server.beginDrain();
  const drainedAt = Date.now();
  await Promise.all([
    // Both keep typing through the drain, the page's random reconnect delay (0–3 s) and the close.
    typeSeries(a, 'a during', 8, 400, typedA),
    typeSeries(b, 'b during', 8, 400, typedB),
    closeFrom(drainedAt),
  ]);
  await Promise.all([typeSeries(a, 'a after', 2, 100, typedA), typeSeries(b, 'b after', 2, 100, typedB)]);

  await allArrived(b, typedA);
  await allArrived(a, typedB);
  t.same(await messages(b.page, 'them'), typedA, "b got every one of a's messages once, in order");
  t.same(await messages(a.page, 'them'), typedB, "a got every one of b's messages once, in order");
  t.same(await messages(a.page, 'me'), typedA, "a's own log is as typed");
  t.same(await messages(b.page, 'me'), typedB, "b's own log is as typed");
  // Both pages are visible, so every message goes on to "Read", as in a chat on one instance.
  await allRead(a, typedA.length);
  await allRead(b, typedB.length);
  for (const p of [a, b]) {
    t.equal(await p.page.locator('#log li[data-from="me"]:not([data-status="read"])').count(), 0, 'all read');
    t.match(await p.page.locator('#log li[data-from="me"] .meta').last().innerText(), /Read$/);
  }

  // A is on n2 now, with the same identity, resumed into the same chat.
  const last = welcomes(a).at(-1);
  t.match(last, { resumed: true, id: idA, state: 'chatting', chat: { partner: 'here' } }, 'a resumed the same chat');
  const matched = a.wire.map((f) => JSON.parse(f) as { type: string; chat?: string }).find((f) => f.type === 'matched');
  t.equal(last?.chat?.id, matched?.chat, 'the chat it was matched into');
  t.equal(to.server.relay.stats().connections, 1, 'a is connected to n2');
  t.equal(to.server.relay.stats().sessions, 1, 'n2 holds one session: a');
  t.ok(to.server.relay.sessions.get(idA as string)?.conn, "n2 holds a's session with its socket");
  t.equal(other.server.relay.stats().connections, 1, 'b stays on n1');
  t.equal(from.server.relay.connections, 0, 'n0 holds no socket');

  // Never shown as over, never a failure or a hole; both pages end as they were, chatting.
  for (const [p, statuses] of [
    [a, s.statusesA],
    [b, s.statusesB],
  ] as const) {
    const seen = await statuses();
    t.notOk(
      seen.some((x) => /over|out of date|another window/i.test(x)),
      `the status never said the chat was over: ${seen.join(' | ')}`,
    );
    t.match(await statusText(p.page), /^Chatting with a stranger, end-to-end encrypted$/);
    t.equal(
      await p.page.locator('#log .notice, #log .bad', { hasText: /over|missing|could not be/ }).count(),
      0,
      'no hole, nothing unreadable',
    );
    t.equal(await p.page.locator('#log li[data-from="me"][data-status="failed"]').count(), 0, 'nothing failed');
    t.ok(await p.page.locator('#text').isEnabled(), 'the composer is usable');
    t.notOk(await p.page.locator('#again').isVisible(), 'no "new chat" offered');
    // The log follows the conversation: the newest message, with its receipt line, is in view.
    const hidden = await p.page.evaluate(`(() => {
      const log = document.getElementById('log').getBoundingClientRect();
      const last = document.querySelector('#log li:last-child').getBoundingClientRect();
      return Math.max(0, Math.round(last.bottom - log.bottom));
    })()`);
    t.equal(hidden, 0, 'the newest message is fully in view');
    t.same(
      p.problems.filter((x) => !x.includes('WebSocket')),
      [],
      'no console errors',
    );
  }
  t.ok((await s.statusesA()).includes('The server is restarting; reconnecting…'), 'a was told about the restart');

  for (const [p, name] of [
    [a, 'a'],
    [b, 'b'],
  ] as const) {
    const path = join(SCREENSHOT_DIR, `${shot}-${name}.png`);
    await p.page.screenshot({ path });
    t.comment(`screenshot: ${path}`);
  }
}

t.test('an instance drains mid-chat (closed once the page moved): the chat goes on on another instance', async (t) => {
  const s = await setup(t);
  // As a shutdown with a grace longer than the page's reconnect delay (the default 5 s): the old instance closes
  // once the page has moved, at least 1 s after the drain began.
  await chatThroughDrain(
    t,
    s,
    async (drainedAt) => {
      const deadline = Date.now() + 6000;
      while (welcomes(s.a).length < 2 && Date.now() < deadline) await sleep(20);
      t.equal(welcomes(s.a).length, 2, 'a reconnected (once) before n0 closed');
      t.equal(s.to.server.relay.connections, 1, 'onto n2');
      await sleep(Math.max(0, drainedAt + 1000 - Date.now()));
      await s.from.close();
    },
    'drain-moved',
  );
});

// Closing the drained instance before the page moved is, for the session, a crash: a's new instance rebuilds its
// side from b's, and b's page re-sends what n0 held (`resend`), first, in order (src/relay.ts, #rebuildFor).
t.test('an instance drains mid-chat and closes after 1 s, before the page moved: the 1001 sends it on', async (t) => {
  const s = await setup(t);
  // As a shutdown with a 1 s grace, while the page still waits out its random reconnect delay (pinned here to
  // 2.7 s of its 0–3 s): the close (1001) is what moves it, and n0 forgets the session as it goes.
  await s.a.page.evaluate('Math.random = () => 0.9');
  await chatThroughDrain(
    t,
    s,
    async (drainedAt) => {
      await sleep(Math.max(0, drainedAt + 1000 - Date.now()));
      t.equal(welcomes(s.a).length, 1, 'a had not moved yet when n0 closed');
      await s.from.close();
    },
    'drain-closed-at-1s',
  );
});
