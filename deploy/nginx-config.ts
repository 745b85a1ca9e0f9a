/**
 * Renders nginx/nginx.conf.template, the gateway's one configuration, for the
 * two places it runs: docker compose (`composeGateway`, rendered into
 * nginx/compose/nginx.conf and committed) and loopback (`localGateway`, for
 * `npm run cluster` and the tests). Also the filter that keeps client
 * addresses and query strings out of nginx's error log.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { fileURLToPath } from 'node:url';

/** The repository's root, from src or from dist. */
export const ROOT = fileURLToPath(new URL(import.meta.url.includes('/dist/') ? '../../' : '../', import.meta.url));
export const TEMPLATE = join(ROOT, 'nginx', 'nginx.conf.template');
export const COMPOSE_CONFIG = join(ROOT, 'nginx', 'compose', 'nginx.conf');
/** RFC 7919's ffdhe2048 group (Mozilla's recommendation for the DHE suites), a public constant. */
export const DHPARAM = join(ROOT, 'nginx', 'ffdhe2048.pem');

export interface GatewayLimits {
  /** Open WebSockets per client address (the relay's MAX_CONNECTIONS_PER_ADDRESS, enforced first at the edge). */
  wsConnectionsPerAddress: number;
  /** WebSocket upgrades per second per address, and the burst above it. */
  upgradesPerSecond: number;
  upgradesBurst: number;
  /** `/api/` requests per second per address, the burst, and concurrent ones. */
  apiPerSecond: number;
  apiBurst: number;
  apiConnectionsPerAddress: number;
}

export interface GatewayOptions {
  /** `host:port` of each relay instance. */
  relays: string[];
  /** What `listen` gets: a port, or `address:port`. */
  httpsListen: string;
  httpListen: string;
  /** Also listen on IPv6 (`[::]`) with the same ports. */
  ipv6: boolean;
  /** The public HTTPS port, for the redirect (443 needs no suffix). */
  httpsPort: number;
  serverName: string;
  certificate: string;
  certificateKey: string;
  dhparam: string;
  /** A DNS resolver for OCSP stapling (`resolver` directive), or none. */
  resolver: string | null;
  pidFile: string;
  errorLog: string;
  accessLog: string;
  /** A directory for nginx's temp files (when not run from its packaged paths), or none. */
  tempDir: string | null;
  /** The `user` of worker processes (as root), or none for nginx's default. */
  user: string | null;
  workerProcesses: number | 'auto';
  workerConnections: number;
  workerRlimitNofile: number;
  workerShutdownTimeout: string;
  zoneSize: string;
  limits: GatewayLimits;
  /** TLS from nginx to the relays: the CA that signed their certificates, or null for plain HTTP on the private network. */
  relayTls: { trustedCertificate: string; serverName: string } | null;
}

export const DEFAULT_LIMITS: GatewayLimits = {
  wsConnectionsPerAddress: 20,
  upgradesPerSecond: 10,
  upgradesBurst: 40,
  apiPerSecond: 5,
  apiBurst: 20,
  apiConnectionsPerAddress: 10,
};

/**
 * docker compose: nginx in its own container, relays `relay1..N:8080` on the private network, certificates in
 * /etc/nginx/certs (generated on first start or mounted), logs to the container's stdout and stderr.
 */
export function composeGateway(relays = 3): GatewayOptions {
  return {
    relays: Array.from({ length: relays }, (_, i) => `relay${i + 1}:8080`),
    httpsListen: '443',
    httpListen: '80',
    ipv6: false,
    httpsPort: 443,
    serverName: '_',
    certificate: '/etc/nginx/certs/fullchain.pem',
    certificateKey: '/etc/nginx/certs/privkey.pem',
    dhparam: '/etc/nginx/relay/ffdhe2048.pem',
    // Docker's embedded DNS, for OCSP responders.
    resolver: '127.0.0.11',
    pidFile: '/run/nginx.pid',
    errorLog: 'stderr',
    accessLog: '/dev/stdout',
    tempDir: null,
    // nginx's built-in default (nobody in Debian's build, nginx in the official image): workers read no file.
    user: null,
    workerProcesses: 'auto',
    // 2 workers (a 2-core host) x 65,536 = 131,072 connections: 60,000 WebSockets are 120,000 of them.
    workerConnections: 65_536,
    workerRlimitNofile: 131_072,
    workerShutdownTimeout: '30s',
    zoneSize: '10m',
    limits: DEFAULT_LIMITS,
    relayTls: null,
  };
}

export interface LocalGatewayInput {
  relays: string[];
  dir: string;
  certificate: string;
  certificateKey: string;
  httpsPort?: number;
  httpPort?: number;
  /** Address nginx listens on (default 127.0.0.1). */
  host?: string;
  limits?: Partial<GatewayLimits>;
  /** Worker processes; with the per-process file limit, they decide how many WebSockets nginx can hold. */
  workerProcesses?: number;
  /** Files one process may hold on this machine (`ulimit -Hn`). */
  fileLimit?: number;
  relayTls?: GatewayOptions['relayTls'];
  workerShutdownTimeout?: string;
  /** Where the access log goes (a file or FIFO path); default off. */
  accessLog?: string;
}

/** Loopback: nginx from the distribution run by `npm run cluster` or a test, everything under `dir`. */
export function localGateway(input: LocalGatewayInput): GatewayOptions {
  const host = input.host ?? '127.0.0.1';
  const httpsPort = input.httpsPort ?? 8443;
  const files = input.fileLimit ?? 20_000;
  return {
    relays: input.relays,
    httpsListen: `${host}:${httpsPort}`,
    httpListen: `${host}:${input.httpPort ?? 8081}`,
    ipv6: false,
    httpsPort,
    serverName: '_',
    certificate: input.certificate,
    certificateKey: input.certificateKey,
    dhparam: DHPARAM,
    resolver: null,
    pidFile: join(input.dir, 'nginx.pid'),
    errorLog: 'stderr',
    accessLog: input.accessLog ?? 'off',
    tempDir: input.dir,
    user: null,
    workerProcesses: input.workerProcesses ?? 2,
    // Each worker within the machine's per-process file limit, with room for its listeners and logs.
    workerConnections: files - 100,
    workerRlimitNofile: files,
    workerShutdownTimeout: input.workerShutdownTimeout ?? '30s',
    zoneSize: '10m',
    limits: { ...DEFAULT_LIMITS, ...input.limits },
    relayTls: input.relayTls ?? null,
  };
}

/** The configuration text for `o`; throws if the template has a placeholder this does not fill. */
export function renderGateway(o: GatewayOptions, template = readFileSync(TEMPLATE, 'utf8')): string {
  // max_fails=0: never take an instance out of rotation. With WebSockets nginx lets a failed instance back only
  // when a request sent there afterwards completes (a socket's whole life), so after a restart it stayed out and
  // its share of clients found "no live upstreams" (the gateway bench's rolling restart lost 34,891 messages with
  // max_fails=1 and none with 0). A dead instance costs a refused connect and a retry on the next (proxy_next_upstream).
  const servers = o.relays.map((r) => `        server ${r} max_fails=0;`).join('\n');
  const tempPaths = o.tempDir
    ? ['client_body', 'proxy', 'fastcgi', 'uwsgi', 'scgi']
        .map((k) => `${k}_temp_path ${join(o.tempDir as string, k)};`)
        .join('\n    ')
    : "# temp files: nginx's packaged paths";
  const upstreamTls = o.relayTls
    ? [
        `proxy_ssl_trusted_certificate ${o.relayTls.trustedCertificate};`,
        'proxy_ssl_verify on;',
        `proxy_ssl_name ${o.relayTls.serverName};`,
        'proxy_ssl_server_name on;',
        'proxy_ssl_protocols TLSv1.2 TLSv1.3;',
      ].join('\n            ')
    : '# to the relays: plain HTTP on the private network';
  const values: Record<string, string> = {
    userLine: o.user
      ? `user ${o.user};`
      : "# user: nginx's built-in default for workers when started as root (nobody; nginx in the official image)",
    workerProcesses: String(o.workerProcesses),
    workerRlimitNofile: String(o.workerRlimitNofile),
    workerShutdownTimeout: o.workerShutdownTimeout,
    pidFile: o.pidFile,
    errorLog: o.errorLog,
    workerConnections: String(o.workerConnections),
    tempPaths,
    accessLog: o.accessLog === 'off' ? 'off' : `${o.accessLog} relay`,
    zoneSize: o.zoneSize,
    upgradesPerSecond: String(o.limits.upgradesPerSecond),
    apiPerSecond: String(o.limits.apiPerSecond),
    wsServers: servers,
    httpServers: servers,
    httpListen: o.httpListen,
    httpListenV6: o.ipv6 ? `listen [::]:${o.httpListen.split(':').pop()};` : '# IPv6: off',
    serverName: o.serverName,
    httpsPortSuffix: o.httpsPort === 443 ? '' : `:${o.httpsPort}`,
    httpsListen: o.httpsListen,
    httpsListenV6: o.ipv6 ? `listen [::]:${o.httpsListen.split(':').pop()} ssl reuseport;` : '# IPv6: off',
    certificate: o.certificate,
    certificateKey: o.certificateKey,
    dhparam: o.dhparam,
    resolverLine: o.resolver ? `resolver ${o.resolver} valid=300s ipv6=off;` : '# resolver: none (no OCSP fetches)',
    wsConnectionsPerAddress: String(o.limits.wsConnectionsPerAddress),
    upgradesBurst: String(o.limits.upgradesBurst),
    apiConnectionsPerAddress: String(o.limits.apiConnectionsPerAddress),
    apiBurst: String(o.limits.apiBurst),
    upstreamScheme: o.relayTls ? 'https' : 'http',
    upstreamTls,
  };
  const out = template.replace(/\{\{(\w+)\}\}/g, (whole, name: string) => {
    const v = values[name];
    if (v === undefined) throw new Error(`nginx template: no value for ${whole}`);
    return v;
  });
  return out;
}

/**
 * nginx writes the client's address (`client: 1.2.3.4`), the request line and the upstream URL with their query
 * strings (the routing key) and the referrer into its error lines. This keeps each line's time, level, reason and
 * the relay instance's address, and drops those. nginx/compose/redact-errors.sed holds the same rules for the
 * container; a test runs both on the same lines.
 */
export function redactErrorLine(line: string): string {
  return line
    .replace(/client: [^,]*/g, 'client: -')
    .replace(/request: "([A-Z]+) ([^ ?"]*)\?[^ "]*/g, 'request: "$1 $2')
    .replace(/upstream: "([^?"]*)\?[^"]*"/g, 'upstream: "$1"')
    .replace(/referrer: "[^"]*"/g, 'referrer: -');
}
