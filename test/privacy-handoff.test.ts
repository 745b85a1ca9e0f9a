/**
 * Found by the reliability suite's privacy check (test/reliability/privacy.ts): after a session moved to another
 * instance, the old instance's forwarding timer held the whole Session (its chat, partner, interests) for
 * FORWARD_MS (60 s), where only its id is needed. Now only the id stays; the Session can be collected at once.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import t from 'tap';
import { startTestCluster } from './fixtures/cluster.js';
import { pairAcross, url } from './fixtures/cluster-scenarios.js';
import { sleep, TestClient } from './fixtures/ws-client.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

t.test('a session that moved to another instance leaves nothing of itself but its id behind', async (t) => {
  const cluster = await startTestCluster('memory', { nodes: 2 });
  t.teardown(cluster.close);
  const { a, b, wb } = await pairAcross(cluster, 0, 1);
  const n1 = cluster.nodes[1];
  if (!n1) throw new Error('no second node');
  // No strong reference here: this function's own variables would keep it alive.
  const ref = new WeakRef(n1.server.relay.sessions.get(wb.id) ?? {});
  t.ok(ref.deref() !== undefined && n1.server.relay.sessions.get(wb.id) !== undefined, "b's session is on n1");
  b.close();
  await a.next('partner');
  // b comes back on n0: n1 hands the session over and keeps a forwarding entry for it.
  const b2 = await TestClient.resume(url(cluster, 0), wb, 0);
  t.match(await b2.next('welcome'), { resumed: true, state: 'chatting' });
  t.equal(n1.server.relay.sessions.get(wb.id), undefined, 'n1 no longer holds the session');
  for (let i = 0; i < 20 && ref.deref() !== undefined; i++) {
    await sleep(50);
    gc();
  }
  t.equal(ref.deref(), undefined, "the moved session's object was collected on n1");
  a.send({ type: 'msg', id: 'after', body: 'still forwarded' });
  t.match(await b2.next('msg'), { id: 'after' }, 'and a message still reaches it');
});

/**
 * Also found by the privacy check: with Redis, an instance remembered a chat's pair (for the rematch cool-down)
 * and a report's block under both ids, but forgot only its own session's entry when it ended; the partner's,
 * if the partner lived on another instance, stayed for good: who chatted with whom, growing without bound.
 */
t.test('with Redis, no instance keeps who chatted with whom after both sessions ended', async (t) => {
  const cluster = await startTestCluster('redis', { nodes: 2 });
  t.teardown(cluster.close);
  const remembered = () =>
    cluster.nodes.map((n) => (n.server.broker.matchmaker as unknown as { remembered: number }).remembered);
  // One chat that ends with a leave (its pair remembered for the rematch cool-down), one with a report (blocked).
  for (const how of ['leave', 'report'] as const) {
    const { a, b } = await pairAcross(cluster, 0, 1);
    if (how === 'report') {
      a.send({ type: 'report' });
      await a.next('ended');
    }
    a.ws.close(1000);
    await b.next('ended');
    b.ws.close(1000);
    await Promise.all([a.closed, b.closed]);
  }
  for (let i = 0; i < 40 && remembered().some((n) => n > 0); i++) await sleep(50);
  t.same(remembered(), [0, 0], 'every instance forgot both sides of both pairs');
});
