/**
 * A session is one anonymous identity: it outlives its sockets for the resume
 * window, and holds the per-identity limits so reconnecting does not reset them.
 */
import type { AddressKey } from './address.js';
import type { Chat } from './chat.js';
import type { TimerHandle } from './clock.js';
import { type BucketPolicy, TokenBucket } from './limits.js';
import type { EndReason, SessionState } from './protocol.js';

/** What the core needs from a socket; ws-handler implements it over uWebSockets.js. */
export interface Connection {
  /** Sends one text frame. Never throws; a closed connection drops it. */
  send(frame: string): void;
  /** Closes with a code from the catalogue in errors.ts. */
  close(code: number, reason: string): void;
}

/** The buckets' settings, made once by the relay and shared by every session. */
export interface SessionPolicies {
  /** Frames per second per session. */
  rate: BucketPolicy;
  /** Protocol violations per minute per session. */
  violations: BucketPolicy;
}

export class Session {
  conn: Connection | null = null;
  state: SessionState = 'idle';
  chat: Chat | null = null;
  /** Invite code this session waits on, if any. */
  inviteCode: string | null = null;
  /** Runs when the resume window of a dropped session is over. */
  expiry: TimerHandle | null = null;
  /** A chat that ended while this session was away, told on resume. */
  pendingEnd: EndReason | null = null;
  // Memory per session is a target (bench/): what most sessions never use is made on first use.
  /** Sessions never to be paired with again (blocks and reports either way). */
  #blocked: Set<string> | null = null;
  /** Recent partners -> time until which a random rematch is refused. */
  #recentPartners: Map<string, number> | null = null;
  readonly rate: TokenBucket;
  #violations: TokenBucket | null = null;
  /** Frames refused for rate in a row. */
  floodStreak = 0;

  constructor(
    readonly id: string,
    readonly tokenDigest: string,
    public address: AddressKey,
    private readonly policies: SessionPolicies,
  ) {
    this.rate = new TokenBucket(policies.rate);
  }

  /** Counts one protocol violation; false once the per-minute allowance is spent. */
  takeViolation(): boolean {
    this.#violations ??= new TokenBucket(this.policies.violations);
    return this.#violations.take();
  }

  block(otherId: string): void {
    this.#blocked ??= new Set();
    this.#blocked.add(otherId);
  }

  hasBlocked(otherId: string): boolean {
    return this.#blocked?.has(otherId) ?? false;
  }

  rememberPartner(partnerId: string, until: number, now: number): void {
    this.#recentPartners ??= new Map();
    for (const [id, t] of this.#recentPartners) if (t <= now) this.#recentPartners.delete(id);
    this.#recentPartners.set(partnerId, until);
  }

  recentlyWith(partnerId: string, now: number): boolean {
    return (this.#recentPartners?.get(partnerId) ?? 0) > now;
  }
}
