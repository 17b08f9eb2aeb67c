// What a test peer has received and not yet looked at, with a bounded wait for the next arrival: the
// part every scripted peer (raw DEALER or raw ROUTER) needs, whatever it checks on top.

export class Arrivals<T> {
  readonly #items: T[] = [];
  #wake: (() => void) | undefined;

  /** Something arrived (called by the peer's receive loop). */
  push(item: T): void {
    this.#items.push(item);
    this.#wake?.();
  }

  /** Stop any wait now (the peer is closing): it returns what it has, or undefined. */
  interrupt(): void {
    this.#wake?.();
  }

  /** The oldest item not yet taken, waiting up to `timeoutMs` for one; undefined if none came. */
  async next(timeoutMs: number): Promise<T | undefined> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const item = this.#items.shift();
      if (item !== undefined) return item;
      const left = deadline - Date.now();
      if (left <= 0) return undefined;
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, left);
        this.#wake = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#wake = undefined;
    }
  }
}
