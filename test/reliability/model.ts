/**
 * A model-based test of delivery through the relay (fast-check's commands API).
 * Two real relay instances in this process on one simulated cluster network
 * (MemoryNetwork), with the server's time on a ManualClock; two typed clients
 * (RelayClient over real sockets): A sends, B receives. Random command
 * sequences send, ack, drop B, resume B, move B to the other instance, let B's
 * resume window pass, overflow B's buffer while away, and make A hit the rate
 * limit. After every command the model says what B must hold:
 *
 * - every message A sent in this chat, once, in order, by seq; except
 * - on a resume, exactly max(0, sent − B's lastSeq − BUFFER_SESSION_MAX_MESSAGES)
 *   of them dropped by the buffer bound, and those named by a `gap` frame; and
 * - once the resume window passed: A gets `ended` and B's resume is refused
 *   (`welcome` with `resumed: false`), never a silent hole.
 */
import fc from 'fast-check';
import WebSocket from 'ws';
import { MemoryNetwork } from '../../src/broker-memory.js';
import { RelayClient, type WebSocketLike } from '../../src/client.js';
import { type Config, loadConfig } from '../../src/config.js';
import type { WelcomeFrame } from '../../src/protocol.js';
import { CLUSTER_SECRET } from '../fixtures/cluster.js';
import { ManualClock } from '../fixtures/manual-clock.js';
import { startTestServer, type TestServer } from '../fixtures/server.js';

export const MODEL_LIMITS = {
  bufferSessionMaxMessages: 6,
  rateLimitPerSec: 50,
  rateLimitBurst: 10,
  resumeWindowMs: 60_000,
} as const;

/** One event as B saw it. */
type Seen = { kind: 'msg'; seq: number; body: string } | { kind: 'gap'; from: number; to: number };

export interface ModelStats {
  sequences: number;
  commands: number;
  violations: number;
  /** Resumes that had to report a gap, and how many did. */
  overflowResumes: number;
  gapsSeen: number;
  /** Windows that passed while B was away, and how many ended with the explicit signal on both sides. */
  expiries: number;
  expirySignals: number;
  rateRefusals: number;
  moves: number;
  firstViolation: string | null;
}

class Violation extends Error {}

interface Model {
  inChat: boolean;
  bConnected: boolean;
  /** Messages A sent in this chat. */
  sent: number;
  /** B's resume window passed while away: the chat is over and B's next hello starts afresh. */
  expired: boolean;
}

/** The real side: the servers, the two clients and what each saw. */
class Real {
  a!: RelayClient;
  b!: RelayClient;
  aBodies: string[] = [];
  bSeen: Seen[] = [];
  aEnded = 0;
  bLastWelcomeResumed: boolean | null = null;
  bNode = 0;
  chatNo = 0;
  chat: string | null = null;
  constructor(
    readonly world: World,
    readonly stats: ModelStats,
  ) {}

  client(node: () => number): RelayClient {
    return new RelayClient({
      url: () => (this.world.nodes[node()] as TestServer).url,
      createSocket: (u) => new WebSocket(u) as unknown as WebSocketLike,
      autoAck: false,
      clock: this.world.clientClock,
    });
  }

  async open(): Promise<void> {
    this.a = this.client(() => 0);
    this.b = this.client(() => this.bNode);
    this.a.on('ended', () => {
      this.aEnded++;
    });
    this.a.on('error', (e) => {
      if (e.code === 'rate_limited') this.stats.rateRefusals++;
    });
    this.b.on('msg', (m) => this.bSeen.push({ kind: 'msg', seq: m.seq, body: m.body }));
    this.b.on('gap', (g) => this.bSeen.push({ kind: 'gap', from: g.from, to: g.to }));
    this.b.on('welcome', (w) => {
      this.bLastWelcomeResumed = w.resumed;
    });
    await Promise.all([this.a.connect(), this.b.connect()]);
    await this.pair();
  }

  async pair(): Promise<void> {
    const matched = Promise.all([this.a.next('matched'), this.b.next('matched')]);
    this.a.send({ type: 'find' });
    await this.a.next('queued');
    this.b.send({ type: 'find' });
    await matched;
    this.aBodies = [];
    this.bSeen = [];
    this.chat = this.a.chatId;
    this.chatNo++;
  }

  close(): void {
    this.a?.close(1000);
    this.b?.close(1000);
  }

  /** Lets time pass on both clocks in small steps, with real turns between, until `done` (or throws). */
  async settle(what: string, done: () => boolean, limitMs = 5000): Promise<void> {
    const deadline = Date.now() + limitMs;
    while (!done()) {
      if (Date.now() > deadline) throw new Violation(`stuck: ${what}`);
      this.world.serverClock.advance(10);
      this.world.clientClock.advance(10);
      await new Promise((r) => setTimeout(r, 1));
    }
  }

  send(n: number): void {
    for (let i = 0; i < n; i++) {
      const body = `c${this.chatNo}-m${this.aBodies.length}`;
      this.aBodies.push(body);
      this.a.sendMessage(body);
    }
  }

  /** Every message A wrote is confirmed by the server, and B (if connected) has reached the newest seq. */
  async quiet(m: Model): Promise<void> {
    await this.settle('A confirmed', () => this.a.unconfirmed === 0);
    if (m.bConnected) await this.settle('B caught up', () => this.b.lastSeq >= m.sent);
  }

  /** The invariant: B's view of this chat matches what A sent (by seq), with no silent hole up to `upTo`. */
  check(upTo: number, expectedGapped: number): void {
    let next = 1;
    let gapped = 0;
    for (const e of this.bSeen) {
      if (e.kind === 'msg') {
        if (e.seq !== next) throw new Violation(`B got seq ${e.seq}, expected ${next} (silent hole or reorder)`);
        if (e.body !== this.aBodies[e.seq - 1]) throw new Violation(`B's seq ${e.seq} is not A's message ${e.seq}`);
        next++;
      } else {
        if (e.from !== next || e.to < e.from) throw new Violation(`gap ${e.from}-${e.to} where ${next} was due`);
        gapped += e.to - e.from + 1;
        next = e.to + 1;
      }
    }
    if (next - 1 < upTo) throw new Violation(`B holds up to ${next - 1}, A sent ${upTo}`);
    if (next - 1 > upTo) throw new Violation(`B holds up to ${next - 1}, more than A sent (${upTo})`);
    if (gapped !== expectedGapped)
      throw new Violation(`gap covers ${gapped}, the buffer bound drops ${expectedGapped}`);
  }
}

interface World {
  nodes: TestServer[];
  serverClock: ManualClock;
  clientClock: ManualClock;
  network: MemoryNetwork;
}

type Cmd = fc.AsyncCommand<Model & { gapped: number }, Real>;

class Send implements Cmd {
  constructor(readonly n: number) {}
  check = (m: Model) => m.inChat;
  async run(m: Model & { gapped: number }, r: Real) {
    r.send(this.n);
    m.sent += this.n;
    await r.quiet(m);
    if (m.bConnected) r.check(m.sent, m.gapped);
  }
  toString = () => `send(${this.n})`;
}

class Ack implements Cmd {
  check = (m: Model) => m.inChat && m.bConnected;
  async run(_m: Model, r: Real) {
    r.b.send({ type: 'ack', seq: r.b.lastSeq });
  }
  toString = () => 'ack';
}

class Drop implements Cmd {
  check = (m: Model) => m.bConnected;
  async run(m: Model, r: Real) {
    const away = m.inChat ? r.a.next('partner', (f) => f.state === 'away', 3000) : null;
    r.b.drop();
    m.bConnected = false;
    await r.settle('B closed', () => !r.b.connected);
    if (away) await away;
  }
  toString = () => 'drop';
}

/** B comes back (on its current instance, or after `Move`, the other one). */
async function resume(m: Model & { gapped: number }, r: Real): Promise<void> {
  await r.settle('A confirmed', () => r.a.unconfirmed === 0);
  const before = r.b.lastSeq;
  // The server's time moves while B says hello: a resume may wait on the cluster (a look-up, a hand-off).
  let welcome: WelcomeFrame | null = null;
  const pending = r.b.connect().then((w) => {
    welcome = w;
  });
  await r.settle('B welcomed', () => welcome !== null);
  await pending;
  if (!welcome) throw new Violation('B not welcomed');
  const w: WelcomeFrame = welcome;
  m.bConnected = true;
  if (m.expired) {
    r.stats.expiries++;
    if (!w.resumed && r.aEnded > 0) r.stats.expirySignals++;
    else throw new Violation(`window passed: B resumed=${w.resumed}, A ended=${r.aEnded}`);
    m.expired = false;
    return;
  }
  if (!w.resumed || (m.inChat && w.chat?.id !== r.chat)) throw new Violation('B could not resume inside its window');
  if (!m.inChat) return;
  const dropped = Math.max(0, m.sent - before - MODEL_LIMITS.bufferSessionMaxMessages);
  if (dropped > 0) r.stats.overflowResumes++;
  m.gapped += dropped;
  await r.quiet(m);
  r.check(m.sent, m.gapped);
  if (dropped > 0) r.stats.gapsSeen++;
}

class Resume implements Cmd {
  check = (m: Model) => !m.bConnected;
  run = resume;
  toString = () => 'resume';
}

class Move implements Cmd {
  check = () => true;
  async run(m: Model & { gapped: number }, r: Real) {
    r.bNode = 1 - r.bNode;
    r.stats.moves++;
    if (m.bConnected) await resume(m, r);
  }
  toString = () => 'move';
}

class Expire implements Cmd {
  check = (m: Model) => m.inChat && !m.bConnected && !m.expired;
  async run(m: Model, r: Real) {
    r.world.serverClock.advance(MODEL_LIMITS.resumeWindowMs + 1000);
    r.world.clientClock.advance(MODEL_LIMITS.resumeWindowMs + 1000);
    m.expired = true;
    m.inChat = false;
    await r.settle('A told the chat ended', () => r.aEnded > 0, 3000);
  }
  toString = () => 'expire';
}

class Overflow implements Cmd {
  check = (m: Model) => m.inChat && !m.bConnected;
  async run(m: Model, r: Real) {
    const n = MODEL_LIMITS.bufferSessionMaxMessages + 2;
    r.send(n);
    m.sent += n;
    await r.quiet(m);
  }
  toString = () => 'overflow';
}

/** A's client believes its budget refilled (its clock ran ahead); the server does not, and refuses. */
class Rate implements Cmd {
  check = (m: Model) => m.inChat;
  async run(m: Model & { gapped: number }, r: Real) {
    const n = MODEL_LIMITS.rateLimitBurst;
    r.send(n);
    r.world.clientClock.advance(10_000);
    r.send(n);
    m.sent += 2 * n;
    await r.quiet(m);
    if (m.bConnected) r.check(m.sent, m.gapped);
  }
  toString = () => 'rate';
}

class Pair implements Cmd {
  check = (m: Model) => !m.inChat && m.bConnected;
  async run(m: Model & { gapped: number }, r: Real) {
    await r.pair();
    m.inChat = true;
    m.sent = 0;
    m.gapped = 0;
  }
  toString = () => 'pair';
}

/** Counts each command that ran. */
const counted = (cmd: Cmd): Cmd => ({
  check: (m) => cmd.check(m),
  run: async (m, r) => {
    r.stats.commands++;
    if (process.env.MODEL_DEBUG) console.log(`  ${cmd.toString()} ${JSON.stringify(m)}`);
    await cmd.run(m, r);
  },
  toString: () => cmd.toString(),
});

const commands = [
  fc.integer({ min: 1, max: 4 }).map((n) => counted(new Send(n))),
  fc.constant(new Ack()).map(counted),
  fc.constant(new Drop()).map(counted),
  fc.constant(new Resume()).map(counted),
  fc.constant(new Move()).map(counted),
  fc.constant(new Expire()).map(counted),
  fc.constant(new Overflow()).map(counted),
  fc.constant(new Rate()).map(counted),
  fc.constant(new Pair()).map(counted),
];

export async function startModelWorld(): Promise<World & { close(): Promise<void> }> {
  const serverClock = new ManualClock(Date.now());
  const clientClock = new ManualClock(Date.now());
  const overrides: Partial<Config> = {
    ...MODEL_LIMITS,
    rematchCooldownMs: 0,
    unusedResumeWindowMs: 60_000,
    floodCloseAfter: 1000,
    logLevel: 'warn',
  };
  const c = loadConfig({}, overrides);
  const network = new MemoryNetwork({
    clock: serverClock,
    interestWaitMs: c.matchInterestWaitMs,
    maxQueueLength: c.maxQueueLength,
    inviteTtlMs: c.inviteTtlMs,
    maxInvites: c.maxInvites,
    reportThreshold: c.reportThreshold,
    reportWindowMs: c.reportWindowMs,
    reportCooldownMs: c.reportCooldownMs,
    simulated: true,
  });
  const nodes: TestServer[] = [];
  for (let i = 0; i < 2; i++)
    nodes.push(
      await startTestServer(
        { instanceId: `m${i}`, clusterSecret: CLUSTER_SECRET, ...overrides },
        serverClock,
        network.node(`m${i}`),
      ),
    );
  return {
    nodes,
    serverClock,
    clientClock,
    network,
    close: async () => {
      for (const n of nodes) await n.close();
    },
  };
}

/** Runs `runs` random command sequences; a failing one is counted and described, never thrown. */
export async function runModel(runs: number, seed?: number, maxCommands = 20): Promise<ModelStats> {
  const world = await startModelWorld();
  const stats: ModelStats = {
    sequences: 0,
    commands: 0,
    violations: 0,
    overflowResumes: 0,
    gapsSeen: 0,
    expiries: 0,
    expirySignals: 0,
    rateRefusals: 0,
    moves: 0,
    firstViolation: null,
  };
  try {
    const result = await fc.check(
      fc.asyncProperty(fc.commands(commands, { maxCommands, size: 'max' }), async (cmds) => {
        stats.sequences++;
        const real = new Real(world, stats);
        try {
          await real.open();
          const model: Model & { gapped: number } = {
            inChat: true,
            bConnected: true,
            sent: 0,
            expired: false,
            gapped: 0,
          };
          await fc.asyncModelRun(() => ({ model, real }), cmds);
          // The end: B comes back if away and everything A sent is accounted for.
          if (!model.bConnected) await resume(model, real);
          if (model.inChat) {
            await real.quiet(model);
            real.check(model.sent, model.gapped);
          }
        } finally {
          real.close();
        }
      }),
      { numRuns: runs, endOnFailure: true, ...(seed === undefined ? {} : { seed }) },
    );
    if (result.failed) {
      stats.violations++;
      stats.firstViolation = `${String(result.counterexample?.[0] ?? '')}: ${String(
        (result.errorInstance as Error | undefined)?.message ?? result.errorInstance,
      )} (seed ${result.seed})`;
    }
  } finally {
    await world.close();
  }
  return stats;
}
