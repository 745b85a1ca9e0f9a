/**
 * The deployment files, read as Docker Compose, Prometheus and Grafana would read them (none of which can run
 * here): docker-compose.yml's exposure, networks, Redis flags, health checks and stop grace periods;
 * Prometheus's targets against the relay services; and the Grafana dashboard's queries against the metrics a
 * real relay (a memory cluster of three, started here) serves on /metrics.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join, posix } from 'node:path';
import { fileURLToPath } from 'node:url';
import t from 'tap';
import { parse } from 'yaml';
import { loadConfig } from '../src/config.js';
import { startTestCluster } from './fixtures/cluster.js';

const ROOT = fileURLToPath(new URL('../../', import.meta.url));
const read = (path: string) => readFileSync(join(ROOT, path), 'utf8');

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => typeof v === 'object' && v !== null && !Array.isArray(v);
const obj = (v: unknown, what: string): Obj => {
  if (!isObj(v)) throw new Error(`${what}: expected a mapping, got ${JSON.stringify(v)}`);
  return v;
};
const list = (v: unknown, what: string): unknown[] => {
  if (v === undefined || v === null) return [];
  if (!Array.isArray(v)) throw new Error(`${what}: expected a list, got ${JSON.stringify(v)}`);
  return v;
};
const str = (v: unknown, what: string): string => {
  if (typeof v === 'string') return v;
  if (typeof v === 'number') return String(v);
  throw new Error(`${what}: expected a string, got ${JSON.stringify(v)}`);
};

/**
 * Compose's interpolation as in a fresh checkout with no .env and nothing exported: `${VAR:-default}` and
 * `${VAR-default}` give the default, `${VAR}` and `$VAR` give "", `$$` is a literal `$`.
 */
function interpolate(s: string): string {
  return s.replace(/\$\$|\$\{([A-Za-z_]\w*)(?::?-([^}]*))?\}|\$([A-Za-z_]\w*)/g, (m, _braced, def: unknown) =>
    m === '$$' ? '$' : typeof def === 'string' ? def : '',
  );
}

/** A Go duration as Compose reads `stop_grace_period` ("20s", "1m30s", "1.5s", "500ms"), in milliseconds. */
function goDurationMs(s: string): number {
  const units: Record<string, number> = { ns: 1e-6, us: 1e-3, µs: 1e-3, ms: 1, s: 1000, m: 60_000, h: 3_600_000 };
  if (!/^(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+$/.test(s)) throw new Error(`"${s}" is not a duration such as 20s or 1m30s`);
  let ms = 0;
  for (const [, n, , unit] of s.matchAll(/(\d+(\.\d+)?)(ns|us|µs|ms|s|m|h)/g))
    ms += Number(n) * (units[unit ?? ''] ?? 0);
  return ms;
}

/** An nginx time ("30s", "1m30s", "500ms", "30" = seconds), in milliseconds. */
function nginxTimeMs(s: string): number {
  const units: Record<string, number> = {
    ms: 1,
    s: 1000,
    m: 60_000,
    h: 3_600_000,
    d: 86_400_000,
    w: 604_800_000,
    M: 2_592_000_000,
    y: 31_536_000_000,
  };
  if (/^\d+$/.test(s)) return Number(s) * 1000;
  if (!/^(\d+(ms|s|m|h|d|w|M|y))+$/.test(s)) throw new Error(`"${s}" is not an nginx time such as 30s`);
  let ms = 0;
  for (const [, n, unit] of s.matchAll(/(\d+)(ms|s|m|h|d|w|M|y)/g)) ms += Number(n) * (units[unit ?? ''] ?? 0);
  return ms;
}

/** The host address a published port binds, or null for every interface (Compose's short and long syntax). */
function publishedHostIp(port: unknown): string | null {
  if (isObj(port)) return typeof port.host_ip === 'string' && port.host_ip !== '' ? port.host_ip : null;
  const spec = interpolate(str(port, 'port')).replace(/\/(tcp|udp|sctp)$/, '');
  const v6 = /^\[([^\]]+)\]:/.exec(spec);
  if (v6) return v6[1] ?? null;
  const parts = spec.split(':');
  return parts.length === 3 ? (parts[0] ?? null) : null;
}

// ---------------------------------------------------------------------------------------------------------------
// docker-compose.yml

const compose = obj(parse(read('docker-compose.yml'), { merge: true }), 'docker-compose.yml');
const services = obj(compose.services, 'services');
const service = (name: string): Obj => obj(services[name], `services.${name}`);
const networksOf = (s: Obj, name: string): string[] => {
  const n = s.networks;
  if (n === undefined) return ['default'];
  return Array.isArray(n) ? n.map((x) => str(x, `services.${name}.networks`)) : Object.keys(obj(n, name));
};
const envOf = (s: Obj, name: string): Record<string, string> => {
  const env = s.environment;
  if (env === undefined) return {};
  if (Array.isArray(env))
    return Object.fromEntries(
      env.map((e) => {
        const [k, ...v] = str(e, `services.${name}.environment`).split('=');
        return [k ?? '', interpolate(v.join('='))];
      }),
    );
  return Object.fromEntries(
    Object.entries(obj(env, `services.${name}.environment`)).map(([k, v]) => [
      k,
      v === null ? '' : interpolate(str(v, `services.${name}.environment.${k}`)),
    ]),
  );
};
/** A service's command line as one string (entrypoint then command), interpolated. */
const commandLine = (s: Obj): string =>
  [s.entrypoint, s.command]
    .flatMap((part) => (part === undefined || part === null ? [] : Array.isArray(part) ? part : [part]))
    .map((p) => interpolate(String(p)))
    .join(' ');
/** `volumes` entries in short syntax, as [source, target] (read-only flags dropped). */
const mounts = (s: Obj, name: string): [string, string][] =>
  list(s.volumes, `services.${name}.volumes`).map((v) => {
    if (isObj(v)) return [str(v.source, 'volume source'), str(v.target, 'volume target')];
    const [source = '', target = ''] = interpolate(str(v, `services.${name}.volumes`)).split(':');
    return [source, target];
  });

/** The relay services: those running the relay image (the `x-relay` anchor's) without overriding its entrypoint. */
const relayImage = obj(compose['x-relay'], 'x-relay (the relay services anchor)').image;
const relayNames = Object.keys(services).filter(
  (name) => service(name).image === relayImage && service(name).entrypoint === undefined,
);

t.test('docker-compose.yml: the services this test knows are there', async (t) => {
  t.ok(relayNames.length > 0, `relay services found (image ${String(relayImage)}): ${relayNames.join(', ')}`);
  for (const name of ['nginx', 'redis', 'prometheus', 'grafana']) t.ok(services[name], `a "${name}" service`);
});

t.test(
  'docker-compose.yml: only nginx publishes ports; grafana only on 127.0.0.1 and in the monitoring profile',
  async (t) => {
    for (const [name, raw] of Object.entries(services)) {
      const s = obj(raw, name);
      t.not(s.network_mode, 'host', `${name} is not on the host's network (that would publish every port it opens)`);
      const ports = list(s.ports, `services.${name}.ports`);
      if (name === 'nginx') continue;
      if (name === 'grafana') {
        t.ok(ports.length > 0, 'grafana publishes its port (for an SSH tunnel)');
        for (const p of ports)
          t.equal(publishedHostIp(p), '127.0.0.1', `grafana's port ${JSON.stringify(p)} binds 127.0.0.1 only`);
        t.ok(
          list(s.profiles, 'services.grafana.profiles').includes('monitoring'),
          'grafana is in the monitoring profile (not started by a plain `docker compose up`)',
        );
        continue;
      }
      t.same(ports, [], `${name} publishes no port (only nginx may)`);
    }
  },
);

t.test('docker-compose.yml: redis never persists and needs a password', async (t) => {
  const cmd = commandLine(service('redis'));
  t.match(cmd, /\bredis-server\b/, 'redis runs redis-server');
  t.equal(
    cmd.match(/--save\b/g)?.length ?? 0,
    1,
    `exactly one --save (a second would switch snapshots back on): ${cmd}`,
  );
  t.match(cmd, /--save\s+(''|"")(\s|$)/, `--save '' (empty: no RDB snapshots): ${cmd}`);
  t.equal(cmd.match(/--appendonly\b/g)?.length ?? 0, 1, 'exactly one --appendonly');
  t.match(cmd, /--appendonly\s+no(\s|$)/, `--appendonly no (no AOF): ${cmd}`);
  t.match(cmd, /--requirepass\s+("[^"]+"|'[^']+'|[^\s'"]+)/, `--requirepass with a non-empty password: ${cmd}`);
});

t.test('docker-compose.yml: relays only on the private network, which is internal', async (t) => {
  const networks = obj(compose.networks, 'networks');
  t.equal(obj(networks.private, 'networks.private').internal, true, 'networks.private has internal: true');
  for (const name of relayNames) {
    const s = service(name);
    t.same(networksOf(s, name), ['private'], `${name} is on the private network only`);
    t.equal(s.network_mode, undefined, `${name} sets no network_mode`);
  }
});

/** The HEALTHCHECK of the final stage of the Dockerfile a service builds from, or null (none, or NONE). */
function dockerfileHealthcheck(s: Obj, name: string): string | null {
  const build = s.build;
  if (build === undefined) return null;
  const context = typeof build === 'string' ? build : str(obj(build, `${name}.build`).context ?? '.', 'context');
  const file = isObj(build) && typeof build.dockerfile === 'string' ? build.dockerfile : 'Dockerfile';
  const text = read(posix.join(context, file));
  const finalStage = text.split(/^FROM\s/m).at(-1) ?? '';
  const line = [...finalStage.matchAll(/^HEALTHCHECK\s+(.*)$/gm)].at(-1)?.[1] ?? null;
  return line === null || /^NONE\b/.test(line) ? null : line;
}

t.test(
  'docker-compose.yml: every relay has a health check, and nginx waits for every relay to be healthy',
  async (t) => {
    const nginxDeps = service('nginx').depends_on;
    for (const name of relayNames) {
      const s = service(name);
      const own = s.healthcheck;
      t.not(isObj(own) && own.disable === true, true, `${name}: the health check is not disabled`);
      const image = dockerfileHealthcheck(s, name);
      t.ok(
        (isObj(own) && own.test !== undefined) || image !== null,
        `${name}: a healthcheck in compose or a HEALTHCHECK in the Dockerfile it builds (found: ${image ?? 'none'})`,
      );
      const script = image ? /dist\/src\/([\w-]+)\.js/.exec(image)?.[1] : undefined;
      if (script)
        t.ok(existsSync(join(ROOT, 'src', `${script}.ts`)), `the HEALTHCHECK's script src/${script}.ts exists`);
      t.ok(isObj(nginxDeps), 'nginx.depends_on is a mapping (the list form only waits for "started")');
      const dep = isObj(nginxDeps) ? nginxDeps[name] : undefined;
      t.equal(isObj(dep) ? dep.condition : undefined, 'service_healthy', `nginx depends on ${name} being healthy`);
    }
  },
);

t.test(
  "docker-compose.yml: stop grace periods outlast the relays' drain and nginx's worker_shutdown_timeout",
  async (t) => {
    const DOCKER_DEFAULT_MS = 10_000;
    for (const name of relayNames) {
      const s = service(name);
      const env = envOf(s, name);
      const drainMs = loadConfig({ DRAIN_GRACE_MS: env.DRAIN_GRACE_MS }).drainGraceMs;
      const grace =
        s.stop_grace_period === undefined ? DOCKER_DEFAULT_MS : goDurationMs(str(s.stop_grace_period, name));
      t.ok(grace > drainMs, `${name}: stop_grace_period (${grace} ms) > DRAIN_GRACE_MS (${drainMs} ms)`);
    }
    const conf = read('nginx/compose/nginx.conf');
    const timeouts = [...conf.matchAll(/^\s*worker_shutdown_timeout\s+([^;\s]+)\s*;/gm)].map((m) => m[1] ?? '');
    t.equal(
      timeouts.length,
      1,
      'nginx/compose/nginx.conf sets worker_shutdown_timeout once (unset: workers wait forever)',
    );
    const shutdownMs = nginxTimeMs(timeouts[0] ?? '');
    const nginx = service('nginx');
    const grace =
      nginx.stop_grace_period === undefined ? DOCKER_DEFAULT_MS : goDurationMs(str(nginx.stop_grace_period, 'nginx'));
    t.ok(grace > shutdownMs, `nginx: stop_grace_period (${grace} ms) > worker_shutdown_timeout (${shutdownMs} ms)`);
  },
);

// ---------------------------------------------------------------------------------------------------------------
// Prometheus

/** Prometheus's target relabelling for the `replace` action (the only one these files may use). */
function relabel(labels: Record<string, string>, configs: unknown[]): Record<string, string> {
  const out = { ...labels };
  for (const [i, raw] of configs.entries()) {
    const c = obj(raw, `relabel_configs[${i}]`);
    const action = c.action === undefined ? 'replace' : str(c.action, 'action');
    if (action !== 'replace') throw new Error(`relabel_configs[${i}]: action ${action} is not simulated by this test`);
    const sources = list(c.source_labels, 'source_labels').map((s) => str(s, 'source label'));
    const value = sources.map((s) => out[s] ?? '').join(c.separator === undefined ? ';' : str(c.separator, 'sep'));
    const regex = new RegExp(`^(?:${c.regex === undefined ? '(.*)' : str(c.regex, 'regex')})$`);
    const m = regex.exec(value);
    if (!m) continue;
    const replacement = c.replacement === undefined ? '$1' : str(c.replacement, 'replacement');
    const target = str(c.target_label, `relabel_configs[${i}].target_label`);
    out[target] = replacement.replace(/\$\{?(\d+)\}?/g, (_, n: string) => m[Number(n)] ?? '');
  }
  return out;
}

t.test('Prometheus: scrapes exactly the relay services, each labelled with its name, every 5 s', async (t) => {
  const prom = service('prometheus');
  const configMount = mounts(prom, 'prometheus').find(([source]) => source === './deploy/monitoring/prometheus.yml');
  t.ok(configMount, 'the prometheus service mounts ./deploy/monitoring/prometheus.yml');
  t.match(commandLine(prom), `--config.file=${configMount?.[1]}`, 'and reads it (--config.file is the mount target)');
  t.match(commandLine(prom), /--storage\.tsdb\.retention\.time=2d\b/, 'keeps 2 days, as docs/operations.md says');
  t.ok(
    relayNames.every((name) => networksOf(prom, 'prometheus').some((n) => networksOf(service(name), name).includes(n))),
    'prometheus shares a network with every relay',
  );

  const config = obj(parse(read('deploy/monitoring/prometheus.yml')), 'prometheus.yml');
  const global = isObj(config.global) ? config.global : {};
  const scrapeConfigs = list(config.scrape_configs, 'scrape_configs').map((c, i) => obj(c, `scrape_configs[${i}]`));
  const scraped = new Map<string, Record<string, string>>();
  for (const job of scrapeConfigs) {
    const jobName = str(job.job_name, 'job_name');
    const sdKinds = Object.keys(job).filter((k) => k.endsWith('_sd_configs'));
    t.same(sdKinds, [], `job ${jobName}: static targets only (the test cannot know what service discovery finds)`);
    const interval = str(job.scrape_interval ?? global.scrape_interval ?? '1m', 'scrape_interval');
    const timeout = str(job.scrape_timeout ?? global.scrape_timeout ?? '10s', 'scrape_timeout');
    t.equal(goDurationMs(interval), 5000, `job ${jobName}: scraped every 5 s`);
    t.ok(
      goDurationMs(timeout) <= goDurationMs(interval),
      `job ${jobName}: scrape_timeout ${timeout} <= scrape_interval (Prometheus refuses a longer one)`,
    );
    const path = job.metrics_path === undefined ? '/metrics' : str(job.metrics_path, 'metrics_path');
    t.equal(path, '/metrics', `job ${jobName}: scrapes /metrics`);
    for (const sc of list(job.static_configs, 'static_configs').map((s) => obj(s, 'static_config'))) {
      const labels = Object.fromEntries(
        Object.entries(isObj(sc.labels) ? sc.labels : {}).map(([k, v]) => [k, str(v, k)]),
      );
      for (const target of list(sc.targets, 'targets').map((x) => str(x, 'target'))) {
        const before = { job: jobName, __address__: target, __metrics_path__: path, ...labels };
        const after = relabel(before, list(job.relabel_configs, 'relabel_configs'));
        scraped.set(target, { ...after, instance: after.instance ?? target });
      }
    }
  }

  const expected = relayNames.map((name) => {
    const port = loadConfig({ PORT: envOf(service(name), name).PORT }).port;
    return `${name}:${port}`;
  });
  t.same([...scraped.keys()].sort(), expected.sort(), 'the targets are exactly the relay services, at their PORT');
  for (const name of relayNames) {
    const target = [...scraped.entries()].find(([address]) => address.startsWith(`${name}:`));
    t.equal(target?.[1].instance, name, `${name}'s series carry instance="${name}" (not host:port)`);
    t.equal(
      envOf(service(name), name).INSTANCE_ID,
      name,
      `${name}'s INSTANCE_ID is its name, as relay_build_info says`,
    );
  }
});

// ---------------------------------------------------------------------------------------------------------------
// Grafana

const GRAFANA_DIR = 'deploy/monitoring/grafana';
const datasourceFile = obj(
  parse(read(`${GRAFANA_DIR}/provisioning/datasources/prometheus.yml`)),
  'datasources/prometheus.yml',
);
const datasources = list(datasourceFile.datasources, 'datasources').map((d, i) => obj(d, `datasources[${i}]`));
const DATASOURCE_UID = str(datasources[0]?.uid, 'datasources[0].uid');

t.test('Grafana: provisioning files are where compose mounts them and point at Prometheus', async (t) => {
  const grafana = service('grafana');
  const m = mounts(grafana, 'grafana');
  const provisioning = m.find(([source]) => source === `./${GRAFANA_DIR}/provisioning`);
  const dashboards = m.find(([source]) => source === `./${GRAFANA_DIR}/dashboards`);
  const rawEnv = isObj(grafana.environment) ? grafana.environment : {};
  t.match(
    String(rawEnv.GF_SECURITY_ADMIN_PASSWORD),
    /^\$\{GF_SECURITY_ADMIN_PASSWORD[:}-]/,
    'the admin password comes from GF_SECURITY_ADMIN_PASSWORD in the environment, as docs/operations.md says',
  );
  t.equal(rawEnv.GF_AUTH_ANONYMOUS_ENABLED, 'false', 'no anonymous access');
  t.equal(provisioning?.[1], '/etc/grafana/provisioning', 'provisioning mounted at /etc/grafana/provisioning');
  t.ok(dashboards, 'the dashboards directory is mounted');
  for (const [source] of m)
    if (source.startsWith('./'))
      t.ok(existsSync(join(ROOT, source)), `mounted path ${source} exists in the repository`);

  t.equal(datasources.length, 1, 'one datasource');
  const ds = datasources[0] ?? {};
  t.equal(ds.type, 'prometheus', 'of type prometheus');
  t.match(DATASOURCE_UID, /^[\w-]{1,40}$/, 'with a fixed uid');
  t.equal(ds.url, 'http://prometheus:9090', 'at http://prometheus:9090');
  t.ok(
    networksOf(grafana, 'grafana').some((n) => networksOf(service('prometheus'), 'prometheus').includes(n)),
    'grafana shares a network with prometheus',
  );
  t.ok(
    list(service('prometheus').profiles, 'profiles').includes('monitoring'),
    'prometheus is in the monitoring profile',
  );

  const providers = list(
    obj(parse(read(`${GRAFANA_DIR}/provisioning/dashboards/relay.yml`)), 'dashboards/relay.yml').providers,
    'providers',
  ).map((p, i) => obj(p, `providers[${i}]`));
  t.equal(providers.length, 1, 'one dashboard provider');
  t.equal(providers[0]?.type, 'file', 'a file provider');
  t.equal(
    obj(providers[0]?.options, 'options').path,
    dashboards?.[1],
    `it reads the directory compose mounts the dashboards at (${dashboards?.[1]})`,
  );
});

/** Everything a scrape says about each series name: its labels. */
function exposition(text: string): Map<string, Set<string>> {
  const names = new Map<string, Set<string>>();
  for (const line of text.split('\n')) {
    if (line === '' || line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][\w:]*)(\{(.*)\})?\s/.exec(line);
    if (!m?.[1]) throw new Error(`cannot read the exposition line: ${line}`);
    const labels = names.get(m[1]) ?? new Set<string>();
    for (const [, label] of (m[3] ?? '').matchAll(/([a-zA-Z_]\w*)="(?:[^"\\]|\\.)*"/g)) labels.add(label ?? '');
    names.set(m[1], labels);
  }
  return names;
}

/** PromQL functions and aggregations: an identifier followed by `(` must be one of them. */
const PROMQL_FUNCTIONS = new Set(
  (
    'abs absent absent_over_time avg avg_over_time bottomk ceil changes clamp clamp_max clamp_min count ' +
    'count_over_time count_values day_of_month day_of_week day_of_year days_in_month delta deriv exp floor group ' +
    'histogram_avg histogram_count histogram_fraction histogram_quantile histogram_stddev histogram_stdvar ' +
    'histogram_sum holt_winters hour idelta increase irate label_join label_replace last_over_time ln log10 log2 ' +
    'max max_over_time min min_over_time minute month predict_linear present_over_time quantile ' +
    'quantile_over_time rate resets round scalar sgn sort sort_desc sqrt stddev stddev_over_time stdvar ' +
    'stdvar_over_time sum sum_over_time time timestamp topk vector year'
  ).split(' '),
);
const PROMQL_KEYWORDS = new Set(['and', 'or', 'unless', 'bool', 'offset', 'inf', 'nan']);

interface PromQLNames {
  metrics: string[];
  labels: string[];
  functions: string[];
}

/** The metric names, label names and functions a PromQL expression uses (Grafana's `$variables` left out). */
function promqlNames(expr: string): PromQLNames {
  const labels: string[] = [];
  let e = expr.replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""');
  e = e.replace(/\{([^}]*)\}/g, (_, matchers: string) => {
    for (const [, l] of matchers.matchAll(/([a-zA-Z_]\w*)\s*(=~|!~|!=|=)/g)) labels.push(l ?? '');
    return ' ';
  });
  e = e.replace(/\[[^\]]*\]/g, ' ');
  e = e.replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)/g, (_, _kw, names: string) => {
    labels.push(
      ...names
        .split(',')
        .map((n) => n.trim())
        .filter(Boolean),
    );
    return ' ';
  });
  const metrics: string[] = [];
  const functions: string[] = [];
  for (const m of e.matchAll(/(?<![\w:.$])[a-zA-Z_:][\w:]*/g)) {
    const word = m[0];
    const after = e.slice((m.index ?? 0) + word.length);
    if (PROMQL_KEYWORDS.has(word.toLowerCase())) continue;
    if (/^\s*\(/.test(after)) functions.push(word);
    else metrics.push(word);
  }
  return { metrics, labels, functions };
}

/** What is wrong with one dashboard expression against the series a relay serves (empty: nothing). */
function exprProblems(expr: string, legend: string, served: Map<string, Set<string>>): string[] {
  const problems: string[] = [];
  const { metrics, labels, functions } = promqlNames(expr);
  if (metrics.length === 0) problems.push('names no metric');
  for (const f of functions) if (!PROMQL_FUNCTIONS.has(f)) problems.push(`${f}() is not a PromQL function`);
  for (const m of metrics) if (!served.has(m)) problems.push(`${m} is not a series the relay serves`);
  // Labels the query or its legend names: those of the metrics it reads, or the ones Prometheus adds.
  const known = new Set(['instance', 'job', ...metrics.flatMap((m) => [...(served.get(m) ?? [])])]);
  const legendLabels = [...legend.matchAll(/\{\{\s*([a-zA-Z_]\w*)\s*\}\}/g)].map((m) => m[1] ?? '');
  for (const l of [...labels, ...legendLabels]) if (!known.has(l)) problems.push(`label ${l} is on none of ${metrics}`);
  return problems;
}

interface Panel {
  title: string;
  type: string;
  targets: { expr: string; legend: string; datasourceUid: unknown }[];
  datasourceUid: unknown;
}

const dashboardFiles = readdirSync(join(ROOT, GRAFANA_DIR, 'dashboards')).filter((f) => f.endsWith('.json'));
const dashboard = obj(JSON.parse(read(`${GRAFANA_DIR}/dashboards/relay.json`)), 'relay.json');
const panels: Panel[] = list(dashboard.panels, 'panels')
  .flatMap((p) => {
    const panel = obj(p, 'panel');
    return [panel, ...list(panel.panels, 'row panels').map((q) => obj(q, 'panel'))];
  })
  .map((p) => ({
    title: typeof p.title === 'string' ? p.title : '',
    type: str(p.type, 'panel type'),
    datasourceUid: isObj(p.datasource) ? p.datasource.uid : undefined,
    targets: list(p.targets, 'targets').map((x) => {
      const target = obj(x, 'target');
      return {
        expr: typeof target.expr === 'string' ? target.expr : '',
        legend: typeof target.legendFormat === 'string' ? target.legendFormat : '',
        datasourceUid: isObj(target.datasource) ? target.datasource.uid : undefined,
      };
    }),
  }));

t.test('the PromQL reader finds what a dashboard query names, so a wrong name fails', async (t) => {
  const served = new Map([
    ['relay_messages_relayed_total', new Set<string>()],
    ['relay_errors_total', new Set(['code'])],
    ['relay_match_wait_seconds_bucket', new Set(['via', 'le'])],
  ]);
  t.same(
    promqlNames(
      'sum by (code) (rate(relay_errors_total{code!="x"}[$__rate_interval])) > 0 and on(code) (up) offset 5m',
    ),
    { metrics: ['relay_errors_total', 'up'], labels: ['code', 'code', 'code'], functions: ['sum', 'rate'] },
  );
  t.same(exprProblems('rate(relay_messages_relayed_total[5m])', '{{instance}}', served), []);
  t.same(
    exprProblems(
      'histogram_quantile(0.9, sum by (le, via) (rate(relay_match_wait_seconds_bucket[1m])))',
      'p90 {{via}}',
      served,
    ),
    [],
  );
  t.same(exprProblems('rate(relay_messages_relayd_total[5m])', '', served), [
    'relay_messages_relayd_total is not a series the relay serves',
  ]);
  t.same(exprProblems('relay_match_wait_seconds', '', served), [
    'relay_match_wait_seconds is not a series the relay serves',
  ]);
  t.same(exprProblems('sum by (reason) (relay_errors_total)', '{{cause}}', served), [
    'label reason is on none of relay_errors_total',
    'label cause is on none of relay_errors_total',
  ]);
  t.same(exprProblems('rat(relay_errors_total[5m])', '', served), ['rat() is not a PromQL function']);
  t.same(exprProblems('vector(1)', '', served), ['names no metric']);
});

t.test('the dashboard queries only series a real relay serves (a memory cluster of three)', async (t) => {
  const cluster = await startTestCluster('memory');
  t.teardown(() => cluster.close());
  const res = await fetch(`${cluster.nodes[0]?.http}/metrics`);
  t.equal(res.status, 200, 'GET /metrics answers 200');
  const text = await res.text();
  const served = exposition(text);
  const live = /^relay_broker_live_instances (\d+)$/m.exec(text);
  t.equal(live?.[1], '3', 'the instance scraped is clustered: it sees 3 live instances, broker metrics included');
  for (const h of [
    'relay_cross_instance_delivery_seconds',
    'relay_buffered_delivery_seconds',
    'relay_match_wait_seconds',
  ])
    t.ok(served.has(`${h}_bucket`), `${h} is served as a histogram with buckets before any observation`);

  t.same(dashboardFiles, ['relay.json'], 'the dashboards directory holds relay.json only');
  t.equal(dashboard.title, 'Relay', 'the dashboard is called Relay');
  t.same(dashboard.links ?? [], [], 'no dashboard links');
  t.notMatch(JSON.stringify(dashboard), /https?:\/\//, 'no external URL anywhere in the dashboard');
  t.ok(panels.length > 0, 'the dashboard has panels');
  for (const p of panels) {
    t.ok(p.title.trim() !== '', `every panel has a title (a ${p.type} panel has "${p.title}")`);
    if (p.type === 'row') continue;
    t.ok(p.targets.length > 0, `${p.title}: has queries`);
    t.equal(p.datasourceUid, DATASOURCE_UID, `${p.title}: uses the provisioned datasource (uid ${DATASOURCE_UID})`);
    for (const target of p.targets) {
      t.equal(target.datasourceUid, DATASOURCE_UID, `${p.title}: each query uses uid ${DATASOURCE_UID}`);
      t.same(exprProblems(target.expr, target.legend, served), [], `${p.title}: ${target.expr}`);
    }
  }
});

t.test('the dashboard has a panel for each thing an operator watches', async (t) => {
  const exprs = (p: Panel) => p.targets.map((x) => x.expr).join('\n');
  const some = (what: string, test: (p: Panel) => boolean) =>
    t.ok(
      panels.some((p) => p.type !== 'row' && test(p)),
      what,
    );
  const uses = (metric: string) => (p: Panel) => promqlNames(exprs(p)).metrics.includes(metric);
  some('open connections', uses('relay_connections'));
  some('sessions', uses('relay_sessions'));
  some('waiting queue', uses('relay_queue_length'));
  some('active chats', uses('relay_active_chats'));
  some('messages relayed per second', (p) => /\b(i?rate)\(relay_messages_relayed_total\[/.test(exprs(p)));
  for (const h of [
    'relay_cross_instance_delivery_seconds',
    'relay_buffered_delivery_seconds',
    'relay_match_wait_seconds',
  ])
    for (const q of ['0.5', '0.9', '0.99'])
      some(`${h} p${Number(q) * 100}`, (p) => exprs(p).includes(`histogram_quantile(${q},`) && uses(`${h}_bucket`)(p));
  some('buffer messages', uses('relay_buffer_messages'));
  some('buffer bytes', uses('relay_buffer_bytes'));
  some('errors by code', (p) => uses('relay_errors_total')(p) && p.targets.some((x) => x.legend.includes('{{code}}')));
  some('closes by code', (p) => uses('relay_closes_total')(p) && p.targets.some((x) => x.legend.includes('{{code}}')));
  some('upgrades refused by reason', (p) => uses('relay_upgrades_refused_total')(p));
  some('broker up', uses('relay_broker_up'));
  some('live instances seen', uses('relay_broker_live_instances'));
  some('broker publishes', uses('relay_broker_publishes_total'));
  some('broker receives', uses('relay_broker_receives_total'));
  some('broker errors', uses('relay_broker_errors_total'));
  some('broker reconnects', uses('relay_broker_reconnects_total'));
});

t.test('the compose helpers read what Compose reads', async (t) => {
  t.equal(interpolate(`127.0.0.1:\${GRAFANA_PORT:-3000}:3000`), '127.0.0.1:3000:3000');
  t.equal(interpolate(`$\${X} \${Y-a} $Z`), `\${X} a `);
  t.equal(goDurationMs('1m30s'), 90_000);
  t.equal(goDurationMs('500ms'), 500);
  t.throws(() => goDurationMs('20'), 'a bare number is not a Compose duration');
  t.equal(nginxTimeMs('30'), 30_000);
  t.equal(nginxTimeMs('1m30s'), 90_000);
  t.equal(publishedHostIp(`127.0.0.1:\${GRAFANA_PORT:-3000}:3000`), '127.0.0.1');
  t.equal(publishedHostIp('3000:3000'), null);
  t.equal(publishedHostIp('3000'), null);
  t.equal(publishedHostIp('[::1]:3000:3000/tcp'), '::1');
  t.equal(publishedHostIp({ target: 3000, published: 3000 }), null);
  t.equal(publishedHostIp({ target: 3000, host_ip: '127.0.0.1' }), '127.0.0.1');
  t.same(
    relabel({ __address__: 'relay1:8080' }, [
      { source_labels: ['__address__'], regex: '(.*):8080', target_label: 'instance' },
    ]),
    {
      __address__: 'relay1:8080',
      instance: 'relay1',
    },
  );
});
