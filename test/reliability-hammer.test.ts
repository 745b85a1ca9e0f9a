/**
 * The reliability suite's hammer and memory checks (test/reliability/hammer.ts,
 * memory.ts) with tiny parameters, in `npm test`: real relay processes, a real
 * redis-server, real sockets; every row must pass. The full-size runs are
 * `npm run reliability [-- --quick] -- --only=hammer,memory`.
 */
import t from 'tap';
import { hammerOptions, hammerTarget } from './reliability/hammer.js';
import { memoryOptions, memoryTarget } from './reliability/memory.js';
import type { Row } from './reliability/table.js';

const failing = (rows: Row[]) => rows.filter((r) => !r.pass);
const log = (line: string) => t.comment(line);

for (const n of [1, 3] as const) {
  t.test(`hammer, ${n === 1 ? 'one relay' : 'cluster of 3'}: 40 clients for 4 s, then nothing left`, async (t) => {
    const rows = await hammerTarget(n, { ...hammerOptions(true), clients: 40, durationMs: 4000, warmupMs: 1500 }, log);
    for (const r of rows) t.comment(`${r.test}: ${r.figure}`);
    t.same(failing(rows), [], 'every row passes');
  });
  t.test(`memory, ${n === 1 ? 'one relay' : 'cluster of 3'}: 3 waves of 60 clients`, async (t) => {
    const rows = await memoryTarget(n, { ...memoryOptions(true), waves: 3, clients: 60 }, log);
    for (const r of rows) t.comment(`${r.test}: ${r.figure}`);
    t.same(failing(rows), [], 'every row passes');
  });
}
