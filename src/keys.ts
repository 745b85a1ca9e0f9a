/**
 * The two secrets a relay keys its digests with: one for resume tokens
 * (identity.ts) and one for client-address digests (address.ts). Alone, each
 * process draws them at random, so nothing it made outlives it. In a cluster
 * every instance derives the same two from CLUSTER_SECRET (HKDF-SHA-256, one
 * label per use), so any instance can check any token and count any address,
 * and the secret itself is never used as a key.
 */
import { hkdfSync, randomBytes } from 'node:crypto';

export interface RelayKeys {
  /** Keys resume tokens: token = HMAC(token, session id). */
  readonly token: Buffer;
  /** Keys client-address digests, so no address is ever kept or sent in clear. */
  readonly address: Buffer;
}

export const randomKeys = (): RelayKeys => ({ token: randomBytes(32), address: randomBytes(32) });

/** The same keys on every instance that shares `secret` (at least 32 bytes). */
export function clusterKeys(secret: Buffer): RelayKeys {
  const derive = (label: string) => Buffer.from(hkdfSync('sha256', secret, 'anon-chat-relay', label, 32));
  return { token: derive('resume-token v1'), address: derive('address-digest v1') };
}
