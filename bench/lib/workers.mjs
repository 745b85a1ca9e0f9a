// A pool of generator processes, one per source address 127.0.0.x (or, with
// `addressesPerWorker`, a block of them each: the gateway bench spreads its
// clients over many addresses, as nginx's per-address limits see real ones),
// each holding its share of the clients (one process may hold at most ~19k sockets).
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';

const WORKER = fileURLToPath(new URL('./worker.mjs', import.meta.url));

export class WorkerPool {
  constructor(count, addressesPerWorker = 1) {
    if (2 + count * addressesPerWorker > 255) throw new Error('more source addresses than 127.0.0.2-254');
    this.workers = Array.from({ length: count }, (_, i) => {
      const child = fork(WORKER, [], { stdio: ['ignore', 'inherit', 'inherit', 'ipc'] });
      const addresses = Array.from(
        { length: addressesPerWorker },
        (_, j) => `127.0.0.${2 + i * addressesPerWorker + j}`,
      );
      return { child, address: addresses[0], addresses, pending: new Map(), seq: 0 };
    });
    for (const w of this.workers)
      w.child.on('message', ({ id, result, error }) => {
        const p = w.pending.get(id);
        w.pending.delete(id);
        if (error) p?.reject(new Error(error));
        else p?.resolve(result);
      });
  }

  #call(w, cmd, args) {
    const id = w.seq++;
    return new Promise((resolve, reject) => {
      w.pending.set(id, { resolve, reject });
      w.child.send({ id, cmd, args });
    });
  }

  /** Runs `cmd` on every worker; `args` may be a function of the worker index. */
  all(cmd, args = {}) {
    return Promise.all(this.workers.map((w, i) => this.#call(w, cmd, typeof args === 'function' ? args(i) : args)));
  }

  /** `relay.gateway`: { ca (PEM), upstreams (nginx's server lines), routePrefix } for clients through nginx. */
  init(relay) {
    return this.all('init', (i) => ({
      urls: relay.urls ?? [relay.url],
      transport: relay.transport,
      localAddress: this.workers[i].address,
      localAddresses: this.workers[i].addresses,
      index: i,
      ...relay.gateway,
    }));
  }

  /** Asks each process to exit (so a `--cpu-prof` profile gets written), and kills what is left after 2 s. */
  async stop() {
    await Promise.race([this.all('exit').catch(() => {}), new Promise((r) => setTimeout(r, 2000))]);
    await new Promise((r) => setTimeout(r, 200));
    for (const w of this.workers) if (w.child.exitCode === null) w.child.kill('SIGKILL');
  }
}
