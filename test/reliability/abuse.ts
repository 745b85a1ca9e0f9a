/**
 * Abuse: attacks measured with figures, each while a bystander chat goes on.
 * Against one relay process: cross-site WebSocket hijacking (look-alike
 * Origins), resume-token forgery, a message flood, connection and ghost-session
 * floods from one address, invite-code guessing and report abuse. Through the
 * nginx gateway (startLocalCluster): a connection flood from one address and
 * slowloris (hundreds of connections trickling their TLS handshake or their
 * headers). Every row counts what the attacker got (0, or at most the
 * documented cap) and what the bystander lost (0) and felt (p99).
 *
 * The unit tests (handshake, resume, rate-limits, limits, invites,
 * gateway-limits) show each rule once; this runs them as attacks, with numbers.
 */
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { connect as netConnect, type Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import WebSocket from 'ws';
import { startLocalCluster } from '../../deploy/cluster.js';
import { DEFAULT_LIMITS } from '../../deploy/nginx-config.js';
import type { SocketFactory, WebSocketLike } from '../../src/client.js';
import { settings } from '../../src/config.js';
import { freePort } from '../fixtures/redis.js';
import { type RelayProcess, spawnRelay } from '../fixtures/relay-process.js';
import { sleep, TestClient } from '../fixtures/ws-client.js';
import { Bystander, type BystanderReport } from './bystander.js';
import { Canaries, describeHits } from './canary.js';
import { atMost, type Check, type CheckOptions, exactly, fmt, type Row } from './table.js';

/**
 * The bystander's p99 during an attack must stay under this. A chat that answers within a quarter of a second
 * still feels instant; the machine is a shared 2-vCPU box and the attacker runs in the same process as the
 * bystander, so a bound relative to the quiet p99 (a few ms) would measure the neighbours, not the relay.
 */
export const P99_BOUND_MS = 250;
/**
 * Each side of the bystander says something this often: 13 messages a second, within RATE_LIMIT_PER_SEC (20).
 * (Faster, the typed client's own pacing queues them and the latency measured is that queue's, not the relay's.)
 */
export const BYSTANDER_EVERY_MS = 75;
/** The shortest 'during' window. */
const MIN_DURING_MS = 1000;
/** How much later than nginx's client_header_timeout a trickling connection may still be open (timer slack, load). */
const SLOWLORIS_SLACK_MS = 3000;
const CLIENT_HEADER_TIMEOUT_MS = 10_000; // nginx/nginx.conf.template
const ALLOWED = 'http://localhost:8080';
/** Short, so a dropped session's token can be tried after its window within the run. */
const RESUME_WINDOW_MS = 1500;
const D = (key: keyof typeof settings) => settings[key].def as number;

export interface AbuseSizes {
  quietMs: number;
  forgeries: number;
  floodFrames: number;
  floodSeconds: number;
  connAttempts: number;
  ghostHellos: number;
  guessSockets: number;
  guessSeconds: number;
  reports: number;
  slowloris: number;
  gatewayConnAttempts: number;
}

/** For `npm test` (test/reliability-abuse.test.ts): every attack, small. */
export const TINY: AbuseSizes = {
  quietMs: 300,
  forgeries: 8,
  floodFrames: 100,
  floodSeconds: 1,
  connAttempts: 30,
  ghostHellos: 60,
  guessSockets: 2,
  guessSeconds: 1,
  reports: 2,
  slowloris: 10,
  gatewayConnAttempts: 30,
};
const QUICK: AbuseSizes = {
  quietMs: 700,
  forgeries: 24,
  floodFrames: 300,
  floodSeconds: 2,
  connAttempts: 60,
  ghostHellos: 120,
  guessSockets: 5,
  guessSeconds: 1,
  reports: 4,
  slowloris: 80,
  gatewayConnAttempts: 60,
};
const FULL: AbuseSizes = {
  quietMs: 2000,
  forgeries: 256,
  floodFrames: 2000,
  floodSeconds: 8,
  connAttempts: 300,
  ghostHellos: 1000,
  guessSockets: 20,
  guessSeconds: 5,
  reports: 12,
  slowloris: 400,
  gatewayConnAttempts: 200,
};

/** Runs `attack` while a bystander chats on `url`; the bystander's rows follow the attack's. */
async function underAttack(
  name: string,
  url: () => string,
  sizes: AbuseSizes,
  attack: () => Promise<Row[]>,
  createSocket?: SocketFactory,
): Promise<Row[]> {
  const bystander = await Bystander.start(url, BYSTANDER_EVERY_MS, createSocket);
  await sleep(sizes.quietMs);
  bystander.window('during');
  const started = Date.now();
  let rows: Row[];
  try {
    rows = await attack();
  } catch (err) {
    rows = [{ test: `${name}: the attack ran to its end`, figure: String((err as Error)?.stack ?? err), pass: false }];
  }
  // A quick attack still gets a window with enough of the bystander's messages for a p99.
  await sleep(MIN_DURING_MS - (Date.now() - started));
  const r = await bystander.stop();
  return [...rows, ...bystanderRows(name, r)];
}

function bystanderRows(name: string, r: BystanderReport): Row[] {
  const before = r.p99.before ?? Number.NaN;
  const during = r.p99.during ?? Number.NaN;
  return [
    {
      test: `${name}: bystander lost, duplicated or reordered`,
      figure: `${fmt(r.lost + r.duplicated + r.reordered)} of ${fmt(r.sent)} sent`,
      pass: r.lost + r.duplicated + r.reordered === 0 && r.sent > 0,
    },
    {
      test: `${name}: bystander p99 during (before)`,
      figure: `${fmt(during)} ms (${fmt(before)} ms; at most ${P99_BOUND_MS} ms)`,
      pass: during <= P99_BOUND_MS,
    },
  ];
}

/** Opens a socket; the socket if upgraded, else the HTTP status (0: no answer). */
function upgrade(url: string, opts: { origin?: string; localAddress?: string; ca?: string } = {}) {
  return new Promise<WebSocket | number>((resolve) => {
    const ws = new WebSocket(url, {
      ...(opts.origin !== undefined ? { headers: { Origin: opts.origin } } : {}),
      ...(opts.localAddress ? { localAddress: opts.localAddress } : {}),
      ...(opts.ca ? { ca: opts.ca } : {}),
    });
    ws.once('open', () => resolve(ws));
    ws.once('unexpected-response', (_req, res) => {
      resolve(res.statusCode ?? 0);
      res.resume();
    });
    ws.once('error', () => resolve(0));
  });
}

function postInvite(http: string, origin?: string, localAddress?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest(
      `${http}/api/v1/invites`,
      { method: 'POST', headers: origin ? { Origin: origin } : {}, ...(localAddress ? { localAddress } : {}) },
      (res) => {
        let body = '';
        res.on('data', (d: Buffer) => {
          body += d.toString();
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      },
    );
    req.on('error', reject);
    req.end();
  });
}

async function gauge(http: string, name: string): Promise<number> {
  const text = await (await fetch(`${http}/metrics`)).text();
  const m = new RegExp(`^${name} (\\d+(?:\\.\\d+)?)$`, 'm').exec(text);
  if (!m) throw new Error(`no ${name} in /metrics`);
  return Number(m[1]);
}

/** Says hello; the welcome, or the close code if the socket was closed instead. */
async function helloOrClose(c: TestClient, frame: Record<string, unknown> = { type: 'hello', v: 1 }) {
  c.send(frame);
  return Promise.race([c.next('welcome', 5000), c.closed.then((x) => x.code)]);
}

/**
 * `n` attempts, 10 at a time: the attacker's client runs in this process, with the bystander, and 60 TLS
 * handshakes at once would stall this event loop by themselves (measuring the test, not the relay).
 */
async function inBatches<T>(n: number, attempt: (i: number) => Promise<T>): Promise<T[]> {
  const out: T[] = [];
  for (let i = 0; i < n; i += 10)
    out.push(...(await Promise.all(Array.from({ length: Math.min(10, n - i) }, (_, j) => attempt(i + j)))));
  return out;
}

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const randomCode = () => Array.from(randomBytes(10), (b) => CROCKFORD[b & 31]).join('');

// ---------------------------------------------------------------------------
// One relay process.

async function origins(relay: RelayProcess): Promise<Row[]> {
  const hostile = [
    'http://localhost.evil.com',
    'http://evil-localhost:8080',
    'https://localhost:8080.evil',
    'http://localhost:8080.evil.com',
    'http://localhost:8080@evil.com',
    'http://evil.com/http://localhost:8080',
    'null',
    'https://localhost:8080',
    'ws://localhost:8080',
    'http://localhost:8081',
    'http://localhost',
    'http://sub.localhost:8080',
    'http://127.0.0.1:8080',
    'http://localhost:8080/',
    'http://LOCALHOST:8080',
    'http://localhost:8080,http://evil.com',
    'file://',
  ];
  let wsAccepted = 0;
  const through: string[] = [];
  let wsRefused403 = 0;
  let inviteAccepted = 0;
  for (const origin of hostile) {
    const r = await upgrade(relay.url, { origin, localAddress: '127.0.0.11' });
    if (typeof r !== 'number') {
      wsAccepted++;
      through.push(JSON.stringify(origin));
      r.terminate();
    } else if (r === 403) wsRefused403++;
    const inv = await postInvite(relay.http, origin, '127.0.0.11');
    if (inv.status === 201) {
      inviteAccepted++;
      through.push(`invite ${JSON.stringify(origin)}`);
    }
  }
  // The control: the allowed Origin, and no Origin at all (a non-browser client, allowed as documented).
  let control = 0;
  for (const origin of [ALLOWED, undefined]) {
    const r = await upgrade(relay.url, { ...(origin ? { origin } : {}), localAddress: '127.0.0.12' });
    if (typeof r !== 'number') {
      control++;
      r.terminate();
    }
  }
  return [
    {
      test: 'cross-site WebSocket hijacking: look-alike Origins upgraded',
      figure: `${wsAccepted} of ${hostile.length} (403: ${wsRefused403})${through.length ? `; through: ${through.join(', ')}` : ''}`,
      pass: wsAccepted === 0 && wsRefused403 === hostile.length,
    },
    exactly('cross-site invite creation: look-alike Origins answered 201', inviteAccepted, 0),
    exactly('the allowed Origin and no Origin (non-browser) upgraded', control, 2),
  ];
}

async function forgery(relay: RelayProcess, sizes: AbuseSizes): Promise<Row[]> {
  const from = { localAddress: '127.0.0.21' };
  // The victim: in a chat with a partner, both connected. A session that expires and one that leaves, too.
  const [victim, vw] = await TestClient.hello(relay.url, from);
  const [partner, pw] = await TestClient.hello(relay.url, from);
  victim.send({ type: 'find' });
  await victim.next('queued');
  partner.send({ type: 'find' });
  await victim.next('matched');
  await partner.next('matched');
  // On their own address, so the forgeries' fresh sessions never evict it before its window ends.
  const [expiring, ew] = await TestClient.hello(relay.url, { localAddress: '127.0.0.22' });
  const [expPartner] = await TestClient.hello(relay.url, { localAddress: '127.0.0.22' });
  expiring.send({ type: 'find' });
  await expiring.next('queued');
  expPartner.send({ type: 'find' });
  await expiring.next('matched');
  expiring.close(); // a drop: it waits RESUME_WINDOW_MS, then is gone
  const droppedAt = Date.now();
  const [leaving, lw] = await TestClient.hello(relay.url, from);
  leaving.ws.close(1000); // left: never resumable
  await leaving.closed;

  const b64 = (buf: Buffer) => buf.toString('base64url');
  const real = Buffer.from(vw.token, 'base64url');
  const attempts: { what: string; id: string; token: string }[] = [];
  for (let i = 0; i < sizes.forgeries; i++) attempts.push({ what: 'random', id: vw.id, token: b64(randomBytes(32)) });
  for (let i = 0; i < sizes.forgeries; i++) {
    const bit = Math.floor((i * real.length * 8) / sizes.forgeries);
    const flipped = Buffer.from(real);
    flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7));
    attempts.push({ what: 'one bit flipped', id: vw.id, token: b64(flipped) });
  }
  attempts.push({ what: "another session's token", id: vw.id, token: pw.token });
  attempts.push({ what: "the victim's token for another id", id: pw.id, token: vw.token });
  attempts.push({ what: 'a token of a session that left', id: lw.id, token: lw.token });
  let successes = 0;
  let fresh = 0;
  let answered = 0;
  const tryOne = async (id: string, token: string) => {
    const c = await TestClient.open(relay.url, from);
    const w = await helloOrClose(c, { type: 'hello', v: 1, resume: { id, token, lastSeq: 0 } });
    if (typeof w !== 'number') {
      answered++;
      if (w.resumed || w.id === id) successes++;
      else fresh++;
    }
    c.close();
  };
  for (const a of attempts) await tryOne(a.id, a.token);
  // The expired one: the right token, after the resume window.
  await sleep(Math.max(0, droppedAt + RESUME_WINDOW_MS + 300 - Date.now()));
  await tryOne(ew.id, ew.token);
  const total = attempts.length + 1;
  const victimUndisturbed =
    victim.ws.readyState === WebSocket.OPEN && partner.all('partner').length === 0 && victim.all('error').length === 0;
  victim.close();
  partner.close();
  expPartner.close();
  return [
    {
      test: 'resume-token forgery: sessions taken over',
      figure: `${successes} of ${total} (random ${sizes.forgeries}, bit flips ${sizes.forgeries}, other session's, after leave, after expiry)`,
      pass: successes === 0 && answered === total,
    },
    exactly('resume-token forgery: answered with a fresh identity (no error, no close)', fresh, total),
    exactly("resume-token forgery: the victim's chat disturbed", victimUndisturbed ? 0 : 1, 0),
  ];
}

async function messageFlood(relay: RelayProcess, sizes: AbuseSizes, canaries: Canaries): Promise<Row[]> {
  const from = { localAddress: '127.0.0.31' };
  const [flooder, fw] = await TestClient.hello(relay.url, from);
  const [partner] = await TestClient.hello(relay.url, { localAddress: '127.0.0.32' });
  flooder.send({ type: 'find' });
  await flooder.next('queued');
  partner.send({ type: 'find' });
  await flooder.next('matched');
  await partner.next('matched');
  const floodAfter = D('floodCloseAfter');
  const burst = D('rateLimitBurst');
  const rate = D('rateLimitPerSec');
  // First burst: everything at once on one socket.
  const body = canaries.make('body');
  for (let i = 0; i < sizes.floodFrames; i++) flooder.send({ type: 'msg', id: `f${i}`, body });
  const close = await flooder.closeEvent(10_000).catch(() => ({ code: 0, reason: '' }));
  const refusedFirst = flooder.all('error').filter((e) => e.code === 'rate_limited').length;
  const acceptedFirst = flooder.all('sent').length;
  // Then the same session comes back and floods again, for floodSeconds: its bucket is the session's.
  const started = Date.now();
  let offered = sizes.floodFrames;
  let closes = close.code === 4429 ? 1 : 0;
  let accepted = acceptedFirst;
  let refused = refusedFirst;
  let n = sizes.floodFrames;
  while (Date.now() - started < sizes.floodSeconds * 1000) {
    const c = await TestClient.open(relay.url, from);
    const w = await helloOrClose(c, { type: 'hello', v: 1, resume: { id: fw.id, token: fw.token, lastSeq: 0 } });
    if (typeof w === 'number' || !w.resumed) throw new Error(`the flooder could not resume: ${JSON.stringify(w)}`);
    const perRound = Math.min(sizes.floodFrames, 200);
    for (let i = 0; i < perRound; i++) c.send({ type: 'msg', id: `f${n++}`, body });
    offered += perRound;
    const cc = await c.closeEvent(10_000).catch(() => ({ code: 0, reason: '' }));
    if (cc.code === 4429) closes++;
    accepted += c.all('sent').length;
    refused += c.all('error').filter((e) => e.code === 'rate_limited').length;
    await sleep(200);
  }
  const seconds = (Date.now() - started) / 1000;
  await sleep(300);
  const relayed = partner.all('msg').length;
  partner.close();
  // Every round ends in a close: the FLOOD_CLOSE_AFTER-th refusal in a row closes, the ones before are answered.
  const rounds = closes;
  return [
    {
      test: 'message flood: closed with 4429 after FLOOD_CLOSE_AFTER refusals in a row',
      figure: `first close ${close.code} after ${refusedFirst + 1} refusals (FLOOD_CLOSE_AFTER ${floodAfter}), ${acceptedFirst} accepted of ${sizes.floodFrames} offered`,
      pass: close.code === 4429 && refusedFirst + 1 === floodAfter && acceptedFirst <= burst + 1,
    },
    atMost(
      `message flood: relayed to the partner in ${fmt(Math.round(seconds * 10) / 10)} s of resume-and-flood (offered ${fmt(offered)}, refused ${fmt(refused)}, closed ${rounds}x)`,
      relayed,
      Math.ceil(burst + rate * (seconds + 1)),
      ' msgs',
    ),
    exactly('message flood: relayed = acknowledged to the flooder', relayed, accepted),
  ];
}

async function connectionFlood(relay: RelayProcess, sizes: AbuseSizes): Promise<Row[]> {
  const cap = D('maxConnectionsPerAddress');
  const results = await inBatches(sizes.connAttempts, () => upgrade(relay.url, { localAddress: '127.0.0.41' }));
  const open = results.filter((r): r is WebSocket => typeof r !== 'number');
  const refused429 = results.filter((r) => r === 429).length;
  // Someone else, meanwhile.
  const other = await upgrade(relay.url, { localAddress: '127.0.0.42' });
  const otherOk = typeof other !== 'number';
  if (otherOk) other.terminate();
  for (const ws of open) ws.terminate();
  return [
    {
      test: 'connection flood from one address: upgraded (MAX_CONNECTIONS_PER_ADDRESS)',
      figure: `${open.length} of ${sizes.connAttempts} (cap ${cap}; refused 429: ${refused429})`,
      pass: open.length === cap && refused429 === sizes.connAttempts - cap,
    },
    exactly('connection flood: another address upgraded meanwhile', otherOk ? 1 : 0, 1),
  ];
}

async function ghostFlood(relay: RelayProcess, sizes: AbuseSizes): Promise<Row[]> {
  const cap = D('maxSessionsPerAddress');
  // Let earlier attacks' sessions expire from the count first.
  const base = await gauge(relay.http, 'relay_sessions');
  let welcomed = 0;
  let refused = 0;
  const codes = new Map<number, number>();
  const from = { localAddress: '127.0.0.43' };
  // Hellos without find, each socket dropped: every one leaves an away session behind (UNUSED_RESUME_WINDOW_MS).
  const one = async () => {
    const c = await TestClient.open(relay.url, from).catch(() => null);
    if (!c) return void refused++;
    const w = await helloOrClose(c);
    if (typeof w === 'number') codes.set(w, (codes.get(w) ?? 0) + 1);
    else welcomed++;
    c.close();
  };
  for (let i = 0; i < sizes.ghostHellos; i += 10) await Promise.all(Array.from({ length: 10 }, one));
  await sleep(100);
  const held = (await gauge(relay.http, 'relay_sessions')) - base;
  const [other] = await TestClient.hello(relay.url, { localAddress: '127.0.0.44' }).catch(() => [null]);
  other?.close();
  return [
    atMost(
      `ghost sessions (${fmt(sizes.ghostHellos)} hellos, no find, dropped) held by one address (welcomed ${welcomed}, refused ${refused + [...codes.values()].reduce((a, b) => a + b, 0)})`,
      held,
      cap,
      ' sessions',
    ),
    exactly('ghost sessions: another address said hello meanwhile', other ? 1 : 0, 1),
  ];
}

async function inviteGuessing(relay: RelayProcess, sizes: AbuseSizes, canaries: Canaries): Promise<Row[]> {
  // Real codes to hit: a few open invites.
  const open: string[] = [];
  for (let i = 0; i < 5; i++) {
    const r = await postInvite(relay.http, ALLOWED, '127.0.0.52');
    if (r.status === 201) open.push((JSON.parse(r.body) as { code: string }).code);
  }
  const rate = D('rateLimitPerSec');
  const burst = D('rateLimitBurst');
  let guesses = 0;
  let unknown = 0;
  let joined = 0;
  let limited = 0;
  let closed = 0;
  const started = Date.now();
  const socket = async () => {
    const [c] = await TestClient.hello(relay.url, { localAddress: '127.0.0.51' });
    // A careful guesser: its whole burst, then exactly the refill rate.
    const deadline = Date.now() + sizes.guessSeconds * 1000;
    let sent = 0;
    while (Date.now() < deadline && c.ws.readyState === WebSocket.OPEN) {
      const allowed =
        burst - 2 + Math.floor(((Date.now() - (deadline - sizes.guessSeconds * 1000)) / 1000) * rate * 0.9);
      while (sent < allowed) {
        const code = randomCode();
        canaries.add('invite', code);
        c.send({ type: 'join', code });
        sent++;
      }
      await sleep(50);
    }
    await sleep(200);
    guesses += sent;
    unknown += c.all('error').filter((e) => e.code === 'invite_unknown').length;
    limited += c.all('error').filter((e) => e.code === 'rate_limited').length;
    joined += c.all('queued').length + c.all('matched').length;
    if (c.ws.readyState !== WebSocket.OPEN) closed++;
    c.close();
  };
  await Promise.all(Array.from({ length: sizes.guessSockets }, socket));
  const seconds = (Date.now() - started) / 1000;
  const perSecond = guesses / seconds;
  // The odds: each guess hits one of `open` codes in 2^50; at MAX_INVITES open codes, the expected years to one hit.
  const perSocket = perSecond / sizes.guessSockets;
  const years = 2 ** 50 / (perSocket * D('maxConnectionsPerAddress') * D('maxInvites')) / (365 * 86_400);
  return [
    exactly(
      `invite guessing: codes joined (${fmt(guesses)} guesses from one address, ${sizes.guessSockets} sockets, ${open.length} codes open)`,
      joined,
      0,
    ),
    {
      test: 'invite guessing: every wrong guess refused with invite_unknown',
      figure: `${fmt(unknown)} of ${fmt(guesses)} (rate_limited ${limited}, sockets closed ${closed})`,
      pass: unknown === guesses && guesses > 0,
    },
    atMost(
      `invite guessing: guesses answered per second per socket (one address, ${D('maxConnectionsPerAddress')} sockets, ${fmt(D('maxInvites'))} codes open: ≈${fmt(Math.round(years * 100) / 100)} years to one hit)`,
      Math.round(perSocket * 10) / 10,
      rate + burst / sizes.guessSeconds,
      '/s',
    ),
  ];
}

async function reportAbuse(relay: RelayProcess, sizes: AbuseSizes): Promise<Row[]> {
  const threshold = D('reportThreshold');
  // A pair meets at random (nobody else is queued: the bystander is chatting), and `reporter` reports.
  const meetAndReport = async (reporterAddr: string, victimAddr: string) => {
    const [r] = await TestClient.hello(relay.url, { localAddress: reporterAddr });
    const [v] = await TestClient.hello(relay.url, { localAddress: victimAddr });
    r.send({ type: 'find' });
    await r.next('queued');
    v.send({ type: 'find' });
    await r.next('matched');
    await v.next('matched');
    r.send({ type: 'report' });
    await r.next('ended');
    r.ws.close(1000);
    v.ws.close(1000);
  };
  /** Whether a new session from `addr` can `find` (queued) or is on cool-down. */
  const canFind = async (addr: string) => {
    const [c] = await TestClient.hello(relay.url, { localAddress: addr });
    c.send({ type: 'find' });
    const f = await Promise.race([c.next('queued').then(() => true), c.next('error').then(() => false)]);
    c.ws.close(1000);
    return f;
  };
  // One address reports many partners (new tabs, each time), all on one victim address.
  for (let i = 0; i < sizes.reports; i++) await meetAndReport('127.0.0.61', '127.0.0.62');
  const victimFree = await canFind('127.0.0.62');
  // The control: `threshold` different addresses report one victim address: it is put on cool-down.
  for (let i = 0; i < threshold; i++) await meetAndReport(`127.0.0.${63 + i}`, '127.0.0.70');
  const controlFree = await canFind('127.0.0.70');
  return [
    exactly(
      `report abuse: ${sizes.reports} reports from one address put their partners' address on cool-down (REPORT_THRESHOLD ${threshold} addresses)`,
      victimFree ? 0 : 1,
      0,
    ),
    exactly(
      `report abuse control: ${threshold} reporting addresses put the reported address on cool-down`,
      controlFree ? 0 : 1,
      1,
    ),
  ];
}

// ---------------------------------------------------------------------------
// Through nginx.

/** Holds `n` connections that trickle one byte a second and never finish; resolves with how long each stayed open. */
async function slowloris(
  n: number,
  port: number,
  ca: string,
  localAddress: string,
  log: (line: string) => void,
): Promise<{ handshake: number[]; headers: number[]; neverClosed: number }> {
  const handshake: number[] = [];
  const headers: number[] = [];
  const sockets: Socket[] = [];
  let neverClosed = 0;
  const waits: Promise<void>[] = [];
  const trickle = (s: Socket, bytes: Buffer) => {
    let i = 0;
    const timer = setInterval(() => {
      if (s.destroyed || i >= bytes.length) return clearInterval(timer);
      s.write(bytes.subarray(i, i + 1));
      i++;
    }, 1000);
    s.once('close', () => clearInterval(timer));
  };
  const deadline = CLIENT_HEADER_TIMEOUT_MS * 2 + SLOWLORIS_SLACK_MS;
  for (let i = 0; i < n; i++) {
    const tlsPhase = i % 2 === 0;
    waits.push(
      new Promise<void>((resolve) => {
        const start = Date.now();
        let from = start;
        const done = (list: number[]) => {
          list.push(Date.now() - from);
          resolve();
        };
        const guard = setTimeout(() => {
          neverClosed++;
          resolve();
        }, deadline);
        if (tlsPhase) {
          // A TLS record header and then nothing useful: the handshake never completes.
          const s = netConnect({ host: '127.0.0.1', port, localAddress });
          sockets.push(s);
          s.on('error', () => {});
          s.once('connect', () => {
            from = Date.now();
            trickle(
              s,
              Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00, 0x01, 0xfc, 0x03, 0x03, ...randomBytes(32)]),
            );
          });
          s.once('close', () => {
            clearTimeout(guard);
            done(handshake);
          });
        } else {
          // A finished TLS handshake, then a request line and headers one byte a second, never the blank line.
          const raw = netConnect({ host: '127.0.0.1', port, localAddress });
          raw.on('error', () => {});
          const s = tlsConnect({ socket: raw, ca, host: '127.0.0.1' });
          sockets.push(s);
          s.on('error', () => {});
          s.once('secureConnect', () => {
            from = Date.now();
            trickle(
              s,
              Buffer.from(`GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: websocket\r\nX-${'a'.repeat(200)}`),
            );
          });
          s.once('close', () => {
            clearTimeout(guard);
            done(headers);
          });
        }
      }),
    );
    if (i % 20 === 19) await sleep(50); // spread the TLS handshakes a little
  }
  log(`slowloris: ${n} connections trickling`);
  await Promise.all(waits);
  for (const s of sockets) s.destroy();
  return { handshake, headers, neverClosed };
}

async function gateway(opts: CheckOptions, sizes: AbuseSizes): Promise<Row[]> {
  const httpsPort = await freePort();
  const cluster = await startLocalCluster({
    instances: 1,
    httpsPort,
    httpPort: await freePort(),
    relayPorts: [await freePort()],
    redisPort: await freePort(),
    relayEnv: { LOG_LEVEL: 'warn', DRAIN_GRACE_MS: '0' },
    output: () => {},
  });
  const rows: Row[] = [];
  try {
    const ca = readFileSync(cluster.ca, 'utf8');
    const wss = `wss://127.0.0.1:${httpsPort}/ws`;
    const viaNginx: SocketFactory = (u) => new WebSocket(u, { ca }) as unknown as WebSocketLike;
    const url = () => `${wss}?route=bystander`;

    opts.log('gateway: connection flood');
    rows.push(
      ...(await underAttack(
        'gateway connection flood',
        url,
        sizes,
        async () => {
          const cap = DEFAULT_LIMITS.wsConnectionsPerAddress;
          const results = await inBatches(sizes.gatewayConnAttempts, (i) =>
            upgrade(`${wss}?route=f${i}`, { ca, localAddress: '127.0.0.81' }),
          );
          const open = results.filter((r): r is WebSocket => typeof r !== 'number');
          const refused429 = results.filter((r) => r === 429).length;
          for (const ws of open) ws.terminate();
          return [
            {
              test: 'gateway connection flood from one address: upgraded',
              figure: `${open.length} of ${sizes.gatewayConnAttempts} (cap ${cap}; refused 429: ${refused429})`,
              pass: open.length <= cap && open.length > 0 && refused429 === sizes.gatewayConnAttempts - open.length,
            },
          ];
        },
        viaNginx,
      )),
    );

    opts.log('gateway: slowloris');
    rows.push(
      ...(await underAttack(
        'slowloris',
        url,
        sizes,
        async () => {
          const attack = slowloris(sizes.slowloris, httpsPort, ca, '127.0.0.91', opts.log);
          // A normal client in the middle of it.
          await sleep(3000);
          const t0 = Date.now();
          const [c] = await TestClient.hello(`${wss}?route=late`, { ca, localAddress: '127.0.0.92' }).catch(() => [
            null,
          ]);
          const lateMs = Date.now() - t0;
          c?.close();
          const r = await attack;
          const all = [...r.handshake, ...r.headers];
          const bound = CLIENT_HEADER_TIMEOUT_MS + SLOWLORIS_SLACK_MS;
          const past = all.filter((ms) => ms > bound).length + r.neverClosed;
          const max = (xs: number[]) => (xs.length ? Math.max(...xs) : 0);
          return [
            {
              test: `slowloris: connections held past client_header_timeout ${CLIENT_HEADER_TIMEOUT_MS / 1000} s (+${SLOWLORIS_SLACK_MS / 1000} s)`,
              figure: `${past} of ${sizes.slowloris} (longest: TLS handshake ${fmt(max(r.handshake) / 1000)} s, headers ${fmt(max(r.headers) / 1000)} s)`,
              pass: past === 0 && all.length === sizes.slowloris,
            },
            {
              test: 'slowloris: a new client said hello during it',
              figure: c ? `yes, in ${lateMs} ms` : 'no',
              pass: c !== null,
            },
          ];
        },
        viaNginx,
      )),
    );
  } finally {
    await cluster.stop();
  }
  return rows;
}

export const abuse: Check = {
  name: 'abuse',
  run: (opts) => runAbuse(opts, opts.quick ? QUICK : FULL),
};

export async function runAbuse(opts: CheckOptions, sizes: AbuseSizes): Promise<Row[]> {
  {
    const canaries = new Canaries();
    const relay = await spawnRelay({
      ALLOWED_ORIGINS: ALLOWED,
      RESUME_WINDOW_MS: String(RESUME_WINDOW_MS),
      REMATCH_COOLDOWN_MS: '0',
      LOG_LEVEL: 'debug',
      DRAIN_GRACE_MS: '0',
    });
    const rows: Row[] = [];
    try {
      const url = () => relay.url;
      const attacks: [string, () => Promise<Row[]>][] = [
        ['cross-site origins', () => origins(relay)],
        // Before anything leaves away sessions that could expire during it and hide its count.
        ['ghost sessions', () => ghostFlood(relay, sizes)],
        ['token forgery', () => forgery(relay, sizes)],
        ['message flood', () => messageFlood(relay, sizes, canaries)],
        ['connection flood', () => connectionFlood(relay, sizes)],
        ['invite guessing', () => inviteGuessing(relay, sizes, canaries)],
        ['report abuse', () => reportAbuse(relay, sizes)],
      ];
      for (const [name, attack] of attacks) {
        opts.log(name);
        rows.push(...(await underAttack(name, url, sizes, attack)));
      }
      const alive = relay.child.exitCode === null && relay.child.signalCode === null;
      rows.push(exactly('the relay process survived every attack (exits)', alive ? 0 : 1, 0));
      const logText = `${relay.logs.map((l) => JSON.stringify(l)).join('\n')}\n${relay.stderr()}`;
      const hits = canaries.scan(logText);
      rows.push({
        test: `attack canaries (${canaries.size}: flood bodies, guessed codes) in the relay's log`,
        figure: describeHits(hits),
        pass: hits.length === 0,
      });
    } finally {
      relay.kill('SIGKILL');
      await relay.exited;
    }
    rows.push(...(await gateway(opts, sizes)));
    return rows;
  }
}
