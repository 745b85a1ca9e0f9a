// The gateway bench's part of the report (lib/gateway.mjs): its figures against
// the targets, each target missed with the run's own figures on why, then each
// phase's table and the charts. In bench/RESULTS.md it sits between two markers,
// as the cluster's section does, so each kind of full run replaces only its own part.
import { lineChart } from './svg.mjs';

export const GATEWAY_START = '<!-- gateway section: written by `npm run bench -- --gateway` -->';
export const GATEWAY_END = '<!-- end of gateway section -->';

const n = (v) => (v === undefined || v === null || Number.isNaN(v) ? 'n/a' : Math.round(v).toLocaleString('en-US'));
const ms = (v) => (v === undefined || Number.isNaN(v) ? 'n/a' : v < 10 ? v.toFixed(2) : v.toFixed(0));
const pct = (v) => (v === undefined || Number.isNaN(v) ? 'n/a' : `${Math.round(v * 100)}%`);
const mb = (v) =>
  v === undefined || Number.isNaN(v) ? 'n/a' : `${Math.round(v / 2 ** 20).toLocaleString('en-US')} MB`;
const met = (ok) => (ok === undefined ? 'n/a' : ok ? 'yes' : '**no**');
const total = (o) => Object.values(o).reduce((a, b) => a + b, 0);
const shares = (o) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${pct(v)}`)
    .join(', ');
const tally = (o) =>
  Object.keys(o ?? {}).length === 0
    ? 'none'
    : Object.entries(o)
        .map(([k, v]) => `${k} ${n(v)}`)
        .join(', ');
const relaysOf = (o) => Object.keys(o).filter((k) => k !== 'nginx' && k !== 'redis');
const contended = (g, key, unit = '') =>
  (g.contention ?? []).map((x) => (x[key] === null ? 'n/a' : `${x[key].toFixed(1)}${unit}`)).join(' / ');

/** The largest step that connected what it asked for, or the last one. */
const topStep = (c) => c.steps.at(-1);

export const HELD_TARGET = 60_000;
export const HELD_STRETCH = 75_000;
export const P99_TARGET_MS = 10;
export const STORM_TARGET_MS = 5000;

/** How many lines of a phase's output contained `text`. */
const edgeCount = (g, phase, text) =>
  (g.edgeLog?.[phase] ?? []).filter((l) => l.line.includes(text)).reduce((a, l) => a + l.count, 0);

/** Lines from nginx and the instances, counted by kind (numbers as N), for the "why" of a miss. */
function edgeLines(g, phase, max = 4) {
  // Redis's start and stop notices and nginx's note on OCSP stapling (a local CA names no responder) are noise.
  const lines = (g.edgeLog?.[phase] ?? [])
    .filter((l) => !l.line.startsWith('redis:') && !l.line.includes('ssl_stapling'))
    .slice(0, max);
  return lines.length === 0
    ? 'none'
    : lines.map((l) => `${n(l.count)} × \`${l.line.replaceAll('`', "'")}\``).join('; ');
}

/** The gateway's section, between its markers; `charts` is where the SVGs are, relative to the file. */
export function gatewaySection(results, charts = './') {
  const g = results.gateway;
  const cores = results.machine.cores ?? 2;
  const c = g.connections;
  const t = g.traffic;
  const s = g.storm;
  const r = g.rolling;
  const three = g.three;
  const top = topStep(c);
  const rate = results.profile.fixedRate;
  const lines = [GATEWAY_START, `## Gateway: nginx with TLS in front of the instances (${results.mode} run)`, ''];
  const row = (...cells) => lines.push(`| ${cells.join(' | ')} |`);
  lines.push(
    `Run on ${results.date} on ${results.machine.cpus}, Node ${results.machine.node}, nginx ${g.nginxVersion ?? '?'}, ` +
      `Redis ${g.redisVersion ?? '?'}. The production topology without Docker (\`startLocalCluster\` from ` +
      'deploy/cluster.ts): one Redis, the relay instances and nginx terminating TLS (TLS 1.3 here, a certificate ' +
      "from a CA made for the run, which every client trusts and checks), with the bench's generator processes, all " +
      `on this machine's ${cores} cores and loopback. Every client connects to \`wss://127.0.0.1:<port>/ws?route=<key>\` ` +
      "with a key of its own (random in the connection phases, as each of the page's tabs has; in the others " +
      'chosen so that clients spread evenly over the instances), from one of ' +
      `${n(g.sourceAddresses)} source addresses 127.0.0.x over ${n(g.generators)} generator processes; nginx's ` +
      'per-address limits are raised for that (60,000 WebSockets, 1,000,000 upgrades/s per address), and so are the ' +
      "relay's, as in every bench of ours. Which instance a key reaches is computed as nginx's consistent hash does " +
      "(bench/lib/chash.mjs), so both sides of every pair are on different instances; each instance's own socket " +
      `count checked the prediction (${t.routing.predicted.join('/')} predicted, ${t.routing.measured.join('/')} ` +
      'measured in the traffic phase). CPU and memory are read from `/proc` for nginx (master and every worker), ' +
      "each instance and Redis. Lines quoted below from the instances' logs with a `store` and an ioredis " +
      "`Timeout` are Redis commands that got no answer within the instance's command timeout. " +
      'One process here may hold at most 20,000 open files, and an instance caps its sockets at 19,744 below that, ' +
      `so 3 instances cannot hold 60,000: the connection phase ran ${c.instances} instances behind nginx with ` +
      `${c.nginxWorkers} workers (each proxied WebSocket is two of a worker's 19,900 connections); everything else ` +
      'ran on 3 instances, as deployed, and the last phase asked 3 fresh instances for the same load to show what they hold. ' +
      `Machine contention before the run / after the connection phase / at the end: 1-minute load average ` +
      `${contended(g, 'loadAverage')}, some task waiting for a core ${contended(g, 'cpuPressure', '%')} of the last ` +
      "minute (Linux PSI; the bench's own processes count too, and so does other work on this machine). " +
      'Regenerate with `npm run bench -- --gateway` (full) or `npm run bench -- --gateway --quick`.',
    '',
  );

  // Paired and held: alive at the end of the hold, and in a chat of two (a client the relay never matched is not paired).
  const paired = Math.min(c.held.alive, c.held.pairs.chats * 2);
  const heldOk = paired >= HELD_TARGET;
  const stretchOk = paired >= HELD_STRETCH;
  // The target is 0 lost and 0 duplicated; messages out of order are reported beside it.
  const rollingOk = r.lost === 0 && r.duplicated === 0;
  const stormOk = s.resumed === s.clients && s.ms <= STORM_TARGET_MS;
  const p99Ok = t.fixed.latencyMs.p99 <= P99_TARGET_MS;
  const relayNames = relaysOf(c.held.rssPerSessionBytes);
  row('figure', 'target', 'measured', 'met');
  row('---', '---', '---', '---');
  row(
    `concurrent paired wss:// sessions held through nginx (${c.instances} instances)`,
    `≥ ${n(HELD_TARGET)} held 2 min`,
    `${n(c.held.alive)} held ${n(c.held.ms / 1000)} s, in ${n(c.held.pairs.chats)} pairs (${n(c.held.pairs.crossInstance)} of them cross-instance; ${n(c.held.pairs.unmatched)} clients never matched)`,
    met(heldOk && c.held.ms >= 120_000),
  );
  row('the same, stretch', `≥ ${n(HELD_STRETCH)}`, `${n(paired)} paired`, met(stretchOk && c.held.ms >= 120_000));
  const am0 = g.acceptMutexRun?.connections;
  if (am0)
    row(
      'the same with `accept_mutex on` in nginx (a diagnosis, separate run, see below)',
      `≥ ${n(HELD_TARGET)} (stretch ${n(HELD_STRETCH)})`,
      `${n(am0.held.alive)} held ${n(am0.held.ms / 1000)} s, ${n(Math.min(am0.held.alive, am0.held.pairs.chats * 2))} of them in pairs`,
      'n/a',
    );
  row(
    'what 3 instances held when asked for the same',
    `figure (3 × 19,744 = 59,232 at most)`,
    three
      ? `${n(three.held.alive)} of ${n(three.steps[0]?.target)} asked (${three.held.perInstance.map(n).join(' / ')} per instance; ${n(three.connectErrors)} refused)`
      : 'not run in this profile',
    'n/a',
  );
  row(
    'session setup through nginx (TLS handshake, upgrade, hello/welcome), each a full TLS handshake',
    'figure',
    `${n(Math.max(...c.steps.map((x) => x.setupPerSec)))}/s at best, ${n(top.setupPerSec)}/s in the last step (TLS handshakes per second)`,
    'n/a',
  );
  row(
    'RSS per held session: nginx (all workers) / each instance (over its own sockets) / Redis',
    'figure',
    `${n(c.held.rssPerSessionBytes.nginx)} B (PSS ${n(c.held.nginxPssPerSessionBytes)} B) / ` +
      `${relayNames.map((k) => n(c.held.rssPerSessionBytes[k])).join(', ')} B / ${n(c.held.rssPerSessionBytes.redis)} B`,
    'n/a',
  );
  row(
    'cross-instance 64 B messages through TLS (closed loop)',
    'figure',
    `${n(t.closed.rate)}/s (${n(t.pairs.crossInstance)} of ${n(t.pairs.chats)} pairs cross-instance)`,
    'n/a',
  );
  row(
    'the same per CPU-second of everything on the path (nginx + instances + Redis)',
    'figure',
    `${n(t.closed.perCpuSecond)} (nginx ${pct(t.closed.cpuShare.nginx)} of a core, instances ${pct(total(t.closed.cpuShare) - t.closed.cpuShare.nginx - (t.closed.cpuShare.redis ?? 0))}, Redis ${pct(t.closed.cpuShare.redis)})`,
    'n/a',
  );
  row(
    `p99 latency at ${n(rate)} msg/s, cross-instance, through TLS`,
    `≤ ${P99_TARGET_MS} ms`,
    `${ms(t.fixed.latencyMs.p99)} ms (p50 ${ms(t.fixed.latencyMs.p50)} ms; at ${n(t.light.offered)} msg/s p99 ${ms(t.light.latencyMs.p99)} ms)`,
    met(p99Ok),
  );
  row(
    `resume storm through nginx, ${n(s.clients)} clients`,
    `all within ${n(STORM_TARGET_MS / 1000)} s`,
    `${n(s.resumed)} resumed in ${n(s.ms)} ms (${n(s.tlsResumed ?? 0)} TLS sessions resumed)`,
    met(stormOk && s.clients >= 10_000),
  );
  row(
    'rolling restart of all 3 instances under load through nginx: lost / duplicated (out of order)',
    '0 / 0',
    `${n(r.lost)} / ${n(r.duplicated)} (${n(r.outOfOrder)}) of ${n(r.sent)} messages`,
    met(rollingOk),
  );
  const v = g.rollingMaxFails0;
  if (v)
    row(
      'the same rolling restart with `max_fails=0` in nginx (a diagnosis, not the template)',
      '0 / 0',
      `${n(v.lost)} / ${n(v.duplicated)} (${n(v.outOfOrder)}) of ${n(v.sent)} messages`,
      'n/a',
    );
  lines.push('');
  if (results.mode !== 'full')
    lines.push(
      `This is a ${results.mode} run: its counts are smaller than the targets', so a "no" against a count says ` +
        'nothing about the relay.',
      '',
    );

  const miss = [];
  const am = g.acceptMutexRun;
  if (!heldOk || !stretchOk) {
    const failed = c.connectErrors;
    const failing = c.steps.find((x) => x.errors > 0);
    const failures = (x) =>
      Object.entries(x?.failedAfterMs ?? {})
        .map(
          ([code, f]) =>
            `${code} ${n(f.count)} (failing ${n(f.min)} to ${n(f.max)} ms after the connect began, median up to ${n(f.p50)} ms)`,
        )
        .join(', ');
    miss.push(
      `**Sessions held:** ${n(paired)} paired and held (${!heldOk ? `short of ${n(HELD_TARGET)}` : `short of the stretch ${n(HELD_STRETCH)}`}); ` +
        `${n(c.held.alive)} sockets alive, ${n(c.held.pairs.unmatched)} clients never matched (error frames during the last step's finds: ` +
        `${tally(c.held.pairs.errorFrames)}; \`already_queued\` answers the generator's \`find\` sent again for a client ` +
        `still waiting from an earlier step), ${n(c.held.pairs.chatsOfOne)} chats announced to one side only ` +
        '(its partner never got `matched`). ' +
        `${n(failed)} clients failed to connect${c.steps.find((x) => x.lastError) ? ` (last error: \`${c.steps.find((x) => x.lastError).lastError}\`)` : ''}; ` +
        `per instance at the end: ${c.held.perInstance.map(n).join(' / ')}; open files per nginx worker at most ` +
        `${n(Math.max(...c.held.nginxWorkerFiles))} of 20,000. What nginx and the instances printed meanwhile: ` +
        `${edgeLines(g, 'connections')}.` +
        (failing
          ? ` The first step with failures (to ${n(failing.target)}${failures(failing) ? `: ${failures(failing)}` : ''}): its setup rate fell to ` +
            `${n(failing.setupPerSec)}/s, and nginx's ${n(failing.nginxWorkerFiles.length)} workers held ` +
            `${failing.nginxWorkerFiles.map(n).join(', ')} files, the busiest ${pct(Math.max(...failing.nginxWorkerFiles) / failing.nginxWorkerFiles.reduce((a, b) => a + b, 0))} of all: ` +
            'a worker can hold 19,900 connections (two per WebSocket) under the 20,000-file limit, and the ' +
            "template's `listen ... reuseport` has the kernel spread new connections over the workers' own sockets. " +
            (edgeCount(g, 'connections', 'worker_connections are not enough') > 0
              ? `nginx printed "worker_connections are not enough, reusing connections" ` +
                `${n(edgeCount(g, 'connections', 'worker_connections are not enough'))} times: its busiest workers ran ` +
                'out of connections and closed others to make room (the resets), while most workers held a few hundred.'
              : 'Nothing nginx printed at warn or above names a refused connection, so which limit reset these ' +
                "sockets (a worker out of connections or files, or a TLS handshake past nginx's 10 s " +
                '`client_header_timeout` on a machine this busy) is not shown by this run alone.') +
            (am
              ? ` A separate run with \`accept_mutex on\` (below) held ${n(Math.min(am.connections.held.alive, am.connections.held.pairs.chats * 2))} paired sessions, ` +
                `its busiest nginx worker at ${n(Math.max(...am.connections.held.nginxWorkerFiles))} files; failures there: ` +
                `${failures(am.connections.steps.find((x) => x.errors > 0)) || 'none'}.`
              : '')
          : ''),
    );
  }
  if (!p99Ok) {
    const want = total(t.fixed.cpuShare) + t.fixed.generatorCpuShare;
    const wantLight = total(t.light.cpuShare) + t.light.generatorCpuShare;
    const psi = (g.contention ?? []).map((x) => x.cpuPressure).filter((x) => x !== null);
    miss.push(
      `**p99 at ${n(rate)} msg/s:** ${ms(t.fixed.latencyMs.p99)} ms, over ${P99_TARGET_MS} ms (p50 ` +
        `${ms(t.fixed.latencyMs.p50)} ms, p99.9 ${ms(t.fixed.latencyMs.p999)} ms, max ${ms(t.fixed.latencyMs.max)} ms). ` +
        `At that rate the processes on the path used ${shares(t.fixed.cpuShare)} of a core and the generator ` +
        `${pct(t.fixed.generatorCpuShare)}: ${want.toFixed(2)} of this machine's ${cores} cores` +
        (psi.length > 0
          ? `, while some task waited for a core ${psi.map((x) => `${x.toFixed(0)}%`).join(' / ')} of the minute ` +
            'before the readings of this run (PSI: other work on the machine as well as ours)'
          : '') +
        `. At ${n(t.light.offered)} msg/s (${wantLight.toFixed(2)} cores wanted) p99 was ` +
        `${ms(t.light.latencyMs.p99)} ms` +
        (t.light.latencyMs.p99 <= P99_TARGET_MS
          ? ': at a fifth of the load the tail is within the target, so the rate itself is what costs'
          : t.light.latencyMs.p99 * 4 < t.fixed.latencyMs.p99
            ? ': most of the tail goes with the load, so at the full rate frames queue for want of a core (the p50 ' +
              'says so too); what is left at a fifth of it is hops waiting for a core behind the other processes'
            : ': the tail does not go away with a fifth of the load, which points at hops waiting for a core ' +
              "(ours or other work's) rather than at the rate") +
        ". Each message crosses nginx twice (sender's socket to its instance, the partner's instance to the " +
        "partner's socket) on top of the cluster's hops (instance, Redis, instance; the cluster section has the " +
        'same rate without nginx).',
    );
  }
  if (!stormOk) {
    miss.push(
      `**Resume storm:** ${n(s.resumed)} of ${n(s.clients)} resumed, the last after ${n(s.ms)} ms ` +
        `(${n(s.resumed / (s.ms / 1000))} resumes/s, each a TLS handshake (${n(s.tlsResumed ?? 0)} of them resuming ` +
        `the client's TLS session), an upgrade through nginx and a resume ` +
        `with 5 buffered messages). While it ran: ${shares(s.cpuShare)} of a core` +
        (s.generatorCpuShare !== undefined
          ? `, and the generator's processes (the clients' side of every handshake) ${pct(s.generatorCpuShare)}`
          : '') +
        `; ${n(s.resumeErrors)} reconnects ` +
        `failed. Each resume through the gateway is a TLS handshake on both sides, nginx's connection to an ` +
        `instance and the upgrade, before any resume work; the storm ran at ${n(s.resumed / (s.ms / 1000))} ` +
        `resumes/s, the connection phase set up ${n(Math.max(...c.steps.map((x) => x.setupPerSec)))} sessions/s at best: on this machine the storm is ` +
        `bound by handshakes, and ${n(s.clients)} within 5 s would need ${n(s.clients / 5)} of them per second ` +
        '(the relay alone, without TLS or nginx, is in the first section).',
    );
  }
  if (!rollingOk) {
    const noLive = (g.edgeLog?.['rolling restart'] ?? [])
      .filter((l) => l.line.includes('no live upstreams'))
      .reduce((a, l) => a + l.count, 0);
    const redisTimeouts = (g.edgeLog?.['rolling restart'] ?? [])
      .filter((l) => l.line.includes('ioredis') && l.line.includes('at Timeout'))
      .reduce((a, l) => a + l.count, 0);
    miss.push(
      `**Rolling restart:** ${n(r.lost)} lost, ${n(r.duplicated)} duplicated, ${n(r.outOfOrder)} out of order. ` +
        `${n(r.rebuilt)} clients told \`resend\`; not resumed (welcomed with \`resumed: false\`): ` +
        `${n(r.freshIdentities)}; chats ended: ${tally(r.endReasons)}; clients still holding messages when the wait ` +
        `ended: ${n(r.pending)}. nginx answered ${n(noLive)} upgrades with "no live upstreams" (502) during the ` +
        `phase, and after the last restart only ${n(r.socketsAfter.reduce((x, y) => x + y, 0))} of ` +
        `${n(r.clients)} clients had a socket (${r.socketsAfter.map(n).join(' / ')} per instance). nginx and the instances printed: ` +
        `${edgeLines(g, 'rolling restart')}. ` +
        (v
          ? `The same phase in the same run with \`max_fails=0\` on the instances (the rendered nginx.conf rewritten ` +
            `and reloaded; nginx then never takes an instance out, and still tries the next one per request on a ` +
            `503 or refused connection): ${n(v.lost)} lost, ${n(v.duplicated)} duplicated of ${n(v.sent)}, ` +
            `${v.socketsAfter.map(n).join(' / ')} sockets per instance after it. `
          : '') +
        (v
          ? (v.lost + v.duplicated < (r.lost + r.duplicated) / 2
              ? `So most of the losses (${n(r.lost)} against ${n(v.lost)}) come from the gateway's passive health ` +
                'check, not from the relay: '
              : "The gateway's passive health check is one cause: ") +
            "the template's `max_fails=1 fail_timeout=5s` takes a draining instance (503 to new sockets) or a stopped " +
            "one out of rotation, and in nginx's upstream code an instance that failed is let back only when a request " +
            'sent to it after `fail_timeout` finishes, which for a proxied WebSocket is when the socket closes; until ' +
            'then each nginx worker sends it one new socket per 5 s. One instance after another goes out that ' +
            'way, then all three; clients that cannot reach any instance during the drain grace lose their handover ' +
            '(a snapshot moves only to a live instance that asks for it) and their chats are rebuilt or ended.'
          : `The template's upstreams have \`max_fails=0\`, so nginx never took an instance out. ${n(redisTimeouts)} ` +
            'Redis commands on the instances got no answer within their command timeout (the lines above with an ioredis ' +
            '`Timeout`): an instance that cannot reach the directory or the holder in time cannot move a session over, ' +
            'so such chats were rebuilt from the partner (`resend`) or ended (`partner_gone`, which the client is ' +
            "told): the messages an ended chat's clients still held count as lost here. " +
            `Machine contention (before the run / after the connection phase / at the end): some task waiting for a core ` +
            `${contended(g, 'cpuPressure', '%')} of the minute.`) +
        (v && (v.lost > 0 || v.duplicated > 0 || v.outOfOrder > 0)
          ? ` With \`max_fails=0\` there were still ${n(v.lost)} lost, ${n(v.duplicated)} duplicated and ` +
            `${n(v.outOfOrder)} out of order; chats the relay ended: ${tally(v.endReasons)}; rebuilt from the ` +
            `partner's side: ${n(v.rebuilt)} clients told \`resend\`; ` +
            `nginx and the instances printed: ${edgeLines(g, 'rolling restart, max_fails=0')}. Not diagnosed further here; ` +
            'the cluster section runs the same restart without nginx.'
          : ''),
    );
  }
  if (miss.length > 0) lines.push('### Where this run missed a target, and why', '', ...miss.map((m) => `- ${m}`), '');

  lines.push(`### Connections: ${c.instances} instances, nginx with ${c.nginxWorkers} workers`, '');
  lines.push(
    `Each step connects its new clients (${n(results.profile.gateway.concurrency)} handshakes in flight per generator ` +
      "process), then they `find` in pairs whose sides are on two instances. CPU per setup is each process's CPU " +
      "time over the step's new sessions while they connected; RSS is read after each step. Then every session is " +
      `held ${n(c.held.ms / 1000)} s with a ping every 20 s from each client.`,
    '',
  );
  row(
    'sessions',
    'setup/s (TLS handshakes/s)',
    'pairing ms',
    'CPU µs per setup: nginx / instances / Redis / generator',
    'RSS nginx',
    'RSS instances',
    'RSS Redis',
    'sockets per instance',
    'nginx worker files (max)',
    'failed',
  );
  row('---', '---', '---', '---', '---', '---', '---', '---', '---', '---');
  for (const x of c.steps) {
    const rel = relaysOf(x.cpuPerSetupUs);
    row(
      n(x.sessions),
      n(x.setupPerSec),
      n(x.pairMs),
      `${n(x.cpuPerSetupUs.nginx)} / ${n(rel.reduce((a, k) => a + x.cpuPerSetupUs[k], 0))} / ${n(x.cpuPerSetupUs.redis)} / ${n(x.generatorCpuPerSetupUs)}`,
      mb(x.rssBytes.nginx),
      relaysOf(x.rssBytes)
        .map((k) => mb(x.rssBytes[k]))
        .join(', '),
      mb(x.rssBytes.redis),
      x.perInstance.map(n).join(' / '),
      n(Math.max(...x.nginxWorkerFiles)),
      n(x.errors),
    );
  }
  lines.push(
    '',
    `Held: ${n(c.held.alive)} sessions for ${n(c.held.ms / 1000)} s; RSS per session nginx ${n(c.held.rssPerSessionBytes.nginx)} B ` +
      `(its workers' PSS ${n(c.held.nginxPssPerSessionBytes)} B, shared pages counted once), ` +
      relayNames.map((k) => `${k} ${n(c.held.rssPerSessionBytes[k])} B`).join(', ') +
      `, Redis ${n(c.held.rssPerSessionBytes.redis)} B (growth over the idle base; each instance over its own ` +
      'sockets, nginx and Redis over all). Open files per nginx worker after the hold: ' +
      `${c.held.nginxWorkerFiles.map(n).join(', ')}.`,
    '',
    `![setup rate](${charts}gateway-setup.svg) ![memory](${charts}gateway-rss.svg) ![cpu per setup](${charts}gateway-cpu.svg)`,
    '',
    ...(am ? acceptMutexSection(am) : []),
    ...(three ? threeSection(g, three) : []),
    '### Messages through TLS, three instances',
    '',
    `${n(t.pairs.chats)} pairs, each pair's sides on two instances` +
      (results.profile.gateway.trafficNginxWorkers
        ? `, nginx with ${n(results.profile.gateway.trafficNginxWorkers)} workers (a worker per core, as compose runs it; the same for the storm and the rolling restart)`
        : '') +
      '. Closed loop: 16 messages in flight per sender for ' +
      `${(results.profile.gateway.trafficMs / 1000).toFixed(1)} s; then open loops at ${n(rate)} and ${n(t.light.offered)} msg/s.`,
    '',
  );
  row(
    'load',
    'msg/s',
    'per CPU-s (path)',
    'p50 / p99 / p99.9 / max ms',
    'CPU, share of a core',
    'generator CPU',
    'refused',
  );
  row('---', '---', '---', '---', '---', '---', '---');
  for (const [label, x] of [
    ['closed loop', t.closed],
    [`${n(rate)} msg/s`, t.fixed],
    [`${n(t.light.offered)} msg/s`, t.light],
  ])
    row(
      label,
      n(x.rate),
      n(x.perCpuSecond),
      [x.latencyMs.p50, x.latencyMs.p99, x.latencyMs.p999, x.latencyMs.max].map(ms).join(' / '),
      shares(x.cpuShare),
      pct(x.generatorCpuShare),
      tally(x.errorFrames),
    );
  lines.push(
    '',
    '### Resume storm and rolling restart, three instances',
    '',
    `Storm: ${n(s.clients)} clients paired, every one stops reading while its partner sends 5 messages, all drop at ` +
      `once and all resume at once through nginx with their own route keys (${n(results.profile.gateway.stormConcurrency)} ` +
      `in flight per generator process): ${n(s.resumed)} had their 5 messages after ${n(s.ms)} ms. Each client keeps ` +
      "the TLS session nginx issued on its first connection and offers it again, as a browser does (nginx's shared " +
      `session cache; tickets are off): ${n(s.tlsResumed ?? 0)} of the storm's handshakes resumed one. CPU while it ran: ` +
      `${shares(s.cpuShare)}` +
      (s.generatorCpuShare !== undefined ? `; the generator's processes ${pct(s.generatorCpuShare)} of a core.` : '.'),
    '',
    `Rolling restart: ${n(r.pairs)} pairs of typed clients (\`dist/src/client.js\`) send ${n(r.rate)} msg/s of 64 B in ` +
      'total, each through nginx with its route key, both sides of each pair on two instances. Each instance in turn ' +
      'gets SIGTERM, drains (`draining`, then 1001 after DRAIN_GRACE_MS) and exits; a replacement starts on the same ' +
      `port (\`restartInstance\`); ${n(results.profile.gateway.steadyMs / 1000)} s of steady load before and after each. ` +
      'Clients reconnect through nginx with the same key: while their instance drains (503 to new sockets) or is ' +
      'gone, nginx sends them to the next instance on its ring. Every message is checked to arrive exactly once. ' +
      'Then the same phase on a fresh cluster whose nginx has `max_fails=0` on the instances (the rendered file ' +
      "rewritten and reloaded): a diagnosis of the template's passive health check, not a configuration of the project.",
    '',
  );
  row('instance', 'exit code', 'SIGTERM to exit ms', 'back on its port after ms', 'sockets per instance before');
  row('---', '---', '---', '---', '---');
  for (const x of r.rounds)
    row(x.stopped, String(x.exit), n(x.drainMs), n(x.startMs), x.socketsBefore.map(n).join(' / '));
  lines.push('');
  row(
    'nginx upstreams',
    'sent',
    'received',
    'lost',
    'duplicated',
    'out of order',
    'reconnects',
    'told to resend',
    'not resumed',
    'latency p50 / p99 / max ms',
  );
  row('---', '---', '---', '---', '---', '---', '---', '---', '---', '---');
  for (const [label, x] of [
    ['template (`max_fails=1 fail_timeout=5s`)', r],
    ...(v ? [['`max_fails=0` (diagnosis)', v]] : []),
  ])
    row(
      label,
      n(x.sent),
      n(x.received),
      n(x.lost),
      n(x.duplicated),
      n(x.outOfOrder),
      n(x.reconnects),
      n(x.rebuilt),
      n(x.freshIdentities),
      [x.latencyMs.p50, x.latencyMs.p99, x.latencyMs.max].map(ms).join(' / '),
    );
  lines.push(
    '',
    `Sockets per instance after the last restart: ${r.socketsAfter.map(n).join(' / ')}. Errors the clients were ` +
      `sent: ${tally(r.errors)}. Phase times (s): ${Object.entries(g.phaseSeconds)
        .map(([k, v]) => `${k} ${v}`)
        .join(', ')}.`,
    '',
    GATEWAY_END,
  );
  return `${lines.join('\n')}\n`;
}

/** What 3 fresh instances held when asked for the connection phase's load. */
function threeSection(g, three) {
  return [
    '### Three instances asked for the same',
    '',
    `${n(three.steps[0]?.target)} sessions asked of 3 fresh instances (one step, ${n(three.steps[0]?.setupPerSec)}/s), held ` +
      `${n(three.held.ms / 1000)} s: ${n(three.held.alive)} held, ${three.held.perInstance.map(n).join(' / ')} per ` +
      `instance, ${n(three.connectErrors)} refused. An instance past its cap answers 503, and nginx tries the next on ` +
      `its ring (\`proxy_next_upstream ... http_503\`, up to 3 tries). ` +
      (Math.max(...three.held.perInstance) < 19_744 && three.connectErrors > 0
        ? `No instance reached its cap: nginx refused ${n(edgeCount(g, '3 instances, connections', 'no live upstreams'))} ` +
          'upgrades with "no live upstreams" (502) after it had marked instances failed ' +
          `(${n(edgeCount(g, '3 instances, connections', 'upstream timed out'))} connects to an instance past ` +
          "nginx's 2 s `proxy_connect_timeout` on a machine this busy; with `max_fails=1`, the same way out of " +
          'rotation as in the rolling restart, and back only as slowly). '
        : '') +
      `Pairs formed: ${n(three.held.pairs.chats)} (error frames during the finds: ${tally(three.steps[0]?.errorFrames)}). ` +
      `What nginx and the instances printed: ${edgeLines(g, '3 instances, connections')}.`,
    '',
  ];
}

/** The connection phases again with `accept_mutex on` in nginx, from a separate run merged into this one's results. */
function acceptMutexSection(am) {
  const c = am.connections;
  const three = am.three;
  const out = [
    '### The connection phases with `accept_mutex on` in nginx (a diagnosis, separate run)',
    '',
    `From a run on ${am.date} (\`BENCH_GATEWAY_PHASES=${['connections-am', ...(three ? ['three-am'] : [])].join(',')}\`): ` +
      `the same ${three ? 'phases' : 'phase'} on ${three ? 'fresh clusters' : 'a fresh cluster'} ` +
      'whose rendered nginx.conf got `accept_mutex on` in its events block, then a reload; nothing else differs. ' +
      `Contention in that run: load average ${(am.contention ?? []).map((x) => x.loadAverage.toFixed(1)).join(' / ')}, ` +
      `CPU pressure ${(am.contention ?? []).map((x) => `${x.cpuPressure?.toFixed(1)}%`).join(' / ')}.`,
    '',
    '| sessions | setup/s | nginx worker files (max) | failed | sockets per instance |',
    '| --- | --- | --- | --- | --- |',
    ...c.steps.map(
      (x) =>
        `| ${n(x.sessions)} | ${n(x.setupPerSec)} | ${n(Math.max(...x.nginxWorkerFiles))} | ${n(x.errors)} | ${x.perInstance.map(n).join(' / ')} |`,
    ),
    '',
    `Held: ${n(c.held.alive)} for ${n(c.held.ms / 1000)} s, ${n(c.held.pairs.chats)} pairs ` +
      `(${n(Math.min(c.held.alive, c.held.pairs.chats * 2))} paired; ${n(c.held.pairs.chatsOfOne)} chats announced to ` +
      `one side only, ${n(c.held.pairs.unmatched)} clients never matched). Failed connects: ` +
      (c.connectErrors > 0
        ? c.steps
            .flatMap((x) =>
              Object.entries(x.failedAfterMs ?? {}).map(
                ([code, f]) =>
                  `${n(f.count)} × \`${code}\` at ${n(x.target)} (${n(f.min)} to ${n(f.max)} ms after the connect began)`,
              ),
            )
            .join(', ')
        : 'none') +
      `; nginx and the instances printed: ${edgeLines(am, 'connections, accept_mutex on')}. RSS per session nginx ` +
      `${n(c.held.rssPerSessionBytes.nginx)} B, ` +
      relaysOf(c.held.rssPerSessionBytes)
        .map((k) => `${k} ${n(c.held.rssPerSessionBytes[k])} B`)
        .join(', ') +
      `, Redis ${n(c.held.rssPerSessionBytes.redis)} B; open files per nginx worker ${c.held.nginxWorkerFiles.map(n).join(', ')}.` +
      (three
        ? ` Three fresh instances asked for ${n(three.steps[0]?.target)}: ${n(three.held.alive)} held ` +
          `(${three.held.perInstance.map(n).join(' / ')} per instance, ${n(three.connectErrors)} refused).`
        : ''),
    '',
  ];
  return out;
}

/** SVGs for the connection phase: setup rate, RSS by process, and CPU per setup, against sessions. */
export function gatewayCharts(results) {
  const c = results.gateway?.connections;
  if (!c) return {};
  const steps = c.steps;
  const names = Object.keys(steps[0]?.rssBytes ?? {});
  return {
    'gateway-setup.svg': lineChart({
      title: `Session setups through nginx and TLS per second (${c.instances} instances)`,
      xLabel: 'paired sessions open',
      yLabel: 'setups (TLS handshakes) per second',
      series: [{ name: 'setups/s in the step', points: steps.map((x) => [x.sessions, x.setupPerSec]) }],
    }),
    'gateway-rss.svg': lineChart({
      title: 'RSS by process against sessions held',
      xLabel: 'paired sessions open',
      yLabel: 'MB',
      series: [
        { name: 'nginx (all workers)', points: steps.map((x) => [x.sessions, x.rssBytes.nginx / 2 ** 20]) },
        {
          name: 'instances (sum)',
          points: steps.map((x) => [x.sessions, relaysOf(x.rssBytes).reduce((a, k) => a + x.rssBytes[k], 0) / 2 ** 20]),
        },
        { name: 'Redis', points: steps.map((x) => [x.sessions, x.rssBytes.redis / 2 ** 20]) },
      ].filter((s) => names.length > 0 && s.points.length > 0),
    }),
    'gateway-cpu.svg': lineChart({
      title: 'CPU per session set up, by process',
      xLabel: 'paired sessions open',
      yLabel: 'µs of CPU per setup',
      series: [
        { name: 'nginx', points: steps.map((x) => [x.sessions, x.cpuPerSetupUs.nginx]) },
        {
          name: 'instances (sum)',
          points: steps.map((x) => [x.sessions, relaysOf(x.cpuPerSetupUs).reduce((a, k) => a + x.cpuPerSetupUs[k], 0)]),
        },
        { name: 'Redis', points: steps.map((x) => [x.sessions, x.cpuPerSetupUs.redis]) },
        { name: 'generator', points: steps.map((x) => [x.sessions, x.generatorCpuPerSetupUs]) },
      ],
    }),
  };
}

/** The whole report of a `--gateway` run. */
export function gatewayReport(results) {
  return `# Gateway benchmark (${results.mode} run)\n\n${gatewaySection(results, './')}`;
}
