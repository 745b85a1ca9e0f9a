/**
 * How frames reach a uWebSockets.js socket. Frames are queued per socket and
 * written once per event-loop turn (after uWS has handled everything that was
 * readable), each socket's batch corked into one syscall. Without this, a
 * frame for the partner is its own syscall: uWS corks only the socket whose
 * data it is reading, so sends to any other socket go straight to the kernel,
 * and that was half the server's CPU time in the throughput bench. Order is
 * kept because every frame for a socket goes through its queue.
 */
import type { WebSocket } from 'uWebSockets.js';
import { closeCode } from './errors.js';
import type { Connection } from './session.js';

/** Sockets with queued frames, written out in one pass in the loop's check phase. */
class WriteScheduler {
  #dirty: UwsConnection[] = [];
  #scheduled = false;

  add(conn: UwsConnection): void {
    this.#dirty.push(conn);
    if (this.#scheduled) return;
    this.#scheduled = true;
    setImmediate(this.#flushAll);
  }

  readonly #flushAll = (): void => {
    this.#scheduled = false;
    const dirty = this.#dirty;
    this.#dirty = [];
    for (const conn of dirty) conn.flush();
  };
}

const scheduler = new WriteScheduler();

/** Shared by every connection of one edge (one object, not two fields per socket). */
export interface WriteOptions {
  /** Bytes uWS may hold for a socket before it is closed as a slow consumer. */
  readonly maxBackpressure: number;
  /** Called once with the close code whenever we close a socket. */
  readonly onClose: (code: number) => void;
}

/**
 * One socket's writer. It is made before the socket opens (it doubles as the
 * socket's uWS user data, see ws-handler.ts) and is attached on open.
 */
export class UwsConnection implements Connection {
  closed = false;
  #ws: WebSocket<unknown> | null = null;
  /** Frames waiting for this turn's write; null when there are none (most sockets, most of the time). */
  #queue: string[] | null = null;

  constructor(private readonly options: WriteOptions) {}

  attach(ws: WebSocket<unknown>): void {
    this.#ws = ws;
  }

  send(frame: string): void {
    if (this.closed) return;
    if (this.#queue) this.#queue.push(frame);
    else {
      this.#queue = [frame];
      scheduler.add(this);
    }
  }

  /** Writes what is queued, in order, as one corked batch. */
  flush(): void {
    const frames = this.#queue;
    const ws = this.#ws;
    if (this.closed || !frames || !ws) return;
    this.#queue = null;
    ws.cork(() => {
      for (const frame of frames) ws.send(frame, false, false);
    });
    // A client that does not read is cut off on purpose; what it missed stays buffered for its resume.
    if (ws.getBufferedAmount() > this.options.maxBackpressure) this.#end(closeCode('slow_consumer'), 'slow_consumer');
  }

  /** What was queued before the close still goes out first (an error frame, say). */
  close(code: number, reason: string): void {
    if (this.closed) return;
    this.flush();
    if (!this.closed) this.#end(code, reason);
  }

  #end(code: number, reason: string): void {
    this.closed = true;
    this.#queue = null;
    this.options.onClose(code);
    const ws = this.#ws;
    try {
      // Corked, so an end from outside a uWS callback (an envelope from another instance) is written at once.
      ws?.cork(() => ws.end(code, reason));
    } catch {
      // Already closed by the peer in the meantime: nothing left to end.
    }
  }
}
