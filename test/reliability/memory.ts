/**
 * Memory over time: waves of ordinary visitors (connect, say hello, find a
 * partner, exchange a few messages, leave the chat, close the page), against one relay process and
 * against three over one redis-server. After each wave every session and
 * socket must be gone; then a full GC is forced in every relay process
 * (through the inspector, relay-stats.ts) and its V8 heap used and resident
 * memory are read. What a wave leaves behind must not pile up: after the last
 * wave both are back near their level after the first.
 */
import { TestClient } from '../fixtures/ws-client.js';
import { SHORT_WINDOWS, sourceAddress } from './hammer.js';
import { collectGarbage, type HeapFigures, health, mb, pollUntil, startTarget, type Target } from './relay-stats.js';
import { type Check, type CheckOptions, fmt, type Row } from './table.js';

export interface MemoryOptions {
  waves: number;
  clients: number;
  messages: number;
  instances: readonly (1 | 3)[];
  /** Heap used after the last wave may exceed the first wave's by this percentage, or this many MB (whichever is larger). */
  heapPercent: number;
  heapMb: number;
  rssPercent: number;
  rssMb: number;
}

export function memoryOptions(quick: boolean): MemoryOptions {
  return {
    waves: quick ? 4 : 10,
    clients: quick ? 300 : 2000,
    messages: 3,
    instances: [1, 3],
    heapPercent: 5,
    heapMb: 1,
    rssPercent: 10,
    rssMb: 10,
  };
}

/** `fn` over `items`, at most `limit` at a time. */
async function pool<T, R>(items: readonly T[], limit: number, fn: (x: T, i: number) => Promise<R>): Promise<R[]> {
  const out: R[] = new Array(items.length);
  let next = 0;
  await Promise.all(
    Array.from({ length: Math.min(limit, items.length) }, async () => {
      while (next < items.length) {
        const i = next++;
        out[i] = await fn(items[i] as T, i);
      }
    }),
  );
  return out;
}

interface WaveResult {
  chats: number;
  delivered: number;
  clean: boolean;
}

/** One wave: `clients` visitors pair up, each says `messages` things and reads its partner's, then all leave. */
async function wave(target: Target, clients: number, messages: number): Promise<WaveResult> {
  const slots = Array.from({ length: clients }, (_, i) => i);
  const conns = await pool(slots, 100, async (i) => {
    const [c] = await TestClient.hello(target.url(i), { localAddress: sourceAddress(i) });
    return c;
  });
  try {
    const chats = new Set<string>();
    await pool(conns, 200, async (c) => {
      c.send({ type: 'find' });
      chats.add((await c.next('matched', 30_000)).chat);
    });
    let delivered = 0;
    await pool(conns, 200, async (c, i) => {
      for (let k = 0; k < messages; k++) c.send({ type: 'msg', id: `w${i}-${k}`, body: `wave message ${k} from ${i}` });
      for (let k = 0; k < messages; k++) {
        const m = await c.next('msg', 30_000);
        c.send({ type: 'ack', seq: m.seq });
        delivered++;
      }
    });
    // One side of each chat clicks "leave" (the chat ends for both, and the pair is remembered for the
    // rematch cool-down), then both close the page.
    await pool(conns, 200, async (c) => {
      if (c.all('matched')[0]?.initiator) c.send({ type: 'leave' });
      await c.next('ended', 30_000);
    });
    for (const c of conns) c.ws.close(1000);
    await pool(conns, 500, (c) => c.closeEvent(10_000).catch(() => c.close()));
    const left = await pollUntil(
      () => target.gauges(),
      (g) => g.sessions === 0 && g.connections === 0 && g.bufferMessages === 0 && g.queueLength === 0,
      10_000,
      100,
    );
    return { chats: chats.size, delivered, clean: left.ok };
  } finally {
    for (const c of conns) c.close();
  }
}

const pct = (a: number, b: number): number => Math.round(((b - a) / a) * 1000) / 10;
const signed = (p: number): string => `${p >= 0 ? '+' : ''}${fmt(p)}%`;

export async function memoryTarget(instances: 1 | 3, o: MemoryOptions, log: (l: string) => void): Promise<Row[]> {
  const target = await startTarget(instances, SHORT_WINDOWS);
  const name = `memory, ${target.name}`;
  try {
    const figures: HeapFigures[][] = [];
    const results: WaveResult[] = [];
    for (let w = 1; w <= o.waves; w++) {
      const r = await wave(target, o.clients, o.messages);
      results.push(r);
      const f = await Promise.all(target.relays.map((relay) => collectGarbage(relay)));
      figures.push(f);
      log(
        `${name}: wave ${w}: ${r.chats} chats, ${r.delivered} messages, ${r.clean ? 'nothing left' : 'NOT CLEAN'}; heap ${f.map((x) => mb(x.heapUsed)).join(' / ')} MB, RSS ${f.map((x) => mb(x.rss)).join(' / ')} MB`,
      );
    }
    const h = health(target.relays);
    const first = figures[0] as HeapFigures[];
    const last = figures.at(-1) as HeapFigures[];
    const worst = (key: keyof HeapFigures) =>
      first
        .map((f, i) => ({ before: f[key], after: (last[i] as HeapFigures)[key] }))
        .reduce((w, x) => (x.after - x.before > w.after - w.before ? x : w));
    const heap = worst('heapUsed');
    const rss = worst('rss');
    const within = (x: { before: number; after: number }, percent: number, floorMb: number) =>
      x.after - x.before <= Math.max((percent / 100) * x.before, floorMb * 1024 * 1024);
    const expectedChats = (o.clients / 2) * o.waves;
    const chats = results.reduce((s, r) => s + r.chats, 0);
    const delivered = results.reduce((s, r) => s + r.delivered, 0);
    const clean = results.filter((r) => r.clean).length;
    const of = instances > 1 ? ', worst instance' : '';
    // Sessions that came and went after the first measure (spread over the instances).
    const served = o.clients * (o.waves - 1);
    return [
      {
        test: `${name}: ${o.waves} waves of ${fmt(o.clients)} clients, all paired, all messages delivered`,
        figure: `${fmt(chats)} chats, ${fmt(delivered)} messages (expected ${fmt(expectedChats)}, ${fmt(expectedChats * 2 * o.messages)})`,
        pass: chats === expectedChats && delivered === expectedChats * 2 * o.messages,
      },
      {
        test: `${name}: waves after which 0 sessions, sockets, queued, buffered remained`,
        figure: `${clean} of ${o.waves}; ${instances - h.dead} of ${instances} alive, ${h.crashes.length + h.stderr.length} error lines`,
        pass: clean === o.waves && h.dead === 0 && h.crashes.length + h.stderr.length === 0,
      },
      {
        test: `${name}: V8 heap used after wave ${o.waves} vs wave 1 (forced GC)`,
        figure: `${signed(pct(heap.before, heap.after))} (${mb(heap.before)} → ${mb(heap.after)} MB${of}, ${fmt(Math.round(((heap.after - heap.before) * instances) / served))} B per session since; at most +${o.heapPercent}% or +${o.heapMb} MB)`,
        pass: within(heap, o.heapPercent, o.heapMb),
      },
      {
        test: `${name}: RSS after wave ${o.waves} vs wave 1 (forced GC)`,
        figure: `${signed(pct(rss.before, rss.after))} (${mb(rss.before)} → ${mb(rss.after)} MB${of}; at most +${o.rssPercent}% or +${o.rssMb} MB)`,
        pass: within(rss, o.rssPercent, o.rssMb),
      },
    ];
  } finally {
    await target.stop();
  }
}

export const memory: Check = {
  name: 'memory',
  async run({ quick, log }: CheckOptions): Promise<Row[]> {
    const o = memoryOptions(quick);
    const rows: Row[] = [];
    for (const n of o.instances) rows.push(...(await memoryTarget(n, o, log)));
    return rows;
  },
};
