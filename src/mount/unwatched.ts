// What the watcher could not watch. Linux gives each user a fixed number of inotify watches
// (fs.inotify.max_user_watches, 8,192 on older distributions), and chokidar takes one per file and one per
// directory: beyond the limit it reports each watch it could not add (ENOSPC) and hears nothing more of
// that path. A file not watched changes unseen; a directory not watched gets new files unseen, and those
// gone are never reported. So each such path is looked at in turn instead, as a poor man's watcher: a file
// by lstat (a change is reported), a directory by listing it (names that came and names that went).
//
// Looking costs a system call per path: a sweep starts at most every `everyMs`, and never sooner than four
// times the last sweep's length after it, so however many paths there are, looking takes at most a fifth
// of the time (10,000 paths at about 10 µs each: a sweep every 2 s; a million: every 40 s or so).

import { lstatSync, readdirSync, type Stats } from "node:fs";
import path from "node:path";

export interface UnwatchedEvents {
  /** A file looked at: the first time (whatever it is), then each time it changed. */
  changed(absolute: string, stats: Stats): void;
  /** A name that came into a directory looked at (the first look reports every name it holds). */
  appeared(absolute: string): void;
  /** A path looked at, or a name in a directory looked at, is gone. It is no longer looked at. */
  vanished(absolute: string): void;
}

/** Paths looked at in one turn of the event loop. */
const SLICE = 256;

export class UnwatchedPaths {
  /** Files: absolute path -> what told this version apart at the last look ("" before the first). */
  readonly #files = new Map<string, string>();
  /**
   * Directories: absolute path -> what each name was at the last look ("d" a directory, "-" anything
   * else; undefined before the first look). A name that turned from one into the other (a directory
   * replaced by a file) went and came.
   */
  readonly #dirs = new Map<string, Map<string, string> | undefined>();
  #timer: NodeJS.Timeout | undefined;
  /** The timer set is the short one, for newcomers. */
  #timerSoon = false;
  /** Paths added since the last sweep started: looked at soon, not at the pace below. */
  #newcomers = false;
  #sweeping = false;
  #closed = false;
  /** How long the last sweep took (ms). */
  #lastSweepMs = 0;

  constructor(
    private readonly events: UnwatchedEvents,
    readonly everyMs = 2000,
  ) {}

  get size(): number {
    return this.#files.size + this.#dirs.size;
  }

  /** Sweeps finished so far (what a test waits on to know the paths were looked at again). */
  get sweeps(): number {
    return this.#sweeps;
  }
  #sweeps = 0;

  /** The time between two looks at the same path now (ms). */
  get periodMs(): number {
    return Math.max(this.everyMs, 4 * this.#lastSweepMs);
  }

  has(absolute: string): boolean {
    return this.#files.has(absolute) || this.#dirs.has(absolute);
  }

  /** Is this directory looked at (listed) rather than watched? What changes in it is only seen so. */
  listed(dir: string): boolean {
    return this.#dirs.has(dir);
  }

  addFile(absolute: string): void {
    if (this.#closed || this.#files.has(absolute)) return;
    this.#dirs.delete(absolute);
    this.#files.set(absolute, "");
    this.#index(absolute);
    this.#newcomers = true;
    this.#schedule();
  }

  addDirectory(absolute: string): void {
    if (this.#closed || this.#dirs.has(absolute)) return;
    this.#files.delete(absolute);
    this.#dirs.set(absolute, undefined);
    this.#index(absolute);
    this.#newcomers = true;
    this.#schedule();
  }

  /**
   * What is at `absolute` now is not what its directory held at the last look (gone, or gone and made
   * again between two looks): if its directory is listed, the name is reported as new when next seen.
   */
  lookAgain(absolute: string): void {
    this.#dirs.get(path.dirname(absolute))?.delete(path.basename(absolute));
  }

  /** No longer looked at: `absolute` and everything under it (gone, or watched again). */
  forget(absolute: string): void {
    this.#files.delete(absolute);
    this.#dirs.delete(absolute);
    // Out of the index, and so is each directory above that leads to nothing looked at any more.
    for (let child = absolute, parent = path.dirname(child); parent !== child; child = parent, parent = path.dirname(child)) {
      const siblings = this.#under.get(parent);
      siblings?.delete(child);
      if (siblings === undefined || siblings.size > 0) break;
      this.#under.delete(parent);
      if (this.#files.has(parent) || this.#dirs.has(parent)) break;
    }
    const children = this.#under.get(absolute);
    if (!children) return;
    this.#under.delete(absolute);
    for (const child of children) this.forget(child);
  }

  /** Looked-at paths by their directory: forgetting a directory finds what is under it at once. */
  readonly #under = new Map<string, Set<string>>();
  #index(absolute: string): void {
    // Each directory on the way up knows the next one down, so a directory not looked at itself (watched)
    // still leads to what is looked at under it.
    for (let child = absolute, parent = path.dirname(child); parent !== child; child = parent, parent = path.dirname(child)) {
      const set = this.#under.get(parent);
      if (set?.has(child)) return;
      if (set) set.add(child);
      else this.#under.set(parent, new Set([child]));
    }
  }

  close(): void {
    this.#closed = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
  }

  #schedule(): void {
    if (this.#closed || this.#sweeping || this.size === 0) return;
    // The first look at a newcomer soon (what changed while its watch was being refused is found then),
    // unless sweeps are long (a scan refused thousands of watches: not one sweep after another); after
    // that, at the pace above.
    const soon = this.#newcomers;
    if (this.#timer && (this.#timerSoon || !soon)) return;
    clearTimeout(this.#timer);
    this.#timerSoon = soon;
    this.#timer = setTimeout(() => void this.#sweep(), soon ? Math.min(this.everyMs, Math.max(100, 4 * this.#lastSweepMs)) : this.periodMs);
  }

  async #sweep(): Promise<void> {
    this.#timer = undefined;
    this.#newcomers = false;
    this.#sweeping = true;
    const started = performance.now();
    try {
      // Synchronous calls, a slice at a time: an lstat of a file in the cache costs 7-10 µs of CPU so, and
      // 50-60 through the thread pool and a promise (8,100 files, measured here); a slice holds the event
      // loop for 2-3 ms at most (more on a slow network filesystem, where watching would fail anyway).
      const paths: [string, "file" | "directory"][] = [];
      for (const file of this.#files.keys()) paths.push([file, "file"]);
      for (const dir of this.#dirs.keys()) paths.push([dir, "directory"]);
      for (let i = 0; i < paths.length && !this.#closed; i++) {
        const [absolute, kind] = paths[i]!;
        if (kind === "file") this.#lookAtFile(absolute);
        else this.#lookAtDirectory(absolute);
        if (i % SLICE === SLICE - 1) await new Promise((resolve) => setImmediate(resolve));
      }
    } finally {
      this.#lastSweepMs = performance.now() - started;
      this.#sweeping = false;
      this.#sweeps++;
      this.#schedule();
    }
  }

  #lookAtFile(file: string): void {
    const before = this.#files.get(file);
    if (before === undefined) return; // (forgotten meanwhile)
    let stats: Stats;
    try {
      stats = lstatSync(file);
    } catch (error) {
      // (One we may not look at now is looked at again next time: not taken for gone.)
      if (isGone(error) && this.#files.has(file)) {
        this.forget(file);
        this.events.vanished(file);
      }
      return;
    }
    const now = versionOf(stats);
    if (now === before) return;
    this.#files.set(file, now);
    this.events.changed(file, stats);
  }

  #lookAtDirectory(dir: string): void {
    if (!this.#dirs.has(dir)) return; // (forgotten meanwhile)
    let names: Map<string, string>;
    try {
      // (The kind comes with each name from the directory itself: no call per name.)
      names = new Map(readdirSync(dir, { withFileTypes: true }).map((entry) => [entry.name, entry.isDirectory() ? "d" : "-"]));
    } catch (error) {
      if (isGone(error) && this.#dirs.has(dir)) {
        this.forget(dir);
        this.events.vanished(dir);
      }
      return;
    }
    const before = this.#dirs.get(dir);
    this.#dirs.set(dir, names);
    for (const [name, kind] of before ?? []) if (names.get(name) !== kind) this.events.vanished(path.join(dir, name));
    for (const [name, kind] of names) if (before?.get(name) !== kind) this.events.appeared(path.join(dir, name));
  }
}

/** What tells one version of a file from the next (a rewrite changes ctime; a replacement, the inode). */
function versionOf(stats: Stats): string {
  return `${stats.mode}:${stats.size}:${stats.mtimeMs}:${stats.ctimeMs}:${stats.ino}`;
}

function isGone(error: unknown): boolean {
  const code = (error as NodeJS.ErrnoException).code;
  return code === "ENOENT" || code === "ENOTDIR";
}
