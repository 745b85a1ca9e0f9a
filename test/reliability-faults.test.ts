/**
 * The reliability suite's churn and faults checks (test/reliability/churn.ts,
 * faults.ts) with tiny parameters, against real servers: every row must pass.
 * The partition row is also the regression test for envelopes no instance
 * heard (an instance cut off from Redis missed messages published to it, and
 * their senders waited forever; now they are told `unavailable` and re-send in
 * order). The nginx reload runs in test/gateway.test.ts and the full suite.
 */
import t, { type Test } from 'tap';
import { soak } from './reliability/churn.js';
import { faultSteps } from './reliability/faults.js';
import { runModel } from './reliability/model.js';
import type { Row } from './reliability/table.js';

const log = (line: string) => t.comment(line);

function allPass(t: Test, rows: Row[]): void {
  t.ok(rows.length > 0, 'some rows');
  for (const r of rows) t.ok(r.pass, `${r.test}: ${r.figure}`);
}

t.test('model-based delivery: 40 random command sequences, no violation', async (t) => {
  const m = await runModel(40);
  t.equal(m.sequences, 40);
  t.equal(m.violations, 0, m.firstViolation ?? 'no violation');
  t.equal(m.gapsSeen, m.overflowResumes, 'every resume past the buffer bound got its gap');
  t.equal(m.expirySignals, m.expiries, 'every window that passed was signalled');
});

t.test('soak: 6 pairs on 3 relay processes with drops and moves, one kept away', async (t) => {
  allPass(t, await soak({ pairs: 6, durationMs: 6000, keptAway: 1, resumeWindowMs: 2000, log }));
});

t.test('slow consumer: 4413, bounded memory, nothing lost on resume', async (t) => {
  allPass(t, await faultSteps.slowConsumer(true, log));
});

t.test('SIGKILL one instance under load', async (t) => {
  allPass(t, await faultSteps.sigkill(4, log));
});

t.test('partition between one instance and Redis: nothing lost or reordered after the heal', async (t) => {
  allPass(t, await faultSteps.partition(4, 1000, log));
});

t.test('Redis killed and restarted under load', async (t) => {
  allPass(t, await faultSteps.redisRestart(4, 1000, log));
});
