/**
 * The chat logic of one instance: its sessions, their chats, pairing,
 * relaying, resuming. It speaks protocol frames to Connections and knows
 * nothing of sockets or HTTP. Whatever it cannot decide alone (a partner on
 * another instance, the waiting room, invite codes, report tallies, a session
 * that resumes here after living elsewhere) goes through the Broker, so the
 * same code runs alone (broker-memory) and as one of many (broker-redis).
 *
 * A chat is two sides (chat.ts), one per session, each on its session's
 * instance. A message is sequenced and buffered by the recipient's side
 * (ADR 0005), so what crosses between instances is: `msg` one way, `stored`
 * (its seq, answered to the sender as `sent`) back. With both sides here
 * that is two direct calls and no envelope at all.
 */
import type { AddressKey } from './address.js';
import type { Broker, DirectoryEntry, Ticket } from './broker.js';
import { ChatSide } from './chat.js';
import type { Clock, TimerHandle } from './clock.js';
import type { Config } from './config.js';
import type { Envelope, SideState } from './envelope.js';
import { type CloseReason, closeCode, type ErrorCode, ErrorCodes, isViolation } from './errors.js';
import { sideFrom, sideWith, snapshotOf } from './handoff.js';
import { newChatId, newIdentity, tokenMatches } from './identity.js';
import { normalizeCode } from './invites.js';
import type { RelayKeys } from './keys.js';
import type { RelayMetrics, RelayStats } from './metrics.js';
import {
  type AckFrame,
  type ClientFrame,
  chunkCost,
  type DecodeResult,
  decodeClientFrame,
  type EndReason,
  type ErrorFrame,
  encode,
  encodeMsg,
  encodeSent,
  FILE_KIND,
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
import { type Connection, Session, type SessionPolicies } from './session.js';
import { SessionTable } from './session-table.js';

const BINARY_FRAME: DecodeResult = { ok: false, code: 'bad_frame', message: ErrorCodes.bad_frame };

/**
 * How long past its retry hint a message refused for rate holds back the
 * later ones: a client that gave up on it must not be blocked for good.
 */
const HOLD_GRACE_MS = 10_000;

/** When a store or the bus fails: how soon to try again. */
const UNAVAILABLE_RETRY_MS = 1000;

/** A message that came ahead of the ones a `resend` asked for again: how soon to send it again. */
const RESEND_RETRY_MS = 50;
/**
 * A `matched` no instance heard is sent again after this long, then twice as long each time up to the maximum: its
 * instance usually subscribes again within a beat or two, and one that died is not asked more than every 2 s.
 */
const MATCHED_RESEND_MS = 250;
const MATCHED_RESEND_MAX_MS = 2000;

/**
 * How long an instance that asked another for a session waits for its answer. A dead holder is noticed sooner
 * (its liveness expires within 5.5 s and ends the wait at once); this bounds a live one that is stuck.
 */
const ADOPT_TIMEOUT_MS = 6000;

/** How long envelopes for a session that moved away are forwarded to its new instance. */
const FORWARD_MS = 60_000;

/**
 * A valid token for a session the directory does not know yet: its instance may still be writing the entry (a
 * client that moved within milliseconds of its hello, or a slow Redis). Asked once more after this long.
 */
const DIRECTORY_RETRY_MS = 300;

export interface RelayDeps {
  config: Config;
  clock: Clock;
  metrics: RelayMetrics;
  broker: Broker;
  keys: RelayKeys;
  /** Reports a failure the relay recovered from (a store call that threw), without ids or bodies. */
  onFault?: (what: string, err: unknown) => void;
}

type Handlers = { [T in ClientFrame['type']]: (s: Session, f: Extract<ClientFrame, { type: T }>) => void };
type EnvelopeHandlers = { [T in Envelope['t']]: (s: Session, e: Extract<Envelope, { t: T }>) => void };

/** Why a session ended: it left (closed its socket on purpose), its resume window passed, or it made room. */
export type SessionEnd = 'left' | 'expired' | 'evicted';

/** An adoption this instance asked for: the socket that resumed here, waiting for the holder's snapshot. */
interface PendingAdoption {
  id: string;
  conn: Connection;
  address: AddressKey;
  token: string;
  lastSeq: number;
  /** What the directory said of the session. */
  entry: DirectoryEntry;
  /** Asked its holder (`adopt`) or, that one being dead, its partner's instance (`rebuild`). */
  kind: 'adopt' | 'rebuild';
  /** The instance asked. */
  node: string;
  timer: TimerHandle;
  /**
   * Envelopes for the session that came before its snapshot: the partner's instance heard of the move from the
   * holder and wrote here at once, on another link than the holder's answer. Handled, in order, once it is settled.
   */
  early: Envelope[];
  resolve(session: Session | null): void;
  /** No answer will come: the client gets a fresh identity now. */
  giveUp(): void;
}

/** Envelopes that wait for a session being adopted here; the rest (requests about it) are answered at once. */
const WAITS_FOR_ADOPTION: ReadonlySet<Envelope['t']> = new Set([
  'matched',
  'msg',
  'stored',
  'delivered',
  'read',
  'typing',
  'presence',
  'end',
]);

export class Relay {
  readonly sessions = new SessionTable();
  readonly buffer: RelayBuffer;
  readonly #broker: Broker;
  readonly #node: string;
  readonly #config: Config;
  readonly #clock: Clock;
  readonly #metrics: RelayMetrics;
  readonly #keys: RelayKeys;
  readonly #onFault: (what: string, err: unknown) => void;
  readonly #encodeWelcome: ReturnType<typeof welcomeEncoder>;
  readonly #policies: SessionPolicies;
  /** Sessions that moved to another instance, while envelopes for them may still be on their way here. */
  readonly #movedTo = new Map<string, { node: string; timer: TimerHandle }>();
  readonly #adoptions = new Map<string, PendingAdoption>();
  /** Sessions whose partner's instance died: their chat ends unless the partner resumes somewhere in time. */
  readonly #orphans = new Map<Session, TimerHandle>();
  /** Envelopes (marks, ends, answers) that found the bus down, sent in order when it is back. */
  #unsent: { node: string; env: Envelope }[] = [];
  /** Timers of unheard `matched` envelopes waiting to be sent again, and how long each sent one had waited. */
  readonly #resends = new Set<TimerHandle>();
  readonly #resendDelay = new WeakMap<Envelope, number>();
  #adoptSeq = 0;
  #connections = 0;
  #closed = false;

  constructor({ config, clock, metrics, broker, keys, onFault }: RelayDeps) {
    this.#config = config;
    this.#clock = clock;
    this.#metrics = metrics;
    this.#broker = broker;
    this.#node = broker.nodeId;
    this.#keys = keys;
    this.#onFault = onFault ?? (() => {});
    const limits: Limits = {
      maxPayloadBytes: config.maxPayloadBytes,
      maxMessageBytes: config.maxMessageBytes,
      rateLimitPerSec: config.rateLimitPerSec,
      rateLimitBurst: config.rateLimitBurst,
      maxInterests: MAX_INTERESTS,
      maxInterestLength: MAX_INTEREST_LENGTH,
      bufferMessages: config.bufferSessionMaxMessages,
      maxChunkBytes: config.maxChunkBytes,
      maxFileBytes: config.maxFileBytes,
      fileRateBytesPerSec: config.fileRatePerSec,
      fileRateBurstBytes: config.fileRateBurst,
      fileWindowChunks: config.fileWindowChunks,
    };
    this.#encodeWelcome = welcomeEncoder(config.resumeWindowMs, limits);
    this.#policies = {
      rate: { clock, perSecond: config.rateLimitPerSec, burst: config.rateLimitBurst },
      typing: { clock, perSecond: config.typingRatePerSec, burst: config.typingRateBurst },
      fileBytes: { clock, perSecond: config.fileRatePerSec, burst: config.fileRateBurst },
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
  }

  /** Connects the relay to its broker; resolves when this instance can serve. */
  start(): Promise<void> {
    return this.#broker.start({
      envelope: (env) => this.#onEnvelope(env),
      match: (first, second, shared) => this.#onMatch(first, second, shared),
      nodeGone: (node) => this.#onNodeGone(node),
      health: (up) => {
        if (up) this.#onBusBack();
      },
      unheard: (node, envs) => this.#onUnheard(node, envs),
    });
  }

  /**
   * Envelopes no instance heard: the partner's instance was cut off from Redis (or dead), and pub/sub kept
   * nothing, so a message among them would never be stored nor answered, and one sent after it, once that
   * instance hears again, would overtake it. Each sender is told `unavailable` for its oldest such message,
   * which holds back its later ones (as a rate refusal does): the client sends it and everything after it
   * again, in order. It stays in flight, so a rebuild still counts it among the lost. A `matched` is sent again.
   */
  #onUnheard(node: string, envs: readonly Envelope[]): void {
    const told = new Set<Session>();
    const now = this.#clock.now();
    for (const env of envs) {
      if (env.t === 'matched') this.#matchedUnheard(node, env);
      if (env.t !== 'msg') continue;
      const s = this.sessions.get(env.from);
      const side = s?.chat;
      if (!s || told.has(s) || !side || side.id !== env.chat || !side.inflight?.has(env.id)) continue;
      told.add(s);
      if (s.heldMessage(now) === null) s.holdMessage(env.id, now + UNAVAILABLE_RETRY_MS + HOLD_GRACE_MS);
      this.#error(s, 'unavailable', env.id, undefined, UNAVAILABLE_RETRY_MS);
    }
  }

  /**
   * A match this instance made reached no one: the waiter's instance was cut off from Redis when it was claimed, so
   * it does not know it is paired, and the partner here would chat with no one (and the waiter, found again when its
   * instance is back, be paired twice). Sent again, after MATCHED_RESEND_MS and then twice as long each time (at
   * most MATCHED_RESEND_MAX_MS), while the partner here is still in that chat: once its instance hears, the waiter
   * takes it (and says it is there, which also stops this side's chat from ending if its instance was taken for
   * dead meanwhile) or, no longer waiting, answers `end`. Its find after the outage leaves the claimed waiter alone
   * (Matchmaker.refind). If the instance died, the chat here ends like any other whose partner's instance died.
   */
  #matchedUnheard(node: string, env: Extract<Envelope, { t: 'matched' }>): void {
    const last = this.#resendDelay.get(env);
    const delayMs = last === undefined ? MATCHED_RESEND_MS : Math.min(MATCHED_RESEND_MAX_MS, 2 * last);
    const timer = this.#clock.schedule(delayMs, () => {
      this.#resends.delete(timer);
      if (this.sessions.get(env.partner)?.chat?.id !== env.chat) return;
      const again: Envelope = { ...env, again: true };
      this.#resendDelay.set(again, delayMs);
      this.#sendTo(node, again);
    });
    this.#resends.add(timer);
  }

  stats(): RelayStats {
    let queueLength = 0;
    let activeChats = 0;
    for (const s of this.sessions.values()) {
      if (s.state === 'queued' && s.inviteCode === null) queueLength++;
      // A chat with both sides here counts once.
      const side = s.chat;
      if (side && (side.initiator || side.partnerNode !== this.#node)) activeChats++;
    }
    return {
      connections: this.#connections,
      sessions: this.sessions.size,
      queueLength,
      activeChats,
      bufferMessages: this.buffer.messages,
      bufferBytes: this.buffer.bytes,
      openInvites: this.#broker.invites.openCount(),
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
   * window is open, else creates a fresh identity. A session held by another
   * instance is asked for first, so the answer may be a promise. Null means
   * the socket was closed instead (no room for another session).
   */
  hello(conn: Connection, frame: HelloFrame, address: AddressKey): Session | null | Promise<Session | null> {
    const resume = frame.resume;
    if (resume && tokenMatches(this.#keys.token, resume.id, resume.token)) {
      const existing = this.sessions.get(resume.id);
      if (existing) {
        this.#resume(existing, conn, address, resume.lastSeq, resume.token);
        return existing;
      }
      if (this.#broker.clustered && this.#broker.up)
        return this.#adopt(conn, resume.id, resume.token, resume.lastSeq, address);
      if (this.#broker.clustered) {
        // Another instance may hold it, and cannot be asked now: a fresh identity would end its chat for nothing.
        this.#metrics.hellos.inc({ outcome: 'refused' });
        this.#close(conn, 'try_again_later');
        return null;
      }
    }
    return this.#fresh(conn, address, resume ? 'resume_rejected' : 'new');
  }

  #fresh(conn: Connection, address: AddressKey, outcome: 'new' | 'resume_rejected'): Session | null {
    const refusal = this.#makeRoom(address);
    if (refusal) {
      this.#metrics.hellos.inc({ outcome: 'refused' });
      this.#close(conn, refusal);
      return null;
    }
    const identity = newIdentity(this.#keys.token);
    const session = new Session(identity.id, address, this.#policies);
    this.sessions.add(session);
    session.conn = conn;
    this.#claim(session);
    this.#metrics.hellos.inc({ outcome });
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
    const chat = session.chat ? session.chat.state() : null;
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
    this.#afterWelcome(session, lastSeq);
    const side = session.chat;
    if (side && !old) this.#toPartner(side, this.#presence(side, true));
  }

  /** What a resumed session is owed after its welcome: a chat that ended while it was away, or the messages it missed. */
  #afterWelcome(session: Session, lastSeq: number): void {
    if (session.pendingEnd) {
      this.#send(session, { type: 'ended', reason: session.pendingEnd });
      session.pendingEnd = null;
    }
    const side = session.chat;
    const conn = session.conn;
    if (!side || !conn) return;
    const now = this.#clock.now();
    this.buffer.replay(
      side.inbox,
      lastSeq,
      (frame, ts) => {
        conn.send(frame);
        this.#metrics.bufferedDelivery.observe((now - ts) / 1000);
      },
      (from, to) => this.#send(session, { type: 'gap', from, to }),
    );
  }

  /**
   * A client resumed here a session another instance holds (it drained, or the
   * proxy sent the client elsewhere): ask that instance for it (`adopt`; its
   * answer is taken in #onAdopted). If that instance is dead, or does not
   * answer in ADOPT_TIMEOUT_MS, the session is recovered instead (#recover).
   * Unknown to the directory, the client gets a fresh identity (`resumed:false`).
   */
  async #adopt(
    conn: Connection,
    id: string,
    token: string,
    lastSeq: number,
    address: AddressKey,
  ): Promise<Session | null> {
    const where = () => this.#call('directory', () => this.#broker.directory.where(id), null);
    let entry = await where();
    if (!entry && !conn.closed) {
      await new Promise<void>((resolve) => this.#clock.schedule(DIRECTORY_RETRY_MS, resolve));
      if (!this.sessions.get(id)) entry = await where();
    }
    const here = this.sessions.get(id);
    if (here) {
      // Another socket of the same session got here first, or it came back meanwhile.
      this.#resume(here, conn, address, lastSeq, token);
      return here;
    }
    if (conn.closed) return null;
    const busy = [...this.#adoptions.values()].some((p) => p.id === id);
    if (!entry || entry.node === this.#node || busy) return this.#fresh(conn, address, 'resume_rejected');
    return new Promise<Session | null>((resolve) => {
      const early: Envelope[] = [];
      const settle = (session: Session | null) => {
        resolve(session);
        // Synchronously, before any later envelope: what waited is handled now, in order (by the session if it
        // was installed, else answered as for a session this instance does not hold).
        for (const env of early.splice(0)) this.#onEnvelope(env);
      };
      const pending = { id, conn, address, token, lastSeq, entry, early, resolve: settle };
      if (this.#broker.isAlive(entry.node))
        this.#ask(pending, entry.node, { t: 'adopt', to: id, node: this.#node, req: '' });
      else this.#recover(pending);
    });
  }

  /** Sends an adopt or rebuild request for `pending` and waits for its answer; without one, `onTimeout`. */
  #ask(
    pending: Omit<PendingAdoption, 'node' | 'timer' | 'giveUp' | 'kind'>,
    node: string,
    env: Extract<Envelope, { t: 'adopt' | 'rebuild' }>,
  ): void {
    const req = `${this.#node}:${++this.#adoptSeq}`;
    env.req = req;
    const giveUp = () => {
      timer.cancel();
      if (!this.#adoptions.delete(req)) return;
      if (env.t === 'adopt') this.#recover(pending);
      else pending.resolve(this.#restore(pending, null));
    };
    const timer = this.#clock.schedule(ADOPT_TIMEOUT_MS, giveUp);
    this.#adoptions.set(req, { ...pending, kind: env.t, node, timer, giveUp });
    if (!this.#broker.send(node, env)) giveUp();
  }

  /**
   * The instance that held the session died (SIGKILL, a crash): what it held
   * is gone, but the partner's side is not. The partner's instance is asked to
   * rebuild this side from its own (`rebuild`, answered in #onRebuilt); the
   * partner's client then re-sends what the lost side had not delivered
   * (`resend`, docs/protocol.md). Without a chat or a partner, the session
   * comes back with its identity and, if it had a chat, an explicit `ended`.
   */
  #recover(pending: Omit<PendingAdoption, 'node' | 'timer' | 'giveUp' | 'kind'>): void {
    const chat = pending.entry.chat;
    if (!chat) return pending.resolve(this.#restore(pending, null));
    this.#call('directory', () => this.#broker.directory.where(chat.partner), null).then((partner) => {
      if (this.#closed) return pending.resolve(null);
      if (!partner || !this.#broker.isAlive(partner.node) || partner.chat?.id !== chat.id)
        return pending.resolve(this.#restore(pending, null));
      this.#ask(pending, partner.node, {
        t: 'rebuild',
        to: chat.partner,
        chat: chat.id,
        from: pending.id,
        node: this.#node,
        req: '',
        lastSeq: pending.lastSeq,
      });
    });
  }

  /** A session recovered after its instance died: its identity, and its chat if the partner rebuilt it. */
  #restore(
    pending: Omit<PendingAdoption, 'node' | 'timer' | 'giveUp' | 'kind'>,
    side: SideState | null,
  ): Session | null {
    const { id, conn, address, token, lastSeq, entry } = pending;
    if (conn.closed) return null;
    const existing = this.sessions.get(id);
    if (existing) {
      this.#resume(existing, conn, address, lastSeq, token);
      return existing;
    }
    const session = new Session(id, address, this.#policies);
    session.used = true;
    if (side) {
      // The inbox continues after what the client received: the rest comes again from the partner (`resend`).
      const marks = { nextSeq: lastSeq + 1, ackedSeq: lastSeq, readSeq: side.inboxReadSeq };
      session.chat = sideWith(side, this.buffer.import(marks, [], []));
      session.state = 'chatting';
    } else if (entry.chat) {
      // The chat could not be rebuilt (the partner left or is gone too): said, never a silent hole.
      session.pendingEnd = 'partner_gone';
    }
    this.#install(session, conn, token, lastSeq);
    return session;
  }

  /** A session that came here from another instance takes its place here and its socket is welcomed back. */
  #install(session: Session, conn: Connection, token: string, lastSeq: number): void {
    this.sessions.add(session);
    session.conn = conn;
    this.#claim(session);
    this.#metrics.hellos.inc({ outcome: 'resumed' });
    this.#welcome(session, token, true);
    this.#afterWelcome(session, lastSeq);
  }

  /** The adoption (or rebuild) of session `id` this instance is waiting for, if any. */
  #adoptingHere(id: string): PendingAdoption | undefined {
    for (const p of this.#adoptions.values()) if (p.id === id) return p;
    return undefined;
  }

  /** The answer to request `req`, if it is still awaited (its timer stopped); undefined if it came too late. */
  #answered(req: string): PendingAdoption | undefined {
    const pending = this.#adoptions.get(req);
    if (!pending) return undefined;
    this.#adoptions.delete(req);
    pending.timer.cancel();
    return pending;
  }

  /** The partner's instance rebuilt this side of the chat. */
  #onRebuilt(env: Extract<Envelope, { t: 'rebuilt' }>): void {
    const pending = this.#answered(env.req);
    if (pending) return pending.resolve(this.#restore(pending, env.side));
    if (env.side) this.#sendTo(env.side.partnerNode, this.#endFor(env.side, 'partner_gone'));
  }

  /** The holder's answer: the session, rebuilt here before any later envelope for it is handled. */
  #onAdopted(env: Extract<Envelope, { t: 'adopted' }>): void {
    const pending = this.#answered(env.req);
    const snapshot = env.snapshot;
    if (!pending) {
      // Too late: the client already has a fresh identity. Whatever the holder gave up ends here, explicitly.
      if (snapshot?.side) this.#sendTo(snapshot.side.partnerNode, this.#endFor(snapshot.side, 'partner_gone'));
      return;
    }
    const { id, conn, address, token, lastSeq } = pending;
    if (!snapshot || this.sessions.get(id)) {
      if (snapshot?.side) this.#sendTo(snapshot.side.partnerNode, this.#endFor(snapshot.side, 'partner_gone'));
      return pending.resolve(conn.closed ? null : this.#fresh(conn, address, 'resume_rejected'));
    }
    const session = new Session(id, address, this.#policies);
    session.used = snapshot.used;
    session.pendingEnd = snapshot.pendingEnd;
    const waiting = snapshot.waiting;
    if (waiting) {
      // Still waiting, and its welcome says so: the client knows it is queued and must not find again.
      session.state = 'queued';
      session.queuedTold = true;
      if ('invite' in waiting) session.inviteCode = waiting.invite;
      else session.waiting = waiting;
    }
    if (snapshot.side) {
      session.chat = sideFrom(snapshot.side, this.buffer);
      session.state = 'chatting';
    }
    this.#install(session, conn, token, lastSeq);
    pending.resolve(session);
    this.#takeOverWait(session);
  }

  /** A session that moved here while waiting keeps its place: the same ticket (first `find` time) or the same code. */
  #takeOverWait(session: Session): void {
    const id = session.id;
    if (session.state !== 'queued') return;
    const code = session.inviteCode;
    if (code !== null) {
      this.#settle('invites', this.#broker.invites.join(code, id, this.#node));
      return;
    }
    const w = session.waiting;
    if (!w) return;
    const ticket: Ticket = { id, node: this.#node, interests: w.interests, since: w.since };
    this.#call('matchmaker', () => this.#broker.matchmaker.find(ticket), 'unavailable' as const).then((outcome) => {
      if (outcome === 'queued' || outcome === 'matched' || !this.#stillWaiting(session)) return;
      session.state = 'idle';
      session.waiting = null;
      if (outcome === 'full') this.#error(session, 'queue_full', undefined, undefined, 1000);
      else this.#error(session, 'unavailable', undefined, undefined, UNAVAILABLE_RETRY_MS);
    });
  }

  /** Another instance asks for a session of ours that resumed there: hand it over and forget it here. */
  #giveAway(session: Session, env: Extract<Envelope, { t: 'adopt' }>): void {
    const snapshot = snapshotOf(session, this.buffer);
    session.expiry?.cancel();
    session.expiry = null;
    // A wait is not cancelled here: the new instance takes it over (finding again replaces the ticket, joining the
    // same code again moves the holder), so there is no moment in which the session has lost its place. Whatever
    // its state, what this instance kept about it for matching goes (the shared copy stays, for the new instance).
    this.#broker.matchmaker.handOver(session.id);
    const old = session.conn;
    session.conn = null;
    if (old) this.#close(old, 'session_replaced');
    const side = session.chat;
    if (side) {
      this.#orphans.get(session)?.cancel();
      this.#orphans.delete(session);
      this.buffer.release(side.inbox);
    }
    this.sessions.delete(session);
    this.#movedTo.get(session.id)?.timer.cancel();
    // The timer keeps the id alone: a closure over `session` would hold the moved session's whole state (its
    // chat, partner, interests, address key) in this instance's memory for FORWARD_MS after it left.
    const id = session.id;
    this.#movedTo.set(id, {
      node: env.node,
      timer: this.#clock.schedule(FORWARD_MS, () => this.#movedTo.delete(id)),
    });
    this.#sendTo(env.node, { t: 'adopted', to: session.id, req: env.req, snapshot });
    // After the answer, so anything the partner sent before hearing of the move is forwarded behind it.
    if (side) this.#toPartner(side, { t: 'presence', to: side.partner, chat: side.id, here: true, node: env.node });
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
    const side = session.chat;
    if (side) this.#toPartner(side, this.#presence(side, false));
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
    // No rematch cool-down to remember: this session will never look for anyone again.
    if (session.chat) this.#endChat(session, partnerReason, partnerReason, undefined, false);
    this.sessions.delete(session);
    if (this.#broker.clustered) this.#settle('directory', this.#broker.directory.release(session.id));
    this.#settle('matchmaker', this.#broker.matchmaker.forget(session.id));
    this.#metrics.sessionsEnded.inc({ reason: why });
  }

  /** Tells the directory where the session lives and what chat it is in (for a resume elsewhere). */
  #claim(session: Session): void {
    if (!this.#broker.clustered) return;
    const side = session.chat;
    const entry: DirectoryEntry = side
      ? { node: this.#node, chat: { id: side.id, partner: side.partner } }
      : { node: this.#node };
    this.#settle('directory', this.#broker.directory.claim(session.id, entry));
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
    // A file chunk spends its bytes from the file budget instead of a frame token: a transfer never crowds out text.
    const chunk = frame?.type === 'msg' && frame.kind === FILE_KIND ? chunkCost(frame.body) : 0;
    const now = this.#clock.now();
    const held = msgId === undefined ? null : session.heldMessage(now);
    const waitsBehind = held !== null && held !== msgId;
    if (!waitsBehind && (chunk > 0 ? session.takeFileBytes(chunk) : session.takeFrame())) {
      if (held !== null) session.releaseMessage();
      return this.#admitted(session);
    }
    if (!this.#refused(session)) return false;
    const retryAfterMs = Math.max(1, chunk > 0 ? session.msUntilFileBytes(chunk) : session.msUntilFrame());
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
    const inbox = session.chat?.inbox;
    if (!inbox || frame.seq > inbox.lastSeq) return false;
    return frame.seq > (frame.type === 'ack' ? inbox.ackedSeq : inbox.readSeq);
  }

  readonly #handlers: Handlers = {
    hello: (s) => this.#error(s, 'already_hello'),
    ping: (s, f) => this.#send(s, f.t === undefined ? { type: 'pong' } : { type: 'pong', t: f.t }),
    find: (s, f) => void this.#find(s, f.interests ?? []),
    cancel: (s) => this.#cancel(s),
    join: (s, f) => void this.#join(s, f.code),
    msg: (s, f) => this.#msg(s, f),
    ack: (s, f) => this.#ack(s, f.seq),
    read: (s, f) => this.#read(s, f.seq),
    typing: (s, f) => {
      const side = this.#chatOf(s);
      if (!side) return;
      const partner = this.#localPartner(side);
      if (partner) this.#send(partner, { type: 'typing', on: f.on });
      else this.#sendTo(side.partnerNode, { t: 'typing', to: side.partner, chat: side.id, on: f.on }, false);
    },
    leave: (s) => {
      if (this.#chatOf(s)) this.#endChat(s, 'you_left', 'partner_left');
    },
    report: (s) => this.#report(s),
    block: (s) => this.#block(s),
  };

  // ---- pairing ---------------------------------------------------------------

  /**
   * Looks for a stranger. The session is `queued` from the start, so a second
   * find or a join is refused while the broker answers, and a match reported
   * before the answer finds it waiting. `since` keeps the place in line of a
   * session that moved here from another instance.
   */
  async #find(session: Session, interests: string[], since?: number): Promise<void> {
    if (session.state === 'chatting') return this.#error(session, 'already_in_chat');
    if (session.state === 'queued') return this.#error(session, 'already_queued');
    session.used = true;
    session.state = 'queued';
    session.queuedTold = false;
    const cooldown = await this.#call(
      'reports',
      () => this.#broker.reports.cooldownLeft([session.id, session.address]),
      0,
    );
    if (!this.#stillWaiting(session)) return;
    if (cooldown > 0) {
      session.state = 'idle';
      return this.#error(session, 'cooldown', undefined, undefined, cooldown);
    }
    const ticket: Ticket = { id: session.id, node: this.#node, interests, since: since ?? this.#clock.now() };
    session.waiting = { interests, since: ticket.since };
    const outcome = await this.#call('matchmaker', () => this.#broker.matchmaker.find(ticket), 'unavailable');
    if (!this.#stillWaiting(session) || session.waiting?.since !== ticket.since) return;
    if (outcome === 'queued') return this.#tellQueued(session);
    if (outcome === 'matched') return;
    session.state = 'idle';
    session.waiting = null;
    if (outcome === 'full') return this.#error(session, 'queue_full', undefined, undefined, 1000);
    // The find may have run and queued the ticket though its reply was lost: a waiter the client no longer
    // waits as would be claimed, and its claimer told `end` at once.
    this.#settle('matchmaker', this.#broker.matchmaker.cancel(session.id));
    this.#error(session, 'unavailable', undefined, undefined, UNAVAILABLE_RETRY_MS);
  }

  #stillWaiting(session: Session): boolean {
    return session.state === 'queued' && this.sessions.get(session.id) === session;
  }

  /** Every wait sees `queued` once, before its `matched`, even when the match came first. */
  #tellQueued(session: Session, invite?: string): void {
    if (session.queuedTold) return;
    session.queuedTold = true;
    this.#send(session, invite === undefined ? { type: 'queued' } : { type: 'queued', invite });
  }

  #cancel(session: Session): void {
    if (session.state !== 'queued') return this.#error(session, 'not_queued');
    this.#leaveWaiting(session);
    this.#send(session, { type: 'cancelled' });
  }

  async #join(session: Session, code: string): Promise<void> {
    if (session.state === 'chatting') return this.#error(session, 'already_in_chat');
    if (session.state === 'queued' && session.inviteCode === null) return this.#error(session, 'already_queued');
    session.used = true;
    const normalized = normalizeCode(code);
    const outcome = await this.#call('invites', () => this.#broker.invites.join(code, session.id, this.#node), null);
    if (this.sessions.get(session.id) !== session || session.chat !== null) {
      // It went away or was paired meanwhile: its claim on the code must not keep the friend waiting.
      if (outcome?.kind === 'wait') this.#settle('invites', this.#broker.invites.release(normalized, session.id));
      return;
    }
    if (!outcome) return this.#error(session, 'unavailable', undefined, undefined, UNAVAILABLE_RETRY_MS);
    if (outcome.kind === 'error') return this.#error(session, outcome.code);
    // One wait at most: a session that held another code lets go of it (a second invite link was followed).
    if (session.inviteCode !== null && session.inviteCode !== normalized) this.#leaveWaiting(session);
    if (outcome.kind === 'wait') {
      session.state = 'queued';
      session.inviteCode = normalized;
      session.queuedTold = false;
      return this.#tellQueued(session, code);
    }
    this.#metrics.matchWait.observe({ via: 'invite' }, outcome.waitedMs / 1000);
    this.#metrics.matchWait.observe({ via: 'invite' }, 0);
    session.state = 'queued';
    session.queuedTold = true;
    this.#pair(
      { id: outcome.partner, node: outcome.partnerNode, interests: [], since: 0 },
      { id: session.id, node: this.#node, interests: [], since: 0 },
      [],
      'invite',
    );
  }

  /** Leaves the random queue or an invite wait, if in one. */
  #leaveWaiting(session: Session): void {
    if (session.state !== 'queued') return;
    if (session.inviteCode !== null)
      this.#settle('invites', this.#broker.invites.release(session.inviteCode, session.id));
    else this.#settle('matchmaker', this.#broker.matchmaker.cancel(session.id));
    session.inviteCode = null;
    session.waiting = null;
    session.state = 'idle';
  }

  /** The broker paired two waiters and this instance is to start their chat. */
  #onMatch(first: Ticket, second: Ticket, shared: string[]): void {
    const now = this.#clock.now();
    for (const w of [first, second]) this.#metrics.matchWait.observe({ via: 'random' }, (now - w.since) / 1000);
    this.#pair(first, second, shared, 'random');
  }

  /** Tells both sides (on whatever instance) that they are paired; `a` starts the chat (initiator). */
  #pair(a: Ticket, b: Ticket, interests: string[], via: PairedVia): void {
    const chat = newChatId();
    this.#metrics.matches.inc({ via });
    const tell = (to: Ticket, partner: Ticket, initiator: boolean): Envelope => ({
      t: 'matched',
      to: to.id,
      chat,
      partner: partner.id,
      node: partner.node,
      interests,
      initiator,
      via,
    });
    this.#deliver(a.node, tell(a, b, true));
    this.#deliver(b.node, tell(b, a, false));
  }

  #onMatched(session: Session, env: Extract<Envelope, { t: 'matched' }>): void {
    if (session.state !== 'queued') {
      // It cancelled or was paired otherwise while the match was on its way: the other side's chat ends at once.
      this.#sendTo(env.node, {
        t: 'end',
        to: env.partner,
        chat: env.chat,
        reason: 'partner_left',
      });
      return;
    }
    const invite = session.inviteCode;
    if (!session.queuedTold) this.#tellQueued(session, invite === null ? undefined : invite);
    const side = new ChatSide(
      env.chat,
      env.partner,
      env.node,
      this.buffer.newLane(),
      env.interests,
      env.initiator,
      env.via,
    );
    session.state = 'chatting';
    session.chat = side;
    session.inviteCode = null;
    session.waiting = null;
    session.queuedTold = false;
    session.pendingEnd = null;
    // Message ids belong to one chat.
    session.releaseMessage();
    this.#claim(session);
    this.#send(session, {
      type: 'matched',
      chat: env.chat,
      interests: env.interests,
      initiator: env.initiator,
      via: env.via,
    });
    // Sent again after an outage: the partner's instance may have taken this one for dead and be ending the chat.
    if (env.again) this.#sendTo(env.node, this.#presence(side, session.conn !== null));
  }

  /** Ends `session`'s chat: its own side now, the partner's through an `end`. */
  #endChat(session: Session, self: EndReason, partner: EndReason, reporter?: string, remember = true): void {
    const side = session.chat;
    if (!side) return;
    const until = this.#clock.now() + this.#config.rematchCooldownMs;
    if (remember) this.#settle('matchmaker', this.#broker.matchmaker.rememberPair(session.id, side.partner, until));
    this.#closeSide(session, side, self);
    const end = this.#endFor(side, partner);
    if (reporter !== undefined) end.reporter = reporter;
    this.#toPartner(side, end);
  }

  #endFor(side: { chat?: string; id?: string; partner: string }, reason: EndReason): Extract<Envelope, { t: 'end' }> {
    return { t: 'end', to: side.partner, chat: side.id ?? side.chat ?? '', reason };
  }

  /** This session's side of its chat is over; it is told, now or on resume. */
  #closeSide(session: Session, side: ChatSide, reason: EndReason): void {
    this.buffer.release(side.inbox);
    side.inflight = null;
    session.releaseMessage();
    session.chat = null;
    session.state = 'idle';
    this.#orphans.get(session)?.cancel();
    this.#orphans.delete(session);
    if (!session.conn) this.sessions.chatEnded(session);
    if (session.conn) this.#send(session, { type: 'ended', reason });
    else session.pendingEnd = reason;
    if (this.sessions.get(session.id) === session) this.#claim(session);
  }

  #report(session: Session): void {
    const side = this.#chatOf(session);
    if (!side) return;
    this.#settle('matchmaker', this.#broker.matchmaker.block(session.id, side.partner));
    this.#metrics.reports.inc();
    this.#endChat(session, 'you_reported', 'partner_left', session.address);
  }

  #block(session: Session): void {
    const side = this.#chatOf(session);
    if (!side) return;
    this.#settle('matchmaker', this.#broker.matchmaker.block(session.id, side.partner));
    this.#metrics.blocks.inc();
    this.#endChat(session, 'you_blocked', 'partner_left');
  }

  // ---- messages --------------------------------------------------------------

  #msg(session: Session, f: MsgFrame): void {
    const side = session.chat;
    if (!side) return this.#error(session, 'not_in_chat', f.id);
    if (this.#outOfResendOrder(session, side, f.id)) return;
    const ts = this.#clock.now();
    const partner = this.#localPartner(side);
    if (partner || side.partnerNode === this.#node) {
      const inbox = partner?.chat;
      // Both sides here end together, so the partner is always here; this guards the impossible.
      if (!partner || !inbox || inbox.id !== side.id) return this.#error(session, 'not_in_chat', f.id);
      return this.#stored(session, side, f.id, this.#store(partner, inbox, f.id, f.body, f.kind, ts));
    }
    const env: Envelope = {
      t: 'msg',
      to: side.partner,
      chat: side.id,
      from: session.id,
      node: this.#node,
      id: f.id,
      body: f.body,
      ts,
    };
    if (f.kind !== undefined) env.kind = f.kind;
    // A partner whose instance died gets nothing until it resumes somewhere: the client keeps the message.
    if (this.#orphans.has(session) || !this.#broker.send(side.partnerNode, env)) {
      // Nothing was sent: the client keeps the message and sends it again, in order (like a rate refusal).
      const now = this.#clock.now();
      session.holdMessage(f.id, now + UNAVAILABLE_RETRY_MS + HOLD_GRACE_MS);
      return this.#error(session, 'unavailable', f.id, undefined, UNAVAILABLE_RETRY_MS);
    }
    side.inflight ??= new Map();
    side.inflight.set(f.id, env);
  }

  /**
   * The recipient's side takes a message: a seq from its inbox (the one
   * already given, for a retry), buffered before it is written, because the
   * buffer, not the socket, is what a resume trusts. Returns the seq.
   */
  #store(recipient: Session, side: ChatSide, id: string, body: string, kind: string | undefined, ts: number): number {
    const inbox = side.inbox;
    const { seq, duplicate } = this.buffer.assignSeq(inbox, id);
    if (!duplicate) {
      const frame = encodeMsg(seq, id, body, kind, ts);
      this.buffer.append(inbox, seq, frame, ts);
      this.#metrics.messagesRelayed.inc();
      recipient.conn?.send(frame);
    }
    return seq;
  }

  /** The partner's side stored the sender's message as `seq`. */
  #stored(sender: Session, side: ChatSide, id: string, seq: number): void {
    if (seq > side.sentSeq) side.sentSeq = seq;
    if (side.inflight?.delete(id)) {
      side.undelivered ??= [];
      side.undelivered.push([seq, id]);
    }
    sender.conn?.send(encodeSent(id, seq));
  }

  /** After a rebuild, messages must come again in their first order: anything else is refused (and comes later). */
  #outOfResendOrder(session: Session, side: ChatSide, id: string): boolean {
    const order = side.resendOrder;
    if (!order) return false;
    if (order.ids.length === 0 || this.#clock.now() > order.until) {
      side.resendOrder = null;
      return false;
    }
    if (order.ids[0] === id) {
      order.ids.shift();
      return false;
    }
    this.#error(session, 'unavailable', id, undefined, RESEND_RETRY_MS);
    return true;
  }

  #ack(session: Session, seq: number): void {
    const side = this.#chatOf(session);
    if (!side) return;
    const inbox = side.inbox;
    if (seq > inbox.lastSeq) return this.#error(session, 'bad_field', undefined, 'ack seq is beyond the last message.');
    if (!this.buffer.ack(inbox, seq)) return;
    // With the partner here (always, alone) the receipt is handed over directly: no envelope on the hot path.
    const partner = this.#localPartner(side);
    if (partner) this.#delivered(partner, side.id, seq);
    else this.#sendTo(side.partnerNode, { t: 'delivered', to: side.partner, chat: side.id, seq });
  }

  #read(session: Session, seq: number): void {
    const side = this.#chatOf(session);
    if (!side) return;
    const inbox = side.inbox;
    if (seq > inbox.lastSeq)
      return this.#error(session, 'bad_field', undefined, 'read seq is beyond the last message.');
    if (seq <= inbox.readSeq) return;
    inbox.readSeq = seq;
    const partner = this.#localPartner(side);
    if (partner) this.#readBy(partner, side.id, seq);
    else this.#sendTo(side.partnerNode, { t: 'read', to: side.partner, chat: side.id, seq });
  }

  /** The partner's session, if it is on this instance. */
  #localPartner(side: ChatSide): Session | undefined {
    return side.partnerNode === this.#node ? this.sessions.get(side.partner) : undefined;
  }

  /** The partner acknowledged this session's messages up to `seq`. */
  #delivered(s: Session, chat: string, seq: number): void {
    const side = s.chat;
    if (!side || side.id !== chat || seq <= side.deliveredSeq) return;
    side.deliveredSeq = seq;
    const kept = side.undelivered;
    while (kept && kept.length > 0 && (kept[0] as [number, string])[0] <= seq) kept.shift();
    this.#send(s, { type: 'delivered', seq });
  }

  /** The partner read this session's messages up to `seq`. */
  #readBy(s: Session, chat: string, seq: number): void {
    const side = s.chat;
    if (!side || side.id !== chat || seq <= side.readSeq) return;
    side.readSeq = seq;
    this.#send(s, { type: 'read', seq });
  }

  #chatOf(session: Session): ChatSide | null {
    if (!session.chat) this.#error(session, 'not_in_chat');
    return session.chat;
  }

  #presence(side: ChatSide, here: boolean): Envelope {
    return { t: 'presence', to: side.partner, chat: side.id, here, node: this.#node };
  }

  // ---- envelopes: what the other side of a chat says -------------------------

  readonly #envelopeHandlers: EnvelopeHandlers = {
    matched: (s, e) => this.#onMatched(s, e),
    msg: (s, e) => {
      const side = s.chat;
      if (!side || side.id !== e.chat) return;
      this.#metrics.crossDelivery.observe(Math.max(0, this.#clock.now() - e.ts) / 1000);
      const seq = this.#store(s, side, e.id, e.body, e.kind, e.ts);
      this.#sendTo(e.node, { t: 'stored', to: e.from, chat: e.chat, id: e.id, seq });
    },
    stored: (s, e) => {
      const side = s.chat;
      if (side && side.id === e.chat) this.#stored(s, side, e.id, e.seq);
    },
    delivered: (s, e) => this.#delivered(s, e.chat, e.seq),
    read: (s, e) => this.#readBy(s, e.chat, e.seq),
    typing: (s, e) => {
      if (s.chat?.id === e.chat) this.#send(s, { type: 'typing', on: e.on });
    },
    presence: (s, e) => {
      const side = s.chat;
      if (!side || side.id !== e.chat) return;
      const moved = side.partnerNode !== e.node;
      side.partnerNode = e.node;
      if (moved) this.#overtakeForwarded(s, side);
      this.#orphans.get(s)?.cancel();
      this.#orphans.delete(s);
      if (side.partnerHere === e.here) return;
      side.partnerHere = e.here;
      this.#send(s, { type: 'partner', state: e.here ? 'back' : 'away' });
    },
    end: (s, e) => {
      const side = s.chat;
      if (!side || side.id !== e.chat) return;
      if (e.reporter !== undefined) this.#settle('reports', this.#broker.reports.report([s.id, s.address], e.reporter));
      this.#closeSide(s, side, e.reason);
    },
    adopt: (s, e) => this.#giveAway(s, e),
    adopted: (_s, e) => this.#onAdopted(e),
    rebuild: (s, e) => this.#rebuildFor(s, e),
    rebuilt: (_s, e) => this.#onRebuilt(e),
  };

  /**
   * The partner's instance died and the partner resumed on `e.node`: its side
   * is rebuilt from this one. What this session had sent beyond the partner's
   * last received seq was lost with that instance: the client is told it is
   * delivered up to there and asked to send the rest again (`resend`).
   */
  #rebuildFor(s: Session, e: Extract<Envelope, { t: 'rebuild' }>): void {
    const side = s.chat;
    if (!side || side.id !== e.chat || side.partner !== e.from)
      return this.#sendTo(e.node, { t: 'rebuilt', to: e.from, req: e.req, side: null });
    side.partnerNode = e.node;
    this.#orphans.get(s)?.cancel();
    this.#orphans.delete(s);
    this.#sendTo(e.node, {
      t: 'rebuilt',
      to: e.from,
      req: e.req,
      side: {
        chat: side.id,
        partner: s.id,
        partnerNode: this.#node,
        partnerHere: s.conn !== null,
        interests: [...side.interests],
        initiator: !side.initiator,
        via: side.via,
        sentSeq: side.inbox.lastSeq,
        deliveredSeq: side.inbox.ackedSeq,
        readSeq: side.inbox.readSeq,
        inboxReadSeq: side.readSeq,
      },
    });
    if (!side.partnerHere) {
      side.partnerHere = true;
      this.#send(s, { type: 'partner', state: 'back' });
    }
    if (e.lastSeq > side.deliveredSeq) {
      side.deliveredSeq = e.lastSeq;
      this.#send(s, { type: 'delivered', seq: e.lastSeq });
    }
    // Lost with the dead instance: what it stored beyond what the partner received, then what it never stored.
    const lost = (side.undelivered ?? []).filter(([seq]) => seq > e.lastSeq).map(([, id]) => id);
    for (const id of side.inflight?.keys() ?? []) lost.push(id);
    side.resendOrder = lost.length > 0 ? { ids: lost, until: this.#clock.now() + HOLD_GRACE_MS } : null;
    side.sentSeq = e.lastSeq;
    side.inflight = null;
    side.undelivered = null;
    // The resend restarts the order from the oldest lost message: a message held back before it no longer leads.
    s.releaseMessage();
    this.#send(s, { type: 'resend', after: e.lastSeq });
  }

  /**
   * The partner moved. What is still on its way went to its old instance, which forwards it, but a message sent
   * from now on would race the forwarded ones: everything unstored goes again to the new instance first, in order
   * (its dedupe drops whichever copy arrives second). If the partner moved here, it is stored here at once, before
   * anything newer can be.
   */
  #overtakeForwarded(s: Session, side: ChatSide): void {
    const inflight = side.inflight;
    if (!inflight || inflight.size === 0) return;
    const partner = this.#localPartner(side);
    if (!partner) {
      for (const env of inflight.values()) this.#broker.send(side.partnerNode, env);
      return;
    }
    const inbox = partner.chat;
    if (!inbox || inbox.id !== side.id) return;
    for (const env of [...inflight.values()])
      if (env.t === 'msg')
        this.#stored(s, side, env.id, this.#store(partner, inbox, env.id, env.body, env.kind, env.ts));
  }

  #onEnvelope(env: Envelope): void {
    if (this.#closed) return;
    if (env.t === 'adopted') return this.#onAdopted(env);
    if (env.t === 'rebuilt') return this.#onRebuilt(env);
    const session = this.sessions.get(env.to);
    if (session) {
      const handler = this.#envelopeHandlers[env.t] as (s: Session, e: Envelope) => void;
      return handler(session, env);
    }
    const moved = this.#movedTo.get(env.to);
    if (moved) return void this.#sendTo(moved.node, env);
    if (WAITS_FOR_ADOPTION.has(env.t)) {
      const adopting = this.#adoptingHere(env.to);
      if (adopting && adopting.early.length < this.#config.bufferSessionMaxMessages)
        return void adopting.early.push(env);
    }
    // Nobody here by that name: answer what must be answered, so no one waits on a session that is gone.
    if (env.t === 'adopt') this.#sendTo(env.node, { t: 'adopted', to: env.to, req: env.req, snapshot: null });
    else if (env.t === 'rebuild') this.#sendTo(env.node, { t: 'rebuilt', to: env.from, req: env.req, side: null });
    else if (env.t === 'msg')
      this.#sendTo(env.node, { t: 'end', to: env.from, chat: env.chat, reason: 'partner_gone' });
    else if (env.t === 'matched')
      this.#sendTo(env.node, { t: 'end', to: env.partner, chat: env.chat, reason: 'partner_gone' });
  }

  /** To the partner's side: handled here at once if the partner is here, else sent over the bus. */
  #toPartner(side: ChatSide, env: Envelope, keepIfDown = true): void {
    this.#deliver(side.partnerNode, env, keepIfDown);
  }

  #deliver(node: string, env: Envelope, keepIfDown = true): void {
    if (node === this.#node) this.#onEnvelope(env);
    else this.#sendTo(node, env, keepIfDown);
  }

  /** Over the bus; kept for later if it is down (unless it is only worth sending now, like typing). */
  #sendTo(node: string, env: Envelope, keepIfDown = true): void {
    if (node === this.#node) return this.#onEnvelope(env);
    if (this.#broker.send(node, env) || !keepIfDown) return;
    if (this.#unsent.length >= this.#config.maxSessions) this.#unsent.shift();
    this.#unsent.push({ node, env });
  }

  /** The bus is back: what waited is sent, in order, then messages that may have been lost in flight. */
  #onBusBack(): void {
    const unsent = this.#unsent;
    this.#unsent = [];
    for (const { node, env } of unsent) this.#sendTo(node, env);
    for (const s of this.sessions.values()) {
      this.#claim(s);
      const side = s.chat;
      if (side?.inflight) for (const env of side.inflight.values()) this.#broker.send(side.partnerNode, env);
      if (side && side.partnerNode !== this.#node) {
        // Marks are idempotent: sending them again repairs any lost while the bus was down.
        this.#toPartner(side, this.#presence(side, s.conn !== null));
        if (side.inbox.ackedSeq > 0)
          this.#toPartner(side, { t: 'delivered', to: side.partner, chat: side.id, seq: side.inbox.ackedSeq });
        if (side.inbox.readSeq > 0)
          this.#toPartner(side, { t: 'read', to: side.partner, chat: side.id, seq: side.inbox.readSeq });
      }
      if (s.state === 'queued' && s.inviteCode === null && s.waiting) {
        const w = s.waiting;
        // Not find(): a waiter claimed while this instance could not hear would be queued for a second partner.
        this.#settle('matchmaker', this.#broker.matchmaker.refind({ id: s.id, node: this.#node, ...w }));
      } else if (s.state === 'queued' && s.inviteCode !== null) {
        this.#settle('invites', this.#broker.invites.join(s.inviteCode, s.id, this.#node));
      }
    }
  }

  /**
   * Another instance is gone (its liveness expired). Partners it held are away
   * now; each chat ends for good unless its partner resumes somewhere within
   * the resume window (a `presence` from its new instance cancels the end).
   */
  #onNodeGone(node: string): void {
    // An instance that died will not answer: its sessions' clients get a fresh identity now, not in 3 s.
    for (const pending of [...this.#adoptions.values()]) if (pending.node === node) pending.giveUp();
    for (const [id, moved] of this.#movedTo) {
      if (moved.node !== node) continue;
      moved.timer.cancel();
      this.#movedTo.delete(id);
    }
    for (const s of this.sessions.values()) {
      const side = s.chat;
      if (!side || side.partnerNode !== node || this.#orphans.has(s)) continue;
      if (side.partnerHere) {
        side.partnerHere = false;
        this.#send(s, { type: 'partner', state: 'away' });
      }
      this.#orphans.set(
        s,
        this.#clock.schedule(this.#config.resumeWindowMs, () => {
          this.#orphans.delete(s);
          if (s.chat === side) this.#closeSide(s, side, 'partner_gone');
        }),
      );
    }
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

  /** A store call's answer, or `fallback` if it failed (the broker is down or timed out). */
  async #call<T, F>(what: string, fn: () => Promise<T>, fallback: F): Promise<T | F> {
    try {
      return await fn();
    } catch (err) {
      this.#onFault(what, err);
      return fallback;
    }
  }

  /** A store call nobody waits for; a failure is reported, never thrown. */
  #settle(what: string, p: Promise<unknown>): void {
    p.catch((err: unknown) => this.#onFault(what, err));
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
      if (s.state === 'queued' && s.inviteCode === null)
        this.#settle('matchmaker', this.#broker.matchmaker.cancel(s.id));
    }
    for (const t of this.#orphans.values()) t.cancel();
    this.#orphans.clear();
    for (const t of this.#resends) t.cancel();
    this.#resends.clear();
    for (const m of this.#movedTo.values()) m.timer.cancel();
    this.#movedTo.clear();
    for (const p of this.#adoptions.values()) {
      p.timer.cancel();
      p.resolve(null);
    }
    this.#adoptions.clear();
    this.sessions.clear();
  }

  /** Expired entries are dropped lazily; call this now and then so memory figures stay true. */
  sweep(): void {
    this.buffer.purgeStale();
  }

  /** Keeps every shared key about this instance's sessions alive (call well within the resume window). */
  refreshShared(): void {
    if (!this.#broker.clustered || !this.#broker.up) return;
    const ids = [...this.sessions.values()].map((s) => s.id);
    this.#settle('directory', this.#broker.directory.refresh(ids));
  }
}
