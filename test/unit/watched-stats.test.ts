// What the watcher keeps of each file (src/mount/watched-stats.ts), with a real chokidar watcher on a
// temp directory: it reports an added file with the few fields it and the mount read, not a whole
// `Stats`, and still reports the file's changes in place (its listener compares the mtime it kept; a
// rename over the file is the mount's to see, by the kernel's events: mount.test.ts).

import { lstatSync, Stats, writeFileSync } from "node:fs";
import path from "node:path";
import { watch, type FSWatcher } from "chokidar";
import { afterEach, describe, expect, it } from "vitest";
import { keepLessOfEachFile } from "../../src/mount/watched-stats.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const watchers: FSWatcher[] = [];
afterEach(async () => {
  for (const watcher of watchers.splice(0)) await watcher.close();
});

describe("watched stats", () => {
  it("watched stats - an added file is reported with its size, times, inode and type, not a whole Stats; its changes in place are still reported", async () => {
    const dir = await tempDir("fmq-watched-stats-");
    const file = path.join(dir, "a.txt");
    writeFileSync(file, "first");
    const watcher = watch(dir, { persistent: true, ignoreInitial: false, followSymlinks: false, alwaysStat: true });
    watchers.push(watcher);
    expect(keepLessOfEachFile(watcher)).toBe(true);
    const added = new Map<string, unknown>();
    const changed: string[] = [];
    watcher.on("add", (at, stats) => added.set(at, stats));
    watcher.on("change", (at) => changed.push(at));
    await new Promise<void>((resolve) => watcher.once("ready", () => resolve()));
    await waitFor(() => added.has(file), "a.txt added", 5000);

    const seen = added.get(file) as Stats;
    const real = lstatSync(file);
    expect(seen).not.toBeInstanceOf(Stats);
    expect(seen).not.toHaveProperty("mtime");
    expect({ size: seen.size, mtimeMs: seen.mtimeMs, ctimeMs: seen.ctimeMs, ino: seen.ino, dev: seen.dev, mode: seen.mode }).toEqual({
      size: real.size,
      mtimeMs: real.mtimeMs,
      ctimeMs: real.ctimeMs,
      ino: real.ino,
      dev: real.dev,
      mode: real.mode,
    });
    expect([seen.isFile(), seen.isDirectory(), seen.isSymbolicLink()]).toEqual([true, false, false]);

    // Written in place (a new size and mtime): reported.
    writeFileSync(file, "second, longer");
    await waitFor(() => changed.length >= 1, "the write in place reported", 5000);
    expect(changed.every((at) => at === file)).toBe(true);
  });
});
