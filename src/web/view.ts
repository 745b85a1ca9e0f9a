/**
 * Everything that touches the DOM. Message text only ever goes through text
 * nodes (`textContent`, `createTextNode`), so nothing a stranger sends is
 * interpreted as HTML; a web address in it becomes a link whose text is the
 * address itself and which asks before it opens.
 */

export type Tone = 'ok' | 'wait' | 'bad';
export type Screen = 'home' | 'waiting' | 'chat';
export type Delivery = 'queued' | 'sending' | 'sent' | 'delivered' | 'read' | 'failed';
export type Sender = 'me' | 'them';

/** What a message carries. Attachments add their own kind (a file card) beside text; see `renderBody`. */
export type MessageBody = { kind: 'text'; text: string };

/** One message as the log shows it. */
export interface MessageModel {
  from: Sender;
  /** When it was written (mine: this page's clock; theirs: the relay's stamp). */
  ts: number;
  body: MessageBody;
  /** My messages: how far delivery got. */
  status?: Delivery;
  /** A word about an incoming message that is shown anyway ("not encrypted"), or why one could not be shown. */
  warning?: string;
  /** It arrived but must not be shown (tampered, replayed, undecryptable). */
  bad?: boolean;
}

const DELIVERY_TEXT: Record<Delivery, string> = {
  queued: 'Waiting for connection',
  sending: 'Sending…',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
  failed: 'Not sent',
};
/** Drawn as ticks; the words stay for screen readers. Waiting and failing are written out for everyone. */
const TICKED: ReadonlySet<Delivery> = new Set(['sending', 'sent', 'delivered', 'read']);

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

const clock = (ts: number) => new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });
const dayOf = (ts: number) => new Date(ts).toDateString();
const minuteOf = (ts: number) => Math.floor(ts / 60_000);

/** "Today", "Yesterday", else the date (with the year when it is not this year's). */
export function dayLabel(ts: number, now = Date.now()): string {
  const day = dayOf(ts);
  if (day === dayOf(now)) return 'Today';
  const yesterday = new Date(now);
  yesterday.setDate(yesterday.getDate() - 1);
  if (day === yesterday.toDateString()) return 'Yesterday';
  const d = new Date(ts);
  return d.toLocaleDateString([], {
    weekday: 'long',
    day: 'numeric',
    month: 'long',
    ...(d.getFullYear() === new Date(now).getFullYear() ? {} : { year: 'numeric' }),
  });
}

export function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className = '',
  text = '',
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  el.className = className;
  el.textContent = text;
  return el;
}

/** Web addresses in running text: http(s)://… or www.… up to the next space. */
const URL_PATTERN = /\b(?:https?:\/\/|www\.)[^\s<>"]+/gi;

/** The address a piece of text names, if it is one a link may open (http or https only). */
export function safeUrl(text: string): URL | null {
  try {
    const url = new URL(/^www\./i.test(text) ? `https://${text}` : text);
    return url.protocol === 'https:' || url.protocol === 'http:' ? url : null;
  } catch {
    return null;
  }
}

/**
 * Text with its web addresses as links. The link text is the address as written, so what it says is where it
 * goes; it opens in a new tab with no opener and no referrer, and only after the page has shown the full address
 * (see `View.onLink`).
 */
export function linkify(text: string): DocumentFragment {
  const out = document.createDocumentFragment();
  let at = 0;
  for (const m of text.matchAll(URL_PATTERN)) {
    let found = m[0];
    // Punctuation that ends a sentence is not part of the address; nor is a closing bracket with no opening one.
    for (;;) {
      const trimmed = found.replace(/[.,!?;:'"]+$/, '');
      const unbalanced = trimmed.endsWith(')') && !trimmed.includes('(');
      const next = unbalanced ? trimmed.slice(0, -1) : trimmed;
      if (next === found) break;
      found = next;
    }
    const url = safeUrl(found);
    const start = m.index ?? 0;
    if (!url) continue;
    out.append(document.createTextNode(text.slice(at, start)));
    const a = element('a', 'link', found);
    a.href = url.href;
    a.target = '_blank';
    a.rel = 'noopener noreferrer';
    out.append(a);
    at = start + found.length;
  }
  out.append(document.createTextNode(text.slice(at)));
  return out;
}

/** The inside of a bubble. A new kind of message (a file card) adds its case here. */
export function renderBody(body: MessageBody): HTMLElement {
  const div = element('div', 'text');
  div.append(linkify(body.text));
  return div;
}

/** One message on screen; mine can move on through their delivery states. */
export class MessageView {
  status: Delivery;
  readonly li: HTMLLIElement;
  readonly #state: HTMLElement;

  constructor(li: HTMLLIElement, state: HTMLElement, status: Delivery) {
    this.li = li;
    this.#state = state;
    this.status = status;
  }

  /** Its delivery state only moves forward (except to failed); the caller sees to that. */
  set(status: Delivery, detail?: string): void {
    this.status = status;
    this.li.dataset.status = status;
    this.#state.textContent = detail ?? DELIVERY_TEXT[status];
    // A plain state is a tick on screen and words for screen readers; anything unusual is written out.
    this.#state.className = TICKED.has(status) && detail === undefined ? 'state sr' : 'state';
  }
}

/** My messages, as app.ts knows them. */
export type OwnMessage = MessageView;

/**
 * A message as a list item: who wrote it (for screen readers; the side shows it on screen), the bubble, and a meta
 * line with the time (shown on hover or tap) and, for mine, the delivery tick with its words for screen readers.
 */
export function renderMessage(m: MessageModel, author: string): { li: HTMLLIElement; view: MessageView | null } {
  const li = element('li', m.bad ? 'msg bad' : m.warning ? 'msg warn' : 'msg');
  li.dataset.from = m.from;
  const meta = element('span', 'meta');
  // A span, not <time>: a screen reader then reads the item as one line ("You: hi 10:42 Read").
  meta.append(element('span', 'time', clock(m.ts)));
  li.append(element('span', 'sr', `${m.from === 'me' ? 'You' : author}: `), renderBody(m.body), meta);
  if (m.warning) meta.append(element('span', 'state', m.warning));
  if (m.from !== 'me') return { li, view: null };
  const tick = element('span', 'tick');
  tick.setAttribute('aria-hidden', 'true');
  const state = element('span', 'state');
  meta.append(tick, state);
  const view = new MessageView(li, state, m.status ?? 'sending');
  view.set(view.status);
  return { li, view };
}

export class View {
  readonly status = byId('status');
  readonly interests = byId<HTMLInputElement>('interests');
  readonly prefTyping = byId<HTMLInputElement>('pref-typing');
  readonly prefNotify = byId<HTMLInputElement>('pref-notify');
  readonly waitingTitle = byId('waiting-title');
  readonly inviteBox = byId('invite-box');
  readonly inviteLink = byId<HTMLInputElement>('invite-link');
  readonly copy = byId<HTMLButtonElement>('copy');
  readonly safety = byId('safety');
  /** The scrolling region (role=log) around the list of messages. */
  readonly log = byId('log');
  readonly list = byId<HTMLOListElement>('messages');
  readonly typing = byId('typing');
  readonly composer = byId<HTMLFormElement>('composer');
  readonly text = byId<HTMLTextAreaElement>('text');
  readonly over = byId('over');
  readonly again = byId<HTMLButtonElement>('again');
  readonly next = byId<HTMLButtonElement>('next');
  readonly #homeNote = byId('home-note');
  readonly #announce = byId('announce');
  readonly #toolsRow = byId('tools');
  readonly #tools = ['next', 'leave', 'block', 'report'].map((id) => byId<HTMLButtonElement>(id));
  readonly #screens: Record<Screen, HTMLElement> = { home: byId('home'), waiting: byId('waiting'), chat: byId('chat') };
  /** Where focus goes when a screen replaces the one that held it. */
  readonly #landing: Record<Screen, HTMLElement> = {
    home: byId('start'),
    waiting: this.waitingTitle,
    chat: this.text,
  };
  readonly #reportDialog = byId<HTMLDialogElement>('report-dialog');
  readonly #linkDialog = byId<HTMLDialogElement>('link-dialog');
  readonly #linkOpen = byId<HTMLAnchorElement>('link-open');
  #screen: Screen | null = null;
  #author = 'Stranger';
  /** The message the next one may join: same sender, same minute, nothing in between. */
  #group: { from: Sender; minute: number; li: HTMLLIElement } | null = null;
  #day: string | null = null;

  constructor() {
    // Tapping a message shows its time (hovering does too, in CSS); a link asks before it opens.
    this.list.addEventListener('click', (e) => {
      const target = e.target as Element;
      const link = target.closest('a');
      if (link) {
        e.preventDefault();
        this.#askLink(link.href);
        return;
      }
      target.closest('.msg')?.classList.toggle('open');
    });
    byId('link-cancel').addEventListener('click', () => this.#linkDialog.close());
    byId('report-cancel').addEventListener('click', () => this.#reportDialog.close(''));
    byId('report-confirm').addEventListener('click', () => this.#reportDialog.close('report'));
    this.#linkOpen.addEventListener('click', () => this.#linkDialog.close());
  }

  setStatus(text: string, tone: Tone): void {
    if (this.status.textContent !== text) this.status.textContent = text;
    this.status.dataset.tone = tone;
  }

  show(screen: Screen): void {
    const previous = this.#screen;
    this.#screen = screen;
    for (const [name, el] of Object.entries(this.#screens)) el.hidden = name !== screen;
    document.body.dataset.screen = screen;
    // The button that was pressed may have just been hidden: focus would fall to <body>.
    if (previous !== null && previous !== screen && !this.#screens[screen].contains(document.activeElement))
      this.#landing[screen].focus();
  }

  waiting(title: string, inviteLink: string | null): void {
    this.waitingTitle.textContent = title;
    this.inviteBox.hidden = inviteLink === null;
    // A new link has not been copied yet.
    if (this.inviteLink.value !== (inviteLink ?? '')) this.copy.textContent = 'Copy';
    this.inviteLink.value = inviteLink ?? '';
    this.show('waiting');
  }

  /** Composer while the chat is open; "New chat" (where Next was) once it is over. */
  chatOpen(open: boolean): void {
    this.composer.hidden = !open;
    this.over.hidden = open;
    this.again.hidden = open;
    if (!open) {
      this.setTyping(false);
      this.closeDialogs();
    }
  }

  homeNote(text?: string): void {
    this.#homeNote.textContent = text ?? '';
    this.#homeNote.hidden = !text;
  }

  /** Next, Leave, Block and Report: shown while a chat is open, usable only on a live connection. */
  chatTools(shown: boolean, enabled: boolean): void {
    this.#toolsRow.hidden = !shown;
    this.next.hidden = !shown;
    for (const button of this.#tools) button.disabled = !enabled;
    if (!enabled && this.#reportDialog.open) this.#reportDialog.close();
  }

  /** How messages from the other side are attributed for screen readers, and who "is typing". */
  setPartner(author: string): void {
    this.#author = author;
    this.typing.textContent = `${author} is typing…`;
    byId('report-title').textContent = author === 'Stranger' ? 'Report this stranger?' : 'Report your friend?';
  }

  /** Next asks once before it acts: the first press (or Esc) arms it, the second leaves. */
  armNext(armed: boolean, how = 'Press Next again'): void {
    if (this.next.classList.contains('armed') === armed) return;
    this.next.classList.toggle('armed', armed);
    this.next.textContent = armed ? 'Sure? Next' : 'Next';
    this.announce(armed ? `${how} to leave this chat and meet someone new.` : '');
  }

  /** Report asks first, in a dialog; resolves true only if the user confirms. */
  confirmReport(): Promise<boolean> {
    const dialog = this.#reportDialog;
    return new Promise((resolve) => {
      dialog.returnValue = '';
      dialog.addEventListener('close', () => resolve(dialog.returnValue === 'report'), { once: true });
      dialog.showModal();
    });
  }

  /** True while a dialog is open (Esc then belongs to it). */
  get dialogOpen(): boolean {
    return this.#reportDialog.open || this.#linkDialog.open;
  }

  closeDialogs(): void {
    if (this.#reportDialog.open) this.#reportDialog.close();
    if (this.#linkDialog.open) this.#linkDialog.close();
  }

  /** Shows the full address (and its host, in the form the browser uses) before anything opens. */
  #askLink(href: string): void {
    const url = safeUrl(href);
    if (!url) return;
    byId('link-host').textContent = url.host;
    byId('link-url').textContent = url.href;
    this.#linkOpen.href = url.href;
    this.#linkDialog.showModal();
  }

  /** Says something to screen readers only. */
  announce(text: string): void {
    this.#announce.textContent = text;
  }

  /** The message box grows with its text (up to its CSS max-height, then it scrolls). */
  fitText(): void {
    const t = this.text;
    t.style.height = 'auto';
    if (t.value !== '') t.style.height = `${t.scrollHeight + t.offsetHeight - t.clientHeight}px`;
  }

  clearLog(): void {
    this.list.replaceChildren();
    this.#group = null;
    this.#day = null;
    this.setSafety(null);
  }

  setSafety(code: string | null, problem?: string): void {
    this.safety.replaceChildren();
    if (problem) this.safety.textContent = problem;
    else if (!code) this.safety.textContent = 'Setting up encryption…';
    else {
      this.safety.append('End-to-end encrypted. Safety code ');
      const c = element('code', '', code);
      c.id = 'safety-code';
      this.safety.append(c, ' (compare it with your partner to rule out a middleman)');
    }
  }

  setTyping(on: boolean): void {
    this.typing.hidden = !on;
  }

  notice(text: string): void {
    this.#append(element('li', 'notice', text), Date.now());
  }

  /** The line that says a chat is over: a headline anyone sees at a glance ("Stranger has disconnected"), then why. */
  ended(headline: string, detail: string): void {
    const li = element('li', 'notice end');
    li.append(element('strong', '', headline), ' ', element('span', '', detail));
    this.#append(li, Date.now());
  }

  /** Adds a message to the log, grouped with the one before if it is from the same sender in the same minute. */
  message(m: MessageModel): MessageView | null {
    const { li, view } = renderMessage(m, this.#author);
    const minute = minuteOf(m.ts);
    const g = this.#group;
    // Anything else added since (a notice, a file card) ends the group.
    const joins =
      g !== null &&
      this.list.lastElementChild === g.li &&
      g.from === m.from &&
      g.minute === minute &&
      this.#day === dayOf(m.ts);
    if (joins) g.li.classList.remove('last');
    else li.classList.add('first');
    li.classList.add('last');
    this.#append(li, m.ts);
    this.#group = { from: m.from, minute, li };
    return view;
  }

  own(text: string, status: Delivery): OwnMessage {
    const view = this.message({ from: 'me', ts: Date.now(), body: { kind: 'text', text }, status });
    if (!view) throw new Error('an own message has a delivery state');
    return view;
  }

  theirs(text: string, ts: number, warning?: string): void {
    this.message({ from: 'them', ts, body: { kind: 'text', text }, ...(warning ? { warning } : {}) });
  }

  /** A message that arrived but must not be shown as text (tampered, replayed, undecryptable). */
  failed(reason: string): void {
    this.message({
      from: 'them',
      ts: Date.now(),
      body: { kind: 'text', text: 'A message could not be shown.' },
      warning: reason,
      bad: true,
    });
  }

  /** Appends an item, after a date line when it starts a new day; keeps the newest in view if it was. */
  #append(li: HTMLLIElement, ts: number): void {
    const from = li.dataset.from ?? 'notice';
    li.dataset.from = from;
    if (from === 'notice') this.#group = null;
    const log = this.log;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    const day = dayOf(ts);
    if (day !== this.#day) {
      this.#day = day;
      const sep = element('li', 'day');
      sep.dataset.from = 'day';
      sep.dataset.ts = String(ts);
      sep.append(element('span', '', ''));
      this.list.append(sep);
      // "Today" said before midnight is "Yesterday" now.
      for (const d of this.list.querySelectorAll<HTMLElement>('li.day'))
        (d.firstChild as HTMLElement).textContent = dayLabel(Number(d.dataset.ts));
    }
    this.list.append(li);
    if (atEnd || from === 'me') li.scrollIntoView({ block: 'end' });
  }
}
