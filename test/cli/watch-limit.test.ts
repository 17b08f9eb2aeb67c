// The publisher past the system's limit of inotify watches (8,192 per user on older distributions, and
// chokidar takes one per file): what it could not watch is looked at in turn, so changes there still
// reach subscribers, and the publisher says so in two lines, not one per path.
//
// The limit is lowered for the publisher alone: in a user namespace of its own (unshare -U), where
// /proc/sys/user/max_inotify_watches is that namespace's (Linux 5.11 and later); the subscriber runs as usual.

import { execFileSync } from "node:child_process";
import { mkdir, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { FMQ_COMMAND, startFmq } from "../helpers/fmq.js";
import { treeHashes, writeTree } from "../helpers/files.js";
import { freePort } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

/** `fmq <args>` with at most `watches` inotify watches. */
function fmqWithWatches(watches: number, args: string[]) {
  return startFmq(["-Ur", "sh", "-c", `echo ${watches} > /proc/sys/user/max_inotify_watches && exec "$0" "$@"`, FMQ_COMMAND, ...args], {}, "unshare");
}

const same = async (a: string, b: string) => JSON.stringify([...(await treeHashes(a))]) === JSON.stringify([...(await treeHashes(b))]);

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
    await waitFor(() => warnings().some((m) => /paths under .* are not watched/.test(m)), "the count of paths not watched", 10_000);
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
});
