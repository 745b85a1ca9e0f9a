/**
 * The figures ops dashboards read, in Prometheus format (the only prom-client
 * import). Gauges are read from the relay when scraped, so the hot path only
 * increments counters. Every labelled counter starts at 0 for each of its known
 * labels, so a `rate()` alert has a series to read before the first event.
 * Process and Node.js metrics keep prom-client's standard names
 * (`process_resident_memory_bytes`, `nodejs_eventloop_lag_seconds`…) so stock
 * dashboards work.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';
import type { Broker } from './broker.js';
import type { BuildInfo } from './build-info.js';
import { CloseCodes, ErrorCodes } from './errors.js';

/** The label values each labelled counter starts with. */
export const KNOWN_LABELS = {
  errorCodes: Object.keys(ErrorCodes),
  closeCodes: Object.values(CloseCodes).map(String),
  dropReasons: ['lane_bound', 'global_bound', 'expired'],
  via: ['random', 'invite'],
  helloOutcomes: ['new', 'resumed', 'resume_rejected', 'refused'],
  sessionEnds: ['left', 'expired', 'evicted'],
} as const;

export interface RelayStats {
  connections: number;
  sessions: number;
  queueLength: number;
  activeChats: number;
  bufferMessages: number;
  bufferBytes: number;
  openInvites: number;
}

export class RelayMetrics {
  readonly registry = new Registry();
  readonly messagesRelayed: Counter;
  readonly bufferedDelivery: Histogram;
  readonly errors: Counter<'code'>;
  readonly closes: Counter<'code'>;
  readonly bufferDrops: Counter<'reason'>;
  readonly matches: Counter<'via'>;
  readonly hellos: Counter<'outcome'>;
  readonly sessionsEnded: Counter<'reason'>;
  readonly invitesCreated: Counter;
  readonly upgradesRefused: Counter<'reason'>;
  readonly matchWait: Histogram<'via'>;
  readonly reports: Counter;
  readonly blocks: Counter;
  readonly crossDelivery: Histogram;

  constructor(
    stats: () => RelayStats,
    build: BuildInfo,
    upgradeRefusals: readonly string[],
    broker: Pick<Broker, 'nodeId' | 'clustered' | 'up' | 'stats'>,
  ) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const info = new Gauge({
      name: 'relay_build_info',
      help: 'Always 1; the labels say what this process runs: the relay version, Node.js and the uWebSockets.js package.',
      labelNames: ['version', 'node', 'uws', 'instance'],
      registers,
    });
    info.set({ version: build.version, node: build.node, uws: build.uws, instance: broker.nodeId }, 1);
    const gauge = (name: string, help: string, read: (s: RelayStats) => number): void => {
      new Gauge({
        name,
        help,
        registers,
        collect() {
          this.set(read(stats()));
        },
      });
    };
    gauge('relay_connections', 'Open WebSocket connections.', (s) => s.connections);
    gauge('relay_sessions', 'Sessions, connected or waiting for a resume.', (s) => s.sessions);
    gauge('relay_queue_length', 'Sessions waiting for a random partner.', (s) => s.queueLength);
    gauge('relay_active_chats', 'Chats in progress.', (s) => s.activeChats);
    gauge('relay_buffer_messages', 'Undelivered or unacknowledged messages held in memory.', (s) => s.bufferMessages);
    gauge('relay_buffer_bytes', 'Bytes of buffered messages held in memory.', (s) => s.bufferBytes);
    gauge('relay_open_invites', 'Invite codes that can still be joined.', (s) => s.openInvites);

    this.messagesRelayed = new Counter({
      name: 'relay_messages_relayed_total',
      help: 'Chat messages accepted and relayed.',
      registers,
    });
    // Live sends are written in the same event-loop turn they arrive in, so only resumes are worth timing.
    this.bufferedDelivery = new Histogram({
      name: 'relay_buffered_delivery_seconds',
      help: 'How long a message waited in the buffer before a resume delivered it.',
      buckets: [0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300],
      registers,
    });
    this.errors = new Counter({
      name: 'relay_errors_total',
      help: 'Error frames sent to clients, by code.',
      labelNames: ['code'],
      registers,
    });
    this.closes = new Counter({
      name: 'relay_closes_total',
      help: 'Sockets closed by the server, by close code.',
      labelNames: ['code'],
      registers,
    });
    this.bufferDrops = new Counter({
      name: 'relay_buffer_dropped_total',
      help: 'Buffered messages dropped before acknowledgement, by reason (each is a gap for its recipient).',
      labelNames: ['reason'],
      registers,
    });
    this.matches = new Counter({
      name: 'relay_matches_total',
      help: 'Chats started, by how they were paired.',
      labelNames: ['via'],
      registers,
    });
    this.hellos = new Counter({
      name: 'relay_hellos_total',
      help: 'Hellos answered, by outcome (new, resumed, resume_rejected, refused).',
      labelNames: ['outcome'],
      registers,
    });
    this.sessionsEnded = new Counter({
      name: 'relay_sessions_ended_total',
      help: 'Sessions ended, by reason (left: closed on purpose; expired: resume window passed; evicted: made room for a newcomer).',
      labelNames: ['reason'],
      registers,
    });
    this.invitesCreated = new Counter({
      name: 'relay_invites_created_total',
      help: 'Invite codes created.',
      registers,
    });
    this.upgradesRefused = new Counter({
      name: 'relay_upgrades_refused_total',
      help: 'WebSocket upgrades refused, by reason.',
      labelNames: ['reason'],
      registers,
    });
    this.matchWait = new Histogram({
      name: 'relay_match_wait_seconds',
      help: 'How long each person paired waited for a partner (find or join until matched), by how they were paired.',
      labelNames: ['via'],
      buckets: [0.1, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600],
      registers,
    });
    this.reports = new Counter({ name: 'relay_reports_total', help: 'Reports sent (each ends a chat).', registers });
    this.blocks = new Counter({ name: 'relay_blocks_total', help: 'Blocks sent (each ends a chat).', registers });

    this.crossDelivery = new Histogram({
      name: 'relay_cross_instance_delivery_seconds',
      help: "From a message's arrival on the sender's instance to its arrival on the recipient's (cross-instance messages only).",
      buckets: [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1],
      registers,
    });
    gauge('relay_broker_up', '1 while the broker (Redis) and the bus between instances work; 1 alone.', () =>
      broker.up ? 1 : 0,
    );
    gauge(
      'relay_broker_live_instances',
      'Instances this one sees alive, itself included.',
      () => broker.stats().liveNodes,
    );
    // Kept by the broker as plain numbers (its hot path never touches prom-client), read when scraped.
    const fromBroker = (name: string, help: string, read: (s: ReturnType<Broker['stats']>) => number): void => {
      new Counter({
        name,
        help,
        registers,
        collect() {
          this.reset();
          this.inc(read(broker.stats()));
        },
      });
    };
    fromBroker('relay_broker_publishes_total', 'Envelopes this instance handed to the bus.', (s) => s.publishes);
    fromBroker('relay_broker_receives_total', 'Envelopes this instance received from the bus.', (s) => s.receives);
    fromBroker('relay_broker_errors_total', 'Broker (Redis) commands that failed.', (s) => s.errors);
    fromBroker(
      'relay_broker_reconnects_total',
      'Times the broker connection came back after being down.',
      (s) => s.reconnects,
    );

    const start = <L extends string>(counter: Counter<L>, label: L, values: readonly string[]) => {
      for (const value of values) counter.inc({ [label]: value } as Record<L, string>, 0);
    };
    start(this.errors, 'code', KNOWN_LABELS.errorCodes);
    start(this.closes, 'code', KNOWN_LABELS.closeCodes);
    start(this.bufferDrops, 'reason', KNOWN_LABELS.dropReasons);
    start(this.matches, 'via', KNOWN_LABELS.via);
    start(this.hellos, 'outcome', KNOWN_LABELS.helloOutcomes);
    start(this.sessionsEnded, 'reason', KNOWN_LABELS.sessionEnds);
    start(this.upgradesRefused, 'reason', upgradeRefusals);
    for (const via of KNOWN_LABELS.via) this.matchWait.zero({ via });
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
