/**
 * Malformed traffic (issue 13), the fast part: every malformed-frame and
 * handshake case against one relay process, the framing cases through the
 * nginx TLS gateway, 1,000 fuzzed inputs over real sockets, each with a
 * bystander chat; and the decoder's own property test, in process: whatever
 * text comes, decodeClientFrame never throws and answers ok or a documented
 * error code. `npm run reliability -- --only=malformed,fuzz` is the full run.
 */
import fc from 'fast-check';
import t, { type Test } from 'tap';
import { ErrorCodes } from '../src/errors.js';
import { type ClientFrame, decodeClientFrame, MAX_CLIENT_ID_LENGTH } from '../src/protocol.js';
import { fuzzRows, inputs, TYPES } from './reliability/fuzz.js';
import { CASES, direct, gateway } from './reliability/malformed.js';
import type { Row } from './reliability/table.js';

const opts = { quick: true, log: (line: string) => t.comment(line) };
const LIMITS = { maxMessageBytes: 4096, maxChunkBytes: 64_000 };

const allPass = (t: Test, rows: Row[]) => {
  for (const row of rows) t.ok(row.pass, `${row.test}: ${row.figure}`);
};

t.test('decodeClientFrame: any text gives ok with a client frame, or a documented error code; it never throws', (t) => {
  const text = fc.oneof(
    inputs.map((i) => (typeof i.data === 'string' ? i.data : i.data.toString('utf8'))),
    fc.string({ unit: 'binary', maxLength: 200 }),
    fc.json({ maxDepth: 4 }),
  );
  fc.assert(
    fc.property(text, (s) => {
      const r = decodeClientFrame(s, LIMITS);
      if (r.ok) return (TYPES as readonly string[]).includes(r.frame.type);
      return Object.hasOwn(ErrorCodes, r.code) && typeof r.message === 'string' && r.message.length > 0;
    }),
    { numRuns: 5000 },
  );
  t.pass('5,000 inputs');
  t.end();
});

t.test('decodeClientFrame: every well-formed msg is accepted as written, whatever its unicode', (t) => {
  const msg = fc.record({
    id: fc.string({ minLength: 1, maxLength: MAX_CLIENT_ID_LENGTH }),
    body: fc.string({ unit: 'binary', minLength: 1, maxLength: 1000 }),
  });
  fc.assert(
    fc.property(msg, ({ id, body }) => {
      const r = decodeClientFrame(JSON.stringify({ type: 'msg', id, body, extra: [1, { deep: true }] }), LIMITS);
      const f = r.ok ? (r.frame as Extract<ClientFrame, { type: 'msg' }>) : null;
      return f?.type === 'msg' && f.id === id && f.body === body;
    }),
    { numRuns: 2000 },
  );
  t.pass('2,000 messages');
  t.end();
});

t.test('malformed frames and handshakes against one relay process: every case answered right', async (t) => {
  allPass(t, await direct(opts, CASES, 1));
});

t.test('malformed framing through the nginx TLS gateway: every case answered right', async (t) => {
  allPass(
    t,
    await gateway(
      opts,
      CASES.filter((c) => c.kind === 'framing' || c.kind === 'control'),
    ),
  );
});

t.test('1,000 fuzzed inputs over real sockets: each answered per protocol, no crash', async (t) => {
  allPass(t, await fuzzRows(opts, 1000));
});
