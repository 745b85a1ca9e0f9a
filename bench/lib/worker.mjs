// A load-generator process: holds many protocol v1 clients from one source
// address and runs the phases the orchestrator (run.mjs) asks for over IPC.
// Lean on purpose: no typed-client bookkeeping, acks batched per read, and
// latency read from a monotonic timestamp in the body (process.hrtime is the
// same clock in every process on the machine). It reports its own CPU time.
import { monitorEventLoopDelay } from 'node:perf_hooks';
import hdr from 'hdr-histogram-js';
import { consistentHash, routeKey } from './chash.mjs';
import { tlsResumed as isTlsResumed, trustCa } from './raw-ws.mjs';
import { openSocket, sourcePorts } from './transport.mjs';

const now = () => Number(process.hrtime.bigint()) / 1e6;

/** Runs `fn` over `items` with at most `concurrency` calls in flight (a connect storm with a bound). */
async function inParallel(items, concurrency, fn) {
  let next = 0;
  const lane = async () => {
    while (next < items.length) await fn(items[next++]);
  };
  await Promise.all(Array.from({ length: concurrency }, lane));
}

class Client {
  constructor(worker, url, n) {
    this.w = worker;
    this.localAddress = worker.localAddresses[n % worker.localAddresses.length];
    if (worker.routeSlot) {
      // Through the gateway: one URL, and each client its own routing key (as each tab of the page has);
      // `slot` is the instance nginx's consistent hash sends that key to.
      const key = routeKey(
        worker.routeSlot,
        `${worker.routePrefix}w${worker.index}n${n}`,
        n,
        worker.upstreamCount,
        worker.balancedRoutes,
      );
      this.url = `${url}?route=${key}`;
      this.slot = worker.routeSlot(key);
    } else {
      /** Clients are spread round-robin over the relay's URLs (several instances, or a TLS proxy). */
      this.url = url;
      /** Which of the relay's URLs (a cluster's instance) this client is on. */
      this.slot = worker.urls.indexOf(url);
    }
    this.socket = null;
    this.id = null;
    this.token = null;
    this.matched = false;
    /** `matched` frames received and the last chat: a client paired twice shows here. */
    this.matches = 0;
    this.chat = null;
    this.lastSeq = 0;
    this.ackedSeq = 0;
    this.deaf = false; // drops what arrives, as a client that never read it
    this.inFlight = 0;
    this.counter = 0;
    this.onWelcome = null;
    this.onMatched = null;
  }

  /**
   * Opens a socket, says hello and resolves on the welcome. Rejects if the socket closes first, or (through the
   * gateway, where that can happen under load) if no welcome comes within 60 s: a phase never waits forever.
   */
  async connect(resume) {
    let lost = null;
    this.socket = await openSocket(
      this.w.transport,
      this.url,
      this.localAddress,
      (text) => this.receive(text),
      () => {
        this.socket = null;
        lost?.(Object.assign(new Error('closed before the welcome'), { code: 'CLOSED_BEFORE_WELCOME' }));
      },
      // Through the gateway each client keeps the TLS session nginx issued and resumes it when it reconnects, as a
      // browser does; its first connection is always a full handshake.
      this.w.keepTlsSessions ? { session: this.tlsSession, onSession: (s) => (this.tlsSession = s) } : undefined,
    );
    let timer;
    const welcomed = new Promise((resolve, reject) => {
      this.onWelcome = resolve;
      lost = reject;
      if (this.w.pingEveryMs)
        timer = setTimeout(() => {
          this.socket?.close();
          reject(Object.assign(new Error('no welcome within 60 s'), { code: 'NO_WELCOME' }));
        }, 60_000);
    }).finally(() => {
      clearTimeout(timer);
      lost = null;
      this.onWelcome = null;
    });
    if (this.w.pingEveryMs && !this.pinger) this.keepAlive(this.w.pingEveryMs);
    const hello = { type: 'hello', v: 1 };
    if (resume && this.id) hello.resume = { id: this.id, token: this.token, lastSeq: this.lastSeq };
    this.socket.send(JSON.stringify(hello));
    return welcomed;
  }

  send(frame) {
    this.socket?.send(JSON.stringify(frame));
  }

  /**
   * A ping every `everyMs` from the first connect on, the first at a random point of the interval, as the page
   * does: nginx closes a WebSocket with nothing from the relay for 75 s, and a long ramp idles that long.
   */
  keepAlive(everyMs) {
    this.pinger = setTimeout(() => {
      this.send({ type: 'ping' });
      this.pinger = setInterval(() => this.send({ type: 'ping' }), everyMs);
    }, Math.random() * everyMs);
  }

  message(bodySize) {
    this.inFlight++;
    this.w.sent++;
    const stamp = now().toFixed(3);
    this.send({ type: 'msg', id: `m${this.counter++}`, body: stamp.padEnd(bodySize, '.') });
  }

  receive(text) {
    const f = JSON.parse(text);
    // A deaf client still learns that the relay has its own messages (`sent`), but drops what its
    // partner sends, as a client whose network died before it could read it.
    if (this.deaf && f.type !== 'sent') return;
    switch (f.type) {
      case 'welcome':
        this.id = f.id;
        this.token = f.token;
        this.onWelcome?.(f);
        return;
      case 'matched':
        this.matched = true;
        this.matches++;
        this.chat = f.chat;
        this.lastSeq = 0;
        this.ackedSeq = 0;
        this.onMatched?.();
        return;
      case 'sent':
        this.inFlight--;
        if (this.w.closedLoop) this.w.refill(this);
        return;
      case 'msg':
        if (f.seq <= this.lastSeq) return;
        this.lastSeq = f.seq;
        this.w.received++;
        if (this.w.recording)
          this.w.histogram.recordValue(Math.max(1, Math.round((now() - Number.parseFloat(f.body)) * 1000)));
        this.w.ackLater(this);
        this.w.onDelivered?.(this);
        return;
      case 'error':
        this.w.errors++;
        this.w.errorCodes[f.code] = (this.w.errorCodes[f.code] ?? 0) + 1;
        return;
    }
  }
}

class Worker {
  clients = [];
  created = 0;
  sent = 0;
  received = 0;
  errors = 0;
  /** Error frames by code (a refused message is never sent again here: `rate_limited` or `unavailable` show). */
  errorCodes = {};
  recording = false;
  closedLoop = false;
  toAck = new Set();
  histogram = hdr.build({
    lowestDiscernibleValue: 1,
    highestTrackableValue: 60_000_000,
    numberOfSignificantValueDigits: 3,
  });

  #ackScheduled = false;

  /**
   * A client acks what it has read once per event-loop turn, as a page does after a batch of
   * frames. (A shared 10 ms timer acked every client at once, and those bursts showed as latency.)
   */
  ackLater(c) {
    this.toAck.add(c);
    if (this.#ackScheduled) return;
    this.#ackScheduled = true;
    setImmediate(() => {
      this.#ackScheduled = false;
      for (const client of this.toAck) {
        if (client.lastSeq > client.ackedSeq) {
          client.ackedSeq = client.lastSeq;
          client.send({ type: 'ack', seq: client.lastSeq });
        }
      }
      this.toAck.clear();
    });
  }

  async connect({ count, concurrency }) {
    const started = now();
    const failed = {};
    await inParallel(
      Array.from({ length: count }, () => {
        const n = this.created++;
        return new Client(this, this.urls[n % this.urls.length], n);
      }),
      concurrency,
      async (c) => {
        const t = now();
        try {
          await c.connect(false);
          this.clients.push(c);
        } catch (err) {
          clearTimeout(c.pinger);
          this.errors++;
          this.lastError = String(err?.code ?? err?.message ?? err);
          // How long a failed connect took, by error: a server's timeout shows as a fixed delay.
          failed[this.lastError] ??= [];
          failed[this.lastError].push(now() - t);
        }
      },
    );
    const failedAfterMs = Object.fromEntries(
      Object.entries(failed).map(([code, list]) => {
        list.sort((a, b) => a - b);
        const q = (p) => Math.round(list[Math.min(list.length - 1, Math.floor(p * list.length))]);
        return [code, { count: list.length, min: q(0), p50: q(0.5), max: q(1) }];
      }),
    );
    return { connected: this.clients.length, ms: now() - started, failedAfterMs };
  }

  /**
   * Every unmatched client asks for a partner; resolves when all are matched, or when no match has come
   * for `stallMs` (a client the relay left waiting stays unmatched), or after `timeoutMs`. `ms` is the
   * time to the last match. `tagged`: clients are paired here, two on different URLs (instances) when
   * there are several, and each pair shares an interest no one else has, so the relay pairs exactly those two.
   */
  async find({ tagged = false, timeoutMs = 120_000, stallMs = 5000 } = {}) {
    const started = now();
    this.errorCodes = {};
    let last = started;
    const waiting = this.clients.filter((c) => !c.matched);
    const interests = tagged ? this.pairTags(waiting) : new Map();
    let left = waiting.length;
    await new Promise((resolve) => {
      if (left === 0) return resolve();
      const timer = setInterval(() => {
        if (now() - last > stallMs || now() - started > timeoutMs) {
          clearInterval(timer);
          resolve();
        }
      }, 100);
      for (const c of waiting) {
        c.onMatched = () => {
          c.onMatched = null;
          last = now();
          if (--left === 0) {
            clearInterval(timer);
            resolve();
          }
        };
        const tag = interests.get(c);
        c.send(tag ? { type: 'find', interests: [tag] } : { type: 'find' });
      }
    });
    for (const c of waiting) c.onMatched = null;
    return { matched: this.clients.filter((c) => c.matched).length, ms: last - started, errorCodes: this.errorCodes };
  }

  /** One tag per pair, the two taken from the two URLs with the most clients left (so they differ while they can). */
  pairTags(clients) {
    const bySlot = new Map();
    for (const c of clients) {
      if (!bySlot.has(c.slot)) bySlot.set(c.slot, []);
      bySlot.get(c.slot).push(c);
    }
    const tags = new Map();
    for (let n = 0; ; n++) {
      const queues = [...bySlot.values()].filter((q) => q.length > 0).sort((a, b) => b.length - a.length);
      const a = queues[0]?.pop();
      const b = (queues[1] ?? queues[0])?.pop();
      if (!a || !b) break;
      const tag = `p${this.index}x${n}`;
      tags.set(a, tag);
      tags.set(b, tag);
    }
    return tags;
  }

  /** Each client's chat and URL index, and how many `matched` frames it got (the orchestrator joins chats). */
  pairs() {
    return {
      // Error frames since the last traffic phase: a `find` refused (`unavailable`, `queue_full`) shows here.
      errorCodes: this.errorCodes,
      chats: this.clients.map((c) => c.chat),
      slots: this.clients.map((c) => c.slot),
      matches: this.clients.map((c) => c.matches),
    };
  }

  /** Idle-but-alive: every client pings once per `everyMs`, spread over the interval. */
  async hold({ ms, everyMs }) {
    // Clients that already ping (the gateway's): just wait.
    if (this.pingEveryMs) {
      await new Promise((r) => setTimeout(r, ms));
      return { alive: this.clients.filter((c) => c.socket).length };
    }
    const timers = this.clients.map((c, i) =>
      setTimeout(
        () => {
          c.send({ type: 'ping' });
          c.timer = setInterval(() => c.send({ type: 'ping' }), everyMs);
        },
        (i * everyMs) / this.clients.length,
      ),
    );
    await new Promise((r) => setTimeout(r, ms));
    for (const t of timers) clearTimeout(t);
    for (const c of this.clients) clearInterval(c.timer);
    return { alive: this.clients.filter((c) => c.socket).length };
  }

  /**
   * Chat traffic for `ms`: closed loop keeps `window` unconfirmed messages per sender;
   * open loop sends `rate` messages per second in total, spread over the senders.
   */
  async traffic({ ms, warmupMs, size, window, rate, senders }) {
    const active = this.clients.filter((c) => c.matched && c.socket).slice(0, senders ?? Infinity);
    this.histogram.reset();
    this.sent = this.received = 0;
    this.errorCodes = {};
    this.closedLoop = rate === undefined;
    this.size = size;
    this.window = window;
    const cpu0 = process.cpuUsage();
    let timer;
    if (this.closedLoop) for (const c of active) this.refill(c);
    else {
      // Every millisecond, whatever is due by the clock: bursts of one tick's worth would
      // queue behind each other and show up as latency the relay did not cause.
      let due = 0;
      let i = 0;
      let last = now();
      timer = setInterval(() => {
        const t = now();
        due += ((t - last) * rate) / 1000;
        last = t;
        for (; due >= 1; due--) active[i++ % active.length].message(size);
      }, 1);
    }
    await new Promise((r) => setTimeout(r, warmupMs));
    const start = { sent: this.sent, received: this.received, t: now() };
    this.histogram.reset();
    // The generator's own event-loop delay while recording (the 1 ms interval included): a tail it causes
    // shows here, not in the relay.
    const loop = monitorEventLoopDelay({ resolution: 1 });
    loop.enable();
    this.recording = true;
    await new Promise((r) => setTimeout(r, ms));
    this.recording = false;
    loop.disable();
    const end = { sent: this.sent, received: this.received, t: now() };
    this.closedLoop = false;
    clearInterval(timer);
    await new Promise((r) => setTimeout(r, 300));
    const cpu = process.cpuUsage(cpu0);
    return {
      errorCodes: this.errorCodes,
      seconds: (end.t - start.t) / 1000,
      received: end.received - start.received,
      histogram: hdr.encodeIntoCompressedBase64(this.histogram),
      cpuMs: (cpu.user + cpu.system) / 1000,
      loopDelayMs: { p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
    };
  }

  refill(c) {
    while (c.inFlight < this.window && this.closedLoop && c.socket) c.message(this.size);
  }

  /**
   * Resume storm, part 0: every client stops reading. A step of its own, done by every process
   * before any sends: a partner in another process could otherwise deliver (and get acked) a
   * message before this client went deaf, and it would never be missed.
   */
  stormDeafen() {
    for (const c of this.clients) {
      c.deaf = true;
      c.lastSeq = 0;
      c.inFlight = 0;
    }
    return {};
  }

  /**
   * Resume storm, part 1: every client sends `messages` while all of them stop reading, and once
   * the relay has confirmed all of them (`sent`: they are in its buffer), all drop at once. Waiting
   * for the confirmations keeps the storm about resuming: a slower relay is not charged for
   * messages it had not read yet when the sockets went.
   */
  async stormDrop({ messages, timeoutMs = 60_000 }) {
    for (const c of this.clients) for (let i = 0; i < messages; i++) c.message(16);
    const started = now();
    while (this.clients.some((c) => c.inFlight > 0) && now() - started < timeoutMs)
      await new Promise((r) => setTimeout(r, 50));
    const unconfirmed = this.clients.reduce((s, c) => s + c.inFlight, 0);
    for (const c of this.clients) c.socket?.close();
    return { dropped: this.clients.length, confirmMs: now() - started, unconfirmed };
  }

  /** Part 2: all resume at once; resolves when every client has all `messages` from its partner. */
  async stormResume({ messages, concurrency }) {
    const started = now();
    const cpu0 = process.cpuUsage();
    let done = 0;
    const waiting = new Set(this.clients);
    const finished = new Promise((resolve) => {
      this.onDelivered = (c) => {
        if (c.lastSeq >= messages && waiting.delete(c)) done++;
        if (waiting.size === 0) resolve();
      };
    });
    for (const c of this.clients) c.deaf = false;
    let tlsResumed = 0;
    await inParallel([...this.clients], concurrency, async (c) => {
      try {
        await c.connect(true);
        if (isTlsResumed(c.socket)) tlsResumed++;
      } catch {
        this.errors++;
        waiting.delete(c);
      }
    });
    const timeout = new Promise((r) => setTimeout(r, 30_000));
    await Promise.race([finished, timeout]);
    this.onDelivered = null;
    const cpu = process.cpuUsage(cpu0);
    return {
      resumed: done,
      of: this.clients.length,
      ms: now() - started,
      tlsResumed,
      cpuMs: (cpu.user + cpu.system) / 1000,
    };
  }

  /** `code` 1000: each client leaves (the relay forgets its session at once); none: the sockets just drop. */
  close({ code } = {}) {
    for (const c of this.clients) {
      clearTimeout(c.pinger); // a timeout or an interval: either clears both
      c.socket?.close(code);
    }
    this.clients = [];
    this.created = 0;
    return {};
  }

  /** The cluster bench's typed, reconnecting clients (chatters.mjs), loaded only when a phase asks for them. */
  async chatters(args) {
    if (!this.chat) {
      const { Chatters } = await import('./chatters.mjs');
      this.chat = new Chatters(this);
    }
    return this.chat[args.op](args);
  }

  /** Messages sent and received so far (the orchestrator waits for these to match between phases). */
  counts() {
    return { sent: this.sent, received: this.received };
  }

  /** A clean exit, so `node --cpu-prof` (inherited by forked workers) can write its profile. */
  exit() {
    setTimeout(() => process.exit(0), 50);
    return {};
  }
}

let worker;
process.on('message', async ({ id, cmd, args }) => {
  try {
    if (cmd === 'init') {
      worker = new Worker();
      const { ca, upstreams, ports, ...rest } = args;
      if (ports) sourcePorts(...ports);
      Object.assign(worker, rest);
      worker.localAddresses ??= [worker.localAddress];
      // The gateway bench: trust the run's CA, and give each client a routing key (see Client).
      if (ca) trustCa(ca);
      if (upstreams) {
        worker.routeSlot = consistentHash(upstreams);
        worker.upstreamCount = upstreams.length;
      }
      return process.send({ id, result: {} });
    }
    const result = await worker[cmd](args);
    process.send({
      id,
      result: { ...result, errors: worker.errors, lastError: worker.lastError, workerCpuMs: cpuMs() },
    });
  } catch (err) {
    process.send({ id, error: String(err?.stack ?? err) });
  }
});

function cpuMs() {
  const u = process.cpuUsage();
  return (u.user + u.system) / 1000;
}
