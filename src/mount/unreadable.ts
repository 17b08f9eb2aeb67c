// Directories of a mount that we may not look into: made unreadable while published (chmod 000 on the
// way), or unreadable from the start. The watcher stops watching a directory it cannot read, and nothing
// tells it when it may again; so each is looked at every second, and handed back once readable (the
// mount then has the watcher scan it afresh).

import { constants } from "node:fs";
import { access } from "node:fs/promises";

export class UnreadableDirectories {
  readonly #dirs = new Set<string>();
  #timer: NodeJS.Timeout | undefined;
  #closed = false;

  constructor(
    /** We may look into `dir` again (called once; it is forgotten here). */
    private readonly readableAgain: (dir: string) => void,
    /** `dir` is gone (called once; it is forgotten here): what was in it went too. */
    private readonly gone: (dir: string) => void,
    private readonly everyMs = 1000,
  ) {}

  has(dir: string): boolean {
    return this.#dirs.has(dir);
  }

  /** How many we may not look into now. */
  get size(): number {
    return this.#dirs.size;
  }

  /** Look at `dir` every second until we may read it. */
  add(dir: string): void {
    if (this.#closed) return;
    this.#dirs.add(dir);
    this.#timer ??= setInterval(() => void this.#look(), this.everyMs);
  }

  close(): void {
    this.#closed = true;
    clearInterval(this.#timer);
    this.#timer = undefined;
  }

  async #look(): Promise<void> {
    for (const dir of [...this.#dirs]) {
      const readable = await access(dir, constants.R_OK | constants.X_OK).then(
        () => true,
        (error: NodeJS.ErrnoException) => (error.code === "ENOENT" || error.code === "ENOTDIR" ? ("gone" as const) : false),
      );
      if (readable === false || this.#closed || !this.#dirs.delete(dir)) continue;
      // (Removed while we could not look: looked at for ever otherwise, and its files left published.)
      if (readable === "gone") this.gone(dir);
      else this.readableAgain(dir);
    }
    if (this.#dirs.size === 0 || this.#closed) {
      clearInterval(this.#timer);
      this.#timer = undefined;
    }
  }
}
