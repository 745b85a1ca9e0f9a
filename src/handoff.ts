/**
 * Moving a session between instances (ADR 0006). When a client resumes on
 * another instance, that instance asks the one holding the session for it
 * (`adopt`); the holder answers with a snapshot (`adopted`) and forgets the
 * session without ending anything. The snapshot carries what the session's
 * instance held for it: its side of the chat, including the messages buffered
 * for it, in transit only (never stored in Redis), and its place in line.
 */

import { ChatSide } from './chat.js';
import type { SessionSnapshot, SideSnapshot, SideState } from './envelope.js';
import type { Lane, RelayBuffer } from './relay-buffer.js';
import type { Session } from './session.js';

export function snapshotOf(session: Session, buffer: RelayBuffer): SessionSnapshot {
  const side = session.chat;
  let waiting: SessionSnapshot['waiting'] = null;
  if (session.state === 'queued')
    waiting = session.inviteCode !== null ? { invite: session.inviteCode } : session.waiting;
  if (!side) return { used: session.used, waiting, pendingEnd: session.pendingEnd, side: null };
  const { frames, recent } = buffer.export(side.inbox);
  return {
    used: session.used,
    waiting,
    pendingEnd: session.pendingEnd,
    side: {
      chat: side.id,
      partner: side.partner,
      partnerNode: side.partnerNode,
      partnerHere: side.partnerHere,
      interests: [...side.interests],
      initiator: side.initiator,
      via: side.via,
      sentSeq: side.sentSeq,
      deliveredSeq: side.deliveredSeq,
      readSeq: side.readSeq,
      nextSeq: side.inbox.nextSeq,
      ackedSeq: side.inbox.ackedSeq,
      inboxReadSeq: side.inbox.readSeq,
      frames,
      recent,
    },
  };
}

/** The side a snapshot describes, its inbox rebuilt in this instance's buffer. */
export function sideFrom(s: SideSnapshot, buffer: RelayBuffer): ChatSide {
  const inbox = buffer.import(
    { nextSeq: s.nextSeq, ackedSeq: s.ackedSeq, readSeq: s.inboxReadSeq },
    s.frames,
    s.recent,
  );
  return sideWith(s, inbox);
}

/** A side with `state`'s partner and marks, around `inbox` (moved whole, or rebuilt empty after a crash). */
export function sideWith(state: SideState, inbox: Lane): ChatSide {
  const side = new ChatSide(
    state.chat,
    state.partner,
    state.partnerNode,
    inbox,
    state.interests,
    state.initiator,
    state.via,
  );
  side.partnerHere = state.partnerHere;
  side.sentSeq = state.sentSeq;
  side.deliveredSeq = state.deliveredSeq;
  side.readSeq = state.readSeq;
  return side;
}
