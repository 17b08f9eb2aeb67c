// A long run of work lets the event loop turn now and then.
//
// An await on a promise that is already settled goes on at once, without the event loop. A run of them
// (zeromq.js hands over a message that is already queued that way; the engine handles one event after
// another, and small files are written synchronously) kept timers, signal handlers and I/O callbacks
// waiting for as long as it lasted: see TURN_EVERY_MS. zeromq.js has a guard of its own, a count: after
// 512 such receives on a socket the next waits for the loop. That bounds nothing in time: a subscriber
// gets 64 small files per message, and a server may spend milliseconds on one request.

/**
 * How long a run of work goes on before it lets the event loop turn. Measured on a subscriber of
 * 20,000 small files before this existed: 1.8 s without a turn (up to 0.8 s at a time with 100,000).
 * Meanwhile no heartbeat or progress line went out, a Ctrl-C waited, and no received frame was freed:
 * zeromq.js frees each in a callback the loop runs, and libzmq's 256 KiB receive batch (see
 * client/receive-batch.ts) stays while any frame read into it is held: 450-560 MB of them at the peak
 * (heaptrack).
 */
export const TURN_EVERY_MS = 10;

/** The clock of one run of work. */
export class Turns {
  #since = performance.now();

  /** This run has gone on for TURN_EVERY_MS since it began or last let the loop turn. */
  get due(): boolean {
    return performance.now() - this.#since >= TURN_EVERY_MS;
  }

  /** Let the event loop turn once (setImmediate: after the I/O callbacks that are ready). */
  async turn(): Promise<void> {
    await new Promise<void>((resolve) => setImmediate(resolve));
    this.#since = performance.now();
  }
}
