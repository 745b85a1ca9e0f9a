// Turns results.json into the Markdown report with its SVG plots: our figures
// against the targets, ratios ours / peer for the same run, and ours as
// a fraction of the floor (bench/peers/floor-relay.mjs) measured in that run.
import { barChart, lineChart } from './svg.mjs';

const NAMES = {
  ours: 'ours (uWebSockets.js)',
  ws: 'ws peer',
  socketio: 'Socket.IO peer',
  floor: 'floor (bare uWebSockets.js)',
  target: 'target (--targets)',
};
const n = (v) => (v === undefined || Number.isNaN(v) ? 'n/a' : Math.round(v).toLocaleString('en-US'));
const ms = (v) => (v === undefined ? 'n/a' : v < 10 ? v.toFixed(2) : v.toFixed(0));
const ratio = (a, b) => (a && b ? a / b : undefined);

function headline(r) {
  const last = r.capacity.steps.at(-1);
  const fastest = r.capacity.steps.reduce((a, b) => (b.setupPerSec > a.setupPerSec ? b : a));
  return {
    sessions: r.capacity.maxSessions,
    rssPerSession: r.capacity.rssPerSessionBytes ?? last?.rssPerSessionBytes,
    perCpuSecond: r.throughput.closed[64]?.perServerCpuSecond,
    maxRate: r.throughput.closed[64]?.rate,
    p99Fixed: r.throughput.fixed.latencyMs.p99,
    setup: fastest.setupPerSec,
    setupServerUs: fastest.serverCpuPerSetupUs,
    setupGeneratorUs: fastest.generatorCpuPerSetupUs,
    setupPerCpu: Math.max(...r.capacity.steps.map((s) => s.setupPerServerCpuSecond ?? 0)),
    pairedSetupPerCpu: r.capacity.pairedSetupsPerServerCpuSecond,
    // The floor runs no storm.
    stormMs: r.storm?.ms,
    stormAll: r.storm ? r.storm.resumed === r.storm.clients : undefined,
  };
}

const pct = (measured, target) => `${Math.abs(Math.round((measured / target - 1) * 100))}%`;

/**
 * Every target this run missed, by how much, and why as far as the run's own
 * figures can tell (the profiling behind it is in docs/architecture.md).
 */
function misses(results, H) {
  const o = H.ours;
  const cores = results.machine.cores ?? 2;
  const out = [];
  const add = (text) => out.push(`- ${text}`);
  if (o.sessions < 19500) {
    const step = results.relays.ours.capacity.steps.find((s) => s.errors > 0);
    add(
      `**Sessions:** ${n(o.sessions)} held, ${n(19500 - o.sessions)} short of 19,500` +
        (step ? `; connects failed from ${n(step.sessions)} sessions on (${step.lastError}).` : '.'),
    );
  }
  if (o.rssPerSession > 1536)
    add(
      `**RSS per session:** ${n(o.rssPerSession)} B, ${pct(o.rssPerSession, 1536)} over 1,536 B. A session is a ` +
        'uWebSockets.js socket (native state and its JS wrapper) plus our objects (session, chat, two inbox lanes, ' +
        'ids); RSS also holds V8 heap slack that the collector has not returned yet. The breakdown from heap ' +
        'snapshots is in docs/architecture.md.',
    );
  if (o.perCpuSecond < 130000)
    add(`**Messages per server CPU-second:** ${n(o.perCpuSecond)}, ${pct(o.perCpuSecond, 130000)} short of 130,000.`);
  if (o.p99Fixed > 2) {
    const f = results.relays.ours.throughput.fixed;
    add(
      `**p99 at ${n(f.offered)} msg/s:** ${ms(o.p99Fixed)} ms, ${pct(o.p99Fixed, 2)} over 2 ms ` +
        `(p50 ${ms(f.latencyMs.p50)} ms, p99.9 ${ms(f.latencyMs.p999)} ms). The generator shares the cores with ` +
        'the relay, so a pause in either process (a collection, the scheduler) shows up in the tail.',
    );
  }
  if (o.setup < 15000 && o.setupServerUs !== undefined) {
    const both = o.setupServerUs + o.setupGeneratorUs;
    add(
      `**Session setup:** ${n(o.setup)}/s, ${pct(o.setup, 15000)} short of 15,000/s. At that step the relay used ` +
        `${n(o.setupServerUs)} µs of CPU per setup and the generator ${n(o.setupGeneratorUs)} µs; with both on ` +
        `this machine's ${cores} cores the ceiling is ${cores} × 10^6 / ${n(both)} µs = ${n((cores * 1e6) / both)}/s. ` +
        "Most of the generator's share is kernel work charged to it on loopback: connect() runs both ends of the " +
        "TCP handshake in the caller, and each write delivers into the relay's socket. The relay alone sets up " +
        `${n(o.setupPerCpu)} sessions per CPU-second, which is the rate it would reach with a core to itself.`,
    );
  }
  const ws = H.ws;
  if (ws && o.setup / ws.setup < 2 && o.setupServerUs !== undefined)
    add(
      `**Setup rate against the ws peer:** ${ms(o.setup / ws.setup)}x, short of 2x. Both runs share the same ` +
        `generator cost per setup (${n(o.setupGeneratorUs)} and ${n(ws.setupGeneratorUs)} µs), which narrows any ` +
        `ratio of wall-clock rates; per server CPU-second the ratio is ${ms(o.setupPerCpu / ws.setupPerCpu)}x ` +
        `(${n(o.setupPerCpu)} against ${n(ws.setupPerCpu)} setups per relay CPU-second, each at its best step).`,
    );
  for (const [peer, memory, msgs] of [
    ['ws', 3, 1.5],
    ['socketio', 9, 3],
  ]) {
    const p = H[peer];
    if (!p) continue;
    if (p.rssPerSession / o.rssPerSession < memory)
      add(
        `**Memory per session against the ${NAMES[peer]}:** ${ms(p.rssPerSession / o.rssPerSession)}x, short of ` +
          `${memory}x (${n(p.rssPerSession)} against ${n(o.rssPerSession)} B).`,
      );
    if (o.perCpuSecond / p.perCpuSecond < msgs)
      add(
        `**Messages per CPU-second against the ${NAMES[peer]}:** ${ms(o.perCpuSecond / p.perCpuSecond)}x, short ` +
          `of ${msgs}x.`,
      );
  }
  if (out.length === 0) return [];
  return ['### Where this run missed a target, and why', '', ...out, ''];
}

export function report(results) {
  const names = Object.keys(results.relays);
  const H = Object.fromEntries(names.map((k) => [k, headline(results.relays[k])]));
  const o = H.ours;
  const lines = [];
  const row = (...cells) => lines.push(`| ${cells.join(' | ')} |`);
  lines.push(`# Benchmark results (${results.mode} run)`, '');
  lines.push(
    `Run on ${results.date} on ${results.machine.cpus}, ${results.machine.memoryGiB} GiB, Node ${results.machine.node}, ` +
      `${results.machine.fileLimit} open files per process. Everything on loopback; the generator shares the machine's cores ` +
      'with the relay, and its own CPU share is reported. Regenerate with `npm run bench` (full) or `npm run bench -- --quick`.',
    '',
  );
  if (o) {
    lines.push('## Our relay against the targets', '');
    row('figure', 'target', 'measured', 'met');
    row('---', '---', '---', '---');
    const t = (label, target, value, ok) => row(label, target, value, ok === undefined ? 'n/a' : ok ? 'yes' : '**no**');
    t(
      'concurrent paired sessions, one process',
      '≥ 19,500 held',
      `${n(o.sessions)} held ${results.profile.holdMs / 1000} s`,
      o.sessions >= 19500,
    );
    t(
      'server RSS per idle paired session (after the hold, over the idle base)',
      '≤ 1.5 KB',
      `${n(o.rssPerSession)} B`,
      o.rssPerSession <= 1536,
    );
    t('relayed 64 B messages per server CPU-second', '≥ 130,000', n(o.perCpuSecond), o.perCpuSecond >= 130000);
    t(`p99 latency at ${n(results.profile.fixedRate)} msg/s`, '≤ 2 ms', `${ms(o.p99Fixed)} ms`, o.p99Fixed <= 2);
    t('session setup (connect, hello, welcome)', '≥ 15,000/s', `${n(o.setup)}/s`, o.setup >= 15000);
    t(
      'session setups per server CPU-second',
      '(15,000/s if the relay had a core to itself)',
      n(o.setupPerCpu),
      o.setupPerCpu >= 15000,
    );
    t(
      `resume storm, ${n(results.relays.ours.storm.clients)} clients`,
      'all within 5 s',
      `${o.stormAll ? 'all' : 'not all'} in ${n(o.stormMs)} ms`,
      o.stormAll && o.stormMs <= 5000,
    );
    lines.push('');
    lines.push(...misses(results, H));
  }
  // The floor is not a peer to beat but the bound to approach: it has a section of its own.
  const peers = names.filter((k) => k !== 'ours' && k !== 'floor');
  if (o && peers.length > 0) {
    lines.push('## Ours against the peers (same run, same generator)', '');
    row('figure', ...peers.map((p) => `ours / ${NAMES[p]}`), 'target');
    row('---', ...peers.map(() => '---'), '---');
    row(
      'memory per session (peer / ours: higher is better for us)',
      ...peers.map((p) => ms(ratio(H[p].rssPerSession, o.rssPerSession))),
      '≥ 3x ws, ≥ 9x Socket.IO',
    );
    row('max sessions held', ...peers.map((p) => ms(ratio(o.sessions, H[p].sessions))), '');
    row(
      '64 B msgs per server CPU-second',
      ...peers.map((p) => ms(ratio(o.perCpuSecond, H[p].perCpuSecond))),
      '≥ 1.5x ws, ≥ 3x Socket.IO',
    );
    row(
      `p99 at ${n(results.profile.fixedRate)} msg/s (peer / ours)`,
      ...peers.map((p) => ms(ratio(H[p].p99Fixed, o.p99Fixed))),
      '',
    );
    row('session setup rate', ...peers.map((p) => ms(ratio(o.setup, H[p].setup))), '≥ 2x ws');
    row('session setups per server CPU-second', ...peers.map((p) => ms(ratio(o.setupPerCpu, H[p].setupPerCpu))), '');
    lines.push('', '![ours vs peers](./ratios.svg)', '');
  }
  const f = H.floor;
  if (o && f) {
    const share = (v) => (v === undefined || Number.isNaN(v) ? 'n/a' : `${Math.round(v * 100)}%`);
    lines.push('## Ours as a fraction of the floor (same run, same generator)', '');
    lines.push(
      'The floor (`bench/peers/floor-relay.mjs`) is a bare uWebSockets.js relay doing the least work this generator ' +
        'accepts: it answers hello, find and msg (a seq counter, the frame forwarded by string concatenation) and ' +
        'nothing else: no JSON parsing or validation, identities, resume buffer, acks, dedupe, limits or HTTP ' +
        "routes. A relay that keeps the protocol's promises does all of this work and more, so the floor's figures " +
        'are an upper bound for this stack on this machine; 100% would mean ours costs nothing beyond the library ' +
        'and the kernel.',
      '',
    );
    row('figure', 'ours', 'floor', 'ours as a fraction of the floor');
    row('---', '---', '---', '---');
    row(
      'relayed 64 B messages per server CPU-second',
      n(o.perCpuSecond),
      n(f.perCpuSecond),
      share(ratio(o.perCpuSecond, f.perCpuSecond)),
    );
    row(
      'sessions set up and paired (connect, hello, find, matched) per server CPU-second, whole ramp',
      n(o.pairedSetupPerCpu),
      n(f.pairedSetupPerCpu),
      share(ratio(o.pairedSetupPerCpu, f.pairedSetupPerCpu)),
    );
    row(
      `RSS per idle paired session after the ${results.profile.holdMs / 1000} s hold (floor's bytes / ours)`,
      `${n(o.rssPerSession)} B`,
      `${n(f.rssPerSession)} B`,
      share(ratio(f.rssPerSession, o.rssPerSession)),
    );
    lines.push('');
    // A relay short of a full core was waiting for the generator: fewer frames per read and per write.
    const cpuShare = (k) => results.relays[k].throughput.closed[64]?.serverCpuShare;
    const [fc, oc] = [cpuShare('floor'), cpuShare('ours')];
    if (fc < 0.8)
      lines.push(
        `In the 64 B closed loop the floor used ${share(fc)} of a core and ours ${share(oc)}: ` +
          (fc < oc - 0.1
            ? "the generator, not the floor, was the limit, so the floor's figure is taken at a lighter load " +
              '(fewer frames per read and per write) and the fraction is if anything generous to ours.'
            : 'the generator was the limit for both, so both figures are taken below full load.'),
        '',
      );
  }
  lines.push('## Capacity: paired, idle-but-pinging sessions', '');
  lines.push(
    'RSS per session is the step over the previous step (fixed costs cancel out), and the average over the idle base.',
    '',
  );
  row(
    'relay',
    'sessions',
    'setup/s',
    'setups per server CPU-s',
    'server / generator CPU µs per setup',
    'pairing ms',
    'RSS MB',
    'B per added session',
    'B per session over base',
    'errors',
  );
  row('---', '---', '---', '---', '---', '---', '---', '---', '---', '---');
  for (const k of names) {
    const c = results.relays[k].capacity;
    for (const s of c.steps)
      row(
        NAMES[k],
        n(s.sessions),
        n(s.setupPerSec),
        n(s.setupPerServerCpuSecond),
        `${n(s.serverCpuPerSetupUs)} / ${n(s.generatorCpuPerSetupUs)}`,
        n(s.pairMs),
        n(s.rssBytes / 2 ** 20),
        n(s.marginalRssPerSessionBytes),
        n(s.rssPerSessionBytes),
        s.errors ? `${n(s.errors)} (${s.lastError})` : '0',
      );
  }
  lines.push(
    '',
    'Held with every client pinging every 20 s. RSS per session at the end of the hold, over the idle base, is the',
    'headline figure: right after a connect storm RSS still holds its garbage (the ramp slope).',
    '',
  );
  row('relay', 'held for', 'sessions still open', 'RSS MB at the end', 'B per session (held)', 'B per session (ramp)');
  row('---', '---', '---', '---', '---', '---');
  for (const k of names) {
    const c = results.relays[k].capacity;
    row(
      NAMES[k],
      `${c.held.ms / 1000} s`,
      n(c.held.alive),
      n(c.held.rssBytes / 2 ** 20),
      n(c.rssPerSessionBytes),
      n(c.rampRssPerSessionBytes),
    );
  }
  lines.push('', '![sessions vs RSS](./sessions-rss.svg)', '');
  lines.push('## Throughput (closed loop, 16 in flight per sender) and latency', '');
  row('relay', 'size B', 'msg/s', 'per server CPU-s', 'server CPU', 'generator CPU', 'p50 ms', 'p99 ms', 'p99.9 ms');
  row('---', '---', '---', '---', '---', '---', '---', '---', '---');
  for (const k of names)
    for (const [size, r] of Object.entries(results.relays[k].throughput.closed))
      row(
        NAMES[k],
        size,
        n(r.rate),
        n(r.perServerCpuSecond),
        `${(r.serverCpuShare * 100).toFixed(0)}%`,
        `${(r.generatorCpuShare * 100).toFixed(0)}%`,
        ms(r.latencyMs.p50),
        ms(r.latencyMs.p99),
        ms(r.latencyMs.p999),
      );
  lines.push('', 'Open loop, 64 B (rate offered as a share of the closed-loop maximum, and the fixed rate):', '');
  row(
    'relay',
    'offered msg/s',
    'delivered msg/s',
    'p50 ms',
    'p90 ms',
    'p99 ms',
    'p99.9 ms',
    'generator CPU',
    'backlog drained after',
  );
  row('---', '---', '---', '---', '---', '---', '---', '---', '---');
  for (const k of names) {
    const t = results.relays[k].throughput;
    for (const r of [...t.open, t.fixed])
      row(
        NAMES[k],
        n(r.offered),
        n(r.rate),
        ms(r.latencyMs.p50),
        ms(r.latencyMs.p90),
        ms(r.latencyMs.p99),
        ms(r.latencyMs.p999),
        `${(r.generatorCpuShare * 100).toFixed(0)}%`,
        `${n(r.drainMs)} ms`,
      );
  }
  lines.push('', '![throughput vs latency](./throughput-latency.svg)', '');
  lines.push('## Resume storm', '');
  lines.push(
    'Every client sends 5 messages while none reads; once the relay has confirmed all of them (`sent`), every',
    'socket drops at once, and all resume (64 at a time per generator process). Time is from the first resume to',
    'the last client holding all 5 of its missed messages.' +
      (H.floor ? ' The floor keeps no buffer and does not resume: it is not run here.' : ''),
    '',
  );
  row('relay', 'clients', 'resumed with all missed messages', 'time ms', 'confirming the messages took ms');
  row('---', '---', '---', '---', '---');
  for (const k of names.filter((x) => results.relays[x].storm)) {
    const s = results.relays[k].storm;
    row(NAMES[k], n(s.clients), n(s.resumed), n(s.ms), n(s.confirmMs));
  }
  lines.push('');
  const journeys = names.filter((k) => results.relays[k].journey);
  if (journeys.length > 0) {
    lines.push(
      '## User journey (artillery, WebSocket engine)',
      '',
      'Open, hello, find, chat (5 messages, 0.5 s apart), next, chat, leave; ' +
        `${results.profile.journey.arrivalRate} new users per second for ${results.profile.journey.seconds} s.`,
      '',
    );
    row(
      'relay',
      'users',
      'completed',
      'failed',
      'matches (2 per chat)',
      'pairing p50 / p99 ms',
      'delivery p50 / p99 ms',
    );
    row('---', '---', '---', '---', '---', '---', '---');
    for (const k of journeys) {
      const j = results.relays[k].journey;
      row(
        NAMES[k],
        n(j.virtualUsers),
        n(j.completed),
        n(j.failed),
        n(j.matched),
        `${ms(j.pairingMs?.p50)} / ${ms(j.pairingMs?.p99)}`,
        `${ms(j.deliveryMs?.p50)} / ${ms(j.deliveryMs?.p99)}`,
      );
    }
    lines.push('');
  }
  const withHttp = names.filter((k) => results.relays[k].http);
  if (withHttp.length > 0) {
    lines.push('## HTTP endpoints (autocannon, 64 connections; the peers have none)', '');
    row('relay', 'endpoint', 'requests/s', 'per server CPU-s', 'p50 ms', 'p99 ms', 'not 2xx or failed');
    row('---', '---', '---', '---', '---', '---', '---');
    for (const k of withHttp)
      for (const h of results.relays[k].http)
        row(
          NAMES[k],
          h.endpoint,
          n(h.requestsPerSec),
          n(h.perServerCpuSecond),
          ms(h.latencyMs.p50),
          ms(h.latencyMs.p99),
          n(h.other),
        );
    lines.push('');
  }
  const charts = {
    'sessions-rss.svg': lineChart({
      title: 'Server RSS vs paired sessions',
      xLabel: 'paired sessions',
      yLabel: 'RSS (MB)',
      series: names.map((k) => ({
        name: NAMES[k],
        points: results.relays[k].capacity.steps.map((s) => [s.sessions, s.rssBytes / 2 ** 20]),
      })),
    }),
    'throughput-latency.svg': lineChart({
      title: 'p99 latency vs delivered rate (64 B, open loop)',
      xLabel: 'delivered msg/s',
      yLabel: 'p99 latency (ms)',
      series: names.map((k) => ({
        name: NAMES[k],
        points: results.relays[k].throughput.open.map((r) => [r.rate, r.latencyMs.p99]),
      })),
    }),
  };
  if (o && peers.length > 0)
    charts['ratios.svg'] = barChart({
      title: 'Ours relative to each peer (> 1: ours is better)',
      bars: peers.flatMap((p) => [
        { label: `memory/session vs ${NAMES[p]}`, value: ratio(H[p].rssPerSession, o.rssPerSession) ?? 0 },
        { label: `msgs per CPU-s vs ${NAMES[p]}`, value: ratio(o.perCpuSecond, H[p].perCpuSecond) ?? 0 },
        { label: `p99 latency vs ${NAMES[p]}`, value: ratio(H[p].p99Fixed, o.p99Fixed) ?? 0 },
        { label: `setup rate vs ${NAMES[p]}`, value: ratio(o.setup, H[p].setup) ?? 0 },
      ]),
    });
  return { markdown: `${lines.join('\n')}\n`, charts };
}
