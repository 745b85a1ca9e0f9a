#!/usr/bin/env node
// Prints the chat page's weight (every file the page loads, uncompressed and
// gzipped) and exits 1 if it is over the 80 KB budget (raised from 50 KB by issue 14,
// the page as a product: landing screen, bubbles, dialogs, manifest and icons). Run after the build.
import { readdirSync, readFileSync, statSync } from 'node:fs';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';

export const BUDGET_BYTES = 80 * 1024;
export const PUBLIC_DIR = fileURLToPath(new URL('../dist/public/', import.meta.url));

export function pageWeight(dir = PUBLIC_DIR) {
  const files = readdirSync(dir, { recursive: true })
    .map((name) => join(dir, String(name)))
    .filter((path) => statSync(path).isFile())
    .map((path) => {
      const body = readFileSync(path);
      return { file: relative(dir, path), bytes: body.length, gzip: gzipSync(body, { level: 9 }).length };
    });
  const total = files.reduce((sum, f) => sum + f.bytes, 0);
  const gzip = files.reduce((sum, f) => sum + f.gzip, 0);
  return { files, total, gzip, budget: BUDGET_BYTES, ok: total <= BUDGET_BYTES };
}

export function printWeight(weight) {
  for (const f of weight.files)
    console.log(`  ${f.file.padEnd(22)} ${String(f.bytes).padStart(7)} B  (gzip ${f.gzip} B)`);
  const verdict = weight.ok ? 'within' : 'OVER';
  console.log(
    `page weight: ${weight.total} B uncompressed, ${weight.gzip} B gzipped; ${verdict} the ${weight.budget} B budget`,
  );
}

if (process.argv[1] === fileURLToPath(import.meta.url)) {
  const weight = pageWeight();
  printWeight(weight);
  if (!weight.ok) process.exit(1);
}
