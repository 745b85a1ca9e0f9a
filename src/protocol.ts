/**
 * Protocol v1: every frame as a TypeScript type, the decoder that turns client
 * text into a checked frame, and the encoder for server frames. Pure: no I/O and
 * no Node APIs, so the server, the typed client and the web page share it.
 */
import type { ErrorCode } from './errors.js';

export const PROTOCOL_VERSION = 1;
export const MAX_INTERESTS = 5;
export const MAX_INTEREST_LENGTH = 32;
export const MAX_CLIENT_ID_LENGTH = 64;
export const MAX_KIND_LENGTH = 32;
export const MAX_INVITE_CODE_LENGTH = 32;
export const MAX_TOKEN_LENGTH = 128;

// ---- client -> server ----------------------------------------------------

export interface ResumeRequest {
  id: string;
  token: string;
  /** Highest seq the client has received in its current chat (0 if none). */
  lastSeq: number;
}
export interface HelloFrame {
  type: 'hello';
  v: number;
  resume?: ResumeRequest;
}
export interface FindFrame {
  type: 'find';
  interests?: string[];
}
export interface CancelFrame {
  type: 'cancel';
}
export interface JoinFrame {
  type: 'join';
  code: string;
}
export interface MsgFrame {
  type: 'msg';
  /** Client-chosen id; a retry with the same id is acknowledged again, not relayed twice. */
  id: string;
  body: string;
  /** Short opaque label relayed as is (e.g. "text", "key", "ciphertext"). */
  kind?: string;
}
export interface AckFrame {
  type: 'ack';
  seq: number;
}
export interface ReadFrame {
  type: 'read';
  seq: number;
}
export interface TypingFrame {
  type: 'typing';
  on: boolean;
}
export interface LeaveFrame {
  type: 'leave';
}
export interface ReportFrame {
  type: 'report';
}
/** Ends the chat and blocks the pair for good, without counting as a report. */
export interface BlockFrame {
  type: 'block';
}
export interface PingFrame {
  type: 'ping';
  t?: number | string;
}

export type ClientFrame =
  | HelloFrame
  | FindFrame
  | CancelFrame
  | JoinFrame
  | MsgFrame
  | AckFrame
  | ReadFrame
  | TypingFrame
  | LeaveFrame
  | ReportFrame
  | BlockFrame
  | PingFrame;

export type ClientFrameType = ClientFrame['type'];

// ---- server -> client ----------------------------------------------------

export interface Limits {
  maxPayloadBytes: number;
  maxMessageBytes: number;
  rateLimitPerSec: number;
  rateLimitBurst: number;
  maxInterests: number;
  maxInterestLength: number;
  bufferMessages: number;
  /** Largest body of a `file` message (one encrypted chunk, base64url). */
  maxChunkBytes: number;
  /** Largest file a transfer may carry; enforced by both clients (the relay sees only ciphertext). */
  maxFileBytes: number;
  /** The file-chunk byte budget, apart from the frame rate (a chunk costs at least MIN_CHUNK_COST bytes). */
  fileRateBytesPerSec: number;
  fileRateBurstBytes: number;
  /** File chunks a sender may have sent and not yet seen delivered. */
  fileWindowChunks: number;
}

/** The `kind` of a message that carries one part of a file transfer (see e2e-file.ts and docs/protocol.md). */
export const FILE_KIND = 'file';
/** Bytes a file chunk costs at least from the byte budget, so tiny chunks cannot multiply frames. */
export const MIN_CHUNK_COST = 4096;

/** What a `file` message costs from the byte budget. */
export const chunkCost = (body: string): number => Math.max(body.length, MIN_CHUNK_COST);

export interface ChatState {
  id: string;
  partner: 'here' | 'away';
  interests: string[];
  initiator: boolean;
  /** How the chat was paired: `invite` means the partner holds the same invite code (a friend). */
  via: PairedVia;
  /** Highest seq the server assigned to your messages in this chat. */
  sentSeq: number;
  /** Highest of your seqs the partner acknowledged. */
  deliveredSeq: number;
  /** Highest of your seqs the partner marked read. */
  readSeq: number;
}

export type SessionState = 'idle' | 'queued' | 'chatting';

export type PairedVia = 'random' | 'invite';

export interface WelcomeFrame {
  type: 'welcome';
  id: string;
  token: string;
  resumed: boolean;
  resumeWindowMs: number;
  limits: Limits;
  state: SessionState;
  chat: ChatState | null;
}
export interface QueuedFrame {
  type: 'queued';
  /** Present when waiting on an invite code rather than the random queue. */
  invite?: string;
}
export interface CancelledFrame {
  type: 'cancelled';
}
export interface MatchedFrame {
  type: 'matched';
  chat: string;
  interests: string[];
  /** Exactly one side of a chat is the initiator; useful to order a key exchange. */
  initiator: boolean;
  /** `invite` when both sides joined the same invite code (friends), `random` otherwise. */
  via: PairedVia;
}
export interface SentFrame {
  type: 'sent';
  id: string;
  seq: number;
}
export interface IncomingMsgFrame {
  type: 'msg';
  seq: number;
  id: string;
  body: string;
  kind?: string;
  /** Server time (ms since epoch) when the message was accepted. */
  ts: number;
}
export interface DeliveredFrame {
  type: 'delivered';
  seq: number;
}
export interface ReadReceiptFrame {
  type: 'read';
  seq: number;
}
export interface PartnerTypingFrame {
  type: 'typing';
  on: boolean;
}
export interface PartnerFrame {
  type: 'partner';
  state: 'away' | 'back';
}
export type EndReason = 'you_left' | 'partner_left' | 'partner_gone' | 'you_reported' | 'you_blocked';
export interface EndedFrame {
  type: 'ended';
  reason: EndReason;
}
export interface GapFrame {
  type: 'gap';
  /** First lost seq (inclusive). */
  from: number;
  /** Last lost seq (inclusive). */
  to: number;
}
export interface PongFrame {
  type: 'pong';
  t?: number | string;
}
export interface ErrorFrame {
  type: 'error';
  code: ErrorCode;
  message: string;
  /** The client message id, when the error answers a `msg`. */
  id?: string;
  /** When waiting helps (rate_limited, cooldown, queue_full). */
  retryAfterMs?: number;
}
export interface DrainingFrame {
  type: 'draining';
}
/**
 * Cluster mode, after the partner's instance died: your messages with seq
 * above `after` were lost with it (the partner has everything up to `after`,
 * which a `delivered` said just before). Send every message not yet
 * `delivered` again, in order, with the same ids.
 */
export interface ResendFrame {
  type: 'resend';
  after: number;
}

export type ServerFrame =
  | WelcomeFrame
  | QueuedFrame
  | CancelledFrame
  | MatchedFrame
  | SentFrame
  | IncomingMsgFrame
  | DeliveredFrame
  | ReadReceiptFrame
  | PartnerTypingFrame
  | PartnerFrame
  | EndedFrame
  | GapFrame
  | PongFrame
  | ErrorFrame
  | DrainingFrame
  | ResendFrame;

export type ServerFrameType = ServerFrame['type'];
export type ServerFrameOf<T extends ServerFrameType> = Extract<ServerFrame, { type: T }>;

export const encode = (frame: ServerFrame | ClientFrame): string => JSON.stringify(frame);

/*
 * The two frames written for every relayed message, built by hand: JSON.stringify
 * only ever sees the strings, not a whole object. Byte-identical to `encode` of
 * the same frame (a test checks), and the hot path's largest saving after I/O.
 */

/** `encode({ type: 'msg', seq, id, body, kind?, ts })`. */
export const encodeMsg = (seq: number, id: string, body: string, kind: string | undefined, ts: number): string =>
  kind === undefined
    ? `{"type":"msg","seq":${seq},"id":${JSON.stringify(id)},"body":${JSON.stringify(body)},"ts":${ts}}`
    : `{"type":"msg","seq":${seq},"id":${JSON.stringify(id)},"body":${JSON.stringify(body)},"kind":${JSON.stringify(kind)},"ts":${ts}}`;

/** `encode({ type: 'sent', id, seq })`. */
export const encodeSent = (id: string, seq: number): string =>
  `{"type":"sent","id":${JSON.stringify(id)},"seq":${seq}}`;

/**
 * Welcome frames of one server, one per session setup: what every welcome
 * shares (resume window, limits) is encoded once. Byte-identical to `encode`
 * of the same frame (a test checks).
 */
export function welcomeEncoder(
  resumeWindowMs: number,
  limits: Limits,
): (id: string, token: string, resumed: boolean, state: SessionState, chat: ChatState | null) => string {
  const shared = `"resumeWindowMs":${JSON.stringify(resumeWindowMs)},"limits":${JSON.stringify(limits)}`;
  return (id, token, resumed, state, chat) =>
    `{"type":"welcome","id":${JSON.stringify(id)},"token":${JSON.stringify(token)},"resumed":${resumed},${shared},"state":${JSON.stringify(state)},"chat":${JSON.stringify(chat)}}`;
}

// ---- decoding --------------------------------------------------------------

export interface DecodeLimits {
  maxMessageBytes: number;
  maxChunkBytes: number;
}

export type DecodeResult =
  | { ok: true; frame: ClientFrame }
  | { ok: false; code: ErrorCode; message: string; id?: string };

/** UTF-8 length of a JS string without allocating (lone surrogates count as 3, like TextEncoder's U+FFFD). */
export function utf8Length(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) {
    const c = s.charCodeAt(i);
    if (c < 0x80) n += 1;
    else if (c < 0x800) n += 2;
    else if (c >= 0xd800 && c <= 0xdbff && i + 1 < s.length) {
      const d = s.charCodeAt(i + 1);
      if (d >= 0xdc00 && d <= 0xdfff) {
        n += 4;
        i++;
      } else n += 3;
    } else n += 3;
  }
  return n;
}

type Obj = Record<string, unknown>;

const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isShortString = (v: unknown, max: number): v is string =>
  typeof v === 'string' && v.length >= 1 && v.length <= max;

const bad = (message: string, id?: string): DecodeResult =>
  id === undefined ? { ok: false, code: 'bad_field', message } : { ok: false, code: 'bad_field', message, id };

/**
 * Characters no tag may hold: control characters (unprintable), format
 * characters such as U+202E RIGHT-TO-LEFT OVERRIDE or U+200B ZERO WIDTH SPACE
 * (they would let a tag read differently from what it is, shown to a stranger
 * as a shared interest), lone surrogates, and line or paragraph separators.
 */
const FORBIDDEN_IN_TAGS = /[\p{Cc}\p{Cf}\p{Cs}\p{Zl}\p{Zp}]/u;

/** One tag as it is compared and shown: NFC, lower case, inner spaces collapsed; null if it breaks a rule. */
export function normalizeInterest(raw: string): string | null {
  if (FORBIDDEN_IN_TAGS.test(raw)) return null;
  const tag = raw.normalize('NFC').toLowerCase().normalize('NFC').trim().replace(/\s+/gu, ' ');
  return tag.length === 0 || tag.length > MAX_INTEREST_LENGTH ? null : tag;
}

/** Normalized and de-duplicated; null when the list breaks a rule. */
export function normalizeInterests(v: unknown): string[] | null {
  if (!Array.isArray(v) || v.length > MAX_INTERESTS) return null;
  const out: string[] = [];
  for (const item of v) {
    const tag = typeof item === 'string' ? normalizeInterest(item) : null;
    if (tag === null) return null;
    if (!out.includes(tag)) out.push(tag);
  }
  return out;
}

function decodeResume(v: unknown): ResumeRequest | undefined {
  if (!isObj(v)) return undefined;
  const { id, token, lastSeq } = v;
  if (!isShortString(id, 64) || !isShortString(token, MAX_TOKEN_LENGTH)) return undefined;
  return { id, token, lastSeq: isSeq(lastSeq) ? lastSeq : 0 };
}

const decoders: Record<ClientFrameType, (o: Obj, limits: DecodeLimits) => DecodeResult> = {
  hello(o) {
    if (typeof o.v !== 'number') return bad('hello needs a numeric "v"');
    // A malformed resume is not an error: the client simply gets a fresh identity.
    const resume = decodeResume(o.resume);
    return { ok: true, frame: resume ? { type: 'hello', v: o.v, resume } : { type: 'hello', v: o.v } };
  },
  find(o) {
    if (o.interests === undefined) return { ok: true, frame: { type: 'find' } };
    const interests = normalizeInterests(o.interests);
    if (!interests)
      return bad(
        `"interests" must be at most ${MAX_INTERESTS} tags of 1 to ${MAX_INTEREST_LENGTH} characters, with no control or invisible formatting characters`,
      );
    return { ok: true, frame: { type: 'find', interests } };
  },
  cancel: () => ({ ok: true, frame: { type: 'cancel' } }),
  join(o) {
    if (!isShortString(o.code, MAX_INVITE_CODE_LENGTH)) return bad('join needs a string "code"');
    return { ok: true, frame: { type: 'join', code: o.code } };
  },
  msg(o, limits) {
    if (!isShortString(o.id, MAX_CLIENT_ID_LENGTH))
      return bad(`msg needs a string "id" of 1 to ${MAX_CLIENT_ID_LENGTH} characters`);
    const id = o.id;
    if (typeof o.body !== 'string' || o.body.length === 0) return bad('msg needs a non-empty string "body"', id);
    if (o.kind !== undefined && !isShortString(o.kind, MAX_KIND_LENGTH))
      return bad(`"kind" must be a string of 1 to ${MAX_KIND_LENGTH} characters`, id);
    // A file chunk has its own size limit (and its own byte budget in the relay).
    const max = o.kind === FILE_KIND ? limits.maxChunkBytes : limits.maxMessageBytes;
    // Cheap upper bound first: a UTF-16 unit is at most 3 UTF-8 bytes.
    if (o.body.length * 3 > max && utf8Length(o.body) > max)
      return {
        ok: false,
        code: 'message_too_long',
        message: `${o.kind === FILE_KIND ? 'File chunk' : 'Message'} body is larger than ${max} bytes.`,
        id,
      };
    const frame: MsgFrame = { type: 'msg', id, body: o.body };
    if (o.kind !== undefined) frame.kind = o.kind;
    return { ok: true, frame };
  },
  ack(o) {
    if (!isSeq(o.seq)) return bad('ack needs a non-negative integer "seq"');
    return { ok: true, frame: { type: 'ack', seq: o.seq } };
  },
  read(o) {
    if (!isSeq(o.seq)) return bad('read needs a non-negative integer "seq"');
    return { ok: true, frame: { type: 'read', seq: o.seq } };
  },
  typing(o) {
    if (typeof o.on !== 'boolean') return bad('typing needs a boolean "on"');
    return { ok: true, frame: { type: 'typing', on: o.on } };
  },
  leave: () => ({ ok: true, frame: { type: 'leave' } }),
  report: () => ({ ok: true, frame: { type: 'report' } }),
  block: () => ({ ok: true, frame: { type: 'block' } }),
  ping(o) {
    if (o.t === undefined) return { ok: true, frame: { type: 'ping' } };
    if ((typeof o.t === 'number' && Number.isFinite(o.t)) || isShortString(o.t, 64))
      return { ok: true, frame: { type: 'ping', t: o.t } };
    return bad('"t" must be a number or a short string');
  },
};

/** Parses and checks one client text frame. Never throws. */
export function decodeClientFrame(text: string, limits: DecodeLimits): DecodeResult {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    return { ok: false, code: 'bad_json', message: 'Frame is not valid JSON.' };
  }
  if (!isObj(parsed) || typeof parsed.type !== 'string')
    return { ok: false, code: 'bad_json', message: 'Frame must be a JSON object with a string "type".' };
  const decoder = Object.hasOwn(decoders, parsed.type) ? decoders[parsed.type as ClientFrameType] : undefined;
  if (!decoder) return { ok: false, code: 'unknown_type', message: 'Unknown frame type.' };
  return decoder(parsed, limits);
}
