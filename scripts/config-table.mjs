#!/usr/bin/env node
// Prints the README's configuration table from the settings table in src/config.ts (after `npm run build`).
// test/docs.test.ts checks that the README holds exactly these rows, so the two cannot drift apart.
import { configTableRows } from '../dist/src/config.js';

const rows = [['variable', 'default', 'meaning'], ...configTableRows()];
const widths = [0, 1, 2].map((i) => Math.max(...rows.map((r) => r[i].length)));
const line = (cells) => `| ${cells.map((c, i) => c.padEnd(widths[i])).join(' | ')} |`;
const out = [line(rows[0]), `| ${widths.map((w) => '-'.repeat(w)).join(' | ')} |`, ...rows.slice(1).map(line)];
process.stdout.write(`${out.join('\n')}\n`);
