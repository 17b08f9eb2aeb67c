// A real Client against a scripted raw ROUTER: every message the client sends is checked, and the server
// side is written by hand, so hostile names, odd orderings and broken frames can be sent on purpose.

import { createHash, randomBytes } from "node:crypto";
import { lstat, mkdir, readFile, readdir, readlink, realpath, rename, stat, symlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { context, Router } from "zeromq";

import { Client, type ClientOptions, type DeletedEvent, type DeliveredEvent } from "../../src/client/client.js";
import { decodeFrames, encode } from "../../src/protocol/codec.js";
import type { DecodeError } from "../../src/protocol/errors.js";
import { Operation, type Message, type ServerMessage } from "../../src/protocol/messages.js";
import { sha256File } from "../helpers/files.js";
import { tcpEndpoint } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

context.blocky = false;

const MiB = 1024 * 1024;
/** Deadline for anything the client should do promptly. */
const SOON = 3000;

// ---------------------------------------------------------------------------------------------
// The scripted server

interface Received {
  readonly rid: Buffer;
  readonly message: Message | undefined;
  readonly error: DecodeError | undefined;
  readonly at: number;
  consumed: boolean;
}

type MessageOf<N extends Message["id"]> = Extract<Message, { id: N }>;

type Ending = "empty eof=1" | "empty eof=0" | "eof=1 on last data chunk" | "none";

class RawRouter {
  /** Everything the client sent, in order (taking a message marks it consumed, it stays here). */
  readonly log: Received[] = [];
  /** When this router last sent anything. */
  lastSentAt = 0;
  #sending: Promise<unknown> = Promise.resolve();
  #sequence = 0n;
  /** Payload bytes sent per routing id (hex): what the client's credit paid for. */
  readonly #spent = new Map<string, number>();

  private constructor(
    readonly socket: Router,
    readonly endpoint: string,
  ) {
    void this.#loop();
  }

  static async bind(): Promise<RawRouter> {
    const endpoint = await tcpEndpoint();
    const socket = new Router({ linger: 0 });
    await socket.bind(endpoint);
    return new RawRouter(socket, endpoint);
  }

  async #loop(): Promise<void> {
    try {
      for await (const [rid, ...frames] of this.socket) {
        const result = decodeFrames(frames);
        this.log.push({
          rid: Buffer.from(rid!),
          message: result.ok ? result.message : undefined,
          error: result.ok ? undefined : result.error,
          at: Date.now(),
          consumed: false,
        });
      }
    } catch {
      // closed
    }
  }

  /** The next message not taken yet (any kind), with a deadline. */
  async receive(timeoutMs = SOON): Promise<[Buffer, Message]> {
    const entry = await waitFor(() => this.log.find((r) => !r.consumed), "a message from the client", timeoutMs, 5);
    entry.consumed = true;
    if (!entry.message) throw new Error(`undecodable message from the client: ${entry.error?.message}`);
    return [entry.rid, entry.message];
  }

  /** The next message with this id not taken yet (others stay in the log), optionally from one routing id. */
  async next<N extends Message["id"]>(id: N, opts: { from?: Buffer; timeoutMs?: number } = {}): Promise<[Buffer, MessageOf<N>, number]> {
    const entry = await waitFor(
      () => this.log.find((r) => !r.consumed && r.message?.id === id && (!opts.from || r.rid.equals(opts.from))),
      `${id} from the client`,
      opts.timeoutMs ?? SOON,
      5,
    );
    entry.consumed = true;
    return [entry.rid, entry.message as MessageOf<N>, entry.at];
  }

  /** Messages with this id not taken yet. */
  pending(id: Message["id"], from?: Buffer): Received[] {
    return this.log.filter((r) => !r.consumed && r.message?.id === id && (!from || r.rid.equals(from)));
  }

  /** Total NOM credit this routing id has granted. */
  granted(rid: Buffer): number {
    let total = 0;
    for (const r of this.log) if (r.message?.id === "NOM" && r.rid.equals(rid)) total += Number(r.message.credit);
    return total;
  }

  spent(rid: Buffer): number {
    return this.#spent.get(rid.toString("hex")) ?? 0;
  }

  /** Credit granted and not yet used (what the client's window holds open). */
  outstanding(rid: Buffer): number {
    return this.granted(rid) - this.spent(rid);
  }

  /** Raw frames (one ZeroMQ message) to this routing id. */
  async sendRaw(rid: Buffer, frames: Buffer[]): Promise<void> {
    const sent = this.#sending.then(() => this.socket.send([rid, ...frames]));
    this.#sending = sent.catch(() => undefined);
    await sent;
    this.lastSentAt = Date.now();
  }

  async send(rid: Buffer, message: ServerMessage | Message): Promise<void> {
    await this.sendRaw(rid, [encode(message)]);
  }

  /**
   * One CHEEZBURGER. A create chunk with data waits, like a real server, until the client has granted
   * credit for it: a client that stops granting makes this time out.
   */
  async chunk(
    rid: Buffer,
    fields: { filename: string; operation?: number; offset?: number; eof?: number; data?: Uint8Array },
  ): Promise<void> {
    const operation = fields.operation ?? Operation.CREATE;
    const data = fields.data ?? new Uint8Array(0);
    const paid = operation === Operation.CREATE ? data.length : 0;
    if (paid > 0) await waitFor(() => this.outstanding(rid) >= paid, `credit for ${paid} bytes of ${JSON.stringify(fields.filename)}`, SOON, 2);
    this.#spent.set(rid.toString("hex"), this.spent(rid) + paid);
    await this.send(rid, {
      id: "CHEEZBURGER",
      sequence: this.#sequence++,
      operation,
      filename: fields.filename,
      offset: BigInt(fields.offset ?? 0),
      eof: fields.eof ?? 0,
      headers: new Map(),
      chunk: data,
    });
  }

  /** A whole file as data chunks of `chunkSize`, then the chosen end-of-file signal. */
  async sendFile(
    rid: Buffer,
    filename: string,
    data: Uint8Array,
    opts: { chunkSize?: number; ending?: Ending; onChunk?: () => void } = {},
  ): Promise<void> {
    const chunkSize = opts.chunkSize ?? 1000;
    const ending = opts.ending ?? "empty eof=1";
    for (let offset = 0; offset < data.length; offset += chunkSize) {
      const piece = data.subarray(offset, Math.min(offset + chunkSize, data.length));
      const last = offset + piece.length === data.length;
      opts.onChunk?.();
      await this.chunk(rid, { filename, offset, data: piece, eof: last && ending === "eof=1 on last data chunk" ? 1 : 0 });
    }
    if (ending === "empty eof=1" || ending === "empty eof=0" || (data.length === 0 && ending !== "none")) {
      opts.onChunk?.();
      await this.chunk(rid, { filename, offset: data.length, eof: ending === "empty eof=0" ? 0 : 1 });
    }
  }

  close(): void {
    this.socket.close();
  }
}

// ---------------------------------------------------------------------------------------------
// The client under test

interface Harness {
  readonly client: Client;
  readonly errors: Error[];
  readonly delivered: DeliveredEvent[];
  readonly deleted: DeletedEvent[];
  readonly disconnected: string[];
  readonly subscribed: string[];
  connected: number;
}

const clients: Client[] = [];
const routers: RawRouter[] = [];

afterEach(async () => {
  await Promise.all(clients.splice(0).map((client) => client.close()));
  for (const router of routers.splice(0)) router.close();
});

async function router(): Promise<RawRouter> {
  const r = await RawRouter.bind();
  routers.push(r);
  return r;
}

function makeClient(options: ClientOptions): Harness {
  const client = new Client(options);
  clients.push(client);
  const h: Harness = { client, errors: [], delivered: [], deleted: [], disconnected: [], subscribed: [], connected: 0 };
  client.on("error", (error) => h.errors.push(error));
  client.on("delivered", (event) => h.delivered.push(event));
  client.on("deleted", (event) => h.deleted.push(event));
  client.on("disconnected", (reason) => h.disconnected.push(reason));
  client.on("subscribed", (p) => h.subscribed.push(p));
  client.on("connected", () => h.connected++);
  return h;
}

/** connect(), answer OHAI and every ICANHAZ, and wait for the first NOM. Returns the routing id. */
async function openSession(r: RawRouter, h: Harness, subscriptions: number): Promise<Buffer> {
  h.client.connect();
  const [rid, ohai] = await r.receive();
  expect(ohai.id).toBe("OHAI");
  await r.send(rid, { id: "OHAI_OK" });
  for (let i = 0; i < subscriptions; i++) {
    await r.next("ICANHAZ", { from: rid });
    await r.send(rid, { id: "ICANHAZ_OK" });
  }
  if (subscriptions > 0) await r.next("NOM", { from: rid });
  return rid;
}

/** Waits until `count` more errors than `before` were reported. */
async function errorsAfter(h: Harness, before: number, count = 1): Promise<Error[]> {
  await waitFor(() => h.errors.length >= before + count, `${count} error(s) from the client`, SOON, 5);
  return h.errors.slice(before);
}

async function nextDelivery(h: Harness, vpath: string): Promise<DeliveredEvent> {
  return waitFor(() => h.delivered.find((d) => d.vpath === vpath), `delivery of ${vpath}`, SOON, 5);
}

/** Every entry under `root`: directories, symlinks (with target) and files (with content hash). */
async function snapshot(root: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  const walk = async (dir: string): Promise<void> => {
    for (const name of (await readdir(dir)).sort()) {
      const full = path.join(dir, name);
      const rel = path.relative(root, full);
      const st = await lstat(full);
      if (st.isSymbolicLink()) out[rel] = `symlink -> ${await readlink(full)}`;
      else if (st.isDirectory()) {
        out[rel] = "dir";
        await walk(full);
      } else out[rel] = `file ${createHash("sha256").update(await readFile(full)).digest("hex")}`;
    }
  };
  await walk(root);
  return out;
}

async function exists(file: string): Promise<boolean> {
  return lstat(file).then(
    () => true,
    () => false,
  );
}

function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** Lets the client run for `ms` (only where a test is about something NOT happening). */
function quietFor(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms));
}

// ---------------------------------------------------------------------------------------------

describe("client against a raw ROUTER", { timeout: 5000 }, () => {
  it("client - opens with OHAI, replays ICANHAZ for subscriptions made before connect, then grants the default window", async () => {
    const r = await router();
    const root = await tempDir();
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/a", path.join(root, "inbox-a"));
    await h.client.subscribe("/b", path.join(root, "inbox-b"));
    h.client.connect();

    const [rid, first] = await r.receive();
    expect(first).toEqual({ id: "OHAI", protocol: "FILEMQ", version: 2 });
    // Nothing but heartbeats until the session is open.
    await quietFor(150);
    expect(r.log.filter((e) => !e.consumed && e.message?.id !== "HUGZ")).toEqual([]);
    expect(h.connected).toBe(0);

    await r.send(rid, { id: "OHAI_OK" });
    const [, icanhazA] = await r.next("ICANHAZ", { from: rid });
    const [, icanhazB] = await r.next("ICANHAZ", { from: rid });
    expect([icanhazA.path, icanhazB.path]).toEqual(["/a", "/b"]);
    expect(icanhazA.options.size).toBe(0);
    await waitFor(() => h.connected === 1, "connected", SOON, 5);
    expect(h.subscribed).toEqual([]);
    // No credit before a subscription is accepted.
    expect(r.pending("NOM")).toEqual([]);

    await r.send(rid, { id: "ICANHAZ_OK" });
    await r.send(rid, { id: "ICANHAZ_OK" });
    await waitFor(() => h.subscribed.length === 2, "two subscribed events", SOON, 5);
    expect(h.subscribed).toEqual(["/a", "/b"]);
    const [, nom] = await r.next("NOM", { from: rid });
    expect(nom.credit).toBe(BigInt(16 * MiB));
    // The window is full: the second ICANHAZ-OK grants nothing more.
    await quietFor(200);
    expect(r.pending("NOM")).toEqual([]);
    expect(r.granted(rid)).toBe(16 * MiB);
    // Everything came from the one socket.
    expect(r.log.every((e) => e.rid.equals(rid))).toBe(true);
    expect(h.errors).toEqual([]);
  });

  it("client - grants more credit in slice multiples as chunks are consumed, never more than the window outstanding", async () => {
    const r = await router();
    const root = await tempDir();
    const window = 4096;
    const slice = 1024;
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 10_000, window, slice });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);
    expect(r.granted(rid)).toBe(window);

    const data = randomBytes(20_000);
    let most = 0;
    // Sampled before every chunk: all NOMs so far in, nothing of this chunk spent yet, i.e. the peak.
    await r.sendFile(rid, "/big.bin", data, { chunkSize: 700, onChunk: () => (most = Math.max(most, r.outstanding(rid))) });
    await nextDelivery(h, "/big.bin");
    // After the last chunk the window is topped up again, to within one slice.
    await waitFor(() => r.outstanding(rid) > window - slice, "the window topped up", SOON, 5);
    most = Math.max(most, r.outstanding(rid));

    expect(most).toBeLessThanOrEqual(window);
    const noms = r.log.filter((e) => e.message?.id === "NOM").map((e) => Number((e.message as MessageOf<"NOM">).credit));
    expect(noms.length).toBeGreaterThan(5);
    for (const credit of noms) {
      expect(credit).toBeGreaterThan(0);
      expect(credit % slice).toBe(0);
    }
    expect(r.granted(rid)).toBeGreaterThanOrEqual(data.length);
    expect(r.outstanding(rid)).toBeLessThanOrEqual(window);
    expect(await sha256File(path.join(root, "inbox", "big.bin"))).toBe(sha256(data));
  });

  it("client - a chunked file lands byte-identical, relative to its subscription, never partial at the final path", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const other = path.join(root, "other-inbox");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/sub");
    await h.client.subscribe("/b", other);
    const rid = await openSession(r, h, 2);

    // Several data chunks, no end yet.
    const data = randomBytes(5000);
    const finalPath = path.join(inbox, "x", "deep", "y.bin");
    const partialPath = path.join(inbox, "x", "deep", ".y.bin.fmq-part");
    await r.sendFile(rid, "/sub/x/deep/y.bin", data, { chunkSize: 1200, ending: "none" });
    await waitFor(async () => (await stat(partialPath).catch(() => undefined))?.size === data.length, "all data in the partial file", SOON, 5);
    expect(await exists(finalPath)).toBe(false);
    expect(h.delivered).toEqual([]);

    // The end-of-file chunk: renamed into place.
    await r.chunk(rid, { filename: "/sub/x/deep/y.bin", offset: data.length, eof: 1 });
    const done = await nextDelivery(h, "/sub/x/deep/y.bin");
    expect(done).toEqual({ path: "x/deep/y.bin", vpath: "/sub/x/deep/y.bin", file: expect.any(String), size: data.length });
    expect(await sha256File(finalPath)).toBe(sha256(data));
    expect(done.file).toBe(await realpath(finalPath));
    expect(await exists(partialPath)).toBe(false);

    // "/sub/x/y.txt" at inbox/x/y.txt; the other subscription's file in its own inbox.
    await r.sendFile(rid, "/sub/x/y.txt", Buffer.from("why\n"));
    await r.sendFile(rid, "/b/z.txt", Buffer.from("zed\n"));
    await nextDelivery(h, "/sub/x/y.txt");
    await nextDelivery(h, "/b/z.txt");
    expect(await readFile(path.join(inbox, "x", "y.txt"), "utf8")).toBe("why\n");
    expect(await readFile(path.join(other, "z.txt"), "utf8")).toBe("zed\n");
    expect(await snapshot(root)).toEqual({
      inbox: "dir",
      "inbox/x": "dir",
      "inbox/x/deep": "dir",
      "inbox/x/deep/y.bin": `file ${sha256(data)}`,
      "inbox/x/y.txt": `file ${sha256(Buffer.from("why\n"))}`,
      "other-inbox": "dir",
      "other-inbox/z.txt": `file ${sha256(Buffer.from("zed\n"))}`,
    });
    expect(h.errors).toEqual([]);
  });

  it("client - a shorter new version fully replaces the old one", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    await r.sendFile(rid, "/hello.txt", Buffer.from("hello world\n"), { chunkSize: 5 });
    await waitFor(() => h.delivered.length === 1, "first version", SOON, 5);
    expect(await readFile(path.join(inbox, "hello.txt"), "utf8")).toBe("hello world\n");

    await r.sendFile(rid, "/hello.txt", Buffer.from("bye\n"));
    await waitFor(() => h.delivered.length === 2, "second version", SOON, 5);
    expect(h.delivered[1]!.size).toBe(4);
    expect(await readFile(path.join(inbox, "hello.txt"))).toEqual(Buffer.from("bye\n"));
    expect(await readdir(inbox)).toEqual(["hello.txt"]);
    expect(h.errors).toEqual([]);
  });

  it("client - finishes a file on the reference's empty chunk with eof=0, on eof=1 on the last data chunk, and an empty file", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    const one = randomBytes(2500);
    const two = randomBytes(2500);
    await r.sendFile(rid, "/empty-eof0.bin", one, { ending: "empty eof=0" });
    await r.sendFile(rid, "/last-eof1.bin", two, { ending: "eof=1 on last data chunk" });
    await r.sendFile(rid, "/empty.txt", new Uint8Array(0), { ending: "empty eof=1" });
    await nextDelivery(h, "/empty-eof0.bin");
    await nextDelivery(h, "/last-eof1.bin");
    await nextDelivery(h, "/empty.txt");
    expect(await sha256File(path.join(inbox, "empty-eof0.bin"))).toBe(sha256(one));
    expect(await sha256File(path.join(inbox, "last-eof1.bin"))).toBe(sha256(two));
    expect((await stat(path.join(inbox, "empty.txt"))).size).toBe(0);
    expect(h.delivered.map((d) => d.size)).toEqual([2500, 2500, 0]);
    expect((await readdir(inbox)).sort()).toEqual(["empty-eof0.bin", "empty.txt", "last-eof1.bin"]);
    expect(h.errors).toEqual([]);
  });

  it("client - a delete removes the file and emits deleted; a directory or symlink of that name survives", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const outside = path.join(root, "outside.txt");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/sub");
    const rid = await openSession(r, h, 1);

    await r.sendFile(rid, "/sub/d/gone.txt", Buffer.from("twelve bytes"));
    await nextDelivery(h, "/sub/d/gone.txt");
    // Delete with the stale offset and chunk the reference leaves in its message (to be ignored).
    await r.chunk(rid, { filename: "/sub/d/gone.txt", operation: Operation.DELETE, offset: 12, data: Buffer.from("stale") });
    await waitFor(() => h.deleted.length === 1, "deleted", SOON, 5);
    expect(h.deleted[0]).toEqual({ path: "d/gone.txt", vpath: "/sub/d/gone.txt" });
    expect(await exists(path.join(inbox, "d", "gone.txt"))).toBe(false);

    await mkdir(path.join(inbox, "adir", "inner"), { recursive: true });
    await writeFile(path.join(inbox, "adir", "inner", "keep.txt"), "keep");
    await writeFile(outside, "outside");
    await symlink(outside, path.join(inbox, "alink"));
    await symlink(path.join(root), path.join(inbox, "dirlink"));
    const before = await snapshot(root);

    let n = h.errors.length;
    await r.chunk(rid, { filename: "/sub/adir", operation: Operation.DELETE });
    await errorsAfter(h, n);
    n = h.errors.length;
    await r.chunk(rid, { filename: "/sub/alink", operation: Operation.DELETE });
    await errorsAfter(h, n);
    n = h.errors.length;
    await r.chunk(rid, { filename: "/sub/dirlink", operation: Operation.DELETE });
    await errorsAfter(h, n);
    // A delete for a file that is not there is quietly nothing.
    await r.chunk(rid, { filename: "/sub/never.txt", operation: Operation.DELETE });
    // A file through the symlinked directory is not deleted either.
    await r.chunk(rid, { filename: "/sub/dirlink/outside.txt", operation: Operation.DELETE });
    await r.sendFile(rid, "/sub/marker.txt", Buffer.from("m"));
    await nextDelivery(h, "/sub/marker.txt");

    expect(h.deleted).toHaveLength(1);
    // Deletes cost no credit, stale chunk or not: client and router still agree.
    await waitFor(() => r.outstanding(rid) > 15 * MiB, "the window topped up", SOON, 5);
    expect(r.outstanding(rid)).toBeLessThanOrEqual(16 * MiB);
    const after = await snapshot(root);
    delete after["inbox/marker.txt"];
    expect(after).toEqual(before);
    expect(await readFile(outside, "utf8")).toBe("outside");
  });

  for (const sub of ["/", "/sub"] as const) {
    it(`client - hostile names are refused, nothing is written outside the inbox, credit still flows (subscribed to "${sub}")`, async () => {
      const r = await router();
      const root = await tempDir();
      const inbox = path.join(root, "inbox");
      const sibling = path.join(root, "sibling");
      await mkdir(inbox);
      await mkdir(sibling);
      await writeFile(path.join(sibling, "precious.txt"), "precious");
      await symlink(sibling, path.join(inbox, "link"));
      const window = 4096;
      const slice = 1024;
      const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000, window, slice });
      await h.client.subscribe(sub);
      const rid = await openSession(r, h, 1);
      const before = await snapshot(root);

      const p = sub === "/" ? "" : sub;
      const hostile = [
        `${p}/../escape.txt`,
        `${p}/a/../../escape.txt`,
        `${p}/a/../../../escape.txt`,
        `${p}//etc/x`,
        `${p}/x\\..\\y`,
        `${p}/..\\escape.txt`,
        `${p}/nul\0.txt`,
        `${p}/${"s".repeat(300)}`,
        `${p}/d/${"s".repeat(300)}/f.txt`,
        `${p}/sneaky.txt.fmq-part`,
        `${p}/.sneaky.txt.fmq-part`,
        `${p}/link/pwned.txt`,
        `${p}/link/../pwned.txt`,
        `${p}/./dot.txt`,
        `${p}/trailing/`,
        // Not under the subscription at all.
        ...(sub === "/sub" ? ["/other/x", "/subway/x", "/../escape.txt", "/a/../../escape.txt", "//etc/x"] : []),
      ];
      let sent = 0;
      for (const name of hostile) {
        const n = h.errors.length;
        const data = Buffer.from(`pwned by ${JSON.stringify(name)} `.repeat(100)).subarray(0, 2500);
        await r.sendFile(rid, name, data, { chunkSize: 700 });
        sent += data.length;
        const errors = await errorsAfter(h, n);
        expect(errors.length, name).toBeGreaterThan(0);
      }

      // The client carried on: a normal file still arrives, and credit was counted for every refused chunk.
      const good = randomBytes(3000);
      await r.sendFile(rid, `${p}/ok/fine.bin`, good, { chunkSize: 700 });
      await nextDelivery(h, `${p}/ok/fine.bin`);
      expect(await sha256File(path.join(inbox, "ok", "fine.bin"))).toBe(sha256(good));
      expect(sent).toBeGreaterThan(8 * window);
      expect(r.granted(rid)).toBeGreaterThanOrEqual(sent + good.length);
      await waitFor(() => r.outstanding(rid) > window - slice, "the window topped up", SOON, 5);
      expect(r.outstanding(rid)).toBeLessThanOrEqual(window);

      expect(h.delivered.map((d) => d.vpath)).toEqual([`${p}/ok/fine.bin`]);
      const after = await snapshot(root);
      expect(Object.keys(after).filter((k) => !(k in before))).toEqual(["inbox/ok", "inbox/ok/fine.bin"]);
      for (const [k, v] of Object.entries(before)) expect(after[k], k).toBe(v);
      expect(await readdir(sibling)).toEqual(["precious.txt"]);
      expect(await exists(path.join(root, "..", "escape.txt"))).toBe(false);
      expect(h.disconnected).toEqual([]);
    });
  }

  // CLIENT BUG (see the report): Inbox caches the directories it has checked for the whole session
  // (src/client/inbox.ts, #resolve: `if (this.#checked.has(dir)) continue;`), so a directory replaced by a
  // symlink after its first use is followed: the file is written outside the inbox.
  it("client - a symlink swapped in for an inbox directory already used this session is not followed", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const sibling = path.join(root, "sibling");
    await mkdir(sibling);
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    await r.sendFile(rid, "/dir/first.txt", Buffer.from("first"));
    await nextDelivery(h, "/dir/first.txt");
    // Someone with access to the inbox replaces the directory by a symlink to a directory outside.
    await rename(path.join(inbox, "dir"), path.join(inbox, "old-dir"));
    await symlink(sibling, path.join(inbox, "dir"));

    const n = h.errors.length;
    await r.sendFile(rid, "/dir/pwned.txt", Buffer.from("pwned"));
    await r.sendFile(rid, "/marker.txt", Buffer.from("m"));
    await nextDelivery(h, "/marker.txt");
    expect(await readdir(sibling)).toEqual([]);
    expect(h.errors.length).toBeGreaterThan(n);
  });

  it("client - a symlink at the final name is replaced, never written through; a symlink at the partial name is refused", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const sibling = path.join(root, "sibling");
    await mkdir(inbox);
    await mkdir(sibling);
    await writeFile(path.join(sibling, "precious.txt"), "precious");
    await writeFile(path.join(sibling, "other.txt"), "other");
    await symlink(path.join(sibling, "precious.txt"), path.join(inbox, "target.txt"));
    await symlink(path.join(sibling, "other.txt"), path.join(inbox, ".trap.txt.fmq-part"));
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    await r.sendFile(rid, "/target.txt", Buffer.from("new content"));
    await nextDelivery(h, "/target.txt");
    expect((await lstat(path.join(inbox, "target.txt"))).isFile()).toBe(true);
    expect(await readFile(path.join(inbox, "target.txt"), "utf8")).toBe("new content");

    const n = h.errors.length;
    await r.sendFile(rid, "/trap.txt", Buffer.from("through the partial"));
    await errorsAfter(h, n);
    await r.sendFile(rid, "/marker.txt", Buffer.from("m"));
    await nextDelivery(h, "/marker.txt");
    expect(h.delivered.map((d) => d.vpath)).toEqual(["/target.txt", "/marker.txt"]);
    expect(await exists(path.join(inbox, "trap.txt"))).toBe(false);
    expect(await readFile(path.join(sibling, "precious.txt"), "utf8")).toBe("precious");
    expect(await readFile(path.join(sibling, "other.txt"), "utf8")).toBe("other");
    expect((await readdir(sibling)).sort()).toEqual(["other.txt", "precious.txt"]);
  });

  it("client - the most specific subscription wins, with its own inbox", async () => {
    const r = await router();
    const root = await tempDir();
    const outer = path.join(root, "outer");
    const inner = path.join(root, "inner");
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/sub", outer);
    await h.client.subscribe("/sub/deep", inner);
    const rid = await openSession(r, h, 2);

    await r.sendFile(rid, "/sub/deep/f.txt", Buffer.from("inner"));
    await r.sendFile(rid, "/sub/deeper/f.txt", Buffer.from("outer"));
    await nextDelivery(h, "/sub/deep/f.txt");
    await nextDelivery(h, "/sub/deeper/f.txt");
    expect(await readFile(path.join(inner, "f.txt"), "utf8")).toBe("inner");
    expect(await readFile(path.join(outer, "deeper", "f.txt"), "utf8")).toBe("outer");
    expect(await readdir(outer)).toEqual(["deeper"]);
    expect(h.errors).toEqual([]);
  });

  it("client - a chunk at an unexpected offset abandons the file: no final file, no partial left", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    const n = h.errors.length;
    await r.chunk(rid, { filename: "/gap.bin", offset: 0, data: randomBytes(1000) });
    await r.chunk(rid, { filename: "/gap.bin", offset: 2000, data: randomBytes(1000) });
    await r.chunk(rid, { filename: "/gap.bin", offset: 3000, eof: 1 });
    await errorsAfter(h, n);
    await r.sendFile(rid, "/marker.txt", Buffer.from("m"));
    await nextDelivery(h, "/marker.txt");
    expect(h.delivered.map((d) => d.vpath)).toEqual(["/marker.txt"]);
    expect(await readdir(inbox)).toEqual(["marker.txt"]);
  });

  it("client - a name that collides with a directory in the inbox is refused, the directory survives", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    await mkdir(path.join(inbox, "taken", "sub"), { recursive: true });
    await writeFile(path.join(inbox, "taken", "sub", "keep.txt"), "keep");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);
    const before = await snapshot(root);

    const n = h.errors.length;
    await r.sendFile(rid, "/taken", Buffer.from("a file where a directory is"), { chunkSize: 10 });
    const errors = await errorsAfter(h, n);
    expect(errors[0]!.message).toMatch(/taken/);
    // A file under a path whose directory part is an existing file is refused too.
    await writeFile(path.join(inbox, "plain"), "plain");
    const before2 = await snapshot(root);
    const m = h.errors.length;
    await r.sendFile(rid, "/plain/inner.txt", Buffer.from("x"));
    await errorsAfter(h, m);
    await r.sendFile(rid, "/marker.txt", Buffer.from("m"));
    await nextDelivery(h, "/marker.txt");

    expect(h.delivered.map((d) => d.vpath)).toEqual(["/marker.txt"]);
    const after = await snapshot(root);
    delete after["inbox/marker.txt"];
    expect(after).toEqual(before2);
    expect(before2).toEqual({ ...before, "inbox/plain": `file ${sha256(Buffer.from("plain"))}` });
  });

  it("client - RTFM: reports disconnected, reconnects on a NEW socket, OHAI again, then replays every ICANHAZ", async () => {
    const r = await router();
    const root = await tempDir();
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 10_000, window: 8192, slice: 1024 });
    await h.client.subscribe("/a", path.join(root, "inbox-a"));
    await h.client.subscribe("/b", path.join(root, "inbox-b"));
    const rid1 = await openSession(r, h, 2);
    expect(h.connected).toBe(1);
    // Half a file, then the server forgets us: the partial must not survive nor be finished later.
    await r.sendFile(rid1, "/a/half.bin", randomBytes(3000), { ending: "none" });
    await waitFor(() => exists(path.join(root, "inbox-a", ".half.bin.fmq-part")), "the partial file", SOON, 5);

    await r.send(rid1, { id: "RTFM", reason: "who are you" });
    await waitFor(() => h.disconnected.length === 1, "disconnected", SOON, 5);
    expect(h.disconnected[0]).toMatch(/RTFM/);

    const [rid2, ohai] = await r.next("OHAI");
    expect(rid2.equals(rid1)).toBe(false);
    expect(ohai).toEqual({ id: "OHAI", protocol: "FILEMQ", version: 2 });
    await quietFor(150);
    expect(r.pending("ICANHAZ")).toEqual([]);

    await r.send(rid2, { id: "OHAI_OK" });
    const [, i1] = await r.next("ICANHAZ", { from: rid2 });
    const [, i2] = await r.next("ICANHAZ", { from: rid2 });
    expect([i1.path, i2.path]).toEqual(["/a", "/b"]);
    await waitFor(() => h.connected === 2, "connected again", SOON, 5);
    await r.send(rid2, { id: "ICANHAZ_OK" });
    await r.send(rid2, { id: "ICANHAZ_OK" });
    const [, nom] = await r.next("NOM", { from: rid2 });
    // A new session starts from zero credit: the whole window again.
    expect(nom.credit).toBe(8192n);
    await waitFor(() => h.subscribed.length === 4, "subscribed again", SOON, 5);
    expect(h.subscribed).toEqual(["/a", "/b", "/a", "/b"]);
    expect(await exists(path.join(root, "inbox-a", ".half.bin.fmq-part"))).toBe(false);

    const data = randomBytes(4000);
    await r.sendFile(rid2, "/b/after.bin", data);
    await nextDelivery(h, "/b/after.bin");
    expect(await sha256File(path.join(root, "inbox-b", "after.bin"))).toBe(sha256(data));
    expect(await exists(path.join(root, "inbox-a", "half.bin"))).toBe(false);
    // Nothing more from the old socket after the new one opened.
    const firstOfRid2 = r.log.findIndex((e) => e.rid.equals(rid2));
    expect(r.log.slice(firstOfRid2).filter((e) => e.rid.equals(rid1))).toEqual([]);
  });

  it("client - heartbeat: HUGZ at about heartbeatMs of silence; after timeoutMs of silence a new socket and a new OHAI", async () => {
    const r = await router();
    const root = await tempDir();
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 600 });
    h.client.connect();
    const [rid1] = await r.next("OHAI");
    await r.send(rid1, { id: "OHAI_OK" });
    const silentSince = r.lastSentAt;
    await waitFor(() => h.connected === 1, "connected", SOON, 5);

    const [, , hugzAt] = await r.next("HUGZ", { from: rid1, timeoutMs: 1000 });
    expect(hugzAt - silentSince).toBeGreaterThanOrEqual(80);
    expect(hugzAt - silentSince).toBeLessThan(400);

    const [rid2, , ohaiAt] = await r.next("OHAI", { timeoutMs: 2000 });
    expect(rid2.equals(rid1)).toBe(false);
    expect(ohaiAt - silentSince).toBeGreaterThanOrEqual(550);
    expect(ohaiAt - silentSince).toBeLessThan(1500);
    expect(h.disconnected).toHaveLength(1);
    // HUGZ kept coming while the server was silent.
    const hugz = r.log.filter((e) => e.message?.id === "HUGZ" && e.rid.equals(rid1));
    expect(hugz.length).toBeGreaterThanOrEqual(3);
    expect(hugz.length).toBeLessThanOrEqual(8);

    await r.send(rid2, { id: "OHAI_OK" });
    await waitFor(() => h.connected === 2, "connected again", SOON, 5);
  });

  it("client - heartbeat: a server that answers HUGZ with HUGZ-OK keeps the session well past the timeout", async () => {
    const r = await router();
    const root = await tempDir();
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 400 });
    h.client.connect();
    const [rid] = await r.next("OHAI");
    await r.send(rid, { id: "OHAI_OK" });
    const until = Date.now() + 1200;
    let answered = 0;
    while (Date.now() < until) {
      const entry = await waitFor(() => r.log.find((e) => !e.consumed) ?? (Date.now() >= until ? "done" : undefined), "HUGZ", SOON, 5);
      if (entry === "done") break;
      entry.consumed = true;
      expect(entry.message?.id).toBe("HUGZ");
      expect(entry.rid.equals(rid)).toBe(true);
      await r.send(rid, { id: "HUGZ_OK" });
      answered++;
    }
    expect(answered).toBeGreaterThanOrEqual(5);
    expect(h.disconnected).toEqual([]);
    expect(r.log.filter((e) => e.message?.id === "OHAI")).toHaveLength(1);
    expect(h.errors).toEqual([]);
  });

  it("client - a server that never answers OHAI: after the timeout, a new socket and a new OHAI", async () => {
    const r = await router();
    const root = await tempDir();
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 500 });
    h.client.connect();
    const [rid1, , firstAt] = await r.next("OHAI");
    const [rid2, , secondAt] = await r.next("OHAI", { timeoutMs: 2000 });
    expect(rid2.equals(rid1)).toBe(false);
    expect(secondAt - firstAt).toBeGreaterThanOrEqual(400);
    // Only OHAI while connecting: no HUGZ to a server that has not opened a session.
    expect(r.log.filter((e) => e.rid.equals(rid1)).map((e) => e.message?.id)).toEqual(["OHAI"]);
    await r.send(rid2, { id: "OHAI_OK" });
    await waitFor(() => h.connected === 1, "connected", SOON, 5);
  });

  it("client - SRSLY to an ICANHAZ reports an error naming the path; the session stays open and a later subscription works", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/secret");
    h.client.connect();
    const [rid] = await r.next("OHAI");
    await r.send(rid, { id: "OHAI_OK" });
    const [, icanhaz] = await r.next("ICANHAZ", { from: rid });
    expect(icanhaz.path).toBe("/secret");
    await r.send(rid, { id: "SRSLY", reason: "access denied" });
    const [error] = await errorsAfter(h, 0);
    expect(error!.message).toContain("/secret");
    expect(error!.message).toContain("access denied");
    expect(h.client.state).toBe("connected");
    expect(h.subscribed).toEqual([]);

    await h.client.subscribe("/open");
    const [rid2, again] = await r.next("ICANHAZ");
    expect(rid2.equals(rid)).toBe(true);
    expect(again.path).toBe("/open");
    await r.send(rid, { id: "ICANHAZ_OK" });
    await waitFor(() => h.subscribed.length === 1, "subscribed", SOON, 5);
    expect(h.subscribed).toEqual(["/open"]);
    await r.next("NOM", { from: rid });

    await r.sendFile(rid, "/open/f.txt", Buffer.from("open"));
    await nextDelivery(h, "/open/f.txt");
    // The refused subscription is gone: its files are not accepted.
    const n = h.errors.length;
    await r.sendFile(rid, "/secret/f.txt", Buffer.from("secret"));
    await errorsAfter(h, n);
    await r.sendFile(rid, "/open/g.txt", Buffer.from("g"));
    await nextDelivery(h, "/open/g.txt");
    expect(await readdir(inbox)).toEqual(["f.txt", "g.txt"]);
    expect(h.disconnected).toEqual([]);
    expect(r.log.filter((e) => e.message?.id === "OHAI")).toHaveLength(1);
  });

  it("client - unexpected or malformed messages are reported and the client carries on; a wrong signature is silently ignored", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    const cases: [string, Buffer[], RegExp][] = [
      ["NOM from the server", [encode({ id: "NOM", credit: 1000n, sequence: 0n })], /NOM/],
      ["HUGZ from the server", [encode({ id: "HUGZ" })], /HUGZ/],
      ["OHAI from the server", [encode({ id: "OHAI", protocol: "FILEMQ", version: 2 })], /OHAI/],
      ["OHAI-OK again", [encode({ id: "OHAI_OK" })], /OHAI_OK/],
      ["truncated CHEEZBURGER", [Buffer.from([0xaa, 0xa3, 0x08, 0x00, 0x00])], /TRUNCATED/],
      ["unknown id 2 (v1 ORLY)", [Buffer.from([0xaa, 0xa3, 0x02])], /UNKNOWN_ID/],
      ["empty frame", [Buffer.alloc(0)], /EMPTY/],
      ["two frames", [encode({ id: "HUGZ_OK" }), encode({ id: "HUGZ_OK" })], /MULTI_FRAME/],
    ];
    for (const [what, frames, pattern] of cases) {
      const n = h.errors.length;
      await r.sendRaw(rid, frames);
      const errors = await errorsAfter(h, n);
      expect(errors[0]!.message, what).toMatch(pattern);
      expect(h.client.state, what).toBe("connected");
    }

    // Not FILEMQ at all: dropped without a word.
    const n = h.errors.length;
    await r.sendRaw(rid, [Buffer.from([0x12, 0x34, 0x04])]);
    await r.sendRaw(rid, [Buffer.from("GET / HTTP/1.1\r\n\r\n")]);
    await quietFor(300);
    expect(h.errors.length).toBe(n);

    const data = randomBytes(3000);
    await r.sendFile(rid, "/after.bin", data);
    await nextDelivery(h, "/after.bin");
    expect(await sha256File(path.join(inbox, "after.bin"))).toBe(sha256(data));
    expect(h.disconnected).toEqual([]);
    expect(r.log.every((e) => e.rid.equals(rid))).toBe(true);
    expect(r.log.filter((e) => e.message?.id === "OHAI")).toHaveLength(1);
    // No reply of any kind to the garbage (a client never sends RTFM).
    expect(r.log.filter((e) => e.message && !["OHAI", "ICANHAZ", "NOM", "HUGZ"].includes(e.message.id))).toEqual([]);
  });

  it("client - a partial file interrupted by another file is dropped (no final file, partial removed), the other is delivered", async () => {
    const r = await router();
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const h = makeClient({ endpoint: r.endpoint, inbox, heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    const a = randomBytes(3000);
    await r.sendFile(rid, "/A.bin", a, { ending: "none" });
    const partialA = path.join(inbox, ".A.bin.fmq-part");
    await waitFor(async () => (await stat(partialA).catch(() => undefined))?.size === a.length, "A's partial file", SOON, 5);

    const b = randomBytes(2500);
    await r.sendFile(rid, "/B.bin", b);
    await nextDelivery(h, "/B.bin");
    expect(await sha256File(path.join(inbox, "B.bin"))).toBe(sha256(b));
    expect(h.delivered.map((d) => d.vpath)).toEqual(["/B.bin"]);
    expect(await exists(path.join(inbox, "A.bin"))).toBe(false);
    expect(await exists(partialA)).toBe(false);
    expect(h.errors.some((e) => /A\.bin/.test(e.message))).toBe(true);

    // The rest of A arriving later (without its start) is refused, not stitched onto nothing.
    const n = h.errors.length;
    await r.chunk(rid, { filename: "/A.bin", offset: a.length, eof: 1 });
    await errorsAfter(h, n);
    expect(await exists(path.join(inbox, "A.bin"))).toBe(false);
    expect(await readdir(inbox)).toEqual(["B.bin"]);
  });

  it("client - close() sends KTHXBAI when connected and resolves within a second", async () => {
    const r = await router();
    const root = await tempDir();
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 10_000 });
    await h.client.subscribe("/");
    const rid = await openSession(r, h, 1);

    const started = Date.now();
    await h.client.close();
    expect(Date.now() - started).toBeLessThan(1000);
    const [from] = await r.next("KTHXBAI");
    expect(from.equals(rid)).toBe(true);
    // And then nothing more: no HUGZ, no reconnection.
    await quietFor(300);
    expect(r.log.filter((e) => !e.consumed && e.message?.id !== "NOM")).toEqual([]);
  });

  it("client - close() while still connecting (no server answer) resolves within a second and sends no KTHXBAI", async () => {
    const r = await router();
    const root = await tempDir();
    const h = makeClient({ endpoint: r.endpoint, inbox: path.join(root, "inbox"), heartbeatMs: 100, timeoutMs: 10_000 });
    h.client.connect();
    await r.next("OHAI");
    const started = Date.now();
    await h.client.close();
    expect(Date.now() - started).toBeLessThan(1000);
    await quietFor(300);
    expect(r.pending("KTHXBAI")).toEqual([]);
  });
});
