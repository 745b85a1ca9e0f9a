// The cluster bench's chat clients, for the phases where instances go away under
// load (a rolling restart, a SIGKILL). Each is the typed client a page or an app
// would use (dist/src/client.js, RelayClient: it keeps messages until they are
// delivered, re-sends after a resume or a `resend`, handles `unavailable`) on the
// generator's raw WebSocket, and reconnects as docs/protocol.md asks: on
// `draining` after a random delay, after a drop at once (then with backoff),
// each time to a live instance (the orchestrator keeps the list, as a load
// balancer's health checks would). Every body carries the sender's counter and
// a monotonic timestamp, so the receiver can tell a message lost, duplicated
// or out of order, and when the first message sent after a kill arrived.
import hdr from 'hdr-histogram-js';
import { RelayClient } from '../../dist/src/client.js';
import { routeKey } from './chash.mjs';
import { openSocket } from './transport.mjs';

const DEBUG = process.env.BENCH_DEBUG === '1';
const now = () => Number(process.hrtime.bigint()) / 1e6;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

/** The browser WebSocket's shape, which RelayClient takes, over the generator's raw client. */
class RawWebSocket {
  readyState = 0;
  onopen = null;
  onmessage = null;
  onclose = null;
  onerror = null;
  #socket = null;

  constructor(url, localAddress) {
    openSocket(
      'ws',
      url,
      localAddress,
      (text) => this.onmessage?.({ data: text }),
      () => this.#closed(),
    ).then(
      (socket) => {
        if (this.readyState !== 0) return socket.close(); // closed before it opened
        this.#socket = socket;
        this.readyState = 1;
        this.onopen?.({});
      },
      () => this.#closed(),
    );
  }

  send(text) {
    if (this.readyState === 1) this.#socket.send(text);
  }

  /** As a browser's: what was sent leaves first, then a close frame (with `code`, if given). */
  close(code) {
    if (this.readyState >= 2) return;
    if (!this.#socket) return this.#closed();
    this.readyState = 2;
    this.#socket.close(code ?? null);
  }

  #closed() {
    if (this.readyState === 3) return;
    this.readyState = 3;
    // The raw client does not read the close frame's code: a drop, a 1001 and a refusal all look alike.
    this.onclose?.({ code: 1006, reason: '' });
  }
}

class Chatter {
  constructor(group, n) {
    this.group = group;
    /** The URL of the current (or last) socket; `first`, where the first one goes (round-robin). */
    this.url = null;
    this.first = null;
    const w = group.worker;
    this.localAddress = w.localAddresses[n % w.localAddresses.length];
    /**
     * Through the gateway (the worker has a routing-key hash): one URL with this client's own `?route=` key,
     * every time, as a page's tab does; nginx picks the instance. `slot` is the one its hash points at.
     */
    this.home = null;
    this.slot = null;
    if (w.routeSlot) {
      const key = routeKey(w.routeSlot, `${w.routePrefix}c${w.index}n${n}`, n, w.upstreamCount, w.balancedRoutes);
      this.home = `${group.urls[0]}?route=${key}`;
      this.slot = w.routeSlot(key);
    }
    this.client = new RelayClient({
      url: () => {
        this.url = this.home ?? this.first ?? group.pickUrl();
        this.first = null;
        return this.url;
      },
      createSocket: (url) => new RawWebSocket(url, this.localAddress),
    });
    /** The chat it was paired into, kept after it ends (the orchestrator joins the two sides by it). */
    this.chat = null;
    this.pairedOn = null;
    this.matches = 0;
    this.sent = 0;
    this.seen = new Set();
    this.maxSeen = -1;
    this.duplicates = 0;
    this.outOfOrder = 0;
    this.reconnects = 0;
    /** Welcomes with `resumed: false` after it was in a chat: the session was lost. */
    this.fresh = 0;
    this.ended = [];
    this.errors = {};
    /** `resend` frames: the partner's instance died (or exited before handing the session over) and was rebuilt. */
    this.resends = 0;
    this.atKill = false;
    /** Ms after the kill at which the first message stamped after it arrived. */
    this.recovered = null;
    this.reconnecting = false;
    this.stopped = false;
    this.onMatched = null;
    const c = this.client;
    c.on('matched', (f) => {
      this.chat = f.chat;
      this.pairedOn = this.home ? this.slot : this.url;
      this.matches++;
      this.onMatched?.();
    });
    c.on('msg', (f) => this.receive(f));
    c.on('welcome', (f) => {
      if (this.chat && !f.resumed) this.fresh++;
    });
    c.on('ended', (f) => this.ended.push(f.reason));
    c.on('resend', () => this.resends++);
    c.on('error', (f) => {
      this.errors[f.code] = (this.errors[f.code] ?? 0) + 1;
    });
    c.on('draining', () => this.reconnect(group.drainJitterMs));
    c.onClosed(() => this.reconnect(group.dropJitterMs));
    if (DEBUG) {
      this.log = [];
      c.on('*', (f) => {
        const text =
          f.type === 'msg'
            ? `msg seq ${f.seq} n ${f.body.slice(0, f.body.indexOf(':'))} id ${f.id}`
            : f.type === 'sent'
              ? `sent ${f.id} seq ${f.seq}`
              : f.type === 'welcome'
                ? `welcome resumed ${f.resumed} chat ${JSON.stringify({ ...f.chat, interests: undefined, id: undefined })}`
                : JSON.stringify({ ...f, message: undefined });
        this.log.push([Math.round(now()), this.url?.slice(-8), this.sent, text]);
      });
      c.onClosed(() => this.log.push([Math.round(now()), this.url, this.sent, 'closed']));
    }
  }

  /**
   * To another instance, after a random delay up to `maxDelayMs`; retried with backoff until it is welcomed.
   * After `draining` the new socket opens while the old one is still open, as the page does (the typed client
   * writes again on the new socket whatever the old one had unconfirmed); BENCH_CLOSE_FIRST=1 closes the old
   * socket first and waits for its close.
   */
  async reconnect(maxDelayMs) {
    if (this.stopped || this.reconnecting) return;
    this.reconnecting = true;
    await sleep(Math.random() * maxDelayMs);
    if (this.client.connected && !this.group.connectWhileOpen) {
      const closed = new Promise((resolve) => {
        const off = this.client.onClosed(() => {
          off();
          resolve();
        });
      });
      this.client.drop();
      await closed;
    }
    for (let attempt = 0; !this.stopped; attempt++) {
      try {
        await this.client.connect();
        this.reconnects++;
        break;
      } catch {
        await sleep(Math.min(1000, 25 * 2 ** attempt) * (0.5 + Math.random()));
      }
    }
    this.reconnecting = false;
  }

  message(size) {
    this.client.sendMessage(`${this.sent++}:${now().toFixed(3)}:`.padEnd(size, '.'));
  }

  receive(f) {
    const t = now();
    const colon = f.body.indexOf(':');
    const n = Number(f.body.slice(0, colon));
    const stamp = Number.parseFloat(f.body.slice(colon + 1));
    if (this.seen.has(n)) {
      this.duplicates++;
      return;
    }
    this.seen.add(n);
    if (n < this.maxSeen) this.outOfOrder++;
    else this.maxSeen = n;
    const g = this.group;
    g.histogram.recordValue(Math.max(1, Math.round((t - stamp) * 1000)));
    if (g.killedAt !== null && this.recovered === null && stamp > g.killedAt) this.recovered = t - g.killedAt;
  }
}

export class Chatters {
  list = [];
  urls = [];
  created = 0;
  drainJitterMs = 1000;
  dropJitterMs = 100;
  /** As the page does: connect() on `draining` with the old socket still open (unless BENCH_CLOSE_FIRST=1). */
  connectWhileOpen = true;
  killedAt = null;
  #timer = null;
  histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 120_000_000,
    numberOfSignificantValueDigits: 3,
  });

  constructor(worker) {
    this.worker = worker;
  }

  pickUrl() {
    return this.urls[Math.floor(Math.random() * this.urls.length)];
  }

  /** The live instances' URLs (the orchestrator takes a draining or dead one out first). */
  setUrls({ urls, drainJitterMs, dropJitterMs, connectWhileOpen }) {
    this.urls = urls;
    if (connectWhileOpen !== undefined) this.connectWhileOpen = connectWhileOpen;
    if (drainJitterMs !== undefined) this.drainJitterMs = drainJitterMs;
    if (dropJitterMs !== undefined) this.dropJitterMs = dropJitterMs;
    return {};
  }

  /** `count` new clients, spread round-robin over the live URLs, each welcomed. */
  async open({ count, concurrency = 32 }) {
    const fresh = Array.from({ length: count }, () => new Chatter(this, this.created++));
    let next = 0;
    let failed = 0;
    const lane = async () => {
      while (next < fresh.length) {
        const c = fresh[next];
        c.first = this.urls[next++ % this.urls.length];
        try {
          await c.client.connect();
        } catch {
          failed++;
        }
      }
    };
    await Promise.all(Array.from({ length: concurrency }, lane));
    this.list.push(...fresh);
    return { connected: fresh.length - failed, failed };
  }

  /**
   * Pairs the unpaired clients two by two, the two of each pair on different instances, through an
   * interest no one else has; resolves when all are matched or after `timeoutMs`.
   */
  async pair({ timeoutMs = 30_000 }) {
    const byUrl = new Map();
    for (const c of this.list.filter((x) => x.chat === null)) {
      // Through the gateway every client has its own URL: the instance its key hashes to is what counts.
      const where = c.home ? c.slot : c.url;
      if (!byUrl.has(where)) byUrl.set(where, []);
      byUrl.get(where).push(c);
    }
    const waits = [];
    for (let n = 0; ; n++) {
      const queues = [...byUrl.values()].filter((q) => q.length > 0).sort((a, b) => b.length - a.length);
      const a = queues[0]?.pop();
      const b = (queues[1] ?? queues[0])?.pop();
      if (!a || !b) break;
      const tag = `c${this.worker.index}x${n}`;
      for (const c of [a, b]) {
        waits.push(
          new Promise((resolve) => {
            c.onMatched = resolve;
          }),
        );
        c.client.send({ type: 'find', interests: [tag] });
      }
    }
    let timer;
    await Promise.race([
      Promise.all(waits),
      new Promise((r) => {
        timer = setTimeout(r, timeoutMs);
      }),
    ]);
    clearTimeout(timer);
    return { matched: this.list.filter((c) => c.chat !== null).length };
  }

  /** Open loop: `rate` messages per second from this process, spread over the clients in a chat. */
  run({ rate, size = 64 }) {
    clearInterval(this.#timer);
    this.histogram.reset();
    let due = 0;
    let i = 0;
    let last = now();
    this.#timer = setInterval(() => {
      const t = now();
      due += ((t - last) * rate) / 1000;
      last = t;
      const active = this.list.filter((c) => c.client.chatId !== null);
      if (active.length === 0) return;
      for (; due >= 1; due--) active[i++ % active.length].message(size);
    }, 1);
    return {};
  }

  /** Before a kill: which clients are on `url`. */
  mark({ url }) {
    let on = 0;
    for (const c of this.list) {
      c.atKill = c.url === url && c.client.connected;
      c.recovered = null;
      if (c.atKill) on++;
    }
    return { on };
  }

  /** After it: `at` (the monotonic ms when the process was seen gone); messages stamped later count as flowing again. */
  killed({ at }) {
    this.killedAt = at;
    return {};
  }

  /** Clients on the killed instance, and those whose chat had a side there, that have not had a fresh message yet. */
  waiting() {
    return { waiting: this.list.filter((c) => c.client.chatId !== null && c.recovered === null).length };
  }

  /** Stops sending. */
  stop() {
    clearInterval(this.#timer);
    this.#timer = null;
    return {};
  }

  /** Messages sent and received so far (the orchestrator waits for the two to meet after `stop`). */
  progress() {
    let sent = 0;
    let received = 0;
    for (const c of this.list) {
      sent += c.sent;
      received += c.seen.size;
    }
    return { sent, received };
  }

  stats() {
    const errors = {};
    for (const c of this.list) for (const [code, k] of Object.entries(c.errors)) errors[code] = (errors[code] ?? 0) + k;
    return {
      // Clients in a chat whose typed client still holds messages the relay never confirmed or delivered.
      pending: this.list.filter((c) => c.client.chatId !== null && c.client.unconfirmed + c.client.undelivered > 0)
        .length,
      clients: this.list.map((c) => ({
        chat: c.chat,
        pairedOn: c.pairedOn,
        matches: c.matches,
        sent: c.sent,
        received: c.seen.size,
        duplicates: c.duplicates,
        outOfOrder: c.outOfOrder,
        reconnects: c.reconnects,
        resends: c.resends,
        fresh: c.fresh,
        ended: c.ended,
        inChat: c.client.chatId !== null,
        atKill: c.atKill,
        recovered: c.recovered,
        unconfirmed: c.client.unconfirmed,
        undelivered: c.client.undelivered,
        ...(DEBUG ? { seen: [...c.seen], log: c.log } : {}),
      })),
      // Not `errors`: the worker's reply has a field of that name (failed connects) that would replace it.
      errorFrames: errors,
      histogram: hdr.encodeIntoCompressedBase64(this.histogram),
    };
  }

  /** Every client leaves (close 1000: the relay forgets the session at once). */
  close() {
    clearInterval(this.#timer);
    for (const c of this.list) {
      c.stopped = true;
      c.client.close(1000);
    }
    this.list = [];
    this.killedAt = null;
    return {};
  }
}
