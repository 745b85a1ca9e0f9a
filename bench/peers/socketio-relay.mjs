// Reference relay on Socket.IO (WebSocket transport only, no polling), same
// protocol v1 semantics via relay-core.mjs: each protocol frame is one `f`
// event carrying the JSON text. PORT env, path /ws, prints "listening".
import { createServer } from 'node:http';
import { Server } from 'socket.io';
import { RelayCore } from './relay-core.mjs';

const core = new RelayCore();
// Requests outside /ws (the bench's readiness probe) get a 404; Socket.IO passes them through.
const http = createServer((_req, res) => res.writeHead(404).end());
const io = new Server(http, { path: '/ws', transports: ['websocket'], maxHttpBufferSize: 16 * 1024 });
io.on('connection', (socket) => {
  const handler = core.attach((text) => socket.emit('f', text));
  socket.on('f', (text) => handler.message(String(text)));
  socket.on('disconnect', () => handler.close());
});
setInterval(() => core.sweep(), 5000).unref();
http.listen(Number(process.env.PORT ?? 8082), process.env.HOST ?? '127.0.0.1', () =>
  console.log(JSON.stringify({ msg: 'listening', port: http.address().port })),
);
