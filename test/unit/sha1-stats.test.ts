// RFC 35 SHA-1s on the server: the version a digest is of comes from the worker that read the file (its
// descriptor), and a digest already known is checked against the file by the worker too, so a client
// listing 10,000 SHA-1s costs the server's busy main thread no stat per file, the first time or later.
//
// The stats are counted by mocking node:fs/promises and node:fs for this file only (hence a file of its
// own): every call is the real one, counted.

import { createHash } from "node:crypto";
import { realpath, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { FingerprintThread } from "../../src/digest/fingerprint-thread.js";
import { Fingerprints } from "../../src/server/fingerprints.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const counted = vi.hoisted(() => ({ stats: [] as string[] }));

/** `actual` with each of `names` counted (by the path or descriptor it is given), then called as it is. */
function countedModule<T extends object>(actual: T, names: readonly string[]): T {
  const replaced = Object.fromEntries(
    names.map((name) => [
      name,
      (first: unknown, ...rest: unknown[]) => {
        counted.stats.push(`${name} ${String(first)}`);
        return (actual[name as keyof T] as (...args: unknown[]) => unknown)(first, ...rest);
      },
    ]),
  );
  return { ...actual, default: { ...actual, ...replaced }, ...replaced };
}

// (Every stat there is, asynchronous or not: a statSync on the main thread blocks it just the same.)
vi.mock("node:fs/promises", async (importOriginal) => countedModule(await importOriginal<typeof import("node:fs/promises")>(), ["stat", "lstat"]));
vi.mock("node:fs", async (importOriginal) => countedModule(await importOriginal<typeof import("node:fs")>(), ["stat", "lstat", "statSync", "lstatSync", "fstat", "fstatSync"]));

describe("sha1 stats", () => {
  it("sha1 stats - the SHA-1s of 20 files cost the main thread no stat, computed or known", async () => {
    const root = await realpath(await tempDir("fmq-sha1-"));
    const files = await Promise.all(
      Array.from({ length: 20 }, async (_, i) => {
        const file = path.join(root, `f${i}.txt`);
        await writeFile(file, `content ${i}`);
        return file;
      }),
    );
    // Changed long enough ago for a digest to be remembered (see isRacy): else the second round below
    // would hash them again instead of checking what is known.
    const newest = Date.now();
    await waitFor(() => Date.now() - newest > 40, "the files' changes to be 40 ms old", 2000);
    const fingerprints = new Fingerprints();
    const asked = vi.spyOn(FingerprintThread.prototype, "sha1");
    try {
      counted.stats.length = 0;
      const digests = await Promise.all(files.map((file) => fingerprints.sha1(file, root)));
      expect(digests).toEqual(files.map((_, i) => createHash("sha1").update(`content ${i}`).digest("hex").toUpperCase()));
      expect(counted.stats).toEqual([]);

      // Known now: checked against the file as it is, in the worker.
      expect(await Promise.all(files.map((file) => fingerprints.sha1(file, root)))).toEqual(digests);
      expect(asked).toHaveBeenCalledTimes(40);
      expect(asked.mock.calls.slice(20).every(([, , known]) => known !== undefined)).toBe(true);
      expect(counted.stats).toEqual([]);
    } finally {
      asked.mockRestore();
      fingerprints.close();
    }
  });
});
