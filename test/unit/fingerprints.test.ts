// The server's fingerprint memory: a published big file is fingerprinted once in the background and
// found again for exactly that version; another version is not trusted; closing stops a long hash.

import { mkdir, open, readFile, realpath, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { createHash, randomBytes } from "node:crypto";
import path from "node:path";
import { statSync } from "node:fs";
import { describe, expect, it, vi, type MockInstance } from "vitest";
import { fingerprintFile } from "../../src/digest/blocks.js";
import { FingerprintThread } from "../../src/digest/fingerprint-thread.js";
import { sha1FileSync } from "../../src/digest/sha1.js";
import { isRacy } from "../../src/digest/version.js";
import { Fingerprints, PREPARE_MIN_SIZE, versionOf } from "../../src/server/fingerprints.js";
import { makeFifo, openHere } from "../helpers/files.js";
import { tempDir } from "../helpers/tmp.js";
import { outcomeWithin, waitFor } from "../helpers/wait.js";

/** A 16 GiB sparse file: hashing it takes seconds, so a pass over it is still running when we look. */
async function hugeSparseFile(): Promise<string> {
  const file = path.join(await tempDir("fmq-fp-"), "huge.bin");
  const handle = await open(file, "w");
  await handle.truncate(16 * 1024 ** 3);
  await handle.close();
  return file;
}

/**
 * Until the file's last change is older than a digest's racy window (RACY_MS in src/digest/version.ts, 20 ms):
 * a digest of a file changed a moment ago is not remembered.
 */
async function pastRacyWindow(file: string): Promise<void> {
  const { mtimeMs, ctimeMs } = statSync(file);
  await waitFor(() => Date.now() - Math.max(mtimeMs, ctimeMs) > 40, "the file's change to be 40 ms old", 2000);
}

/** Run `body` with a Fingerprints whose worker requests are recorded (FingerprintThread.sha1 spied on). */
async function withAskedWorker(body: (fingerprints: Fingerprints, asked: MockInstance<FingerprintThread["sha1"]>) => Promise<void>): Promise<void> {
  const asked = vi.spyOn(FingerprintThread.prototype, "sha1");
  const fingerprints = new Fingerprints();
  try {
    await body(fingerprints, asked);
  } finally {
    asked.mockRestore();
    fingerprints.close();
  }
}

describe("fingerprints", () => {
  it("fingerprints - sha1() (RFC 35's digest) of a file; a FIFO where a file was fails at once", async () => {
    const dir = await tempDir("fmq-fp-");
    const file = path.join(dir, "data.bin");
    const data = randomBytes(3 * 1024 * 1024 + 5);
    await writeFile(file, data);
    const fifo = path.join(dir, "swapped.bin");
    const { release } = makeFifo(fifo);
    const fingerprints = new Fingerprints();
    try {
      const root = await realpath(dir);
      // Clients asking at once share one pass.
      const first = fingerprints.sha1(file, root);
      expect(fingerprints.sha1(file, root)).toBe(first);
      expect(await first).toBe(createHash("sha1").update(data).digest("hex").toUpperCase());
      const outcome = await outcomeWithin(fingerprints.sha1(fifo, root), 3000, release);
      expect(outcome).toMatch(/not a regular file/);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - sha1() is remembered for the version the worker hashed, and the worker checks it: still that version it is not read again; rewritten (size and mtime put back) it is", async () => {
    const dir = await tempDir("fmq-fp-");
    const root = await realpath(dir);
    const file = path.join(root, "small.txt");
    await writeFile(file, "first content");
    await pastRacyWindow(file);
    const sha1 = (text: string) => createHash("sha1").update(text).digest("hex").toUpperCase();
    await withAskedWorker(async (fingerprints, asked) => {
      expect(await fingerprints.sha1(file, root)).toBe(sha1("first content"));
      expect(asked.mock.calls[0]![2]).toBeUndefined();
      // Asked again: the worker is given what is known, for the version it was computed for.
      expect(await fingerprints.sha1(file, root)).toBe(sha1("first content"));
      const first = await versionOf(file);
      expect(asked.mock.calls[1]![2]).toEqual({ digest: sha1("first content"), version: first });

      // Same size, mtime set back: another version all the same (ctime), so hashed again.
      await writeFile(file, "other content");
      await utimes(file, new Date(first.mtimeMs), new Date(first.mtimeMs));
      await pastRacyWindow(file);
      expect(await fingerprints.sha1(file, root)).toBe(sha1("other content"));
      expect(await fingerprints.sha1(file, root)).toBe(sha1("other content"));
      expect(asked.mock.calls[3]![2]).toEqual({ digest: sha1("other content"), version: await versionOf(file) });
    });
  });

  it("fingerprints - a SHA-1 known through one mount's root is not taken as known through another's (nested mounts)", async () => {
    const outer = await realpath(await tempDir("fmq-fp-"));
    const inner = path.join(outer, "pub");
    await mkdir(inner);
    const file = path.join(inner, "f.txt");
    await writeFile(file, "content");
    await pastRacyWindow(file);
    await withAskedWorker(async (fingerprints, asked) => {
      const digest = await fingerprints.sha1(file, outer);
      expect(await fingerprints.sha1(file, inner)).toBe(digest);
      // Checked against the inner root by a read of its own, not given the outer one's answer.
      expect(asked.mock.calls[1]![1]).toBe(inner);
      expect(asked.mock.calls[1]![2]).toBeUndefined();
      // Through the inner root again: known now, for that root.
      await fingerprints.sha1(file, inner);
      expect(asked.mock.calls[2]![2]).toEqual({ digest, version: await versionOf(file) });
    });
  });

  it("fingerprints - sha1FileSync() takes a known digest for the version it is of without reading the file, and reads a file that is another version", async () => {
    const root = await realpath(await tempDir("fmq-fp-"));
    const file = path.join(root, "data.txt");
    await writeFile(file, "content");
    const real = createHash("sha1").update("content").digest("hex").toUpperCase();
    const version = await versionOf(file);
    await pastRacyWindow(file);
    expect(sha1FileSync(file, root)).toEqual({ digest: real, version });
    // A digest that no read could give: returned as it is, so the file was not read.
    const made = { digest: "F".repeat(40), version };
    expect(sha1FileSync(file, root, made)).toBe(made);
    // For any other version (here another inode), the file is read.
    expect(sha1FileSync(file, root, { digest: "F".repeat(40), version: { ...version, ino: version.ino + 1 } })).toEqual({ digest: real, version });
  });

  it("fingerprints - a SHA-1 of a file changed a moment before it was read is used but not remembered (a rewrite in the same clock tick would leave its version as it was)", async () => {
    // (Found by review: that rewrite's new content was then answered with the old digest, unread.)
    const root = await realpath(await tempDir("fmq-fp-"));
    const file = path.join(root, "f.txt");
    await writeFile(file, "f");
    const version = await versionOf(file);
    expect(isRacy({ mtimeMs: 1_000, ctimeMs: 1_005 }, 1_020)).toBe(true);
    expect(isRacy({ mtimeMs: 1_000, ctimeMs: 1_005 }, 1_030)).toBe(false);
    // A file system whose times move once a second (both whole seconds): a same-size rewrite within the
    // next two leaves the version as it was (a review: remembered 460 ms after, it was answered for good).
    expect(isRacy({ mtimeMs: 10_000, ctimeMs: 10_000 }, 10_460)).toBe(true);
    expect(isRacy({ mtimeMs: 10_000, ctimeMs: 10_000 }, 11_990)).toBe(true);
    expect(isRacy({ mtimeMs: 10_000, ctimeMs: 10_000 }, 12_000)).toBe(false);
    expect(isRacy({ mtimeMs: 10_000, ctimeMs: 10_000.5 }, 10_460)).toBe(false);
    for (const racy of [true, false]) {
      await withAskedWorker(async (fingerprints, asked) => {
        // The worker's answer, as it gives it for a file changed that recently, or not.
        asked.mockResolvedValue({ digest: "A".repeat(40), version, ...(racy ? { racy } : {}) });
        expect(await fingerprints.sha1(file, root)).toBe("A".repeat(40));
        await fingerprints.sha1(file, root);
        expect(asked.mock.calls[1]![2]).toEqual(racy ? undefined : { digest: "A".repeat(40), version });
      });
    }
  });

  it("fingerprints - a late result for the version before (an older change time) does not displace what is known of the file as it is now; a later version's does", async () => {
    // (A review: a SHA-1 pass or a transfer of the version before, ending after the background pass over
    // the new version, dropped that pass's work, and the new version's transfer hashed as it sent.)
    const dir = await tempDir("fmq-fp-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(3 * PREPARE_MIN_SIZE));
    const version = await versionOf(file);
    const real = await fingerprintFile(file);
    const older = { ...real, hash: "0000000000000001" };
    const fingerprints = new Fingerprints();
    try {
      const now = { ...version, mtimeMs: 3_000_000, ctimeMs: 3_000_000 };
      const before = { ...version, size: version.size - 1, mtimeMs: 2_000_000, ctimeMs: 2_000_000 };
      fingerprints.remember(file, now, real, 4_000_000);
      fingerprints.remember(file, before, older, 4_000_000);
      expect(fingerprints.lookup(file, now)).toBe(real);
      expect(fingerprints.lookup(file, before)).toBeUndefined();
      const later = { ...version, mtimeMs: 5_000_000, ctimeMs: 5_000_000 };
      fingerprints.remember(file, later, older, 6_000_000);
      expect(fingerprints.lookup(file, later)).toBe(older);
      expect(fingerprints.lookup(file, now)).toBeUndefined();
      // The background pass over the file as it is found now goes in, whatever the change time of what is
      // held (a clock stepped back): an entry "from the future" is not kept for good.
      const ahead = { ...version, ctimeMs: Date.now() + 3_600_000 };
      fingerprints.remember(file, ahead, older, ahead.ctimeMs + 1_000);
      await pastRacyWindow(file);
      fingerprints.prepare(file, version.size, version);
      await waitFor(async () => (await fingerprints.known(file, version)) !== undefined, "the pass over the file as it is", 10_000);
      expect((await fingerprints.known(file, version))?.hash).toBe(real.hash);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - a fingerprint of a file changed a moment before it was read (by a transfer or a background pass) is used but not remembered", async () => {
    // A rewrite of the same size in the same clock tick would leave the version as it was: a remembered
    // fingerprint would then go out with the new content, fail the client's check, and go out again with
    // it each time the client asked again.
    const dir = await tempDir("fmq-fp-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(3 * PREPARE_MIN_SIZE));
    const version = await versionOf(file);
    const real = await fingerprintFile(file);
    const fingerprints = new Fingerprints();
    try {
      // A transfer's fingerprint, of a read that began 5 ms after the file's last change: not kept (however
      // long ago that is now); of one that began 100 ms after it, kept.
      // (Times with a fraction of a second: whole seconds are a coarse clock's, with a longer window.)
      const racy = { ...version, mtimeMs: 1_000_000.25, ctimeMs: 1_000_000.25 };
      fingerprints.remember(file, racy, real, 1_000_005);
      expect(fingerprints.lookup(file, racy)).toBeUndefined();
      const settled = { ...version, mtimeMs: 2_000_000.25, ctimeMs: 2_000_000.25 };
      fingerprints.remember(file, settled, real, 2_000_100);
      expect(fingerprints.lookup(file, settled)).toBe(real);

      // A pass over a file changed "a moment ago" (its mtime a minute ahead, so however long the pass
      // takes): its result goes to whoever asked, and is not kept.
      await writeFile(file, randomBytes(3 * PREPARE_MIN_SIZE));
      const ahead = new Date(Date.now() + 60_000);
      await utimes(file, ahead, ahead);
      const fresh = await versionOf(file);
      const computed = await fingerprints.fingerprint(file);
      expect(computed?.fingerprint.hash).toBe((await fingerprintFile(file)).hash);
      expect(fingerprints.lookup(file, fresh)).toBeUndefined();
      // Changed long enough ago, a pass is kept.
      const past = new Date(Date.now() - 60_000);
      await utimes(file, past, past);
      await pastRacyWindow(file);
      const again = await fingerprints.fingerprint(file);
      expect(again?.fingerprint.hash).toBe(computed?.fingerprint.hash);
      expect(fingerprints.lookup(file, await versionOf(file))).toEqual(again?.fingerprint);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - a client's SHA-1 of a huge file does not hold up a fingerprint asked for on demand (a delta plan): SHA-1s have a lane of their own", async () => {
    // (A review: any client may list a SHA-1 for any file published; 24 s for an 8 GiB sparse file, and
    // every delta plan waited behind it.)
    const big = await hugeSparseFile();
    const root = await realpath(path.dirname(big));
    const small = path.join(await tempDir("fmq-fp-"), "small.bin");
    await writeFile(small, randomBytes(3 * PREPARE_MIN_SIZE));
    const fingerprints = new Fingerprints();
    try {
      let bigDone = false;
      void fingerprints.sha1(big, root).finally(() => (bigDone = true));
      await waitFor(() => openHere(big) > 0, "the SHA-1 pass reading the huge file", 10_000);
      const computed = await fingerprints.fingerprint(small);
      expect(computed?.fingerprint.hash).toBe((await fingerprintFile(small)).hash);
      // (16 GiB of SHA-1 takes tens of seconds here: still under way.)
      expect(bigDone).toBe(false);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - sha1() reads and hashes in the worker thread: the main thread's event loop stays idle meanwhile; closing stops it", async () => {
    const file = await hugeSparseFile(); // 16 GiB of holes: SHA-1 of it takes many seconds
    const root = await realpath(path.dirname(file));
    const fingerprints = new Fingerprints();
    const idleStart = performance.eventLoopUtilization();
    await new Promise((resolve) => setTimeout(resolve, 500));
    const idle = performance.eventLoopUtilization(idleStart).utilization;
    try {
      const digest = fingerprints.sha1(file, root);
      // (Started: the worker has the file open. A bare 200 ms let a late start look like an idle loop.)
      await waitFor(() => openHere(file) > 0, "the worker reading the file", 10_000);
      const before = performance.eventLoopUtilization();
      await new Promise((resolve) => setTimeout(resolve, 500));
      const busy = performance.eventLoopUtilization(before).utilization;
      // On this thread (a read stream, hashing here) the loop was busy most of the time.
      expect(busy - idle).toBeLessThan(0.05);
      fingerprints.close();
      // Not computed (closed meanwhile): no digest, and not computed here instead.
      await expect(digest).resolves.toBeUndefined();
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - sha1() of a published path that now leads outside its mount (a directory swapped for a symlink) is refused, not computed", async () => {
    const root = await realpath(await tempDir("fmq-fp-"));
    const outside = await realpath(await tempDir("fmq-fp-"));
    await mkdir(path.join(root, "dir"));
    await writeFile(path.join(root, "dir", "data.bin"), "inside");
    await mkdir(path.join(outside, "secret"));
    await writeFile(path.join(outside, "secret", "data.bin"), "outside");
    await rename(path.join(root, "dir"), path.join(root, "gone"));
    await symlink(path.join(outside, "secret"), path.join(root, "dir"));
    const fingerprints = new Fingerprints();
    try {
      await expect(fingerprints.sha1(path.join(root, "dir", "data.bin"), root)).rejects.toThrow(/leads outside/);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - prepare() hashes a big file in the background; known() finds it for that version only", async () => {
    const dir = await tempDir("fmq-fp-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(3 * PREPARE_MIN_SIZE));
    await pastRacyWindow(file);
    const fingerprints = new Fingerprints();
    try {
      fingerprints.prepare(file, 3 * PREPARE_MIN_SIZE);
      const version = await versionOf(file);
      // The pass starts once the background queue has looked at the file (a stat later).
      await waitFor(() => fingerprints.computing(file) || fingerprints.lookup(file, version) !== undefined, "the pass to start", 5000);
      const known = await fingerprints.known(file, version);
      expect(known?.hash).toBe((await fingerprintFile(file)).hash);

      // Rewritten with its size and mtime put back: another version (ctime), so not known.
      const mtime = new Date(Math.floor(version.mtimeMs));
      await writeFile(file, randomBytes(3 * PREPARE_MIN_SIZE));
      await utimes(file, mtime, mtime);
      expect(await fingerprints.known(file, await versionOf(file))).toBeUndefined();

      // Small files are left to the transfer (they are hashed as they are read, whole).
      const small = path.join(dir, "small.txt");
      await writeFile(small, "hello");
      fingerprints.prepare(small, 5);
      expect(await fingerprints.known(small, await versionOf(small))).toBeUndefined();
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - close() stops a fingerprint being computed (a 16 GiB sparse file) at its next read", async () => {
    const file = await hugeSparseFile();
    const fingerprints = new Fingerprints();
    fingerprints.prepare(file, 16 * 1024 ** 3);
    const version = await versionOf(file);
    await waitFor(() => fingerprints.computing(file), "the background hash to start", 5000);
    const pending = fingerprints.known(file, version);
    fingerprints.close();
    // Hashing 16 GiB would take seconds; stopped, it gives up (undefined) at once.
    const outcome = await Promise.race([pending, new Promise((resolve) => setTimeout(() => resolve("still hashing"), 2000))]);
    expect(outcome).toBeUndefined();
  });

  it("fingerprints - what a client waits for (a fingerprint to plan a delta from, a SHA-1) is not computed behind a background pass over another file (a 16 GiB sparse one)", async () => {
    const huge = await hugeSparseFile();
    const dir = await tempDir("fmq-fp-");
    const file = path.join(dir, "held.bin");
    await writeFile(file, randomBytes(3 * PREPARE_MIN_SIZE));
    const fingerprints = new Fingerprints();
    try {
      fingerprints.prepare(huge, 16 * 1024 ** 3);
      await waitFor(() => fingerprints.computing(huge), "the background pass to start", 5000);
      // (Behind the pass, each waited for all 16 GiB: tens of seconds here. The pass is still under way after.)
      const fingerprint = await Promise.race([fingerprints.fingerprint(file), new Promise((resolve) => setTimeout(() => resolve("waited"), 3000))]);
      expect(fingerprint).toEqual({ version: await versionOf(file), fingerprint: await fingerprintFile(file) });
      const sha1 = await Promise.race([fingerprints.sha1(file, dir), new Promise((resolve) => setTimeout(() => resolve("waited"), 3000))]);
      expect(sha1).toBe(createHash("sha1").update(await readFile(file)).digest("hex").toUpperCase());
      expect(fingerprints.computing(huge)).toBe(true);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - a background pass over a file no longer published and gone (deleted) stops at once, and the next file's pass begins; one still there goes on", async () => {
    // (A review: the pass read a deleted big file to its end through its descriptor, holding up the rest.)
    const file = await hugeSparseFile();
    const next = path.join(await tempDir("fmq-fp-"), "next.bin");
    await writeFile(next, randomBytes(3 * PREPARE_MIN_SIZE));
    // (Its pass's result is kept only if the file did not change a moment before it was read.)
    await pastRacyWindow(next);
    const fingerprints = new Fingerprints();
    try {
      const version = await versionOf(file);
      fingerprints.prepare(file, version.size, version);
      // (Once the worker has it open: deleted before, the pass fails at once by itself.)
      await waitFor(() => openHere(file) > 0, "the worker reading the big file", 10_000);
      const first = fingerprints.known(file, version);
      fingerprints.prepare(next, 3 * PREPARE_MIN_SIZE);
      // Still there (another name, a link to it, still publishes it): the pass goes on.
      fingerprints.forget(file);
      expect(await Promise.race([first, new Promise((resolve) => setTimeout(() => resolve("still hashing"), 500))])).toBe("still hashing");
      expect(fingerprints.computing(file)).toBe(true);
      await rm(file);
      fingerprints.forget(file);
      // (Reading 16 GiB would take tens of seconds here.)
      expect(await Promise.race([first, new Promise((resolve) => setTimeout(() => resolve("still hashing"), 3000))])).toBeUndefined();
      const nextVersion = await versionOf(next);
      await waitFor(async () => (await fingerprints.known(next, nextVersion)) !== undefined, "the next file's pass", 5000);
      expect((await fingerprints.known(next, nextVersion))?.hash).toBe((await fingerprintFile(next)).hash);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - a background pass over a version that is no longer the file's (touched, published again) stops at once, and a pass over the new version begins", async () => {
    const file = await hugeSparseFile();
    const fingerprints = new Fingerprints();
    try {
      const before = await versionOf(file);
      fingerprints.prepare(file, before.size, before);
      await waitFor(() => fingerprints.computing(file), "the first pass to start", 5000);
      const first = fingerprints.known(file, before);
      const later = new Date(Date.now() + 60_000);
      await utimes(file, later, later);
      const after = await versionOf(file);
      fingerprints.prepare(file, after.size, after);
      // (Reading 16 GiB would take tens of seconds here.)
      expect(await Promise.race([first, new Promise((resolve) => setTimeout(() => resolve("still hashing"), 3000))])).toBeUndefined();
      await waitFor(() => fingerprints.passes === 2 && fingerprints.computing(file), "a pass over the new version", 5000);
    } finally {
      fingerprints.close();
    }
  });

  it("fingerprints - a transfer does not stop a background pass: it gets the promise of its result", async () => {
    const dir = await tempDir("fmq-fp-");
    const file = path.join(dir, "big.bin");
    await writeFile(file, randomBytes(64 * 1024 * 1024));
    const version = await versionOf(file);
    // (A pass begun within the racy window of the file's last change would not be kept: see remember().)
    await pastRacyWindow(file);
    const fingerprints = new Fingerprints();
    try {
      fingerprints.prepare(file, 64 * 1024 * 1024);
      await waitFor(() => fingerprints.computing(file), "the background hash to start", 5000);
      const coming = fingerprints.lookup(file, version);
      expect(coming).toBeInstanceOf(Promise);
      const fingerprint = await coming;
      expect(fingerprint?.hash).toBe((await fingerprintFile(file)).hash);
      expect(fingerprints.passes).toBe(1);
      // Found again for that version, without hashing.
      expect(fingerprints.lookup(file, version)).toEqual(fingerprint);
    } finally {
      fingerprints.close();
    }
  });
  it("fingerprints - a pass that read another file (a directory on the way swapped for a moment, then put back) is not taken for the file's", async () => {
    const dir = await realpath(await tempDir("fmq-fp-"));
    const real = path.join(dir, "d", "f.bin");
    await mkdir(path.dirname(real));
    await writeFile(real, randomBytes(2 * 1024 * 1024));
    // The other file: sparse, so that the worker is still reading it when the directory is put back.
    const fake = path.join(dir, "fake", "f.bin");
    await mkdir(path.dirname(fake));
    const handle = await open(fake, "w");
    await handle.truncate(2 * 1024 ** 3);
    await handle.close();
    const busy = path.join(dir, "busy.bin");
    const busyHandle = await open(busy, "w");
    await busyHandle.truncate(1024 ** 3);
    await busyHandle.close();
    await pastRacyWindow(real);
    const version = await versionOf(real);
    const fingerprints = new Fingerprints();
    try {
      // The worker busy with another file first, so that ours waits in its queue after its version is taken.
      const first = fingerprints.fingerprint(busy);
      first.catch(() => undefined);
      const pass = fingerprints.fingerprint(real);
      await waitFor(() => fingerprints.computing(real), "the pass to be asked for");
      await rename(path.join(dir, "d"), path.join(dir, "d.real"));
      await rename(path.join(dir, "fake"), path.join(dir, "d"));
      // Once the worker has the other file open, the directory is put back.
      const swapped = path.join(dir, "d", "f.bin");
      await waitFor(() => openHere(swapped) > 0, "the worker to open the swapped-in file", 60_000);
      await rename(path.join(dir, "d"), path.join(dir, "fake"));
      await rename(path.join(dir, "d.real"), path.join(dir, "d"));
      expect(await versionOf(real)).toEqual(version);
      expect(await pass).toBeUndefined();
      expect(fingerprints.lookup(real, version)).toBeUndefined();
      // Asked again, the file's own.
      expect((await fingerprints.fingerprint(real))?.fingerprint.hash).toBe((await fingerprintFile(real)).hash);
    } finally {
      fingerprints.close();
    }
  }, 120_000);
});
