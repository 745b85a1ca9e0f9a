/**
 * Report policy. A report ends the chat and blocks that pair for good (kept on
 * the sessions). It also counts against the reported session and its client
 * address: once `threshold` different reporters (counted by their address, so
 * one person with many tabs counts once) have reported within `windowMs`, the
 * session and the address may not `find` strangers for `cooldownMs`.
 */
import { LRUCache } from 'lru-cache';
import type { Clock } from './clock.js';
import { entryBound } from './limits.js';

export interface ReportPolicy {
  clock: Clock;
  threshold: number;
  windowMs: number;
  cooldownMs: number;
  /** Bound on tracked sessions and addresses, so reports cannot grow memory without limit. */
  maxTracked?: number;
}

interface Tally {
  /** reporter key -> time of their latest report */
  reporters: Map<string, number>;
  cooldownUntil: number;
}

export class ReportTracker {
  readonly #tallies: LRUCache<string, Tally>;

  constructor(private readonly policy: ReportPolicy) {
    this.#tallies = new LRUCache<string, Tally>({
      ...entryBound(policy.maxTracked ?? 100_000),
      ttl: Math.max(policy.windowMs, policy.cooldownMs),
      perf: { now: () => policy.clock.now() },
    });
  }

  /** Records one report against every key of the reported party (session id, address key). */
  report(reportedKeys: readonly string[], reporterKey: string): void {
    const now = this.policy.clock.now();
    for (const key of reportedKeys) {
      const tally = this.#tallies.get(key) ?? { reporters: new Map<string, number>(), cooldownUntil: 0 };
      for (const [reporter, at] of tally.reporters)
        if (now - at > this.policy.windowMs) tally.reporters.delete(reporter);
      tally.reporters.set(reporterKey, now);
      if (tally.reporters.size >= this.policy.threshold) {
        tally.cooldownUntil = now + this.policy.cooldownMs;
        tally.reporters.clear();
      }
      this.#tallies.set(key, tally);
    }
  }

  /** Milliseconds left on the longest cool-down among `keys`, 0 if none. */
  cooldownLeft(keys: readonly string[]): number {
    const now = this.policy.clock.now();
    let left = 0;
    for (const key of keys) {
      const until = this.#tallies.get(key)?.cooldownUntil ?? 0;
      left = Math.max(left, until - now);
    }
    return left;
  }
}
