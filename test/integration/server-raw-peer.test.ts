// A real Server driven by a "scripted raw peer": a bare zeromq Dealer that sends encoded frames (or raw
// bytes) and decodes whatever comes back, so every step of the server's dialogue can be checked exactly.

import { createHash, randomBytes } from "node:crypto";
import { mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { chmod, link, mkdir, open, readFile, rename, rm, stat, utimes, writeFile } from "node:fs/promises";
import path from "node:path";
import { setFlagsFromString } from "node:v8";
import { runInNewContext } from "node:vm";
import { afterEach, describe, expect, it, vi } from "vitest";
import { Dealer, Router } from "zeromq";

import { BlockHasher, fingerprintFile, treeHashOfBlocks, xxh } from "../../src/digest/blocks.js";
import { LONG_NAME_KEY, formatCacheEntry } from "../../src/protocol/extensions.js";
import { ReceiveWindow } from "../../src/flow/credit.js";
import { decodeBatch, decodeFrames, encode } from "../../src/protocol/codec.js";
import type { DecodeError } from "../../src/protocol/errors.js";
import { MAX_DICTIONARY_ENTRIES, Operation, type Cheezburger, type Message, type MessageName } from "../../src/protocol/messages.js";
import type { PublishedFile } from "../../src/mount/mount.js";
import { Fingerprints, versionOf } from "../../src/server/fingerprints.js";
import { Server, type ServerOptions } from "../../src/server/server.js";
import { openHere, sha256File, writeRandomFile, writeTree } from "../helpers/files.js";
import { Arrivals } from "../helpers/arrivals.js";
import { tcpEndpoint } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { nextEvent, waitFor } from "../helpers/wait.js";

const DEADLINE = 10_000;

type MessageOf<N extends MessageName> = Extract<Message, { id: N }>;

const sha256 = (data: Uint8Array): string => createHash("sha256").update(data).digest("hex");

/** The tree hash our server says of these bytes (X-FMQ-XXH64T; X-FMQ-Prefix of a file's first blocks). */
async function treeHash(data: Uint8Array): Promise<string> {
  const hasher = new BlockHasher(await xxh());
  hasher.update(data);
  return hasher.finish().hash;
}

setFlagsFromString("--expose-gc");
/** The collector, run on demand (for heap measurements). */
const gc = runInNewContext("gc") as () => void;

function describeMessage(m: Message): string {
  if (m.id === "CHEEZBURGER") {
    return `CHEEZBURGER(seq ${m.sequence}, op ${m.operation}, ${m.filename} @${m.offset}, ${m.chunk.length} bytes, eof ${m.eof})`;
  }
  if (m.id === "RTFM" || m.id === "SRSLY") return `${m.id}(${m.reason})`;
  return m.id;
}

/** A bare DEALER speaking FILEMQ frame by frame. A background loop decodes everything that arrives. */
class RawPeer {
  readonly socket: Dealer;
  /** Received and not yet consumed by next()/expect(). */
  readonly #arrivals = new Arrivals<Message>();
  /** Every CHEEZBURGER received, in order (chunks copied). */
  readonly cheezburgers: Cheezburger[] = [];
  /** Replies that did not decode (the server must never send any). */
  readonly undecodable: DecodeError[] = [];
  /** Frames in each ZeroMQ message received (more than 1 only in a batch, capability "batch"). */
  readonly framesPerMessage: number[] = [];
  /** NOM credit sent in this session, and payload bytes received in it. */
  granted = 0;
  received = 0;
  readonly #loop: Promise<void>;

  constructor(readonly endpoint: string) {
    this.socket = new Dealer({ linger: 0 });
    this.socket.connect(endpoint);
    this.#loop = this.#read();
  }

  async #read(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        this.framesPerMessage.push(frames.length);
        // One frame per message, except a batch of CHEEZBURGERs to a peer that said "batch".
        const result = decodeBatch(frames);
        if (!result.ok) {
          this.undecodable.push(result.error);
          continue;
        }
        for (let message of result.messages) {
          if (message.id === "CHEEZBURGER") {
            message = { ...message, chunk: Uint8Array.from(message.chunk) };
            this.cheezburgers.push(message);
            this.received += message.chunk.length;
          }
          this.#arrivals.push(message);
        }
      }
    } catch {
      // closed
    }
  }

  async send(message: Message): Promise<void> {
    if (message.id === "OHAI") {
      this.granted = 0;
      this.received = 0;
    }
    if (message.id === "NOM") this.granted += Number(message.credit);
    await this.socket.send(encode(message));
  }

  async sendRaw(frames: Buffer | Buffer[]): Promise<void> {
    await this.socket.send(frames);
  }

  ohai(): Promise<void> {
    return this.send({ id: "OHAI", protocol: "FILEMQ", version: 2 });
  }

  icanhaz(path: string): Promise<void> {
    return this.send({ id: "ICANHAZ", path, options: new Map(), cache: new Map() });
  }

  nom(credit: number | bigint): Promise<void> {
    return this.send({ id: "NOM", credit: BigInt(credit), sequence: 0n });
  }

  /** The next message, or undefined if none arrives within `timeoutMs`. */
  next(timeoutMs = DEADLINE): Promise<Message | undefined> {
    return this.#arrivals.next(timeoutMs);
  }

  /** The next message, which must be `id`. */
  async expect<N extends MessageName>(id: N, timeoutMs = DEADLINE): Promise<MessageOf<N>> {
    const message = await this.next(timeoutMs);
    if (message === undefined) throw new Error(`expected ${id}, nothing arrived within ${timeoutMs} ms`);
    if (message.id !== id) throw new Error(`expected ${id}, got ${describeMessage(message)}`);
    return message as MessageOf<N>;
  }

  /** Bounded "nothing more arrives" check: no message may come within `ms`. */
  async expectSilence(ms: number): Promise<void> {
    const message = await this.next(ms);
    if (message !== undefined) throw new Error(`expected nothing, got ${describeMessage(message)}`);
  }

  /** Handshake: OHAI -> OHAI-OK. */
  async open(): Promise<void> {
    await this.ohai();
    await this.expect("OHAI_OK");
  }

  async close(): Promise<void> {
    this.socket.close();
    this.#arrivals.interrupt();
    await this.#loop;
  }
}

/** Reassembles files from CHEEZBURGERs, checking everything the protocol promises along the way. */
class Assembly {
  /** vpath -> sha256 of the completed file. */
  readonly completed = new Map<string, string>();
  readonly deleted: string[] = [];
  readonly #parts = new Map<string, Buffer[]>();
  readonly #offsets = new Map<string, number>();
  #sequence = 0n;

  constructor(private readonly peer: RawPeer) {}

  /** Take one CHEEZBURGER; returns the vpath of a file it completed (or deleted), if any. */
  take(m: Cheezburger): string | undefined {
    expect(m.sequence, `sequence of ${describeMessage(m)}`).toBe(this.#sequence);
    this.#sequence++;
    // The server never sends more payload than the client granted.
    expect(this.peer.received, "payload received vs credit granted").toBeLessThanOrEqual(this.peer.granted);
    if (m.operation === Operation.DELETE) {
      this.deleted.push(m.filename);
      return m.filename;
    }
    expect(m.operation).toBe(Operation.CREATE);
    // A file is sent once: no chunk of a completed file comes again.
    expect(this.completed.has(m.filename), `${m.filename} sent again`).toBe(false);
    const at = this.#offsets.get(m.filename) ?? 0;
    // Chunks at strictly increasing, contiguous offsets (nothing repeated, nothing skipped).
    expect(m.offset, `offset of ${describeMessage(m)}`).toBe(BigInt(at));
    if (m.eof === 1) {
      // The file ends with one empty chunk with eof=1 at offset = size.
      expect(m.chunk.length).toBe(0);
      const data = Buffer.concat(this.#parts.get(m.filename) ?? []);
      this.#parts.delete(m.filename);
      this.#offsets.delete(m.filename);
      this.completed.set(m.filename, sha256(data));
      return m.filename;
    }
    expect(m.eof).toBe(0);
    expect(m.chunk.length, `data chunk of ${m.filename}`).toBeGreaterThan(0);
    const parts = this.#parts.get(m.filename) ?? [];
    parts.push(Buffer.from(m.chunk));
    this.#parts.set(m.filename, parts);
    this.#offsets.set(m.filename, at + m.chunk.length);
    return undefined;
  }

  /** Receive until `count` files are complete; `onChunk` may grant more credit. */
  async receiveFiles(count: number, onChunk: (m: Cheezburger) => Promise<void> | void = () => {}): Promise<void> {
    while (this.completed.size < count) {
      const m = await this.peer.expect("CHEEZBURGER");
      this.take(m);
      await onChunk(m);
    }
  }
}

// ---------------------------------------------------------------------------------------------

const servers: Server[] = [];
const peers: RawPeer[] = [];
/** Bare sockets of tests that must not read. */
const sockets: Dealer[] = [];
/** Spies a test leaves in place until it ends, whatever way it ends. */
const spies: { mockRestore(): void }[] = [];

afterEach(async () => {
  for (const spy of spies.splice(0)) spy.mockRestore();
  for (const peer of peers.splice(0)) await peer.close();
  for (const socket of sockets.splice(0)) socket.close();
  for (const server of servers.splice(0)) await server.close();
});

interface Setup {
  server: Server;
  endpoint: string;
  dir: string;
  warnings: string[];
}

interface Content {
  alias?: string;
  /** Written before publish(). */
  files?: Record<string, string | Buffer>;
  /** Also run before publish(). */
  prepare?: (dir: string) => Promise<void>;
}

async function startServer(options: ServerOptions = {}, publish: Content = {}): Promise<Setup> {
  const dir = await tempDir("fmq-raw-");
  if (publish.files) await writeTree(dir, publish.files);
  await publish.prepare?.(dir);
  const server = new Server({ stableMs: 50, ...options });
  servers.push(server);
  const warnings: string[] = [];
  server.on("warning", (w) => warnings.push(w));
  await server.publish(dir, publish.alias ?? "/");
  const endpoint = await server.bind(await tcpEndpoint());
  return { server, endpoint, dir, warnings };
}

function peer(endpoint: string): RawPeer {
  const p = new RawPeer(endpoint);
  peers.push(p);
  return p;
}

/** Every RFC 35 SHA-1 the server asks for held back until `release()`, then given as unknown; `restore()` puts the real one back. */
function holdSha1s() {
  let release!: () => void;
  const held = new Promise<void>((resolve) => (release = resolve));
  const sha1 = vi.spyOn(Fingerprints.prototype, "sha1").mockImplementation(() => held.then(() => undefined));
  return { sha1, release, restore: () => (release(), sha1.mockRestore()) };
}

/** Resolves once the server's mounts hold `count` stable files. */
async function published(server: Server, count: number): Promise<void> {
  await waitFor(() => server.mounts.reduce((n, m) => n + m.files.size, 0) >= count, `${count} published files`, DEADLINE);
}

/**
 * Hands every message to `take` until `done()` (or DEADLINE passes), then any that come within 500 ms of
 * the one before: what should not have come (a file sent twice). Reading until a 500 ms gap alone would
 * stop early at a pause of the server, which runs in this process.
 */
async function readUntil(p: RawPeer, done: () => boolean, take: (m: Message) => void): Promise<void> {
  const deadline = Date.now() + DEADLINE;
  while (!done()) {
    const m = await p.next(Math.max(0, deadline - Date.now()));
    if (m === undefined) return; // (the test's checks say what is missing)
    take(m);
  }
  for (let m = await p.next(500); m !== undefined; m = await p.next(500)) take(m);
}

function hashesOf(files: Record<string, string | Buffer>, alias = ""): Map<string, string> {
  return new Map(Object.entries(files).map(([rel, content]) => [`${alias}/${rel}`, sha256(Buffer.from(content))]));
}

const sortedEntries = (m: Map<string, string>) => [...m].sort(([a], [b]) => (a < b ? -1 : 1));

// ---------------------------------------------------------------------------------------------

describe("server with a scripted raw peer", () => {
  it("server - OHAI -> OHAI-OK; HUGZ -> HUGZ-OK; KTHXBAI then NOM -> RTFM (forgotten)", async () => {
    const { server, endpoint } = await startServer();
    const p = peer(endpoint);
    const connected = nextEvent(server, "connected", () => true, DEADLINE);
    await p.ohai();
    await p.expect("OHAI_OK");
    await connected;
    expect(server.clients).toBe(1);
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");

    const disconnected = nextEvent(server, "disconnected", () => true, DEADLINE);
    await p.send({ id: "KTHXBAI" });
    await disconnected;
    expect(server.clients).toBe(0);
    // KTHXBAI itself is not answered: the next thing to come back is the RTFM for the NOM.
    await p.nom(1000);
    const rtfm = await p.expect("RTFM");
    expect(rtfm.reason).toMatch(/NOM/);
    // And a fresh OHAI on the same socket starts over.
    await p.open();
    expect(p.undecodable).toEqual([]);
  });

  it("server - NOM, HUGZ or ICANHAZ before OHAI -> RTFM, and no connected or disconnected event for such a peer", async () => {
    const { server, endpoint } = await startServer();
    const events: string[] = [];
    server.on("connected", () => events.push("connected"));
    server.on("disconnected", () => events.push("disconnected"));
    const p = peer(endpoint);
    await p.nom(1000);
    // Said as what it most often is: a client of ours from before a restart.
    expect((await p.expect("RTFM")).reason).toBe("no session (the server restarted or dropped it): unexpected NOM");
    await p.send({ id: "HUGZ" });
    expect((await p.expect("RTFM")).reason).toMatch(/HUGZ/);
    await p.icanhaz("/");
    expect((await p.expect("RTFM")).reason).toMatch(/ICANHAZ/);
    await p.send({ id: "KTHXBAI" });
    expect((await p.expect("RTFM")).reason).toMatch(/KTHXBAI/);
    // Never a session, so never reported as one that ended (the publisher printed "client ... gone" for it).
    expect(events).toEqual([]);
    // Nothing of those attempts is kept; OHAI still opens a session.
    await p.open();
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(server.clients).toBe(1);
    expect(events).toEqual(["connected"]);
  });

  it("server - OHAI-OK, CHEEZBURGER, SRSLY (and other server messages) sent by a client -> RTFM", async () => {
    const { server, endpoint } = await startServer();
    const p = peer(endpoint);
    const serverMessages: Message[] = [
      { id: "OHAI_OK" },
      {
        id: "CHEEZBURGER",
        sequence: 0n,
        operation: Operation.CREATE,
        filename: "/evil.txt",
        offset: 0n,
        eof: 0,
        headers: new Map(),
        chunk: Buffer.from("pwned"),
      },
      { id: "SRSLY", reason: "no" },
      { id: "RTFM", reason: "no" },
      { id: "ICANHAZ_OK" },
      { id: "HUGZ_OK" },
    ];
    for (const message of serverMessages) {
      // In a session: RTFM, and the session is gone (HUGZ afterwards is RTFM too).
      await p.open();
      await p.send(message);
      const rtfm = await p.expect("RTFM");
      expect(rtfm.reason, message.id).toContain(message.id);
      await waitFor(() => server.clients === 0, "session forgotten", DEADLINE);
      await p.send({ id: "HUGZ" });
      await p.expect("RTFM");
      // Before any session: RTFM as well.
      await p.send(message);
      await p.expect("RTFM");
    }
    await p.open();
  });

  it("server - malformed input: bad signature ignored, other garbage -> RTFM, server keeps serving", async () => {
    const content = randomBytes(300_000);
    const { server, endpoint, warnings } = await startServer({ chunkSize: 64 * 1024 }, { files: { "keep/file.bin": content } });
    const p = peer(endpoint);
    const ohai = encode({ id: "OHAI", protocol: "FILEMQ", version: 2 });

    // Wrong signature (AA A2) on a body that would otherwise be a valid OHAI: silently discarded.
    const badSignature = Buffer.from(ohai);
    badSignature[1] = 0xa2;
    await p.sendRaw(badSignature);
    await p.sendRaw(Buffer.from("GET / HTTP/1.1\r\n\r\n"));
    // A valid OHAI on the same socket works, and its OHAI-OK is the first thing to come back; the HUGZ-OK
    // right after it shows no second OHAI-OK (or RTFM) is pending for the discarded frames.
    await p.open();
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    // In a session too: a bad signature is dropped and the session survives.
    await p.sendRaw(badSignature);
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(server.clients).toBe(1);

    const garbage: [string, Buffer | Buffer[]][] = [
      // OHAI announcing a 6-byte protocol string but carrying 3 bytes.
      ["truncated", Buffer.concat([Buffer.from([0xaa, 0xa3, 0x01, 0x06]), Buffer.from("FIL")])],
      ["truncated NOM", Buffer.from([0xaa, 0xa3, 0x07, 0, 0, 0])],
      ["header only", Buffer.from([0xaa, 0xa3])],
      ["unknown id 2 (ORLY)", Buffer.from([0xaa, 0xa3, 0x02])],
      ["unknown id 200", Buffer.from([0xaa, 0xa3, 200, 1, 2, 3])],
      ["OHAI version 1", Buffer.concat([Buffer.from([0xaa, 0xa3, 0x01, 0x06]), Buffer.from("FILEMQ"), Buffer.from([0x00, 0x01])])],
      ["OHAI protocol FILEMX", Buffer.concat([Buffer.from([0xaa, 0xa3, 0x01, 0x06]), Buffer.from("FILEMX"), Buffer.from([0x00, 0x02])])],
      ["two-frame message", [encode({ id: "HUGZ" }), encode({ id: "HUGZ" })]],
      ["two-frame OHAI", [ohai, ohai]],
      ["empty frame", Buffer.alloc(0)],
      ["path not UTF-8", Buffer.concat([Buffer.from([0xaa, 0xa3, 0x05, 0, 0, 0, 2, 0xff, 0xfe]), Buffer.alloc(8)])],
    ];
    for (const [what, frames] of garbage) {
      // Inside a session: RTFM and the session is dropped.
      await p.open();
      await p.sendRaw(frames);
      expect((await p.expect("RTFM")).reason, what).not.toBe("");
      // Outside a session: RTFM too. Exactly one RTFM per message: the OHAI-OK comes next.
      await p.sendRaw(frames);
      await p.expect("RTFM");
      await p.open();
      await p.send({ id: "HUGZ" });
      await p.expect("HUGZ_OK");
      await p.send({ id: "KTHXBAI" });
    }
    expect(warnings.length).toBeGreaterThan(0);
    expect(p.undecodable).toEqual([]);

    // After all that, a second, well-behaved client gets the published file intact.
    await published(server, 1);
    const good = peer(endpoint);
    await good.open();
    await good.icanhaz("/");
    await good.expect("ICANHAZ_OK");
    await good.nom(1_000_000);
    const files = new Assembly(good);
    await files.receiveFiles(1);
    expect(files.completed.get("/keep/file.bin")).toBe(sha256(content));
    // And the first socket can still open a session.
    await p.open();
  });

  it("server - garbage frame after frame from a peer without a session: a few RTFM and warnings a minute, not one per frame", async () => {
    // (Found by an audit: 100,000 frames of 3 bytes made 66,026 warning lines and as many RTFM.)
    const { endpoint, warnings } = await startServer();
    const p = peer(endpoint);
    for (let i = 0; i < 2000; i++) await p.sendRaw(Buffer.from([0xaa, 0xa3, 0x02]));
    // Sixteen answers, each waited for (a stall of the server, which runs in this process, is no end),
    // then nothing more.
    for (let i = 0; i < 16; i++) await p.expect("RTFM");
    expect(await p.next(500)).toBeUndefined();
    expect(warnings.filter((w) => /ORLY|unknown|message id/i.test(w))).toHaveLength(16);
    // And it can still open a session, as can another peer.
    await p.open();
    const other = peer(endpoint);
    await other.sendRaw(Buffer.from([0xaa, 0xa3, 0x02]));
    await other.expect("RTFM");
    await other.open();
  });

  it("server - a first message refused with a reason longer than RTFM can carry (multi-byte) still gets its RTFM, cut to 255 bytes", async () => {
    const { endpoint } = await startServer();
    const p = peer(endpoint);
    // The reason quotes the protocol name: 85 × "€" is 255 bytes of it, 300 with the rest of the reason.
    await p.send({ id: "OHAI", protocol: "€".repeat(85), version: 2 });
    const rtfm = await p.expect("RTFM");
    expect(Buffer.byteLength(rtfm.reason)).toBeLessThanOrEqual(255);
    expect(rtfm.reason).toContain("€");
    expect(rtfm.reason).not.toContain("\uFFFD");
  });

  it("server - ICANHAZ with an invalid path or a path matching no mount -> SRSLY, session stays usable", async () => {
    const { endpoint } = await startServer({}, { alias: "/data" });
    const p = peer(endpoint);
    await p.open();
    // (The last: an invalid path cut for the reason in the middle of an emoji's surrogate pair; found by an
    // audit: answered RTFM, "lone UTF-16 surrogate", and the session dropped.)
    for (const bad of ["x", "/a/../b", "", "//", "/a\\b", "/other", "/dat", "/database", `//${"a".repeat(197)}😀`]) {
      await p.icanhaz(bad);
      const srsly = await p.expect("SRSLY");
      expect(srsly.reason, JSON.stringify(bad)).not.toBe("");
      await p.send({ id: "HUGZ" });
      await p.expect("HUGZ_OK");
    }
    // A path that overlaps the mount is fine: above it, at it, below it.
    for (const good of ["/", "/data", "/data/", "/data/sub/deeper"]) {
      await p.icanhaz(good);
      await p.expect("ICANHAZ_OK");
    }
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
  });

  it("server - too many subscriptions -> SRSLY; an existing one may be repeated", async () => {
    const { endpoint } = await startServer({ maxSubscriptions: 2 });
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/a");
    await p.expect("ICANHAZ_OK");
    await p.icanhaz("/b");
    await p.expect("ICANHAZ_OK");
    await p.icanhaz("/c");
    expect((await p.expect("SRSLY")).reason).toMatch(/too many/);
    await p.icanhaz("/a/");
    await p.expect("ICANHAZ_OK");
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
  });

  it("server - a full server answers a new client RTFM and serves it once there is room", async () => {
    const { server, endpoint } = await startServer({ maxClients: 1 });
    const a = peer(endpoint);
    const b = peer(endpoint);
    await a.open();
    await b.ohai();
    expect((await b.expect("RTFM")).reason).toMatch(/full/);
    expect(server.clients).toBe(1);
    const gone = nextEvent(server, "disconnected", () => true, DEADLINE);
    await a.send({ id: "KTHXBAI" });
    await gone;
    await b.open();
    await a.ohai();
    await a.expect("RTFM");
  });

  it("server - a full server answers a peer's OHAI after OHAI a few times a minute, not each one", async () => {
    const { endpoint } = await startServer({ maxClients: 1 });
    const a = peer(endpoint);
    await a.open();
    const b = peer(endpoint);
    for (let i = 0; i < 40; i++) await b.ohai();
    for (let i = 0; i < 16; i++) expect((await b.expect("RTFM")).reason).toMatch(/full/);
    await b.expectSilence(300);
  });

  it("server - late joiner: files already present (nested, empty, binary) all arrive, chunked correctly", async () => {
    const binary = randomBytes(200_000);
    binary[0] = 0;
    binary[1] = 0xff;
    const files: Record<string, string | Buffer> = {
      "top.txt": "hello, top\n",
      "a/b/c/deep.txt": "deep down\n".repeat(1000),
      "a/sibling.txt": "sibling",
      "empty.txt": "",
      "bin/blob.bin": binary,
      "bin/exact.bin": randomBytes(3 * 16 * 1024), // a multiple of the chunk size
    };
    const { server, endpoint } = await startServer({ chunkSize: 16 * 1024 }, { files });
    await published(server, Object.keys(files).length);

    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(10_000_000);
    const assembly = new Assembly(p);
    await assembly.receiveFiles(Object.keys(files).length);
    expect(sortedEntries(assembly.completed)).toEqual(sortedEntries(hashesOf(files)));

    // Every file: data chunks at increasing offsets, then one empty eof chunk at offset = size.
    for (const [rel, content] of Object.entries(files)) {
      const chunks = p.cheezburgers.filter((c) => c.filename === `/${rel}`);
      const size = Buffer.byteLength(content);
      const data = chunks.slice(0, -1);
      expect(data.every((c) => c.eof === 0 && c.chunk.length > 0 && c.chunk.length <= 16 * 1024)).toBe(true);
      expect(data.length).toBe(Math.ceil(size / (16 * 1024)));
      const last = chunks.at(-1)!;
      expect(last.eof).toBe(1);
      expect(last.chunk.length).toBe(0);
      expect(last.offset).toBe(BigInt(size));
    }
    // Sequence numbers: 0, 1, 2, ... over the whole session.
    expect(p.cheezburgers.map((c) => c.sequence)).toEqual(p.cheezburgers.map((_, i) => BigInt(i)));
  });

  it("server - credit is respected: 1000 bytes granted, 1000 bytes sent, then nothing until more credit", async () => {
    const content = randomBytes(5000);
    const { server, endpoint } = await startServer({}, { files: { "five.bin": content } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    const assembly = new Assembly(p);

    await p.nom(1000);
    let got = 0;
    while (got < 1000) {
      const m = await p.expect("CHEEZBURGER");
      assembly.take(m);
      expect(m.eof).toBe(0);
      got += m.chunk.length;
      expect(got).toBeLessThanOrEqual(1000);
    }
    expect(got).toBe(1000);
    // Credit spent: nothing more may come (bounded check).
    await p.expectSilence(300);
    // The session is alive and idle.
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");

    await p.nom(4000);
    await assembly.receiveFiles(1);
    expect(assembly.completed.get("/five.bin")).toBe(sha256(content));
    expect(p.received).toBe(5000);
    expect(p.granted).toBe(5000);
    // Data chunks [0, 1000) then [1000, 5000); the eof chunk cost nothing.
    const data = p.cheezburgers.filter((c) => c.eof === 0);
    expect(data.reduce((n, c) => n + c.chunk.length, 0)).toBe(5000);
  });

  it("server - caught up is reported once each time the client's queue drains, not at every grant of credit that finds nothing to send", async () => {
    const first = randomBytes(3000);
    const { server, endpoint, dir } = await startServer({}, { files: { "first.bin": first } });
    await published(server, 1);
    const reports: string[] = [];
    server.on("caught-up", (client) => reports.push(client));
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    const assembly = new Assembly(p);
    await p.nom(1 << 20);
    await assembly.receiveFiles(1);
    await waitFor(() => reports.length === 1, "the first caught-up", DEADLINE);
    // More credit, with nothing to send: each NOM makes the server look for data and find none.
    for (let i = 0; i < 5; i++) await p.nom(1000);
    // HUGZ after the NOMs: once HUGZ-OK is back, the server has handled every NOM before it.
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(reports).toHaveLength(1);
    // A new file: sent, and its delivery drains the queue again, which is reported again.
    const second = randomBytes(2000);
    await writeFile(path.join(dir, "second.bin"), second);
    await assembly.receiveFiles(2);
    expect(assembly.completed.get("/second.bin")).toBe(sha256(second));
    await waitFor(() => reports.length === 2, "the second caught-up", DEADLINE);
    await p.nom(1000);
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(reports).toHaveLength(2);
  });

  it("server - credit: a chunk never exceeds the credit; small grants split chunks rather than stall", async () => {
    const content = randomBytes(10_000);
    const { server, endpoint } = await startServer({ chunkSize: 4096 }, { files: { "ten.bin": content } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    const assembly = new Assembly(p);
    // Odd grants that never line up with the chunk size.
    const grants = [1, 700, 3000, 5000, 1299];
    for (const grant of grants) {
      await p.nom(grant);
      const target = p.granted;
      while (p.received < target) {
        const m = await p.expect("CHEEZBURGER");
        assembly.take(m);
        expect(m.chunk.length).toBeLessThanOrEqual(Math.min(grant, 4096));
      }
      expect(p.received).toBe(target);
    }
    // 10,000 bytes granted in all: the eof chunk follows.
    await assembly.receiveFiles(1);
    expect(assembly.completed.get("/ten.bin")).toBe(sha256(content));
  });

  it("server - NOM with credit 2^64-1 is clamped, not an error", async () => {
    const content = randomBytes(100_000);
    const { server, endpoint } = await startServer({ chunkSize: 32 * 1024 }, { files: { "f.bin": content } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(2n ** 64n - 1n);
    await p.nom(2n ** 64n - 1n);
    const assembly = new Assembly(p);
    await assembly.receiveFiles(1);
    expect(assembly.completed.get("/f.bin")).toBe(sha256(content));
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
  });

  it("server - no credit livelock: a 4096-byte and a 10,000,000-byte file, granted like the C client", async () => {
    // Both files present when the mount is published: they become stable in the same sweep.
    const { server, endpoint, dir } = await startServer(
      { chunkSize: 1_000_000 },
      {
        prepare: async (root) => {
          await writeRandomFile(path.join(root, "a-small.bin"), 4096);
          await writeRandomFile(path.join(root, "b-big.bin"), 10_000_000);
        },
      },
    );
    const expected = new Map([
      ["/a-small.bin", await sha256File(path.join(dir, "a-small.bin"))],
      ["/b-big.bin", await sha256File(path.join(dir, "b-big.bin"))],
    ]);
    await published(server, 2);

    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(5_000_000);
    let sinceNom = 0;
    const assembly = new Assembly(p);
    await assembly.receiveFiles(2, async (m) => {
      sinceNom += m.chunk.length;
      while (sinceNom >= 1_000_000) {
        sinceNom -= 1_000_000;
        await p.nom(1_000_000);
      }
    });
    expect(sortedEntries(assembly.completed)).toEqual(sortedEntries(expected));
    // No chunk repeated: offsets strictly increasing per file (Assembly also checks contiguity).
    for (const vpath of expected.keys()) {
      const offsets = p.cheezburgers.filter((c) => c.filename === vpath).map((c) => c.offset);
      for (let i = 1; i < offsets.length; i++) expect(offsets[i]! > offsets[i - 1]!).toBe(true);
    }
    expect(p.received).toBe(10_004_096);
    expect(p.cheezburgers.every((c) => c.chunk.length <= 1_000_000)).toBe(true);
  });

  it("server - 2000 small files written in one go before publish all arrive intact", async () => {
    const dir = await tempDir("fmq-raw-many-");
    const expected = new Map<string, string>();
    const names = Array.from({ length: 2000 }, (_, i) => `d${i % 10}/f${String(i).padStart(4, "0")}.bin`);
    for (let d = 0; d < 10; d++) mkdirSync(path.join(dir, `d${d}`));
    const all = randomBytes(2000 * 4096);
    names.forEach((name, i) => {
      const data = all.subarray(i * 4096, (i + 1) * 4096);
      expected.set(`/${name}`, sha256(data));
      writeFileSync(path.join(dir, name), data);
    });
    const server = new Server({ stableMs: 50 });
    servers.push(server);
    await server.publish(dir);
    const endpoint = await server.bind(await tcpEndpoint());

    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    const window = new ReceiveWindow(16 * 1024 * 1024, 1024 * 1024);
    await p.nom(window.refill());
    const assembly = new Assembly(p);
    await assembly.receiveFiles(2000, async (m) => {
      window.received(m.chunk.length);
      const more = window.refill();
      if (more > 0) await p.nom(more);
    });
    expect(assembly.completed.size).toBe(2000);
    expect(sortedEntries(assembly.completed)).toEqual(sortedEntries(expected));
    expect(p.received).toBe(2000 * 4096);
  });

  it("server - subscription boundaries: ICANHAZ /sub gets /sub/a.txt, never /subway/b.txt", async () => {
    const files = { "sub/a.txt": "in sub", "subway/b.txt": "in subway", "sub.txt": "beside sub" };
    const { server, endpoint } = await startServer({}, { files });
    await published(server, 3);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/sub");
    await p.expect("ICANHAZ_OK");
    await p.nom(1_000_000);
    const assembly = new Assembly(p);
    await assembly.receiveFiles(1);
    expect([...assembly.completed.keys()]).toEqual(["/sub/a.txt"]);
    expect(assembly.completed.get("/sub/a.txt")).toBe(sha256(Buffer.from("in sub")));
    // Credit is plenty and the client is served to completion before its HUGZ is handled: had
    // /subway/b.txt or /sub.txt been queued, their chunks would come before this HUGZ-OK.
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");

    // The barrier above is meaningful: subscribing to /subway does bring its file.
    await p.icanhaz("/subway");
    await p.expect("ICANHAZ_OK");
    await assembly.receiveFiles(2);
    expect(assembly.completed.has("/subway/b.txt")).toBe(true);
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(p.cheezburgers.some((c) => c.filename === "/sub.txt")).toBe(false);
  });

  it("server - subscription under an alias: only matching files, full virtual names", async () => {
    const files = { "x/one.txt": "one", "y/two.txt": "two" };
    const { server, endpoint } = await startServer({}, { alias: "/data", files });
    await published(server, 2);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/data/x/");
    await p.expect("ICANHAZ_OK");
    await p.nom(1000);
    const assembly = new Assembly(p);
    await assembly.receiveFiles(1);
    expect([...assembly.completed.keys()]).toEqual(["/data/x/one.txt"]);
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
  });

  it("server - subscription boundaries for files published later: /sub and /a/b get what is under them (at any depth), never /subway, /sub.txt or /a/bc", async () => {
    const { server, endpoint, dir } = await startServer();
    const p = peer(endpoint);
    await p.open();
    for (const path of ["/sub", "/a/b"]) {
      await p.icanhaz(path);
      await p.expect("ICANHAZ_OK");
    }
    await p.nom(1_000_000);
    await writeTree(dir, { "sub/d/e/deep.txt": "deep", "a/b/x.txt": "x", "subway/no.txt": "no", "sub.txt": "no", "a/bc/no.txt": "no", "a/no.txt": "no" });
    await published(server, 6);
    const assembly = new Assembly(p);
    await assembly.receiveFiles(2);
    expect([...assembly.completed.keys()].sort()).toEqual(["/a/b/x.txt", "/sub/d/e/deep.txt"]);
    // Served to completion before its HUGZ is handled: anything else queued would come first.
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(p.cheezburgers.map((c) => c.filename).filter((name) => name.includes("no"))).toEqual([]);
  });

  it("server - a file written after ICANHAZ arrives; deleting it sends a CHEEZBURGER with operation 2", async () => {
    const { server, endpoint, dir } = await startServer();
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(1_000_000);
    // Nothing published yet: nothing comes before the HUGZ-OK.
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");

    const content = randomBytes(70_000);
    await mkdir(path.join(dir, "new"), { recursive: true });
    await writeFile(path.join(dir, "new/late.bin"), content);
    const assembly = new Assembly(p);
    await assembly.receiveFiles(1);
    expect(assembly.completed.get("/new/late.bin")).toBe(sha256(content));

    await rm(path.join(dir, "new/late.bin"));
    const del = await p.expect("CHEEZBURGER");
    assembly.take(del);
    expect(del.operation).toBe(Operation.DELETE);
    expect(del.filename).toBe("/new/late.bin");
    expect(del.chunk.length).toBe(0);
    // A delete costs no credit.
    expect(p.received).toBe(70_000);
    expect(server.mounts[0]!.files.size).toBe(0);
  });

  it("server - OHAI again mid-session starts a fresh session: subscriptions, credit and sequence reset", async () => {
    const first = "first file";
    const { server, endpoint, dir } = await startServer({}, { files: { "first.txt": first } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(10_000_000); // far more than needed: plenty is left over
    const before = new Assembly(p);
    await before.receiveFiles(1);
    expect(p.cheezburgers.map((c) => c.sequence)).toEqual([0n, 1n]);

    // OHAI again: a fresh session on the same socket.
    await p.ohai();
    await p.expect("OHAI_OK");
    p.cheezburgers.length = 0;
    expect(server.clients).toBe(1);

    // Subscriptions were dropped: with credit granted again, a new file is still not sent.
    await p.nom(1_000_000);
    const second = randomBytes(5000);
    const publishedSecond = nextEvent<[PublishedFile]>(server, "published", (file) => file.vpath === "/second.bin", DEADLINE);
    await writeFile(path.join(dir, "second.bin"), second);
    await publishedSecond;
    // Had the file been queued for us, its chunks would come before this HUGZ-OK (run to completion).
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(p.cheezburgers).toEqual([]);

    // OHAI once more: the credit left from the NOM above is gone too. Subscribing again queues both
    // files, but no data chunk may go before a new NOM.
    await p.ohai();
    await p.expect("OHAI_OK");
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(p.cheezburgers).toEqual([]);

    await p.nom(1_000_000);
    const after = new Assembly(p); // checks that sequence numbers start again from 0
    await after.receiveFiles(2);
    expect(sortedEntries(after.completed)).toEqual(
      sortedEntries(new Map([["/first.txt", sha256(Buffer.from(first))], ["/second.bin", sha256(second)]])),
    );
  });

  it("server - OHAI again mid-transfer drops the file in progress and the queue", async () => {
    const files = { "a.bin": randomBytes(5000), "b.bin": randomBytes(3000) };
    const { server, endpoint } = await startServer({}, { files });
    await published(server, 2);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(1000);
    // 1000 bytes of the first file go out; the rest of it and the other file wait for credit.
    const partial = new Assembly(p);
    while (p.received < 1000) partial.take(await p.expect("CHEEZBURGER"));
    expect(p.received).toBe(1000);
    const inProgress = p.cheezburgers[0]!.filename;

    await p.ohai();
    await p.expect("OHAI_OK");
    p.cheezburgers.length = 0;
    // Plenty of credit, but nothing is queued and nothing is in progress any more.
    await p.nom(1_000_000);
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(p.cheezburgers).toEqual([]);

    // Subscribing again sends both files whole, the interrupted one from offset 0, sequence from 0.
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    const again = new Assembly(p);
    await again.receiveFiles(2);
    expect(sortedEntries(again.completed)).toEqual(sortedEntries(hashesOf(files)));
    expect(p.cheezburgers.find((c) => c.filename === inProgress)!.offset).toBe(0n);
  });

  it("server - expiry: a silent client is forgotten, its next HUGZ gets RTFM", async () => {
    const { server, endpoint } = await startServer({ expiryMs: 300 });
    const p = peer(endpoint);
    const started = Date.now();
    await p.open();
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    await nextEvent(server, "disconnected", () => true, DEADLINE);
    expect(Date.now() - started).toBeGreaterThanOrEqual(300);
    expect(server.clients).toBe(0);
    await p.send({ id: "HUGZ" });
    await p.expect("RTFM");
    // Forgotten, not banned: a new OHAI opens a new session.
    await p.open();
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
  });

  /**
   * A server with a sparse 256 MiB file to send (nothing on disk), and a bare socket that subscribes,
   * reads the two replies, grants `credit`, then never reads again.
   */
  async function serverWithHungClient(options: ServerOptions, credit: bigint) {
    const setup = await startServer(options, {
      prepare: async (root) => {
        const handle = await open(path.join(root, "big.bin"), "w");
        await handle.truncate(256 * 1024 * 1024);
        await handle.close();
      },
    });
    await published(setup.server, 1);
    return { ...setup, hung: await hungClient(setup.endpoint, credit) };
  }

  /** A bare socket that subscribes to "/", reads the two replies, grants `credit`, then never reads again. */
  async function hungClient(endpoint: string, credit: bigint, options: { receiveBufferSize?: number } = {}): Promise<Dealer> {
    const hung = new Dealer({ linger: 0, receiveHighWaterMark: 1, ...options });
    sockets.push(hung);
    hung.connect(endpoint);
    await hung.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
    await hung.send(encode({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() }));
    hung.receiveTimeout = DEADLINE;
    for (const id of ["OHAI_OK", "ICANHAZ_OK"] as const) {
      const result = decodeFrames(await hung.receive());
      expect(result.ok && result.message.id).toBe(id);
    }
    await hung.send(encode({ id: "NOM", credit, sequence: 0n }));
    return hung;
  }

  // "send next chunk" waits in host.below() while the client's outbox is full: the "expired" event must
  // not wait behind it (it is urgent, and a sweep later the server forgets the client from outside).
  it("server - expiry: a client that stops reading mid-transfer is forgotten too", async () => {
    // Grants a lot of credit, then neither reads nor speaks again.
    const { server } = await serverWithHungClient({ expiryMs: 300 }, 2n ** 64n - 1n);
    // Silent for 300 ms means forgotten; allow ten times that.
    await nextEvent(server, "disconnected", () => true, 3000);
    expect(server.clients).toBe(0);
  });

  it("server - a client that hangs up mid-file is forgotten at the next chunk, not once its credit or the file runs out", async () => {
    // 64 GiB, sparse: at the speed the server reads it, sending it all takes minutes, and expiry is far off.
    const { server, endpoint } = await startServer(
      { expiryMs: 600_000, hashAhead: false },
      {
        prepare: async (root) => {
          const handle = await open(path.join(root, "huge.bin"), "w");
          await handle.truncate(64 * 1024 ** 3);
          await handle.close();
        },
      },
    );
    await published(server, 1);
    const gone = new Dealer({ linger: 0 });
    sockets.push(gone);
    gone.connect(endpoint);
    await gone.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
    await gone.send(encode({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() }));
    await gone.send(encode({ id: "NOM", credit: 2n ** 60n, sequence: 0n }));
    gone.receiveTimeout = DEADLINE;
    // Read until the file is flowing, then hang up (the connection closes: the server hears of it).
    let chunks = 0;
    while (chunks < 8) {
      const result = decodeFrames(await gone.receive());
      if (result.ok && result.message.id === "CHEEZBURGER") chunks++;
    }
    const disconnected = nextEvent(server, "disconnected", () => true, 5000);
    gone.close();
    await disconnected;
    expect(server.clients).toBe(0);
  });

  it("server - a client that piles up big messages while we send it a file (max-pending-bytes) is dropped, not held in memory", async () => {
    const { server, warnings, hung } = await serverWithHungClient({ expiryMs: 60_000, maxMessageSize: 4 * 1024 * 1024, maxPendingBytes: 8 * 1024 * 1024 }, 2n ** 40n);
    // Its machine is busy sending (waiting for it to read): what it sends now waits. Caches of 2.4 MB each.
    const cache = new Map(Array.from({ length: 40 }, (_, i) => [`f${i}`, "x".repeat(60_000)] as const));
    const icanhaz = encode({ id: "ICANHAZ", path: "/", options: new Map(), cache });
    for (let i = 0; i < 5; i++) await hung.send(icanhaz);
    await waitFor(() => warnings.some((w) => /more than 8388608 bytes of messages waiting; dropped$/.test(w)), "the drop", 10_000);
    await waitFor(() => server.clients === 0, "the client forgotten", 3000);
  });

  it("server - many clients piling up messages, each under max-pending-bytes, beyond max-pending-total-bytes: the one with the most waiting is dropped (RTFM), no more than needed, and others are still served at once", async () => {
    const MiB = 1024 * 1024;
    // Three hung clients (their machines busy sending to them, so what they send waits), 7.2 MB each:
    // under the 8 MiB each may pile up, 21.6 MB in all, against 16 MiB for all clients together: one must
    // go, and once it has, the other two fit (14.4 MB).
    const { server, warnings, endpoint } = await startServer(
      { expiryMs: 60_000, peerTimeoutMs: 60_000, maxMessageSize: 4 * MiB, maxPendingBytes: 8 * MiB, maxPendingTotalBytes: 16 * MiB },
      {
        prepare: async (root) => {
          const handle = await open(path.join(root, "big.bin"), "w");
          await handle.truncate(256 * MiB);
          await handle.close();
        },
      },
    );
    await published(server, 1);
    const keys: string[] = [];
    server.on("connected", (client) => keys.push(client));
    const cache = new Map(Array.from({ length: 40 }, (_, i) => [`f${i}`, "x".repeat(60_000)] as const));
    const icanhaz = encode({ id: "ICANHAZ", path: "/", options: new Map(), cache });
    let peak = 0;
    const sampler = setInterval(() => (peak = Math.max(peak, server.pendingBytes)), 5);
    const drops = () => warnings.filter((w) => /more than max-pending-total-bytes, 16777216\); dropped$/.test(w));
    try {
      const hung = [];
      for (let i = 0; i < 3; i++) hung.push(await hungClient(endpoint, 2n ** 40n));
      for (const socket of hung) for (let i = 0; i < 3; i++) await socket.send(icanhaz);
      await waitFor(() => drops().length >= 1, "a drop", 10_000);
      await waitFor(() => server.clients === 2, "two clients left", 3000);
      expect(drops()[0]).toMatch(/^client [0-9a-f]+: \d+ bytes of messages waiting, the most of the \d+ waiting from all clients/);
      expect(keys.some((key) => drops()[0]!.startsWith(`client ${key}:`))).toBe(true);
      // Nobody is dropped by the per-client limit, and the rest stay.
      expect(warnings.filter((w) => /more than 8388608 bytes of messages waiting; dropped$/.test(w))).toEqual([]);
      // A newcomer is answered at once: the server goes on reading.
      const late = peer(endpoint);
      await late.open();
      expect(drops().length).toBe(1);
    } finally {
      clearInterval(sampler);
    }
    // What waited never went beyond the limit by more than the one message that crossed it.
    expect(peak).toBeLessThanOrEqual(16 * MiB + icanhaz.length);
    expect(server.pendingBytes).toBeLessThanOrEqual(16 * MiB);
  }, 60_000);

  it("server - a client that grants much credit and never reads makes the server put at most a default window (16 chunks of 1 MiB) into libzmq for it, plus what the kernel's buffers take", async () => {
    // What went into libzmq for the client: counted at the socket (successful sends of file data).
    let accepted = 0;
    const original = Router.prototype.send;
    const spy = vi.spyOn(Router.prototype, "send").mockImplementation(async function (this: Router, message) {
      await original.call(this, message);
      if (Array.isArray(message)) for (const frame of message.slice(1)) accepted += (frame as Buffer).length;
    });
    spies.push(spy);
    const { server, endpoint } = await startServer({ chunkSize: 1024 * 1024, expiryMs: 60_000, peerTimeoutMs: 60_000 }, {
      prepare: async (root) => {
        const handle = await open(path.join(root, "big.bin"), "w");
        await handle.truncate(256 * 1024 * 1024);
        await handle.close();
      },
    });
    await published(server, 1);
    // Its kernel receive buffer fixed at 64 KiB (not grown to tcp_rmem's maximum, 32 MiB here): what is
    // left is libzmq's pipe, the server's send buffer (at most wmem_max) and a chunk or two in flight.
    await hungClient(endpoint, 2n ** 40n, { receiveBufferSize: 64 * 1024 });
    // Until nothing more goes in for two rounds of 500 ms: the pipe is full. (One round could be a stall of
    // a loaded machine: this process's loop is the server's too.)
    let last = -1;
    let quiet = 0;
    await waitFor(async () => {
      quiet = accepted > 0 && accepted === last ? quiet + 1 : 0;
      if (quiet >= 2) return true;
      last = accepted;
      await new Promise((resolve) => setTimeout(resolve, 500));
      return false;
    }, "the client's pipe full", DEADLINE);
    const MiB = 1024 * 1024;
    // (The kernel grows a socket's send buffer up to tcp_wmem's maximum, or wmem_max if set by hand.)
    const sendBuffer = Math.max(Number(readFileSync("/proc/sys/net/core/wmem_max", "utf8")), Number(readFileSync("/proc/sys/net/ipv4/tcp_wmem", "utf8").trim().split(/\s+/)[2]));
    // Before 2026-12-04: 64 chunks in libzmq whatever their size (about 70 MiB here).
    expect(accepted).toBeGreaterThan(8 * MiB);
    expect(accepted).toBeLessThanOrEqual(16 * MiB + sendBuffer + 4 * MiB);
    expect(server.clients).toBe(1);
  }, 30_000);

  it("server - a client that never reads but keeps talking (a NOM now and then) is dropped once its pipe has stayed full for peer-timeout-ms", async () => {
    const { server, warnings, hung } = await serverWithHungClient({ expiryMs: 60_000, peerTimeoutMs: 1000 }, 2n ** 40n);
    // Keeps the session alive by talking, never reads again.
    const talking = setInterval(() => void hung.send(encode({ id: "NOM", credit: 1n, sequence: 0n })).catch(() => undefined), 100);
    try {
      await waitFor(() => warnings.some((w) => /has not read for \d+ s; dropped$/.test(w)), "the drop", 10_000);
      await waitFor(() => server.clients === 0, "the client forgotten", 3000);
    } finally {
      clearInterval(talking);
    }
  });

  /**
   * A server of a sparse 128 MiB file (chunks of 1 MiB), and a bare socket that subscribes, grants a lot of
   * credit (more than it reads at once: the server fills its pipe), then reads chunks in runs of `run`
   * and handles each run's over `pauseMs` before reading more, as a client busy with what it read does
   * (our client reads ahead of its machine), and every 100 ms sends a NOM of no credit with
   * `sequence(the last chunk handled)`. Resolves with the chunks read before the file's end, or before
   * the connection went quiet for 3 s (dropped).
   */
  async function busyReader(run: number, pauseMs: number, sequence: (last: bigint) => bigint) {
    const setup = await startServer({ expiryMs: 60_000, peerTimeoutMs: 2000 }, {
      prepare: async (root) => {
        const handle = await open(path.join(root, "big.bin"), "w");
        await handle.truncate(128 * 1024 * 1024);
        await handle.close();
      },
    });
    await published(setup.server, 1);
    const socket = await hungClient(setup.endpoint, 2n ** 40n);
    socket.receiveTimeout = 3000;
    let handled = 0n;
    const talking = setInterval(() => void socket.send(encode({ id: "NOM", credit: 0n, sequence: sequence(handled) })).catch(() => undefined), 100);
    let chunks = 0;
    const read: bigint[] = [];
    try {
      for (;;) {
        const result = decodeFrames(await socket.receive());
        if (!result.ok || result.message.id !== "CHEEZBURGER") throw new Error(`not a chunk: ${describeMessage(result.ok ? result.message : ({ id: "RTFM", reason: result.error.message } as Message))}`);
        if (result.message.eof === 1) break;
        chunks++;
        read.push(result.message.sequence);
        if (read.length < run) continue;
        for (const sequence of read.splice(0)) {
          await new Promise((resolve) => setTimeout(resolve, pauseMs / run));
          handled = sequence;
        }
      }
    } catch {
      // (Dropped: nothing more came.)
    } finally {
      clearInterval(talking);
    }
    return { ...setup, chunks };
  }

  it("server - a client whose pipe stays full for longer than peer-timeout-ms while it is busy with what it read, saying how far it has read (NOM sequence), is not dropped", async () => {
    // Its pipe full of chunks for each pause of 3 s, against a peer timeout of 2 s: dropped before (a
    // pause, on its own, was a stall as long as a frozen peer is given). Runs of 32 MiB reopen its receive
    // window each time, so the kernel's TCP_MAXRT (4 s of a shut window) does not close it either.
    const { server, warnings, chunks } = await busyReader(32, 3000, (last) => last);
    expect(warnings.filter((w) => /dropped/.test(w))).toEqual([]);
    expect(chunks).toBe(128);
    expect(server.clients).toBe(1);
  }, 45_000);

  it("server - a client whose pipe stays full, saying it read further than it was sent, or no further than before, is dropped at peer-timeout-ms all the same", async () => {
    let claimed = 2n ** 40n;
    for (const [what, sequence] of [
      // (Further each time: each would be news, were it not past what was sent.)
      ["beyond what it was sent", () => ++claimed],
      ["no further", () => 1n],
    ] as const) {
      // (One pause of 3 s, longer than the drop takes: 2 s and a sweep; the kernel's would be at 4 s.)
      const { server, warnings, chunks } = await busyReader(32, 3000, sequence);
      expect(chunks, what).toBeLessThan(128);
      expect(warnings.filter((w) => /has not read for \d+ s; dropped$/.test(w)), what).toHaveLength(1);
      expect(server.clients, what).toBe(0);
    }
  }, 45_000);

  it("server - clients that stop reading may hold only max-stalled-bytes between them: beyond it, the one stalled longest is dropped at once, the rest stay, and a reading client is served", async () => {
    // Each stalled client counts as (64 in libzmq + 16 queued + 1 + read-ahead 2) chunks of 256 KiB:
    // 20.75 MiB. A 45 MiB budget lets two sit stalled; peer-timeout-ms (60 s) drops nobody meanwhile.
    // One dropped and still connected counts as what libzmq holds for it (64 chunks, 16 MiB).
    const { server, warnings, endpoint, dir } = await startServer(
      { expiryMs: 60_000, peerTimeoutMs: 60_000, chunkSize: 256 * 1024, maxStalledBytes: 45 * 1024 * 1024 },
      {
        prepare: async (root) => {
          const handle = await open(path.join(root, "big.bin"), "w");
          await handle.truncate(32 * 1024 * 1024); // (more than a stalled client can be made to hold: 21 MiB)
          await handle.close();
        },
      },
    );
    await published(server, 1);
    const keys: string[] = [];
    server.on("connected", (client) => keys.push(client));
    const drops = () => warnings.filter((w) => /dropped$/.test(w));
    // One after the other, each stalled before the next comes, so which stalled longest is known.
    for (let i = 0; i < 2; i++) {
      await hungClient(endpoint, 2n ** 40n);
      await waitFor(() => server.stalledClients === i + 1, `client ${i + 1} stalled`, 10_000);
    }
    expect(drops()).toEqual([]);
    const dropped = (key: string | undefined, allowed: number) =>
      new RegExp(`^client ${key}: has not read for \\d+ s, and more clients have stopped reading than max-stalled-bytes allows \\(${allowed}\\); dropped$`);
    await hungClient(endpoint, 2n ** 40n);
    // The third stalled client is one too many: the oldest goes, at once (not after peer-timeout-ms).
    await waitFor(() => drops().length === 1, "drop 1", 10_000);
    expect(drops()[0]).toMatch(dropped(keys[0], 2));
    await waitFor(() => server.clients === 2, "two clients left", 3000);
    // Dropped, it is still connected (the kernel closes it at twice peer-timeout-ms), its pipe held in
    // libzmq: that counts (64 chunks, 16 MiB), and leaves room for one stalled client. A fourth stalls:
    // the two oldest go.
    expect(server.droppedStillConnected).toBe(1);
    await hungClient(endpoint, 2n ** 40n);
    await waitFor(() => drops().length === 3, "drops 2 and 3", 10_000);
    expect(drops()[1]).toMatch(dropped(keys[1], 1));
    expect(drops()[2]).toMatch(dropped(keys[2], 1));
    await waitFor(() => server.clients === 1, "one client left", 3000);
    // A client that reads is still served in full while two stalled ones are held.
    const honest = peer(endpoint);
    await honest.open();
    await honest.send({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() });
    await honest.expect("ICANHAZ_OK");
    await honest.nom(64 * 1024 * 1024);
    const hash = createHash("sha256");
    for (;;) {
      const chunk = await honest.expect("CHEEZBURGER");
      hash.update(chunk.chunk);
      if (chunk.eof) break;
    }
    expect(hash.digest("hex")).toBe(await sha256File(path.join(dir, "big.bin")));
    expect(server.clients).toBe(2);
  }, 60_000);

  it("server - clients that read nothing and count up their NOMs' sequence (as if getting on) are held to max-stalled-bytes all the same", async () => {
    // (A review: a sequence is only a counter, and a NOM saying a further one spared its client the budget.)
    const { server, warnings, endpoint } = await startServer(
      { expiryMs: 60_000, peerTimeoutMs: 60_000, chunkSize: 256 * 1024, maxStalledBytes: 45 * 1024 * 1024 },
      {
        prepare: async (root) => {
          const handle = await open(path.join(root, "big.bin"), "w");
          await handle.truncate(32 * 1024 * 1024);
          await handle.close();
        },
      },
    );
    await published(server, 1);
    const keys: string[] = [];
    server.on("connected", (client) => keys.push(client));
    const hung: Dealer[] = [];
    let claimed = 0n;
    const claiming = setInterval(() => {
      claimed++;
      for (const socket of hung) void socket.send(encode({ id: "NOM", credit: 0n, sequence: claimed })).catch(() => undefined);
    }, 100);
    try {
      for (let i = 0; i < 2; i++) {
        hung.push(await hungClient(endpoint, 2n ** 40n));
        await waitFor(() => server.stalledClients === i + 1, `client ${i + 1} stalled`, 10_000);
      }
      hung.push(await hungClient(endpoint, 2n ** 40n));
      await waitFor(() => warnings.some((w) => /dropped$/.test(w)), "a drop", 10_000);
      expect(warnings.filter((w) => /dropped$/.test(w))).toEqual([expect.stringMatching(new RegExp(`^client ${keys[0]}: has not read for \\d+ s, and more clients have stopped reading than max-stalled-bytes allows \\(2\\); dropped$`))]);
    } finally {
      clearInterval(claiming);
    }
  }, 30_000);

  // --- our extensions to a client that announces them ---------------------------------------------

  /** ICANHAZ "/" with X-FMQ-Caps. */
  async function subscribeWithCaps(p: RawPeer, caps: string): Promise<void> {
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", caps]]), cache: new Map() });
    await p.expect("ICANHAZ_OK");
  }

  /**
   * Fingerprints held back until `release()`: every lookup waits, then hashes the file. What a worker busy
   * with other files looks like to a transfer. `restore()` puts the real lookup back.
   */
  function holdFingerprints() {
    let release!: () => void;
    const held = new Promise<void>((resolve) => (release = resolve));
    const lookup = vi.spyOn(Fingerprints.prototype, "lookup").mockImplementation(function (this: Fingerprints, absolute) {
      return held.then(() => fingerprintFile(absolute));
    });
    return { lookup, release, restore: () => (release(), lookup.mockRestore()) };
  }

  /**
   * A server publishing big.bin (3 MiB), its fingerprints held (holdFingerprints: `held.restore()` is the
   * caller's), and a peer (verify, delta, single) that has received every byte of it but its end, which
   * waits for the fingerprint.
   */
  async function everyByteSentFingerprintHeld() {
    const content = randomBytes(3 * 1024 * 1024);
    const { server, endpoint, dir } = await startServer({}, { files: { "big.bin": content } });
    await published(server, 1);
    const held = holdFingerprints();
    try {
      const p = peer(endpoint);
      await p.open();
      await subscribeWithCaps(p, "verify,delta,single");
      await p.nom(64 * 1024 * 1024);
      let got = 0;
      while (got < content.length) {
        const m = await p.expect("CHEEZBURGER");
        expect(m.eof).toBe(0);
        got += m.chunk.length;
      }
      return { dir, p, held };
    } catch (error) {
      held.restore();
      throw error;
    }
  }

  /** A server publishing big.bin (`content`), and a peer subscribed to "/" with verify, delta and single. */
  async function subscribedToBigFile(content: Buffer) {
    const { server, endpoint, dir } = await startServer({}, { files: { "big.bin": content } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await subscribeWithCaps(p, "verify,delta,single");
    return { server, dir, file: path.join(dir, "big.bin"), p };
  }

  it("server - capability single: a file that fits one chunk comes as one CHEEZBURGER (data, eof=1, size, mtime, tree hash); without it, data then an empty eof chunk", async () => {
    const content = randomBytes(5000);
    const { server, endpoint, dir } = await startServer({}, { files: { "five.bin": content } });
    await published(server, 1);
    const expected = (await fingerprintFile(path.join(dir, "five.bin"))).hash;

    const single = peer(endpoint);
    await single.open();
    await subscribeWithCaps(single, "verify,delta,single");
    await single.nom(1_000_000);
    const one = await single.expect("CHEEZBURGER");
    expect(one.eof).toBe(1);
    expect(one.offset).toBe(0n);
    expect(sha256(one.chunk)).toBe(sha256(content));
    expect(one.headers.get("X-FMQ-Size")).toBe("5000");
    expect(one.headers.get("X-FMQ-XXH64T")).toBe(expected);
    expect(one.headers.has("X-FMQ-Mtime")).toBe(true);
    await single.expectSilence(200);

    const plain = peer(endpoint);
    await plain.open();
    await subscribeWithCaps(plain, "verify,delta");
    await plain.nom(1_000_000);
    const data = await plain.expect("CHEEZBURGER");
    expect([data.eof, data.chunk.length]).toEqual([0, 5000]);
    const eof = await plain.expect("CHEEZBURGER");
    expect([eof.eof, eof.chunk.length, eof.offset]).toEqual([1, 0, 5000n]);
    expect(eof.headers.get("X-FMQ-XXH64T")).toBe(expected);

    // Less credit than the file: split as usual (never held back waiting for credit for all of it).
    const short = peer(endpoint);
    await short.open();
    await subscribeWithCaps(short, "verify,delta,single");
    await short.nom(1000);
    const first = await short.expect("CHEEZBURGER");
    expect([first.eof, first.chunk.length]).toEqual([0, 1000]);
    expect(sha256(first.chunk)).toBe(sha256(content.subarray(0, 1000)));
    // A first chunk's headers, not the whole-file message's the data was read into.
    expect([first.headers.get("X-FMQ-Size"), first.headers.has("X-FMQ-XXH64T")]).toEqual(["5000", false]);
    await short.nom(1_000_000);
    const rest = await short.expect("CHEEZBURGER");
    expect([rest.eof, rest.offset, rest.chunk.length]).toEqual([0, 1000n, 4000]);
    const end = await short.expect("CHEEZBURGER");
    expect([end.eof, end.chunk.length]).toEqual([1, 0]);
    expect(end.headers.get("X-FMQ-XXH64T")).toBe(expected);
  });

  it("server - capability batch: small files in a row come several to a ZeroMQ message (each frame a whole CHEEZBURGER, sequence in order), within the credit; without it, one per message", async () => {
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 100; i++) files[`d${i % 3}/f${i}.bin`] = randomBytes(3000);
    const { server, endpoint, dir } = await startServer({}, { files });
    await published(server, 100);

    const batched = peer(endpoint);
    await batched.open();
    await subscribeWithCaps(batched, "verify,delta,single,batch");
    // Credit for exactly 30 files: the 31st must wait for more, batch or not.
    await batched.nom(30 * 3000);
    for (let i = 0; i < 30; i++) await batched.expect("CHEEZBURGER");
    await batched.expectSilence(200);
    expect(batched.cheezburgers).toHaveLength(30);
    await batched.nom(70 * 3000);
    await waitFor(() => batched.cheezburgers.length >= 100, "100 files", DEADLINE, 5);
    expect(batched.undecodable).toEqual([]);
    expect(batched.cheezburgers.map((c) => c.sequence)).toEqual(Array.from({ length: 100 }, (_, i) => BigInt(i)));
    for (const c of batched.cheezburgers) {
      expect(c.eof).toBe(1);
      const name = c.filename.slice(1);
      expect(sha256(c.chunk), name).toBe(sha256(files[name]!));
      expect(c.headers.get("X-FMQ-XXH64T"), name).toBe((await fingerprintFile(path.join(dir, name))).hash);
    }
    const sizes = batched.framesPerMessage.slice(2); // after OHAI-OK and ICANHAZ-OK
    expect(Math.max(...sizes)).toBeGreaterThan(1);
    expect(Math.max(...sizes)).toBeLessThanOrEqual(64);

    const plain = peer(endpoint);
    await plain.open();
    await subscribeWithCaps(plain, "verify,delta,single");
    await plain.nom(1_000_000);
    await waitFor(() => plain.cheezburgers.length >= 100, "100 files", DEADLINE, 5);
    expect(plain.framesPerMessage.every((n) => n === 1)).toBe(true);
  });

  it("server - a big file rewritten in place with its size and mtime put back is sent with the new content's hash, not the one remembered", async () => {
    const size = 3 * 1024 * 1024; // fingerprinted in the background when published (>= 1 MiB)
    // A whole-second mtime, so that it can be put back exactly (utimes takes less than nanoseconds).
    const mtime = new Date("2020-01-01T00:00:00Z");
    const { server, endpoint, dir } = await startServer(
      {},
      { files: { "big.bin": randomBytes(size) }, prepare: (root) => utimes(path.join(root, "big.bin"), mtime, mtime) },
    );
    await published(server, 1);
    const file = path.join(dir, "big.bin");
    const receive = async (): Promise<{ data: Buffer; hash: string | undefined }> => {
      const p = peer(endpoint);
      await p.open();
      await subscribeWithCaps(p, "verify,delta,single");
      await p.nom(64 * 1024 * 1024);
      const parts: Buffer[] = [];
      for (;;) {
        const m = await p.expect("CHEEZBURGER");
        parts.push(Buffer.from(m.chunk));
        if (m.eof === 1) return { data: Buffer.concat(parts), hash: m.headers.get("X-FMQ-XXH64T") };
      }
    };
    const before = await receive();
    expect(before.hash).toBe((await fingerprintFile(file)).hash);

    // Same size, same mtime, other bytes: only the inode's ctime tells.
    const replacement = randomBytes(size);
    await writeFile(file, replacement);
    await utimes(file, mtime, mtime);
    const rewritten = await stat(file);
    expect(rewritten.mtimeMs).toBe(mtime.getTime());
    // (Once the mount has taken the new version: one it took between the write and utimes, then this one,
    // could cut a transfer begun meanwhile, its end marked changed; seen once under load.)
    await waitFor(() => [...server.mounts[0]!.files.values()][0]?.ctimeMs === rewritten.ctimeMs, "the rewrite published", DEADLINE);
    const after = await receive();
    expect(sha256(after.data)).toBe(sha256(replacement));
    expect(after.hash).toBe((await fingerprintFile(file)).hash);
    expect(after.hash).not.toBe(before.hash);
  });

  it("server - a file whose inode alone changed while it was sent (chmod) goes out marked changed, then again from where the client got to (a client saying verify keeps what came): its end, with its hash", async () => {
    const content = randomBytes(3 * 1024 * 1024);
    const { file, p } = await subscribedToBigFile(content);
    await p.nom(1024 * 1024);
    let got = 0;
    while (got < 1024 * 1024) got += (await p.expect("CHEEZBURGER")).chunk.length;
    // Only the ctime moves: the watcher says nothing of it (chokidar reports no change of mode here).
    await chmod(file, 0o600);
    await p.nom(64 * 1024 * 1024);
    const eofs: Cheezburger[] = [];
    const parts: Buffer[] = [];
    while (eofs.length < 2) {
      const m = await p.expect("CHEEZBURGER");
      expect(m.filename).toBe("/big.bin");
      if (eofs.length === 1) parts.push(Buffer.from(m.chunk));
      if (m.eof === 1) eofs.push(m);
    }
    expect(eofs[0]!.headers.get("X-FMQ-Status")).toBe("changed");
    expect(eofs[1]!.headers.get("X-FMQ-Status")).toBeUndefined();
    // Every byte came in the first: the second is its end alone, saying what a first chunk says (the
    // version's tag, and the prefix: here the whole file's).
    expect(Buffer.concat(parts).length).toBe(0);
    expect(eofs[1]!.offset).toBe(BigInt(content.length));
    const { ino } = await stat(file);
    expect(eofs[1]!.headers.get("X-FMQ-Version")).toBe(String(ino));
    expect(eofs[1]!.headers.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
  });

  for (const when of ["while it is sent", "with every byte sent, its fingerprint awaited"] as const) {
    it(`server - the mount's new record of the very version being sent (a chmod it noticed after the file was opened again), landing ${when}, neither cuts that transfer short nor has the file sent a third time`, async () => {
      // (CI met it: the first transfer ended marked changed by the chmod, the second, of the new version
      // already, was cut short when the mount published that version, and a third went whole. A review
      // then found the same once the second had sent every byte and waited for its fingerprint.) Under
      // RESUME_MIN_SIZE: a client keeps no partial of it, so the second transfer is whole, and under way
      // when the record lands (one of a file it keeps would be its end alone).
      const content = randomBytes(2 * 1024 * 1024 - 1);
      // The mount may see the chmod by itself. A file whose mtime is old it publishes again after a second
      // look (about 0.3 s: maybe before the second transfer is under way, on a loaded machine); one whose
      // mtime is in the future, after the whole quiet period: 1.5 s here, long after. (A review.)
      const future = new Date(Date.now() + 3_600_000);
      const { server, endpoint, dir } = await startServer({ stableMs: 1500 }, { files: { "big.bin": content }, prepare: (root) => utimes(path.join(root, "big.bin"), future, future) });
      await published(server, 1);
      const file = path.join(dir, "big.bin");
      const p = peer(endpoint);
      await p.open();
      await subscribeWithCaps(p, "verify,delta,single");
      await p.nom(1024 * 1024);
      let got = 0;
      while (got < 1024 * 1024) got += (await p.expect("CHEEZBURGER")).chunk.length;
      await chmod(file, 0o600);
      // The new version's fingerprint (the second transfer's), held when that is the case tried.
      const held = when === "while it is sent" ? undefined : holdFingerprints();
      try {
        // The rest of the first transfer, which ends marked changed, and the first MiB of the second.
        await p.nom(2 * 1024 * 1024);
        for (;;) {
          const m = await p.expect("CHEEZBURGER");
          got += m.chunk.length;
          if (m.eof === 1) {
            expect(m.headers.get("X-FMQ-Status")).toBe("changed");
            break;
          }
        }
        let skipped = 0;
        while (skipped < 1024 * 1024) skipped += (await p.expect("CHEEZBURGER")).chunk.length;
        const parts: Buffer[] = [];
        if (held) {
          // Every byte of the second, with no end: it waits for the fingerprint.
          await p.nom(64 * 1024 * 1024);
          while (skipped + parts.reduce((n, part) => n + part.length, 0) < content.length) {
            const m = await p.expect("CHEEZBURGER");
            expect(m.eof).toBe(0);
            parts.push(Buffer.from(m.chunk));
          }
          await waitFor(() => held.lookup.mock.calls.length > 0, "the transfer asking for the fingerprint", DEADLINE);
        }
        // The mount publishes the version the file is now, the one being sent: when its quiet period after
        // the chmod is over, if it saw it, or after it is told to look again.
        const ctimeMs = (await stat(file)).ctimeMs;
        expect(server.mounts[0]!.files.get("/big.bin")?.ctimeMs).not.toBe(ctimeMs);
        const republished = nextEvent<[PublishedFile]>(server, "published", (f) => f.vpath === "/big.bin");
        server.mounts[0]!.recheck("/big.bin");
        const [record] = await republished;
        expect(record.ctimeMs).toBe(ctimeMs);
        held?.release();
        await p.nom(64 * 1024 * 1024);
        for (;;) {
          const m = await p.expect("CHEEZBURGER");
          parts.push(Buffer.from(m.chunk));
          if (m.eof === 1) {
            expect(m.headers.get("X-FMQ-Status")).toBeUndefined();
            expect(m.headers.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
            break;
          }
        }
        expect(sha256(Buffer.concat(parts))).toBe(sha256(content.subarray(skipped)));
        // Nothing more: with 60 MiB of credit left, a third transfer would begin at once.
        await p.send({ id: "HUGZ" });
        await p.expect("HUGZ_OK", 3000);
        await expect(p.expect("CHEEZBURGER", 1000)).rejects.toThrow(/nothing arrived/);
      } finally {
        held?.restore();
      }
    });
  }

  /** Write random bytes over whole 1 MiB `blocks` of `file` in place, and wait for the server to publish that version. */
  async function rewriteBlocks(server: Server, file: string, vpath: string, blocks: number[]): Promise<void> {
    const MiB = 1024 * 1024;
    const handle = await open(file, "r+");
    for (const block of blocks) await handle.write(randomBytes(MiB), 0, MiB, block * MiB);
    await handle.close();
    const { mtimeMs } = await stat(file);
    await nextEvent<[PublishedFile]>(server, "published", (f) => f.vpath === vpath && f.mtimeMs === mtimeMs);
  }

  /** A new peer subscribed to "/" saying `caps` and listing `cache`: the first chunk it is sent. */
  async function firstChunkFor(endpoint: string, caps: string, cache: Map<string, string>): Promise<Cheezburger> {
    const p = peer(endpoint);
    await p.open();
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", caps]]), cache });
    await p.expect("ICANHAZ_OK");
    await p.nom(64 * 1024);
    return p.expect("CHEEZBURGER");
  }

  /** Read one transfer of `vpath` to its eof chunk: its chunks, in order. */
  async function transferOf(p: RawPeer, vpath: string): Promise<Cheezburger[]> {
    const chunks: Cheezburger[] = [];
    for (;;) {
      const m = await p.expect("CHEEZBURGER");
      expect(m.filename).toBe(vpath);
      chunks.push(m);
      if (m.eof === 1) return chunks;
    }
  }

  /** A client holding the first 2 MiB of a 4 MiB /big.bin it was sent (no more credit), and that file. */
  async function twoMiBOfFour() {
    const MiB = 1024 * 1024;
    const content = randomBytes(4 * MiB);
    const setup = await subscribedToBigFile(content);
    await setup.p.nom(2 * MiB);
    const held: Buffer[] = [];
    while (held.reduce((n, b) => n + b.length, 0) < 2 * MiB) held.push(Buffer.from((await setup.p.expect("CHEEZBURGER")).chunk));
    return { ...setup, content, held: Buffer.concat(held) };
  }

  it("server - a file that grows while it is sent: its transfer ends marked changed where it got to, and the new version resumes there (X-FMQ-Prefix of the bytes sent), not from byte 0", async () => {
    // (A soak test: a 180 MB file growing 1 MiB every 0.85 s took 3.86 GB to arrive, sent from byte 0 at
    // each change; one of 1.3 GiB growing 8 MiB every 0.6 s came only once it stopped growing.)
    const MiB = 1024 * 1024;
    // (The server's fingerprints, to wait for the new version's: then the prefix is said on the first chunk.)
    let fingerprints: Fingerprints | undefined;
    const { server, file, p, content, held } = await twoMiBOfFour();
    const spy = vi.spyOn(Fingerprints.prototype, "prepare");
    const more = randomBytes(MiB);
    try {
      await writeFile(file, more, { flag: "a" });
      await waitFor(() => server.mounts[0]!.files.get("/big.bin")?.size === 5 * MiB, "the grown version published", DEADLINE);
      fingerprints = spy.mock.contexts.at(-1) as Fingerprints | undefined;
    } finally {
      spy.mockRestore();
    }
    await waitFor(async () => {
      const known = fingerprints?.lookup(file, await versionOf(file));
      return known !== undefined && !(known instanceof Promise);
    }, "the grown version's fingerprint", DEADLINE);
    await p.nom(64 * MiB);
    const cut = await transferOf(p, "/big.bin");
    expect(cut.map((m) => [m.offset, m.chunk.length, m.headers.get("X-FMQ-Status")])).toEqual([[BigInt(2 * MiB), 0, "changed"]]);
    const resumed = await transferOf(p, "/big.bin");
    expect(resumed[0]!.offset).toBe(BigInt(2 * MiB));
    const grown = Buffer.concat([content, more]);
    expect(resumed[0]!.headers.get("X-FMQ-Prefix")).toBe(await treeHash(held));
    expect(sha256(Buffer.concat([held, ...resumed.map((m) => Buffer.from(m.chunk))]))).toBe(sha256(grown));
    const end = resumed.at(-1)!;
    expect(end.headers.get("X-FMQ-Status")).toBeUndefined();
    expect(end.headers.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
  });

  it("server - a resume of a grown file that the client refuses (it asks for the file whole) is not offered again: the file comes from byte 0 (and its next version as changed blocks on that)", async () => {
    // (Offered again, it was refused again, and again: a livelock found by hand, a file rewritten in place
    // while it came.)
    const MiB = 1024 * 1024;
    const { server, file, p } = await twoMiBOfFour();
    await writeFile(file, randomBytes(MiB), { flag: "a" });
    await waitFor(() => server.mounts[0]!.files.get("/big.bin")?.size === 5 * MiB, "the grown version published", DEADLINE);
    await p.nom(MiB);
    expect((await transferOf(p, "/big.bin")).map((m) => m.headers.get("X-FMQ-Status"))).toEqual(["changed"]);
    const resumed = await p.expect("CHEEZBURGER");
    expect(resumed.offset).toBe(BigInt(2 * MiB));
    // As our client does when the bytes it holds are not the new version's: the file asked for by its path.
    await p.send({ id: "ICANHAZ", path: "/big.bin", options: new Map([["X-FMQ-Caps", "verify,delta,single"]]), cache: new Map() });
    // (The resume's end, cut short where it was, may come before the answer or after it.)
    const ends: Cheezburger[] = [];
    for (let m = await p.next(DEADLINE); m?.id !== "ICANHAZ_OK"; m = await p.next(DEADLINE)) {
      if (m?.id !== "CHEEZBURGER") throw new Error(`expected ICANHAZ_OK, got ${m?.id}`);
      ends.push(m);
    }
    await p.nom(64 * MiB);
    if (ends.length === 0) ends.push(await p.expect("CHEEZBURGER"));
    expect(ends.map((m) => [m.offset, m.eof, m.headers.get("X-FMQ-Status")])).toEqual([[BigInt(3 * MiB), 1, "changed"]]);
    const whole = await transferOf(p, "/big.bin");
    expect(whole[0]!.offset).toBe(0n);
    expect(whole.at(-1)!.headers.get("X-FMQ-Status")).toBeUndefined();
    // Its next version: changed blocks on the version it now holds whole (no resume of a partial).
    await writeFile(file, randomBytes(MiB), { flag: "a" });
    const next = await transferOf(p, "/big.bin");
    expect([next[0]!.offset, next[0]!.headers.get("X-FMQ-Base")]).toEqual([BigInt(5 * MiB), whole.at(-1)!.headers.get("X-FMQ-XXH64T")]);
  });

  it("server - a file asked for again with its partial's blocks listed (pblocks: the client refused a resume, the file written in place behind it) resumes after the blocks that still match, or sends those that differ and the rest on top of them if that is less, and the refused transfer stops; with none matching, from byte 0", async () => {
    // (A soak test: a 600 MiB file written at random offsets while it came, the publisher killed twice:
    // 1.1-6x its size received, each such refusal sending it from byte 0.)
    const MiB = 1024 * 1024;
    const { server, file, p, held } = await twoMiBOfFour();
    // Its second block written over: the client's 2 MiB are no longer the file's first 2 MiB.
    await rewriteBlocks(server, file, "/big.bin", [1]);
    await p.nom(MiB);
    expect((await transferOf(p, "/big.bin")).map((m) => m.headers.get("X-FMQ-Status"))).toEqual(["changed"]);
    const offered = await p.expect("CHEEZBURGER");
    expect(offered.offset).toBe(BigInt(2 * MiB));
    // As our client does when the prefix does not match: the file asked for by its path, its blocks listed.
    const blocksOf = async (data: Buffer) => {
      const hasher = new BlockHasher(await xxh());
      hasher.update(data);
      return hasher.wholeBlocks().toString("hex");
    };
    const ask = async (pblocks: string) => {
      await p.send({ id: "ICANHAZ", path: "/big.bin", options: new Map([["X-FMQ-Caps", "verify,delta,single"]]), cache: new Map([["big.bin", `fmq1;pblocks=${pblocks}`]]) });
      const before: Cheezburger[] = [];
      for (let m = await p.next(DEADLINE); m?.id !== "ICANHAZ_OK"; m = await p.next(DEADLINE)) {
        if (m?.id !== "CHEEZBURGER") throw new Error(`expected ICANHAZ_OK, got ${m?.id}`);
        before.push(m);
      }
      await p.nom(64 * MiB);
      return before;
    };
    const ends = await ask(await blocksOf(held));
    // (The refused resume's end, cut where it was, may come before the answer or after it.)
    if (ends.length === 0) ends.push(await p.expect("CHEEZBURGER"));
    expect(ends.map((m) => [m.offset, m.eof, m.headers.get("X-FMQ-Status")])).toEqual([[BigInt(3 * MiB), 1, "changed"]]);
    const now = await readFile(file);
    const resumed = await transferOf(p, "/big.bin");
    expect(resumed[0]!.offset).toBe(BigInt(MiB));
    expect(resumed[0]!.headers.get("X-FMQ-Prefix")).toBe(await treeHash(now.subarray(0, MiB)));
    expect(sha256(Buffer.concat([held.subarray(0, MiB), ...resumed.map((m) => Buffer.from(m.chunk))]))).toBe(sha256(now));
    expect(resumed.at(-1)!.headers.get("X-FMQ-XXH64T")).toBe(await treeHash(now));
    // Its first block other, its second the file's: the blocks that differ and the rest, on top of it.
    const listed = (await blocksOf(randomBytes(MiB))) + (await blocksOf(now.subarray(MiB, 2 * MiB)));
    await ask(listed);
    const delta = await transferOf(p, "/big.bin");
    expect(delta[0]!.headers.get("X-FMQ-Base")).toBe(treeHashOfBlocks(await xxh(), Buffer.from(listed, "hex")));
    const patched = Buffer.from(now);
    for (const m of delta) Buffer.from(m.chunk).copy(patched, Number(m.offset));
    expect(delta.filter((m) => m.chunk.length > 0 && Number(m.offset) >= MiB && Number(m.offset) < 2 * MiB)).toEqual([]);
    expect(delta.reduce((n, m) => n + m.chunk.length, 0)).toBe(3 * MiB);
    expect(sha256(patched)).toBe(sha256(now));
    // No block that matches: the file from byte 0.
    await ask(await blocksOf(randomBytes(2 * MiB)));
    const whole = await transferOf(p, "/big.bin");
    expect(whole[0]!.offset).toBe(0n);
    expect(sha256(Buffer.concat(whole.map((m) => Buffer.from(m.chunk))))).toBe(sha256(now));
  });

  it("server - a delta cut short by a newer version: the newer one goes as changed blocks on the version the client holds whole when that sends less than resuming the delta's copy would", async () => {
    // (A review: the kept copy of a delta cut after its first block was resumed, and a file written in
    // place in two blocks was sent nearly whole.)
    const MiB = 1024 * 1024;
    const content = randomBytes(8 * MiB);
    const { server, file, p } = await subscribedToBigFile(content);
    // (Credit for that much only: what is left of it would let the delta below go whole at once.)
    await p.nom(content.length);
    const whole = await transferOf(p, "/big.bin");
    const base = whole.at(-1)!.headers.get("X-FMQ-XXH64T");
    expect(base).toBe(await treeHash(content));
    const rewrite = (blocks: number[]) => rewriteBlocks(server, file, "/big.bin", blocks);
    // Blocks 0 and 6 written: a delta of them, of which block 0 comes, then block 3 written.
    await rewrite([0, 6]);
    await p.nom(MiB);
    const first = await p.expect("CHEEZBURGER");
    expect([first.offset, first.chunk.length, first.headers.get("X-FMQ-Base")]).toEqual([0n, MiB, base]);
    await rewrite([3]);
    await p.nom(64 * MiB);
    const cut = await transferOf(p, "/big.bin");
    // (Its end where the next of its blocks would have begun.)
    expect(cut.map((m) => [m.offset, m.chunk.length, m.headers.get("X-FMQ-Status")])).toEqual([[BigInt(6 * MiB), 0, "changed"]]);
    const next = await transferOf(p, "/big.bin");
    expect(next[0]!.headers.get("X-FMQ-Base")).toBe(base);
    expect(next.reduce((n, m) => n + m.chunk.length, 0)).toBe(3 * MiB);
    expect(next.at(-1)!.headers.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
  });

  it("server - after two deltas of a file cut short (our client takes no third before the file comes), the next version resumes what the client kept of the last one", async () => {
    const MiB = 1024 * 1024;
    const content = randomBytes(8 * MiB);
    const { server, file, p } = await subscribedToBigFile(content);
    await p.nom(content.length);
    const base = (await transferOf(p, "/big.bin")).at(-1)!.headers.get("X-FMQ-XXH64T");
    const rewrite = (blocks: number[]) => rewriteBlocks(server, file, "/big.bin", blocks);
    // Two deltas, each cut after its first block by a newer version.
    for (const [i, blocks] of [[0, 6], [3]].entries()) {
      await rewrite(blocks);
      await p.nom(MiB);
      // (The one before's end, marked changed.)
      if (i > 0) expect((await transferOf(p, "/big.bin")).map((m) => m.headers.get("X-FMQ-Status"))).toEqual(["changed"]);
      const first = await p.expect("CHEEZBURGER");
      expect([first.offset, first.headers.get("X-FMQ-Base")]).toEqual([0n, base]);
    }
    await rewrite([5]);
    await p.nom(64 * MiB);
    // The second's end, then the newest version: resumed at 1 MiB (what the second delta reached), not a
    // third delta.
    expect((await transferOf(p, "/big.bin")).map((m) => m.headers.get("X-FMQ-Status"))).toEqual(["changed"]);
    const next = await transferOf(p, "/big.bin");
    expect([next[0]!.offset, next[0]!.headers.get("X-FMQ-Base")]).toEqual([BigInt(MiB), undefined]);
    expect(next.at(-1)!.headers.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
  });

  it("server - a partial listed in a cache is taken up by a newer version of the file published before its resume began (it grew meanwhile): not sent from byte 0", async () => {
    // (A soak test: a growing file, the publisher killed and started again, came from byte 0: the new
    // version replaced the resume waiting in the queue.)
    const MiB = 1024 * 1024;
    const { server, endpoint, dir } = await startServer({}, { files: { x: randomBytes(4 * MiB) } });
    await published(server, 1);
    const file = path.join(dir, "x");
    const x = await stat(file);
    const p = peer(endpoint);
    await p.open();
    const partial = { length: 2 * MiB, size: x.size, mtime: x.mtimeMs, tag: String(x.ino) };
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", "verify,delta,single"]]), cache: new Map([["x", formatCacheEntry({ partial })]]) });
    await p.expect("ICANHAZ_OK");
    // No credit yet: nothing is opened, and the newer version replaces the resume in the queue.
    const grown = nextEvent<[PublishedFile]>(server, "published", (f) => f.vpath === "/x" && f.size === 5 * MiB);
    await writeFile(file, randomBytes(MiB), { flag: "a" });
    await grown;
    await p.nom(64 * 1024);
    const first = await p.expect("CHEEZBURGER");
    expect([first.filename, first.offset, first.headers.get("X-FMQ-Size")]).toEqual(["/x", BigInt(2 * MiB), String(5 * MiB)]);
  });

  it("server - a partial listed of an earlier version of the same inode (its tag) is resumed at its length; of another inode, or longer than the file, not", async () => {
    const MiB = 1024 * 1024;
    const { server, endpoint, dir } = await startServer({}, { files: { x: randomBytes(4 * MiB) } });
    await published(server, 1);
    const x = await stat(path.join(dir, "x"));
    const earlier = { size: x.size - MiB, mtime: x.mtimeMs - 5000 };
    for (const [partial, offset] of [
      [{ length: 2 * MiB, ...earlier, tag: String(x.ino) }, BigInt(2 * MiB)],
      [{ length: 2 * MiB, ...earlier, tag: String(x.ino + 1) }, 0n],
      [{ length: 2 * MiB, ...earlier }, 0n],
      [{ length: 5 * MiB, ...earlier, tag: String(x.ino) }, 0n],
    ] as const) {
      const first = await firstChunkFor(endpoint, "verify,delta,single", new Map([["x", formatCacheEntry({ partial })]]));
      expect([partial, first.filename, first.offset]).toEqual([partial, "/x", offset]);
    }
  });

  it("server - a partial listed of an earlier version whose file is still being hashed (a publisher just started) is resumed once the hash is known: X-FMQ-Prefix on its first chunk, not after the rest went", async () => {
    // (A soak test: a publisher restarted under a file written in place streamed hundreds of MB of such a
    // resume before its prefix came and the client refused it.)
    const MiB = 1024 * 1024;
    const content = randomBytes(4 * MiB);
    const { server, endpoint, dir } = await startServer({}, { files: { x: content } });
    await published(server, 1);
    const x = await stat(path.join(dir, "x"));
    // The background pass, slow: its result comes 3 s after it is looked up, unless asked for outright.
    let asked = false;
    const fingerprint = Fingerprints.prototype.fingerprint;
    const lookup = Fingerprints.prototype.lookup;
    const spies = [
      vi.spyOn(Fingerprints.prototype, "fingerprint").mockImplementation(function (this: Fingerprints, ...args: Parameters<Fingerprints["fingerprint"]>) {
        asked = true;
        return fingerprint.apply(this, args);
      }),
      vi.spyOn(Fingerprints.prototype, "lookup").mockImplementation(function (this: Fingerprints, ...args: Parameters<Fingerprints["lookup"]>) {
        const known = lookup.apply(this, args);
        return asked ? known : new Promise((resolve) => setTimeout(() => resolve(known), 3000));
      }),
    ];
    try {
      const partial = { length: 2 * MiB, size: x.size - MiB, mtime: x.mtimeMs - 5000, tag: String(x.ino) };
      const first = await firstChunkFor(endpoint, "verify,delta,single", new Map([["x", formatCacheEntry({ partial })]]));
      expect([first.offset, first.headers.get("X-FMQ-Prefix")]).toEqual([BigInt(2 * MiB), await treeHash(content.subarray(0, 2 * MiB))]);
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it("server - a partial listed by a client that did not say \"verify\" is not resumed: the file comes whole, from byte 0", async () => {
    // (A review: a resume went to any client whose cache listed a partial, without the headers that say
    // what it is, which only a "verify" client gets.)
    const MiB = 1024 * 1024;
    const { server, endpoint, dir } = await startServer({}, { files: { x: randomBytes(4 * MiB) } });
    await published(server, 1);
    const x = await stat(path.join(dir, "x"));
    const cache = new Map([["x", formatCacheEntry({ partial: { length: 2 * MiB, size: x.size, mtime: x.mtimeMs } })]]);
    for (const [caps, offset] of [["delta,single,batch", 0n], ["verify", BigInt(2 * MiB)]] as const) {
      const first = await firstChunkFor(endpoint, caps, cache);
      expect([caps, first.filename, first.offset]).toEqual([caps, "/x", offset]);
    }
  });

  it("server - a version held whole listed by a client that said \"delta\" and not \"verify\" gets no changed blocks: the file comes whole, from byte 0", async () => {
    // (Changed blocks without X-FMQ-Base, which only a "verify" client gets, say nothing of what they apply to.)
    const MiB = 1024 * 1024;
    const held = randomBytes(8 * MiB);
    const now = Buffer.from(held);
    randomBytes(MiB).copy(now, 5 * MiB);
    const { server, endpoint } = await startServer({}, { files: { "big.bin": now } });
    await published(server, 1);
    const heldFile = path.join(await tempDir("fmq-held-"), "held.bin");
    await writeFile(heldFile, held);
    const { hash, blocks } = await fingerprintFile(heldFile);
    const cache = new Map([["big.bin", formatCacheEntry({ size: held.length, mtime: 1_600_000_000_000, hash, blocks })]]);
    for (const [caps, offset, base] of [["delta,single", 0n, undefined], ["verify,delta", BigInt(5 * MiB), hash]] as const) {
      const p = peer(endpoint);
      await p.open();
      await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", caps]]), cache });
      await p.expect("ICANHAZ_OK");
      await p.nom(64 * MiB);
      const first = await p.expect("CHEEZBURGER");
      expect([caps, first.offset, first.headers.get("X-FMQ-Base")]).toEqual([caps, offset, base]);
    }
  });

  it("server - a resume refused by a client with two subscriptions over the file (one listing its partial) sends the file whole once, not twice", async () => {
    // (A review: the refusal revived the backlog's entry of the file, skipped since it went as a resume,
    // and pushed another beside it: both went.)
    const MiB = 1024 * 1024;
    const { server, endpoint, dir } = await startServer({}, { files: { y: randomBytes(4 * MiB), "b/x": randomBytes(4 * MiB) }, alias: "/a" });
    await published(server, 2);
    const x = await stat(path.join(dir, "b", "x"));
    const p = peer(endpoint);
    await p.open();
    const caps = new Map([["X-FMQ-Caps", "verify"]]);
    await p.send({ id: "ICANHAZ", path: "/a", options: caps, cache: new Map() });
    await p.expect("ICANHAZ_OK");
    await p.send({ id: "ICANHAZ", path: "/a/b", options: caps, cache: new Map([["x", formatCacheEntry({ partial: { length: 2 * MiB, size: x.size, mtime: x.mtimeMs } })]]) });
    await p.expect("ICANHAZ_OK");
    await p.nom(64 * 1024);
    const first = await p.expect("CHEEZBURGER");
    expect([first.filename, first.offset]).toEqual(["/a/b/x", BigInt(2 * MiB)]);
    // Refused: asked for alone, with nothing listed, as our client does.
    await p.send({ id: "ICANHAZ", path: "/a/b/x", options: caps, cache: new Map() });
    await p.expect("ICANHAZ_OK");
    await p.nom(1n << 40n);
    const whole: string[] = [];
    await readUntil(
      p,
      () => whole.includes("/a/y") && whole.includes("/a/b/x"),
      (m) => {
        if (m.id === "CHEEZBURGER" && m.eof === 1 && m.headers.get("X-FMQ-Status") === undefined) whole.push(m.filename);
      },
    );
    expect(whole.sort()).toEqual(["/a/b/x", "/a/y"]);
  });

  it("server - a transfer whose last chunk waits for the fingerprint still being computed answers HUGZ meanwhile, then ends with that fingerprint", async () => {
    // (A review: the wait was inside the machine's step, so HUGZ waited too; our client, hearing nothing
    // for 5 s, started a new session, again and again while the worker was busy with other files.)
    const { dir, p, held } = await everyByteSentFingerprintHeld();
    const expected = (await fingerprintFile(path.join(dir, "big.bin"))).hash;
    try {
      await p.send({ id: "HUGZ" });
      await p.expect("HUGZ_OK", 3000);
      held.release();
      const eof = await p.expect("CHEEZBURGER");
      expect(eof.eof).toBe(1);
      expect(eof.headers.get("X-FMQ-XXH64T")).toBe(expected);
    } finally {
      held.restore();
    }
  });

  it("server - a transfer waiting for its fingerprint lets go of its file when the client starts a new session (it stayed open as long as the hash took: one descriptor per session)", async () => {
    const { dir, p, held } = await everyByteSentFingerprintHeld();
    // Descriptors of this process (the server runs in it) open on the published file.
    const openOnFile = () => openHere(path.join(dir, "big.bin"));
    try {
      await waitFor(() => held.lookup.mock.calls.length > 0, "the transfer asking for the fingerprint", DEADLINE);
      expect(openOnFile()).toBeGreaterThan(0);
      // A new session, the fingerprint still held: the file waiting for it is closed now, not when it comes.
      await p.open();
      await waitFor(() => openOnFile() === 0, "the file closed", 3000);
    } finally {
      held.restore();
    }
  });

  it("server - a delta whose plan waits for the new version's fingerprint answers HUGZ meanwhile, then goes as changed blocks", async () => {
    const content = randomBytes(3 * 1024 * 1024);
    const { file, p } = await subscribedToBigFile(content);
    await p.nom(64 * 1024 * 1024);
    let base: string | undefined;
    while (base === undefined) {
      const m = await p.expect("CHEEZBURGER");
      if (m.eof === 1) base = m.headers.get("X-FMQ-XXH64T");
    }
    // The new version's fingerprint, held.
    const held = holdFingerprints();
    try {
      // The middle block rewritten in place: the client holds the rest.
      const changed = Buffer.from(content);
      randomBytes(1024 * 1024).copy(changed, 1024 * 1024);
      await writeFile(file, changed);
      await waitFor(() => held.lookup.mock.calls.length > 0, "the plan asking for the fingerprint", DEADLINE);
      await p.send({ id: "HUGZ" });
      await p.expect("HUGZ_OK", 3000);
      held.release();
      const chunks: Cheezburger[] = [];
      for (;;) {
        const m = await p.expect("CHEEZBURGER");
        chunks.push(m);
        if (m.eof === 1) break;
      }
      // A delta: the changed block alone, on the version the client holds.
      expect(chunks[0]!.headers.get("X-FMQ-Base")).toBe(base);
      expect(chunks.reduce((n, c) => n + c.chunk.length, 0)).toBe(1024 * 1024);
      expect(chunks.at(-1)!.headers.get("X-FMQ-XXH64T")).toBe((await fingerprintFile(file)).hash);
    } finally {
      held.restore();
    }
  });

  it("server - an ICANHAZ cache of more than 200,000 entries is answered RTFM; the server serves on", async () => {
    const { server, endpoint, warnings } = await startServer({}, { files: { "a.txt": "a" } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.send({ id: "OHAI", protocol: "FILEMQ", version: 2 });
    await p.expect("OHAI_OK");
    // Hand-made (our encoder refuses it): 200,001 empty entries, each a 0-length key and a 0-length value.
    const count = Buffer.alloc(4);
    count.writeUInt32BE(MAX_DICTIONARY_ENTRIES + 1);
    const head = Buffer.from([0xaa, 0xa3, 0x05, 0, 0, 0, 1, 0x2f, 0, 0, 0, 0]);
    await p.sendRaw(Buffer.concat([head, count, Buffer.alloc(5 * (MAX_DICTIONARY_ENTRIES + 1))]));
    expect((await p.expect("RTFM")).reason).toMatch(/TOO_MANY/);
    expect(warnings.some((w) => /TOO_MANY/.test(w))).toBe(true);
    const honest = peer(endpoint);
    await honest.open();
    await honest.send({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() });
    await honest.expect("ICANHAZ_OK");
  });

  it("server - deletes waiting for cached names the server never had are bounded (32 MiB of names): a client listing names cache after cache, and reading nothing, cannot grow the server", async () => {
    // (Found by an audit: every such name was queued as a delete with a copy of the path, 4 KiB here,
    // and nothing bounded them: 860 MiB more per ICANHAZ.)
    const { server, endpoint, warnings } = await startServer({}, { files: { "big.bin": randomBytes(100_000) } });
    await published(server, 1);
    // A client that reads nothing: what the server sends stays in its queues.
    const hung = new Dealer({ linger: 0, receiveHighWaterMark: 1 });
    hung.connect(endpoint);
    try {
      await hung.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
      const long = `/${Array(16).fill("d".repeat(249)).join("/")}`;
      for (let round = 0; round < 3; round++) {
        const cache = new Map(Array.from({ length: 20_000 }, (_, i) => [`r${round}-${i}`, ""] as const));
        await hung.send(encode({ id: "ICANHAZ", path: long, options: new Map(), cache }));
      }
      await waitFor(() => warnings.some((w) => /not on this server: deletes for the rest wait/.test(w)), "the warning", DEADLINE);
      // As many as 32 MiB of names allow (each about 4 KiB) wait at any time, of the 60,000 listed.
      const bound = Math.floor((32 * 1024 * 1024) / (long.length + "/r0-0".length));
      let most = server.queuedFiles;
      // Some have gone into the pipe (the sockets' queues and the kernel's buffers hold hundreds of
      // these). Read them all, watching the server's queue: as deletes leave it, others of the later
      // caches may take their places, never more than the bound. No credit given: the file stays.
      let deletes = 0;
      let answers = 0;
      let other = 0;
      const reading = (async () => {
        for (;;) {
          const result = decodeBatch(await hung.receive());
          most = Math.max(most, server.queuedFiles);
          if (!result.ok) other++;
          else
            for (const m of result.messages) {
              if (m.id === "CHEEZBURGER" && m.operation === Operation.DELETE) deletes++;
              else if (m.id === "ICANHAZ_OK") answers++;
              else if (m.id !== "OHAI_OK") other++;
            }
        }
      })().catch(() => undefined);
      await waitFor(() => answers === 3 && server.queuedFiles <= 1, "the three ICANHAZ answered and their deletes read", DEADLINE);
      expect(most).toBeLessThanOrEqual(bound + 1);
      expect(deletes).toBeGreaterThanOrEqual(bound - 200);
      expect(deletes).toBeLessThan(60_000);
      expect(other).toBe(0);
      expect(warnings.filter((w) => /not on this server/.test(w))).toHaveLength(1);
      hung.close();
      await reading;
    } finally {
      hung.close();
    }
  });

  it("server - deletes waiting for cached names the server never had are bounded across clients too (64 MiB of names); clients that go give their share back", async () => {
    // (A review: each client's bound alone let 60 such clients take more than a Node heap holds.)
    const { server, endpoint, warnings } = await startServer({}, { files: { "big.bin": randomBytes(100_000) } });
    await published(server, 1);
    const long = `/${Array(16).fill("d".repeat(249)).join("/")}`;
    const bound = Math.floor((64 * 1024 * 1024) / (long.length + "/c0-0000".length));
    const hung: Dealer[] = [];
    /** A client that reads nothing, listing 8,000 names (32 MB, within its own bound) it says it holds. */
    const listing = async (c: number) => {
      const socket = new Dealer({ linger: 0, receiveHighWaterMark: 1 });
      hung.push(socket);
      socket.connect(endpoint);
      await socket.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
      const cache = new Map(Array.from({ length: 8000 }, (_, i) => [`c${c}-${String(i).padStart(4, "0")}`, ""] as const));
      await socket.send(encode({ id: "ICANHAZ", path: long, options: new Map(), cache }));
    };
    const acrossAll = () => warnings.filter((w) => /across all clients: deletes for the rest wait/.test(w)).length;
    let subscribed = 0;
    server.on("subscribed", () => subscribed++);
    let most = 0;
    const watching = setInterval(() => (most = Math.max(most, server.queuedFiles)), 5);
    try {
      // Three times 8,000 would be 24,000 deletes of 4 KiB names waiting; 64 MiB of names is 16,743.
      for (let c = 0; c < 3; c++) await listing(c);
      // (Each ICANHAZ handled to its end: the three are handled by turns, and more than one may reach the bound.)
      await waitFor(() => subscribed === 3, "the three caches gone through", DEADLINE);
      expect(acrossAll()).toBeGreaterThanOrEqual(1);
      // (What waits is less what went into the pipes: the sockets' queues and the kernel's buffers hold
      // hundreds, up to 2,000 on a busy machine.)
      expect(most).toBeLessThanOrEqual(bound + 3);
      expect(warnings.filter((w) => /not on this server/.test(w))).toHaveLength(acrossAll());
      // Two clients go: their shares are free again, and a new client's 8,000 all wait, with no warning.
      const said = acrossAll();
      hung[0]!.close();
      hung[1]!.close();
      await waitFor(() => server.clients === 1, "two clients forgotten", DEADLINE);
      const left = server.queuedFiles;
      await listing(3);
      await waitFor(() => subscribed === 4, "the new client's cache gone through", DEADLINE);
      expect(server.queuedFiles).toBeGreaterThanOrEqual(left + 3000);
      expect(acrossAll()).toBe(said);
      expect(most).toBeLessThanOrEqual(bound + 3);
    } finally {
      clearInterval(watching);
      for (const socket of hung) socket.close();
    }
  });

  it("server - what a subscriber waits for costs the server a pointer per file: 100 clients subscribed to 5,000 files without credit", async () => {
    // (Found by an audit: a patch and a map entry per file per client, 2.3 MiB per client for 20,000
    // files; the default max-clients of 10,000 would have held 23 GB.)
    const files: Record<string, string> = {};
    for (let i = 0; i < 5000; i++) files[`d${i % 50}/f${i}.txt`] = `file ${i}`;
    const { server, endpoint } = await startServer({}, { files });
    await published(server, 5000);
    const heap = () => {
      gc();
      gc();
      return process.memoryUsage().heapUsed;
    };
    const before = heap();
    const peers: RawPeer[] = [];
    for (let i = 0; i < 100; i++) {
      const p = peer(endpoint);
      await p.open();
      await p.icanhaz("/");
      peers.push(p);
    }
    for (const p of peers) await p.expect("ICANHAZ_OK");
    await waitFor(() => server.queuedFiles === 500_000, "5,000 files waiting for each client", DEADLINE);
    const grown = heap() - before;
    // 500,000 files waiting: 8 bytes each is 4 MB; a patch and a map entry each was 40 MB or more.
    expect(grown).toBeLessThan(16 * 1024 * 1024);
  });

  it("server - a file changed while older files wait, sent, then asked for again by name: sent again (not taken for the old version still waiting)", async () => {
    // (Found by review of the backlog: the old version's entry, still waiting, made the refetch skip the new one.)
    const files: Record<string, string> = {};
    for (let i = 0; i < 10; i++) files[`f${i}.txt`] = "x".repeat(100);
    const { server, endpoint, dir } = await startServer({}, { files });
    await published(server, 10);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    const before = server.mounts[0]!.files.get("/f7.txt")!;
    await writeFile(path.join(dir, "f7.txt"), "y".repeat(100));
    await waitFor(() => server.mounts[0]!.files.get("/f7.txt") !== before, "f7.txt published again", DEADLINE);
    // Credit for one file: the change goes first.
    await p.nom(100);
    const first = await p.expect("CHEEZBURGER");
    expect(first.filename).toBe("/f7.txt");
    await p.expect("CHEEZBURGER"); // (its eof chunk)
    await p.icanhaz("/f7.txt");
    await p.expect("ICANHAZ_OK");
    await p.nom(10_000);
    const sent: string[] = [];
    await readUntil(
      p,
      () => sent.length >= 10,
      (m) => {
        if (m.id === "CHEEZBURGER" && m.eof === 1) sent.push(m.filename);
      },
    );
    expect(sent.sort()).toEqual(["/f0.txt", "/f1.txt", "/f2.txt", "/f3.txt", "/f4.txt", "/f5.txt", "/f6.txt", "/f7.txt", "/f8.txt", "/f9.txt"]);
  });

  it("server - a file asked for by its own path (our client's refetch) is planned alone, without a walk of every file published: and sent", async () => {
    // (A review: each such request went through every file of the mount, 70 ms per 100,000 files.)
    const files: Record<string, string> = {};
    for (let i = 0; i < 50; i++) files[`f${i}.txt`] = `file ${i}`;
    const { server, endpoint } = await startServer({}, { files });
    await published(server, 50);
    const walks = vi.spyOn(server.mounts[0]!.files, "values");
    try {
      const p = peer(endpoint);
      await p.open();
      await p.icanhaz("/f7.txt");
      await p.expect("ICANHAZ_OK");
      await p.nom(10_000);
      const sent = await p.expect("CHEEZBURGER");
      expect(sent.filename).toBe("/f7.txt");
      expect(Buffer.from(sent.chunk).toString()).toBe("file 7");
      expect((await p.expect("CHEEZBURGER")).eof).toBe(1);
      expect(walks).not.toHaveBeenCalled();
      // A directory's path is a walk, as before.
      await p.icanhaz("/");
      await p.expect("ICANHAZ_OK");
      await waitFor(() => walks.mock.calls.length > 0, "a walk for /", DEADLINE);
    } finally {
      walks.mockRestore();
    }
  });

  it("server - a file both waiting whole for one subscription and resumed for another of the same client goes once", async () => {
    // (Found by review of the backlog: sent as the resume, then again whole.)
    const big = randomBytes(300_000);
    const mtime = new Date("2020-01-01T00:00:00Z");
    const { server, endpoint } = await startServer({}, { files: { "a/b.bin": big }, prepare: async (root) => utimes(path.join(root, "a", "b.bin"), mtime, mtime) });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/a");
    await p.expect("ICANHAZ_OK");
    const cache = new Map([["a/b.bin", formatCacheEntry({ partial: { length: 100_000, size: big.length, mtime: mtime.getTime() } })]]);
    await p.send({ id: "ICANHAZ", path: "/", options: new Map(), cache });
    await p.expect("ICANHAZ_OK");
    await p.nom(1_000_000);
    // (Resumed from its last whole block: from 0 here. Either way, once.)
    let bytes = 0;
    let ends = 0;
    await readUntil(
      p,
      () => ends >= 1,
      (m) => {
        if (m.id !== "CHEEZBURGER" || m.filename !== "/a/b.bin") return;
        bytes += m.chunk.length;
        if (m.eof === 1) ends++;
      },
    );
    expect([bytes, ends]).toEqual([big.length, 1]);
  });

  it("server - a subscription to one file, held as listed in the cache: nothing to send, no delete", async () => {
    // (Found by review: the file, listed under its base name, was taken for gone: a delete of /a/f.txt/f.txt,
    // which the client applies to its copy, then the file again whole, at every session.)
    const mtime = new Date("2020-01-01T00:00:00Z");
    const { server, endpoint } = await startServer({}, { files: { "a/f.txt": "held" }, prepare: async (root) => utimes(path.join(root, "a", "f.txt"), mtime, mtime) });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.send({ id: "ICANHAZ", path: "/a/f.txt", options: new Map(), cache: new Map([["f.txt", formatCacheEntry({ size: 4, mtime: mtime.getTime() })]]) });
    await p.expect("ICANHAZ_OK");
    await p.nom(10_000);
    await p.expectSilence(500);
  });

  it("server - a file with an mtime before 1970, held as listed in the cache: nothing to send", async () => {
    // (Found by review: the negative mtime our client writes was refused, so the entry said nothing and
    // such a file went again, whole, at every subscription.)
    const mtime = new Date("1960-01-01T00:00:00Z");
    const { server, endpoint } = await startServer({}, { files: { "old.txt": "held" }, prepare: async (root) => utimes(path.join(root, "old.txt"), mtime, mtime) });
    await published(server, 1);
    const held = [...server.mounts[0]!.files.values()][0]!;
    expect(held.mtimeMs).toBeLessThan(0);
    const p = peer(endpoint);
    await p.open();
    await p.send({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map([["old.txt", formatCacheEntry({ size: 4, mtime: held.mtimeMs })]]) });
    await p.expect("ICANHAZ_OK");
    await p.nom(10_000);
    await p.expectSilence(500);
  });

  it("server - a cache entry for a name over 255 bytes carries its name (hex) under a numbered key; a hostile or garbled one is ignored", async () => {
    const { server, endpoint } = await startServer({}, { files: { "here.txt": "here" } });
    await published(server, 1);
    const long = `${"x".repeat(200)}/${"y".repeat(100)}.txt`;
    const p = peer(endpoint);
    await p.open();
    const cache = new Map([
      // Held by the client, gone from the server: a delete is due.
      [`${LONG_NAME_KEY}0`, formatCacheEntry({ size: 5, mtime: 1, name: long })],
      // Hostile: a name leading out of the path, an empty one, one not hex, one not UTF-8.
      [`${LONG_NAME_KEY}1`, formatCacheEntry({ size: 5, mtime: 1, name: "../../etc/passwd" })],
      [`${LONG_NAME_KEY}2`, "fmq1;size=5;name="],
      [`${LONG_NAME_KEY}3`, "fmq1;size=5;name=zz"],
      [`${LONG_NAME_KEY}4`, "fmq1;size=5;name=ff"],
      [`${LONG_NAME_KEY}5`, "not ours"],
    ]);
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", "verify,delta,single"]]), cache });
    await p.expect("ICANHAZ_OK");
    await p.nom(1024 * 1024);
    const got = [await p.expect("CHEEZBURGER"), await p.expect("CHEEZBURGER")];
    expect(got.map((m) => [m.operation, m.filename]).sort()).toEqual([
      [Operation.CREATE, "/here.txt"],
      [Operation.DELETE, `/${long}`],
    ]);
    await p.expectSilence(300);
  });

  it("server - a publisher that has just started (files seen, not yet stable) neither deletes what a returning client holds nor re-sends it; a partial is resumed", async () => {
    const mtime = new Date("2020-01-01T00:00:00Z");
    const whole = randomBytes(3000);
    const big = randomBytes(3 * 1024 * 1024);
    // (A quiet period of 5 s: the subscription below comes within it even when starting up is slow.)
    const { server, endpoint, dir } = await startServer(
      { stableMs: 5000 },
      {
        files: { "held.txt": whole, "big.bin": big },
        prepare: async (root) => {
          for (const name of ["held.txt", "big.bin"]) await utimes(path.join(root, name), mtime, mtime);
        },
      },
    );
    const p = peer(endpoint);
    await p.open();
    const cache = new Map([
      ["held.txt", formatCacheEntry({ size: whole.length, mtime: mtime.getTime(), hash: (await fingerprintFile(path.join(dir, "held.txt"))).hash })],
      ["big.bin", formatCacheEntry({ partial: { length: 1024 * 1024 + 10, size: big.length, mtime: mtime.getTime() } })],
      ["gone.txt", formatCacheEntry({ size: 5, mtime: 1 })],
    ]);
    // Subscribed while both files are still in their quiet period.
    expect(server.mounts[0]!.files.size).toBe(0);
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", "verify,delta,single"]]), cache });
    await p.expect("ICANHAZ_OK");
    await p.nom(64 * 1024 * 1024);
    // Only the file that exists nowhere is deleted.
    const deleted = await p.expect("CHEEZBURGER");
    expect([deleted.operation, deleted.filename]).toEqual([Operation.DELETE, "/gone.txt"]);
    await published(server, 2);
    // Then the partial resumes from its last whole block; held.txt is not sent at all.
    const first = await p.expect("CHEEZBURGER");
    expect([first.filename, first.offset]).toEqual(["/big.bin", BigInt(1024 * 1024)]);
    let received = first.chunk.length;
    for (let last = first; last.eof === 0; ) {
      last = await p.expect("CHEEZBURGER");
      expect(last.filename).toBe("/big.bin");
      received += last.chunk.length;
    }
    expect(received).toBe(2 * 1024 * 1024);
    await p.expectSilence(300);
  });

  it("server - a partial listed by its blocks (pblocks) to a publisher that has just started, its file not yet stable, is resumed after the blocks that still match once the file is published: not sent whole", async () => {
    // (A subscriber restarted lists so a partial whose resume it refused; a publisher restarted meanwhile
    // sees the file and waits for it to be stable. The listing was dropped then, and the file came whole.)
    const big = randomBytes(3 * 1024 * 1024);
    const { server, endpoint } = await startServer({ stableMs: 5000 }, { files: { "disk.img": big } });
    // What the client holds: the file's first block, then a block of other bytes (written over since).
    const held = Buffer.concat([big.subarray(0, 1024 * 1024), randomBytes(1024 * 1024)]);
    const hasher = new BlockHasher(await xxh());
    hasher.update(held);
    const p = peer(endpoint);
    await p.open();
    expect(server.mounts[0]!.files.size).toBe(0);
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", "verify,single"]]), cache: new Map([["disk.img", formatCacheEntry({ pblocks: hasher.wholeBlocks() })]]) });
    await p.expect("ICANHAZ_OK");
    await p.nom(64 * 1024 * 1024);
    await published(server, 1);
    const first = await p.expect("CHEEZBURGER");
    expect([first.filename, first.offset, first.headers.get("X-FMQ-Prefix")]).toEqual(["/disk.img", BigInt(1024 * 1024), await treeHash(big.subarray(0, 1024 * 1024))]);
    let received = first.chunk.length;
    for (let last = first; last.eof === 0; ) {
      last = await p.expect("CHEEZBURGER");
      received += last.chunk.length;
    }
    expect(received).toBe(2 * 1024 * 1024);
  });

  it("server - peers that say OHAI while the server closes get no session: none is said connected once close() is called, none is left after it", async () => {
    // (A review: close() waits for the connections and the mounts to close before the socket does, and the
    // read loop went on meanwhile: an OHAI then made a connection nothing closed, with its file open.)
    const { server, endpoint } = await startServer({}, { files: { "a.txt": "a" } });
    await published(server, 1);
    let closing = false;
    let connectedWhileClosing = 0;
    server.on("connected", () => void (closing && connectedWhileClosing++));
    const ps = Array.from({ length: 40 }, () => peer(endpoint));
    // Every peer's connection made first (an OHAI answered), then a second OHAI each, from new sockets.
    await Promise.all(ps.slice(0, 5).map((p) => p.open()));
    const late = ps.slice(5);
    const saying = Promise.all(late.map(async (p, i) => (await new Promise((r) => setTimeout(r, i)), p.ohai())));
    await new Promise((r) => setTimeout(r, 5));
    closing = true;
    await server.close();
    await saying;
    expect(connectedWhileClosing).toBe(0);
    expect(server.clients).toBe(0);
  });

  it("server - block hashes a client lists for files not yet published (of a version held, or of a partial) are kept only as many as the file has: not 32 KiB each for what it claims is a 4 GiB file", async () => {
    // (A review: kept up to the size the client claimed; 200 small files waiting at a start, each listed
    // with 4,000 block hashes, were 6.4 MB kept for one client until they were published.)
    const files = Object.fromEntries(Array.from({ length: 200 }, (_, i) => [`f${i}.txt`, "small"]));
    const { server, endpoint } = await startServer({ stableMs: 60_000, maxMessageSize: 32 * 1024 * 1024, maxPendingBytes: 64 * 1024 * 1024 }, { files });
    await waitFor(() => server.mounts[0]!.waiting("/f199.txt"), "the files seen, waiting", DEADLINE);
    const blocks = "0123456789abcdef".repeat(4000);
    const entry = formatCacheEntry({ size: 4 * 1024 ** 3, mtime: 1, hash: "0123456789abcdef", blocks: Buffer.from(blocks, "hex") });
    // (And a partial's, for half of them: see the test above.)
    const partialEntry = formatCacheEntry({ pblocks: Buffer.from(blocks, "hex") });
    const heldNow = () => {
      gc();
      gc();
      const { heapUsed, arrayBuffers, external } = process.memoryUsage();
      return heapUsed + arrayBuffers + external;
    };
    const p = peer(endpoint);
    await p.open();
    const base = heldNow();
    await p.send({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map(Object.keys(files).map((name, i) => [name, i % 2 === 0 ? entry : partialEntry])) });
    await p.expect("ICANHAZ_OK");
    // The message itself (13 MB) is let go once handled: what stays is what the session keeps.
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    expect(heldNow() - base).toBeLessThan(2 * 1024 * 1024);
    expect(server.mounts[0]!.files.size).toBe(0);
  });

  it("server - a plan for a file the client listed before it was published, still being made when a new session begins (OHAI), is dropped: nothing of it goes to that session", async () => {
    // (A review: it was queued into the new session, planned from what the old one's client held; here
    // the new session subscribes to nothing, and got the file all the same.)
    const { server, endpoint } = await startServer({ stableMs: 3000 }, { files: { "held.txt": "content" } });
    const { sha1, release, restore } = holdSha1s();
    try {
      const p = peer(endpoint);
      await p.open();
      // Listed (by a SHA-1 that is not its content's) while the file is in its quiet period: the plan is
      // made when it is published.
      expect(server.mounts[0]!.files.size).toBe(0);
      await p.send({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map([["held.txt", "0123456789ABCDEF0123456789ABCDEF01234567"]]) });
      await p.expect("ICANHAZ_OK");
      await published(server, 1);
      await waitFor(() => sha1.mock.calls.length > 0, "the plan asking for a SHA-1", DEADLINE);
      await p.open();
      release();
      await p.nom(1_000_000);
      await p.expectSilence(500);
    } finally {
      restore();
    }
  });

  it("server - a partial is resumed only in the very file it is of (its X-FMQ-Version): not in one renamed over it with the same size and mtime; a chmod changes nothing", async () => {
    const MiB = 1024 * 1024;
    const mtime = new Date("2020-01-01T00:00:00Z");
    const big = randomBytes(3 * MiB);
    const setMtime = async (file: string) => utimes(file, mtime, mtime);
    const { server, endpoint, dir } = await startServer({}, { files: { "big.bin": big }, prepare: async (root) => setMtime(path.join(root, "big.bin")) });
    await published(server, 1);
    /** A session of a client holding a partial of big.bin (a block and a bit) with `tag`: where the file starts, its tag, the bytes sent. */
    const resume = async (tag: string | undefined) => {
      const p = peer(endpoint);
      await p.open();
      const partial = { length: MiB + 10, size: big.length, mtime: mtime.getTime(), ...(tag !== undefined ? { tag } : {}) };
      await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", "verify,delta,single"]]), cache: new Map([["big.bin", formatCacheEntry({ partial })]]) });
      await p.expect("ICANHAZ_OK");
      await p.nom(64 * MiB);
      const first = await p.expect("CHEEZBURGER");
      let bytes = first.chunk.length;
      for (let last = first; last.eof === 0; bytes += last.chunk.length) last = await p.expect("CHEEZBURGER");
      return { offset: first.offset, tag: first.headers.get("X-FMQ-Version"), bytes };
    };
    /** Once the mount has taken what is now at big.bin. */
    const republished = async () => {
      const now = await stat(path.join(dir, "big.bin"));
      await waitFor(() => server.mounts[0]!.files.get("/big.bin")?.ctimeMs === now.ctimeMs, "the change published", DEADLINE);
    };
    // A partial listed without a tag (by an older client) is resumed, as before; the first chunk says the tag.
    const untagged = await resume(undefined);
    const tag = untagged.tag;
    expect(tag).toMatch(/^\d+$/);
    expect(untagged).toEqual({ offset: BigInt(MiB), tag, bytes: 2 * MiB });
    expect(await resume(tag)).toEqual({ offset: BigInt(MiB), tag, bytes: 2 * MiB });
    expect(await resume("1")).toEqual({ offset: 0n, tag, bytes: 3 * MiB });
    // Not a change of content, nor is a new hard link (a snapshot backup makes one of every file): still resumed.
    await chmod(path.join(dir, "big.bin"), 0o600);
    await republished();
    expect(await resume(tag)).toEqual({ offset: BigInt(MiB), tag, bytes: 2 * MiB });
    await link(path.join(dir, "big.bin"), path.join(dir, ".snapshot"));
    await republished();
    expect(await resume(tag)).toEqual({ offset: BigInt(MiB), tag, bytes: 2 * MiB });
    // Another file renamed over it, with the size and mtime of the one the partial is of (as rsync -a would).
    // (Made under a hidden name: not published itself.)
    await writeFile(path.join(dir, ".big.new"), randomBytes(3 * MiB));
    await setMtime(path.join(dir, ".big.new"));
    await rename(path.join(dir, ".big.new"), path.join(dir, "big.bin"));
    await republished();
    const after = await resume(tag);
    expect(after.tag).not.toBe(tag);
    expect(after).toEqual({ offset: 0n, tag: after.tag, bytes: 3 * MiB });
  });

  it("server - a partial of another file (by its tag) is not resumed, and the version the client holds whole still gives a delta", async () => {
    const MiB = 1024 * 1024;
    // The client holds an older version whole, and a partial of a version since replaced by another with
    // its size and mtime: that one differs from the version held in one block of 16.
    const held = randomBytes(16 * MiB);
    const now = Buffer.from(held);
    randomBytes(MiB).copy(now, 5 * MiB);
    const mtime = new Date("2020-01-01T00:00:00Z");
    const { server, endpoint } = await startServer({}, { files: { "big.bin": now }, prepare: async (root) => utimes(path.join(root, "big.bin"), mtime, mtime) });
    await published(server, 1);
    const heldFile = path.join(await tempDir("fmq-held-"), "held.bin");
    await writeFile(heldFile, held);
    const { hash, blocks } = await fingerprintFile(heldFile);
    const entry = formatCacheEntry({ size: held.length, mtime: 1_600_000_000_000, hash, blocks, partial: { length: 2 * MiB, size: now.length, mtime: mtime.getTime(), tag: "1" } });
    const p = peer(endpoint);
    await p.open();
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", "verify,delta,single"]]), cache: new Map([["big.bin", entry]]) });
    await p.expect("ICANHAZ_OK");
    await p.nom(64 * MiB);
    const first = await p.expect("CHEEZBURGER");
    let bytes = first.chunk.length;
    for (let last = first; last.eof === 0; bytes += last.chunk.length) last = await p.expect("CHEEZBURGER");
    // (Not a resume of the partial, nor the whole file: the version held whole is what the blocks go on.)
    expect([first.headers.get("X-FMQ-Base"), first.offset, bytes]).toEqual([hash, BigInt(5 * MiB), MiB]);
  });

  // --- found by a review of the publisher (2026-12-03) ---------------------------------------------

  it("server - a file deleted mid-transfer stops there: an eof chunk marked changed (to a client that says verify) or a plain one (plain), then its delete, once, not the rest of the file", async () => {
    const MiB = 1024 * 1024;
    const size = 64 * MiB;
    const { server, endpoint, dir } = await startServer({}, { prepare: async (root) => {
      const handle = await open(path.join(root, "big.bin"), "w");
      await handle.truncate(size);
      await handle.close();
    } });
    await published(server, 1);
    const verify = peer(endpoint);
    await verify.open();
    await subscribeWithCaps(verify, "verify");
    const plain = peer(endpoint);
    await plain.open();
    await plain.icanhaz("/");
    await plain.expect("ICANHAZ_OK");
    for (const p of [verify, plain]) {
      await p.nom(2 * MiB);
      let got = 0;
      while (got < 2 * MiB) got += (await p.expect("CHEEZBURGER")).chunk.length;
    }
    await rm(path.join(dir, "big.bin"));
    await waitFor(() => server.mounts[0]!.files.size === 0, "the delete seen by the mount", DEADLINE);
    // Credit for all the rest: what comes before the delete is what the server still sent of a file the
    // client will throw away.
    const after = async (p: RawPeer): Promise<{ bytes: number; ends: Cheezburger[] }> => {
      await p.nom(size);
      let bytes = 0;
      const ends: Cheezburger[] = [];
      for (;;) {
        const m = await p.expect("CHEEZBURGER");
        if (m.operation === Operation.DELETE) return { bytes, ends };
        if (m.eof === 1) ends.push(m);
        bytes += m.chunk.length;
      }
    };
    const toVerify = await after(verify);
    expect(toVerify.bytes).toBeLessThanOrEqual(16 * MiB);
    expect(toVerify.ends.length).toBe(1);
    expect(toVerify.ends[0]!.headers.get("X-FMQ-Status")).toBe("changed");
    expect(toVerify.ends[0]!.offset).toBe(BigInt(2 * MiB + toVerify.bytes));
    const toPlain = await after(plain);
    expect(toPlain.bytes).toBeLessThanOrEqual(16 * MiB);
    // (The C reference client writes every chunk into the file it has open and closes it only on an empty
    // chunk: without one it wrote the next file into this one. An interop review.)
    expect(toPlain.ends.length).toBe(1);
    expect(toPlain.ends[0]!.chunk.length).toBe(0);
    expect(toPlain.ends[0]!.headers.size).toBe(0);
    expect(toPlain.ends[0]!.offset).toBe(BigInt(2 * MiB + toPlain.bytes));
    // The queued delete only, not one more of our own: what follows it is the answer to a HUGZ.
    for (const p of [verify, plain]) {
      await p.send({ id: "HUGZ" });
      await p.expect("HUGZ_OK");
    }
  });

  /** A reference-like peer: a plain subscription, and the chunks of one file at a time until its empty chunk. */
  async function plainChunks(p: RawPeer, until: (m: Cheezburger) => boolean): Promise<Cheezburger[]> {
    const got: Cheezburger[] = [];
    let open: string | undefined;
    for (;;) {
      const m = await p.expect("CHEEZBURGER");
      got.push(m);
      if (m.operation === Operation.CREATE) {
        // What the reference client would do: write it into the file it has open.
        if (open !== undefined && open !== m.filename) throw new Error(`a chunk of ${m.filename} while ${open} is open: the reference would write it into ${open}`);
        open = m.chunk.length === 0 ? undefined : m.filename;
      } else if (open !== undefined) throw new Error(`a delete of ${m.filename} while ${open} is open`);
      if (until(m)) return got;
    }
  }

  it("server - to a plain client, a file replaced mid-transfer ends with an empty chunk where it stopped and a delete, then the new version goes whole from an empty file", async () => {
    const MiB = 1024 * 1024;
    const { server, endpoint, dir } = await startServer({}, { prepare: async (root) => {
      await writeRandomFile(path.join(root, "big.bin"), 32 * MiB);
    } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(2 * MiB);
    let got = 0;
    while (got < 2 * MiB) got += (await p.expect("CHEEZBURGER")).chunk.length;
    const replacement = randomBytes(3 * MiB + 5);
    await writeFile(path.join(dir, "new.tmp"), replacement);
    const { rename } = await import("node:fs/promises");
    await rename(path.join(dir, "new.tmp"), path.join(dir, "big.bin"));
    await waitFor(() => server.mounts[0]!.files.get("/big.bin")?.size === replacement.length, "the new version published", DEADLINE);
    await p.nom(64 * MiB);
    const rest = await plainChunks(p, (m) => m.operation === Operation.CREATE && m.chunk.length === 0 && m.offset === BigInt(replacement.length));
    const end = rest.findIndex((m) => m.chunk.length === 0);
    expect(rest[end]!.offset).toBe(BigInt(got + rest.slice(0, end).reduce((n, m) => n + m.chunk.length, 0)));
    expect(rest[end + 1]!.operation).toBe(Operation.DELETE);
    const again = rest.slice(end + 2);
    expect(again[0]!.offset).toBe(0n);
    expect(sha256(Buffer.concat(again.map((m) => m.chunk)))).toBe(sha256(replacement));
  });

  it("server - to a plain client, a file whose read fails mid-transfer ends with an empty chunk where it stopped and a delete; the next file follows on its own", async () => {
    const MiB = 1024 * 1024;
    const { server, endpoint, dir } = await startServer({}, { prepare: async (root) => {
      await writeRandomFile(path.join(root, "a.bin"), 8 * MiB);
    } });
    await published(server, 1);
    const { FileCursor } = await import("../../src/server/file-cursor.js");
    const real = FileCursor.prototype.next;
    let calls = 0;
    const next = vi.spyOn(FileCursor.prototype, "next").mockImplementation(function (this: { vpath: string }, credit: number) {
      if (this.vpath === "/a.bin" && ++calls > 2) return Promise.reject(Object.assign(new Error("EIO: i/o error, read"), { code: "EIO" }));
      return real.call(this as never, credit);
    });
    try {
      const p = peer(endpoint);
      await p.open();
      await p.icanhaz("/");
      await p.expect("ICANHAZ_OK");
      await p.nom(64 * MiB);
      // b.bin made once a.bin is under way, so that it is the next file. (Both published from the start,
      // either could go first: one full run of three here sent b.bin first and ended the test before a.bin.)
      const first = await p.expect("CHEEZBURGER");
      expect(first.filename).toBe("/a.bin");
      await writeRandomFile(path.join(dir, "b.bin"), 3 * MiB + 7);
      const got = [first, ...(await plainChunks(p, (m) => m.filename === "/b.bin" && m.chunk.length === 0))];
      const ofA = got.filter((m) => m.filename === "/a.bin");
      const deleted = ofA.findIndex((m) => m.operation === Operation.DELETE);
      expect(deleted).toBeGreaterThan(1);
      expect(ofA[deleted - 1]!.chunk.length).toBe(0);
      expect(ofA[deleted - 1]!.offset).toBe(BigInt(ofA.slice(0, deleted).reduce((n, m) => n + m.chunk.length, 0)));
      expect(ofA.length).toBe(deleted + 1);
      const ofB = got.filter((m) => m.filename === "/b.bin");
      expect(sha256(Buffer.concat(ofB.map((m) => m.chunk)))).toBe(await sha256File(path.join(dir, "b.bin")));
    } finally {
      next.mockRestore();
    }
  });

  it("server - a client that grants a large window, then a NOM per chunk, is not dropped for too many messages: NOMs waiting behind the transfer are folded into one", async () => {
    // (A review: with the defaults, a raw peer granting 300 MiB at once, then 1 MiB back per chunk, had
    // 256 NOMs waiting behind the transfer after 262 MiB and was dropped. The same with a lower
    // max-pending-messages, to move less data.)
    const MiB = 1024 * 1024;
    const size = 64 * MiB;
    const { server, endpoint } = await startServer({ maxPendingMessages: 16 }, { prepare: async (root) => {
      const handle = await open(path.join(root, "big.bin"), "w");
      await handle.truncate(size);
      await handle.close();
    } });
    await published(server, 1);
    const p = peer(endpoint);
    await p.open();
    await p.icanhaz("/");
    await p.expect("ICANHAZ_OK");
    await p.nom(48 * MiB);
    let got = 0;
    for (;;) {
      const m = await p.next();
      if (m?.id !== "CHEEZBURGER") throw new Error(`expected the file, got ${m ? describeMessage(m) : "nothing"} after ${got} bytes`);
      got += m.chunk.length;
      if (m.eof === 1) break;
      await p.nom(m.chunk.length);
    }
    expect(got).toBe(size);
    expect(server.clients).toBe(1);
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
  });

  it("server - HUGZ is answered while a subscription's plan waits for the SHA-1s its cache lists (RFC 35)", async () => {
    // (A review: 5 files of 200 MiB listed by SHA-1, the first HUGZ-OK 2.3 s after the ICANHAZ; our client
    // starts a new session after 5 s of silence. Here the SHA-1s are held until the HUGZ is answered.)
    const { server, endpoint } = await startServer({}, { files: { "a.bin": "a", "b.bin": "b" } });
    await published(server, 2);
    const { sha1, release, restore } = holdSha1s();
    try {
      const p = peer(endpoint);
      await p.open();
      const digest = "0123456789ABCDEF0123456789ABCDEF01234567";
      await p.send({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map([["a.bin", digest], ["b.bin", digest]]) });
      await p.expect("ICANHAZ_OK");
      await waitFor(() => sha1.mock.calls.length > 0, "the plan asking for a SHA-1", DEADLINE);
      await p.send({ id: "HUGZ" });
      // Generous for a loaded machine; before, it never came while the SHA-1s were held.
      await p.expect("HUGZ_OK", 3000);
      release();
      // The plan goes on: neither SHA-1 matched, both files come.
      await p.nom(1000);
      const names = new Set<string>();
      while (names.size < 2) names.add((await p.expect("CHEEZBURGER")).filename);
      expect([...names].sort()).toEqual(["/a.bin", "/b.bin"]);
    } finally {
      restore();
    }
  });

  it("server - ICANHAZ messages being handled (plans waiting for SHA-1s) count against max-pending-total-bytes: beyond it, clients are dropped", async () => {
    // (A review: 8 peers each sending one 16 MiB ICANHAZ whose plan waited for SHA-1s of big files, with
    // max-pending-total-bytes 32 MiB: nothing counted while they were handled, nobody was dropped, the
    // heap grew by 124 MiB. The same with messages of 3 MiB and a bound of 8 MiB, the SHA-1s held.)
    const MiB = 1024 * 1024;
    const { server, endpoint, warnings } = await startServer(
      { maxMessageSize: 4 * MiB, maxPendingBytes: 4 * MiB, maxPendingTotalBytes: 8 * MiB },
      { files: { "a.bin": "a", "b.bin": "b" } },
    );
    await published(server, 2);
    const { sha1, restore } = holdSha1s();
    try {
      const padding = "x".repeat(64 * 1024);
      const options = new Map(Array.from({ length: 48 }, (_, i) => [`pad-${i}`, padding] as [string, string]));
      const digest = "0123456789ABCDEF0123456789ABCDEF01234567";
      const cache = new Map([["a.bin", digest], ["b.bin", digest]]);
      const ps = Array.from({ length: 8 }, () => peer(endpoint));
      const heldNow = () => {
        gc();
        gc();
        const { heapUsed, arrayBuffers } = process.memoryUsage();
        return heapUsed + arrayBuffers;
      };
      const base = heldNow();
      let most = 0;
      for (const p of ps) {
        await p.open();
        await p.send({ id: "ICANHAZ", path: "/", options, cache });
        // Each one's plan under way (waiting for its SHA-1s) before the next comes.
        const calls = sha1.mock.calls.length;
        await waitFor(() => sha1.mock.calls.length > calls || warnings.some((w) => /max-pending-total-bytes/.test(w)), "the plan waiting, or a drop", DEADLINE);
        most = Math.max(most, server.pendingBytes);
      }
      await waitFor(() => warnings.some((w) => /more than max-pending-total-bytes/.test(w)), "a client dropped for max-pending-total-bytes", DEADLINE);
      expect(most).toBeLessThanOrEqual(8 * MiB);
      expect(server.pendingBytes).toBeGreaterThan(0);
      expect(server.pendingBytes).toBeLessThanOrEqual(8 * MiB);
      expect(server.clients).toBeLessThan(8);
      // And the plans of those dropped ended, letting their messages go, though the SHA-1s they waited
      // for are not there yet: the server holds about what still counts (before: 3 MiB more each).
      expect(heldNow() - base).toBeLessThan(server.pendingBytes + 8 * MiB);
    } finally {
      restore();
    }
    // Once the plans end, nothing is held for them.
    await waitFor(() => server.pendingBytes === 0, "what the plans held let go", DEADLINE);
  });

  /**
   * A server of a 64 MiB sparse file in chunks of 256 KiB (libzmq's 64 for each peer, and the kernel's
   * buffers, fill long before the file ends), whose peer timeout of 2 s has the kernel close a connection
   * that takes nothing at 4 s, well after our drop, even on a loaded machine.
   */
  async function serverForClientsThatStopReading() {
    const setup = await startServer({ expiryMs: 60_000, peerTimeoutMs: 2000, chunkSize: 256 * 1024 }, {
      prepare: async (root) => {
        const handle = await open(path.join(root, "big.bin"), "w");
        await handle.truncate(64 * 1024 * 1024);
        await handle.close();
      },
    });
    await published(setup.server, 1);
    return setup;
  }

  it("server - clients dropped for not reading, which keep talking (HUGZ), have their connections closed (TCP_MAXRT): libzmq does not go on holding their pipes", async () => {
    // (A review: a ROUTER cannot close one peer's connection, and a peer that sends HUGZ passes the
    // heartbeat check: 3 such peers, dropped, kept 190 MiB in libzmq and the kernel until they left.)
    const { server, warnings, endpoint } = await serverForClientsThatStopReading();
    const hung = await Promise.all([0, 1, 2].map(() => hungClient(endpoint, 2n ** 40n)));
    const talking = setInterval(() => {
      for (const socket of hung) void socket.send(encode({ id: "HUGZ" })).catch(() => undefined);
    }, 500);
    try {
      await waitFor(() => warnings.filter((w) => /has not read for \d+ s; dropped$/.test(w)).length === 3, "the three dropped", DEADLINE);
      expect(server.clients).toBe(0);
      // Dropped, and counted as still connected until libzmq reports the close: the kernel's, at twice
      // peer-timeout-ms after they stopped taking data. (Without it they stayed until they left, and are
      // forgotten 16 s after the drop here whatever happens: the deadline is below that.)
      await waitFor(() => server.droppedStillConnected === 0, "their connections closed", 10_000);
    } finally {
      clearInterval(talking);
    }
  });

  it("server - a client dropped for not reading that sends an empty message (what libzmq's notice of a close looks like) is still counted while its connection stands, and asked twice whether it is there; its real close is seen at once", async () => {
    // (A review: the empty message took it out of the count, its full pipe still held in libzmq, and a
    // peer could do so again and again past max-clients.)
    const { server, warnings, endpoint } = await serverForClientsThatStopReading();
    const hung = await hungClient(endpoint, 2n ** 40n);
    await waitFor(() => warnings.some((w) => /has not read for \d+ s; dropped$/.test(w)), "the client dropped", DEADLINE);
    expect(server.droppedStillConnected).toBe(1);
    await hung.send(Buffer.alloc(0));
    // The server asks whether it is still there: an RTFM, behind the chunks its pipe held. Read to it.
    hung.receiveTimeout = DEADLINE;
    for (;;) {
      const result = decodeFrames(await hung.receive());
      if (result.ok && result.message.id === "RTFM") {
        expect(result.message.reason).toBe("empty message");
        break;
      }
    }
    // And once more, a moment later: libzmq hands over its notice of a real close before it takes the
    // peer's pipe away, and an RTFM sent in between fails nothing (the peer then stayed counted until it
    // was forgotten: this test failed once in CI so).
    const again = decodeFrames(await hung.receive());
    expect(again.ok && again.message.id === "RTFM" && again.message.reason).toBe("empty message");
    expect(server.droppedStillConnected).toBe(1);
    // Closed for real: forgotten at once (it would be, whatever happens, 16 s after the drop).
    hung.close();
    await waitFor(() => server.droppedStillConnected === 0, "its close seen", 5000);
  });

  it("server - messages of the protocol from a peer without a session get RTFM a few times a minute, as garbage does, not one each", async () => {
    // (A review: 100,000 HUGZ from one peer were answered by 61,000 RTFM, a connection made and ended for each.)
    const { server, endpoint } = await startServer({}, { files: { "a.txt": "a" } });
    const peer = new Dealer({ linger: 0 });
    sockets.push(peer);
    peer.connect(endpoint);
    for (let i = 0; i < 100; i++) await peer.send(encode({ id: "HUGZ" }));
    // An OHAI after them opens a session: its OHAI-OK comes after every RTFM the server sent.
    await peer.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
    peer.receiveTimeout = DEADLINE;
    const replies: string[] = [];
    for (;;) {
      const result = decodeFrames(await peer.receive());
      if (!result.ok) continue;
      if (result.message.id === "OHAI_OK") break;
      replies.push(result.message.id === "RTFM" ? result.message.reason : result.message.id);
    }
    expect(replies.length).toBeGreaterThan(0);
    expect(replies.length).toBeLessThanOrEqual(16);
    expect(new Set(replies)).toEqual(new Set(["no session (the server restarted or dropped it): unexpected HUGZ"]));
    expect(server.clients).toBe(1);
  });

  it("server - what a client's cache says it holds costs the server what the README says (8 bytes of block hash per MiB, a short hash), not the values it came in", async () => {
    // (A review: the hash kept was a slice of the value, which kept all of it, up to 64 KiB; the block
    // hashes were kept as listed, however many. 100 files of 2 MiB, each listed with 4,000 block hashes.)
    const MiB = 1024 * 1024;
    const count = 100;
    const { server, endpoint, dir } = await startServer({ hashAhead: false }, {
      prepare: async (root) => {
        for (let i = 0; i < count; i++) {
          const handle = await open(path.join(root, `f${i}.bin`), "w");
          await handle.truncate(2 * MiB);
          await handle.close();
        }
      },
    });
    await published(server, count);
    const cache = new Map<string, string>();
    for (let i = 0; i < count; i++) {
      const { mtimeMs } = await stat(path.join(dir, `f${i}.bin`));
      const hash = i.toString(16).padStart(16, "0");
      cache.set(`f${i}.bin`, formatCacheEntry({ size: 2 * MiB, mtime: mtimeMs, hash, blocks: Buffer.alloc(8 * 4000, i) }));
    }
    const p = peer(endpoint);
    await p.open();
    const held = () => {
      // (Twice: memory outside the heap a first collection frees is counted until a second.)
      gc();
      gc();
      const { heapUsed, arrayBuffers } = process.memoryUsage();
      return heapUsed + arrayBuffers;
    };
    const before = held();
    const caughtUp = nextEvent(server, "caught-up", () => true, DEADLINE);
    await p.send({ id: "ICANHAZ", path: "/", options: new Map([["X-FMQ-Caps", "verify,delta"]]), cache });
    await p.expect("ICANHAZ_OK");
    await caughtUp;
    expect(server.holdings).toBe(count);
    // (The read loop holds the last message received until the next: one more, and it is let go.)
    await p.send({ id: "HUGZ" });
    await p.expect("HUGZ_OK");
    // 6.4 MB of values came; about 100 x 300 bytes are held (before: 9.6 MB).
    expect(held() - before).toBeLessThan(2 * MiB);
  });
});
