/**
 * Keeping frames few, and what the page does when the relay refuses one for
 * rate: typing signals are not sent where the message itself says it, a
 * refused message is left to the typed client (which holds its outbox and
 * sends it again in order after `retryAfterMs`), and a refused typing signal
 * or receipt is not the user's business.
 */
import type { WebSocketRoute } from 'playwright-core';
import t from 'tap';
import {
  launchBrowser,
  matchedPages,
  messages,
  openPage,
  send,
  type TestPage,
  until,
  waitForStatus,
} from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

const typingSent = (p: TestPage) =>
  p.sent.filter((f) => f.startsWith('{"type":"typing"')).map((f) => (JSON.parse(f) as { on: boolean }).on);

t.test('sending a message sends no "typing off" after it; emptying the draft still does', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await a.page.locator('#text').pressSequentially('hel');
  await b.page.locator('#typing').waitFor({ state: 'visible' });
  await a.page.locator('#text').press('Enter');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'hel' }).waitFor();
  t.ok(await b.page.locator('#typing').isHidden(), 'the message itself hides the indicator on the other side');
  t.same(typingSent(a), [true], 'only "typing on" went out for that message');

  await a.page.locator('#text').pressSequentially('abc');
  await b.page.locator('#typing').waitFor({ state: 'visible' });
  await a.page.locator('#text').fill('');
  await b.page.locator('#typing').waitFor({ state: 'hidden' });
  t.same(typingSent(a), [true, true, false], 'a draft typed and then emptied says "typing off"');
});

t.test('a refused typing signal or receipt (rate_limited without an id) is not shown in the chat', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  let toPage: WebSocketRoute | undefined;
  const a = await openPage(browser, `${srv.http}/`, {
    prepare: (page) =>
      page.routeWebSocket(/\/ws(\?|$)/, (ws) => {
        toPage = ws;
        ws.connectToServer();
      }),
  });
  const b = await openPage(browser, `${srv.http}/`);
  for (const p of [a, b]) await waitForStatus(p.page, 'Connected');
  await a.page.locator('#start').click();
  await waitForStatus(a.page, 'Looking');
  await b.page.locator('#start').click();
  await waitForStatus(a.page, 'end-to-end encrypted');
  await send(b.page, 'one');
  await a.page.locator('#log li[data-from="them"]', { hasText: 'one' }).waitFor();
  await until(() => a.sent.includes('{"type":"read","seq":2}'), 'a has said it read "one"');

  // What the relay answers to a frame over the rate limit that was not a message.
  toPage?.send(
    JSON.stringify({ type: 'error', code: 'rate_limited', message: 'Too many frames; slow down.', retryAfterMs: 100 }),
  );
  // It might have been the read receipt for "one": the page says it again once it may.
  const readAgain = await until(
    () => a.sent.filter((f) => f === '{"type":"read","seq":2}').length === 2,
    'the read receipt for "one" was said again',
    2000,
  ).then(
    () => true,
    () => false,
  );
  await send(b.page, 'two');
  await a.page.locator('#log li[data-from="them"]', { hasText: 'two' }).waitFor();
  t.same(
    await a.page.locator('#log .notice').allInnerTexts(),
    ['You are chatting with a stranger. Say hi!'],
    'no notice about the refusal',
  );
  t.ok(readAgain, 'the read receipt was said again after the refusal');
  t.same(a.problems, []);
});

// The typed client paces its outbox by the limits in the welcome, and holds it on a `rate_limited` that names a
// message until `retryAfterMs` has passed, then sends from that message on, in order (test/rate-limits.test.ts
// forces such a refusal); either way, no message is lost, reordered or left "Sending…".
t.test('quick messages under a tight rate limit all arrive, once and in order, none left "Sending…"', async (t) => {
  const srv = await startTestServer({ rateLimitPerSec: 2, rateLimitBurst: 4 });
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  const texts = ['q1', 'q2', 'q3', 'q4', 'q5', 'q6'];
  for (const text of texts) await send(a.page, text);
  const done = a.page.locator(
    '#log li[data-from="me"]:is([data-status="sent"], [data-status="delivered"], [data-status="read"])',
  );
  await done.nth(texts.length - 1).waitFor({ timeout: 15_000 });
  await b.page.locator('#log li[data-from="them"]', { hasText: 'q6' }).waitFor();
  t.same(await messages(b.page, 'them'), texts, 'every message arrived once, in order');
  t.equal(await b.page.locator('#log li.bad').count(), 0, 'none was refused as a replay');
  t.equal(await b.page.locator('#log .notice', { hasText: 'missing' }).count(), 0, 'none went missing');
  t.equal(await a.page.locator('#log li[data-from="me"][data-status="failed"]').count(), 0, 'none failed');
});

t.test('a person typing as fast as they can, at the default limits: every message arrives, none stuck', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  const texts = Array.from({ length: 40 }, (_, i) => `fast ${i + 1}`);
  // Keystroke by keystroke, so the page sends its typing signals as a person's would.
  for (const text of texts) {
    await a.page.locator('#text').pressSequentially(text);
    await a.page.locator('#text').press('Enter');
  }
  const done = a.page.locator(
    '#log li[data-from="me"]:is([data-status="sent"], [data-status="delivered"], [data-status="read"])',
  );
  await done.nth(texts.length - 1).waitFor({ timeout: 20_000 });
  // The text element alone: the whole line also holds the time ("fast 4" at "01:48" would read "fast 401:48").
  await b.page.locator('#log li[data-from="them"] .text', { hasText: /^fast 40$/ }).waitFor();
  t.same(await messages(b.page, 'them'), texts, 'every message arrived once, in order');
  t.equal(await a.page.locator('#log li[data-from="me"][data-status="sending"]').count(), 0, 'none stuck');
  t.equal(await b.page.locator('#log li.bad').count(), 0, 'none refused as a replay');
  for (const p of [a, b]) t.same(p.problems, []);
});
