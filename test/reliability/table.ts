/**
 * The reliability suite's one output: a table of rows, each a test, the figure
 * it measured and whether that figure meets its promise. Every check returns
 * rows; a check that throws becomes a failing row, never a missing one.
 */

export interface Row {
  /** What was tried, in a few words ("malformed frames: cases answered right"). */
  test: string;
  /** What was measured, with its unit ("412 of 412", "p99 1.8 ms (before 1.2 ms)"). */
  figure: string;
  pass: boolean;
}

export interface CheckOptions {
  /** The bounded quick run (`npm run reliability -- --quick`, in `.ci/run`); otherwise the full one. */
  quick: boolean;
  /** Progress for the person watching; never part of the table. */
  log: (line: string) => void;
}

/** One part of the suite (malformed traffic, hammer, faults, ...). */
export interface Check {
  /** A short name, used by `--only=`. */
  name: string;
  run(opts: CheckOptions): Promise<Row[]>;
}

/** A row from a measured number and the bound it must meet. */
export function atMost(test: string, value: number, bound: number, unit = ''): Row {
  return { test, figure: `${fmt(value)}${unit} (at most ${fmt(bound)}${unit})`, pass: value <= bound };
}

export function exactly(test: string, value: number, expected: number, unit = ''): Row {
  return {
    test,
    figure: `${fmt(value)}${unit}${value === expected ? '' : ` (expected ${fmt(expected)})`}`,
    pass: value === expected,
  };
}

export const fmt = (n: number): string =>
  Number.isInteger(n) ? n.toLocaleString('en-US') : n.toLocaleString('en-US', { maximumFractionDigits: 2 });

/** The table as plain text: one line per row, columns padded, PASS/FAIL last. */
export function formatTable(rows: readonly Row[]): string {
  const head = { test: 'test', figure: 'figure', pass: 'result' };
  const cells = rows.map((r) => ({ test: r.test, figure: r.figure, pass: r.pass ? 'pass' : 'FAIL' }));
  const all = [head, ...cells];
  const w1 = Math.max(...all.map((c) => c.test.length));
  const w2 = Math.max(...all.map((c) => c.figure.length));
  const line = (c: { test: string; figure: string; pass: string }) =>
    `${c.test.padEnd(w1)}  ${c.figure.padEnd(w2)}  ${c.pass}`;
  return [line(head), '-'.repeat(w1 + w2 + 10), ...cells.map(line)].join('\n');
}
