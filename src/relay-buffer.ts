/**
 * The expiring buffer: the only place undelivered messages live, and only in
 * memory. Each chat direction is a Lane (the recipient's inbox); each buffered
 * message is one lru-cache entry holding its ready-to-send frame, so the cache's
 * TTL and byte budget bound the whole process, while the lane bounds one
 * recipient. A message leaves when acked, when its chat ends, when its TTL (the
 * resume window) passes, or when a bound pushes it out, oldest first. Whatever
 * is missing between the last ack and the newest seq is, by definition, a gap.
 */
import { Buffer } from 'node:buffer';
import { LRUCache } from 'lru-cache';
import type { Clock } from './clock.js';

export class Lane {
  /** Seq the next message in this direction gets (seqs start at 1). */
  nextSeq = 1;
  /** Lowest seq that may still be buffered. */
  firstSeq = 1;
  /** Highest seq the recipient acknowledged. */
  ackedSeq = 0;
  /** Highest seq the recipient marked read. */
  readSeq = 0;
  count = 0;
  bytes = 0;
  /** Recent client ids -> seq, oldest first, for idempotent retries. */
  readonly recentIds = new Map<string, number>();

  constructor(readonly key: string) {}

  get lastSeq(): number {
    return this.nextSeq - 1;
  }
}

interface Entry {
  lane: Lane;
  frame: string;
  bytes: number;
  /** When the message was accepted (clock ms), for delivery latency. */
  ts: number;
}

export type DropReason = 'lane_bound' | 'global_bound' | 'expired';

export interface RelayBufferOptions {
  clock: Clock;
  ttlMs: number;
  maxMessages: number;
  maxBytes: number;
  laneMaxMessages: number;
  laneMaxBytes: number;
  dedupeWindow: number;
  onDrop?: (reason: DropReason) => void;
}

export class RelayBuffer {
  readonly #cache: LRUCache<string, Entry>;
  readonly #opts: RelayBufferOptions;
  #laneCounter = 0;

  constructor(opts: RelayBufferOptions) {
    this.#opts = opts;
    this.#cache = new LRUCache<string, Entry>({
      max: opts.maxMessages,
      maxSize: opts.maxBytes,
      sizeCalculation: (e) => e.bytes,
      ttl: opts.ttlMs,
      perf: { now: () => opts.clock.now() },
      dispose: (entry, _key, reason) => {
        entry.lane.count -= 1;
        entry.lane.bytes -= entry.bytes;
        if (reason === 'evict') opts.onDrop?.('global_bound');
        else if (reason === 'expire') opts.onDrop?.('expired');
      },
    });
  }

  newLane(): Lane {
    return new Lane((this.#laneCounter++).toString(36));
  }

  /**
   * Idempotency: the seq already given to this client id in this lane, if any;
   * otherwise reserves the next seq for it.
   */
  assignSeq(lane: Lane, clientId: string): { seq: number; duplicate: boolean } {
    const known = lane.recentIds.get(clientId);
    if (known !== undefined) return { seq: known, duplicate: true };
    const seq = lane.nextSeq++;
    lane.recentIds.set(clientId, seq);
    if (lane.recentIds.size > this.#opts.dedupeWindow) {
      const oldest = lane.recentIds.keys().next().value;
      if (oldest !== undefined) lane.recentIds.delete(oldest);
    }
    return { seq, duplicate: false };
  }

  /** Keeps `frame` (already encoded, so replay costs no work) until acked or dropped. */
  append(lane: Lane, seq: number, frame: string, ts: number): void {
    const bytes = Buffer.byteLength(frame);
    const entry: Entry = { lane, frame, bytes, ts };
    lane.count += 1;
    lane.bytes += bytes;
    this.#cache.set(key(lane, seq), entry);
    // The lane bound: drop the recipient's oldest until it fits again.
    while ((lane.count > this.#opts.laneMaxMessages || lane.bytes > this.#opts.laneMaxBytes) && lane.firstSeq < seq) {
      if (this.#cache.delete(key(lane, lane.firstSeq))) this.#opts.onDrop?.('lane_bound');
      lane.firstSeq += 1;
    }
  }

  /**
   * Sends every buffered frame with seq > afterSeq in order. Seqs that are no
   * longer buffered (and were never acked) are reported as gap ranges first
   * where they fall.
   */
  replay(
    lane: Lane,
    afterSeq: number,
    onFrame: (frame: string, ts: number) => void,
    onGap: (from: number, to: number) => void,
  ): void {
    const start = Math.max(afterSeq, lane.ackedSeq) + 1;
    let gapFrom = 0;
    for (let seq = start; seq < lane.nextSeq; seq++) {
      const entry = seq < lane.firstSeq ? undefined : this.#cache.peek(key(lane, seq));
      if (!entry) {
        if (gapFrom === 0) gapFrom = seq;
        continue;
      }
      if (gapFrom !== 0) {
        onGap(gapFrom, seq - 1);
        gapFrom = 0;
      }
      onFrame(entry.frame, entry.ts);
    }
    if (gapFrom !== 0) onGap(gapFrom, lane.nextSeq - 1);
  }

  /** The recipient has everything up to `seq`: free it. Returns false if nothing new was acked. */
  ack(lane: Lane, seq: number): boolean {
    if (seq <= lane.ackedSeq) return false;
    for (let s = lane.firstSeq; s <= seq; s++) this.#cache.delete(key(lane, s));
    lane.ackedSeq = seq;
    lane.firstSeq = Math.max(lane.firstSeq, seq + 1);
    return true;
  }

  /** The chat is over: free the lane at once. */
  release(lane: Lane): void {
    for (let s = lane.firstSeq; s < lane.nextSeq && lane.count > 0; s++) this.#cache.delete(key(lane, s));
    lane.firstSeq = lane.nextSeq;
    lane.recentIds.clear();
  }

  /** Removes expired entries now (lru-cache otherwise drops them lazily). */
  purgeStale(): void {
    this.#cache.purgeStale();
  }

  get messages(): number {
    return this.#cache.size;
  }

  get bytes(): number {
    return this.#cache.calculatedSize;
  }
}

const key = (lane: Lane, seq: number): string => `${lane.key}:${seq}`;
