/**
 * A small typed client for protocol v1, for the web page, tests and benches.
 * It works with any WebSocket that has the browser's shape (the browser's own,
 * or `ws` in Node). It keeps what a resume needs (identity, chat, last seq),
 * drops duplicate deliveries, acks what it received, and re-sends messages the
 * server had not confirmed (same ids, so the server never relays them twice).
 *
 * Messages leave through an outbox, in order: paced by the limits the server
 * announced in its welcome (so a fast typist rarely meets `rate_limited`),
 * paused when the server refuses one for rate anyway (a burst bunched up on
 * the way) or cannot reach the partner (`unavailable`, cluster mode), and
 * sent again from the refused one on after `retryAfterMs`. A message stays
 * kept after its `sent` until its `delivered`: if the partner's instance dies
 * before delivering it, the server says `resend` and it goes again.
 */
import { type Clock, systemClock, type TimerHandle } from './clock.js';
import { type BucketPolicy, msUntilToken, takeToken } from './limits.js';
import {
  type ClientFrame,
  chunkCost,
  encode,
  FILE_KIND,
  type IncomingMsgFrame,
  type Limits,
  type ServerFrame,
  type ServerFrameOf,
  type ServerFrameType,
  type WelcomeFrame,
} from './protocol.js';

export interface WebSocketLike {
  readonly readyState: number;
  send(data: string): void;
  close(code?: number, reason?: string): void;
  onopen: ((ev: unknown) => void) | null;
  onmessage: ((ev: { data: unknown }) => void) | null;
  onclose: ((ev: { code: number; reason: string }) => void) | null;
  onerror: ((ev: unknown) => void) | null;
}

export type SocketFactory = (url: string) => WebSocketLike;

export interface RelayClientOptions {
  /** Where to connect; a function is asked again on every connect (another instance after a drain, say). */
  url: string | (() => string);
  createSocket: SocketFactory;
  /** Acknowledge received messages automatically (default true). */
  autoAck?: boolean;
  /** Time for pacing and pauses (tests inject one). */
  clock?: Clock;
}

type Listener<T extends ServerFrameType> = (frame: ServerFrameOf<T>) => void;
type AnyListener = (frame: ServerFrame) => void;

interface Outgoing {
  readonly frame: { type: 'msg'; id: string; body: string; kind?: string };
  /** Written to the current socket; cleared when the socket closes or the server refuses it for rate. */
  written: boolean;
}

/**
 * Frames that cost nothing from the server's frame budget (see docs/protocol.md, "Rate limits"): hello comes
 * before any budget, typing has its own, and receipts are free when they move forward, as the client's do.
 */
const UNMETERED = new Set<string>(['hello', 'typing', 'ack', 'read']);

/** A server bucket mirrored to pace the outbox: its policy and its one number (limits.ts). */
interface Mirror {
  readonly policy: BucketPolicy;
  fullAt: number;
}

const OPEN = 1;

/** Received message ids remembered per chat (the server's DEDUPE_WINDOW is 1,024 too). */
const RECENT_IDS = 1024;

export class RelayClient {
  id: string | null = null;
  token: string | null = null;
  chatId: string | null = null;
  /** Highest seq received in the current chat. */
  lastSeq = 0;
  /** Close code and reason of the last socket, once closed. */
  lastClose: { code: number; reason: string } | null = null;
  /** The limits of the last welcome (file transfers size their chunks and window by them). */
  limits: Limits | null = null;

  readonly #opts: Required<RelayClientOptions>;
  readonly #listeners = new Map<string, Set<AnyListener>>();
  /** Messages not yet confirmed by a `sent`, in the order they were written. */
  #outbox = new Map<string, Outgoing>();
  /** Ids of the messages received in this chat, oldest first (bounded), to drop one that comes twice. */
  readonly #recentIds = new Set<string>();
  /** Messages confirmed by a `sent` but not yet `delivered`, with their seqs, in order. */
  readonly #undelivered = new Map<string, { frame: Outgoing['frame']; seq: number }>();
  readonly #closeListeners = new Set<(close: { code: number; reason: string }) => void>();
  #socket: WebSocketLike | null = null;
  /** The current socket has had its welcome: messages may go out. */
  #ready = false;
  #ackScheduled = false;
  #counter = 0;
  /** The server's frame budget as its welcome announced it, mirrored to pace the outbox. */
  #budget: Mirror | null = null;
  /** The server's file-chunk byte budget, mirrored the same way. */
  #fileBudget: Mirror | null = null;
  /** Set while the outbox waits (for the budget, or for a refusal's retry hint). */
  #pumpTimer: TimerHandle | null = null;
  #pausedUntil = 0;

  constructor(opts: RelayClientOptions) {
    this.#opts = { autoAck: true, clock: systemClock, ...opts };
  }

  /**
   * Opens a socket and says hello, resuming the previous identity if there is one.
   * A socket still open from before is closed first and forgotten: frames and
   * close events of a replaced socket never reach listeners.
   */
  connect(): Promise<WelcomeFrame> {
    const previous = this.#socket;
    const url = this.#opts.url;
    const socket = this.#opts.createSocket(typeof url === 'string' ? url : url());
    this.#socket = socket;
    this.#ready = false;
    this.lastClose = null;
    // What went to an old socket may have died with it (its instance drained or died): it all goes again after the
    // welcome. The server recognises the ids it already has, so nothing is relayed twice.
    for (const out of this.#outbox.values()) out.written = false;
    if (previous) {
      previous.onclose = null;
      previous.onmessage = null;
      previous.close();
    }
    return new Promise((resolve, reject) => {
      const offWelcome = this.once('welcome', resolve);
      socket.onopen = () => {
        const resume =
          this.id && this.token
            ? { id: this.id, token: this.token, lastSeq: this.chatId ? this.lastSeq : 0 }
            : undefined;
        this.send(resume ? { type: 'hello', v: 1, resume } : { type: 'hello', v: 1 });
      };
      socket.onmessage = (ev) => {
        if (this.#socket === socket && typeof ev.data === 'string') this.#receive(JSON.parse(ev.data) as ServerFrame);
      };
      socket.onerror = () => {};
      socket.onclose = (ev) => {
        offWelcome();
        reject(new Error(`socket closed before welcome (${ev.code})`));
        if (this.#socket !== socket) return;
        this.#socket = null;
        this.#ready = false;
        for (const out of this.#outbox.values()) out.written = false;
        this.lastClose = { code: ev.code, reason: ev.reason };
        for (const fn of this.#closeListeners) fn(this.lastClose);
      };
    });
  }

  get connected(): boolean {
    return this.#socket?.readyState === OPEN;
  }

  send(frame: ClientFrame): void {
    if (this.#socket?.readyState !== OPEN) return;
    this.#socket.send(encode(frame));
    // Control frames are never held back; they only use up what paced messages may spend.
    const budget = this.#budget;
    if (budget && !UNMETERED.has(frame.type)) {
      const interval = 1000 / budget.policy.perSecond;
      budget.fullAt = Math.max(budget.fullAt, this.#opts.clock.now()) + interval;
    }
  }

  /**
   * Sends a chat message through the outbox; returns its client id. It is kept
   * until the server confirms it, and re-sent after a resume or a refusal for rate.
   */
  sendMessage(body: string, kind?: string): string {
    const id = `${Date.now().toString(36)}-${(this.#counter++).toString(36)}`;
    this.#outbox.set(id, {
      frame: kind === undefined ? { type: 'msg', id, body } : { type: 'msg', id, body, kind },
      written: false,
    });
    this.#pump();
    return id;
  }

  /** Messages not yet confirmed by the server (waiting in the outbox or in flight). */
  get unconfirmed(): number {
    return this.#outbox.size;
  }

  /** Messages confirmed by the server but not yet delivered to the partner. */
  get undelivered(): number {
    return this.#undelivered.size;
  }

  /** Writes what the outbox holds, in order, as far as the budget allows; then waits for it. */
  #pump(): void {
    if (this.#pumpTimer || !this.#ready || this.#socket?.readyState !== OPEN) return;
    const now = this.#opts.clock.now();
    if (now < this.#pausedUntil) return this.#pumpAt(this.#pausedUntil - now);
    for (const out of this.#outbox.values()) {
      if (out.written) continue;
      const wait = this.#spend(out.frame, now);
      if (wait > 0) return this.#pumpAt(wait);
      out.written = true;
      this.#socket.send(encode(out.frame));
    }
  }

  #pumpAt(ms: number): void {
    this.#pumpTimer = this.#opts.clock.schedule(ms, () => {
      this.#pumpTimer = null;
      this.#pump();
    });
  }

  /** The mirrored budget a message spends from, and what it costs there: a file chunk its bytes, else one frame. */
  #costOf(frame: Outgoing['frame']): [Mirror | null, number] {
    return frame.kind === FILE_KIND ? [this.#fileBudget, chunkCost(frame.body)] : [this.#budget, 1];
  }

  /** Takes what a message costs from its mirrored budget: 0, or the ms until there is that much. */
  #spend(frame: Outgoing['frame'], now: number): number {
    const [budget, cost] = this.#costOf(frame);
    if (!budget) return 0;
    const next = takeToken(budget.policy, budget.fullAt, now, cost);
    if (next < 0) return Math.max(1, msUntilToken(budget.policy, budget.fullAt, now, cost));
    budget.fullAt = next;
    return 0;
  }

  /**
   * Takes back a message not yet confirmed (a cancelled file transfer's chunks): it is not sent, or not sent again.
   * One already written may still reach the partner, who must be ready to ignore it. True if it was still kept.
   */
  withdraw(id: string): boolean {
    return this.#outbox.delete(id);
  }

  /** The server refused message `id` for rate: it and everything after it go again once the hint has passed. */
  #refusedForRate(id: string, retryAfterMs: number): void {
    const refused = this.#outbox.get(id);
    if (!refused) return;
    let later = false;
    for (const [key, out] of this.#outbox) {
      later ||= key === id;
      if (later) out.written = false;
    }
    const now = this.#opts.clock.now();
    this.#pausedUntil = Math.max(this.#pausedUntil, now + retryAfterMs);
    // The server's bucket (the file budget for a chunk) is empty until then: mirror that, so what follows is paced.
    const [budget, cost] = this.#costOf(refused.frame);
    if (budget) {
      const interval = 1000 / budget.policy.perSecond;
      budget.fullAt = Math.max(budget.fullAt, this.#pausedUntil + (budget.policy.burst - cost) * interval);
    }
    this.#pumpTimer?.cancel();
    this.#pumpTimer = null;
    this.#pump();
  }

  /** Drops the socket without leaving, as a network failure would. */
  drop(): void {
    this.#socket?.close();
  }

  close(code = 1000): void {
    this.#socket?.close(code);
  }

  on<T extends ServerFrameType>(type: T, fn: Listener<T>): () => void;
  on(type: '*', fn: AnyListener): () => void;
  on(type: string, fn: AnyListener): () => void {
    const set = this.#listeners.get(type) ?? new Set<AnyListener>();
    this.#listeners.set(type, set);
    set.add(fn);
    return () => set.delete(fn);
  }

  onClosed(fn: (close: { code: number; reason: string }) => void): () => void {
    this.#closeListeners.add(fn);
    return () => this.#closeListeners.delete(fn);
  }

  once<T extends ServerFrameType>(type: T, fn: Listener<T>): () => void {
    const off = this.on(type, (frame) => {
      off();
      fn(frame);
    });
    return off;
  }

  /** Resolves with the next frame of `type` (optionally matching `where`), or rejects after `timeoutMs`. */
  next<T extends ServerFrameType>(
    type: T,
    where: (f: ServerFrameOf<T>) => boolean = () => true,
    timeoutMs = 5000,
  ): Promise<ServerFrameOf<T>> {
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        off();
        reject(new Error(`timed out waiting for "${type}"`));
      }, timeoutMs);
      const off = this.on(type, (frame) => {
        if (!where(frame)) return;
        clearTimeout(timer);
        off();
        resolve(frame);
      });
    });
  }

  #receive(frame: ServerFrame): void {
    switch (frame.type) {
      case 'welcome':
        this.#welcome(frame);
        break;
      case 'matched':
        this.#enterChat(frame.chat);
        break;
      case 'ended':
        this.#enterChat(null);
        break;
      case 'sent': {
        const out = this.#outbox.get(frame.id);
        this.#outbox.delete(frame.id);
        if (out) this.#undelivered.set(frame.id, { frame: out.frame, seq: frame.seq });
        break;
      }
      case 'delivered':
        this.#deliveredUpTo(frame.seq);
        break;
      case 'resend':
        this.#resend();
        break;
      case 'error':
        if (frame.id === undefined) break;
        if (frame.code === 'rate_limited' || frame.code === 'unavailable')
          this.#refusedForRate(frame.id, frame.retryAfterMs ?? 1000);
        // Any other error about a message is final for it (too long, no chat): never send it again.
        else this.#outbox.delete(frame.id);
        break;
      case 'gap':
        this.lastSeq = Math.max(this.lastSeq, frame.to);
        break;
      case 'msg':
        if (!this.#accept(frame)) return;
        break;
    }
    this.#emit(frame);
  }

  #welcome(frame: WelcomeFrame): void {
    const sameIdentity = frame.resumed && frame.id === this.id;
    this.id = frame.id;
    this.token = frame.token;
    this.limits = frame.limits;
    // A fifth of each burst (at least one frame) is kept in reserve: frames the client spaced out can reach the
    // server bunched together (a busy event loop, a network queue), and the reserve absorbs that much jitter.
    this.#budget = {
      policy: {
        clock: this.#opts.clock,
        perSecond: frame.limits.rateLimitPerSec,
        burst: Math.max(1, frame.limits.rateLimitBurst - Math.max(1, Math.ceil(frame.limits.rateLimitBurst / 5))),
      },
      // The server's bucket is the session's, not the socket's: a reconnect refills nothing here either.
      fullAt: this.#budget?.fullAt ?? 0,
    };
    // A server from before file transfers announces no file budget: chunks then go unpaced (and it refuses them).
    this.#fileBudget =
      frame.limits.fileRateBytesPerSec > 0
        ? {
            policy: {
              clock: this.#opts.clock,
              perSecond: frame.limits.fileRateBytesPerSec,
              // The same reserve, but never below one whole chunk, or a chunk could never go.
              burst: Math.max(
                Math.floor(frame.limits.fileRateBurstBytes * 0.8),
                Math.min(frame.limits.fileRateBurstBytes, frame.limits.maxChunkBytes),
              ),
            },
            fullAt: this.#fileBudget?.fullAt ?? 0,
          }
        : null;
    this.#ready = true;
    if (!sameIdentity || !frame.chat || frame.chat.id !== this.chatId) this.#enterChat(frame.chat?.id ?? null);
    // A `delivered` sent while this client was away never reached it: the welcome's mark says what arrived.
    else this.#deliveredUpTo(frame.chat.deliveredSeq);
    // Resumed into the same chat: what the server had not confirmed goes again, in order.
    this.#pump();
  }

  /** The partner has every message of ours up to `seq`: none of those is kept for a `resend` any more. */
  #deliveredUpTo(seq: number): void {
    for (const [id, kept] of this.#undelivered) if (kept.seq <= seq) this.#undelivered.delete(id);
  }

  /** A different chat (or none) starts: nothing received yet, nothing of the old chat to re-send. */
  #enterChat(chatId: string | null): void {
    this.chatId = chatId;
    this.lastSeq = 0;
    this.#recentIds.clear();
    this.#outbox.clear();
    this.#undelivered.clear();
    this.#pausedUntil = 0;
  }

  /** The partner's instance lost what it had not delivered: all of it goes again, before anything newer. */
  #resend(): void {
    const again = new Map<string, Outgoing>();
    for (const [id, kept] of this.#undelivered) again.set(id, { frame: kept.frame, written: false });
    for (const [id, out] of this.#outbox) again.set(id, { frame: out.frame, written: false });
    this.#undelivered.clear();
    this.#outbox = again;
    this.#pumpTimer?.cancel();
    this.#pumpTimer = null;
    this.#pump();
  }

  /**
   * Drops duplicates and schedules the ack. A seq already received is a duplicate; so is a message id already
   * received under another seq: after the partner's instance died, a message it had stored and delivered but not
   * yet confirmed to the sender comes again under a new seq (docs/protocol.md, "When an instance dies").
   */
  #accept(frame: IncomingMsgFrame): boolean {
    if (frame.seq <= this.lastSeq) return false;
    this.lastSeq = frame.seq;
    const fresh = this.#remember(frame.id);
    if (this.#opts.autoAck && !this.#ackScheduled) {
      this.#ackScheduled = true;
      queueMicrotask(() => {
        this.#ackScheduled = false;
        if (this.chatId) this.send({ type: 'ack', seq: this.lastSeq });
      });
    }
    return fresh;
  }

  /** Records a received message id; false if it was already there. The last RECENT_IDS ids of the chat are kept. */
  #remember(id: string): boolean {
    if (this.#recentIds.has(id)) return false;
    this.#recentIds.add(id);
    if (this.#recentIds.size > RECENT_IDS) this.#recentIds.delete(this.#recentIds.values().next().value as string);
    return true;
  }

  #emit(frame: ServerFrame): void {
    for (const fn of this.#listeners.get(frame.type) ?? []) fn(frame);
    for (const fn of this.#listeners.get('*') ?? []) fn(frame);
  }
}
