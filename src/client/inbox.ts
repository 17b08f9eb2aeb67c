// Where received files land. Every file is written into a partial file in the inbox's private state
// directory (<inbox>/.fmq/partial/) and renamed into place only when complete and verified, so no reader
// ever sees a partial file at the final path, and a shorter new version fully replaces the old one.
// Nothing is written, deleted or followed outside the inbox: every name is checked (paths.ts), and every
// directory on the way is checked not to be a symlink, for every file.

import { hash } from "node:crypto";
import { closeSync, constants, fsyncSync, lstatSync, mkdirSync, openSync, renameSync, rmdirSync, unlinkSync, writevSync } from "node:fs";
import { copyFile, lstat, mkdir, open, readdir, realpath, stat, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { PARTIAL_SUFFIX, unsafeRelativeReason } from "../paths.js";
import { BLOCK_SIZE, BlockHasher, fingerprintFile, hashPrefix, xxh, type Fingerprint } from "../digest/blocks.js";
import type { XXHashAPI } from "xxhash-wasm";
import { Manifest, STATE_DIR, type PartialFile } from "./manifest.js";
import { lockInbox } from "./inbox-lock.js";

export class InboxError extends Error {
  override name = "InboxError";
  constructor(
    message: string,
    /** The relative name involved, if any. */
    readonly relative?: string,
    /** The system error behind it, if any (ENOSPC...). */
    readonly code?: string,
  ) {
    super(message);
  }
}

/** The server sent a resumed or delta transfer we cannot apply: the file must be fetched again whole. */
export class RefetchError extends InboxError {
  override name = "RefetchError";
}

/** Files at least this big are worth resuming (their partial is recorded in the manifest). */
export const RESUME_MIN_SIZE = 2 * BLOCK_SIZE;

/**
 * Files up to this size are held in memory until complete and then written with synchronous calls: a
 * few syscalls of microseconds each, instead of a thread-pool round trip per call (open, write, close,
 * rename), which is what limits a flood of small files. Bounded: one file at a time, at most this much.
 */
export const SMALL_FILE = 256 * 1024;

/** How a file's bytes arrive: in order from 0, in order from a resumed offset, or as changed blocks. */
type Mode = "sequential" | "delta";

/** A file being received. */
export class IncomingFile {
  /** Payload bytes written in this transfer. */
  received = 0;
  /** In sequential mode, the next chunk must start here. */
  #next: number;
  /** A small file's bytes, held until it is complete (no partial file on disk until then). */
  #held: Uint8Array[] | undefined;
  #heldBytes = 0;

  constructor(
    readonly relative: string,
    readonly vpath: string,
    readonly finalPath: string,
    readonly partialPath: string,
    /** Undefined while a small file is held in memory. */
    private handle: FileHandle | undefined,
    readonly mode: Mode,
    /** Hashes the file in order as it arrives (sequential mode), prefix included when resumed. */
    private readonly hasher: BlockHasher | undefined,
    start: number,
    /** The version on the server (from our headers), if the server told us. */
    readonly identity: PartialFile | undefined,
    private readonly fsync: boolean,
    /** A delta: the size of the version it applies to (what lies beyond must all arrive, in order). */
    baseSize = 0,
  ) {
    this.#next = start;
    if (!handle) this.#held = [];
    this.#tail = Math.min(baseSize, identity?.size ?? baseSize);
  }

  /** A delta: bytes from 0 up to here are held (the base's, then the new end as it arrives). */
  #tail: number;

  /** The file's size so far (sequential mode). */
  get length(): number {
    return this.#next;
  }

  async write(chunk: Uint8Array, offset: number): Promise<void> {
    if (this.mode === "sequential" && offset !== this.#next) {
      throw new InboxError(`chunk at offset ${offset}, expected ${this.#next}`, this.relative);
    }
    if (this.mode === "delta" && this.identity && offset + chunk.length > this.identity.size) {
      throw new InboxError(`chunk beyond the end of the file`, this.relative);
    }
    if (this.mode === "delta") {
      // Past the base's end nothing is held: a gap there would be a hole of zeros in the delivered file
      // (and a hostile server's 1 byte at offset 2^40 a sparse file we would then hash for hours).
      if (offset > this.#tail) throw new RefetchError(`${this.relative}: delta leaves a gap at ${this.#tail}; fetching it whole`, this.relative);
      this.#tail = Math.max(this.#tail, offset + chunk.length);
    }
    if (this.#held && this.#heldBytes + chunk.length <= SMALL_FILE) {
      // The chunk is a view into the received message: keeping it costs no copy.
      this.#held.push(chunk);
      this.#heldBytes += chunk.length;
      this.hasher?.update(chunk, true);
    } else {
      const handle = this.handle ?? (await this.#spill());
      // Start the write (a thread-pool thread copies the chunk into the page cache), hash the chunk on
      // this thread meanwhile, then wait for the write: the two overlap instead of adding up.
      const first = handle.write(chunk, 0, chunk.length, offset);
      first.catch(() => undefined);
      this.hasher?.update(chunk, true);
      let done = (await first).bytesWritten;
      while (done < chunk.length) {
        const { bytesWritten } = await handle.write(chunk, done, chunk.length - done, offset + done);
        done += bytesWritten;
      }
    }
    this.received += chunk.length;
    if (this.mode === "sequential") this.#next += chunk.length;
  }

  /** The fingerprint of what was assembled: hashed as it arrived, or (delta) read back from disk. */
  async fingerprint(): Promise<Fingerprint> {
    if (this.hasher) return this.hasher.finish();
    if (this.mode === "delta" && this.identity && this.#tail < this.identity.size) {
      throw new RefetchError(`${this.relative}: delta ends at ${this.#tail} of ${this.identity.size} bytes; fetching it whole`, this.relative);
    }
    // A delta onto a longer version: cut it to the new size first, or the old tail is hashed too.
    if (this.mode === "delta" && this.identity && this.handle) await this.handle.truncate(this.identity.size);
    // Read back through the page cache: what we wrote is visible without any fsync.
    return fingerprintFile(this.partialPath);
  }

  /** Complete: (fsync), close, rename into place atomically, (fsync the directory). */
  async finish(): Promise<void> {
    try {
      if (this.#held) {
        writeWhole(this.partialPath, this.#held, this.#heldBytes, this.fsync, this.relative);
        this.#held = undefined;
      } else if (this.handle) {
        if (this.mode === "delta" && this.identity) await this.handle.truncate(this.identity.size);
        if (this.fsync) await this.handle.sync();
        await this.handle.close();
        this.handle = undefined;
      }
    } catch (error) {
      await unlink(this.partialPath).catch(() => undefined);
      throw deliveryError(error, this.relative);
    }
    moveIntoPlace(this.partialPath, this.finalPath, this.relative);
    if (this.fsync) {
      const dir = await open(path.dirname(this.finalPath), "r");
      await dir.sync().finally(() => dir.close());
    }
  }

  /** Stop writing but keep the partial file (it can be resumed). */
  async suspend(): Promise<void> {
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
  }

  /** Incomplete and not coming back: close and remove the partial file. */
  async abandon(): Promise<void> {
    this.#held = undefined;
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await unlink(this.partialPath).catch(() => undefined);
  }

  /** A held file grew past SMALL_FILE: move it to a partial file on disk. */
  async #spill(): Promise<FileHandle> {
    const handle = await openPartial(this.partialPath);
    this.handle = handle;
    let at = 0;
    for (const piece of this.#held ?? []) {
      await handle.write(piece, 0, piece.length, at);
      at += piece.length;
    }
    this.#held = undefined;
    return handle;
  }
}

export interface InboxOptions {
  /** fsync each file and its directory before reporting it delivered. */
  readonly fsync?: boolean;
}

/** Why an inbox directory could not be made, in words. */
const WHY_NO_INBOX: Record<string, string> = {
  EEXIST: "not a directory",
  ENOTDIR: "not a directory",
  ENOENT: "no directory can be made there",
  EACCES: "permission denied",
  EPERM: "permission denied",
  EROFS: "read-only file system",
};

/**
 * `mkdir -p`, one level at a time. Node's own recursive mkdir never returns where a directory cannot be
 * made and ENOENT comes back (it retries forever: `/proc/x/y`).
 */
async function makeDirectories(directory: string): Promise<void> {
  const target = path.resolve(directory);
  const levels: string[] = [];
  for (let dir = target; ; dir = path.dirname(dir)) {
    levels.unshift(dir);
    if (path.dirname(dir) === dir) break;
  }
  for (const dir of levels) {
    try {
      await mkdir(dir);
    } catch (error) {
      // Already there as a directory (or a symlink to one, as with mkdir -p): go on. Otherwise stop here.
      if ((await stat(dir).catch(() => undefined))?.isDirectory()) continue;
      throw error;
    }
  }
}

export class Inbox {
  private constructor(
    readonly root: string,
    readonly manifest: Manifest,
    private readonly partialDir: string,
    private readonly options: InboxOptions,
    private readonly xx: XXHashAPI,
    private readonly lock: { release(): void },
  ) {}

  /** Done with it: the manifest written out, the inbox free for another subscriber. */
  close(): void {
    this.manifest.close();
    this.lock.release();
  }

  /** Create the inbox if needed, fix its real path, load its manifest, clear stale partial files. */
  static async open(directory: string, options: InboxOptions = {}): Promise<Inbox> {
    await makeDirectories(directory).catch((error: NodeJS.ErrnoException) => {
      const why = (error.code && WHY_NO_INBOX[error.code]) ?? error.code ?? String(error);
      throw new InboxError(`cannot use ${directory} as an inbox: ${why}`);
    });
    const root = await realpath(directory);
    const lock = await lockInbox(root).catch((error: Error) => {
      throw new InboxError(error.message);
    });
    try {
      const stateDir = path.join(root, STATE_DIR);
      const partialDir = path.join(stateDir, "partial");
      for (const dir of [stateDir, partialDir]) {
        await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "EEXIST") throw error;
        });
        const stats = await lstat(dir);
        if (!stats.isDirectory()) throw new InboxError(`${dir} is not a directory (a symlink?)`);
      }
      const manifest = await Manifest.load(stateDir);
      const inbox = new Inbox(root, manifest, partialDir, options, await xxh(), lock);
      await inbox.#sweepPartials();
      return inbox;
    } catch (error) {
      lock.release();
      throw error;
    }
  }

  /**
   * Start receiving `relative` (a name from the wire, already stripped of the subscription path).
   * `offset` is where the first chunk starts: 0 for a new file; more to resume a partial of the same
   * version (`identity`); `base` (a tree hash) for a delta on top of the delivered version.
   */
  async create(relative: string, vpath: string, offset: number, identity: PartialFile | undefined, base: string | undefined): Promise<IncomingFile> {
    const finalPath = this.#resolve(relative);
    const xx = this.xx;
    const fsync = this.options.fsync === true;

    // A small (or not yet known) size starts in memory. A file the server says is small is never
    // resumed, so its partial (written only once complete) needs no stable name: a counter costs
    // nothing, where hashing the name is a measurable part of a small file's cost. (A file of unknown
    // size may grow big and be resumed: it keeps the stable name.)
    const small = !identity || identity.size <= SMALL_FILE;
    const knownSmall = small && identity !== undefined && base === undefined && offset === 0;
    const partialPath = knownSmall ? this.#heldPartialPath() : path.join(this.partialDir, partialName(relative));

    if (base !== undefined) {
      // Delta: start from the version we delivered, if it is the one the server has in mind.
      const held = this.manifest.files.get(relative);
      if (!held || held.hash !== base) throw new RefetchError(`${relative}: delta against a version we do not hold; fetching it whole`, relative);
      // Anything in the way of the copy (short of a full disk, kept as such) means: fetch it whole.
      const copied = await copyHeldVersion(finalPath, partialPath).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOSPC" || error.code === "EDQUOT") throw error;
        return undefined;
      });
      if (copied === undefined) throw new RefetchError(`${relative}: delta against a version we do not hold; fetching it whole`, relative);
      return new IncomingFile(relative, vpath, finalPath, partialPath, copied.handle, "delta", undefined, 0, identity, fsync, copied.size);
    }

    if (offset > 0) {
      // Resume: only a partial of this very version, holding at least up to `offset`.
      const known = this.manifest.partials.get(relative);
      const same = known && identity && known.vpath === vpath && known.size === identity.size && known.mtime === identity.mtime;
      const partial = await lstat(partialPath).catch(() => undefined);
      if (!same || !partial?.isFile() || partial.size < offset) throw new RefetchError(`${relative}: cannot resume at ${offset}: no matching partial file; fetching it whole`, relative);
      const handle = await open(partialPath, constants.O_RDWR | constants.O_NOFOLLOW);
      try {
        await handle.truncate(offset);
        const hasher = new BlockHasher(xx);
        await hashPrefix(handle, hasher, offset);
        return new IncomingFile(relative, vpath, finalPath, partialPath, handle, "sequential", hasher, offset, identity, fsync);
      } catch (error) {
        await handle.close();
        throw error;
      }
    }

    // A big file gets its partial file at once. O_NOFOLLOW refuses a symlink planted at the partial
    // name; O_TRUNC starts empty.
    const handle = small ? undefined : await openPartial(partialPath);
    if (identity && identity.size >= RESUME_MIN_SIZE) this.manifest.partialStarted(relative, identity);
    else if (this.manifest.partials.has(relative)) this.manifest.partialDropped(relative);
    return new IncomingFile(relative, vpath, finalPath, partialPath, handle, "sequential", new BlockHasher(xx), 0, identity, fsync);
  }

  /**
   * A whole small file in one message (capability "single"): checked, written, renamed into place and
   * recorded in one synchronous call. A flood of small files then costs its system calls and little
   * else: no IncomingFile, no promise, no thread-pool round trip per file. Returns where the file is,
   * or undefined, having written nothing, if its content does not match `expectedHash`. Not with fsync
   * (see `fsyncs`): those files take the asynchronous path, which does not hold up the event loop.
   */
  receiveWhole(relative: string, vpath: string, data: Uint8Array, identity: PartialFile, expectedHash: string | undefined): string | undefined {
    const finalPath = this.#resolve(relative);
    const hasher = new BlockHasher(this.xx);
    hasher.update(data, true);
    const { hash } = hasher.finish();
    if (expectedHash !== undefined && hash !== expectedHash) return undefined;
    const partialPath = this.#heldPartialPath();
    writeWhole(partialPath, [data], data.length, false, relative);
    moveIntoPlace(partialPath, finalPath, relative);
    // (Recording it delivered also forgets any resumable partial of an older, bigger version.)
    this.manifest.delivered(relative, { vpath, size: identity.size, mtime: identity.mtime, hash });
    return finalPath;
  }

  /** Every file and its directory is fsynced before it counts as delivered. */
  get fsyncs(): boolean {
    return this.options.fsync === true;
  }

  /**
   * Apply a delete: only to a regular file that we delivered ourselves and that nobody has changed since
   * (same size, and the same content when we know its hash: a file is read once more to be deleted, which
   * is rare, rather than stat'ed on every delivery). "kept": changed in the inbox since we delivered it,
   * so no longer ours: left alone and forgotten. "absent": nothing of ours there.
   */
  async remove(relative: string): Promise<"deleted" | "absent" | "kept"> {
    // A partial file of it (a newer version, or one never completed) will never be resumed now.
    if (this.manifest.partials.has(relative)) {
      this.manifest.partialDropped(relative);
      await unlink(path.join(this.partialDir, partialName(relative))).catch(() => undefined);
    }
    const held = this.manifest.files.get(relative);
    if (!held) return "absent";
    const finalPath = this.#resolve(relative, { create: false });
    const existing = await lstat(finalPath).catch(() => undefined);
    this.manifest.removed(relative);
    if (!existing) return "absent";
    if (!existing.isFile()) throw new InboxError(`${relative}: not a regular file, not deleted`, relative);
    const same = existing.size === held.size && (held.hash === undefined || (await fingerprintFile(finalPath).catch(() => undefined))?.hash === held.hash);
    if (!same) return "kept";
    await unlink(finalPath);
    // A server directory deleted file by file leaves no empty directories behind here (where a file of
    // that name may come next).
    pruneEmptyParents(finalPath, this.root);
    return "deleted";
  }

  /** Does the file we delivered still look as we left it (size)? Only then is it claimed in a cache. */
  stillHeld(relative: string, size: number): boolean {
    const reason = unsafeRelativeReason(relative);
    if (reason) return false;
    // Synchronous: one lstat per held file when a subscription is (re)sent; 10,000 of them take
    // milliseconds this way, most of a second as thread-pool round trips.
    const stats = lstatSync(path.join(this.root, relative), { throwIfNoEntry: false });
    return stats !== undefined && stats.isFile() && stats.size === size;
  }

  /** Bytes held in the partial file of `relative`, if any. */
  async partialLength(relative: string): Promise<number> {
    const stats = await lstat(path.join(this.partialDir, partialName(relative))).catch(() => undefined);
    return stats?.isFile() ? stats.size : 0;
  }

  /** The absolute path for `relative`, after checking the name and every directory on the way. */
  #resolve(relative: string, opts: { create?: boolean } = {}): string {
    const reason = unsafeRelativeReason(relative);
    if (reason) throw new InboxError(`refused "${printable(relative)}": ${reason}`, relative);
    const segments = relative.split("/");
    if (segments[0] === STATE_DIR) throw new InboxError(`refused "${printable(relative)}": reserved name`, relative);
    let dir = this.root;
    for (const segment of segments.slice(0, -1)) {
      dir = path.join(dir, segment);
      // Checked for every file, never cached: a directory checked a moment ago may be a symlink now.
      // Synchronous: an lstat is microseconds, a thread-pool round trip is not (one per segment per file).
      const stats = lstatSync(dir, { throwIfNoEntry: false });
      if (!stats) {
        if (opts.create === false) return path.join(this.root, relative);
        try {
          mkdirSync(dir);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOENT" && !lstatSync(this.root, { throwIfNoEntry: false })) {
            // The whole inbox was removed while we ran: made again, with its state directory.
            restoreStateDirs(this.partialDir);
            mkdirSync(dir);
          } else if (code !== "EEXIST") throw error;
        }
        const made = lstatSync(dir);
        if (!made.isDirectory()) throw new InboxError(`refused "${printable(relative)}": ${segment} is not a directory`, relative);
      } else if (stats.isSymbolicLink()) {
        throw new InboxError(`refused "${printable(relative)}": leads through a symlink`, relative);
      } else if (!stats.isDirectory()) {
        throw new InboxError(`refused "${printable(relative)}": ${segment} is a file, not a directory`, relative);
      }
    }
    return path.join(dir, segments[segments.length - 1]!);
  }

  /** A partial file name for a small file that is never resumed: a counter, no hashing of the name. */
  #heldPartialPath(): string {
    return path.join(this.partialDir, `held-${process.pid}-${++heldFiles}${PARTIAL_SUFFIX}`);
  }

  /** Remove partial files the manifest does not know (left by a crash); they cannot be resumed. */
  async #sweepPartials(): Promise<void> {
    const keep = new Set([...this.manifest.partials.keys()].map(partialName));
    for (const name of await readdir(this.partialDir).catch(() => [] as string[])) {
      if (!keep.has(name)) await unlink(path.join(this.partialDir, name)).catch(() => undefined);
    }
  }
}

/**
 * A small file held in memory, written to its partial file: one open, one gathered write, close (fsync
 * if asked). O_NOFOLLOW: never through a planted link. On failure the partial file is removed.
 */
function writeWhole(partialPath: string, pieces: readonly Uint8Array[], length: number, fsync: boolean, relative: string): void {
  try {
    let fd: number;
    try {
      fd = openSync(partialPath, NEW_PARTIAL, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      restoreStateDirs(path.dirname(partialPath));
      fd = openSync(partialPath, NEW_PARTIAL, 0o644);
    }
    try {
      let written = 0;
      while (written < length) {
        written += writevSync(fd, written === 0 ? pieces : [Buffer.concat(pieces).subarray(written)]);
      }
      if (fsync) fsyncSync(fd);
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    removeQuietly(partialPath);
    throw deliveryError(error, relative);
  }
}

/** Opening a new partial file: empty (O_TRUNC), never through a symlink planted at its name (O_NOFOLLOW). */
const NEW_PARTIAL = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

/** A new partial file; the state directories are made again if they went. */
async function openPartial(partialPath: string): Promise<FileHandle> {
  try {
    return await open(partialPath, NEW_PARTIAL, 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    restoreStateDirs(path.dirname(partialPath));
    return open(partialPath, NEW_PARTIAL, 0o644);
  }
}

/**
 * Copy the delivered file at `finalPath` to a new partial file, the base of a delta; its size, or
 * undefined if there is no regular file there. Someone who may write in the inbox can put a symlink at
 * either name at any moment: the source is opened without following one (and copied through our
 * descriptor, so what is copied is what was checked), and the partial is made anew (O_EXCL: a symlink
 * there is refused, never written through). A reflink where the filesystem has them, else an in-kernel copy.
 */
async function copyHeldVersion(finalPath: string, partialPath: string): Promise<{ handle: FileHandle; size: number } | undefined> {
  const source = await open(finalPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
  if (!source) return undefined;
  try {
    const stats = await source.stat();
    if (!stats.isFile()) return undefined;
    await unlink(partialPath).catch(() => undefined);
    await copyFile(`/proc/self/fd/${source.fd}`, partialPath, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    return { handle: await open(partialPath, constants.O_RDWR | constants.O_NOFOLLOW), size: stats.size };
  } finally {
    await source.close();
  }
}

/**
 * The inbox's state directory (or the whole inbox) was removed while we ran: make it again, and check
 * it as open() does (a symlink put in its place is refused). The manifest notices on its own.
 */
function restoreStateDirs(partialDir: string): void {
  mkdirSync(partialDir, { recursive: true });
  for (const dir of [path.dirname(partialDir), partialDir]) {
    if (!lstatSync(dir).isDirectory()) throw new InboxError(`${dir} is not a directory (a symlink?)`);
  }
}

/** The atomic step of every delivery: the complete partial file takes the final name (or is removed). */
function moveIntoPlace(partialPath: string, finalPath: string, relative: string): void {
  try {
    try {
      renameSync(partialPath, finalPath);
    } catch (error) {
      // An empty directory by that name (left when the server's directory of that name went, file by
      // file, before this file took its name) gives way; one with anything in it does not (rmdir fails).
      if ((error as NodeJS.ErrnoException).code !== "EISDIR") throw error;
      rmdirSync(finalPath);
      renameSync(partialPath, finalPath);
    }
  } catch (error) {
    removeQuietly(partialPath);
    throw deliveryError(error, relative);
  }
}

/** Remove the directories above `file` that are now empty, up to (not including) `root`. */
function pruneEmptyParents(file: string, root: string): void {
  for (let dir = path.dirname(file); dir.startsWith(root + path.sep); dir = path.dirname(dir)) {
    try {
      rmdirSync(dir);
    } catch {
      return; // not empty (or not ours to remove): nor is anything above it
    }
  }
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Never created, or already gone.
  }
}

/** What a user is told when a file cannot be put in place. */
function deliveryError(error: unknown, relative: string): InboxError {
  if (error instanceof InboxError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  const directory = code === "EISDIR" || code === "ENOTEMPTY" || code === "EEXIST";
  return new InboxError(directory ? `${relative}: a directory has that name` : `${relative}: ${code ?? String(error)}`, relative, code);
}

/** Small files received by this process (their partial names). */
let heldFiles = 0;

/** A partial file's name: fixed length, whatever the file's name (no NAME_MAX trouble, no collisions). */
export function partialName(relative: string): string {
  // crypto.hash: one call, a quarter of createHash's cost (this runs once per file received).
  return hash("sha1", relative, "hex") + PARTIAL_SUFFIX;
}


function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\x00-\x1f\x7f]/g, "?").slice(0, 200);
}
