// The write path, on a stand-in for a uWS socket (the relay's real sockets
// exercise it in every other test): frames queue per socket and leave once per
// loop turn, in order, one corked batch per socket; a reader that falls behind
// is closed as a slow consumer.
import type { WebSocket } from 'uWebSockets.js';
import { setImmediate as nextTurn } from 'node:timers/promises';
import t from 'tap';
import { UwsConnection } from '../src/ws-connection.js';

function fakeSocket() {
  const written: string[] = [];
  const ws = {
    corks: 0,
    send: (frame: string) => {
      written.push(frame);
      return 1;
    },
    cork: (fn: () => void) => {
      ws.corks++;
      fn();
    },
    getBufferedAmount: () => 0,
    end: () => {},
  };
  return { ws: ws as unknown as WebSocket<unknown>, written, corks: () => ws.corks };
}

function connection() {
  const { ws, written, corks } = fakeSocket();
  const closes: number[] = [];
  const conn = new UwsConnection({ maxBackpressure: 1024, onClose: (code) => closes.push(code) });
  conn.attach(ws);
  return { conn, written, closes, corks };
}

t.test('frames wait for the end of the loop turn, then leave in one corked batch', async (t) => {
  const { conn, written, corks } = connection();
  conn.send('a');
  conn.send('b');
  t.same(written, [], 'nothing written yet');
  await nextTurn();
  t.same(written, ['a', 'b']);
  t.equal(corks(), 1, 'one batch');
});

t.test('each socket gets its own batch, in the order sent', async (t) => {
  const a = connection();
  const b = connection();
  a.conn.send('a1');
  b.conn.send('b1');
  a.conn.send('a2');
  await nextTurn();
  t.same(a.written, ['a1', 'a2']);
  t.same(b.written, ['b1']);
});

t.test('a close writes what was queued first, then nothing more', async (t) => {
  const { conn, written, closes } = connection();
  conn.send('error frame');
  conn.close(4422, 'too_many_errors');
  t.same(written, ['error frame']);
  t.same(closes, [4422]);
  conn.send('after');
  await nextTurn();
  t.same(written, ['error frame']);
});

t.test('a reader past the backpressure bound is closed as slow_consumer', async (t) => {
  const { ws } = fakeSocket();
  (ws as unknown as { getBufferedAmount: () => number }).getBufferedAmount = () => 4096;
  const closes: number[] = [];
  const conn = new UwsConnection({ maxBackpressure: 1024, onClose: (code) => closes.push(code) });
  conn.attach(ws);
  conn.send('x');
  await nextTurn();
  t.same(closes, [4413]);
  t.equal(conn.closed, true);
});
