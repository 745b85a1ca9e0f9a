/**
 * A WebSocket client over node:net / node:tls that breaks RFC 6455 on purpose,
 * for the malformed-traffic checks: it builds frames with any FIN/RSV bits,
 * opcode, mask and length encoding (a declared length of 2^63 included),
 * sends handshakes with any request bytes, and records what the server
 * answered: the HTTP status and headers, text and binary frames, the close
 * frame's code and reason, and whether and when the connection ended.
 * It answers pings and echoes a close frame, and nothing else on its own.
 */
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';

export const OP = { cont: 0, text: 1, binary: 2, close: 8, ping: 9, pong: 10 } as const;

const KEY = 'dGhlIHNhbXBsZSBub25jZQ==';
const HEAD_END = Buffer.from('\r\n\r\n');

export interface FrameSpec {
  opcode: number;
  payload?: Buffer | string;
  /** Default true. */
  fin?: boolean;
  /** RSV1..3 as bits 4, 2, 1 (so 4 is RSV1). */
  rsv?: number;
  /** Default true (clients must mask); false sends the payload unmasked. */
  mask?: boolean;
  /** A declared length other than the payload's (a 2^63 length, say); the payload is sent as given. */
  declaredLength?: bigint;
  /** Force the 16- or 64-bit length form even for short payloads (non-minimal, still valid per RFC 6455). */
  lengthForm?: 7 | 16 | 64;
}

/** One frame's bytes, exactly as specified. Masked with a random key unless `mask: false`. */
export function buildFrame(spec: FrameSpec): Buffer {
  const payload =
    typeof spec.payload === 'string' ? Buffer.from(spec.payload, 'utf8') : (spec.payload ?? Buffer.alloc(0));
  const length = spec.declaredLength ?? BigInt(payload.length);
  const form = spec.lengthForm ?? (length < 126n ? 7 : length < 65536n ? 16 : 64);
  const masked = spec.mask ?? true;
  const head: number[] = [((spec.fin ?? true) ? 0x80 : 0) | ((spec.rsv ?? 0) << 4) | (spec.opcode & 0x0f)];
  const maskBit = masked ? 0x80 : 0;
  const ext = Buffer.alloc(form === 7 ? 0 : form === 16 ? 2 : 8);
  if (form === 7) head.push(maskBit | Number(length));
  else if (form === 16) {
    head.push(maskBit | 126);
    ext.writeUInt16BE(Number(length));
  } else {
    head.push(maskBit | 127);
    ext.writeBigUInt64BE(length);
  }
  const key = masked
    ? Buffer.from([Math.random() * 256, Math.random() * 256, Math.random() * 256, Math.random() * 256])
    : Buffer.alloc(0);
  const body = Buffer.from(payload);
  if (masked) for (let i = 0; i < body.length; i++) body[i] = (body[i] as number) ^ (key[i & 3] as number);
  return Buffer.concat([Buffer.from(head), ext, key, body]);
}

/** A close frame's payload: the code (2 bytes) and reason. */
export function closePayload(code: number, reason: Buffer | string = ''): Buffer {
  const out = Buffer.alloc(2);
  out.writeUInt16BE(code);
  return Buffer.concat([out, typeof reason === 'string' ? Buffer.from(reason, 'utf8') : reason]);
}

export const text = (payload: Buffer | string, extra: Partial<FrameSpec> = {}): Buffer =>
  buildFrame({ opcode: OP.text, payload, ...extra });

export interface Target {
  url: string;
  /** PEM to trust for wss:// (the gateway's CA). */
  ca?: string;
}

/** The handshake request a browser would send, with some headers replaced (null removes one). */
export function upgradeRequest(
  url: string,
  overrides: Record<string, string | null> = {},
  method = 'GET',
  extraLines: string[] = [],
): string {
  const u = new URL(url);
  const headers: Record<string, string | null> = {
    Host: u.host,
    Upgrade: 'websocket',
    Connection: 'Upgrade',
    'Sec-WebSocket-Key': KEY,
    'Sec-WebSocket-Version': '13',
    ...overrides,
  };
  const lines = [
    `${method} ${u.pathname}${u.search} HTTP/1.1`,
    ...Object.entries(headers).flatMap(([k, v]) => (v === null ? [] : [`${k}: ${v}`])),
    ...extraLines,
  ];
  return `${lines.join('\r\n')}\r\n\r\n`;
}

export interface CloseSeen {
  /** null when the close frame had no payload (1005 as the RFC calls it). */
  code: number | null;
  reason: string;
}

/** One raw connection and everything the server said on it. */
export class RawConnection {
  /** HTTP status of the answer to the handshake (0 if none came). */
  status = 0;
  headers = new Map<string, string>();
  /** Body bytes after a non-101 answer's head (what arrived of it). */
  body = '';
  texts: string[] = [];
  binaries = 0;
  close: CloseSeen | null = null;
  /** The TCP (or TLS) connection has ended, and when (ms since open). */
  ended = false;
  endedAfterMs = 0;
  error: string | null = null;
  /** Frames the client saw that RFC 6455 does not allow a server to send (a bug in the server). */
  bad: string[] = [];
  readonly #socket: Socket;
  readonly #opened = Date.now();
  #upgraded = false;
  #pending: Buffer = Buffer.alloc(0);
  readonly #waiters = new Set<() => void>();
  readonly #ready: Promise<void>;

  private constructor(target: Target) {
    const u = new URL(target.url);
    const secure = u.protocol === 'wss:';
    const port = Number(u.port || (secure ? 443 : 80));
    this.#socket = secure
      ? tlsConnect({ host: u.hostname, port, servername: 'localhost', ...(target.ca ? { ca: target.ca } : {}) })
      : netConnect({ host: u.hostname, port });
    this.#socket.setNoDelay(true);
    this.#ready = new Promise((resolve, reject) => {
      this.#socket.once(secure ? 'secureConnect' : 'connect', () => resolve());
      this.#socket.once('error', reject);
    });
    this.#socket.on('data', (d: Buffer) => this.#read(d));
    this.#socket.on('error', (err: NodeJS.ErrnoException) => {
      this.error ??= err.code ?? err.message;
    });
    this.#socket.on('close', () => {
      this.ended = true;
      this.endedAfterMs = Date.now() - this.#opened;
      this.#wake();
    });
  }

  /** Connects and sends `request` (bytes as given; a function may send them in pieces). */
  static async open(
    target: Target,
    request: string | Buffer | ((write: (b: string | Buffer) => boolean) => Promise<void>) = upgradeRequest(target.url),
  ): Promise<RawConnection> {
    const conn = new RawConnection(target);
    await conn.#ready;
    if (typeof request === 'function') await request((b) => conn.write(b));
    else conn.write(request);
    return conn;
  }

  /** Opens with a good handshake and waits for the 101; throws if another answer comes. */
  static async upgraded(target: Target, timeoutMs = 5000): Promise<RawConnection> {
    const conn = await RawConnection.open(target);
    await conn.until(() => conn.status !== 0 || conn.ended, timeoutMs);
    if (conn.status !== 101) {
      conn.destroy();
      throw new Error(`no upgrade: status ${conn.status}${conn.ended ? ', connection ended' : ''}`);
    }
    return conn;
  }

  /** Upgraded and past hello (the welcome came). */
  static async welcomed(target: Target, timeoutMs = 5000): Promise<RawConnection> {
    const conn = await RawConnection.upgraded(target, timeoutMs);
    conn.write(text('{"type":"hello","v":1}'));
    await conn.until(() => conn.texts.length > 0 || conn.ended, timeoutMs);
    if (!conn.texts[0]?.includes('"welcome"')) {
      conn.destroy();
      throw new Error(`no welcome: ${conn.texts[0] ?? (conn.ended ? 'ended' : 'nothing')}`);
    }
    conn.texts.length = 0;
    return conn;
  }

  get upgradedOk(): boolean {
    return this.#upgraded;
  }

  /** False once the connection is gone (nothing written). */
  write(b: string | Buffer): boolean {
    if (this.#socket.destroyed || !this.#socket.writable) return false;
    this.#socket.write(b);
    return true;
  }

  /** Drops the connection without a close frame. */
  destroy(): void {
    this.#socket.destroy();
  }

  /** Resolves when `done()` holds or after `timeoutMs` (never rejects); true if it held. */
  until(done: () => boolean, timeoutMs: number): Promise<boolean> {
    if (done()) return Promise.resolve(true);
    return new Promise((resolve) => {
      const check = () => {
        if (!done()) return;
        finish(true);
      };
      const timer = setTimeout(() => finish(done()), timeoutMs);
      const finish = (v: boolean) => {
        clearTimeout(timer);
        this.#waiters.delete(check);
        resolve(v);
      };
      this.#waiters.add(check);
    });
  }

  #wake(): void {
    for (const w of [...this.#waiters]) w();
  }

  #read(data: Buffer): void {
    let buf = this.#pending.length > 0 ? Buffer.concat([this.#pending, data]) : data;
    if (!this.#upgraded) {
      if (this.status !== 0 && this.status !== 101) {
        this.body += data.toString('latin1');
        this.#wake();
        return;
      }
      const end = buf.indexOf(HEAD_END);
      if (end < 0) {
        this.#pending = Buffer.from(buf);
        return;
      }
      const [statusLine = '', ...lines] = buf.toString('latin1', 0, end).split('\r\n');
      this.status = Number(statusLine.split(' ')[1] ?? 0);
      for (const h of lines)
        this.headers.set(h.slice(0, h.indexOf(':')).trim().toLowerCase(), h.slice(h.indexOf(':') + 1).trim());
      buf = buf.subarray(end + 4);
      if (this.status !== 101) {
        this.body = buf.toString('latin1');
        this.#pending = Buffer.alloc(0);
        this.#wake();
        return;
      }
      this.#upgraded = true;
    }
    let at = 0;
    while (buf.length - at >= 2) {
      const b0 = buf[at] as number;
      const b1 = buf[at + 1] as number;
      let len = b1 & 0x7f;
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
      if (b1 & 0x80) this.bad.push('masked server frame');
      if (b0 & 0x70) this.bad.push('server frame with RSV bits');
      if (buf.length - at < head + len) break;
      const payload = buf.subarray(at + head, at + head + len);
      at += head + len;
      const opcode = b0 & 0x0f;
      if (opcode === OP.text) this.texts.push(payload.toString('utf8'));
      else if (opcode === OP.binary) this.binaries++;
      else if (opcode === OP.ping) this.write(buildFrame({ opcode: OP.pong, payload }));
      else if (opcode === OP.close) {
        if (!this.close) {
          this.close = {
            code: payload.length >= 2 ? payload.readUInt16BE(0) : null,
            reason: payload.subarray(2).toString('utf8'),
          };
          this.write(buildFrame({ opcode: OP.close, payload: payload.subarray(0, 2) }));
        }
      } else if (opcode !== OP.pong) this.bad.push(`server opcode ${opcode}`);
    }
    this.#pending = at < buf.length ? Buffer.from(buf.subarray(at)) : Buffer.alloc(0);
    this.#wake();
  }

  /** What the client observed, in one line: "close 1002 (reason)", "dropped (1006)", "open", "error bad_json". */
  summary(): string {
    const errors = this.texts
      .map((t) => {
        try {
          const f = JSON.parse(t) as { type?: string; code?: string };
          return f.type === 'error' ? `error ${f.code}` : (f.type ?? '?');
        } catch {
          return 'non-JSON';
        }
      })
      .join(', ');
    const end = this.close
      ? `close ${this.close.code ?? 'without code'}${this.close.reason ? ` "${this.close.reason}"` : ''}`
      : this.ended
        ? 'dropped without close frame (1006)'
        : 'open';
    return errors ? `${errors}; ${end}` : end;
  }
}
