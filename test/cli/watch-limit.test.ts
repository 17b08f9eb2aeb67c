// The publisher past the system's limit of inotify watches (8,192 per user on older distributions, and
// chokidar takes one per file): what it could not watch is looked at in turn, so changes there still
// reach subscribers, and the publisher says so in two lines, not one per path.
//
// The limit is lowered for the publisher alone: in a user namespace of its own (unshare -U), where
// /proc/sys/user/max_inotify_watches is that namespace's (Linux 5.11 and later); the subscriber runs as usual.

import { execFileSync } from "node:child_process";
import { mkdir, readFile, readdir, readlink, rename, rm, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FMQ_COMMAND, startFmq } from "../helpers/fmq.js";
import { sha256File, treeHashes, writeTree } from "../helpers/files.js";
import { freePort } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

/** `fmq <args>` with at most `watches` inotify watches. */
function fmqWithWatches(watches: number, args: string[]) {
  return startFmq(["-Ur", "sh", "-c", `echo ${watches} > /proc/sys/user/max_inotify_watches && exec "$0" "$@"`, FMQ_COMMAND, ...args], {}, "unshare");
}

/** The inodes the process holds inotify watches on (from its inotify descriptor's fdinfo). */
async function watchedInodes(pid: number): Promise<Set<number>> {
  const inodes = new Set<number>();
  for (const fd of await readdir(`/proc/${pid}/fd`)) {
    if ((await readlink(`/proc/${pid}/fd/${fd}`).catch(() => "")) !== "anon_inode:inotify") continue;
    for (const match of (await readFile(`/proc/${pid}/fdinfo/${fd}`, "utf8")).matchAll(/^inotify wd:\d+ ino:([0-9a-f]+)/gm)) inodes.add(parseInt(match[1]!, 16));
  }
  return inodes;
}

/** treeHashes, with what each symlink leads to as a file of its name (as subscribers receive it). */
async function sourceHashes(root: string): Promise<Map<string, string>> {
  const out = await treeHashes(root);
  // (The tree may change while we walk it: what is not there, or no longer a directory, is skipped.)
  const skip = () => undefined;
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true }).catch(skip)) ?? []) {
      const full = path.join(dir, entry.name);
      if (entry.isDirectory()) await walk(full);
      else if (entry.isSymbolicLink()) {
        const hash = await sha256File(full).catch(skip);
        if (hash !== undefined) out.set(path.relative(root, full), hash);
      }
    }
  };
  await walk(root);
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

const same = async (src: string, inbox: string) => JSON.stringify([...(await sourceHashes(src))]) === JSON.stringify([...(await treeHashes(inbox))]);

describe("watch limit", () => {
  it("watch limit - with watches for 40 of 94 paths, files changed, added (in a new directory too) and removed where nothing watches reach the subscriber byte for byte; two warnings, not one per path", async () => {
    // (The namespace must be allowed here, or this test says nothing: it fails rather than pass unseen.)
    execFileSync("unshare", ["-Ur", "sh", "-c", "echo 40 > /proc/sys/user/max_inotify_watches"]);
    const src = await tempDir();
    const inbox = await tempDir();
    const files: Record<string, string> = {};
    for (const dir of ["a", "b", "c"]) for (let i = 1; i <= 30; i++) files[`${dir}/f${i}.txt`] = `${dir} ${i} `.repeat(i);
    await writeTree(src, files);
    const port = await freePort();
    const pub = fmqWithWatches(40, ["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => pub.events.filter((e) => e.event === "published").length === 90, "90 files published", 15_000);
    const warnings = () => pub.events.filter((e) => e.event === "warning").map((e) => String(e.message));
    await waitFor(() => warnings().some((m) => /paths? under .* (is|are) not watched/.test(m)), "the count of paths not watched", 10_000);
    expect(warnings()[0]).toMatch(/limit of inotify watches is reached .*max_user_watches/);

    startFmq(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);
    await waitFor(() => same(src, inbox), "the first copy", 15_000, 100);

    // Chokidar watches a directory after its files: with 40 watches, the last directories and their
    // files have none. Changes in each directory, so some fall where nothing is watched.
    for (const dir of ["a", "b", "c"]) {
      await writeFile(path.join(src, dir, "f30.txt"), `${dir} changed, longer than before `.repeat(40));
      await writeFile(path.join(src, dir, "f2.txt"), `${dir.toUpperCase()} 2 ${dir.toUpperCase()} 2 `); // same size, new bytes
      await writeFile(path.join(src, dir, "new.txt"), `new in ${dir}`);
      await rm(path.join(src, dir, "f1.txt"));
      await mkdir(path.join(src, dir, "sub"));
      await writeFile(path.join(src, dir, "sub", "deep.txt"), `deep in ${dir}`);
    }
    await waitFor(() => same(src, inbox), "the changes, byte for byte", 20_000, 100);
    expect((await treeHashes(inbox)).size).toBe(3 * 31);
    // The first line, the count, and the count again at most once (new paths not watched: the subdirectories).
    expect(warnings().length).toBeLessThanOrEqual(3);
    expect(pub.stderr.filter((line) => /ENOSPC/.test(line))).toEqual([]);
  });

  it("watch limit - in a directory not watched whose files are (the usual state past the limit): a file removed and made again, a link made and retargeted, a subdirectory made, removed and made again, and replaced by a file, all reach the subscriber", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    // 300 files, 100 watches: the watcher watches the files it reads first, and then has none left for
    // the directory itself (nor for the rest of its files).
    const files: Record<string, string> = {};
    for (let i = 1; i <= 300; i++) files[`big/f${i}.txt`] = `big ${i} `.repeat(i % 17);
    await writeTree(src, files);
    const port = await freePort();
    const pub = fmqWithWatches(100, ["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => pub.events.filter((e) => e.event === "published").length === 300, "300 files published", 15_000);
    startFmq(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);
    await waitFor(() => same(src, inbox), "the first copy", 15_000, 100);
    const big = path.join(src, "big");
    const watched = await watchedInodes(pub.child.pid!);
    // (The state this test is about; if the watcher's order changes, this says so rather than pass unseen.)
    expect(watched.has((await stat(big)).ino)).toBe(false);
    const withWatch: string[] = [];
    for (let i = 1; i <= 300 && withWatch.length < 2; i++) if (watched.has((await stat(path.join(big, `f${i}.txt`))).ino)) withWatch.push(`f${i}.txt`);
    expect(withWatch).toHaveLength(2);
    const [a, b] = withWatch as [string, string];
    const step = async (what: string, change: () => Promise<void>) => {
      await change();
      await waitFor(() => same(src, inbox), what, 15_000, 100);
    };

    await step("a watched file removed and made again at once", async () => {
      await rm(path.join(big, a));
      await writeFile(path.join(big, a), "made again");
    });
    await step("a watched file removed, then made again a moment later", async () => {
      await rm(path.join(big, b));
      await waitFor(async () => !(await treeHashes(inbox)).has(`big/${b}`), "its delete", 15_000, 50);
      await writeFile(path.join(big, b), "back later");
    });
    await step("the file made again, then changed", () => writeFile(path.join(big, a), "made again, and changed since"));
    await step("a link made", () => symlink("f1.txt", path.join(big, "L.txt")));
    await step("the link retargeted (a new link renamed over it)", async () => {
      await symlink("f2.txt", path.join(big, "L.new"));
      await rename(path.join(big, "L.new"), path.join(big, "L.txt"));
    });
    await step("a subdirectory made", async () => {
      await mkdir(path.join(big, "sub"));
      await writeFile(path.join(big, "sub", "x.txt"), "x");
    });
    await step("the subdirectory removed and made again with another file", async () => {
      await rm(path.join(big, "sub"), { recursive: true });
      await mkdir(path.join(big, "sub"));
      await writeFile(path.join(big, "sub", "y.txt"), "y");
    });
    await step("the subdirectory replaced by a file", async () => {
      await rm(path.join(big, "sub"), { recursive: true });
      await writeFile(path.join(big, "sub"), "a file now");
    });
    expect((await treeHashes(inbox)).size).toBe(302);
  });
});
