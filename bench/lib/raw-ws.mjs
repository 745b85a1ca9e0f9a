// The generator's own WebSocket client: just enough RFC 6455 for protocol v1
// text frames over a plain TCP socket. It exists because the `ws` client spent
// more CPU per connection and per frame than the relay under test (HTTP parsing,
// a random mask per frame, one write per frame), and a generator that is the
// bottleneck measures nothing. Frames are masked with a zero key (valid: the
// mask is required, its value is not checked), and writes made in one tick
// leave in one syscall.
import { connect, isIP } from 'node:net';
import { connect as connectTls } from 'node:tls';

const KEY = 'YmVuY2gtZ2VuZXJhdG9yIQ=='; // any 16 bytes in base64; the server only echoes a hash of it
const OP_TEXT = 1;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;

function frame(opcode, payload) {
  const len = payload.length;
  const head = len < 126 ? 6 : len < 65536 ? 8 : 14;
  const out = Buffer.allocUnsafe(head + len);
  out[0] = 0x80 | opcode;
  if (len < 126) out[1] = 0x80 | len;
  else if (len < 65536) {
    out[1] = 0x80 | 126;
    out.writeUInt16BE(len, 2);
  } else {
    out[1] = 0x80 | 127;
    out.writeBigUInt64BE(BigInt(len), 2);
  }
  out.writeUInt32BE(0, head - 4); // the zero mask leaves the payload as it is
  payload.copy(out, head);
  return out;
}

/** Opens ws:// or wss://host:port/path from `local` ({ address, port }); resolves with { send, close } once upgraded. */
export function openRawSocket(url, local, onText, onClose) {
  const { protocol, host, hostname, port, pathname } = new URL(url);
  const secure = protocol === 'wss:';
  return new Promise((resolve, reject) => {
    const options = {
      host: hostname,
      port: Number(port || (secure ? 443 : 80)),
      localAddress: local.address,
      localPort: local.port,
    };
    // A TLS proxy in a bench usually has a self-signed certificate: BENCH_TLS_VERIFY=1 checks it.
    const socket = secure
      ? connectTls({
          ...options,
          servername: isIP(hostname) ? undefined : hostname,
          rejectUnauthorized: process.env.BENCH_TLS_VERIFY === '1',
        })
      : connect(options);
    socket.setNoDelay(true);
    let upgraded = false;
    let pending = null;
    let corked = false;
    const uncork = () => {
      corked = false;
      socket.uncork();
    };
    const write = (buf) => {
      if (socket.destroyed) return;
      if (!corked) {
        corked = true;
        socket.cork();
        setImmediate(uncork);
      }
      socket.write(buf);
    };
    const api = {
      send: (text) => write(frame(OP_TEXT, Buffer.from(text))),
      close: () => socket.destroy(),
    };

    const parse = (buf) => {
      let at = 0;
      while (buf.length - at >= 2) {
        const opcode = buf[at] & 0x0f;
        let len = buf[at + 1] & 0x7f;
        let head = 2;
        if (len === 126) {
          if (buf.length - at < 4) break;
          len = buf.readUInt16BE(at + 2);
          head = 4;
        } else if (len === 127) {
          if (buf.length - at < 10) break;
          len = Number(buf.readBigUInt64BE(at + 2));
          head = 10;
        }
        if (buf.length - at < head + len) break;
        const start = at + head;
        at = start + len;
        if (opcode === OP_TEXT) onText(buf.toString('utf8', start, at));
        else if (opcode === OP_PING) write(frame(OP_PONG, buf.subarray(start, at)));
        else if (opcode === OP_CLOSE) socket.destroy();
        else if (opcode !== OP_PONG) socket.destroy(new Error(`unexpected opcode ${opcode}`));
      }
      pending = at < buf.length ? buf.subarray(at) : null;
    };

    socket.once(secure ? 'secureConnect' : 'connect', () =>
      socket.write(
        `GET ${pathname} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
          `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
      ),
    );
    socket.on('data', (chunk) => {
      const buf = pending ? Buffer.concat([pending, chunk]) : chunk;
      if (upgraded) return parse(buf);
      const end = buf.indexOf('\r\n\r\n');
      if (end < 0) {
        pending = buf;
        return;
      }
      if (!buf.toString('latin1', 0, 12).startsWith('HTTP/1.1 101')) {
        socket.destroy();
        return reject(new Error(`upgrade refused: ${buf.toString('latin1', 0, buf.indexOf('\r\n'))}`));
      }
      upgraded = true;
      resolve(api);
      parse(buf.subarray(end + 4));
    });
    socket.once('error', (err) => {
      if (!upgraded) reject(err);
    });
    socket.once('close', () => {
      if (upgraded) onClose();
      else reject(new Error('closed before the upgrade'));
    });
  });
}
