// Reads one file for one client as ready-to-send CHEEZBURGER frames. Each read lands straight in the frame
// that will go on the wire (no copy), and `readAhead` reads are kept in flight so the disk works while the
// socket sends. Frames are built with sequence 0; the sender stamps the real sequence just before sending.
//
// A transfer covers the whole file, or the rest of it from a block-aligned offset (resume), or only some
// blocks (delta). The first chunk carries the file's identity (size, mtime) and the last, empty, eof=1
// chunk its tree hash, or "changed" if the file was modified while we read it.

import { closeSync, fstatSync, readSync, type Stats } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import { cheezburgerFrame } from "../protocol/codec.js";
import { Header, wireDecimal } from "../protocol/extensions.js";
import { Operation, type Dictionary } from "../protocol/messages.js";
import type { XXHashAPI } from "xxhash-wasm";
import { BLOCK_SIZE, BlockHasher, hashPrefix, prefixTreeHash, xxh, type Fingerprint } from "../digest/blocks.js";
import { NotRegularError, openRegular, openRegularSync } from "../digest/open-regular.js";
import { versionTag } from "../digest/version.js";
import { sameVersion, versionOfStats, type Version } from "./fingerprints.js";
import { assertOpenedInside } from "./opened-inside.js";

/** CHEEZBURGER's sequence sits right after the 2-byte signature and the 1-byte id. */
const SEQUENCE_OFFSET = 3;
const NO_HEADERS: Dictionary = new Map();
/** Smallest read ahead of a client with little credit. */
const MIN_READ = 64 * 1024;

/**
 * Files up to this size are read whole with synchronous calls when their turn comes (open, fstat, read,
 * fstat, close: microseconds each) rather than a thread-pool round trip per call, which is what limits a
 * flood of small files.
 */
const SMALL_FILE = 256 * 1024;

/** Is a file of `size` read whole when it is opened (and so, to a client that says "single", sent as one message)? */
export function readsWhole(size: number, chunkSize: number): boolean {
  return size <= Math.min(SMALL_FILE, chunkSize);
}

export interface ChunkFrame {
  readonly frame: Buffer;
  /** Payload bytes in this frame (what it costs in credit). */
  readonly bytes: number;
  /** This is the final, empty, eof=1 chunk. */
  readonly eof: boolean;
}

/** What the file looked like when the transfer began. */
export interface Identity {
  readonly size: number;
  readonly mtimeMs: number;
}

/** What the mount published: the file's identity then, and the mount's real root it must still be inside. */
export interface Published extends Identity {
  readonly root: string;
  /**
   * The inode the mount published (when it knows it). What is opened must be that very file: a file put
   * in its place with the same size and mtime is not what the mount vetted (a hidden file renamed over
   * it; a file reached through another user's mount namespace, whose path the kernel gives as it reads
   * in that namespace, inside the mount).
   */
  readonly ino?: number;
  /** The file system of `ino` (an inode number may be found on another: a bind mount, another namespace). */
  readonly dev?: number;
}

export interface TransferPlan {
  /** Resume: start at this offset (rounded down to a block). */
  readonly start?: number;
  /**
   * Resumed: the tree hash of the bytes before the (rounded) start, sent as X-FMQ-Prefix; coming (a
   * promise) when the file's fingerprint is still being computed. Set by open.
   */
  readonly prefix?: string | Promise<string | undefined>;
  /**
   * Delta: send only these blocks, on top of the receiver's version whose tree hash is `base`; worked out
   * from `fingerprint`, of the file's `version`. If the file opened is another version (a rewrite with its
   * size and mtime put back: only ctime or the inode tell), the blocks may not be the ones that differ,
   * and the file goes whole instead.
   */
  readonly delta?: { readonly blocks: readonly number[]; readonly base: string; readonly fingerprint: Fingerprint; readonly version: Version };
}

export interface CursorOptions {
  readonly chunkSize: number;
  readonly readAhead: number;
  /** Add our extension headers (identity, tree hash). Off for a plain v2 peer. */
  readonly extensions: boolean;
  /** The client takes a small file as one message (data, eof=1 and eof headers): capability "single". */
  readonly single?: boolean;
  /**
   * The fingerprint of this version of the file if it is known (computed when it was published, or by
   * an earlier transfer), or a promise of it (being computed in the background now): then nothing is
   * hashed on the way out, and the promise is awaited only for the last chunk. Undefined: hash as we
   * read.
   */
  readonly knownFingerprint?: (absolute: string, version: Version) => Fingerprint | Promise<Fingerprint | undefined> | undefined;
}

interface Prefetched {
  readonly offset: number;
  /** Payload bytes asked for. */
  readonly want: number;
  /** The frame, sized for `want` payload bytes, and where its payload starts. */
  readonly frame: Buffer;
  readonly chunkOffset: number;
  readonly read: Promise<number>;
  /** What the read got, when it was made synchronously (a small file read whole at open). */
  readonly got?: number;
  hashed: boolean;
  /**
   * How the frame's headers were laid out when it was built: a plain data chunk, the transfer's first
   * chunk (first-chunk headers), or the whole-file message ("single", its hash still to be written in).
   */
  readonly layout: "chunk" | "first" | "whole";
}

/** Stands for the tree hash in a whole-file frame built before the data is read (same length: 16 hex). */
const HASH_PLACEHOLDER = "0".repeat(16);

type Range = readonly [start: number, end: number];

export class FileCursor {
  /** Offset of the next payload byte to send. */
  #offset: number;
  #ahead: Prefetched[] = [];
  /** The byte ranges to send, in order; [#range] is the current one. */
  #ranges: Range[];
  #range = 0;
  /** Where reads have got to: range [#readRange], offset #readOffset (ahead of what is sent). */
  #readRange = 0;
  #readOffset: number;
  /** The file's size when opened, lowered if a read comes back short (the file shrank). */
  #limit: number;
  #first = true;
  #closed = false;
  #delivered = 0;
  /** The most credit the client had at any chunk of this transfer. */
  #peakCredit = 0;

  /** A small file read whole at open: its identity right after the read (to tell if it changed meanwhile). */
  #afterRead: Identity | undefined;

  private constructor(
    /** Undefined for a small file read whole at open. */
    private readonly handle: FileHandle | undefined,
    readonly vpath: string,
    readonly identity: Identity,
    private readonly options: CursorOptions,
    ranges: Range[],
    /** Hashes what is sent, in order (full and resumed transfers) unless the fingerprint is known already. */
    private readonly hasher: BlockHasher | undefined,
    private readonly plan: TransferPlan,
    /**
     * The fingerprint of the version being sent, when known before the first byte (a delta's, a cached
     * one), or coming (computed in the background meanwhile).
     */
    private known?: Fingerprint | Promise<Fingerprint | undefined>,
    /** The version opened (undefined for a small file read whole at open). */
    readonly version?: Version,
    /** When that version was taken, before any read: see Fingerprints.remember. */
    readonly readFrom?: number,
  ) {
    this.#ranges = ranges;
    this.sendsPart = plan.delta !== undefined || (ranges[0]?.[0] ?? 0) > 0;
    this.#offset = ranges[0]?.[0] ?? identity.size;
    this.#sentTo = plan.delta ? 0 : this.#offset;
    this.#readOffset = this.#offset;
    this.#limit = identity.size;
    if (known instanceof Promise) known.then(() => (this.#knownSettled = true), () => (this.#knownSettled = true));
    if (typeof plan.prefix === "string") this.#prefix = plan.prefix;
    else plan.prefix?.then((prefix) => (this.#prefix = prefix), () => undefined);
  }

  /** The fingerprint coming in the background (`known`, a promise) is there, or failed. */
  #knownSettled = false;
  /** X-FMQ-Prefix, once known (see TransferPlan.prefix), and whether a frame has said it. */
  #prefix: string | undefined;
  #prefixSaid = false;

  /** A prefix that came after the first chunk was made: said by the next one. */
  #latePrefix(): string | undefined {
    return this.#first || this.#prefixSaid ? undefined : this.#prefix;
  }

  /**
   * What the eof chunk waits for, if that is all that is left to send and it is not there yet: the
   * fingerprint computed in the background (in a worker that may have other files to read first).
   * The connection waits for it outside its machine's step, so that the client's messages are answered
   * meanwhile (see Connection: "not ready").
   */
  fingerprintDue(): Promise<unknown> | undefined {
    if (!this.options.extensions || !(this.known instanceof Promise) || this.#knownSettled) return undefined;
    return this.#ahead.length === 0 && !this.#moreToRead() ? this.known : undefined;
  }

  /** Is any of the ranges to send still to be read? (What #fill would read next; it reads nothing itself.) */
  #moreToRead(): boolean {
    if (!this.handle || this.#closed) return false;
    for (let r = this.#readRange; r < this.#ranges.length; r++) {
      const [start, end] = this.#ranges[r]!;
      if ((r === this.#readRange ? this.#readOffset : start) < Math.min(end, this.#limit)) return true;
    }
    return false;
  }

  /**
   * Opens the file and fixes its identity: the bytes sent are those of the file as it is now. With
   * `published` (the identity the file had when it was found stable, and its mount), a file that has
   * changed since is not sent (FileChangedError): it is being written again, and will be published again
   * once stable; nor is one that now leads outside its mount (OutsideMountError).
   */
  static async open(absolute: string, vpath: string, options: CursorOptions, plan: TransferPlan = {}, published?: Published): Promise<FileCursor> {
    if (published && readsWhole(published.size, options.chunkSize) && !plan.delta && !plan.start) {
      return FileCursor.openSmall(absolute, vpath, options, published, options.extensions ? await xxh() : undefined, plan);
    }
    // (Only a regular file is opened at all, and a symlink at its real path is not followed: anything
    // else there now is not what was published.)
    const opened = await openRegular(absolute).catch((error: unknown) => {
      throw error instanceof NotRegularError ? new FileChangedError(vpath) : error;
    });
    const { handle, stats } = opened;
    try {
      if (published) assertOpenedInside(handle.fd, published.root, vpath);
      const readFrom = Date.now();
      const identity = { size: stats.size, mtimeMs: stats.mtimeMs };
      const version = versionOfStats(stats);
      if (published && !samePublished(stats, published)) throw new FileChangedError(vpath);
      // (A delta is planned alone, never with a resume: without it, the plan is the whole file.)
      if (plan.delta && !sameVersion(plan.delta.version, version)) plan = {};
      let ranges: Range[];
      let hasher: BlockHasher | undefined;
      let known: Fingerprint | Promise<Fingerprint | undefined> | undefined;
      if (plan.delta) {
        ranges = mergeBlocks(plan.delta.blocks, identity.size);
        known = plan.delta.fingerprint;
      } else {
        const start = Math.min(Math.floor((plan.start ?? 0) / BLOCK_SIZE) * BLOCK_SIZE, identity.size);
        ranges = [[start, identity.size]];
        if (options.extensions) {
          const xx = await xxh();
          known = options.knownFingerprint?.(absolute, version);
          let prefix: string | Promise<string | undefined> | undefined;
          if (!known) {
            hasher = new BlockHasher(xx);
            // Resumed: hash the part the client already holds, so the tree hash covers the whole file.
            if (start > 0) await hashPrefix(handle, hasher, start);
            prefix = hasher.treeHashSoFar();
          } else if (start > 0 && start % BLOCK_SIZE === 0) {
            // (Of whole blocks only: not a start cut to the file's size, short of a block, for a client
            // that listed a partial longer than the file; only an eof chunk goes then, which says no
            // prefix anyway.) A fingerprint still being computed (a resume soon after the file was
            // published, or the publisher started) is not waited for: the prefix goes on a later chunk,
            // once the pass has it (it reads faster than we send). Hashing the prefix here instead
            // delayed the resume by that read, on cores the pass shares: a publisher killed at half of
            // 1 GiB and started again took 1.82 s to finish it, against 1.28 (bench 5c-ii).
            const blocks = start / BLOCK_SIZE;
            prefix = known instanceof Promise ? known.then((fingerprint) => fingerprint && prefixTreeHash(xx, fingerprint, blocks)) : prefixTreeHash(xx, known, blocks);
          }
          if (start > 0 && prefix !== undefined) plan = { ...plan, prefix };
        }
      }
      return new FileCursor(handle, vpath, identity, options, ranges, hasher, plan, known, version, readFrom);
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  /**
   * A small file (readsWhole, with no resume or delta to plan) opened and read whole in one synchronous
   * call: open, fstat, read, fstat, close. With `nextWhole` and `dispose`, a flood of small files costs its
   * system calls and no promise or microtask per step. Throws as `open` does. `xx` is required with
   * `options.extensions`.
   */
  static openSmall(absolute: string, vpath: string, options: CursorOptions, published: Published, xx: XXHashAPI | undefined, plan: TransferPlan = {}): FileCursor {
    if (options.extensions && !xx) throw new Error("openSmall: a hash function is needed");
    const hasher = options.extensions ? new BlockHasher(xx!) : undefined;
    let opened: { fd: number; stats: Stats };
    try {
      opened = openRegularSync(absolute);
    } catch (error) {
      throw error instanceof NotRegularError ? new FileChangedError(vpath) : error;
    }
    const { fd, stats: before } = opened;
    try {
      assertOpenedInside(fd, published.root, vpath);
      const identity = { size: before.size, mtimeMs: before.mtimeMs };
      if (!samePublished(before, published)) throw new FileChangedError(vpath);
      const cursor = new FileCursor(undefined, vpath, identity, options, [[0, identity.size]], hasher, plan);
      // For a client that takes a small file as one message, read straight into that message, laid out
      // as it will most likely go (the hash is written in once known): one frame and no copy per file.
      const whole = options.single === true && options.extensions;
      const { frame, chunkOffset } = whole
        ? cheezburgerFrame({ ...cursor.#fields(0, cursor.#endHeaders(identity.size, HASH_PLACEHOLDER)), eof: 1 }, identity.size)
        : cheezburgerFrame(cursor.#fields(0, cursor.#firstHeaders()), identity.size);
      let got = 0;
      while (got < identity.size) {
        const n = readSync(fd, frame, chunkOffset + got, identity.size - got, got);
        if (n === 0) break;
        got += n;
      }
      const after = fstatSync(fd);
      // (Written during the read with its size and mtime put back, cp -p or rsync --inplace -t: only the
      // ctime tells. Then no identity after: the end says "changed" and the new version follows.)
      cursor.#afterRead = after.ctimeMs === before.ctimeMs ? { size: after.size, mtimeMs: after.mtimeMs } : undefined;
      if (got > 0) cursor.#ahead.push({ offset: 0, want: identity.size, frame, chunkOffset, read: Promise.resolve(got), got, hashed: false, layout: whole ? "whole" : "first" });
      else cursor.#limit = 0;
      cursor.#readOffset = identity.size;
      return cursor;
    } finally {
      closeSync(fd);
    }
  }

  /** Payload bytes handed out so far. */
  get sent(): number {
    return this.#delivered;
  }

  /** The file's size as this cursor sends it. */
  get size(): number {
    return this.#limit;
  }

  /**
   * The next frame, carrying at most `credit` payload bytes, or undefined if a data chunk is due and
   * credit is 0. A chunk larger than the credit is split: the server never sends more than its credit,
   * and never stalls while credit and data remain (the reference's livelock).
   */
  async next(credit: number): Promise<ChunkFrame | undefined> {
    this.#peakCredit = Math.max(this.#peakCredit, credit);
    this.#fill(credit);
    const head = this.#ahead[0];
    if (!head) return this.#eofFrame();
    const got = await head.read;
    if (got < head.want) this.#shrunk(head.offset + got);
    // (#shrunk has already dropped an empty read: its offset is the new end)
    if (got === 0) return this.#eofFrame();
    this.#hashOnce(head, got);
    if (credit <= 0) return undefined;
    if (this.#goesWhole(got, credit)) return this.#singleFrame(head, got);
    const skip = this.#offset - head.offset; // payload of this read already sent (a split chunk)
    const bytes = Math.min(got - skip, credit);
    let frame: Buffer;
    const late = this.#latePrefix();
    if (skip === 0 && bytes === got && late === undefined && head.layout === (this.#first ? "first" : "chunk")) {
      // The common case: the whole read goes out in the very frame it was read into (the first read's
      // frame was built with the first chunk's headers).
      this.#ahead.shift();
      frame = got === head.want ? head.frame : head.frame.subarray(0, head.chunkOffset + got);
      if (got < head.want) frame.writeUInt32BE(got, head.chunkOffset - 4);
    } else {
      // Credit is short (or a first chunk read without its headers, or a prefix to say late): a fresh
      // frame with just what fits.
      const headers = this.#first ? this.#firstHeaders() : late !== undefined ? new Map([[Header.PREFIX, late]]) : NO_HEADERS;
      if (late !== undefined) this.#prefixSaid = true;
      const part = cheezburgerFrame(this.#fields(this.#offset, headers), bytes);
      const from = head.chunkOffset + skip;
      head.frame.copy(part.frame, part.chunkOffset, from, from + bytes);
      frame = part.frame;
      if (skip + bytes === got) this.#ahead.shift();
    }
    this.#first = false;
    this.#offset += bytes;
    this.#delivered += bytes;
    this.#sentTo = this.#offset;
    if (this.#offset >= this.#currentEnd()) this.#nextRange();
    this.#fill(credit - bytes);
    return { frame, bytes, eof: false };
  }

  /**
   * `next` for a small file read whole at open, to a client that takes it in one message, when its
   * credit covers it: the one frame, synchronously. Undefined whenever `next` must decide instead.
   */
  nextWhole(credit: number): ChunkFrame | undefined {
    const head = this.#ahead[0];
    if (head?.got === undefined || !this.#goesWhole(head.got, credit)) return undefined;
    this.#peakCredit = Math.max(this.#peakCredit, credit);
    this.#hashOnce(head, head.got);
    return this.#singleFrame(head, head.got);
  }

  /** Hash a read's `got` bytes, once, in order (a read split by short credit is met again). */
  #hashOnce(head: Prefetched, got: number): void {
    if (head.hashed) return;
    this.hasher?.update(head.frame.subarray(head.chunkOffset, head.chunkOffset + got), true);
    head.hashed = true;
  }

  /**
   * Stop before the end: a delete or a newer version of this file waits to go, and the client would throw
   * the rest away (a review: a 64 MiB file removed 2 MiB into its transfer went out whole, then marked
   * changed, then its delete), or a read failed. To a client that takes our headers, the eof chunk at the
   * offset reached, marked changed: it drops what it has. To a plain client, the plain eof chunk at the
   * offset reached: the C reference client writes every chunk into the one file it has open, whatever
   * the chunk's name, and closes it only on an empty chunk, so a file that just stopped had the next
   * file written into it and never delivered (an interop review). It now holds a short file, which the
   * caller follows with a delete (see Connection.#abandon). Undefined when nothing was sent yet (the
   * client has nothing open, nothing to drop).
   */
  abandon(): ChunkFrame | undefined {
    this.changed = true;
    if (this.#first) return undefined;
    const headers = this.options.extensions ? this.#endHeaders(this.identity.size, undefined).set(Header.STATUS, "changed") : NO_HEADERS;
    const { frame } = cheezburgerFrame({ ...this.#fields(this.#offset, headers), eof: 1 }, 0);
    return { frame, bytes: 0, eof: true };
  }

  /** Whether the client reads our headers (a plain one, the C reference's, does not). */
  get extensions(): boolean {
    return this.options.extensions;
  }

  /** A small file read whole at open, all `got` of it, goes as one message: the client takes that, and its credit covers it. */
  #goesWhole(got: number, credit: number): boolean {
    return this.options.single === true && !this.handle && this.#first && got === this.#limit && credit >= got;
  }

  /** `close` for a cursor with nothing open and nothing in flight (a small file read whole): at once. */
  dispose(): boolean {
    if (this.handle || this.#ahead.length > 0) return false;
    this.#closed = true;
    return true;
  }

  /** The file's fingerprint, once the eof frame has been built (hashed as sent, or known before). */
  fingerprint: Fingerprint | undefined;
  /**
   * That fingerprint is of what this cursor read, not one known before (remembered, a background pass's,
   * a delta's): only such a one is for the transfer to remember. One known before was remembered, or not,
   * by whoever computed it, for the version it was computed from.
   */
  get ownFingerprint(): boolean {
    return this.fingerprint !== undefined && this.known === undefined;
  }
  /** What was sent, hashed again through our handle: the background pass it waited for gave nothing. */
  #rehashed: Fingerprint | undefined;
  /** The file changed while it was being read: the eof frame said so, and the receiver drops it. */
  changed = false;

  /**
   * Where the client's copy ends if this transfer stops now or ends marked changed: every byte before it
   * was sent, or held already (a resume's prefix; a delta's unchanged blocks: its ranges go in order).
   */
  get heldPrefix(): number {
    return this.#sentTo;
  }

  /** Is this a delta (changed blocks on the version the client holds)? */
  get isDelta(): boolean {
    return this.plan.delta !== undefined;
  }
  /**
   * The end of the last chunk sent (not #offset: past a delta's range, that is where the next one
   * begins); before any, a resume's start (the client's partial is left as it was until a chunk comes).
   */
  #sentTo: number;

  /**
   * Only part of the file goes (a resume, or a delta's blocks): nothing a client that asks for the file
   * whole meanwhile can use (it refused this transfer: its partial holds other bytes, or it lacks the base).
   */
  readonly sendsPart: boolean;

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Let reads in flight finish before closing the descriptor under them.
    await Promise.allSettled(this.#ahead.map((p) => p.read));
    this.#ahead = [];
    await this.handle?.close().catch(() => undefined);
  }

  #fields(offset: number, headers: Dictionary) {
    return { sequence: 0n, operation: Operation.CREATE, filename: this.vpath, offset: BigInt(offset), eof: 0, headers };
  }

  #firstHeaders(): Dictionary {
    if (!this.options.extensions) return NO_HEADERS;
    const headers: Dictionary = new Map([
      [Header.SIZE, String(this.identity.size)],
      [Header.MTIME, wireDecimal(this.identity.mtimeMs)],
    ]);
    if (this.plan.delta) headers.set(Header.BASE, this.plan.delta.base);
    // (What a partial is listed back with: only a file of more than one block leaves one worth resuming.)
    if (this.version && this.identity.size > BLOCK_SIZE) headers.set(Header.VERSION, versionTag(this.version));
    if (this.#prefix !== undefined) {
      headers.set(Header.PREFIX, this.#prefix);
      this.#prefixSaid = true;
    }
    return headers;
  }

  async #eofFrame(): Promise<ChunkFrame> {
    if (this.options.extensions && this.known instanceof Promise) {
      // The fingerprint computed in the background while we sent (it reads faster than we send, so it
      // is normally there already); if that failed, hash what we sent now, before checking for changes.
      this.known = await this.known;
      if (this.known === undefined) this.#rehashed = await this.#hashWhole();
    }
    const now = this.options.extensions && this.handle ? await this.handle.stat().catch(() => undefined) : this.#afterRead;
    const headers = this.#eofHeaders(now);
    // The transfer's first frame as well (a resume at the file's end: the client holds every byte): what a
    // first chunk says of the version, its tag and the prefix held, said here. Without its tag, the
    // partial of an earlier version of the file, a same-size rewrite in place, could not be taken up, and
    // the resume was refused as one of nothing (a soak test).
    if (this.#first && this.options.extensions) for (const [name, value] of this.#firstHeaders()) if (!headers.has(name)) headers.set(name, value);
    // Unchanged, yet no tree hash: the background pass failed and so did reading the file again (an I/O
    // error). An end without a hash would be taken as a file we vouch for without saying what it is: the
    // transfer fails instead, the client keeps what it has to resume, and the file goes in a later session.
    if (this.options.extensions && !this.changed && !headers.has(Header.HASH)) throw new Error(`${this.vpath}: its tree hash could not be computed (the file could not be read again)`);
    // An empty file (or an empty delta) has no first data chunk: its eof chunk carries the identity.
    const { frame } = cheezburgerFrame({ ...this.#fields(this.#limit, headers), eof: 1 }, 0);
    return { frame, bytes: 0, eof: true };
  }

  /**
   * A small file read whole, to a client that takes a file in one message (capability "single"): its
   * data, eof=1 and the end-of-file headers in one CHEEZBURGER, instead of a data chunk and an empty
   * eof chunk. Half the messages, which is what a flood of small files costs on both sides.
   */
  #singleFrame(head: Prefetched, got: number): ChunkFrame {
    const headers = this.#eofHeaders(this.#afterRead);
    const hash = headers.get(Header.HASH);
    let frame: Buffer;
    // Unchanged and read whole, the end headers are #endHeaders(size, hash), the layout the frame was
    // built with: the hash (the dictionary's last value, just before the 4-octet chunk length) is all
    // that is missing.
    if (head.layout === "whole" && got === head.want && !this.changed && hash !== undefined) {
      frame = head.frame;
      frame.write(hash, head.chunkOffset - 4 - HASH_PLACEHOLDER.length, "latin1");
    } else {
      // Changed, shrunk, or read as a first chunk: build the message the headers call for.
      const single = cheezburgerFrame({ ...this.#fields(0, headers), eof: 1 }, got);
      head.frame.copy(single.frame, single.chunkOffset, head.chunkOffset, head.chunkOffset + got);
      frame = single.frame;
    }
    this.#ahead.shift();
    this.#first = false;
    this.#offset = this.#delivered = this.#sentTo = got;
    this.#ranges = [];
    return { frame, bytes: got, eof: true };
  }

  /** The whole file's fingerprint, read again through our handle. */
  async #hashWhole(): Promise<Fingerprint | undefined> {
    if (!this.handle) return undefined;
    const hasher = new BlockHasher(await xxh());
    return hashPrefix(this.handle, hasher, this.identity.size).then(
      () => hasher.finish(),
      () => undefined,
    );
  }

  /** The end-of-file headers: size, mtime and (a file sent unchanged) its tree hash, in this order. */
  #endHeaders(size: number, hash: string | undefined): Dictionary {
    const headers: Dictionary = new Map([
      [Header.SIZE, String(size)],
      [Header.MTIME, wireDecimal(this.identity.mtimeMs)],
    ]);
    if (hash !== undefined) headers.set(Header.HASH, hash);
    return headers;
  }

  /** The eof chunk's headers (our extension), given the file's state now; notes whether it changed. */
  #eofHeaders(now: Identity | { size: number; mtimeMs: number; ctimeMs: number } | undefined): Dictionary {
    if (!this.options.extensions) return NO_HEADERS;
    // Did the file change under us? Then what we sent may mix two versions: say so.
    // A known fingerprint is trusted only for the very version it was computed from: ctime too.
    const touched = this.version !== undefined && now !== undefined && "ctimeMs" in now && now.ctimeMs !== this.version.ctimeMs;
    this.changed = !now || touched || now.size !== this.identity.size || now.mtimeMs !== this.identity.mtimeMs || this.#limit !== this.identity.size;
    this.fingerprint = (this.known instanceof Promise ? undefined : this.known) ?? this.#rehashed ?? this.hasher?.finish();
    const headers = this.#endHeaders(this.#limit, this.changed ? undefined : this.fingerprint?.hash);
    if (this.changed) headers.set(Header.STATUS, "changed");
    if (this.#first && this.plan.delta) headers.set(Header.BASE, this.plan.delta.base);
    return headers;
  }

  #currentEnd(): number {
    const range = this.#ranges[this.#range];
    return range ? Math.min(range[1], this.#limit) : this.#limit;
  }

  #nextRange(): void {
    this.#range++;
    const range = this.#ranges[this.#range];
    if (range && range[0] < this.#limit) {
      this.#offset = range[0];
    } else {
      this.#ranges = this.#ranges.slice(0, this.#range);
    }
  }

  /** The file ended early (it shrank while we sent it): send what was read, then end. */
  #shrunk(end: number): void {
    this.#limit = Math.min(this.#limit, end);
    // Reads beyond the new end will return nothing; drop them (close() no longer waits for them, but
    // FileHandle.close() does not close the descriptor under a read still running).
    const beyond = this.#ahead.filter((p) => p.offset >= this.#limit);
    this.#ahead = this.#ahead.filter((p) => p.offset < this.#limit);
    for (const p of beyond) void p.read.catch(() => undefined);
    this.#readOffset = Math.min(this.#readOffset, this.#limit);
  }

  /**
   * Keep up to 1 + readAhead reads in flight, range after range, never past the end; but no more than the
   * client's `credit` needs (at least one read): a client that grants little cannot make us hold much.
   */
  #fill(remaining: number): void {
    // Size reads by the most credit this client has granted during the transfer, not by what is left
    // at this instant (0 right after its window is used, every time): an active client keeps whole,
    // chunk-aligned reads; a client that only ever grants a little gets little read ahead for it.
    const credit = Math.max(remaining, this.#peakCredit);
    const reads = Math.max(1, Math.min(1 + this.options.readAhead, Math.ceil(credit / this.options.chunkSize)));
    while (this.handle && !this.#closed && this.#ahead.length < reads) {
      const current = this.#ranges[this.#readRange];
      if (!current) return;
      const end = Math.min(current[1], this.#limit);
      if (this.#readOffset >= end) {
        // Read ahead into the next range.
        const following = this.#ranges[this.#readRange + 1];
        if (!following || following[0] >= this.#limit) return;
        this.#readRange++;
        this.#readOffset = following[0];
        continue;
      }
      const offset = this.#readOffset;
      // A read is a chunk, or less for a client that granted less (but not tiny reads: 64 KiB at least).
      const want = Math.min(this.options.chunkSize, end - offset, Math.max(credit, MIN_READ));
      const first = this.#first && this.#ahead.length === 0 && offset === this.#offset;
      const { frame, chunkOffset } = cheezburgerFrame(this.#fields(offset, first ? this.#firstHeaders() : NO_HEADERS), want);
      const read = readFully(this.handle, frame, chunkOffset, want, offset);
      // A failed read is reported when its chunk is due; never leave a rejection unhandled meanwhile.
      read.catch(() => undefined);
      this.#ahead.push({ offset, want, frame, chunkOffset, read, hashed: false, layout: first ? "first" : "chunk" });
      this.#readOffset += want;
    }
  }

  /** Stamp the session's sequence number into a frame just before it is sent; returns the frame. */
  static stamp(frame: Buffer, sequence: bigint): Buffer {
    frame.writeBigUInt64BE(sequence, SEQUENCE_OFFSET);
    return frame;
  }
}

/** The file is not in the state it was published in: it is being written again. */
export class FileChangedError extends Error {
  override name = "FileChangedError";
  constructor(readonly vpath: string) {
    super(`${vpath} changed since it was published`);
  }
}

export function sameIdentity(a: Identity, b: Identity): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs;
}

/** The file opened is the one published: its size, mtime and (when the mount knows it) inode. */
function samePublished(opened: Identity & { ino: number; dev: number }, published: Published): boolean {
  return sameIdentity(opened, published) && (published.ino === undefined || opened.ino === published.ino) && (published.dev === undefined || opened.dev === published.dev);
}

/**
 * Read `want` bytes at `offset` into `buffer` at `at`, in as many reads as it takes; the bytes read. A
 * short read is not the end of the file (FUSE with direct_io, some network file systems return them);
 * only a read of nothing is. Taken for the end, it had the file sent as "changed", again and again.
 */
async function readFully(handle: FileHandle, buffer: Buffer, at: number, want: number, offset: number): Promise<number> {
  let got = 0;
  while (got < want) {
    const { bytesRead } = await handle.read(buffer, at + got, want - got, offset + got);
    if (bytesRead === 0) break;
    got += bytesRead;
  }
  return got;
}

/** Block indexes -> byte ranges, adjacent blocks merged. */
function mergeBlocks(blocks: readonly number[], size: number): Range[] {
  const ranges: [number, number][] = [];
  for (const block of [...blocks].sort((a, b) => a - b)) {
    const start = block * BLOCK_SIZE;
    if (start >= size) continue;
    const end = Math.min(size, start + BLOCK_SIZE);
    const last = ranges[ranges.length - 1];
    if (last && last[1] === start) last[1] = end;
    else ranges.push([start, end]);
  }
  return ranges;
}
