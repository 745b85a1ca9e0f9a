/**
 * Everything that touches the DOM. Message text only ever goes through
 * `textContent`, so nothing a stranger sends is interpreted as HTML.
 */

export type Tone = 'ok' | 'wait' | 'bad';
export type Screen = 'home' | 'waiting' | 'chat';
export type Delivery = 'queued' | 'sending' | 'sent' | 'delivered' | 'read' | 'failed';

const DELIVERY_TEXT: Record<Delivery, string> = {
  queued: 'Waiting for connection',
  sending: 'Sending…',
  sent: 'Sent',
  delivered: 'Delivered',
  read: 'Read',
  failed: 'Not sent',
};

export function byId<T extends HTMLElement = HTMLElement>(id: string): T {
  const el = document.getElementById(id);
  if (!el) throw new Error(`#${id} is missing from the page`);
  return el as T;
}

const clock = (ts: number) => new Date(ts).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' });

function element<K extends keyof HTMLElementTagNameMap>(
  tag: K,
  className: string,
  text = '',
): HTMLElementTagNameMap[K] {
  const el = document.createElement(tag);
  el.className = className;
  el.textContent = text;
  return el;
}

/** A message bubble: who wrote it (for screen readers only; the side shows it on screen), the text, a meta line. */
function bubble(className: string, author: string, text: string, meta: HTMLElement): HTMLLIElement {
  const li = element('li', className);
  li.append(element('span', 'sr', `${author}: `), element('div', 'text', text), meta);
  return li;
}

/** One of my messages; its delivery state only moves forward (except to failed). */
export class OwnMessage {
  status: Delivery;
  readonly #li: HTMLLIElement;
  readonly #meta: HTMLElement;
  readonly #time: string;

  constructor(li: HTMLLIElement, meta: HTMLElement, status: Delivery) {
    this.#li = li;
    this.#meta = meta;
    this.#time = clock(Date.now());
    this.status = status;
    this.set(status);
  }

  set(status: Delivery, detail?: string): void {
    this.status = status;
    this.#li.dataset.status = status;
    this.#meta.textContent = `${this.#time} · ${detail ?? DELIVERY_TEXT[status]}`;
  }
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
  #screen: Screen | null = null;
  #author = 'Stranger';

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

  /** Composer while the chat is open; "New chat" once it is over. */
  chatOpen(open: boolean): void {
    this.composer.hidden = !open;
    this.over.hidden = open;
    if (!open) this.setTyping(false);
  }

  homeNote(text?: string): void {
    this.#homeNote.textContent = text ?? '';
    this.#homeNote.hidden = !text;
  }

  /** Next, Leave, Block and Report: shown while a chat is open, usable only on a live connection. */
  chatTools(shown: boolean, enabled: boolean): void {
    this.#toolsRow.hidden = !shown;
    for (const button of this.#tools) button.disabled = !enabled;
  }

  /** How messages from the other side are attributed for screen readers, and who "is typing". */
  setPartner(author: string): void {
    this.#author = author;
    this.typing.textContent = `${author} is typing…`;
  }

  /** Next asks once before it acts: the first press arms it, the second leaves. */
  armNext(armed: boolean): void {
    if (this.next.classList.contains('armed') === armed) return;
    this.next.classList.toggle('armed', armed);
    this.next.textContent = armed ? 'Sure? Next' : 'Next';
    this.announce(armed ? 'Press Next again to leave this chat and meet someone new.' : '');
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
    this.#append(element('li', 'notice', text), 'notice');
  }

  own(text: string, status: Delivery): OwnMessage {
    const meta = element('span', 'meta');
    const li = bubble('msg', 'You', text, meta);
    // With its meta line filled before it is scrolled into view, the newest message shows its receipt.
    const mine = new OwnMessage(li, meta, status);
    this.#append(li, 'me');
    return mine;
  }

  theirs(text: string, ts: number, warning?: string): void {
    const meta = element('span', 'meta', warning ? `${clock(ts)} · ${warning}` : clock(ts));
    this.#append(bubble(warning ? 'msg warn' : 'msg', this.#author, text, meta), 'them');
  }

  /** A message that arrived but must not be shown as text (tampered, replayed, undecryptable). */
  failed(reason: string): void {
    const meta = element('span', 'meta', reason);
    this.#append(bubble('msg bad', this.#author, 'A message could not be shown.', meta), 'them');
  }

  #append(li: HTMLLIElement, from: 'me' | 'them' | 'notice'): void {
    li.dataset.from = from;
    const log = this.log;
    const atEnd = log.scrollHeight - log.scrollTop - log.clientHeight < 80;
    this.list.append(li);
    if (atEnd || from === 'me') li.scrollIntoView({ block: 'end' });
  }
}
