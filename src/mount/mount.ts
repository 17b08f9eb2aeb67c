// A mount publishes one local directory under a virtual path (its alias). It keeps the catalogue of the
// directory's stable files and reports each file that becomes stable (new or changed) and each file that
// goes away. It knows nothing of the protocol or of clients.

import { EventEmitter } from "node:events";
import { lstat, readdir, realpath, stat } from "node:fs/promises";
import type { Stats } from "node:fs";
import path from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { isUnpublished, joinVirtual, normaliseVirtualPath, relativeTo } from "../paths.js";
import { StabilityTracker } from "./stability.js";

export interface PublishedFile {
  /** Path relative to the mount's directory, "/" separators. */
  readonly relative: string;
  /** Virtual path on the wire: alias + "/" + relative. */
  readonly vpath: string;
  /** Absolute path of the file on disk. */
  readonly absolute: string;
  readonly size: number;
  readonly mtimeMs: number;
  /** The mount's real root: the file must still be inside it when it is opened to be sent. */
  readonly root: string;
}

export interface MountEvents {
  /** A file became stable: new, or changed since it was last reported. */
  changed: [file: PublishedFile];
  /** A file that had been reported is gone. */
  deleted: [vpath: string];
  error: [error: Error];
}

export interface MountOptions {
  /** Quiet period before a file is shipped, in ms. */
  readonly stableMs: number;
}

export class MountError extends Error {
  override name = "MountError";
}

export class Mount extends EventEmitter<MountEvents> {
  /** The catalogue: stable files by virtual path. */
  readonly files = new Map<string, PublishedFile>();
  readonly #tracker: StabilityTracker;
  #watcher: FSWatcher | undefined;

  private constructor(
    readonly alias: string,
    /** The real path of the published directory (symlinks resolved once, at publish time). */
    readonly root: string,
    options: MountOptions,
  ) {
    super();
    this.#tracker = new StabilityTracker(
      { stableMs: options.stableMs },
      (relative, absolute, sighting) => void this.#publish(relative, absolute, sighting.size, sighting.mtimeMs),
      (relative) => path.join(this.root, relative),
    );
  }

  /** Check the directory and the alias; nothing is watched until start(). */
  static async open(directory: string, alias: string, options: MountOptions): Promise<Mount> {
    const normalised = normaliseVirtualPath(alias);
    if (normalised === undefined) throw new MountError(`invalid alias "${alias}": must start with "/" and contain no empty, "." or ".." segments`);
    let root: string;
    try {
      root = await realpath(directory);
      if (!(await stat(root)).isDirectory()) throw new MountError(`not a directory: ${directory}`);
    } catch (error) {
      if (error instanceof MountError) throw error;
      const code = (error as NodeJS.ErrnoException).code;
      throw new MountError(code === "ENOENT" ? `no such directory: ${directory}` : `cannot publish ${directory}: ${code ?? String(error)}`);
    }
    return new Mount(normalised, root, options);
  }

  /** Watch the directory; resolves once the initial scan is done (its files still wait to be stable). */
  start(): Promise<void> {
    const watcher = watch(this.root, {
      persistent: true,
      ignoreInitial: false,
      followSymlinks: false,
      alwaysStat: true,
      awaitWriteFinish: false,
      ignored: (absolute: string) => {
        const relative = this.#relative(absolute);
        return relative !== "" && isUnpublished(relative);
      },
    });
    this.#watcher = watcher;
    const seen = (absolute: string, stats?: Stats) => {
      const relative = this.#relative(absolute);
      if (stats && !stats.isFile() && !stats.isSymbolicLink()) return;
      this.#tracker.saw(relative, { size: stats?.size ?? -1, mtimeMs: stats?.mtimeMs ?? -1 });
      // Symlinks to this file change with it (the watcher sees only the file).
      for (const link of this.#links.get(absolute) ?? []) this.recheck(joinVirtual(this.alias, link));
    };
    watcher.on("add", seen);
    watcher.on("change", seen);
    // The watcher does not always report the published directory itself going (only what was in it):
    // after anything goes, see whether the directory is still there.
    let checkingRoot: NodeJS.Timeout | undefined;
    const checkRoot = () => {
      checkingRoot ??= setTimeout(() => {
        checkingRoot = undefined;
        void stat(this.root).then(
          (stats) => stats.isDirectory() || this.#lost(watcher),
          () => this.#lost(watcher),
        );
      }, 100);
    };
    watcher.on("unlink", (absolute) => {
      this.#gone(this.#relative(absolute));
      checkRoot();
    });
    watcher.on("unlinkDir", (absolute) => {
      checkRoot();
      if (absolute === this.root) return;
      const prefix = this.#relative(absolute) + "/";
      this.#tracker.forgetWhere((relative) => relative.startsWith(prefix));
      for (const file of [...this.files.values()]) if (file.relative.startsWith(prefix)) this.#gone(file.relative);
    });
    watcher.on("error", (error) => this.emit("error", error instanceof Error ? error : new Error(String(error))));
    return new Promise((resolve) =>
      watcher.once("ready", () => {
        resolve();
        void this.#findBadNames();
      }),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#lookingForRoot);
    this.#tracker.close();
    await this.#watcher?.close();
    this.#watcher = undefined;
  }

  #closed = false;
  /** While the published directory is gone: the timer that looks for it to come back. */
  #lookingForRoot: NodeJS.Timeout | undefined;

  /**
   * The published directory itself was removed (its files go as deletes, reported by the watcher). Say
   * so, and look for it every second: a directory made again at that path (rm -rf, then a fresh copy)
   * is published again, from a new scan.
   */
  #lost(watcher: FSWatcher): void {
    if (watcher !== this.#watcher || this.#lookingForRoot) return;
    this.emit("error", new MountError(`${this.root} was removed: nothing is published from it until it is back`));
    this.#lookingForRoot = setInterval(() => {
      void stat(this.root).then(
        async (stats) => {
          if (!stats.isDirectory() || this.#closed || !this.#lookingForRoot) return;
          clearInterval(this.#lookingForRoot);
          this.#lookingForRoot = undefined;
          await watcher.close();
          if (this.#closed) return;
          this.emit("error", new MountError(`${this.root} is back: publishing it again`));
          await this.start();
        },
        () => undefined,
      );
    }, 1000);
  }

  /** Files waiting for their quiet period, or stable and still being checked before they are published. */
  get unstable(): number {
    return this.#tracker.size + [...this.#publishing.values()].reduce((n, count) => n + count, 0);
  }

  /**
   * Is the file at `vpath` seen but not published yet: waiting for its quiet period, or stable and being
   * checked? From the moment a file is seen until it is in `files` (or gone), this or `files` says it
   * exists: the server takes a file a client holds that is in neither for deleted on this side.
   */
  waiting(vpath: string): boolean {
    const relative = relativeTo(this.alias, vpath);
    return relative !== undefined && (this.#tracker.has(relative) || this.#publishing.has(relative));
  }

  /**
   * Files between the tracker and `files` (their realpath is being checked): relative path -> checks in
   * flight (a file that changes again meanwhile can be checked twice at once).
   */
  readonly #publishing = new Map<string, number>();

  /**
   * Check the file at `vpath` again from the start (quiet period, real path), as if the watcher had seen
   * it change: the server found it different from what was published when it opened it to send it.
   */
  recheck(vpath: string): void {
    const relative = relativeTo(this.alias, vpath);
    if (relative === undefined || relative === "") return;
    this.#tracker.saw(relative, { size: -1, mtimeMs: -1 });
  }

  /**
   * A name that is not valid UTF-8 reaches us with U+FFFD in place of its bad bytes, and no file has that
   * name: it cannot be opened, so it cannot be published, and the watcher skips it without a word (then
   * and later). Look for such names once, after the scan, and say so rather than lose them (or a whole
   * directory of files) silently.
   */
  async #findBadNames(): Promise<void> {
    const names = await readdir(this.root, { recursive: true }).catch(() => [] as string[]);
    let reported = 0;
    for (const name of names) {
      const relative = name.split(path.sep).join("/");
      if (!relative.includes("\uFFFD") || isUnpublished(relative)) continue;
      if (await lstat(path.join(this.root, name)).then(() => true, () => false)) continue; // a real U+FFFD
      if (++reported > 100) return void this.emit("error", new MountError("more names that are not valid UTF-8 were not published (first 100 above)"));
      // (Each bad byte shown as "?": the replacement character would only add to the confusion.)
      this.emit("error", new MountError(`not published: "${relative.replaceAll("\uFFFD", "?")}": its name is not valid UTF-8 (Node cannot open it); rename it`));
    }
  }

  /** Published names that lead elsewhere in the mount (symlinks): real path -> those names. */
  readonly #links = new Map<string, Set<string>>();

  #relative(absolute: string): string {
    return path.relative(this.root, absolute).split(path.sep).join("/");
  }

  #gone(relative: string): void {
    this.#tracker.forget(relative);
    const vpath = joinVirtual(this.alias, relative);
    const file = this.files.get(vpath);
    if (file && file.absolute !== path.join(this.root, relative)) {
      const names = this.#links.get(file.absolute);
      names?.delete(relative);
      if (names?.size === 0) this.#links.delete(file.absolute);
    }
    if (this.files.delete(vpath)) this.emit("deleted", vpath);
  }

  async #publish(relative: string, absolute: string, size: number, mtimeMs: number): Promise<void> {
    // Never serve outside the mount: a symlink (or a path through one) must resolve inside the root.
    // Counted as unstable meanwhile: it has left the tracker but is not in `files` yet.
    let real: string;
    this.#publishing.set(relative, (this.#publishing.get(relative) ?? 0) + 1);
    try {
      real = await realpath(absolute);
    } catch {
      return;
    } finally {
      const left = (this.#publishing.get(relative) ?? 1) - 1;
      if (left > 0) this.#publishing.set(relative, left);
      else this.#publishing.delete(relative);
    }
    if (real !== this.root && !real.startsWith(this.root + path.sep)) {
      this.emit("error", new MountError(`not published: ${relative} leads outside ${this.root}`));
      return;
    }
    if (real !== absolute) {
      let names = this.#links.get(real);
      if (!names) this.#links.set(real, (names = new Set()));
      names.add(relative);
    }
    const vpath = joinVirtual(this.alias, relative);
    const file: PublishedFile = { relative, vpath, absolute: real, size, mtimeMs, root: this.root };
    // Out of #publishing (above) and into `files` with no await between: nobody sees it in neither.
    this.files.set(vpath, file);
    this.emit("changed", file);
  }
}
