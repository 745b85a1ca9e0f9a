/**
 * One session's side of a chat, on the instance that holds the session. The
 * partner is named, not held: it may be on this instance or another (ADR
 * 0004). The side keeps the inbox (the lane of messages addressed to this
 * session, with its own seqs, acks and read marks) and mirrors the partner's
 * marks on this session's own messages (sent, delivered, read), so a resumed
 * welcome needs nothing from the partner's instance. Plain fields, because
 * every paired session pays for them.
 */

import type { Envelope } from './envelope.js';
import type { ChatState, PairedVia } from './protocol.js';
import type { Lane } from './relay-buffer.js';

/** One empty list for every chat without shared interests (most of them). */
const NO_INTERESTS: readonly string[] = Object.freeze([]);

export class ChatSide {
  readonly interests: readonly string[];
  /** Whether the partner has a socket (as its last presence said). */
  partnerHere = true;
  /** Highest seq the partner's inbox gave this session's messages. */
  sentSeq = 0;
  /** Highest of those the partner acknowledged. */
  deliveredSeq = 0;
  /** Highest of those the partner marked read. */
  readSeq = 0;
  /**
   * Messages sent to the partner's instance and not yet stored there, by
   * client id: sent again when the bus comes back (the recipient's dedupe
   * makes that harmless). Made only for a partner on another instance.
   */
  inflight: Map<string, Envelope> | null = null;
  /**
   * This session's messages stored by the partner's instance and not yet
   * delivered, as [seq, client id], oldest first. If that instance dies, these
   * are the ones its client must send again, and first (see `resendOrder`).
   */
  undelivered: [number, string][] | null = null;
  /**
   * After a rebuild: the ids the client must send again, in this order, before
   * anything else is taken (messages it wrote before it saw `resend` would
   * otherwise overtake them), and until when that is enforced.
   */
  resendOrder: { ids: string[]; until: number } | null = null;

  constructor(
    readonly id: string,
    readonly partner: string,
    /** The instance holding the partner; changes when the partner resumes elsewhere. */
    public partnerNode: string,
    readonly inbox: Lane,
    interests: readonly string[],
    readonly initiator: boolean,
    readonly via: PairedVia,
  ) {
    this.interests = interests.length > 0 ? interests : NO_INTERESTS;
  }

  /** The chat as its session sees it, for a resumed welcome. */
  state(): ChatState {
    return {
      id: this.id,
      partner: this.partnerHere ? 'here' : 'away',
      interests: [...this.interests],
      initiator: this.initiator,
      via: this.via,
      sentSeq: this.sentSeq,
      deliveredSeq: this.deliveredSeq,
      readSeq: this.readSeq,
    };
  }
}
