// The fingerprint worker: the same result as hashing on the main thread, the main thread left free
// meanwhile, closing that stops a long pass, and failures that reject without stopping the next request.

import { open, writeFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { performance } from "node:perf_hooks";
import { describe, expect, it } from "vitest";
import { fingerprintFile } from "../../src/digest/blocks.js";
import { FingerprintThread } from "../../src/digest/fingerprint-thread.js";
import { makeFifo, openHere } from "../helpers/files.js";
import { tempDir } from "../helpers/tmp.js";
import { outcomeWithin, waitFor } from "../helpers/wait.js";

describe("fingerprint thread", () => {
  it("fingerprint thread - gives what the main thread computes; a missing file fails that request only", async () => {
    const dir = await tempDir("fmq-fpt-");
    const file = path.join(dir, "data.bin");
    await writeFile(file, randomBytes(5.5 * 1024 * 1024));
    const thread = new FingerprintThread();
    try {
      await expect(thread.fingerprint(path.join(dir, "missing.bin"))).rejects.toThrow(/ENOENT/);
      expect((await thread.fingerprint(file)).fingerprint).toEqual(await fingerprintFile(file));
    } finally {
      await thread.close();
    }
  });

  it("fingerprint thread - a FIFO where a file was (swapped since it was published) fails at once, in the worker and on this thread", async () => {
    const dir = await tempDir("fmq-fpt-");
    const fifo = path.join(dir, "swapped.bin");
    const { release } = makeFifo(fifo);
    const data = path.join(dir, "data.bin");
    await writeFile(data, randomBytes(2 * 1024 * 1024));
    const settles = (attempt: Promise<unknown>) => outcomeWithin(attempt, 3000, release);
    const thread = new FingerprintThread();
    try {
      expect(await settles(thread.fingerprint(fifo))).toMatch(/not a regular file/);
      // The worker is free for the next file.
      expect((await thread.fingerprint(data)).fingerprint).toEqual(await fingerprintFile(data));
    } finally {
      await thread.close();
    }
    expect(await settles(fingerprintFile(fifo))).toMatch(/not a regular file/);
  });

  it("fingerprint thread - the main thread's event loop stays idle while a 16 GiB file is hashed; closing stops it", async () => {
    const file = path.join(await tempDir("fmq-fpt-"), "huge.bin");
    const handle = await open(file, "w");
    await handle.truncate(16 * 1024 ** 3); // sparse: reads cost no disk, hashing takes seconds
    await handle.close();
    const thread = new FingerprintThread();
    // How busy this loop is anyway (the test runner's own work, more on a loaded machine: a CI run
    // measured 0.067 against 0.02 allowed once), over the same span just before.
    const idleStart = performance.eventLoopUtilization();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idle = performance.eventLoopUtilization(idleStart).utilization;
    try {
      const pass = thread.fingerprint(file);
      pass.catch(() => undefined);
      // (Started: the worker has the file open. A bare 200 ms let a late start look like an idle loop.)
      await waitFor(() => openHere(file) > 0, "the worker reading the file", 10_000);
      const before = performance.eventLoopUtilization();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const busy = performance.eventLoopUtilization(before).utilization;
      // Measured: 0.0006-0.0009 with the worker on a quiet machine; hashing on this thread (reads in the
      // thread pool, the hashing here) kept the loop busy 0.13 of the time.
      expect(busy - idle).toBeLessThan(0.05);
      const closedAt = Date.now();
      const closing = thread.close();
      await expect(pass).rejects.toThrow();
      await closing;
      expect(Date.now() - closedAt).toBeLessThan(2000);
    } finally {
      await thread.close();
    }
  });
});
