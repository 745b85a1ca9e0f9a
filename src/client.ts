/**
 * A small typed client for protocol v1, for the web page, tests and benches.
 * It works with any WebSocket that has the browser's shape (the browser's own,
 * or `ws` in Node). It keeps what a resume needs (identity, chat, last seq),
 * drops duplicate deliveries, acks what it received, and re-sends messages the
 * server had not confirmed (same ids, so the server never relays them twice).
 */
import {
  type ClientFrame,
  encode,
  type IncomingMsgFrame,
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
  url: string;
  createSocket: SocketFactory;
  /** Acknowledge received messages automatically (default true). */
  autoAck?: boolean;
}

type Listener<T extends ServerFrameType> = (frame: ServerFrameOf<T>) => void;
type AnyListener = (frame: ServerFrame) => void;

interface Outgoing {
  id: string;
  body: string;
  kind?: string;
}

const OPEN = 1;

export class RelayClient {
  id: string | null = null;
  token: string | null = null;
  chatId: string | null = null;
  /** Highest seq received in the current chat. */
  lastSeq = 0;
  /** Close code and reason of the last socket, once closed. */
  lastClose: { code: number; reason: string } | null = null;

  readonly #opts: Required<RelayClientOptions>;
  readonly #listeners = new Map<string, Set<AnyListener>>();
  readonly #unconfirmed = new Map<string, Outgoing>();
  readonly #closeListeners = new Set<(close: { code: number; reason: string }) => void>();
  #socket: WebSocketLike | null = null;
  #ackScheduled = false;
  #counter = 0;

  constructor(opts: RelayClientOptions) {
    this.#opts = { autoAck: true, ...opts };
  }

  /**
   * Opens a socket and says hello, resuming the previous identity if there is one.
   * A socket still open from before is closed first and forgotten: frames and
   * close events of a replaced socket never reach listeners.
   */
  connect(): Promise<WelcomeFrame> {
    const previous = this.#socket;
    const socket = this.#opts.createSocket(this.#opts.url);
    this.#socket = socket;
    this.lastClose = null;
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
        this.lastClose = { code: ev.code, reason: ev.reason };
        for (const fn of this.#closeListeners) fn(this.lastClose);
      };
    });
  }

  get connected(): boolean {
    return this.#socket?.readyState === OPEN;
  }

  send(frame: ClientFrame): void {
    if (this.#socket?.readyState === OPEN) this.#socket.send(encode(frame));
  }

  /** Sends a chat message; returns its client id. Kept until the server confirms it, re-sent after a resume. */
  sendMessage(body: string, kind?: string): string {
    const id = `${Date.now().toString(36)}-${(this.#counter++).toString(36)}`;
    const out: Outgoing = kind === undefined ? { id, body } : { id, body, kind };
    this.#unconfirmed.set(id, out);
    this.send({ type: 'msg', ...out });
    return id;
  }

  /** Sends an unconfirmed message again under its id (e.g. after `rate_limited`); false if it was confirmed. */
  retry(id: string): boolean {
    const out = this.#unconfirmed.get(id);
    if (out) this.send({ type: 'msg', ...out });
    return out !== undefined;
  }

  /** Forgets an unconfirmed message the server refused for good, so a resume does not send it again. */
  discard(id: string): void {
    this.#unconfirmed.delete(id);
  }

  get unconfirmed(): number {
    return this.#unconfirmed.size;
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
      case 'sent':
        this.#unconfirmed.delete(frame.id);
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
    if (!sameIdentity || !frame.chat || frame.chat.id !== this.chatId) return this.#enterChat(frame.chat?.id ?? null);
    for (const out of this.#unconfirmed.values()) this.send({ type: 'msg', ...out });
  }

  /** A different chat (or none) starts: nothing received yet, nothing of the old chat to re-send. */
  #enterChat(chatId: string | null): void {
    this.chatId = chatId;
    this.lastSeq = 0;
    this.#unconfirmed.clear();
  }

  /** Drops duplicates (already-received seqs) and schedules the ack. */
  #accept(frame: IncomingMsgFrame): boolean {
    if (frame.seq <= this.lastSeq) return false;
    this.lastSeq = frame.seq;
    if (this.#opts.autoAck && !this.#ackScheduled) {
      this.#ackScheduled = true;
      queueMicrotask(() => {
        this.#ackScheduled = false;
        if (this.chatId) this.send({ type: 'ack', seq: this.lastSeq });
      });
    }
    return true;
  }

  #emit(frame: ServerFrame): void {
    for (const fn of this.#listeners.get(frame.type) ?? []) fn(frame);
    for (const fn of this.#listeners.get('*') ?? []) fn(frame);
  }
}
