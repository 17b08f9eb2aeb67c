// A subscriber with fsync on: a file renamed into place whose directory's fsync then fails is there, so it
// is recorded as held (a delete made on the server reaches it) while the failure is still reported.
//
// No real fsync failure can be made on demand here (it takes a failing disk), so the one call is faked:
// node:fs/promises is mocked for this file only (hence a file of its own), and only the sync of a handle
// opened on the armed directory fails, once. Every other call, the server's included, is the real one.

import { createHash } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { context } from "zeromq";
import { Client, Server } from "../../src/index.js";
import { Inbox } from "../../src/client/inbox.js";
import { tempDir } from "../helpers/tmp.js";
import { sha256File } from "../helpers/files.js";
import { waitFor } from "../helpers/wait.js";
import { tcpEndpoint } from "../helpers/net.js";

/** The directory (device and inode) whose next fsync fails, and how many fsyncs failed so far. */
const fault = vi.hoisted(() => ({ armed: undefined as { dev: number; ino: number } | undefined, failed: 0, code: "EIO", synced: [] as string[] }));

vi.mock("node:fs/promises", async (importOriginal) => {
  const actual = await importOriginal<typeof import("node:fs/promises")>();
  const open: typeof actual.open = async (...args) => {
    const handle = await actual.open(...args);
    const armed = fault.armed;
    // Known by its inode: the subscriber names directories through /proc/self/fd, not by their paths.
    const stats = await handle.stat();
    if (stats.isDirectory()) {
      // (Every directory synced, by device and inode.)
      const sync = handle.sync.bind(handle);
      handle.sync = async () => {
        await sync();
        fault.synced.push(`${stats.dev}:${stats.ino}`);
      };
    }
    if (armed === undefined) return handle;
    if (stats.isDirectory() && stats.dev === armed.dev && stats.ino === armed.ino) {
      fault.armed = undefined;
      handle.sync = async () => {
        fault.failed++;
        throw Object.assign(new Error(`${fault.code}: fsync failed`), { code: fault.code, syscall: "fsync" });
      };
    }
    return handle;
  };
  return { ...actual, default: { ...actual, open }, open };
});

context.blocky = false;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
  fault.armed = undefined;
  fault.failed = 0;
  fault.synced = [];
});

async function startClient(endpoint: string, inbox: string, subscribed: () => Promise<void> = async () => undefined) {
  const client = new Client({ endpoint, inbox, heartbeatMs: 200, fsync: true });
  let closed = false;
  const close = async () => {
    if (!closed) await client.close();
    closed = true;
  };
  closers.push(close);
  const delivered: string[] = [];
  const deleted: string[] = [];
  const errors: string[] = [];
  client.on("delivered", (e) => delivered.push(e.path));
  client.on("deleted", (e) => deleted.push(e.path));
  client.on("error", (e) => errors.push(e.message));
  await client.subscribe("/");
  await subscribed();
  client.connect();
  return { delivered, deleted, errors, close };
}

describe("directory fsync failure", () => {
  // (ENOSPC too: a full disk's own message, "0 bytes received", would say the file never came.)
  it.each(["EIO", "ENOSPC"])("dir fsync failure - a file in place whose directory fsync failed (%s) is reported as such, and held: a delete made on the server while the subscriber was away reaches it", async (code) => {
    fault.code = code;
    const src = await tempDir();
    const inbox = await tempDir();
    const content = "placed, but its directory entry not made durable\n";
    await writeFile(path.join(src, "unsynced.txt"), content);
    const server = new Server({ stableMs: 50 });
    closers.push(() => server.close());
    await server.publish(src);
    const endpoint = await server.bind(await tcpEndpoint());

    // The file goes into the inbox itself: that directory's fsync is the one to fail (armed once the
    // inbox is open: its own sync at start is another).
    const { dev, ino } = await stat(inbox);
    const first = await startClient(endpoint, inbox, async () => void (fault.armed = { dev, ino }));
    await waitFor(() => first.errors.length > 0, "the fsync failure reported", 10_000);
    expect(fault.failed).toBe(1);
    // (Said to be in place: a user told only "EIO" would take it for a file that never came.)
    expect(first.errors).toEqual([`unsynced.txt: in place, but its directory could not be synced to disk (${code}): a crash may still lose it`]);
    // Not durable, so not said to be delivered; but there, whole.
    expect(first.delivered).toEqual([]);
    expect(await sha256File(path.join(inbox, "unsynced.txt"))).toBe(createHash("sha256").update(content).digest("hex"));
    await first.close();

    // Only a file the manifest says it holds is listed to the server on return, and so learns of its delete.
    await unlink(path.join(src, "unsynced.txt"));
    await waitFor(() => server.mounts[0]!.files.size === 0, "the delete seen by the server");
    const second = await startClient(endpoint, inbox);
    await waitFor(() => second.deleted.length > 0, "the delete missed while away to reach the file", 10_000);
    expect(second.deleted).toEqual(["unsynced.txt"]);
    expect(existsSync(path.join(inbox, "unsynced.txt"))).toBe(false);
    expect(second.errors).toEqual([]);
    expect(second.delivered).toEqual([]);
  });

  it("fsync - the directories made for a file have their entries synced in their parents, and the inbox's state directory and journal theirs at start", async () => {
    // (A review: only the file's own directory was synced; a power loss could take a directory made for
    // it, and the file said delivered in it, or the journal made at the first start, and every record.)
    const src = await tempDir();
    const inbox = await tempDir();
    await mkdir(path.join(src, "a", "b"), { recursive: true });
    await writeFile(path.join(src, "a", "b", "deep.txt"), "deep");
    const identity = async (dir: string) => {
      const { dev, ino } = await stat(dir);
      return `${dev}:${ino}`;
    };
    // At start, before any file: the inbox (which holds .fmq) and .fmq (the journal, partial/).
    const opened = await Inbox.open(inbox, { fsync: true });
    opened.close();
    expect(fault.synced.sort()).toEqual([await identity(inbox), await identity(path.join(inbox, ".fmq"))].sort());
    fault.synced = [];
    const server = new Server({ stableMs: 50 });
    closers.push(() => server.close());
    await server.publish(src);
    const endpoint = await server.bind(await tcpEndpoint());
    const client = await startClient(endpoint, inbox);
    await waitFor(() => client.delivered.length === 1, "a/b/deep.txt delivered", 10_000);
    // The file's own directory, b/; and a/ (which holds b/) and the inbox (which holds a/), made for it.
    for (const dir of [inbox, path.join(inbox, "a"), path.join(inbox, "a", "b")]) expect(fault.synced).toContain(await identity(dir));
    expect(await sha256File(path.join(inbox, "a", "b", "deep.txt"))).toBe(createHash("sha256").update("deep").digest("hex"));
  });

  it("fsync - an inbox whose directory cannot be synced at start opens all the same, the failure said once, naming the directory", async () => {
    const inbox = await tempDir();
    const { dev, ino } = await stat(inbox);
    fault.code = "EIO";
    fault.armed = { dev, ino };
    const problems: string[] = [];
    const opened = await Inbox.open(inbox, { fsync: true, problem: (message) => problems.push(message) });
    try {
      expect(fault.failed).toBe(1);
      expect(problems).toEqual([expect.stringMatching(/^cannot sync .+ to disk \(EIO\): the inbox's records may not survive a power loss$/)]);
      expect(problems[0]).toContain(inbox);
      // Still an inbox: it takes a file.
      const placed = await new Promise<string | Error>((resolve) => {
        expect(opened.receiveWhole("x.txt", "/x.txt", Buffer.from("x"), { vpath: "/x.txt", size: 1, mtime: 1 }, undefined, resolve)).toBe(true);
      });
      expect(placed).toBe(path.join(inbox, "x.txt"));
    } finally {
      opened.close();
    }
  });
});
