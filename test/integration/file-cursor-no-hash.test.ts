// A transfer whose file cannot be fingerprinted (the background pass gave nothing, and reading the file
// again fails: an I/O error, injected here, since a real file system will not fail on cue) must not end
// as if vouched for: the end would carry no tree hash and no "changed", and a client would keep bytes
// nobody checked. It fails instead (the server says the file was not sent; the client resumes it later).

import { randomBytes } from "node:crypto";
import { writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { FileCursor } from "../../src/server/file-cursor.js";
import { tempDir } from "../helpers/tmp.js";

// Reading the file again to hash it fails (hashPrefix is what the cursor hashes a file with afresh).
vi.mock("../../src/digest/blocks.js", async (original) => ({
  ...(await original<typeof import("../../src/digest/blocks.js")>()),
  hashPrefix: () => Promise.reject(Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" })),
}));

describe("file cursor without a fingerprint", () => {
  it("cursor - no fingerprint from the background pass and none from reading again: the eof step fails, no end without a hash", async () => {
    const file = path.join(await tempDir("fmq-cursor-"), "big.bin");
    await writeFile(file, randomBytes(3 * 1024 * 1024 + 7));
    const cursor = await FileCursor.open(file, "/big.bin", { chunkSize: 1024 * 1024, readAhead: 2, extensions: true, knownFingerprint: () => Promise.resolve(undefined) });
    try {
      let data = 0;
      let failure: unknown;
      for (;;) {
        const chunk = await cursor.next(64 * 1024 * 1024).catch((error: unknown) => ((failure = error), undefined));
        if (!chunk) break;
        expect(chunk.eof).toBe(false);
        data++;
      }
      expect(data).toBe(4);
      expect(String(failure)).toMatch(/its tree hash could not be computed/);
    } finally {
      await cursor.close();
    }
  });
});
