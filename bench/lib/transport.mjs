// One socket to a relay, as text frames: plain WebSocket (ours and the ws
// peer) or Socket.IO (its peer, one `f` event per frame). Bound to a source
// address so one machine can open more than 64k connections' worth of ports.
import { Agent } from 'node:http';
import { io } from 'socket.io-client';
import WebSocket from 'ws';

export function openSocket(kind, url, localAddress, onText, onClose) {
  return new Promise((resolve, reject) => {
    if (kind === 'socketio') {
      const { origin } = new URL(url.replace(/^ws/, 'http'));
      const socket = io(origin, {
        path: '/ws',
        transports: ['websocket'],
        reconnection: false,
        forceNew: true,
        agent: new Agent({ localAddress }),
      });
      socket.on('f', (text) => onText(String(text)));
      socket.once('connect', () =>
        resolve({ send: (text) => socket.emit('f', text), close: () => socket.disconnect() }),
      );
      socket.once('connect_error', reject);
      socket.on('disconnect', onClose);
      return;
    }
    const ws = new WebSocket(url, { localAddress, perMessageDeflate: false });
    ws.on('message', (data) => onText(data.toString()));
    // Frames sent in the same tick leave in one write, as a browser's would; without this the
    // generator spends its CPU on one syscall per frame and becomes the bottleneck.
    let corked = false;
    const uncork = () => {
      corked = false;
      ws._socket?.uncork();
    };
    const send = (text) => {
      if (!corked && ws._socket) {
        corked = true;
        ws._socket.cork();
        setImmediate(uncork);
      }
      ws.send(text);
    };
    ws.once('open', () => resolve({ send, close: () => ws.terminate() }));
    ws.once('error', reject);
    ws.on('error', () => {});
    ws.on('close', onClose);
  });
}
