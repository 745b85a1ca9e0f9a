// The artillery user journey (bench/artillery/journey.yml), run from its own
// install against one relay; returns artillery's aggregate figures.
import { execFile } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

const DIR = fileURLToPath(new URL('../artillery/', import.meta.url));
const BIN = `${DIR}node_modules/artillery/bin/run`;

export const artilleryInstalled = () => existsSync(BIN);

export async function journey(relay, { seconds, arrivalRate }) {
  const tmp = mkdtempSync(join(tmpdir(), 'bench-artillery-'));
  const output = join(tmp, 'report.json');
  const config = { phases: [{ duration: seconds, arrivalRate }] };
  // A TLS proxy in a bench usually has a self-signed certificate: BENCH_TLS_VERIFY=1 checks it.
  if (relay.url.startsWith('wss:') && process.env.BENCH_TLS_VERIFY !== '1') config.tls = { rejectUnauthorized: false };
  const overrides = JSON.stringify({ config });
  try {
    await new Promise((resolve, reject) =>
      execFile(
        process.execPath,
        [BIN, 'run', '--target', relay.url, '--overrides', overrides, '--output', output, `${DIR}journey.yml`],
        { cwd: DIR, env: { ...process.env, ARTILLERY_DISABLE_TELEMETRY: 'true' }, maxBuffer: 64 * 2 ** 20 },
        (err, _stdout, stderr) => (err ? reject(new Error(`artillery failed: ${stderr.slice(-500)}`)) : resolve()),
      ),
    );
    const { counters, summaries } = JSON.parse(readFileSync(output, 'utf8')).aggregate;
    const pick = (s) => (s ? { p50: s.median, p99: s.p99, max: s.max, count: s.count } : null);
    const result = {
      virtualUsers: counters['vusers.created'] ?? 0,
      completed: counters['vusers.completed'] ?? 0,
      failed: counters['vusers.failed'] ?? 0,
      matched: counters['chat.matched'] ?? 0,
      errors: Object.fromEntries(Object.entries(counters).filter(([k]) => k.startsWith('errors.'))),
      pairingMs: pick(summaries['chat.pairing_ms']),
      deliveryMs: pick(summaries['chat.delivery_ms']),
      sessionMs: pick(summaries['vusers.session_length']),
    };
    console.log(
      `  ${relay.name}: journey ${result.completed}/${result.virtualUsers} users completed, delivery p99 ${result.deliveryMs?.p99} ms`,
    );
    return result;
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
}
