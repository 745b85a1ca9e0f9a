/**
 * The in-memory Broker: the default when no Redis is configured. A
 * MemoryNetwork holds what instances share (the waiting room, invite codes,
 * report tallies, where sessions live); each MemoryBroker is one instance's
 * view of it. Alone, the network has one instance and the relay never calls
 * `send` (both sides of every chat are local). Tests put several instances
 * on one network to check cross-instance routing without Redis: envelopes
 * are then delivered in order on the microtask queue, as a bus would, never
 * re-entering the sender. `kill` and `setUp` simulate a dead instance and a
 * bus outage for the same contract tests the Redis driver runs; `hold` delays
 * one link, for races no timing on a real bus reproduces on demand.
 */
import type {
  Broker,
  BrokerEvents,
  BrokerStats,
  Directory,
  DirectoryEntry,
  FindOutcome,
  InviteStore,
  JoinOutcome,
  Matchmaker,
  ReportStore,
  Ticket,
} from './broker.js';
import type { Clock } from './clock.js';
import type { Envelope } from './envelope.js';
import { InviteBook } from './invites.js';
import { type Waiter, WaitingRoom } from './pairing.js';
import { ReportTracker } from './reports.js';

export interface MemoryNetworkOptions {
  clock: Clock;
  interestWaitMs: number;
  maxQueueLength: number;
  inviteTtlMs: number;
  maxInvites: number;
  reportThreshold: number;
  reportWindowMs: number;
  reportCooldownMs: number;
  /** Keep a directory of sessions (only useful with more than one instance). */
  simulated?: boolean;
}

/** A link from one instance to another whose envelopes wait, in order, until the test lets them through. */
export interface HeldLink {
  /** The types of the envelopes waiting, oldest first. */
  types(): string[];
  /** Resolves once an envelope of `type` is waiting. */
  queued(type: string): Promise<void>;
  /** Delivers the oldest waiting envelopes up to and including the first of `type` (all of them without one). */
  release(type?: string): void;
  /** Delivers everything waiting and lets the link run free again. */
  open(): void;
}

export class MemoryNetwork {
  readonly room: WaitingRoom;
  readonly invites: InviteBook;
  readonly reports: ReportTracker;
  readonly nodes = new Map<string, MemoryBroker>();
  readonly tickets = new Map<string, Ticket>();
  readonly directory = new Map<string, DirectoryEntry>();
  readonly blocks = new Map<string, Set<string>>();
  readonly recent = new Map<string, Map<string, number>>();
  readonly simulated: boolean;
  up = true;
  /** Links held by `hold`, by "from>to": what is waiting on each, in order. */
  readonly held = new Map<string, { env: Envelope; deliver: () => void }[]>();
  readonly #heldWatchers = new Set<() => void>();
  /** The instance whose call is running, so a match it causes is reported to it. */
  #caller: string | null = null;

  constructor(readonly opts: MemoryNetworkOptions) {
    const { clock } = opts;
    this.simulated = opts.simulated ?? false;
    this.invites = new InviteBook({ clock, ttlMs: opts.inviteTtlMs, maxInvites: opts.maxInvites });
    this.reports = new ReportTracker({
      clock,
      threshold: opts.reportThreshold,
      windowMs: opts.reportWindowMs,
      cooldownMs: opts.reportCooldownMs,
    });
    this.room = new WaitingRoom({
      clock,
      interestWaitMs: opts.interestWaitMs,
      maxLength: opts.maxQueueLength,
      compatibleFrom: (a, b) => this.#compatibleFrom(a, b),
      onMatch: (first, second, shared) => this.#matched(first, second, shared),
    });
  }

  /** One instance on this network. */
  node(nodeId: string): MemoryBroker {
    const broker = new MemoryBroker(this, nodeId);
    this.nodes.set(nodeId, broker);
    return broker;
  }

  /** The instance stops without a word (SIGKILL): the others learn it from its missing liveness. */
  kill(nodeId: string): void {
    const node = this.nodes.get(nodeId);
    if (!node) return;
    this.nodes.delete(nodeId);
    for (const [id, t] of this.tickets) if (t.node === nodeId) this.#dropTicket(id);
    // The directory keeps the dead instance's entries (Redis keeps them until their TTL): a resume may rebuild.
    for (const other of this.nodes.values()) other.events?.nodeGone(nodeId);
  }

  /** Holds the link from instance `from` to instance `to`: its envelopes wait until released, in order. */
  hold(from: string, to: string): HeldLink {
    const key = `${from}>${to}`;
    const queue: { env: Envelope; deliver: () => void }[] = [];
    this.held.set(key, queue);
    const take = (n: number) => {
      for (const { deliver } of queue.splice(0, n)) queueMicrotask(deliver);
    };
    return {
      types: () => queue.map((q) => q.env.t),
      queued: (type) =>
        new Promise((resolve) => {
          const check = () => {
            if (!queue.some((q) => q.env.t === type)) return;
            this.#heldWatchers.delete(check);
            resolve();
          };
          this.#heldWatchers.add(check);
          check();
        }),
      release: (type) => {
        const i = type === undefined ? -1 : queue.findIndex((q) => q.env.t === type);
        take(i < 0 ? queue.length : i + 1);
      },
      open: () => {
        this.held.delete(key);
        take(queue.length);
      },
    };
  }

  /** Queues an envelope on a held link; false if the link is not held. */
  holdBack(from: string, to: string, env: Envelope, deliver: () => void): boolean {
    const queue = this.held.get(`${from}>${to}`);
    if (!queue) return false;
    queue.push({ env, deliver });
    for (const check of [...this.#heldWatchers]) check();
    return true;
  }

  /** Simulates the bus going down (false) and coming back (true). */
  setUp(up: boolean): void {
    if (this.up === up) return;
    this.up = up;
    for (const node of this.nodes.values()) node.events?.health(up);
  }

  withCaller<T>(nodeId: string, fn: () => T): T {
    const previous = this.#caller;
    this.#caller = nodeId;
    try {
      return fn();
    } finally {
      this.#caller = previous;
    }
  }

  #dropTicket(id: string): void {
    this.tickets.delete(id);
    this.room.remove(id);
  }

  #compatibleFrom(a: string, b: string): number {
    if (this.blocks.get(a)?.has(b) || this.blocks.get(b)?.has(a)) return Number.POSITIVE_INFINITY;
    return Math.max(this.recent.get(a)?.get(b) ?? 0, this.recent.get(b)?.get(a) ?? 0);
  }

  #matched(first: Waiter, second: Waiter, shared: string[]): void {
    const a = this.tickets.get(first.id);
    const b = this.tickets.get(second.id);
    this.tickets.delete(first.id);
    this.tickets.delete(second.id);
    if (!a || !b) return;
    const maker = this.nodes.get(this.#caller ?? a.node) ?? this.nodes.get(b.node);
    maker?.events?.match({ ...a, since: first.since }, { ...b, since: second.since }, shared);
  }
}

class MemoryMatchmaker implements Matchmaker {
  constructor(
    private readonly net: MemoryNetwork,
    private readonly nodeId: string,
  ) {}

  async find(ticket: Ticket): Promise<FindOutcome> {
    const net = this.net;
    // Finding again (a session that moved, or a retry) replaces the old ticket.
    net.room.remove(ticket.id);
    net.tickets.set(ticket.id, ticket);
    const outcome = net.withCaller(this.nodeId, () => net.room.enqueue(ticket.id, ticket.interests, ticket.since));
    if (outcome === 'full') net.tickets.delete(ticket.id);
    return outcome;
  }

  /**
   * Tickets here outlive any outage (nothing restarts empty), so one that is gone was claimed: its match is on its
   * way (held with the relay's unsent envelopes while the bus was down, and sent first when it came back).
   */
  async refind(ticket: Ticket): Promise<FindOutcome> {
    return this.net.tickets.has(ticket.id) ? this.find(ticket) : 'matched';
  }

  async cancel(id: string): Promise<void> {
    this.net.tickets.delete(id);
    this.net.room.remove(id);
  }

  handOver(): void {
    // The waiting room's own timers serve every instance of the network.
  }

  async block(a: string, b: string): Promise<void> {
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const set = this.net.blocks.get(x) ?? new Set<string>();
      set.add(y);
      this.net.blocks.set(x, set);
    }
  }

  async rememberPair(a: string, b: string, until: number): Promise<void> {
    const now = this.net.opts.clock.now();
    for (const [x, y] of [
      [a, b],
      [b, a],
    ] as const) {
      const map = this.net.recent.get(x) ?? new Map<string, number>();
      for (const [id, t] of map) if (t <= now) map.delete(id);
      map.set(y, until);
      this.net.recent.set(x, map);
    }
  }

  async forget(id: string): Promise<void> {
    this.net.blocks.delete(id);
    this.net.recent.delete(id);
  }
}

class MemoryInvites implements InviteStore {
  constructor(private readonly net: MemoryNetwork) {}

  async create() {
    return this.net.invites.create();
  }

  async join(code: string, id: string, node: string): Promise<JoinOutcome> {
    return this.net.invites.join(code, id, node);
  }

  async release(code: string, id: string): Promise<void> {
    this.net.invites.release(code, id);
  }

  openCount(): number {
    return this.net.invites.size;
  }
}

class MemoryReports implements ReportStore {
  constructor(private readonly net: MemoryNetwork) {}

  async report(reportedKeys: readonly string[], reporterKey: string): Promise<void> {
    this.net.reports.report(reportedKeys, reporterKey);
  }

  async cooldownLeft(keys: readonly string[]): Promise<number> {
    return this.net.reports.cooldownLeft(keys);
  }
}

class MemoryDirectory implements Directory {
  constructor(private readonly net: MemoryNetwork) {}

  async claim(id: string, entry: DirectoryEntry): Promise<void> {
    if (this.net.simulated) this.net.directory.set(id, entry);
  }

  async where(id: string): Promise<DirectoryEntry | null> {
    return this.net.directory.get(id) ?? null;
  }

  async release(id: string): Promise<void> {
    this.net.directory.delete(id);
  }

  async refresh(): Promise<void> {
    // Nothing here expires on its own.
  }
}

export class MemoryBroker implements Broker {
  readonly matchmaker: Matchmaker;
  readonly invites: InviteStore;
  readonly reports: ReportStore;
  readonly directory: Directory;
  events: BrokerEvents | null = null;
  #publishes = 0;
  #receives = 0;

  constructor(
    private readonly net: MemoryNetwork,
    readonly nodeId: string,
  ) {
    this.matchmaker = new MemoryMatchmaker(net, nodeId);
    this.invites = new MemoryInvites(net);
    this.reports = new MemoryReports(net);
    this.directory = new MemoryDirectory(net);
  }

  get clustered(): boolean {
    return this.net.simulated;
  }

  get up(): boolean {
    return this.net.up;
  }

  async start(events: BrokerEvents): Promise<void> {
    this.events = events;
  }

  send(node: string, env: Envelope): boolean {
    if (!this.net.up) return false;
    this.#publishes++;
    const target = this.net.nodes.get(node);
    if (!target) return true;
    // A structured copy, as if it had crossed the wire: the receiver must never share the sender's objects.
    const copy = structuredClone(env);
    const deliver = () => {
      if (!this.net.up || this.net.nodes.get(node) !== target) return;
      target.#receives++;
      target.events?.envelope(copy);
    };
    if (!this.net.holdBack(this.nodeId, node, copy, deliver)) queueMicrotask(deliver);
    return true;
  }

  isAlive(node: string): boolean {
    return this.net.nodes.has(node);
  }

  stats(): BrokerStats {
    return {
      liveNodes: this.net.nodes.size,
      publishes: this.#publishes,
      receives: this.#receives,
      errors: 0,
      reconnects: 0,
    };
  }

  async close(): Promise<void> {
    if (this.net.nodes.get(this.nodeId) !== this) return;
    this.net.nodes.delete(this.nodeId);
    for (const other of this.net.nodes.values()) other.events?.nodeGone(this.nodeId);
  }
}
