/**
 * The page when the network misbehaves: a proxy cuts the connection mid-chat
 * and refuses reconnects for a while (messages typed meanwhile are queued),
 * and the server restarts (the page says the chat is over and offers another).
 */
import t from 'tap';
import { launchBrowser, matchedPages, messages, send, waitForStatus } from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';
import { TcpProxy } from './fixtures/tcp-proxy.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

t.test('a cut connection recovers by itself: nothing lost, nothing twice, offline messages sent', async (t) => {
  const srv = await startTestServer();
  const proxy = await TcpProxy.start(srv.server.port);
  t.teardown(() => {
    proxy.close();
    srv.close();
  });
  // a goes through the breakable proxy; b is connected directly.
  const [a, b] = await matchedPages(browser, `${proxy.http}/`, `${srv.http}/`);
  await send(a.page, 'before 1');
  await send(b.page, 'from b before');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'before 1' }).waitFor();
  await a.page.locator('#log li[data-from="them"]', { hasText: 'from b before' }).waitFor();

  proxy.refuse(true);
  proxy.cut();
  await waitForStatus(a.page, 'Reconnecting');
  await waitForStatus(b.page, 'lost their connection');
  // Typed while offline: queued in order, shown as waiting.
  await send(a.page, 'offline 1');
  await send(a.page, 'offline 2');
  await send(a.page, 'offline 3');
  const waiting = a.page.locator('#log li[data-from="me"][data-status="queued"]');
  t.equal(await waiting.count(), 3, 'offline messages wait for the connection');
  // Meanwhile b keeps talking; the relay buffers for a.
  await send(b.page, 'while you were away 1');
  await send(b.page, 'while you were away 2');
  await b.page.locator('#log li[data-from="me"][data-status="sent"]').nth(1).waitFor();

  proxy.refuse(false);
  await waitForStatus(a.page, 'end-to-end encrypted', 20_000);
  await b.page.locator('#log li[data-from="them"]', { hasText: 'offline 3' }).waitFor();
  await a.page.locator('#log li[data-from="them"]', { hasText: 'while you were away 2' }).waitFor();
  await a.page.locator('#log li[data-from="me"][data-status="read"]').nth(3).waitFor();

  // One more cut right away, to catch double sends after a second resume.
  proxy.cut();
  await waitForStatus(a.page, 'end-to-end encrypted', 20_000);
  await send(a.page, 'after 2');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'after 2' }).waitFor();
  await a.page.waitForTimeout(300);

  t.same(
    await messages(b.page, 'them'),
    ['before 1', 'offline 1', 'offline 2', 'offline 3', 'after 2'],
    'b got every message of a once, in order',
  );
  t.same(
    await messages(a.page, 'them'),
    ['from b before', 'while you were away 1', 'while you were away 2'],
    'a got what b sent while it was away, once, in order',
  );
  t.equal(await a.page.locator('#log li[data-from="me"][data-status="failed"]').count(), 0);
  t.equal(await a.page.locator('#log .notice', { hasText: 'over' }).count(), 0, 'the chat never ended');
  for (const p of [a, b])
    t.same(
      p.problems.filter((p) => !p.includes('WebSocket')),
      [],
    );
});

t.test('after a server restart the page says the chat is over and offers a new one', async (t) => {
  const first = await startTestServer();
  const proxy = await TcpProxy.start(first.server.port);
  t.teardown(() => proxy.close());
  const [a, b] = await matchedPages(browser, `${proxy.http}/`);
  await send(a.page, 'hello before the restart');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'before the restart' }).waitFor();

  first.close();
  const second = await startTestServer();
  t.teardown(second.close);
  proxy.retarget(second.server.port);

  for (const p of [a, b]) {
    await p.page.locator('#log .notice', { hasText: 'This chat is over' }).waitFor({ timeout: 20_000 });
    await waitForStatus(p.page, 'Chat over');
    t.ok(await p.page.locator('#again').isVisible(), 'a new chat is offered');
  }
  t.same(await messages(b.page, 'them'), ['hello before the restart'], 'the old messages stay readable');
  await a.page.locator('#again').click();
  await b.page.locator('#again').click();
  await waitForStatus(a.page, 'end-to-end encrypted');
  await waitForStatus(b.page, 'end-to-end encrypted');
  await send(b.page, 'new chat on the new server');
  await a.page.locator('#log li[data-from="them"]', { hasText: 'new chat on the new server' }).waitFor();
  t.same(await messages(a.page, 'them'), ['new chat on the new server']);
});

t.test('going offline is noticed at once; messages typed meanwhile wait; back online it resumes at once', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await send(a.page, 'before');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'before' }).waitFor();

  await a.context.setOffline(true);
  // The heartbeat alone would take up to 28 s to notice; the browser's offline event is immediate.
  await waitForStatus(a.page, 'Offline. Waiting for the network…', 1000);
  t.ok(await a.page.locator('#leave').isDisabled(), 'chat actions wait for the network');
  await send(a.page, 'typed offline');
  const typed = a.page.locator('#log li[data-from="me"]').last();
  t.equal(await typed.getAttribute('data-status'), 'queued');
  t.match(await typed.locator('.meta').innerText(), /Waiting for connection$/, 'as the README promises');
  await send(b.page, 'while a was offline');
  await b.page.locator('#log li[data-from="me"][data-status="sent"]').last().waitFor();

  await a.context.setOffline(false);
  await waitForStatus(a.page, 'end-to-end encrypted', 2000);
  await b.page.locator('#log li[data-from="them"]', { hasText: 'typed offline' }).waitFor();
  await a.page.locator('#log li[data-from="them"]', { hasText: 'while a was offline' }).waitFor();
  await typed.and(a.page.locator('[data-status="read"]')).waitFor();
  t.same(await messages(b.page, 'them'), ['before', 'typed offline'], 'sent once the network is back, once');
  t.same(await messages(a.page, 'them'), ['while a was offline']);
  t.equal(await a.page.locator('#log .notice', { hasText: 'over' }).count(), 0, 'the chat never ended');
});

t.test('when the server drains, the page says so and moves to another server before the old one closes', async (t) => {
  const first = await startTestServer();
  const proxy = await TcpProxy.start(first.server.port);
  t.teardown(() => {
    proxy.close();
    first.close();
  });
  const [a, b] = await matchedPages(browser, `${proxy.http}/`);
  // New connections now reach a second server; the first one keeps its sockets open until the test ends.
  const second = await startTestServer();
  t.teardown(second.close);
  proxy.retarget(second.server.port);
  first.server.beginDrain();
  for (const p of [a, b]) await waitForStatus(p.page, 'The server is restarting; reconnecting…', 1000);
  // Each page reconnects after its own random 0–3 s delay; the second server does not know their chat.
  for (const p of [a, b])
    await p.page.locator('#log .notice', { hasText: 'This chat is over' }).waitFor({ timeout: 6000 });
  t.equal(second.server.relay.connections, 2, 'both pages are on the second server');
  t.ok(first.server.draining, 'while the first one was still draining, not closed');
  await a.page.locator('#again').click();
  await b.page.locator('#again').click();
  await waitForStatus(a.page, 'end-to-end encrypted');
  await send(a.page, 'hello on the second server');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'second server' }).waitFor();
});
