// The mount's promise to the server: from the moment a file is seen until it is published (or gone), the
// server can tell that it exists. A subscriber that comes back while a restarted publisher is still
// settling sends what it holds; a file the server could not see at that instant would be taken for
// deleted, and the subscriber's partial copy thrown away and the file sent again whole.

import { closeSync, mkdirSync, openSync, renameSync, rmSync, utimesSync, writeFileSync, writeSync } from "node:fs";
import { execFileSync, spawn } from "node:child_process";
import { appendFile, chmod, mkdir, readFile, realpath, rename, rm, symlink, utimes, writeFile } from "node:fs/promises";
import { waitFor } from "../helpers/wait.js";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { FSWatcher } from "chokidar";
import { NodeFsHandler } from "chokidar/handler.js";
import { Mount } from "../../src/mount/mount.js";
import { findUnpublishable } from "../../src/mount/unpublishable.js";
import { tempDir } from "../helpers/tmp.js";

const mounts: Mount[] = [];
afterEach(async () => {
  // (Spies restored whatever became of the test: one left on FSWatcher.prototype by a failed wait would
  // count for the tests after it.)
  vi.restoreAllMocks();
  for (const mount of mounts.splice(0)) await mount.close();
});

/** A mount of `dir` (quiet period 10 ms), started, with the deletes it sent and the warnings it gave. */
async function started(dir: string): Promise<{ mount: Mount; deleted: string[]; warnings: string[] }> {
  const mount = await Mount.open(dir, "/", { stableMs: 10 });
  mounts.push(mount);
  const deleted: string[] = [];
  const warnings: string[] = [];
  mount.on("deleted", (vpath) => deleted.push(vpath));
  mount.on("warning", (error) => warnings.push(error.message));
  await mount.start();
  return { mount, deleted, warnings };
}

/** A mount of `dir` (quiet period 10 ms) once its `count` files are published, and the vpaths it says changed from then on. */
async function publishedWithChanges(dir: string, count: number): Promise<{ mount: Mount; changed: string[] }> {
  const mount = await Mount.open(dir, "/", { stableMs: 10 });
  mounts.push(mount);
  const changed: string[] = [];
  mount.on("changed", (file) => changed.push(file.vpath));
  await mount.start();
  await waitFor(() => mount.files.size === count, `${count} files published`, 5000);
  return { mount, changed };
}

// (Waits of 15 s where a directory is replaced: the mount may read it again up to 3 times, 1.1 s apart,
// before what is in it is published; more under load.)
describe("mount", () => {
  it("mount - empty directories removed beside many published files do not each look through every file published (3,000 of them beside 60,000 files held the event loop 3.5 s)", async () => {
    const dir = await tempDir("fmq-mount-");
    for (let i = 0; i < 500; i++) await writeFile(path.join(dir, `f${i}.txt`), `file ${i}`);
    for (let i = 0; i < 300; i++) mkdirSync(path.join(dir, "empty", `d${i}`), { recursive: true });
    const { mount } = await publishedWithChanges(dir, 500);
    const looks = vi.spyOn(mount.files, "values");
    await rm(path.join(dir, "empty"), { recursive: true });
    // (A file written after: published once the watcher has had the removals' events, handled in order.)
    await writeFile(path.join(dir, "after.txt"), "after");
    await waitFor(() => mount.files.has("/after.txt"), "a file written after the removal published", 10_000);
    // Before: one look through the 500 files per directory removed (301).
    expect(looks.mock.calls.length).toBeLessThan(10);
    expect(mount.files.size).toBe(501);
  });

  it("mount - a file found at start is waiting or published at every moment until it is published (never neither)", async () => {
    const dir = await tempDir("fmq-mount-");
    // Old mtimes: found by the scan, each needs only a second look (no quiet period), then is published.
    for (let i = 0; i < 20; i++) await writeFile(path.join(dir, `f${i}.bin`), `file ${i}`);
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const vpaths = Array.from({ length: 20 }, (_, i) => `/f${i}.bin`);
    await mount.start();
    const gaps = new Set<string>();
    // Look after every turn of the event loop (setImmediate runs after each poll phase, so between the
    // steps of the publishing: the stability check's stat, and the realpath check after it).
    await new Promise<void>((resolve, reject) => {
      const deadline = Date.now() + 10_000;
      const look = () => {
        for (const vpath of vpaths) if (!mount.waiting(vpath) && !mount.files.has(vpath)) gaps.add(vpath);
        if (vpaths.every((vpath) => mount.files.has(vpath))) return resolve();
        if (Date.now() > deadline) return reject(new Error(`not all published within 10 s: ${mount.files.size} of 20`));
        setImmediate(look);
      };
      look();
    });
    expect([...gaps]).toEqual([]);
    // Published: no longer waiting.
    for (const vpath of vpaths) expect(mount.waiting(vpath)).toBe(false);
  });

  it("mount - a directory renamed away and a file made at once at its name: the file, published about 0.1 s later, is seen to go when deleted at once", async () => {
    // (A CI run caught it.) The watcher loses track of both; the mount hands the file to it afresh, and
    // the file (its mtime already old enough) is published at once. chokidar's _remove, which that hand-over
    // uses, ignored another removal of the same path for 100 ms: a delete within them went unseen for good.
    const dir = await tempDir("fmq-mount-");
    mkdirSync(path.join(dir, "x"));
    for (let i = 0; i < 3; i++) writeFileSync(path.join(dir, "x", `f${i}`), String(i));
    const mount = await Mount.open(dir, "/", { stableMs: 50 });
    mounts.push(mount);
    const deleted: string[] = [];
    mount.on("deleted", (vpath: string) => deleted.push(vpath));
    await mount.start();
    await waitFor(() => mount.files.size === 3, "x/f0..f2 published");
    // (In one go, so that the watcher reads the directory once x is already a file.)
    renameSync(path.join(dir, "x"), path.join(dir, "y"));
    writeFileSync(path.join(dir, "x"), "7");
    await waitFor(() => mount.files.has("/x"), "/x published");
    rmSync(path.join(dir, "x"));
    await waitFor(() => deleted.includes("/x"), "/x deleted", 5_000);
    expect(mount.files.has("/x")).toBe(false);
  });

  it("mount - a file replaced by another of the same size and mtime (renamed over, or removed and made again) is published again", async () => {
    // (Found by black-box testing: chokidar says "change" only if the mtime moved; mv, tar -x and rsync -a
    // --checksum keep it, and the subscriber kept the old bytes for good.)
    const dir = await tempDir("fmq-mount-");
    const mtime = new Date("2021-06-01T00:00:00Z");
    const put = async (name: string, content: string) => {
      await writeFile(name, content);
      await utimes(name, new Date(), mtime);
    };
    await put(path.join(dir, "a.txt"), "AAAA");
    await put(path.join(dir, "b.txt"), "AAAA");
    const { mount, changed } = await publishedWithChanges(dir, 2);
    const first = { a: mount.files.get("/a.txt")!.ino, b: mount.files.get("/b.txt")!.ino };
    changed.length = 0;
    // Renamed over.
    await put(path.join(dir, "tmp"), "BBBB");
    await rename(path.join(dir, "tmp"), path.join(dir, "a.txt"));
    // Removed and made again (tar -x).
    await rm(path.join(dir, "b.txt"));
    await put(path.join(dir, "b.txt"), "CCCC");
    await waitFor(() => changed.includes("/a.txt") && changed.includes("/b.txt"), "both published again", 5000);
    expect(mount.files.get("/a.txt")!.ino).not.toBe(first.a);
    expect(mount.files.get("/a.txt")!.mtimeMs).toBe(mtime.getTime());
    expect(mount.files.get("/b.txt")!.size).toBe(4);
  });

  it("mount - a published file rewritten in place with its mtime put back (rsync --inplace, cp -p over it), after it was read, is published again: a new size, or the same size (then marked lookAlike)", async () => {
    // (A review: chokidar drops a change whose mtime did not move once the access time is past it, which
    // every file we have sent has; the new bytes were never published, whatever the new size.)
    const dir = await tempDir("fmq-mount-");
    const mtime = new Date("2021-06-01T00:00:00Z");
    for (const name of ["grows.txt", "same.txt"]) {
      await writeFile(path.join(dir, name), "0123456789");
      await utimes(path.join(dir, name), mtime, mtime);
    }
    const { mount, changed } = await publishedWithChanges(dir, 2);
    changed.length = 0;
    const rewrite = (name: string, content: string) => {
      // Read (the access time now past the mtime), then written in place at once with the mtime put back.
      const absolute = path.join(dir, name);
      execFileSync("cat", [absolute]);
      const fd = openSync(absolute, "r+");
      writeSync(fd, content, 0);
      closeSync(fd);
      utimesSync(absolute, new Date(), mtime);
    };
    rewrite("grows.txt", "0123456789 and more");
    rewrite("same.txt", "abcdefghij");
    await waitFor(() => changed.includes("/grows.txt") && changed.includes("/same.txt"), "both published again", 5000);
    expect(mount.files.get("/grows.txt")!.size).toBe(19);
    expect(mount.files.get("/same.txt")!.size).toBe(10);
    expect(mount.files.get("/same.txt")!.mtimeMs).toBe(mtime.getTime());
    expect(mount.files.get("/same.txt")!.lookAlike).toBe(true);
  });

  it("mount - a file written again and again in a big directory does not make the watcher read the directory again each time; a name made there still does", async () => {
    // (A resource review: chokidar read the whole directory, an lstat per entry, at every write to any
    // file in it: 79 % of a core for a file written twice a second among 10,000.)
    const dir = await tempDir("fmq-mount-");
    for (let i = 0; i < 300; i++) writeFileSync(path.join(dir, `f${i}`), String(i));
    writeFileSync(path.join(dir, "log.txt"), "start\n");
    const reads = vi.spyOn(FSWatcher.prototype as unknown as { _readdirp(root: string): unknown }, "_readdirp");
    const { mount } = await publishedWithChanges(dir, 301);
    const readsOfDir = () => reads.mock.calls.filter(([root]) => path.join(root, "") === dir).length;
    const before = readsOfDir();
    let size = 6;
    for (let i = 0; i < 8; i++) {
      const line = `line ${i} ${"x".repeat(i)}\n`;
      await appendFile(path.join(dir, "log.txt"), line);
      size += Buffer.byteLength(line);
      await waitFor(() => mount.files.get("/log.txt")?.size === size, `version ${i} published`, 5000);
    }
    expect(readsOfDir() - before).toBe(0);
    // A change of the directory itself (a chmod: it may have become readable) still reads it.
    await chmod(dir, 0o750);
    await waitFor(() => readsOfDir() > before, "the directory read after its chmod", 5000);
    // Names made and removed in it are still found by reading it.
    writeFileSync(path.join(dir, "new.txt"), "new");
    await rm(path.join(dir, "f7"));
    await waitFor(() => mount.files.has("/new.txt") && !mount.files.has("/f7"), "new.txt published, f7 gone", 5000);
    reads.mockRestore();
  });

  it("mount - a directory whose files the watcher is still adding after its read is not read afresh for them (a big tree read at once)", async () => {
    // (50,000 files in 100 directories, two busy loops beside: 132-156 directories were read afresh,
    // each dropping and adding back all it held, as chokidar's adds of what it had read took seconds:
    // 15-17 s and 11 CPU-s to publish them, peak RSS 700-760 MB; 8.3-8.7 s, 6.1-6.4 CPU-s and 540-550
    // MB without that.)
    const dir = await tempDir("fmq-mount-");
    const sub = path.join(dir, "sub");
    mkdirSync(sub);
    for (let i = 0; i < 50; i++) writeFileSync(path.join(sub, `f${i}`), String(i));
    // Each add of a file in sub/ takes 2.5 s here, longer than the mount waits (1.1 s) before it compares
    // what the watcher knows of sub/ with what is in it.
    const handler = NodeFsHandler.prototype as unknown as { _addToNodeFs(added: string, initialAdd: unknown, priorWh: unknown, depth: unknown, target: unknown): Promise<unknown> };
    const addToNodeFs = handler._addToNodeFs;
    handler._addToNodeFs = async function (this: unknown, added: string, initialAdd: unknown, priorWh: unknown, depth: unknown, target: unknown) {
      if (path.dirname(path.resolve(added)) === sub) await new Promise((resolve) => setTimeout(resolve, 2500));
      return addToNodeFs.call(this, added, initialAdd, priorWh, depth, target);
    };
    const reads = vi.spyOn(FSWatcher.prototype as unknown as { _readdirp(root: string): unknown }, "_readdirp");
    try {
      const { mount } = await started(dir);
      // (The mount's check is due 1.1 s after the watch of sub/ began, well before the adds end.)
      await waitFor(() => mount.files.size === 50, "the 50 files published", 10_000);
      expect(reads.mock.calls.filter(([root]) => path.join(root, "") === sub).length).toBe(1);
    } finally {
      handler._addToNodeFs = addToNodeFs;
    }
  });

  it("mount - a file made in a new directory after the watcher read it and before its watch began is published", async () => {
    // (An end-to-end review: cp -r of 10,000 files into a published directory lost up to 423 of them,
    // the last written into a directory, for good. chokidar reads a new directory, then watches it.)
    const dir = await tempDir("fmq-mount-");
    const { mount } = await publishedWithChanges(dir, 0);
    const fresh = path.join(dir, "fresh");
    const handler = NodeFsHandler.prototype as unknown as { _watchWithNodeFs(at: string, listener: unknown): unknown };
    const watchWith = handler._watchWithNodeFs;
    const between = vi.spyOn(handler, "_watchWithNodeFs").mockImplementation(function (this: unknown, at: string, listener: unknown) {
      // Right between the read of the new directory and its watch.
      if (at === fresh) writeFileSync(path.join(fresh, "late.txt"), "made in between");
      return watchWith.call(this, at, listener);
    });
    try {
      await mkdir(fresh);
      await waitFor(() => between.mock.calls.some(([at]) => at === fresh), "the new directory watched", 5000);
      await waitFor(() => mount.files.has("/fresh/late.txt"), "late.txt published", 5000);
    } finally {
      between.mockRestore();
    }
  });

  it("mount - a published symlink goes when its target is replaced by a FIFO, a directory or a link that leads nowhere", async () => {
    // (An end-to-end review: the links stayed published, and subscribers kept their old bytes.)
    const dir = await tempDir("fmq-mount-");
    for (const name of ["a", "b", "c"]) {
      writeFileSync(path.join(dir, `${name}.txt`), name);
      await symlink(`${name}.txt`, path.join(dir, `link-${name}`));
    }
    const { mount, deleted } = await started(dir);
    await waitFor(() => mount.files.size === 6, "six names published", 5000);
    rmSync(path.join(dir, "a.txt"));
    execFileSync("mkfifo", [path.join(dir, "a.txt")]);
    rmSync(path.join(dir, "b.txt"));
    mkdirSync(path.join(dir, "b.txt"));
    rmSync(path.join(dir, "c.txt"));
    await symlink("nowhere", path.join(dir, "c.txt"));
    const links = ["/link-a", "/link-b", "/link-c"];
    await waitFor(() => links.every((link) => deleted.includes(link)), `deletes of ${links.join(", ")}`, 5000);
    for (const link of links) expect(mount.files.has(link)).toBe(false);
  });

  it("mount - with a quiet period shorter than chokidar's change throttle, a file written again right after a version was published gets its last version published", async () => {
    // (Found writing the look-alike test: chokidar drops a "change" within 50 ms of the last one it
    // reported; with --stable-ms 10 the file kept the earlier version for good, 3 runs of 3.)
    const dir = await tempDir("fmq-mount-");
    const file = path.join(dir, "f.bin");
    await writeFile(file, "A");
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const sizes: number[] = [];
    let more: (() => void) | undefined;
    mount.on("changed", (published) => {
      sizes.push(published.size);
      more?.();
    });
    await mount.start();
    await waitFor(() => sizes.length === 1, "the first version", 5000);
    for (let round = 2; round <= 4; round++) {
      // A version published; the next write at once, from inside the event that says so.
      const content = "x".repeat(round * 10);
      more = () => {
        more = undefined;
        writeFileSync(file, content);
      };
      writeFileSync(file, "y".repeat(round * 10 - 5));
      await waitFor(() => sizes.at(-1) === round * 10, `round ${round}: the last version (${round * 10} bytes) published`, 5000);
    }
  });

  it("mount - a version whose mtime is not after an earlier one's under its name is marked lookAlike (set back, kept, or after a delete); one edited as usual is not", async () => {
    const dir = await tempDir("fmq-mount-");
    const file = path.join(dir, "f.bin");
    const old = new Date("2021-06-01T00:00:00Z");
    await writeFile(file, "AAAA");
    await utimes(file, old, old);
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    await mount.start();
    const next = async (what: string, change: () => Promise<void>) => {
      const before = mount.files.get("/f.bin");
      await change();
      return waitFor(() => mount.files.get("/f.bin") !== before && mount.files.get("/f.bin"), what, 5000);
    };
    await waitFor(() => mount.files.has("/f.bin"), "published", 5000);
    expect(mount.files.get("/f.bin")!.lookAlike).toBeUndefined();
    // Edited as usual: its mtime moves on.
    const edited = await next("the edit", () => writeFile(file, "BBBBBB"));
    expect(edited.lookAlike).toBeUndefined();
    // Given back its first size and mtime: older than the newest published.
    // (Made aside and renamed in: written in place, the version in between, mtime now, could be
    // published first under load.)
    const staged = path.join(dir, ".staged");
    const putOld = async (content: string) => {
      await writeFile(staged, content);
      await utimes(staged, old, old);
      await rename(staged, file);
    };
    const setBack = await next("the set-back version", () => putOld("CCCC"));
    expect([setBack.size, setBack.mtimeMs, setBack.lookAlike]).toEqual([4, old.getTime(), true]);
    // The mode changed only (size and mtime kept): still a look-alike of what was there.
    const chmodded = await next("the chmod", () => chmod(file, 0o600));
    expect(chmodded.lookAlike).toBe(true);
    // Removed, withdrawn, and made again with the old mtime.
    await rm(file);
    await waitFor(() => !mount.files.has("/f.bin"), "withdrawn", 5000);
    await putOld("DDDD");
    const remade = await waitFor(() => mount.files.get("/f.bin"), "made again", 5000);
    expect(remade.lookAlike).toBe(true);
    // Then edited as usual again: its mtime is after every earlier one's.
    const fresh = await next("the fresh edit", () => writeFile(file, "EEEE"));
    expect(fresh.lookAlike).toBeUndefined();
  });

  it("mount - a directory removed and made again, or turned into a file and back, over and over at once: each time, what is there is published", async () => {
    // (Found by the test suite under load, in a directory past the limit of watches, then here: a
    // directory the watcher was handed afresh and then replaced by a file was never reported, nor the
    // file (the watcher's watch on the directory went with it, and its parent's read found the name known
    // already); and chokidar drops a read of a directory asked for while a read of the one before, which
    // failed as it went, still counts: what the new one held was never published.)
    const dir = await tempDir("fmq-mount-");
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    await mount.start();
    const sub = path.join(dir, "sub");
    for (let round = 0; round < 6; round++) {
      rmSync(sub, { recursive: true, force: true });
      mkdirSync(sub);
      writeFileSync(path.join(sub, `x${round}`), "x");
      await waitFor(() => [...mount.files.keys()].join() === `/sub/x${round}`, `round ${round}: sub/x${round} published, alone`, 15_000);
      rmSync(sub, { recursive: true });
      writeFileSync(sub, `file ${round}`);
      await waitFor(() => [...mount.files.keys()].join() === "/sub" && mount.files.get("/sub")!.size === `file ${round}`.length, `round ${round}: the file sub published, alone`, 15_000);
    }
    // (12 such waits: 6 s here, a loaded machine may take several times that.)
  }, 120_000);

  it("mount - a directory turned file and back into a directory within a second: what the new directory holds is published", async () => {
    // (Found by black-box testing: chokidar reads a directory at most once a second, and the new one's
    // first read was dropped: c/b/z was never published.)
    const dir = await tempDir("fmq-mount-");
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    await mount.start();
    mkdirSync(path.join(dir, "c", "b"), { recursive: true });
    writeFileSync(path.join(dir, "c", "b", "f1"), "1");
    await waitFor(() => mount.files.has("/c/b/f1"), "c/b/f1 published", 15_000);
    rmSync(path.join(dir, "c", "b"), { recursive: true });
    writeFileSync(path.join(dir, "c", "b"), "file");
    await waitFor(() => mount.files.has("/c/b"), "the file c/b published", 15_000);
    rmSync(path.join(dir, "c", "b"));
    mkdirSync(path.join(dir, "c", "b"));
    writeFileSync(path.join(dir, "c", "b", "z"), "inner");
    await waitFor(() => mount.files.has("/c/b/z"), "c/b/z published", 15_000);
    expect([...mount.files.keys()]).toEqual(["/c/b/z"]);
  });

  it("mount - a symlink to a directory is not followed, and says so once (inside the mount or out)", async () => {
    const dir = await tempDir("fmq-mount-");
    mkdirSync(path.join(dir, "real"));
    writeFileSync(path.join(dir, "real", "f.txt"), "f");
    await symlink("real", path.join(dir, "alias"));
    await symlink("/etc", path.join(dir, "etc"));
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const warnings: string[] = [];
    mount.on("warning", (error) => warnings.push(error.message));
    await mount.start();
    await waitFor(() => mount.files.has("/real/f.txt") && warnings.length >= 2, "real/f.txt published, two warnings", 5000);
    expect(warnings.sort()).toEqual(['not published: "alias": a symlink to a directory (not followed)', 'not published: "etc": a symlink to a directory (not followed)']);
    expect([...mount.files.keys()]).toEqual(["/real/f.txt"]);
  });

  /** A mount of a new directory holding target.txt and `link` to it, once the link is published; its deletes. */
  async function publishedLink() {
    const dir = await tempDir("fmq-mount-");
    writeFileSync(path.join(dir, "target.txt"), "t");
    await symlink("target.txt", path.join(dir, "link"));
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const deleted: string[] = [];
    mount.on("deleted", (vpath) => deleted.push(vpath));
    await mount.start();
    await waitFor(() => mount.files.has("/link"), "the link published", 5000);
    return { dir, mount, deleted };
  }

  it("mount - a published symlink re-pointed at a directory is withdrawn", async () => {
    // (Found by review: it stayed published with its old target's content.)
    const { dir, mount, deleted } = await publishedLink();
    mkdirSync(path.join(dir, "sub"));
    await rm(path.join(dir, "link"));
    await symlink("sub", path.join(dir, "link"));
    await waitFor(() => !mount.files.has("/link"), "the link withdrawn", 5000);
    expect(deleted).toEqual(["/link"]);
    expect([...mount.files.keys()]).toEqual(["/target.txt"]);
  });

  // (Round a loop: the link renamed over it leads to itself.)
  it.each([
    ["at nothing", "nowhere.txt"],
    ["round a loop", "link"],
  ])("mount - a published symlink re-pointed %s (renamed over by a link that cannot be followed) is withdrawn", async (_, to) => {
    // (Found writing the retarget test below: it stayed published as its old target, whose content a new
    // subscriber was sent under the link's name, until that target happened to change.)
    const { dir, mount, deleted } = await publishedLink();
    await symlink(to, path.join(dir, ".link.new"));
    await rename(path.join(dir, ".link.new"), path.join(dir, "link"));
    await waitFor(() => !mount.files.has("/link"), "the link withdrawn", 5000);
    expect(deleted).toEqual(["/link"]);
    expect([...mount.files.keys()]).toEqual(["/target.txt"]);
  });

  it("mount - a symlink that leads nowhere (into another directory) is published once what it names appears, whether it was there at the start or made later: the watcher says nothing of it", async () => {
    // (The watcher reports a link that leads nowhere neither at its first scan nor when it is made, and
    // nothing when its target appears in another directory: it stayed unpublished for good.)
    const dir = await tempDir("fmq-mount-");
    mkdirSync(path.join(dir, "links"));
    mkdirSync(path.join(dir, "data"));
    await symlink("../data/first.txt", path.join(dir, "links", "early"));
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    await mount.start();
    await symlink("../data/second.txt", path.join(dir, "links", "late"));
    // And a link to a link that leads nowhere yet.
    await symlink("late", path.join(dir, "links", "chain"));
    writeFileSync(path.join(dir, "data", "marker.txt"), "m");
    await waitFor(() => mount.files.has("/data/marker.txt"), "marker.txt published", 5000);
    expect([...mount.files.keys()]).toEqual(["/data/marker.txt"]);

    writeFileSync(path.join(dir, "data", "first.txt"), "1");
    await waitFor(() => mount.files.get("/links/early")?.target === "/data/first.txt", "links/early published, leading to data/first.txt", 5000);
    writeFileSync(path.join(dir, "data", "second.txt"), "2");
    await waitFor(
      () => mount.files.get("/links/late")?.target === "/data/second.txt" && mount.files.get("/links/chain")?.target === "/data/second.txt",
      "links/late and links/chain published, leading to data/second.txt",
      5000,
    );

    // Its target gone, a link goes; the target back, so is the link. (Found by review: it never came back.)
    const deleted: string[] = [];
    mount.on("deleted", (vpath) => deleted.push(vpath));
    await rm(path.join(dir, "data", "first.txt"));
    await waitFor(() => !mount.files.has("/links/early"), "links/early withdrawn with its target", 5000);
    writeFileSync(path.join(dir, "data", "first.txt"), "1 again");
    await waitFor(() => mount.files.get("/links/early")?.target === "/data/first.txt", "links/early published again", 5000);

    // A link published this way, removed, goes. (Found by review: the watcher, which never took it in,
    // said nothing, and it stayed published.)
    await rm(path.join(dir, "links", "late"));
    await waitFor(() => !mount.files.has("/links/late"), "links/late withdrawn once removed", 5000);
    expect(deleted).toContain("/links/late");
  });

  it("mount - a symlink retargeted from one file to another is no longer a name of the first: its changes and its delete leave the link alone, the second's reach it", async () => {
    // (Found by review: the link stayed listed under its old target too, and was looked at again, its
    // quiet period started over, whenever that file changed or went.)
    const dir = await tempDir("fmq-mount-");
    const old = new Date("2021-06-01T00:00:00Z");
    for (const [name, content] of [["a.txt", "A1"], ["b.txt", "B1"]]) {
      await writeFile(path.join(dir, name!), content!);
      await utimes(path.join(dir, name!), old, old);
    }
    await symlink("a.txt", path.join(dir, "link"));
    // (A quiet period long enough that a look at the link started by a change to a.txt is still under
    // way when that change is published.)
    const mount = await Mount.open(dir, "/", { stableMs: 200 });
    mounts.push(mount);
    const deleted: string[] = [];
    mount.on("deleted", (vpath) => deleted.push(vpath));
    await mount.start();
    await waitFor(() => mount.files.get("/link")?.target === "/a.txt" && mount.files.has("/b.txt"), "a.txt, b.txt and the link to a.txt published", 5000);
    // Retargeted in one step (renamed over): the name never goes, so only the link's own publishing can
    // take it off a.txt's names.
    await symlink("b.txt", path.join(dir, ".link.new"));
    await rename(path.join(dir, ".link.new"), path.join(dir, "link"));
    const retargeted = await waitFor(() => mount.files.get("/link")?.target === "/b.txt" && mount.files.get("/link"), "the link republished as b.txt", 5000);
    await waitFor(() => mount.unstable === 0, "nothing waiting", 5000);

    // a.txt changes: when its new version is published, the link has not been looked at for it.
    let linkWaiting: boolean | undefined;
    mount.on("changed", (file) => {
      if (file.vpath === "/a.txt" && file.size === 7) linkWaiting = mount.waiting("/link");
    });
    await writeFile(path.join(dir, "a.txt"), "A2 2222");
    await waitFor(() => linkWaiting !== undefined, "the new a.txt published", 5000);
    expect(linkWaiting, "the link looked at again for a change to its old target").toBe(false);
    expect(mount.files.get("/link")).toBe(retargeted);

    // a.txt goes: the link stays, and still follows b.txt.
    await rm(path.join(dir, "a.txt"));
    await waitFor(() => deleted.includes("/a.txt"), "a.txt withdrawn", 5000);
    await writeFile(path.join(dir, "b.txt"), "B2 22222");
    await waitFor(() => mount.files.get("/link")?.size === 8, "the link republished with the new b.txt", 5000);
    expect(mount.files.get("/link")!.target).toBe("/b.txt");
    expect(deleted).toEqual(["/a.txt"]);
  });

  it("mount - links that lead nowhere are found in a directory moved into the mount after its first scan, and past the first walk's 100 reported names", async () => {
    // (The walk after the first scan stopped at its 101st report, leaving the links after it unfound; and a
    // directory moved in later was never walked: its links waited for nothing.)
    const dir = await tempDir("fmq-mount-");
    mkdirSync(path.join(dir, "data"));
    // Ten directories of 30 names that cannot be published, each with a link into data/ that leads nowhere.
    for (let d = 0; d < 10; d++) {
      const sub = path.join(dir, `d${d}`);
      mkdirSync(sub);
      for (let i = 0; i < 30; i++) writeFileSync(Buffer.concat([Buffer.from(`${sub}/`), Buffer.from(`bad\xe9${i}`, "latin1")]), "x");
      await symlink(`../data/t${d}.txt`, path.join(sub, "link"));
    }
    // And a tree made outside, with such links two levels down, to be moved in later.
    const outside = await tempDir("fmq-mount-out-");
    mkdirSync(path.join(outside, "tree", "a", "b"), { recursive: true });
    await symlink("../../../data/moved.txt", path.join(outside, "tree", "a", "b", "link"));
    await symlink("../../data/moved.txt", path.join(outside, "tree", "a", "link"));
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const warnings: string[] = [];
    mount.on("warning", (error) => warnings.push(error.message));
    await mount.start();
    await waitFor(() => warnings.length === 101, "100 names said, and one line more", 10_000);
    expect(warnings.at(-1)).toMatch(/^more names could not be published/);
    renameSync(path.join(outside, "tree"), path.join(dir, "tree"));
    writeFileSync(path.join(dir, "data", "marker.txt"), "m");
    await waitFor(() => mount.files.has("/data/marker.txt"), "marker.txt published", 5000);

    for (let d = 0; d < 10; d++) writeFileSync(path.join(dir, "data", `t${d}.txt`), String(d));
    writeFileSync(path.join(dir, "data", "moved.txt"), "moved");
    const links = [...Array.from({ length: 10 }, (_, d) => `/d${d}/link`), "/tree/a/link", "/tree/a/b/link"];
    await waitFor(() => links.every((link) => mount.files.has(link)), "every link published once its target appeared", 10_000).catch((error: Error) => {
      throw new Error(`${error.message}; missing: ${links.filter((link) => !mount.files.has(link)).join(", ")}`);
    });
    expect(mount.files.get("/tree/a/b/link")?.target).toBe("/data/moved.txt");
    expect(warnings).toHaveLength(101);
  });

  it("mount - the walk for what the watcher skips does not read through a directory swapped for a symlink: nothing found there is handed over", async () => {
    // (Found by review: a directory taken afresh after the watcher missed its swap for a link was read
    // through the link, and a link found there published under the swapped name, which nothing watched.)
    const dir = await realpath(await tempDir("fmq-mount-"));
    mkdirSync(path.join(dir, "b"));
    writeFileSync(path.join(dir, "data.txt"), "d");
    await symlink("../data.txt", path.join(dir, "b", "l"));
    await symlink("b", path.join(dir, "a"));
    const found: string[] = [];
    const findings = { report: (message: string) => found.push(message), unreadable: (d: string) => found.push(d), symlink: (_absolute: string, relative: string) => found.push(relative) };
    await findUnpublishable(dir, "a", false, findings);
    expect(found).toEqual([]);
    // The real directory is walked.
    await findUnpublishable(dir, "b", false, findings);
    expect(found).toEqual(["b/l"]);
  });

  it("mount - names that are not valid UTF-8 (a file, and a directory of files) are reported, not lost without a word; the rest is published", async () => {
    const dir = await tempDir("fmq-mount-");
    await writeFile(path.join(dir, "ok.txt"), "ok");
    // Latin-1 names: Node reads them back with U+FFFD and cannot open them by that name.
    const latin1 = (name: string) => Buffer.concat([Buffer.from(dir + "/"), Buffer.from(name, "latin1")]);
    await writeFile(latin1("caf\xe9.txt"), "x");
    await mkdir(latin1("d\xe9j\xe0"));
    await writeFile(Buffer.concat([latin1("d\xe9j\xe0"), Buffer.from("/inner.txt")]), "y");
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const errors: string[] = [];
    mount.on("warning", (error) => errors.push(error.message));
    await mount.start();
    await waitFor(() => mount.files.has("/ok.txt") && errors.length >= 2, "ok.txt published, two names reported", 5000);
    expect(errors.sort()).toEqual([
      'not published: "caf?.txt": its name is not valid UTF-8 (Node cannot open it); rename it',
      'not published: "d?j?": its name is not valid UTF-8 (Node cannot open it); rename it',
    ]);
    expect([...mount.files.keys()]).toEqual(["/ok.txt"]);

    // Made later in a directory already watched (which the watcher says nothing of): said too, once.
    await writeFile(latin1("na\xefve.txt"), "z");
    await waitFor(() => errors.length === 3, "the later name said", 5000);
    expect(errors[2]).toBe('not published: "na?ve.txt": its name is not valid UTF-8 (Node cannot open it); rename it');
    await rm(latin1("na\xefve.txt"));
    await writeFile(path.join(dir, "last.txt"), "l");
    await waitFor(() => mount.files.has("/last.txt"), "last.txt published", 5000);
    expect(errors).toHaveLength(3);
  });
  it("mount - used as a library with no listener, a warning (a name that cannot be published) is not thrown: the rest is published", async () => {
    const dir = await tempDir("fmq-mount-");
    await writeFile(path.join(dir, "ok.txt"), "ok");
    await writeFile(path.join(dir, "back\\slash.txt"), "refused by subscribers, so not published");
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const said: string[] = [];
    const spy = mount.emit.bind(mount);
    mount.emit = ((event: string, ...args: unknown[]) => {
      if (event === "warning") said.push((args[0] as Error).message);
      return spy(event as "warning", ...(args as [Error]));
    }) as typeof mount.emit;
    await mount.start();
    await waitFor(() => mount.files.has("/ok.txt") && said.length > 0, "ok.txt published, the name reported", 5000);
    expect(said[0]).toMatch(/^not published: "back\\slash\.txt"/);
    expect([...mount.files.keys()]).toEqual(["/ok.txt"]);
  });

  it("mount - a symlink to a hidden file is not published; a published name swapped for a link out of the mount is deleted, with a reason for each", async () => {
    const dir = await tempDir("fmq-mount-");
    const outside = await tempDir("fmq-mount-outside-");
    await mkdir(path.join(dir, ".hidden"));
    await writeFile(path.join(dir, ".hidden", "key"), "secret");
    await writeFile(path.join(outside, "other"), "not ours");
    await writeFile(path.join(dir, "plain.txt"), "plain");
    await symlink(".hidden/key", path.join(dir, "lnk"));
    const { mount, warnings: errors, deleted } = await started(dir);
    await waitFor(() => mount.files.has("/plain.txt") && errors.length >= 1, "plain.txt published, the link refused", 5000);
    expect(errors).toEqual(["not published: lnk leads to .hidden/key, which is not published from here (hidden, fmq's own state, or another mount's)"]);
    expect([...mount.files.keys()]).toEqual(["/plain.txt"]);
    // Renamed over: the name now leads outside. It was published; it is no longer what was published.
    await symlink(path.join(outside, "other"), path.join(dir, "tmp-link"));
    await rename(path.join(dir, "tmp-link"), path.join(dir, "plain.txt"));
    await waitFor(() => deleted.includes("/plain.txt"), "the delete of plain.txt", 5000);
    expect(mount.files.has("/plain.txt")).toBe(false);
    expect(errors).toContain(`not published: plain.txt leads outside ${await realpath(dir)}`);
  });
  it("mount - a published file replaced by a FIFO, or its published link re-pointed at a device, is withdrawn (its delete goes out)", async () => {
    const dir = await tempDir("fmq-mount-");
    await writeFile(path.join(dir, "f"), "a file");
    await writeFile(path.join(dir, "target"), "a target");
    await symlink("target", path.join(dir, "lnk"));
    const { mount, deleted } = await started(dir);
    await waitFor(() => mount.files.has("/f") && mount.files.has("/lnk"), "f and lnk published", 5000);
    execFileSync("mkfifo", [path.join(dir, "fifo")]);
    await rename(path.join(dir, "fifo"), path.join(dir, "f"));
    await symlink("/dev/null", path.join(dir, "new-lnk"));
    await rename(path.join(dir, "new-lnk"), path.join(dir, "lnk"));
    await waitFor(() => deleted.includes("/f") && deleted.includes("/lnk"), "the deletes of f and lnk", 10_000);
    expect(mount.files.has("/f")).toBe(false);
    expect(mount.files.has("/lnk")).toBe(false);
    expect(mount.files.has("/target")).toBe(true);
  });

  // (Needs unshare(1) and the right to make a mount namespace and bind mounts: root, as the review's
  // scenario has it, and as CI runs. Skipped for anyone else, who could not make the scenario.)
  it.skipIf(process.getuid?.() !== 0)("mount - a link through another mount namespace (/proc/<pid>/root/...), which the kernel follows elsewhere than its text says, is not published", async () => {
    const dir = await realpath(await tempDir("fmq-mount-"));
    const secret = path.join(await tempDir("fmq-mount-secret-"), "shadow");
    await writeFile(secret, "root only");
    await mkdir(path.join(dir, "y"));
    await writeFile(path.join(dir, "y", "s"), "a decoy");
    // In a namespace of its own, the decoy's path shows the secret (a bind mount needs only the path).
    const other = spawn("unshare", ["-m", "--propagation", "private", "sh", "-c", `mount --bind ${secret} ${path.join(dir, "y", "s")} && echo bound && exec sleep 60`], { stdio: ["ignore", "pipe", "inherit"] });
    try {
      let bound = false;
      other.stdout.on("data", () => (bound = true));
      await waitFor(() => bound || other.exitCode !== null, "the other namespace's bind mount", 10_000);
      expect(bound).toBe(true);
      await symlink(`/proc/${other.pid}/root${path.join(dir, "y", "s")}`, path.join(dir, "L"));
      // What the link shows is the secret; its text resolves to the decoy's path, inside the mount.
      expect(await readFile(path.join(dir, "L"), "utf8")).toBe("root only");
      const mount = await Mount.open(dir, "/", { stableMs: 10 });
      mounts.push(mount);
      const said: string[] = [];
      mount.on("warning", (error) => said.push(error.message));
      await mount.start();
      await waitFor(() => mount.files.has("/y/s") && said.some((m) => m.includes('"L"')), "y/s published, L refused", 5000);
      expect(mount.files.has("/L")).toBe(false);
      expect(said.find((m) => m.includes('"L"'))).toBe(`not published: "L": a link to a file other than its path ${path.join(dir, "y", "s")} names`);
    } finally {
      other.kill("SIGKILL");
    }
  });

  it("mount - a directory removed and made again at once (rm -rf out && mkdir out), empty or not: what is written into it later is published; the old files go as deletes", async () => {
    const dir = await tempDir("fmq-mount-");
    await mkdir(path.join(dir, "out"));
    await mkdir(path.join(dir, "empty"));
    for (let i = 0; i < 5; i++) await writeFile(path.join(dir, "out", `f${i}`), `old ${i}`);
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const deleted: string[] = [];
    mount.on("deleted", (vpath) => deleted.push(vpath));
    mount.on("warning", () => undefined);
    await mount.start();
    await waitFor(() => mount.files.size === 5, "the old files published", 5000);
    // At once, as a build's clean step does (no await between: the watcher sees it all as one burst).
    rmSync(path.join(dir, "out"), { recursive: true });
    mkdirSync(path.join(dir, "out"));
    writeFileSync(path.join(dir, "out", "build1"), "1");
    rmSync(path.join(dir, "empty"), { recursive: true });
    mkdirSync(path.join(dir, "empty"));
    await waitFor(() => mount.files.has("/out/build1") && deleted.length === 5, "build1 published, the old files deleted", 15_000);
    // Later, into the new directories.
    await writeFile(path.join(dir, "out", "build2"), "2");
    await mkdir(path.join(dir, "out", "sub"));
    await writeFile(path.join(dir, "out", "sub", "x"), "3");
    await writeFile(path.join(dir, "empty", "y"), "4");
    await waitFor(() => ["/out/build2", "/out/sub/x", "/empty/y"].every((vpath) => mount.files.has(vpath)), "the later files published", 15_000);
    expect(deleted.sort()).toEqual(["/out/f0", "/out/f1", "/out/f2", "/out/f3", "/out/f4"]);
    expect([...mount.files.keys()].sort()).toEqual(["/empty/y", "/out/build1", "/out/build2", "/out/sub/x"]);
  });
  it("mount - a directory renamed away and a new one made at its name with a subdirectory (mv a a.old; mkdir -p a/b): the new files are published, the old ones go from a/ and come at a.old/", async () => {
    const dir = await tempDir("fmq-mount-");
    await mkdir(path.join(dir, "a", "b"), { recursive: true });
    await writeFile(path.join(dir, "a", "b", "old.txt"), "old");
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    mount.on("warning", () => undefined);
    await mount.start();
    await waitFor(() => mount.files.has("/a/b/old.txt"), "old.txt published", 5000);
    renameSync(path.join(dir, "a"), path.join(dir, "a.old"));
    mkdirSync(path.join(dir, "a", "b"), { recursive: true });
    await new Promise((resolve) => setTimeout(resolve, 300));
    await writeFile(path.join(dir, "a", "b", "new.txt"), "new");
    await waitFor(() => mount.files.has("/a/b/new.txt") && mount.files.has("/a.old/b/old.txt") && !mount.files.has("/a/b/old.txt"), "new.txt, old.txt at its new name, not at the old", 15_000);
  });

  it("mount - a child with the published directory's own name coming and going is not taken for the directory being replaced", async () => {
    const dir = await tempDir("fmq-mount-");
    await writeFile(path.join(dir, "f.txt"), "f");
    const mount = await Mount.open(dir, "/", { stableMs: 10 });
    mounts.push(mount);
    const errors: string[] = [];
    mount.on("warning", (error) => errors.push(error.message));
    await mount.start();
    await waitFor(() => mount.files.has("/f.txt"), "f.txt published", 5000);
    // The same kernel event as the directory's own removal: a rename of its name, seen by its own watch.
    await writeFile(path.join(dir, path.basename(dir)), "same name as its directory");
    await waitFor(() => mount.files.has(`/${path.basename(dir)}`), "the child published", 5000);
    await rm(path.join(dir, path.basename(dir)));
    await waitFor(() => !mount.files.has(`/${path.basename(dir)}`), "the child gone", 5000);
    // (The check runs 100 ms after the event: a second is well past it.)
    await new Promise((resolve) => setTimeout(resolve, 1000));
    expect(errors.filter((e) => /was removed/.test(e))).toEqual([]);
    expect(mount.files.has("/f.txt")).toBe(true);
  });
});
