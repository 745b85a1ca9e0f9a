/**
 * A chat joins two sessions. Each side has an inbox: the lane of messages
 * addressed to it, with its own seqs, acks and read marks.
 */

import type { ChatState } from './protocol.js';
import type { Lane } from './relay-buffer.js';
import type { Session } from './session.js';

export interface ChatSide {
  readonly session: Session;
  readonly inbox: Lane;
}

export class Chat {
  constructor(
    readonly id: string,
    readonly initiator: ChatSide,
    readonly responder: ChatSide,
    readonly interests: string[],
    readonly via: 'random' | 'invite',
  ) {}

  sideOf(session: Session): ChatSide {
    return this.initiator.session === session ? this.initiator : this.responder;
  }

  otherSide(session: Session): ChatSide {
    return this.initiator.session === session ? this.responder : this.initiator;
  }

  get sides(): readonly [ChatSide, ChatSide] {
    return [this.initiator, this.responder];
  }

  /** The chat as `session` sees it, for a resumed welcome. */
  stateFor(session: Session): ChatState {
    const outbox = this.otherSide(session).inbox;
    return {
      id: this.id,
      partner: this.otherSide(session).session.conn ? 'here' : 'away',
      interests: this.interests,
      initiator: this.initiator.session === session,
      sentSeq: outbox.lastSeq,
      deliveredSeq: outbox.ackedSeq,
      readSeq: outbox.readSeq,
    };
  }
}
