/**
 * Canaries: unique random strings (message bodies, interests, invite codes),
 * the secrets the relay hands out (tokens, session ids) and client addresses
 * chosen at random in 127/8, so that a search of logs, Redis or a heap
 * snapshot for them can only find what really leaked. A hit is never a
 * coincidence: every generated canary carries 96 random bits.
 */
import { randomBytes, randomInt } from 'node:crypto';

export type CanaryKind =
  | 'body'
  | 'interest'
  /** A code the relay made (POST /api/v1/invites). */
  | 'invite'
  /** A code a client made up (never valid). */
  | 'guess'
  | 'token'
  | 'session'
  /** The id of a session someone reported: kept on purpose for REPORT_WINDOW_MS (the cool-down needs it). */
  | 'reported'
  /** The id of a session that resumed on another instance: the old one forwards to it for 60 s (FORWARD_MS). */
  | 'moved'
  | 'chat'
  | 'address';

export interface Canary {
  kind: CanaryKind;
  /** Every spelling it could be found under (an address also as IPv4-mapped IPv6 hex). */
  spellings: string[];
}

export interface Hit {
  kind: CanaryKind;
  /** The canary, cut to 12 characters: a report must not be what it warns about. */
  canary: string;
  /** Some context around the first find, canary itself masked. */
  around: string;
  /** The whole canary, for debugging only (PRIVACY_KEEP_SNAPSHOTS). */
  full: string;
}

/** The prefix of every generated canary: a scan finds them all in one pass. */
const PREFIX = 'qzcnry';

export class Canaries {
  readonly #all: Canary[] = [];
  readonly #generated = new Map<string, CanaryKind>();
  readonly #addresses = new Set<string>();

  /** A fresh random canary (lower-case hex, so it survives the relay's interest normalization). */
  make(kind: 'body' | 'interest'): string {
    const value = `${PREFIX}${randomBytes(12).toString('hex')}`;
    this.#generated.set(value, kind);
    this.#all.push({ kind, spellings: [value] });
    return value;
  }

  /** A random loopback address other than 127.0.0.1 (Linux routes all of 127/8 to lo). */
  address(): string {
    for (;;) {
      const a = `127.${randomInt(10, 250)}.${randomInt(10, 250)}.${randomInt(100, 250)}`;
      if (this.#addresses.has(a)) continue;
      this.#addresses.add(a);
      const hex = a
        .split('.')
        .map((o) => Number(o).toString(16).padStart(2, '0'))
        .join('');
      this.#all.push({ kind: 'address', spellings: [a, `ffff:${hex.slice(0, 4)}:${hex.slice(4)}`] });
      return a;
    }
  }

  /** Something the relay made (a token, a session or chat id, an invite code) that must not show up. */
  add(kind: CanaryKind, value: string): void {
    if (value.length < 8) throw new Error(`a canary of ${value.length} characters would match by chance`);
    this.#all.push({ kind, spellings: [value] });
  }

  get size(): number {
    return this.#all.length;
  }

  count(kind: CanaryKind): number {
    return this.#all.filter((c) => c.kind === kind).length;
  }

  /** Every canary of `kinds` (default all) found in `text`. */
  scan(text: string | Buffer, kinds?: readonly CanaryKind[]): Hit[] {
    const buf = typeof text === 'string' ? Buffer.from(text, 'utf8') : text;
    const want = (k: CanaryKind) => !kinds || kinds.includes(k);
    const hits: Hit[] = [];
    const found = new Set<string>();
    // Generated canaries: one pass over every occurrence of the shared prefix.
    const prefix = Buffer.from(PREFIX, 'latin1');
    for (let at = buf.indexOf(prefix); at >= 0; at = buf.indexOf(prefix, at + 1)) {
      const value = buf.toString('latin1', at, at + PREFIX.length + 24);
      const kind = this.#generated.get(value);
      if (kind && want(kind) && !found.has(value)) {
        found.add(value);
        hits.push(hit(kind, value, buf, at));
      }
    }
    // The rest, each searched for on its own (few: tokens, ids, addresses).
    for (const c of this.#all) {
      if (!want(c.kind) || c.spellings[0]?.startsWith(PREFIX)) continue;
      for (const s of c.spellings) {
        const at = buf.indexOf(s, 0, 'latin1');
        if (at >= 0) {
          hits.push(hit(c.kind, s, buf, at));
          break;
        }
      }
    }
    return hits;
  }
}

function hit(kind: CanaryKind, value: string, buf: Buffer, at: number): Hit {
  const before = buf.toString('latin1', Math.max(0, at - 60), at);
  const after = buf.toString('latin1', at + value.length, at + value.length + 60);
  return {
    kind,
    full: value,
    canary: `${value.slice(0, 12)}…`,
    around: `${before}[${kind}]${after}`.replace(/[^\x20-\x7e]/g, '.'),
  };
}

/** Hits counted by kind, for a figure: "0 hits" or "2 hits (body 1, token 1)". */
export function describeHits(hits: readonly Hit[]): string {
  if (hits.length === 0) return '0 hits';
  const by = new Map<string, number>();
  for (const h of hits) by.set(h.kind, (by.get(h.kind) ?? 0) + 1);
  return `${hits.length} hits (${[...by].map(([k, n]) => `${k} ${n}`).join(', ')})`;
}
