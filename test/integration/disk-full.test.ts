// A full disk on the subscriber: the file being written fails with a clear error, what was received
// stays on disk to resume, and the client carries on: once there is room again, the next files arrive. The inbox is a real 4 MiB tmpfs (mounting
// needs root, which CI has here; elsewhere the test says it was skipped and why).

import { execFileSync } from "node:child_process";
import { statfsSync } from "node:fs";
import { mkdir, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { context } from "zeromq";
import { Client, Server } from "../../src/index.js";
import { partialName } from "../../src/client/inbox.js";
import { Manifest } from "../../src/client/manifest.js";
import { tempDir } from "../helpers/tmp.js";
import { sha256File, writeRandomFile } from "../helpers/files.js";
import { waitFor } from "../helpers/wait.js";
import { tcpEndpoint } from "../helpers/net.js";

context.blocky = false;

const MiB = 1024 * 1024;
const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

/** A tmpfs of `size` bytes at a fresh directory, or the reason it cannot be had here. */
async function smallDisk(size: number): Promise<string | { skip: string }> {
  const dir = path.join(await tempDir(), "disk");
  await mkdir(dir);
  try {
    execFileSync("mount", ["-t", "tmpfs", "-o", `size=${size}`, "tmpfs", dir], { stdio: "pipe" });
  } catch (error) {
    return { skip: `cannot mount a tmpfs here: ${String((error as Error).message).split("\n")[0]}` };
  }
  closers.push(async () => {
    execFileSync("umount", ["-l", dir]);
  });
  return dir;
}

/** Bytes an unprivileged writer may still write on the file system of `dir`. */
function freeBytes(dir: string): number {
  const fs = statfsSync(dir);
  return fs.bavail * fs.bsize;
}

/** A server publishing `src`, and its endpoint. */
async function serve(src: string): Promise<string> {
  const server = new Server({ stableMs: 50 });
  closers.push(() => server.close());
  await server.publish(src);
  return server.bind(await tcpEndpoint());
}

/** A client with its inbox at `inbox`, recording errors and deliveries (not connected yet). */
function clientInto(endpoint: string, inbox: string) {
  const client = new Client({ endpoint, inbox, heartbeatMs: 200 });
  closers.push(() => client.close());
  const errors: string[] = [];
  const delivered: { path: string; received: number }[] = [];
  client.on("error", (e) => errors.push(e.message));
  client.on("delivered", (e) => delivered.push({ path: e.path, received: e.received }));
  return { client, errors, delivered };
}

describe("disk full", () => {
  it("disk full - the file fails with a clear error, what was received is kept to resume, the client carries on", async (ctx) => {
    const disk = await smallDisk(4 * MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const src = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 8 * MiB);
    const endpoint = await serve(src);

    // Something else on the same disk, removed later to make room again.
    const filler = path.join(disk, "filler.bin");
    await writeFile(filler, Buffer.alloc(MiB));
    const inbox = path.join(disk, "inbox");
    const { client, errors, delivered } = clientInto(endpoint, inbox);
    await client.subscribe("/");
    client.connect();

    await waitFor(() => errors.some((e) => /disk full/.test(e)), "the disk-full error");
    const message = errors.find((e) => /disk full/.test(e))!;
    expect(message).toMatch(/^big\.bin: disk full \(ENOSPC\); \d+ bytes received, kept to resume$/);
    const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
    expect((await stat(partial)).size).toBeGreaterThan(0);
    expect(await readFile(path.join(inbox, ".fmq", "journal.jsonl"), "utf8")).toContain('"op":"partial","name":"big.bin"');
    expect(await readdir(inbox)).toEqual([".fmq"]);

    // The client carries on: with room again, the next file arrives.
    await rm(filler);
    await writeFile(path.join(src, "small.txt"), "still here\n");
    await waitFor(() => delivered.some((d) => d.path === "small.txt"), "small.txt delivered");
    expect(await readFile(path.join(inbox, "small.txt"), "utf8")).toBe("still here\n");
    expect(delivered.map((d) => d.path)).toEqual(["small.txt"]);
    expect(errors.filter((e) => /disk full/.test(e))).toHaveLength(1);
  });

  it("disk full - once there is room again, the file that failed arrives by itself (resumed from what was kept), with no restart", async (ctx) => {
    const disk = await smallDisk(4 * MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const src = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 6 * MiB);
    const endpoint = await serve(src);
    const inbox = path.join(disk, "inbox");
    const { client, errors, delivered } = clientInto(endpoint, inbox);
    await client.subscribe("/");
    client.connect();
    await waitFor(() => errors.some((e) => /disk full/.test(e)), "the disk-full error");

    execFileSync("mount", ["-o", "remount,size=16m", disk]);
    // The subscription is sent again 5 s after the failure, with the partial file in its cache.
    await waitFor(() => delivered.some((d) => d.path === "big.bin"), "big.bin delivered", 20_000);
    expect(await sha256File(path.join(inbox, "big.bin"))).toBe(await sha256File(path.join(src, "big.bin")));
    expect(delivered.find((d) => d.path === "big.bin")!.received).toBeLessThan(6 * MiB);
  });

  it("disk full - a small file that only partly fits is not placed cut short: it fails, and arrives whole once there is room", async (ctx) => {
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const src = await tempDir();
    await writeFile(path.join(src, "first.txt"), "a line for the journal\n");
    const endpoint = await serve(src);
    const inbox = path.join(disk, "inbox");
    const { client, errors, delivered } = clientInto(endpoint, inbox);
    await client.subscribe("/");
    client.connect();
    await waitFor(() => delivered.length === 1, "first.txt delivered");
    // Two pages left: a 40 KiB file's write is short (8 KiB written), not refused. The journal's last
    // page has room for a line, so nothing else stops a file cut short from being placed.
    const filler = path.join(disk, "filler.bin");
    await writeFile(filler, Buffer.alloc(freeBytes(disk) - 8192));
    expect(freeBytes(disk)).toBe(8192);
    await writeRandomFile(path.join(src, "small.bin"), 40 * 1024);
    await waitFor(() => errors.some((e) => /^small\.bin: disk full \(ENOSPC\)/.test(e)), "the disk-full error");
    expect(delivered.map((d) => d.path)).toEqual(["first.txt"]);
    expect((await readdir(inbox)).sort()).toEqual([".fmq", "first.txt"]);
    expect(await readdir(path.join(inbox, ".fmq", "partial"))).toEqual([]);
    await rm(filler);
    // The subscription is sent again 5 s after the failure.
    await waitFor(() => delivered.some((d) => d.path === "small.bin"), "small.bin delivered", 20_000);
    expect(await sha256File(path.join(inbox, "small.bin"))).toBe(await sha256File(path.join(src, "small.bin")));
  });

  it("disk full - with no room even for the inbox's journal, files fail (not delivered unrecorded), the client carries on, and they arrive once there is room", async (ctx) => {
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const src = await tempDir();
    const endpoint = await serve(src);
    const inbox = path.join(disk, "inbox");
    const { client, errors, delivered } = clientInto(endpoint, inbox);
    const subscribed = new Promise((resolve) => client.once("subscribed", resolve));
    await client.subscribe("/");
    client.connect();
    await subscribed;
    // Not one page left: empty files need none, their journal lines do (a review: the subscriber died
    // of an uncaught ENOSPC from the journal, and again at every restart).
    const filler = path.join(disk, "filler.bin");
    await writeFile(filler, Buffer.alloc(2 * MiB)).catch(() => undefined);
    for (let i = 0; i < 50; i++) await writeFile(path.join(src, `empty${i}.txt`), "");
    await waitFor(() => errors.some((e) => /^empty\d+\.txt: disk full \(ENOSPC\); it comes again once there is room$/.test(e)), "the disk-full error");
    expect(delivered).toEqual([]);
    await rm(filler);
    // The subscription is sent again 5 s after the failure.
    await waitFor(() => delivered.length === 50, "50 files delivered", 20_000);
    await client.close();
    const journal = await readFile(path.join(inbox, ".fmq", "journal.jsonl"), "utf8").catch(() => "");
    const snapshot = JSON.parse(await readFile(path.join(inbox, ".fmq", "manifest.json"), "utf8")) as { files: Record<string, unknown> };
    expect(Object.keys(snapshot.files)).toHaveLength(50);
    // Folded into the snapshot: nothing left in the journal but the line naming that snapshot's epoch.
    expect(journal.trim()).toMatch(/^\{"op":"unplaced","name":"","epoch":"[0-9a-f]{16}"\}$/);
  });

  it("disk full - a subscriber restarted on a full disk starts, holds what it had and gets new files once there is room", async (ctx) => {
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const src = await tempDir();
    await writeFile(path.join(src, "first.txt"), "first");
    const endpoint = await serve(src);
    const inbox = path.join(disk, "inbox");
    const first = clientInto(endpoint, inbox);
    await first.client.subscribe("/");
    first.client.connect();
    await waitFor(() => first.delivered.length === 1, "first.txt delivered");
    await first.client.close();

    const filler = path.join(disk, "filler.bin");
    await writeFile(filler, Buffer.alloc(2 * MiB)).catch(() => undefined);
    // (A review: every start wrote a new lock key, even with one there, and died of ENOSPC.)
    const again = clientInto(endpoint, inbox);
    const subscribed = new Promise((resolve) => again.client.once("subscribed", resolve));
    await again.client.subscribe("/");
    again.client.connect();
    await subscribed;
    expect(again.client.holds("/first.txt")).toEqual(expect.objectContaining({ size: 5 }));
    await rm(filler);
    await writeFile(path.join(src, "second.txt"), "second");
    await waitFor(() => again.delivered.some((d) => d.path === "second.txt"), "second.txt delivered", 20_000);
    expect(await readFile(path.join(inbox, "second.txt"), "utf8")).toBe("second");
    expect(again.delivered.map((d) => d.path)).toEqual(["second.txt"]);
  });

  it("disk full - a batch's placing lines that cannot be written are taken back when the batch ends, not left as placements for ever", async (ctx) => {
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const state = path.join(disk, ".fmq");
    await mkdir(state);
    const manifest = await Manifest.load(state);
    closers.push(async () => manifest.close());
    const filler = path.join(disk, "filler.bin");
    await writeFile(filler, Buffer.alloc(2 * MiB)).catch(() => undefined);
    const entry = (n: number) => ({ vpath: `/f${n}`, size: n, mtime: 1, hash: "0123456789abcdef" });
    // The write fails (ENOSPC): no throw, and no file is placed on the strength of it.
    manifest.announce([
      ["a", entry(1)],
      ["b", entry(2)],
    ]);
    expect(() => manifest.aboutToPlace("a", entry(1))).toThrow(/ENOSPC/);
    manifest.unplaced("a");
    // b never comes to be placed (its batch failed with a): when the batch ends (the client says so once
    // its last file is handled), it is taken back.
    manifest.endAnnounced();
    expect([...manifest.placing.keys()]).toEqual([]);
    await rm(filler);
    manifest.flush();
    const reloaded = await Manifest.load(state);
    expect([...reloaded.placing.keys()]).toEqual([]);
    reloaded.close();
  });

  it("disk full - journal lines that cannot be written, batch after batch, are let go past a snapshot's worth for a snapshot once there is room: memory stays bounded, nothing recorded is lost", async (ctx) => {
    // (A review: 30 batches of 2,000 files announced and taken back while the disk was full held 142 MB of
    // lines in memory, and more with every batch a server sent again.)
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const state = path.join(disk, ".fmq");
    await mkdir(state);
    const problems: string[] = [];
    const manifest = await Manifest.load(state, (message) => problems.push(message));
    closers.push(async () => manifest.close());
    manifest.delivered("kept", { vpath: "/kept", size: 1, hash: "0123456789abcdef" });
    manifest.delivered("gone", { vpath: "/gone", size: 1, hash: "0123456789abcdef" });
    manifest.flush();
    const filler = path.join(disk, "filler.bin");
    await writeFile(filler, Buffer.alloc(2 * MiB)).catch(() => undefined);
    const entry = (n: number) => ({ vpath: `/f${n}`, size: n, mtime: 1, hash: "0123456789abcdef" });
    // About 12 MB of lines (a placing and an unplaced line for each file), far more than this disk holds.
    for (let round = 0; round < 30; round++) {
      manifest.announce(Array.from({ length: 2000 }, (_, i) => [`f${i}`, entry(i)] as const));
      manifest.endAnnounced();
      await new Promise((resolve) => setImmediate(resolve));
    }
    // A delete handled while the disk is full.
    manifest.removed("gone");
    await rm(filler);
    // Once there is room: written (a snapshot; retried at most once a second). Before, the 12 MB of lines
    // waiting could never be written to a disk of 1 MiB.
    await waitFor(() => {
      try {
        manifest.flush();
        return true;
      } catch {
        return false;
      }
    }, "the inbox's records written", 5_000);
    const reloaded = await Manifest.load(state);
    expect([...reloaded.files.keys()]).toEqual(["kept"]);
    expect([...reloaded.placing.keys()]).toEqual([]);
    reloaded.close();
  });

  it("disk full - a snapshot written for lines let go, then a kill before the journal is emptied: the journal left is not replayed over it (a file removed meanwhile stays removed)", async (ctx) => {
    // (A review of the change above: the journal left held "delivered x", the "removed x" after it had
    // been let go, and a reload replayed it over the snapshot: x listed as held again.)
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const state = path.join(disk, ".fmq");
    await mkdir(state);
    // The state directory's fsync (after the snapshot's rename, with --fsync) fails once armed: the
    // journal is then not emptied, as if killed there.
    let syncFails = false;
    const place = {
      join: (name: string) => path.join(state, name),
      restore: () => undefined,
      sync: () => {
        if (syncFails) throw Object.assign(new Error("EIO: fsync failed"), { code: "EIO" });
      },
    };
    const manifest = await Manifest.load(place);
    closers.push(async () => manifest.close());
    manifest.durable = true;
    manifest.delivered("x", { vpath: "/x", size: 1, hash: "0123456789abcdef" });
    manifest.flush();
    await manifest.synced();
    const filler = path.join(disk, "filler.bin");
    await writeFile(filler, Buffer.alloc(2 * MiB)).catch(() => undefined);
    manifest.removed("x");
    const entry = (n: number) => ({ vpath: `/f${n}`, size: n, mtime: 1, hash: "0123456789abcdef" });
    for (let round = 0; round < 30; round++) {
      manifest.announce(Array.from({ length: 2000 }, (_, i) => [`f${i}`, entry(i)] as const));
      manifest.endAnnounced();
      await new Promise((resolve) => setImmediate(resolve));
    }
    await rm(filler);
    syncFails = true;
    // The snapshot is renamed into place, then the fsync fails: the journal stays as it was.
    await waitFor(() => {
      try {
        manifest.flush();
        return false;
      } catch (error) {
        return (error as NodeJS.ErrnoException).code === "EIO";
      }
    }, "the snapshot renamed and the fsync after it failed", 5_000);
    // What a kill now leaves (not closed: closing saves again).
    const reloaded = await Manifest.load(state);
    expect(reloaded.files.has("x")).toBe(false);
    reloaded.close();
    syncFails = false;
  });

  it("disk full - a manifest snapshot that only partly fits is not renamed over the last one: nothing held is forgotten", async (ctx) => {
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const dir = path.join(disk, ".fmq");
    await mkdir(dir);
    const manifest = await Manifest.load(dir);
    for (let i = 0; i < 2000; i++) manifest.delivered(`dir/file-${i}`, { vpath: `/dir/file-${i}`, size: i, hash: "0123456789abcdef" });
    manifest.flush();
    // Leave room for about a third of the snapshot (which is about as big as the journal), so that its
    // write is short rather than refused.
    const journalBytes = (await stat(path.join(dir, "journal.jsonl"))).size;
    await writeFile(path.join(disk, "filler.bin"), Buffer.alloc(Math.max(0, freeBytes(disk) - Math.floor(journalBytes / 3))));
    expect(freeBytes(disk)).toBeLessThan(journalBytes);
    expect(freeBytes(disk)).toBeGreaterThan(0);
    manifest.save();
    // What a kill -9 now would leave (not closed: closing saves again, with the room the rename freed).
    const problems: string[] = [];
    const again = await Manifest.load(dir, (message) => problems.push(message));
    expect(problems).toEqual([]);
    expect(again.files.size).toBe(2000);
    // And the part that was written is not left taking the room a full disk lacks.
    expect(await readdir(dir)).not.toContain("manifest.json.tmp");
    again.close();
    manifest.close();
  });

  it("disk full - files refused for a full disk are said once each while it stays full, though they are tried again", async (ctx) => {
    const disk = await smallDisk(MiB);
    if (typeof disk !== "string") return ctx.skip(disk.skip);
    const src = await tempDir();
    await writeFile(path.join(src, "first.txt"), "a line for the journal\n");
    const server = new Server({ stableMs: 50 });
    closers.push(() => server.close());
    await server.publish(src);
    const endpoint = await server.bind(await tcpEndpoint());
    const sent = new Map<string, number>();
    server.on("sent", (e) => sent.set(e.path, (sent.get(e.path) ?? 0) + 1));
    const inbox = path.join(disk, "inbox");
    const { client, errors, delivered } = clientInto(endpoint, inbox);
    await client.subscribe("/");
    client.connect();
    await waitFor(() => delivered.length === 1, "first.txt delivered");
    await writeFile(path.join(disk, "filler.bin"), Buffer.alloc(freeBytes(disk)));
    const names = ["a.bin", "b.bin", "c.bin"];
    for (const name of names) await writeRandomFile(path.join(src, name), 16 * 1024);
    // Sent, refused, and (5 s later) sent and refused again.
    await waitFor(() => names.every((name) => (sent.get(`/${name}`) ?? 0) >= 2), "each file sent twice", 20_000);
    // A last file, refused after them on the same connection: once its error is here, theirs are too.
    await writeRandomFile(path.join(src, "z.bin"), 16 * 1024);
    await waitFor(() => errors.some((e) => e.startsWith("z.bin: disk full")), "z.bin refused");
    for (const name of names) expect(errors.filter((e) => e.startsWith(`${name}: disk full`))).toHaveLength(1);
    expect(delivered.map((d) => d.path)).toEqual(["first.txt"]);
  }, 30_000);
});
