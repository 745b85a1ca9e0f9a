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

t.test('HEAD answers like GET without a body; a wrong method gets 405 with Allow', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  for (const path of ['/', '/app.js', '/healthz', '/readyz', '/metrics']) {
    const get = await fetch(`${srv.http}${path}`, { headers: { 'Accept-Encoding': 'identity' } });
    const body = await get.arrayBuffer();
    const head = await fetch(`${srv.http}${path}`, { method: 'HEAD', headers: { 'Accept-Encoding': 'identity' } });
    t.equal(head.status, get.status, `HEAD ${path}: same status`);
    t.equal(head.headers.get('content-type'), get.headers.get('content-type'), `HEAD ${path}: same type`);
    if (path !== '/metrics')
      t.equal(Number(head.headers.get('content-length')), body.byteLength, `HEAD ${path}: the length of the GET body`);
    t.equal((await head.arrayBuffer()).byteLength, 0, `HEAD ${path}: no body`);
  }
  for (const [method, path, allow] of [
    ['POST', '/healthz', 'GET, HEAD'],
    ['DELETE', '/readyz', 'GET, HEAD'],
    ['PUT', '/metrics', 'GET, HEAD'],
    ['POST', '/', 'GET, HEAD'],
    ['GET', '/api/v1/invites', 'POST'],
    ['DELETE', '/api/v1/invites', 'POST'],
  ] as const) {
    const res = await fetch(`${srv.http}${path}`, { method });
    t.equal(res.status, 405, `${method} ${path}`);
    t.equal(res.headers.get('allow'), allow);
    t.same(await res.json(), { error: 'method_not_allowed' });
  }
  t.equal((await fetch(`${srv.http}/nope`, { method: 'POST' })).status, 404, 'an unknown path is still 404');
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
  t.match(text, /^process_resident_memory_bytes \d+/m, "prom-client's standard names, for stock dashboards");
  t.match(text, /^nodejs_eventloop_lag_seconds \d/m);
  t.match(
    text,
    new RegExp(
      `^relay_build_info\\{version="\\d+\\.\\d+\\.\\d+",node="${process.versions.node}",uws="[^"]+@\\d[^"]*",instance="[0-9a-f]{12}"\\} 1$`,
      'm',
    ),
    'build info names the version, Node and the uWebSockets.js package',
  );
  t.match(text, /^relay_match_wait_seconds_count\{via="random"\} 2$/m, 'both people paired waited');
  t.match(text, /^relay_match_wait_seconds_count\{via="invite"\} 0$/m);
});

t.test('every labelled counter exists at 0 for its known labels before anything happened', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const text = await (await fetch(`${srv.http}/metrics`)).text();
  for (const line of [
    'relay_errors_total{code="rate_limited"} 0',
    'relay_errors_total{code="bad_json"} 0',
    'relay_closes_total{code="4429"} 0',
    'relay_closes_total{code="4413"} 0',
    'relay_buffer_dropped_total{reason="expired"} 0',
    'relay_matches_total{via="invite"} 0',
    'relay_hellos_total{outcome="resumed"} 0',
    'relay_sessions_ended_total{reason="evicted"} 0',
    'relay_upgrades_refused_total{reason="too_many_connections_from_address"} 0',
    'relay_upgrades_refused_total{reason="bad_handshake"} 0',
    'relay_reports_total 0',
    'relay_blocks_total 0',
  ])
    t.ok(text.split('\n').includes(line), line);
});

t.test('reports and blocks are counted', async (t) => {
  const srv = await startTestServer({ rematchCooldownMs: 0 });
  t.teardown(srv.close);
  const first = await pairedClients(srv.url);
  first.a.send({ type: 'report' });
  await first.b.next('ended');
  const second = await pairedClients(srv.url);
  second.a.send({ type: 'block' });
  await second.b.next('ended');
  const text = await (await fetch(`${srv.http}/metrics`)).text();
  t.match(text, /^relay_reports_total 1$/m);
  t.match(text, /^relay_blocks_total 1$/m);
});

t.test('a second relay on a port already in use fails to start instead of sharing it', async (t) => {
  const first = await startTestServer();
  t.teardown(first.close);
  await t.rejects(startTestServer({ port: first.server.port }), /cannot listen/);
  const health = await fetch(`${first.http}/healthz`);
  t.equal(health.status, 200, 'the first one serves on');
});
