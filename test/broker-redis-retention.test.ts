/**
 * The Redis matchmaker's local copies of blocks and rematch cool-downs (kept for
 * pairing within the instance while Redis is down) are dropped when their
 * session ends here or moves away. They were kept under both sessions of a
 * pair, so an instance kept, forever, one entry per chat ended with a partner
 * on another instance (the partner's forget() runs on its own instance): about
 * 375 bytes of heap per such chat, found by the reliability suite's memory
 * check. And the local room still honours both, either way round.
 */
import { randomUUID } from 'node:crypto';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t, { type Test } from 'tap';
import type { Ticket } from '../src/broker.js';
import { startRedis } from './fixtures/redis.js';
import { startBroker } from './fixtures/redis-broker.js';
import { sleep } from './fixtures/ws-client.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;
const heapUsed = (): number => {
  gc();
  gc();
  return process.memoryUsage().heapUsed;
};

async function broker(t: Test, matches: [string, string][] = []) {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const b = await startBroker(t, redis, 'n0', { match: (first, second) => matches.push([first.id, second.id]) });
  return { b, redis };
}

t.test('no local memory is kept for a chat once its session here is forgotten or moved away', async (t) => {
  const { b } = await broker(t);
  const mm = b.matchmaker;
  const n = 6000;
  const round = async () => {
    // A chat with a partner on another instance ends by `leave` (cool-down), then by a block, then the session
    // here goes: the partner's own forget() runs elsewhere.
    const a = randomUUID();
    await mm.rememberPair(a, randomUUID(), Date.now() + 60_000);
    await mm.block(a, randomUUID());
    await mm.forget(a);
    // A session that resumed on another instance after its chat ended.
    const m = randomUUID();
    await mm.rememberPair(m, randomUUID(), Date.now() + 60_000);
    mm.handOver(m);
  };
  // Warm up the code paths (and ioredis's, and Redis's scripts) before the first measure.
  for (let i = 0; i < 2000; i++) await round();
  const before = heapUsed();
  for (let i = 0; i < n; i++) await round();
  const grown = heapUsed() - before;
  // Before the fix: about 3 KiB per round (18 MiB here).
  t.ok(grown < 3 * 1024 * 1024, `heap grew ${Math.round(grown / 1024)} KiB over ${n} rounds (less than 3 MiB)`);
});

t.test(
  'with Redis down, the local room still keeps apart a pair on cool-down or blocked, either way round',
  async (t) => {
    const matches: [string, string][] = [];
    const { b, redis } = await broker(t, matches);
    const mm = b.matchmaker;
    const [a, c, d, e, f] = Array.from({ length: 5 }, () => randomUUID()) as [string, string, string, string, string];
    await mm.rememberPair(a, c, Date.now() + 60_000);
    await mm.block(d, e);
    await redis.kill();
    for (let i = 0; i < 100 && b.up; i++) await sleep(50);
    t.notOk(b.up, 'the broker sees Redis down');
    const ticket = (id: string, since: number): Ticket => ({ id, node: 'n0', interests: [], since });
    const now = Date.now();
    // The side the cool-down was remembered under finds second: it must still not be paired with the first.
    await mm.find(ticket(c, now));
    await mm.find(ticket(a, now + 1));
    t.same(matches, [], 'the pair on cool-down was not matched');
    await mm.cancel(c);
    await mm.cancel(a);
    await mm.find(ticket(e, now + 2));
    await mm.find(ticket(d, now + 3));
    t.same(matches, [], 'the blocked pair was not matched');
    await mm.find(ticket(f, now + 4));
    t.same(matches, [[e, f]], 'a newcomer is paired with the longest waiter');
  },
);
