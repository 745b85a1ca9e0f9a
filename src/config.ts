/**
 * Every setting in one table: environment name, key, parser, default and the
 * sentence the README shows. `loadConfig` validates all of them, reports every
 * problem at once, then freezes the result.
 */
import { Buffer } from 'node:buffer';
import { existsSync, readFileSync } from 'node:fs';

type Parser<T> = (raw: string) => T;

interface Setting<T> {
  env: string;
  def: T;
  parse: Parser<T>;
  doc: string;
}

class ConfigValueError extends Error {}

const int =
  (min: number, max = Number.MAX_SAFE_INTEGER): Parser<number> =>
  (raw) => {
    if (!/^-?\d+$/.test(raw.trim())) throw new ConfigValueError(`expected an integer, got "${raw}"`);
    const n = Number(raw);
    if (!Number.isSafeInteger(n) || n < min || n > max)
      throw new ConfigValueError(`expected an integer from ${min} to ${max}, got ${raw}`);
    return n;
  };

const bool: Parser<boolean> = (raw) => {
  const v = raw.trim().toLowerCase();
  if (['1', 'true', 'yes', 'on'].includes(v)) return true;
  if (['0', 'false', 'no', 'off', ''].includes(v)) return false;
  throw new ConfigValueError(`expected true or false, got "${raw}"`);
};

const str: Parser<string> = (raw) => raw.trim();

const oneOf =
  <T extends string>(...values: T[]): Parser<T> =>
  (raw) => {
    const v = raw.trim() as T;
    if (!values.includes(v)) throw new ConfigValueError(`expected one of ${values.join(', ')}, got "${raw}"`);
    return v;
  };

const list: Parser<readonly string[]> = (raw) =>
  raw
    .split(',')
    .map((s) => s.trim())
    .filter((s) => s.length > 0);

/** Base64 (standard or URL-safe) of at least 32 bytes. The value is never echoed in an error: it is a secret. */
const secret: Parser<string> = (raw) => {
  const v = raw.trim();
  if (!/^[A-Za-z0-9+/_-]+={0,2}$/.test(v) || Buffer.from(v, 'base64').length < 32)
    throw new ConfigValueError('expected base64 of at least 32 random bytes (try: openssl rand -base64 32)');
  return v;
};

const instanceName: Parser<string> = (raw) => {
  const v = raw.trim();
  if (!/^[A-Za-z0-9._:-]{0,64}$/.test(v))
    throw new ConfigValueError(`expected up to 64 letters, digits, ".", "_", ":" or "-", got "${raw}"`);
  return v;
};

const setting = <T>(env: string, def: T, parse: Parser<T>, doc: string): Setting<T> => ({ env, def, parse, doc });

const MINUTE = 60_000;

/** The table. Order is the order the README lists them in. */
export const settings = {
  host: setting('HOST', '127.0.0.1', str, 'Address to listen on; `0.0.0.0` to accept connections from other machines.'),
  port: setting('PORT', 8080, int(0, 65535), 'TCP port; 0 picks a free one.'),
  tlsCertFile: setting(
    'TLS_CERT_FILE',
    '',
    str,
    'Serve HTTPS and wss:// directly with this certificate chain (PEM), for TLS from the proxy to the relay on a network you do not trust. Needs TLS_KEY_FILE. Empty: plain HTTP (the proxy terminates TLS).',
  ),
  tlsKeyFile: setting('TLS_KEY_FILE', '', str, "The private key (PEM) of TLS_CERT_FILE's certificate."),
  logLevel: setting(
    'LOG_LEVEL',
    'info' as const,
    oneOf('fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'),
    'pino log level.',
  ),
  helloTimeoutMs: setting(
    'HELLO_TIMEOUT_MS',
    10_000,
    int(100),
    'A socket that has not said hello by then is closed with 4408.',
  ),
  resumeWindowMs: setting(
    'RESUME_WINDOW_MS',
    120_000,
    int(100),
    'How long a dropped session, its chat and its undelivered messages wait for a resume.',
  ),
  idleTimeoutS: setting(
    'IDLE_TIMEOUT_S',
    60,
    int(0, 960),
    'Seconds without traffic before the server closes a socket (it pings first); 0 disables, else at least 8.',
  ),
  maxPayloadBytes: setting(
    'MAX_PAYLOAD_BYTES',
    65_536,
    int(512, 16 * 1024 * 1024),
    'Largest WebSocket frame accepted. uWebSockets.js drops the connection on a larger one before parsing it, without a close frame (clients see 1006).',
  ),
  maxMessageBytes: setting('MAX_MESSAGE_BYTES', 4096, int(1), 'Largest message body, in UTF-8 bytes.'),
  maxChunkBytes: setting(
    'MAX_CHUNK_BYTES',
    64_000,
    int(1024),
    'Largest body of a file chunk (a `msg` of kind `file`: base64url of an encrypted chunk), in bytes; lowered to fit MAX_PAYLOAD_BYTES (less 256) and FILE_RATE_BURST_BYTES.',
  ),
  maxFileBytes: setting(
    'MAX_FILE_BYTES',
    10 * 1024 * 1024,
    int(1),
    'Largest file one transfer may carry. The relay sees only ciphertext: both clients enforce it (announced in `welcome`).',
  ),
  fileRatePerSec: setting(
    'FILE_RATE_BYTES_PER_SEC',
    4 * 1024 * 1024,
    int(1024),
    'File-chunk bytes per second a session may send, apart from RATE_LIMIT_PER_SEC (a chunk costs at least 4 KiB).',
  ),
  fileRateBurst: setting(
    'FILE_RATE_BURST_BYTES',
    1024 * 1024,
    int(1024),
    'File-chunk bytes a session may send at once.',
  ),
  fileWindowChunks: setting(
    'FILE_WINDOW_CHUNKS',
    8,
    int(1, 1024),
    'File chunks a sender may have sent and not yet seen delivered (flow control); lowered so they fit half of the recipient buffer (BUFFER_SESSION_MAX_MESSAGES and BUFFER_SESSION_MAX_BYTES).',
  ),
  maxBackpressureBytes: setting(
    'MAX_BACKPRESSURE_BYTES',
    1024 * 1024,
    int(1024),
    'Bytes queued for a client that does not read; past this it is closed with 4413 (its messages stay buffered).',
  ),
  rateLimitPerSec: setting(
    'RATE_LIMIT_PER_SEC',
    20,
    int(1),
    'Frames per second a session may send (token bucket refill). Typing signals have their own budget, and an `ack` or `read` that moves its mark forward costs nothing.',
  ),
  rateLimitBurst: setting('RATE_LIMIT_BURST', 40, int(1), 'Token bucket size: frames a session may send at once.'),
  typingRatePerSec: setting(
    'TYPING_RATE_PER_SEC',
    2,
    int(1),
    'Typing signals per second a session may send, apart from RATE_LIMIT_PER_SEC; more are dropped silently.',
  ),
  typingRateBurst: setting('TYPING_RATE_BURST', 6, int(1), 'Typing signals a session may send at once.'),
  floodCloseAfter: setting(
    'FLOOD_CLOSE_AFTER',
    40,
    int(1),
    'Frames refused in a row for rate (typing signals included) before the socket is closed with 4429.',
  ),
  maxErrorsPerMinute: setting(
    'MAX_ERRORS_PER_MINUTE',
    30,
    int(1),
    'Protocol errors a socket may cause per minute before it is closed with 4422.',
  ),
  maxConnections: setting(
    'MAX_CONNECTIONS',
    100_000,
    int(1),
    'Open WebSockets in this process; more are refused with HTTP 503. Capped below the open-file limit (logged at start).',
  ),
  maxConnectionsPerAddress: setting(
    'MAX_CONNECTIONS_PER_ADDRESS',
    20,
    int(0),
    'Open WebSockets per client address; more are refused with HTTP 429. 0 disables the cap.',
  ),
  maxSessions: setting(
    'MAX_SESSIONS',
    200_000,
    int(1),
    'Live plus resumable sessions in this process. A new one past this evicts the oldest resumable session not in a chat; if there is none, its hello is closed with 4503.',
  ),
  maxSessionsPerAddress: setting(
    'MAX_SESSIONS_PER_ADDRESS',
    40,
    int(0),
    "Live plus resumable sessions per client address (IPv6: per /64). A new one past this evicts the address's oldest resumable session; if there is none, its hello is closed with 4430. 0 disables the cap.",
  ),
  unusedResumeWindowMs: setting(
    'UNUSED_RESUME_WINDOW_MS',
    10_000,
    int(0),
    'How long a dropped session that never looked for a partner (no find or join) waits for a resume (never longer than RESUME_WINDOW_MS).',
  ),
  trustProxy: setting(
    'TRUST_PROXY',
    false,
    bool,
    'Read the client address from CLIENT_ADDRESS_HEADER (set by your proxy) instead of the socket.',
  ),
  trustProxyHops: setting(
    'TRUST_PROXY_HOPS',
    1,
    int(1, 10),
    'With TRUST_PROXY: how many proxies in front of the relay append to CLIENT_ADDRESS_HEADER (nginx alone: 1; a CDN, then nginx: 2). The entry that many from the right is the client.',
  ),
  clientAddressHeader: setting(
    'CLIENT_ADDRESS_HEADER',
    'x-forwarded-for',
    (raw) => str(raw).toLowerCase(),
    'Header holding the client address when TRUST_PROXY is on (see TRUST_PROXY_HOPS for which entry).',
  ),
  allowedOrigins: setting(
    'ALLOWED_ORIGINS',
    [] as readonly string[],
    list,
    'Comma-separated Origins allowed to open sockets and create invites; empty allows any. Requests without Origin (non-browser clients) are allowed.',
  ),
  maxQueueLength: setting(
    'MAX_QUEUE_LENGTH',
    10_000,
    int(2),
    'Sessions waiting for a random partner; more get `queue_full`.',
  ),
  matchInterestWaitMs: setting(
    'MATCH_INTEREST_WAIT_MS',
    5000,
    int(0),
    'How long a `find` with interests waits for a shared-interest partner before taking anyone.',
  ),
  rematchCooldownMs: setting(
    'REMATCH_COOLDOWN_MS',
    30_000,
    int(0),
    'Two people who just chatted are not paired again at random for this long.',
  ),
  reportThreshold: setting(
    'REPORT_THRESHOLD',
    3,
    int(1),
    'Distinct reporters within REPORT_WINDOW_MS that put a session (and its address) on cool-down.',
  ),
  reportWindowMs: setting('REPORT_WINDOW_MS', 60 * MINUTE, int(1000), 'How long a report counts.'),
  reportCooldownMs: setting('REPORT_COOLDOWN_MS', 15 * MINUTE, int(0), 'How long a reported session cannot `find`.'),
  inviteTtlMs: setting('INVITE_TTL_MS', 10 * MINUTE, int(1000), 'How long an invite code can be joined.'),
  maxInvites: setting('MAX_INVITES', 100_000, int(1), 'Open invite codes in this process; more get HTTP 503.'),
  invitesPerMinute: setting(
    'INVITES_PER_MINUTE',
    10,
    int(1),
    'Invites one client address may create per minute (HTTP 429 past it).',
  ),
  bufferSessionMaxMessages: setting(
    'BUFFER_SESSION_MAX_MESSAGES',
    500,
    int(1),
    'Unacknowledged messages kept for one recipient; past it the oldest is dropped and reported as a gap.',
  ),
  bufferSessionMaxBytes: setting(
    'BUFFER_SESSION_MAX_BYTES',
    4 * 1024 * 1024,
    int(1024),
    'Unacknowledged bytes kept for one recipient; past it the oldest is dropped and reported as a gap.',
  ),
  bufferMaxMessages: setting('BUFFER_MAX_MESSAGES', 2_000_000, int(1), 'Buffered messages in the whole process.'),
  bufferMaxBytes: setting(
    'BUFFER_MAX_BYTES',
    512 * 1024 * 1024,
    int(1024),
    'Buffered bytes in the whole process; past it the globally oldest message is dropped (a gap for its recipient).',
  ),
  dedupeWindow: setting(
    'DEDUPE_WINDOW',
    1024,
    int(1),
    'Recent client message ids remembered per chat direction, so retries are acknowledged, not relayed twice.',
  ),
  redisUrl: setting(
    'REDIS_URL',
    '',
    str,
    'Redis through which several instances form one relay (`redis://` or `rediss://`; a password goes in the URL). Empty: this process is the whole relay, in memory. Needs CLUSTER_SECRET.',
  ),
  redisClusterNodes: setting(
    'REDIS_CLUSTER_NODES',
    [] as readonly string[],
    list,
    'Instead of REDIS_URL: seed nodes of a Redis Cluster, `host:port,host:port,...`. Needs CLUSTER_SECRET.',
  ),
  clusterSecret: setting(
    'CLUSTER_SECRET',
    '',
    secret,
    'With Redis: the secret every instance shares (base64 of at least 32 random bytes: `openssl rand -base64 32`), from which the resume-token and address-digest keys derive, so any instance can resume any session.',
  ),
  instanceId: setting(
    'INSTANCE_ID',
    '',
    instanceName,
    'Names this instance in logs and metrics (letters, digits, `.`, `_`, `-`; up to 64). Empty: a random name at each start.',
  ),
  redisPrefix: setting(
    'REDIS_PREFIX',
    'relay:',
    instanceName,
    'Prefix of every Redis key and channel, so several relays can share one Redis.',
  ),
  redisCommandTimeoutMs: setting(
    'REDIS_COMMAND_TIMEOUT_MS',
    3000,
    int(100),
    'With Redis: how long a command (a find, a lookup) waits for its reply before the client is told `unavailable`; an overloaded instance reads replies late. Heartbeats wait 1 s.',
  ),
  drainGraceMs: setting(
    'DRAIN_GRACE_MS',
    5000,
    int(0),
    'On SIGTERM/SIGINT: time between `draining` and closing sockets with 1001.',
  ),
  shutdownTimeoutMs: setting(
    'SHUTDOWN_TIMEOUT_MS',
    15_000,
    int(100),
    'Watchdog: the process exits 1 if shutdown takes longer than this.',
  ),
} as const;

type Settings = typeof settings;
export type Config = { readonly [K in keyof Settings]: Settings[K]['def'] };

/** How a default is shown in the README: strings in backticks, empty lists as "(empty)". */
function shownDefault(def: unknown): string {
  if (typeof def === 'string') return `\`${def}\``;
  if (Array.isArray(def)) return def.length === 0 ? '(empty)' : `\`${def.join(',')}\``;
  return String(def);
}

/** The README's configuration table, one [variable, default, meaning] row per setting (scripts/config-table.mjs). */
export function configTableRows(): [string, string, string][] {
  return Object.values(settings).map((s: Setting<unknown>) => [`\`${s.env}\``, shownDefault(s.def), s.doc]);
}

export class ConfigError extends Error {
  constructor(readonly problems: readonly string[]) {
    super(`invalid configuration:\n  ${problems.join('\n  ')}`);
    this.name = 'ConfigError';
  }
}

/** Reads every setting from `env`, checks them together, returns a frozen Config or throws ConfigError. */
export function loadConfig(env: Record<string, string | undefined>, overrides: Partial<Config> = {}): Config {
  const problems: string[] = [];
  const out: Record<string, unknown> = {};
  for (const [key, s] of Object.entries(settings) as [keyof Config, Setting<unknown>][]) {
    let raw = env[s.env];
    // `<NAME>_FILE`: the value is that file's contents (Docker's convention for secrets). The path may be
    // shown in an error; the contents never are.
    const file = env[`${s.env}_FILE`];
    if (file !== undefined && file !== '') {
      if (raw !== undefined && raw !== '') {
        problems.push(`${s.env} and ${s.env}_FILE: set one, not both`);
        continue;
      }
      try {
        raw = readFileSync(file, 'utf8').replace(/\r?\n$/, '');
      } catch (err) {
        problems.push(`${s.env}_FILE: cannot read ${file} (${(err as NodeJS.ErrnoException).code ?? 'error'})`);
        continue;
      }
    }
    if (key in overrides) {
      out[key] = overrides[key];
    } else if (raw === undefined || raw === '') {
      out[key] = s.def;
    } else {
      try {
        out[key] = s.parse(raw);
      } catch (err) {
        if (!(err instanceof ConfigValueError)) throw err;
        problems.push(`${s.env}: ${err.message}`);
      }
    }
  }
  if (problems.length === 0) problems.push(...crossChecks(out as Config));
  if (problems.length > 0) throw new ConfigError(problems);
  fitFileLimits(out as { -readonly [K in keyof Config]: Config[K] });
  return Object.freeze(out as Config);
}

/**
 * The file limits are upper bounds, lowered to fit the others so a transfer always works: a chunk fits one frame
 * (with its JSON) and the byte burst; the window fits half of the recipient's buffer lane, in messages and bytes, so
 * a transfer never pushes text (or itself) out of it. A configuration tuned before files existed (a 16 KiB frame
 * limit, a small lane) keeps starting, with smaller chunks or a smaller window.
 */
function fitFileLimits(c: { -readonly [K in keyof Config]: Config[K] }): void {
  c.maxChunkBytes = Math.max(1, Math.min(c.maxChunkBytes, c.maxPayloadBytes - 256, c.fileRateBurst));
  const byBytes = Math.floor(c.bufferSessionMaxBytes / 2 / (c.maxChunkBytes + 256));
  const byCount = Math.floor(c.bufferSessionMaxMessages / 2);
  c.fileWindowChunks = Math.max(1, Math.min(c.fileWindowChunks, byBytes, byCount));
}

function crossChecks(c: Config): string[] {
  const problems: string[] = [];
  if (c.idleTimeoutS !== 0 && c.idleTimeoutS < 8) problems.push('IDLE_TIMEOUT_S: must be 0 or at least 8');
  // A msg frame carries the body plus its JSON envelope; leave room for it.
  if (c.maxPayloadBytes < c.maxMessageBytes + 256)
    problems.push('MAX_PAYLOAD_BYTES: must be at least MAX_MESSAGE_BYTES + 256');
  if (c.rateLimitBurst < 1) problems.push('RATE_LIMIT_BURST: must be at least 1');
  if (c.bufferSessionMaxMessages > c.bufferMaxMessages)
    problems.push('BUFFER_SESSION_MAX_MESSAGES: must not exceed BUFFER_MAX_MESSAGES');
  if (c.bufferSessionMaxBytes > c.bufferMaxBytes)
    problems.push('BUFFER_SESSION_MAX_BYTES: must not exceed BUFFER_MAX_BYTES');
  if (c.bufferSessionMaxBytes < c.maxMessageBytes + 256)
    problems.push('BUFFER_SESSION_MAX_BYTES: must hold at least one message of MAX_MESSAGE_BYTES');
  if ((c.tlsCertFile === '') !== (c.tlsKeyFile === ''))
    problems.push('TLS_CERT_FILE and TLS_KEY_FILE: set both or neither');
  for (const [name, file] of [
    ['TLS_CERT_FILE', c.tlsCertFile],
    ['TLS_KEY_FILE', c.tlsKeyFile],
  ] as const)
    if (file !== '' && !existsSync(file)) problems.push(`${name}: no such file: ${file}`);
  const redis = c.redisUrl !== '' || c.redisClusterNodes.length > 0;
  if (c.redisUrl !== '' && c.redisClusterNodes.length > 0)
    problems.push('REDIS_URL and REDIS_CLUSTER_NODES: set one, not both');
  if (c.redisUrl !== '' && !/^rediss?:\/\//.test(c.redisUrl))
    problems.push('REDIS_URL: expected redis://host:port or rediss://host:port');
  for (const node of c.redisClusterNodes)
    if (!/^[^:\s]+:\d{1,5}$/.test(node)) problems.push(`REDIS_CLUSTER_NODES: expected host:port, got "${node}"`);
  if (redis && c.clusterSecret === '')
    problems.push('CLUSTER_SECRET: required with Redis, so every instance can check every resume token');
  return problems;
}

/** Whether this configuration runs as one of several instances over Redis. */
export const usesRedis = (c: Config): boolean => c.redisUrl !== '' || c.redisClusterNodes.length > 0;
