/**
 * Invite chats: the page calls the partner "your friend" in every text.
 */
import t from 'tap';
import { invitingPage, launchBrowser, openPage, waitForStatus } from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

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
