/**
 * The Redis Broker: several instances form one relay through one Redis or a
 * Redis Cluster. The only file that imports ioredis.
 *
 * - Bus: one channel per instance (`<prefix>{node:<id>}`); envelopes for a
 *   session go to its instance's channel. PUBLISH on one Redis, SPUBLISH
 *   (sharded pub/sub, Redis 7) on a cluster. One publishing connection keeps
 *   each instance's envelopes in order. Envelopes wait for the end of the
 *   event-loop turn and go out as one PUBLISH per destination (a batch): a
 *   busy instance sends a few large publishes instead of many small ones.
 *   Receipts (`stored`, `delivered`, `read`) may wait up to RECEIPT_DELAY_MS
 *   for a message going the same way to carry them: alone, each would cost
 *   a publish and a wakeup of Redis and of the other instance.
 *   Pending batches are published before any other command, so Redis sees
 *   this instance's commands in the order the relay issued them.
 * - Shared state: Lua scripts (redis-scripts.ts), each atomic on the `{mq}`
 *   slot: the waiting room, blocks and rematch cool-downs, invites, reports,
 *   instance liveness. Directory keys (`<prefix>d:<id>`) spread over slots.
 * - Liveness: a heartbeat every HEARTBEAT_MS renews this instance in a sorted
 *   set with an expiry LIVENESS_MS ahead, and returns the live ones; an
 *   instance missing from it is gone (BrokerEvents.nodeGone). It doubles as
 *   the health probe: the broker is down from the first failed beat or lost
 *   connection, and up again after the first good beat on both connections.
 *   A beat that comes more than LIVENESS_MS after the last one counts as an
 *   outage too (the others may have taken this instance for dead).
 * - While down, pairing goes on among this instance's own sessions (a local
 *   waiting room); the relay refuses cross-instance sends (`unavailable`).
 *
 * Redis never persists anything the relay writes: every key has a TTL of at
 * most the resume window (refreshed while its owner lives) or is deleted when
 * its owner goes, and the scripts and docs start Redis with
 * `--save "" --appendonly no`. No message body, token or address is written
 * to a key; bodies cross only inside published envelopes.
 */
import { Cluster, Redis, type RedisOptions } from 'ioredis';
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
import type { Clock, TimerHandle } from './clock.js';
import type { Config } from './config.js';
import { decodeBatch, type Envelope, encodeBatch } from './envelope.js';
import { normalizeCode, randomCode } from './invites.js';
import type { Logger } from './logger.js';
import { WaitingRoom } from './pairing.js';
import * as lua from './redis-scripts.js';

/** `p`, or a rejection once `ms` have passed without its answer (which is then ignored). */
function withDeadline<T>(p: Promise<T>, ms: number): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const late = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error('no answer in time')), ms);
  });
  p.catch(() => {});
  return Promise.race([p, late]).finally(() => clearTimeout(timer));
}

/** ioredis's error for a command with no reply within `commandTimeout`: it may have run. */
const isTimeout = (err: unknown): boolean => err instanceof Error && err.message === 'Command timed out';

/** How often this instance says it is alive (and checks Redis and the others). */
export const HEARTBEAT_MS = 1000;
/** A beat unanswered for this long marks the broker down (commands wait longer: REDIS_COMMAND_TIMEOUT_MS). */
export const HEARTBEAT_TIMEOUT_MS = 1000;
/** How long a beat keeps an instance alive: a dead one is invisible after at most this plus one beat. */
export const LIVENESS_MS = 4500;
/**
 * How long a receipt may wait for other envelopes to the same instance. Under load a message crosses the
 * other way well within it and takes the receipts along (one publish, one wakeup on each side instead of
 * three); when it is quiet a receipt goes alone after this long, so a `sent` or `delivered` tick shows at
 * most this much later. Nothing but receipts waits: messages, presence and everything else go at the end
 * of the event-loop turn.
 */
export const RECEIPT_DELAY_MS = 2;
const RECEIPTS: ReadonlySet<Envelope['t']> = new Set(['stored', 'delivered', 'read']);
/** Waiters looked at per queue per find: the oldest ones (FIFO), with room to skip incompatible ones. */
const SCAN = 64;
/** Sessions refreshed per script call. */
const TOUCH_BATCH = 500;

type Script = (key: string, ...args: (string | number)[]) => Promise<unknown>;
type Client = Redis | Cluster;

export interface RedisBrokerOptions {
  config: Config;
  clock: Clock;
  logger: Logger;
  nodeId: string;
}

const SCRIPTS = {
  relayFind: lua.FIND,
  relayCancel: lua.CANCEL,
  relayRemember: lua.REMEMBER,
  relayHeartbeat: lua.HEARTBEAT,
  relayLeave: lua.LEAVE,
  relayInviteCreate: lua.INVITE_CREATE,
  relayInviteJoin: lua.INVITE_JOIN,
  relayInviteRelease: lua.INVITE_RELEASE,
  relayReport: lua.REPORT,
  relayCooldown: lua.COOLDOWN,
  relayTouch: lua.TOUCH,
  relayForget: lua.FORGET,
} as const;

export class RedisBroker implements Broker {
  readonly nodeId: string;
  readonly clustered = true;
  readonly matchmaker: RedisMatchmaker;
  readonly invites: InviteStore;
  readonly reports: ReportStore;
  readonly directory: Directory;
  readonly #config: Config;
  readonly #clock: Clock;
  readonly #logger: Logger;
  readonly #cmd: Client;
  readonly #sub: Client;
  readonly #sharded: boolean;
  readonly #channel: string;
  /** `<prefix>{mq}:`, the one key every script is given. */
  readonly mq: string;
  #events: BrokerEvents | null = null;
  #up = false;
  #everUp = false;
  /** When the last beat that Redis answered was sent (this instance's clock), 0 before the first. */
  #beatAt = 0;
  #closed = false;
  #live = new Set<string>();
  /** Instances seen alive once and missing since (bounded: only ids this instance saw). */
  readonly #gone = new Set<string>();
  #openInvites = 0;
  #beat: ReturnType<typeof setInterval> | null = null;
  #beating = false;
  #listening = false;
  readonly #counts = { publishes: 0, receives: 0, errors: 0, reconnects: 0 };
  /** Envelopes not yet published, per destination instance, in the order they were sent. */
  readonly #outbox = new Map<string, Envelope[]>();
  #flushQueued = false;
  /** Set while only receipts wait: publishes them after RECEIPT_DELAY_MS unless something else goes first. */
  #receiptTimer: ReturnType<typeof setTimeout> | null = null;
  /** Connection errors logged since the broker was last up. */
  readonly #reported = new Set<string>();

  constructor({ config, clock, logger, nodeId }: RedisBrokerOptions) {
    this.nodeId = nodeId;
    this.#config = config;
    this.#clock = clock;
    this.#logger = logger;
    const prefix = config.redisPrefix;
    this.mq = `${prefix}{mq}:`;
    this.#sharded = config.redisClusterNodes.length > 0;
    this.#channel = this.channelOf(nodeId);
    const options: RedisOptions = {
      lazyConnect: true,
      // No auto-pipelining (nor on the cluster): ioredis keeps one auto-pipeline per connection in flight, so a
      // publish waited for the replies to the previous batch, a round trip through Redis that was most of the
      // cross-instance p99; and its Pipeline object per batch was most of the broker's garbage. The bus batches
      // its own publishes (#flush), and each command is written when issued, so Redis still sees them in order.
      enableAutoPipelining: false,
      // Fail fast while disconnected: the relay answers `unavailable` rather than hold a client on a queue.
      enableOfflineQueue: false,
      maxRetriesPerRequest: 1,
      // Generous: a reply is read only when this event loop comes round to it, and under overload that is late
      // while Redis answered at once (the gateway bench at 75,000 sessions: 2,332 finds failed at 1 s). The
      // heartbeat has its own 1 s deadline, so a Redis that stops answering is still noticed within 2 s.
      commandTimeout: config.redisCommandTimeoutMs,
      // ioredis's default backs off to 2 s and more; a Redis that is back must be used within 2 s.
      retryStrategy: (times) => Math.min(100 * times, 500),
      connectionName: `relay-${nodeId}`,
    };
    if (this.#sharded) {
      const nodes = config.redisClusterNodes.map((n) => {
        const [host = '127.0.0.1', port = '6379'] = n.split(':');
        return { host, port: Number(port) };
      });
      const clusterOptions = {
        lazyConnect: true,
        enableOfflineQueue: false,
        enableAutoPipelining: false,
        shardedSubscribers: true,
        clusterRetryStrategy: (times: number) => Math.min(100 * times, 500),
        redisOptions: options,
      };
      this.#cmd = new Cluster(nodes, clusterOptions);
      this.#sub = new Cluster(nodes, clusterOptions);
    } else {
      this.#cmd = new Redis(config.redisUrl, options);
      this.#sub = new Redis(config.redisUrl, options);
    }
    for (const [name, source] of Object.entries(SCRIPTS))
      this.#cmd.defineCommand(name, { numberOfKeys: 1, lua: source });
    for (const client of [this.#cmd, this.#sub]) {
      client.on('error', (err: Error & { code?: string }) => {
        // Counted and acted on through 'close' and the heartbeat; ioredis logs nothing itself. Logged once
        // per distinct error until the broker is up again, so an operator sees why (a refused connection,
        // an untrusted certificate, a wrong password) without a line per retry. ioredis's messages name
        // the Redis address at most, never the password.
        this.#counts.errors++;
        const why = err.code ?? err.message;
        if (this.#reported.has(why)) return;
        this.#reported.add(why);
        this.#logger.warn({ code: err.code, reason: err.message }, 'broker connection error');
      });
      client.on('close', () => {
        if (client === this.#sub) this.#listening = false;
        this.#setUp(false);
      });
    }
    this.#cmd.on('ready', () => void this.#heartbeat());
    // Subscribed on every (re)connection: the bus is up only once this instance can hear it.
    this.#sub.on('ready', () => void this.#listen());
    const onMessage = (_channel: string, text: string) => {
      const { envelopes, malformed } = decodeBatch(text);
      this.#counts.receives += envelopes.length;
      if (malformed > 0) this.#logger.warn({ malformed }, 'dropped malformed envelopes');
      for (const env of envelopes) this.#events?.envelope(env);
    };
    if (this.#sharded) this.#sub.on('smessage', onMessage);
    else this.#sub.on('message', onMessage);
    this.matchmaker = new RedisMatchmaker(this, config, clock);
    this.invites = new RedisInvites(this, config, clock);
    this.reports = new RedisReports(this, config, clock);
    this.directory = new RedisDirectory(this, config);
  }

  channelOf(node: string): string {
    return `${this.#config.redisPrefix}{node:${node}}`;
  }

  /** Runs a script on the `{mq}` slot (after the envelopes sent before it). */
  run(name: keyof typeof SCRIPTS, ...args: (string | number)[]): Promise<unknown> {
    this.#flush();
    const script = (this.#cmd as unknown as Record<string, Script>)[name] as Script;
    return script.call(this.#cmd, this.mq, ...args).catch((err: unknown) => {
      this.#counts.errors++;
      throw err;
    });
  }

  /** The command connection, for plain commands (after the envelopes sent before them). */
  get commands(): Client {
    this.#flush();
    return this.#cmd;
  }

  get events(): BrokerEvents | null {
    return this.#events;
  }

  get up(): boolean {
    return this.#up;
  }

  /**
   * Connects and subscribes. Resolves once up, or after a few seconds without
   * Redis: the instance then serves its own sessions (degraded) and joins the
   * others as soon as Redis answers. It never fails for want of Redis.
   */
  async start(events: BrokerEvents): Promise<void> {
    this.#events = events;
    this.#cmd.connect().catch(() => {});
    this.#sub.connect().catch(() => {});
    this.#beat = setInterval(() => void this.#heartbeat(), HEARTBEAT_MS);
    this.#beat.unref();
    const deadline = Date.now() + 3000;
    while (!this.#up && Date.now() < deadline) await new Promise((r) => setTimeout(r, 25));
    if (!this.#up) this.#logger.warn('broker unavailable at start: serving this instance alone until it answers');
  }

  send(node: string, env: Envelope): boolean {
    if (!this.#up) return false;
    this.#counts.publishes++;
    const batch = this.#outbox.get(node);
    if (batch) batch.push(env);
    else this.#outbox.set(node, [env]);
    if (this.#flushQueued) return true;
    if (!RECEIPTS.has(env.t)) {
      this.#flushQueued = true;
      setImmediate(this.#flush);
    } else if (!this.#receiptTimer) this.#receiptTimer = setTimeout(this.#flush, RECEIPT_DELAY_MS);
    return true;
  }

  /** Publishes every pending batch (receipts too), destinations in the order they were first sent to. */
  readonly #flush = (): void => {
    this.#flushQueued = false;
    if (this.#receiptTimer) {
      clearTimeout(this.#receiptTimer);
      this.#receiptTimer = null;
    }
    if (this.#outbox.size === 0) return;
    for (const [node, batch] of this.#outbox) {
      const channel = this.channelOf(node);
      const text = encodeBatch(batch);
      const sent = this.#sharded
        ? (this.#cmd as Cluster).spublish(channel, text)
        : (this.#cmd as Redis).publish(channel, text);
      sent.then(
        (receivers) => {
          if (receivers === 0) this.#events?.unheard?.(node, batch);
        },
        () => {
          // At most once, like the pub/sub under it: the relay re-sends unstored messages when the bus is back.
          this.#counts.errors++;
        },
      );
    }
    this.#outbox.clear();
  };

  /** Alive unless it was seen and then vanished: an instance that started since the last beat is not dead. */
  isAlive(node: string): boolean {
    return node === this.nodeId || this.#live.has(node) || !this.#gone.has(node);
  }

  stats(): BrokerStats {
    return { liveNodes: Math.max(1, this.#live.size), ...this.#counts };
  }

  get openInvites(): number {
    return this.#openInvites;
  }

  async #heartbeat(): Promise<void> {
    if (this.#beating || this.#closed) return;
    if (this.#cmd.status !== 'ready' || !this.#subscribed()) return this.#setUp(false);
    this.#beating = true;
    try {
      const now = this.#clock.now();
      const [live, invites, since] = (await withDeadline(
        this.run('relayHeartbeat', this.nodeId, now, now + LIVENESS_MS),
        HEARTBEAT_TIMEOUT_MS,
      )) as [string[], number, number];
      this.#openInvites = invites;
      const before = this.#live;
      this.#live = new Set(live);
      // A record younger than the liveness bound (Redis restarted empty) lacks instances that are alive but have
      // not beaten since: they stay alive until it is old enough to say. Without this, the first instance back
      // took every other for dead and told their partners `away` (and, had their `presence` overtaken that, kept
      // refusing their messages until the resume window ended the chat).
      if (now - since < LIVENESS_MS) for (const node of before) this.#live.add(node);
      // Beats that ran late past the liveness bound (an event loop starved under overload) fail nothing, yet the
      // others took this instance for dead meanwhile: their finds dropped its waiters from the queues, and its
      // chats' partners were told `away`. It comes back as after an outage (its waiters found again, presence
      // said again), or its waiters' own retries answer `gone` and they wait for good.
      const lapsed = this.#up && this.#beatAt > 0 && now - this.#beatAt > LIVENESS_MS;
      this.#beatAt = now;
      this.#setUp(true);
      if (lapsed) {
        this.#logger.warn('broker: this instance beat too late to stay alive; announcing itself again');
        this.matchmaker.busBack();
        this.#events?.health(true);
      }
      for (const node of this.#live) this.#gone.delete(node);
      for (const node of before) {
        if (this.#live.has(node) || node === this.nodeId) continue;
        this.#gone.add(node);
        this.#events?.nodeGone(node);
      }
    } catch {
      this.#setUp(false);
    } finally {
      this.#beating = false;
    }
  }

  async #listen(): Promise<void> {
    try {
      if (this.#sharded) await (this.#sub as Cluster).ssubscribe(this.#channel);
      else await (this.#sub as Redis).subscribe(this.#channel);
      this.#listening = true;
      await this.#heartbeat();
    } catch {
      this.#counts.errors++;
    }
  }

  #subscribed(): boolean {
    return this.#listening && this.#sub.status === 'ready';
  }

  #setUp(up: boolean): void {
    if (this.#up === up || this.#closed) return;
    this.#up = up;
    if (up) {
      this.#reported.clear();
      if (this.#everUp) {
        this.#counts.reconnects++;
        this.#logger.info('broker back');
      }
      this.#everUp = true;
      this.matchmaker.busBack();
    } else {
      this.#logger.warn('broker down: serving chats within this instance; cross-instance sends are refused');
    }
    this.#events?.health(up);
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#beat) clearInterval(this.#beat);
    this.#flush();
    this.matchmaker.close();
    if (this.#up) await this.run('relayLeave', this.nodeId).catch(() => {});
    this.#closed = true;
    this.#up = false;
    for (const client of [this.#sub, this.#cmd]) {
      try {
        await client.quit();
      } catch {
        client.disconnect();
      }
    }
  }
}

/**
 * The shared waiting room. While the broker is down, waiters are paired in a
 * local room among this instance's own sessions; when it is back, the relay
 * finds for them again (with their original place) and they join everyone.
 */
class RedisMatchmaker implements Matchmaker {
  readonly #retries = new Map<string, TimerHandle>();
  readonly #local: WaitingRoom;
  readonly #localTickets = new Map<string, Ticket>();
  /** Blocks and cool-downs made here, for the local room while the broker is down. */
  readonly #blocks = new Map<string, Set<string>>();
  readonly #recent = new Map<string, Map<string, number>>();
  /** Cancels made while down, applied when back (the ticket may still be in Redis). */
  readonly #cancels = new Set<string>();

  constructor(
    private readonly b: RedisBroker,
    private readonly config: Config,
    private readonly clock: Clock,
  ) {
    this.#local = new WaitingRoom({
      clock,
      interestWaitMs: config.matchInterestWaitMs,
      maxLength: config.maxQueueLength,
      compatibleFrom: (x, y) => {
        if (this.#blocks.get(x)?.has(y) || this.#blocks.get(y)?.has(x)) return Number.POSITIVE_INFINITY;
        return Math.max(this.#recent.get(x)?.get(y) ?? 0, this.#recent.get(y)?.get(x) ?? 0);
      },
      onMatch: (first, second, shared) => {
        const a = this.#localTickets.get(first.id);
        const c = this.#localTickets.get(second.id);
        this.#localTickets.delete(first.id);
        this.#localTickets.delete(second.id);
        if (a && c) this.b.events?.match(a, c, shared);
      },
    });
  }

  async find(ticket: Ticket): Promise<FindOutcome> {
    return this.#find(ticket, 'find');
  }

  async refind(ticket: Ticket): Promise<FindOutcome> {
    return this.#find(ticket, 'refind');
  }

  async #find(ticket: Ticket, kind: 'find' | 'retry' | 'refind'): Promise<FindOutcome> {
    this.#retries.get(ticket.id)?.cancel();
    this.#retries.delete(ticket.id);
    this.#cancels.delete(ticket.id);
    if (!this.b.up) {
      this.#localTickets.set(ticket.id, ticket);
      const outcome = this.#local.enqueue(ticket.id, ticket.interests, ticket.since);
      if (outcome === 'full') this.#localTickets.delete(ticket.id);
      return outcome;
    }
    this.#localTickets.delete(ticket.id);
    this.#local.remove(ticket.id);
    const now = this.clock.now();
    const flex = ticket.interests.length > 0 ? ticket.since + this.config.matchInterestWaitMs : ticket.since;
    const run = (mode: 0 | 1 | 2 | 3 | 4) =>
      this.b.run(
        'relayFind',
        ticket.id,
        ticket.node,
        ticket.since,
        flex,
        now,
        this.config.maxQueueLength,
        SCAN,
        this.config.resumeWindowMs,
        mode,
        ...ticket.interests,
      ) as Promise<string[]>;
    let reply: string[];
    try {
      reply = await run(kind === 'retry' ? 1 : kind === 'refind' ? 4 : 0);
    } catch (err) {
      // A timeout loses the reply, not necessarily the work: the script may have run and claimed a partner,
      // whose match only this instance can announce (the partner's own retries answer 'gone'). Asked again,
      // the script answers what that call did (m:<id>): the match it made, a full queue, or 'gone' if it
      // queued this waiter and someone claimed it since (that match is announced by its maker); otherwise it
      // finds afresh. Before this, an overloaded instance left such partners unmatched and out of every queue.
      // (A refind asked again is a find asked again: the lost call ran first, so no ticket means claimed.)
      if (!isTimeout(err)) throw err;
      reply = await run(kind === 'retry' ? 3 : 2);
    }
    // Taken by someone else's find since: its match is being reported (or sent again until heard) by that instance.
    if (reply[0] === 'gone') return 'matched';
    if (reply[0] === 'matched') {
      const [, id = '', node = '', since = '0', tags = ''] = reply;
      const partner: Ticket = { id, node, since: Number(since), interests: tags === '' ? [] : tags.split('\n') };
      const [first, second] = partner.since <= ticket.since ? [partner, ticket] : [ticket, partner];
      this.b.events?.match(
        first,
        second,
        first.interests.filter((t) => second.interests.includes(t)),
      );
      return 'matched';
    }
    if (reply[0] === 'full') return 'full';
    const retryAt = Number(reply[1]);
    if (retryAt >= 0) this.#retryAt(ticket, retryAt);
    return 'queued';
  }

  /** Something that kept the waiter unmatched ends then (its interest wait, a cool-down): look again. */
  #retryAt(ticket: Ticket, at: number): void {
    const timer = this.clock.schedule(Math.max(0, at - this.clock.now()), () => {
      this.#retries.delete(ticket.id);
      this.#find(ticket, 'retry').catch(() => {});
    });
    this.#retries.set(ticket.id, timer);
  }

  async cancel(id: string): Promise<void> {
    this.#retries.get(id)?.cancel();
    this.#retries.delete(id);
    this.#localTickets.delete(id);
    this.#local.remove(id);
    if (!this.b.up) {
      this.#cancels.add(id);
      return;
    }
    await this.b.run('relayCancel', id);
  }

  /** Sessions this instance remembers blocks or recent partners for (a leak check for tests). */
  get remembered(): number {
    return new Set([...this.#blocks.keys(), ...this.#recent.keys()]).size;
  }

  handOver(id: string): void {
    this.#retries.get(id)?.cancel();
    this.#retries.delete(id);
    // The session lives elsewhere now: its forget() will run there, never here.
    this.#blocks.delete(id);
    this.#recent.delete(id);
  }

  // The local copies are kept under `a` alone, this instance's own session (the local room checks both ways): an
  // entry under a partner on another instance would never be dropped here, since its forget() runs there.
  async block(a: string, c: string): Promise<void> {
    const set = this.#blocks.get(a) ?? new Set<string>();
    set.add(c);
    this.#blocks.set(a, set);
    await this.b.run('relayRemember', a, c, -1, this.config.resumeWindowMs, this.clock.now());
  }

  async rememberPair(a: string, c: string, until: number): Promise<void> {
    const now = this.clock.now();
    const map = this.#recent.get(a) ?? new Map<string, number>();
    for (const [id, t] of map) if (t <= now) map.delete(id);
    map.set(c, until);
    this.#recent.set(a, map);
    await this.b.run('relayRemember', a, c, until, this.config.resumeWindowMs, this.clock.now());
  }

  async forget(id: string): Promise<void> {
    this.#blocks.delete(id);
    this.#recent.delete(id);
    if (this.b.up) await this.b.run('relayForget', id);
  }

  /** Applies what waited for the broker: cancels. (The relay finds again for its waiters.) */
  busBack(): void {
    for (const id of this.#cancels) this.b.run('relayCancel', id).catch(() => {});
    this.#cancels.clear();
  }

  close(): void {
    for (const t of this.#retries.values()) t.cancel();
    this.#retries.clear();
  }
}

class RedisInvites implements InviteStore {
  constructor(
    private readonly b: RedisBroker,
    private readonly config: Config,
    private readonly clock: Clock,
  ) {}

  async create(): Promise<{ code: string; expiresAt: number } | null> {
    const now = this.clock.now();
    const expiresAt = now + this.config.inviteTtlMs;
    // Expired and used codes stay for another TTL, so late holders get a precise error.
    const keep = 2 * this.config.inviteTtlMs;
    for (;;) {
      const code = randomCode();
      const made = Number(await this.b.run('relayInviteCreate', code, expiresAt, now, this.config.maxInvites, keep));
      if (made === 1) return { code, expiresAt };
      if (made === 0) return null;
    }
  }

  async join(code: string, id: string, node: string): Promise<JoinOutcome> {
    const reply = (await this.b.run('relayInviteJoin', normalizeCode(code), id, node, this.clock.now())) as string[];
    switch (reply[0]) {
      case 'wait':
        return { kind: 'wait' };
      case 'pair':
        return { kind: 'pair', partner: reply[1] ?? '', partnerNode: reply[2] ?? '', waitedMs: Number(reply[3]) };
      case 'used':
        return { kind: 'error', code: 'invite_used' };
      case 'expired':
        return { kind: 'error', code: 'invite_expired' };
      default:
        return { kind: 'error', code: 'invite_unknown' };
    }
  }

  async release(code: string, id: string): Promise<void> {
    await this.b.run('relayInviteRelease', normalizeCode(code), id);
  }

  openCount(): number {
    return this.b.openInvites;
  }
}

class RedisReports implements ReportStore {
  constructor(
    private readonly b: RedisBroker,
    private readonly config: Config,
    private readonly clock: Clock,
  ) {}

  async report(reportedKeys: readonly string[], reporterKey: string): Promise<void> {
    const c = this.config;
    await this.b.run(
      'relayReport',
      reporterKey,
      this.clock.now(),
      c.reportWindowMs,
      c.reportThreshold,
      c.reportCooldownMs,
      ...reportedKeys,
    );
  }

  async cooldownLeft(keys: readonly string[]): Promise<number> {
    return Number(await this.b.run('relayCooldown', ...keys));
  }
}

class RedisDirectory implements Directory {
  readonly #prefix: string;

  constructor(
    private readonly b: RedisBroker,
    private readonly config: Config,
  ) {
    this.#prefix = `${config.redisPrefix}d:`;
  }

  /** One string: `node` or `node chat partner` (no address, no token). */
  async claim(id: string, entry: DirectoryEntry): Promise<void> {
    const value = entry.chat ? `${entry.node} ${entry.chat.id} ${entry.chat.partner}` : entry.node;
    await this.b.commands.set(this.#prefix + id, value, 'PX', this.config.resumeWindowMs);
  }

  async where(id: string): Promise<DirectoryEntry | null> {
    const value = await this.b.commands.get(this.#prefix + id);
    if (!value) return null;
    const [node = '', chat, partner] = value.split(' ');
    return chat && partner ? { node, chat: { id: chat, partner } } : { node };
  }

  async release(id: string): Promise<void> {
    await this.b.commands.del(this.#prefix + id);
  }

  /** The sessions live here still: their keys' TTLs start again (each TTL is the resume window). */
  async refresh(ids: readonly string[]): Promise<void> {
    const ttl = this.config.resumeWindowMs;
    for (let i = 0; i < ids.length; i += TOUCH_BATCH) {
      const batch = ids.slice(i, i + TOUCH_BATCH);
      await Promise.all([
        ...batch.map((id) => this.b.commands.pexpire(this.#prefix + id, ttl)),
        this.b.run('relayTouch', ttl, ...batch),
      ]);
    }
  }
}
