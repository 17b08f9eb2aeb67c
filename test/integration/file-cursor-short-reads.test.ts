// A file system that returns short reads (FUSE with direct_io, some network file systems) before the end
// of a file: the cursor reads on, and sends the file whole and unchanged. Taken for the end, a short read
// had the file sent as "changed" (it shrank, the cursor thought), again at every attempt. Short reads are
// injected here (a wrapper around the opened file's handle): local file systems do not return them.

import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { fingerprintFile } from "../../src/digest/blocks.js";
import { decode } from "../../src/protocol/codec.js";
import { FileCursor } from "../../src/server/file-cursor.js";
import { tempDir } from "../helpers/tmp.js";

let shortReads = 0;
vi.mock("../../src/digest/open-regular.js", async (original) => {
  const real = await original<typeof import("../../src/digest/open-regular.js")>();
  return {
    ...real,
    openRegular: async (file: string) => {
      const opened = await real.openRegular(file);
      const read = opened.handle.read.bind(opened.handle);
      // At most 100,000 bytes a read, whatever was asked.
      Object.defineProperty(opened.handle, "read", {
        value: (buffer: Buffer, at: number, length: number, position: number) => {
          if (length > 100_000) shortReads++;
          return read(buffer, at, Math.min(length, 100_000), position);
        },
      });
      return opened;
    },
  };
});

describe("file cursor on a file system with short reads", () => {
  it("cursor - short reads before the end: the file goes whole, with its hash, not as 'changed'", async () => {
    const file = path.join(await tempDir("fmq-cursor-"), "big.bin");
    const content = randomBytes(3 * 1024 * 1024 + 7);
    await writeFile(file, content);
    const cursor = await FileCursor.open(file, "/big.bin", { chunkSize: 1024 * 1024, readAhead: 2, extensions: true });
    const parts: Buffer[] = [];
    let eofHeaders: Map<string, string | Buffer> | undefined;
    try {
      for (;;) {
        const chunk = await cursor.next(64 * 1024 * 1024);
        if (!chunk) throw new Error("no chunk with plenty of credit");
        const result = decode(chunk.frame);
        if (!result.ok || result.message.id !== "CHEEZBURGER") throw new Error("not a CHEEZBURGER");
        if (chunk.eof) {
          eofHeaders = result.message.headers as Map<string, string | Buffer>;
          break;
        }
        parts.push(Buffer.from(result.message.chunk));
      }
    } finally {
      await cursor.close();
    }
    expect(shortReads).toBeGreaterThan(0);
    expect(Buffer.concat(parts).equals(content)).toBe(true);
    expect(eofHeaders?.has("X-FMQ-Status")).toBe(false);
    expect(eofHeaders?.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
  });
});
