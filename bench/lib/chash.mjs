// Which relay instance nginx's `hash $relay_route consistent` sends a route key
// to, computed here the way nginx's upstream hash module does it (ketama, as in
// Cache::Memcached::Fast): each server "host:port" gets 160 points on a ring,
// the first at crc32(host \0 port prev) with prev = 0 and each next one chained
// from the last (4 bytes, little-endian); a key goes to the first point at or
// after crc32(key), wrapping around. The gateway bench uses it to put the two
// sides of each pair on different instances before it connects; it checks the
// prediction against each instance's own count of open sockets (/metrics).
// Only the first choice: a server that is down, failed or refusing (nginx then
// tries the next point's server) is not modelled.
import { crc32 } from 'node:zlib';

const POINTS_PER_SERVER = 160;

/** `servers` as written in nginx's upstream block ("127.0.0.1:18301"); returns key => index into `servers`. */
export function consistentHash(servers) {
  const points = [];
  servers.forEach((server, index) => {
    const colon = server.lastIndexOf(':');
    const host = colon < 0 ? server : server.slice(0, colon);
    const port = colon < 0 ? '' : server.slice(colon + 1);
    const base = crc32(Buffer.concat([Buffer.from(host), Buffer.from([0]), Buffer.from(port)]));
    const prev = Buffer.alloc(4);
    for (let j = 0; j < POINTS_PER_SERVER; j++) {
      const hash = crc32(prev, base);
      points.push({ hash, index });
      prev.writeUInt32LE(hash, 0);
    }
  });
  points.sort((a, b) => a.hash - b.hash);
  // nginx keeps one point per hash value (the first after sorting).
  const ring = points.filter((p, i) => i === 0 || p.hash !== points[i - 1].hash);
  return (key) => {
    const h = crc32(key);
    let lo = 0;
    let hi = ring.length;
    while (lo < hi) {
      const mid = (lo + hi) >> 1;
      if (ring[mid].hash < h) lo = mid + 1;
      else hi = mid;
    }
    return ring[lo % ring.length].index;
  };
}

/**
 * A route key for client `n` named from `base`: with `balanced`, the first of base, base + 'b1', base + 'b2', ...
 * that the hash sends to instance n % `count` (a few tries each), so clients spread evenly and two consecutive
 * ones land on two instances; else `base` itself (random placement, as the page's random keys get).
 */
export function routeKey(slotOf, base, n, count, balanced) {
  if (!balanced) return base;
  for (let k = 0; ; k++) {
    const key = k === 0 ? base : `${base}b${k}`;
    if (slotOf(key) === n % count) return key;
  }
}
