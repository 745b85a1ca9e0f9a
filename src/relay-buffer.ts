/**
 * The expiring buffer: the only place undelivered messages live, and only in
 * memory. Each chat direction is a Lane (the recipient's inbox) holding its
 * messages in seq order; all messages in the process also form one list in
 * arrival order, so the TTL (the resume window) and the global budgets always
 * remove the process's oldest message first. A message leaves when acked, when
 * its chat ends, when its TTL passes, or when a bound pushes it out. Whatever is
 * missing between the last ack and the newest seq is, by definition, a gap.
 *
 * Why not lru-cache here (it still serves invites and cool-downs): every
 * removal in this buffer is at the front of its lane, so two linked lists do it
 * in O(1) without a key string per message; and lru-cache preallocates arrays
 * of `max` slots (about 90 MB for 2 million) and refills all of them each time
 * the cache empties, a 20 ms stall whenever the last buffered message is acked.
 */
import { Buffer } from 'node:buffer';
import type { Clock } from './clock.js';

/** One buffered message; linked into its lane (seq order) and into the process (arrival order). */
interface Entry {
  readonly lane: Lane;
  readonly seq: number;
  /** The ready-to-send frame, so a replay costs no encoding. */
  readonly frame: string;
  readonly bytes: number;
  /** When the message was accepted (clock ms), for delivery latency. */
  readonly ts: number;
  readonly expiresAt: number;
  nextInLane: Entry | null;
  older: Entry | null;
  newer: Entry | null;
}

/** Recent client ids of one lane, for idempotent retries; made on the lane's first message. */
interface RecentIds {
  /** Client id -> the seq it was given. */
  readonly seqs: Map<string, number>;
  /** The same ids in a ring, oldest at `next` once full: evicting needs no Map iterator. */
  readonly ring: string[];
  next: number;
}

export class Lane {
  /** Seq the next message in this direction gets (seqs start at 1). */
  nextSeq = 1;
  /** Highest seq the recipient acknowledged. */
  ackedSeq = 0;
  /** Highest seq the recipient marked read. */
  readSeq = 0;
  count = 0;
  bytes = 0;
  recent: RecentIds | null = null;
  /** Buffered messages in seq order (contiguous: only the front is ever removed). */
  head: Entry | null = null;
  tail: Entry | null = null;

  get lastSeq(): number {
    return this.nextSeq - 1;
  }
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
  readonly #opts: RelayBufferOptions;
  /** The process-wide arrival order: oldest at the front. */
  #oldest: Entry | null = null;
  #newest: Entry | null = null;
  #messages = 0;
  #bytes = 0;

  constructor(opts: RelayBufferOptions) {
    this.#opts = opts;
  }

  newLane(): Lane {
    return new Lane();
  }

  /**
   * Idempotency: the seq already given to this client id in this lane, if any;
   * otherwise reserves the next seq for it.
   */
  assignSeq(lane: Lane, clientId: string): { seq: number; duplicate: boolean } {
    lane.recent ??= { seqs: new Map(), ring: [], next: 0 };
    const recent = lane.recent;
    const known = recent.seqs.get(clientId);
    if (known !== undefined) return { seq: known, duplicate: true };
    const seq = lane.nextSeq++;
    const ring = recent.ring;
    if (ring.length < this.#opts.dedupeWindow) ring.push(clientId);
    else {
      recent.seqs.delete(ring[recent.next] as string);
      ring[recent.next] = clientId;
      recent.next = (recent.next + 1) % ring.length;
    }
    recent.seqs.set(clientId, seq);
    return { seq, duplicate: false };
  }

  /** Keeps `frame` (the seq from assignSeq, already encoded) until acked or dropped. */
  append(lane: Lane, seq: number, frame: string, ts: number): void {
    const now = this.#opts.clock.now();
    this.#expire(now);
    const entry: Entry = {
      lane,
      seq,
      frame,
      bytes: Buffer.byteLength(frame),
      ts,
      expiresAt: now + this.#opts.ttlMs,
      nextInLane: null,
      older: this.#newest,
      newer: null,
    };
    if (lane.tail) lane.tail.nextInLane = entry;
    else lane.head = entry;
    lane.tail = entry;
    lane.count += 1;
    lane.bytes += entry.bytes;
    if (this.#newest) this.#newest.newer = entry;
    else this.#oldest = entry;
    this.#newest = entry;
    this.#messages += 1;
    this.#bytes += entry.bytes;
    // The lane bound: drop the recipient's oldest until it fits again (never the message just added).
    const o = this.#opts;
    while ((lane.count > o.laneMaxMessages || lane.bytes > o.laneMaxBytes) && lane.head !== entry)
      this.#dropFront(lane, 'lane_bound');
    // The process budget: drop the oldest message anywhere.
    while ((this.#messages > o.maxMessages || this.#bytes > o.maxBytes) && this.#oldest !== entry) {
      const oldest = this.#oldest as Entry;
      this.#dropFront(oldest.lane, 'global_bound');
    }
  }

  /**
   * Sends every buffered frame with seq > afterSeq in order. Seqs that are no
   * longer buffered (and were never acked) are reported as one gap range first.
   */
  replay(
    lane: Lane,
    afterSeq: number,
    onFrame: (frame: string, ts: number) => void,
    onGap: (from: number, to: number) => void,
  ): void {
    this.#expire(this.#opts.clock.now());
    const start = Math.max(afterSeq, lane.ackedSeq) + 1;
    const buffered = lane.head ? lane.head.seq : lane.nextSeq;
    if (start < buffered) onGap(start, buffered - 1);
    for (let e = lane.head; e; e = e.nextInLane) if (e.seq >= start) onFrame(e.frame, e.ts);
  }

  /** The recipient has everything up to `seq`: free it. Returns false if nothing new was acked. */
  ack(lane: Lane, seq: number): boolean {
    if (seq <= lane.ackedSeq) return false;
    while (lane.head && lane.head.seq <= seq) this.#removeFront(lane);
    lane.ackedSeq = seq;
    return true;
  }

  /** The chat is over: free the lane at once. */
  release(lane: Lane): void {
    while (lane.head) this.#removeFront(lane);
    lane.recent = null;
  }

  /** The lane's buffered frames and recent client ids, for moving it to another instance (handoff.ts). */
  export(lane: Lane): { frames: [number, number, string][]; recent: [string, number][] } {
    this.#expire(this.#opts.clock.now());
    const frames: [number, number, string][] = [];
    for (let e = lane.head; e; e = e.nextInLane) frames.push([e.seq, e.ts, e.frame]);
    return { frames, recent: lane.recent ? [...lane.recent.seqs] : [] };
  }

  /** A lane moved here from another instance: its marks, frames (seq order) and recent client ids. */
  import(
    marks: { nextSeq: number; ackedSeq: number; readSeq: number },
    frames: readonly [number, number, string][],
    recent: readonly [string, number][],
  ): Lane {
    const lane = new Lane();
    lane.nextSeq = marks.nextSeq;
    lane.ackedSeq = marks.ackedSeq;
    lane.readSeq = marks.readSeq;
    for (const [id] of recent) this.assignSeq(lane, id);
    if (lane.recent) for (const [id, seq] of recent) lane.recent.seqs.set(id, seq);
    lane.nextSeq = marks.nextSeq;
    for (const [seq, ts, frame] of frames)
      if (seq > lane.ackedSeq && seq < lane.nextSeq) this.append(lane, seq, frame, ts);
    return lane;
  }

  /** Removes expired messages now (they are otherwise removed as new ones arrive or on replay). */
  purgeStale(): void {
    this.#expire(this.#opts.clock.now());
  }

  get messages(): number {
    return this.#messages;
  }

  get bytes(): number {
    return this.#bytes;
  }

  /** Everything older than the TTL is at the front of the arrival order. */
  #expire(now: number): void {
    while (this.#oldest && this.#oldest.expiresAt <= now) this.#dropFront(this.#oldest.lane, 'expired');
  }

  #dropFront(lane: Lane, reason: DropReason): void {
    this.#removeFront(lane);
    this.#opts.onDrop?.(reason);
  }

  /** Unlinks the lane's oldest message from the lane and from the arrival order. */
  #removeFront(lane: Lane): void {
    const e = lane.head as Entry;
    lane.head = e.nextInLane;
    if (!lane.head) lane.tail = null;
    lane.count -= 1;
    lane.bytes -= e.bytes;
    if (e.older) e.older.newer = e.newer;
    else this.#oldest = e.newer;
    if (e.newer) e.newer.older = e.older;
    else this.#newest = e.older;
    e.nextInLane = e.older = e.newer = null;
    this.#messages -= 1;
    this.#bytes -= e.bytes;
  }
}
