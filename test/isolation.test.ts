import t from 'tap';
import { startTestServer } from './fixtures/server.js';
import { pairedClients, TestClient } from './fixtures/ws-client.js';

t.test('a misbehaving client never disturbs another chat or loses its data', async (t) => {
  const srv = await startTestServer({ maxPayloadBytes: 2048, maxMessageBytes: 1024, maxErrorsPerMinute: 5 });
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: '1', body: 'before' });
  await b.next('msg');

  const attackers = await Promise.all([1, 2, 3, 4].map(() => TestClient.open(srv.url)));
  const [raw, oversize, junk, violator] = attackers as [TestClient, TestClient, TestClient, TestClient];
  raw.sendRaw('\u0000\u0001 not a hello');
  oversize.sendRaw('x'.repeat(10_000));
  junk.sendRaw(Buffer.alloc(4096, 0xff), true);
  violator.send({ type: 'hello', v: 1 });
  await violator.next('welcome');
  for (let i = 0; i < 10; i++) violator.sendRaw('{{{{');
  for (const c of attackers) await c.closeEvent();

  a.send({ type: 'msg', id: '2', body: 'after' });
  b.send({ type: 'msg', id: '1', body: 'reply' });
  t.match(await b.next('msg'), { seq: 2, body: 'after' });
  t.match(await a.next('msg'), { seq: 1, body: 'reply' });
  t.equal(a.all('partner').length + b.all('partner').length, 0, 'the chat never noticed');
  t.equal(srv.server.relay.buffer.messages, 3, 'no buffered message was lost');
});
