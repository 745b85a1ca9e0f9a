/**
 * Closing or reloading the tab ends the chat for the partner at once instead
 * of leaving them waiting out the resume window (two minutes): the page says
 * `leave` on pagehide, and the relay ends a session whose socket the browser
 * closed on purpose (1001). A network drop still resumes: see
 * browser-resilience.test.ts.
 */
import t from 'tap';
import {
  invitingPage,
  launchBrowser,
  matchedPages,
  openPage,
  send,
  type TestPage,
  until,
  waitForStatus,
} from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

const LEFT = 'The stranger left the chat.';

t.test('closing or reloading the page ends the chat for the partner within seconds', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);

  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await send(a.page, 'bye for now');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'bye for now' }).waitFor();
  await a.page.close();
  await b.page.locator('#log .notice', { hasText: LEFT }).waitFor({ timeout: 3000 });
  await waitForStatus(b.page, 'Chat over', 1000);
  t.pass('closing the tab ended the chat for the partner');

  // A reload mid-chat asks first ("leave this page?"); once confirmed, the partner is told at once too.
  const [c, d] = await matchedPages(browser, `${srv.http}/`, `${srv.http}/`, { acceptBeforeUnload: true });
  await c.page.reload();
  await d.page.locator('#log .notice', { hasText: LEFT }).waitFor({ timeout: 3000 });
  await waitForStatus(d.page, 'Chat over', 1000);
  await waitForStatus(c.page, 'Connected');
  t.ok(await c.page.locator('#start').isVisible(), 'the reloaded page starts afresh');
  for (const p of [b, c, d]) t.same(p.problems, []);
});

t.test('a page going away while waiting cancels its wait', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  // What the browser fires as a tab closes or reloads. (A real close is above; after it, Playwright no longer
  // reports the page's frames, so here the event is fired by hand to see what the page sends.)
  const goAway = (p: TestPage) => p.page.evaluate(`window.dispatchEvent(new PageTransitionEvent('pagehide'))`);
  const a = await openPage(browser, `${srv.http}/`);
  await waitForStatus(a.page, 'Connected');
  await a.page.locator('#start').click();
  await waitForStatus(a.page, 'Looking');
  await goAway(a);
  await until(() => a.sent.includes('{"type":"cancel"}'), 'the page cancelled its search');

  const b = await invitingPage(browser, `${srv.http}/`);
  await goAway(b);
  await until(() => b.sent.includes('{"type":"cancel"}'), 'the page gave up its invite');
  // The code is free again: whoever opens it now waits for a friend, rather than joining a page that is gone.
  const late = await openPage(browser, b.link);
  await waitForStatus(late.page, 'Waiting for your friend');
  t.same([...a.problems, ...b.problems, ...late.problems], []);
});
