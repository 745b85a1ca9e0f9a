/**
 * Client addresses never leave this file in clear. They are turned into a
 * keyed digest (HMAC with a per-process random key) that is good for counting
 * connections and cool-downs in memory, but cannot be reversed or correlated
 * across restarts, and is never logged.
 */
import { createHmac, randomBytes } from 'node:crypto';

export type AddressKey = string & { readonly __brand: 'AddressKey' };

const processKey = randomBytes(32);

/** 128 bits of the HMAC, encoded straight to 22 characters (a slice would keep the whole digest string alive). */
export function addressKey(address: string): AddressKey {
  return createHmac('sha256', processKey).update(address).digest().toString('base64url', 0, 16) as AddressKey;
}

/** The client address as the proxy saw it: the last entry of a comma-separated forwarding header. */
export function lastForwardedAddress(header: string): string {
  const parts = header.split(',');
  return (parts[parts.length - 1] ?? '').trim();
}
