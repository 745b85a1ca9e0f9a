/**
 * The figures ops dashboards read, in Prometheus format (the only prom-client
 * import). Gauges are read from the relay when scraped, so the hot path only
 * increments counters.
 */
import { Counter, collectDefaultMetrics, Gauge, Histogram, Registry } from 'prom-client';

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

  constructor(stats: () => RelayStats) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry, prefix: 'relay_' });
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
  }

  render(): Promise<string> {
    return this.registry.metrics();
  }

  get contentType(): string {
    return this.registry.contentType;
  }
}
