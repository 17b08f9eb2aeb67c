// A mount publishes one local directory under a virtual path (its alias). It keeps the catalogue of the
// directory's stable files and reports each file that becomes stable (new or changed) and each file that
// goes away. It knows nothing of the protocol or of clients.

import { EventEmitter } from "node:events";
import { lstat, realpath, stat } from "node:fs/promises";
import { lstatSync, readFileSync, readdirSync, readlinkSync, realpathSync, statSync, type Stats } from "node:fs";
import path from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { isUnpublished, joinVirtual, relativeInside, normaliseVirtualPath, overlaps, relativeTo, unsafeRelativeReason } from "../paths.js";
import { economiseDirectoryReads, type DirectoryReads } from "./directory-reads.js";
import { onWatchBegun } from "./watch-begun.js";
import { trackWatcherWork, type WatcherBusy } from "./watcher-busy.js";
import { keepLessOfEachFile, type SeenStats } from "./watched-stats.js";
import { StabilityTracker, type Sighting } from "./stability.js";
import { findUnpublishable, notUtf8, type Findings } from "./unpublishable.js";
import { UnreadableDirectories } from "./unreadable.js";
import { UnwatchedPaths } from "./unwatched.js";
import { setNewest } from "../newest.js";

/**
 * chokidar's "readdir" throttle (handler.js, chokidar 5.0.0): a read of a directory asked for while one is
 * under way is not made then (one more runs right after it); one asked for after a read that failed (the
 * directory went as it was read) is dropped until this long after that read began.
 */
const CHOKIDAR_READDIR_THROTTLE_MS = 1000;
/** A watch we ask for afresh begins well within this (a directory's read; 10,000 files take about 0.1 s). */
const REWATCH_BEGINS_WITHIN_MS = 30_000;
/** How long the check of what the watcher missed waits for the watcher's own reading and adding in a directory. */
const MAX_WAIT_FOR_WATCHER_MS = 60_000;
/** chokidar's "change" throttle (index.js, chokidar 5.0.0): a file's change this soon after the last one reported is dropped. */
const CHOKIDAR_CHANGE_THROTTLE_MS = 50;

export interface PublishedFile {
  /** Path relative to the mount's directory, "/" separators. */
  readonly relative: string;
  /** Virtual path on the wire: alias + "/" + relative. */
  readonly vpath: string;
  /** Absolute path of the file on disk. */
  readonly absolute: string;
  readonly size: number;
  readonly mtimeMs: number;
  /** With size and mtime, what tells this version from the next (a rewrite changes ctime; a replacement, the inode). */
  readonly ctimeMs?: number;
  readonly ino?: number;
  /** The file system of `ino`: what is opened to be sent must be this very file (FileCursor). */
  readonly dev?: number;
  /** The mount's real root: the file must still be inside it when it is opened to be sent. */
  readonly root: string;
  /**
   * Its mtime is not after that of a version published before under its name (set back: a copy that
   * kept its mtime, a rewrite with the mtime put back, `touch -r`, a chmod): size and mtime may then be
   * those of another content, and a client's quick check cannot be trusted. Known only for what this
   * mount saw (since it started; a name withdrawn long ago may be forgotten).
   */
  readonly lookAlike?: true;
  /**
   * Reached through a symlink: the virtual path (in this mount) of what it leads to. Only a client that
   * may read that path too is sent it: a link must not carry a file across what accounts may read.
   */
  readonly target?: string;
}

export interface MountEvents {
  /** A file became stable: new, or changed since it was last reported. */
  changed: [file: PublishedFile];
  /** A file that had been reported is gone. */
  /** `file`: the record withdrawn (what was published under that name). */
  deleted: [vpath: string, file: PublishedFile];
  /**
   * Something the publisher should be told and that stops nothing: a name not published and why, a
   * directory that went or came back, the watcher's own trouble. (Not "error": an EventEmitter throws
   * an "error" nobody listens to, and none of these is worth a crash.)
   */
  warning: [error: Error];
}

export interface MountOptions {
  /** Quiet period before a file is shipped, in ms. */
  readonly stableMs: number;
  /**
   * Is this virtual path another mount's (one published at an alias inside ours, which owns its subtree),
   * or a directory on the way to one? Our files there are not published: one virtual path, one file.
   */
  readonly isShadowed?: (vpath: string) => boolean;
  /**
   * Is what is at this virtual path another mount's (at or under its alias)? A link of ours to it is not
   * published either. (A file of ours merely on the way to another mount is still ours: a link elsewhere
   * to it is published.)
   */
  readonly ownedElsewhere?: (vpath: string) => boolean;
}

/** Names withdrawn whose newest mtime is remembered, for `lookAlike` (about 100 bytes each). */
const RECENTLY_WITHDRAWN = 10_000;
/** Symlinks leading nowhere that are watched for their target to appear (see #dangling). */
const MAX_DANGLING = 10_000;

export class MountError extends Error {
  override name = "MountError";
}

export class Mount extends EventEmitter<MountEvents> {
  /** The catalogue: stable files by virtual path. */
  readonly files = new Map<string, PublishedFile>();
  /**
   * For `lookAlike`, the newest mtime published under a name: of names withdrawn (the latest
   * RECENTLY_WITHDRAWN: `rm f; cp -p g f` is a replacement too), and of names whose file now has an
   * older one (rare; for the others it is their file's own).
   */
  readonly #withdrawnNewest = new Map<string, number>();
  readonly #setBackNewest = new Map<string, number>();
  readonly #tracker: StabilityTracker;
  #watcher: FSWatcher | undefined;

  private constructor(
    readonly alias: string,
    /** The real path of the published directory (symlinks resolved once, at publish time). */
    readonly root: string,
    private readonly options: MountOptions,
  ) {
    super();
    this.#tracker = new StabilityTracker(
      { stableMs: options.stableMs },
      (relative, absolute, sighting) => this.#publish(relative, absolute, sighting),
      (relative) => path.join(this.root, relative),
      (relative) => this.#notAFile(relative),
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
    // (Started again when the root comes back after it went: its first scan is a first scan again.)
    this.#scanned = false;
    const watcher = watch(this.root, {
      persistent: true,
      ignoreInitial: false,
      followSymlinks: false,
      alwaysStat: true,
      // Its own permission check reads the mode bits, not what we may do: a file without its owner's read
      // bit (chmod 000) was skipped even when we could read it, and one published before it was chmod'ed
      // was sent out as a delete. Such a file stays published; sending it says why it fails.
      ignorePermissionErrors: true,
      awaitWriteFinish: false,
      ignored: (absolute: string) => {
        const relative = this.#relative(absolute);
        return relative !== "" && isUnpublished(relative);
      },
    });
    this.#watcher = watcher;
    // (A write to a file does not make chokidar read its whole directory again; see directory-reads.ts.)
    this.#directoryReads = economiseDirectoryReads(watcher, (absolute) => this.#directories.has(absolute));
    this.#watcherBusy = trackWatcherWork(watcher);
    // (chokidar keeps less of each file it watches than its whole Stats; see watched-stats.ts.)
    keepLessOfEachFile(watcher);
    // (What is made in a directory between the watcher's read of it and the start of its watch is
    // reported by neither: looked for once the watch has begun, see watch-begun.ts; not after a rewatch
    // of our own from that check, which goes on with its own count of tries.)
    onWatchBegun(watcher, (dir) => {
      const until = this.#rewatchedByCheck.get(dir);
      this.#rewatchedByCheck.delete(dir);
      if (until === undefined || until < Date.now()) this.#readAgainSoon(dir);
    });
    // (An add's stats, and a change's where chokidar turns an unlink and an add into one, are a
    // SeenStats: see watched-stats.ts. chokidar's own types say Stats.)
    watcher.on("add", (absolute, stats) => this.#seen(absolute, stats));
    watcher.on("change", (absolute, stats) => this.#changed(absolute, stats));
    watcher.on("unlink", (absolute) => this.#unlinked(absolute));
    // chokidar keeps watching a directory removed and made again at once (rm -rf out && mkdir out): the
    // old directory's dead watch, and no event for anything made in the new one, ever (a review: a build
    // output directory cleaned and refilled). The kernel does tell the directory's own watch that it
    // went (a "rename" of its own name); a directory there again a moment later is a new one: watched
    // afresh (the root: started again, as when it is removed).
    this.#directories.clear();
    this.#directories.set(this.root, ""); // (its identity comes with its addDir)
    watcher.on("raw", (event, filename, details) => {
      const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
      if (typeof watched !== "string" || typeof filename !== "string") return;
      if (event === "change") {
        // A published file written in place: chokidar says "change" only if it finds the mtime moved, or
        // the access time not past it, at the one look it takes after a burst of writes. A rewrite that
        // puts the mtime back (rsync --inplace, cp -p over the file, tar --overwrite) of a file read since
        // its last write (every file we have sent) was never published, whatever its new size (a review).
        // The kernel's word that it changed is looked at as a rename over it is: by its inode and ctime,
        // which no writer can set back. (From the file's own watch, or its directory's.)
        const child = this.#directories.has(watched) ? path.join(watched, filename) : path.basename(watched) === filename ? watched : undefined;
        if (child !== undefined && this.files.has(joinVirtual(this.alias, this.#relative(child)))) this.#checkIdentitySoon(child);
        return;
      }
      if (event !== "rename" || !this.#directories.has(watched)) return;
      if (filename === path.basename(watched)) {
        this.#replaced.add(watched);
        this.#replacedTimer ??= setTimeout(() => this.#checkReplaced(), 100);
      }
      // A name in it made anew (renamed over, or removed and made again): see #checkIdentities.
      const child = path.join(watched, filename);
      if (this.files.has(joinVirtual(this.alias, this.#relative(child)))) this.#checkIdentitySoon(child);
      else if (this.#maybeDangling.size < MAX_DANGLING) {
        // Perhaps a symlink made leading nowhere, of which the watcher will say nothing: looked at in a
        // moment, unless the watcher has reported it by then.
        this.#maybeDangling.add(child);
        this.#maybeDanglingTimer ??= setTimeout(() => this.#checkMaybeDangling(), 50);
      }
    });
    watcher.on("addDir", (absolute, stats) => {
      this.#directories.set(absolute, stats ? identityOf(stats) : "");
      // (Not during the first scan: every directory is new then, and the first walk looks into them all.)
      if (this.#scanned && absolute !== this.root) {
        this.#checkSiblingsOf(path.dirname(this.#relative(absolute)).replace(/^\.$/, ""));
        this.#lookInto(absolute);
      }
    });
    watcher.on("unlinkDir", (absolute) => this.#unlinkedDirectory(absolute));
    watcher.on("error", (error) => {
      const failed = error as NodeJS.ErrnoException;
      // (The system's limit of watches: that path is looked at in turn instead.)
      if (failed.code === "ENOSPC" && failed.syscall === "watch" && typeof failed.path === "string") return this.#notWatched(failed.path);
      this.emit("warning", error instanceof Error ? error : new Error(String(error)));
    });
    return new Promise((resolve) =>
      watcher.once("ready", () => {
        this.#scanned = true;
        resolve();
        // What the watcher skips without a word, said (at most 100 lines); and the symlinks that lead
        // nowhere, which the watcher says nothing of (see #dangling).
        this.#firstWalk = findUnpublishable(this.root, "", true, this.#findings).catch(() => undefined);
      }),
    );
  }

  async close(): Promise<void> {
    this.#closed = true;
    clearInterval(this.#lookingForRoot);
    this.#unreadable.close();
    this.#unwatched.close();
    clearTimeout(this.#notWatchedTimer);
    clearTimeout(this.#checkingRoot);
    clearTimeout(this.#siblingTimer);
    clearTimeout(this.#replacedTimer);
    clearTimeout(this.#identityTimer);
    clearTimeout(this.#maybeDanglingTimer);
    for (const timer of this.#readAgainTimers.values()) clearTimeout(timer);
    for (const { timer } of this.#lookAgainTimers.values()) clearTimeout(timer);
    this.#tracker.close();
    await this.#watcher?.close();
    this.#watcher = undefined;
  }

  /**
   * A file found or changed (by the watcher, or by looking at what it could not watch). `changeEvent`:
   * the watcher said it changed (see #publish: what chokidar drops after a change).
   */
  #seen(absolute: string, stats?: SeenStats, changeEvent = false): void {
    const relative = this.#relative(absolute);
    if (stats && !stats.isFile() && !stats.isSymbolicLink()) {
      // (Links to it do not lead to a file either now.)
      this.#recheckLinksTo(absolute);
      return this.#notAFile(relative);
    }
    // A link to a directory is not followed (a loop, or a whole other tree): said once, not skipped unsaid.
    if (stats?.isSymbolicLink() && leadsToDirectory(absolute)) {
      // (A published link re-pointed at a directory no longer leads to what was published: it goes.)
      if (this.files.has(joinVirtual(this.alias, relative))) this.#withdraw(relative);
      return this.#refuseName(relative, "a symlink to a directory (not followed)", false);
    }
    // A name a subscriber must refuse (a backslash, too long) would only be refused by each of them at
    // each subscription: said here once instead, and not published.
    const refused = unsafeRelativeReason(relative);
    if (refused) return this.#refuseName(relative, refused);
    if (this.options.isShadowed?.(joinVirtual(this.alias, relative))) return this.#shadowed(joinVirtual(this.alias, relative));
    // (In a directory only looked at, every file is looked at too: see the hooks of #unwatched.)
    if (this.#unwatched.listed(path.dirname(absolute))) this.#unwatched.addFile(absolute);
    this.#tracker.saw(relative, { size: stats?.size ?? -1, mtimeMs: stats?.mtimeMs ?? -1 }, changeEvent);
    this.#recheckLinksTo(absolute);
  }

  /**
   * Symlinks to this file change with it (the watcher sees only the file): look at them again. So do links
   * that led nowhere, waiting for this very path to appear: the watcher says nothing of a link whose
   * target comes into being.
   */
  #recheckLinksTo(absolute: string): void {
    for (const link of this.#links.get(absolute) ?? []) this.recheck(joinVirtual(this.alias, link));
    this.#recheckDangling(absolute);
  }

  /** Links that led nowhere, waiting for `absolute` to appear: looked at again. */
  #recheckDangling(absolute: string): void {
    const waiting = [...(this.#dangling.get(absolute) ?? [])];
    for (const link of waiting) this.#stopWaiting(link);
    // (Still nowhere, a chain of links not whole yet or the file gone again at once, a link waits on.)
    for (const link of waiting) this.#lookAtLink(path.join(this.root, link), link);
  }

  #changed(absolute: string, stats?: SeenStats): void {
    // A file replaced by a directory of its name reaches us as a "change" of the file, and the watcher
    // never looks inside: the file is gone, and the directory is handed to the watcher afresh.
    if (!stats?.isDirectory()) return this.#seen(absolute, stats, true);
    this.#gone(this.#relative(absolute));
    // (Links to it lead to a directory now: not followed, they go.)
    this.#recheckLinksTo(absolute);
    this.#rewatch(absolute);
  }

  /**
   * chokidar drops a read of a directory asked for while another read of it is under way, and a read that
   * failed (the directory went as it was read) holds that for a second: a directory made where another
   * was read a moment ago (rm -r d; mkdir d; or a directory turned file and back) was watched with none of
   * what it held at that moment (black-box testing; then the test suite, under load: a file written into
   * it at once was never published). So after a directory is handed to the watcher, once that second is
   * over, what is in it is compared with what the watcher knows of it; a name the watcher missed, and it is
   * handed over afresh (then checked again, at most `tries` times: a directory that never stops changing
   * is not re-read for ever). Also for every directory whose watch has begun (see watch-begun.ts: what
   * was made between the watcher's read of it and its watch).
   */
  #readAgainSoon(dir: string, tries = 3, waitingSince = Date.now()): void {
    if (this.#closed || this.#readAgainTimers.has(dir)) return;
    const timer = setTimeout(() => {
      this.#readAgainTimers.delete(dir);
      // (Not while the published directory is gone: it is started afresh once it is back. Nor while the
      // watcher has a read of it under way or due: that read finds what it does not know yet.)
      if (this.#closed || this.#lookingForRoot || this.#directoryReads?.pending(dir)) return;
      // Nor while the watcher is still reading it or adding what it read (see watcher-busy.ts): what it
      // has not added yet is not missed. Looked at once that is over, or after a minute (a read or an
      // lstat that hangs, on a dead NFS server, would hold it up for ever).
      if (this.#watcherBusy?.busyIn(dir) && Date.now() - waitingSince < MAX_WAIT_FOR_WATCHER_MS) return this.#readAgainSoon(dir, tries, waitingSince);
      if (!this.#watcherMissed(dir)) return;
      this.#rewatchedByCheck.set(dir, Date.now() + REWATCH_BEGINS_WITHIN_MS);
      this.#watchAfresh(dir, false);
      if (tries > 1) this.#readAgainSoon(dir, tries - 1);
    }, CHOKIDAR_READDIR_THROTTLE_MS + 100);
    this.#readAgainTimers.set(dir, timer);
  }
  /** The watcher's directory reads (see directory-reads.ts), for whether one is pending. */
  #directoryReads: DirectoryReads | undefined;
  /** What the watcher is still reading and adding (see watcher-busy.ts). */
  #watcherBusy: WatcherBusy | undefined;
  /**
   * Directories handed to the watcher afresh by #readAgainSoon: the start of their watch is its doing,
   * not a new directory to check (which would begin its tries again, for ever, in a directory that never
   * stops changing: a review). Until when: a directory removed before its watch began never consumes its
   * entry, and one made again at that name later was then taken for this rewatch and not checked (a review).
   */
  readonly #rewatchedByCheck = new Map<string, number>();

  /**
   * Is something in the directory `dir` (still a directory, and watched, not listed by us) unknown to the
   * watcher? Asks chokidar's record of what it watches (`_watched`, 5.0.0, pinned); without it, yes.
   */
  #watcherMissed(dir: string): boolean {
    let names: string[];
    try {
      if (!lstatSync(dir).isDirectory() || this.#unwatched.listed(dir)) return false;
      names = readdirSync(dir);
    } catch {
      return false; // (gone: the watcher says so, or the directory above is looked at)
    }
    const watched = (this.#watcher as unknown as { _watched?: Map<string, { has(name: string): boolean }> } | undefined)?._watched;
    if (!(watched instanceof Map)) return true;
    const known = watched.get(dir);
    return names.some((name) => !known?.has(name) && !isUnpublished(this.#relative(path.join(dir, name))));
  }
  /** Directories to look at once chokidar may read them again (see #readAgainSoon). */
  readonly #readAgainTimers = new Map<string, NodeJS.Timeout>();
  /** Files to look at once more, by virtual path, and when (#publish). */
  readonly #lookAgainTimers = new Map<string, { timer: NodeJS.Timeout; due: number }>();

  #lookAgainAfter(relative: string, ms: number): void {
    const vpath = joinVirtual(this.alias, relative);
    const due = Date.now() + ms;
    const pending = this.#lookAgainTimers.get(vpath);
    if (this.#closed || (pending && pending.due >= due)) return;
    if (pending) clearTimeout(pending.timer);
    const timer = setTimeout(() => {
      this.#lookAgainTimers.delete(vpath);
      if (this.#closed) return;
      this.recheck(vpath);
      this.#recheckLinksTo(path.join(this.root, relative));
    }, ms);
    this.#lookAgainTimers.set(vpath, { timer, due });
  }

  #unlinked(absolute: string): void {
    this.#checkRoot();
    void this.#reallyGone(absolute, "file").then(async (gone) => {
      if (this.#closed) return;
      // Symlinks to it lead nowhere now, or to whatever is at its name now (a FIFO, a directory, a link
      // leading nowhere: an end-to-end review found those links left published): each is looked at again.
      const links = [...(this.#links.get(absolute) ?? [])];
      if (gone) this.#gone(this.#relative(absolute));
      for (const link of links) this.recheck(joinVirtual(this.alias, link));
      if (!gone) return this.#backAlready(absolute);
      this.#goneFromListed(absolute);
      // A directory of its name there now: the watcher, having taken it for the file, never looks
      // inside. Handed to it afresh.
      if ((await lstat(absolute).catch(() => undefined))?.isDirectory() && !this.#closed) this.#rewatch(absolute);
    });
  }

  #unlinkedDirectory(absolute: string): void {
    this.#checkRoot();
    if (absolute === this.root) return;
    this.#directories.delete(absolute);
    void this.#reallyGone(absolute, "directory").then(async (gone) => {
      if (this.#closed) return;
      if (!gone) return this.#backAlready(absolute);
      // (A file made at the name of a directory the watcher lost track of goes as that directory.)
      if (this.files.has(joinVirtual(this.alias, this.#relative(absolute)))) this.#gone(this.#relative(absolute));
      this.#goneUnder(this.#relative(absolute));
      if (this.#unwatched.listed(path.dirname(absolute))) {
        // Nothing watches its parent, so the watcher never learns it went: our record and the watcher's of
        // what was under it go now, or a directory made again there would have its subdirectories taken
        // as known, and never watched (rm -rf build; make).
        this.#forgetDirectoriesUnder(absolute);
      }
      this.#goneFromListed(absolute);
      // A file of its name there now: the watcher, which took it for the directory (and, where the
      // directory was not watched itself, never heard it go), is handed it afresh.
      const now = await lstat(absolute).catch(() => undefined);
      if ((now?.isFile() || now?.isSymbolicLink()) && !this.#closed) this.#watchAfresh(absolute);
    });
  }

  /**
   * Something is at a name the watcher (or a look) said went: gone and made again at once. Where its
   * directory is watched, the watcher's add follows; in a directory only looked at (listed), nothing
   * would, nor ever for later changes: taken in here.
   */
  #backAlready(absolute: string): void {
    if (!this.#unwatched.listed(path.dirname(absolute))) return;
    void lstat(absolute).then(
      (stats) => {
        if (this.#closed) return;
        if (stats.isDirectory()) return this.#watchAfresh(absolute);
        if (!stats.isFile() && !stats.isSymbolicLink()) return;
        this.#unwatched.addFile(absolute);
        this.#seen(absolute, stats);
      },
      () => this.#goneFromListed(absolute), // (gone again: made again later, it is news)
    );
  }

  /**
   * `absolute` is gone from a directory only looked at: the watcher's record of it goes (it never hears),
   * and its name is news again if it comes back.
   */
  #goneFromListed(absolute: string): void {
    if (!this.#unwatched.listed(path.dirname(absolute))) return;
    this.#watcherForget(absolute);
    this.#unwatched.lookAgain(absolute);
  }

  /**
   * Have the watcher forget `absolute` and whatever it knew under it (its children, and their watches on
   * old inodes), reporting each as gone (unlink, unlinkDir: each checked by #reallyGone). No public call
   * does that: chokidar's _remove (5.0.0, pinned). False if that internal is missing.
   */
  #watcherForget(absolute: string): boolean {
    const internal = this.#watcher as unknown as
      | { _remove?: (parent: string, name: string, isDirectory?: boolean) => void; _throttled?: Map<string, Map<string, { clear(): unknown }>> }
      | undefined;
    if (typeof internal?._remove !== "function") return false;
    internal._remove(path.dirname(absolute), path.basename(absolute));
    // _remove also ignores another removal of the same paths for 100 ms (it takes it for one event that
    // reached it twice). Ours is bookkeeping, not an event: a file handed over afresh, published at once
    // (its mtime old enough) and deleted within those 100 ms was never seen to go (a CI run caught it).
    const ignoring = internal._throttled?.get("remove");
    for (const [key, entry] of [...(ignoring ?? [])]) if (key === absolute || key.startsWith(absolute + path.sep)) entry.clear();
    return true;
  }

  /**
   * A directory at `dir` that is not the one the watcher knew: the watcher's record of the old one must go
   * first, or the new one's entries of the same names are taken as known and never watched (mv a a.old;
   * mkdir -p a/b); then it is watched afresh.
   */
  #watchAfresh(dir: string, check = true): void {
    this.#forgetDirectoriesUnder(dir);
    if (!this.#watcherForget(dir)) this.#watcher?.unwatch(dir);
    this.#watcher?.add(dir);
    if (check) this.#readAgainSoon(dir);
  }

  /** Our record of the directories under `dir` goes (the watcher's addDir brings back what is there). */
  #forgetDirectoriesUnder(dir: string): void {
    const prefix = dir + path.sep;
    for (const known of [...this.#directories.keys()]) if (known.startsWith(prefix)) this.#directories.delete(known);
  }

  /**
   * The watcher does not always report the published directory itself going (only what was in it):
   * after anything goes, see whether the directory is still there.
   */
  #checkRoot(): void {
    const watcher = this.#watcher;
    if (!watcher) return;
    this.#checkingRoot ??= setTimeout(() => {
      this.#checkingRoot = undefined;
      // (lstat: a root replaced by a symlink, even to a directory, is not the directory published: what
      // is under it leads outside, and nothing there could be published.)
      void lstat(this.root).then(
        (stats) => stats.isDirectory() || this.#lost(watcher),
        () => this.#lost(watcher),
      );
    }, 100);
  }
  #checkingRoot: NodeJS.Timeout | undefined;

  /**
   * What the watcher could not watch (the system's limit of inotify watches: see unwatched.ts), looked at
   * in turn. What it finds comes in as the watcher's events would.
   */
  readonly #unwatched = new UnwatchedPaths({
    changed: (absolute, stats) => {
      if (this.#closed) return;
      // (A file replaced by a directory: no longer looked at as a file; the watcher is asked to watch it,
      // and if it cannot, it is looked at as a directory.)
      if (stats.isDirectory()) this.#unwatched.forget(absolute);
      this.#changed(absolute, stats);
    },
    appeared: (absolute) => {
      const relative = this.#relative(absolute);
      if (this.#closed || isUnpublished(relative)) return;
      const vpath = joinVirtual(this.alias, relative);
      if (this.#directories.has(absolute) || this.#unwatched.has(absolute)) return;
      // (The first look at a directory names everything in it: a file we know already is no news, but it
      // is looked at from now on, like every file in a directory only looked at, watched or not: a
      // watcher's watch on one goes when it is removed and made again, the watcher never watches links,
      // and nothing would tell us of either.)
      if (this.files.has(vpath) || this.waiting(vpath)) return this.#unwatched.addFile(absolute);
      void lstat(absolute).then(
        (stats) => {
          if (this.#closed) return;
          // A directory: the watcher is asked to watch it (and what is in it). A file in a directory the
          // watcher does not watch has no watch of its own either: looked at from now on.
          if (stats.isDirectory()) {
            this.#watcher?.add(absolute);
            return this.#readAgainSoon(absolute);
          }
          if (!stats.isFile() && !stats.isSymbolicLink()) return;
          this.#unwatched.addFile(absolute);
          this.#seen(absolute, stats);
        },
        () => undefined, // (gone again already)
      );
    },
    vanished: (absolute) => {
      if (this.#closed) return;
      this.#unwatched.forget(absolute); // (a name in a listed directory may be looked at itself)
      if (this.#directories.has(absolute) || this.#filesUnder.has(this.#relative(absolute))) this.#unlinkedDirectory(absolute);
      else this.#unlinked(absolute);
    },
  });

  /** The watcher could not watch `absolute` (the limit of watches): it is looked at in turn instead. */
  #notWatched(absolute: string): void {
    if (this.#closed || this.#unwatched.has(absolute)) return;
    if (!this.#saidNotWatched) {
      this.#saidNotWatched = true;
      // (This user's limit in this user namespace: a container's may be lower than the host's
      // fs.inotify.max_user_watches, which is the first namespace's.)
      let limit = "";
      for (const file of ["/proc/sys/user/max_inotify_watches", "/proc/sys/fs/inotify/max_user_watches"]) {
        try {
          limit = ` (${readFileSync(file, "utf8").trim()} here)`;
          break;
        } catch {
          // (not Linux, or no /proc: the advice stands without the figure)
        }
      }
      this.emit(
        "warning",
        new MountError(
          `the system's limit of inotify watches is reached${limit}: what cannot be watched under ${this.root} is looked at every few seconds instead (for events, raise it: sysctl fs.inotify.max_user_watches=1048576, then restart)`,
        ),
      );
    }
    void lstat(absolute).then(
      (stats) => {
        if (this.#closed) return;
        if (stats.isDirectory()) this.#unwatched.addDirectory(absolute);
        else this.#unwatched.addFile(absolute);
        // How many, said once they stop coming (a scan refuses thousands in a row), and again when a tenth
        // more (not for every file a growing directory gains).
        clearTimeout(this.#notWatchedTimer);
        this.#notWatchedTimer = setTimeout(() => {
          const count = this.#unwatched.size;
          if (count < this.#notWatchedSaid * 1.1 || this.#closed) return;
          this.#notWatchedSaid = count;
          const paths = count === 1 ? "1 path under" : `${count} paths under`;
          this.emit("warning", new MountError(`${paths} ${this.root} ${count === 1 ? "is" : "are"} not watched (limit of inotify watches): each is looked at every ${Math.ceil(this.#unwatched.periodMs / 1000)} s`));
        }, 2000);
      },
      () => undefined, // (gone: the watcher says so, or the directory it was in is looked at)
    );
  }
  #saidNotWatched = false;
  #notWatchedSaid = 0;
  #notWatchedTimer: NodeJS.Timeout | undefined;

  #closed = false;
  /** Directories the watcher watches: absolute path -> identity when it was found (see identityOf). */
  readonly #directories = new Map<string, string>();
  /** Directories whose own watch said they went (see start), looked at together a moment later. */
  readonly #replaced = new Set<string>();
  #replacedTimer: NodeJS.Timeout | undefined;

  /**
   * Published files whose name was made anew in their directory, or that the kernel says were written
   * (see start): a new version may be there with the old one's size and mtime (mv, tar -x, rsync -a
   * --checksum, rsync --inplace), which chokidar does not report (it says "change" only if the mtime
   * moved, or the access time did not pass it: reviews found such files never sent, the subscriber
   * keeping the old bytes for good). Their inode or ctime tells. Looked at together, 20 ms later.
   */
  #checkIdentitySoon(child: string): void {
    this.#identityChecks.add(child);
    this.#identityTimer ??= setTimeout(() => this.#checkIdentities(), 20);
  }
  readonly #identityChecks = new Set<string>();
  #identityTimer: NodeJS.Timeout | undefined;

  #checkIdentities(): void {
    this.#identityTimer = undefined;
    const children = [...this.#identityChecks];
    this.#identityChecks.clear();
    if (this.#closed) return;
    for (const child of children) {
      const published = this.files.get(joinVirtual(this.alias, this.#relative(child)));
      if (!published) continue;
      let stats: Stats | undefined;
      try {
        stats = statSync(child, { throwIfNoEntry: false });
      } catch (error) {
        // (One that leads where we may not look is kept, as an unreadable file is.)
        if (!leadsNowhere(error as NodeJS.ErrnoException)) continue;
      }
      if (stats === undefined) {
        // Gone: the watcher says so, of a file. Not of a link renamed over it that leads nowhere (or round
        // a loop): the watcher says nothing of that at all (found by testing), and the name stayed
        // published as its old target; it waits for what it names now. Nor of a link published once its
        // target appeared (#recheckDangling), which the watcher never took in: gone, it goes.
        const relative = this.#relative(child);
        if (isSymlink(child)) {
          this.#withdraw(relative);
          this.#awaitTarget(child, relative);
        } else if (published.target !== undefined) {
          this.#gone(relative);
        }
        continue;
      }
      if (!stats.isFile()) {
        this.#notAFile(this.#relative(child));
        continue;
      }
      if (stats.ino !== published.ino || stats.ctimeMs !== published.ctimeMs) this.#seen(child, stats);
    }
  }
  /**
   * Was each directory whose own watch reported a rename of its name replaced by a new one? The same
   * event comes when a child of the same name (out/out) comes or goes: a directory that is the one we
   * found (inode and birth time) is left alone. Without a birth time (some filesystems) the inode alone
   * cannot tell a new directory that reused it: looked at afresh anyway, which costs a rescan.
   */
  #checkReplaced(): void {
    this.#replacedTimer = undefined;
    const watcher = this.#watcher;
    const dirs = [...this.#replaced];
    this.#replaced.clear();
    for (const dir of dirs) {
      void lstat(dir).then(
        (stats) => {
          if (this.#closed || watcher === undefined || watcher !== this.#watcher) return;
          // A file (or link) of its name now: the watcher, whose directory watch went with it, may say
          // nothing of either (a directory it was handed afresh, replaced by a file: nothing, ever).
          if (!stats.isDirectory()) {
            // (The root replaced by a file or a symlink: lost, as if removed, until a directory is back.)
            if (dir === this.root) return this.#lost(watcher);
            return void (this.#directories.has(dir) && this.#unlinkedDirectory(dir));
          }
          if (stats.birthtimeMs > 0 && this.#directories.get(dir) === identityOf(stats)) return;
          if (dir === this.root) return this.#lost(watcher);
          // (What the new directory holds again is not taken for gone: each report is checked.)
          this.#watchAfresh(dir);
          // What was published from the old one and is not in the new one went with it (moved away, it
          // is found again at its new name).
          this.#goneFromUnder(dir);
        },
        () => undefined, // (gone: the watcher says so)
      );
    }
  }
  /** While the published directory is gone: the timer that looks for it to come back. */
  #lookingForRoot: NodeJS.Timeout | undefined;

  /**
   * The published directory itself was removed: say so, withdraw everything published from it (its
   * deletes go out), and look for it every second: a directory made again at that path (rm -rf, then a
   * fresh copy) is published again, from a new scan.
   */
  #lost(watcher: FSWatcher): void {
    // (Not once closed: a look at the root under way when close() came withdrew everything after it, and
    // set a timer nothing cleared, which kept the process alive: a review.)
    if (watcher !== this.#watcher || this.#lookingForRoot || this.#closed) return;
    this.emit("warning", new MountError(`${this.root} was removed: nothing is published from it until it is back`));
    // (Not left to the watcher's unlinks: it checks a name before saying it went, and finds whatever
    // stands there by then. `rm -rf pub && ln -s v2 pub`, under load: v2's a.txt at pub/a.txt, no unlink,
    // and pub's a.txt stayed at subscribers for good; a test, 2 runs in 20 with the cores kept busy.)
    this.#tracker.forgetWhere(() => true);
    for (const file of [...this.files.values()]) this.#withdraw(file.relative);
    this.#lookingForRoot = setInterval(() => {
      if (this.#closed) return void clearInterval(this.#lookingForRoot);
      void lstat(this.root).then(
        async (stats) => {
          if (!stats.isDirectory() || this.#closed || !this.#lookingForRoot) return;
          clearInterval(this.#lookingForRoot);
          this.#lookingForRoot = undefined;
          await watcher.close();
          if (this.#closed) return;
          this.emit("warning", new MountError(`${this.root} is back: publishing it again`));
          await this.start();
        },
        () => undefined,
      );
    }, 1000);
  }

  /** Files waiting for their quiet period. */
  get unstable(): number {
    return this.#tracker.size;
  }

  /** Some of the files still changing (relative to the root), at most `count`. */
  unstableNames(count = 3): string[] {
    return this.#tracker.first(count);
  }

  /**
   * Resolves once the first look through the whole tree for what the watcher skips (started by start(),
   * after the scan) has ended: until then unpublishedNames and unreadableDirectories may not count all
   * that was there at the start (track --once waits for it before it may say "synced").
   */
  walked(): Promise<void> {
    return this.#firstWalk;
  }
  #firstWalk: Promise<void> = Promise.resolve();

  /** Directories of the mount we may not look into now (their files are not all published). */
  get unreadableDirectories(): number {
    return this.#unreadable.size;
  }

  /**
   * Names found that are not published (a name subscribers refuse, one not valid UTF-8, a link that leads
   * outside or to a directory, ...), each said once as a warning: at most 101 (the 101st stands for "more").
   * Unreadable directories are not counted here (unreadableDirectories).
   */
  get unpublishedNames(): number {
    return this.#unpublishableSaid.size - this.#unreadableSaid;
  }

  /**
   * Is the file at `vpath` seen but not published yet (waiting for its quiet period)? From the moment a
   * file is seen until it is in `files` (or gone), this or `files` says it exists: the server takes a file
   * a client holds that is in neither for deleted on this side. (The tracker hands a stable file to
   * #publish, which puts it in `files` before it returns: no moment in neither.)
   */
  waiting(vpath: string): boolean {
    return this.waitingSize(vpath) !== undefined;
  }

  /** If the file at `vpath` is waiting (see waiting()), the size it had when last seen. */
  waitingSize(vpath: string): number | undefined {
    const relative = relativeTo(this.alias, vpath);
    return relative === undefined ? undefined : this.#tracker.sizeSeen(relative);
  }

  /**
   * Check the file at `vpath` again from the start (quiet period, real path), as if the watcher had seen
   * it change: the server found it different from what was published when it opened it to send it.
   */
  recheck(vpath: string): void {
    const relative = relativeTo(this.alias, vpath);
    if (relative === undefined || relative === "") return;
    // Gone without the watcher saying so (it can lose track of a renamed directory; a symlink's target
    // can go): a delete is due. (stat: a link counts as what it leads to.)
    void stat(path.join(this.root, relative)).then(
      () => !this.#closed && this.#tracker.saw(relative, { size: -1, mtimeMs: -1 }),
      (error: NodeJS.ErrnoException) => {
        if (this.#closed) return;
        if (isGone(error)) {
          this.#gone(relative);
          // (A link whose target went: published again when something is there again.)
          const absolute = path.join(this.root, relative);
          if (this.#leadsNowhereNow(absolute)) this.#awaitTarget(absolute, relative);
        } else {
          this.#tracker.saw(relative, { size: -1, mtimeMs: -1 });
        }
      },
    );
  }

  /**
   * The watcher loses track of a directory renamed away when something takes its name at once (chokidar:
   * no unlinkDir, no unlink for its files, and nothing at all for a file made at the old name, then or
   * later). A directory appearing may be the other end of such a rename, so after one appears, look at
   * its siblings that hold published files: any that is no longer a directory has lost them (deletes go
   * out), and a file there now is handed to the watcher afresh.
   */
  #checkSiblingsOf(parent: string): void {
    this.#siblingChecks.add(parent);
    this.#siblingTimer ??= setTimeout(() => {
      this.#siblingTimer = undefined;
      const parents = new Set(this.#siblingChecks);
      this.#siblingChecks.clear();
      // The directories on the way to each published file whose parent is one of those: one pass.
      const dirs = new Set<string>();
      for (const file of this.files.values()) {
        for (let slash = file.relative.indexOf("/"); slash > 0; slash = file.relative.indexOf("/", slash + 1)) {
          const dir = file.relative.slice(0, slash);
          const parent = dir.lastIndexOf("/") < 0 ? "" : dir.slice(0, dir.lastIndexOf("/"));
          if (parents.has(parent)) dirs.add(dir);
        }
      }
      for (const dir of dirs) {
        const absolute = path.join(this.root, dir);
        void lstat(absolute).then(
          (stats) => stats.isDirectory() || this.#lostDirectory(dir, absolute, true),
          // (Only gone is lost: one we may not look at now keeps its files, as in #reallyGone.)
          (error: NodeJS.ErrnoException) => isGone(error) && this.#lostDirectory(dir, absolute, false),
        );
      }
    }, 500);
  }
  readonly #siblingChecks = new Set<string>();
  #scanned = false;
  #siblingTimer: NodeJS.Timeout | undefined;

  #lostDirectory(dir: string, absolute: string, somethingElseThere: boolean): void {
    if (this.#closed) return;
    this.#goneUnder(dir);
    if (somethingElseThere) this.#rewatch(absolute);
  }

  /** Everything under the directory `dir` (relative) is gone: waiting or published. */
  #goneUnder(dir: string): void {
    const prefix = dir + "/";
    if (this.#tracker.size > 0) this.#tracker.forgetWhere((relative) => relative.startsWith(prefix));
    // (Only a directory with files published under it: each removed directory looked through every file
    // published, so `rm -rf` of 3,000 empty directories beside 60,000 files held the event loop 3.5 s,
    // and clients dropped for silence; a review, measured.)
    if (!this.#publishesUnder(dir)) return;
    for (const file of [...this.files.values()]) if (file.relative.startsWith(prefix)) this.#gone(file.relative);
  }

  /** Are files published under the directory `relative` (the mount's root: "")? */
  #publishesUnder(relative: string): boolean {
    return relative === "" ? this.files.size > 0 : this.#filesUnder.has(relative);
  }

  /** Have the watcher forget what it thinks is at `absolute` and look at it afresh (its add events follow). */
  #rewatch(absolute: string): void {
    this.#watcher?.unwatch(absolute);
    this.#watcher?.add(absolute);
    // (A directory: see #readAgainSoon. A file: nothing to read, and the check finds no directory.)
    this.#readAgainSoon(absolute);
  }

  /** What a walk for what the watcher skips hands over (see unpublishable.ts). */
  readonly #findings: Findings = {
    // (Each once: a directory read again, after it was unreadable or replaced, is looked into again.)
    report: (message) => this.#sayUnpublishable(message),
    unreadable: (dir, code) => this.#cannotLookInto(dir, code),
    symlink: (absolute, relative) => this.#linkFound(absolute, relative),
    stopped: () => this.#closed,
  };

  /**
   * A directory the watcher found after its first scan (made, moved in, unpacked): looked into for what the
   * watcher skips, as the first walk did for the rest. One level (the watcher reports each directory in
   * it in turn), one directory at a time: a tree of 10,000 directories moved in is 10,000 reads in turn.
   */
  #lookInto(dir: string): void {
    this.#toLookInto.add(dir);
    if (this.#lookingInto) return;
    this.#lookingInto = true;
    void (async () => {
      try {
        const first = () => this.#toLookInto.values().next().value;
        for (let next = first(); next !== undefined && !this.#closed; next = first()) {
          this.#toLookInto.delete(next);
          // (Not expected to throw: the walk catches what the file system throws. A warning listener's
          // throw, say: said if it can be, and the next directory is looked into all the same.)
          await findUnpublishable(this.root, this.#relative(next), false, this.#findings).catch((error: unknown) => {
            try {
              this.emit("warning", error instanceof Error ? error : new Error(String(error)));
            } catch {
              // (That listener again: nothing more to do.)
            }
          });
        }
      } finally {
        if (this.#closed) this.#toLookInto.clear();
        this.#lookingInto = false;
      }
    })();
  }
  /** (Bounded by the directories the watcher watches.) */
  readonly #toLookInto = new Set<string>();
  #lookingInto = false;

  /** A name that is not published, said (see #sayUnpublishable). */
  #refuseName(relative: string, reason: string, subscribersRefuse = true): void {
    this.#sayUnpublishable(`not published: "${relative}": ${reason}${subscribersRefuse ? " (subscribers refuse such names)" : ""}`);
  }

  /**
   * Why a name is not published, said once (the watcher and the walks may meet it again), and at most 100
   * such lines in all, then one line more: a tree of a million bad names must not flood the log.
   */
  #sayUnpublishable(message: string, unreadable = false): void {
    if (this.#closed || this.#unpublishableSaid.has(message) || this.#unpublishableSaid.size > 100) return;
    this.#unpublishableSaid.add(message);
    if (unreadable) this.#unreadableSaid++;
    this.emit("warning", new MountError(this.#unpublishableSaid.size <= 100 ? message : "more names could not be published (first 100 above; the rest are not said)"));
  }
  /** What has been said (101 at most: the last says there is more), and how much of it of unreadable directories. */
  readonly #unpublishableSaid = new Set<string>();
  #unreadableSaid = 0;


  /** Directories we may not look into (their files stay published), looked at until we may. */
  readonly #unreadable = new UnreadableDirectories(
    (dir) => this.#readableAgain(dir),
    (dir) => {
      if (this.#closed) return;
      if (dir === this.root) return void (this.#watcher && this.#lost(this.#watcher));
      this.emit("warning", new MountError(`${this.#shown(dir)} was removed while we could not look into it: what was in it is deleted`));
      this.#goneUnder(this.#relative(dir));
    },
  );

  /**
   * The watcher says `absolute` went; is it gone? Not if it is there (again, as what it was): its add
   * follows. Nor if we
   * may no longer look (a directory on the way chmod'ed 000): it is still on the server, only unreadable
   * for now, so subscribers keep their copies (a delete would remove what the server still has); said
   * once as a warning.
   */
  async #reallyGone(absolute: string, was: "file" | "directory"): Promise<boolean> {
    try {
      // (Something else of that name is no stand-in: a file replaced by a directory is gone.)
      const stats = await lstat(absolute);
      return was === "directory" ? !stats.isDirectory() : !stats.isFile() && !stats.isSymbolicLink();
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code !== "EACCES" && code !== "EPERM") return true;
      // (What we cannot do is look into its directory.)
      this.#cannotLookInto(path.dirname(absolute), code);
      return false;
    }
  }

  /**
   * A directory we may not look into: said once per directory (not once per file, nor again by the other
   * of the two that find it: the watcher's events, a walk), in the words that fit, and looked at until we
   * may. One with files published under it was readable: they stay published. One with none never was.
   */
  #cannotLookInto(dir: string, code: string): void {
    if (this.#closed || this.#unreadable.has(dir)) return;
    const relative = this.#relative(dir);
    const published = this.#publishesUnder(relative);
    if (published) this.emit("warning", new MountError(`cannot look into ${this.#shown(dir)} any more (${code}): what is in it is not taken for deleted`));
    else this.#sayUnpublishable(`not published: "${relative || "."}/" and what is in it: cannot read it (${code})`, true);
    this.#unreadable.add(dir);
  }

  /** We may look into `dir` again: the watcher scans it afresh, and what changed meanwhile is published. */
  #readableAgain(dir: string): void {
    if (this.#closed) return;
    this.emit("warning", new MountError(`can look into ${this.#shown(dir)} again: publishing what is in it`));
    this.#rewatch(dir);
    // What went meanwhile was never reported gone: look at what we still publish from there.
    this.#goneFromUnder(dir);
  }

  /** What we publish from under `dir` and is no longer there (the watcher did not say): deleted. */
  #goneFromUnder(dir: string): void {
    if (!this.#publishesUnder(this.#relative(dir))) return;
    const prefix = dir === this.root ? "" : this.#relative(dir) + "/";
    for (const file of [...this.files.values()]) {
      if (!file.relative.startsWith(prefix)) continue;
      void stat(path.join(this.root, file.relative)).catch((error: NodeJS.ErrnoException) => {
        // (Not once closed: a delete said after close, a review.)
        if (isGone(error) && !this.#closed) this.#gone(file.relative);
      });
    }
  }

  /** A directory of the mount, as subscribers name it. */
  #shown(dir: string): string {
    return dir === this.root ? this.alias : joinVirtual(this.alias, this.#relative(dir));
  }

  /** Published names that lead elsewhere in the mount (symlinks): real path -> those names. */
  readonly #links = new Map<string, Set<string>>();

  /**
   * Symlinks that lead nowhere (yet), by the path they name (one level: a link to a link waits for that
   * link): published when it appears (#recheckLinksTo). Bounded; a link found past the bound, or naming a
   * path outside the mount (never published anyway), is published only if it is looked at again.
   */
  readonly #dangling = new Map<string, Set<string>>();
  /** The same, by link: what each waits for (so a link gone or retargeted leaves no stale entry). */
  readonly #danglingTarget = new Map<string, string>();

  /** Names made in a watched directory and not reported yet (see the "raw" handler). */
  readonly #maybeDangling = new Set<string>();
  #maybeDanglingTimer: NodeJS.Timeout | undefined;

  #checkMaybeDangling(): void {
    this.#maybeDanglingTimer = undefined;
    if (this.#closed) return;
    const listings = new Map<string, Set<string>>();
    for (const absolute of this.#maybeDangling) {
      const relative = this.#relative(absolute);
      // A name that is not valid UTF-8, made in a watched directory: the watcher cannot look at it and
      // says nothing. Said, if it is there (made, not removed: neither can be opened to tell).
      if (relative.includes("\uFFFD")) {
        if (!isUnpublished(relative) && listed(absolute, listings)) this.#findings.report(notUtf8(relative));
        continue;
      }
      // A link that waited and is gone (or retargeted) waits no more; looked at again below.
      this.#stopWaiting(relative);
      // (Reported by the watcher meanwhile, as every file and every link that leads somewhere is; or not a
      // link at all: nearly every name here is a file not reported yet, and one lstat tells it from a link.)
      if (this.#tracker.has(relative) || this.files.has(joinVirtual(this.alias, relative)) || !isSymlink(absolute)) continue;
      this.#lookAtLink(absolute, relative);
    }
    this.#maybeDangling.clear();
  }

  /**
   * A symlink found by a walk (see unpublishable.ts). One the watcher has (published, or waiting to be) is
   * its business. Any other led nowhere when the watcher looked, which then said nothing of it: it waits
   * for its target, or, if the target came between the watcher's look and ours, is taken in now (the
   * watcher will not look again). One leading outside the mount is left: never published, and said by
   * the watcher if it saw it.
   */
  #linkFound(absolute: string, relative: string): void {
    if (this.#closed || isUnpublished(relative) || this.files.has(joinVirtual(this.alias, relative)) || this.#tracker.has(relative)) return;
    // Only a name the watcher could have reported: none of the directories on its way a symlink (a
    // directory swapped for one while it was walked). Through a link to a directory, a name is not
    // published: the watcher does not follow one, and nothing would watch that name after.
    if (!this.#reachedWithoutLinks(path.dirname(absolute))) return;
    let real: string;
    try {
      real = realpathSync.native(absolute);
    } catch (error) {
      if (leadsNowhere(error as NodeJS.ErrnoException) && isSymlink(absolute)) this.#awaitTarget(absolute, relative);
      return;
    }
    // (What #publish would refuse, and said if the watcher saw it: a link out of the mount, or to what is
    // not published from here. Not handed over to be refused, and said, again.)
    if (real !== this.root && !real.startsWith(this.root + path.sep)) return;
    const target = this.#relative(real);
    if (isUnpublished(target) || this.options.ownedElsewhere?.(joinVirtual(this.alias, target))) return;
    this.#lookAtLink(absolute, relative);
  }

  /** Is `dir` (in the mount) reached from the root through directories alone, no symlink on the way? */
  #reachedWithoutLinks(dir: string): boolean {
    try {
      return realpathSync.native(dir) === dir;
    } catch {
      return false;
    }
  }

  /**
   * A link the watcher may not know: one that leads nowhere waits for its target; one that leads somewhere
   * now (it led nowhere when the watcher looked, and its target came right after it; or the target it
   * waited for came) is taken as if the watcher had reported it: the watcher will not look again.
   */
  #lookAtLink(absolute: string, relative: string): void {
    if (this.#leadsNowhereNow(absolute)) return this.#awaitTarget(absolute, relative);
    if (isUnpublished(relative)) return;
    let stats: Stats;
    try {
      stats = lstatSync(absolute);
    } catch {
      return; // (gone again)
    }
    if (stats.isSymbolicLink()) this.#seen(absolute, stats);
  }

  /** Is there a symlink here that leads nowhere (or round a loop) now? */
  #leadsNowhereNow(absolute: string): boolean {
    try {
      realpathSync.native(absolute);
      return false;
    } catch (error) {
      return leadsNowhere(error as NodeJS.ErrnoException) && isSymlink(absolute);
    }
  }

  #awaitTarget(absolute: string, relative: string): void {
    this.#stopWaiting(relative);
    if (this.#danglingTarget.size >= MAX_DANGLING) return;
    let target: string;
    try {
      target = path.resolve(path.dirname(absolute), readlinkSync(absolute));
    } catch {
      return; // (gone meanwhile, or no longer a link: the watcher says so)
    }
    if (!target.startsWith(this.root + path.sep)) return;
    let links = this.#dangling.get(target);
    if (!links) this.#dangling.set(target, (links = new Set()));
    links.add(relative);
    this.#danglingTarget.set(relative, target);
  }

  #stopWaiting(relative: string): void {
    const target = this.#danglingTarget.get(relative);
    if (target === undefined) return;
    this.#danglingTarget.delete(relative);
    const links = this.#dangling.get(target);
    links?.delete(relative);
    if (links?.size === 0) this.#dangling.delete(target);
  }

  /** `relative` no longer leads to `real`. */
  #unlink(real: string, relative: string): void {
    const names = this.#links.get(real);
    names?.delete(relative);
    if (names?.size === 0) this.#links.delete(real);
  }

  #relative(absolute: string): string {
    return relativeInside(this.root, absolute);
  }

  #gone(relative: string): void {
    this.#tracker.forget(relative);
    this.#withdraw(relative);
  }

  /**
   * A published name that is no longer a regular file (a FIFO, a socket or a device put at it, or a link
   * re-pointed at one) is not what was published: its delete goes out. (A directory is the watcher's to
   * report, as a directory.) Left published, every session would try to send it, and fail unsaid.
   */
  #notAFile(relative: string): void {
    if (!this.files.has(joinVirtual(this.alias, relative))) return;
    try {
      // (lstat: a link that now leads to a directory is not followed, and the watcher says nothing of it:
      // it goes here. It stayed published when its target was replaced by a directory: a review.)
      if (lstatSync(path.join(this.root, relative), { throwIfNoEntry: false })?.isDirectory()) return;
    } catch {
      // (It cannot be looked at: not a file we can send either.)
    }
    this.#withdraw(relative);
  }

  /** No longer published (its delete goes out); a newer sighting the tracker holds stays. */
  #withdraw(relative: string): void {
    const vpath = joinVirtual(this.alias, relative);
    const file = this.files.get(vpath);
    if (file && file.absolute !== path.join(this.root, relative)) this.#unlink(file.absolute, relative);
    if (file && this.files.delete(vpath)) {
      setNewest(this.#withdrawnNewest, vpath, this.#setBackNewest.get(vpath) ?? file.mtimeMs, RECENTLY_WITHDRAWN);
      this.#setBackNewest.delete(vpath);
      this.#countUnder(relative, -1);
      this.emit("deleted", vpath, file);
    }
  }

  /**
   * Another mount now owns `alias`, inside ours: what we published under it, or at a directory on the way
   * to it, is withdrawn (it goes out as deletes; that mount's files follow).
   */
  shadow(alias: string): void {
    const prefix = relativeTo(this.alias, alias);
    if (prefix === undefined || prefix === "") return;
    this.#tracker.forgetWhere((relative) => {
      const vpath = joinVirtual(this.alias, relative);
      const shadowed = overlaps(alias, vpath);
      if (shadowed) this.#shadowed(vpath);
      return shadowed;
    });
    for (const file of [...this.files.values()]) {
      if (!overlaps(alias, file.vpath)) continue;
      this.#gone(file.relative);
      this.#shadowed(file.vpath);
    }
  }

  /** Said once per mount: files of ours under another mount's alias are not published. */
  #shadowed(vpath: string): void {
    if (this.#saidShadowed) return;
    this.#saidShadowed = true;
    this.emit("warning", new MountError(`${this.root} has files under another mount's path, or on its way (${vpath}): that mount's are published there, not these`));
  }
  #saidShadowed = false;

  /** Published files under each directory (relative path -> count), to tell at once if a name is one. */
  readonly #filesUnder = new Map<string, number>();
  #countUnder(relative: string, delta: 1 | -1): void {
    for (let slash = relative.indexOf("/"); slash > 0; slash = relative.indexOf("/", slash + 1)) {
      const dir = relative.slice(0, slash);
      const count = (this.#filesUnder.get(dir) ?? 0) + delta;
      if (count > 0) this.#filesUnder.set(dir, count);
      else this.#filesUnder.delete(dir);
    }
  }

  #publish(relative: string, absolute: string, { size, mtimeMs, ctimeMs, ino, dev, changeAt }: Sighting): void {
    // (Nothing while the published directory is gone: what the old watcher still sees at its path is not
    // it. A new scan publishes what is there once a directory is back.)
    if (this.#lookingForRoot) return;
    // chokidar drops a file's "change" that comes within 50 ms of the last one it reported, and reports
    // nothing of it later. A version published inside that window (a quiet period under 50 ms, as
    // --stable-ms 0 for the lowest latency; or a change whose mtime is already old, cp -p or a chmod,
    // which needs only a second look) would stay for good if the file was written again at once (found
    // in testing: 3 runs of 3 at 10 ms). So such a file is looked at once more when the window is over;
    // nothing new there, nothing happens.
    if (changeAt !== undefined) {
      const windowLeft = changeAt + CHOKIDAR_CHANGE_THROTTLE_MS + 20 - Date.now();
      if (windowLeft > 0) this.#lookAgainAfter(relative, windowLeft);
    }
    // Never serve outside the mount: a symlink (or a path through one) must resolve inside the root.
    // (The C library's realpath, synchronous: 10-15 µs of CPU for a file in the cache, against about 50
    // through the thread pool and a promise; 10,000 files at start. And no moment out of the tracker and
    // not yet in `files`.)
    let real: string;
    try {
      real = realpathSync.native(absolute);
    } catch (error) {
      // A published link that leads nowhere now (or round a loop) is not its old target any more: its
      // delete goes out. (Anything else gone, the watcher reports; what we may not read is kept.)
      if (leadsNowhere(error as NodeJS.ErrnoException) && isSymlink(absolute)) {
        if (this.files.has(joinVirtual(this.alias, relative))) this.#withdraw(relative);
        this.#awaitTarget(absolute, relative);
      }
      return;
    }
    if (real !== this.root && !real.startsWith(this.root + path.sep)) {
      this.#sayUnpublishable(`not published: ${relative} leads outside ${this.root}`);
      // (A published name that now leads outside is no longer what was published: its delete goes out.
      // A sighting made while we looked stays: it is checked in turn.)
      return this.#withdraw(relative);
    }
    // A link: what it was seen to be (stat follows it in the kernel) must be the file its real path names.
    // They differ only where the kernel follows what the path's text does not say: a link into another
    // process's mount namespace (/proc/<pid>/root/...), whose files the C library's realpath takes for
    // ours. Published, the name would carry that file's identity, and a directory on its path later
    // swapped for such a link would have it sent (a review).
    if (real !== absolute && !namesSameFile(real, { size, mtimeMs, ino, dev })) {
      this.#sayUnpublishable(`not published: "${relative}": a link to a file other than its path ${real} names`);
      return this.#withdraw(relative);
    }
    const targetRelative = real === absolute ? relative : this.#relative(real);
    // Nor through a link to what is never published itself (a hidden file, subscribers' state), or to what
    // another mount owns (a subtree under its alias: not published from here).
    if (targetRelative !== relative && (isUnpublished(targetRelative) || this.options.ownedElsewhere?.(joinVirtual(this.alias, targetRelative)))) {
      this.#sayUnpublishable(`not published: ${relative} leads to ${targetRelative}, which is not published from here (hidden, fmq's own state, or another mount's)`);
      return this.#withdraw(relative);
    }
    const vpath = joinVirtual(this.alias, relative);
    // (Another mount may have taken this path while we waited.)
    if (this.options.isShadowed?.(vpath)) return this.#shadowed(vpath);
    // A link that led elsewhere before (retargeted): not a name of that file any more.
    const before = this.files.get(vpath);
    if (before && before.absolute !== real) this.#unlink(before.absolute, relative);
    if (real !== absolute) {
      let names = this.#links.get(real);
      if (!names) this.#links.set(real, (names = new Set()));
      names.add(relative);
    }
    const target = real === absolute ? undefined : joinVirtual(this.alias, targetRelative);
    const newest = this.#setBackNewest.get(vpath) ?? before?.mtimeMs ?? this.#withdrawnNewest.get(vpath);
    const lookAlike = newest !== undefined && mtimeMs <= newest;
    const file: PublishedFile = {
      relative,
      vpath,
      absolute: real,
      size,
      mtimeMs,
      ctimeMs,
      ino,
      dev,
      root: this.root,
      ...(target !== undefined ? { target } : {}),
      ...(lookAlike ? { lookAlike } : {}),
    };
    // The very version already published, seen again (the watcher rescans a directory it may read again,
    // or one handed to it afresh): not news. Sent again, it would cost every subscriber the whole file.
    if (alreadyPublished(before, file)) return;
    // A file with the name of a directory we publish files from: that directory is gone, whatever the
    // watcher said (it can lose track of a directory renamed away); its files go before this one comes.
    if (this.#filesUnder.has(relative)) this.#goneUnder(relative);
    // And the other way round: a file on its way published under a name that is now a directory (the
    // watcher may report the file's unlink after the directory's contents).
    for (let slash = relative.indexOf("/"); slash > 0; slash = relative.indexOf("/", slash + 1)) {
      if (this.files.has(joinVirtual(this.alias, relative.slice(0, slash)))) this.#gone(relative.slice(0, slash));
    }
    // (Straight from the tracker into `files`: nobody sees it in neither.)
    this.#withdrawnNewest.delete(vpath);
    if (newest !== undefined && mtimeMs < newest) this.#setBackNewest.set(vpath, newest);
    else this.#setBackNewest.delete(vpath);
    if (!this.files.has(vpath)) this.#countUnder(relative, 1);
    this.files.set(vpath, file);
    this.#stopWaiting(relative);
    this.emit("changed", file);
    // (A link published now may be what another link that leads nowhere names: a chain of links.)
    if (real !== absolute) this.#recheckDangling(absolute);
  }
}

/** Does this link lead to a directory (now)? */
function leadsToDirectory(link: string): boolean {
  try {
    return statSync(link, { throwIfNoEntry: false })?.isDirectory() === true;
  } catch {
    return false; // (a loop, or not ours to look at: the stability check finds it unpublishable)
  }
}

/**
 * Is there an entry of this name in its directory (a name that cannot be opened or stat'ed as Node reads
 * it)? Each directory read once per `listings` (a flood of such names in a big directory).
 */
function listed(absolute: string, listings: Map<string, Set<string>>): boolean {
  const dir = path.dirname(absolute);
  let names = listings.get(dir);
  if (!names) {
    try {
      names = new Set(readdirSync(dir));
    } catch {
      names = new Set();
    }
    listings.set(dir, names);
  }
  return names.has(path.basename(absolute));
}

/** Is there a symlink at this path (now)? */
function isSymlink(file: string): boolean {
  try {
    return lstatSync(file, { throwIfNoEntry: false })?.isSymbolicLink() === true;
  } catch {
    return false;
  }
}

/** The file at `real` (no symlink on its path, or none now) is the one seen, by lstat. */
function namesSameFile(real: string, seen: { size: number; mtimeMs: number; ino?: number; dev?: number }): boolean {
  const stats = lstatSync(real, { throwIfNoEntry: false });
  return stats !== undefined && stats.isFile() && stats.ino === seen.ino && stats.dev === seen.dev && stats.size === seen.size && stats.mtimeMs === seen.mtimeMs;
}

/** What tells a directory from another made at the same path: its inode and birth time. */
function identityOf(stats: Stats): string {
  return `${stats.ino}:${stats.birthtimeMs}`;
}

/** `a` (what is published) is this very version of the file `b` (ctime and inode known: size and mtime alone can be set back). */
function alreadyPublished(a: PublishedFile | undefined, b: PublishedFile): boolean {
  return (
    a !== undefined &&
    a.ino !== undefined &&
    a.absolute === b.absolute &&
    a.size === b.size &&
    a.mtimeMs === b.mtimeMs &&
    a.ctimeMs === b.ctimeMs &&
    a.ino === b.ino
  );
}

/** The error of a path that is not there (as opposed to one we may not look at). */
function isGone(error: NodeJS.ErrnoException): boolean {
  return error.code === "ENOENT" || error.code === "ENOTDIR";
}

/** Following it fails for good: what it names is gone, or a link on the way goes round a loop. */
function leadsNowhere(error: NodeJS.ErrnoException): boolean {
  return isGone(error) || error.code === "ELOOP";
}
