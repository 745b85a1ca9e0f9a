import t from 'tap';
import WebSocket from 'ws';
import type { MemoryNetwork } from '../src/broker-memory.js';
import { RelayClient, type WebSocketLike } from '../src/client.js';
import { startTestCluster } from './fixtures/cluster.js';
import { pairAcross, runScenarios, url } from './fixtures/cluster-scenarios.js';
import { relayClient, TestClient } from './fixtures/ws-client.js';

runScenarios(t, 'memory', () => startTestCluster('memory'));

t.test(
  "memory: the partner moves to the sender's own instance while a message is on its way: order kept",
  async (t) => {
    // The race behind a message arriving a place late across a drain: Alice (n1) sends to Bob's old instance (n0)
    // just as Bob moves to n1. n0 forwards it back, but it can come after n1 has already learned of the move
    // and stored Alice's next message locally. Held links make the race happen every time.
    const cluster = await startTestCluster('memory');
    t.teardown(cluster.close);
    const net = cluster.network as MemoryNetwork;
    const { a, b, wb } = await pairAcross(cluster, 1, 0);
    a.send({ type: 'msg', id: 'one', body: 'one' });
    await a.next('sent');
    t.match(await b.next('msg'), { seq: 1, id: 'one' });
    b.send({ type: 'ack', seq: 1 });
    await a.next('delivered');
    b.close();
    t.match(await a.next('partner'), { state: 'away' });
    const link = net.hold('n0', 'n1');
    const b2 = await TestClient.resume(url(cluster, 1), wb, 1);
    // n0 hands Bob over and tells Alice's side where he is now; both wait on the held link.
    await link.queued('presence');
    // Alice still believes Bob is on n0: her message goes there, and n0 forwards it behind the hand-over.
    a.send({ type: 'msg', id: 'two', body: 'two' });
    await link.queued('msg');
    link.release('presence');
    t.match(await b2.next('welcome'), { resumed: true, state: 'chatting' });
    a.send({ type: 'msg', id: 'three', body: 'three' });
    const sent = [await a.next('sent'), await a.next('sent')];
    t.same(sent.map((f) => f.id).sort(), ['three', 'two'], 'both confirmed');
    link.open();
    const got = [await b2.next('msg'), await b2.next('msg')];
    t.same(
      got.map((m) => [m.seq, m.id]),
      [
        [2, 'two'],
        [3, 'three'],
      ],
      'in the order Alice wrote them',
    );
    b2.send({ type: 'ack', seq: 3 });
    t.match(await a.next('delivered'), { seq: 3 });
    t.equal(b2.all('msg').length, 2, 'the forwarded copy was dropped, not relayed twice');
    a.close();
    b2.close();
  },
);

t.test(
  'memory: a message that reaches the new instance before the hand-over it waits for is kept, not answered with an end',
  async (t) => {
    // Bob moves from n0 to n2. n0 hands him over to n2 and tells Alice's instance (n1), which sends what Bob had
    // not stored yet straight to n2. Pub/sub orders each link, not the two: Alice's message can reach n2 before
    // n0's snapshot does. It must wait for the snapshot, not be taken for a message to a stranger (which ends the
    // chat for Alice with partner_gone).
    const cluster = await startTestCluster('memory');
    t.teardown(cluster.close);
    const net = cluster.network as MemoryNetwork;
    const { a, b, wb } = await pairAcross(cluster, 1, 0);
    b.close();
    t.match(await a.next('partner'), { state: 'away' });
    // n0's answer to n2 waits; Alice's message to Bob, on its way to n0, is forwarded there too.
    const link = net.hold('n0', 'n2');
    const b2 = await TestClient.resume(url(cluster, 2), wb, 0);
    await link.queued('adopted');
    a.send({ type: 'msg', id: 'm1', body: 'one' });
    await a.next('partner');
    link.open();
    t.match(await b2.next('welcome'), { resumed: true, state: 'chatting' });
    t.match(await b2.next('msg'), { seq: 1, id: 'm1', body: 'one' });
    t.match(await a.next('sent'), { id: 'm1', seq: 1 });
    b2.send({ type: 'msg', id: 'r1', body: 'still here' });
    t.match(await a.next('msg'), { id: 'r1' });
    t.equal(a.all('ended').length, 0, 'the chat did not end');
    a.close();
    b2.close();
  },
);

t.test(
  'memory: an instance dies; its client resumes elsewhere and the chat goes on, nothing lost or doubled',
  async (t) => {
    const cluster = await startTestCluster('memory');
    t.teardown(cluster.close);
    let aliceAt = 0;
    const alice = new RelayClient({
      url: () => url(cluster, aliceAt),
      createSocket: (u) => new WebSocket(u) as unknown as WebSocketLike,
    });
    const bob = relayClient(url(cluster, 1));
    t.teardown(() => {
      alice.close();
      bob.close();
    });
    await Promise.all([alice.connect(), bob.connect()]);
    const matched = Promise.all([alice.next('matched'), bob.next('matched')]);
    alice.send({ type: 'find' });
    bob.send({ type: 'find' });
    const [{ chat }] = await matched;
    bob.sendMessage('one');
    await alice.next('msg');
    await bob.next('delivered');
    // Alice's link drops; Bob writes on. His messages wait on Alice's instance, which then dies.
    const away = bob.next('partner');
    alice.drop();
    t.same(await away, { type: 'partner', state: 'away' });
    bob.sendMessage('two');
    bob.sendMessage('three');
    await bob.next('sent', (f) => f.seq === 3);
    t.equal(bob.undelivered, 2, 'sent but not delivered: Bob keeps them');
    await cluster.kill(0);
    aliceAt = 2;
    const resend = bob.next('resend');
    const got: { seq: number; body: string }[] = [];
    alice.on('msg', (m) => got.push(m));
    const welcome = await alice.connect();
    t.match(welcome, { resumed: true, state: 'chatting', chat: { id: chat, partner: 'here' } });
    t.same(await resend, { type: 'resend', after: 1 }, 'Bob is asked to send again what was lost');
    await bob.next('delivered', (f) => f.seq === 3);
    t.same(
      got.map((m) => [m.seq, m.body]),
      [
        [2, 'two'],
        [3, 'three'],
      ],
      'what the dead instance held arrives, in order',
    );
    t.equal(bob.undelivered, 0);
    alice.sendMessage('still here');
    t.match(await bob.next('msg'), { body: 'still here' });
    bob.sendMessage('four');
    await alice.next('msg');
    t.same(
      got.map((m) => m.seq),
      [2, 3, 4],
      'nothing twice',
    );
  },
);

t.test(
  'memory: an instance dies with a chat whose partner left meanwhile: the resumed client is told it ended',
  async (t) => {
    const cluster = await startTestCluster('memory');
    t.teardown(cluster.close);
    const { a, b, wa } = await pairAcross(cluster, 0, 1);
    a.close();
    await b.next('partner');
    await cluster.kill(0);
    b.send({ type: 'leave' });
    await b.next('ended');
    const a2 = await TestClient.resume(url(cluster, 2), wa, 0);
    t.match(await a2.next('welcome'), { resumed: true, id: wa.id, state: 'idle', chat: null });
    t.same(await a2.next('ended'), { type: 'ended', reason: 'partner_gone' }, 'explicit, not a silent hole');
  },
);
