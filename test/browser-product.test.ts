/**
 * The page as a product (issue 14): the landing screen, bubbles grouped by
 * sender and minute with date lines (time injected into both the relay and
 * the page, no sleeping), receipts as ticks with words for screen readers,
 * links that open safely and only after showing where they go, message HTML
 * never interpreted, Esc twice to skip, the "Stranger has disconnected" line,
 * New chat where Next was, Report that asks first, and an installable page.
 */
import t from 'tap';
import type { Clock } from '../src/clock.js';
import {
  axeViolations,
  launchBrowser,
  matchedPages,
  openPage,
  SMALL_PHONE,
  send,
  setHidden,
  type TestPage,
  waitForStatus,
} from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

/** The page's getComputedStyle, in code that runs in the page (the tests are type-checked without the DOM). */
type Styles = { getComputedStyle(el: unknown, pseudo?: string): { content: string } };

const clean = (p: TestPage) => p.problems.filter((x) => !x.includes('WebSocket'));

t.test(
  'the landing screen says what this is, how it protects, the rules and the age, with Start and Invite',
  async (t) => {
    const srv = await startTestServer();
    t.teardown(srv.close);
    const a = await openPage(browser, `${srv.http}/`, { viewport: SMALL_PHONE });
    await waitForStatus(a.page, 'Connected');
    const home = a.page.locator('#home');
    t.match(await a.page.locator('#home-title').innerText(), /stranger/i, 'one line says what this is');
    const promises = await home.locator('.promises li strong').allInnerTexts();
    t.same(promises, ['No account', 'End-to-end encrypted', 'Nothing stored'], 'how it protects them');
    t.equal(await home.getByRole('heading', { name: 'House rules' }).count(), 1, 'the house rules have a heading');
    t.ok((await home.locator('.rules li').count()) >= 3, 'and a list');
    t.match(await home.locator('.age').innerText(), /18 or older/, 'an age notice');
    const viewport = SMALL_PHONE.height;
    for (const id of ['start', 'invite']) {
      const box = await a.page.locator(`#${id}`).boundingBox();
      t.ok(box && box.y + box.height <= viewport, `${id} is on the first screen of a 320 px phone, no scrolling`);
    }
    t.equal(await a.page.locator('#start').innerText(), 'Start');
    t.equal(await a.page.locator('#invite').innerText(), 'Invite a friend');

    await a.page.locator('#start').click();
    await waitForStatus(a.page, 'Looking');
    await a.page.locator('#cancel').click();
    await waitForStatus(a.page, 'Connected');
    await a.page.locator('#invite').click();
    await waitForStatus(a.page, 'Waiting for your friend');
    t.match(await a.page.locator('#invite-link').inputValue(), /#invite=[0-9A-Za-z-]+$/, 'Invite gives a link');
    t.same(clean(a), [], 'no console errors and no CSP violations');
  },
);

t.test('bubbles group by sender and minute, and a date line starts each day', async (t) => {
  // 23:58:30 local time on 1 March; both the relay's clock (it stamps incoming messages) and the pages' clocks
  // are set, then moved on to the next minute and past midnight.
  const start = new Date(2026, 2, 1, 23, 58, 30).getTime();
  let offset = start - Date.now();
  const relayClock: Clock = {
    now: () => Date.now() + offset,
    schedule(ms, fn) {
      const timer = setTimeout(fn, ms);
      return { cancel: () => clearTimeout(timer) };
    },
  };
  const srv = await startTestServer({}, relayClock);
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`, `${srv.http}/`, {
    prepare: (page) => page.clock.install({ time: start }),
  });
  const setTime = async (at: number) => {
    offset = at - Date.now();
    await a.page.clock.setSystemTime(at);
    await b.page.clock.setSystemTime(at);
  };
  const items = () =>
    a.page.evaluate(`[...document.querySelectorAll('#messages > li')].map((li) =>
      li.classList.contains('day') ? 'day:' + li.innerText
      : li.classList.contains('msg') ? li.dataset.from + ':' + li.querySelector('.text').innerText
        + (li.classList.contains('first') ? ' first' : '') + (li.classList.contains('last') ? ' last' : '')
      : 'notice')`) as Promise<string[]>;
  const theirs = (n: number) =>
    a.page
      .locator('#log li[data-from="them"]')
      .nth(n - 1)
      .waitFor();

  await send(b.page, 'one');
  await send(b.page, 'two');
  await theirs(2);
  await send(a.page, 'three');
  await send(a.page, 'four');
  await send(b.page, 'five');
  await theirs(3);
  await setTime(new Date(2026, 2, 1, 23, 59, 30).getTime());
  await send(b.page, 'six');
  await theirs(4);
  await send(a.page, 'seven');
  await setTime(new Date(2026, 2, 2, 0, 0, 30).getTime());
  await send(b.page, 'eight');
  await theirs(5);
  t.same(
    await items(),
    [
      'day:Yesterday',
      'notice',
      'them:one first',
      'them:two last',
      'me:three first',
      'me:four last',
      'them:five first last',
      'them:six first last',
      'me:seven first last',
      'day:Today',
      'them:eight first last',
    ],
    'same sender in the same minute share a group; a new minute, sender or day starts one; the first day is now "Yesterday"',
  );
  // The tail is on the last bubble of a group only.
  const tail = (text: string) =>
    a.page
      .locator('#log li.msg', { hasText: text })
      .locator('.text')
      .evaluate((el) => (globalThis as unknown as Styles).getComputedStyle(el, '::after').content);
  t.equal(await tail('one'), 'none', 'no tail inside a group');
  t.not(await tail('two'), 'none', 'a tail on the last of the group');

  // The time: in the accessibility tree always, on screen only on hover or tap.
  const one = a.page.locator('#log li.msg', { hasText: 'one' }).first();
  const timeWidth = () => one.locator('.time').evaluate((el) => el.getBoundingClientRect().width);
  t.match(await one.locator('.time').innerText(), /^(11:58\sPM|23:58)$/, 'the time is the relay’s stamp, local');
  t.ok((await timeWidth()) <= 1, 'hidden until hovered or tapped');
  await one.locator('.text').click();
  t.ok((await timeWidth()) > 10, 'a tap shows it');
  await one.locator('.text').click();
  await a.page.mouse.move(0, 0);
  t.ok((await timeWidth()) <= 1, 'another tap hides it');
  await one.locator('.text').hover();
  t.ok((await timeWidth()) > 10, 'hovering shows it');
  t.same([...clean(a), ...clean(b)], []);
});

t.test('receipts are ticks that go sending, sent, delivered, read, with words for screen readers', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  // Every state the new message goes through, as drawn and as read out.
  await a.page.evaluate(`(() => {
    window.__states = [];
    const record = (li) => {
      const state = li.querySelector('.state');
      const tick = li.querySelector('.tick');
      const last = window.__states[window.__states.length - 1];
      if (last && last.status === li.dataset.status) return;
      window.__states.push({
        status: li.dataset.status,
        words: state.textContent,
        srOnly: state.classList.contains('sr'),
        tick: getComputedStyle(tick).maskImage || getComputedStyle(tick).webkitMaskImage,
        tickColour: getComputedStyle(tick).backgroundColor,
        tickHidden: tick.getAttribute('aria-hidden'),
      });
    };
    new MutationObserver((records) => {
      for (const r of records) {
        if (r.type === 'childList') for (const n of r.addedNodes) { if (n.dataset && n.dataset.from === 'me') record(n); }
        else if (r.target.dataset.from === 'me') record(r.target);
      }
    }).observe(document.getElementById('messages'), { childList: true, subtree: true, attributes: true, attributeFilter: ['data-status'] });
  })()`);
  await setHidden(b.page, true);
  await send(a.page, 'tick tock');
  const mine = a.page.locator('#log li[data-from="me"]').last();
  await mine.and(a.page.locator('[data-status="delivered"]')).waitFor();
  await setHidden(b.page, false);
  await mine.and(a.page.locator('[data-status="read"]')).waitFor();
  type State = {
    status: string;
    words: string;
    srOnly: boolean;
    tick: string;
    tickColour: string;
    tickHidden: string;
  };
  const states = (await a.page.evaluate('window.__states')) as State[];
  t.same(
    states.map((s) => [s.status, s.words, s.srOnly, s.tickHidden]),
    [
      ['sending', 'Sending…', true, 'true'],
      ['sent', 'Sent', true, 'true'],
      ['delivered', 'Delivered', true, 'true'],
      ['read', 'Read', true, 'true'],
    ],
    'each state in order; the words are for screen readers only, the drawn tick is hidden from them',
  );
  const [sending, sent, delivered, read] = states;
  t.match(sending?.tick, /^url\("data:image\/svg\+xml/, 'a drawn icon');
  t.not(sending?.tick, sent?.tick, 'sending (a clock) is not sent (one tick)');
  t.not(sent?.tick, delivered?.tick, 'sent is one tick, delivered two');
  t.equal(delivered?.tick, read?.tick, 'read is two ticks…');
  t.not(delivered?.tickColour, read?.tickColour, '…in another colour');
  const heard = await a.page.locator('#log').ariaSnapshot();
  t.match(heard, /listitem: "?You: tick tock \d\d?:\d\d.* Read"?$/m, 'a screen reader hears who, the time and "Read"');

  // Waiting for the network is written out, for everyone.
  await a.context.setOffline(true);
  await waitForStatus(a.page, 'Offline');
  await send(a.page, 'later');
  const queued = a.page.locator('#log li[data-from="me"][data-status="queued"]');
  await queued.waitFor();
  t.equal(await queued.locator('.state').getAttribute('class'), 'state', 'not screen-reader-only');
  t.ok(await queued.locator('.state', { hasText: 'Waiting for connection' }).isVisible(), 'visible');
  await a.context.setOffline(false);
  await a.page
    .locator('#log li[data-from="me"][data-status="read"]', { hasText: 'later' })
    .waitFor({ timeout: 20_000 });
  t.same([...clean(a), ...clean(b)], []);
});

t.test('links open safely after showing where they go; message HTML is never interpreted', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  const html = '<img src=x onerror="document.title=\'owned\'"><b>bold</b><a href="/evil">x</a>';
  await send(b.page, html);
  await send(b.page, 'see https://example.com/path?q=1&r=2, or www.example.org. Not javascript:alert(1)');
  const withLinks = a.page.locator('#log li[data-from="them"]', { hasText: 'see https' });
  await withLinks.waitFor();
  const raw = a.page.locator('#log li[data-from="them"] .text').first();
  t.equal(await raw.innerText(), html, 'HTML is shown as the text it is');
  t.equal(await a.page.locator('#log img, #log b, #log li:first-of-type a').count(), 0, 'no element came from it');
  t.equal(await a.page.locator('#log a[href$="/evil"]').count(), 0, 'nor a link');
  t.equal(await a.page.title(), 'Anon Chat');

  const links = withLinks.locator('a');
  t.equal(await links.count(), 2, 'two addresses, two links (javascript: is not one)');
  t.same(
    await links.allInnerTexts(),
    ['https://example.com/path?q=1&r=2', 'www.example.org'],
    'the address is the text',
  );
  t.equal(await links.nth(0).getAttribute('href'), 'https://example.com/path?q=1&r=2');
  t.equal(await links.nth(1).getAttribute('href'), 'https://www.example.org/', 'www. links go to https');
  for (const i of [0, 1]) {
    t.equal(await links.nth(i).getAttribute('rel'), 'noopener noreferrer');
    t.equal(await links.nth(i).getAttribute('target'), '_blank');
  }
  t.equal(
    await withLinks.locator('.text').innerText(),
    'see https://example.com/path?q=1&r=2, or www.example.org. Not javascript:alert(1)',
    'the text reads exactly as sent',
  );

  // A click does not open anything: it shows the whole address first.
  const pagesBefore = a.context.pages().length;
  await links.nth(0).click();
  const dialog = a.page.locator('#link-dialog');
  await dialog.waitFor();
  t.equal(await a.page.locator('#link-url').innerText(), 'https://example.com/path?q=1&r=2', 'the full address');
  t.equal(await a.page.locator('#link-host').innerText(), 'example.com', 'and its host');
  const open = a.page.locator('#link-open');
  t.equal(await open.getAttribute('href'), 'https://example.com/path?q=1&r=2');
  t.equal(await open.getAttribute('rel'), 'noopener noreferrer');
  t.equal(await open.getAttribute('target'), '_blank');
  t.equal(await a.page.evaluate('document.activeElement.id'), 'link-cancel', 'Cancel has the focus');
  t.same(await axeViolations(a.page), [], 'axe: the link dialog');
  await a.page.keyboard.press('Escape');
  t.ok(await dialog.isHidden(), 'Esc closes it');
  t.equal(a.context.pages().length, pagesBefore, 'nothing was opened');
  t.match(await a.page.locator('#status').innerText(), /end-to-end encrypted/, 'and the chat goes on');
  // A host that looks like another is shown as the browser resolves it.
  await send(b.page, 'http://exаmple.com/');
  await a.page.locator('#log li[data-from="them"] a', { hasText: 'http://exаmple.com/' }).click();
  t.equal(
    await a.page.locator('#link-host').innerText(),
    'xn--exmple-4nf.com',
    'a look-alike host is shown as punycode',
  );
  await a.page.locator('#link-cancel').click();
  t.same([...clean(a), ...clean(b)], []);
});

t.test('Esc twice skips to the next stranger; the other sees "Stranger has disconnected"', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await a.page.clock.install();
  const next = await a.page.locator('#next').boundingBox();

  // Once is not enough, and it wears off after a second.
  await a.page.keyboard.press('Escape');
  t.equal(await a.page.locator('#next').innerText(), 'Sure? Next', 'one Esc arms Next');
  t.match(await a.page.locator('#announce').innerText(), /Press Esc again/, 'and says so to screen readers');
  await a.page.clock.runFor(1_100);
  t.equal(await a.page.locator('#next').innerText(), 'Next', 'a second later it is disarmed');
  await a.page.keyboard.press('Escape');
  await a.page.clock.runFor(1_100);
  await a.page.keyboard.press('Escape');
  t.notOk(
    a.sent.some((f) => f.includes('"leave"')),
    'two presses more than a second apart do nothing',
  );
  await a.page.clock.runFor(1_100);
  t.match(await a.page.locator('#status').innerText(), /end-to-end encrypted/, 'still chatting');

  // Esc while a dialog is open belongs to the dialog.
  await a.page.locator('#report').click();
  await a.page.locator('#report-dialog').waitFor();
  await a.page.keyboard.press('Escape');
  t.ok(await a.page.locator('#report-dialog').isHidden(), 'Esc closed the dialog');
  await a.page.keyboard.press('Escape');
  await a.page.clock.runFor(1_100);
  t.match(await a.page.locator('#status').innerText(), /end-to-end encrypted/, 'and did not count towards a skip');

  await a.page.locator('#text').focus();
  await a.page.keyboard.press('Escape');
  await a.page.keyboard.press('Escape');
  await waitForStatus(a.page, 'Looking');
  const end = b.page.locator('#log .notice.end');
  await end.waitFor();
  t.equal(await end.locator('strong').innerText(), 'Stranger has disconnected', 'a clear line for the one left behind');
  t.match(await end.innerText(), /The stranger left the chat\./, 'with what happened');
  await waitForStatus(b.page, 'Chat over');

  // New chat is where Next was.
  const again = await b.page.locator('#again').boundingBox();
  t.ok(next && again, 'both measured');
  if (next && again)
    t.same(
      [again.x, again.y, again.width, again.height].map(Math.round),
      [next.x, next.y, next.width, next.height].map(Math.round),
      'New chat takes the very place of Next',
    );
  t.equal(await b.page.evaluate('document.activeElement.id'), 'again', 'and has the focus');
  // From a finished chat, Esc twice starts a new one too.
  await b.page.keyboard.press('Escape');
  await b.page.keyboard.press('Escape');
  await waitForStatus(b.page, /Looking|end-to-end encrypted/);
  t.same([...clean(a), ...clean(b)], []);
});

t.test('Report asks first; cancelling does nothing, confirming reports', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  const dialog = a.page.locator('#report-dialog');
  await a.page.locator('#report').click();
  await dialog.waitFor();
  t.equal(await a.page.locator('#report-title').innerText(), 'Report this stranger?');
  t.equal(await a.page.evaluate('document.activeElement.id'), 'report-cancel', 'Cancel has the focus');
  t.same(await axeViolations(a.page), [], 'axe: the report dialog, light');
  await a.page.emulateMedia({ colorScheme: 'dark' });
  t.same(await axeViolations(a.page), [], 'axe: the report dialog, dark');
  await a.page.emulateMedia({ colorScheme: 'light' });
  await a.page.locator('#report-cancel').click();
  t.ok(await dialog.isHidden(), 'the dialog is gone');
  t.notOk(
    a.sent.some((f) => f.includes('"report"')),
    'nothing was sent',
  );
  await send(a.page, 'still here');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'still here' }).waitFor();
  t.match(await a.page.locator('#status').innerText(), /end-to-end encrypted/, 'still chatting');

  await a.page.locator('#report').click();
  await a.page.locator('#report-confirm').click();
  await a.page.locator('#log .notice', { hasText: 'You reported this stranger' }).waitFor();
  t.ok(
    a.sent.some((f) => f.includes('"report"')),
    'confirmed, the report is sent',
  );
  await b.page.locator('#log .notice.end', { hasText: 'Stranger has disconnected' }).waitFor();
  t.same([...clean(a), ...clean(b)], []);
});

t.test('installable: the manifest, icons, favicon and theme colour, as Chromium sees them', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await openPage(browser, `${srv.http}/`);
  await waitForStatus(a.page, 'Connected');
  const linked = (await a.page.evaluate(`(() => ({
    manifest: document.querySelector('link[rel=manifest]')?.href,
    icon: document.querySelector('link[rel=icon]')?.href,
    theme: document.querySelector('meta[name=theme-color]')?.content,
  }))()`)) as { manifest: string; icon: string; theme: string };
  t.equal(linked.manifest, `${srv.http}/manifest.webmanifest`);
  t.equal(linked.icon, `${srv.http}/icon.svg`);
  t.match(linked.theme, /^#[0-9a-f]{6}$/);
  const cdp = await a.context.newCDPSession(a.page);
  const manifest = (await cdp.send('Page.getAppManifest')) as { url: string; errors: unknown[]; data?: string };
  t.equal(manifest.url, `${srv.http}/manifest.webmanifest`, 'Chromium found the manifest');
  t.same(manifest.errors, [], 'and parsed it without errors');
  const installable = (await cdp.send('Page.getInstallabilityErrors')) as {
    installabilityErrors: { errorId: string }[];
  };
  t.same(
    // A test's browser context is an incognito one, which Chromium never installs from; nothing else may be missing
    // (no icon, no manifest field, no service worker: Chromium no longer asks for one).
    installable.installabilityErrors.map((e) => e.errorId).filter((id) => id !== 'in-incognito'),
    [],
    'Chromium has nothing else against installing it',
  );
  const header = await a.page
    .locator('header h1 img')
    .evaluate((img) => (img as unknown as { naturalWidth: number }).naturalWidth);
  t.ok(header > 0, 'the icon in the header loaded');
  t.same(clean(a), [], 'under the CSP, without a problem');
});
