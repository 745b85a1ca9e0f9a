/**
 * Invite codes for pairing two friends. A code is 10 Crockford base32
 * characters (50 random bits), single-use, and expires after `ttlMs`. The
 * first holder to `join` waits on it; the second is paired with the first.
 * Expired and used codes are remembered for another `ttlMs`, so late holders
 * get a precise error instead of "unknown".
 */
import { randomInt } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import type { JoinOutcome } from './broker.js';
import type { Clock } from './clock.js';
import { entryBound } from './limits.js';

const ALPHABET = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const CODE_LENGTH = 10;

interface Invite {
  expiresAt: number;
  holder: string | null;
  /** The instance holding the holder. */
  holderNode: string;
  /** When the holder started waiting (clock ms). */
  heldSince: number;
  used: boolean;
}

export interface InviteBookOptions {
  clock: Clock;
  ttlMs: number;
  maxInvites: number;
}

export class InviteBook {
  readonly #invites: LRUCache<string, Invite>;

  constructor(private readonly opts: InviteBookOptions) {
    this.#invites = new LRUCache<string, Invite>({
      // Room for the tombstones of expired codes as well as the live ones.
      ...entryBound(opts.maxInvites * 2),
      ttl: opts.ttlMs * 2,
      perf: { now: () => opts.clock.now() },
    });
  }

  /** A fresh code, or null when the book is full. */
  create(): { code: string; expiresAt: number } | null {
    if (this.#liveCount() >= this.opts.maxInvites) return null;
    let code: string;
    do code = randomCode();
    while (this.#invites.has(code));
    const expiresAt = this.opts.clock.now() + this.opts.ttlMs;
    this.#invites.set(code, { expiresAt, holder: null, holderNode: '', heldSince: 0, used: false });
    return { code, expiresAt };
  }

  /** Waits on the code, or pairs with its holder. The holder joining again (it moved to `node`) keeps its wait. */
  join(rawCode: string, sessionId: string, node = ''): JoinOutcome {
    const invite = this.#invites.get(normalizeCode(rawCode));
    if (!invite) return { kind: 'error', code: 'invite_unknown' };
    if (invite.used) return { kind: 'error', code: 'invite_used' };
    if (invite.expiresAt <= this.opts.clock.now()) return { kind: 'error', code: 'invite_expired' };
    const now = this.opts.clock.now();
    if (invite.holder === null) {
      invite.holder = sessionId;
      invite.heldSince = now;
    }
    if (invite.holder === sessionId) {
      invite.holderNode = node;
      return { kind: 'wait' };
    }
    invite.used = true;
    const partner = invite.holder;
    invite.holder = null;
    return { kind: 'pair', partner, partnerNode: invite.holderNode, waitedMs: now - invite.heldSince };
  }

  /** The waiting holder cancelled or went away: the code stays open for them or a friend. */
  release(rawCode: string, sessionId: string): void {
    const invite = this.#invites.get(normalizeCode(rawCode));
    if (invite?.holder === sessionId) invite.holder = null;
  }

  /** Codes that can still be joined (read at metrics scrapes: it walks the book). */
  get size(): number {
    return this.#liveCount(true);
  }

  /** Exact, or (for the bound check on every create) exact only once the book holds as many entries as the bound. */
  #liveCount(exact = false): number {
    if (!exact && this.#invites.size < this.opts.maxInvites) return this.#invites.size;
    const now = this.opts.clock.now();
    let live = 0;
    for (const invite of this.#invites.values()) if (!invite.used && invite.expiresAt > now) live++;
    return live;
  }
}

/** Codes are shown in groups and may be typed in lower case: ignore case, spaces and dashes. */
export const normalizeCode = (raw: string): string => raw.toUpperCase().replace(/[\s-]/g, '');

export function randomCode(): string {
  let code = '';
  for (let i = 0; i < CODE_LENGTH; i++) code += ALPHABET[randomInt(ALPHABET.length)];
  return code;
}
