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

t.test('the web app manifest and the icons are served with their types, under the same headers', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const html = await (await fetch(`${srv.http}/`)).text();
  t.match(html, /<link rel="manifest" href="\/manifest.webmanifest">/, 'the page links its manifest');
  t.match(html, /<link rel="icon" href="\/icon.svg" type="image\/svg\+xml">/, 'and its favicon');
  t.match(html, /<meta name="theme-color" content="#[0-9a-f]{6}"/, 'and has a theme colour');
  const res = await fetch(`${srv.http}/manifest.webmanifest`);
  t.equal(res.status, 200);
  t.equal(res.headers.get('content-type'), 'application/manifest+json');
  t.equal(res.headers.get('content-security-policy'), CONTENT_SECURITY_POLICY);
  t.equal(res.headers.get('x-content-type-options'), 'nosniff');
  const manifest = (await res.json()) as {
    name: string;
    start_url: string;
    display: string;
    theme_color: string;
    icons: { src: string; sizes: string; type: string; purpose: string }[];
  };
  t.equal(manifest.name, 'Anon Chat');
  t.equal(manifest.start_url, '/');
  t.equal(manifest.display, 'standalone');
  t.match(manifest.theme_color, /^#[0-9a-f]{6}$/);
  for (const size of ['192x192', '512x512'])
    t.ok(
      manifest.icons.some((i) => i.sizes === size && i.type === 'image/png' && i.purpose === 'any'),
      `a ${size} PNG icon`,
    );
  t.ok(
    manifest.icons.some((i) => i.purpose === 'maskable'),
    'a maskable icon',
  );
  for (const icon of manifest.icons) {
    t.notMatch(icon.src, /^https?:/, `${icon.src} is on this origin`);
    const got = await fetch(`${srv.http}${icon.src}`);
    t.equal(got.status, 200, icon.src);
    t.equal(got.headers.get('content-type'), icon.type, `${icon.src} is ${icon.type}`);
    const body = Buffer.from(await got.arrayBuffer());
    if (icon.type === 'image/png') {
      t.equal(body.subarray(1, 4).toString('latin1'), 'PNG', `${icon.src} is a PNG`);
      const [w, h] = icon.sizes.split('x').map(Number);
      t.same([body.readUInt32BE(16), body.readUInt32BE(20)], [w, h], `${icon.src} is ${icon.sizes}`);
    } else t.match(body.toString('utf8'), /^<svg /, `${icon.src} is an SVG`);
  }
});
