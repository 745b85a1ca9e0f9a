/**
 * Every session of this process, and what admission needs to know about
 * them: how many each client address holds (connected or away), and which
 * are away (no socket, inside their resume window) in the order they went
 * away, so that room for a newcomer is made by evicting the oldest of those
 * rather than by refusing the newcomer. Away sessions that are in a chat are
 * kept apart from idle ones: evicting one ends someone else's chat too.
 */
import type { AddressKey } from './address.js';
import type { Session } from './session.js';

interface AddressEntry {
  /** Sessions of this address, connected or away. */
  count: number;
  /** Its away sessions, oldest first; made on first use (most addresses have one session, connected). */
  away: Set<Session> | null;
}

export class SessionTable {
  readonly #byId = new Map<string, Session>();
  readonly #addresses = new Map<AddressKey, AddressEntry>();
  /** Away sessions not in a chat, oldest first: the first to go when the process is full. */
  readonly #awayIdle = new Set<Session>();
  readonly #awayInChat = new Set<Session>();

  get size(): number {
    return this.#byId.size;
  }

  get(id: string): Session | undefined {
    return this.#byId.get(id);
  }

  values(): IterableIterator<Session> {
    return this.#byId.values();
  }

  add(session: Session): void {
    this.#byId.set(session.id, session);
    this.#enter(session.address);
  }

  delete(session: Session): void {
    if (!this.#byId.delete(session.id)) return;
    this.#cameBack(session);
    this.#leave(session.address);
  }

  /** The session's socket is gone; its resume window runs. */
  wentAway(session: Session): void {
    (session.chat ? this.#awayInChat : this.#awayIdle).add(session);
    const entry = this.#addresses.get(session.address);
    if (!entry) return;
    entry.away ??= new Set();
    entry.away.add(session);
  }

  /** The session resumed, possibly from another address (a phone that changed networks). */
  resumed(session: Session, address: AddressKey): void {
    this.#cameBack(session);
    if (address === session.address) return;
    this.#leave(session.address);
    session.address = address;
    this.#enter(address);
  }

  /** The chat of an away session ended: it is idle now, and may be evicted like any idle one. */
  chatEnded(session: Session): void {
    if (this.#awayInChat.delete(session)) this.#awayIdle.add(session);
  }

  /** Sessions of `address`, connected or away. */
  countFrom(address: AddressKey): number {
    return this.#addresses.get(address)?.count ?? 0;
  }

  /** The away session of `address` that goes first to make room for another of its own: the oldest, idle ones first. */
  evictableFrom(address: AddressKey): Session | undefined {
    const away = this.#addresses.get(address)?.away;
    if (!away) return undefined;
    let oldest: Session | undefined;
    for (const s of away) {
      if (!s.chat) return s;
      oldest ??= s;
    }
    return oldest;
  }

  /** The process's oldest idle away session: the one evicted when the process is full. */
  oldestIdleAway(): Session | undefined {
    for (const s of this.#awayIdle) return s;
    return undefined;
  }

  clear(): void {
    this.#byId.clear();
    this.#addresses.clear();
    this.#awayIdle.clear();
    this.#awayInChat.clear();
  }

  #cameBack(session: Session): void {
    this.#awayIdle.delete(session);
    this.#awayInChat.delete(session);
    const entry = this.#addresses.get(session.address);
    entry?.away?.delete(session);
    if (entry?.away?.size === 0) entry.away = null;
  }

  #enter(address: AddressKey): void {
    const entry = this.#addresses.get(address);
    if (entry) entry.count++;
    else this.#addresses.set(address, { count: 1, away: null });
  }

  #leave(address: AddressKey): void {
    const entry = this.#addresses.get(address);
    if (!entry) return;
    if (--entry.count <= 0) this.#addresses.delete(address);
  }
}
