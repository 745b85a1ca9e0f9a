/**
 * What one instance tells another about a chat: the messages that cross the
 * broker between the two sides of a chat, each addressed to one session (`to`)
 * on the instance that holds it. Alone, or with both sides on one instance,
 * none of this is ever encoded: the relay calls its own handler directly.
 *
 * Message bodies cross only inside `msg`, in transit: they are kept, until
 * acknowledged, only in the memory of the recipient's instance (ADR 0005).
 * The encoding is JSON with a short type tag; decoding checks every field,
 * because a bad envelope must be dropped, never crash an instance.
 */
import type { EndReason, PairedVia } from './protocol.js';

/** One session's side of a chat: whom it is with, and the marks of its own messages and of its reading. */
export interface SideState {
  chat: string;
  partner: string;
  partnerNode: string;
  partnerHere: boolean;
  interests: string[];
  initiator: boolean;
  via: PairedVia;
  /** This session's own messages as the partner's inbox holds them. */
  sentSeq: number;
  deliveredSeq: number;
  readSeq: number;
  /** This session's read mark on the partner's messages. */
  inboxReadSeq: number;
}

/** A side as its instance holds it, moved whole when the session moves (handoff.ts): the state and the inbox. */
export interface SideSnapshot extends SideState {
  /** The inbox: messages to this session not yet acknowledged, as ready frames. */
  nextSeq: number;
  ackedSeq: number;
  frames: [seq: number, ts: number, frame: string][];
  /** Recent client ids of the partner's messages and their seqs (idempotent retries). */
  recent: [id: string, seq: number][];
}

export interface SessionSnapshot {
  used: boolean;
  /** A random wait to re-enter with its original place (ms since epoch), or an invite code being waited on. */
  waiting: { interests: string[]; since: number } | { invite: string } | null;
  pendingEnd: EndReason | null;
  side: SideSnapshot | null;
}

export type Envelope =
  | {
      t: 'matched';
      to: string;
      chat: string;
      partner: string;
      node: string;
      interests: string[];
      initiator: boolean;
      via: PairedVia;
      /** Sent again: the first one reached no instance (see the relay's unheard handling). */
      again?: true;
    }
  /** `node` is the sender's instance, where `stored` goes back to. */
  | {
      t: 'msg';
      to: string;
      chat: string;
      from: string;
      node: string;
      id: string;
      body: string;
      kind?: string;
      ts: number;
    }
  | { t: 'stored'; to: string; chat: string; id: string; seq: number }
  | { t: 'delivered'; to: string; chat: string; seq: number }
  | { t: 'read'; to: string; chat: string; seq: number }
  | { t: 'typing'; to: string; chat: string; on: boolean }
  /** The partner went away or came back; `node` is where it is now (it may have moved). */
  | { t: 'presence'; to: string; chat: string; here: boolean; node: string }
  /** The partner ended the chat; `reporter` (the reporter's address digest) if it was a report. */
  | { t: 'end'; to: string; chat: string; reason: EndReason; reporter?: string }
  /** Another instance asks for a session that resumed there (`node`), under request `req`. */
  | { t: 'adopt'; to: string; node: string; req: string }
  | { t: 'adopted'; to: string; req: string; snapshot: SessionSnapshot | null }
  /**
   * The partner's instance died: `from` resumed on `node` having received up to
   * `lastSeq`; its side of `chat` is rebuilt from this one (the partner's).
   */
  | { t: 'rebuild'; to: string; chat: string; from: string; node: string; req: string; lastSeq: number }
  /** What the surviving side knows of the lost one: enough to continue the chat. */
  | { t: 'rebuilt'; to: string; req: string; side: SideState | null };

export type EnvelopeType = Envelope['t'];

/**
 * One bus payload: every envelope one instance has for another at the end of an
 * event-loop turn, in the order they were sent (a JSON array). Under load one
 * PUBLISH carries many envelopes, so the bus costs less per message the busier it is.
 */
export const encodeBatch = (batch: readonly Envelope[]): string => JSON.stringify(batch);

const isStr = (v: unknown): v is string => typeof v === 'string';
const isSeq = (v: unknown): v is number => typeof v === 'number' && Number.isSafeInteger(v) && v >= 0;
const isBool = (v: unknown): v is boolean => typeof v === 'boolean';

const END_REASONS: ReadonlySet<unknown> = new Set<EndReason>([
  'you_left',
  'partner_left',
  'partner_gone',
  'you_reported',
  'you_blocked',
]);

/** The fields each type must have, checked before the envelope reaches the relay. */
const CHECKS: { [T in EnvelopeType]: (o: Record<string, unknown>) => boolean } = {
  matched: (o) =>
    isStr(o.chat) &&
    isStr(o.partner) &&
    isStr(o.node) &&
    Array.isArray(o.interests) &&
    o.interests.every(isStr) &&
    isBool(o.initiator) &&
    (o.via === 'random' || o.via === 'invite') &&
    (o.again === undefined || o.again === true),
  msg: (o) =>
    isStr(o.chat) &&
    isStr(o.from) &&
    isStr(o.node) &&
    isStr(o.id) &&
    isStr(o.body) &&
    (o.kind === undefined || isStr(o.kind)) &&
    isSeq(o.ts),
  stored: (o) => isStr(o.chat) && isStr(o.id) && isSeq(o.seq),
  delivered: (o) => isStr(o.chat) && isSeq(o.seq),
  read: (o) => isStr(o.chat) && isSeq(o.seq),
  typing: (o) => isStr(o.chat) && isBool(o.on),
  presence: (o) => isStr(o.chat) && isBool(o.here) && isStr(o.node),
  end: (o) => isStr(o.chat) && END_REASONS.has(o.reason) && (o.reporter === undefined || isStr(o.reporter)),
  adopt: (o) => isStr(o.node) && isStr(o.req),
  adopted: (o) => isStr(o.req) && (o.snapshot === null || typeof o.snapshot === 'object'),
  rebuild: (o) => isStr(o.chat) && isStr(o.from) && isStr(o.node) && isStr(o.req) && isSeq(o.lastSeq),
  rebuilt: (o) => isStr(o.req) && (o.side === null || typeof o.side === 'object'),
};

/** `o` as an envelope, or null if it is not one. */
function asEnvelope(o: unknown): Envelope | null {
  if (typeof o !== 'object' || o === null) return null;
  const rec = o as Record<string, unknown>;
  const check = CHECKS[rec.t as EnvelopeType];
  if (!check || !isStr(rec.to) || !check(rec)) return null;
  return rec as unknown as Envelope;
}

/**
 * The envelopes in a bus payload, in order, and how many items were not
 * envelopes (dropped one by one: a bad item must not take its neighbours with it).
 * A payload that is not a JSON array is one bad item.
 */
export function decodeBatch(text: string): { envelopes: Envelope[]; malformed: number } {
  let items: unknown;
  try {
    items = JSON.parse(text);
  } catch {
    return { envelopes: [], malformed: 1 };
  }
  if (!Array.isArray(items)) return { envelopes: [], malformed: 1 };
  const envelopes: Envelope[] = [];
  let malformed = 0;
  for (const item of items) {
    const env = asEnvelope(item);
    if (env) envelopes.push(env);
    else malformed++;
  }
  return { envelopes, malformed };
}
