/**
 * Pictures and files between two real Chromium pages through real relays (issue 14): a picture's metadata is
 * stripped and its preview shows; a 5 MB file arrives with the same SHA-256; only ciphertext crosses the wire;
 * cancel on either side; a network cut in the middle; an oversize file; active types are never rendered; and the
 * same across two instances on Redis.
 */
import { createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { Page } from 'playwright-core';
import t from 'tap';
import { launchBrowser, matchedPages, type TestPage } from './fixtures/browser.js';
import { startTestCluster } from './fixtures/cluster.js';
import { startTestServer } from './fixtures/server.js';

const browser = await launchBrowser();
t.teardown(() => browser.close());

const MB = 1024 * 1024;
/** `npm run screenshots` sets it (docs/screenshots); a plain test run writes no file. */
const SHOTS = process.env.SCREENSHOT_DIR;
const sha = (b: Uint8Array) => createHash('sha256').update(b).digest('hex');

/** An EXIF APP1 segment with a camera name (a canary) and a GPS latitude, big-endian TIFF. */
function exifSegment(canary: string): Buffer {
  const make = Buffer.from(`${canary}\0`, 'ascii');
  const tiff = Buffer.alloc(88 + 24 + make.length);
  tiff.write('MM', 0, 'ascii');
  tiff.writeUInt16BE(42, 2);
  tiff.writeUInt32BE(8, 4);
  const gpsAt = 8 + 2 + 2 * 12 + 4;
  const ratAt = gpsAt + 2 + 2 * 12 + 4;
  const makeAt = ratAt + 24;
  const entry = (at: number, tag: number, type: number, count: number, value: number) => {
    tiff.writeUInt16BE(tag, at);
    tiff.writeUInt16BE(type, at + 2);
    tiff.writeUInt32BE(count, at + 4);
    tiff.writeUInt32BE(value, at + 8);
  };
  tiff.writeUInt16BE(2, 8);
  entry(10, 0x010f, 2, make.length, makeAt); // Make
  entry(22, 0x8825, 4, 1, gpsAt); // GPSInfo
  tiff.writeUInt16BE(2, gpsAt);
  entry(gpsAt + 2, 0x0001, 2, 2, 0x4e000000); // GPSLatitudeRef "N"
  entry(gpsAt + 14, 0x0002, 5, 3, ratAt); // GPSLatitude
  for (const [i, v] of [48, 51, 24].entries()) {
    tiff.writeUInt32BE(v, ratAt + i * 8);
    tiff.writeUInt32BE(1, ratAt + i * 8 + 4);
  }
  make.copy(tiff, makeAt);
  const body = Buffer.concat([Buffer.from('Exif\0\0', 'ascii'), tiff]);
  const head = Buffer.alloc(4);
  head.writeUInt16BE(0xffe1, 0);
  head.writeUInt16BE(body.length + 2, 2);
  return Buffer.concat([head, body]);
}

/** A real JPEG drawn by Chromium, with an EXIF segment spliced in after its start marker. */
async function photoWithExif(page: Page, canary: string): Promise<Buffer> {
  const dataUrl = (await page.evaluate(`(() => {
    const c = document.createElement('canvas');
    c.width = 320; c.height = 200;
    const g = c.getContext('2d');
    g.fillStyle = '#2a7'; g.fillRect(0, 0, 320, 200);
    g.fillStyle = '#fd3'; g.fillRect(40, 40, 120, 80);
    return c.toDataURL('image/jpeg', 0.9);
  })()`)) as string;
  const jpeg = Buffer.from(dataUrl.split(',')[1] ?? '', 'base64');
  return Buffer.concat([jpeg.subarray(0, 2), exifSegment(canary), jpeg.subarray(2)]);
}

async function attach(p: TestPage, name: string, mimeType: string, buffer: Buffer, original = false): Promise<void> {
  await p.page.locator('#file-input').setInputFiles({ name, mimeType, buffer });
  await p.page.locator('#attach-preview').waitFor();
  if (original) await p.page.locator('#send-original').check();
  await p.page.locator('#attach-send').click();
}

const card = (p: TestPage, from: 'me' | 'them') => p.page.locator(`#log li.file[data-from="${from}"]`).last();

/** The bytes of the picture shown in the last card from `from`, read back from its blob: URL. */
async function shownPicture(p: TestPage, from: 'me' | 'them'): Promise<Buffer> {
  const img = card(p, from).locator('img.file-img');
  await img.waitFor();
  // The page may not fetch blob: URLs (its CSP's connect-src is 'self'); the blob is read from the record
  // keepBlobs made of every object URL the page created.
  const b64 = await img.evaluate(async (el: { src: string }) => {
    const blobs = (globalThis as unknown as { __blobs: Map<string, Blob> }).__blobs;
    const b = new Uint8Array(await (blobs.get(el.src) as Blob).arrayBuffer());
    let s = '';
    for (const x of b) s += String.fromCharCode(x);
    return btoa(s);
  });
  return Buffer.from(b64, 'base64');
}

/** Runs before the page's own script: remembers the Blob behind every object URL it makes. */
const keepBlobs = {
  prepare: async (page: Page): Promise<void> => {
    await page.addInitScript(() => {
      const blobs = new Map<string, Blob>();
      (globalThis as unknown as { __blobs: Map<string, Blob> }).__blobs = blobs;
      const make = URL.createObjectURL.bind(URL);
      URL.createObjectURL = (obj: Blob) => {
        const url = make(obj);
        blobs.set(url, obj);
        return url;
      };
    });
  },
};

async function download(p: TestPage): Promise<Buffer> {
  const button = card(p, 'them').locator('.file-download');
  await button.waitFor({ timeout: 60_000 });
  const [dl] = await Promise.all([p.page.waitForEvent('download'), button.click()]);
  return readFileSync((await dl.path()) as string);
}

/** Polls an asynchronous condition on the page every 50 ms. */
async function until(done: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await done())) {
    if (Date.now() > deadline) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 50));
  }
}

const close = async (pages: TestPage[]) => {
  for (const p of pages) await p.context.close();
};

t.test('a picture loses its EXIF (GPS, camera) on the way, its preview shows, and it shows inline', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`, `${srv.http}/`, keepBlobs);
  t.teardown(() => close([a, b]));
  const canary = `CANARYCAM-${randomBytes(4).toString('hex')}`;
  const photo = await photoWithExif(a.page, canary);
  t.ok(photo.includes(canary) && photo.includes('Exif'), 'the original carries EXIF with the canary');

  await a.page.locator('#file-input').setInputFiles({ name: 'beach.jpg', mimeType: 'image/jpeg', buffer: photo });
  const preview = a.page.locator('#attach-preview img');
  await preview.waitFor();
  await until(async () => (await preview.evaluate((el: { naturalWidth: number }) => el.naturalWidth)) === 320);
  t.pass('the preview shows the picture before it is sent');
  if (SHOTS) await a.page.screenshot({ path: `${SHOTS}/files-preview.png` });
  await a.page.locator('#attach-send').click();

  const got = await shownPicture(b, 'them');
  t.equal(
    await card(b, 'them')
      .locator('img.file-img')
      .evaluate((el: { naturalWidth: number }) => el.naturalWidth),
    320,
    'shown inline',
  );
  t.equal(got.subarray(0, 3).toString('hex'), 'ffd8ff', 'a JPEG');
  t.notOk(got.includes('Exif'), 'no EXIF segment left');
  t.notOk(got.includes(canary), 'no camera name');
  t.notOk(got.includes(Buffer.from([0x88, 0x25])) && got.includes('GPS'), 'no GPS block');
  t.match(await card(b, 'them').innerText(), /beach\.jpg/, 'named, with a .jpg extension');
  t.match(await card(a, 'me').locator('.meta').innerText(), /Sent/);
  const wire = [...a.wire, ...b.wire].join('\n');
  t.notOk(wire.includes('beach'), 'the name never crosses the wire');
  t.notOk(wire.includes(canary), 'nor the canary');
  t.notOk(wire.includes(Buffer.from(photo.subarray(0, 9)).toString('base64').slice(0, 12)), 'nor the JPEG/EXIF start');

  // "Send the original" keeps it byte for byte, metadata and all, when the person asks.
  await attach(a, 'beach-original.jpg', 'image/jpeg', photo, true);
  await b.page
    .locator('#log li.file[data-from="them"][data-state="complete"]', { hasText: 'beach-original' })
    .waitFor();
  t.equal(sha(await shownPicture(b, 'them')), sha(photo), 'the original, unchanged, when asked');
  t.same(a.problems, [], 'sender page ran clean (CSP included)');
  t.same(b.problems, [], 'receiver page ran clean (CSP included)');
  if (SHOTS) await b.page.screenshot({ path: `${SHOTS}/files-received.png` });
});

t.test('a 5 MB file arrives with the same SHA-256, only as ciphertext, and is saved only when asked', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  t.teardown(() => close([a, b]));
  let downloads = 0;
  b.page.on('download', () => downloads++);
  const file = randomBytes(5 * MB);
  Buffer.from('%PDF-1.7 secret-report').copy(file, 0);
  await attach(a, 'secret-report.pdf', 'application/pdf', file);
  await b.page.locator('#log li.file[data-from="them"][data-state="complete"]').waitFor({ timeout: 60_000 });
  t.equal(downloads, 0, 'nothing was downloaded by itself');
  t.equal(await card(b, 'them').locator('img, iframe, object, embed').count(), 0, 'nothing is rendered');
  t.match(await card(b, 'them').innerText(), /secret-report\.pdf[\s\S]*5\.0 MB · application\/pdf/);
  const saved = await download(b);
  t.equal(sha(saved), sha(file), 'same SHA-256');
  t.equal(downloads, 1);
  await card(a, 'me').locator('.meta', { hasText: 'Sent' }).waitFor();
  const wire = [...a.wire, ...b.wire].join('\n');
  for (const secret of ['secret-report', 'application/pdf', '%PDF', 'JVBERi0'])
    t.notOk(wire.includes(secret), `"${secret}" never crosses the wire`);
  const parts = b.wire.filter((f) => f.startsWith('{"type":"msg"') && f.includes('"kind":"file"')).length;
  t.ok(parts >= (5 * MB) / 47_104, `${parts} opaque parts`);
});

t.test('either side cancels a transfer; both see it stop', async (t) => {
  const srv = await startTestServer({ fileRatePerSec: 200_000, fileRateBurst: 100_000 });
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  t.teardown(() => close([a, b]));
  await attach(a, 'one.bin', 'application/octet-stream', randomBytes(2 * MB));
  await card(b, 'them').waitFor();
  await card(a, 'me').locator('.file-cancel').click();
  await card(b, 'them').locator('.meta', { hasText: 'Stranger cancelled it' }).waitFor();
  t.equal(await card(a, 'me').getAttribute('data-state'), 'cancelled');
  t.equal(await card(b, 'them').locator('.file-download').count(), 0, 'nothing to download');

  await attach(a, 'two.bin', 'application/octet-stream', randomBytes(2 * MB));
  await b.page.locator('#log li.file[data-from="them"]', { hasText: 'two.bin' }).waitFor();
  await card(b, 'them').locator('.file-cancel').click();
  await card(a, 'me').locator('.meta', { hasText: 'Stranger declined it' }).waitFor();
  t.equal(await card(b, 'them').getAttribute('data-state'), 'declined');
  t.equal(await b.page.locator('#log li.file progress').count(), 0, 'both cards stopped');
  // The chat goes on.
  await a.page.locator('#text').fill('still here');
  await a.page.locator('#text').press('Enter');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'still here' }).waitFor();
});

t.test('a network cut in the middle of a 5 MB transfer: it completes after the resume, whole', async (t) => {
  const srv = await startTestServer({ fileRatePerSec: MB, fileRateBurst: 256 * 1024 });
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  t.teardown(() => close([a, b]));
  const file = randomBytes(5 * MB);
  await attach(a, 'big.bin', 'application/octet-stream', file);
  const progress = b.page.locator('#log li.file progress');
  await until(
    async () =>
      (await progress.count()) === 1 &&
      (await progress.evaluate((p: { value: number; max: number }) => p.value / p.max)) > 0.25,
    30_000,
  );
  await b.context.setOffline(true);
  await b.page.locator('#status', { hasText: /offline|Reconnecting/i }).waitFor();
  const stalledAt = await progress.evaluate((p: { value: number }) => p.value);
  await new Promise((r) => setTimeout(r, 1500));
  await b.context.setOffline(false);
  const saved = await download(b);
  t.ok(stalledAt > 0, `cut at chunk ${stalledAt}`);
  t.equal(sha(saved), sha(file), 'same SHA-256 after the cut');
  await card(a, 'me').locator('.meta', { hasText: 'Sent' }).waitFor();
});

t.test('an oversize file gets a clear error; active types are never rendered', async (t) => {
  const srv = await startTestServer({ maxFileBytes: MB });
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  t.teardown(() => close([a, b]));
  await attach(a, 'huge.bin', 'application/octet-stream', randomBytes(2 * MB));
  await a.page
    .locator('#log .notice', {
      hasText: 'This file is 2.0 MB; the most one transfer may carry is 1.0 MB. It was not sent.',
    })
    .waitFor();
  t.equal(await a.page.locator('#log li.file').count(), 0, 'no transfer started');

  const html = Buffer.from('<html><body><script>document.title="pwned"</script><h1>hi</h1></body></html>');
  const svg = Buffer.from('<svg xmlns="http://www.w3.org/2000/svg"><script>alert(1)</script></svg>');
  await attach(a, 'page.html', 'text/html', html);
  await attach(a, 'logo.svg', 'image/svg+xml', svg);
  await b.page.locator('#log li.file[data-from="them"][data-state="complete"]', { hasText: 'logo.svg' }).waitFor();
  t.equal(
    await b.page.locator('#log li.file img, #log iframe, #log object, #log embed').count(),
    0,
    'neither is rendered',
  );
  t.equal(await b.page.locator('#log li.file .file-download').count(), 2, 'both are downloads');
  t.not(await b.page.title(), 'pwned');
  t.same(b.problems, [], 'no script ran, no CSP violation');
});

t.test('a file dropped on the chat or pasted into the message box gets the same preview', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const [a, b] = await matchedPages(browser, `${srv.http}/`);
  t.teardown(() => close([a, b]));
  // What a drop and a paste deliver: a DataTransfer holding a File, made in the page.
  const deliver = (how: 'drop' | 'paste', name: string) =>
    a.page.evaluate(
      ([how, name]) => {
        const g = globalThis as unknown as {
          document: { getElementById(id: string): { dispatchEvent(e: unknown): boolean } | null };
          DataTransfer: new () => { items: { add(f: unknown): void } };
          File: new (parts: string[], name: string, o: { type: string }) => unknown;
          DragEvent: new (type: string, o: object) => unknown;
          ClipboardEvent: new (type: string, o: object) => unknown;
        };
        const dt = new g.DataTransfer();
        dt.items.add(new g.File(['hello from a ', how], name, { type: 'text/plain' }));
        if (how === 'drop') {
          const zone = g.document.getElementById('chat');
          zone?.dispatchEvent(new g.DragEvent('dragover', { dataTransfer: dt, bubbles: true, cancelable: true }));
          zone?.dispatchEvent(new g.DragEvent('drop', { dataTransfer: dt, bubbles: true, cancelable: true }));
        } else
          g.document
            .getElementById('text')
            ?.dispatchEvent(new g.ClipboardEvent('paste', { clipboardData: dt, bubbles: true, cancelable: true }));
      },
      [how, name] as const,
    );
  for (const [how, name] of [
    ['drop', 'dropped.txt'],
    ['paste', 'pasted.txt'],
  ] as const) {
    await deliver(how, name);
    await a.page.locator('#attach-preview', { hasText: name }).waitFor();
    await a.page.locator('#attach-send').click();
    await b.page.locator('#log li.file[data-from="them"][data-state="complete"]', { hasText: name }).waitFor();
    t.equal((await download(b)).toString(), `hello from a ${how}`, `a ${how} sends the file`);
  }
  // Escape closes a preview without sending.
  await deliver('paste', 'never.txt');
  await a.page.locator('#attach-preview', { hasText: 'never.txt' }).waitFor();
  await a.page.keyboard.press('Escape');
  await a.page.locator('#attach-preview').waitFor({ state: 'hidden' });
  t.equal(await a.page.locator('#log li.file', { hasText: 'never.txt' }).count(), 0, 'Escape sends nothing');
  // That Escape only closed the preview: one more right after it is a first press, not a second.
  await a.page.keyboard.press('Escape');
  await a.page.locator('#text').fill('still chatting');
  await a.page.locator('#text').press('Enter');
  await b.page.locator('#log li[data-from="them"]', { hasText: 'still chatting' }).waitFor();
  t.equal(await b.page.getByText('has disconnected').count(), 0, 'the chat did not skip to the next stranger');
});

t.test('across two instances on Redis: a file crosses whole', async (t) => {
  const cluster = await startTestCluster('redis', { nodes: 2 });
  t.teardown(cluster.close);
  const [n0, n1] = cluster.nodes as unknown as [{ http: string }, { http: string }];
  const [a, b] = await matchedPages(browser, `${n0.http}/`, `${n1.http}/`);
  t.teardown(() => close([a, b]));
  const file = randomBytes(3 * MB);
  await attach(a, 'cross.bin', 'application/octet-stream', file);
  t.equal(sha(await download(b)), sha(file), 'same SHA-256 across instances');
});
