/**
 * The waiting room for random pairing. Fairness rules live here:
 * - FIFO: the longest-waiting compatible person is taken first.
 * - Interests: someone who gave interests is matched only on a shared one
 *   until `interestWaitMs` passes; from then on (or at once, without
 *   interests) they are "flexible" and match anyone flexible.
 * - Compatibility (never self, not blocked, not just-left) is a predicate the
 *   caller supplies.
 * Matching is synchronous, so thousands of simultaneous finds cannot race.
 */
import type { Clock, TimerHandle } from './clock.js';

export interface Waiter {
  readonly id: string;
  readonly interests: readonly string[];
  readonly flexibleAt: number;
  /** Arrival order: breaks ties between waiters who arrived in the same millisecond. */
  readonly order: number;
}

export interface WaitingRoomOptions {
  clock: Clock;
  interestWaitMs: number;
  maxLength: number;
  compatible(a: string, b: string): boolean;
  /** Called once per pair; `first` is the one who waited longer. */
  onMatch(first: Waiter, second: Waiter, sharedInterests: string[]): void;
}

export type EnqueueResult = 'matched' | 'queued' | 'full';

export class WaitingRoom {
  readonly #all = new Map<string, Waiter>();
  readonly #byTag = new Map<string, Map<string, Waiter>>();
  readonly #timers = new Map<string, TimerHandle>();
  #arrivals = 0;

  constructor(private readonly opts: WaitingRoomOptions) {}

  get length(): number {
    return this.#all.size;
  }

  has(id: string): boolean {
    return this.#all.has(id);
  }

  enqueue(id: string, interests: readonly string[] = []): EnqueueResult {
    const now = this.opts.clock.now();
    const waiter: Waiter = {
      id,
      interests,
      flexibleAt: interests.length > 0 ? now + this.opts.interestWaitMs : now,
      order: this.#arrivals++,
    };
    const partner =
      this.#bestByInterest(waiter) ?? (waiter.flexibleAt <= now ? this.#firstFlexible(waiter) : undefined);
    if (partner) {
      this.remove(partner.id);
      this.opts.onMatch(partner, waiter, shared(partner, waiter));
      return 'matched';
    }
    if (this.#all.size >= this.opts.maxLength) return 'full';
    this.#add(waiter);
    if (waiter.flexibleAt > now)
      this.#timers.set(
        id,
        this.opts.clock.schedule(waiter.flexibleAt - now, () => this.#becameFlexible(id)),
      );
    return 'queued';
  }

  remove(id: string): boolean {
    const waiter = this.#all.get(id);
    if (!waiter) return false;
    this.#all.delete(id);
    for (const tag of waiter.interests) {
      const bucket = this.#byTag.get(tag);
      bucket?.delete(id);
      if (bucket?.size === 0) this.#byTag.delete(tag);
    }
    this.#timers.get(id)?.cancel();
    this.#timers.delete(id);
    return true;
  }

  #add(waiter: Waiter): void {
    this.#all.set(waiter.id, waiter);
    for (const tag of waiter.interests) {
      const bucket = this.#byTag.get(tag) ?? new Map<string, Waiter>();
      bucket.set(waiter.id, waiter);
      this.#byTag.set(tag, bucket);
    }
  }

  /** The interest wait is over: keep the place in line, but now take anyone flexible. */
  #becameFlexible(id: string): void {
    this.#timers.delete(id);
    const waiter = this.#all.get(id);
    if (!waiter) return;
    const partner = this.#firstFlexible(waiter);
    if (!partner) return;
    const [first, second] = partner.order < waiter.order ? [partner, waiter] : [waiter, partner];
    this.remove(partner.id);
    this.remove(waiter.id);
    this.opts.onMatch(first, second, shared(first, second));
  }

  /** The longest-waiting compatible person sharing any of `w`'s interests. */
  #bestByInterest(w: Waiter): Waiter | undefined {
    let best: Waiter | undefined;
    for (const tag of w.interests) {
      const bucket = this.#byTag.get(tag);
      if (!bucket) continue;
      for (const c of bucket.values()) {
        if (best && c.order >= best.order) break;
        if (this.#ok(w, c)) {
          best = c;
          break;
        }
      }
    }
    return best;
  }

  /** The longest-waiting compatible person who is past any interest wait. */
  #firstFlexible(w: Waiter): Waiter | undefined {
    const now = this.opts.clock.now();
    for (const c of this.#all.values()) if (c.flexibleAt <= now && this.#ok(w, c)) return c;
    return undefined;
  }

  #ok(a: Waiter, b: Waiter): boolean {
    return a.id !== b.id && this.opts.compatible(a.id, b.id);
  }
}

const shared = (a: Waiter, b: Waiter): string[] => a.interests.filter((t) => b.interests.includes(t));
