// The stand-in for watches the system refused (its limit of inotify watches): files and directories
// looked at in turn, each change reported once, real files in a temp directory.

import { mkdir, rename, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { UnwatchedPaths } from "../../src/mount/unwatched.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const open: UnwatchedPaths[] = [];
afterEach(() => {
  for (const paths of open.splice(0)) paths.close();
});

function recorder(everyMs = 30) {
  const events: string[] = [];
  const paths = new UnwatchedPaths(
    {
      changed: (absolute, stats) => events.push(`changed ${path.basename(absolute)} ${stats.size}`),
      appeared: (absolute) => events.push(`appeared ${path.basename(absolute)}`),
      vanished: (absolute) => events.push(`vanished ${path.basename(absolute)}`),
    },
    everyMs,
  );
  open.push(paths);
  return { paths, events };
}

/** Wait until `events` holds `expected` (in any order) beyond its first `from`, and nothing more. */
async function expectNext(paths: UnwatchedPaths, events: string[], from: number, expected: string[]): Promise<number> {
  await waitFor(() => events.length >= from + expected.length, `${expected.join(", ")}`, 5000);
  // Three more sweeps (two begun after this point), counted, not a bare wait that a loaded machine may
  // fill with none: nothing else comes (each change is reported once). (None when nothing is left to look at.)
  const settled = events.length;
  const sweeps = paths.sweeps;
  await waitFor(() => paths.size === 0 || paths.sweeps >= sweeps + 3, "three sweeps more", 5000);
  expect(events.length).toBe(settled);
  expect(events.slice(from).sort()).toEqual([...expected].sort());
  return events.length;
}

describe("unwatched paths", () => {
  it("unwatched - a file is reported at its first look, then once per change (size, or a rewrite of the same size), and once gone, then forgotten", async () => {
    const dir = await tempDir("fmq-unwatched-");
    const file = path.join(dir, "a.txt");
    await writeFile(file, "one");
    const { paths, events } = recorder();
    paths.addFile(file);
    let seen = await expectNext(paths, events, 0, ["changed a.txt 3"]);
    // Grown: made beside it and renamed over it, in one step. (Not written in place: a write moves the
    // mtime before the size, and a look between the two would rightly report both; seen with two test
    // workers.)
    await writeFile(path.join(dir, "a.new"), "three");
    await rename(path.join(dir, "a.new"), file);
    seen = await expectNext(paths, events, seen, ["changed a.txt 5"]);
    // Same size, new content and mtime.
    await new Promise<void>((resolve) => setTimeout(resolve, 20));
    await writeFile(file, "THREE", { flag: "r+" });
    seen = await expectNext(paths, events, seen, ["changed a.txt 5"]);
    await rm(file);
    seen = await expectNext(paths, events, seen, ["vanished a.txt"]);
    expect(paths.has(file)).toBe(false);
    // Made again: not looked at any more (the mount hears of it through its directory).
    await writeFile(file, "again");
    await expectNext(paths, events, seen, []);
  });

  it("unwatched - a directory names everything in it at its first look, then what came and what went; removed, it is reported and forgotten", async () => {
    const dir = await tempDir("fmq-unwatched-");
    const sub = path.join(dir, "sub");
    await mkdir(sub);
    await writeFile(path.join(sub, "x.txt"), "x");
    await writeFile(path.join(sub, "y.txt"), "y");
    const { paths, events } = recorder();
    paths.addDirectory(sub);
    let seen = await expectNext(paths, events, 0, ["appeared x.txt", "appeared y.txt"]);
    await writeFile(path.join(sub, "z.txt"), "z");
    await rm(path.join(sub, "x.txt"));
    await mkdir(path.join(sub, "deeper"));
    seen = await expectNext(paths, events, seen, ["appeared z.txt", "vanished x.txt", "appeared deeper"]);
    // A change inside a file is not the directory's news (the file itself is looked at for that).
    await writeFile(path.join(sub, "y.txt"), "longer", { flag: "r+" });
    seen = await expectNext(paths, events, seen, []);
    // A directory replaced by a file of its name (in one step: renamed over it) went, and came.
    await writeFile(path.join(dir, "file-now"), "f");
    // (The directory made anew in one step, renamed over the empty one: removed and made again, a look
    // in between would rightly report it gone, then back; seen once in CI on a slow disk.)
    await mkdir(path.join(dir, "deeper-new"));
    await rename(path.join(dir, "deeper-new"), path.join(sub, "deeper"));
    await rename(path.join(dir, "file-now"), path.join(sub, "deeper2"));
    seen = await expectNext(paths, events, seen, ["appeared deeper2"]);
    await rm(path.join(sub, "deeper"), { recursive: true });
    await writeFile(path.join(dir, "file-now"), "f");
    await rename(path.join(dir, "file-now"), path.join(sub, "deeper"));
    seen = await expectNext(paths, events, seen, ["vanished deeper", "appeared deeper"]);
    // Told that what is at a name is not what it held (gone and made again between two looks): news again.
    paths.lookAgain(path.join(sub, "z.txt"));
    seen = await expectNext(paths, events, seen, ["appeared z.txt"]);
    // (Renamed away, gone at once: removed file by file, a look in between would rightly report each.)
    await rename(sub, path.join(dir, "elsewhere"));
    await expectNext(paths, events, seen, ["vanished sub"]);
    expect(paths.size).toBe(0);
  });

  it("unwatched - forget takes a directory and everything looked at under it; the pace slows with the number of paths", async () => {
    const dir = await tempDir("fmq-unwatched-");
    await mkdir(path.join(dir, "d"));
    await mkdir(path.join(dir, "dd"));
    await writeFile(path.join(dir, "d", "f"), "f");
    await writeFile(path.join(dir, "dd", "g"), "g");
    const { paths } = recorder(1000);
    paths.addDirectory(path.join(dir, "d"));
    paths.addFile(path.join(dir, "d", "f"));
    paths.addFile(path.join(dir, "dd", "g"));
    paths.forget(path.join(dir, "d"));
    // ("dd" only shares the prefix of the name: not under "d".)
    expect([paths.has(path.join(dir, "d")), paths.has(path.join(dir, "d", "f")), paths.has(path.join(dir, "dd", "g"))]).toEqual([false, false, true]);
    expect(paths.periodMs).toBe(1000);
  });
});
