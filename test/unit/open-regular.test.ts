// fmq opens a file to read it only once it is known to be a regular file: a name swapped (by whoever may
// write in a published tree or an inbox) for a device, a FIFO or a symlink must not be opened at all,
// since opening some devices is itself the harm. Real FIFOs, with a blocked writer as the detector of an
// open (the kernel lets it go when anyone opens the FIFO to read).

import { execFileSync } from "node:child_process";
import { closeSync, constants, openSync, readSync } from "node:fs";
import { symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { NotRegularError, openRegular, openRegularSync } from "../../src/digest/open-regular.js";
import { blockedFifoWriter } from "../helpers/fifo-writer.js";
import { tempDir } from "../helpers/tmp.js";

describe("openRegular", () => {
  it("open-regular - a regular file is opened to read, with its stats", async () => {
    const file = path.join(await tempDir(), "f.txt");
    await writeFile(file, "hello");
    const { fd, stats } = openRegularSync(file);
    const buffer = Buffer.alloc(5);
    readSync(fd, buffer, 0, 5, 0);
    closeSync(fd);
    expect(buffer.toString()).toBe("hello");
    expect(stats.size).toBe(5);
    const { handle, stats: again } = await openRegular(file);
    expect((await handle.readFile()).toString()).toBe("hello");
    await handle.close();
    expect(again.ino).toBe(stats.ino);
  });

  it("open-regular - a symlink at the name is refused, not followed", async () => {
    const dir = await tempDir();
    await writeFile(path.join(dir, "target"), "x");
    await symlink(path.join(dir, "target"), path.join(dir, "link"));
    expect(() => openRegularSync(path.join(dir, "link"))).toThrow(NotRegularError);
    await expect(openRegular(path.join(dir, "link"))).rejects.toThrow(NotRegularError);
  });

  it("open-regular - a device is refused", async () => {
    expect(() => openRegularSync("/dev/null")).toThrow(NotRegularError);
    await expect(openRegular("/dev/null")).rejects.toThrow(NotRegularError);
  });

  it("open-regular - a FIFO is refused without being opened (a writer waiting on it is not let go); a plain open would let it go", async () => {
    const fifo = path.join(await tempDir(), "fifo");
    execFileSync("mkfifo", [fifo]);
    const writer = await blockedFifoWriter(fifo);
    try {
      expect(() => openRegularSync(fifo)).toThrow(NotRegularError);
      await expect(openRegular(fifo)).rejects.toThrow(NotRegularError);
      expect(await writer.releasedWithin(300)).toBe(false);
      // The detector works: the open the code used before (O_NONBLOCK, closed at once) lets it go.
      closeSync(openSync(fifo, constants.O_RDONLY | constants.O_NONBLOCK));
      expect(await writer.releasedWithin(10_000)).toBe(true);
    } finally {
      writer.stop();
    }
  });
});
