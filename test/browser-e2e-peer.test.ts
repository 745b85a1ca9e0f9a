/**
 * A raw WebSocket peer (no browser) chats with the page through an invite and
 * speaks the page's E2E scheme itself (src/e2e.ts): it proves the page puts
 * only ciphertext on the wire, that its safety code is what both keys give,
 * and that the page refuses replayed or altered messages and flags plaintext.
 */
import t from 'tap';
import { ChatCipher, E2E_KIND, fromBase64Url, KEY_KIND, toBase64Url } from '../src/e2e.js';
import { invitingPage, launchBrowser, messages, send, waitForStatus } from './fixtures/browser.js';
import { startTestServer } from './fixtures/server.js';
import { TestClient } from './fixtures/ws-client.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

t.test('a raw peer sees only ciphertext and derives the same safety code', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const a = await invitingPage(browser, `${srv.http}/`);
  const code = a.link.split('#invite=')[1] ?? '';

  const [peer, welcome] = await TestClient.hello(srv.url);
  peer.send({ type: 'join', code });
  const matched = await peer.next('matched');
  const pageKey = await peer.next('msg');
  t.equal(pageKey.kind, KEY_KIND, "the page's first message is its public key");
  const cipher = await ChatCipher.create(welcome.limits.maxMessageBytes);
  t.ok(await cipher.accept(pageKey.body, matched.chat), 'the key is a valid P-256 offer');
  peer.send({ type: 'msg', id: 'k', body: cipher.offer(), kind: KEY_KIND });
  await waitForStatus(a.page, 'end-to-end encrypted');
  t.equal(await a.page.locator('#safety-code').innerText(), cipher.safetyCode, 'same safety code on both ends');

  await send(a.page, 'the secret is 4242');
  const fromPage = await peer.next('msg');
  t.equal(fromPage.kind, E2E_KIND);
  t.notMatch(fromPage.body, /secret|4242/, 'the relay carried no plaintext');
  t.same(await cipher.open(fromPage.body), { ok: true, text: 'the secret is 4242', counter: 1, missed: 0 });

  const sealed = await cipher.seal('hello from a raw peer');
  peer.send({ type: 'msg', id: 'm1', body: sealed, kind: E2E_KIND });
  await a.page.locator('#log li[data-from="them"]', { hasText: 'hello from a raw peer' }).waitFor();

  // A replay of the same ciphertext under a new id (what a malicious relay could do).
  peer.send({ type: 'msg', id: 'm2', body: sealed, kind: E2E_KIND });
  await a.page.locator('#log li.bad', { hasText: 'replay' }).waitFor();
  // A flipped bit in the ciphertext.
  const bytes = fromBase64Url(await cipher.seal('will be altered'));
  if (!bytes) throw new Error('bad ciphertext');
  bytes[20] = (bytes[20] ?? 0) ^ 0x01;
  peer.send({ type: 'msg', id: 'm3', body: toBase64Url(bytes), kind: E2E_KIND });
  await a.page.locator('#log li.bad', { hasText: 'altered' }).waitFor();
  // A message skipped on the way is noticed from the counter.
  await cipher.seal('never sent');
  peer.send({ type: 'msg', id: 'm4', body: await cipher.seal('after a gap'), kind: E2E_KIND });
  await a.page.locator('#log li[data-from="them"]', { hasText: 'after a gap' }).waitFor();
  t.equal(
    await a.page.locator('#log .notice').filter({ hasText: 'went missing' }).innerText(),
    '2 messages from your friend went missing.',
    'the altered one and the skipped one',
  );
  // Plaintext is shown, but flagged.
  peer.send({ type: 'msg', id: 'm5', body: 'plain <b>text</b>', kind: 'text' });
  const plain = a.page.locator('#log li[data-from="them"]', { hasText: 'plain <b>text</b>' });
  await plain.waitFor();
  t.match(await plain.locator('.meta').innerText(), /not encrypted/);
  t.same(await messages(a.page, 'them'), [
    'hello from a raw peer',
    'A message could not be shown.',
    'A message could not be shown.',
    'after a gap',
    'plain <b>text</b>',
  ]);
  t.same(a.problems, []);
});
