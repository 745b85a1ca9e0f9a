// One socket to a relay, as text frames: plain WebSocket through the lean
// raw-ws client (ours and the ws peer) or Socket.IO's own client (its peer,
// one `f` event per frame). Bound to a source address so one machine can open
// more than 64k connections' worth of ports, and to a source port chosen here:
// with port 0 on a fixed address, Linux searches the whole ephemeral range for
// a free port on every bind, which made connecting slower with every socket
// (75% of the generator's CPU at 5,000 sockets).
import { Agent } from 'node:http';
import { Agent as TlsAgent } from 'node:https';
import { io } from 'socket.io-client';
import { openRawSocket } from './raw-ws.mjs';

let FIRST_PORT = 20_000;
let PORTS = 40_000;
let nextPort = FIRST_PORT + Math.floor(Math.random() * PORTS);
const takePort = () => {
  nextPort = nextPort + 1 >= FIRST_PORT + PORTS ? FIRST_PORT : nextPort + 1;
  return nextPort;
};

/**
 * Source ports from `first` on, `count` of them. A port bound explicitly, on any address, is one Linux will not
 * pick for anyone's connect() (the ephemeral range, 32768-60999 here): the gateway bench keeps its clients below
 * that range, or nginx runs out of ports for its connections to the instances (EADDRNOTAVAIL at ~45,000 sockets).
 */
export function sourcePorts(first, count) {
  FIRST_PORT = first;
  PORTS = count;
  nextPort = FIRST_PORT + Math.floor(Math.random() * PORTS);
}

/** Opens one socket; a source port still in use (TIME_WAIT from an earlier run) is skipped. */
export async function openSocket(kind, url, localAddress, onText, onClose, tls) {
  for (let attempt = 1; ; attempt++) {
    try {
      return await openOnce(kind, url, { address: localAddress, port: takePort() }, onText, onClose, tls);
    } catch (err) {
      if (attempt >= 5 || !['EADDRINUSE', 'EADDRNOTAVAIL'].includes(err?.code)) throw err;
    }
  }
}

function openOnce(kind, url, local, onText, onClose, tls) {
  if (kind !== 'socketio') return openRawSocket(url, local, onText, onClose, tls);
  return new Promise((resolve, reject) => {
    const { origin } = new URL(url.replace(/^ws/, 'http'));
    const bind = { localAddress: local.address, localPort: local.port };
    const socket = io(origin, {
      path: '/ws',
      transports: ['websocket'],
      reconnection: false,
      forceNew: true,
      agent: url.startsWith('wss:')
        ? new TlsAgent({ ...bind, rejectUnauthorized: process.env.BENCH_TLS_VERIFY === '1' })
        : new Agent(bind),
    });
    socket.on('f', (text) => onText(String(text)));
    socket.once('connect', () => resolve({ send: (text) => socket.emit('f', text), close: () => socket.disconnect() }));
    socket.once('connect_error', reject);
    socket.on('disconnect', onClose);
  });
}
