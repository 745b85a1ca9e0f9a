/**
 * Client addresses never leave this file in clear. They are turned into a
 * keyed digest (HMAC with keys.ts's address key: random per process alone,
 * shared by the instances of a cluster) that is good for counting connections
 * and cool-downs, but cannot be reversed, is never logged, and alone cannot be
 * correlated across restarts.
 *
 * Per-address limits count an IPv6 client by its /64: one home or phone gets a
 * whole /64 and can pick any address in it, so counting single IPv6 addresses
 * would give one person billions of allowances. IPv4-mapped IPv6 addresses
 * (a dual-stack listener) count as the IPv4 address they carry.
 */
import { createHmac } from 'node:crypto';
import { isIPv4, isIPv6 } from 'node:net';

export type AddressKey = string & { readonly __brand: 'AddressKey' };

/** 128 bits of the HMAC, encoded straight to 22 characters (a slice would keep the whole digest string alive). */
export function addressKey(key: Buffer, address: string): AddressKey {
  return createHmac('sha256', key).update(limitedUnit(address)).digest().toString('base64url', 0, 16) as AddressKey;
}

/** What one client is counted as: an IPv4 address, or the /64 of an IPv6 one (`2001:db8:1:2::/64`). */
export function limitedUnit(address: string): string {
  const bare = address.startsWith('[') && address.endsWith(']') ? address.slice(1, -1) : address;
  if (!isIPv6(bare)) return bare;
  const groups = ipv6Groups(bare);
  const mapped = groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff;
  if (mapped) {
    const [hi = 0, lo = 0] = groups.slice(6);
    return [hi >> 8, hi & 0xff, lo >> 8, lo & 0xff].join('.');
  }
  return `${groups
    .slice(0, 4)
    .map((g) => g.toString(16))
    .join(':')}::/64`;
}

/** The eight 16-bit groups of a valid IPv6 address (with `::` expanded and a trailing IPv4 part converted). */
function ipv6Groups(address: string): number[] {
  let text = address.split('%')[0] ?? address;
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text)?.[1];
  if (v4 && isIPv4(v4)) {
    const [a = 0, b = 0, c = 0, d = 0] = v4.split('.').map(Number);
    text = `${text.slice(0, -v4.length)}${((a << 8) | b).toString(16)}:${((c << 8) | d).toString(16)}`;
  }
  const [head = '', tail] = text.split('::');
  const parse = (part: string) => (part === '' ? [] : part.split(':').map((g) => Number.parseInt(g, 16)));
  const left = parse(head);
  if (tail === undefined) return left;
  const right = parse(tail);
  return [...left, ...Array<number>(8 - left.length - right.length).fill(0), ...right];
}

/**
 * The client's address in a comma-separated forwarding header that `hops`
 * trusted proxies appended to: each appends the address it was reached from,
 * so the entry `hops` from the right is the one the outermost trusted proxy saw.
 * Entries to its left were written by the client or an untrusted hop and are
 * ignored. With fewer entries than hops, the leftmost is the best there is.
 */
export function forwardedAddress(header: string, hops: number): string {
  const parts = header.split(',');
  const index = Math.max(0, parts.length - hops);
  return (parts[index] ?? '').trim();
}
