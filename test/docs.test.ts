import { readFileSync } from 'node:fs';
import t from 'tap';
import { configTableRows, settings } from '../src/config.js';
import { CloseCodes, ErrorCodes } from '../src/errors.js';

const read = (path: string) => readFileSync(new URL(`../../${path}`, import.meta.url), 'utf8');
/** A table row whose first cells are `cells` (tables may be padded by the formatter). */
const hasRow = (doc: string, ...cells: string[]) =>
  new RegExp(`^\\|${cells.map((c) => ` ${c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')} +\\|`).join('')}`, 'm').test(doc);

t.test('the README documents every setting with its default', async (t) => {
  const readme = read('README.md');
  for (const s of Object.values(settings)) t.ok(hasRow(readme, `\`${s.env}\``), s.env);
  t.ok(readme.includes('npm install && npm start'), 'the quick start is there');
});

t.test("the README's configuration table is exactly the settings table in src/config.ts", async (t) => {
  const readme = read('README.md');
  const rows = readme
    .split('\n')
    .filter((line) => /^\| `[A-Z_]+` /.test(line))
    .map((line) =>
      line
        .slice(1, -1)
        .split(' | ')
        .map((cell) => cell.trim()),
    );
  t.same(rows, configTableRows(), 'regenerate it with: npm run build && node scripts/config-table.mjs');
});

t.test('docs/protocol.md documents every error code and close code', async (t) => {
  const doc = read('docs/protocol.md');
  for (const code of Object.keys(ErrorCodes)) t.ok(hasRow(doc, `\`${code}\``), code);
  for (const [reason, code] of Object.entries(CloseCodes))
    t.ok(hasRow(doc, String(code), `\`${reason}\``), `${code} ${reason}`);
});
