/**
 * Rate and count limits: a token bucket per session and counters per client
 * address. Addresses are only ever held as keyed digests (see address.ts).
 */
import type { Clock } from './clock.js';

/** What all buckets of one kind share; made once and referenced, since memory per session is a target. */
export interface BucketPolicy {
  readonly clock: Clock;
  readonly perSecond: number;
  readonly burst: number;
}

/*
 * A token bucket kept as one number (GCRA, the generic cell rate algorithm):
 * `fullAt`, the time at which the bucket is full again. Each take moves it one
 * interval (1000 / perSecond ms) later; a take is refused while that would put
 * it more than `burst` intervals ahead of now. Same behaviour as counting
 * tokens with fractional refill, but one field in the owner instead of an
 * object with three, which matters when every session has one.
 */

/** Slack for the float arithmetic on epoch milliseconds, far below any interval. */
const EPSILON_MS = 1e-3;

/**
 * The new `fullAt` after taking `cost` tokens (one, unless the bucket counts bytes) at `now`, or -1 if the bucket
 * has fewer. A new bucket has fullAt 0.
 */
export function takeToken(policy: BucketPolicy, fullAt: number, now: number, cost = 1): number {
  const interval = 1000 / policy.perSecond;
  const next = Math.max(fullAt, now) + cost * interval;
  return next - now > policy.burst * interval + EPSILON_MS ? -1 : next;
}

/** Milliseconds until a take of `cost` tokens at `now` would succeed. */
export function msUntilToken(policy: BucketPolicy, fullAt: number, now: number, cost = 1): number {
  const interval = 1000 / policy.perSecond;
  const wait = Math.max(fullAt, now) + cost * interval - now - policy.burst * interval;
  return wait > EPSILON_MS ? Math.ceil(wait) : 0;
}

/** A bucket as an object, where there are few (one per client address that creates invites). */
export class TokenBucket {
  #fullAt = 0;

  constructor(private readonly policy: BucketPolicy) {}

  /** Takes one token if there is one. */
  take(): boolean {
    const next = takeToken(this.policy, this.#fullAt, this.policy.clock.now());
    if (next < 0) return false;
    this.#fullAt = next;
    return true;
  }

  /** Milliseconds until one token is available. */
  msUntilToken(): number {
    return msUntilToken(this.policy, this.#fullAt, this.policy.clock.now());
  }
}

/** Counts open things per key (e.g. sockets per address) against a cap; 0 means no cap. */
export class KeyedCounter {
  readonly #counts = new Map<string, number>();

  constructor(private readonly cap: number) {}

  tryAcquire(key: string): boolean {
    const n = this.#counts.get(key) ?? 0;
    if (this.cap > 0 && n >= this.cap) return false;
    this.#counts.set(key, n + 1);
    return true;
  }

  release(key: string): void {
    const n = (this.#counts.get(key) ?? 0) - 1;
    if (n > 0) this.#counts.set(key, n);
    else this.#counts.delete(key);
  }

  get(key: string): number {
    return this.#counts.get(key) ?? 0;
  }
}

/**
 * lru-cache options bounding a cache to `entries` without preallocating: with
 * `max`, lru-cache allocates arrays of `max` slots up front (about 40 bytes per
 * slot, resident) and refills all of them whenever the cache empties. Counting
 * each entry as size 1 under `maxSize` gives the same bound with arrays that
 * grow with use.
 */
export const entryBound = (entries: number) => ({ maxSize: entries, sizeCalculation: () => 1 }) as const;
