// End to end in one process: a real Server and real Clients over TCP on 127.0.0.1, real files in temp
// directories, every result compared byte for byte (sha256 of every file, hidden leftovers included).

import { createHash } from "node:crypto";
import { chmod, mkdir, readFile, readdir, realpath, rename, rm, symlink, unlink, writeFile } from "node:fs/promises";
import { networkInterfaces } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { context, Dealer } from "zeromq";
import { Client, Server, encode, type ClientOptions, type ServerOptions } from "../../src/index.js";
import { tempDir } from "../helpers/tmp.js";
import { treeHashes, writeRandomFile, writeTree } from "../helpers/files.js";
import { waitFor } from "../helpers/wait.js";
import { tcpEndpoint } from "../helpers/net.js";
import { Inbox, partialName } from "../../src/client/inbox.js";

context.blocky = false;

const sha256 = (text: string) => createHash("sha256").update(text).digest("hex");

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

async function startServer(dir: string, opts: ServerOptions & { endpoint?: string; alias?: string } = {}) {
  const server = new Server({ stableMs: 50, ...opts });
  closers.push(() => server.close());
  await server.publish(dir, opts.alias ?? "/");
  const endpoint = await server.bind(opts.endpoint ?? (await tcpEndpoint()));
  return { server, endpoint };
}

async function startClient(endpoint: string, inbox: string, paths: string[] = ["/"], opts: Partial<ClientOptions> = {}) {
  const client = new Client({ endpoint, inbox, heartbeatMs: 200, ...opts });
  closers.push(() => client.close());
  const delivered: { path: string; size: number }[] = [];
  const deleted: string[] = [];
  const errors: string[] = [];
  client.on("delivered", (e) => delivered.push({ path: e.path, size: e.size }));
  client.on("deleted", (e) => deleted.push(e.path));
  client.on("error", (e) => errors.push(e.message));
  for (const p of paths) await client.subscribe(p);
  client.connect();
  return { client, delivered, deleted, errors };
}

/** Wait until the inbox holds exactly the expected files (by content), nothing more, nothing partial. */
async function expectMirror(inbox: string, expected: Map<string, string> | (() => Promise<Map<string, string>>), timeoutMs = 20_000) {
  const want = typeof expected === "function" ? expected : async () => expected;
  let last = new Map<string, string>();
  let target = new Map<string, string>();
  try {
    await waitFor(async () => {
      target = await want();
      last = await treeHashes(inbox);
      return JSON.stringify([...last]) === JSON.stringify([...target]);
    }, `inbox ${inbox} to mirror the source`, timeoutMs, 25);
  } catch (error) {
    expect([...last.keys()]).toEqual([...target.keys()]);
    throw error;
  }
}

/** A server publishing `outer` as "/" and `inner` at `alias` inside it, in either order, bound; its warnings kept. */
async function publishNested(outer: string, inner: string, alias: string, order: "outer first" | "inner first") {
  const server = new Server({ stableMs: 50 });
  closers.push(() => server.close());
  const warnings: string[] = [];
  server.on("warning", (w) => warnings.push(w));
  for (const [directory, at] of order === "outer first" ? [[outer, "/"], [inner, alias]] : [[inner, alias], [outer, "/"]]) await server.publish(directory!, at);
  return { server, warnings, endpoint: await server.bind(await tcpEndpoint()) };
}

describe("transfer", () => {
  it("server - a publish still under way when the server closes ends refused, its mount closed: nothing keeps watching for nobody (it kept the process alive)", async () => {
    const dir = await tempDir();
    await writeTree(dir, { "a.txt": "a" });
    const server = new Server({ stableMs: 30 });
    const watchers = () => process.getActiveResourcesInfo().filter((kind) => kind === "FSEventWrap").length;
    const before = watchers();
    const publishing = server.publish(dir, "/");
    publishing.catch(() => undefined);
    await server.close();
    await expect(publishing).rejects.toThrow(/the server is closed/);
    await waitFor(() => watchers() === before, "no watcher left", 5_000);
    await expect(server.publish(dir, "/")).rejects.toThrow(/the server is closed/);
    expect(watchers()).toBe(before);
  });

  it("server - publish() refuses what the config refuses: an alias twice, and directories that nest under another alias (both orders); one that nests at its place is fine", async () => {
    // (A review: through the library, an alias published twice had a file of each mount for one name, and
    // which a subscriber got depended on when it came; a delete in one removed the other's. A directory
    // inside another's under another alias published its files twice: a leak past an account's allow list.)
    const root = await tempDir();
    await writeTree(root, { "share/hr/pay.txt": "p", "share/a.txt": "a", "other/b.txt": "b", "outer/inner/c.txt": "c" });
    const server = new Server({ stableMs: 30 });
    closers.push(() => server.close());
    const share = path.join(root, "share");
    await server.publish(share, "/pub");
    await expect(server.publish(path.join(root, "other"), "/pub")).rejects.toThrow(`cannot publish ${path.join(root, "other")}: alias /pub is published already (from ${await realpath(share)})`);
    await expect(server.publish(path.join(share, "hr"), "/hr")).rejects.toThrow(/\(mount \/hr\) is inside the directory of mount \/pub, which would publish it as \/pub\/hr too/);
    await expect(server.publish(share, "/again")).rejects.toThrow(/\(mount \/again\) is the directory of mount \/pub/);
    await server.publish(path.join(root, "outer", "inner"), "/in");
    await expect(server.publish(path.join(root, "outer"), "/out")).rejects.toThrow(/\(mount \/in\) is inside the directory of mount \/out, which would publish it as \/out\/inner too/);
    // At its place under the outer alias, and apart: fine.
    await server.publish(path.join(share, "hr"), "/pub/hr");
    await server.publish(path.join(root, "other"), "/other");
    expect(server.mounts.map((m) => m.alias)).toEqual(["/pub", "/in", "/pub/hr", "/other"]);
  });

  it("transfer - a late joiner receives a nested tree with empty and binary files", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, {
      "top.txt": "hello\n",
      "empty.txt": "",
      "a/b/c/deep.txt": "deep\n",
      "a/b/binary.bin": Buffer.from([0, 1, 2, 255, 254, 0, 0, 10, 13]),
      "a/sibling.txt": "x".repeat(70_000),
    });
    await writeRandomFile(path.join(src, "a/random.bin"), 3 * 1024 * 1024 + 17);
    const { endpoint } = await startServer(src);
    await startClient(endpoint, inbox);
    await expectMirror(inbox, await treeHashes(src));
  });

  // (Skipped where the host has no IPv6 loopback.)
  it.skipIf(!Object.values(networkInterfaces()).flat().some((i) => i?.address === "::1"))("transfer - over IPv6: a publisher bound to tcp://[::1]:port, a subscriber connected there", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, { "a.txt": "over IPv6\n" });
    await writeRandomFile(path.join(src, "b.bin"), 2 * 1024 * 1024 + 3);
    const port = Number(new URL((await tcpEndpoint()).replace("tcp:", "http:")).port);
    const { endpoint } = await startServer(src, { endpoint: `tcp://[::1]:${port}` });
    await startClient(endpoint, inbox);
    await expectMirror(inbox, await treeHashes(src));
  });

  it("transfer - live creates, a shorter rewrite and deletes reach the inbox", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const { endpoint } = await startServer(src);
    const sub = await startClient(endpoint, inbox);
    await waitFor(() => sub.client.state === "connected", "connected");
    await writeTree(src, { "live/one.txt": "hello world\n", "two.txt": "2" });
    await expectMirror(inbox, () => treeHashes(src));
    // A shorter new version fully replaces the old one (the reference left "bye\no world\n").
    await writeFile(path.join(src, "live/one.txt"), "bye\n");
    await expectMirror(inbox, () => treeHashes(src));
    await unlink(path.join(src, "two.txt"));
    await expectMirror(inbox, () => treeHashes(src));
    // (Reported once the delete is done: a moment after the file went.)
    await waitFor(() => sub.deleted.includes("two.txt"), "the delete reported", 5000);
  });

  it("transfer - a symlink inside the mount follows its target: a change to the target reaches subscribers through the link too, and a later subscriber gets the link's new content", async () => {
    const src = await tempDir();
    await writeTree(src, { "real/t.txt": "version one\n" });
    await symlink("real/t.txt", path.join(src, "link.txt"));
    const { endpoint } = await startServer(src);
    const inbox = path.join(await tempDir(), "in");
    const first = await startClient(endpoint, inbox);
    const mirror = (content: string) => new Map([["link.txt", sha256(content)], ["real/t.txt", sha256(content)]]);
    await expectMirror(inbox, mirror("version one\n"));
    // Rewritten in place (same inode): the watcher sees real/t.txt change, not the link.
    await writeFile(path.join(src, "real/t.txt"), "version two, longer\n");
    await expectMirror(inbox, mirror("version two, longer\n"));
    const later = path.join(await tempDir(), "later");
    await startClient(endpoint, later);
    await expectMirror(later, mirror("version two, longer\n"));
    expect(first.errors).toEqual([]);
    // The target removed: the link leads nowhere, and goes too (it stayed published, and every send failed).
    await unlink(path.join(src, "real/t.txt"));
    await expectMirror(inbox, new Map());
    await expectMirror(later, new Map());
  });

  it("transfer - two subscriptions of one client into two inboxes (/sub first, then /): a file the / inbox holds still goes to the /sub inbox, its route", async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "a", "sub/f.txt": "f" });
    const { endpoint } = await startServer(src);
    const whole = path.join(await tempDir(), "whole");
    const first = await startClient(endpoint, whole);
    await expectMirror(whole, () => treeHashes(src));
    await first.client.close();
    // Back with /sub into its own inbox, asked for first: the / inbox's cache says it holds sub/f.txt.
    const subInbox = path.join(await tempDir(), "sub");
    const client = new Client({ endpoint, inbox: whole, heartbeatMs: 200 });
    closers.push(() => client.close());
    await client.subscribe("/sub", subInbox);
    await client.subscribe("/");
    client.connect();
    await expectMirror(subInbox, new Map([["f.txt", sha256("f")]]));
  });

  it("transfer - a file replaced by a directory of its name: subscribers get the delete, then the directory's files", async () => {
    const src = await tempDir();
    await writeTree(src, { x: "a file", "keep.txt": "k" });
    const { server, endpoint } = await startServer(src);
    const inbox = path.join(await tempDir(), "in");
    await startClient(endpoint, inbox);
    await expectMirror(inbox, () => treeHashes(src));
    await unlink(path.join(src, "x"));
    await writeTree(src, { "x/inside.txt": "inside" });
    await expectMirror(inbox, () => treeHashes(src));
    expect([...server.mounts[0]!.files.keys()].sort()).toEqual(["/keep.txt", "/x/inside.txt"]);
  });

  it("transfer - a file refused for something of the user's in its way in the inbox (a directory, a file) arrives by itself once that is removed", async () => {
    // (Found by black-box testing: it came only when the subscriber was restarted.)
    const src = await tempDir();
    await writeTree(src, { e: "now a file", "d/inside.txt": "inside", "keep.txt": "k" });
    const inbox = path.join(await tempDir(), "in");
    // The user's own: a directory where the file e goes, a file where the directory d goes.
    await writeTree(inbox, { "e/userfile": "mine", d: "my file d" });
    const { endpoint } = await startServer(src);
    const sub = await startClient(endpoint, inbox);
    await waitFor(() => sub.errors.includes("e: a directory has that name") && sub.errors.some((e) => /^refused "d\/inside.txt": d is a file, not a directory$/.test(e)), "both refused", 10_000);
    expect(sub.delivered.map((d) => d.path)).toEqual(["keep.txt"]);
    await rm(path.join(inbox, "e"), { recursive: true });
    await rm(path.join(inbox, "d"));
    // The subscription is sent again 5 s after the first refusal.
    await expectMirror(inbox, () => treeHashes(src), 15_000);
  });

  // (Two reviews: the directories made when a file began to come stayed when it never did, and a file
  // later published under one of their names never came: "b: a directory has that name".)
  it("transfer - a file's directory removed while the file comes: the directories made for it go too, and a file of that name then arrives", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "b", "c", "big.bin"), 48 * 1024 * 1024);
    await writeTree(src, { "keep.txt": "k" });
    const { endpoint } = await startServer(src);
    const sub = await startClient(endpoint, inbox, ["/"], { window: 1024 * 1024 });
    // As soon as its directories are made in the inbox (its first chunk came): the source's go.
    await waitFor(async () => (await readdir(path.join(inbox, "b", "c")).catch(() => undefined)) !== undefined, "b/c made in the inbox", 15_000, 1);
    expect(sub.delivered.some((d) => d.path === "b/c/big.bin")).toBe(false);
    await rm(path.join(src, "b"), { recursive: true });
    await expectMirror(inbox, () => treeHashes(src), 15_000);
    await waitFor(async () => !(await readdir(inbox)).includes("b"), "b gone from the inbox", 15_000);
    await writeFile(path.join(src, "b"), "I am b");
    await expectMirror(inbox, () => treeHashes(src), 15_000);
    expect(sub.errors.filter((e) => /directory has that name/.test(e))).toEqual([]);
  }, 60_000);

  it("transfer - a tree of empty directories where a file goes (left by a subscriber killed mid-transfer) gives way; one with a file of the user's in it does not", async () => {
    const src = await tempDir();
    await writeTree(src, { x: "file x", y: "file y", "keep.txt": "k" });
    const inbox = path.join(await tempDir(), "in");
    await mkdir(path.join(inbox, "x", "p", "q"), { recursive: true });
    await mkdir(path.join(inbox, "x", "r"), { recursive: true });
    await writeTree(inbox, { "y/p/userfile": "mine" });
    const { endpoint } = await startServer(src);
    const sub = await startClient(endpoint, inbox);
    await waitFor(() => sub.delivered.some((d) => d.path === "x") && sub.errors.includes("y: a directory has that name"), "x delivered and y refused", 15_000);
    expect(await readFile(path.join(inbox, "x"), "utf8")).toBe("file x");
    expect(await readFile(path.join(inbox, "y", "p", "userfile"), "utf8")).toBe("mine");
  });

  it("transfer - a mount inside another's alias owns its subtree: one virtual path, one file, whichever mount is published first", async () => {
    for (const order of ["outer first", "inner first"] as const) {
      const outer = await tempDir();
      const inner = await tempDir();
      await writeTree(outer, { "a.txt": "a", "logs/x.txt": "from the outer mount", "logs/only.txt": "hidden too" });
      await writeTree(inner, { "x.txt": "from the inner mount" });
      const { server, warnings, endpoint } = await publishNested(outer, inner, "/logs", order);
      const inbox = path.join(await tempDir(), "in");
      const sub = await startClient(endpoint, inbox);
      const both = new Map([["a.txt", sha256("a")], ["logs/x.txt", sha256("from the inner mount")]]);
      await expectMirror(inbox, both);
      expect(server.mounts.reduce((n, m) => n + m.files.size, 0)).toBe(2);
      expect(warnings.filter((w) => /has files under another mount's path/.test(w))).toHaveLength(1);
      // The inner mount's file goes: so does the virtual path (the outer's file there stays unpublished).
      await unlink(path.join(inner, "x.txt"));
      await expectMirror(inbox, new Map([["a.txt", sha256("a")]]));
      // (Reported once the delete is done, its emptied directory pruned too: a moment after the file went.)
      await waitFor(() => sub.deleted.length > 0, "the delete reported", 5000);
      expect(sub.deleted).toEqual(["logs/x.txt"]);
    }
  });

  // (A review: /q/z was published as a file beside /q/z/w/dd, and a subscriber of / never converged.)
  it("transfer - a file of an outer mount on the way to an inner mount's alias is not published: the inner mount's files are, whichever mount is published first", async () => {
    for (const order of ["outer first", "inner first"] as const) {
      const outer = await tempDir();
      const inner = await tempDir();
      await writeTree(outer, { "a.txt": "a", "q/z": "a file where the inner mount's way goes" });
      // (A link elsewhere to that file is published: the file is ours, only its own name is in the way.)
      await symlink("q/z", path.join(outer, "link"));
      await writeTree(inner, { dd: "from the inner mount" });
      const { server, warnings, endpoint } = await publishNested(outer, inner, "/q/z/w", order);
      const inbox = path.join(await tempDir(), "in");
      const sub = await startClient(endpoint, inbox);
      await expectMirror(inbox, new Map([["a.txt", sha256("a")], ["link", sha256("a file where the inner mount's way goes")], ["q/z/w/dd", sha256("from the inner mount")]]));
      expect([...server.mounts.flatMap((m) => [...m.files.keys()])].sort()).toEqual(["/a.txt", "/link", "/q/z/w/dd"]);
      expect(warnings.filter((w) => /has files under another mount's path, or on its way \(\/q\/z\)/.test(w))).toHaveLength(1);
      expect(sub.errors).toEqual([]);
    }
  });

  it("transfer - a directory renamed and a file made at once at its old name: subscribers lose the old files, get the file and its later changes and its delete", async () => {
    const src = await tempDir();
    const files: Record<string, string> = {};
    for (let i = 0; i < 20; i++) files[`x/f${i}`] = String(i);
    await writeTree(src, files);
    const { server, endpoint } = await startServer(src);
    const inbox = path.join(await tempDir(), "in");
    const sub = await startClient(endpoint, inbox);
    await expectMirror(inbox, () => treeHashes(src));
    // (The watcher used to keep x/f* published for good and never see x: 40 files served for 21.)
    await rename(path.join(src, "x"), path.join(src, "y"));
    await writeFile(path.join(src, "x"), "7");
    await expectMirror(inbox, () => treeHashes(src));
    await writeFile(path.join(src, "x"), "77");
    await expectMirror(inbox, () => treeHashes(src));
    expect(server.mounts[0]!.files.size).toBe(21);
    await unlink(path.join(src, "x"));
    await expectMirror(inbox, () => treeHashes(src));
    // (Reported once the delete is done: a moment after the file went; seen under two test workers.)
    await waitFor(() => sub.deleted.includes("x"), "the delete reported", 5000);
    expect(server.mounts[0]!.files.size).toBe(20);
  });

  it("transfer - a published file chmod'ed 000 is not taken for deleted: subscribers keep their copy", async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "a" });
    const { endpoint } = await startServer(src);
    const inbox = path.join(await tempDir(), "in");
    const sub = await startClient(endpoint, inbox);
    await expectMirror(inbox, new Map([["a.txt", sha256("a")]]));
    await chmod(path.join(src, "a.txt"), 0o000);
    // A later file: by the time it arrives, the chmod has long been seen (a delete would have come first).
    await writeFile(path.join(src, "b.txt"), "b");
    await expectMirror(inbox, new Map([["a.txt", sha256("a")], ["b.txt", sha256("b")]]));
    expect(sub.deleted).toEqual([]);
  });

  it("transfer - a subscriber behind with a long run of deletes (5,000 files removed on the server) reads on while it works through them, and keeps its session", async () => {
    // Its deletes held until it has read as far ahead as it may (4,096 messages). Before, it then read
    // nothing more until it had handled them all: with deletes at a few ms each (a loaded machine) the
    // socket went unread for seconds, its receive window shut all that time, and the server's kernel
    // closed the connection at twice the peer timeout (TCP_MAXRT; seen with 8,000 deletes at 1 ms each
    // against a publisher in another process, peer timeout 2 s), and both started a new session. Now it
    // reads again once a quarter of them is handled: the rest come before it is half way through.
    const src = await tempDir();
    const files: Record<string, string> = {};
    for (let d = 0; d < 20; d++) for (let i = 0; i < 250; i++) files[`d${d}/f${i}`] = "x";
    await writeTree(src, files);
    const { server, endpoint } = await startServer(src, { peerTimeoutMs: 1200 });
    const serverSaid: string[] = [];
    server.on("warning", (w) => serverSaid.push(w));
    server.on("disconnected", (key) => serverSaid.push(`${key} disconnected`));
    const inbox = await tempDir();
    const { client, errors, delivered, deleted } = await startClient(endpoint, inbox);
    const clientSaid: string[] = [];
    client.on("disconnected", (why) => clientSaid.push(why));
    // (Counted by events: 5,000 files hashed at every look took seconds.)
    await waitFor(() => delivered.length >= 5000, "the files delivered", 30_000);
    expect((await treeHashes(inbox)).size).toBe(5000);
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const remove = Inbox.prototype.remove;
    let removes = 0;
    const spy = vi.spyOn(Inbox.prototype, "remove").mockImplementation(async function (this: Inbox, ...args: Parameters<Inbox["remove"]>) {
      removes++;
      await held;
      return remove.apply(this, args);
    });
    // What it has read and not yet handled, every 10 ms from the release on.
    const backlog: number[] = [];
    const watch = setInterval(() => backlog.push(client.backlog.messages), 10);
    try {
      for (let d = 0; d < 20; d++) await rm(path.join(src, `d${d}`), { recursive: true });
      await waitFor(() => client.backlog.messages >= 4096, "the client as far ahead as it reads", 30_000);
      backlog.length = 0;
      release();
      await waitFor(() => deleted.length >= 5000, "the files deleted", 60_000);
      expect(await treeHashes(inbox)).toEqual(new Map());
    } finally {
      clearInterval(watch);
      release();
      spy.mockRestore();
    }
    expect(removes).toBeGreaterThanOrEqual(5000);
    // It read more (the rest, about 900) before it was half way through: its backlog went up again.
    const rose = backlog.findIndex((n, i) => i > 0 && n > backlog[i - 1]!);
    expect(rose).toBeGreaterThan(0);
    expect(Math.min(...backlog.slice(0, rose + 1))).toBeGreaterThan(2048);
    expect(clientSaid).toEqual([]);
    expect(serverSaid).toEqual([]);
    expect(errors).toEqual([]);
  }, 90_000);

  it("transfer - the published directory removed: a warning, its files deleted at subscribers; made again at that path, it is published again", async () => {
    const src = path.join(await tempDir(), "pub");
    await writeTree(src, { "a.txt": "a", "d/b.txt": "b" });
    const { server, endpoint } = await startServer(src);
    const warnings: string[] = [];
    server.on("warning", (message) => warnings.push(message));
    const inbox = path.join(await tempDir(), "in");
    await startClient(endpoint, inbox);
    await expectMirror(inbox, new Map([["a.txt", sha256("a")], ["d/b.txt", sha256("b")]]));
    await rm(src, { recursive: true });
    await waitFor(() => warnings.some((w) => / was removed: nothing is published from it until it is back$/.test(w)), "a warning", 5000);
    await expectMirror(inbox, new Map());
    await writeTree(src, { "c.txt": "c" });
    await expectMirror(inbox, new Map([["c.txt", sha256("c")]]));
    expect(warnings.some((w) => / is back: publishing it again$/.test(w))).toBe(true);
  });

  // (Moved away, the watcher reports no unlink of its files: their deletes were left to it, and a.txt stayed
  // at the subscriber for good; removed, 2 runs in 20 under load the same, the watcher finding v2's a.txt at
  // that name by the time it looked.)
  for (const [how, away] of [
    ["rm -rf pub && ln -s v2 pub", (src: string) => rm(src, { recursive: true })],
    ["mv pub old && ln -s v2 pub", (src: string) => rename(src, path.join(path.dirname(src), "old"))],
  ] as const) {
    it(`transfer - the published directory replaced by a symlink to another (${how}): lost as if removed, its files deleted at subscribers, nothing of v2 published; a directory again there is published`, async () => {
      const base = await tempDir();
      const src = path.join(base, "pub");
      await writeTree(src, { "a.txt": "a", "b.txt": "b" });
      await writeTree(path.join(base, "v2"), { "a.txt": "a", "v2.txt": "2" });
      const { server, endpoint } = await startServer(src);
      const warnings: string[] = [];
      server.on("warning", (message) => warnings.push(message));
      const inbox = path.join(await tempDir(), "in");
      await startClient(endpoint, inbox);
      await expectMirror(inbox, new Map([["a.txt", sha256("a")], ["b.txt", sha256("b")]]));
      await away(src);
      await symlink(path.join(base, "v2"), src);
      await waitFor(() => warnings.some((w) => / was removed: nothing is published from it until it is back$/.test(w)), "the root said lost", 5000);
      // (a.txt, the same name in v2, would have stayed published, and failed to be sent for ever.)
      await expectMirror(inbox, new Map());
      expect([...server.mounts[0]!.files.keys()]).toEqual([]);
      // A directory again at that path: published again.
      await rm(src);
      await writeTree(src, { "c.txt": "c" });
      await expectMirror(inbox, new Map([["c.txt", sha256("c")]]));
    });
  }

  it("transfer - a 100 MiB file arrives byte for byte", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 100 * 1024 * 1024);
    const { endpoint } = await startServer(src);
    const sub = await startClient(endpoint, inbox);
    await expectMirror(inbox, await treeHashes(src), 60_000);
    expect(sub.delivered).toEqual([{ path: "big.bin", size: 100 * 1024 * 1024 }]);
  }, 90_000);

  it("transfer - hashAhead off: big files are not read at publish, and still arrive intact (the transfer hashes what it sends)", async () => {
    const src = await tempDir();
    await writeRandomFile(path.join(src, "a.bin"), 3 * 1024 * 1024 + 7);
    await writeRandomFile(path.join(src, "b.bin"), 2 * 1024 * 1024);
    // On (the default), publishing reads them in the background: the count this test relies on moves.
    const ahead = await startServer(src);
    await waitFor(() => ahead.server.hashedAhead === 2, "two background fingerprints");
    const { server, endpoint } = await startServer(src, { hashAhead: false });
    const inbox = await tempDir();
    const sub = await startClient(endpoint, inbox);
    await expectMirror(inbox, await treeHashes(src), 30_000);
    expect(server.hashedAhead).toBe(0);
    expect(sub.errors).toEqual([]);
  }, 60_000);

  it("transfer - 2,000 small files published at once all arrive (the reference livelocks here)", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const { endpoint } = await startServer(src);
    const sub = await startClient(endpoint, inbox);
    await waitFor(() => sub.client.state === "connected", "connected");
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 2000; i++) files[`d${i % 20}/f${i}.bin`] = Buffer.alloc(4096, i % 251);
    // One 10 MB file among them: the reference stalls when small files leave credit below a chunk.
    await writeRandomFile(path.join(src, "mixed/big.bin"), 10_000_000);
    await writeTree(src, files);
    await waitFor(() => sub.delivered.length >= 2001, "2,001 deliveries", 60_000, 50);
    await expectMirror(inbox, await treeHashes(src));
    expect(sub.delivered.length).toBe(2001);
    expect(sub.errors).toEqual([]);
    // The inbox's journal says each placement once: a batch's lines were not taken back before its files
    // were handled and written again (a resource review: 19,839 placing and 9,839 unplaced lines for
    // 10,000 files).
    const ops = (await readFile(path.join(inbox, ".fmq", "journal.jsonl"), "utf8"))
      .split("\n")
      .filter(Boolean)
      .map((line) => JSON.parse(line) as { op: string; name: string })
      // (Not the epoch lines, an "unplaced" of the empty name: see Manifest.)
      .filter((change) => change.name !== "")
      .map((change) => change.op);
    expect(ops.filter((op) => op === "unplaced").length).toBe(0);
    expect(ops.filter((op) => op === "placing").length).toBe(2001);
  }, 90_000);

  it("transfer - subscribers receive only their own paths: /sub never gets /subway", async () => {
    const src = await tempDir();
    await writeTree(src, { "sub/a.txt": "a", "sub/deeper/b.txt": "b", "subway/s.txt": "s", "other/o.txt": "o", "root.txt": "r" });
    const { endpoint } = await startServer(src);
    const inboxSub = await tempDir();
    const inboxOther = await tempDir();
    const inboxBoth = await tempDir();
    await startClient(endpoint, inboxSub, ["/sub"]);
    await startClient(endpoint, inboxOther, ["/other"]);
    const both = await startClient(endpoint, inboxBoth, ["/subway", "/other"]);
    await expectMirror(inboxSub, new Map([...(await treeHashes(path.join(src, "sub")))]));
    await expectMirror(inboxOther, await treeHashes(path.join(src, "other")));
    // Two subscriptions in one inbox: each file relative to its own subscription.
    await expectMirror(inboxBoth, new Map([...(await treeHashes(path.join(src, "other"))), ...(await treeHashes(path.join(src, "subway")))].sort(([a], [b]) => (a < b ? -1 : 1))));
    // Live files go to the right subscriber only.
    await writeTree(src, { "subway/late.txt": "late", "sub/late2.txt": "late2" });
    await expectMirror(inboxSub, () => treeHashes(path.join(src, "sub")));
    await waitFor(() => both.delivered.some((d) => d.path === "late.txt"), "late.txt at the /subway subscriber");
  });

  it("transfer - a mount under an alias is served under its virtual path", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, { "x.log": "x", "app/y.log": "y" });
    const { endpoint } = await startServer(src, { alias: "/logs" });
    await startClient(endpoint, inbox, ["/logs/app"]);
    await expectMirror(inbox, await treeHashes(path.join(src, "app")));
  });

  it("transfer - server restart mid-stream: the client carries on and completes the file", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 200 * 1024 * 1024);
    const endpoint = await tcpEndpoint();
    const first = await startServer(src, { endpoint });
    // A small window slows the first transfer enough to interrupt it.
    const sub = await startClient(endpoint, inbox, ["/"], { window: 2 * 1024 * 1024, slice: 1024 * 1024, heartbeatMs: 100 });
    const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
    await waitFor(async () => {
      const { size } = await import("node:fs/promises").then((fs) => fs.stat(partial)).catch(() => ({ size: 0 }));
      return size > 0;
    }, "a partial file", 20_000, 2);
    await first.server.close();
    expect(sub.delivered).toEqual([]);
    const second = new Server({ stableMs: 50 });
    closers.push(() => second.close());
    await second.publish(src);
    // (libzmq closes the first server's listener in its own time, on its I/O thread: bind again until the
    // port is free: once in about ten full runs here it was not yet.)
    await waitFor(
      () =>
        second.bind(endpoint).then(
          () => true,
          (error: unknown) => {
            if (!/address already in use/.test(String(error))) throw error;
            return false;
          },
        ),
      "the port free again",
      10_000,
    );
    await expectMirror(inbox, await treeHashes(src), 60_000);
    expect(sub.delivered.map((d) => d.path)).toEqual(["big.bin"]);
  }, 90_000);

  it("transfer - a client that grants credit and never reads does not slow the others", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 64 * 1024 * 1024);
    const { server, endpoint } = await startServer(src);
    // The stuck peer: subscribes, grants 1 GiB of credit, and never reads another message.
    const stuck = new Dealer({ linger: 0, receiveHighWaterMark: 4 });
    closers.push(async () => stuck.close());
    stuck.connect(endpoint);
    await stuck.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
    await stuck.send(encode({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() }));
    await stuck.send(encode({ id: "NOM", credit: 1n << 30n, sequence: 0n }));
    await waitFor(() => server.clients === 1, "the stuck client's session");
    const sub = await startClient(endpoint, inbox);
    await expectMirror(inbox, await treeHashes(src), 60_000);
    expect(sub.delivered).toEqual([{ path: "big.bin", size: 64 * 1024 * 1024 }]);
    expect(server.clients).toBe(2);
  }, 90_000);

  it("transfer - a client that starts before the server connects once it is up", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, { "early.txt": "early bird" });
    const endpoint = await tcpEndpoint();
    const sub = await startClient(endpoint, inbox, ["/"], { heartbeatMs: 100 });
    await startServer(src, { endpoint });
    await expectMirror(inbox, await treeHashes(src));
    expect(sub.delivered.map((d) => d.path)).toEqual(["early.txt"]);
  });

  it("transfer - deleting a directory deletes its files on the subscriber", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeTree(src, { "keep.txt": "k", "gone/a.txt": "a", "gone/b/c.txt": "c" });
    const { endpoint } = await startServer(src);
    await startClient(endpoint, inbox);
    await expectMirror(inbox, await treeHashes(src));
    await rm(path.join(src, "gone"), { recursive: true });
    await expectMirror(inbox, () => treeHashes(src));
    await mkdir(path.join(src, "gone"));
  });

  it("transfer - the inbox's .fmq removed while a big file is in flight: that file is asked for again and arrives, without a restart", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 48 * 1024 * 1024 + 5);
    const { endpoint } = await startServer(src);
    const { errors } = await startClient(endpoint, inbox, ["/"], { window: 1024 * 1024 });
    // As soon as its partial file has bytes: remove the state directory, partial and all.
    const partials = path.join(inbox, ".fmq", "partial");
    await waitFor(async () => (await readdir(partials).catch(() => [])).length > 0, "a partial file", 15_000, 1);
    await rm(path.join(inbox, ".fmq"), { recursive: true, force: true });
    // (Asked again after the client's first resync delay, 5 s.)
    await expectMirror(inbox, await treeHashes(src), 30_000);
    expect(errors.some((e) => e.includes("kept until it can be put in place"))).toBe(false);
  }, 60_000);
});
