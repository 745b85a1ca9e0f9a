/**
 * The seam between one instance and the rest of the relay. Everything an
 * instance cannot decide alone goes through a Broker: envelopes to the
 * instance that holds a session, who is waiting for a partner, invite codes,
 * report tallies, where a session lives, and which instances are alive.
 * The relay (relay.ts) is written once against this interface.
 *
 * Two drivers: broker-memory.ts (the default: one process, or several
 * simulated instances in one process for tests) and broker-redis.ts (Redis or
 * Redis Cluster). test/fixtures/broker-contract.ts runs the same scenarios
 * against both. What an instance holds itself (sockets, sessions, each
 * recipient's buffered messages) is not here: see ADR 0004 and 0005.
 */
import type { Envelope } from './envelope.js';
import type { ErrorCode } from './errors.js';

/** A session waiting for a random partner. */
export interface Ticket {
  readonly id: string;
  /** The instance holding the session. */
  readonly node: string;
  readonly interests: readonly string[];
  /** When it first asked (ms since epoch): FIFO order across every instance. */
  readonly since: number;
}

export type FindOutcome = 'matched' | 'queued' | 'full';

/**
 * Random pairing across instances. A match is reported to the instance that
 * made it (the finder's, or the one whose waiter's timer found someone) through
 * BrokerEvents.match; that instance starts the chat on both sides.
 */
export interface Matchmaker {
  /** Pairs `ticket` with the longest-waiting compatible waiter, or queues it. */
  find(ticket: Ticket): Promise<FindOutcome>;
  /**
   * find() for a waiter of this instance after the bus was down, unless another instance claimed it meanwhile:
   * that match was published while this instance could not hear and is being sent again until it is (the relay's
   * `unheard` handling), so finding again would pair the waiter twice. 'matched' then means "on its way".
   */
  refind(ticket: Ticket): Promise<FindOutcome>;
  /** Leaves the queue (no-op if not in it, or already taken by a match being reported). */
  cancel(id: string): Promise<void>;
  /**
   * The session moved to another instance, which takes its ticket (if it waits) over: stop looking for it from
   * here, and drop what was kept here about it (its forget() will run on the other instance).
   */
  handOver(id: string): void;
  /** Never pair these two again (a block or a report, either way). */
  block(a: string, b: string): Promise<void>;
  /** Do not pair these two at random before `until` (ms since epoch). */
  rememberPair(a: string, b: string, until: number): Promise<void>;
  /** The session is gone: drop its blocks and pair history. */
  forget(id: string): Promise<void>;
}

export type JoinOutcome =
  | { kind: 'wait' }
  | { kind: 'pair'; partner: string; partnerNode: string; waitedMs: number }
  | { kind: 'error'; code: Extract<ErrorCode, 'invite_unknown' | 'invite_expired' | 'invite_used'> };

/** Invite codes any instance can create and any instance can join. */
export interface InviteStore {
  /** A fresh code, or null when there are too many open ones. */
  create(): Promise<{ code: string; expiresAt: number } | null>;
  /** Waits on `code`, or pairs with the session already waiting on it. */
  join(code: string, id: string, node: string): Promise<JoinOutcome>;
  /** The waiting holder cancelled or went away: the code stays open. */
  release(code: string, id: string): Promise<void>;
  /** Codes that can still be joined, as far as this instance can tell cheaply (a gauge). */
  openCount(): number;
}

/** Report tallies and cool-downs, keyed by session id and address digest. */
export interface ReportStore {
  report(reportedKeys: readonly string[], reporterKey: string): Promise<void>;
  /** Milliseconds left on the longest cool-down among `keys`, 0 if none. */
  cooldownLeft(keys: readonly string[]): Promise<number>;
}

/** Where a session lives, and its chat, so a resume elsewhere can ask for it (or rebuild it if its instance died). */
export interface DirectoryEntry {
  node: string;
  /** Its chat and partner, if in one. */
  chat?: { id: string; partner: string };
}

/** Which instance holds each session, so a resume elsewhere can ask for it. */
export interface Directory {
  /** `id` lives on `node` now (and is in `chat`, if given). */
  claim(id: string, entry: DirectoryEntry): Promise<void>;
  where(id: string): Promise<DirectoryEntry | null>;
  release(id: string): Promise<void>;
  /** These sessions still live: every key about them lives on (each expires a resume window after its last refresh). */
  refresh(ids: readonly string[]): Promise<void>;
}

export interface BrokerEvents {
  /** An envelope for a session on this instance. */
  envelope(env: Envelope): void;
  /** This instance made a match: start the chat on both sides. `first` waited longer. */
  match(first: Ticket, second: Ticket, shared: string[]): void;
  /** Another instance stopped (its liveness expired, or it left). */
  nodeGone(node: string): void;
  /** The bus went down or came back (after the broker restored its own state). */
  health(up: boolean): void;
  /**
   * Envelopes for `node` that no instance heard (Redis counted no subscriber on its channel: it was cut off from
   * Redis, or it died). Pub/sub keeps nothing for later, so they are gone.
   */
  unheard?(node: string, envs: readonly Envelope[]): void;
}

export interface BrokerStats {
  /** Instances alive, this one included. */
  liveNodes: number;
  publishes: number;
  receives: number;
  errors: number;
  reconnects: number;
}

export interface Broker {
  /** This instance's name (INSTANCE_ID, or random). */
  readonly nodeId: string;
  /** Whether other instances can exist (false for the default, one process). */
  readonly clustered: boolean;
  /** Whether the bus and the shared stores work right now. */
  readonly up: boolean;
  readonly matchmaker: Matchmaker;
  readonly invites: InviteStore;
  readonly reports: ReportStore;
  readonly directory: Directory;
  /** Subscribes, starts heartbeats; resolves when this instance can serve. */
  start(events: BrokerEvents): Promise<void>;
  /**
   * Hands `env` to `node`'s instance. False when the bus is down and nothing
   * was sent; true means handed to the bus, not delivered (pub/sub is at most once).
   */
  send(node: string, env: Envelope): boolean;
  /** Whether `node` was alive at the last liveness check (this one always is). */
  isAlive(node: string): boolean;
  stats(): BrokerStats;
  /** Leaves the cluster (liveness removed at once) and closes connections. */
  close(): Promise<void>;
}
