/**
 * Anonymous identities. The public id (a UUID v4) names a session to its
 * partner; the secret token proves ownership on resume. The token is an HMAC
 * of the id under a key (keys.ts: random per process alone, derived from
 * CLUSTER_SECRET in a cluster), so the server keeps nothing per session to
 * check it: it recomputes the token from the id and compares in constant time.
 * Nobody without the key can make a token for an id (HMAC-SHA-256 is a PRF),
 * and alone a restart makes every old token worthless, which is right because
 * the sessions are gone too.
 * (Memory per session is a target in bench/: a stored digest cost 40 bytes,
 * and making a token needed a random draw and a hash.)
 */
import { Buffer } from 'node:buffer';
import { createHmac, timingSafeEqual } from 'node:crypto';
import { validate as uuidValidate, version as uuidVersion, v4 as uuidv4 } from 'uuid';

export interface Identity {
  id: string;
  token: string;
}

/** 256 bits, base64url (43 characters). */
export const tokenFor = (key: Buffer, id: string): string => createHmac('sha256', key).update(id).digest('base64url');

export function newIdentity(key: Buffer): Identity {
  const id = uuidv4();
  return { id, token: tokenFor(key, id) };
}

/** Constant-time check of a presented token against the one `id` was given. */
export function tokenMatches(key: Buffer, id: string, presented: string): boolean {
  return constantTimeEqual(presented, tokenFor(key, id));
}

/**
 * Whether two strings are equal, in time that depends only on their lengths,
 * not on where they first differ. Comparing lengths first reveals only the
 * length, which for tokens is public.
 */
export function constantTimeEqual(a: string, b: string): boolean {
  const x = Buffer.from(a, 'utf8');
  const y = Buffer.from(b, 'utf8');
  return x.length === y.length && timingSafeEqual(x, y);
}

export const isUuidV4 = (s: string): boolean => uuidValidate(s) && uuidVersion(s) === 4;

export const newChatId = (): string => uuidv4();
