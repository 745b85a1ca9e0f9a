/**
 * Invite chats: the page calls the partner "your friend" in every text, and a
 * page that follows an invite link while it is already waiting (looking,
 * inviting or still joining another invite) cancels that wait first, so one
 * session never holds two waits, and so never two chats.
 */
import t from 'tap';
import {
  invitingPage,
  launchBrowser,
  openPage,
  send,
  type TestPage,
  until,
  waitForStatus,
} from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

const follow = (p: TestPage, link: string) => p.page.evaluate(`location.hash = ${JSON.stringify(new URL(link).hash)}`);

t.test('an invite chat calls the partner "your friend" everywhere', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const host = await invitingPage(browser, `${srv.http}/`);
  const friend = await openPage(browser, host.link);
  for (const p of [host, friend]) {
    await waitForStatus(p.page, 'Chatting with your friend, end-to-end encrypted');
    t.equal(await p.page.locator('#log .notice').first().innerText(), 'You are chatting with your friend. Say hi!');
  }
  await friend.page.locator('#text').pressSequentially('hey');
  await host.page.locator('#typing', { hasText: 'Your friend is typing…' }).waitFor();
  await friend.page.locator('#text').press('Enter');
  await host.page.locator('#log li[data-from="them"]', { hasText: 'hey' }).waitFor();
  await friend.page.locator('#leave').click();
  await host.page.locator('#log .notice', { hasText: 'Your friend left the chat.' }).waitFor();
  t.equal(await host.page.locator('#log', { hasText: /stranger/i }).count(), 0, 'nobody is called a stranger');
  t.same([...host.problems, ...friend.problems], []);
});

const joinsAndCancels = (p: TestPage) =>
  p.sent
    .map((f) => JSON.parse(f) as { type: string; code?: string })
    .filter((f) => f.type === 'join' || f.type === 'cancel' || f.type === 'find')
    .map((f) => (f.code ? `${f.type} ${f.code}` : f.type));

const codeOf = (link: string) => new URL(link).hash.slice('#invite='.length);

t.test('following an invite link while looking or inviting cancels that wait first', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);

  // Looking for a random partner, then a friend's link arrives.
  const p = await openPage(browser, `${srv.http}/`);
  await waitForStatus(p.page, 'Connected');
  await p.page.locator('#start').click();
  await waitForStatus(p.page, 'Looking');
  const host1 = await invitingPage(browser, `${srv.http}/`);
  await follow(p, host1.link);
  await waitForStatus(p.page, 'end-to-end encrypted');
  t.same(joinsAndCancels(p), ['find', 'cancel', `join ${codeOf(host1.link)}`]);

  // Waiting with an own invite, then another friend's link arrives: the own code is given up.
  const q = await invitingPage(browser, `${srv.http}/`);
  const host2 = await invitingPage(browser, `${srv.http}/`);
  await follow(q, host2.link);
  await waitForStatus(q.page, 'end-to-end encrypted');
  t.same(joinsAndCancels(q), [`join ${codeOf(q.link)}`, 'cancel', `join ${codeOf(host2.link)}`]);
  const late = await openPage(browser, q.link);
  await waitForStatus(late.page, 'Waiting for your friend');
  t.pass("whoever opens q's old link waits; they are not put into q's chat");
});

t.test('following an invite link while still joining another one cancels that join first', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  // The relay's answers to p are held back, so p stays in "joining" for as long as the test needs.
  let hold = false;
  const held: (string | Buffer)[] = [];
  let release = () => {};
  const p = await openPage(browser, `${srv.http}/`, {
    prepare: (page) =>
      page.routeWebSocket(/\/ws(\?|$)/, (ws) => {
        const server = ws.connectToServer();
        server.onMessage((m) => (hold ? held.push(m) : ws.send(m)));
        release = () => {
          hold = false;
          for (const m of held.splice(0)) ws.send(m);
        };
      }),
  });
  await waitForStatus(p.page, 'Connected');
  // An invite nobody waits on yet: p would be its first holder.
  const res = await fetch(`${srv.http}/api/v1/invites`, { method: 'POST' });
  const { code: first } = (await res.json()) as { code: string };
  const host = await invitingPage(browser, `${srv.http}/`);

  hold = true;
  await p.page.evaluate(`location.hash = '#invite=${first}'`);
  await waitForStatus(p.page, 'Joining your friend');
  await until(() => joinsAndCancels(p).length === 1, 'p sent its first join');
  await follow(p, host.link);
  await until(() => joinsAndCancels(p).length >= 2, 'p followed the second link');
  release();
  await waitForStatus(p.page, 'end-to-end encrypted');
  await waitForStatus(host.page, 'end-to-end encrypted');
  t.same(joinsAndCancels(p), [`join ${first}`, 'cancel', `join ${codeOf(host.link)}`], 'cancel before the second join');

  // The first code is free again: whoever opens it waits for a friend instead of landing in p's chat.
  const late = await openPage(browser, `${srv.http}/#invite=${first}`);
  await waitForStatus(late.page, 'Waiting for your friend');
  await send(host.page, 'still just us two');
  await p.page.locator('#log li[data-from="them"]', { hasText: 'still just us two' }).waitFor();
  t.equal(await p.page.locator('#log .notice', { hasText: 'left' }).count(), 0, "p's chat goes on");
  t.match(await late.page.locator('#status').innerText(), /Waiting for your friend/);
});
