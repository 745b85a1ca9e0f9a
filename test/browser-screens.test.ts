/**
 * Keyboard-only use, background notifications and read receipts, the typing
 * switch, and screenshots of the main states (the landing screen, waiting,
 * inviting, chatting, a link's and Report's confirmations, reconnecting, a
 * finished chat) at 320 px, 390 px and 1280 px in light and dark (written to $SCREENSHOT_DIR, default test-output/screenshots;
 * `npm run screenshots` refreshes the committed set in docs/screenshots).
 */
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import t from 'tap';
import {
  DESKTOP,
  launchBrowser,
  matchedPages,
  openPage,
  PHONE,
  SMALL_PHONE,
  send,
  setHidden,
  waitForStatus,
} from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';
import { TcpProxy } from './fixtures/tcp-proxy.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());
const SCREENSHOT_DIR = process.env.SCREENSHOT_DIR ?? 'test-output/screenshots';

t.test('keyboard only: Tab to Start, Enter, type, Enter sends', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await openPage(browser, `${srv.http}/`);
  const b = await openPage(browser, `${srv.http}/`);
  for (const p of [a, b]) {
    await waitForStatus(p.page, 'Connected');
    await p.page.keyboard.press('Tab');
    await p.page.keyboard.press('Tab');
    t.equal(await p.page.evaluate('document.activeElement.id'), 'start', 'Start is the second stop after interests');
    await p.page.keyboard.press('Enter');
  }
  await waitForStatus(a.page, 'end-to-end encrypted');
  t.equal(await a.page.evaluate('document.activeElement.id'), 'text', 'focus moves to the message box on match');
  await a.page.keyboard.type('typed with the keyboard only');
  await a.page.keyboard.press('Enter');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'keyboard only' }).waitFor();
  t.equal(await a.page.locator('#log').getAttribute('role'), 'log', 'new messages are announced (role=log)');
  t.equal(await a.page.locator('#status').getAttribute('role'), 'status', 'state changes are announced');
});

t.test('in a background tab: the title counts new messages and read receipts wait', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await setHidden(a.page, true);
  await send(b.page, 'are you there?');
  const mine = b.page.locator('#log li[data-from="me"]').last();
  await mine.and(b.page.locator('[data-status="delivered"]')).waitFor();
  await a.page.waitForFunction('document.title.startsWith("(1) New message")');
  await b.page.waitForTimeout(300);
  t.equal(await mine.getAttribute('data-status'), 'delivered', 'not read while the tab is hidden');
  await setHidden(a.page, false);
  await mine.and(b.page.locator('[data-status="read"]')).waitFor();
  t.equal(await a.page.title(), 'Anon Chat', 'the title is restored');
});

t.test('typing indicators can be switched off, both ways', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await openPage(browser, `${srv.http}/`);
  await waitForStatus(a.page, 'Connected');
  await a.page.locator('#pref-typing').uncheck();
  const [b] = [await openPage(browser, `${srv.http}/`)];
  await waitForStatus(b.page, 'Connected');
  await a.page.locator('#start').click();
  await b.page.locator('#start').click();
  await waitForStatus(a.page, 'end-to-end encrypted');
  await waitForStatus(b.page, 'end-to-end encrypted');
  await a.page.locator('#text').pressSequentially('not telling');
  await b.page.locator('#text').pressSequentially('hmm');
  await a.page.waitForTimeout(500);
  t.ok(await b.page.locator('#typing').isHidden(), 'a does not send typing');
  t.ok(await a.page.locator('#typing').isHidden(), 'a does not show typing');
  const reloaded = await a.context.newPage();
  await reloaded.goto(`${srv.http}/`);
  t.notOk(await reloaded.locator('#pref-typing').isChecked(), 'the choice is remembered');
});

const SIZES = [
  ['phone-320', SMALL_PHONE],
  ['phone-390', PHONE],
  ['desktop-1280', DESKTOP],
] as const;

for (const [size, viewport] of SIZES)
  for (const colorScheme of ['light', 'dark'] as const) {
    t.test(`screenshots: ${size}, ${colorScheme}`, async (t) => {
      const srv = await startTestServer();
      const proxy = await TcpProxy.start(srv.server.port);
      t.teardown(() => {
        proxy.close();
        srv.close();
      });
      mkdirSync(SCREENSHOT_DIR, { recursive: true });
      const shot = async (page: import('playwright-core').Page, state: string) => {
        // The pointer out of the way, so no message shows its hover state (its time) by accident.
        await page.mouse.move(0, 0);
        await page.screenshot({ path: join(SCREENSHOT_DIR, `${state}-${size}-${colorScheme}.png`) });
      };
      const a = await openPage(browser, `${proxy.http}/`, { viewport, colorScheme });
      const b = await openPage(browser, `${srv.http}/`, { viewport, colorScheme });
      await waitForStatus(a.page, 'Connected');
      await a.page.locator('#interests').fill('music, chess');
      await shot(a.page, '1-start');
      await a.page.locator('#start').click();
      await waitForStatus(a.page, 'Looking');
      await shot(a.page, '2-looking');
      // The invite screen, with its link, on b's page (b has not looked for anyone yet).
      await b.page.locator('#invite').click();
      await waitForStatus(b.page, 'Waiting for your friend');
      await shot(b.page, '2-inviting');
      await b.page.locator('#cancel').click();
      await waitForStatus(b.page, 'Connected');
      await b.page.locator('#start').click();
      await waitForStatus(a.page, 'end-to-end encrypted');
      await send(b.page, 'hi! anyone into chess here?');
      await send(b.page, 'I play most evenings');
      await a.page.locator('#log li[data-from="them"]').nth(1).waitFor();
      await send(a.page, 'Yes, always. <b>Sicilian</b> or French?');
      await send(a.page, 'My openings: www.example.org/repertoire');
      await b.page.locator('#log li[data-from="them"]').nth(1).waitFor();
      await a.page.locator('#log li[data-from="me"][data-status="read"]').nth(1).waitFor();
      await b.page.locator('#text').pressSequentially('Sicil');
      await a.page.locator('#typing').waitFor();
      await shot(a.page, '3-chatting');
      // A link asks before it opens, showing the whole address.
      await a.page.locator('#log a').click();
      await a.page.locator('#link-dialog').waitFor();
      await shot(a.page, '3-link');
      await a.page.locator('#link-cancel').click();
      // So does Report.
      await a.page.locator('#report').click();
      await a.page.locator('#report-dialog').waitFor();
      await shot(a.page, '3-report');
      await a.page.locator('#report-cancel').click();
      proxy.refuse(true);
      proxy.cut();
      await waitForStatus(a.page, 'Reconnecting');
      await send(a.page, 'typed while offline');
      await shot(a.page, '4-reconnecting');
      proxy.refuse(false);
      await waitForStatus(a.page, 'end-to-end encrypted', 20_000);
      await a.page.locator('#log li[data-from="me"][data-status="read"]').nth(2).waitFor();
      await b.page.locator('#leave').click();
      await waitForStatus(a.page, 'Chat over');
      await shot(a.page, '5-chat-over');
      t.same(
        [...a.problems, ...b.problems].filter((p) => !p.includes('WebSocket')),
        [],
      );
    });
  }
