import t from 'tap';
import { type DropReason, type Lane, RelayBuffer } from '../src/relay-buffer.js';
import { ManualClock } from './fixtures/manual-clock.js';

function setup(over: Partial<ConstructorParameters<typeof RelayBuffer>[0]> = {}) {
  const clock = new ManualClock();
  const drops: DropReason[] = [];
  const buffer = new RelayBuffer({
    clock,
    ttlMs: 1000,
    maxMessages: 100,
    maxBytes: 100_000,
    laneMaxMessages: 10,
    laneMaxBytes: 10_000,
    dedupeWindow: 3,
    onDrop: (r) => drops.push(r),
    ...over,
  });
  return { clock, buffer, drops };
}

const push = (buffer: RelayBuffer, lane: Lane, clientId: string, frame = `frame-${clientId}`) => {
  const { seq, duplicate } = buffer.assignSeq(lane, clientId);
  if (!duplicate) buffer.append(lane, seq, frame, 0);
  return seq;
};

const replay = (buffer: RelayBuffer, lane: Lane, after: number) => {
  const out: (string | [number, number])[] = [];
  buffer.replay(
    lane,
    after,
    (f) => out.push(f),
    (from, to) => out.push([from, to]),
  );
  return out;
};

t.test('replay returns what the recipient has not got, in order', async (t) => {
  const { buffer } = setup();
  const lane = buffer.newLane();
  for (const id of ['a', 'b', 'c']) push(buffer, lane, id);
  t.same(replay(buffer, lane, 0), ['frame-a', 'frame-b', 'frame-c']);
  t.same(replay(buffer, lane, 2), ['frame-c']);
  t.same(replay(buffer, lane, 3), []);
  t.same(replay(buffer, lane, 99), [], 'a lastSeq beyond the end replays nothing');
});

t.test('ack frees messages and replay never goes below the ack', async (t) => {
  const { buffer } = setup();
  const lane = buffer.newLane();
  for (const id of ['a', 'b', 'c']) push(buffer, lane, id);
  t.equal(buffer.ack(lane, 2), true);
  t.equal(buffer.ack(lane, 1), false, 'older acks change nothing');
  t.equal(buffer.messages, 1);
  t.equal(lane.count, 1);
  t.same(replay(buffer, lane, 0), ['frame-c'], 'acked messages are not a gap');
});

t.test('idempotent seqs within the dedupe window', async (t) => {
  const { buffer } = setup();
  const lane = buffer.newLane();
  t.equal(push(buffer, lane, 'x'), 1);
  t.equal(push(buffer, lane, 'x'), 1);
  t.equal(buffer.messages, 1);
  push(buffer, lane, 'y');
  push(buffer, lane, 'z');
  push(buffer, lane, 'w');
  t.equal(push(buffer, lane, 'x'), 5, 'an id older than the window is new again');
});

t.test('the lane bound drops the oldest and replay reports the gap', async (t) => {
  const { buffer, drops } = setup({ laneMaxMessages: 3 });
  const lane = buffer.newLane();
  for (const id of ['1', '2', '3', '4', '5']) push(buffer, lane, id);
  t.equal(lane.count, 3);
  t.same(drops, ['lane_bound', 'lane_bound']);
  t.same(replay(buffer, lane, 0), [[1, 2], 'frame-3', 'frame-4', 'frame-5']);
  t.same(replay(buffer, lane, 1), [[2, 2], 'frame-3', 'frame-4', 'frame-5']);
});

t.test('the lane byte bound also drops the oldest', async (t) => {
  const { buffer } = setup({ laneMaxBytes: 25 });
  const lane = buffer.newLane();
  push(buffer, lane, 'a', 'x'.repeat(10));
  push(buffer, lane, 'b', 'y'.repeat(10));
  push(buffer, lane, 'c', 'z'.repeat(10));
  t.equal(lane.bytes, 20);
  t.same(replay(buffer, lane, 0), [[1, 1], 'y'.repeat(10), 'z'.repeat(10)]);
});

t.test('the global byte budget drops the oldest message in the process', async (t) => {
  const { buffer, drops } = setup({ maxBytes: 30 });
  const l1 = buffer.newLane();
  const l2 = buffer.newLane();
  push(buffer, l1, 'a', 'x'.repeat(10));
  push(buffer, l2, 'b', 'x'.repeat(10));
  push(buffer, l2, 'c', 'x'.repeat(10));
  push(buffer, l2, 'd', 'x'.repeat(10));
  t.same(drops, ['global_bound']);
  t.equal(buffer.bytes, 30);
  t.equal(l1.count, 0, 'lane counters follow global evictions');
  t.same(replay(buffer, l1, 0), [[1, 1]]);
  t.equal(replay(buffer, l2, 0).length, 3);
});

t.test('TTL: messages older than the resume window are gone, and that is a gap', async (t) => {
  const { buffer, clock, drops } = setup({ ttlMs: 1000 });
  const lane = buffer.newLane();
  push(buffer, lane, 'old');
  clock.advance(600);
  push(buffer, lane, 'new');
  clock.advance(500);
  t.same(replay(buffer, lane, 0), [[1, 1], 'frame-new']);
  buffer.purgeStale();
  t.equal(buffer.messages, 1);
  t.equal(lane.count, 1);
  t.same(drops, ['expired']);
});

t.test('release frees a whole lane at once', async (t) => {
  const { buffer } = setup();
  const lane = buffer.newLane();
  const other = buffer.newLane();
  for (const id of ['a', 'b', 'c']) push(buffer, lane, id);
  push(buffer, other, 'keep');
  buffer.release(lane);
  t.equal(lane.count, 0);
  t.equal(lane.bytes, 0);
  t.equal(buffer.messages, 1, 'other lanes untouched');
});

t.test('the global message bound drops the oldest message in the process, across lanes', async (t) => {
  const { buffer, drops } = setup({ maxMessages: 3 });
  const l1 = buffer.newLane();
  const l2 = buffer.newLane();
  push(buffer, l1, 'a');
  push(buffer, l2, 'b');
  push(buffer, l1, 'c');
  push(buffer, l2, 'd');
  push(buffer, l2, 'e');
  t.same(drops, ['global_bound', 'global_bound']);
  t.equal(buffer.messages, 3);
  t.same(replay(buffer, l1, 0), [[1, 1], 'frame-c'], 'l1 lost its oldest (a)');
  t.same(replay(buffer, l2, 0), [[1, 1], 'frame-d', 'frame-e'], 'then l2 lost b, the next oldest');
});

t.test('expiry goes by arrival across lanes, and acked lanes keep the order intact', async (t) => {
  const { buffer, clock } = setup({ ttlMs: 1000 });
  const l1 = buffer.newLane();
  const l2 = buffer.newLane();
  push(buffer, l1, 'a');
  clock.advance(300);
  push(buffer, l2, 'b');
  push(buffer, l1, 'c');
  buffer.ack(l2, 1);
  clock.advance(800);
  t.same(replay(buffer, l1, 0), [[1, 1], 'frame-c'], 'only a is past its TTL');
  t.equal(buffer.messages, 1);
  buffer.ack(l1, 2);
  t.equal(buffer.messages, 0, 'the buffer empties');
  push(buffer, l1, 'd');
  t.same(replay(buffer, l1, 2), ['frame-d'], 'and works again after emptying');
  t.equal(buffer.bytes, 'frame-d'.length);
});
