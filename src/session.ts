/**
 * A session is one anonymous identity: it outlives its sockets for the resume
 * window, and holds the per-identity limits so reconnecting does not reset them.
 */
import type { AddressKey } from './address.js';
import type { Chat } from './chat.js';
import type { Clock, TimerHandle } from './clock.js';
import { TokenBucket } from './limits.js';
import type { EndReason, SessionState } from './protocol.js';

/** What the core needs from a socket; ws-handler implements it over uWebSockets.js. */
export interface Connection {
  /** Sends one text frame. Never throws; a closed connection drops it. */
  send(frame: string): void;
  /** Closes with a code from the catalogue in errors.ts. */
  close(code: number, reason: string): void;
}

export interface SessionLimits {
  rateLimitPerSec: number;
  rateLimitBurst: number;
  maxErrorsPerMinute: number;
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
  /** Sessions never to be paired with again (reports either way). */
  readonly blocked = new Set<string>();
  /** Recent partners -> time until which a random rematch is refused. */
  readonly recentPartners = new Map<string, number>();
  readonly rate: TokenBucket;
  readonly violations: TokenBucket;
  /** Frames refused for rate in a row. */
  floodStreak = 0;

  constructor(
    readonly id: string,
    readonly tokenDigest: Buffer,
    public address: AddressKey,
    clock: Clock,
    limits: SessionLimits,
  ) {
    this.rate = new TokenBucket(clock, limits.rateLimitPerSec, limits.rateLimitBurst);
    this.violations = new TokenBucket(clock, limits.maxErrorsPerMinute / 60, limits.maxErrorsPerMinute);
  }

  rememberPartner(partnerId: string, until: number, now: number): void {
    for (const [id, t] of this.recentPartners) if (t <= now) this.recentPartners.delete(id);
    this.recentPartners.set(partnerId, until);
  }

  recentlyWith(partnerId: string, now: number): boolean {
    return (this.recentPartners.get(partnerId) ?? 0) > now;
  }
}
