/**
 * The details that make the page feel finished: bubbles fit their text, the
 * message box grows with the draft, focus follows the screen, Enter works in
 * the interests field, the invite's "Copied" is for that invite only, Next
 * asks before it acts and does not look like Send, and a finished chat shows
 * no dead buttons.
 */
import t from 'tap';
import { launchBrowser, matchedPages, openPage, send, waitForStatus } from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

const activeId = (p: { page: import('playwright-core').Page }) => p.page.evaluate('document.activeElement.id');
const background = (p: { page: import('playwright-core').Page }, id: string) =>
  p.page.evaluate(`getComputedStyle(document.getElementById(${JSON.stringify(id)})).backgroundColor`);

interface Box {
  left: number;
  right: number;
  width: number;
}

t.test('bubbles fit their text on both sides', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await send(b.page, 'hi');
  await a.page.locator('#log li[data-from="them"]').waitFor();
  await send(a.page, 'yo');
  const boxes = (await a.page.evaluate(`(() => {
    const box = (selector) => {
      const bubble = document.querySelector(selector);
      const list = bubble.closest('ol');
      const l = list.getBoundingClientRect();
      const style = getComputedStyle(list);
      const r = bubble.getBoundingClientRect();
      const left = l.left + parseFloat(style.paddingLeft);
      const right = l.right - parseFloat(style.paddingRight);
      return { left: r.left - left, right: right - r.right, width: r.width };
    };
    return { theirs: box('#log li[data-from="them"] .text'), mine: box('#log li[data-from="me"] .text') };
  })()`)) as { theirs: Box; mine: Box };
  t.ok(boxes.theirs.width < 80, `an incoming "hi" is a small bubble (${boxes.theirs.width} px)`);
  t.ok(boxes.mine.width < 80, `so is an own "yo" (${boxes.mine.width} px)`);
  t.ok(boxes.theirs.left < 1, 'incoming on the left');
  t.ok(boxes.mine.right < 1, 'own on the right');
});

t.test('the message box grows with the draft, up to a limit, and shrinks after sending', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a] = await matchedPages(browser, `${srv.http}/`);
  const measure = () =>
    a.page.evaluate(`(() => {
      const box = document.getElementById('text');
      return { client: box.clientHeight, scroll: box.scrollHeight, line: parseFloat(getComputedStyle(box).lineHeight) };
    })()`) as Promise<{ client: number; scroll: number; line: number }>;
  const empty = await measure();
  await a.page.locator('#text').fill('one\ntwo\nthree\nfour');
  const four = await measure();
  t.ok(four.scroll <= four.client, `all four lines show (${four.client} px for ${four.scroll} px of text)`);
  t.ok(four.client >= 4 * four.line, 'the box is four lines tall');
  await a.page.locator('#text').fill(Array.from({ length: 20 }, (_, i) => `line ${i}`).join('\n'));
  const many = await measure();
  t.ok(many.client < 8 * many.line, 'a long draft scrolls inside a box of bounded height');
  await a.page.locator('#text').press('Enter');
  await a.page.locator('#log li[data-from="me"]').waitFor();
  t.equal((await measure()).client, empty.client, 'back to one line after sending');
});

t.test('focus lands on the new screen, never on the page body', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await openPage(browser, `${srv.http}/`);
  await waitForStatus(a.page, 'Connected');
  await a.page.locator('#start').focus();
  await a.page.keyboard.press('Enter');
  await waitForStatus(a.page, 'Looking');
  t.equal(await activeId(a), 'waiting-title', 'after Start, focus is on what the page now says');
  await a.page.keyboard.press('Tab');
  t.equal(await activeId(a), 'cancel', 'and the next Tab reaches Cancel');
  await a.page.keyboard.press('Enter');
  await waitForStatus(a.page, 'Connected');
  t.equal(await activeId(a), 'start', 'after Cancel, focus is on Start');
  await a.page.locator('#invite').focus();
  await a.page.keyboard.press('Enter');
  await waitForStatus(a.page, 'Waiting for your friend');
  t.equal(await activeId(a), 'waiting-title', 'after Invite, too');
});

t.test('Enter in the interests field starts looking', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await openPage(browser, `${srv.http}/`);
  await waitForStatus(a.page, 'Connected');
  await a.page.locator('#interests').fill('chess, go');
  await a.page.locator('#interests').press('Enter');
  await waitForStatus(a.page, 'Looking', 2000);
  t.equal(await a.page.locator('#waiting-title').innerText(), 'Looking for someone into chess, go…');
});

t.test('"Copied" belongs to the invite that was copied, not to the next one', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await openPage(browser, `${srv.http}/`, {
    prepare: (page) => page.context().grantPermissions(['clipboard-read', 'clipboard-write'], { origin: srv.http }),
  });
  await waitForStatus(a.page, 'Connected');
  await a.page.locator('#invite').click();
  await waitForStatus(a.page, 'Waiting for your friend');
  const first = await a.page.locator('#invite-link').inputValue();
  await a.page.locator('#copy').click();
  await a.page.locator('#copy', { hasText: 'Copied' }).waitFor();
  t.equal(await a.page.evaluate('navigator.clipboard.readText()'), first, 'the link is on the clipboard');
  await a.page.locator('#cancel').click();
  await a.page.locator('#invite').click();
  await waitForStatus(a.page, 'Waiting for your friend');
  t.not(await a.page.locator('#invite-link').inputValue(), first, 'a new link');
  t.equal(await a.page.locator('#copy').innerText(), 'Copy', 'not copied yet');
});

t.test('Next asks once before it acts, and neither it nor Block or Report looks like Send', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  const sendButton = await background(a, 'send');
  for (const id of ['next', 'leave', 'block', 'report'])
    t.not(await background(a, id), sendButton, `${id} is not styled like Send`);

  await a.page.clock.install();
  const next = a.page.locator('#next');
  await next.click();
  t.equal(await next.innerText(), 'Sure? Next', 'the first press only asks');
  t.match(await a.page.locator('#announce').innerText(), /Press Next again/, 'and says so to screen readers');
  t.notOk(
    a.sent.some((f) => f.includes('"leave"')),
    'nothing was sent',
  );
  await a.page.clock.fastForward(4_100);
  t.equal(await next.innerText(), 'Next', 'unconfirmed, it goes back after a few seconds');
  t.match(await a.page.locator('#status').innerText(), /end-to-end encrypted/, 'still chatting');

  // With the keyboard: Enter arms, Enter again leaves and looks for someone new.
  await next.focus();
  await a.page.keyboard.press('Enter');
  t.equal(await next.innerText(), 'Sure? Next');
  await a.page.keyboard.press('Enter');
  await waitForStatus(a.page, 'Looking');
  await b.page.locator('#log .notice', { hasText: 'The stranger left the chat.' }).waitFor();
  t.equal(await activeId(a), 'waiting-title', 'focus follows to the waiting screen');
});

t.test('once a chat is over its buttons are gone, not just disabled', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await b.page.locator('#leave').click();
  await waitForStatus(a.page, 'Chat over');
  for (const p of [a, b]) {
    for (const id of ['next', 'leave', 'block', 'report'])
      t.ok(await p.page.locator(`#${id}`).isHidden(), `${id} is gone`);
    t.ok(await p.page.locator('#again').isVisible(), 'New chat is offered instead');
  }
});
