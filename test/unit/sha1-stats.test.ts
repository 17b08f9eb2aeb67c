// RFC 35 SHA-1s on the server: the version a digest is of comes from the worker that read the file (its
// descriptor), and a digest already known is checked against the file by the worker too, so a client
// listing 10,000 SHA-1s costs the server's busy main thread no stat per file, the first time or later.
//
// The stats are counted by mocking node:fs/promises for this file only (hence a file of its own): every
// call is the real one, counted.

import { createHash } from "node:crypto";
import { realpath, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { Fingerprints } from "../../src/server/fingerprints.js";
import { tempDir } from "../helpers/tmp.js";

const counted = vi.hoisted(() => ({ stats: [] as string[] }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const stat = ((file: string, ...rest: unknown[]) => {
    counted.stats.push(String(file));
    return (actual.stat as (...args: unknown[]) => unknown)(file, ...rest);
  }) as typeof actual.stat;
  return { ...actual, default: { ...actual, stat }, stat };
});

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
    const fingerprints = new Fingerprints();
    try {
      counted.stats.length = 0;
      const digests = await Promise.all(files.map((file) => fingerprints.sha1(file, root)));
      expect(digests).toEqual(files.map((_, i) => createHash("sha1").update(`content ${i}`).digest("hex").toUpperCase()));
      expect(counted.stats).toEqual([]);

      // Known now: checked against the file as it is, in the worker.
      expect(await Promise.all(files.map((file) => fingerprints.sha1(file, root)))).toEqual(digests);
      expect(counted.stats).toEqual([]);
    } finally {
      fingerprints.close();
    }
  });
});
