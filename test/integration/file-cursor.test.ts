// The publisher's file cursor and fingerprints computed in the background: a transfer that starts while
// its file's fingerprint is being computed sends at once and puts that fingerprint on its last chunk; if
// the background work gives nothing, the cursor hashes what it sent itself. Real files, real frames.

import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { BLOCK_SIZE, fingerprintFile, type Fingerprint } from "../../src/digest/blocks.js";
import { decode } from "../../src/protocol/codec.js";
import type { Cheezburger } from "../../src/protocol/messages.js";
import { FileCursor } from "../../src/server/file-cursor.js";
import { versionOf } from "../../src/server/fingerprints.js";
import { tempDir } from "../helpers/tmp.js";

/** Send the whole file through a cursor; returns the data chunks' bytes and the eof chunk. */
async function sendAll(cursor: FileCursor): Promise<{ data: Buffer; eof: Cheezburger; order: string[] }> {
  const parts: Buffer[] = [];
  const order: string[] = [];
  for (;;) {
    const chunk = await cursor.next(64 * 1024 * 1024);
    if (!chunk) throw new Error("no chunk with plenty of credit");
    const result = decode(chunk.frame);
    if (!result.ok || result.message.id !== "CHEEZBURGER") throw new Error("not a CHEEZBURGER");
    order.push(chunk.eof ? "eof" : "data");
    if (chunk.eof) {
      await cursor.close();
      return { data: Buffer.concat(parts), eof: result.message, order };
    }
    parts.push(Buffer.from(result.message.chunk));
  }
}

describe("file cursor with a fingerprint computed in the background", () => {
  const options = { chunkSize: 1024 * 1024, readAhead: 2, extensions: true };

  it("cursor - a fingerprint still being computed: data goes out at once, the fingerprint arrives for the eof chunk", async () => {
    const dir = await tempDir("fmq-cursor-");
    const file = path.join(dir, "big.bin");
    const content = randomBytes(5 * 1024 * 1024 + 123);
    await writeFile(file, content);
    const real = await fingerprintFile(file);
    let settle!: (f: Fingerprint | undefined) => void;
    const coming = new Promise<Fingerprint | undefined>((resolve) => (settle = resolve));
    const order: string[] = [];
    const cursor = await FileCursor.open(file, "/big.bin", { ...options, knownFingerprint: () => coming });
    // Every data chunk is available before the fingerprint exists.
    for (let i = 0; i < 6; i++) {
      const chunk = await cursor.next(64 * 1024 * 1024);
      expect(chunk?.eof).toBe(false);
      order.push("data");
    }
    setTimeout(() => {
      order.push("fingerprint");
      settle(real);
    }, 50);
    const rest = await sendAll(cursor);
    expect([...order, ...rest.order]).toEqual(["data", "data", "data", "data", "data", "data", "fingerprint", "eof"]);
    expect(rest.eof.headers.get("X-FMQ-XXH64T")).toBe(real.hash);
    expect(rest.eof.headers.has("X-FMQ-Status")).toBe(false);
    expect(cursor.fingerprint?.hash).toBe(real.hash);
    // The pass's, not this cursor's: not for the transfer to remember (the pass decided whether to keep
    // it: a pass over a file changed a moment before it began is used and not kept).
    expect(cursor.ownFingerprint).toBe(false);
    expect(cursor.readFrom).toBeLessThanOrEqual(Date.now());
  });

  it("cursor - the background work gives nothing (the file changed, or it failed): the cursor hashes what it sent", async () => {
    const dir = await tempDir("fmq-cursor-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(3 * 1024 * 1024 + 7));
    const real = await fingerprintFile(file);
    const cursor = await FileCursor.open(file, "/big.bin", { ...options, knownFingerprint: () => Promise.resolve(undefined) });
    const { eof } = await sendAll(cursor);
    expect(eof.headers.get("X-FMQ-XXH64T")).toBe(real.hash);
    expect(cursor.ownFingerprint).toBe(true);
  });

  it("cursor - a wrong fingerprint is never offered for another version: the lookup gets the version opened", async () => {
    const dir = await tempDir("fmq-cursor-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(2 * 1024 * 1024));
    const seen: { size: number; ino: number }[] = [];
    const cursor = await FileCursor.open(file, "/big.bin", {
      ...options,
      knownFingerprint: (_absolute, version) => {
        seen.push({ size: version.size, ino: version.ino });
        return undefined;
      },
    });
    const { eof } = await sendAll(cursor);
    expect(seen).toHaveLength(1);
    expect(seen[0]!.size).toBe(2 * 1024 * 1024);
    expect(eof.headers.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
    expect(cursor.ownFingerprint).toBe(true);
  });

  it("cursor - a delta planned for one version of the file and opened on another (same size and mtime, another ctime) goes whole", async () => {
    const dir = await tempDir("fmq-cursor-");
    const file = path.join(dir, "big.bin");
    const content = randomBytes(3 * BLOCK_SIZE);
    await writeFile(file, content);
    const real = await fingerprintFile(file);
    const version = await versionOf(file);
    const delta = { blocks: [1], base: "0".repeat(16), fingerprint: real };
    // The version planned for: block 1 alone goes, on top of the base.
    const planned = await sendAll(await FileCursor.open(file, "/big.bin", options, { delta: { ...delta, version } }));
    expect(planned.data.equals(content.subarray(BLOCK_SIZE, 2 * BLOCK_SIZE))).toBe(true);
    // Another version (here its ctime): the whole file, hashed as read, with no base.
    const other = await FileCursor.open(file, "/big.bin", options, { delta: { ...delta, version: { ...version, ctimeMs: version.ctimeMs - 1 } } });
    const whole = await sendAll(other);
    expect(whole.data.equals(content)).toBe(true);
    expect(whole.eof.headers.get("X-FMQ-XXH64T")).toBe(real.hash);
    expect(other.ownFingerprint).toBe(true);
  });

  it("cursor - a fingerprint known when the cursor opened (remembered, or a delta's) is not its own to remember", async () => {
    const dir = await tempDir("fmq-cursor-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(2 * 1024 * 1024));
    const real = await fingerprintFile(file);
    const cursor = await FileCursor.open(file, "/big.bin", { ...options, knownFingerprint: () => real });
    const { eof } = await sendAll(cursor);
    expect(eof.headers.get("X-FMQ-XXH64T")).toBe(real.hash);
    expect(cursor.ownFingerprint).toBe(false);
  });

  it("cursor - a resume says the tree hash of what the client should hold (X-FMQ-Prefix), the fingerprint known, coming, or not kept; a transfer from byte 0 or a plain one says none", async () => {
    const dir = await tempDir("fmq-cursor-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(5 * BLOCK_SIZE + 123));
    const real = await fingerprintFile(file);
    // The client held 2 blocks and a bit: resumed at 2 blocks, whose tree hash is that of a file of them.
    const prefix = (await fingerprintFile(file, 2 * BLOCK_SIZE)).hash;
    const first = async (opts: typeof options & { knownFingerprint?: () => Fingerprint | Promise<Fingerprint | undefined> | undefined }, start?: number) => {
      const cursor = await FileCursor.open(file, "/big.bin", opts, start === undefined ? {} : { start });
      const chunk = await cursor.next(64 * 1024 * 1024);
      await cursor.close();
      const decoded = decode(chunk!.frame);
      if (!decoded.ok || decoded.message.id !== "CHEEZBURGER") throw new Error("not a CHEEZBURGER");
      return { offset: Number(decoded.message.offset), prefix: decoded.message.headers.get("X-FMQ-Prefix") };
    };
    const start = 2 * BLOCK_SIZE + 4096;
    expect(await first({ ...options, knownFingerprint: () => undefined }, start)).toEqual({ offset: 2 * BLOCK_SIZE, prefix });
    expect(await first({ ...options, knownFingerprint: () => real }, start)).toEqual({ offset: 2 * BLOCK_SIZE, prefix });
    // Coming, and not there yet: not waited for (the first chunk goes without it).
    expect(await first({ ...options, knownFingerprint: () => new Promise<undefined>(() => undefined) }, start)).toEqual({ offset: 2 * BLOCK_SIZE, prefix: undefined });
    expect(await first({ ...options, knownFingerprint: () => real })).toEqual({ offset: 0, prefix: undefined });
    expect(await first({ ...options, extensions: false }, start)).toEqual({ offset: 2 * BLOCK_SIZE, prefix: undefined });
  });

  it("cursor - a resume whose fingerprint comes after its first chunk says the prefix's hash on the next chunk, once; none if the fingerprint never comes", async () => {
    const dir = await tempDir("fmq-cursor-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(6 * BLOCK_SIZE));
    const real = await fingerprintFile(file);
    const prefix = (await fingerprintFile(file, 2 * BLOCK_SIZE)).hash;
    const prefixes = async (fingerprint: Fingerprint | undefined) => {
      let settle!: (f: Fingerprint | undefined) => void;
      const coming = new Promise<Fingerprint | undefined>((resolve) => (settle = resolve));
      const cursor = await FileCursor.open(file, "/big.bin", { ...options, knownFingerprint: () => coming }, { start: 2 * BLOCK_SIZE });
      const said: (string | undefined)[] = [];
      for (let i = 0; ; i++) {
        const chunk = await cursor.next(64 * 1024 * 1024);
        const decoded = decode(chunk!.frame);
        if (!decoded.ok || decoded.message.id !== "CHEEZBURGER") throw new Error("not a CHEEZBURGER");
        if (chunk!.eof) break;
        said.push(decoded.message.headers.get("X-FMQ-Prefix"));
        if (i === 0) {
          settle(fingerprint);
          // (Taken up when its promise settles: a turn of the event loop, as between a server's chunks.)
          await new Promise((resolve) => setImmediate(resolve));
        }
      }
      await cursor.close();
      return said;
    };
    expect(await prefixes(real)).toEqual([undefined, prefix, undefined, undefined]);
    expect(await prefixes(undefined)).toEqual([undefined, undefined, undefined, undefined]);
  });
});
