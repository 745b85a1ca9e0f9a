/**
 * Property-based fuzzing of the protocol decoder over real sockets (issue 13):
 * fast-check generates client frames (every frame type with random and edge
 * field values, wrong types, extra fields, huge numbers, deep nesting, long
 * strings, random unicode with lone surrogates, random bytes, binary frames),
 * which go over a few raw sockets to one relay process while a bystander chat
 * talks on it. Every input must get its normal effect, a documented error
 * frame or a documented close; never a crash, never an undocumented answer.
 *
 * How answers are tied to inputs: each input is followed by a sentinel
 * `{"type":"ping","t":"§n"}`; the relay handles a socket's frames in order, so
 * what comes between two sentinels' pongs answers the input between them.
 * Frames the relay sends by itself later (`queued` and `matched` after a find,
 * a partner's messages, invite errors...) may land in any window: they are
 * checked only for being documented frames. The expected answer to an input
 * is derived from the decoder (src/protocol.ts; its own property test is in
 * test/reliability-malformed.test.ts) and docs/protocol.md's replies per type.
 */
import fc from 'fast-check';
import { ErrorCodes } from '../../src/errors.js';
import { decodeClientFrame } from '../../src/protocol.js';
import { spawnRelay } from '../fixtures/relay-process.js';
import { Bystander } from './bystander.js';
import { crashesOf } from './malformed.js';
import { buildFrame, OP, RawConnection, type Target, text } from './raw-frames.js';
import { type Check, type CheckOptions, exactly, fmt, type Row } from './table.js';

const MAX_PAYLOAD = 65_536;
const MAX_MESSAGE = 4096;
const MAX_CHUNK = 64_000;

export interface Input {
  binary: boolean;
  data: string | Buffer;
}

// ---- generation -------------------------------------------------------------

const numberLiteral = fc.constantFrom(
  '1e400',
  '-1e400',
  '-0',
  '1e-400',
  '9007199254740993',
  '18446744073709551616',
  '0.5',
  '1E2',
  '-1',
  '0',
  '1',
  '123456789012345678901234567890',
);
const edgeNumber = fc.oneof(
  fc.integer(),
  fc.double({ noNaN: true, noDefaultInfinity: true }),
  fc.constantFrom(0, -0, 1, -1, 2 ** 53, 2 ** 53 + 2, -(2 ** 53), Number.MAX_VALUE, Number.MIN_VALUE, 0.1),
);
/** Strings of every kind: ASCII, any code point, lone surrogates (UTF-16 units), long ones. */
const anyString = fc.oneof(
  fc.string({ maxLength: 40 }),
  fc.string({ unit: 'grapheme', maxLength: 40 }),
  fc.string({ unit: 'binary', maxLength: 40 }),
  fc.string({ unit: 'binary-ascii', maxLength: 20 }),
  fc.constantFrom('', ' ', '\u0000', '\ud800', '\udfff', '\u202e', '\u200b', 'ＡＢ', 'e\u0301', '__proto__'),
  fc.integer({ min: 0, max: 6000 }).map((n) => 'é'.repeat(n)),
);
const anyValue: fc.Arbitrary<unknown> = fc.letrec((tie) => ({
  value: fc.oneof(
    { depthSize: 'small', withCrossShrink: true },
    edgeNumber,
    anyString,
    fc.boolean(),
    fc.constant(null),
    fc.array(tie('value'), { maxLength: 4 }),
    fc.dictionary(anyString, tie('value'), { maxKeys: 4 }),
  ),
})).value;

/** Every client frame type of protocol v1. */
export const TYPES = [
  'hello',
  'find',
  'cancel',
  'join',
  'msg',
  'ack',
  'read',
  'typing',
  'leave',
  'report',
  'block',
  'ping',
] as const;

/** A value for a field: usually of the right kind (edge values), sometimes anything. */
const field = <T>(right: fc.Arbitrary<T>) =>
  fc.oneof({ weight: 3, arbitrary: right }, { weight: 1, arbitrary: anyValue });
const seq = field(fc.oneof(fc.nat(), fc.constantFrom(0, 1, 2 ** 53 - 1, 2 ** 53, -1, 1.5)));
const fieldsOf: Record<(typeof TYPES)[number], fc.Arbitrary<Record<string, unknown>>> = {
  hello: fc.record({ v: field(fc.constantFrom(1, 2, 0, 1.0, '1')), resume: anyValue }, { requiredKeys: [] }),
  find: fc.record({ interests: field(fc.array(anyString, { maxLength: 7 })) }, { requiredKeys: [] }),
  cancel: fc.constant({}),
  join: fc.record({ code: field(fc.oneof(fc.stringMatching(/^[0-9A-Z]{10}$/), anyString)) }, { requiredKeys: [] }),
  msg: fc.record(
    {
      id: field(fc.string({ minLength: 1, maxLength: 70 })),
      body: field(anyString),
      kind: field(fc.string({ maxLength: 40 })),
    },
    { requiredKeys: [] },
  ),
  ack: fc.record({ seq }, { requiredKeys: [] }),
  read: fc.record({ seq }, { requiredKeys: [] }),
  typing: fc.record({ on: field(fc.boolean()) }, { requiredKeys: [] }),
  leave: fc.constant({}),
  report: fc.constant({}),
  block: fc.constant({}),
  ping: fc.record({ t: field(fc.oneof(edgeNumber, fc.string({ maxLength: 70 }))) }, { requiredKeys: [] }),
};

const frameObject = fc
  .constantFrom(...TYPES)
  .chain((type) =>
    fc.tuple(fc.constant(type), fieldsOf[type], fc.dictionary(fc.string({ maxLength: 10 }), anyValue, { maxKeys: 3 })),
  )
  .map(([type, fields, extra]) => ({ ...extra, ...fields, type }) as Record<string, unknown>);

const textInput = (data: string | Buffer): Input => ({ binary: false, data });

/** Every kind of input, weighted toward frames the decoder has to look at closely. */
export const inputs: fc.Arbitrary<Input> = fc.oneof(
  { weight: 10, arbitrary: frameObject.map((o) => textInput(JSON.stringify(o))) },
  // A right-looking frame with a number JSON.stringify cannot write.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom('ack', 'read', 'ping', 'hello'), fc.constantFrom('seq', 't', 'v'), numberLiteral)
      .map(([type, key, n]) => textInput(`{"type":"${type}","${key}":${n}}`)),
  },
  {
    weight: 2,
    arbitrary: fc.oneof(anyValue, fc.constantFrom(TYPES)).map((v) => textInput(JSON.stringify(v) ?? 'undefined')),
  },
  { weight: 1, arbitrary: fc.record({ type: anyValue }).map((o) => textInput(JSON.stringify(o))) },
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 1, max: 6000 }), fc.constantFrom('[', '{"a":'))
      .map(([n, open]) => textInput(open.repeat(n) + (open === '[' ? ']' : '}').repeat(n))),
  },
  { weight: 2, arbitrary: anyString.map((s) => textInput(s)) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => textInput(Buffer.from(b))) },
  { weight: 1, arbitrary: fc.uint8Array({ maxLength: 64 }).map((b) => ({ binary: true, data: Buffer.from(b) })) },
  { weight: 1, arbitrary: frameObject.map((o) => ({ binary: true, data: Buffer.from(JSON.stringify(o)) })) },
  {
    weight: 1,
    arbitrary: fc
      .integer({ min: MAX_PAYLOAD - 64, max: MAX_PAYLOAD + 64 })
      .map((n) => textInput(JSON.stringify({ type: 'msg', id: 'big', body: 'x'.repeat(Math.max(1, n - 38)) }))),
  },
);

// ---- the oracle ---------------------------------------------------------------

const utf8 = new TextDecoder('utf-8', { fatal: true });

/** Error codes a frame can only get in answer to itself, at once (everything else may come later, in any window). */
const SYNC_ERRORS = new Set([
  'bad_json',
  'bad_frame',
  'unknown_type',
  'bad_field',
  'already_hello',
  'not_in_chat',
  'already_in_chat',
  'already_queued',
  'not_queued',
  'message_too_long',
]);
/** Server frames that come by themselves, after the frame that caused them or from the partner. */
const ASYNC_TYPES = new Set([
  'queued',
  'matched',
  'cancelled',
  'msg',
  'partner',
  'ended',
  'delivered',
  'read',
  'typing',
  'gap',
  'resend',
  'draining',
]);

export type Expectation =
  /** The connection fails (uWebSockets.js drops it: invalid UTF-8, over MAX_PAYLOAD_BYTES). */
  | { drop: true }
  | {
      drop: false;
      /** Sync frames allowed in answer ("error:<code>", "pong", "sent"). */
      allowed: Set<string>;
      /** One of these must come (empty: an answer is not required, e.g. a typing signal dropped silently). */
      required: Set<string>;
      pongT?: unknown;
    };

export function expectation(input: Input): Expectation {
  const bytes = typeof input.data === 'string' ? Buffer.byteLength(input.data) : input.data.length;
  if (bytes > MAX_PAYLOAD) return { drop: true };
  const one = (code: string) => ({ drop: false as const, allowed: new Set([code]), required: new Set([code]) });
  if (input.binary) return one('error:bad_frame');
  let textValue: string;
  if (typeof input.data === 'string') textValue = input.data;
  else
    try {
      textValue = utf8.decode(input.data);
    } catch {
      return { drop: true };
    }
  // A string with lone surrogates is sent as UTF-8 with U+FFFD in their place (what a browser does too).
  textValue = Buffer.from(textValue, 'utf8').toString('utf8');
  const decoded = decodeClientFrame(textValue, { maxMessageBytes: MAX_MESSAGE, maxChunkBytes: MAX_CHUNK });
  if (!decoded.ok) return one(`error:${decoded.code}`);
  const f = decoded.frame;
  const allow = (...codes: string[]) => ({
    drop: false as const,
    allowed: new Set(codes),
    required: new Set<string>(),
  });
  switch (f.type) {
    case 'hello':
      return one('error:already_hello');
    case 'ping':
      return { ...one('pong'), pongT: f.t };
    case 'find':
      return allow('error:already_in_chat', 'error:already_queued');
    case 'join':
      return allow('error:already_in_chat', 'error:already_queued');
    case 'cancel':
      return allow('error:not_queued');
    case 'msg':
      return allow('sent', 'error:not_in_chat');
    case 'ack':
    case 'read':
      return allow('error:not_in_chat', 'error:bad_field');
    case 'typing':
    case 'leave':
    case 'report':
    case 'block':
      return allow('error:not_in_chat');
  }
}

/** A server frame as documented: a known type, an error code from the catalogue with a message. */
function documented(f: Record<string, unknown>): boolean {
  if (f.type === 'error')
    return typeof f.code === 'string' && Object.hasOwn(ErrorCodes, f.code) && typeof f.message === 'string';
  return typeof f.type === 'string' && (ASYNC_TYPES.has(f.type) || ['pong', 'sent', 'welcome'].includes(f.type));
}

// ---- the driver -----------------------------------------------------------------

export interface FuzzResult {
  sent: number;
  answered: number;
  unexpected: string[];
  closes: Record<string, number>;
  reconnects: number;
}

const SENTINEL = '\u00a7';

/** One socket that sends inputs, each followed by a sentinel ping, up to `window` in flight. */
class FuzzSocket {
  #conn: RawConnection | null = null;
  #n = 0;
  constructor(
    readonly target: Target,
    readonly result: FuzzResult,
  ) {}

  async run(next: () => Input | undefined, window: number): Promise<void> {
    const retry: Input[] = [];
    for (;;) {
      const batch: Input[] = [];
      while (batch.length < window) {
        const input = retry.shift() ?? next();
        if (!input) break;
        // uWebSockets.js drops the connection at a frame it refuses, and answers to earlier frames of the same read
        // that were still corked go with it: a frame that must fail the connection is sent on its own.
        if (expectation(input).drop) {
          if (batch.length === 0) batch.push(input);
          else retry.unshift(input);
          break;
        }
        batch.push(input);
      }
      if (batch.length === 0) return;
      retry.unshift(...(await this.#batch(batch)));
    }
  }

  /** Sends a batch; returns the inputs never handled (the socket closed before them). */
  async #batch(batch: Input[]): Promise<Input[]> {
    if (!this.#conn || this.#conn.ended) {
      if (this.#conn) this.result.reconnects++;
      this.#conn = await RawConnection.welcomed(this.target);
    }
    const conn = this.#conn;
    const first = conn.texts.length;
    const ids: string[] = [];
    for (const input of batch) {
      const id = `${SENTINEL}${this.#n++}`;
      ids.push(id);
      conn.write(buildFrame({ opcode: input.binary ? OP.binary : OP.text, payload: input.data }));
      conn.write(text(`{"type":"ping","t":"${id}"}`));
    }
    const last = JSON.stringify({ type: 'pong', t: ids.at(-1) });
    await conn.until(() => conn.ended || conn.texts.includes(last), 10_000);
    const frames = conn.texts.slice(first).map((s) => JSON.parse(s) as Record<string, unknown>);
    conn.texts.length = 0;
    // Split the answers at the sentinels.
    const windows: Record<string, unknown>[][] = [[]];
    for (const f of frames) {
      if (!documented(f)) this.result.unexpected.push(`undocumented frame ${JSON.stringify(f).slice(0, 120)}`);
      if (f.type === 'pong' && typeof f.t === 'string' && f.t.startsWith(SENTINEL)) {
        if (f.t !== ids[windows.length - 1])
          this.result.unexpected.push(`sentinel out of order: ${f.t} for ${ids[windows.length - 1]}`);
        windows.push([]);
      } else (windows.at(-1) as Record<string, unknown>[]).push(f);
    }
    const answeredCount = windows.length - 1;
    for (let i = 0; i < answeredCount; i++)
      this.#check(batch[i] as Input, windows[i] as Record<string, unknown>[], null);
    if (answeredCount === batch.length) return [];
    // The socket ended (or stalled) before every sentinel came back: the first unanswered input gets the blame.
    if (!conn.ended) {
      this.result.unexpected.push(`no answer within 10 s: ${describe(batch[answeredCount] as Input)}`);
      conn.destroy();
      return batch.slice(answeredCount + 1);
    }
    const code = conn.close ? String(conn.close.code) : '1006';
    this.result.closes[code] = (this.result.closes[code] ?? 0) + 1;
    this.#check(batch[answeredCount] as Input, windows[answeredCount] as Record<string, unknown>[], code);
    return batch.slice(answeredCount + 1);
  }

  #check(input: Input, answers: Record<string, unknown>[], close: string | null): void {
    this.result.sent++;
    const exp = expectation(input);
    const sync = answers
      .filter((f) => !(ASYNC_TYPES.has(f.type as string) || (f.type === 'error' && !SYNC_ERRORS.has(f.code as string))))
      .map((f) => (f.type === 'error' ? `error:${f.code}` : (f.type as string)));
    const problem = (why: string): void => {
      this.result.unexpected.push(
        `${why}: ${describe(input)} -> ${sync.join(', ') || 'nothing'}${close ? `, close ${close}` : ''}`,
      );
    };
    if (exp.drop) {
      // A frame uWebSockets.js refuses ends the connection (1006); a violation close for it is as good.
      if (close === null) return problem('expected the connection to fail');
      this.result.answered++;
      return;
    }
    if (close !== null) {
      // 4422 (too many errors) and 4429 (flood) are documented closes; the frame that tipped it may be unanswered.
      if (close !== '4422' && close !== '4429') return problem('undocumented close');
      this.result.answered++;
      return;
    }
    for (const s of sync) if (!exp.allowed.has(s) && s !== 'error:rate_limited') return problem(`unexpected ${s}`);
    if (exp.required.size > 0 && !sync.some((s) => exp.required.has(s) || s === 'error:rate_limited'))
      return problem(`missing ${[...exp.required].join(' or ')}`);
    if (exp.pongT !== undefined) {
      const pong = answers.find((f) => f.type === 'pong');
      if (pong && JSON.stringify(pong.t) !== JSON.stringify(exp.pongT)) return problem('pong with another t');
    }
    this.result.answered++;
  }

  close(): void {
    this.#conn?.destroy();
  }
}

const describe = (input: Input): string => {
  const s = typeof input.data === 'string' ? JSON.stringify(input.data) : `bytes ${input.data.toString('hex')}`;
  return `${input.binary ? 'binary ' : ''}${s.length > 160 ? `${s.slice(0, 160)}... (${s.length})` : s}`;
};

/** Sends `count` generated inputs over `sockets` raw sockets to `target`. */
export async function fuzzOverSockets(
  target: Target,
  count: number,
  seed: number,
  sockets = 4,
  window = 16,
): Promise<FuzzResult> {
  const result: FuzzResult = { sent: 0, answered: 0, unexpected: [], closes: {}, reconnects: 0 };
  let made = 0;
  let pool: Input[] = [];
  const next = (): Input | undefined => {
    if (made >= count) return undefined;
    if (pool.length === 0) pool = fc.sample(inputs, { numRuns: Math.min(1000, count - made), seed: seed + made });
    made++;
    return pool.shift();
  };
  const socks = Array.from({ length: sockets }, () => new FuzzSocket(target, result));
  try {
    await Promise.all(socks.map((s) => s.run(next, window)));
  } finally {
    for (const s of socks) s.close();
  }
  return result;
}

/** `count` inputs (quick 5,000, full 100,000) to one relay process with a bystander on it. */
export async function fuzzRows(opts: CheckOptions, count = opts.quick ? 5_000 : 100_000): Promise<Row[]> {
  const seed = Number(process.env.FUZZ_SEED ?? Date.now() % 1_000_000);
  opts.log(`seed ${seed} (FUZZ_SEED=${seed} repeats this run)`);
  const relay = await spawnRelay({
    MAX_CONNECTIONS_PER_ADDRESS: '0',
    MAX_SESSIONS_PER_ADDRESS: '0',
    // So the inputs reach the decoder rather than the rate limiter (tested on its own); MAX_ERRORS_PER_MINUTE stays
    // at its default, so violation closes (4422) happen and are counted.
    RATE_LIMIT_PER_SEC: '100000',
    RATE_LIMIT_BURST: '100000',
    LOG_LEVEL: 'info',
  });
  try {
    const bystander = await Bystander.start(() => relay.url);
    await new Promise((r) => setTimeout(r, 1000));
    bystander.window('during');
    const t0 = Date.now();
    const result = await fuzzOverSockets({ url: relay.url }, count, seed);
    const seconds = (Date.now() - t0) / 1000;
    const report = await bystander.stop();
    const alive = relay.child.exitCode === null && relay.child.signalCode === null;
    const crashes = crashesOf(relay);
    const closes = Object.entries(result.closes)
      .map(([c, n]) => `${c}: ${fmt(n)}`)
      .join(', ');
    opts.log(`${fmt(result.sent)} inputs in ${fmt(seconds)} s; closes ${closes}; ${fmt(result.reconnects)} reconnects`);
    for (const u of result.unexpected.slice(0, 20)) opts.log(`unexpected: ${u}`);
    return [
      exactly('fuzz: inputs sent and checked', result.sent, count),
      {
        test: 'fuzz: inputs answered per protocol',
        figure: `${fmt(result.answered)} of ${fmt(result.sent)} (closes ${closes || 'none'}; seed ${seed})`,
        pass: result.answered === result.sent && result.sent === count,
      },
      {
        test: 'fuzz: unexpected answers',
        figure: `${fmt(result.unexpected.length)}${result.unexpected.length ? `: ${result.unexpected.slice(0, 3).join(' | ').slice(0, 400)}` : ''}`,
        pass: result.unexpected.length === 0,
      },
      {
        test: 'fuzz: crashes (relay exited, error-level or crash log lines)',
        figure: `${fmt((alive ? 0 : 1) + crashes.length)}${crashes.length ? `: ${crashes.slice(0, 2).join(' | ').slice(0, 300)}` : ''}`,
        pass: alive && crashes.length === 0,
      },
      exactly('fuzz: bystander messages lost', report.lost + report.duplicated + report.reordered, 0),
    ];
  } finally {
    relay.kill('SIGTERM');
    await relay.exited;
  }
}

export const fuzz: Check = { name: 'fuzz', run: (opts) => fuzzRows(opts) };
