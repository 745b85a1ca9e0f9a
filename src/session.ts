/**
 * A session is one anonymous identity: it outlives its sockets for the resume
 * window, and holds the per-identity limits so reconnecting does not reset them.
 */
import type { AddressKey } from './address.js';
import type { ChatSide } from './chat.js';
import type { TimerHandle } from './clock.js';
import { type BucketPolicy, msUntilToken, takeToken } from './limits.js';
import type { EndReason, SessionState } from './protocol.js';

/** What the core needs from a socket; ws-handler implements it over uWebSockets.js. */
export interface Connection {
  /** True once the socket is closed (by either side). */
  readonly closed: boolean;
  /** Sends one text frame. Never throws; a closed connection drops it. */
  send(frame: string): void;
  /** Closes with a code from the catalogue in errors.ts. */
  close(code: number, reason: string): void;
}

/** The buckets' settings, made once by the relay and shared by every session. */
export interface SessionPolicies {
  /** Frames per second per session. */
  rate: BucketPolicy;
  /** Typing signals per second per session, apart from `rate`. */
  typing: BucketPolicy;
  /** File-chunk bytes per second per session, apart from `rate` (a chunk costs at least MIN_CHUNK_COST). */
  fileBytes: BucketPolicy;
  /** Protocol violations per minute per session. */
  violations: BucketPolicy;
}

/** What few sessions ever need, made on first use (memory per session is a target in bench/). */
class Rare {
  /** Invite code this session waits on, if any. */
  inviteCode: string | null = null;
  /** Runs when the resume window of a dropped session is over. */
  expiry: TimerHandle | null = null;
  /** A chat that ended while this session was away, told on resume. */
  pendingEnd: EndReason | null = null;
  /** The protocol-violation bucket (see limits.ts: one number, `fullAt`). */
  violationsFullAt = 0;
  /**
   * A message refused for rate, and until when its refusal holds back later
   * messages: they are refused too until it is sent again, so the partner
   * receives messages in the order they were written.
   */
  heldMessage: { id: string; until: number } | null = null;
  /** The file-chunk byte bucket (limits.ts), apart from the frame rate: only sessions that send files need it. */
  fileFullAt = 0;
}

export class Session {
  conn: Connection | null = null;
  state: SessionState = 'idle';
  chat: ChatSide | null = null;
  /** Has looked for a partner (find or join): worth the full resume window. */
  used = false;
  /** Frames refused for rate in a row. */
  floodStreak = 0;
  /** The random wait this session is in: what it asked for and since when (its place if it moves); null after. */
  waiting: { interests: string[]; since: number } | null = null;
  /** Whether `queued` was sent for the current wait (a match may be reported before the find returns). */
  queuedTold = false;
  /** The frame-rate bucket (see limits.ts: one number, not an object per session). */
  #rateFullAt = 0;
  /** The typing-signal bucket, apart so typing never crowds out messages. */
  #typingFullAt = 0;
  #rare: Rare | null = null;

  constructor(
    readonly id: string,
    public address: AddressKey,
    private readonly policies: SessionPolicies,
  ) {}

  #more(): Rare {
    this.#rare ??= new Rare();
    return this.#rare;
  }

  get inviteCode(): string | null {
    return this.#rare?.inviteCode ?? null;
  }
  set inviteCode(code: string | null) {
    if (code !== null || this.#rare) this.#more().inviteCode = code;
  }

  get expiry(): TimerHandle | null {
    return this.#rare?.expiry ?? null;
  }
  set expiry(timer: TimerHandle | null) {
    if (timer !== null || this.#rare) this.#more().expiry = timer;
  }

  get pendingEnd(): EndReason | null {
    return this.#rare?.pendingEnd ?? null;
  }
  set pendingEnd(reason: EndReason | null) {
    if (reason !== null || this.#rare) this.#more().pendingEnd = reason;
  }

  /** Takes one frame's worth of the rate allowance; false if it is spent. */
  takeFrame(): boolean {
    const policy = this.policies.rate;
    const next = takeToken(policy, this.#rateFullAt, policy.clock.now());
    if (next < 0) return false;
    this.#rateFullAt = next;
    return true;
  }

  /** Takes a file chunk's cost in bytes from its own allowance; false if there is not that much. */
  takeFileBytes(cost: number): boolean {
    const policy = this.policies.fileBytes;
    const next = takeToken(policy, this.#rare?.fileFullAt ?? 0, policy.clock.now(), cost);
    if (next < 0) return false;
    this.#more().fileFullAt = next;
    return true;
  }

  /** Milliseconds until a file chunk of `cost` bytes would be allowed. */
  msUntilFileBytes(cost: number): number {
    const policy = this.policies.fileBytes;
    return msUntilToken(policy, this.#rare?.fileFullAt ?? 0, policy.clock.now(), cost);
  }

  /** Takes one typing signal's worth of its own allowance; false if it is spent. */
  takeTyping(): boolean {
    const policy = this.policies.typing;
    const next = takeToken(policy, this.#typingFullAt, policy.clock.now());
    if (next < 0) return false;
    this.#typingFullAt = next;
    return true;
  }

  /** The id of a message refused for rate that later messages wait behind, while that holds. */
  heldMessage(now: number): string | null {
    const held = this.#rare?.heldMessage;
    return held && held.until > now ? held.id : null;
  }

  holdMessage(id: string, until: number): void {
    this.#more().heldMessage = { id, until };
  }

  releaseMessage(): void {
    if (this.#rare) this.#rare.heldMessage = null;
  }

  /** Milliseconds until the rate allowance has a frame again. */
  msUntilFrame(): number {
    const policy = this.policies.rate;
    return msUntilToken(policy, this.#rateFullAt, policy.clock.now());
  }

  /** Counts one protocol violation; false once the per-minute allowance is spent. */
  takeViolation(): boolean {
    const rare = this.#more();
    const policy = this.policies.violations;
    const next = takeToken(policy, rare.violationsFullAt, policy.clock.now());
    if (next < 0) return false;
    rare.violationsFullAt = next;
    return true;
  }
}
