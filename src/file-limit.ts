/**
 * The process's open-file limit, and what it leaves for WebSockets. Every
 * socket is a file descriptor; when none is left, accept() fails, the
 * connection stays in the kernel's backlog, and uWebSockets.js retries it on
 * every loop turn: the process spins at 100% CPU and serves no one (seen when
 * a bench ramped past the limit). Capping open sockets below the limit keeps
 * it out of that state: the upgrade past the cap is refused with 503, which
 * needs its descriptor only for a moment.
 */
import { readFileSync } from 'node:fs';

/** The soft limit on open files, or null where it cannot be read (not Linux) or is unlimited. */
export function openFileLimit(readLimits = () => readFileSync('/proc/self/limits', 'utf8')): number | null {
  let text: string;
  try {
    text = readLimits();
  } catch {
    return null; // no /proc: not Linux, so no cap from here
  }
  const soft = text.match(/^Max open files\s+(\S+)/m)?.[1];
  return soft === undefined || soft === 'unlimited' ? null : Number(soft);
}

/**
 * The most WebSockets the process can hold and still accept: the limit less a
 * reserve for the listener, logs, HTTP requests and upgrades in flight (a
 * quarter of the limit, at most 256).
 */
export function socketsWithin(fileLimit: number): number {
  return Math.max(1, fileLimit - Math.min(256, Math.floor(fileLimit / 4)));
}
