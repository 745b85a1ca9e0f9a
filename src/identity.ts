/**
 * Anonymous identities. The public id (a UUID v4) names a session to its
 * partner; the secret token (256 random bits, base64url) proves ownership on
 * resume. Only a SHA-256 digest of the token is kept (its first 128 bits, as
 * base64 text: a string costs a session about 50 bytes where a Buffer costs
 * about 700), and it is compared in constant time.
 */
import { Buffer } from 'node:buffer';
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import { validate as uuidValidate, version as uuidVersion, v4 as uuidv4 } from 'uuid';

export interface Identity {
  id: string;
  token: string;
  tokenDigest: string;
}

/** 128 bits of SHA-256 are kept: forging a match still takes 2^128 work, and the string is 24 bytes smaller. */
const DIGEST_BYTES = 16;
const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

export function newIdentity(): Identity {
  const token = randomBytes(32).toString('base64url');
  return { id: uuidv4(), token, tokenDigest: digest(token).toString('base64', 0, DIGEST_BYTES) };
}

/** Constant-time check of a presented token against the stored digest. */
export function tokenMatches(tokenDigest: string, presented: string): boolean {
  // Hashing first makes both sides the same length, so timingSafeEqual never throws
  // and the comparison time does not depend on the presented value.
  return timingSafeEqual(Buffer.from(tokenDigest, 'base64'), digest(presented).subarray(0, DIGEST_BYTES));
}

export const isUuidV4 = (s: string): boolean => uuidValidate(s) && uuidVersion(s) === 4;

export const newChatId = (): string => uuidv4();
