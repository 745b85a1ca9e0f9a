// The protocol v1 semantics the benchmark exercises, written the way a typical
// Node relay would be on the usual stacks: sessions in a Map, a FIFO queue, a
// per-recipient array as the resume buffer. Transport-agnostic: ws-relay.mjs
// and socketio-relay.mjs feed it frames and give it a `send(text)` per socket.
// It covers hello/resume, find, msg/sent/seq, ack/delivered, leave, ping;
// enough for the same load generator to measure all three relays fairly.
import { randomBytes, randomUUID } from 'node:crypto';

const RESUME_WINDOW_MS = 120_000;
const MAX_BUFFER = 500;

export class RelayCore {
  sessions = new Map(); // id -> session
  queue = [];
  chats = 0;

  /** A new socket; returns its handler for incoming text frames and for its close. */
  attach(send) {
    let session = null;
    return {
      message: (text) => {
        let f;
        try {
          f = JSON.parse(text);
        } catch {
          return send(JSON.stringify({ type: 'error', code: 'bad_json', message: 'Frame is not valid JSON.' }));
        }
        if (!session) {
          if (f.type !== 'hello') return;
          session = this.#hello(f, send);
          return;
        }
        this.#frame(session, f);
      },
      close: () => {
        if (!session || session.send !== send) return;
        session.send = null;
        session.expires = Date.now() + RESUME_WINDOW_MS;
        const q = this.queue.indexOf(session);
        if (q >= 0) this.queue.splice(q, 1);
        if (session.state === 'queued') session.state = 'idle';
        if (session.partner?.send) session.partner.send(JSON.stringify({ type: 'partner', state: 'away' }));
      },
    };
  }

  #hello(f, send) {
    const r = f.resume;
    const old = r && this.sessions.get(r.id);
    if (old && old.token === r.token) {
      // A resume takes over even if the old socket's close has not been seen yet (as ours does).
      old.send = send;
      send(
        JSON.stringify({
          type: 'welcome',
          id: old.id,
          token: old.token,
          resumed: true,
          state: old.state,
          chat: old.chat ? { id: old.chat } : null,
        }),
      );
      const from = Math.max(r.lastSeq ?? 0, old.acked);
      for (const m of old.inbox) if (m.seq > from) send(m.text);
      if (old.partner?.send) old.partner.send(JSON.stringify({ type: 'partner', state: 'back' }));
      return old;
    }
    const s = {
      id: randomUUID(),
      token: randomBytes(32).toString('base64url'),
      send,
      state: 'idle',
      partner: null,
      chat: null,
      inbox: [],
      acked: 0,
      nextSeq: 1,
      ids: new Map(),
      expires: 0,
    };
    this.sessions.set(s.id, s);
    send(JSON.stringify({ type: 'welcome', id: s.id, token: s.token, resumed: false, state: 'idle', chat: null }));
    return s;
  }

  #frame(s, f) {
    switch (f.type) {
      case 'find': {
        if (s.state !== 'idle') return;
        s.send(JSON.stringify({ type: 'queued' }));
        const other = this.queue.shift();
        if (!other) {
          s.state = 'queued';
          this.queue.push(s);
          return;
        }
        const chat = randomUUID();
        for (const [a, b, initiator] of [
          [s, other, false],
          [other, s, true],
        ]) {
          a.state = 'chatting';
          a.partner = b;
          a.chat = chat;
          a.inbox = [];
          a.acked = 0;
          a.nextSeq = 1;
          a.ids.clear();
          a.send?.(JSON.stringify({ type: 'matched', chat, interests: [], initiator }));
        }
        this.chats++;
        return;
      }
      case 'msg': {
        const p = s.partner;
        if (!p || typeof f.id !== 'string' || typeof f.body !== 'string') return;
        const known = s.ids.get(f.id);
        if (known) return s.send(JSON.stringify({ type: 'sent', id: f.id, seq: known }));
        const seq = p.nextSeq++;
        s.ids.set(f.id, seq);
        if (s.ids.size > 1024) s.ids.delete(s.ids.keys().next().value);
        const text = JSON.stringify({ type: 'msg', seq, id: f.id, body: f.body, ts: Date.now() });
        p.inbox.push({ seq, text });
        if (p.inbox.length > MAX_BUFFER) p.inbox.shift();
        p.send?.(text);
        s.send(JSON.stringify({ type: 'sent', id: f.id, seq }));
        return;
      }
      case 'ack': {
        if (typeof f.seq !== 'number' || f.seq <= s.acked) return;
        s.acked = f.seq;
        while (s.inbox.length > 0 && s.inbox[0].seq <= f.seq) s.inbox.shift();
        s.partner?.send?.(JSON.stringify({ type: 'delivered', seq: f.seq }));
        return;
      }
      case 'leave': {
        const p = s.partner;
        if (!p) return;
        for (const [x, reason] of [
          [s, 'you_left'],
          [p, 'partner_left'],
        ]) {
          x.state = 'idle';
          x.partner = null;
          x.chat = null;
          x.inbox = [];
          x.send?.(JSON.stringify({ type: 'ended', reason }));
        }
        this.chats--;
        return;
      }
      case 'ping':
        return s.send(JSON.stringify({ type: 'pong', t: f.t }));
    }
  }

  /** Forgets sessions whose resume window passed. */
  sweep() {
    const now = Date.now();
    for (const [id, s] of this.sessions) if (!s.send && s.expires < now) this.sessions.delete(id);
  }
}
