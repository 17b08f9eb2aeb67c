// Fingerprints: the tree hash of a file read from disk (in 4 MiB pieces, two reads in turn; or a block at a
// time on one thread, as the worker reads) must equal the tree hash of the same bytes fed in any other
// way, and a file shorter than promised is an error.

import { randomBytes } from "node:crypto";
import { open, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { BLOCK_SIZE, BlockHasher, blocksWithTreeHash, fingerprintFile, fingerprintFileSync, hashPrefix, prefixTreeHash, treeHashOfBlocks, xxh } from "../../src/digest/blocks.js";
import { tempDir } from "../helpers/tmp.js";

async function inMemory(data: Buffer, pieces: number[], kept = false): Promise<string> {
  const hasher = new BlockHasher(await xxh());
  let at = 0;
  for (const piece of pieces) {
    hasher.update(data.subarray(at, at + piece), kept);
    at += piece;
  }
  hasher.update(data.subarray(at), kept);
  return hasher.finish().hash;
}

describe("fingerprints", () => {
  it("blocks - a file read from disk has the tree hash of its bytes fed in arbitrary pieces (sizes around blocks and reads)", async () => {
    const dir = await tempDir("fmq-blocks-");
    const sizes = [0, 1, BLOCK_SIZE - 1, BLOCK_SIZE, BLOCK_SIZE + 1, 4 * BLOCK_SIZE, 9 * BLOCK_SIZE + 12345];
    for (const size of sizes) {
      const data = randomBytes(size);
      const file = path.join(dir, `f${size}`);
      await writeFile(file, data);
      const fromDisk = (await fingerprintFile(file)).hash;
      expect(fromDisk, `size ${size}`).toBe(await inMemory(data, []));
      // The worker's reader (one block at a time, on its own thread) gives the same blocks and hash.
      expect(fingerprintFileSync(await xxh(), file).fingerprint, `size ${size}`).toEqual(await fingerprintFile(file));
      // And the same for random piecewise feeding (as chunks arrive off the wire).
      // `kept` pieces (frames never written again) take the one-call path for a short first piece.
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 3 * BLOCK_SIZE }), { maxLength: 6 }), fc.boolean(), async (pieces, kept) => {
          expect(await inMemory(data, pieces, kept)).toBe(fromDisk);
        }),
        { numRuns: 10 },
      );
      await fc.assert(
        fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 5000 }), { maxLength: 4 }), async (pieces) => {
          expect(await inMemory(data, pieces, true)).toBe(fromDisk);
        }),
        { numRuns: 10 },
      );
    }
  });

  it("blocks - a fingerprint's blocks have memory of their own, not a slice of Node's shared pool (which one kept slice keeps whole)", async () => {
    const dir = await tempDir();
    for (const size of [10, BLOCK_SIZE + 1, 3 * BLOCK_SIZE]) {
      const file = path.join(dir, `f${size}`);
      await writeFile(file, randomBytes(size));
      const { blocks } = await fingerprintFile(file);
      expect(blocks.length).toBeGreaterThan(0);
      expect(blocks.buffer.byteLength).toBe(blocks.length);
      const hasher = new BlockHasher(await xxh());
      hasher.update(randomBytes(size), true);
      const fromHasher = hasher.finish().blocks;
      expect(fromHasher.buffer.byteLength).toBe(fromHasher.length);
    }
  });

  it("blocks - the number of leading block hashes a tree hash is of (an X-FMQ-Base on a listed partial), found in one streamed pass, is that of the one-shot tree hash of that many; 0 for any other hash", async () => {
    const xx = await xxh();
    await fc.assert(
      fc.asyncProperty(fc.integer({ min: 1, max: 40 }), fc.nat(), async (count, pick) => {
        const blocks = randomBytes(count * 8);
        const k = (pick % count) + 1;
        expect(blocksWithTreeHash(xx, blocks, treeHashOfBlocks(xx, blocks.subarray(0, k * 8)))).toBe(k);
        expect(blocksWithTreeHash(xx, blocks, treeHashOfBlocks(xx, randomBytes(8)))).toBe(0);
      }),
      { numRuns: 50 },
    );
    expect(blocksWithTreeHash(xx, Buffer.alloc(0), treeHashOfBlocks(xx, Buffer.alloc(0)))).toBe(0);
  });

  it("blocks - a symlink at the name is refused, not followed (only a regular file is opened: open-regular.test.ts)", async () => {
    const dir = await tempDir();
    const target = path.join(dir, "outside.bin");
    await writeFile(target, randomBytes(1000));
    await symlink(target, path.join(dir, "link.bin"));
    await expect(fingerprintFile(path.join(dir, "link.bin"))).rejects.toThrow(/not a regular file \(a symlink\)/);
    expect(fingerprintFileSync.bind(undefined, await xxh(), path.join(dir, "link.bin"))).toThrow(/not a regular file/);
  });

  it("blocks - a prefix: hashing the first N bytes equals hashing those bytes; a file shorter than N is an error", async () => {
    const dir = await tempDir("fmq-blocks-");
    const data = randomBytes(6 * BLOCK_SIZE + 7);
    const file = path.join(dir, "f");
    await writeFile(file, data);
    const handle = await open(file, "r");
    try {
      for (const length of [3 * BLOCK_SIZE, 5 * BLOCK_SIZE + 1, data.length]) {
        const hasher = new BlockHasher(await xxh());
        await hashPrefix(handle, hasher, length);
        expect(hasher.finish().hash).toBe(await inMemory(data.subarray(0, length), []));
      }
      await expect(hashPrefix(handle, new BlockHasher(await xxh()), data.length + 1)).rejects.toThrow(/shorter/);
    } finally {
      await handle.close();
    }
  });

  it("blocks - a prefix's tree hash (X-FMQ-Prefix) mid-stream, and from a whole file's fingerprint, is that of a file of just those blocks; between blocks there is none", async () => {
    const xx = await xxh();
    const data = randomBytes(5 * BLOCK_SIZE + 99);
    const whole = new BlockHasher(xx);
    whole.update(data);
    const fingerprint = whole.finish();
    for (const blocks of [1, 2, 5]) {
      const expected = await inMemory(data.subarray(0, blocks * BLOCK_SIZE), []);
      const hasher = new BlockHasher(xx);
      // (In pieces that straddle blocks: what a resumed prefix is read in.)
      for (let at = 0; at < blocks * BLOCK_SIZE; at += 300_000) hasher.update(data.subarray(at, Math.min(at + 300_000, blocks * BLOCK_SIZE)));
      expect(hasher.treeHashSoFar()).toBe(expected);
      expect(prefixTreeHash(xx, fingerprint, blocks)).toBe(expected);
      // Hashing goes on unchanged: the whole file's hash is still right.
      hasher.update(data.subarray(blocks * BLOCK_SIZE));
      expect(hasher.finish().hash).toBe(fingerprint.hash);
    }
    // Another block 0 gives another prefix hash.
    const other = Buffer.from(data);
    other[BLOCK_SIZE - 1]! ^= 1;
    expect(await inMemory(other.subarray(0, 2 * BLOCK_SIZE), [])).not.toBe(prefixTreeHash(xx, fingerprint, 2));
    const mid = new BlockHasher(xx);
    mid.update(data.subarray(0, BLOCK_SIZE + 1));
    expect(mid.treeHashSoFar()).toBeUndefined();
  });
});
