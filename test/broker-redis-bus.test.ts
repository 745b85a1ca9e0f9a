/**
 * How the Redis bus batches envelopes: everything sent to one instance within
 * an event-loop turn goes as one PUBLISH, in order; receipts (`stored`,
 * `delivered`, `read`) wait up to RECEIPT_DELAY_MS for something else going
 * the same way, and go alone after that. Publishes are counted by Redis itself
 * (INFO commandstats), on a connection of the test's own.
 */
import { Redis } from 'ioredis';
import t, { type Test } from 'tap';
import { RECEIPT_DELAY_MS } from '../src/broker-redis.js';
import type { Envelope } from '../src/envelope.js';
import { until } from './fixtures/chatters.js';
import { startRedis } from './fixtures/redis.js';
import { startBroker } from './fixtures/redis-broker.js';

const turn = () => new Promise<void>((resolve) => setImmediate(resolve));

async function twoInstances(t: Test) {
  const redis = await startRedis({ tcp: true });
  t.teardown(redis.stop);
  const heard: Envelope[] = [];
  const heardAt: number[] = [];
  const envelope = (env: Envelope) => {
    heard.push(env);
    heardAt.push(performance.now());
  };
  const n0 = await startBroker(t, redis, 'n0', { envelope });
  await startBroker(t, redis, 'n1', { envelope });
  const admin = new Redis(redis.options);
  t.teardown(() => admin.disconnect());
  const publishes = async () => {
    const stats = await admin.info('commandstats');
    return Number(/cmdstat_publish:calls=(\d+)/.exec(stats)?.[1] ?? 0);
  };
  return { n0, heard, heardAt, publishes, redis };
}

const msg = (id: string): Envelope => ({
  t: 'msg',
  to: 'b',
  chat: 'c',
  from: 'a',
  node: 'n0',
  id,
  body: 'x',
  ts: Date.now(),
});
const stored = (id: string, seq: number): Envelope => ({ t: 'stored', to: 'a', chat: 'c', id, seq });
const delivered = (seq: number): Envelope => ({ t: 'delivered', to: 'a', chat: 'c', seq });

t.test('a receipt waits for a message going the same way, and both go in one publish, in order', async (t) => {
  const { n0, heard, publishes } = await twoInstances(t);
  const before = await publishes();
  n0.send('n1', stored('m1', 1));
  n0.send('n1', delivered(1));
  // The receipts alone would have gone at the end of this turn; they wait for the next one's message.
  await turn();
  n0.send('n1', msg('m2'));
  await until('the envelopes', () => heard.length === 3);
  t.same(
    heard.map((e) => e.t),
    ['stored', 'delivered', 'msg'],
    'in the order they were sent',
  );
  t.equal((await publishes()) - before, 1, 'one publish carried all three');
});

t.test('a receipt alone goes after the delay, in one publish with the others of that time', async (t) => {
  const { n0, heard, heardAt, publishes } = await twoInstances(t);
  const before = await publishes();
  const sentAt = performance.now();
  n0.send('n1', stored('m1', 1));
  n0.send('n1', delivered(1));
  n0.send('n1', { t: 'read', to: 'a', chat: 'c', seq: 1 });
  await until('the envelopes', () => heard.length === 3);
  // Node's timers count from the loop's time, cached when this turn began: up to a millisecond early.
  const waited = (heardAt[0] ?? 0) - sentAt;
  t.ok(waited >= RECEIPT_DELAY_MS - 1, `it waited ${waited.toFixed(2)} ms (the delay is ${RECEIPT_DELAY_MS} ms)`);
  t.equal((await publishes()) - before, 1, 'one publish');
});

t.test('anything but a receipt goes at the end of the turn, taking the waiting receipts along', async (t) => {
  const { n0, heard, publishes } = await twoInstances(t);
  const before = await publishes();
  n0.send('n1', delivered(1));
  n0.send('n1', msg('m1'));
  await turn();
  n0.send('n1', msg('m2'));
  await until('the envelopes', () => heard.length === 3);
  t.same(
    heard.map((e) => e.t),
    ['delivered', 'msg', 'msg'],
  );
  t.equal((await publishes()) - before, 2, 'two turns, two publishes: a message never waits');
});

t.test('a command issued after a receipt reaches Redis after it, not 2 ms before', async (t) => {
  const { n0, heard, redis } = await twoInstances(t);
  // MONITOR lists the commands Redis runs, in the order it runs them.
  const base = new Redis(redis.options);
  const watcher = await base.monitor();
  t.teardown(() => {
    watcher.disconnect();
    base.disconnect();
  });
  const seen: string[] = [];
  watcher.on('monitor', (_time: string, args: string[]) => {
    const name = String(args[0]).toLowerCase();
    if (name === 'publish' || (name === 'set' && args[1] === 'probe')) seen.push(name);
  });
  n0.send('n1', stored('m1', 1));
  // A script or a plain command publishes what is pending first, so Redis sees this instance's commands in the
  // order the relay issued them, whatever waits.
  await n0.commands.set('probe', '1');
  await until('the envelopes', () => heard.length === 1 && seen.length === 2);
  t.same(seen, ['publish', 'set']);
  t.equal(heard[0]?.t, 'stored');
});
