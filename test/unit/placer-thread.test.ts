// The placing thread: whole small files written and renamed into place by a worker, answered in order, a
// failure reported with its partial file removed, never through a symlink, a bound on what waits, and a
// thread that stops answering what it had as failed (its caller then places those files itself).

import { existsSync, readdirSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { HeldDirectory } from "../../src/client/held-directory.js";
import { PLACING_MAX_FILES, PlacerThread } from "../../src/client/placer-thread.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

/** Hand over `name` (in `dir`, its partial in dir/partial), its answer recorded in `answers`, and the bytes that come with a failure in `returned`. */
function place(thread: PlacerThread, dir: string, name: string, bytes: Uint8Array, answers: [string, string | null][], opts: { target?: string; returned?: Map<string, Buffer> } = {}): void {
  thread.place(path.join(dir, "partial", `${name}.part`), opts.target ?? path.join(dir, name), bytes, (failure, data) => {
    answers.push([name, failure]);
    if (data) opts.returned?.set(name, Buffer.from(data));
  });
}

/** A placing thread started, and a directory with partial/ in it, for `test`; the thread stopped after. */
async function withThread(test: (thread: PlacerThread, dir: string) => Promise<void>): Promise<void> {
  const dir = await tempDir("fmq-placer-");
  await mkdir(path.join(dir, "partial"));
  const thread = new PlacerThread();
  try {
    expect(thread.available()).toBe(true);
    await test(thread, dir);
  } finally {
    await thread.close();
  }
}

describe("placing thread", () => {
  it("placing thread - puts files in place with their bytes, answers each in place (null), in order, never at once", async () => {
    await withThread(async (thread, dir) => {
      const answers: [string, string | null][] = [];
      const contents = new Map<string, Buffer>();
      // (Two turns of the event loop: two batches, answered in the order handed over.)
      for (const turn of [0, 1]) {
        const answeredBefore = answers.length;
        for (let i = 0; i < 150; i++) {
          const name = `f${turn}-${i}.bin`;
          const bytes = randomBytes(1 + ((i * 997) % 9000));
          contents.set(name, bytes);
          // (A view into a bigger buffer, as a file of a batch is: only its own bytes go.)
          const framed = Buffer.concat([Buffer.from("head"), bytes, Buffer.from("tail")]).subarray(4, 4 + bytes.length);
          place(thread, dir, name, framed, answers);
        }
        // (Never answered at once: not within the turn that hands a file over.)
        expect(answers.length).toBe(answeredBefore);
        await new Promise((resolve) => setImmediate(resolve));
      }
      await thread.idle();
      expect(thread.pending).toBe(0);
      expect(answers.map(([name]) => name)).toEqual([...contents.keys()]);
      expect(answers.filter(([, failure]) => failure !== null)).toEqual([]);
      for (const [name, bytes] of contents) expect(readFileSync(path.join(dir, name)).equals(bytes)).toBe(true);
      expect(readdirSync(path.join(dir, "partial"))).toEqual([]);
    });
  });

  it("placing thread - a failure is said with its step and code, its partial file removed; the next file goes in all the same", async () => {
    await withThread(async (thread, dir) => {
      const answers: [string, string | null][] = [];
      // Its directory is missing: the rename fails.
      const returned = new Map<string, Buffer>();
      place(thread, dir, "x", Buffer.from("xxx"), answers, { target: path.join(dir, "missing", "x"), returned });
      // A symlink planted at the partial name is never written through (O_NOFOLLOW).
      const outside = path.join(dir, "outside.txt");
      writeFileSync(outside, "mine");
      symlinkSync(outside, path.join(dir, "partial", "y.part"));
      place(thread, dir, "y", Buffer.from("yyyy"), answers, { returned });
      place(thread, dir, "z", Buffer.from("zz"), answers, { returned });
      await thread.idle();
      expect(answers).toEqual([
        ["x", "rename: ENOENT"],
        ["y", "open: ELOOP"],
        ["z", null],
      ]);
      expect(readFileSync(outside, "utf8")).toBe("mine");
      expect(existsSync(path.join(dir, "y"))).toBe(false);
      expect(readFileSync(path.join(dir, "z"), "utf8")).toBe("zz");
      expect(readdirSync(path.join(dir, "partial"))).toEqual(["y.part"]); // (the planted link, untouched)
      // A file not in place comes back with its bytes, for its caller to place it its own way.
      expect([...returned]).toEqual([
        ["x", Buffer.from("xxx")],
        ["y", Buffer.from("yyyy")],
      ]);
    });
  });

  it("placing thread - a write that fails (a full disk) is said as the write's failure, its partial removed, its bytes given back", async (ctx) => {
    const disk = path.join(await tempDir("fmq-placer-"), "disk");
    await mkdir(disk);
    try {
      execFileSync("mount", ["-t", "tmpfs", "-o", "size=64k", "tmpfs", disk], { stdio: "pipe" });
    } catch (error) {
      // (Mounting needs root, which CI has here.)
      ctx.skip(`cannot mount a tmpfs here: ${String((error as Error).message).split("\n")[0]}`);
    }
    try {
      await mkdir(path.join(disk, "partial"));
      const thread = new PlacerThread();
      try {
        expect(thread.available()).toBe(true);
        const answers: [string, string | null][] = [];
        const returned = new Map<string, Buffer>();
        const big = randomBytes(256 * 1024);
        place(thread, disk, "big", big, answers, { returned });
        await thread.idle();
        expect(answers).toEqual([["big", "write: ENOSPC"]]);
        expect(readdirSync(disk).sort()).toEqual(["partial"]);
        expect(readdirSync(path.join(disk, "partial"))).toEqual([]);
        expect(returned.get("big")?.equals(big)).toBe(true);
      } finally {
        await thread.close();
      }
    } finally {
      execFileSync("umount", ["-l", disk]);
    }
  });

  it("placing thread - past its bound, room() waits until half of what waits has landed", async () => {
    await withThread(async (thread, dir) => {
      const answers: [string, string | null][] = [];
      for (let i = 0; i < PLACING_MAX_FILES - 1; i++) place(thread, dir, `f${i}`, Buffer.from([i & 0xff]), answers);
      expect(thread.room()).toBeUndefined();
      place(thread, dir, "last", Buffer.from("last"), answers);
      const room = thread.room();
      expect(room).toBeInstanceOf(Promise);
      await room;
      expect(thread.pending).toBeLessThan(PLACING_MAX_FILES / 2);
      await thread.idle();
      expect(answers.length).toBe(PLACING_MAX_FILES);
      expect(answers.every(([, failure]) => failure === null)).toBe(true);
    });
  });

  it("placing thread - idle() waits for the files handed over before it, not for those handed over after", async () => {
    await withThread(async (thread, dir) => {
      const answers: [string, string | null][] = [];
      place(thread, dir, "before", Buffer.from("before"), answers);
      const idle = thread.idle();
      // (The next turn: a batch of its own, behind the first, far slower to place.)
      await new Promise((resolve) => setImmediate(resolve));
      for (let i = 0; i < 300; i++) place(thread, dir, `after${i}`, randomBytes(4096), answers);
      await idle;
      // Answered: the file before; not yet: any of the 300 after (they are answered in a later message).
      expect(answers).toEqual([["before", null]]);
      expect(thread.pending).toBe(300);
      await thread.idle();
      expect(answers.length).toBe(301);
    });
  });

  it("placing thread - stopped, it answers what it had as failed, in order, and takes nothing more", async () => {
    const dir = await tempDir("fmq-placer-");
    await mkdir(path.join(dir, "partial"));
    const thread = new PlacerThread();
    expect(thread.available()).toBe(true);
    const answers: [string, string | null][] = [];
    const returned = new Map<string, Buffer>();
    for (const name of ["a", "b", "c"]) place(thread, dir, name, Buffer.from(name), answers, { returned });
    await thread.close();
    expect(answers).toEqual([
      ["a", "the placing thread stopped"],
      ["b", "the placing thread stopped"],
      ["c", "the placing thread stopped"],
    ]);
    expect(thread.pending).toBe(0);
    expect(thread.available()).toBe(false);
    // (Not sent yet: their bytes are still here, and come back with the answer.)
    expect([...returned.keys()]).toEqual(["a", "b", "c"]);
    expect(returned.get("b")).toEqual(Buffer.from("b"));
  });

  it("placing thread - one whose worker cannot run is not available (its caller places files itself)", async () => {
    const thread = new PlacerThread(new URL("file:///nonexistent/placer-worker.js"));
    // (Node reports a missing worker file either at once or as the worker's error: not available either way.)
    const now = thread.available();
    if (now) await waitFor(() => !thread.available(), "the worker's failure seen", 5000);
    expect(thread.available()).toBe(false);
    await thread.close();
  });
});

describe("held directory lent to another thread", () => {
  it("held directory - stays open past close() until given back; closed for us at once", async () => {
    const dir = await tempDir("fmq-held-");
    writeFileSync(path.join(dir, "inside.txt"), "in");
    const held = HeldDirectory.make(dir);
    const lentPath = held.join("inside.txt");
    held.lend();
    held.lend();
    held.close();
    // For us it is closed: a path built now leads nowhere.
    expect(held.path).toBe("/proc/self/fd/-1");
    // The path lent still leads into it.
    expect(readFileSync(lentPath, "utf8")).toBe("in");
    held.giveBack();
    expect(readFileSync(lentPath, "utf8")).toBe("in"); // (lent twice: still open)
    held.giveBack();
    expect(existsSync(lentPath)).toBe(false);
    expect(() => held.giveBack()).toThrow(/given back more often than lent/);
  });
});
