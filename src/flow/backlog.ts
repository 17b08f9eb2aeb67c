// What waits to be handled, summed over everyone who adds to it, with a gate for the one who takes it
// in. The server's read loop takes messages from libzmq as fast as they come and queues each in its
// client's state machine, where it waits while that machine is busy (sending a file to a client that
// does not read, working through a big ICANHAZ cache). Each client's queue is bounded (max-pending-bytes,
// beyond it the client is dropped), but many clients at once could still make us hold their sum. So the
// loop stops taking messages while too much waits, and goes on once half of it has been handled: the rest
// waits where it costs us nothing more, in libzmq's queue for its connection (bounded per connection by
// its receive high-water mark) and in TCP, which slows the senders down.

export class Backlog {
  #bytes = 0;
  #waiters: (() => void)[] = [];

  /** `limit`: stop taking more while over it; go on at half of it (not at once, so as not to flap). */
  constructor(readonly limit: number) {}

  /** What waits now. */
  get bytes(): number {
    return this.#bytes;
  }

  /** More than the limit waits: take nothing more until `room()` resolves. */
  get full(): boolean {
    return this.#bytes > this.limit;
  }

  /** What waits grew (positive) or was handled or dropped (negative). */
  change(delta: number): void {
    this.#bytes += delta;
    if (delta < 0 && this.#bytes <= this.limit / 2) this.release();
  }

  /** Resolves at once unless full; then once what waits has fallen to half the limit (or release()). */
  room(): Promise<void> {
    if (!this.full) return Promise.resolve();
    return new Promise((resolve) => this.#waiters.push(resolve));
  }

  /** Let whoever waits for room go on (also when closing: the loop must be able to end). */
  release(): void {
    const waiters = this.#waiters;
    this.#waiters = [];
    for (const resolve of waiters) resolve();
  }
}
