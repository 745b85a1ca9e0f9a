/**
 * End-to-end encryption for one chat, on WebCrypto only (the browser's, or
 * Node's global `crypto`), so the relay only ever carries ciphertext.
 *
 * - Each side makes a fresh ECDH P-256 key pair per chat (P-256 works in every
 *   current browser; X25519 does not yet everywhere) and sends its public key
 *   as a `key` message through the relay.
 * - HKDF-SHA-256 over the shared secret, salted with the chat id, gives one
 *   AES-256-GCM key per direction (labelled by the sender's public key), so the
 *   two sides never encrypt under the same key and roles need no agreement.
 * - Plaintext = counter (u32) | text length (u16) | UTF-8 text | zero padding up
 *   to a fixed bucket, so the relay learns neither lengths nor order tricks:
 *   the counter is inside the ciphertext, and a replayed or reordered message
 *   is detected when opened. A tampered one fails the GCM tag.
 * - The safety code hashes both public keys in a fixed order, so both people
 *   see the same digits and can compare them out of band.
 */

type Subtle = typeof globalThis.crypto.subtle;
type Key = Awaited<ReturnType<Subtle['importKey']>>;
/** Bytes backed by a plain ArrayBuffer, as WebCrypto's BufferSource wants. */
export type Bytes = Uint8Array<ArrayBuffer>;
interface KeyPair {
  publicKey: Key;
  privateKey: Key;
}

export const KEY_KIND = 'key';
export const E2E_KIND = 'e2e';
const VERSION = 1;
const IV_BYTES = 12;
const TAG_BYTES = 16;
const HEADER_BYTES = 6;
const INFO_PREFIX = 'anon-chat e2e v1 send ';

const subtle = (): Subtle => globalThis.crypto.subtle;
const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

export function toBase64Url(bytes: Uint8Array): string {
  let s = '';
  for (const b of bytes) s += String.fromCharCode(b);
  return btoa(s).replace(/\+/g, '-').replace(/\//g, '_').replace(/=+$/, '');
}

export function fromBase64Url(text: string): Bytes | null {
  if (!/^[A-Za-z0-9_-]*$/.test(text)) return null;
  try {
    const bin = atob(text.replace(/-/g, '+').replace(/_/g, '/'));
    const out = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) out[i] = bin.charCodeAt(i);
    return out;
  } catch {
    return null;
  }
}

/** Bytes of padded plaintext that fit a relay body of `maxBodyBytes` once sealed and base64url-encoded. */
export function largestBucket(maxBodyBytes: number): number {
  return Math.floor((maxBodyBytes * 3) / 4) - 1 - IV_BYTES - TAG_BYTES;
}

/** Fixed plaintext sizes; the last one depends on the relay's message limit. */
export function bucketsFor(maxBodyBytes: number): number[] {
  const top = largestBucket(maxBodyBytes);
  return [256, 1024, top].filter((b, i, all) => b <= top && all.indexOf(b) === i);
}

/** Longest text (UTF-8 bytes) one message can carry under these buckets. */
export const maxTextBytes = (buckets: readonly number[]): number => (buckets.at(-1) ?? 0) - HEADER_BYTES;

export type OpenResult =
  | { ok: true; text: string; counter: number; missed: number }
  | { ok: false; reason: 'tampered' | 'replayed' | 'malformed' };

export class ChatCipher {
  /** Digits both people see; set once the partner's key is accepted. */
  safetyCode: string | null = null;
  readonly #pair: KeyPair;
  readonly #publicRaw: Bytes;
  readonly #buckets: number[];
  #sendKey: Key | null = null;
  #receiveKey: Key | null = null;
  #partnerRaw: Bytes | null = null;
  #sent = 0;
  #received = 0;

  private constructor(pair: KeyPair, publicRaw: Bytes, buckets: number[]) {
    this.#pair = pair;
    this.#publicRaw = publicRaw;
    this.#buckets = buckets;
  }

  static async create(maxBodyBytes: number): Promise<ChatCipher> {
    const pair = (await subtle().generateKey({ name: 'ECDH', namedCurve: 'P-256' }, false, ['deriveBits'])) as KeyPair;
    const raw = new Uint8Array(await subtle().exportKey('raw', pair.publicKey));
    return new ChatCipher(pair, raw, bucketsFor(maxBodyBytes));
  }

  get ready(): boolean {
    return this.#sendKey !== null;
  }

  get maxTextBytes(): number {
    return maxTextBytes(this.#buckets);
  }

  /** The body of our `key` message. */
  offer(): string {
    return JSON.stringify({ v: VERSION, curve: 'P-256', pub: toBase64Url(this.#publicRaw) });
  }

  /** Takes the partner's `key` message; false if it is malformed or a different key than before. */
  async accept(offerBody: string, chatId: string): Promise<boolean> {
    const partnerRaw = parseOffer(offerBody);
    if (!partnerRaw) return false;
    if (this.#partnerRaw) return sameBytes(this.#partnerRaw, partnerRaw);
    let partnerKey: Key;
    try {
      partnerKey = await subtle().importKey('raw', partnerRaw, { name: 'ECDH', namedCurve: 'P-256' }, false, []);
    } catch {
      return false;
    }
    const secret = await subtle().deriveBits({ name: 'ECDH', public: partnerKey }, this.#pair.privateKey, 256);
    const hkdf = await subtle().importKey('raw', secret, 'HKDF', false, ['deriveKey']);
    const salt = utf8.encode(chatId);
    const directionKey = (senderRaw: Bytes, usage: 'encrypt' | 'decrypt') =>
      subtle().deriveKey(
        { name: 'HKDF', hash: 'SHA-256', salt, info: utf8.encode(INFO_PREFIX + toBase64Url(senderRaw)) },
        hkdf,
        { name: 'AES-GCM', length: 256 },
        false,
        [usage],
      );
    this.#sendKey = await directionKey(this.#publicRaw, 'encrypt');
    this.#receiveKey = await directionKey(partnerRaw, 'decrypt');
    this.#partnerRaw = partnerRaw;
    this.safetyCode = await safetyCode(this.#publicRaw, partnerRaw);
    return true;
  }

  /** Encrypts one text; throws if keys are not ready or the text is over `maxTextBytes`. */
  async seal(text: string): Promise<string> {
    if (!this.#sendKey) throw new Error('keys not ready');
    const bytes = utf8.encode(text);
    const size = this.#buckets.find((b) => b >= bytes.length + HEADER_BYTES);
    if (size === undefined) throw new Error(`text is over ${this.maxTextBytes} bytes`);
    const plain = new Uint8Array(size);
    const view = new DataView(plain.buffer);
    view.setUint32(0, ++this.#sent);
    view.setUint16(4, bytes.length);
    plain.set(bytes, HEADER_BYTES);
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = new Uint8Array(await subtle().encrypt({ name: 'AES-GCM', iv }, this.#sendKey, plain));
    const out = new Uint8Array(1 + IV_BYTES + sealed.length);
    out[0] = VERSION;
    out.set(iv, 1);
    out.set(sealed, 1 + IV_BYTES);
    return toBase64Url(out);
  }

  /**
   * Encrypts one part of a file transfer under the send key, with `header` (transfer id, part, index) bound as
   * associated data: iv | ciphertext and tag. A part cannot be moved to another place or transfer unnoticed.
   */
  async sealPart(header: Bytes, plain: Bytes): Promise<Bytes> {
    if (!this.#sendKey) throw new Error('keys not ready');
    const iv = globalThis.crypto.getRandomValues(new Uint8Array(IV_BYTES));
    const sealed = await subtle().encrypt({ name: 'AES-GCM', iv, additionalData: header }, this.#sendKey, plain);
    const out = new Uint8Array(IV_BYTES + sealed.byteLength);
    out.set(iv);
    out.set(new Uint8Array(sealed), IV_BYTES);
    return out;
  }

  /** Opens what sealPart made on the other side; null if it was tampered with or moved. */
  async openPart(header: Bytes, sealed: Bytes): Promise<Bytes | null> {
    if (!this.#receiveKey || sealed.length < IV_BYTES + TAG_BYTES) return null;
    try {
      const plain = await subtle().decrypt(
        { name: 'AES-GCM', iv: sealed.subarray(0, IV_BYTES), additionalData: header },
        this.#receiveKey,
        sealed.subarray(IV_BYTES),
      );
      return new Uint8Array(plain);
    } catch {
      return null;
    }
  }

  /** Decrypts one body; reports tampering, replays and how many counters were skipped. */
  async open(body: string): Promise<OpenResult> {
    const bytes = fromBase64Url(body);
    if (!this.#receiveKey || !bytes || bytes.length < 1 + IV_BYTES + TAG_BYTES + HEADER_BYTES || bytes[0] !== VERSION)
      return { ok: false, reason: 'malformed' };
    let plain: Bytes;
    try {
      plain = new Uint8Array(
        await subtle().decrypt(
          { name: 'AES-GCM', iv: bytes.subarray(1, 1 + IV_BYTES) },
          this.#receiveKey,
          bytes.subarray(1 + IV_BYTES),
        ),
      );
    } catch {
      return { ok: false, reason: 'tampered' };
    }
    const view = new DataView(plain.buffer, plain.byteOffset, plain.byteLength);
    const counter = view.getUint32(0);
    const length = view.getUint16(4);
    if (length > plain.length - HEADER_BYTES) return { ok: false, reason: 'malformed' };
    if (counter <= this.#received) return { ok: false, reason: 'replayed' };
    let text: string;
    try {
      text = fromUtf8.decode(plain.subarray(HEADER_BYTES, HEADER_BYTES + length));
    } catch {
      return { ok: false, reason: 'malformed' };
    }
    const missed = counter - this.#received - 1;
    this.#received = counter;
    return { ok: true, text, counter, missed };
  }
}

function parseOffer(body: string): Bytes | null {
  try {
    const o = JSON.parse(body) as { v?: unknown; curve?: unknown; pub?: unknown };
    if (o.v !== VERSION || o.curve !== 'P-256' || typeof o.pub !== 'string') return null;
    const raw = fromBase64Url(o.pub);
    // An uncompressed P-256 point: 0x04 | x | y.
    return raw && raw.length === 65 && raw[0] === 4 ? raw : null;
  } catch {
    return null;
  }
}

function sameBytes(a: Uint8Array, b: Uint8Array): boolean {
  return a.length === b.length && a.every((v, i) => v === b[i]);
}

function compareBytes(a: Uint8Array, b: Uint8Array): number {
  for (let i = 0; i < Math.min(a.length, b.length); i++) if (a[i] !== b[i]) return (a[i] ?? 0) - (b[i] ?? 0);
  return a.length - b.length;
}

/** 12 digits from SHA-256 of both public keys in byte order, shown as "1234 5678 9012". */
export async function safetyCode(a: Bytes, b: Bytes): Promise<string> {
  const [first, second] = compareBytes(a, b) <= 0 ? [a, b] : [b, a];
  const both = new Uint8Array(first.length + second.length);
  both.set(first);
  both.set(second, first.length);
  const digest = new DataView(await subtle().digest('SHA-256', both));
  // 48 bits mod 10^12: the bias is below 2^-8 per code, harmless for comparing by eye.
  const n = (digest.getUint32(0) * 0x10000 + digest.getUint16(4)) % 1e12;
  const digits = n.toString().padStart(12, '0');
  return `${digits.slice(0, 4)} ${digits.slice(4, 8)} ${digits.slice(8)}`;
}
