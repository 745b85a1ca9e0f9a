/**
 * The chat page in a real Chromium against a real relay: matching, messages
 * both ways with receipts, typing, what is on the wire, safe rendering, and
 * the Next, invite, block and report flows.
 */
import t from 'tap';
import {
  invitingPage,
  launchBrowser,
  matchedPages,
  messages,
  openPage,
  send,
  waitForStatus,
} from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

t.test('two strangers chat both ways with receipts, typing, and only ciphertext on the wire', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);

  const codeA = await a.page.locator('#safety-code').innerText();
  t.match(codeA, /^\d{4} \d{4} \d{4}$/, 'a safety code is shown');
  t.equal(await b.page.locator('#safety-code').innerText(), codeA, 'both pages show the same safety code');

  // Typing shows on the other side, and goes away when the message arrives.
  await a.page.locator('#text').pressSequentially('hel');
  await b.page.locator('#typing').waitFor({ state: 'visible' });
  await a.page.locator('#text').fill('');
  await send(a.page, 'hello from a, a secret only b may read');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'hello from a' }).waitFor();
  t.ok(await b.page.locator('#typing').isHidden(), 'typing indicator hides when the message arrives');

  // Receipts: b's page is visible, so a's message goes all the way to "read".
  const mine = a.page.locator('#log li[data-from="me"]').last();
  await mine.and(a.page.locator('[data-status="read"]')).waitFor();
  t.match(await mine.locator('.meta').innerText(), /Read$/);

  await send(b.page, 'and hello back from b');
  await send(b.page, 'x'.repeat(200));
  await a.page.locator('#log li[data-from="them"]', { hasText: 'hello back' }).waitFor();
  await a.page.locator('#log li[data-from="them"]').nth(1).waitFor();
  t.same(await messages(a.page, 'them'), ['and hello back from b', 'x'.repeat(200)]);
  t.same(await messages(b.page, 'me'), ['and hello back from b', 'x'.repeat(200)]);

  // Safe rendering: markup arrives as text, nothing runs, no element is created.
  const evil = '<img src=x onerror="alert(1)"><script>alert(2)</script><b>bold</b>';
  await send(a.page, evil);
  const shown = b.page.locator('#log li[data-from="them"] .text').last();
  await shown.filter({ hasText: '<img' }).waitFor();
  t.equal(await shown.innerText(), evil, 'shown exactly as typed');
  t.equal(await b.page.locator('#log img, #log script, #log b').count(), 0, 'no element was created');

  // The wire: no plaintext anywhere, message bodies are e2e ciphertext of bucket sizes.
  await a.page.waitForTimeout(200);
  const wire = [...a.wire, ...b.wire];
  t.ok(wire.length > 0, 'frames were captured');
  for (const secret of ['hello from a', 'hello back', 'xxxxxxxxxx', 'onerror', 'bold'])
    t.notOk(
      wire.some((f) => f.includes(secret)),
      `"${secret}" never appears on the wire`,
    );
  const bodies = wire
    .map((f) => JSON.parse(f) as { type: string; kind?: string; body?: string })
    .filter((f) => f.type === 'msg' && f.kind !== 'key');
  t.ok(bodies.length >= 8, 'both directions were captured');
  t.ok(
    bodies.every((f) => f.kind === 'e2e'),
    'every chat message is e2e',
  );
  t.equal(new Set(bodies.map((f) => f.body?.length)).size, 1, 'short and 200-byte messages have the same size');

  for (const p of [a, b]) t.same(p.problems, [], 'no console errors, page errors or CSP violations');
});

t.test('Next leaves and finds someone new; the one left behind is told', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  // Last words right before leaving still arrive, before the "left" notice.
  await send(a.page, 'last words');
  // The first press asks ("Sure? Next"), the second acts.
  await a.page.locator('#next').click();
  await a.page.locator('#next', { hasText: 'Sure?' }).waitFor();
  await a.page.locator('#next').click();
  await waitForStatus(a.page, 'Looking');
  await b.page.locator('#log .notice', { hasText: 'The stranger left the chat.' }).waitFor();
  t.same(await messages(b.page, 'them'), ['last words'], 'the message sent just before Next is shown');
  t.match(
    await b.page.locator('#log li').last().innerText(),
    /^Stranger has disconnected\s+The stranger left the chat\.$/,
    'and the notice comes after it, headed like Omegle’s',
  );
  await waitForStatus(b.page, 'Chat over');
  t.ok(await b.page.locator('#again').isVisible(), 'b is offered a new chat');
  t.ok(await b.page.locator('#composer').isHidden(), 'and can no longer type into the old one');

  const c = await openPage(browser, `${srv.http}/`);
  await waitForStatus(c.page, 'Connected');
  await c.page.locator('#start').click();
  await waitForStatus(a.page, 'end-to-end encrypted');
  await waitForStatus(c.page, 'end-to-end encrypted');
  await send(c.page, 'hi a, I am c');
  await a.page.locator('#log li[data-from="them"]', { hasText: 'I am c' }).waitFor();
  t.same(await messages(a.page, 'them'), ['hi a, I am c'], 'the new chat starts with an empty log');
  for (const p of [a, b, c]) t.same(p.problems, []);
});

t.test('invite a friend: the link pairs exactly those two, once', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await invitingPage(browser, `${srv.http}/`);
  const link = a.link;
  t.match(link, new RegExp(`^${srv.http}/#invite=[0-9A-Z]{10}$`));

  // A stranger pressing Start is not paired with the inviter.
  const stranger = await openPage(browser, `${srv.http}/`);
  await waitForStatus(stranger.page, 'Connected');
  await stranger.page.locator('#start').click();
  await waitForStatus(stranger.page, 'Looking');

  const friend = await openPage(browser, link);
  await waitForStatus(friend.page, 'end-to-end encrypted');
  await waitForStatus(a.page, 'end-to-end encrypted');
  t.equal(await friend.page.evaluate('location.hash'), '', 'the code is taken out of the address bar');
  t.equal(await friend.page.locator('#safety-code').innerText(), await a.page.locator('#safety-code').innerText());
  await send(friend.page, 'it is me, your friend');
  await a.page.locator('#log li[data-from="them"]', { hasText: 'your friend' }).waitFor();
  t.match(await a.page.locator('#status').innerText(), /encrypted/);
  t.match(await stranger.page.locator('#status').innerText(), /Looking/, 'the stranger is still looking');

  const late = await openPage(browser, link);
  const note = late.page.locator('#home-note');
  await note.filter({ hasText: 'no longer works' }).waitFor();
  t.ok(await late.page.locator('#start').isVisible(), 'a used link offers a random chat instead');
  // A link pasted into an open page changes only the fragment: the page follows it without a reload.
  const host = await invitingPage(browser, `${srv.http}/`);
  const link2 = host.link;
  await waitForStatus(late.page, 'Connected');
  await late.page.goto(link2);
  await waitForStatus(late.page, 'end-to-end encrypted');
  await waitForStatus(host.page, 'end-to-end encrypted');
  for (const p of [a, friend, stranger, host, late]) t.same(p.problems, []);
});

t.test('block and report end the chat in one click and never rematch the pair', async (t) => {
  const srv = await startTestServer({ rematchCooldownMs: 0 });
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  await a.page.locator('#block').click();
  await a.page.locator('#log .notice', { hasText: 'You blocked this stranger' }).waitFor();
  await b.page.locator('#log .notice', { hasText: 'The stranger left the chat.' }).waitFor();
  await a.page.locator('#again').click();
  await b.page.locator('#again').click();
  await waitForStatus(a.page, 'Looking');
  await waitForStatus(b.page, 'Looking');
  await a.page.waitForTimeout(300);
  t.match(await a.page.locator('#status').innerText(), /Looking/, 'a and b are not paired again');

  const c = await openPage(browser, `${srv.http}/`);
  await waitForStatus(c.page, 'Connected');
  await c.page.locator('#start').click();
  await waitForStatus(c.page, 'end-to-end encrypted');
  const partner = (await a.page.locator('#status').innerText()).includes('encrypted') ? a : b;
  await partner.page.locator('#report').click();
  // Report asks first (test/browser-product.test.ts checks that cancelling does nothing).
  await partner.page.locator('#report-confirm').click();
  await partner.page.locator('#log .notice', { hasText: 'You reported this stranger' }).waitFor();
  await c.page.locator('#log .notice', { hasText: 'The stranger left the chat.' }).waitFor();
  for (const p of [a, b, c]) t.same(p.problems, []);
});
