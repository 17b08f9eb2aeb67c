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
});
