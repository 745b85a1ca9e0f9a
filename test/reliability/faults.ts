/**
 * Faults (issue 13): real relay processes on a real Redis (and real nginx for
 * the reload), busy chats through each fault, then every message checked
 * (lost, duplicated, reordered) and the time until every chat flows again.
 * Bounds are docs/operations.md's failure-mode table where it gives one.
 *
 * - slow consumer: a reader that stops reading while its partner floods;
 * - rolling restart: SIGTERM each instance in turn (full only);
 * - SIGKILL of one instance;
 * - Redis killed and restarted;
 * - a partition between one instance and Redis (its REDIS_URL through a TCP proxy that is cut);
 * - `nginx -s reload` under many open sockets.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import WebSocket from 'ws';
import { type LocalCluster, startLocalCluster } from '../../deploy/cluster.js';
import { RelayClient, type WebSocketLike } from '../../src/client.js';
import { type Chatter, chats } from '../fixtures/chatters.js';
import { freePort } from '../fixtures/redis.js';
import { type RelayProcess, spawnRelay } from '../fixtures/relay-process.js';
import { TcpProxy } from '../fixtures/tcp-proxy.js';
import { sleep, TestClient } from '../fixtures/ws-client.js';
import { type Busy, busyCluster, deliveryRows, type Route, relayEnv, settle, tally } from './churn.js';
import { atMost, type Check, exactly, fmt, type Row } from './table.js';

type Log = (line: string) => void;

/** ms from `since` until every active chatter is connected, in its chat and has received something new. */
async function fullService(busy: Busy, since: number, timeoutMs = 30_000): Promise<number> {
  const all = [...busy.active].flat();
  const mark = new Map(all.map((c) => [c, c.received.length]));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (all.every((c) => c.client.connected && c.client.chatId !== null && c.received.length > (mark.get(c) as number)))
      return Date.now() - since;
    await sleep(25);
  }
  return Number.POSITIVE_INFINITY;
}

async function readyz(node: RelayProcess): Promise<string> {
  try {
    const r = await fetch(`${node.http}/readyz`, { signal: AbortSignal.timeout(500) });
    const body = (await r.json()) as { status: string; broker?: string };
    return `${body.status}/${body.broker ?? '-'}`;
  } catch {
    return 'unreachable';
  }
}

/** ms until every node answers `want` (polled every 50 ms), or Infinity after `timeoutMs`. */
async function readyAll(nodes: RelayProcess[], want: string, since: number, timeoutMs = 10_000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const states = await Promise.all(nodes.map(readyz));
    if (states.every((s) => s === want)) return Date.now() - since;
    await sleep(50);
  }
  return Number.POSITIVE_INFINITY;
}

/** Stops talking, waits for everything to be confirmed and delivered, and tallies the active pairs. */
async function finish(busy: Busy, label: string, log: Log): Promise<Row[]> {
  await busy.stopTalking();
  const ok = await settle(busy.active, 30_000);
  const t = tally(busy.active);
  log(`${label}: sent ${t.sent}, delivered ${t.delivered}, settled ${ok}`);
  if (!ok)
    for (const c of [...busy.active]
      .flat()
      .filter((c) => !c.settled)
      .slice(0, 6))
      log(
        `  unsettled ${c.name}: connected=${c.client.connected} unconfirmed=${c.client.unconfirmed} undelivered=${c.client.undelivered} route=${JSON.stringify(busy.routes.get(c))}`,
      );
  return deliveryRows(label, t);
}

const rssBytes = (pid: number): number => {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return Number(m?.[1] ?? Number.NaN) * 1024;
};

/** A client that stops reading while its partner floods; the relay closes it (4413), and its resume loses nothing. */
async function slowConsumer(quick: boolean, log: Log): Promise<Row[]> {
  const backpressure = 256 * 1024;
  const bufferBytes = 16 * 1024 * 1024;
  const relay = await spawnRelay({
    MAX_BACKPRESSURE_BYTES: String(backpressure),
    RATE_LIMIT_PER_SEC: '5000',
    RATE_LIMIT_BURST: '5000',
    BUFFER_SESSION_MAX_MESSAGES: '10000',
    BUFFER_SESSION_MAX_BYTES: String(bufferBytes),
    MAX_CONNECTIONS_PER_ADDRESS: '0',
    MAX_SESSIONS_PER_ADDRESS: '0',
  });
  try {
    let raw: WebSocket | null = null;
    const slow = new RelayClient({
      url: relay.url,
      createSocket: (u) => {
        raw = new WebSocket(u);
        return raw as unknown as WebSocketLike;
      },
    });
    const fast = new RelayClient({ url: relay.url, createSocket: (u) => new WebSocket(u) as unknown as WebSocketLike });
    const got: string[] = [];
    slow.on('msg', (m) => got.push(m.body));
    let gaps = 0;
    slow.on('gap', () => gaps++);
    await Promise.all([slow.connect(), fast.connect()]);
    const matched = Promise.all([slow.next('matched'), fast.next('matched')]);
    slow.send({ type: 'find' });
    await slow.next('queued');
    fast.send({ type: 'find' });
    await matched;
    const rss0 = rssBytes(relay.child.pid as number);
    // The slow side stops reading: its kernel buffers fill, then the relay's.
    (raw as unknown as { _socket: { pause(): void; resume(): void } })._socket.pause();
    const n = quick ? 1500 : 3000;
    const pad = 'x'.repeat(3000);
    const sent: string[] = [];
    for (let i = 0; i < n; i++) {
      const body = `${i}-${pad}`;
      sent.push(body);
      fast.sendMessage(body);
    }
    const floodStart = Date.now();
    let rssMax = rss0;
    while (fast.unconfirmed > 0 && Date.now() - floodStart < 30_000) {
      rssMax = Math.max(rssMax, rssBytes(relay.child.pid as number));
      await sleep(50);
    }
    for (let i = 0; i < 10; i++) {
      rssMax = Math.max(rssMax, rssBytes(relay.child.pid as number));
      await sleep(50);
    }
    const metrics = await (await fetch(`${relay.http}/metrics`)).text();
    const closed4413 = Number(/^relay_closes_total\{code="4413"\} (\d+)/m.exec(metrics)?.[1] ?? 0);
    // It reads again: what was on the wire, then the close, then it resumes for the rest.
    const closed = new Promise<number>((resolve) => slow.onClosed((c) => resolve(c.code)));
    (raw as unknown as { _socket: { resume(): void } })._socket.resume();
    const code = await Promise.race([closed, sleep(10_000).then(() => 0)]);
    await slow.connect();
    const deadline = Date.now() + 20_000;
    while (got.length < n && Date.now() < deadline) await sleep(50);
    const lost = sent.filter((b) => !got.includes(b)).length;
    const dup = got.length - new Set(got).size;
    const inOrder = got.every((b, i) => Number(b.slice(0, b.indexOf('-'))) === i);
    fast.close();
    slow.close();
    const growth = Math.max(0, rssMax - rss0);
    const bound = bufferBytes + backpressure + 48 * 1024 * 1024;
    log(`slow consumer: close ${code}, 4413 count ${closed4413}, rss +${Math.round(growth / 1048576)} MiB`);
    return [
      {
        // The close frame waits behind what the client never read: it sees 4413, or 1006 if the frame was dropped.
        test: 'slow consumer: the relay closed it (4413 slow_consumer)',
        figure: `relay_closes_total{4413} ${closed4413}, client saw ${code}`,
        pass: closed4413 === 1 && (code === 4413 || code === 1006),
      },
      atMost(
        `slow consumer: relay RSS growth during a ${fmt(Math.round((n * 3000) / 1048576))} MiB flood`,
        Math.round(growth / 1048576),
        Math.round(bound / 1048576),
        ' MiB',
      ),
      {
        test: 'slow consumer: after resume, lost / duplicated / out of order',
        figure: `${lost} / ${dup} / ${inOrder ? 0 : 'some'} of ${fmt(n)} (gaps ${gaps})`,
        pass: lost === 0 && dup === 0 && inOrder && gaps === 0,
      },
    ];
  } finally {
    relay.kill('SIGKILL');
    await relay.exited;
  }
}

/** Each instance in turn gets SIGTERM (and a replacement starts): exits, service, nothing lost. */
async function rollingRestart(pairs: number, log: Log): Promise<Row[]> {
  const busy = await busyCluster(pairs, 200);
  try {
    await sleep(500);
    let exitMax = 0;
    let serviceMax = 0;
    let exitCodes = 0;
    for (let i = 0; i < 3; i++) {
      const victim = busy.nodes[i] as RelayProcess;
      const replacement = await spawnRelay(relayEnv(busy.redis, busy.prefix, i, { INSTANCE_ID: `r${i}b` }));
      busy.nodes.push(replacement);
      busy.live = [...busy.live.filter((n) => n !== victim), replacement];
      const t0 = Date.now();
      victim.kill('SIGTERM');
      const exit = await victim.exited;
      const exitMs = Date.now() - t0;
      if (exit.code !== 0) exitCodes++;
      const service = await fullService(busy, t0);
      log(`rolling: r${i} exited ${exit.code} after ${exitMs} ms, full service after ${service} ms`);
      exitMax = Math.max(exitMax, exitMs);
      serviceMax = Math.max(serviceMax, service);
    }
    return [
      atMost('rolling restart (SIGTERM x3): slowest exit', exitMax, 10_000, ' ms'),
      exactly('rolling restart: unclean exits', exitCodes, 0),
      atMost('rolling restart: time to full service (slowest)', serviceMax, 1000 + 6000, ' ms'),
      ...(await finish(busy, 'rolling restart', log)),
    ];
  } finally {
    await busy.close();
  }
}

/** SIGKILL of one instance under load: partners told `away` within 6 s; every chat flows again; nothing lost. */
async function sigkill(pairs: number, log: Log): Promise<Row[]> {
  const busy = await busyCluster(pairs, 200);
  try {
    const victim = busy.nodes[0] as RelayProcess;
    // A chat whose side on the victim never comes back: its partner must be told.
    const lonely = busy.pairs.find(([a, b]) => {
      const ra = busy.routes.get(a) as Route;
      const rb = busy.routes.get(b) as Route;
      return !ra.moving && ra.at % 3 === 0 && rb.at % 3 !== 0;
    });
    if (!lonely) throw new Error('no chat with a fixed side on the victim');
    const [ghost, waiter] = lonely;
    busy.active.delete(lonely);
    (busy.routes.get(ghost) as Route).away = true;
    const away = waiter.client
      .next('partner', (f) => f.state === 'away', 15_000)
      .then(
        () => Date.now(),
        () => Number.POSITIVE_INFINITY,
      );
    await sleep(500);
    busy.live = busy.nodes.slice(1);
    const t0 = Date.now();
    victim.kill('SIGKILL');
    await victim.exited;
    const awayMs = (await away) - t0;
    const service = await fullService(busy, t0);
    log(`sigkill: partner away after ${awayMs} ms, full service after ${service} ms`);
    ghost.stop();
    waiter.stop();
    return [
      atMost('SIGKILL one instance: partner told away', awayMs, 6000, ' ms'),
      atMost('SIGKILL: time until every chat flows again', service, 6000 + 6000, ' ms'),
      ...(await finish(busy, 'SIGKILL', log)),
    ];
  } finally {
    await busy.close();
  }
}

/** Redis killed, down for a while, restarted empty: readiness, service and nothing lost. */
async function redisRestart(pairs: number, downMs: number, log: Log): Promise<Row[]> {
  const busy = await busyCluster(pairs, 200);
  // No instance died: a chatter told its partner is away means a live instance was taken for dead.
  let toldAway = 0;
  for (const c of [...busy.active].flat()) c.client.on('partner', (f) => void (f.state === 'away' && toldAway++));
  try {
    await sleep(500);
    const t0 = Date.now();
    await busy.redis.kill();
    const degraded = await readyAll(busy.nodes, 'degraded/down', t0);
    await sleep(downMs);
    await busy.redis.restart();
    const t1 = Date.now();
    const [back, service] = await Promise.all([readyAll(busy.nodes, 'ready/up', t1), fullService(busy, t1)]);
    log(`redis: degraded after ${degraded} ms, ready ${back} ms after restart, full service ${service} ms`);
    return [
      atMost('Redis killed: every instance degraded', degraded, 2000, ' ms'),
      atMost('Redis restarted: every instance ready again', back, 2000, ' ms'),
      atMost('Redis restarted: time until every chat flows again', service, 2000 + 3000, ' ms'),
      exactly('Redis restart: chatters told their partner was away (a live instance taken for dead)', toldAway, 0),
      ...(await finish(busy, 'Redis restart', log)),
    ];
  } finally {
    await busy.close();
  }
}

/** One instance loses Redis (its link through a TCP proxy is cut) and gets it back. */
async function partition(pairs: number, cutMs: number, log: Log): Promise<Row[]> {
  let proxy: TcpProxy | null = null;
  const busy = await busyCluster(pairs, 200, {}, async (redis) => {
    const port = Number(new URL(redis.url).port);
    proxy = await TcpProxy.start(port);
    const url = new URL(redis.url);
    url.port = String(proxy.port);
    return (i): Record<string, string> => (i === 0 ? { REDIS_URL: url.toString().replace(/\/$/, '') } : {});
  });
  const p = proxy as unknown as TcpProxy;
  try {
    await sleep(500);
    const t0 = Date.now();
    p.refuse(true);
    p.cut();
    const isolated = busy.nodes[0] as RelayProcess;
    const degraded = await readyAll([isolated], 'degraded/down', t0);
    await sleep(cutMs);
    p.refuse(false);
    const t1 = Date.now();
    const [back, service] = await Promise.all([readyAll([isolated], 'ready/up', t1), fullService(busy, t1)]);
    log(`partition: degraded after ${degraded} ms, ready ${back} ms after heal, full service ${service} ms`);
    return [
      atMost('partition instance-Redis: the instance degraded', degraded, 2000, ' ms'),
      atMost('partition healed: the instance ready again', back, 2000, ' ms'),
      atMost('partition healed: time until every chat flows again', service, 2000 + 3000, ' ms'),
      ...(await finish(busy, 'partition', log)),
    ];
  } finally {
    await busy.close();
    p.close();
  }
}

/** `nginx -s reload` while `sockets` are open through the gateway and some of them chat. */
async function nginxReload(sockets: number, log: Log): Promise<Row[]> {
  const httpsPort = await freePort();
  const cluster: LocalCluster = await startLocalCluster({
    instances: 3,
    httpsPort,
    httpPort: await freePort(),
    relayPorts: [await freePort(), await freePort(), await freePort()],
    redisPort: await freePort(),
    relayEnv: {
      MAX_CONNECTIONS_PER_ADDRESS: '0',
      MAX_SESSIONS_PER_ADDRESS: '0',
      DRAIN_GRACE_MS: '1000',
      LOG_LEVEL: 'warn',
    },
    limits: { wsConnectionsPerAddress: 5000, upgradesPerSecond: 5000, upgradesBurst: 5000 },
    workerShutdownTimeout: '3s',
    output: () => {},
  });
  const idle: TestClient[] = [];
  let pairs: [Chatter, Chatter][] = [];
  try {
    const ca = readFileSync(cluster.ca, 'utf8');
    const origin = `https://127.0.0.1:${httpsPort}`;
    const wss = (route: string) => `wss://127.0.0.1:${httpsPort}/ws?route=${route}`;
    const tls = { ca, origin };
    const chatting = Math.min(20, Math.floor(sockets / 20));
    for (let i = 0; i < sockets - 2 * chatting; i += 50)
      idle.push(
        ...(await Promise.all(
          Array.from({ length: Math.min(50, sockets - 2 * chatting - i) }, () =>
            TestClient.open(wss(randomBytes(12).toString('base64url')), tls),
          ),
        )),
      );
    let idleClosed = 0;
    for (const c of idle) void c.closed.then(() => idleClosed++);
    pairs = await chats(
      chatting,
      () => {
        const route = randomBytes(12).toString('base64url');
        return () => wss(route);
      },
      (u) => new WebSocket(u, { ca, headers: { Origin: origin } }) as unknown as WebSocketLike,
    );
    let on = true;
    const talk = (async () => {
      while (on) {
        for (const [a, b] of pairs) {
          a.say();
          b.say();
        }
        await sleep(100);
      }
    })();
    await sleep(500);
    const open = idle.length + 2 * pairs.length;
    const t0 = Date.now();
    await cluster.reloadNginx();
    // Old workers keep their sockets up to worker_shutdown_timeout (3 s here), then close them; clients resume.
    await sleep(4000);
    const mark = new Map(pairs.flat().map((c) => [c, c.received.length]));
    const deadline = Date.now() + 20_000;
    while (
      Date.now() < deadline &&
      !pairs.flat().every((c) => c.client.connected && c.received.length > (mark.get(c) as number))
    )
      await sleep(25);
    const service = Date.now() - t0;
    on = false;
    await talk;
    await settle(pairs, 20_000);
    const t = tally(pairs);
    log(`nginx reload: ${open} sockets, ${idleClosed} idle closed, chats flow ${service} ms after reload`);
    return [
      {
        test: `nginx -s reload: sockets open at the reload (of ${fmt(sockets)}), idle ones dropped`,
        figure: `${fmt(open)} open; ${fmt(idleClosed)} of ${fmt(idle.length)} idle dropped by the old workers (3 s)`,
        pass: open >= sockets,
      },
      atMost('nginx reload: time until every chat flows again', service, 3000 + 6000, ' ms'),
      ...deliveryRows('nginx reload', t),
    ];
  } finally {
    for (const c of idle) c.close();
    for (const [a, b] of pairs) {
      a.stop();
      b.stop();
    }
    await cluster.stop();
  }
}

export const faultSteps = { slowConsumer, rollingRestart, sigkill, redisRestart, partition, nginxReload };

export const faults: Check = {
  name: 'faults',
  async run({ quick, log }) {
    const pairs = quick ? 12 : 60;
    const steps: [string, () => Promise<Row[]>][] = [
      ['slow consumer', () => slowConsumer(quick, log)],
      ['SIGKILL', () => sigkill(pairs, log)],
      ['Redis restart', () => redisRestart(pairs, quick ? 2000 : 8000, log)],
      ['partition', () => partition(pairs, quick ? 2000 : 8000, log)],
      ['nginx reload', () => nginxReload(quick ? 200 : 1000, log)],
    ];
    if (!quick) steps.splice(1, 0, ['rolling restart', () => rollingRestart(pairs, log)]);
    const rows: Row[] = [];
    for (const [name, step] of steps) {
      const t0 = Date.now();
      try {
        rows.push(...(await step()));
      } catch (err) {
        rows.push({ test: `${name}: ran to its end`, figure: String((err as Error)?.message ?? err), pass: false });
      }
      log(`${name}: ${Math.round((Date.now() - t0) / 1000)} s`);
    }
    return rows;
  },
};
