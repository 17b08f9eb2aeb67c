// The subscriber's own state directory (<inbox>/.fmq and its partial/) is the subscriber's alone: whoever
// else may write there could swap a partial file between its hash check and its rename.

import { chmod, chown, mkdir, stat } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Inbox } from "../../src/client/inbox.js";
import { tempDir } from "../helpers/tmp.js";

describe("inbox state directory", () => {
  it("inbox state - a .fmq another user owns is refused; one of ours that others may write into is closed to them", async () => {
    const mine = path.join(await tempDir(), "in");
    await mkdir(path.join(mine, ".fmq", "partial"), { recursive: true });
    await chmod(path.join(mine, ".fmq"), 0o777);
    await chmod(path.join(mine, ".fmq", "partial"), 0o775);
    const inbox = await Inbox.open(mine);
    inbox.close();
    expect((await stat(path.join(mine, ".fmq"))).mode & 0o777).toBe(0o755);
    expect((await stat(path.join(mine, ".fmq", "partial"))).mode & 0o777).toBe(0o755);
    if (process.geteuid?.() !== 0) return; // (making one another user owns needs root)
    const theirs = path.join(await tempDir(), "in");
    await mkdir(path.join(theirs, ".fmq"), { recursive: true });
    await chown(path.join(theirs, ".fmq"), 65534, 65534);
    await expect(Inbox.open(theirs)).rejects.toThrow(/\.fmq belongs to another user \(uid 65534\): refused$/);
  });
});
