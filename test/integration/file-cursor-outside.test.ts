// Never serve outside a mount, checked when a published file is opened to be sent: a file (or a directory
// on its way) swapped for a symlink after publication must not lead the publisher outside its mount, even
// when the file outside has the very size and mtime that were published; a file swapped for a FIFO must
// be refused at once, not block the open. Real files, real symlinks, real FIFOs.

import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { mkdir, rename, stat, symlink, unlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FileChangedError, FileCursor, type Published } from "../../src/server/file-cursor.js";
import { OutsideMountError } from "../../src/server/opened-inside.js";
import { blockedFifoWriter } from "../helpers/fifo-writer.js";
import { tempDir } from "../helpers/tmp.js";

const options = { chunkSize: 1024 * 1024, readAhead: 2, extensions: true, single: true };

/** A mount root with `relative` published, and a secret outside it with the same size and mtime. */
async function setUp(relative: string, size: number): Promise<{ root: string; file: string; secret: string; published: Published }> {
  const root = path.join(await tempDir("fmq-outside-"), "mount");
  const file = path.join(root, relative);
  await mkdir(path.dirname(file), { recursive: true });
  await writeFile(file, randomBytes(size));
  const secret = path.join(await tempDir("fmq-secret-"), path.basename(relative));
  await writeFile(secret, Buffer.alloc(size, "S"));
  // The same mtime on both (whole seconds: what a local user can give any file of theirs).
  const when = Math.floor(Date.now() / 1000) - 60;
  await utimes(file, when, when);
  await utimes(secret, when, when);
  const s = await stat(file);
  expect((await stat(secret)).mtimeMs).toBe(s.mtimeMs);
  return { root, file, secret, published: { size: s.size, mtimeMs: s.mtimeMs, ino: s.ino, root } };
}

describe("a published file opened to be sent", () => {
  for (const [what, size] of [["small (read whole)", 4096], ["big (read in chunks)", 3 * 1024 * 1024]] as const) {
    it(`outside - ${what}: the file swapped for a symlink to a file outside with its size and mtime is refused (the link is not followed)`, async () => {
      const { file, secret, published } = await setUp("f.bin", size);
      await unlink(file);
      await symlink(secret, file);
      await expect(FileCursor.open(file, "/f.bin", options, {}, published)).rejects.toBeInstanceOf(FileChangedError);
    });

    it(`outside - ${what}: a directory on the way swapped for a symlink to a directory outside is refused`, async () => {
      const { root, file, secret, published } = await setUp("d/f.bin", size);
      await rename(path.join(root, "d"), path.join(root, "old-d"));
      await symlink(path.dirname(secret), path.join(root, "d"));
      await expect(FileCursor.open(file, "/d/f.bin", options, {}, published)).rejects.toBeInstanceOf(OutsideMountError);
    });

    it(`outside - ${what}: a directory on the way swapped for one where the name is a FIFO (or a device): refused without opening it (a writer waiting on it is not let go)`, async () => {
      const { root, file, published } = await setUp("d/f.bin", size);
      const elsewhere = await tempDir("fmq-elsewhere-");
      execFileSync("mkfifo", [path.join(elsewhere, "f.bin")]);
      const writer = await blockedFifoWriter(path.join(elsewhere, "f.bin"));
      try {
        await rename(path.join(root, "d"), path.join(root, "old-d"));
        await symlink(elsewhere, path.join(root, "d"));
        await expect(FileCursor.open(file, "/d/f.bin", options, {}, published)).rejects.toBeInstanceOf(FileChangedError);
        expect(await writer.releasedWithin(300)).toBe(false);
      } finally {
        writer.stop();
      }
    });

    it(`outside - ${what}: the file replaced by another with its size and mtime (here a hidden one, never published) is refused: only the inode published is sent`, async () => {
      // The kernel's name for the descriptor cannot tell this (the file is inside), nor can it tell a
      // file reached through another mount namespace (/proc/<pid>/root/...: a review read a root-only
      // file that way, its path inside the attacker's namespace starting with the mount's).
      const { root, file, published } = await setUp("f.bin", size);
      const hidden = path.join(root, ".keys", "id");
      await mkdir(path.dirname(hidden));
      await writeFile(hidden, Buffer.alloc(size, "K"));
      await utimes(hidden, published.mtimeMs / 1000, published.mtimeMs / 1000);
      await rename(hidden, file);
      expect((await stat(file)).mtimeMs).toBe(published.mtimeMs);
      await expect(FileCursor.open(file, "/f.bin", options, {}, published)).rejects.toBeInstanceOf(FileChangedError);
    });
  }

  it("outside - a file that is still itself is sent as ever (the check refuses nothing inside)", async () => {
    const { file, published } = await setUp("d/ok.bin", 3 * 1024 * 1024);
    const cursor = await FileCursor.open(file, "/d/ok.bin", options, {}, published);
    await cursor.close();
  });

  it("outside - a file swapped for a FIFO is refused at once instead of blocking the open", async () => {
    const { file, published } = await setUp("fifo", 3 * 1024 * 1024);
    await unlink(file);
    execFileSync("mkfifo", [file]);
    // With a plain open, this never settles (no writer ever comes): the test times out.
    await expect(FileCursor.open(file, "/fifo", options, {}, published)).rejects.toBeInstanceOf(FileChangedError);
  });
});
