import { randomUUID } from 'node:crypto';
import t from 'tap';
import { startTestServer } from './fixtures/server.js';
import { TestClient } from './fixtures/ws-client.js';

t.test('no message body, token or client address ever reaches a log line or an error message', async (t) => {
  // Most verbose level: whatever could leak, would.
  const srv = await startTestServer({ logLevel: 'trace', maxMessageBytes: 64, maxErrorsPerMinute: 100 });
  t.teardown(srv.close);
  const marker = `MARKER-${randomUUID()}`;
  const [a, wa] = await TestClient.hello(srv.url, { localAddress: '127.0.0.2' });
  const [b, wb] = await TestClient.hello(srv.url, { localAddress: '127.0.0.3' });
  a.send({ type: 'find' });
  b.send({ type: 'find' });
  await a.next('matched');
  await b.next('matched');

  a.send({ type: 'msg', id: marker.slice(0, 60), body: marker });
  t.match(await b.next('msg'), { body: marker }, 'the marker went through the chat');
  // The marker in every place bad input can put it.
  a.send({ type: 'msg', id: 'long', body: marker.repeat(5) });
  a.sendRaw(`{"type":"msg","body":"${marker}"`);
  a.sendRaw(`{"type":"${marker}"}`);
  a.send({ type: 'find', interests: [marker] });
  a.send({ type: 'join', code: marker.slice(0, 30) });
  const b2 = await TestClient.open(srv.url, { localAddress: '127.0.0.3' });
  b2.send({ type: 'hello', v: 1, resume: { id: wb.id, token: `${wb.token}x`, lastSeq: 0 } });
  await b2.next('welcome');
  for (let i = 0; i < 5; i++) await a.next('error');
  for (const e of a.all('error')) t.notMatch(e.message, marker, `error ${e.code} does not echo input`);

  const fetched = await fetch(`${srv.http}/metrics`);
  t.notMatch(await fetched.text(), /127\.0\.0\.[23]/, 'metrics hold no address');
  b.close();
  await a.next('partner');
  srv.close();

  const logs = srv.logs.lines.join('\n');
  t.ok(srv.logs.lines.length > 0, 'the server did log');
  t.notMatch(logs, marker, 'no body');
  t.notMatch(logs, wa.token, 'no token');
  t.notMatch(logs, wb.token, 'no token');
  t.notMatch(logs, /127\.0\.0\.[23]/, 'no client address');
  for (const line of srv.logs.objects()) t.type(line.level, 'number', 'every line is pino JSON');
});
