// Where received files land. Every file is written into a partial file in the inbox's private state
// directory (<inbox>/.fmq/partial/) and renamed into place only when complete and verified, so no reader
// ever sees a partial file at the final path, and a shorter new version fully replaces the old one.
// Nothing is written, deleted or followed outside the inbox: every name is checked (paths.ts), and every
// directory on the way is opened without following a symlink, for every file, and held open until the file
// is in place; names are resolved through those descriptors (held-directory.ts), never through paths
// someone who may write in the inbox could change in between.

import { hash } from "node:crypto";
// (Every call on a path that may hold a name from the wire goes through fs-names: a name that is not UTF-8.)
import { accessSync, closeSync, constants, copyFile, existsSync, lstat, lstatSync, mkdir, open, openSync, readdirSync, renameSync, rmdirSync, stat, unlink, unlinkSync, writevSync, type FileHandle } from "./fs-names.js";
// (Our own directories only.)
import { readdir, realpath } from "node:fs/promises";
import path from "node:path";
import { PARTIAL_SUFFIX, UNPRINTABLE, unsafeRelativeReason } from "../paths.js";
import { hasStrayBytes, nameBytes, showStrayBytes } from "../raw-names.js";
import { BLOCK_SIZE, BlockHasher, blocksWithTreeHash, fingerprintFile, fingerprintFileSync, hashPrefix, xxh, type Fingerprint } from "../digest/blocks.js";
import { RESUME_MIN_SIZE } from "../protocol/extensions.js";
import { setNewest } from "../newest.js";
import { openRegular } from "../digest/open-regular.js";
import type { XXHashAPI } from "xxhash-wasm";
import { Manifest, STATE_DIR, type Delivered, type PartialFile } from "./manifest.js";
import { HeldDirectory, type Place } from "./held-directory.js";
import { placer } from "./placer-thread.js";
import { lockInbox, lockKey, writeLockKey } from "./inbox-lock.js";

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

/** A file in place whose directory could not be synced to disk: it is there, but a crash may still lose it. */
export class NotDurableError extends InboxError {
  override name = "NotDurableError";
}

/** The server sent a resumed or delta transfer we cannot apply: the file must be fetched again whole. */
export class RefetchError extends InboxError {
  override name = "RefetchError";
}

/**
 * A resume whose partial holds other bytes before the offset than the server's file (X-FMQ-Prefix): the
 * partial is kept (cut at the offset, and what came before the prefix was said), and the file asked for
 * again with its whole blocks' hashes listed (pblocks), for the server to resume after the blocks that
 * still match, or to send those that differ and the rest on top of it.
 */
export class PrefixMismatchError extends RefetchError {
  override name = "PrefixMismatchError";
}

/**
 * A partial of an earlier version, taken up by a resume of a newer one, whose bytes turn out not to be the
 * newer one's (the file was rewritten, not grown): asked for again as any refused resume is, but this is
 * how such a try ends, not a fault to report.
 */
export class OutdatedPartialError extends PrefixMismatchError {
  override name = "OutdatedPartialError";
}

/** A resume for which no partial file of that file, as long as the offset, is held. */
export class NoPartialError extends RefetchError {
  override name = "NoPartialError";
}

/** A transfer of a version the inbox holds already (a resume queued before it was delivered): ignored, not an error to report. */
export class AlreadyHeldError extends InboxError {
  override name = "AlreadyHeldError";
}

/** A partial file left to resume, as it was left: its inode, size and times, and its whole blocks' hashes. */
export interface SuspendedPartial {
  readonly ino: number;
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly blocks: Buffer;
  /**
   * The block hashes listed to the server (pblocks: the first of `blocks`, at most MAX_LISTED_BLOCKS;
   * always a prefix of them, see listBlocks and suspend), which may resume it after those that match, or
   * send changed blocks on top of them.
   */
  readonly listed?: Buffer;
}

/**
 * Most block hashes listed of a partial (pblocks): 16 hex digits each, they must fit in one cache value
 * (a longstr, 64 KiB). A partial of more is listed by its first 4,000 MiB.
 */
const MAX_LISTED_BLOCKS = 4000;

/**
 * The mtime the manifest records for a partial whose bytes are of no version the server has (a resume of
 * it refused by X-FMQ-Prefix): no file has it, so no resume of it is offered by its identity; it is listed
 * by its blocks' hashes instead (pblocks: this process knows them, a later one reads them as the inbox
 * opens). Recorded, it is removed as any partial is (a delete, a small version, a new transfer).
 */
export const UNVERSIONED_MTIME = Number.MIN_SAFE_INTEGER;

/** Partial files whose block hashes an inbox remembers (see Inbox.suspend), at most. */
const MAX_SUSPENDED = 64;

/** Files at least this big are worth resuming (their partial is recorded in the manifest). */
export { RESUME_MIN_SIZE };

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
  /** Where this transfer began. */
  readonly #resumedAt: number;
  /** A small file's bytes, held until it is complete (no partial file on disk until then). */
  #held: Uint8Array[] | undefined;
  #heldBytes = 0;

  /**
   * What it was begun on (see Inbox.create): nothing; a resumed partial of this very version, of an
   * earlier version of the file (its bytes may not match), or one we listed by its blocks (and by nothing
   * else); for a delta, a copy of the version held, or a partial we listed, written in place.
   */
  origin: "nothing" | "same version" | "earlier version" | "listed blocks" | "held version" | "listed partial" = "nothing";

  /** Resumed from a partial of another version than this one: its bytes may not match. */
  get ofEarlierVersion(): boolean {
    return this.origin === "earlier version" || this.origin === "listed blocks";
  }

  /**
   * A delta begun with a copy of the whole version held: cut short, it counts among the deltas left
   * unfinished (one onto a partial we listed copied nothing).
   */
  get copiedHeldVersion(): boolean {
    return this.origin === "held version";
  }

  /** Resumed from an earlier version's partial, and the server never said the prefix to check it by. */
  get earlierPrefixUnchecked(): boolean {
    return this.ofEarlierVersion && this.#heldPrefix !== undefined;
  }

  /** Resumed: the tree hash of the bytes held when it resumed (at a block), until the server's is checked. */
  #heldPrefix: string | undefined;

  /**
   * The server said the resumed prefix's tree hash (X-FMQ-Prefix): throws if the bytes held are others
   * (the file rewritten in place with its size and mtime put back, so its tag too; or the partial
   * damaged). Checked once; the refused partial is then kept, and listed by its blocks (PrefixMismatchError).
   */
  checkPrefix(prefix: string): void {
    const held = this.#heldPrefix;
    this.#heldPrefix = undefined;
    if (held !== undefined && held !== prefix && this.ofEarlierVersion) {
      throw new OutdatedPartialError(`${this.relative}: the part held, of an earlier version, no longer matches; asking for it again from the blocks that match`, this.relative);
    }
    if (held !== undefined && held !== prefix) {
      throw new PrefixMismatchError(`${this.relative}: cannot resume at ${this.#resumedAt}: the partial file holds other bytes than the server's file (changed in place, or damaged); asking for it again from the blocks that match`, this.relative);
    }
  }

  constructor(
    readonly relative: string,
    readonly vpath: string,
    /** Where it goes (its directory held open until it is in place, or given up). */
    readonly target: Target,
    private readonly partial: PartialName,
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
    this.#resumedAt = start;
    // (The hasher has taken in the prefix held: see Inbox.create.)
    if (start > 0 && mode === "sequential") this.#heldPrefix = hasher?.treeHashSoFar();
    if (!handle) this.#held = [];
    this.#tail = Math.min(baseSize, identity?.size ?? baseSize);
  }

  /** A delta: bytes from 0 up to here are held (the base's, then the new end as it arrives). */
  #tail: number;
  /** A delta: the end of the furthest block received (they come in order: how far through the file it is). */
  #reached = 0;

  /** How far through the file this transfer is: its length so far, or (delta) the furthest block's end. */
  get reached(): number {
    return this.mode === "delta" ? this.#reached : this.#next;
  }

  /** Where it goes, for people. */
  get finalPath(): string {
    return this.target.shown;
  }

  /** Where it is assembled, for the kernel. */
  get partialPath(): string {
    return this.partial.path;
  }

  /**
   * How many bytes from the start are the version being received, were it to stop now: its length so far;
   * for a delta, up to the furthest block received (the version held's bytes where unchanged, the blocks
   * sent where not: they come in order, and X-FMQ-Prefix checks that they did when it is resumed).
   */
  get prefixHeld(): number {
    return this.mode === "delta" ? this.#reached : this.#next;
  }

  /** The file's size so far (sequential mode). */
  get length(): number {
    return this.#next;
  }

  async write(chunk: Uint8Array, offset: number): Promise<void> {
    // (Asked for again, both: dropped with a plain error, the file waited for the next session; a review.)
    if (this.mode === "sequential" && offset !== this.#next) {
      throw new RefetchError(`${this.relative}: chunk at offset ${offset}, expected ${this.#next}; fetching it again`, this.relative);
    }
    // (The server said how big the file is: a chunk past that end is a server at fault, in any mode.)
    if (this.identity && offset + chunk.length > this.identity.size) {
      throw new RefetchError(`${this.relative}: chunk beyond the end of the file (${this.identity.size} bytes, the server said); fetching it again`, this.relative);
    }
    if (this.mode === "delta") {
      // Past the base's end nothing is held: a gap there would be a hole of zeros in the delivered file
      // (and a hostile server's 1 byte at offset 2^40 a sparse file we would then hash for hours).
      if (offset > this.#tail) throw new RefetchError(`${this.relative}: delta leaves a gap at ${this.#tail}; fetching it whole`, this.relative);
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
    // (Once written: a delta kept when a write fails is cut where its blocks reached, a review.)
    if (this.mode === "delta") {
      this.#tail = Math.max(this.#tail, offset + chunk.length);
      this.#reached = Math.max(this.#reached, offset + chunk.length);
    }
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
      await this.#finish();
    } finally {
      this.target.release();
    }
  }

  async #finish(): Promise<void> {
    // A big file received whole and verified that cannot be put in place now (a directory of its name in
    // the way, a full disk) stays as the partial it is, recorded as resumable since its first byte: the
    // next try takes it up at its end, and costs a read of it, not the whole download again (a review:
    // a 10 GB file fetched again and again while a directory stood in its way).
    const resumable = this.#resumable;
    try {
      // (With fsync, a small file held in memory is written through the thread pool like a big one:
      // its fsync there, not on the event loop, one file after another. A review.)
      if (this.#held && this.fsync) await this.#spill();
      if (this.#held) {
        writeWhole(this.partial, this.#held, this.#heldBytes, this.relative);
        this.#held = undefined;
      } else if (this.handle) {
        if (this.mode === "delta" && this.identity) await this.handle.truncate(this.identity.size);
        if (this.fsync) await this.handle.sync();
        await this.handle.close();
        this.handle = undefined;
      }
    } catch (error) {
      await this.handle?.close().catch(() => undefined);
      this.handle = undefined;
      this.kept = resumable && diskFull((error as NodeJS.ErrnoException).code);
      if (!this.kept) await unlink(this.partialPath).catch(() => undefined);
      throw deliveryError(error, this.relative);
    }
    try {
      moveIntoPlace(this.partialPath, this.target, this.relative, resumable);
    } catch (error) {
      // (Kept only if it is still there: the inbox's .fmq, or the whole inbox, removed under us took it
      // along, and a review was told "kept until it can be put in place" of a file that was gone.)
      this.kept = resumable && existsSync(this.partialPath);
      throw error;
    }
    this.#placed = true;
    if (this.fsync) {
      try {
        await syncDirectory(this.target.directory);
        for (const parent of this.target.madeIn) await syncDirectory(parent);
      } catch (error) {
        // (The file is there: the user must hear that, and that a crash now may still lose it.)
        const code = (error as NodeJS.ErrnoException).code;
        throw new NotDurableError(`${this.relative}: in place, but its directory could not be synced to disk (${code ?? String(error)}): a crash may still lose it`, this.relative, code);
      }
    }
  }

  /** finish failed and left the partial file for a later try. */
  kept = false;

  /** Its partial file is one a later transfer of the same version may take up (see Inbox.create). */
  get #resumable(): boolean {
    return this.#held === undefined && this.mode === "sequential" && this.identity !== undefined && this.identity.size >= RESUME_MIN_SIZE;
  }

  /** In place under its final name (finish got as far as the rename, even if what follows failed). */
  get placed(): boolean {
    return this.#placed;
  }
  #placed = false;

  /**
   * Stop writing but keep the partial file (it can be resumed). Returns what a resume by this process may
   * take up without reading the file again (see Inbox.suspend), if it is a file that can be resumed.
   */
  async suspend(): Promise<SuspendedPartial | undefined> {
    this.target.release();
    const handle = this.handle;
    this.handle = undefined;
    // A delta: cut where its blocks reached (beyond lie the version held's bytes); throws if it cannot be.
    if (this.mode === "delta") {
      try {
        await handle?.truncate(this.#reached);
      } catch (error) {
        await handle?.close().catch(() => undefined);
        throw error;
      }
    }
    const stats = this.#resumable && this.hasher ? await handle?.stat().catch(() => undefined) : undefined;
    await handle?.close().catch(() => undefined);
    return stats && this.hasher ? { ino: stats.ino, size: stats.size, mtimeMs: stats.mtimeMs, ctimeMs: stats.ctimeMs, blocks: this.hasher.wholeBlocks() } : undefined;
  }

  /** Incomplete and not coming back: close and remove the partial file, and the directories made for it if empty. */
  async abandon(): Promise<void> {
    this.target.release();
    this.#held = undefined;
    await this.handle?.close().catch(() => undefined);
    this.handle = undefined;
    await unlink(this.partialPath).catch(() => undefined);
    this.target.abandon();
  }

  /** A held file grew past SMALL_FILE: move it to a partial file on disk. */
  async #spill(): Promise<FileHandle> {
    const handle = await openPartial(this.partial);
    this.handle = handle;
    let at = 0;
    for (const piece of this.#held ?? []) {
      // (A short write, as on a nearly full disk, must not leave a hole that reads as zeros.)
      for (let done = 0; done < piece.length; ) done += (await handle.write(piece, done, piece.length - done, at + done)).bytesWritten;
      at += piece.length;
    }
    this.#held = undefined;
    return handle;
  }
}

export interface InboxOptions {
  /** fsync each file and its directory before reporting it delivered. */
  readonly fsync?: boolean;
  /** Told of trouble with the inbox's own state (its manifest), which does not stop it. */
  readonly problem?: (message: string) => void;
  /**
   * Called before the manifest writes what it records to disk: whoever says that files were delivered
   * says it now of those recorded (the CLI writes out its batched lines), so that a kill never leaves
   * a delivery recorded and unsaid. (One recorded and unsaid would be held, and never said, at the next
   * start; one said and not recorded is said again then: see takeRecovered.)
   */
  readonly beforeRecording?: () => void;
}

/** A file found in place at start, delivered by a run that was killed before it recorded so. */
export interface Recovered {
  readonly relative: string;
  readonly vpath: string;
  /** Its path, for people. */
  readonly file: string;
  readonly size: number;
  readonly mtime?: number;
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

/** Where a received file goes: its name in its directory, held open until the file is in place. */
export interface Target {
  /** For the kernel: the name, resolved through the held directory. */
  readonly path: string;
  /** For people: its real path. */
  readonly shown: string;
  /** Its directory, for the kernel (to fsync it). */
  readonly directory: string;
  /** The directories in which one was made on its way (real paths): with fsync, synced with its own. */
  readonly madeIn: readonly string[];
  /** Done with it: its directory is closed (unless it is the inbox itself). Idempotent. */
  release(): void;
  /** Keep its directory's descriptor open, released or not, until given back (HeldDirectory.lend). */
  lend(): HeldDirectory;
  /**
   * Released for a file that is not coming (given up, deleted, moved away while it came): the
   * directories made on its way go too, if nothing else is in them.
   */
  abandon(): void;
  /**
   * A directory at its name holding only empty directories (made on the way to files that never came) is
   * removed; false, and nothing removed, if anything else is there.
   */
  clearEmptyDirectories(): boolean;
}

/**
 * The target of a file put in place at once (receiveWhole), in the directory held for this turn of the
 * event loop (Inbox.#dirThisTurn): the turn releases that directory, not the target, and nothing was
 * made on its way that an abandon would remove (its directories are made for the turn, not for it).
 * A class, not the object of getters and closures the other targets are: built per file, that object
 * cost a fresh subscriber about 0.1 CPU-s over 10,000 files of 4 KiB. Measured, fresh subscribers of
 * one publisher against the build before, alternating (2026-12-06): 12 pairs, 1.09 s against 1.15
 * (medians; 4 % faster, paired), faster in 10 of 12, 1.35 CPU-s against 1.47; an earlier 8 pairs, 1.14
 * against 1.21, faster in 5.
 */
class TurnTarget implements Target {
  readonly madeIn: readonly string[] = NOTHING_MADE;

  constructor(
    private readonly dir: HeldDirectory,
    private readonly name: string,
  ) {}

  // (Paths built when used, from the directory object, as the other targets' are: see Inbox.#resolve.)
  get path(): string {
    return this.dir.join(this.name);
  }

  get shown(): string {
    return path.join(this.dir.realPath, this.name);
  }

  get directory(): string {
    return this.dir.path;
  }

  release(): void {}

  lend(): HeldDirectory {
    return this.dir.lend();
  }

  abandon(): void {}

  clearEmptyDirectories(): boolean {
    return clearEmptyDirectories(this.dir, this.name);
  }
}

const NOTHING_MADE: readonly string[] = Object.freeze([]);

/**
 * The inbox, its state directory and the partial files' directory, held open. Removed while we run (an
 * rm -rf of the inbox or of its .fmq), they are made again at their real paths when next needed.
 */
class InboxDirectories implements Place {
  root: HeldDirectory;
  state: HeldDirectory;
  partial: HeldDirectory;
  /** Called when something was made again (what was opened from the old directories is stale). */
  onRestore: () => void = () => undefined;
  /** The inbox lock's key, written again into a state directory made again (inbox-lock.ts). */
  lockKey: string | undefined;

  constructor(readonly realRoot: string) {
    this.root = HeldDirectory.make(realRoot);
    try {
      this.state = this.#makeState();
      try {
        this.partial = this.#makePartial();
      } catch (error) {
        this.state.close();
        throw error;
      }
    } catch (error) {
      this.root.close();
      throw error;
    }
  }

  /** Where the manifest's files are. */
  join(name: string): string {
    return this.state.join(name);
  }

  sync(): void {
    this.state.sync();
  }

  /** Make again whatever was removed, and what was inside it (and hold the new directories). */
  restore(): void {
    let remade = false;
    if (this.root.removed) {
      this.root.close();
      this.root = HeldDirectory.make(this.realRoot);
      remade = true;
    }
    if (remade || this.state.removed) {
      this.state.close();
      this.state = this.#makeState();
      remade = true;
    }
    if (remade || this.partial.removed) {
      this.partial.close();
      this.partial = this.#makePartial();
      remade = true;
    }
    if (remade) this.onRestore();
  }

  /** `.fmq`, ours alone, with the lock key in it (one made again gets it back, or the next subscriber would make another key, take another lock name, and share this inbox with us). */
  #makeState(): HeldDirectory {
    const state = HeldDirectory.make(STATE_DIR, this.root);
    try {
      state.keepPrivate();
      if (this.lockKey !== undefined) writeLockKey(state.join(LOCK_KEY), this.lockKey);
    } catch (error) {
      state.close();
      throw error;
    }
    return state;
  }

  /** `.fmq/partial`, ours alone. */
  #makePartial(): HeldDirectory {
    const partial = HeldDirectory.make("partial", this.state);
    try {
      partial.keepPrivate();
    } catch (error) {
      partial.close();
      throw error;
    }
    return partial;
  }

  close(): void {
    for (const dir of [this.partial, this.state, this.root]) dir.close();
  }
}

export class Inbox {
  private constructor(
    readonly root: string,
    readonly manifest: Manifest,
    private readonly dirs: InboxDirectories,
    private readonly options: InboxOptions,
    private readonly xx: XXHashAPI,
    private readonly lock: { release(): void },
  ) {}

  /** Done with it: the manifest written out, the inbox free for another subscriber. */
  close(): void {
    this.#endTurn();
    this.manifest.close();
    this.dirs.close();
    this.lock.release();
  }

  /**
   * Keep `file`'s partial file to resume, and what a resume by this process may take up of it (its block
   * hashes, while the file stays as it was left): a resume then need not read the partial again.
   */
  async suspend(file: IncomingFile): Promise<void> {
    let state = await file.suspend();
    if (!state) return;
    // (Listed, and still beginning with the blocks listed: still listed. A resume of it refused again
    // before the server read our listing, the one the server will act on.)
    const listed = this.#suspended.get(file.relative)?.listed;
    if (listed && startsWith(state.blocks, listed)) state = { ...state, listed };
    // (Bounded: the oldest is forgotten first; forgotten, its resume reads the file as before.)
    setNewest(this.#suspended, file.relative, state, MAX_SUSPENDED);
  }
  /** Partial files suspended by this process, and their block hashes (8 bytes per MiB), by name. */
  readonly #suspended = new Map<string, SuspendedPartial>();

  /**
   * How many of the blocks we listed of `relative`'s partial file a delta's X-FMQ-Base `base` is the tree
   * hash of, if it is; 0 if none. All of them, as many as the file has (the server keeps no more of a
   * listing than that), or fewer: a listing made before the server published the file is kept only as
   * long as the file was when it saw it, and the file may have grown since (a review). (As they were
   * listed: whether the file is still as it was is looked at when the delta opens.)
   */
  listedBase(relative: string, base: string): number {
    const listed = this.#suspended.get(relative)?.listed;
    return listed ? blocksWithTreeHash(this.xx, listed, base) : 0;
  }

  /**
   * `relative`'s partial file, opened to take a delta in place, if we listed its blocks, `base` is the tree
   * hash of them (see listedBase), and it is as it was left: cut to those blocks (what lies beyond is not
   * known by them).
   */
  async #listedPartial(relative: string, partial: PartialName, base: string): Promise<{ handle: FileHandle; size: number } | undefined> {
    const remembered = this.#suspended.get(relative);
    const count = this.listedBase(relative, base);
    if (count === 0 || !remembered) return undefined;
    const handle = await open(partial.path, constants.O_RDWR | constants.O_NOFOLLOW).catch(() => undefined);
    if (!handle) return undefined;
    try {
      const stats = await handle.stat();
      if (!stats.isFile() || !unchanged(remembered, stats)) throw new Error("changed");
      const size = count * BLOCK_SIZE;
      if (stats.size < size) throw new Error("short");
      await handle.truncate(size);
      return { handle, size };
    } catch (error) {
      await handle.close();
      if (diskFull((error as NodeJS.ErrnoException).code)) throw error;
      return undefined;
    }
  }

  /**
   * The block hashes of `relative`'s partial file, to list (pblocks), if this process suspended it (or
   * found it of no version as the inbox opened, see #rememberUnversioned) and it is as it was left; a
   * resume of it after any of them is then taken (see #create).
   */
  async listBlocks(relative: string): Promise<Buffer | undefined> {
    const remembered = this.#suspended.get(relative);
    if (!remembered || remembered.blocks.length === 0) return undefined;
    const stats = await lstat(this.dirs.partial.join(partialName(relative))).catch(() => undefined);
    if (!stats?.isFile() || !unchanged(remembered, stats) || this.#suspended.get(relative) !== remembered) return undefined;
    const listed = remembered.blocks.subarray(0, MAX_LISTED_BLOCKS * 8);
    this.#suspended.set(relative, { ...remembered, listed });
    return listed;
  }

  /**
   * Partial files of no version (a resume of them refused for its prefix in an earlier run, see
   * UNVERSIONED_MTIME): read and hashed by their whole blocks (up to as many as can be listed), and
   * remembered as a suspension by this process is, so that a subscription lists them (pblocks, see
   * listBlocks) and a resume after any of those blocks, or changed blocks on top of them, is taken up.
   * Else nothing took such a partial up after a restart, and the file came whole again. Done as the
   * inbox opens, before any subscription goes (a moment per GiB of them): hashed while a subscription was
   * being sent, a session's heartbeats waited, and a server could drop it (a review). At most
   * MAX_SUSPENDED of them; any others are replaced by their file sent whole, as before.
   */
  async #rememberUnversioned(): Promise<void> {
    let count = 0;
    for (const [relative, partial] of this.manifest.partials) {
      if (partial.mtime !== UNVERSIONED_MTIME) continue;
      if (count++ >= MAX_SUSPENDED) break;
      const state = await this.#hashBlocksOf(relative);
      if (state) setNewest(this.#suspended, relative, state, MAX_SUSPENDED);
    }
  }

  /** `relative`'s partial file, its whole blocks hashed (as many as can be listed), if it is a regular file not changed while read. */
  async #hashBlocksOf(relative: string): Promise<SuspendedPartial | undefined> {
    const partialPath = this.dirs.partial.join(partialName(relative));
    const found = await lstat(partialPath).catch(() => undefined);
    if (!found?.isFile() || found.size < BLOCK_SIZE) return undefined;
    // (O_NONBLOCK: a FIFO put there since the look above does not hold the open up.)
    const handle = await open(partialPath, constants.O_RDONLY | constants.O_NOFOLLOW | constants.O_NONBLOCK).catch(() => undefined);
    if (!handle) return undefined;
    try {
      const before = await handle.stat();
      if (!before.isFile()) return undefined;
      const hasher = new BlockHasher(this.xx);
      await hashPrefix(handle, hasher, Math.min(Math.floor(before.size / BLOCK_SIZE), MAX_LISTED_BLOCKS) * BLOCK_SIZE);
      const state: SuspendedPartial = { ino: before.ino, size: before.size, mtimeMs: before.mtimeMs, ctimeMs: before.ctimeMs, blocks: hasher.wholeBlocks() };
      return unchanged(state, await handle.stat()) ? state : undefined;
    } catch {
      return undefined;
    } finally {
      await handle.close().catch(() => undefined);
    }
  }

  /** The partial files' directory, for the kernel. */
  private get partialDir(): string {
    return this.dirs.partial.path;
  }

  /** Create the inbox if needed, fix its real path, load its manifest, clear stale partial files. */
  static async open(directory: string, options: InboxOptions = {}): Promise<Inbox> {
    await makeDirectories(directory).catch((error: NodeJS.ErrnoException) => {
      const why = (error.code && WHY_NO_INBOX[error.code]) ?? error.code ?? String(error);
      throw new InboxError(`cannot use ${directory} as an inbox: ${why}`);
    });
    const root = await realpath(directory);
    let dirs: InboxDirectories;
    try {
      dirs = new InboxDirectories(root);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "ENOTDIR" || code === "ELOOP") throw new InboxError(`${path.join(root, STATE_DIR)} (or its partial/) is not a directory (a symlink?)`);
      if (code === undefined) throw new InboxError(`cannot use ${directory} as an inbox: ${(error as Error).message}`);
      // (Its own words name the /proc/self/fd/N path it was made through: black-box testing.)
      throw new InboxError(`cannot use ${directory} as an inbox: cannot make ${path.join(root, STATE_DIR)}: ${WHY_NO_INBOX[code] ?? code}`);
    }
    let lock: { release(): void };
    try {
      dirs.lockKey = lockKey(dirs.join(LOCK_KEY), path.join(root, STATE_DIR, LOCK_KEY));
      lock = await lockInbox(root, dirs.lockKey);
    } catch (error) {
      dirs.close();
      throw new InboxError((error as Error).message);
    }
    let manifest: Manifest | undefined;
    try {
      manifest = await Manifest.load(dirs, options.problem, options.beforeRecording);
      // With --fsync, what the manifest says is as durable as the files it speaks of.
      manifest.durable = options.fsync === true;
      // (And the entries made to get here: the state directory in the inbox, the journal and partial/ in
      // it. Not synced, a power loss could take the journal, and every record in it, with them; a review.)
      // (Through the thread pool; a failure said, not fatal: as a file's directory that cannot be synced.)
      if (options.fsync) {
        for (const dir of [dirs.root, dirs.state]) {
          await syncDirectory(dir.path).catch((error: NodeJS.ErrnoException) => options.problem?.(`cannot sync ${dir.realPath} to disk (${error.code ?? String(error)}): the inbox's records may not survive a power loss`));
        }
      }
      const inbox = new Inbox(root, manifest, dirs, options, await xxh(), lock);
      dirs.onRestore = () => inbox.#endTurn();
      // (Placements first: one found made drops the record of its name's partial file, of an older version,
      // which the sweep then removes. The other way round, that file stayed until the next start.)
      await inbox.#settlePlacements();
      await inbox.#sweepPartials();
      await inbox.#rememberUnversioned();
      return inbox;
    } catch (error) {
      // (Its journal closed too: left open, each try leaked a descriptor and the manifest's maps.)
      try {
        manifest?.close();
      } catch {
        // (The failure that brought us here is the one to tell.)
      }
      dirs.close();
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
    this.#endTurn();
    // The whole inbox removed while we ran: made again (with its state directories) for this file.
    if (this.dirs.root.removed) this.dirs.restore();
    const target = this.#resolve(relative);
    try {
      const file = await this.#create(target, relative, vpath, offset, identity, base);
      // (Taken up, or its partial begun afresh: what was remembered of it is of no more use. Unless taken
      // up by its listed blocks: refused again, a resume the server offered before it read our listing,
      // what was listed still holds, see suspend. Every use of it looks at the file first.)
      if (file.origin !== "listed blocks") this.#suspended.delete(relative);
      return file;
    } catch (error) {
      target.release();
      // (Not a transfer refused before it touched the partial, a resume it cannot take say: what is
      // remembered of it, its listing above all, still holds for the next. Every use of it looks again
      // at the file first, so a partial changed meanwhile is never taken for what was remembered.)
      if (!(error instanceof RefetchError || error instanceof AlreadyHeldError)) this.#suspended.delete(relative);
      throw error;
    }
  }

  async #create(target: Target, relative: string, vpath: string, offset: number, identity: PartialFile | undefined, base: string | undefined): Promise<IncomingFile> {
    const xx = this.xx;
    const fsync = this.options.fsync === true;

    // A small (or not yet known) size starts in memory. A file the server says is small is never
    // resumed, so its partial (written only once complete) needs no stable name: a counter costs
    // nothing, where hashing the name is a measurable part of a small file's cost. (A file of unknown
    // size may grow big and be resumed: it keeps the stable name.)
    const small = !identity || identity.size <= SMALL_FILE;
    const knownSmall = small && identity !== undefined && base === undefined && offset === 0;
    const partial = knownSmall ? this.#heldPartial() : new PartialName(partialName(relative), this.dirs);

    if (base !== undefined) {
      // Delta: start from the version we delivered, if it is the one the server has in mind; or from a
      // partial whose blocks we listed, in place (see IncomingFile.copiedHeldVersion).
      const held = this.manifest.files.get(relative);
      if (held?.hash !== base) {
        const onto = await this.#listedPartial(relative, partial, base);
        if (!onto) throw new RefetchError(`${relative}: delta against a version we do not hold; fetching it whole`, relative);
        if (this.manifest.partials.has(relative)) this.manifest.partialDropped(relative);
        const file = new IncomingFile(relative, vpath, target, partial, onto.handle, "delta", undefined, 0, identity, fsync, onto.size);
        file.origin = "listed partial";
        return file;
      }
      // A partial of another version under this name is about to be overwritten by the copy: forgotten
      // first. (Listed over the copy's bytes, a kill then had the next start offer a resume of that
      // version from another's, refused by its checks: a resume wasted; a review.)
      if (this.manifest.partials.has(relative)) this.manifest.partialDropped(relative);
      // Anything in the way of the copy (short of a full disk, kept as such) means: fetch it whole.
      const copied = await copyHeldVersion(target.path, partial).catch((error: NodeJS.ErrnoException) => {
        if (error.code === "ENOSPC" || error.code === "EDQUOT") throw error;
        return undefined;
      });
      if (copied === undefined) throw new RefetchError(`${relative}: delta against a version we do not hold; fetching it whole`, relative);
      const file = new IncomingFile(relative, vpath, target, partial, copied.handle, "delta", undefined, 0, identity, fsync, copied.size);
      file.origin = "held version";
      return file;
    }

    if (offset > 0) {
      // Resume: only a partial of this very version, holding at least up to `offset`.
      const known = this.manifest.partials.get(relative);
      // (By its tag too, when both have one: a server that resumed in another file of that size and mtime.)
      const sameVersion =
        known && identity && known.vpath === vpath && known.size === identity.size && known.mtime === identity.mtime && (known.tag === undefined || identity.tag === undefined || known.tag === identity.tag);
      // Or of an earlier version of the same file on the server (its tag, the inode), which grew or was
      // written in place while it came: the bytes held are checked against the server's X-FMQ-Prefix as
      // any resume's are, and the whole file against its hash at the end.
      const earlierVersion = known && identity && known.vpath === vpath && known.tag !== undefined && known.tag === identity.tag;
      // (The path is taken afresh at each use: it names the state directory through its descriptor,
      // and that directory may have been made again, under another descriptor, while we awaited.)
      const existing = await lstat(partial.path).catch(() => undefined);
      // Or one whose blocks' hashes we listed (see PrefixMismatchError), left as it was: the server resumed
      // it after the blocks of its file they match, whatever version they were of; X-FMQ-Prefix checks that.
      const remembered = this.#suspended.get(relative);
      const byBlocks =
        existing !== undefined &&
        remembered?.listed !== undefined &&
        unchanged(remembered, existing) &&
        identity !== undefined &&
        offset % BLOCK_SIZE === 0 &&
        (offset / BLOCK_SIZE) * 8 <= remembered.listed.length;
      const same = sameVersion || earlierVersion || byBlocks;
      if (!same || !existing?.isFile() || existing.size < offset) {
        // This very version delivered already (a resync sent while it came listed its partial, and the
        // server queued a resume of it behind the transfer under way): nothing to do. Asked for again, it
        // came whole a second time (a review).
        const held = this.manifest.files.get(relative);
        if (identity && held?.vpath === vpath && held.size === identity.size && held.mtime === identity.mtime && this.stillHeld(relative, held.size)) {
          throw new AlreadyHeldError(`${relative}: this version is held already`, relative);
        }
        throw new NoPartialError(`${relative}: cannot resume at ${offset}: no matching partial file; fetching it whole`, relative);
      }
      const handle = await open(partial.path, constants.O_RDWR | constants.O_NOFOLLOW);
      try {
        // Suspended by this process and not touched since (the same inode, size and times): its block
        // hashes are known, and the prefix need not be read again. (A server resuming a big file at each
        // of its chunks had us read and hash the whole partial each time: a review. A publisher restarted
        // mid-file, the same.) Else it is read and hashed up to `offset`.
        const opened = await handle.stat();
        const blocks = offset % BLOCK_SIZE === 0 ? (offset / BLOCK_SIZE) * 8 : -1;
        const hashesKnown = remembered !== undefined && unchanged(remembered, opened) && blocks >= 0 && blocks <= remembered.blocks.length;
        await handle.truncate(offset);
        const hasher = hashesKnown ? BlockHasher.resumed(xx, remembered.blocks.subarray(0, blocks)) : new BlockHasher(xx);
        if (!hashesKnown) await hashPrefix(handle, hasher, offset);
        // A partial begun without a tag (an older server) takes the one it is resumed with: checked next
        // time. One of an earlier version is now one of this version.
        if (!known || (known.tag === undefined && identity.tag !== undefined) || !sameVersion) this.manifest.partialStarted(relative, identity);
        const file = new IncomingFile(relative, vpath, target, partial, handle, "sequential", hasher, offset, identity, fsync);
        file.origin = sameVersion ? "same version" : earlierVersion ? "earlier version" : "listed blocks";
        return file;
      } catch (error) {
        await handle.close();
        throw error;
      }
    }

    // A big file gets its partial file at once. O_NOFOLLOW refuses a symlink planted at the partial
    // name; O_TRUNC starts empty.
    const handle = small ? undefined : await openPartial(partial);
    try {
      if (identity && identity.size >= RESUME_MIN_SIZE) this.manifest.partialStarted(relative, identity);
      else if (this.manifest.partials.has(relative)) {
        // A resumable partial of an older, bigger version: forgotten, and its file removed (unless this
        // file reuses its name, and has just made it empty).
        this.manifest.partialDropped(relative);
        if (knownSmall) removeQuietly(this.dirs.partial.join(partialName(relative)));
      }
    } catch (error) {
      await handle?.close();
      throw error;
    }
    return new IncomingFile(relative, vpath, target, partial, handle, "sequential", new BlockHasher(xx), 0, identity, fsync);
  }

  /**
   * A whole small file in one message (capability "single"): checked, and put in place and recorded
   * without an IncomingFile or a promise. A flood of small files then costs its system calls and little
   * else, and those run in the placing thread (placer-thread.ts) beside the main thread's work on the
   * next files. Returns false, having done nothing, if its content does not match `expectedHash`; else
   * `placed` is called once, later (or at once, where there is no placing thread), with where the file is
   * now, or why it is not there (AlreadyHeldError, at once: this very version is held already, and
   * nothing was done). Throws if it cannot even be handed over. Not with fsync (see `fsyncs`): those
   * files take the asynchronous path.
   *
   * Until `placed` is called the file is on its way: another version of the same name must wait for it
   * (`isPlacing`), and so must anything that needs the inbox as it is, a delete or a listing (`placed`).
   */
  receiveWhole(relative: string, vpath: string, data: Uint8Array, identity: PartialFile, expectedHash: string | undefined, placed: (where: string | Error) => void): boolean {
    const hasher = new BlockHasher(this.xx);
    hasher.update(data, true);
    const { hash } = hasher.finish();
    if (expectedHash !== undefined && hash !== expectedHash) return false;
    // This very version is here already: a resync sent while it was on its way listed it as missing, so
    // the server sent it again (up to a window of small files: 402 of 3,000 in one test run).
    if (this.holds(relative, vpath, identity, hash)) {
      placed(new AlreadyHeldError(`${relative}: this version is held already`, relative));
      return true;
    }
    const entry = wholeEntry(vpath, identity, hash);
    const thread = placer();
    if (!thread.available()) {
      placed(this.#placeNow(relative, data, entry));
      return true;
    }
    let target: Target;
    try {
      target = this.#resolve(relative, { thisTurn: true });
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      // (The inbox removed under us (rm -rf): made again, as the partial file's write makes it on the
      // main thread's way, and the way to the file opened afresh.)
      this.#endTurn();
      this.dirs.restore();
      target = this.#resolve(relative, { thisTurn: true });
    }
    this.manifest.aboutToPlace(relative, entry);
    // Both directories stay open until the answer comes, whatever happens to them meanwhile (the turn ends,
    // the state directory is made again): the worker's paths lead through their descriptors.
    const targetDir = target.lend();
    const partialDir = this.dirs.partial.lend();
    const handedOver = () => {
      targetDir.giveBack();
      partialDir.giveBack();
      const left = this.#placing.get(relative)! - 1;
      if (left > 0) this.#placing.set(relative, left);
      else this.#placing.delete(relative);
    };
    this.#placing.set(relative, (this.#placing.get(relative) ?? 0) + 1);
    // (Taken now: a path through the lent descriptor, good until it is given back, whatever closes the
    // directory for us meanwhile.)
    const targetPath = target.path;
    const partialPath = this.#heldPartial().path;
    /** Where the file is now, or why it is not there, once the worker answered. */
    const outcome = (failure: string | null, bytes: Uint8Array | undefined): string | Error => {
      if (failure === null) return this.#placed(relative, entry, target.shown);
      if (bytes === undefined) {
        // Its bytes went with a worker that stopped, which may have put it in place first: if its content
        // is there it is delivered, else it is asked for again. (Recorded unplaced while in place, a delete
        // of it would have been refused as not ours; a review.) A worker stopped between its open and its
        // rename left the partial file: removed now, not at the next start (a review).
        removeQuietly(partialPath);
        return this.#inPlace(targetPath, entry) ? this.#placed(relative, entry, target.shown) : this.#lost(relative, failure);
      }
      // Not in place: done again the main thread's way, which makes removed state directories again,
      // clears empty directories in the way and says why it cannot (the worker removed its partial).
      // The way to it opened afresh: the directory may be what went.
      this.#endTurn();
      try {
        return this.#placeNow(relative, bytes, entry);
      } catch (error) {
        this.manifest.unplaced(relative);
        return asError(error);
      }
    };
    try {
      thread.place(partialPath, targetPath, data, (failure, bytes) => {
        let where: string | Error;
        try {
          where = outcome(failure, bytes);
        } catch (error) {
          where = asError(error);
        } finally {
          // (The worker is done with both directories' paths, and so are we: they may close.)
          handedOver();
        }
        placed(where);
      });
    } catch (error) {
      handedOver();
      throw error;
    }
    return true;
  }

  /** Whether the file at `file` (for the kernel) is a regular file with the content `entry` says (as #settlePlacements looks). */
  #inPlace(file: string, entry: Delivered): boolean {
    try {
      // (Another size is another content: not read. This runs on the event loop, and whatever is at the
      // name now, a big file of the user's included, would otherwise be hashed whole there.)
      if (lstatSync(file, { throwIfNoEntry: false })?.size !== entry.size) return false;
      const { fingerprint, version } = fingerprintFileSync(this.xx, file);
      return version.size === entry.size && fingerprint.hash === entry.hash;
    } catch {
      return false;
    }
  }

  /** A file lost with the placing thread: forgotten, and said so (EAGAIN: the client asks for it again). */
  #lost(relative: string, failure: string): InboxError {
    this.manifest.unplaced(relative);
    return new InboxError(`${relative}: lost when the placing thread stopped (${failure}); it comes again`, relative, "EAGAIN");
  }

  /** Files of this inbox on their way into place (receiveWhole), by name. */
  readonly #placing = new Map<string, number>();

  /** A version of `relative` is on its way into place. */
  isPlacing(relative: string): boolean {
    return this.#placing.has(relative);
  }

  /** Every file handed over to be placed has been (or has failed): undefined if none is on its way. */
  placed(): Promise<void> | undefined {
    return this.#placing.size === 0 ? undefined : placer().idle();
  }

  /** Too much is on its way into place: a promise of room again; else undefined. */
  placingRoom(): Promise<void> | undefined {
    return this.#placing.size === 0 ? undefined : placer().room();
  }

  /** A whole small file written and put in place on this thread (no placing thread, or it failed there). */
  #placeNow(relative: string, data: Uint8Array, entry: Delivered): string {
    // The partial first: writing it makes the inbox and its state directories again if they were removed
    // (rm -rf) while we ran, before the way to the file is opened from the inbox.
    const partial = this.#heldPartial();
    writeWhole(partial, [data], data.length, relative);
    let target: Target;
    try {
      target = this.#resolve(relative, { thisTurn: true });
    } catch (error) {
      removeQuietly(partial.path);
      throw error;
    }
    try {
      try {
        this.manifest.aboutToPlace(relative, entry);
      } catch (error) {
        removeQuietly(partial.path);
        throw error;
      }
      try {
        moveIntoPlace(partial.path, target, relative, false);
      } catch (error) {
        this.manifest.unplaced(relative);
        // (Its directory may have gone under us: the next file opens its way afresh.)
        this.#endTurn();
        throw error;
      }
    } finally {
      target.release();
    }
    return this.#placed(relative, entry, target.shown);
  }

  /** A whole small file is in place at `shown`: recorded. */
  #placed(relative: string, entry: Delivered, shown: string): string {
    // Recording it delivered also forgets any resumable partial of an older, bigger version; its file
    // goes too (it stayed in .fmq/partial, unrecorded, until the next start swept it: a review).
    const olderPartial = this.manifest.partials.has(relative);
    this.manifest.delivered(relative, entry);
    if (olderPartial) removeQuietly(this.dirs.partial.join(partialName(relative)));
    return shown;
  }

  /**
   * Small files about to arrive whole (one ZeroMQ message of them): their placing lines are written now,
   * all at once, instead of one write per file in receiveWhole (see Manifest.announce). Only files whose
   * hash the server gave: the line must say what receiveWhole will place.
   */
  announce(files: readonly { relative: string; vpath: string; identity: PartialFile; hash: string }[]): void {
    this.manifest.announce(files.map((file) => [file.relative, wholeEntry(file.vpath, file.identity, file.hash)] as const));
  }

  /** The files announced have all been handled: a line of one not placed is taken back. */
  endAnnounced(): void {
    this.manifest.endAnnounced();
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
  async remove(relative: string, vpath: string): Promise<"deleted" | "absent" | "kept"> {
    // (A directory kept open for this turn's small files may be about to go.)
    this.#endTurn();
    // A partial file of it (a newer version, or one never completed) will never be resumed now.
    const partial = this.manifest.partials.get(relative)?.vpath === vpath;
    if (partial) {
      this.manifest.partialDropped(relative);
      await unlink(path.join(this.partialDir, partialName(relative))).catch(() => undefined);
    }
    const held = this.manifest.files.get(relative);
    // (Only the file of that name on the server: one held at this name for another, by a subscription of
    // another path into this inbox in an earlier run, is not it; a review.)
    if (held && held.vpath !== vpath) return "absent";
    if (!held) {
      // (Begun and never delivered: the directories it left empty go too, as after a delete.)
      if (partial) this.#pruneEmptyParents(relative);
      return "absent";
    }
    const target = this.#resolve(relative, { create: false });
    if (!target) {
      this.manifest.removed(relative);
      return "absent";
    }
    // Forgotten by the manifest only once the file is gone (or found not ours): until then the file is
    // still held, and whoever waits for the delete (track --once) must not see it done before it is.
    try {
      const existing = await lstat(target.path).catch(() => undefined);
      if (!existing) {
        this.manifest.removed(relative);
        target.release();
        this.#pruneEmptyParents(relative);
        return "absent";
      }
      if (!existing.isFile()) {
        this.manifest.removed(relative);
        throw new InboxError(`${relative}: not a regular file, not deleted`, relative);
      }
      const same = existing.size === held.size && (held.hash === undefined || (await heldFingerprint(target.path))?.hash === held.hash);
      // (And still the file that was hashed: one saved over it meanwhile, renamed into its name during a
      // hash of seconds, is the user's; a review. A window remains, between this look and the unlink.)
      const now = same ? await lstat(target.path).catch(() => undefined) : undefined;
      if (!same || now?.ino !== existing.ino || now.dev !== existing.dev || now.size !== existing.size || now.mtimeMs !== existing.mtimeMs) {
        this.manifest.removed(relative);
        return "kept";
      }
      await unlink(target.path);
      // (--fsync: the delete on disk before its record, or a power loss could bring the file back unknown.)
      if (this.options.fsync) await syncDirectory(target.directory).catch(() => undefined);
      this.manifest.removed(relative);
    } finally {
      target.release();
    }
    // A server directory deleted file by file leaves no empty directories behind here (where a file of
    // that name may come next).
    this.#pruneEmptyParents(relative);
    return "deleted";
  }

  /**
   * `relative` is held as this very version of `vpath` (its size, mtime and the content of `hash`), and is
   * still there at its size (what a resync's listing checks). A version sent again so (a resync made while
   * files were on their way lists them as missing) is not placed or said again.
   */
  holds(relative: string, vpath: string, identity: { readonly size: number; readonly mtime: number }, hash: string): boolean {
    const held = this.manifest.files.get(relative);
    return held !== undefined && held.vpath === vpath && held.hash === hash && held.size === identity.size && held.mtime === identity.mtime && this.stillHeld(relative, held.size);
  }

  /** Does the file we delivered still look as we left it (size)? Only then is it claimed in a cache. */
  stillHeld(relative: string, size: number): boolean {
    const reason = unsafeRelativeReason(relative);
    if (reason) return false;
    // Synchronous: one lstat per held file when a subscription is (re)sent; 10,000 of them take
    // milliseconds this way, most of a second as thread-pool round trips.
    // (Not found is undefined; any other failure, e.g. a name too long to reach through /proc/self/fd,
    // or a directory made unreadable, also means: not claimed. Never a throw that stops the ICANHAZ.)
    try {
      const stats = lstatSync(this.dirs.root.join(relative), { throwIfNoEntry: false });
      return stats !== undefined && stats.isFile() && stats.size === size;
    } catch {
      return false;
    }
  }

  /** Bytes held in the partial file of `relative`, if any. */
  async partialLength(relative: string): Promise<number> {
    const stats = await lstat(path.join(this.partialDir, partialName(relative))).catch(() => undefined);
    return stats?.isFile() ? stats.size : 0;
  }

  /**
   * Whether something the user made is still in the way of `relative` (see inTheWay): a directory with
   * anything in it at its name, a file or symlink where a directory on its way should be, or a directory
   * on its way this process may not write. A directory on the way that is missing is no obstacle (it is
   * made when the file comes); nor is one that cannot be looked at (the transfer says why).
   */
  stillInTheWay(relative: string): boolean {
    const segments = relative.split("/");
    const name = segments.pop()!;
    let dir: HeldDirectory | undefined;
    try {
      dir = this.#walk(segments, false, relative);
    } catch (error) {
      return inTheWay(error);
    }
    if (!dir) return false;
    try {
      const stats = lstatSync(dir.join(name), { throwIfNoEntry: false });
      if (stats?.isDirectory() && !onlyEmptyDirectories(dir, name)) return true;
      accessSync(dir.path, constants.W_OK);
      return false;
    } catch (error) {
      return inTheWay(error);
    } finally {
      this.#release(dir);
    }
  }

  /**
   * Where `relative` goes, after checking the name, with every directory on the way opened (made if
   * missing, unless `create` is false) without following a symlink; its directory stays open until the
   * target is released. Undefined (only without `create`) if a directory on the way is not there.
   */
  #resolve(relative: string, opts: { create: false }): Target | undefined;
  #resolve(relative: string, opts?: { create?: true; thisTurn?: boolean }): Target;
  #resolve(relative: string, opts: { create?: boolean; thisTurn?: boolean } = {}): Target | undefined {
    const reason = refusedName(relative);
    if (reason) throw new InboxError(`refused "${printable(relative)}": ${reason}`, relative);
    const segments = relative.split("/");
    const name = segments.pop()!;
    if (opts.thisTurn) return new TurnTarget(this.#dirThisTurn(segments, relative), name);
    const made: { from?: number; parents: string[] } = { parents: [] };
    const dir = this.#walk(segments, opts.create !== false, relative, made);
    if (!dir) return undefined;
    let released = false;
    // Only the directories this target made (not a user's own, say one prepared with its own mode).
    const prune = () => {
      if (made.from === undefined) return;
      this.#endTurn();
      this.#pruneEmptyParents(relative, made.from);
    };
    // Paths built when used, from the directory object: once it is closed (the inbox made again under
    // a transfer), they lead nowhere instead of to whatever directory got its descriptor number.
    return {
      get path() {
        return dir.join(name);
      },
      shown: path.join(dir.realPath, name),
      madeIn: made.parents,
      get directory() {
        return dir.path;
      },
      release: () => {
        if (!released) this.#release(dir);
        released = true;
      },
      lend: () => dir.lend(),
      // (A file's directories are made when its first chunk comes: left there, a transfer given up kept
      // them for good, and a file that later took one of their names never came, "a directory has that
      // name". Two reviews.)
      abandon() {
        this.release();
        prune();
      },
      clearEmptyDirectories: () => clearEmptyDirectories(dir, name),
    };
  }

  /**
   * The directory `segments` opened as #walk does, for a file put in place at once (receiveWhole): kept
   * open for the rest of this turn of the event loop, so that a batch of small files in one directory
   * opens it once, not once per file. What a batch does within one turn is as if it were one file in
   * flight: it lands in the directory that was opened, whatever is done to its path meanwhile.
   */
  #dirThisTurn(segments: readonly string[], relative: string): HeldDirectory {
    const key = segments.join("/");
    if (this.#turnDir?.key === key) return this.#turnDir.dir;
    const dir = this.#walk(segments, true, relative)!;
    if (this.#turnDir) this.#release(this.#turnDir.dir);
    else setImmediate(() => this.#endTurn());
    this.#turnDir = { key, dir };
    return dir;
  }
  #turnDir: { key: string; dir: HeldDirectory } | undefined;

  #endTurn(): void {
    if (this.#turnDir) this.#release(this.#turnDir.dir);
    this.#turnDir = undefined;
  }

  /**
   * Open the directory `segments` below the inbox one level at a time, each without following a symlink
   * (made if missing with `create`; else undefined if one is not there). Checked for every file, never
   * cached: a directory checked a moment ago may be a symlink now. Release what it returns.
   */
  #walk(segments: readonly string[], create: boolean, relative: string, made?: { from?: number; parents: string[] }): HeldDirectory | undefined {
    let dir = this.dirs.root;
    try {
      for (const [depth, segment] of segments.entries()) {
        let next: HeldDirectory;
        try {
          // (Opened first, made only if missing: a failed mkdir per directory per file costs an exception.)
          next = HeldDirectory.open(segment, dir);
        } catch (error) {
          const code = (error as NodeJS.ErrnoException).code;
          if (code === "ENOENT" && !create) {
            this.#release(dir);
            return undefined;
          }
          if (code === "ENOENT") {
            next = HeldDirectory.make(segment, dir);
            if (made && made.from === undefined) made.from = depth;
            // (--fsync: the new directory's entry is synced in its parent before the file is said delivered
            // (see Target.madeIn), or a power loss could take it, and the file in it; a review.)
            made?.parents.push(dir.realPath);
            this.#release(dir);
            dir = next;
            continue;
          }
          if (code !== "ENOTDIR" && code !== "ELOOP") throw error;
          const symlink = lstatSync(dir.join(segment), { throwIfNoEntry: false })?.isSymbolicLink();
          throw new InboxError(`refused "${printable(relative)}": ${symlink ? "leads through a symlink" : `${segment} is a file, not a directory`}`, relative, code);
        }
        const first = dir === this.dirs.root;
        this.#release(dir);
        dir = next;
        // Our state directory under another name: vfat's short name (FMQ~1), or a bind mount of it. Known
        // by what it is, not by its name. (Two fstat calls for a file in a directory below the inbox.)
        if (first && dir.sameAs(this.dirs.state)) throw new InboxError(`refused "${printable(relative)}": ${segment} is the inbox's state directory`, relative);
      }
      return dir;
    } catch (error) {
      this.#release(dir);
      throw error;
    }
  }

  /** Close a directory `#walk` opened (the inbox itself stays open). */
  #release(dir: HeldDirectory): void {
    if (dir !== this.dirs.root) dir.close();
  }

  /**
   * Remove the directories above `relative` that are now empty, deepest first (never the inbox itself),
   * down to `depth` directories below the inbox (those above it stay). Nothing for a name that is not
   * one we would write (a server's delete of "../x" or "b/.fmq/x": a review).
   */
  #pruneEmptyParents(relative: string, depth = 0): void {
    if (refusedName(relative)) return;
    const segments = relative.split("/").slice(0, -1);
    while (segments.length > depth) {
      const name = segments.pop()!;
      let parent: HeldDirectory | undefined;
      try {
        parent = this.#walk(segments, false, relative);
        if (!parent) return;
        rmdirSync(parent.join(name));
      } catch {
        return; // not empty (or not ours to remove): nor is anything above it
      } finally {
        if (parent) this.#release(parent);
      }
    }
  }

  /** A partial file name for a small file that is never resumed: a counter, no hashing of the name. */
  #heldPartial(): PartialName {
    return new PartialName(`held-${process.pid}-${++heldFiles}${PARTIAL_SUFFIX}`, this.dirs);
  }

  /**
   * Placements a crash interrupted (see Manifest.aboutToPlace): a file in place with the content it was
   * to have is delivered; otherwise the rename never happened, and what was there before still stands.
   */
  async #settlePlacements(): Promise<void> {
    for (const [name, entry] of [...this.manifest.placing]) {
      let target: Target | undefined;
      try {
        target = this.#resolve(name, { create: false });
      } catch {
        // (A name refused now: never in place.)
      }
      try {
        const stats = target ? await lstat(target.path).catch(() => undefined) : undefined;
        const placed =
          target !== undefined &&
          stats?.isFile() === true &&
          stats.size === entry.size &&
          (entry.hash === undefined || (await heldFingerprint(target.path))?.hash === entry.hash);
        if (placed) {
          this.manifest.delivered(name, entry);
          this.#recovered.push({ relative: name, vpath: entry.vpath, file: target!.shown, size: entry.size, ...(entry.mtime !== undefined ? { mtime: entry.mtime } : {}) });
        } else this.manifest.unplaced(name);
      } finally {
        target?.release();
      }
    }
  }

  /**
   * The files found delivered by a run killed before it recorded them, once: they may not have been
   * said (see InboxOptions.beforeRecording), so they are said again.
   */
  takeRecovered(): Recovered[] {
    return this.#recovered.splice(0);
  }
  readonly #recovered: Recovered[] = [];

  /** Remove partial files the manifest does not know (left by a crash); they cannot be resumed. */
  async #sweepPartials(): Promise<void> {
    const keep = new Set([...this.manifest.partials.keys()].map(partialName));
    // (Through the held directory: one swapped for a symlink meanwhile leads nowhere else. And only names
    // we make: nothing else is ours to remove.)
    for (const name of await readdir(this.partialDir).catch(() => [] as string[])) {
      if (!keep.has(name) && PARTIAL_NAME.test(name)) await unlink(path.join(this.partialDir, name)).catch(() => undefined);
    }
  }
}

/**
 * A small file held in memory, written to its partial file: one open, one gathered write, close (fsync
 * if asked). O_NOFOLLOW: never through a planted link. On failure the partial file is removed.
 */
function writeWhole(partial: PartialName, pieces: readonly Uint8Array[], length: number, relative: string): void {
  try {
    let fd: number;
    try {
      fd = openSync(partial.path, NEW_PARTIAL, 0o644);
    } catch (error) {
      if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
      partial.restore();
      fd = openSync(partial.path, NEW_PARTIAL, 0o644);
    }
    try {
      let written = 0;
      while (written < length) {
        written += writevSync(fd, written === 0 ? pieces : [Buffer.concat(pieces).subarray(written)]);
      }
    } finally {
      closeSync(fd);
    }
  } catch (error) {
    removeQuietly(partial.path);
    throw deliveryError(error, relative);
  }
}

function asError(error: unknown): Error {
  return error instanceof Error ? error : new Error(String(error));
}

/** `blocks` begins with `prefix` (block hashes). */
function startsWith(blocks: Buffer, prefix: Buffer): boolean {
  return blocks.length >= prefix.length && blocks.compare(prefix, 0, prefix.length, 0, prefix.length) === 0;
}

/** A suspended partial file is as it was left: the same inode, size and times. */
function unchanged(remembered: SuspendedPartial, stats: { ino: number; size: number; mtimeMs: number; ctimeMs: number }): boolean {
  return remembered.ino === stats.ino && remembered.size === stats.size && remembered.mtimeMs === stats.mtimeMs && remembered.ctimeMs === stats.ctimeMs;
}

/** What the manifest records of a small file received whole. */
function wholeEntry(vpath: string, identity: PartialFile, hash: string): Delivered {
  return { vpath, size: identity.size, mtime: identity.mtime, hash };
}

/** Opening a new partial file: empty (O_TRUNC), never through a symlink planted at its name (O_NOFOLLOW). */
const NEW_PARTIAL = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

/** A new partial file; the state directories are made again if they went. */
async function openPartial(partial: PartialName): Promise<FileHandle> {
  try {
    return await open(partial.path, NEW_PARTIAL, 0o644);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    partial.restore();
    return open(partial.path, NEW_PARTIAL, 0o644);
  }
}

/**
 * Copy the delivered file at `finalPath` to the partial file `partial`, the base of a delta; its size, or
 * undefined if there is no regular file there. Someone who may write in the inbox can put a symlink at
 * either name at any moment: the source is opened without following one (and copied through our
 * descriptor, so what is copied is what was checked), and the partial is made anew (O_EXCL: a symlink
 * there is refused, never written through). A reflink where the filesystem has them, else an in-kernel copy.
 */
async function copyHeldVersion(finalPath: string, partial: PartialName): Promise<{ handle: FileHandle; size: number } | undefined> {
  // (Only a regular file is opened at all: openRegular.)
  const opened = await openRegular(finalPath).catch(() => undefined);
  if (!opened) return undefined;
  const { handle: source, stats } = opened;
  try {
    // (partial.path at each use, never kept across an await: see PartialName.)
    await unlink(partial.path).catch(() => undefined);
    await copyFile(`/proc/self/fd/${source.fd}`, partial.path, constants.COPYFILE_EXCL | constants.COPYFILE_FICLONE);
    return { handle: await open(partial.path, constants.O_RDWR | constants.O_NOFOLLOW), size: stats.size };
  } finally {
    await source.close();
  }
}

/** A partial file: its name in the inbox's partial directory (held open; made again if it was removed). */
class PartialName {
  constructor(
    readonly name: string,
    private readonly dirs: InboxDirectories,
  ) {}

  get path(): string {
    return this.dirs.partial.join(this.name);
  }

  /** The state directories were removed: make them again (the path above then leads there). */
  restore(): void {
    this.dirs.restore();
  }
}

/**
 * The atomic step of every delivery: the complete partial file takes the final name. If it cannot, the
 * partial is removed, unless it is to be `kept` for a later try.
 */
function moveIntoPlace(partialPath: string, target: Target, relative: string, kept: boolean): void {
  try {
    try {
      renameSync(partialPath, target.path);
    } catch (error) {
      // An empty directory by that name (left when the server's directory of that name went, file by
      // file, before this file took its name), or one of empty directories only (made on the way to
      // files that never came, by a subscriber killed before it could remove them), gives way; one with
      // anything else in it does not.
      if ((error as NodeJS.ErrnoException).code !== "EISDIR" || !target.clearEmptyDirectories()) throw error;
      renameSync(partialPath, target.path);
    }
  } catch (error) {
    if (!kept) removeQuietly(partialPath);
    throw deliveryError(error, relative);
  }
}

/**
 * The fingerprint of a file in the inbox at `file` (its name just found a regular file by lstat), or
 * undefined if it cannot be read as one. Never through a symlink put at the name since the lstat: the
 * subscriber (root, maybe) would read whatever it leads to, anywhere (a review).
 */
async function heldFingerprint(file: string): Promise<Fingerprint | undefined> {
  return fingerprintFile(file).catch(() => undefined);
}

/** fsync a directory (its entries), through the thread pool. */
async function syncDirectory(directory: string): Promise<void> {
  const dir = await open(directory, "r");
  await dir.sync().finally(() => dir.close());
}

/** The error says the disk (or the user's quota) is full. */
export function diskFull(code: string | undefined): boolean {
  return code === "ENOSPC" || code === "EDQUOT";
}

/**
 * Why the subscriber will not write at `relative`, or undefined. In any case, and with any trailing dots
 * and spaces: on a file system that ignores case (vfat, exfat, CIFS, ext4 casefold) ".FMQ" is our state
 * directory too, and vfat, exfat and SMB drop trailing dots (and SMB spaces) when they look a name up:
 * ".fmq." is it too (a review). (Where names are taken as they are, a server's ".FMQ" or ".fmq." is
 * refused all the same: a small loss.) At any depth: an inbox inside this one (another subscriber's, at
 * b/) has its state at b/.fmq, and a server of ours never sends a hidden name (a review:
 * b/.fmq/manifest.json/x was written, and the inner subscriber could not start again).
 */
function refusedName(relative: string): string | undefined {
  const unsafe = unsafeRelativeReason(relative);
  if (unsafe) return unsafe;
  if (relative.split("/").some((segment) => segment.replace(/[. ]+$/, "").toLowerCase() === STATE_DIR)) return "reserved name";
  return undefined;
}

/** How much of a tree of empty directories is looked at before it counts as something in the way. */
const EMPTY_TREE_LIMITS = { entries: 1000, depth: 32 };

/** Target.clearEmptyDirectories: `name` in `parent`, if it holds only empty directories, removed. */
function clearEmptyDirectories(parent: HeldDirectory, name: string): boolean {
  if (!onlyEmptyDirectories(parent, name)) return false;
  removeEmptyDirectories(parent, name);
  return true;
}

/**
 * The directory `name` in `parent` holds nothing but directories that hold nothing but directories,
 * within EMPTY_TREE_LIMITS. Each opened through its parent's descriptor, never through a symlink (one
 * there, or swapped in meanwhile, is something else).
 */
function onlyEmptyDirectories(parent: HeldDirectory, name: string): boolean {
  let entries = EMPTY_TREE_LIMITS.entries;
  const only = (above: HeldDirectory, at: string, depth: number): boolean => {
    const dir = HeldDirectory.open(at, above);
    try {
      const inside = readdirSync(dir.path);
      // (What is in it can be removed only if it may be written: else the file would be asked for
      // again at every retry and fail each time, EACCES, a review.)
      if (inside.length > 0) accessSync(dir.path, constants.W_OK);
      for (const entry of inside) {
        if (!entry.isDirectory() || --entries < 0 || depth >= EMPTY_TREE_LIMITS.depth) return false;
        if (!only(dir, entry.name, depth + 1)) return false;
      }
      return true;
    } finally {
      dir.close();
    }
  };
  try {
    return only(parent, name, 0);
  } catch {
    return false;
  }
}

/**
 * Remove the directory `name` in `parent`, found by onlyEmptyDirectories to hold only empty directories,
 * deepest first, each through its parent's descriptor. rmdir only: anything put there meanwhile keeps
 * its directory, and the error is thrown; nothing outside is ever reached (a symlink swapped in is not
 * followed).
 */
function removeEmptyDirectories(parent: HeldDirectory, name: string, depth = 0): void {
  if (depth < EMPTY_TREE_LIMITS.depth) {
    const dir = HeldDirectory.open(name, parent);
    try {
      for (const entry of readdirSync(dir.path)) {
        if (entry.isDirectory()) removeEmptyDirectories(dir, entry.name, depth + 1);
      }
    } finally {
      dir.close();
    }
  }
  rmdirSync(parent.join(name));
}

function removeQuietly(file: string): void {
  try {
    unlinkSync(file);
  } catch {
    // Never created, or already gone.
  }
}

/**
 * The failure was something in the inbox in the way of a file (a directory or a file of a name it
 * needs, a symlink on its way; a directory made read-only or immutable, a file system remounted
 * read-only): not ours to change, and gone once the person who made it undoes it. (Permissions too, a
 * review: a file refused by a read-only directory was retried only at the next reconnection, which a
 * healthy link may never have; a small one was lost for the session.)
 */
export function inTheWay(error: unknown): boolean {
  const code = error instanceof InboxError ? error.code : (error as NodeJS.ErrnoException | undefined)?.code;
  return code === "EISDIR" || code === "ENOTEMPTY" || code === "EEXIST" || code === "ENOTDIR" || code === "ELOOP" || code === "EACCES" || code === "EPERM" || code === "EROFS";
}

/** What a user is told when a file cannot be put in place. */
function deliveryError(error: unknown, relative: string): InboxError {
  if (error instanceof InboxError) return error;
  const code = (error as NodeJS.ErrnoException).code;
  const directory = code === "EISDIR" || code === "ENOTEMPTY" || code === "EEXIST";
  return new InboxError(directory ? `${relative}: a directory has that name` : `${relative}: ${code ?? String(error)}`, relative, code);
}

/** The inbox lock's key, in the state directory (inbox-lock.ts). */
const LOCK_KEY = "lock-key";

/** The names of the partial files we make (partialName, #heldPartial): only those are ever swept. */
const PARTIAL_NAME = /^(?:[0-9a-f]{40}|held-\d+-\d+)\.fmq-part$/;

/** Small files received by this process (their partial names). */
let heldFiles = 0;

/** A partial file's name: fixed length, whatever the file's name (no NAME_MAX trouble, no collisions). */
export function partialName(relative: string): string {
  // crypto.hash: one call, a quarter of createHash's cost (this runs once per file received).
  // (Of its bytes: two names that are not UTF-8 would otherwise share one, both read with U+FFFD.)
  return hash("sha1", hasStrayBytes(relative) ? nameBytes(relative) : relative, "hex") + PARTIAL_SUFFIX;
}


function printable(name: string): string {
  return showStrayBytes(name).replace(UNPRINTABLE, "?").slice(0, 200);
}
