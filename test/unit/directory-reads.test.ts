// The directory reads the mount lets chokidar make, decided against a stand-in for chokidar's handler
// (the real watcher's part is in mount.test.ts: a file written again and again in a big directory).

import { EventEmitter } from "node:events";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { afterEach, describe, expect, it, vi } from "vitest";
import { economiseDirectoryReads } from "../../src/mount/directory-reads.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

/** A watcher whose handler's reads are recorded, each finished by the test. */
function standIn() {
  const reads: { directory: string; finish: () => void }[] = [];
  const handler = {
    // (Seven parameters, as chokidar 5.0.0's: the wrapper checks it has the function it knows.)
    _handleRead(directory: string, _initialAdd: boolean, _wh: unknown, _target: unknown, _dir: unknown, _depth: unknown, _throttler: unknown) {
      return new Promise<void>((resolve) => reads.push({ directory, finish: resolve }));
    },
  };
  // (chokidar's record of what /d holds.)
  const _watched = new Map([["/d", new Set(["file.txt", "sub", "d"])]]);
  const watcher = Object.assign(new EventEmitter(), { _nodeFsHandler: handler, _watched, closed: false });
  const reads_ = economiseDirectoryReads(watcher as unknown as FSWatcher, (absolute) => absolute === "/d/sub");
  expect(reads_).toBeDefined();
  /** What chokidar does for one kernel event in /d: the directory's listener asks for a read, then the raw event. */
  const event = (kind: "rename" | "change", filename: string) => {
    void handler._handleRead("/d", false, undefined, undefined, "/d", 0, undefined);
    watcher.emit("raw", kind, filename, { watchedPath: "/d" });
  };
  return { reads, event, handler, watcher, pending: (dir: string) => reads_!.pending(dir) };
}

const settle = () => new Promise<void>((resolve) => setImmediate(resolve));

afterEach(() => {
  vi.useRealTimers();
});

describe("directory reads", () => {
  it("directory reads - a file's change asks for no read of its directory; a name made, the directory's own change, a subdirectory's or a name the watcher does not know do; a first read is made at once", async () => {
    const { reads, event, handler } = standIn();
    void handler._handleRead("/d", true, undefined, undefined, "/d", 0, undefined);
    expect(reads.length).toBe(1); // (at once, not in a microtask: chokidar awaits it)
    reads[0]!.finish();
    await settle();
    event("change", "file.txt");
    await settle();
    expect(reads.length).toBe(1);
    event("change", "d"); // the directory itself, by its basename
    await settle();
    expect(reads.length).toBe(2);
    reads[1]!.finish();
    await settle();
    event("change", "sub"); // a subdirectory (read once the last read's time has passed: see below)
    await vi.waitFor(() => expect(reads.length).toBe(3), { timeout: 2000 });
    reads[2]!.finish();
    await settle();
    event("change", "stranger.txt"); // a name chokidar does not know (it missed it): read, to find it
    await vi.waitFor(() => expect(reads.length).toBe(4), { timeout: 2000 });
  });

  it("directory reads - a directory is read again no sooner than its last read took; what is asked for meanwhile is one read at that time", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const { reads, event } = standIn();
    event("rename", "a");
    await Promise.resolve();
    expect(reads.length).toBe(1);
    vi.advanceTimersByTime(200); // the read takes 200 ms
    reads[0]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    event("rename", "b");
    event("rename", "c");
    await vi.advanceTimersByTimeAsync(199);
    expect(reads.length).toBe(1);
    await vi.advanceTimersByTimeAsync(1);
    expect(reads.length).toBe(2); // b and c: one read
    vi.advanceTimersByTime(5000); // a read that takes long: the next waits a second at most
    reads[1]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    event("rename", "d");
    await vi.advanceTimersByTimeAsync(999);
    expect(reads.length).toBe(2);
    await vi.advanceTimersByTimeAsync(1);
    expect(reads.length).toBe(3);
  });

  it("directory reads - a read that never ends (it failed: readdirp drops it) holds up the next one a second at most; pending says when a read is under way or due", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const { reads, event, pending } = standIn();
    expect(pending("/d")).toBe(false);
    event("rename", "a");
    await Promise.resolve();
    expect(reads.length).toBe(1);
    expect(pending("/d")).toBe(true);
    // Never finished.
    event("rename", "b");
    await vi.advanceTimersByTimeAsync(999);
    expect(reads.length).toBe(1);
    expect(pending("/d")).toBe(true);
    await vi.advanceTimersByTimeAsync(1001);
    expect(reads.length).toBe(2);
    reads[1]!.finish();
    await vi.advanceTimersByTimeAsync(0);
    await vi.advanceTimersByTimeAsync(1000);
    expect(pending("/d")).toBe(false);
  });

  it("directory reads - a new name's first writes, while the read its making asked for is under way, ask for no other read", async () => {
    vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
    const { reads, event } = standIn();
    event("rename", "fresh.txt"); // made (chokidar does not know it yet)
    await Promise.resolve();
    expect(reads.length).toBe(1);
    event("change", "fresh.txt"); // written
    event("change", "fresh.txt");
    await vi.advanceTimersByTimeAsync(50);
    reads[0]!.finish();
    await vi.advanceTimersByTimeAsync(2000);
    expect(reads.length).toBe(1);
  });

  // (The second: chokidar's read would make the removed directory's record again, for good.)
  for (const [what, meanwhile] of [
    ["after the watcher closed", (watcher) => void (watcher.closed = true)],
    ["for a directory the watcher no longer watches (removed meanwhile)", (watcher) => void watcher._watched.delete("/d")],
  ] as const satisfies readonly (readonly [string, (watcher: ReturnType<typeof standIn>["watcher"]) => void])[]) {
    it(`directory reads - a read due ${what} is not made`, async () => {
      vi.useFakeTimers({ toFake: ["setTimeout", "clearTimeout", "performance"] });
      const { reads, event, watcher } = standIn();
      event("rename", "a");
      await Promise.resolve();
      vi.advanceTimersByTime(100);
      reads[0]!.finish();
      await vi.advanceTimersByTimeAsync(0);
      event("rename", "b"); // due 100 ms later...
      meanwhile(watcher); // ...and this meanwhile
      await vi.advanceTimersByTimeAsync(200);
      expect(reads.length).toBe(1);
    });
  }

  // (A review: chokidar's read of a directory removed while it waited made the directory's record again,
  // which nothing removed: 5,637 records, 500 bytes each, after 6,000 directories made and removed.)
  it("directory reads - with chokidar itself, directories made and removed one after another leave no record behind", async () => {
    const root = await tempDir();
    const watcher = watch(root, { persistent: true, ignoreInitial: false, followSymlinks: false, alwaysStat: true, ignorePermissionErrors: true });
    try {
      expect(economiseDirectoryReads(watcher, () => true)).toBeDefined();
      await new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
      const records = () => (watcher as unknown as { _watched: Map<string, unknown> })._watched;
      const before = records().size;
      for (let k = 0; k < 200; k++) {
        const dir = path.join(root, `d${k}`);
        await mkdir(dir);
        await writeFile(path.join(dir, "f"), "x");
        // (Long enough for the new directory's events to ask for a read that has to wait its turn.)
        await new Promise((resolve) => setTimeout(resolve, 10));
        await rm(dir, { recursive: true });
      }
      // Without the check, about 200 stayed for good; the reads still due end within a second or two.
      await waitFor(() => records().size <= before, `chokidar's records back to ${before} (${records().size} now)`, 5000);
      expect([...records().keys()].filter((key) => key.startsWith(path.join(root, "d")))).toEqual([]);
    } finally {
      await watcher.close();
    }
  }, 20_000);
});
