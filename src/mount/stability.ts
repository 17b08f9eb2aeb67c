// A file is shipped only once it is stable: its size and mtime have not changed for `stableMs`.
// chokidar reports a file about 2 ms after it is created, long before its writer closes it, and its own
// awaitWriteFinish does not apply to the initial scan; so every sighting, initial or live, comes here.

import { statSync } from "node:fs";

export interface Sighting {
  readonly size: number;
  readonly mtimeMs: number;
  /** Reported with a stable file (from its last look): what tells one version from another beyond size and mtime. */
  readonly ctimeMs?: number;
  readonly ino?: number;
  /** The file system the inode is on (an inode number alone may be found on another). */
  readonly dev?: number;
  /** Reported with a stable file: when the watcher last said it changed (not our own looks), if it did. */
  readonly changeAt?: number;
}

interface Pending extends Sighting {
  /** When we last saw the file change (or first saw it). */
  readonly seenAt: number;
  /** Not before this time is it worth looking again. */
  readonly checkAt: number;
}

/** Files looked at in one turn of the event loop. */
const SLICE = 256;

export interface StabilityOptions {
  readonly stableMs: number;
  readonly now?: () => number;
}

/**
 * Holds files that changed recently and reports each one when it has stopped changing.
 * One sweep timer for all files (not a timer per file): 10,000 files found at start cost one interval.
 */
export class StabilityTracker {
  readonly #pending = new Map<string, Pending>();
  readonly #stableMs: number;
  readonly #now: () => number;
  #timer: NodeJS.Timeout | undefined;
  #sweeping = false;
  /** Closed: nothing more is watched, nor reported (a look under way when it closed finds nothing). */
  #closed = false;

  constructor(
    options: StabilityOptions,
    private readonly onStable: (key: string, absolute: string, sighting: Sighting) => void,
    private readonly toAbsolute: (key: string) => string,
    /** What was a file is something else now (a FIFO, a device, a directory, or a link to one). */
    private readonly onNotFile: (key: string) => void = () => undefined,
  ) {
    this.#stableMs = options.stableMs;
    this.#now = options.now ?? Date.now;
  }

  get size(): number {
    return this.#pending.size;
  }

  /** The first `count` keys still changing (to say what is waited for). */
  first(count: number): string[] {
    const keys: string[] = [];
    for (const key of this.#pending.keys()) {
      if (keys.length >= count) break;
      keys.push(key);
    }
    return keys;
  }

  /**
   * The file was seen (created, written, found by the scan): start or restart its quiet period.
   * `changeEvent`: the watcher said it changed (see Sighting.changeAt).
   */
  saw(key: string, sighting: Sighting, changeEvent = false): void {
    if (this.#closed) return;
    const now = this.#now();
    const changeAt = changeEvent ? now : this.#pending.get(key)?.changeAt;
    // A file untouched for stableMs already (found at start, mtime in the past) needs only a second look;
    // a file with a recent or future mtime waits the full quiet period from now.
    const age = now - sighting.mtimeMs;
    const wait = age >= this.#stableMs && age < 365 * 86_400_000 ? 0 : this.#stableMs;
    this.#pending.set(key, { ...sighting, seenAt: now, checkAt: now + wait, ...(changeAt !== undefined ? { changeAt } : {}) });
    this.#arm();
  }

  /** Is this file waiting for its quiet period? */
  has(key: string): boolean {
    return this.#pending.has(key);
  }

  /** The size the file had when last seen, while it waits for its quiet period. */
  sizeSeen(key: string): number | undefined {
    return this.#pending.get(key)?.size;
  }

  forget(key: string): void {
    this.#pending.delete(key);
  }

  /** Forget every pending key for which `test` is true (a deleted directory). */
  forgetWhere(test: (key: string) => boolean): void {
    for (const key of this.#pending.keys()) if (test(key)) this.#pending.delete(key);
  }

  close(): void {
    this.#closed = true;
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#pending.clear();
  }

  #arm(): void {
    if (this.#timer) return;
    const interval = Math.min(250, Math.max(10, Math.floor(this.#stableMs / 5)));
    this.#timer = setInterval(() => void this.#sweep(), interval);
  }

  async #sweep(): Promise<void> {
    if (this.#sweeping) return;
    this.#sweeping = true;
    try {
      const now = this.#now();
      const due = [...this.#pending].filter(([, p]) => p.checkAt <= now);
      // Synchronous stat calls, a slice at a time: 7-10 µs of CPU each for a file in the cache, against
      // 50-60 through the thread pool and a promise (measured here); 10,000 files found at start were
      // 0.3-0.6 CPU-s of a publisher's start that way. A slice holds the event loop for a few ms.
      for (let i = 0; i < due.length; i++) {
        this.#check(due[i]![0], due[i]![1]);
        if (i % SLICE === SLICE - 1) await new Promise((resolve) => setImmediate(resolve));
      }
      if (this.#pending.size === 0 && this.#timer) {
        clearInterval(this.#timer);
        this.#timer = undefined;
      }
    } finally {
      this.#sweeping = false;
    }
  }

  #check(key: string, before: Pending): void {
    // Another sighting may have replaced this entry while the sweep let others run (between slices), or
    // the tracker closed meanwhile (it forgets every entry): said of nothing then, not even "not a file"
    // (looked at after it, a review: a sweep under way went on after close, its deletes said).
    if (this.#pending.get(key) !== before) return;
    const absolute = this.toAbsolute(key);
    let now: Sighting;
    let ctime: number, ino: number, dev: number;
    try {
      const s = statSync(absolute);
      if (!s.isFile()) {
        this.#pending.delete(key);
        this.onNotFile(key);
        return;
      }
      now = { size: s.size, mtimeMs: s.mtimeMs };
      ({ ctimeMs: ctime, ino, dev } = s);
    } catch {
      // Gone (the watcher will report the unlink) or unreadable: nothing to ship.
      this.#pending.delete(key);
      return;
    }
    if (now.size === before.size && now.mtimeMs === before.mtimeMs) {
      this.#pending.delete(key);
      this.onStable(key, absolute, { ...now, ctimeMs: ctime, ino, dev, ...(before.changeAt !== undefined ? { changeAt: before.changeAt } : {}) });
    } else {
      this.saw(key, now);
    }
  }
}
