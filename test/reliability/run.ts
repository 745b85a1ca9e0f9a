/**
 * `npm run reliability` (full, bounded, about 20 minutes) and
 * `npm run reliability -- --quick` (under 5 minutes, in `.ci/run`): every check
 * in turn, then one table (test, figure, pass/fail), also written as JSON to
 * bench/results/reliability.json. `--only=name,name` runs some checks.
 * Exit code 1 if any row fails. docs/reliability.md explains each row.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { checks } from './checks.js';
import { formatTable, type Row } from './table.js';

const args = process.argv.slice(2);
const quick = args.includes('--quick');
const only = args
  .find((a) => a.startsWith('--only='))
  ?.slice('--only='.length)
  .split(',');
const chosen = checks.filter((c) => !only || only.includes(c.name));
if (only && chosen.length !== only.length) {
  console.error(`unknown check in --only; known: ${checks.map((c) => c.name).join(', ')}`);
  process.exit(2);
}

const rows: Row[] = [];
const started = Date.now();
for (const check of chosen) {
  const t0 = Date.now();
  console.log(`== ${check.name}`);
  try {
    rows.push(...(await check.run({ quick, log: (line) => console.log(`   ${line}`) })));
  } catch (err) {
    rows.push({
      test: `${check.name}: the check ran to its end`,
      figure: String((err as Error)?.stack ?? err),
      pass: false,
    });
  }
  console.log(`   (${Math.round((Date.now() - t0) / 1000)} s)`);
}

console.log(`\nreliability (${quick ? 'quick' : 'full'}), ${Math.round((Date.now() - started) / 1000)} s\n`);
console.log(formatTable(rows));
const failed = rows.filter((r) => !r.pass).length;
console.log(`\n${rows.length - failed} passed, ${failed} failed`);
const dir = fileURLToPath(new URL('../../../bench/results/', import.meta.url));
mkdirSync(dir, { recursive: true });
writeFileSync(
  `${dir}reliability${quick ? '-quick' : ''}.json`,
  `${JSON.stringify({ at: new Date().toISOString(), quick, node: process.version, rows }, null, 2)}\n`,
);
process.exit(failed > 0 ? 1 : 0);
