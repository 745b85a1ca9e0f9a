// Reference relay on `ws` (the most used Node WebSocket server), same protocol
// v1 semantics as ours via relay-core.mjs. PORT env, /ws path, prints "listening".
import { createServer } from 'node:http';
import { WebSocketServer } from 'ws';
import { RelayCore } from './relay-core.mjs';

const core = new RelayCore();
const http = createServer((_req, res) => res.writeHead(404).end());
const wss = new WebSocketServer({ server: http, path: '/ws', maxPayload: 16 * 1024 });
wss.on('connection', (ws) => {
  const handler = core.attach((text) => ws.send(text));
  ws.on('message', (data) => handler.message(data.toString()));
  ws.on('close', () => handler.close());
  ws.on('error', () => {});
});
setInterval(() => core.sweep(), 5000).unref();
http.listen(Number(process.env.PORT ?? 8081), process.env.HOST ?? '127.0.0.1', () =>
  console.log(JSON.stringify({ msg: 'listening', port: http.address().port })),
);
