// The manifest with --fsync, when the journal's fsync fails. No real fsync failure can be made on demand
// here (it takes a failing disk), so node:fs's fsync is faked for this file alone (hence a file of its own):
// it fails with EIO; every other call is the real one.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { Manifest } from "../../src/client/manifest.js";
import { tempDir } from "../helpers/tmp.js";

vi.mock("node:fs", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs")>();
  const fsync = (_fd: number, callback: (error: NodeJS.ErrnoException | null) => void) =>
    process.nextTick(() => callback(Object.assign(new Error("EIO: fsync failed"), { code: "EIO", syscall: "fsync" })));
  return { ...actual, default: { ...actual, fsync }, fsync };
});

describe("manifest, fsync failing", () => {
  it("manifest - a journal fsync that fails (--fsync) is said, once: whoever asked for durability is told it did not hold (it was let be in silence)", async () => {
    const dir = path.join(await tempDir(), ".fmq");
    await mkdir(dir);
    const problems: string[] = [];
    const manifest = await Manifest.load(dir, (message) => problems.push(message));
    manifest.durable = true;
    for (let i = 0; i < 3; i++) {
      manifest.delivered(`f${i}`, { vpath: `/f${i}`, size: i, hash: "0123456789abcdef" });
      manifest.flush();
      await manifest.synced();
    }
    expect(problems).toEqual(["cannot make the inbox's journal durable (EIO): its records are written but may not survive a power loss"]);
    // The records are there all the same.
    const again = await Manifest.load(dir);
    expect([...again.files.keys()]).toEqual(["f0", "f1", "f2"]);
    again.close();
    manifest.close();
  });
});
