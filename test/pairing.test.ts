import t from 'tap';
import { WaitingRoom } from '../src/pairing.js';
import { ManualClock } from './fixtures/manual-clock.js';

interface SetupOptions {
  interestWaitMs?: number;
  maxLength?: number;
  /** Pairs never to be matched (a block). */
  incompatible?: [string, string][];
  /** Pairs kept apart for this many ms from the start (a rematch cool-down). */
  coolingDown?: [string, string, number][];
}

function setup(opts: SetupOptions = {}) {
  const clock = new ManualClock();
  const start = clock.now();
  const pairs: [string, string, string[]][] = [];
  const from = new Map<string, number>();
  const keep = (a: string, b: string, at: number) => {
    from.set(`${a}|${b}`, at);
    from.set(`${b}|${a}`, at);
  };
  for (const [a, b] of opts.incompatible ?? []) keep(a, b, Number.POSITIVE_INFINITY);
  for (const [a, b, ms] of opts.coolingDown ?? []) keep(a, b, start + ms);
  const room = new WaitingRoom({
    clock,
    interestWaitMs: opts.interestWaitMs ?? 1000,
    maxLength: opts.maxLength ?? 100,
    compatibleFrom: (a, b) => from.get(`${a}|${b}`) ?? 0,
    onMatch: (a, b, shared) => pairs.push([a.id, b.id, shared]),
  });
  return { clock, room, pairs };
}

t.test('FIFO: the longest waiter is taken first', async (t) => {
  const { room, pairs } = setup();
  t.equal(room.enqueue('a'), 'queued');
  t.equal(room.enqueue('b'), 'matched');
  t.equal(room.enqueue('c'), 'queued');
  t.equal(room.enqueue('d'), 'matched');
  t.same(pairs, [
    ['a', 'b', []],
    ['c', 'd', []],
  ]);
  t.equal(room.length, 0);
});

t.test('incompatible people are skipped but keep their place', async (t) => {
  const { room, pairs } = setup({ incompatible: [['a', 'b']] });
  room.enqueue('a');
  t.equal(room.enqueue('b'), 'queued');
  room.enqueue('c');
  t.same(pairs, [['a', 'c', []]]);
  room.enqueue('d');
  t.same(pairs[1], ['b', 'd', []]);
});

t.test('interests: a shared tag wins over an older stranger', async (t) => {
  const { room, pairs } = setup();
  room.enqueue('plain');
  room.enqueue('music', ['music']);
  room.enqueue('chess1', ['chess', 'go']);
  room.enqueue('chess2', ['go', 'chess']);
  t.same(pairs, [['chess1', 'chess2', ['chess', 'go']]]);
});

t.test('interests: after the wait, anyone', async (t) => {
  const { room, pairs, clock } = setup({ interestWaitMs: 1000 });
  room.enqueue('plain');
  room.enqueue('music', ['music']);
  t.same(pairs, [], 'still hoping for music');
  clock.advance(999);
  t.same(pairs, []);
  clock.advance(1);
  t.same(pairs, [['plain', 'music', []]], 'the older waiter comes first');
});

t.test('a flexible newcomer does not take someone still waiting for their interest', async (t) => {
  const { room, pairs, clock } = setup({ interestWaitMs: 1000 });
  room.enqueue('music', ['music']);
  t.equal(room.enqueue('plain'), 'queued');
  clock.advance(1000);
  t.same(pairs, [['music', 'plain', []]]);
});

t.test('remove takes someone out of every index and cancels their timer', async (t) => {
  const { room, pairs, clock } = setup();
  room.enqueue('a', ['x']);
  t.equal(room.remove('a'), true);
  t.equal(room.remove('a'), false);
  room.enqueue('b', ['x']);
  clock.advance(5000);
  room.enqueue('c');
  t.same(pairs, [['b', 'c', []]]);
});

t.test('the room is bounded', async (t) => {
  const { room } = setup({ maxLength: 2, interestWaitMs: 10_000 });
  t.equal(room.enqueue('a', ['1']), 'queued');
  t.equal(room.enqueue('b', ['2']), 'queued');
  t.equal(room.enqueue('c', ['3']), 'full');
  t.equal(room.enqueue('d', ['1']), 'matched', 'a match is still possible when full');
});

t.test('two people kept apart by a cool-down are paired the moment it ends, with nobody else arriving', async (t) => {
  const { room, pairs, clock } = setup({ coolingDown: [['a', 'b', 30_000]] });
  t.equal(room.enqueue('a'), 'queued');
  t.equal(room.enqueue('b'), 'queued', 'still cooling down');
  clock.advance(29_999);
  t.same(pairs, []);
  clock.advance(1);
  t.same(pairs, [['a', 'b', []]], 'the longer waiter first');
  t.equal(room.length, 0);
});

t.test(
  'a cool-down with a shared-interest partner ends inside the interest wait: they match on the interest',
  async (t) => {
    const { room, pairs, clock } = setup({ interestWaitMs: 5000, coolingDown: [['a', 'b', 2000]] });
    room.enqueue('a', ['chess']);
    room.enqueue('b', ['chess']);
    clock.advance(2000);
    t.same(pairs, [['a', 'b', ['chess']]]);
  },
);

t.test('a cool-down that ends after both interest waits: matched then, as flexible', async (t) => {
  const { room, pairs, clock } = setup({ interestWaitMs: 1000, coolingDown: [['a', 'b', 4000]] });
  room.enqueue('a', ['go']);
  room.enqueue('b', ['chess']);
  clock.advance(3999);
  t.same(pairs, []);
  clock.advance(1);
  t.same(pairs, [['a', 'b', []]]);
});

t.test(
  'while cooling down with one waiter, a compatible newcomer is taken at once; the timer then does nothing',
  async (t) => {
    const { room, pairs, clock } = setup({ coolingDown: [['a', 'b', 1000]] });
    room.enqueue('a');
    room.enqueue('b');
    room.enqueue('c');
    t.same(pairs, [['a', 'c', []]], 'a, the longest waiter, with the newcomer');
    clock.advance(5000);
    t.same(pairs, [['a', 'c', []]], 'b waits on, alone');
    t.equal(room.length, 1);
  },
);

t.test('a block never ends: no timer pairs the two', async (t) => {
  const { room, pairs, clock } = setup({ incompatible: [['a', 'b']] });
  room.enqueue('a');
  room.enqueue('b');
  clock.advance(24 * 3600_000);
  t.same(pairs, []);
  t.equal(room.length, 2);
});
