/**
 * The WebSocket handshake as RFC 6455 (section 4.2.1) asks, over raw TCP: a
 * bad version gets 426 naming the one spoken, a request that is not a
 * WebSocket upgrade gets 400, and neither ever gets 101.
 */
import { connect } from 'node:net';
import t from 'tap';
import { startTestServer } from './fixtures/server.js';

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';

/** Sends a raw request and returns the status line and headers of the answer (lower-cased names). */
function request(port: number, lines: string[]): Promise<{ status: string; headers: Map<string, string> }> {
  return new Promise((resolve, reject) => {
    const socket = connect(port, '127.0.0.1', () => socket.write(`${lines.join('\r\n')}\r\n\r\n`));
    let text = '';
    socket.on('data', (chunk) => {
      text += chunk.toString('latin1');
      const end = text.indexOf('\r\n\r\n');
      if (end < 0) return;
      const [status = '', ...rest] = text.slice(0, end).split('\r\n');
      const headers = new Map(
        rest.map((h) => [h.slice(0, h.indexOf(':')).toLowerCase(), h.slice(h.indexOf(':') + 1).trim()]),
      );
      socket.destroy();
      resolve({ status, headers });
    });
    socket.on('error', reject);
  });
}

const handshake = (overrides: Record<string, string | null>) => {
  const headers: Record<string, string | null> = {
    Host: 'relay.test',
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': KEY,
    'Sec-WebSocket-Version': '13',
    ...overrides,
  };
  return ['GET /ws HTTP/1.1', ...Object.entries(headers).flatMap(([k, v]) => (v === null ? [] : [`${k}: ${v}`]))];
};

t.test('a well-formed handshake is upgraded (header names and tokens in any case)', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const variants: Record<string, string | null>[] = [{}, { Upgrade: 'WebSocket', Connection: 'keep-alive, Upgrade' }];
  for (const overrides of variants) {
    const { status, headers } = await request(srv.server.port, handshake(overrides));
    t.equal(status, 'HTTP/1.1 101 Switching Protocols', JSON.stringify(overrides));
    t.equal(headers.get('sec-websocket-accept'), 's3pPLMBiTxaQ9kYGzzhZRbK+xOo=');
  }
});

t.test('an unsupported or missing Sec-WebSocket-Version gets 426 naming version 13', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  for (const version of ['8', 'abc', '', null]) {
    const { status, headers } = await request(srv.server.port, handshake({ 'Sec-WebSocket-Version': version }));
    t.equal(status, 'HTTP/1.1 426 Upgrade Required', `version ${JSON.stringify(version)}`);
    t.equal(headers.get('sec-websocket-version'), '13');
  }
});

t.test('a request that is not a WebSocket upgrade never gets 101', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const cases: [string, Record<string, string | null>][] = [
    ['no Upgrade header', { Upgrade: null }],
    ['Upgrade: h2c', { Upgrade: 'h2c' }],
    ['no Connection: Upgrade', { Connection: 'keep-alive' }],
    ['a key that is not 16 bytes of base64', { 'Sec-WebSocket-Key': 'not base64 at all!!!!!==' }],
    ['a short key', { 'Sec-WebSocket-Key': 'abc' }],
    ['no key', { 'Sec-WebSocket-Key': null }],
  ];
  for (const [name, overrides] of cases) {
    const { status } = await request(srv.server.port, handshake(overrides));
    t.equal(status, 'HTTP/1.1 400 Bad Request', name);
  }
  const metrics = await (await fetch(`${srv.http}/metrics`)).text();
  t.match(metrics, /^relay_upgrades_refused_total\{reason="bad_handshake"\} 4$/m, 'the ones the upgrade handler saw');
});

t.test('a plain GET of /ws is told to upgrade (426), other methods get 405', async (t) => {
  const srv = await startTestServer();
  t.teardown(srv.close);
  const plain = await fetch(`${srv.http}/ws`);
  t.equal(plain.status, 426);
  t.equal(plain.headers.get('upgrade'), 'websocket');
  t.equal(plain.headers.get('sec-websocket-version'), '13');
  const post = await fetch(`${srv.http}/ws`, { method: 'POST' });
  t.equal(post.status, 405);
  t.equal(post.headers.get('allow'), 'GET, HEAD');
});
