import { readdirSync, readFileSync } from 'node:fs';
import t from 'tap';
import { settings } from '../src/config.js';
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

t.test('docs/protocol.md documents every error code and close code', async (t) => {
  const doc = read('docs/protocol.md');
  for (const code of Object.keys(ErrorCodes)) t.ok(hasRow(doc, `\`${code}\``), code);
  for (const [reason, code] of Object.entries(CloseCodes))
    t.ok(hasRow(doc, String(code), `\`${reason}\``), `${code} ${reason}`);
});

/**
 * Node's module ABI (`process.versions.modules`) per major version, which names uWebSockets.js's binaries
 * (`uws_<platform>_<arch>_<abi>.node`). From Node's doc/abi_version_registry.json.
 */
const ABI_BY_MAJOR: Record<number, number> = { 18: 108, 19: 111, 20: 115, 21: 120, 22: 127, 23: 131, 24: 137 };

/** `engines.node` as alternatives of `^MAJOR.MINOR.PATCH` (the only form this project uses: bounded above). */
const caretRanges = (range: string) =>
  range.split('||').map((part) => {
    const m = /^\^(\d+)\.(\d+)\.(\d+)$/.exec(part.trim());
    if (!m) throw new Error(`engines.node: "${part.trim()}" is not of the form ^MAJOR.MINOR.PATCH`);
    return { major: Number(m[1]), minor: Number(m[2]), patch: Number(m[3]) };
  });
const satisfies = (version: string, range: string) => {
  const [major, minor, patch] = version.replace(/^v/, '').split('.').map(Number) as [number, number, number];
  return caretRanges(range).some(
    (r) => major === r.major && (minor > r.minor || (minor === r.minor && patch >= r.patch)),
  );
};

t.test(
  'the supported Node versions agree: package.json engines, .nvmrc, README, CI, and uWebSockets.js binaries',
  async (t) => {
    const pkg = JSON.parse(read('package.json')) as { engines: { node: string } };
    const engines = pkg.engines.node;
    const ranges = caretRanges(engines);
    const readme = read('README.md');
    const nvmrc = read('.nvmrc').trim();

    t.ok(readme.includes(`\`${engines}\``), `the README states the engines range ${engines} verbatim`);
    t.match(nvmrc, /^\d+$/, '.nvmrc names a major version (nvm picks its latest release)');
    t.ok(
      ranges.some((r) => r.major === Number(nvmrc)),
      `.nvmrc (${nvmrc}) is one of the supported majors`,
    );
    t.ok(readme.includes('`.nvmrc`'), 'the README mentions .nvmrc');
    t.match(read('.github/workflows/ci.yml'), new RegExp(`container: node:${nvmrc}-`), 'CI runs the .nvmrc major');

    const bin = new URL('../../node_modules/uWebSockets.js/dist/bin/', import.meta.url);
    const binaries = readdirSync(bin).filter((f) => f.endsWith('.node'));
    const hasBinary = (abi: number) => binaries.includes(`uws_${process.platform}_${process.arch}_${abi}.node`);
    for (const r of ranges) {
      const abi = ABI_BY_MAJOR[r.major];
      t.ok(
        abi !== undefined && hasBinary(abi),
        `uWebSockets.js ships a ${process.platform}-${process.arch} binary for Node ${r.major} (ABI ${abi})`,
      );
    }
    // The range stops where the binaries stop: nothing past the highest major listed has one.
    const top = Math.max(...ranges.map((r) => r.major));
    const beyond = Object.entries(ABI_BY_MAJOR).filter(([major, abi]) => Number(major) > top && hasBinary(abi));
    t.same(beyond, [], `no binary for a Node major above ${top} that engines leaves out`);

    t.ok(satisfies(process.version, engines), `the running Node ${process.version} satisfies ${engines}`);
    t.ok(
      hasBinary(Number(process.versions.modules)),
      `a binary for the running Node's ABI ${process.versions.modules}`,
    );
    const uws = await import('uWebSockets.js');
    t.type(uws.App, 'function', 'uWebSockets.js loads on the running Node');
  },
);
