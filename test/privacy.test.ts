import { randomUUID } from 'node:crypto';
import { Writable } from 'node:stream';
import t from 'tap';
import { createLogger } from '../src/logger.js';
import { startTestServer } from './fixtures/server.js';
import { TestClient } from './fixtures/ws-client.js';

t.test('no message body, token or client address ever reaches a log line or an error message', async (t) => {
  // Most verbose level: whatever could leak, would.
  const srv = await startTestServer({ logLevel: 'trace', maxMessageBytes: 64, maxErrorsPerMinute: 100 });
  t.teardown(srv.close);
  const marker = `MARKER-${randomUUID()}`;
  // Before hello, where only the edge has seen the frames: a msg, a non-JSON frame, a hello with a wrong version.
  for (const first of [
    JSON.stringify({ type: 'msg', id: marker.slice(0, 60), body: marker }),
    `not json ${marker}`,
    JSON.stringify({ type: 'hello', v: 99, marker, resume: { id: marker, token: marker, lastSeq: 0 } }),
  ]) {
    const early = await TestClient.open(srv.url, { localAddress: '127.0.0.2' });
    early.sendRaw(first);
    const close = await early.closeEvent();
    t.notMatch(close.reason, marker, 'the close reason does not echo it');
  }
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

t.test('the logger censors what could hold client input, even if a call site passed it', async (t) => {
  const lines: string[] = [];
  const sink = new Writable({
    write(chunk: Buffer, _enc, done) {
      lines.push(chunk.toString('utf8'));
      done();
    },
  });
  const logger = createLogger('trace', sink);
  const marker = `MARKER-${randomUUID()}`;
  const fields = ['frame', 'text', 'body', 'token', 'address', 'ip', 'data', 'message', 'payload', 'id', 'code'];
  logger.info(Object.fromEntries(fields.map((k) => [k, marker])), 'top level');
  logger.info({ context: Object.fromEntries(fields.map((k) => [k, marker])) }, 'one level down');
  t.equal(lines.length, 2);
  for (const line of lines) {
    t.notMatch(line, marker, 'no field leaked');
    const entry = JSON.parse(line) as Record<string, unknown>;
    const fieldsOf = (entry.context ?? entry) as Record<string, unknown>;
    for (const k of fields) t.equal(fieldsOf[k], '[redacted]', `${k} is censored`);
  }
});
