// The floor: a bare uWebSockets.js relay doing the least work the bench's load
// generator (bench/lib/worker.mjs) accepts, so the report can say what fraction
// of it our relay reaches. Same library, same process model and the same
// generator as ours; everything else is left out. PORT env, /ws, prints "listening".
//
// What the generator needs, and all this answers:
// - `hello` -> `{"type":"welcome"}` (the generator waits for it before `find`; it keeps id and token only to
//   resume, which the floor does not do; a welcome on open instead would race the generator's listener);
// - `find` -> `{"type":"matched"}` to both, pairing with the one socket waiting (no `queued`: unread);
// - `msg` -> the partner gets the client's own frame with `"seq":N,` spliced in after its `{` (a counter per
//   recipient, reset on matching: the generator drops a seq it has seen), and the sender `{"type":"sent","seq":N}`
//   (it refills its window on `sent`; it never reads the id, so none is echoed);
// - `ack`, `ping` and anything else: read and dropped (the generator ignores `delivered` and `pong`).
//
// What it leaves out, each of which ours pays for: JSON parsing and validation (a frame's kind is the byte
// after `{"type":"`, where JSON.stringify puts it in the generator's frames; anything else is misread),
// identities and tokens, the resume window and the per-recipient buffer, acks and `delivered`, dedupe by
// message id, `queued`, `ended`/leave/next, interests and invites, rate and flood limits, per-address caps,
// the hello timeout, origin checks, any backpressure limit (a slow reader's frames pile up in uWS), metrics,
// logging, draining, and every HTTP route (anything but /ws is a 404). Its frames are also shorter than the
// protocol's: no ids, tokens, chat ids, interests or timestamps. A session is three fields on uWS's own socket
// object. The one thing kept that is not protocol is ours' write coalescing (below): leaving it out is less
// code but more work, a syscall per forwarded frame, and the floor is the least work, not the least code.
//
// So its figures are an upper bound, not a competitor: a relay that keeps the protocol's promises does all of
// this work and more, per message, per session set up and per idle session. It runs only the capacity and
// throughput phases; the resume storm and the artillery journey need what it leaves out.
import { App } from 'uWebSockets.js';

const WELCOME = '{"type":"welcome"}';
const MATCHED = '{"type":"matched"}';
const KIND_AT = 9; // '{"type":"'.length
const HELLO = 0x68; // h
const FIND = 0x66; // f
const MSG = 0x6d; // m

/** The one socket that sent `find` and has no partner yet. */
let waiting = null;

// Frames for a partner wait for the end of the loop turn and leave as one corked batch per socket: uWS
// corks only the socket it is reading from, so without this every forwarded frame is its own syscall
// (the floor managed about half of ours' messages per CPU-second that way). Frames to the socket being read
// (`welcome`, `sent`) go straight out: uWS has it corked already.
let dirty = [];
let scheduled = false;
let corked = null;
const writeCorked = () => {
  for (const text of corked.out) corked.send(text);
};

function queue(ws, text) {
  if (ws.out !== null) {
    ws.out.push(text);
    return;
  }
  ws.out = [text];
  dirty.push(ws);
  if (!scheduled) {
    scheduled = true;
    setImmediate(flush);
  }
}

function flush() {
  scheduled = false;
  const sockets = dirty;
  dirty = [];
  for (const ws of sockets) {
    if (ws.out === null) continue; // closed since
    corked = ws;
    ws.cork(writeCorked);
    ws.out = null;
  }
  corked = null;
}

const app = App()
  .ws('/ws', {
    idleTimeout: 120, // as ours runs in the bench (IDLE_TIMEOUT_S); uWS pings a quiet socket itself
    open(ws) {
      ws.partner = null;
      ws.seq = 0;
      ws.out = null; // frames queued for this turn
    },
    message(ws, message) {
      const frame = Buffer.from(message); // a view, no copy
      switch (frame[KIND_AT]) {
        case MSG: {
          const partner = ws.partner;
          if (partner === null) return;
          const seq = ++partner.seq;
          queue(partner, `{"seq":${seq},${frame.toString('utf8', 1)}`);
          ws.send(`{"type":"sent","seq":${seq}}`);
          return;
        }
        case HELLO:
          ws.send(WELCOME);
          return;
        case FIND: {
          if (waiting === null) {
            waiting = ws;
            return;
          }
          const other = waiting;
          waiting = null;
          ws.partner = other;
          other.partner = ws;
          ws.seq = 0;
          other.seq = 0;
          other.send(MATCHED);
          ws.send(MATCHED);
          return;
        }
      }
    },
    close(ws) {
      // uWS throws on a send to a closed socket: the partner forgets this one, and its queue goes.
      ws.out = null;
      if (waiting === ws) waiting = null;
      if (ws.partner !== null) ws.partner.partner = null;
    },
  })
  .any('/*', (res) => {
    res.writeStatus('404 Not Found').end();
  });

const port = Number(process.env.PORT ?? 8083);
app.listen(process.env.HOST ?? '127.0.0.1', port, (token) => {
  if (!token) {
    console.error(`floor: cannot listen on port ${port}`);
    process.exit(1);
  }
  console.log(JSON.stringify({ msg: 'listening', port }));
});
