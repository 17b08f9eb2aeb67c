// Restartable, verified transfers, in one process with real sockets and files: a returning client gets
// only what it lacks (RESYNC with our cache entries, or RFC 35's SHA-1s), learns of deletes it missed,
// receives a changed big file as its changed blocks, never delivers a corrupt or mixed file.

import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { readFileSync, readdirSync, readlinkSync } from "node:fs";
import { appendFile, mkdir, open, readFile, readdir, realpath, rename, rm, stat, symlink, truncate, unlink, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { context, Dealer } from "zeromq";
import { Client, Server, decodeFrames, encode, type ClientOptions, type SentEvent } from "../../src/index.js";
import { tempDir } from "../helpers/tmp.js";
import { sha256File, treeHashes, writeRandomFile, writeTree } from "../helpers/files.js";
import { waitFor } from "../helpers/wait.js";
import { tcpEndpoint } from "../helpers/net.js";
import { Inbox, IncomingFile, partialName } from "../../src/client/inbox.js";
import { Fingerprints } from "../../src/server/fingerprints.js";

context.blocky = false;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const MiB = 1024 * 1024;

async function startServer(dir: string, endpoint?: string) {
  const server = new Server({ stableMs: 50 });
  closers.push(() => server.close());
  await server.publish(dir);
  const bound = await server.bind(endpoint ?? (await tcpEndpoint()));
  const sent: SentEvent[] = [];
  server.on("sent", (e) => sent.push(e));
  const bytes = () => sent.reduce((sum, e) => sum + (e.operation === "create" ? e.size : 0), 0);
  return { server, endpoint: bound, sent, bytes };
}

async function startClient(endpoint: string, inbox: string, opts: Partial<ClientOptions> = {}) {
  // No test here is about a lost server, and several count exactly what is sent: a session given up
  // after a stall of this process (the server runs in it too) would have files sent again.
  const client = new Client({ endpoint, inbox, heartbeatMs: 100, timeoutMs: 60_000, ...opts });
  let closed = false;
  const close = async () => {
    if (!closed) await client.close();
    closed = true;
  };
  closers.push(close);
  const delivered: { path: string; size: number; received: number }[] = [];
  const deleted: string[] = [];
  const errors: string[] = [];
  client.on("delivered", (e) => delivered.push({ path: e.path, size: e.size, received: e.received }));
  client.on("deleted", (e) => deleted.push(e.path));
  client.on("error", (e) => errors.push(e.message));
  await client.subscribe("/");
  client.connect();
  return { client, delivered, deleted, errors, close };
}

/** A client returns to `inbox`; resolves once the server says it has handed it all it had for it. */
async function returnAndCatchUp(pub: Awaited<ReturnType<typeof startServer>>, inbox: string) {
  let caughtUp = false;
  pub.server.on("caught-up", () => (caughtUp = true));
  const client = await startClient(pub.endpoint, inbox);
  await waitFor(() => caughtUp, "the returning client caught up", 15_000);
  return client;
}

async function mirrored(inbox: string, src: string, timeoutMs = 30_000) {
  await waitFor(async () => JSON.stringify([...(await treeHashes(inbox))]) === JSON.stringify([...(await treeHashes(src))]), "the inbox to mirror the source", timeoutMs, 50);
}

/** A server of `src`, and a first client that mirrors it into `inbox` and leaves (its session closed by KTHXBAI). */
async function mirroredAndGone(src: string, inbox: string) {
  const pub = await startServer(src);
  const first = await startClient(pub.endpoint, inbox);
  await mirrored(inbox, src);
  const gone: string[] = [];
  pub.server.on("disconnected", (client) => gone.push(client));
  await first.close();
  await waitFor(() => gone.length === 1, "the first session closed by KTHXBAI", 15_000);
  return pub;
}

/** Paths under `dir` that this process holds a descriptor of. */
function openUnder(dir: string): string[] {
  const open: string[] = [];
  for (const fd of readdirSync("/proc/self/fd")) {
    let target: string;
    try {
      target = readlinkSync(`/proc/self/fd/${fd}`);
    } catch {
      continue; // (the one readdirSync used, closed since)
    }
    if (target === dir || target.startsWith(dir + path.sep)) open.push(target);
  }
  return open;
}

interface Gate {
  /** The gated call has begun (and is held). */
  readonly reached: boolean;
  release(): void;
  /** Released, and the method is the real one again. */
  restore(): void;
}

/**
 * Hold each call of the async method `object[method]` until released: before it starts, or once it has
 * done its work (its result held back).
 */
function gateCalls<T extends object>(object: T, method: keyof T & string, when: "before" | "after"): Gate {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const original = object[method] as (...args: unknown[]) => Promise<unknown>;
  let reached = false;
  const spy = vi.spyOn(object, method as never).mockImplementation(async function (this: unknown, ...args: unknown[]) {
    if (when === "before") {
      reached = true;
      await held;
      return original.apply(this, args);
    }
    const result = await original.apply(this, args);
    reached = true;
    await held;
    return result;
  } as never);
  return {
    get reached() {
      return reached;
    },
    release,
    restore: () => {
      release();
      spy.mockRestore();
    },
  };
}

function smallFiles(from: number, to: number): Record<string, Buffer> {
  const files: Record<string, Buffer> = {};
  for (let i = from; i < to; i++) files[`d${i % 50}/f${i}.bin`] = Buffer.alloc(1024, i % 251);
  return files;
}

describe("resync", () => {
  it("resync - a returning client with 9,000 of 10,000 files receives only the missing 1,000", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, smallFiles(0, 9000));
    const pub = await startServer(src);
    const first = await startClient(pub.endpoint, inbox);
    await waitFor(() => first.delivered.length === 9000, "9,000 files", 60_000, 50);
    await first.close();
    await writeTree(src, smallFiles(9000, 10_000));
    await waitFor(() => pub.server.mounts[0]!.files.size === 10_000, "10,000 published files", 30_000, 50);
    const before = pub.bytes();
    const second = await startClient(pub.endpoint, inbox);
    await waitFor(() => second.delivered.length === 1000, "1,000 files", 60_000, 50);
    await mirrored(inbox, src);
    expect(pub.bytes() - before).toBe(1000 * 1024);
    expect(second.delivered.every((d) => /^d\d+\/f(9\d{3})\.bin$/.test(d.path))).toBe(true);
  }, 120_000);

  it("resync - an unchanged tree sends no file data to a returning client", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, smallFiles(0, 500));
    await writeRandomFile(path.join(src, "big.bin"), 5 * MiB);
    const pub = await startServer(src);
    const first = await startClient(pub.endpoint, inbox);
    await waitFor(() => first.delivered.length === 501, "501 files", 30_000, 20);
    const gone: string[] = [];
    pub.server.on("disconnected", (client) => gone.push(client));
    await first.close();
    // Its KTHXBAI reached the server (which would otherwise keep the session for a minute, sending to it).
    await waitFor(() => gone.length === 1, "the first session closed by KTHXBAI", 15_000);
    const before = pub.sent.length;
    // The second client's sessions. Had the first client given up an earlier session without a word,
    // the server would keep that one until a send to it failed, and files could still be addressed to
    // it: only what the returning client is sent counts here.
    const returning: string[] = [];
    pub.server.on("connected", (client) => returning.push(client));
    const second = await startClient(pub.endpoint, inbox);
    await waitFor(() => second.client.state === "connected", "connected");
    // Nothing to send: a further change is the next thing to arrive. Written elsewhere and renamed in,
    // so the publisher never sees it empty (under load it could publish the empty file first).
    const staging = await tempDir();
    await writeFile(path.join(staging, "marker.txt"), "m");
    await rename(path.join(staging, "marker.txt"), path.join(src, "marker.txt"));
    await waitFor(() => second.delivered.length > 0, "the marker");
    expect(second.delivered.map((d) => d.path)).toEqual(["marker.txt"]);
    expect(returning.length).toBeGreaterThan(0);
    expect(pub.sent.slice(before).filter((e) => returning.includes(e.client)).map((e) => e.path)).toEqual(["/marker.txt"]);
  });

  it("resync - files replaced while the client was away by look-alikes (same size and mtime, other content, even after an edit between) arrive on its return; an untouched one is not sent", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const staging = await tempDir();
    const sizes: Record<string, number> = { "swapped.bin": 4096, "rewritten.bin": 3 * MiB, "remade.bin": 10_000, "twice.bin": 5000, "untouched.bin": 4096 };
    // A whole second for an mtime: set back exactly (a Date would lose the sub-millisecond part).
    const mtime = 1_700_000_000;
    for (const [name, size] of Object.entries(sizes)) {
      await writeRandomFile(path.join(src, name), size);
      await utimes(path.join(src, name), mtime, mtime);
    }
    const pub = await mirroredAndGone(src, inbox);

    const mount = pub.server.mounts[0]!;
    const published = async (name: string) => {
      const now = await stat(path.join(src, name));
      const file = mount.files.get(`/${name}`);
      return file !== undefined && file.ino === now.ino && file.ctimeMs === now.ctimeMs;
    };
    // 1. Another file renamed over it (a new inode), its mtime set to the old one's first.
    await writeRandomFile(path.join(staging, "swapped.bin"), sizes["swapped.bin"]!);
    await utimes(path.join(staging, "swapped.bin"), mtime, mtime);
    await rename(path.join(staging, "swapped.bin"), path.join(src, "swapped.bin"));
    // 2. Rewritten in place, its mtime set back.
    const handle = await open(path.join(src, "rewritten.bin"), "r+");
    await handle.write(randomBytes(sizes["rewritten.bin"]!), 0, sizes["rewritten.bin"]!, 0);
    await handle.close();
    await utimes(path.join(src, "rewritten.bin"), mtime, mtime);
    // 3. Deleted (and withdrawn), then made again with the old mtime.
    await unlink(path.join(src, "remade.bin"));
    await waitFor(() => !mount.files.has("/remade.bin"), "remade.bin withdrawn", 15_000);
    await writeRandomFile(path.join(staging, "remade.bin"), sizes["remade.bin"]!);
    await utimes(path.join(staging, "remade.bin"), mtime, mtime);
    await rename(path.join(staging, "remade.bin"), path.join(src, "remade.bin"));
    // 4. Edited as usual (another size, mtime now), published; then given back its first size and mtime.
    await writeRandomFile(path.join(staging, "twice.bin"), 7000);
    await rename(path.join(staging, "twice.bin"), path.join(src, "twice.bin"));
    await waitFor(async () => (await published("twice.bin")) && mount.files.get("/twice.bin")!.size === 7000, "the edited twice.bin published", 15_000);
    await writeRandomFile(path.join(staging, "twice.bin"), sizes["twice.bin"]!);
    await utimes(path.join(staging, "twice.bin"), mtime, mtime);
    await rename(path.join(staging, "twice.bin"), path.join(src, "twice.bin"));
    for (const name of ["swapped.bin", "rewritten.bin", "remade.bin", "twice.bin"]) {
      const now = await stat(path.join(src, name));
      expect([now.size, now.mtimeMs]).toEqual([sizes[name], mtime * 1000]);
      await waitFor(() => published(name), `the new ${name} published`, 15_000);
    }

    const before = pub.sent.length;
    const second = await returnAndCatchUp(pub, inbox);
    // Byte for byte what the source holds now (before the fix: the three old versions, for ever).
    await mirrored(inbox, src, 15_000);
    expect(second.errors).toEqual([]);
    expect(second.delivered.map((d) => d.path).sort()).toEqual(["remade.bin", "rewritten.bin", "swapped.bin", "twice.bin"]);
    expect(pub.sent.slice(before).map((e) => e.path).sort()).toEqual(["/remade.bin", "/rewritten.bin", "/swapped.bin", "/twice.bin"]);
  });

  it("resync - a newer version published while a returning client's plan hashes a look-alike it holds still goes to it", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const staging = await tempDir();
    const mtime = 1_700_000_000;
    const content = randomBytes(64 * 1024);
    await writeFile(path.join(src, "a.bin"), content);
    await utimes(path.join(src, "a.bin"), mtime, mtime);
    const pub = await mirroredAndGone(src, inbox);

    const mount = pub.server.mounts[0]!;
    const published = async (size: number) => {
      const now = await stat(path.join(src, "a.bin"));
      const file = mount.files.get("/a.bin");
      return file !== undefined && file.ino === now.ino && file.ctimeMs === now.ctimeMs && file.size === size;
    };
    // The same bytes made again, the mtime set back: a look-alike, which the client does hold.
    await writeFile(path.join(staging, "a.bin"), content);
    await utimes(path.join(staging, "a.bin"), mtime, mtime);
    await rename(path.join(staging, "a.bin"), path.join(src, "a.bin"));
    await waitFor(() => published(content.length), "the look-alike published", 15_000);
    expect(mount.files.get("/a.bin")!.lookAlike).toBe(true);

    // The returning client's plan hashes the look-alike (and finds it held); its answer is held back
    // until a newer version has been published meanwhile.
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    let hashed = false;
    const original = Fingerprints.prototype.fingerprint;
    const spy = vi.spyOn(Fingerprints.prototype, "fingerprint").mockImplementation(async function (this: Fingerprints, absolute: string) {
      const result = await original.call(this, absolute);
      hashed = true;
      await gate;
      return result;
    });
    closers.push(async () => {
      release();
      spy.mockRestore();
    });
    const before = pub.sent.length;
    const second = await startClient(pub.endpoint, inbox);
    await waitFor(() => hashed, "the plan to hash the look-alike", 15_000);
    const newer = randomBytes(70 * 1024);
    await writeFile(path.join(staging, "a.bin"), newer);
    await rename(path.join(staging, "a.bin"), path.join(src, "a.bin"));
    await waitFor(() => published(newer.length), "the newer version published", 15_000);
    release();
    // (Before the fix the plan's "held" dropped the newer version queued meanwhile: it never came.)
    await waitFor(() => second.delivered.some((d) => d.path === "a.bin" && d.size === newer.length), "the newer version delivered", 15_000);
    expect(createHash("sha256").update(readFileSync(path.join(inbox, "a.bin"))).digest("hex")).toBe(createHash("sha256").update(newer).digest("hex"));
    expect(second.errors).toEqual([]);
    // The plan did find the look-alike held: only the newer version went.
    expect(pub.sent.slice(before).map((e) => `${e.path} ${e.operation === "create" ? e.size : e.operation}`)).toEqual([`/a.bin ${newer.length}`]);
  });

  it("resync - files deleted while the client was away are removed; a file a person put in the inbox survives", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, { "keep.txt": "keep", "gone.txt": "gone", "dir/gone2.txt": "gone2" });
    const pub = await startServer(src);
    const first = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    await first.close();
    await writeFile(path.join(inbox, "mine.txt"), "a person's file");
    await writeFile(path.join(inbox, "dir", "mine2.txt"), "another");
    await unlink(path.join(src, "gone.txt"));
    await unlink(path.join(src, "dir/gone2.txt"));
    await waitFor(() => pub.server.mounts[0]!.files.size === 1, "the deletes seen by the server");
    const second = await startClient(pub.endpoint, inbox);
    await waitFor(() => second.deleted.length === 2, "2 deletes");
    expect(second.deleted.sort()).toEqual(["dir/gone2.txt", "gone.txt"]);
    expect([...(await treeHashes(inbox)).keys()]).toEqual(["dir/mine2.txt", "keep.txt", "mine.txt"]);
  });

  it("resync - names over 255 bytes are listed in the cache too: not sent again, and a delete missed while away is applied", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    // 2 + 200 + 1 + 100 bytes: each segment fits a filesystem name; the whole is too long for a cache key.
    const kept = `${"k".repeat(200)}/${"a".repeat(100)}.txt`;
    const gone = `${"g".repeat(200)}/${"b".repeat(100)}.txt`;
    await writeTree(src, { [kept]: "kept", [gone]: "gone", "short.txt": "short" });
    const pub = await startServer(src);
    const first = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    await first.close();
    await unlink(path.join(src, gone));
    await waitFor(() => pub.server.mounts[0]!.files.size === 2, "the delete seen by the server");
    const before = pub.sent.length;
    const second = await startClient(pub.endpoint, inbox);
    await waitFor(() => second.deleted.length === 1, "the delete missed while away");
    expect(second.deleted).toEqual([gone]);
    await mirrored(inbox, src);
    // The files held were not sent again (only the delete went out).
    expect(pub.sent.slice(before).map((e) => [e.operation, e.path])).toEqual([["delete", `/${gone}`]]);
    expect(second.delivered).toEqual([]);
  });

  it("resync - a plain RFC 35 client's SHA-1 cache is honoured: matching files are not sent", async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "", "b.txt": "bee\n", "c.txt": "sea\n" });
    const pub = await startServer(src);
    await waitFor(() => pub.server.mounts[0]!.files.size === 3, "3 published files");
    const dealer = new Dealer({ linger: 0 });
    closers.push(async () => dealer.close());
    dealer.connect(pub.endpoint);
    const sha1 = (text: string) => createHash("sha1").update(text).digest("hex").toUpperCase();
    await dealer.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
    await dealer.send(
      encode({
        id: "ICANHAZ",
        path: "/",
        options: new Map([["RESYNC", "1"]]),
        cache: new Map([
          ["a.txt", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"],
          ["b.txt", sha1("bee\n")],
          ["c.txt", sha1("not sea\n")],
        ]),
      }),
    );
    await dealer.send(encode({ id: "NOM", credit: 1_000_000n, sequence: 0n }));
    const names: string[] = [];
    for (;;) {
      const result = decodeFrames(await dealer.receive());
      if (!result.ok) throw result.error;
      if (result.message.id === "CHEEZBURGER") {
        names.push(result.message.filename);
        if (result.message.eof === 1) break;
      }
    }
    expect(names).toEqual(["/c.txt", "/c.txt"]);
  });

  /**
   * An RFC 35 client (a raw DEALER) that holds `files`, `stale` of them in another version, asks with their
   * SHA-1s. Resolves with what the server sent it and the most SHA-1s the plan had asked for at once.
   */
  async function sha1Resync(files: Record<string, Buffer>, stale: readonly string[]) {
    const src = await tempDir();
    await writeTree(src, files);
    const pub = await startServer(src);
    const count = Object.keys(files).length;
    await waitFor(() => pub.server.mounts[0]!.files.size === count, `${count} published files`);
    // Counts the SHA-1s asked for and not yet answered, and the most at once.
    let inFlight = 0;
    let most = 0;
    const original = Fingerprints.prototype.sha1;
    const spy = vi.spyOn(Fingerprints.prototype, "sha1").mockImplementation(async function (this: Fingerprints, absolute: string, root: string) {
      most = Math.max(most, ++inFlight);
      try {
        return await original.call(this, absolute, root);
      } finally {
        inFlight--;
      }
    });
    closers.push(async () => spy.mockRestore());
    const dealer = new Dealer({ linger: 0 });
    closers.push(async () => dealer.close());
    dealer.connect(pub.endpoint);
    const sha1 = (data: Buffer) => createHash("sha1").update(data).digest("hex").toUpperCase();
    const cache = new Map(Object.entries(files).map(([name, data]) => [name, sha1(stale.includes(name) ? Buffer.concat([data, Buffer.from("old")]) : data)]));
    // The server says when it has handed this client all it had for it ("caught-up"); a HUGZ sent then is
    // answered behind all of it. By then, anything planned wrongly has come too.
    let caughtUp = false;
    pub.server.on("caught-up", () => (caughtUp = true));
    await dealer.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
    await dealer.send(encode({ id: "ICANHAZ", path: "/", options: new Map([["RESYNC", "1"]]), cache }));
    await dealer.send(encode({ id: "NOM", credit: 1_000_000_000n, sequence: 0n }));
    await waitFor(() => caughtUp, "the server caught up with the client", 15_000);
    await dealer.send(encode({ id: "HUGZ" }));
    dealer.receiveTimeout = 15_000;
    const received = new Map<string, Buffer>();
    for (;;) {
      const result = decodeFrames(await dealer.receive());
      if (!result.ok) throw result.error;
      if (result.message.id === "HUGZ_OK") break;
      if (result.message.id !== "CHEEZBURGER") continue;
      const name = result.message.filename.slice(1);
      received.set(name, Buffer.concat([received.get(name) ?? Buffer.alloc(0), result.message.chunk]));
    }
    return { received, most };
  }

  it("resync - a big SHA-1 cache is checked many files at once, at most 32, and only the files that differ are sent", async () => {
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 200; i++) files[`f${String(i).padStart(3, "0")}.txt`] = Buffer.from(`file ${i}\n`);
    // Every tenth file is held in another version: those, and only those, must come.
    const stale = Object.keys(files).filter((_, i) => i % 10 === 0);
    const { received, most } = await sha1Resync(files, stale);
    expect([...received.keys()].sort()).toEqual(stale);
    for (const name of stale) expect(received.get(name)!.equals(files[name]!)).toBe(true);
    // 200 SHA-1s: before, one was asked for at a time.
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(32);
  });

  it("resync - a SHA-1 cache of big files is checked a few files at a time (8 MiB of them), not 32 deep in the shared hashing thread", async () => {
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 6; i++) files[`big${i}.bin`] = randomBytes(3 * MiB);
    const stale = ["big2.bin"];
    const { received, most } = await sha1Resync(files, stale);
    expect([...received.keys()]).toEqual(stale);
    expect(received.get("big2.bin")!.equals(files["big2.bin"]!)).toBe(true);
    // 3 MiB each: the third takes the plan past 8 MiB, and it waits for room.
    expect(most).toBeGreaterThan(1);
    expect(most).toBeLessThanOrEqual(3);
  });

  it("resync - the server remembers what a client holds only of files a delta may follow (more than one block), whether it sent them or the client's cache listed them", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const small: Record<string, string> = {};
    for (let i = 0; i < 20; i++) small[`s${i}.txt`] = `small ${i}\n`;
    await writeTree(src, small);
    await writeRandomFile(path.join(src, "big.bin"), 3 * MiB);
    const pub = await startServer(src);
    const first = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    // (Before: 21, one per file sent, each a map entry per client for as long as it stays.)
    await waitFor(() => pub.sent.length === 21, "21 files said sent");
    expect(pub.server.holdings).toBe(1);
    await first.close();
    await waitFor(() => pub.server.clients === 0, "the first client gone");
    await returnAndCatchUp(pub, inbox);
    expect(pub.server.holdings).toBe(1);
  });

  it("resync - 1 MiB changed inside a 64 MiB file puts at most ~2 MiB of file data on the wire, live and after a return", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const file = path.join(src, "big.bin");
    await writeRandomFile(file, 64 * MiB);
    const pub = await startServer(src);
    const sub = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);

    const change = async (at: number) => {
      const handle = await open(file, "r+");
      await handle.write(Buffer.alloc(MiB, at % 256), 0, MiB, at);
      await handle.close();
    };
    // Live: the subscriber is connected when the file changes (not block-aligned: touches 2 blocks).
    let before = pub.bytes();
    await change(32 * MiB + 12345);
    await waitFor(() => sub.delivered.length === 2, "the changed file", 30_000);
    await mirrored(inbox, src);
    expect(pub.bytes() - before).toBeLessThanOrEqual(2 * MiB);
    expect(sub.delivered[1]).toMatchObject({ path: "big.bin", size: 64 * MiB });
    expect(sub.delivered[1]!.received).toBeLessThanOrEqual(2 * MiB);

    // After a return: the change happened while the subscriber was away.
    await sub.close();
    await change(10 * MiB);
    await waitFor(async () => pub.server.mounts[0]!.files.get("/big.bin")?.mtimeMs !== undefined && (await sha256File(file)) !== "", "the change");
    await waitFor(() => pub.sent.length >= 2 && !pub.server.mounts[0]!.unstable, "the change published");
    before = pub.bytes();
    const back = await startClient(pub.endpoint, inbox);
    await waitFor(() => back.delivered.length === 1, "the changed file after a return", 30_000);
    await mirrored(inbox, src);
    expect(pub.bytes() - before).toBeLessThanOrEqual(2 * MiB);
  }, 60_000);

  it("resync - a big file cut shorter in place arrives as a delta of nothing, verified, not fetched again whole; grown at the end, as its new end", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const file = path.join(src, "big.bin");
    await writeRandomFile(file, 40 * MiB);
    const pub = await startServer(src);
    const sub = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    const before = pub.bytes();
    await truncate(file, 30 * MiB);
    await waitFor(() => sub.delivered.length === 2, "the shorter file", 30_000);
    await mirrored(inbox, src);
    expect(sub.delivered[1]).toMatchObject({ path: "big.bin", size: 30 * MiB });
    // Every remaining block was held already: the old tail was cut, not hashed as part of the file.
    expect(sub.errors).toEqual([]);
    expect(pub.bytes() - before).toBe(0);
    // Grown at the end instead: the new end arrives (with the last old block, which changed too).
    const grown = pub.bytes();
    await appendFile(file, randomBytes(MiB + 7));
    await waitFor(() => sub.delivered.length === 3, "the longer file", 30_000);
    await mirrored(inbox, src);
    expect(sub.delivered[2]).toMatchObject({ path: "big.bin", size: 31 * MiB + 7 });
    expect(sub.errors).toEqual([]);
    expect(pub.bytes() - grown).toBeLessThanOrEqual(2 * MiB + 7);
  });

  it("resync - a delta never writes through a symlink planted at its partial file's name, nor copies from one at the file's name: the file outside is untouched", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const outside = await tempDir();
    const file = path.join(src, "big.bin");
    await writeRandomFile(file, 3 * MiB);
    const pub = await startServer(src);
    const sub = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    // Someone who may write in the inbox plants a symlink where the delta's partial file will be made.
    const victim = path.join(outside, "authorized_keys");
    await writeFile(victim, "root's own\n", { mode: 0o600 });
    await symlink(victim, path.join(inbox, ".fmq", "partial", partialName("big.bin")));
    // One block changes on the server: the client asks for it as a delta on top of what it holds.
    const handle = await open(file, "r+");
    await handle.write(randomBytes(1000), 0, 1000, MiB + 5);
    await handle.close();
    await waitFor(() => sub.delivered.length === 2, "the changed file", 30_000);
    await mirrored(inbox, src);
    expect(await readFile(victim, "utf8")).toBe("root's own\n");
    expect((await stat(victim)).mode & 0o777).toBe(0o600);
    // And the held file itself swapped for a symlink to a secret: the delta is refused (the file comes
    // whole), and nothing of the secret is copied into the inbox's state directory on the way.
    const secret = path.join(outside, "shadow");
    await writeFile(secret, "secret ".repeat(1000), { mode: 0o600 });
    await unlink(path.join(inbox, "big.bin"));
    await symlink(secret, path.join(inbox, "big.bin"));
    const again = await open(file, "r+");
    await again.write(randomBytes(1000), 0, 1000, 5);
    await again.close();
    await waitFor(() => sub.errors.length > 0 || sub.delivered.length === 3, "the refusal or the file", 30_000);
    for (const name of await readdir(path.join(inbox, ".fmq", "partial"))) {
      expect((await readFile(path.join(inbox, ".fmq", "partial", name)).catch(() => Buffer.alloc(0))).includes("secret")).toBe(false);
    }
    expect(await readFile(secret, "utf8")).toBe("secret ".repeat(1000));
  });

  it("resync - a file that became a directory of its name while the client was away, and a directory that became a file, both arrive", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, { "s1.txt": "a file", "d/f.txt": "in a directory", "keep.txt": "kept" });
    const pub = await startServer(src);
    const first = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    await first.close();
    await unlink(path.join(src, "s1.txt"));
    await writeTree(src, { "s1.txt/x": "now inside a directory" });
    await rm(path.join(src, "d"), { recursive: true });
    await writeFile(path.join(src, "d"), "now a file");
    await waitFor(() => pub.server.mounts[0]!.files.has("/d") && pub.server.mounts[0]!.files.has("/s1.txt/x"), "the server to publish both");
    const back = await startClient(pub.endpoint, inbox);
    // (Before: the creates went first, met the old file or directory in their way, and never came.)
    await mirrored(inbox, src);
    expect(back.errors).toEqual([]);
  });

  it("resync - the partial file of a file deleted on the server while the client was away is removed", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 64 * MiB);
    await writeTree(src, { "small.txt": "small" });
    const pub = await startServer(src);
    const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
    // A small window: the transfer is slow enough to be caught half way.
    const sub = await startClient(pub.endpoint, inbox, { window: MiB, slice: MiB });
    await waitFor(async () => (await stat(partial).catch(() => ({ size: 0 }))).size >= 4 * MiB, "4 MiB of partial file", 30_000, 1);
    await sub.close();
    await unlink(path.join(src, "big.bin"));
    await waitFor(() => pub.server.mounts[0]!.files.size === 1, "the delete seen by the server");
    const back = await startClient(pub.endpoint, inbox);
    await waitFor(async () => (await stat(partial).catch(() => undefined)) === undefined, "the partial file removed");
    await mirrored(inbox, src);
    expect(back.errors).toEqual([]);
  });

  it.each([
    // Opening it: gated before the partial file is opened (a descriptor opened after close() let go
    // of the inbox stayed open for good, and its partial file unrecorded).
    { step: "opening the file", gated: () => gateCalls(Inbox.prototype, "create", "before") },
    // Putting it in place: gated at its hash check, before it is recorded and renamed (after close()
    // had closed the inbox, the rename through its closed directories failed, ENOENT, and the file was
    // never delivered; placed, it would have gone unrecorded by the closed manifest).
    { step: "putting the file in place", gated: () => gateCalls(IncomingFile.prototype, "fingerprint", "after") },
  ])("resync - close() while a step is $step waits for that step: nothing of it left open, the manifest says what is on disk, and back, the client gets only what it lacks", async ({ step, gated }) => {
    const src = await tempDir();
    const inbox = await tempDir();
    // Big enough to be assembled in a partial file (and resumable), not taken whole in one synchronous step.
    const size = 3 * MiB;
    await writeRandomFile(path.join(src, "big.bin"), size);
    const pub = await startServer(src);
    const held = gated();
    closers.push(async () => held.restore());
    const gone: string[] = [];
    pub.server.on("disconnected", (client) => gone.push(client));
    const first = await startClient(pub.endpoint, inbox);
    // (Let go before the client's own close in the cleanup, which would wait for the held step.)
    closers.push(async () => held.release());
    await waitFor(() => held.reached, `the step ${step} under way`, 15_000);
    let closed = false;
    const closing = first.close().then(() => (closed = true));
    // By the time the server hears the client leave, a close() that did not wait for the step would have
    // resolved: what it does without waiting takes no I/O round trip.
    await waitFor(() => gone.length === 1, "the server to see the client leave", 15_000);
    expect(closed, "close() resolved while a step was under way").toBe(false);
    held.release();
    await closing;
    expect(first.errors).toEqual([]);

    expect(openUnder(await realpath(inbox))).toEqual([]);
    const manifest = JSON.parse(await readFile(path.join(inbox, ".fmq", "manifest.json"), "utf8")) as { files: object; partials: object; placing: object };
    const partials = await readdir(path.join(inbox, ".fmq", "partial"));
    let kept = 0;
    if (step === "opening the file") {
      // The first chunk was written, and kept to be resumed: on disk and in the manifest.
      expect(first.delivered).toEqual([]);
      expect([Object.keys(manifest.files), Object.keys(manifest.partials), Object.keys(manifest.placing)]).toEqual([[], ["big.bin"], []]);
      expect(partials).toEqual([partialName("big.bin")]);
      kept = (await stat(path.join(inbox, ".fmq", "partial", partials[0]!))).size;
      // (A block at least: only then is it offered to the server to resume.)
      expect(kept).toBeGreaterThanOrEqual(MiB);
    } else {
      // In place, whole, and recorded as delivered.
      expect(first.delivered).toEqual([{ path: "big.bin", size, received: size }]);
      expect(await sha256File(path.join(inbox, "big.bin"))).toBe(await sha256File(path.join(src, "big.bin")));
      expect([Object.keys(manifest.files), Object.keys(manifest.partials), Object.keys(manifest.placing)]).toEqual([["big.bin"], [], []]);
      expect(partials).toEqual([]);
    }

    const before = pub.sent.length;
    const second = await returnAndCatchUp(pub, inbox);
    await mirrored(inbox, src, 15_000);
    expect(second.errors).toEqual([]);
    if (step === "opening the file") {
      // Resumed from what the first client kept.
      expect(second.delivered).toEqual([{ path: "big.bin", size, received: size - kept }]);
      expect(pub.sent.slice(before).map((e) => e.path)).toEqual(["/big.bin"]);
    } else {
      expect(second.delivered).toEqual([]);
      expect(pub.sent.slice(before)).toEqual([]);
    }
  });

  it("resync - a corrupted partial file is detected at the resume's first chunk and the file fetched whole, never delivered", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 160 * MiB);
    const endpoint = await tcpEndpoint();
    const pub = await startServer(src, endpoint);
    const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
    const sub = await startClient(endpoint, inbox, { window: MiB, slice: MiB });
    await waitFor(async () => (await stat(partial).catch(() => ({ size: 0 }))).size >= 8 * MiB, "8 MiB of partial file", 30_000, 1);
    await sub.close();
    expect(sub.delivered).toEqual([]);
    // Flip bytes inside the part the client will resume from.
    const handle = await open(partial, "r+");
    await handle.write(Buffer.from("corrupt!"), 0, 8, 3 * MiB + 5);
    await handle.close();
    const delivered: string[] = [];
    const before = pub.bytes();
    const back = await startClient(endpoint, inbox);
    back.client.on("delivered", (e) => delivered.push(createHash("sha256").update(readFileSync(e.file)).digest("hex")));
    await mirrored(inbox, src).catch((error) => {
      console.log(back.errors, back.delivered, pub.sent);
      throw error;
    });
    const good = await sha256File(path.join(src, "big.bin"));
    expect(delivered).toEqual([good]);
    // (By the resumed prefix's hash, X-FMQ-Prefix: not after the rest of the file came, by the final check.)
    expect(back.errors).toHaveLength(1);
    expect(back.errors[0]).toMatch(/the partial file holds other bytes/);
    expect(pub.bytes() - before).toBeLessThanOrEqual(160 * MiB + 16 * MiB);
  }, 60_000);

  /** A 48 MiB file with an mtime in whole ms, published; a subscriber stopped once it held 8 MiB of it. */
  async function leftWithPartial() {
    const src = await tempDir();
    const inbox = await tempDir();
    const file = path.join(src, "big.bin");
    await writeRandomFile(file, 48 * MiB);
    // (A whole number of ms: a Date cannot put back a finer one.)
    const mtime = new Date("2020-01-01T00:00:00Z");
    await utimes(file, mtime, mtime);
    const pub = await startServer(src);
    const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
    const sub = await startClient(pub.endpoint, inbox, { window: MiB, slice: MiB });
    await waitFor(async () => (await stat(partial).catch(() => ({ size: 0 }))).size >= 8 * MiB, "8 MiB of partial file", 30_000, 1);
    await sub.close();
    expect(sub.delivered).toEqual([]);
    return { src, inbox, file, mtime, pub, partial };
  }

  it("resync - a partial whose file was replaced meanwhile by another of its size and mtime (renamed over it) is not resumed: the file comes once, from byte 0, without a failed check", async () => {
    const { src, inbox, file, mtime, pub } = await leftWithPartial();
    // Another file, with the size and mtime of the one the partial is of, renamed over it (as rsync -a would).
    const published = [...pub.server.mounts[0]!.files.values()][0]!;
    const replacement = path.join(src, ".big.new");
    await writeRandomFile(replacement, 48 * MiB);
    await utimes(replacement, mtime, mtime);
    await rename(replacement, file);
    await waitFor(() => [...pub.server.mounts[0]!.files.values()][0]?.ctimeMs !== published.ctimeMs, "the rewrite published", 15_000);
    const back = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    // (Resumed, it would end with "does not match" and come again whole: twice the file.)
    expect(back.errors).toEqual([]);
    expect(back.delivered).toEqual([{ path: "big.bin", size: 48 * MiB, received: 48 * MiB }]);
  }, 60_000);

  it("resync - a partial whose file was rewritten in place meanwhile with its size and mtime put back (cp -p: same inode) is refused at its first chunk: the rest is not sent for nothing, and the file comes once more whole (but for blocks of it that came before the refusal)", async () => {
    const { src, inbox, file, mtime, pub, partial } = await leftWithPartial();
    // (Resumed from its last whole block: a MiB or so more may have come while the client closed.)
    const resumeAt = Math.floor((await stat(partial)).size / MiB) * MiB;
    const published = [...pub.server.mounts[0]!.files.values()][0]!;
    // Another content copied over it, keeping the file (its inode, so its X-FMQ-Version) and its mtime.
    const other = path.join(await tempDir(), "other.bin");
    await writeRandomFile(other, 48 * MiB);
    await utimes(other, mtime, mtime);
    const inode = (await stat(file)).ino;
    execFileSync("cp", ["-p", other, file]);
    expect((await stat(file)).ino).toBe(inode);
    expect((await stat(file)).mtimeMs).toBe(mtime.getTime());
    await waitFor(() => [...pub.server.mounts[0]!.files.values()][0]?.ctimeMs !== published.ctimeMs, "the rewrite published", 15_000);
    await waitFor(() => !pub.server.mounts[0]!.unstable, "the mount settled", 15_000);
    const before = pub.bytes();
    const back = await startClient(pub.endpoint, inbox, { window: 4 * MiB });
    await mirrored(inbox, src);
    // Refused at the first chunk, said once; not resumed to the end to fail the final check.
    expect(back.errors).toHaveLength(1);
    expect(back.errors[0]).toMatch(new RegExp(`cannot resume at ${resumeAt}: the partial file holds other bytes`));
    // (Whole, but for blocks of the new content that came before the refusal: when the publisher's
    // fingerprint of the rewrite was late, the prefix came after a chunk or more, and the client listed
    // those blocks with the old ones, pblocks: the publisher sends the rest on top of them. How many came
    // so depends on how late: 2 MiB or so, 6 under two busy loops once. All that the partial held before
    // the offset is of the old content, and comes again.)
    expect(back.delivered).toMatchObject([{ path: "big.bin", size: 48 * MiB }]);
    expect(back.delivered[0]!.received).toBeGreaterThanOrEqual(resumeAt);
    expect(back.delivered[0]!.received).toBeLessThanOrEqual(48 * MiB);
    // The whole file, and at most what the client's window let go of the refused resume (before: its
    // 40 MiB, then the whole file).
    expect(pub.bytes() - before).toBeLessThanOrEqual(48 * MiB + 8 * MiB);
  }, 60_000);

  it("resync - a partial refused for its prefix (a block behind it written over in place), its subscriber then closed (killed, say), is taken up by the next run by its blocks: the changed block and the rest come, not the whole file", async () => {
    const { src, inbox, file, mtime, pub, partial } = await leftWithPartial();
    const resumeAt = Math.floor((await stat(partial)).size / MiB) * MiB;
    const published = [...pub.server.mounts[0]!.files.values()][0]!;
    // Its third MiB written over in place, the mtime put back (a disk image, a database): the same version
    // by size, mtime and inode, so the resume is offered, and refused at its first chunk (X-FMQ-Prefix).
    const handle = await open(file, "r+");
    await handle.write(randomBytes(MiB), 0, MiB, 2 * MiB);
    await handle.close();
    await utimes(file, mtime, mtime);
    await waitFor(() => [...pub.server.mounts[0]!.files.values()][0]?.ctimeMs !== published.ctimeMs, "the write published", 15_000);
    await waitFor(() => !pub.server.mounts[0]!.unstable, "the mount settled", 15_000);
    const refusing = await startClient(pub.endpoint, inbox, { window: 4 * MiB });
    // Closed as it says so, before it asks for the file again (the server shares this thread).
    refusing.client.on("error", () => void refusing.close());
    await waitFor(() => refusing.errors.length > 0, "the resume refused", 15_000);
    expect(refusing.errors[0]).toMatch(new RegExp(`cannot resume at ${resumeAt}: the partial file holds other bytes`));
    await refusing.close();
    expect(refusing.delivered).toEqual([]);
    // (And what came of the resume before its prefix did, when the publisher's hash of the file came late:
    // of the file's content, kept and listed with the rest.)
    const kept = Math.floor((await stat(partial)).size / MiB) * MiB;
    expect(kept).toBeGreaterThanOrEqual(resumeAt);
    const back = await startClient(pub.endpoint, inbox);
    await mirrored(inbox, src);
    expect(back.errors).toEqual([]);
    // The block that changed and all past those the partial held (listed by their hashes, pblocks, read as
    // the inbox opened): before, the next run found a partial of no version, and the file came whole.
    expect(back.delivered).toMatchObject([{ path: "big.bin", size: 48 * MiB }]);
    expect(back.delivered[0]!.received).toBe(48 * MiB - kept + MiB);
  }, 60_000);

  it("resync - writing to a file while it is published never delivers a mixture", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const file = path.join(src, "moving.bin");
    const size = 32 * MiB;
    const version = (n: number) => writeFile(file, Buffer.alloc(size, n));
    const last = Buffer.alloc(size, 3);
    await version(1);
    const pub = await startServer(src);
    // Each version is one byte value throughout, so a delivered file tells what it holds: one value
    // (a state the file really had) or several (bytes of two versions: what must never happen).
    const seen: string[] = [];
    const sub = await startClient(pub.endpoint, inbox, { window: 2 * MiB, slice: MiB });
    // Read each delivered file at the moment it is reported: nothing can replace it meanwhile.
    sub.client.on("delivered", (e) => seen.push(describeFill(readFileSync(e.file))));
    await waitFor(async () => (await stat(path.join(inbox, ".fmq", "partial", partialName("moving.bin"))).catch(() => undefined)) !== undefined || seen.length > 0, "the transfer to start", 30_000, 1);
    await version(2);
    await version(3);
    await waitFor(async () => (await readFile(path.join(inbox, "moving.bin")).catch(() => undefined))?.equals(last), "the last version", 30_000, 50);
    expect(seen.length).toBeGreaterThan(0);
    // Every delivery is one version, whole. Versions 2 and 3 may also arrive as a prefix when the writer
    // (this process, busy with the transfer too) paused longer than --stable-ms inside writeFile: the
    // file truly was that prefix for that long, and the whole version follows; the shortest such prefix
    // is the empty file writeFile starts with (seen once, under a full test suite's load). Version 1 was
    // complete before the server started, so a short version 1 is a file cut while read: a failure.
    for (const fill of seen) expect(fill, `deliveries: ${seen.join("; ")}`).toMatch(new RegExp(`^(${size} × 1|\\d+ × [23]|empty)$`));
    expect(seen.at(-1)).toBe(`${size} × 3`);
    // The publisher says "sent" for what was delivered, not for a version that changed while it was read.
    expect(pub.sent.filter((e) => e.operation === "create")).toHaveLength(seen.length);
  }, 60_000);
});

describe("a subscription whose cache cannot be built", () => {
  // (Commit 91ad812.) Its known causes are fixed, the last one (a garbled manifest entry) since these tests
  // were written: so a throw is injected where the cache is built, by the check of a held file.

  /** Building the cache of a subscription holding `name` throws, while `when()` holds. */
  function cacheFails(name: string, when: () => boolean = () => true) {
    const original = Inbox.prototype.stillHeld;
    const spy = vi.spyOn(Inbox.prototype, "stillHeld").mockImplementation(function (this: Inbox, relative: string, size: number) {
      if (relative === name && when()) throw new Error("injected: cannot check held.bin");
      return original.call(this, relative, size);
    });
    closers.push(async () => spy.mockRestore());
  }

  /** `inbox`'s manifest lists `name` (3 bytes) as delivered from `vpath`; listed in a cache once it is there. */
  async function listedInManifest(inbox: string, name: string, vpath: string) {
    await mkdir(path.join(inbox, ".fmq"), { recursive: true });
    await writeFile(path.join(inbox, ".fmq", "manifest.json"), JSON.stringify({ version: 1, files: { [name]: { vpath, size: 3 } }, partials: {} }));
  }

  it("resync - a subscription that cannot be sent is reported, and the session still opens: the client's other subscription receives its files", async () => {
    const src = await tempDir();
    await writeTree(src, { "good/a.txt": "a\n", "good/d/empty.txt": "", "broken/x.txt": "x" });
    await writeRandomFile(path.join(src, "good/d/random.bin"), 3 * MiB + 17);
    const pub = await startServer(src);
    const goodInbox = await tempDir();
    const brokenInbox = await tempDir();
    await listedInManifest(brokenInbox, "held.bin", "/broken/held.bin");
    await writeFile(path.join(brokenInbox, "held.bin"), "abc");
    cacheFails("held.bin");
    // (No session given up for a stall of this process: the next would report the failure again.)
    const client = new Client({ endpoint: pub.endpoint, inbox: goodInbox, heartbeatMs: 100, timeoutMs: 60_000 });
    closers.push(() => client.close());
    const errors: string[] = [];
    client.on("error", (e) => errors.push(e.message));
    // The broken one first: a throw from it stopped the good one from being sent at all, and the
    // session from opening.
    await client.subscribe("/broken", brokenInbox);
    await client.subscribe("/good", goodInbox);
    client.connect();
    await waitFor(() => client.state === "connected", "the session to open", 15_000);
    await mirrored(goodInbox, path.join(src, "good"), 15_000);
    expect(errors).toHaveLength(1);
    expect(errors[0]).toBe("/broken: cannot subscribe: Error: injected: cannot check held.bin");
    // Nothing came for the subscription that was not sent; the file it holds is left as it was.
    expect([...(await treeHashes(brokenInbox)).keys()]).toEqual(["held.bin"]);
  }, 30_000);

  // Of a size that is not whole blocks, its last 5 bytes are sent again; of whole blocks, only the end (an
  // empty chunk), which used to be ignored as the rest of the refused transfer: the file never came.
  it.each([3 * 1024 * 1024 + 5, 2 * 1024 * 1024])("resync - a big file (%i bytes) received whole with a directory in its way is kept, and put in place once the way is clear without being sent again", async (size) => {
    const src = await tempDir();
    const content = randomBytes(size);
    await writeTree(src, { "big.bin": content });
    const inbox = path.join(await tempDir(), "in");
    await writeTree(inbox, { "big.bin/userfile": "mine" });
    const pub = await startServer(src);
    const sub = await startClient(pub.endpoint, inbox);
    const refused = "big.bin: a directory has that name; received whole, kept until it can be put in place";
    await waitFor(() => sub.errors.includes(refused), "big.bin refused and kept", 15_000);
    expect(pub.bytes()).toBe(content.length);
    await rm(path.join(inbox, "big.bin"), { recursive: true });
    // The subscription is sent again 5 s after the refusal: the kept file is taken up at its last block.
    await waitFor(() => sub.delivered.length === 1, "big.bin delivered", 15_000);
    expect(sub.delivered[0]).toEqual({ path: "big.bin", size: content.length, received: content.length % (1024 * 1024) });
    expect(createHash("sha256").update(await readFile(path.join(inbox, "big.bin"))).digest("hex")).toBe(createHash("sha256").update(content).digest("hex"));
    expect(sub.errors).toEqual([refused]);
  }, 30_000);

  it("resync - while a directory stays in the way of a big file kept whole, it is not sent (and its partial not read) again; once the way is clear it is put in place", async () => {
    const src = await tempDir();
    const content = randomBytes(3 * 1024 * 1024 + 5);
    await writeTree(src, { "big.bin": content });
    const inbox = path.join(await tempDir(), "in");
    await writeTree(inbox, { "big.bin/userfile": "mine" });
    // The client's looks at what is in the way, each answered as the inbox would: counted.
    const looks: boolean[] = [];
    const real = Inbox.prototype.stillInTheWay;
    const spy = vi.spyOn(Inbox.prototype, "stillInTheWay").mockImplementation(function (this: Inbox, relative: string) {
      const inTheWay = real.call(this, relative);
      looks.push(inTheWay);
      return inTheWay;
    });
    closers.push(async () => spy.mockRestore());
    const pub = await startServer(src);
    let subscribed = 0;
    pub.server.on("subscribed", () => subscribed++);
    const sub = await startClient(pub.endpoint, inbox);
    await waitFor(() => sub.errors.length === 1, "big.bin refused and kept", 15_000);
    // The first retry is due 5 s after the refusal. It looked, found the directory still there, and sent
    // nothing (each retry used to have the server send the file's last part, and the client read the
    // whole kept file to resume it).
    await waitFor(() => looks.length === 1, "the first retry's look", 15_000);
    expect(looks).toEqual([true]);
    expect(sub.errors).toHaveLength(1);
    await rm(path.join(inbox, "big.bin"), { recursive: true });
    // Looked at again 10 s after the first look: the way clear, the subscription goes again.
    await waitFor(() => sub.delivered.length === 1, "big.bin delivered", 20_000);
    expect(looks).toEqual([true, false]);
    // Subscribed twice in all, the file sent twice: the first retry, 10 s before, asked for nothing.
    expect(subscribed).toBe(2);
    expect(createHash("sha256").update(await readFile(path.join(inbox, "big.bin"))).digest("hex")).toBe(createHash("sha256").update(content).digest("hex"));
    expect(pub.sent.filter((e) => e.path === "/big.bin")).toHaveLength(2);
  }, 45_000);

  it("resync - files refused by a directory the user made read-only (immutable, as root) arrive once it is writable again, without a reconnection", async () => {
    const src = await tempDir();
    const content = randomBytes(2 * 1024 * 1024 + 5);
    await writeTree(src, { "sub/small.txt": "small", "sub/big.bin": content });
    const inbox = path.join(await tempDir(), "in");
    const locked = path.join(inbox, "sub");
    await mkdir(locked, { recursive: true });
    const root = process.getuid?.() === 0;
    const lock = (on: boolean) => (root ? execFileSync("chattr", [on ? "+i" : "-i", locked]) : execFileSync("chmod", [on ? "555" : "755", locked]));
    lock(true);
    closers.push(async () => void lock(false));
    const pub = await startServer(src);
    const sub = await startClient(pub.endpoint, inbox);
    await waitFor(() => sub.errors.some((e) => e.startsWith("sub/small.txt")) && sub.errors.some((e) => e.startsWith("sub/big.bin")), "both refused", 15_000);
    lock(false);
    // The subscription is sent again 5 s after the first refusal.
    await waitFor(() => sub.delivered.length === 2, "both delivered", 20_000);
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
  }, 40_000);

  it("resync - a timed resync that cannot be sent is reported, not an unhandled rejection", async () => {
    const rejections: unknown[] = [];
    const onRejection = (reason: unknown) => rejections.push(reason);
    process.on("unhandledRejection", onRejection);
    closers.push(async () => void process.off("unhandledRejection", onRejection));
    const src = await tempDir();
    await writeTree(src, { e: "now a file", "keep.txt": "k" });
    const inbox = path.join(await tempDir(), "in");
    // The user's own directory where the file e goes: e is refused, and the subscription is sent again 5 s later.
    await writeTree(inbox, { "e/userfile": "mine" });
    // Its file is not there yet: the first ICANHAZ leaves it out (the server would delete it), and goes.
    let failing = false;
    await listedInManifest(inbox, "held.bin", "/held.bin");
    cacheFails("held.bin", () => failing);
    const pub = await startServer(src);
    const sub = await startClient(pub.endpoint, inbox);
    await waitFor(() => sub.errors.includes("e: a directory has that name") && sub.delivered.length === 1, "e refused and keep.txt delivered", 15_000);
    expect(sub.errors).toEqual(["e: a directory has that name"]);
    // Held now: the resync lists it, and its cache cannot be built. (And e's way clear: while it stays
    // blocked, no resync goes.)
    await writeFile(path.join(inbox, "held.bin"), "abc");
    failing = true;
    await rm(path.join(inbox, "e"), { recursive: true });
    await waitFor(() => rejections.length > 0 || sub.errors.length > 1, "the resync to fail", 15_000);
    expect(rejections).toEqual([]);
    expect(sub.errors).toHaveLength(2);
    expect(sub.errors[1]).toBe("/: cannot subscribe again: Error: injected: cannot check held.bin");
    expect(sub.client.state).toBe("connected");
  }, 30_000);
});

/** "length × value" for a buffer of one byte value, else its runs ("length × value + …"). */
function describeFill(data: Buffer): string {
  if (data.length === 0) return "empty";
  const runs: string[] = [];
  let start = 0;
  for (let i = 1; i <= data.length; i++) {
    if (i === data.length || data[i] !== data[start]) {
      runs.push(`${i - start} × ${data[start]}`);
      start = i;
    }
  }
  return runs.join(" + ");
}
