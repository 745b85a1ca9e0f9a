/**
 * A chat joins two sessions. Each member has an inbox: the lane of messages
 * addressed to it, with its own seqs, acks and read marks. The four are plain
 * fields (no side objects) because every paired session pays for them.
 */

import type { ChatState, PairedVia } from './protocol.js';
import type { Lane } from './relay-buffer.js';
import type { Session } from './session.js';

/** One empty list for every chat without shared interests (most of them). */
const NO_INTERESTS: readonly string[] = Object.freeze([]);

export class Chat {
  readonly interests: readonly string[];

  constructor(
    readonly id: string,
    readonly initiator: Session,
    readonly responder: Session,
    readonly initiatorInbox: Lane,
    readonly responderInbox: Lane,
    interests: readonly string[],
    readonly via: PairedVia,
  ) {
    this.interests = interests.length > 0 ? interests : NO_INTERESTS;
  }

  get members(): readonly [Session, Session] {
    return [this.initiator, this.responder];
  }

  partnerOf(session: Session): Session {
    return this.initiator === session ? this.responder : this.initiator;
  }

  /** The lane of messages addressed to `session`. */
  inboxOf(session: Session): Lane {
    return this.initiator === session ? this.initiatorInbox : this.responderInbox;
  }

  /** The chat as `session` sees it, for a resumed welcome. */
  stateFor(session: Session): ChatState {
    const partner = this.partnerOf(session);
    const outbox = this.inboxOf(partner);
    return {
      id: this.id,
      partner: partner.conn ? 'here' : 'away',
      interests: [...this.interests],
      initiator: this.initiator === session,
      via: this.via,
      sentSeq: outbox.lastSeq,
      deliveredSeq: outbox.ackedSeq,
      readSeq: outbox.readSeq,
    };
  }
}
