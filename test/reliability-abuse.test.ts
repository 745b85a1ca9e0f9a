/**
 * The reliability suite's abuse and privacy checks (test/reliability/abuse.ts, privacy.ts), small, in `npm test`:
 * every attack against a real relay process and through real nginx, and the canary search of logs, Redis, heap
 * snapshots and open files, each row passing.
 */
import t, { type Test } from 'tap';
import { TINY as ABUSE, runAbuse } from './reliability/abuse.js';
import { TINY as PRIVACY, runPrivacy } from './reliability/privacy.js';
import type { Row } from './reliability/table.js';

const check = (t: Test, rows: Row[]) => {
  t.ok(rows.length > 0, 'rows');
  for (const r of rows) t.ok(r.pass, `${r.test}: ${r.figure}`);
};

t.test('abuse: every attack, small', async (t) => {
  check(t, await runAbuse({ quick: true, log: () => {} }, ABUSE));
});

t.test('privacy: no canary in logs, Redis, heap snapshots; no file written', async (t) => {
  check(t, await runPrivacy({ quick: true, log: () => {} }, PRIVACY));
});
