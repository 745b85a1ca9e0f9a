import t from 'tap';
import { startTestServer } from './fixtures/server.js';
import { pairedClients } from './fixtures/ws-client.js';

t.test('health, readiness and 404', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const health = await fetch(`${srv.http}/healthz`);
  t.equal(health.status, 200);
  t.same(await health.json(), { status: 'ok' });
  const ready = await fetch(`${srv.http}/readyz`);
  t.equal(ready.status, 200);
  t.same(await ready.json(), { status: 'ready' });
  const missing = await fetch(`${srv.http}/nope`);
  t.equal(missing.status, 404);
  t.equal(missing.headers.get('x-content-type-options'), 'nosniff');
});

t.test('metrics expose the figures ops read', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const { a, b } = await pairedClients(srv.url);
  a.send({ type: 'msg', id: '1', body: 'counted' });
  await b.next('msg');
  a.send({ type: 'bogus' });
  await a.next('error');
  const res = await fetch(`${srv.http}/metrics`);
  t.equal(res.status, 200);
  t.match(res.headers.get('content-type'), /text\/plain/);
  const text = await res.text();
  for (const [name, value] of [
    ['relay_connections', 2],
    ['relay_sessions', 2],
    ['relay_queue_length', 0],
    ['relay_active_chats', 1],
    ['relay_messages_relayed_total', 1],
    ['relay_buffer_messages', 1],
  ] as const)
    t.match(text, new RegExp(`^${name} ${value}$`, 'm'), `${name} = ${value}`);
  t.match(text, /^relay_buffer_bytes \d+$/m);
  t.match(text, /^relay_buffered_delivery_seconds_count 0$/m, 'a live message is not a buffered delivery');
  t.match(text, /^relay_errors_total\{code="unknown_type"\} 1$/m);
  t.match(text, /^relay_matches_total\{via="random"\} 1$/m);
  t.match(text, /^relay_process_resident_memory_bytes \d+/m);
});
