// A directory held open and named through its descriptor (/proc/self/fd/N/<name>), not through its path.
// Someone who may write in the inbox, or in the directory above it, can swap any directory on the way for
// a symlink at any moment: a path checked a moment ago proves nothing by the time it is used (a review
// had files renamed, written and deleted as root outside the inbox that way). A name resolved through
// our descriptor lands in the very directory we opened and checked, whatever is done to its path since.
// Linux; where /proc/self/fd is missing, the real path is used, and the checks made at open are all.

import { closeSync, constants, existsSync, fchmodSync, fstatSync, fsyncSync } from "node:fs";
import { mkdirSync, openSync } from "./fs-names.js";
import path from "node:path";

const THROUGH_DESCRIPTOR = existsSync("/proc/self/fd");

/** A directory, never through a symlink at its own name (ELOOP) nor a file there (ENOTDIR). */
const OPEN_DIRECTORY = constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NOFOLLOW;

/** Where a manifest (or anything else) keeps its files, and how to make that place again if it went. */
export interface Place {
  join(name: string): string;
  restore(): void;
  /** Make the directory's entries durable (fsync it). */
  sync(): void;
}

export class HeldDirectory {
  /** The descriptor itself: kept open past close() while a path through it is lent out (lend). */
  #open: number;
  #closed = false;
  #lent = 0;

  /** The descriptor, for us: -1 once closed, lent out or not. */
  get #fd(): number {
    return this.#closed ? -1 : this.#open;
  }

  private constructor(
    /** Its real path when it was opened (for people, and to make it again). */
    readonly realPath: string,
    fd: number,
  ) {
    this.#open = fd;
  }

  /** The same directory as `other` (device and inode), whatever name each was opened by. */
  sameAs(other: HeldDirectory): boolean {
    const [a, b] = [fstatSync(this.#fd, { bigint: true }), fstatSync(other.#fd, { bigint: true })];
    return a.ino === b.ino && a.dev === b.dev;
  }

  /**
   * Open `name` in `parent` (or the absolute path `name`), making it if missing. Throws if it is not a
   * directory, or is a symlink (the path leading to an absolute `name` is followed: it is the user's).
   */
  static make(name: string, parent?: HeldDirectory): HeldDirectory {
    const at = parent ? parent.join(name) : name;
    try {
      mkdirSync(at);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
    }
    return new HeldDirectory(parent ? path.join(parent.realPath, name) : name, openSync(at, OPEN_DIRECTORY));
  }

  /** Open `name` in `parent`, a directory that must be there already. */
  static open(name: string, parent: HeldDirectory): HeldDirectory {
    return new HeldDirectory(path.join(parent.realPath, name), openSync(parent.join(name), OPEN_DIRECTORY));
  }

  /**
   * The directory itself, for the kernel. Once closed, a path that leads nowhere (ENOENT): the number
   * may already be another descriptor's, so a path built from it must never be used after.
   */
  get path(): string {
    if (!THROUGH_DESCRIPTOR) return this.realPath;
    return this.#fd >= 0 ? `/proc/self/fd/${this.#fd}` : "/proc/self/fd/-1";
  }

  /** `name` in this directory (a plain name, or a relative path whose directories the caller trusts). */
  join(name: string): string {
    return `${this.path}/${name}`;
  }

  /** fsync the directory: its entries (a file renamed into it) survive a crash. */
  sync(): void {
    fsyncSync(this.#fd);
  }

  /**
   * Make sure nobody else may change what is in it: ours (else it throws), and not writable by group or
   * others (such bits are taken off). For the subscriber's own state directories: whoever may write
   * there could swap a partial file between its hash check and its rename.
   */
  keepPrivate(): void {
    const stats = fstatSync(this.#fd);
    const uid = process.geteuid?.();
    if (uid !== undefined && stats.uid !== uid) throw new Error(`${this.realPath} belongs to another user (uid ${stats.uid}): refused`);
    if ((stats.mode & 0o022) !== 0) fchmodSync(this.#fd, stats.mode & 0o755);
  }

  /** Removed since it was opened (rm -rf): nothing can be made in it any more. */
  get removed(): boolean {
    try {
      return fstatSync(this.#fd).nlink === 0;
    } catch {
      return true;
    }
  }

  /**
   * Keep the descriptor open until giveBack(), whatever close() says meanwhile: for a path through it
   * handed to another thread (placer-thread.ts), used after this turn. Closed, a path built from it could
   * lead into whatever directory got its number next. (For us it is closed at close() all the same: `path`
   * leads nowhere from then on.) Each lend() is given back once.
   */
  lend(): this {
    this.#lent++;
    return this;
  }

  giveBack(): void {
    if (this.#lent === 0) throw new Error(`${this.realPath}: given back more often than lent`);
    if (--this.#lent === 0 && this.#closed) this.#closeDescriptor();
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    if (this.#lent === 0) this.#closeDescriptor();
  }

  #closeDescriptor(): void {
    if (this.#open < 0) return;
    const fd = this.#open;
    this.#open = -1;
    closeSync(fd);
  }
}
