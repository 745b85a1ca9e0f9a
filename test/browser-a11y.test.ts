/**
 * Accessibility: axe-core (injected into Chromium) finds no serious or critical
 * violation in any state of the page, in light and in dark; and every message
 * says who wrote it to assistive technology ("You", "Stranger", "Your friend").
 */
import t from 'tap';
import { ChatCipher, E2E_KIND, fromBase64Url, KEY_KIND, toBase64Url } from '../src/e2e.js';
import {
  axeViolations,
  launchBrowser,
  matchedPages,
  openPage,
  send,
  type TestPage,
  waitForStatus,
} from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';
import { TcpProxy } from './fixtures/tcp-proxy.js';
import { TestClient } from './fixtures/ws-client.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

/** Serious and critical axe violations in the page as it is, in the light and in the dark scheme. */
async function inBothSchemes(p: TestPage): Promise<{ light: string[]; dark: string[] }> {
  await p.page.emulateMedia({ colorScheme: 'dark' });
  const dark = await axeViolations(p.page);
  await p.page.emulateMedia({ colorScheme: 'light' });
  return { light: await axeViolations(p.page), dark };
}

t.test('no serious or critical axe violations in any state, light or dark', async (t) => {
  const srv = await startTestServer();
  const proxy = await TcpProxy.start(srv.server.port);
  t.teardown(() => {
    proxy.close();
    srv.close();
  });
  const a = await openPage(browser, `${proxy.http}/`);
  await waitForStatus(a.page, 'Connected');
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: home');

  await a.page.evaluate(`location.hash = '#invite=ZZZZZZZZZZ'`);
  await a.page.locator('#home-note', { hasText: 'no longer works' }).waitFor();
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: home with a note');

  await a.page.locator('#start').click();
  await waitForStatus(a.page, 'Looking');
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: looking');
  await a.page.locator('#cancel').click();
  await waitForStatus(a.page, 'Connected');

  await a.page.locator('#invite').click();
  await waitForStatus(a.page, 'Waiting for your friend');
  const link = await a.page.locator('#invite-link').inputValue();
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: inviting, with the link');

  // A raw peer joins through the invite and speaks the page's encryption, so it can also send what cannot be shown.
  const [peer, welcome] = await TestClient.hello(srv.url);
  peer.send({ type: 'join', code: link.split('#invite=')[1] ?? '' });
  const matched = await peer.next('matched');
  const cipher = await ChatCipher.create(welcome.limits.maxMessageBytes);
  t.ok(await cipher.accept((await peer.next('msg')).body, matched.chat));
  peer.send({ type: 'msg', id: 'k', body: cipher.offer(), kind: KEY_KIND });
  await waitForStatus(a.page, 'end-to-end encrypted');
  await send(a.page, 'first from the page');
  await send(a.page, 'second from the page');
  for (let i = 1; i <= 12; i++)
    peer.send({ type: 'msg', id: `m${i}`, body: await cipher.seal(`hello from your friend ${i}`), kind: E2E_KIND });
  const altered = fromBase64Url(await cipher.seal('will be altered'));
  if (!altered) throw new Error('bad ciphertext');
  altered[20] = (altered[20] ?? 0) ^ 0x01;
  peer.send({ type: 'msg', id: 'bad', body: toBase64Url(altered), kind: E2E_KIND });
  peer.send({ type: 'msg', id: 'last', body: await cipher.seal('after the altered one'), kind: E2E_KIND });
  await a.page.locator('#log li[data-from="them"]', { hasText: 'after the altered one' }).waitFor();
  t.equal(await a.page.locator('#log li.bad').count(), 1, 'a message that could not be shown is in the log');
  t.ok(await a.page.locator('#log .notice', { hasText: 'went missing' }).count(), 'and a notice about it');
  t.ok(
    await a.page.evaluate(
      '(() => { const log = document.getElementById("log"); return log.scrollHeight > log.clientHeight; })()',
    ),
    'the log is long enough to scroll',
  );
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: chatting, messages both sides, notices, one not shown');

  // Who said what, as a screen reader reads it.
  const tree = await a.page.locator('#log').ariaSnapshot();
  t.match(tree, /listitem: "?You: first from the page/, 'my message says it is mine');
  t.match(tree, /listitem: "?Your friend: hello from your friend 1\b/, "the friend's message says it is theirs");
  t.match(tree, /listitem: "?Your friend: A message could not be shown/, 'so does the one that could not be shown');
  t.match(tree, /listitem: You are chatting with your friend/, 'a notice is nobody’s message');

  peer.close();
  await waitForStatus(a.page, 'Your friend lost their connection');
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: partner away');

  proxy.refuse(true);
  proxy.cut();
  await waitForStatus(a.page, 'Reconnecting');
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: reconnecting');

  await a.context.setOffline(true);
  await waitForStatus(a.page, 'Offline');
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: offline');
  await a.context.setOffline(false);
  proxy.refuse(false);
  await waitForStatus(a.page, 'lost their connection', 20_000);

  await a.page.locator('#leave').click();
  await waitForStatus(a.page, 'Chat over');
  t.same(await inBothSchemes(a), { light: [], dark: [] }, 'axe: chat over');
  t.same(
    a.problems.filter((p) => !p.includes('WebSocket')),
    [],
  );
});

t.test('in a random chat, messages say "You" and "Stranger" to a screen reader', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await send(a.page, 'hello there');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'hello there' }).waitFor();
  t.match(await a.page.locator('#log').ariaSnapshot(), /listitem: "?You: hello there/);
  t.match(await b.page.locator('#log').ariaSnapshot(), /listitem: "?Stranger: hello there/);
  t.equal(await b.page.locator('#log').getAttribute('role'), 'log', 'the log is announced (role=log)');
  const items = await b.page.locator('#log li').count();
  t.ok(items > 0);
  t.equal(await b.page.locator('#log ol > li').count(), items, 'every message is an item of a list inside the log');
});
