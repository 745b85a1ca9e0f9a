/**
 * Pictures and files in the page: attach (button, drag and drop, paste), a preview before sending, progress on
 * both sides, cancel either way. A received picture shows inline once complete and decrypted; any other file is a
 * card (name, size, type) with a Download button. Nothing is downloaded or opened by itself, and only the four
 * plain picture formats, checked by their first bytes, are ever rendered: never HTML, SVG or anything active.
 *
 * Pictures are drawn again in the browser before they leave, which drops their metadata (EXIF GPS position,
 * camera serial, times); "Send the original" keeps it, when asked. The transfer itself is src/file-transfer.ts.
 */
import type { RelayClient } from '../client.js';
import type { ChatCipher } from '../e2e.js';
import { type FileSource, FileTooLargeError, FileTransfers, formatBytes, type Transfer } from '../file-transfer.js';
import type { IncomingMsgFrame } from '../protocol.js';
import { element } from './view.js';

/** Pictures the page shows inline, with the bytes each must start with. Everything else is a download. */
const INLINE: Record<string, (b: Uint8Array) => boolean> = {
  'image/jpeg': (b) => b[0] === 0xff && b[1] === 0xd8 && b[2] === 0xff,
  'image/png': (b) => b[0] === 0x89 && b[1] === 0x50 && b[2] === 0x4e && b[3] === 0x47,
  'image/gif': (b) => b[0] === 0x47 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x38,
  'image/webp': (b) => b[0] === 0x52 && b[1] === 0x49 && b[2] === 0x46 && b[3] === 0x46 && b[8] === 0x57,
};
/** Pictures re-encoded before sending (their metadata dropped); anything larger on a side is scaled down. */
const REENCODE = new Set(['image/jpeg', 'image/png', 'image/webp', 'image/gif', 'image/bmp', 'image/avif']);
const MAX_SIDE = 4096;

const ENDED_TEXT: Record<string, (by: 'me' | 'partner' | null, who: string) => string> = {
  cancelled: (by, who) => (by === 'me' ? 'Cancelled' : `${who} cancelled it`),
  declined: (by, who) => (by === 'me' ? 'Declined' : `${who} declined it`),
  too_large: (by, who) => (by === 'me' ? 'Refused: too large for this relay' : `Too large for ${who}`),
  broken: () => 'Failed: it arrived damaged or out of order, so it is not shown',
};

export interface FilesHost {
  client: RelayClient;
  /** The list the chat's messages go in. */
  list: HTMLOListElement;
  /** The composer, where the attach button and the preview go. */
  composer: HTMLFormElement;
  /** The element files may be dropped on. */
  dropZone: HTMLElement;
  text: HTMLTextAreaElement;
  /** Who the other side is, capitalised ("Stranger", "Your friend"). */
  partner(): string;
  notice(text: string): void;
  announce(text: string): void;
  /** A card was added: scroll it into view if the log was at its end (or always, for my own). */
  added(li: HTMLLIElement, mine: boolean): void;
}

const blobSource = (blob: Blob): FileSource => ({
  size: blob.size,
  read: async (offset, length) => new Uint8Array(await blob.slice(offset, offset + length).arrayBuffer()),
});

/** A name safe to save under: no path, no control characters, not empty. */
const saveName = (name: string): string =>
  name
    .replace(/[\\/:*?"<>|\p{Cc}\p{Cf}]/gu, '_')
    .replace(/^\.+/, '')
    .slice(0, 120) || 'file';

/** Draws a picture again (EXIF orientation applied), scaled to MAX_SIDE: the new file carries no metadata. */
async function reencode(file: Blob): Promise<Blob> {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = element('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext('2d')?.drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  bitmap.close();
  // PNG and GIF may be transparent or line art: PNG keeps that; photos go as JPEG.
  const type = file.type === 'image/png' || file.type === 'image/gif' ? 'image/png' : 'image/jpeg';
  return new Promise((resolve, reject) =>
    canvas.toBlob((b) => (b ? resolve(b) : reject(new Error('the picture could not be encoded'))), type, 0.9),
  );
}

const renamed = (name: string, type: string): string =>
  `${name.replace(/\.[^.]*$/, '') || 'picture'}.${type === 'image/png' ? 'png' : 'jpg'}`;

/** One transfer's card in the chat. */
class Card {
  readonly li: HTMLLIElement;
  readonly #status: HTMLElement;
  readonly #progress: HTMLProgressElement;
  readonly #cancel: HTMLButtonElement;
  readonly #body: HTMLElement;

  constructor(t: Transfer, author: string, onCancel: () => void) {
    this.li = element('li', 'file');
    this.li.dataset.from = t.direction === 'out' ? 'me' : 'them';
    this.li.dataset.transfer = t.id;
    this.li.dataset.state = 'active';
    this.#body = element('div', 'file-body');
    const name = element('span', 'file-name', t.meta.name);
    const about = element('span', 'file-about', `${formatBytes(t.meta.size)} · ${t.meta.type || 'unknown type'}`);
    this.#body.append(name, about);
    this.#progress = element('progress');
    this.#progress.max = Math.max(1, t.chunks);
    this.#progress.value = 0;
    this.#progress.setAttribute('aria-label', `Progress of ${t.meta.name}`);
    this.#status = element('span', 'meta', t.direction === 'out' ? 'Sending…' : 'Receiving…');
    this.#cancel = element('button', 'file-cancel', 'Cancel');
    this.#cancel.type = 'button';
    this.#cancel.setAttribute('aria-label', `Cancel ${t.meta.name}`);
    this.#cancel.addEventListener('click', onCancel);
    this.li.append(element('span', 'sr', `${author}: file `), this.#body, this.#progress, this.#status, this.#cancel);
  }

  progress(t: Transfer): void {
    this.#progress.value = t.doneChunks;
    const percent = t.chunks === 0 ? 100 : Math.floor((100 * t.doneChunks) / t.chunks);
    this.#status.textContent = `${t.direction === 'out' ? 'Sending' : 'Receiving'}… ${percent}%`;
  }

  done(status: string, state: string): void {
    this.li.dataset.state = state;
    this.#progress.remove();
    this.#cancel.remove();
    this.#status.textContent = status;
  }

  /** Shows what arrived: a picture inline, or a Download button. */
  show(node: HTMLElement): void {
    this.#body.append(node);
  }
}

export class FileShare {
  readonly #host: FilesHost;
  readonly #attach: HTMLButtonElement;
  readonly #input: HTMLInputElement;
  readonly #preview: HTMLElement;
  #files: FileTransfers | null = null;
  readonly #cards = new Map<string, Card>();
  /** Object URLs made for this chat's pictures and previews, revoked when it ends. */
  readonly #urls = new Set<string>();
  #chosen: File | null = null;

  constructor(host: FilesHost) {
    this.#host = host;
    this.#attach = element('button', 'attach', '+');
    this.#attach.type = 'button';
    this.#attach.id = 'attach';
    this.#attach.title = 'Send a picture or a file';
    this.#attach.setAttribute('aria-label', 'Send a picture or a file');
    this.#attach.disabled = true;
    this.#input = element('input');
    this.#input.type = 'file';
    this.#input.id = 'file-input';
    this.#input.hidden = true;
    this.#preview = element('div', 'attach-preview');
    this.#preview.id = 'attach-preview';
    this.#preview.hidden = true;
    this.#preview.setAttribute('role', 'dialog');
    this.#preview.setAttribute('aria-label', 'Send this file?');
    host.composer.prepend(this.#attach, this.#input);
    host.composer.before(this.#preview);
    this.#attach.addEventListener('click', () => this.#input.click());
    this.#input.addEventListener('change', () => {
      const file = this.#input.files?.[0];
      this.#input.value = '';
      if (file) void this.#choose(file);
    });
    host.text.addEventListener('paste', (e) => {
      const file = e.clipboardData?.files[0];
      if (!file || !this.#files) return;
      e.preventDefault();
      void this.#choose(file);
    });
    host.dropZone.addEventListener('dragover', (e) => {
      if (!this.#files || !e.dataTransfer?.types.includes('Files')) return;
      e.preventDefault();
      host.dropZone.classList.add('dropping');
    });
    host.dropZone.addEventListener('dragleave', () => host.dropZone.classList.remove('dropping'));
    host.dropZone.addEventListener('drop', (e) => {
      host.dropZone.classList.remove('dropping');
      const file = e.dataTransfer?.files[0];
      if (!file || !this.#files) return;
      e.preventDefault();
      void this.#choose(file);
    });
  }

  /** Keys are agreed: files may go. */
  begin(cipher: ChatCipher): void {
    this.end();
    this.#files = new FileTransfers(this.#host.client, cipher, {
      offer: (t) => this.#offered(t),
      progress: (t) => this.#cards.get(t.id)?.progress(t),
      complete: (t, parts) => this.#complete(t, parts),
      ended: (t) => this.#ended(t),
    });
    this.#attach.disabled = false;
  }

  /** The chat is over (or a new one starts): transfers stop, and every picture's memory is let go. */
  end(): void {
    this.#files?.dispose();
    this.#files = null;
    this.#attach.disabled = true;
    this.#closePreview();
    for (const url of this.#urls) URL.revokeObjectURL(url);
    this.#urls.clear();
    this.#cards.clear();
  }

  receive(frame: IncomingMsgFrame): void {
    this.#files?.receive(frame);
  }

  #url(blob: Blob): string {
    const url = URL.createObjectURL(blob);
    this.#urls.add(url);
    return url;
  }

  /** Shows what is about to go, with Send and Cancel (and, for a picture, the choice to keep the original). */
  async #choose(file: File): Promise<void> {
    if (!this.#files) return;
    this.#closePreview();
    this.#chosen = file;
    const p = this.#preview;
    const picture = REENCODE.has(file.type);
    if (picture) {
      const img = element('img', 'preview-img');
      img.alt = `Preview of ${file.name}`;
      img.src = this.#url(file);
      p.append(img);
    }
    p.append(
      element('p', 'file-name', file.name),
      element('p', 'file-about', `${formatBytes(file.size)} · ${file.type || 'unknown type'}`),
    );
    const original = element('input');
    original.type = 'checkbox';
    original.id = 'send-original';
    if (picture) {
      const label = element('label', 'hint');
      label.append(original, ' Send the original (keeps its metadata, such as where and when it was taken)');
      p.append(label);
    }
    const send = element('button', 'primary', 'Send');
    send.type = 'button';
    send.id = 'attach-send';
    const cancel = element('button', '', 'Cancel');
    cancel.type = 'button';
    cancel.id = 'attach-cancel';
    const row = element('div', 'row');
    row.append(send, cancel);
    p.append(row);
    p.hidden = false;
    p.addEventListener('keydown', (e) => {
      if (e.key !== 'Escape') return;
      // Closing the preview is all this Escape does: it must not count towards Esc twice (next stranger).
      e.stopPropagation();
      this.#closePreview();
    });
    cancel.addEventListener('click', () => this.#closePreview());
    send.addEventListener('click', () => void this.#send(file, picture && !original.checked));
    send.focus();
  }

  #closePreview(): void {
    this.#chosen = null;
    this.#preview.replaceChildren();
    this.#preview.hidden = true;
  }

  async #send(file: File, clean: boolean): Promise<void> {
    const files = this.#files;
    if (!files || this.#chosen !== file) return;
    this.#closePreview();
    if (file.size === 0) return this.#host.notice(`${file.name} is empty. It was not sent.`);
    this.#host.text.focus();
    let blob: Blob = file;
    let name = file.name;
    if (clean) {
      try {
        blob = await reencode(file);
        name = renamed(file.name, blob.type);
      } catch {
        return this.#host.notice(`${file.name} could not be read as a picture. It was not sent.`);
      }
    }
    try {
      const t = await files.send({ name, type: blob.type, size: blob.size }, blobSource(blob));
      if (t.state !== 'active') return;
      const card = this.#card(t);
      if (clean && INLINE[blob.type]) {
        const img = element('img', 'file-img');
        img.alt = `Picture you sent: ${name}`;
        img.src = this.#url(blob);
        card.show(img);
      }
    } catch (err) {
      this.#host.notice(
        err instanceof FileTooLargeError ? `${err.message} It was not sent.` : `${name} could not be sent.`,
      );
    }
  }

  #card(t: Transfer): Card {
    const card = new Card(t, t.direction === 'out' ? 'You' : this.#host.partner(), () => this.#files?.cancel(t.id));
    this.#cards.set(t.id, card);
    this.#host.list.append(card.li);
    this.#host.added(card.li, t.direction === 'out');
    return card;
  }

  #offered(t: Transfer): void {
    this.#card(t);
    this.#host.announce(`${this.#host.partner()} is sending ${t.meta.name}, ${formatBytes(t.meta.size)}.`);
  }

  #complete(t: Transfer, parts: Uint8Array[] | null): void {
    const card = this.#cards.get(t.id);
    if (!card) return;
    this.#cards.delete(t.id);
    if (t.direction === 'out') return card.done('Sent', 'complete');
    const bytes = parts ?? [];
    const head = bytes[0] ?? new Uint8Array(0);
    const inline = INLINE[t.meta.type]?.(head) ?? false;
    if (inline) {
      const img = element('img', 'file-img');
      img.alt = `Picture from ${this.#host.partner()}: ${t.meta.name}`;
      img.src = this.#url(new Blob(bytes as BlobPart[], { type: t.meta.type }));
      card.show(img);
    } else {
      // Typed as plain bytes, so the browser saves it and never renders it, whatever the sender said it is.
      const url = this.#url(new Blob(bytes as BlobPart[], { type: 'application/octet-stream' }));
      const download = element('button', 'file-download', 'Download');
      download.type = 'button';
      download.setAttribute('aria-label', `Download ${t.meta.name}`);
      download.addEventListener('click', () => {
        const a = element('a');
        a.href = url;
        a.download = saveName(t.meta.name);
        a.rel = 'noopener';
        a.click();
      });
      card.show(download);
    }
    card.done('Received', 'complete');
    this.#host.announce(`${t.meta.name} from ${this.#host.partner()} has arrived.`);
  }

  #ended(t: Transfer): void {
    const card = this.#cards.get(t.id);
    // An offer refused at once (too large) has a card made by the offer event; a delivered one that the receiver
    // later found broken had its card finished as sent: look it up by id in the list.
    if (!card) {
      const li = this.#host.list.querySelector<HTMLLIElement>(`li[data-transfer="${CSS.escape(t.id)}"]`);
      if (li) {
        li.dataset.state = t.state;
        const meta = li.querySelector('.meta');
        if (meta) meta.textContent = ENDED_TEXT[t.state]?.(t.endedBy, this.#host.partner()) ?? 'Stopped';
      }
      return;
    }
    this.#cards.delete(t.id);
    const text = ENDED_TEXT[t.state]?.(t.endedBy, this.#host.partner()) ?? 'Stopped';
    card.done(text, t.state);
    this.#host.announce(`${t.meta.name}: ${text}.`);
  }
}
