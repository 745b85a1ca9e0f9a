/**
 * Serves the chat page (built into dist/public by scripts/build-page.mjs) from
 * memory: files are read and gzipped once at start-up, answered with an ETag,
 * and sent with a strict Content-Security-Policy that the page is written to
 * pass (no inline script or style, nothing from other origins).
 */
import type { HttpRequest, HttpResponse, TemplatedApp } from 'uWebSockets.js';
import type { Buffer } from 'node:buffer';
import { createHash } from 'node:crypto';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { extname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { endReply, reply, route } from './http-util.js';
import type { Logger } from './logger.js';

export const DEFAULT_PUBLIC_DIR = fileURLToPath(new URL('../public/', import.meta.url));

export const CONTENT_SECURITY_POLICY = [
  "default-src 'none'",
  "script-src 'self'",
  "style-src 'self'",
  // blob: for pictures decrypted in the page (a received one, a preview before sending); never from elsewhere.
  "img-src 'self' data: blob:",
  // 'self' covers ws:// and wss:// to the same host (CSP Level 3).
  "connect-src 'self'",
  "manifest-src 'self'",
  "base-uri 'none'",
  "form-action 'none'",
  "frame-ancestors 'none'",
].join('; ');

const PAGE_HEADERS: [string, string][] = [
  ['Content-Security-Policy', CONTENT_SECURITY_POLICY],
  ['X-Content-Type-Options', 'nosniff'],
  // Invite links carry their code in the fragment; no referrer leaves the page either way.
  ['Referrer-Policy', 'no-referrer'],
  ['Cross-Origin-Opener-Policy', 'same-origin'],
  ['Cross-Origin-Resource-Policy', 'same-origin'],
  ['Permissions-Policy', 'camera=(), microphone=(), geolocation=(), payment=(), usb=()'],
  // Revalidate every time: file names are not content-hashed, and an ETag makes revalidation cheap.
  ['Cache-Control', 'no-cache'],
];

const TYPES: Record<string, string> = {
  '.html': 'text/html; charset=utf-8',
  '.js': 'text/javascript; charset=utf-8',
  '.css': 'text/css; charset=utf-8',
  '.svg': 'image/svg+xml',
  '.png': 'image/png',
  '.webmanifest': 'application/manifest+json',
  '.txt': 'text/plain; charset=utf-8',
};

interface StaticFile {
  type: string;
  etag: string;
  body: Buffer;
  gzip: Buffer | null;
}

/** URL path -> file, for every servable file under `dir` (index.html is also `/`). */
export function loadStaticFiles(dir: string): Map<string, StaticFile> {
  const files = new Map<string, StaticFile>();
  if (!existsSync(dir)) return files;
  for (const entry of readdirSync(dir, { recursive: true, withFileTypes: true })) {
    const type = TYPES[extname(entry.name)];
    if (!entry.isFile() || !type) continue;
    const full = join(entry.parentPath, entry.name);
    const body = readFileSync(full);
    const gzip = gzipSync(body, { level: 9 });
    const etag = `"${createHash('sha256').update(body).digest('base64url').slice(0, 22)}"`;
    const path = `/${relative(dir, full).split(sep).join('/')}`;
    files.set(path, { type, etag, body, gzip: gzip.length < body.length ? gzip : null });
  }
  const index = files.get('/index.html');
  if (index) files.set('/', index);
  return files;
}

export function registerPageRoutes(app: TemplatedApp, logger: Logger, dir = DEFAULT_PUBLIC_DIR): void {
  const files = loadStaticFiles(dir);
  if (!files.has('/')) {
    logger.warn('chat page not built; run "npm run build" to serve it at /');
    route(app, '/', {
      get: (res, _req, head) =>
        reply(res, '503 Service Unavailable', 'The chat page is not built. Run "npm run build" and restart.\n', {
          contentType: 'text/plain; charset=utf-8',
          head,
        }),
    });
    return;
  }
  for (const [path, file] of files) route(app, path, { get: (res, req, head) => serve(res, req, file, head) });
}

function serve(res: HttpResponse, req: HttpRequest, file: StaticFile, head: boolean): void {
  const notModified = req.getHeader('if-none-match') === file.etag;
  const gzip = file.gzip !== null && /\bgzip\b/.test(req.getHeader('accept-encoding'));
  res.cork(() => {
    res.writeStatus(notModified ? '304 Not Modified' : '200 OK');
    for (const [k, v] of PAGE_HEADERS) res.writeHeader(k, v);
    res.writeHeader('ETag', file.etag);
    res.writeHeader('Vary', 'Accept-Encoding');
    if (notModified) {
      res.endWithoutBody();
      return;
    }
    res.writeHeader('Content-Type', file.type);
    if (gzip && file.gzip) res.writeHeader('Content-Encoding', 'gzip');
    endReply(res, gzip && file.gzip ? file.gzip : file.body, { head });
  });
}
