/**
 * The waiting room for random pairing. Fairness rules live here:
 * - FIFO: the longest-waiting compatible person is taken first.
 * - Interests: someone who gave interests is matched only on a shared one
 *   until `interestWaitMs` passes; from then on (or at once, without
 *   interests) they are "flexible" and match anyone flexible.
 * - Compatibility (never self, not blocked, not just-left) is a function the
 *   caller supplies. It says from when two people may be paired, not just
 *   whether, because a rematch cool-down ends by itself: the room then pairs
 *   them at that moment, without waiting for someone else to arrive.
 * Matching is synchronous, so thousands of simultaneous finds cannot race.
 */
import type { Clock, TimerHandle } from './clock.js';

export interface Waiter {
  readonly id: string;
  readonly interests: readonly string[];
  /** When the waiter entered the room (clock ms). */
  readonly since: number;
  readonly flexibleAt: number;
  /** Arrival order: breaks ties between waiters who arrived in the same millisecond. */
  readonly order: number;
}

export interface WaitingRoomOptions {
  clock: Clock;
  interestWaitMs: number;
  maxLength: number;
  /**
   * From when `a` and `b` may be paired (clock ms): any time up to now means
   * now, a later time means then (a cool-down), Infinity means never (a block).
   */
  compatibleFrom(a: string, b: string): number;
  /** Called once per pair; `first` is the one who waited longer. */
  onMatch(first: Waiter, second: Waiter, sharedInterests: string[]): void;
}

export type EnqueueResult = 'matched' | 'queued' | 'full';

/** The best partner found for a waiter now, and otherwise when looking again could find one. */
interface Search {
  partner: Waiter | undefined;
  retryAt: number;
}

export class WaitingRoom {
  readonly #all = new Map<string, Waiter>();
  readonly #byTag = new Map<string, Map<string, Waiter>>();
  /** At most one per waiter: when its interest wait ends or a cool-down that kept it apart from someone ends. */
  readonly #timers = new Map<string, TimerHandle>();
  #arrivals = 0;

  constructor(private readonly opts: WaitingRoomOptions) {}

  get length(): number {
    return this.#all.size;
  }

  has(id: string): boolean {
    return this.#all.has(id);
  }

  /** `since` is when the waiter first asked, if earlier (a session that moved keeps its place in line). */
  enqueue(id: string, interests: readonly string[] = [], since?: number): EnqueueResult {
    const now = this.opts.clock.now();
    const first = since !== undefined && since < now ? since : now;
    const waiter: Waiter = {
      id,
      interests,
      since: first,
      flexibleAt: interests.length > 0 ? first + this.opts.interestWaitMs : now,
      order: this.#arrivals++,
    };
    const { partner, retryAt } = this.#search(waiter, now);
    if (partner) {
      this.remove(partner.id);
      this.opts.onMatch(partner, waiter, shared(partner, waiter));
      return 'matched';
    }
    if (this.#all.size >= this.opts.maxLength) return 'full';
    this.#add(waiter);
    this.#wakeAt(waiter, retryAt, now);
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

  #wakeAt(waiter: Waiter, at: number, now: number): void {
    this.#timers.get(waiter.id)?.cancel();
    this.#timers.delete(waiter.id);
    if (at === Number.POSITIVE_INFINITY) return;
    this.#timers.set(
      waiter.id,
      this.opts.clock.schedule(at - now, () => this.#wake(waiter.id)),
    );
  }

  /** Something that kept this waiter unmatched has ended: look again, keeping the place in line. */
  #wake(id: string): void {
    this.#timers.delete(id);
    const waiter = this.#all.get(id);
    if (!waiter) return;
    const now = this.opts.clock.now();
    const { partner, retryAt } = this.#search(waiter, now);
    if (!partner) return this.#wakeAt(waiter, retryAt, now);
    const [first, second] = partner.order < waiter.order ? [partner, waiter] : [waiter, partner];
    this.remove(partner.id);
    this.remove(waiter.id);
    this.opts.onMatch(first, second, shared(first, second));
  }

  /**
   * A shared-interest partner first, then (once `w` is flexible) anyone
   * flexible. Without a partner, `retryAt` is the earliest moment one of the
   * reasons that kept `w` unmatched ends: its own interest wait, or a
   * cool-down with someone who is waiting. Waiters still inside their own
   * interest wait are skipped here: their own timer looks for them.
   */
  #search(w: Waiter, now: number): Search {
    let retryAt = w.flexibleAt > now ? w.flexibleAt : Number.POSITIVE_INFINITY;
    let best: Waiter | undefined;
    for (const tag of w.interests) {
      const bucket = this.#byTag.get(tag);
      if (!bucket) continue;
      for (const c of bucket.values()) {
        if (best && c.order >= best.order) break;
        if (c.id === w.id) continue;
        const from = this.opts.compatibleFrom(w.id, c.id);
        if (from <= now) {
          best = c;
          break;
        }
        retryAt = Math.min(retryAt, from);
      }
    }
    if (best || w.flexibleAt > now) return { partner: best, retryAt };
    for (const c of this.#all.values()) {
      if (c.id === w.id || c.flexibleAt > now) continue;
      const from = this.opts.compatibleFrom(w.id, c.id);
      if (from <= now) return { partner: c, retryAt };
      retryAt = Math.min(retryAt, from);
    }
    return { partner: undefined, retryAt };
  }
}

const shared = (a: Waiter, b: Waiter): string[] => a.interests.filter((t) => b.interests.includes(t));
