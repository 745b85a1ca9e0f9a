import t from 'tap';
import { WaitingRoom } from '../src/pairing.js';
import { ManualClock } from './fixtures/manual-clock.js';

function setup(opts: { interestWaitMs?: number; maxLength?: number; incompatible?: [string, string][] } = {}) {
  const clock = new ManualClock();
  const pairs: [string, string, string[]][] = [];
  const blocked = new Set((opts.incompatible ?? []).flatMap(([a, b]) => [`${a}|${b}`, `${b}|${a}`]));
  const room = new WaitingRoom({
    clock,
    interestWaitMs: opts.interestWaitMs ?? 1000,
    maxLength: opts.maxLength ?? 100,
    compatible: (a, b) => !blocked.has(`${a}|${b}`),
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
