// The generator's own WebSocket client: just enough RFC 6455 for protocol v1
// text frames over a plain TCP socket. It exists because the `ws` client spent
// more CPU per connection and per frame than the relay under test (HTTP parsing,
// a random mask per frame, one write per frame), and a generator that is the
// bottleneck measures nothing. What keeps it cheap:
// - frames are masked with a zero key (valid: the mask is required, its value
//   is not checked), and writes made in one tick leave in one syscall;
// - reads land in one shared buffer (net's `onread`), so a read allocates
//   nothing and skips the stream machinery; only a partial frame is copied;
// - each URL's upgrade request is encoded once.
import { connect, isIP } from 'node:net';
import { connect as connectTls, createSecureContext } from 'node:tls';

const KEY = 'YmVuY2gtZ2VuZXJhdG9yIQ=='; // any 16 bytes in base64; the server only echoes a hash of it
const OP_TEXT = 1;
const OP_CLOSE = 8;
const OP_PING = 9;
const OP_PONG = 10;
const STATUS_101 = Buffer.from('HTTP/1.1 101');
const HEAD_END = Buffer.from('\r\n\r\n');
/** Every socket of the process reads into this; callbacks run one at a time, so sharing is safe. */
const READ_BUFFER = Buffer.allocUnsafe(256 * 1024);

/** One masked frame; `payload` is a Buffer or a string (written straight in as UTF-8: one allocation). */
function frame(opcode, payload) {
  const text = typeof payload === 'string';
  const len = text ? Buffer.byteLength(payload) : payload.length;
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
  if (text) out.write(payload, head);
  else payload.copy(out, head);
  return out;
}

/**
 * How TLS connections check the server: by default they do not (a bench's TLS proxy usually has a self-signed
 * certificate; BENCH_TLS_VERIFY=1 checks against the system's CAs); `{ ca }` (PEM) trusts that CA and checks.
 */
let tlsTrust = null;
export function trustCa(ca) {
  // One context for every socket: `ca` given to each connect would parse it and build a context per handshake.
  tlsTrust = ca ? { secureContext: createSecureContext({ ca }), rejectUnauthorized: true } : null;
}

const requestHead = (path, host) =>
  Buffer.from(
    `GET ${path} HTTP/1.1\r\nHost: ${host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n` +
      `Sec-WebSocket-Key: ${KEY}\r\nSec-WebSocket-Version: 13\r\n\r\n`,
    'latin1',
  );

const targets = new Map();
/**
 * Parsed once per URL without its query: where to connect and the upgrade request's bytes. A URL with a query
 * (the gateway's per-client `?route=` key) gets its own request line, made at each connect, not cached.
 */
function target(url) {
  const q = url.indexOf('?');
  const base = q < 0 ? url : url.slice(0, q);
  let t = targets.get(base);
  if (!t) {
    const { protocol, host, hostname, port, pathname } = new URL(base);
    const secure = protocol === 'wss:';
    t = {
      secure,
      host: hostname,
      hostHeader: host,
      pathname,
      port: Number(port || (secure ? 443 : 80)),
      servername: isIP(hostname) ? undefined : hostname,
      request: requestHead(pathname, host),
    };
    targets.set(base, t);
  }
  return q < 0 ? t : { ...t, request: requestHead(t.pathname + url.slice(q), t.hostHeader) };
}

/**
 * One client socket. A class rather than closures because a connect storm
 * makes tens of thousands of these and every one survives: per-socket closures
 * were garbage-collector work (the young generation copies what survives).
 */
class RawSocket {
  upgraded = false;
  /** Bytes of an incomplete frame (or response head) carried to the next read, copied out of READ_BUFFER. */
  pending = null;
  corked = false;

  constructor(t, local, onText, onClose, resolve, reject, tls) {
    this.onText = onText;
    this.onClose = onClose;
    this.resolve = resolve;
    this.reject = reject;
    const options = {
      host: t.host,
      port: t.port,
      localAddress: local.address,
      localPort: local.port,
      noDelay: true,
      onread: { buffer: READ_BUFFER, callback: (nread, chunk) => this.read(chunk.subarray(0, nread)) },
    };
    const socket = t.secure
      ? connectTls({
          ...options,
          servername: t.servername,
          rejectUnauthorized: process.env.BENCH_TLS_VERIFY === '1',
          ...tlsTrust,
          // A TLS session kept from this client's last connection: resumed, as a browser resumes its own.
          ...(tls?.session ? { session: tls.session } : {}),
        })
      : connect(options);
    // tls.connect() takes `noDelay` and ignores it (Node 20: no TCP_NODELAY on the socket, seen with strace), so
    // the generator's wss:// writes waited behind Nagle's algorithm for the gateway's delayed ACKs: up to 40 ms
    // added to the gateway bench's latency tail. A browser sets TCP_NODELAY on every socket; so does this.
    if (t.secure) socket.setNoDelay(true);
    this.socket = socket;
    if (t.secure && tls?.onSession) socket.on('session', tls.onSession);
    socket.once(t.secure ? 'secureConnect' : 'connect', () => socket.write(t.request));
    socket.once('error', (err) => {
      if (!this.upgraded) reject(err);
    });
    socket.once('close', () => {
      if (this.upgraded) onClose();
      else reject(new Error('closed before the upgrade'));
    });
  }

  send(text) {
    this.write(frame(OP_TEXT, text));
  }

  /**
   * Without a code: the socket just goes, and what this tick wrote with it (a network drop; the relay
   * keeps the session for a resume). `null`: what was written leaves, then a close frame without a code,
   * as a browser's `close()` does (the relay keeps the session too). A number: the same with that code
   * (1000: the client has left, and the relay forgets the session at once).
   */
  close(code) {
    if (code === undefined || this.socket.destroyed) return this.socket.destroy();
    const payload = Buffer.allocUnsafe(code === null ? 0 : 2);
    if (code !== null) payload.writeUInt16BE(code, 0);
    this.write(frame(OP_CLOSE, payload));
    this.socket.end(); // ends the cork too, so everything written leaves before the close frame
  }

  /** Writes made in one tick leave in one syscall. */
  write(buf) {
    const socket = this.socket;
    if (socket.destroyed) return;
    if (!this.corked) {
      this.corked = true;
      socket.cork();
      setImmediate(uncork, this);
    }
    socket.write(buf);
  }

  read(data) {
    const buf = this.pending ? Buffer.concat([this.pending, data]) : data;
    const used = this.upgraded ? this.parse(buf) : this.handshake(buf);
    // READ_BUFFER is overwritten by the next read of any socket: keep a copy of what is left.
    this.pending = used < buf.length ? Buffer.from(buf.subarray(used)) : null;
  }

  handshake(buf) {
    const end = buf.indexOf(HEAD_END);
    if (end < 0) return 0;
    if (buf.compare(STATUS_101, 0, STATUS_101.length, 0, STATUS_101.length) !== 0) {
      this.socket.destroy();
      this.reject(new Error(`upgrade refused: ${buf.toString('latin1', 0, buf.indexOf('\r\n'))}`));
      return buf.length;
    }
    this.upgraded = true;
    this.resolve(this);
    return end + 4 + this.parse(buf.subarray(end + 4));
  }

  /** Handles every whole frame in `buf`; returns where the first incomplete one starts. */
  parse(buf) {
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
      if (opcode === OP_TEXT) this.onText(buf.toString('utf8', start, at));
      else if (opcode === OP_PING)
        this.write(frame(OP_PONG, buf.subarray(start, at))); // frame() copies it out
      else if (opcode === OP_CLOSE) this.socket.destroy();
      else if (opcode !== OP_PONG) this.socket.destroy(new Error(`unexpected opcode ${opcode}`));
      if (this.socket.destroyed) return buf.length;
    }
    return at;
  }
}

function uncork(raw) {
  raw.corked = false;
  raw.socket.uncork();
}

/**
 * Opens ws:// or wss://host:port/path from `local` ({ address, port }); resolves with { send, close } once upgraded.
 * `tls` (wss only): `session` to resume, `onSession` to receive the session the server issues for next time.
 */
export function openRawSocket(url, local, onText, onClose, tls) {
  const t = target(url);
  return new Promise((resolve, reject) => new RawSocket(t, local, onText, onClose, resolve, reject, tls));
}

/** Whether a socket's TLS handshake resumed an earlier session (false for plain sockets and other transports). */
export const tlsResumed = (raw) => raw?.socket?.isSessionReused?.() === true;
