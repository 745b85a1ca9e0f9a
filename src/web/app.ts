/**
 * The chat page's controller: connection and resume, pairing, the chat itself
 * with end-to-end encryption, receipts and typing. It owns the state; view.ts
 * draws it. Intent survives reconnects: someone looking for a partner keeps
 * looking, and messages typed offline are sent once the link is back.
 */
import { type BackoffPolicy, backoffDelay } from '../backoff.js';
import { RelayClient, type WebSocketLike } from '../client.js';
import { bucketsFor, ChatCipher, E2E_KIND, KEY_KIND, maxTextBytes, type OpenResult } from '../e2e.js';
import {
  type EndReason,
  type ErrorFrame,
  FILE_KIND,
  type IncomingMsgFrame,
  type Limits,
  type PairedVia,
  type ServerFrame,
  utf8Length,
  type WelcomeFrame,
} from '../protocol.js';
import { Attention } from './attention.js';
import { FileShare } from './files.js';
import { byId, type Delivery, type OwnMessage, type Screen, type Tone, View } from './view.js';

const RECONNECT: BackoffPolicy = { baseMs: 500, capMs: 10_000 };
const CONNECT_TIMEOUT_MS = 10_000;
const HEARTBEAT_MS = 20_000;
const PONG_TIMEOUT_MS = 8_000;
const TYPING_REFRESH_MS = 3_000;
const TYPING_IDLE_MS = 4_000;
const TYPING_SHOWN_MS = 6_000;
/** After `draining`, each page reconnects at a random moment in this span, so they do not all come back at once. */
const DRAIN_JITTER_MS = 3_000;
/** How long a first press of Next waits for the second. */
const NEXT_ARMED_MS = 4_000;
/** Esc twice within this long skips to the next stranger (Omegle's habit). */
const ESC_TWICE_MS = 1_000;
const PREFS_KEY = 'anon-chat.prefs';
const DEFAULT_MAX_MESSAGE_BYTES = 4096;

type Phase = 'home' | 'looking' | 'inviting' | 'joining' | 'chatting' | 'ended';
type Link = 'connecting' | 'online' | 'reconnecting' | 'offline' | 'fatal';

/** How every text names the other person: a stranger met at random, or the friend an invite paired. */
interface Partner {
  a: string;
  the: string;
  The: string;
  this: string;
  /** Who a message is from, for screen readers. */
  author: string;
}
const STRANGER: Partner = {
  a: 'a stranger',
  the: 'the stranger',
  The: 'The stranger',
  this: 'this stranger',
  author: 'Stranger',
};
const FRIEND: Partner = {
  a: 'your friend',
  the: 'your friend',
  The: 'Your friend',
  this: 'your friend',
  author: 'Your friend',
};

/** The ending's headline, as Omegle put it: who disconnected. */
const END_HEADLINE = (reason: EndReason, p: Partner) =>
  reason.startsWith('you_') ? 'You have disconnected' : `${p.author} has disconnected`;

const END_TEXT: Record<EndReason, (p: Partner) => string> = {
  you_left: () => 'You left the chat.',
  partner_left: (p) => `${p.The} left the chat.`,
  partner_gone: (p) => `${p.The} lost their connection and did not come back.`,
  you_reported: (p) => `You reported ${p.this}. You will not be matched with them again.`,
  you_blocked: (p) => `You blocked ${p.this}. You will not be matched with them again.`,
};

/** Invite codes compare without case, spaces or dashes, as the relay reads them. */
const sameCode = (a: string, b: string) =>
  a.replace(/[\s-]/g, '').toUpperCase() === b.replace(/[\s-]/g, '').toUpperCase();

const OPEN_FAILURE: Record<Extract<OpenResult, { ok: false }>['reason'], string> = {
  tampered: 'It was altered on the way, so it was discarded.',
  replayed: 'It was a replay of an earlier message, so it was discarded.',
  malformed: 'It was not a valid encrypted message.',
};

const RANK: Record<Delivery, number> = { failed: -1, queued: 0, sending: 1, sent: 2, delivered: 3, read: 4 };

interface Mine {
  view: OwnMessage;
  seq: number;
}

const plural = (n: number, word: string) => `${n} ${word}${n === 1 ? '' : 's'}`;

class ChatApp {
  readonly #view = new View();
  readonly #attention = new Attention();
  readonly #client: RelayClient;
  /** Pictures and files in the chat (src/web/files.ts); usable once the chat's keys are agreed. */
  #files: FileShare | null = null;
  #phase: Phase = 'home';
  #link: Link = 'connecting';
  #fatal = '';
  #welcomed = false;
  /** The relay said it is going away; until the next welcome the status says so. */
  #draining = false;
  #limits: Limits | null = null;
  #resumeWindowMs = 0;
  #interests: string[] = [];
  #inviteCode: string | null = null;
  /** Chats I left (and how), in case the frame went into a socket that was already dead. */
  readonly #left = new Map<string, 'leave' | 'block' | 'report'>();
  // ---- per chat
  #chatId: string | null = null;
  #partner = STRANGER;
  #partnerAway = false;
  #cipher: Promise<ChatCipher> | null = null;
  #keysReady = false;
  /** Typed before the keys were agreed; sealed and sent in order once they are. */
  #pending: { view: OwnMessage; text: string }[] = [];
  /** My messages by client id. */
  #mine = new Map<string, Mine>();
  #deliveredSeq = 0;
  #readSeq = 0;
  #shownSeq = 0;
  #readSent = 0;
  /** Incoming messages are decrypted one after another so they show in seq order. */
  #incoming: Promise<void> = Promise.resolve();
  #outgoing: Promise<void> = Promise.resolve();
  // ---- timers
  #attempt = 0;
  #retryTimer: ReturnType<typeof setTimeout> | undefined;
  #connectTimer: ReturnType<typeof setTimeout> | undefined;
  #heartbeat: ReturnType<typeof setInterval> | undefined;
  #pongTimer: ReturnType<typeof setTimeout> | undefined;
  #typingSentAt = 0;
  #typingStop: ReturnType<typeof setTimeout> | undefined;
  #typingShown: ReturnType<typeof setTimeout> | undefined;
  /** When Esc was last pressed (performance.now()), to tell a double press. */
  #escAt = Number.NEGATIVE_INFINITY;
  /** Set while Next waits for its confirming second press. */
  #nextArmed: ReturnType<typeof setTimeout> | undefined;

  constructor() {
    const url = new URL('ws', location.href);
    url.protocol = location.protocol === 'https:' ? 'wss:' : 'ws:';
    // A routing key for this tab only (memory, never stored): behind the gateway, every reconnect of this tab
    // reaches the same instance while it lives (nginx hashes the key; docs/operations.md, "The gateway").
    const key = crypto.getRandomValues(new Uint8Array(16));
    url.search = `?route=${btoa(String.fromCharCode(...key))
      .replace(/\+/g, '-')
      .replace(/\//g, '_')
      .replace(/=+$/, '')}`;
    this.#client = new RelayClient({
      url: url.href,
      createSocket: (u) => new WebSocket(u) as unknown as WebSocketLike,
    });
  }

  start(): void {
    const v = this.#view;
    this.#files = new FileShare({
      client: this.#client,
      list: v.list,
      composer: v.composer,
      dropZone: byId('chat'),
      text: v.text,
      partner: () => this.#partner.author,
      notice: (text) => v.notice(text),
      announce: (text) => v.announce(text),
      added: (li, mine) => {
        const log = v.log;
        if (mine || log.scrollHeight - log.scrollTop - log.clientHeight - li.offsetHeight < 80)
          li.scrollIntoView({ block: 'end' });
      },
    });
    this.#view.prefTyping.checked = loadPrefs().typing;
    this.#wireControls();
    this.#client.on('*', (frame) => this.#onFrame(frame));
    this.#client.onClosed((close) => this.#onClosed(close.code));
    this.#joinFromAddress();
    // Pasting an invite link into the address bar of this very page changes only the fragment: no reload.
    window.addEventListener('hashchange', () => this.#joinFromAddress());
    this.#connect();
  }

  /** Follows an invite link (`#invite=CODE`); the first welcome sends the join if not connected yet. */
  #joinFromAddress(): void {
    const code = /^#invite=([0-9A-Za-z-]{4,32})$/.exec(location.hash)?.[1];
    if (!code) return;
    // Take the code out of the address bar so it is not bookmarked or shared by accident.
    history.replaceState(null, '', location.pathname);
    if (this.#phase === 'chatting') return;
    // One wait at a time: leave the queue or the other invite before joining this one (the relay keeps the order).
    if (this.#phase === 'looking' || this.#phase === 'inviting' || this.#phase === 'joining')
      this.#client.send({ type: 'cancel' });
    this.#inviteCode = code;
    this.#phase = 'joining';
    this.#client.send({ type: 'join', code });
    this.#render();
  }

  // ---- connection --------------------------------------------------------

  #connect(): void {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#connectTimer);
    this.#setLink(this.#waitingLink());
    // A connection that never completes (a dead Wi-Fi, a black-holed proxy) is abandoned and retried.
    this.#connectTimer = setTimeout(() => this.#scheduleReconnect(), CONNECT_TIMEOUT_MS);
    try {
      this.#client.connect().catch(() => {});
    } catch {
      this.#scheduleReconnect();
    }
  }

  #onClosed(code: number): void {
    this.#linkLost();
    if (code === 4426) return this.#fail('This page is out of date. Reload it to keep chatting.');
    if (code === 4409) return this.#fail('This chat continued in another window.');
    this.#scheduleReconnect();
  }

  #scheduleReconnect(): void {
    if (this.#link === 'fatal') return;
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#connectTimer);
    const delay = backoffDelay(this.#attempt++, RECONNECT);
    this.#retryTimer = setTimeout(() => this.#connect(), delay);
    this.#setLink(this.#waitingLink());
  }

  /** What the status says while there is no live connection. */
  #waitingLink(): Link {
    if (navigator.onLine === false) return 'offline';
    return this.#welcomed ? 'reconnecting' : 'connecting';
  }

  /** The socket is gone (or given up on): what was on its way waits for the next one. */
  #linkLost(): void {
    this.#stopHeartbeat();
    this.#view.setTyping(false);
    for (const m of this.#mine.values()) if (m.view.status === 'sending') m.view.set('queued');
  }

  /**
   * The browser says the network is gone: do not wait for the heartbeat to find out. A close without a
   * code is what the relay treats as a network drop, so the session waits for the resume.
   */
  #wentOffline(): void {
    if (this.#link === 'fatal') return;
    this.#client.drop();
    this.#linkLost();
    this.#scheduleReconnect();
  }

  /**
   * The relay is restarting: reconnect before it closes the socket, each page after its own random delay, so the
   * partner never sees this side away (in a cluster the new instance takes the session over from the old one).
   * The typed client writes again, on the new socket, whatever it wrote to the old one without a `sent`.
   */
  #onDraining(): void {
    this.#draining = true;
    clearTimeout(this.#retryTimer);
    this.#retryTimer = setTimeout(() => this.#connect(), Math.random() * DRAIN_JITTER_MS);
    this.#render();
  }

  #fail(message: string): void {
    clearTimeout(this.#retryTimer);
    clearTimeout(this.#connectTimer);
    this.#fatal = message;
    this.#setLink('fatal');
  }

  #setLink(link: Link): void {
    this.#link = link;
    this.#render();
  }

  /** Sends an app-level ping; no pong in time means the socket is dead even if the browser has not noticed. */
  #checkLink(): void {
    if (!this.#client.connected || this.#pongTimer !== undefined) return;
    this.#client.send({ type: 'ping', t: Date.now() });
    this.#pongTimer = setTimeout(() => {
      this.#pongTimer = undefined;
      this.#connect();
    }, PONG_TIMEOUT_MS);
  }

  #stopHeartbeat(): void {
    clearInterval(this.#heartbeat);
    clearTimeout(this.#pongTimer);
    this.#pongTimer = undefined;
  }

  // ---- frames from the relay -------------------------------------------------

  #onFrame(frame: ServerFrame): void {
    switch (frame.type) {
      case 'welcome':
        return this.#onWelcome(frame);
      case 'queued':
        if (frame.invite) {
          // A late answer for an invite this page has since cancelled or left for another is not news.
          if (!this.#inviteCode || !sameCode(frame.invite, this.#inviteCode)) return;
          if (this.#phase !== 'joining' && this.#phase !== 'inviting') return;
          this.#inviteCode = frame.invite;
          this.#phase = 'inviting';
        }
        return this.#render();
      case 'cancelled':
        return;
      case 'matched':
        return this.#beginChat(frame.chat, frame.interests, frame.via);
      case 'msg':
        return this.#inOrder((chatId) => this.#receive(frame, chatId));
      case 'gap':
        return this.#inOrder(async () => {
          this.#view.notice(
            `${plural(frame.to - frame.from + 1, 'message')} from ${this.#partner.the} could not be kept for you while you were away.`,
          );
        });
      case 'sent': {
        const mine = this.#mine.get(frame.id);
        if (mine) {
          mine.seq = frame.seq;
          this.#advance(mine, 'sent');
          // Receipts may have arrived (in a resumed welcome) before this confirmation.
          this.#receipts(this.#deliveredSeq, this.#readSeq);
        }
        return;
      }
      case 'delivered':
        return this.#receipts(frame.seq, this.#readSeq);
      case 'read':
        return this.#receipts(this.#deliveredSeq, frame.seq);
      case 'typing':
        return this.#showTyping(frame.on);
      case 'partner':
        this.#partnerAway = frame.state === 'away';
        if (this.#partnerAway) this.#view.setTyping(false);
        return this.#render();
      case 'ended':
        // After the messages that came before it have been decrypted and shown.
        return this.#inOrder(async () => {
          // Endings I caused were already shown when I clicked.
          if (frame.reason.startsWith('you_') && this.#phase !== 'chatting') return;
          this.#endChat(END_TEXT[frame.reason](this.#partner), END_HEADLINE(frame.reason, this.#partner));
        });
      case 'error':
        return this.#onError(frame);
      case 'pong':
        clearTimeout(this.#pongTimer);
        this.#pongTimer = undefined;
        return;
      case 'draining':
        return this.#onDraining();
    }
  }

  #onWelcome(w: WelcomeFrame): void {
    clearTimeout(this.#connectTimer);
    // A hung attempt that succeeded late must not be torn down by the retry it had scheduled.
    clearTimeout(this.#retryTimer);
    this.#attempt = 0;
    this.#welcomed = true;
    this.#draining = false;
    this.#limits = w.limits;
    this.#resumeWindowMs = w.resumeWindowMs;
    this.#stopHeartbeat();
    this.#heartbeat = setInterval(() => this.#checkLink(), HEARTBEAT_MS);
    if (this.#phase === 'chatting') {
      if (w.resumed && w.chat && w.chat.id === this.#chatId) {
        this.#partnerAway = w.chat.partner === 'away';
        this.#receipts(w.chat.deliveredSeq, w.chat.readSeq);
        for (const m of this.#mine.values()) if (m.view.status === 'queued') m.view.set('sending');
      } else if (!w.resumed) {
        const window = Math.round(this.#resumeWindowMs / 1000);
        this.#endChat(
          `This chat is over: the server no longer has it (it restarted, or you were offline for more than ${window} s). Messages not yet sent were not delivered.`,
        );
      }
      // Resumed, but the chat ended while I was away: an `ended` frame follows.
    }
    let serverState = w.state;
    const left = w.chat ? this.#left.get(w.chat.id) : undefined;
    if (w.resumed && left) {
      // I left that chat on a socket that was already dead; say it again.
      this.#client.send({ type: left });
      serverState = 'idle';
    } else if (w.resumed && w.chat && w.chat.id !== this.#chatId) {
      // The server paired me while my socket was silently dead: the `matched` frame never arrived.
      this.#dropChat();
      this.#beginChat(w.chat.id, w.chat.interests, w.chat.via);
    }
    if (serverState === 'idle') {
      // I was waiting when the link dropped; the server forgot that, I did not.
      if (this.#phase === 'looking') this.#sendFind();
      if ((this.#phase === 'inviting' || this.#phase === 'joining') && this.#inviteCode)
        this.#client.send({ type: 'join', code: this.#inviteCode });
    }
    this.#setLink('online');
  }

  #onError(f: ErrorFrame): void {
    if (f.id !== undefined) {
      const mine = this.#mine.get(f.id);
      // Refused for rate, or the partner's server is out of reach for a moment: the typed client holds its
      // outbox and sends it again, in order, once it may. Refused for good: the typed client has dropped it.
      if (!mine || f.code === 'rate_limited' || f.code === 'unavailable') return;
      mine.view.set('failed', `Not sent: ${f.message}`);
      return;
    }
    switch (f.code) {
      case 'unavailable':
        // A find or join the relay could not answer for a moment: asked again.
        setTimeout(() => {
          if (this.#phase === 'looking') this.#sendFind();
          if ((this.#phase === 'inviting' || this.#phase === 'joining') && this.#inviteCode)
            this.#client.send({ type: 'join', code: this.#inviteCode });
        }, f.retryAfterMs ?? 1000);
        return;
      case 'rate_limited':
        // A typing signal or a receipt was dropped. Typing is refreshed anyway; the read receipt is said again.
        this.#readSent = 0;
        setTimeout(() => this.#markRead(), f.retryAfterMs ?? 1000);
        return;
      case 'queue_full':
        setTimeout(() => {
          if (this.#phase === 'looking') this.#sendFind();
        }, f.retryAfterMs ?? 2000);
        return;
      case 'cooldown':
        return this.#goHome(
          `Several people reported this connection recently. You can look for a new chat again in ${Math.ceil((f.retryAfterMs ?? 60_000) / 60_000)} min.`,
        );
      case 'invite_unknown':
      case 'invite_expired':
      case 'invite_used':
        this.#inviteCode = null;
        return this.#goHome(
          'This invite link no longer works: it was used, or it expired. Ask for a new one, or start a random chat.',
        );
      case 'already_in_chat':
      case 'already_queued':
      case 'not_in_chat':
      case 'not_queued':
        return; // a race between a click and the server; the state frames that follow tell the truth
      default:
        if (this.#phase === 'chatting') this.#view.notice(f.message);
        else this.#goHome(f.message);
    }
  }

  // ---- pairing ---------------------------------------------------------------

  #find(): void {
    const limits = this.#limits;
    this.#interests = this.#view.interests.value
      .split(/[,\n]/)
      .map((s) => s.trim().slice(0, limits?.maxInterestLength ?? 32))
      .filter((s) => s.length > 0)
      .slice(0, limits?.maxInterests ?? 5);
    this.#phase = 'looking';
    this.#chatId = null;
    this.#sendFind();
    this.#render();
  }

  #sendFind(): void {
    this.#client.send({ type: 'find', interests: this.#interests });
  }

  async #invite(button: HTMLButtonElement): Promise<void> {
    button.disabled = true;
    try {
      const res = await fetch(new URL('api/v1/invites', location.href), { method: 'POST' });
      if (res.status === 429)
        return this.#goHome(`Too many invites from here. Try again in ${res.headers.get('retry-after') ?? '60'} s.`);
      if (!res.ok) return this.#goHome('Could not create an invite right now. Try again in a moment.');
      const { code } = (await res.json()) as { code: string };
      // An invite link was followed meanwhile: that wait wins.
      if (this.#phase !== 'home') return;
      this.#inviteCode = code;
      this.#phase = 'inviting';
      this.#client.send({ type: 'join', code });
      this.#render();
    } catch {
      this.#goHome('Could not reach the server to create an invite.');
    } finally {
      button.disabled = false;
    }
  }

  #cancelWaiting(): void {
    this.#client.send({ type: 'cancel' });
    this.#inviteCode = null;
    this.#goHome();
  }

  #goHome(note?: string): void {
    this.#phase = 'home';
    this.#view.homeNote(note);
    this.#render();
  }

  // ---- one chat --------------------------------------------------------------

  #beginChat(chatId: string, interests: string[], via: PairedVia): void {
    this.#phase = 'chatting';
    this.#chatId = chatId;
    this.#partner = via === 'invite' ? FRIEND : STRANGER;
    this.#view.setPartner(this.#partner.author);
    this.#inviteCode = null;
    this.#partnerAway = false;
    this.#keysReady = false;
    this.#pending = [];
    this.#mine.clear();
    this.#deliveredSeq = this.#readSeq = this.#shownSeq = this.#readSent = 0;
    this.#files?.end();
    this.#view.clearLog();
    this.#view.notice(
      interests.length > 0
        ? `You are chatting with ${this.#partner.a} who also likes ${interests.join(', ')}. Say hi!`
        : `You are chatting with ${this.#partner.a}. Say hi!`,
    );
    this.#view.chatOpen(true);
    this.#render();
    this.#view.text.focus();
    const maxBody = this.#limits?.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES;
    const cipher = ChatCipher.create(maxBody);
    this.#cipher = cipher;
    // Fresh keys for this chat; the key message is relayed and resumed like any other.
    cipher.then(
      (c) => {
        if (this.#chatId === chatId) this.#client.sendMessage(c.offer(), KEY_KIND);
      },
      () => this.#view.setSafety(null, 'This browser cannot encrypt (WebCrypto is unavailable).'),
    );
    this.#attention.alert('matched');
  }

  #inOrder(step: (chatId: string | null) => Promise<void>): void {
    const chatId = this.#chatId;
    this.#incoming = this.#incoming.then(() => (this.#chatId === chatId ? step(chatId) : undefined)).catch(() => {});
  }

  async #receive(f: IncomingMsgFrame, chatId: string | null): Promise<void> {
    if (!chatId || !this.#cipher) return;
    const cipher = await this.#cipher;
    if (f.kind === KEY_KIND) {
      const ok = await cipher.accept(f.body, chatId);
      if (this.#chatId !== chatId) return;
      if (!ok)
        this.#view.notice(
          `${this.#partner.The} sent an invalid or changed encryption key. Do not trust this chat; leave it.`,
        );
      else if (!this.#keysReady) {
        this.#keysReady = true;
        this.#files?.begin(cipher);
        this.#view.setSafety(cipher.safetyCode);
        this.#flushPending();
        this.#render();
      }
      return;
    }
    if (f.kind === FILE_KIND) {
      // A part of a picture or file: its card shows the progress; no alert per part.
      this.#files?.receive(f);
      this.#shownSeq = f.seq;
      return this.#markRead();
    }
    if (f.kind === E2E_KIND) {
      const opened = await cipher.open(f.body);
      if (this.#chatId !== chatId) return;
      if (!opened.ok) this.#view.failed(OPEN_FAILURE[opened.reason]);
      else {
        if (opened.missed > 0)
          this.#view.notice(`${plural(opened.missed, 'message')} from ${this.#partner.the} went missing.`);
        this.#view.theirs(opened.text, f.ts);
      }
    } else this.#view.theirs(f.body, f.ts, 'not encrypted');
    this.#view.setTyping(false);
    this.#shownSeq = f.seq;
    this.#markRead();
    this.#attention.alert('message');
  }

  #markRead(): void {
    if (document.visibilityState !== 'visible' || this.#phase !== 'chatting') return;
    if (this.#shownSeq <= this.#readSent) return;
    this.#readSent = this.#shownSeq;
    this.#client.send({ type: 'read', seq: this.#shownSeq });
  }

  #send(): void {
    const text = this.#view.text.value;
    if (text.trim() === '' || this.#phase !== 'chatting') return;
    const max = maxTextBytes(bucketsFor(this.#limits?.maxMessageBytes ?? DEFAULT_MAX_MESSAGE_BYTES));
    const size = utf8Length(text);
    if (size > max) {
      this.#view.notice(`That message is too long (${size} bytes; the limit is ${max}). It was not sent.`);
      return;
    }
    this.#view.text.value = '';
    this.#view.fitText();
    // No "typing off" here: the message itself tells the other page to hide the indicator.
    clearTimeout(this.#typingStop);
    this.#typingSentAt = 0;
    const view = this.#view.own(text, this.#keysReady && this.#client.connected ? 'sending' : 'queued');
    if (!this.#keysReady) {
      if (this.#client.connected) view.set('queued', `Waiting for ${this.#partner.the}'s key`);
      this.#pending.push({ view, text });
      return;
    }
    this.#seal(text, view);
  }

  #flushPending(): void {
    for (const { view, text } of this.#pending) {
      view.set(this.#client.connected ? 'sending' : 'queued');
      this.#seal(text, view);
    }
    this.#pending = [];
  }

  /** Seals and sends in typing order; the client keeps it until the server confirms, across reconnects. */
  #seal(text: string, view: OwnMessage): void {
    const chatId = this.#chatId;
    const cipher = this.#cipher;
    this.#outgoing = this.#outgoing
      .then(async () => {
        if (!cipher) return;
        const body = await (await cipher).seal(text);
        if (this.#chatId !== chatId) return view.set('failed');
        const id = this.#client.sendMessage(body, E2E_KIND);
        this.#mine.set(id, { view, seq: 0 });
      })
      .catch(() => view.set('failed'));
  }

  #advance(mine: Mine, status: Delivery): void {
    if (RANK[status] > RANK[mine.view.status]) mine.view.set(status);
  }

  #receipts(delivered: number, read: number): void {
    this.#deliveredSeq = Math.max(this.#deliveredSeq, delivered);
    this.#readSeq = Math.max(this.#readSeq, read);
    for (const mine of this.#mine.values()) {
      if (mine.seq === 0) continue;
      if (mine.seq <= this.#readSeq) this.#advance(mine, 'read');
      else if (mine.seq <= this.#deliveredSeq) this.#advance(mine, 'delivered');
    }
  }

  /** The chat is over, for whatever reason: keys are dropped, unsent messages say so. */
  #endChat(text: string, headline = 'Chat over'): void {
    if (this.#phase !== 'chatting') return;
    this.#phase = 'ended';
    this.#dropChat();
    this.#view.ended(headline, text);
    this.#view.chatOpen(false);
    this.#render();
    byId('again').focus();
    this.#attention.alert('ended');
  }

  /** Forgets the current chat's keys and marks what was not sent. */
  #dropChat(): void {
    this.#files?.end();
    this.#chatId = null;
    this.#cipher = null;
    this.#keysReady = false;
    for (const { view } of this.#pending) view.set('failed');
    this.#pending = [];
    for (const m of this.#mine.values()) if (m.seq === 0) m.view.set('failed');
    this.#view.setSafety(null, 'This chat is over. Its keys were deleted from this page.');
  }

  #leave(frame: 'leave' | 'block' | 'report', reason: EndReason): void {
    if (this.#chatId) this.#left.set(this.#chatId, frame);
    this.#client.send({ type: frame });
    this.#endChat(END_TEXT[reason](this.#partner), END_HEADLINE(reason, this.#partner));
  }

  // ---- typing ------------------------------------------------------------------

  #onInput(): void {
    if (!this.#view.prefTyping.checked || this.#phase !== 'chatting') return;
    if (this.#view.text.value === '') return this.#stopTyping();
    const now = Date.now();
    if (now - this.#typingSentAt > TYPING_REFRESH_MS) {
      this.#typingSentAt = now;
      this.#client.send({ type: 'typing', on: true });
    }
    clearTimeout(this.#typingStop);
    this.#typingStop = setTimeout(() => this.#stopTyping(), TYPING_IDLE_MS);
  }

  #stopTyping(): void {
    clearTimeout(this.#typingStop);
    if (this.#typingSentAt === 0) return;
    this.#typingSentAt = 0;
    if (this.#phase === 'chatting') this.#client.send({ type: 'typing', on: false });
  }

  #showTyping(on: boolean): void {
    clearTimeout(this.#typingShown);
    const show = on && this.#view.prefTyping.checked && this.#phase === 'chatting';
    this.#view.setTyping(show);
    // The partner may vanish mid-word; never show "typing" forever.
    if (show) this.#typingShown = setTimeout(() => this.#view.setTyping(false), TYPING_SHOWN_MS);
  }

  // ---- controls and rendering ------------------------------------------------

  #wireControls(): void {
    const v = this.#view;
    const click = (id: string, fn: (button: HTMLButtonElement) => void) => {
      const button = byId<HTMLButtonElement>(id);
      button.addEventListener('click', () => fn(button));
    };
    click('start', () => this.#find());
    click('again', () => this.#find());
    click('invite', (b) => void this.#invite(b));
    click('cancel', () => this.#cancelWaiting());
    click('next', () => {
      // Next ends a chat for good, so it asks once: the first press arms it, a second one within a few seconds acts.
      if (this.#nextArmed === undefined) {
        this.#nextArmed = setTimeout(() => this.#disarmNext(), NEXT_ARMED_MS);
        return v.armNext(true);
      }
      this.#skip();
    });
    click('leave', () => this.#leave('leave', 'you_left'));
    click('block', () => this.#leave('block', 'you_blocked'));
    // Report has consequences for the other person, so it asks first; cancelling changes nothing.
    click('report', () =>
      v.confirmReport().then((yes) => {
        if (yes && this.#phase === 'chatting') this.#leave('report', 'you_reported');
      }),
    );
    // Esc, then Esc again within a second: the next stranger (from an open chat or a finished one).
    document.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape' || e.repeat || e.isComposing || v.dialogOpen) return;
      const now = performance.now();
      const again = now - this.#escAt < ESC_TWICE_MS;
      this.#escAt = again ? Number.NEGATIVE_INFINITY : now;
      if (this.#phase === 'ended') {
        if (again) this.#find();
        else v.announce('Press Esc again for a new chat.');
        return;
      }
      if (this.#phase !== 'chatting' || this.#link !== 'online') return;
      if (!again) {
        clearTimeout(this.#nextArmed);
        this.#nextArmed = setTimeout(() => this.#disarmNext(), ESC_TWICE_MS);
        return v.armNext(true, 'Press Esc again');
      }
      this.#skip();
    });
    click('home-button', () => this.#goHome());
    click('copy', (b) => {
      v.inviteLink.select();
      navigator.clipboard?.writeText(v.inviteLink.value).then(
        () => {
          b.textContent = 'Copied';
        },
        () => {},
      );
    });
    v.interests.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.isComposing) {
        e.preventDefault();
        this.#find();
      }
    });
    v.composer.addEventListener('submit', (e) => {
      e.preventDefault();
      this.#send();
      v.text.focus();
    });
    v.text.addEventListener('keydown', (e) => {
      if (e.key === 'Enter' && !e.shiftKey && !e.isComposing) {
        e.preventDefault();
        this.#send();
      }
    });
    v.text.addEventListener('input', () => {
      v.fitText();
      this.#onInput();
    });
    v.text.addEventListener('blur', () => this.#stopTyping());
    v.prefTyping.addEventListener('change', () => {
      savePrefs({ typing: v.prefTyping.checked });
      if (!v.prefTyping.checked) {
        this.#stopTyping();
        v.setTyping(false);
      }
    });
    v.prefNotify.addEventListener('change', async () => {
      if (!v.prefNotify.checked) {
        this.#attention.systemNotifications = false;
        return;
      }
      if (!(await this.#attention.enable())) {
        v.prefNotify.checked = false;
        this.#goHome('This browser does not allow notifications for this page.');
      }
    });
    window.addEventListener('online', () => {
      if (this.#link === 'fatal' || this.#client.connected) return;
      this.#attempt = 0;
      this.#connect();
    });
    window.addEventListener('offline', () => this.#wentOffline());
    document.addEventListener('visibilitychange', () => {
      if (document.visibilityState !== 'visible') return;
      this.#markRead();
      this.#checkLink();
    });
    window.addEventListener('beforeunload', (e) => {
      // A reload starts a new identity: keys and chat live only in this page's memory.
      if (this.#phase === 'chatting') e.preventDefault();
    });
    // The tab is closing or reloading (the browser also closes the socket with 1001): end the chat or the wait
    // now, rather than let the partner wait out the resume window.
    window.addEventListener('pagehide', () => {
      if (this.#phase === 'chatting') this.#leave('leave', 'you_left');
      else if (this.#phase === 'looking' || this.#phase === 'inviting' || this.#phase === 'joining')
        this.#cancelWaiting();
    });
  }

  /** Leaves this chat and looks for someone new at once (Next confirmed, or Esc twice). */
  #skip(): void {
    this.#disarmNext();
    if (this.#chatId) this.#left.set(this.#chatId, 'leave');
    this.#client.send({ type: 'leave' });
    this.#dropChat();
    this.#find();
  }

  #disarmNext(): void {
    clearTimeout(this.#nextArmed);
    this.#nextArmed = undefined;
    this.#view.armNext(false);
  }

  #render(): void {
    const [text, tone] = this.#statusLine();
    this.#view.setStatus(text, tone);
    const screen: Screen =
      this.#phase === 'home' ? 'home' : this.#phase === 'chatting' || this.#phase === 'ended' ? 'chat' : 'waiting';
    if (screen === 'waiting') {
      const link =
        this.#phase === 'inviting' && this.#inviteCode
          ? `${location.origin}${location.pathname}#invite=${this.#inviteCode}`
          : null;
      const title =
        this.#phase === 'inviting'
          ? 'Waiting for your friend to open the link…'
          : this.#phase === 'joining'
            ? 'Joining your friend…'
            : this.#interests.length > 0
              ? `Looking for someone into ${this.#interests.join(', ')}…`
              : 'Looking for someone…';
      this.#view.waiting(title, link);
    } else this.#view.show(screen);
    const canAct = this.#phase === 'chatting' && this.#link === 'online';
    if (this.#link === 'fatal') this.#view.chatOpen(false);
    if (!canAct) this.#disarmNext();
    this.#view.chatTools(this.#phase === 'chatting' && this.#link !== 'fatal', canAct);
  }

  #statusLine(): [string, Tone] {
    if (this.#link === 'fatal') return [this.#fatal, 'bad'];
    if (this.#link === 'offline') return ['Offline. Waiting for the network…', 'bad'];
    if (this.#draining) return ['The server is restarting; reconnecting…', 'wait'];
    if (this.#link === 'connecting') return ['Connecting…', 'wait'];
    // Short enough for one line on a 320 px phone; each waiting message says "Waiting for connection" itself.
    if (this.#link === 'reconnecting') return ['Connection lost. Reconnecting…', 'wait'];
    switch (this.#phase) {
      case 'home':
        return ['Connected', 'ok'];
      case 'looking':
        return ['Looking for someone…', 'wait'];
      case 'inviting':
        return ['Waiting for your friend…', 'wait'];
      case 'joining':
        return ['Joining your friend…', 'wait'];
      case 'ended':
        return ['Chat over', 'wait'];
      case 'chatting':
        if (this.#partnerAway)
          return [`${this.#partner.The} lost their connection. Waiting for them to come back…`, 'wait'];
        return this.#keysReady
          ? [`Chatting with ${this.#partner.a}, end-to-end encrypted`, 'ok']
          : ['Setting up encryption…', 'wait'];
    }
  }
}

interface Prefs {
  typing: boolean;
}

/** Only a preference is stored, never anything about a chat (and nothing if storage is blocked). */
function loadPrefs(): Prefs {
  try {
    const saved = JSON.parse(localStorage.getItem(PREFS_KEY) ?? '{}') as Partial<Prefs>;
    return { typing: saved.typing !== false };
  } catch {
    return { typing: true };
  }
}

function savePrefs(prefs: Prefs): void {
  try {
    localStorage.setItem(PREFS_KEY, JSON.stringify(prefs));
  } catch {
    // Private modes may refuse storage; the preference then lasts for this page only.
  }
}

new ChatApp().start();
