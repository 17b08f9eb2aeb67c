// File fingerprints for our FILEMQ extensions: the XXH64 of every 1 MiB block, and the file's hash as the
// XXH64 of those block hashes (a two-level tree). Blocks let a changed file be sent as its changed blocks
// only; the tree hash lets a receiver verify a file it assembled from several transfers (resumed, delta)
// without anyone hashing it twice. XXH64 is for corruption, not for security (CURVE protects the wire).

import { closeSync, fstatSync, readSync } from "node:fs";
import type { FileHandle } from "node:fs/promises";
import xxhash, { type XXHashAPI } from "xxhash-wasm";
import { openRegular, openRegularSync } from "./open-regular.js";
import { sameVersion, versionOfStats, type Version } from "./version.js";

/** Block size of fingerprints: a protocol constant of the extension, independent of the chunk size. */
export const BLOCK_SIZE = 1024 * 1024;

let api: Promise<XXHashAPI> | undefined;

/** The xxhash-wasm instance (created once: each instance is its own WebAssembly module). */
export function xxh(): Promise<XXHashAPI> {
  api ??= xxhash();
  return api;
}

export interface Fingerprint {
  /** XXH64 of each block, 8 bytes big-endian per block. */
  readonly blocks: Buffer;
  /** XXH64 of `blocks`, 16 lowercase hex digits. */
  readonly hash: string;
}

/** Hashes data fed in order, block by block. */
export class BlockHasher {
  readonly #hashes: bigint[] = [];
  #partial: ReturnType<XXHashAPI["create64"]> | undefined;
  #partialLength = 0;
  /** A short first piece of a block, not hashed yet (see update). */
  #waiting: Uint8Array | undefined;
  #length = 0;

  constructor(private readonly xx: XXHashAPI) {}

  /** A hasher that has hashed the whole blocks whose hashes are `blocks` (8 bytes each, as fingerprints hold them). */
  static resumed(xx: XXHashAPI, blocks: Buffer): BlockHasher {
    const hasher = new BlockHasher(xx);
    for (let at = 0; at + 8 <= blocks.length; at += 8) hasher.#hashes.push(blocks.readBigUInt64BE(at));
    hasher.#length = hasher.#hashes.length * BLOCK_SIZE;
    return hasher;
  }

  /** The hashes of the whole blocks hashed so far (8 bytes each), not counting a block begun. */
  wholeBlocks(): Buffer {
    return blocksBuffer(this.#hashes);
  }

  /** Bytes hashed so far. */
  get length(): number {
    return this.#length;
  }

  /**
   * Hash the next piece. `kept`: the caller never changes these bytes again (a frame sent or received),
   * so a short first piece may be kept by reference until we know whether more follows: a small file
   * is then one piece hashed in one call at finish(), a fraction of the cost of a streaming state
   * (create64 + update + digest) per file. Reused read buffers must not pass `kept`.
   */
  update(data: Uint8Array, kept = false): void {
    let at = 0;
    if (data.length === 0) return;
    this.#length += data.length;
    if (this.#waiting) {
      const waiting = this.#waiting;
      this.#waiting = undefined;
      this.#partial = this.xx.create64();
      this.#partial.update(waiting);
      this.#partialLength = waiting.length;
    } else if (kept && !this.#partial && data.length < BLOCK_SIZE) {
      this.#waiting = data;
      return;
    }
    // Finish a block begun by an earlier piece.
    if (this.#partial) {
      const take = Math.min(BLOCK_SIZE - this.#partialLength, data.length);
      this.#partial.update(data.subarray(0, take));
      this.#partialLength += take;
      at = take;
      if (this.#partialLength === BLOCK_SIZE) this.#closeBlock();
    }
    // Whole blocks: one-shot hashing, the fast path (pieces are usually block-aligned 1 MiB reads).
    while (data.length - at >= BLOCK_SIZE) {
      this.#hashes.push(this.xx.h64Raw(data.subarray(at, at + BLOCK_SIZE)));
      at += BLOCK_SIZE;
    }
    if (at < data.length) {
      this.#partial = this.xx.create64();
      this.#partial.update(data.subarray(at));
      this.#partialLength = data.length - at;
    }
  }

  /**
   * The tree hash of what was hashed so far, as a file of just those bytes would have it; only at a
   * block boundary (undefined elsewhere). Hashing goes on unchanged (X-FMQ-Prefix: a resumed prefix).
   */
  treeHashSoFar(): string | undefined {
    if (this.#partial || this.#waiting) return undefined;
    return fingerprintOf(this.xx, blocksBuffer(this.#hashes)).hash;
  }

  finish(): Fingerprint {
    if (this.#waiting) {
      this.#hashes.push(this.xx.h64Raw(this.#waiting));
      this.#waiting = undefined;
    }
    if (this.#partial) this.#closeBlock();
    return fingerprintOf(this.xx, blocksBuffer(this.#hashes));
  }

  #closeBlock(): void {
    this.#hashes.push(this.#partial!.digest());
    this.#partial = undefined;
    this.#partialLength = 0;
  }
}

function blocksBuffer(hashes: readonly bigint[]): Buffer {
  // (Memory of its own: a small file's few bytes of blocks were a slice of Node's shared 8 KiB pool,
  // which the server's fingerprint memory then kept whole, one pool per remembered file: up to 160 MB
  // for its 20,000 entries, a review.)
  const out = Buffer.allocUnsafeSlow(hashes.length * 8);
  hashes.forEach((h, i) => out.writeBigUInt64BE(h, i * 8));
  return out;
}

/** A tree hash as it is written (X-FMQ-Hash, X-FMQ-Base...): 16 lowercase hex digits. */
function hex64(hash: bigint): string {
  return hash.toString(16).padStart(16, "0");
}

/** A tree hash as written, as a number; undefined if it is not written so (from the wire: anything). */
function parseHex64(hash: string): bigint | undefined {
  return /^[0-9a-f]{16}$/.test(hash) ? BigInt(`0x${hash}`) : undefined;
}

export function fingerprintOf(xx: XXHashAPI, blocks: Buffer): Fingerprint {
  return { blocks, hash: hex64(xx.h64Raw(blocks)) };
}

/**
 * Fingerprint the first `length` bytes of a regular file (all of it by default), reading block by block.
 * A symlink at the name is refused, not followed (openRegular).
 */
export async function fingerprintFile(file: string, length?: number, signal?: AbortSignal): Promise<Fingerprint> {
  const xx = await xxh();
  const hasher = new BlockHasher(xx);
  const { handle, stats } = await openRegular(file);
  try {
    await hashPrefix(handle, hasher, length ?? stats.size, signal);
  } finally {
    await handle.close();
  }
  return hasher.finish();
}

/**
 * fingerprintFile for a thread with nothing else to do (the fingerprint worker): it reads on its own
 * thread, one block at a time into one buffer, and hashes each block while it is still in this core's
 * cache. Measured on 1 GiB (warm page cache): 0.22-0.24 CPU-s against 0.32-0.41 for fingerprintFile's
 * reads in the thread pool, in the same wall time; on two cores shared with the transfer it pays for, the
 * CPU is what counts. Never call it on a thread that serves a socket: it blocks until the file is read.
 * With the version read (of the descriptor; a file that changed while it was read throws).
 */
export function fingerprintFileSync(xx: XXHashAPI, file: string): { fingerprint: Fingerprint; version: Version } {
  const hasher = new BlockHasher(xx);
  const { fd, stats } = openRegularSync(file);
  try {
    const length = stats.size;
    const buffer = Buffer.allocUnsafe(Math.min(BLOCK_SIZE, Math.max(length, 1)));
    for (let at = 0; at < length; ) {
      const bytesRead = readSync(fd, buffer, 0, Math.min(buffer.length, length - at), at);
      if (bytesRead === 0) throw new Error(`file shorter than ${length} bytes`);
      hasher.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
    // The version of the file read, from its descriptor: the caller compares it with the version it asked
    // for, and a name that led to another file for a moment (a directory on the way swapped, then put
    // back) gives another inode, not that version's fingerprint.
    const version = versionOfStats(stats);
    if (!sameVersion(versionOfStats(fstatSync(fd)), version)) throw new Error(`${file}: changed while it was read`);
    return { fingerprint: hasher.finish(), version };
  } finally {
    closeSync(fd);
  }
}

/**
 * Feed the first `length` bytes of an open file to `hasher`; throws if the file is shorter. Two buffers
 * take turns: the next piece is read (in the thread pool) while this one is hashed, so a pass costs about
 * the hashing alone rather than reading plus hashing (1 GiB: 0.52 s before, measured here).
 */
export async function hashPrefix(handle: FileHandle, hasher: BlockHasher, length: number, signal?: AbortSignal): Promise<void> {
  const size = Math.min(4 * BLOCK_SIZE, Math.max(length, 1));
  const buffers = [Buffer.allocUnsafe(size), Buffer.allocUnsafe(size)] as const;
  const readAt = (which: 0 | 1, at: number) => {
    const read = handle.read(buffers[which], 0, Math.min(size, length - at), at);
    read.catch(() => undefined); // reported when awaited; never unhandled meanwhile
    return read;
  };
  let which: 0 | 1 = 0;
  let at = 0;
  let pending = length > 0 ? readAt(which, 0) : undefined;
  try {
    while (pending) {
      const { bytesRead } = await pending;
      signal?.throwIfAborted();
      if (bytesRead === 0) throw new Error(`file shorter than ${length} bytes`);
      const current = buffers[which];
      at += bytesRead;
      which = which === 0 ? 1 : 0;
      pending = at < length ? readAt(which, at) : undefined;
      hasher.update(current.subarray(0, bytesRead));
    }
  } finally {
    // Never leave a read running into a buffer (or a handle about to be closed) after we return.
    await pending?.catch(() => undefined);
  }
}

/** The tree hash of a file whose blocks' hashes are `blocks` (8 bytes each): a partial known by its blocks, as a delta's base. */
export function treeHashOfBlocks(xx: XXHashAPI, blocks: Buffer): string {
  return fingerprintOf(xx, blocks).hash;
}

/**
 * How many of the first block hashes of `blocks` have the tree hash `hash` (the most, should two: a
 * collision of 64-bit hashes), or 0 if none. One pass, the tree hash after each block taken from a
 * streamed XXH64 (which gives what h64Raw of the same bytes does). 4,000 blocks, none matching: about
 * 7 ms here (4,000 tree hashes of the prefixes, 64 MB hashed: 17 ms).
 */
export function blocksWithTreeHash(xx: XXHashAPI, blocks: Buffer, hash: string): number {
  // (Compared as numbers: no string made per block. A hash not written as ours are matches none.)
  const wanted = parseHex64(hash);
  if (wanted === undefined) return 0;
  const running = xx.create64();
  let found = 0;
  for (let count = 1; count * 8 <= blocks.length; count++) {
    running.update(blocks.subarray((count - 1) * 8, count * 8));
    if (running.digest() === wanted) found = count;
  }
  return found;
}

/** The tree hash of a file's first `count` blocks, from its fingerprint (X-FMQ-Prefix). */
export function prefixTreeHash(xx: XXHashAPI, fingerprint: Fingerprint, count: number): string {
  return treeHashOfBlocks(xx, fingerprint.blocks.subarray(0, count * 8));
}

/** Indexes of blocks that differ between two block lists (blocks beyond the shorter list differ). */
export function changedBlocks(ours: Buffer, theirs: Buffer): number[] {
  const count = ours.length / 8;
  const changed: number[] = [];
  for (let i = 0; i < count; i++) {
    if (i * 8 + 8 > theirs.length || ours.compare(theirs, i * 8, i * 8 + 8, i * 8, i * 8 + 8) !== 0) changed.push(i);
  }
  return changed;
}
