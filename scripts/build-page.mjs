#!/usr/bin/env node
// Builds the chat page into dist/public: esbuild bundles and minifies the
// TypeScript (type-checked separately by `tsc -p src/web`) and the CSS, the
// HTML is copied with the whitespace between tags removed, the web app
// manifest is copied minified and the icons are drawn (scripts/icons.mjs).
// Then it prints the page weight and fails the build if the page is over budget.
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { build } from 'esbuild';
import { iconPng, iconSvg } from './icons.mjs';
import { PUBLIC_DIR, pageWeight, printWeight } from './page-weight.mjs';

const WEB = fileURLToPath(new URL('../src/web/', import.meta.url));
// What the page promises to support: current Chromium, Firefox and Safari (15+).
const TARGET = ['chrome100', 'firefox100', 'safari15'];

rmSync(PUBLIC_DIR, { recursive: true, force: true });
mkdirSync(PUBLIC_DIR, { recursive: true });
await build({
  entryPoints: [`${WEB}app.ts`, `${WEB}style.css`],
  outdir: PUBLIC_DIR,
  bundle: true,
  minify: true,
  format: 'esm',
  target: TARGET,
  legalComments: 'none',
  logLevel: 'warning',
});
const html = readFileSync(`${WEB}index.html`, 'utf8').replace(/>\s+</g, '><').trim();
writeFileSync(`${PUBLIC_DIR}index.html`, `${html}\n`);
const manifest = JSON.parse(readFileSync(`${WEB}manifest.webmanifest`, 'utf8'));
writeFileSync(`${PUBLIC_DIR}manifest.webmanifest`, JSON.stringify(manifest));
writeFileSync(`${PUBLIC_DIR}icon.svg`, iconSvg());
writeFileSync(`${PUBLIC_DIR}icon-192.png`, iconPng(192));
writeFileSync(`${PUBLIC_DIR}icon-512.png`, iconPng(512));

const weight = pageWeight();
printWeight(weight);
if (!weight.ok) process.exit(1);
