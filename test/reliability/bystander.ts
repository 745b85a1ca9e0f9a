/**
 * A bystander: one ordinary chat that runs through an attack or a fault, to
 * show what it costs people who did nothing wrong. Both sides talk at a steady
 * rate (by default 10 messages a second each: under the default rate limit, so
 * the client never queues) and reconnect by themselves (as the page does); latency is measured per
 * window (`window('during')` starts a new one), and at the end every message is
 * checked: lost, duplicated, out of order.
 */
import { performance } from 'node:perf_hooks';
import type { SocketFactory } from '../../src/client.js';
import { type Chatter, chats, until } from '../fixtures/chatters.js';

export interface BystanderReport {
  sent: number;
  received: number;
  lost: number;
  duplicated: number;
  reordered: number;
  /** p99 latency in ms per window, in the order the windows started. */
  p99: Record<string, number>;
}

export const percentile = (values: readonly number[], p: number): number => {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] as number;
};

export class Bystander {
  readonly #pair: [Chatter, Chatter];
  readonly #sentAt = new Map<string, number>();
  readonly #windows = new Map<string, number[]>();
  #current: number[];
  #timer: NodeJS.Timeout | null = null;

  private constructor(pair: [Chatter, Chatter], everyMs: number) {
    this.#pair = pair;
    this.#current = [];
    this.#windows.set('before', this.#current);
    for (const c of pair)
      c.client.on('msg', (m) => {
        const at = this.#sentAt.get(m.body);
        if (at !== undefined) this.#current.push(performance.now() - at);
      });
    this.#timer = setInterval(() => {
      for (const c of pair) {
        c.say();
        this.#sentAt.set(c.sent.at(-1) as string, performance.now());
      }
    }, everyMs);
  }

  /** Pairs two clients on `url` (asked on every connect) and starts them talking, each every `everyMs`. */
  static async start(url: () => string, everyMs = 100, createSocket?: SocketFactory): Promise<Bystander> {
    const [pair] = await chats(1, () => url, createSocket);
    return new Bystander(pair as [Chatter, Chatter], everyMs);
  }

  /** Latency from now on counts in window `label`. */
  window(label: string): void {
    this.#current = [];
    this.#windows.set(label, this.#current);
  }

  /** Stops talking, waits up to `timeoutMs` for everything to be confirmed and delivered, and reports. */
  async stop(timeoutMs = 15_000): Promise<BystanderReport> {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = null;
    const [a, b] = this.#pair;
    await until('the bystander chat settles', () => a.settled && b.settled, timeoutMs).catch(() => {});
    let lost = 0;
    let duplicated = 0;
    let reordered = 0;
    for (const [from, to] of [
      [a, b],
      [b, a],
    ] as const) {
      const got = new Set(to.received);
      lost += from.sent.filter((m) => !got.has(m)).length;
      duplicated += to.received.length - got.size;
      let last = -1;
      for (const m of to.received) {
        const n = Number(m.slice(m.lastIndexOf('-') + 1));
        if (n < last) reordered++;
        last = Math.max(last, n);
      }
    }
    a.stop();
    b.stop();
    const p99: Record<string, number> = {};
    for (const [label, values] of this.#windows) p99[label] = Math.round(percentile(values, 99) * 100) / 100;
    return {
      sent: a.sent.length + b.sent.length,
      received: a.received.length + b.received.length,
      lost,
      duplicated,
      reordered,
      p99,
    };
  }
}
