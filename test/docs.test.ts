import { execFileSync, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, relative } from 'node:path';
import { fileURLToPath } from 'node:url';
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

const ROOT = fileURLToPath(new URL('../../', import.meta.url));

/**
 * The "N passed, N failed" line CI prints for a saved `npm test` log: .ci/run's count_tests function, run on its
 * own. Never run .ci/run itself here: it starts with `npm ci`, which replaces node_modules.
 */
function ciCount(log: string, status: number): string {
  const script = read('.ci/run');
  const fn = /^count_tests\(\) \{\n[\s\S]*?\n\}\n/m.exec(script)?.[0];
  if (!fn) throw new Error('.ci/run has no count_tests() { … } function');
  const dir = mkdtempSync(join(tmpdir(), 'ci-count-'));
  try {
    writeFileSync(join(dir, 'log'), log);
    const program = `set -uo pipefail\n${fn}read -r passed failed < <(count_tests "$1" "$2")\necho "$passed passed, $failed failed"\n`;
    return execFileSync('bash', ['-c', program, 'count', join(dir, 'log'), String(status)], {
      encoding: 'utf8',
    }).trim();
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

/**
 * Runs tap exactly as `npm test` does (the script's last step, with its reporter and options, stdout not a
 * terminal as in CI) on the given test files, in a scratch directory inside the checkout so they import tap.
 */
async function runLikeNpmTest(files: Record<string, string>): Promise<{ status: number; output: string }> {
  const script = (JSON.parse(read('package.json')) as { scripts: { test: string } }).scripts.test;
  const step = script.split(' && ').at(-1) ?? '';
  if (!step.includes(' dist/test')) throw new Error(`cannot find "dist/test" in the test script: ${script}`);
  const dir = mkdtempSync(join(ROOT, 'dist', 'tap-selftest-'));
  try {
    for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text);
    // A clean environment: no variables of the tap run this test is part of, no CI flag.
    const env = Object.fromEntries(
      Object.entries(process.env).filter(([k]) => !/^(TAP|_TAPJS|NODE_OPTIONS$|CI$)/.test(k)),
    );
    env.PATH = `${join(ROOT, 'node_modules', '.bin')}:${env.PATH ?? ''}`;
    const child = spawn('sh', ['-c', step.replace(' dist/test', ` ${relative(ROOT, dir)}`)], {
      cwd: ROOT,
      env,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let output = '';
    child.stdout.on('data', (c: Buffer) => {
      output += c.toString();
    });
    child.stderr.on('data', (c: Buffer) => {
      output += c.toString();
    });
    const [status] = (await once(child, 'exit')) as [number];
    return { status, output };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

t.test('npm test output: concise, failures in full, no ERROR on success, and .ci/run counts it', async (t) => {
  const passing = "import t from 'tap';\nt.test('adds', async (t) => { t.equal(1 + 1, 2); t.ok(true); });\n";
  const failing = "import t from 'tap';\nt.test('multiplies', async (t) => { t.equal(2 * 2, 5, 'two twos'); });\n";
  const [ok, bad] = await Promise.all([
    runLikeNpmTest({ 'a.test.js': passing }),
    runLikeNpmTest({ 'a.test.js': passing, 'b.test.js': failing }),
  ]);

  t.equal(ok.status, 0, 'a green run exits 0');
  t.notMatch(ok.output, /ERROR/, 'and prints no ERROR');
  t.notMatch(ok.output, /^(TAP version|ok \d|# Subtest)/m, 'no raw TAP');
  t.notOk(ok.output.includes('\x1b[1A'), 'no redrawn progress lines in a log');
  t.ok(ok.output.split('\n').length < 15, `a few lines (${ok.output.split('\n').length})`);
  t.equal(ciCount(ok.output, ok.status), '2 passed, 0 failed', '.ci/run counts a green run');

  t.equal(bad.status, 1, 'a red run exits 1');
  t.match(bad.output, /multiplies > two twos/, 'the failing assertion is named');
  t.match(bad.output, /--- expected\n\s*\+\+\+ actual[\s\S]*-5\n\s*\+4/, 'with its diff');
  t.match(bad.output, /b\.test\.js:2:\d+/, 'and where it failed');
  t.equal(ciCount(bad.output, bad.status), '2 passed, 1 failed', '.ci/run counts a red run');
});

t.test('.ci/run counts: tap summary, Asserts fallback, colours, and failures before tap', async (t) => {
  t.equal(
    ciCount('\x1b[?25h\nAsserts:  5 pass  0 fail\n\n# { total: 5, pass: 5 }\n# time=9ms\n', 0),
    '5 passed, 0 failed',
  );
  t.equal(
    ciCount('# { total: 3, pass: 3 }\n...\n# { total: 9, pass: 6, fail: 2, skip: 1 }\n', 1),
    '6 passed, 2 failed',
    'the last summary counts',
  );
  t.equal(
    ciCount('\x1b[1mAsserts:\x1b[22m  \x1b[32m7 pass\x1b[39m  \x1b[31m1 fail\x1b[39m  8 of 8 complete\n', 1),
    '7 passed, 1 failed',
    'the Asserts line when tap printed no summary comment, colours stripped',
  );
  t.equal(ciCount('✖ lint/style/useConst\nnpm error code 1\n', 1), '0 passed, 1 failed', 'lint failed before tap');
  t.equal(ciCount('# { total: 4, pass: 4 }\n', 1), '4 passed, 1 failed', 'a failure tap did not count');
  t.equal(ciCount('', 0), '0 passed, 0 failed', 'an empty green log');
});

t.test(
  'docs/operations.md: never expose the relay directly, with the nginx settings that close what uWS cannot',
  async (t) => {
    const doc = read('docs/operations.md');
    const headings = [...doc.matchAll(/^## (.+)$/gm)].map((m) => m[1]);
    t.equal(
      headings[headings.indexOf('Behind a proxy') + 1],
      'Never expose the relay directly',
      'the section follows "Behind a proxy"',
    );
    const section = doc.slice(doc.indexOf('## Never expose the relay directly'), doc.indexOf('## Endpoints'));
    t.match(section, /nginx\/nginx\.conf\.template/, 'the section points at the shipped configuration');
    // The shipped gateway configuration (compose's rendering of the one template) holds every setting it relies on.
    const nginx = read('nginx/compose/nginx.conf');
    const directive = (name: string) => new RegExp(`^\\s*${name}\\s+([^;]+);`, 'm').exec(nginx)?.[1];
    for (const name of [
      'limit_conn_zone',
      'limit_conn',
      'client_header_timeout',
      'client_body_timeout',
      'send_timeout',
      'keepalive_timeout',
      'large_client_header_buffers',
      'proxy_read_timeout',
    ])
      t.ok(directive(name), `${name} is set`);
    t.match(directive('limit_conn_zone'), /^\$binary_remote_addr /, 'limit_conn counts per client address');
    t.equal((nginx.match(/^\s*limit_conn relay_conn \d+;/gm) ?? []).length, 2, 'limit_conn on /ws and /api/');
    t.equal(directive('proxy_http_version'), '1.1', 'HTTP/1.1 towards the relay (uWS refuses 1.0)');
    const readTimeout = Number(/^(\d+)s$/.exec(directive('proxy_read_timeout') ?? '')?.[1]);
    t.ok(readTimeout > settings.idleTimeoutS.def, `proxy_read_timeout ${readTimeout}s > IDLE_TIMEOUT_S default`);
    t.match(
      section,
      /nginx answers `400 Bad Request`[\s\S]*Content-Length/,
      'duplicate Content-Length: 400 from nginx',
    );
    t.match(section, /nginx does not parse WebSocket frames after the upgrade/, 'unmasked frames: stated honestly');
  },
);
