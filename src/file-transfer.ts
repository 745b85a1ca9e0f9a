/**
 * Files and pictures over the relay, end to end encrypted, for the page and the tests.
 *
 * A transfer is a run of `file` messages in the chat (docs/protocol.md, "Files"): an offer (name, type, size,
 * chunk count, all encrypted), then the data in fixed-size chunks, the last one marked final. Each part is sealed
 * with the chat's send key (AES-256-GCM, a random nonce per part) with its header as associated data: version,
 * part type, final flag, transfer id and index. So the relay, which sees only the parts and their count, cannot
 * reorder, replay, truncate or move a part unnoticed, and a receiver refuses any such transfer: it is never shown.
 * Data chunks are padded to the chunk size, so the relay learns a file's size only to the nearest chunk.
 *
 * The parts ride the ordinary message path, so a transfer inherits its guarantees: in order, nothing lost or
 * duplicated across drops, resumes and instance moves, buffered while the receiver is away. The sender keeps at
 * most `fileWindowChunks` chunks sent and not yet delivered (flow control by the receiver's acks), and paces them
 * by the file byte budget the server announced. Either side may cancel; nothing of a transfer is kept once it is
 * done, cancelled or the chat ends (dispose()).
 */
import type { RelayClient } from './client.js';
import { type Bytes, type ChatCipher, fromBase64Url, toBase64Url } from './e2e.js';
import { FILE_KIND, type IncomingMsgFrame, type Limits } from './protocol.js';

const VERSION = 1;
const ID_BYTES = 16;
/** version | part | flags | transfer id | index (u32). */
const HEADER_BYTES = 3 + ID_BYTES + 4;
const IV_BYTES = 12;
const TAG_BYTES = 16;
/** A data chunk's plaintext starts with its length (u32); the rest is padding. */
const LENGTH_BYTES = 4;
/** An offer's plaintext: its JSON's length (u16), the JSON, padding to this size. */
const OFFER_BYTES = 1024;
const MAX_NAME_LENGTH = 200;
const FINAL = 1;

export const Part = { offer: 0, data: 1, cancel: 2 } as const;
type PartType = (typeof Part)[keyof typeof Part];

/** Why a transfer stopped before the end, as both sides see it. */
export type CancelReason = 'cancelled' | 'declined' | 'too_large' | 'broken';
const REASONS: readonly CancelReason[] = ['cancelled', 'declined', 'too_large', 'broken'];

export interface FileMeta {
  name: string;
  type: string;
  size: number;
}

/** What a file is read from: a Blob in the page, bytes in Node. */
export interface FileSource {
  readonly size: number;
  read(offset: number, length: number): Promise<Uint8Array>;
}

export const bytesSource = (bytes: Uint8Array): FileSource => ({
  size: bytes.length,
  read: async (offset, length) => bytes.subarray(offset, offset + length),
});

/** Data bytes per chunk that fit a `file` body of `maxChunkBytes` once sealed and base64url-encoded (whole KiB). */
export function chunkDataBytes(maxChunkBytes: number): number {
  const room = Math.floor((maxChunkBytes * 3) / 4) - HEADER_BYTES - IV_BYTES - TAG_BYTES - LENGTH_BYTES;
  return room >= 1024 ? Math.floor(room / 1024) * 1024 : Math.max(1, room);
}

interface Header {
  part: PartType;
  final: boolean;
  id: string;
  index: number;
  raw: Bytes;
}

function header(part: PartType, final: boolean, id: Bytes, index: number): Bytes {
  const h = new Uint8Array(HEADER_BYTES);
  h[0] = VERSION;
  h[1] = part;
  h[2] = final ? FINAL : 0;
  h.set(id, 3);
  new DataView(h.buffer).setUint32(3 + ID_BYTES, index);
  return h;
}

function parseHeader(bytes: Bytes): Header | null {
  if (bytes.length < HEADER_BYTES + IV_BYTES + TAG_BYTES || bytes[0] !== VERSION) return null;
  const part = bytes[1] as number;
  if (part !== Part.offer && part !== Part.data && part !== Part.cancel) return null;
  const raw = bytes.slice(0, HEADER_BYTES);
  return {
    part: part as PartType,
    final: ((bytes[2] as number) & FINAL) !== 0,
    id: toBase64Url(raw.subarray(3, 3 + ID_BYTES)),
    index: new DataView(raw.buffer).getUint32(3 + ID_BYTES),
    raw,
  };
}

const body = (h: Bytes, sealed: Bytes): string => {
  const out = new Uint8Array(h.length + sealed.length);
  out.set(h);
  out.set(sealed, h.length);
  return toBase64Url(out);
};

/** A transfer, either way; `done`, `ended` and `progress` are for the page. */
export interface Transfer {
  readonly id: string;
  readonly direction: 'out' | 'in';
  readonly meta: FileMeta;
  readonly chunks: number;
  /** Sent: chunks delivered to the partner. Received: chunks received and opened. */
  doneChunks: number;
  state: 'active' | 'complete' | CancelReason;
  /** Who stopped it, if it stopped early. */
  endedBy: 'me' | 'partner' | null;
}

export interface FileTransferEvents {
  /** The partner offers a file; it arrives by itself (cancel() refuses it). */
  offer?(t: Transfer): void;
  progress?(t: Transfer): void;
  /** Received in full: the file's bytes, in order. Sent: delivered in full. */
  complete?(t: Transfer, parts: Uint8Array[] | null): void;
  /** Stopped early (state says why, endedBy by whom). */
  ended?(t: Transfer): void;
}

/** What both directions keep beyond what the page sees. */
interface Kept extends Transfer {
  /** Data bytes per chunk, fixed by the offer: every chunk's plaintext is this long (a later welcome changes nothing). */
  readonly chunkBytes: number;
}

interface Outgoing extends Kept {
  readonly raw: Bytes;
  readonly source: FileSource;
  /** Chunks handed to the client so far (the offer is not counted). */
  queued: number;
  /** Message ids still kept by the client, with the seq the server gave each once known. */
  readonly inFlight: Map<string, number | null>;
}

interface Incoming extends Kept {
  parts: Uint8Array[];
  received: number;
}

export class FileTransfers {
  readonly #client: RelayClient;
  readonly #cipher: ChatCipher;
  readonly #events: FileTransferEvents;
  readonly #out = new Map<string, Outgoing>();
  readonly #in = new Map<string, Incoming>();
  /** Ids of transfers that ended, so late parts of them are ignored rather than taken for new ones (bounded). */
  readonly #ended = new Set<string>();
  /**
   * Sent transfers delivered in full, for a while (bounded): the receiver may still find one broken (a chunk
   * tampered with on the way) after the last was delivered, and the sender must hear of it.
   */
  readonly #delivered = new Map<string, Transfer>();
  /** Incoming parts are opened one after another, in the order they came. */
  #incoming: Promise<void> = Promise.resolve();
  #pumping = false;
  #disposed = false;
  /** The partner's delivered mark: a `sent` at or below it (a part confirmed again after a resume) is delivered. */
  #deliveredSeq = 0;
  readonly #off: (() => void)[];

  constructor(client: RelayClient, cipher: ChatCipher, events: FileTransferEvents = {}) {
    this.#client = client;
    this.#cipher = cipher;
    this.#events = events;
    this.#off = [
      client.on('sent', (f) => this.#onSent(f.id, f.seq)),
      client.on('delivered', (f) => this.#onDelivered(f.seq)),
      client.on('welcome', (f) => {
        if (f.chat) this.#onDelivered(f.chat.deliveredSeq);
      }),
    ];
  }

  get #limits(): Limits {
    const limits = this.#client.limits;
    if (!limits) throw new Error('not connected');
    return limits;
  }

  /** Largest file the server lets a transfer carry. */
  get maxFileBytes(): number {
    return this.#client.limits?.maxFileBytes ?? 0;
  }

  /** Starts sending a file; throws a clear error if it is over MAX_FILE_BYTES or keys are not ready. */
  async send(meta: FileMeta, source: FileSource): Promise<Transfer> {
    if (!this.#cipher.ready) throw new Error('End-to-end keys are not ready yet.');
    const limits = this.#limits;
    if (source.size > limits.maxFileBytes) throw new FileTooLargeError(source.size, limits.maxFileBytes);
    const chunkBytes = chunkDataBytes(limits.maxChunkBytes);
    const raw = globalThis.crypto.getRandomValues(new Uint8Array(ID_BYTES));
    const t: Outgoing = {
      id: toBase64Url(raw),
      raw,
      direction: 'out',
      meta: { name: meta.name.slice(0, MAX_NAME_LENGTH), type: meta.type.slice(0, 100), size: source.size },
      chunks: Math.ceil(source.size / chunkBytes),
      chunkBytes,
      doneChunks: 0,
      state: 'active',
      endedBy: null,
      source,
      queued: 0,
      inFlight: new Map(),
    };
    const offer = new TextEncoder().encode(JSON.stringify({ ...t.meta, chunks: t.chunks, chunkBytes }));
    const plain = new Uint8Array(OFFER_BYTES);
    new DataView(plain.buffer).setUint16(0, offer.length);
    plain.set(offer.subarray(0, OFFER_BYTES - 2), 2);
    const h = header(Part.offer, t.chunks === 0, raw, 0);
    this.#out.set(t.id, t);
    this.#client.sendMessage(body(h, await this.#cipher.sealPart(h, plain)), FILE_KIND);
    if (t.chunks === 0) this.#finish(t);
    else void this.#pump();
    return t;
  }

  /** Stops a transfer either way; the partner is told (`cancelled` from the sender, `declined` from the receiver). */
  cancel(id: string): void {
    const t = this.#out.get(id) ?? this.#in.get(id);
    if (t?.state !== 'active') return;
    const reason = t.direction === 'out' ? 'cancelled' : 'declined';
    this.#stop(t, reason, 'me');
    void this.#tell(id, reason);
  }

  /** Takes a `file` message from the chat (in order); never throws. */
  receive(frame: IncomingMsgFrame): void {
    this.#incoming = this.#incoming.then(() => this.#open(frame.body)).catch(() => {});
  }

  /** Resolves once every part received so far has been handled (tests). */
  settled(): Promise<void> {
    return this.#incoming;
  }

  /** The chat ended or the page left it: everything is dropped, nothing is sent any more. */
  dispose(): void {
    if (this.#disposed) return;
    this.#disposed = true;
    for (const off of this.#off) off();
    for (const t of [...this.#out.values(), ...this.#in.values()])
      if (t.state === 'active') this.#stop(t, 'cancelled', 'me');
    this.#out.clear();
    this.#in.clear();
    this.#delivered.clear();
  }

  async #tell(rawId: string, reason: CancelReason): Promise<void> {
    const raw = fromBase64Url(rawId);
    if (!raw || raw.length !== ID_BYTES || !this.#cipher.ready || this.#disposed) return;
    const h = header(Part.cancel, true, raw, 0);
    const sealed = await this.#cipher.sealPart(h, Uint8Array.of(REASONS.indexOf(reason)));
    this.#client.sendMessage(body(h, sealed), FILE_KIND);
  }

  /** Hands chunks to the client while the window has room. */
  async #pump(): Promise<void> {
    if (this.#pumping) return;
    this.#pumping = true;
    try {
      for (const t of this.#out.values()) {
        const chunkBytes = t.chunkBytes;
        while (t.state === 'active' && t.queued < t.chunks && t.queued - t.doneChunks < this.#limits.fileWindowChunks) {
          const index = t.queued + 1;
          const offset = (index - 1) * chunkBytes;
          const data = await t.source.read(offset, Math.min(chunkBytes, t.meta.size - offset));
          if (t.state !== 'active' || this.#disposed) break;
          const plain = new Uint8Array(LENGTH_BYTES + chunkBytes);
          new DataView(plain.buffer).setUint32(0, data.length);
          plain.set(data, LENGTH_BYTES);
          const h = header(Part.data, index === t.chunks, t.raw, index);
          const sealed = await this.#cipher.sealPart(h, plain);
          if (t.state !== 'active' || this.#disposed) break;
          t.queued = index;
          t.inFlight.set(this.#client.sendMessage(body(h, sealed), FILE_KIND), null);
        }
      }
    } finally {
      this.#pumping = false;
    }
  }

  #onSent(id: string, seq: number): void {
    for (const t of this.#out.values()) if (t.inFlight.has(id)) t.inFlight.set(id, seq);
    // Confirmed again after a resume, under a seq the partner already has: no later `delivered` will name it.
    if (seq <= this.#deliveredSeq) this.#onDelivered(this.#deliveredSeq);
  }

  #onDelivered(seq: number): void {
    this.#deliveredSeq = Math.max(this.#deliveredSeq, seq);
    for (const t of [...this.#out.values()]) {
      let moved = false;
      for (const [id, at] of t.inFlight)
        if (at !== null && at <= seq) {
          t.inFlight.delete(id);
          t.doneChunks++;
          moved = true;
        }
      if (!moved || t.state !== 'active') continue;
      this.#events.progress?.(t);
      if (t.doneChunks === t.chunks) this.#finish(t);
    }
    void this.#pump();
  }

  #finish(t: Outgoing): void {
    t.state = 'complete';
    this.#forget(t);
    this.#delivered.set(t.id, t);
    if (this.#delivered.size > 64) this.#delivered.delete(this.#delivered.keys().next().value as string);
    this.#events.complete?.(t, null);
  }

  #stop(t: Transfer, reason: CancelReason, by: 'me' | 'partner'): void {
    t.state = reason;
    t.endedBy = by;
    if (t.direction === 'out') for (const id of (t as Outgoing).inFlight.keys()) this.#client.withdraw(id);
    this.#forget(t);
    this.#events.ended?.(t);
  }

  #forget(t: Transfer): void {
    if (t.direction === 'out') this.#out.delete(t.id);
    else {
      (t as Incoming).parts = [];
      this.#in.delete(t.id);
    }
    this.#ended.add(t.id);
    if (this.#ended.size > 1024) this.#ended.delete(this.#ended.values().next().value as string);
  }

  async #open(text: string): Promise<void> {
    if (this.#disposed) return;
    const bytes = fromBase64Url(text);
    if (!bytes) return;
    const h = parseHeader(bytes);
    if (!h || (this.#ended.has(h.id) && !(h.part === Part.cancel && this.#delivered.has(h.id)))) return;
    const plain = await this.#cipher.openPart(h.raw, bytes.subarray(HEADER_BYTES));
    if (this.#disposed) return;
    const delivered = this.#delivered.get(h.id);
    if (delivered) {
      // Delivered, and then refused by the receiver (it found a chunk broken): the sender must not show it as sent.
      this.#delivered.delete(h.id);
      if (!plain || h.part !== Part.cancel) return;
      delivered.state = REASONS[plain[0] ?? 0] ?? 'broken';
      delivered.endedBy = 'partner';
      this.#events.ended?.(delivered);
      return;
    }
    const mine = this.#out.get(h.id);
    const theirs = this.#in.get(h.id);
    if (!plain) {
      // Tampered, or sealed for another place: whatever it belongs to is broken.
      if (theirs) this.#broken(theirs);
      return;
    }
    if (h.part === Part.cancel) {
      const reason = REASONS[plain[0] ?? 0] ?? 'cancelled';
      const t = mine ?? theirs;
      if (t && t.state === 'active') this.#stop(t, reason, 'partner');
      return;
    }
    if (mine) return; // A part of our own transfer cannot come from the partner.
    if (h.part === Part.offer) return theirs ? undefined : this.#offered(h, plain);
    if (!theirs) return;
    if (h.index <= theirs.received) return; // Again (a resend after an instance died): already have it.
    const length = new DataView(plain.buffer, plain.byteOffset).getUint32(0);
    const final = h.index === theirs.chunks;
    const chunkBytes = theirs.chunkBytes;
    const expected = final ? theirs.meta.size - (theirs.chunks - 1) * chunkBytes : chunkBytes;
    if (
      h.index !== theirs.received + 1 ||
      h.final !== final ||
      plain.length !== LENGTH_BYTES + chunkBytes ||
      length !== expected
    )
      return this.#broken(theirs);
    theirs.parts.push(plain.slice(LENGTH_BYTES, LENGTH_BYTES + length));
    theirs.received = h.index;
    theirs.doneChunks = h.index;
    this.#events.progress?.(theirs);
    if (final) {
      const parts = theirs.parts;
      theirs.state = 'complete';
      this.#forget(theirs);
      this.#events.complete?.(theirs, parts);
    }
  }

  #offered(h: Header, plain: Bytes): void {
    let meta: { name?: unknown; type?: unknown; size?: unknown; chunks?: unknown; chunkBytes?: unknown };
    try {
      const length = new DataView(plain.buffer, plain.byteOffset).getUint16(0);
      meta = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(plain.subarray(2, 2 + length)));
    } catch {
      return void this.#tell(h.id, 'broken');
    }
    const { name, type, size, chunks, chunkBytes } = meta;
    const ok =
      typeof name === 'string' &&
      typeof type === 'string' &&
      Number.isSafeInteger(size) &&
      Number.isSafeInteger(chunkBytes) &&
      (chunkBytes as number) > 0 &&
      (size as number) >= 0 &&
      chunks === Math.ceil((size as number) / (chunkBytes as number)) &&
      h.final === (chunks === 0);
    if (!ok) return void this.#tell(h.id, 'broken');
    const t: Incoming = {
      id: h.id,
      direction: 'in',
      meta: {
        name: (name as string).slice(0, MAX_NAME_LENGTH),
        type: (type as string).slice(0, 100),
        size: size as number,
      },
      chunks: chunks as number,
      doneChunks: 0,
      state: 'active',
      endedBy: null,
      parts: [],
      received: 0,
      chunkBytes: chunkBytes as number,
    };
    if (t.meta.size > this.maxFileBytes) {
      // Over this relay's limit: refused without taking a byte of it.
      this.#forget(t);
      t.state = 'too_large';
      t.endedBy = 'me';
      this.#events.offer?.(t);
      this.#events.ended?.(t);
      return void this.#tell(h.id, 'too_large');
    }
    this.#in.set(t.id, t);
    this.#events.offer?.(t);
    if (t.chunks === 0) {
      t.state = 'complete';
      this.#forget(t);
      this.#events.complete?.(t, []);
    }
  }

  #broken(t: Incoming): void {
    if (t.state !== 'active') return;
    this.#stop(t, 'broken', 'me');
    void this.#tell(t.id, 'broken');
  }
}

export class FileTooLargeError extends Error {
  constructor(
    readonly size: number,
    readonly max: number,
  ) {
    const [a, b] = [formatBytes(size), formatBytes(max)];
    // Rounded sizes that read the same would say nothing: then they are given in bytes.
    const exact = a === b;
    super(
      `This file is ${exact ? `${size.toLocaleString('en')} bytes` : a}; the most one transfer may carry is ${exact ? `${max.toLocaleString('en')} bytes` : b}.`,
    );
    this.name = 'FileTooLargeError';
  }
}

/** "1.2 MB", "340 KB", "12 bytes" (1 KB = 1,024 bytes, as file managers count). */
export function formatBytes(n: number): string {
  if (n < 1024) return `${n} bytes`;
  if (n < 1024 * 1024) return `${Math.round(n / 1024)} KB`;
  return `${(n / (1024 * 1024)).toFixed(1)} MB`;
}
