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

export class TokenBucket {
  #tokens: number;
  #last: number;

  constructor(private readonly policy: BucketPolicy) {
    this.#tokens = policy.burst;
    this.#last = policy.clock.now();
  }

  /** Takes one token if there is one. */
  take(): boolean {
    this.#refill();
    if (this.#tokens < 1) return false;
    this.#tokens -= 1;
    return true;
  }

  /** Milliseconds until one token is available. */
  msUntilToken(): number {
    this.#refill();
    return this.#tokens >= 1 ? 0 : Math.ceil(((1 - this.#tokens) * 1000) / this.policy.perSecond);
  }

  #refill(): void {
    const { clock, perSecond, burst } = this.policy;
    const now = clock.now();
    const elapsed = now - this.#last;
    if (elapsed > 0) {
      this.#tokens = Math.min(burst, this.#tokens + (elapsed * perSecond) / 1000);
      this.#last = now;
    }
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
