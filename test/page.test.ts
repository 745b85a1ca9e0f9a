/** The page as served over HTTP: headers, compression, caching and weight budget. */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import t from 'tap';
import { CONTENT_SECURITY_POLICY } from '../src/page-routes.js';
import { startTestServer } from './fixtures/server.js';

t.test('/ serves the chat page with a strict CSP and no referrer', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const res = await fetch(`${srv.http}/`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /^text\/html/);
  t.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  t.match(CONTENT_SECURITY_POLICY, /default-src 'none'/);
  t.notMatch(CONTENT_SECURITY_POLICY, /unsafe-inline|unsafe-eval/, 'no inline script or style is allowed');
  t.equal(res.headers.get('referrer-policy'), 'no-referrer');
  t.equal(res.headers.get('x-content-type-options'), 'nosniff');
  const html = await res.text();
  t.match(html, /<script type="module" src="\/app.js"><\/script>/);
  t.notMatch(html, /<script>|\sstyle=|\son[a-z]+=/, 'no inline script, style or handler');
  t.notMatch(html, /https?:\/\//, 'nothing loaded from another origin');

  for (const [path, type] of [
    ['/app.js', /^text\/javascript/],
    ['/style.css', /^text\/css/],
  ] as const) {
    const asset = await fetch(`${srv.http}${path}`);
    t.equal(asset.status, 200, path);
    t.match(asset.headers.get('content-type'), type);
    t.equal(asset.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  }
  t.equal((await fetch(`${srv.http}/index.htm`)).status, 404, 'anything else is still a 404');
});

t.test('gzip when asked, and 304 when the ETag matches', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const plain = await fetch(`${srv.http}/app.js`, { headers: { 'accept-encoding': 'identity' } });
  const body = await plain.text();
  t.equal(plain.headers.get('content-encoding'), null);
  const zipped = await fetch(`${srv.http}/app.js`, { headers: { 'accept-encoding': 'gzip' } });
  t.equal(zipped.headers.get('content-encoding'), 'gzip');
  t.equal(await zipped.text(), body, 'the same file, compressed');
  const etag = plain.headers.get('etag');
  t.ok(etag);
  const again = await fetch(`${srv.http}/app.js`, { headers: { 'if-none-match': etag ?? '' } });
  t.equal(again.status, 304);
  t.equal((await again.text()).length, 0);
});

t.test('the page weight script prints the figure and the page is under 80 KB', async (t) => {
  const { stdout } = await promisify(execFile)(process.execPath, ['scripts/page-weight.mjs']);
  const m = /page weight: (\d+) B uncompressed/.exec(stdout);
  t.ok(m, stdout);
  t.ok(Number(m?.[1]) < 80 * 1024, `${m?.[1]} B`);
});
