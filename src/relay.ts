/**
 * The chat logic: sessions, pairing, relaying, resuming. It speaks protocol
 * frames to Connections and knows nothing of sockets or HTTP, so it is the
 * same code whatever transport or test drives it.
 */
import type { AddressKey } from './address.js';
import { Chat } from './chat.js';
import type { Clock } from './clock.js';
import type { Config } from './config.js';
import { type CloseReason, closeCode, type ErrorCode, ErrorCodes, isViolation } from './errors.js';
import { newChatId, newIdentity, tokenMatches } from './identity.js';
import { InviteBook, normalizeCode } from './invites.js';
import type { RelayMetrics, RelayStats } from './metrics.js';
import { type Waiter, WaitingRoom } from './pairing.js';
import {
  type AckFrame,
  type ClientFrame,
  type DecodeResult,
  decodeClientFrame,
  type EndReason,
  type ErrorFrame,
  encode,
  encodeMsg,
  encodeSent,
  type HelloFrame,
  type Limits,
  MAX_INTEREST_LENGTH,
  MAX_INTERESTS,
  type MsgFrame,
  type PairedVia,
  type ReadFrame,
  type ServerFrame,
  welcomeEncoder,
} from './protocol.js';
import { RelayBuffer } from './relay-buffer.js';
import { ReportTracker } from './reports.js';

const BINARY_FRAME: DecodeResult = { ok: false, code: 'bad_frame', message: ErrorCodes.bad_frame };

/**
 * How long past its retry hint a message refused for rate holds back the
 * later ones: a client that gave up on it must not be blocked for good.
 */
const HOLD_GRACE_MS = 10_000;

import { type Connection, Session, type SessionPolicies } from './session.js';
import { SessionTable } from './session-table.js';

export interface RelayDeps {
  config: Config;
  clock: Clock;
  metrics: RelayMetrics;
}

type Handlers = { [T in ClientFrame['type']]: (s: Session, f: Extract<ClientFrame, { type: T }>) => void };

/** Why a session ended: it left (closed its socket on purpose), its resume window passed, or it made room. */
export type SessionEnd = 'left' | 'expired' | 'evicted';

export class Relay {
  readonly sessions = new SessionTable();
  readonly invites: InviteBook;
  readonly buffer: RelayBuffer;
  readonly #room: WaitingRoom;
  readonly #reports: ReportTracker;
  readonly #config: Config;
  readonly #clock: Clock;
  readonly #metrics: RelayMetrics;
  readonly #encodeWelcome: ReturnType<typeof welcomeEncoder>;
  readonly #policies: SessionPolicies;
  #activeChats = 0;
  #connections = 0;
  #closed = false;

  constructor({ config, clock, metrics }: RelayDeps) {
    this.#config = config;
    this.#clock = clock;
    this.#metrics = metrics;
    const limits: Limits = {
      maxPayloadBytes: config.maxPayloadBytes,
      maxMessageBytes: config.maxMessageBytes,
      rateLimitPerSec: config.rateLimitPerSec,
      rateLimitBurst: config.rateLimitBurst,
      maxInterests: MAX_INTERESTS,
      maxInterestLength: MAX_INTEREST_LENGTH,
      bufferMessages: config.bufferSessionMaxMessages,
    };
    this.#encodeWelcome = welcomeEncoder(config.resumeWindowMs, limits);
    this.#policies = {
      rate: { clock, perSecond: config.rateLimitPerSec, burst: config.rateLimitBurst },
      typing: { clock, perSecond: config.typingRatePerSec, burst: config.typingRateBurst },
      violations: { clock, perSecond: config.maxErrorsPerMinute / 60, burst: config.maxErrorsPerMinute },
    };
    this.buffer = new RelayBuffer({
      clock,
      ttlMs: config.resumeWindowMs,
      maxMessages: config.bufferMaxMessages,
      maxBytes: config.bufferMaxBytes,
      laneMaxMessages: config.bufferSessionMaxMessages,
      laneMaxBytes: config.bufferSessionMaxBytes,
      dedupeWindow: config.dedupeWindow,
      onDrop: (reason) => metrics.bufferDrops.inc({ reason }),
    });
    this.invites = new InviteBook({ clock, ttlMs: config.inviteTtlMs, maxInvites: config.maxInvites });
    this.#reports = new ReportTracker({
      clock,
      threshold: config.reportThreshold,
      windowMs: config.reportWindowMs,
      cooldownMs: config.reportCooldownMs,
    });
    this.#room = new WaitingRoom({
      clock,
      interestWaitMs: config.matchInterestWaitMs,
      maxLength: config.maxQueueLength,
      compatibleFrom: (a, b) => this.#compatibleFrom(a, b),
      onMatch: (first, second, shared) => this.#matchFromRoom(first, second, shared),
    });
  }

  stats(): RelayStats {
    return {
      connections: this.#connections,
      sessions: this.sessions.size,
      queueLength: this.#room.length,
      activeChats: this.#activeChats,
      bufferMessages: this.buffer.messages,
      bufferBytes: this.buffer.bytes,
      openInvites: this.invites.size,
    };
  }

  get connections(): number {
    return this.#connections;
  }

  connectionOpened(): void {
    this.#connections++;
  }

  connectionClosed(): void {
    this.#connections--;
  }

  // ---- session lifecycle ---------------------------------------------------

  /**
   * Answers a hello: resumes the named session if the token proves it and the
   * window is open, else creates a fresh identity. Returns null if the socket
   * was closed instead (no room for another session).
   */
  hello(conn: Connection, frame: HelloFrame, address: AddressKey): Session | null {
    const resume = frame.resume;
    const existing = resume ? this.sessions.get(resume.id) : undefined;
    if (resume && existing && tokenMatches(existing.id, resume.token)) {
      this.#resume(existing, conn, address, resume.lastSeq, resume.token);
      return existing;
    }
    const refusal = this.#makeRoom(address);
    if (refusal) {
      this.#metrics.hellos.inc({ outcome: 'refused' });
      this.#close(conn, refusal);
      return null;
    }
    const identity = newIdentity();
    const session = new Session(identity.id, address, this.#policies);
    this.sessions.add(session);
    session.conn = conn;
    this.#metrics.hellos.inc({ outcome: resume ? 'resume_rejected' : 'new' });
    this.#welcome(session, identity.token, false);
    return session;
  }

  /**
   * Room for one more session from `address`, made by evicting an away
   * session if need be: first the address's own oldest (MAX_SESSIONS_PER_ADDRESS),
   * then the process's oldest idle one (MAX_SESSIONS). Returns why not, if not.
   */
  #makeRoom(address: AddressKey): CloseReason | null {
    const perAddress = this.#config.maxSessionsPerAddress;
    if (perAddress > 0 && this.sessions.countFrom(address) >= perAddress) {
      const own = this.sessions.evictableFrom(address);
      if (!own) return 'too_many_sessions';
      this.#forget(own, 'evicted');
    }
    if (this.sessions.size >= this.#config.maxSessions) {
      const oldest = this.sessions.oldestIdleAway();
      if (!oldest) return 'server_full';
      this.#forget(oldest, 'evicted');
    }
    return null;
  }

  /** The token is passed in because it is not kept. */
  #welcome(session: Session, token: string, resumed: boolean): void {
    const chat = session.chat ? session.chat.stateFor(session) : null;
    session.conn?.send(this.#encodeWelcome(session.id, token, resumed, session.state, chat));
  }

  #resume(session: Session, conn: Connection, address: AddressKey, lastSeq: number, token: string): void {
    session.expiry?.cancel();
    session.expiry = null;
    const old = session.conn;
    session.conn = conn;
    this.sessions.resumed(session, address);
    // Detached first, so the old socket's close does not mark the session away.
    if (old) this.#close(old, 'session_replaced');
    this.#metrics.hellos.inc({ outcome: 'resumed' });
    this.#welcome(session, token, true);
    if (session.pendingEnd) {
      this.#send(session, { type: 'ended', reason: session.pendingEnd });
      session.pendingEnd = null;
    }
    const chat = session.chat;
    if (!chat) return;
    const now = this.#clock.now();
    this.buffer.replay(
      chat.inboxOf(session),
      lastSeq,
      (frame, ts) => {
        conn.send(frame);
        this.#metrics.bufferedDelivery.observe((now - ts) / 1000);
      },
      (from, to) => this.#send(session, { type: 'gap', from, to }),
    );
    if (!old) this.#send(chat.partnerOf(session), { type: 'partner', state: 'back' });
  }

  /**
   * A socket closed. If it was the session's current one, the resume window
   * starts, unless the client said it is done (`leaving`: it closed with 1000 or
   * 1001, which browsers send when a tab closes or reloads, after which no
   * resume can come): then its chat ends for the partner at once. A session that
   * never looked for a partner has nothing worth resuming and gets the short
   * UNUSED_RESUME_WINDOW_MS, so abandoned sockets cannot pile up sessions.
   */
  disconnected(session: Session, conn: Connection, leaving = false): void {
    if (session.conn !== conn) return;
    session.conn = null;
    this.#leaveWaiting(session);
    if (this.#closed) return;
    if (leaving) return this.#forget(session, 'left');
    if (session.chat) this.#send(session.chat.partnerOf(session), { type: 'partner', state: 'away' });
    this.sessions.wentAway(session);
    const { resumeWindowMs, unusedResumeWindowMs } = this.#config;
    const window = session.used ? resumeWindowMs : Math.min(unusedResumeWindowMs, resumeWindowMs);
    session.expiry = this.#clock.schedule(window, () => this.#forget(session, 'expired'));
  }

  /** Ends a session for good: its wait, its chat (the partner is told), its place in the table. */
  #forget(session: Session, why: SessionEnd): void {
    session.expiry?.cancel();
    session.expiry = null;
    this.#leaveWaiting(session);
    const partnerReason = why === 'left' ? 'partner_left' : 'partner_gone';
    if (session.chat) this.#endChat(session.chat, session, { self: partnerReason, partner: partnerReason });
    this.sessions.delete(session);
    this.#metrics.sessionsEnded.inc({ reason: why });
  }

  // ---- frames ----------------------------------------------------------------

  /** One text frame (or null for a binary one) from a session's socket. */
  receive(session: Session, text: string | null): void {
    const result: DecodeResult = text === null ? BINARY_FRAME : decodeClientFrame(text, this.#config);
    if (!this.#admit(session, result)) return;
    if (!result.ok) return this.#error(session, result.code, result.id, result.message);
    const handler = this.#handlers[result.frame.type] as (s: Session, f: ClientFrame) => void;
    handler(session, result.frame);
  }

  /**
   * Rate limits, by what a frame costs. Typing signals have their own budget
   * and are dropped silently past it (an indicator is best effort), so they
   * never crowd out messages. An `ack` or `read` that moves its mark forward is
   * free: there can be no more of those than the partner's messages, which are
   * limited themselves. Everything else, bad frames included, takes a token;
   * a refused `msg` is named in its `rate_limited` error and holds back the
   * session's later messages until it is sent again, so a client that resends
   * after `retryAfterMs` keeps its order even with more messages in flight.
   * Refusals in a row past FLOOD_CLOSE_AFTER close the socket.
   */
  #admit(session: Session, result: DecodeResult): boolean {
    const frame = result.ok ? result.frame : null;
    if (frame?.type === 'typing') {
      if (session.takeTyping()) return this.#admitted(session);
      this.#refused(session);
      return false;
    }
    if ((frame?.type === 'ack' || frame?.type === 'read') && this.#advances(session, frame))
      return this.#admitted(session);
    const msgId = frame?.type === 'msg' ? frame.id : undefined;
    const now = this.#clock.now();
    const held = msgId === undefined ? null : session.heldMessage(now);
    const waitsBehind = held !== null && held !== msgId;
    if (!waitsBehind && session.takeFrame()) {
      if (held !== null) session.releaseMessage();
      return this.#admitted(session);
    }
    if (!this.#refused(session)) return false;
    const retryAfterMs = Math.max(1, session.msUntilFrame());
    if (msgId !== undefined && !waitsBehind) session.holdMessage(msgId, now + retryAfterMs + HOLD_GRACE_MS);
    this.#error(session, 'rate_limited', msgId ?? (result.ok ? undefined : result.id), undefined, retryAfterMs);
    return false;
  }

  #admitted(session: Session): true {
    session.floodStreak = 0;
    return true;
  }

  /** Counts a refusal; false if that made it a flood and closed the socket. */
  #refused(session: Session): boolean {
    if (++session.floodStreak < this.#config.floodCloseAfter) return true;
    if (session.conn) this.#close(session.conn, 'flood');
    return false;
  }

  /** An ack or read inside the session's chat that moves its mark forward (anything else is not free). */
  #advances(session: Session, frame: AckFrame | ReadFrame): boolean {
    const inbox = session.chat?.inboxOf(session);
    if (!inbox || frame.seq > inbox.lastSeq) return false;
    return frame.seq > (frame.type === 'ack' ? inbox.ackedSeq : inbox.readSeq);
  }

  readonly #handlers: Handlers = {
    hello: (s) => this.#error(s, 'already_hello'),
    ping: (s, f) => this.#send(s, f.t === undefined ? { type: 'pong' } : { type: 'pong', t: f.t }),
    find: (s, f) => this.#find(s, f.interests ?? []),
    cancel: (s) => this.#cancel(s),
    join: (s, f) => this.#join(s, f.code),
    msg: (s, f) => this.#msg(s, f),
    ack: (s, f) => this.#ack(s, f.seq),
    read: (s, f) => this.#read(s, f.seq),
    typing: (s, f) => {
      const chat = this.#chatOf(s);
      if (chat) this.#send(chat.partnerOf(s), { type: 'typing', on: f.on });
    },
    leave: (s) => {
      const chat = this.#chatOf(s);
      if (chat) this.#endChat(chat, s, { self: 'you_left', partner: 'partner_left' });
    },
    report: (s) => this.#report(s),
    block: (s) => this.#block(s),
  };

  // ---- pairing ---------------------------------------------------------------

  #find(session: Session, interests: string[]): void {
    if (session.state === 'chatting') return this.#error(session, 'already_in_chat');
    if (session.state === 'queued') return this.#error(session, 'already_queued');
    session.used = true;
    const cooldown = this.#reports.cooldownLeft([session.id, session.address]);
    if (cooldown > 0) return this.#error(session, 'cooldown', undefined, undefined, cooldown);
    const outcome = this.#room.enqueue(session.id, interests);
    if (outcome === 'queued') {
      session.state = 'queued';
      this.#send(session, { type: 'queued' });
    } else if (outcome === 'full') {
      this.#error(session, 'queue_full', undefined, undefined, 1000);
    }
  }

  #cancel(session: Session): void {
    if (session.state !== 'queued') return this.#error(session, 'not_queued');
    this.#leaveWaiting(session);
    this.#send(session, { type: 'cancelled' });
  }

  #join(session: Session, code: string): void {
    if (session.state === 'chatting') return this.#error(session, 'already_in_chat');
    session.used = true;
    if (session.state === 'queued' && session.inviteCode === null) return this.#error(session, 'already_queued');
    const outcome = this.invites.join(code, session.id);
    if (outcome.kind === 'error') return this.#error(session, outcome.code);
    // One wait at most: a session that held another code lets go of it (a second invite link was followed).
    const normalized = normalizeCode(code);
    if (session.inviteCode !== null && session.inviteCode !== normalized) this.#leaveWaiting(session);
    if (outcome.kind === 'wait') {
      session.state = 'queued';
      session.inviteCode = normalized;
      return this.#send(session, { type: 'queued', invite: code });
    }
    const holder = this.sessions.get(outcome.partner);
    // A holder is released from its code when it cancels or drops, so it is always here; this guards the impossible.
    if (!holder || holder.inviteCode === null) return this.#error(session, 'invite_unknown');
    holder.inviteCode = null;
    this.#metrics.matchWait.observe({ via: 'invite' }, outcome.waitedMs / 1000);
    this.#metrics.matchWait.observe({ via: 'invite' }, 0);
    this.#startChat(holder, session, [], 'invite');
  }

  /** Leaves the random queue or an invite wait, if in one. */
  #leaveWaiting(session: Session): void {
    if (session.state !== 'queued') return;
    if (session.inviteCode !== null) this.invites.release(session.inviteCode, session.id);
    else this.#room.remove(session.id);
    session.inviteCode = null;
    session.state = 'idle';
  }

  /** Never for a block either way; otherwise once both sides' rematch cool-downs are over. */
  #compatibleFrom(a: string, b: string): number {
    const sa = this.sessions.get(a);
    const sb = this.sessions.get(b);
    if (!sa || !sb || sa.hasBlocked(b) || sb.hasBlocked(a)) return Number.POSITIVE_INFINITY;
    return Math.max(sa.rematchAt(b), sb.rematchAt(a));
  }

  #matchFromRoom(first: Waiter, second: Waiter, shared: string[]): void {
    const a = this.sessions.get(first.id);
    const b = this.sessions.get(second.id);
    if (!a || !b) return;
    // The newcomer learns it was queued, even if only for an instant, so every find sees the same sequence.
    for (const s of [a, b]) if (s.state !== 'queued') this.#send(s, { type: 'queued' });
    const now = this.#clock.now();
    for (const w of [first, second]) this.#metrics.matchWait.observe({ via: 'random' }, (now - w.since) / 1000);
    this.#startChat(a, b, shared, 'random');
  }

  #startChat(a: Session, b: Session, interests: string[], via: PairedVia): void {
    const chat = new Chat(newChatId(), a, b, this.buffer.newLane(), this.buffer.newLane(), interests, via);
    for (const s of [a, b]) {
      s.state = 'chatting';
      s.chat = chat;
      s.pendingEnd = null;
      // Message ids belong to one chat.
      s.releaseMessage();
    }
    this.#activeChats++;
    this.#metrics.matches.inc({ via });
    this.#send(a, { type: 'matched', chat: chat.id, interests, initiator: true, via });
    this.#send(b, { type: 'matched', chat: chat.id, interests, initiator: false, via });
  }

  #endChat(chat: Chat, by: Session, reasons: { self: EndReason; partner: EndReason }): void {
    const now = this.#clock.now();
    const until = now + this.#config.rematchCooldownMs;
    for (const s of chat.members) {
      this.buffer.release(chat.inboxOf(s));
      s.releaseMessage();
      s.chat = null;
      s.state = 'idle';
      if (!s.conn) this.sessions.chatEnded(s);
      s.rememberPartner(chat.partnerOf(s).id, until, now);
      const reason = s === by ? reasons.self : reasons.partner;
      if (s.conn) this.#send(s, { type: 'ended', reason });
      else if (s !== by) s.pendingEnd = reason;
    }
    this.#activeChats--;
  }

  #report(session: Session): void {
    const chat = this.#chatOf(session);
    if (!chat) return;
    const partner = chat.partnerOf(session);
    this.#blockPair(session, partner);
    this.#reports.report([partner.id, partner.address], session.address);
    this.#metrics.reports.inc();
    this.#endChat(chat, session, { self: 'you_reported', partner: 'partner_left' });
  }

  #block(session: Session): void {
    const chat = this.#chatOf(session);
    if (!chat) return;
    this.#blockPair(session, chat.partnerOf(session));
    this.#metrics.blocks.inc();
    this.#endChat(chat, session, { self: 'you_blocked', partner: 'partner_left' });
  }

  #blockPair(a: Session, b: Session): void {
    a.block(b.id);
    b.block(a.id);
  }

  // ---- messages --------------------------------------------------------------

  #msg(session: Session, f: MsgFrame): void {
    const chat = session.chat;
    if (!chat) return this.#error(session, 'not_in_chat', f.id);
    const recipient = chat.partnerOf(session);
    const inbox = chat.inboxOf(recipient);
    const { seq, duplicate } = this.buffer.assignSeq(inbox, f.id);
    if (!duplicate) {
      const ts = this.#clock.now();
      const frame = encodeMsg(seq, f.id, f.body, f.kind, ts);
      // Buffered before it is written: the buffer, not the socket, is what a resume trusts.
      this.buffer.append(inbox, seq, frame, ts);
      this.#metrics.messagesRelayed.inc();
      recipient.conn?.send(frame);
    }
    session.conn?.send(encodeSent(f.id, seq));
  }

  #ack(session: Session, seq: number): void {
    const chat = this.#chatOf(session);
    if (!chat) return;
    const inbox = chat.inboxOf(session);
    if (seq > inbox.lastSeq) return this.#error(session, 'bad_field', undefined, 'ack seq is beyond the last message.');
    if (this.buffer.ack(inbox, seq)) this.#send(chat.partnerOf(session), { type: 'delivered', seq });
  }

  #read(session: Session, seq: number): void {
    const chat = this.#chatOf(session);
    if (!chat) return;
    const inbox = chat.inboxOf(session);
    if (seq > inbox.lastSeq)
      return this.#error(session, 'bad_field', undefined, 'read seq is beyond the last message.');
    if (seq <= inbox.readSeq) return;
    inbox.readSeq = seq;
    this.#send(chat.partnerOf(session), { type: 'read', seq });
  }

  #chatOf(session: Session): Chat | null {
    if (!session.chat) this.#error(session, 'not_in_chat');
    return session.chat;
  }

  // ---- output ------------------------------------------------------------------

  #send(session: Session, frame: ServerFrame): void {
    session.conn?.send(encode(frame));
  }

  #error(session: Session, code: ErrorCode, id?: string, message?: string, retryAfterMs?: number): void {
    this.#metrics.errors.inc({ code });
    const frame: ErrorFrame = { type: 'error', code, message: message ?? ErrorCodes[code] };
    if (id !== undefined) frame.id = id;
    if (retryAfterMs !== undefined) frame.retryAfterMs = retryAfterMs;
    this.#send(session, frame);
    if (isViolation(code) && !session.takeViolation() && session.conn) this.#close(session.conn, 'too_many_errors');
  }

  /** Counted in metrics by the connection itself, the one place every close goes through. */
  #close(conn: Connection, reason: CloseReason): void {
    conn.close(closeCode(reason), reason);
  }

  /** Tells every connected client the server is going away. */
  announceDraining(): void {
    const frame = encode({ type: 'draining' });
    for (const s of this.sessions.values()) s.conn?.send(frame);
  }

  /** Closes every socket and forgets every session (shutdown): no timer outlives the server. */
  closeAll(): void {
    this.#closed = true;
    for (const s of [...this.sessions.values()]) {
      if (s.conn) this.#close(s.conn, 'going_away');
      s.expiry?.cancel();
      this.#room.remove(s.id);
    }
    this.sessions.clear();
  }

  /** Expired entries are dropped lazily; call this now and then so memory figures stay true. */
  sweep(): void {
    this.buffer.purgeStale();
  }
}
