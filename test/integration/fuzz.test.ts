// No frame kills the server. fast-check drives hostile peers against a running server: random bytes,
// mutated golden frames (fixtures/golden-frames.txt), multi-frame messages, valid commands out of order,
// raw ZMTP garbage on TCP, peers that never read. Meanwhile a legitimate client receives a live tree,
// which must arrive intact (sha256), and a fresh peer must always get OHAI-OK.
//
// FMQ_FUZZ_RUNS sets the number of runs of the main property (default 1,000: a few seconds in CI); e.g.
// FMQ_FUZZ_RUNS=20000 npx vitest run test/integration/fuzz.test.ts for a long soak.

import { randomBytes } from "node:crypto";
import { connect } from "node:net";
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Dealer } from "zeromq";
import { goldenFrames } from "../../fixtures/frames.js";
import { Client } from "../../src/client/client.js";
import { encode } from "../../src/protocol/codec.js";
import { MessageId, type Message } from "../../src/protocol/messages.js";
import { Server } from "../../src/server/server.js";
import { treeHashes, writeRandomFile, writeTree } from "../helpers/files.js";
import { freePort } from "../helpers/net.js";
import { RawPeer } from "../helpers/raw-peer.js";
import { tempDir } from "../helpers/tmp.js";
import { nextEvent, waitFor } from "../helpers/wait.js";

const RUNS = Number(process.env.FMQ_FUZZ_RUNS ?? 1000);
const PEERS = 6;

// --- generators ------------------------------------------------------------------------------------

const u64 = fc.oneof(fc.constantFrom(0n, 1n, 2n ** 32n, 2n ** 63n, 2n ** 64n - 1n), fc.bigInt({ min: 0n, max: 2n ** 64n - 1n }));
const text = fc.oneof(fc.string({ maxLength: 40 }), fc.string({ unit: "binary", maxLength: 300 }));
const vpath = fc.oneof(
  fc.constantFrom("/", "/data", "/data/", "/live", "/nope", "", "..", "/../etc", "/a/./b", "/a//b", "/\0", "\\x", "/data/r1.bin"),
  fc.string({ maxLength: 60 }).map((s) => `/${s}`),
  fc.string({ unit: "binary", maxLength: 5000 }),
);
const dictionary = fc.array(fc.tuple(fc.oneof(fc.constantFrom("RESYNC", "X-FMQ-Caps", "a.txt", "data/r1.bin"), fc.string({ maxLength: 30 })), text), { maxLength: 6 }).map((entries) => new Map(entries));
const cacheValue = fc.oneof(text, fc.constantFrom("fmq1;size=1;mtime=1;hash=0", "fmq1;size=99999999999;partial=5;psize=1;pmtime=1", "DA39A3EE5E6B4B0D3255BFEF95601890AFD80709"));
const options = fc.oneof(dictionary, fc.constant(new Map([["RESYNC", "1"], ["X-FMQ-Caps", "verify,delta"]])));
const cache = fc.oneof(dictionary, fc.array(fc.tuple(fc.constantFrom("small.txt", "data/r1.bin", "data/r2.bin", "gone.txt"), cacheValue), { maxLength: 4 }).map((e) => new Map(e)));

/** Any message, valid or not for a client to send, in any order. */
const message: fc.Arbitrary<Message> = fc.oneof(
  { weight: 3, arbitrary: fc.constant<Message>({ id: "OHAI", protocol: "FILEMQ", version: 2 }) },
  fc.record({ id: fc.constant("OHAI" as const), protocol: fc.oneof(fc.constant("FILEMQ"), fc.string({ maxLength: 10 })), version: fc.integer({ min: 0, max: 0xffff }) }),
  { weight: 3, arbitrary: fc.record({ id: fc.constant("ICANHAZ" as const), path: vpath, options, cache }) },
  { weight: 3, arbitrary: fc.record({ id: fc.constant("NOM" as const), credit: fc.oneof(u64, fc.constant(1_000_000n)), sequence: u64 }) },
  fc.constant<Message>({ id: "HUGZ" }),
  fc.constant<Message>({ id: "KTHXBAI" }),
  fc.constant<Message>({ id: "OHAI_OK" }),
  fc.constant<Message>({ id: "ICANHAZ_OK" }),
  fc.constant<Message>({ id: "HUGZ_OK" }),
  fc.record({ id: fc.constant("SRSLY" as const), reason: fc.string({ maxLength: 50 }) }),
  fc.record({ id: fc.constant("RTFM" as const), reason: fc.string({ maxLength: 50 }) }),
  fc.record({
    id: fc.constant("CHEEZBURGER" as const),
    sequence: u64,
    operation: fc.integer({ min: 0, max: 255 }),
    filename: vpath,
    offset: u64,
    eof: fc.integer({ min: 0, max: 255 }),
    headers: dictionary,
    chunk: fc.uint8Array({ maxLength: 100 }),
  }),
);

/** One frame: an encoded message, random bytes, a mutated golden frame, or a bare header. */
const frame: fc.Arbitrary<Buffer> = fc.oneof(
  { weight: 4, arbitrary: message.map((m) => safeEncode(m)) },
  { weight: 2, arbitrary: fc.uint8Array({ maxLength: 400 }).map((b) => Buffer.from(b)) },
  {
    weight: 4,
    arbitrary: fc
      .tuple(fc.constantFrom(...goldenFrames.map((g) => g.bytes)), fc.array(fc.tuple(fc.constantFrom("flip", "truncate", "insert", "length", "id"), fc.nat(), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 4 }))
      .map(([golden, mutations]) => mutate(golden, mutations)),
  },
  fc.tuple(fc.constantFrom(...Object.values(MessageId), 0, 2, 3, 12, 127, 130, 255), fc.uint8Array({ maxLength: 20 })).map(([id, rest]) => Buffer.concat([Buffer.from([0xaa, 0xa3, id]), rest])),
  fc.constant(Buffer.alloc(0)),
);

/** A message on the wire: usually one frame, sometimes several (FILEMQ allows one). */
const wireMessage = fc.oneof({ weight: 6, arbitrary: frame.map((f) => [f]) }, { weight: 1, arbitrary: fc.array(frame, { minLength: 2, maxLength: 5 }) });

const step = fc.record({ peer: fc.nat({ max: PEERS - 1 }), frames: wireMessage });

function safeEncode(m: Message): Buffer {
  try {
    return encode(m);
  } catch {
    // Not encodable (a string over 255 bytes): send what a sloppy encoder would, a header and noise.
    return Buffer.concat([Buffer.from([0xaa, 0xa3, MessageId[m.id]]), randomBytes(8)]);
  }
}

function mutate(golden: Buffer, mutations: [string, number, number][]): Buffer {
  let b = Buffer.from(golden);
  for (const [kind, at, value] of mutations) {
    const i = b.length === 0 ? 0 : at % b.length;
    if (kind === "flip") b[i] = (b[i] ?? 0) ^ (value || 1);
    else if (kind === "truncate") b = b.subarray(0, i);
    else if (kind === "insert") b = Buffer.concat([b.subarray(0, i), Buffer.from([value]), b.subarray(i)]);
    else if (kind === "length" && b.length >= i + 4) b.writeUInt32BE([0xffffffff, 0x7fffffff, 0x10000, b.length][value % 4]!, i);
    else if (kind === "id" && b.length > 2) b[2] = value;
  }
  return b;
}

// --- the server under attack, and its one honest client ----------------------------------------------

let src: string;
let inbox: string;
let endpoint: string;
let port: number;
let server: Server;
let client: Client;
let warnings = 0;
const clientErrors: string[] = [];
let peers: RawPeer[] = [];
let deaf: Dealer;

beforeAll(async () => {
  // Shared by every test of the file (tempDir's are removed after each test).
  src = await mkdtemp(path.join(tmpdir(), "fmq-fuzz-src-"));
  inbox = await mkdtemp(path.join(tmpdir(), "fmq-fuzz-in-"));
  await writeTree(src, { "small.txt": "small\n", "empty.dat": "" });
  await writeRandomFile(path.join(src, "data/r1.bin"), 200_003);
  await writeRandomFile(path.join(src, "data/r2.bin"), 2 * 1024 * 1024 + 5);
  server = new Server({ stableMs: 20, chunkSize: 64 * 1024 });
  server.on("warning", () => warnings++);
  await server.publish(src, "/");
  port = await freePort();
  endpoint = await server.bind(`tcp://127.0.0.1:${port}`);
  client = new Client({ endpoint, inbox, heartbeatMs: 200, window: 1024 * 1024, slice: 256 * 1024 });
  client.on("error", (e) => clientErrors.push(e.message));
  if (process.env.FMQ_DEBUG) {
    for (const ev of ["connected", "disconnected", "delivered", "error", "subscribed"] as const) client.on(ev, (...a: unknown[]) => console.log("client", ev, a[0] instanceof Error ? a[0].message : JSON.stringify(a).slice(0, 200)));
    server.on("warning", (w) => console.log("warn", w.slice(0, 200)));
  }
  await client.subscribe("/");
  client.connect();
  peers = Array.from({ length: PEERS }, () => new RawPeer(endpoint, {}, true));
  // One peer that never reads anything.
  deaf = new Dealer({ linger: 0, receiveHighWaterMark: 1 });
  deaf.connect(endpoint);
});

afterAll(async () => {
  deaf?.close();
  await Promise.all(peers.map((p) => p.close()));
  await client?.close();
  await server?.close();
  for (const dir of [src, inbox]) if (dir) await rm(dir, { recursive: true, force: true });
});

/**
 * A brand-new peer gets OHAI-OK: the server is alive and serving. It then says KTHXBAI and
 * waits for the server to drop its session, so probes never count among the live sessions
 * (a silent close would leave each one until expiry, 60 s).
 */
let probes = 0;
async function probe(): Promise<void> {
  const routingId = `probe-${++probes}`;
  const p = new RawPeer(endpoint, { routingId });
  const key = Buffer.from(routingId).toString("hex");
  const gone = nextEvent<[string]>(server, "disconnected", (client) => client === key, 5000);
  gone.catch(() => undefined); // awaited below; rejects only at its deadline
  try {
    await p.send({ id: "OHAI", protocol: "FILEMQ", version: 2 });
    await p.waitFor("OHAI_OK", 5000);
    await p.send({ id: "KTHXBAI" });
    await gone;
  } finally {
    await p.close();
  }
}

async function converged(): Promise<void> {
  const want = await treeHashes(src);
  await waitFor(async () => {
    const got = await treeHashes(inbox);
    return got.size === want.size && [...want].every(([k, v]) => got.get(k) === v);
  }, "the honest client to hold the whole tree", 20_000, 50);
}

describe("fuzz", () => {
  it(`fuzz - ${RUNS} runs of hostile frames from ${PEERS} peers in any order: every peer is answered or ignored, the honest client gets every file intact`, async () => {
    let run = 0;
    let sent = 0;
    await fc.assert(
      fc.asyncProperty(fc.array(step, { minLength: 1, maxLength: 12 }), async (steps) => {
        run++;
        for (const { peer, frames } of steps) {
          await peers[peer]!.sendRaw(frames);
          sent++;
        }
        // The deaf peer talks too, and never listens.
        if (run % 7 === 0) await deaf.send(safeEncode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
        if (run % 11 === 0) await deaf.send(safeEncode({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() }));
        if (run % 13 === 0) await deaf.send(safeEncode({ id: "NOM", credit: 2n ** 40n, sequence: 0n }));
        // The tree changes while all this goes on.
        if (run % Math.max(1, Math.floor(RUNS / 6)) === 0) await writeTree(src, { [`live/f${run}.txt`]: randomBytes(1000 + run) });
        if (run % Math.max(1, Math.floor(RUNS / 4)) === 0) await probe();
      }),
      { numRuns: RUNS },
    );
    await probe();
    await converged();
    // Nothing the server sent failed to decode.
    expect(peers.map((p) => p.undecodable)).toEqual(peers.map(() => 0));
    expect(peers.reduce((n, p) => n + p.count, 0)).toBeGreaterThan(0);
    // Each hostile peer holds at most one session; the server keeps only what is live.
    expect(server.clients).toBeLessThanOrEqual(PEERS + 2);
    console.log(`fuzz: ${RUNS} runs, ${sent} hostile messages, ${warnings} warnings, ${server.clients} sessions at the end`);
  }, 600_000);

  it("fuzz - raw TCP garbage and hostile ZMTP framing (bad greetings, MORE frames, oversized lengths) never reach the honest client", async () => {
    const greeting = Buffer.concat([
      Buffer.from([0xff, 0, 0, 0, 0, 0, 0, 0, 1, 0x7f, 3, 0]),
      Buffer.from("NULL".padEnd(20, "\0")),
      Buffer.from([0]),
      Buffer.alloc(31),
    ]);
    const ready = (() => {
      const name = Buffer.from("\x05READY");
      const prop = Buffer.concat([Buffer.from([11]), Buffer.from("Socket-Type"), Buffer.from([0, 0, 0, 6]), Buffer.from("DEALER")]);
      const body = Buffer.concat([name, prop]);
      return Buffer.concat([Buffer.from([0x04, body.length]), body]);
    })();
    const zmtpFrame = fc
      .tuple(fc.constantFrom(0x00, 0x01, 0x02, 0x03, 0x04, 0x06, 0xff), fc.uint8Array({ maxLength: 200 }), fc.boolean())
      .map(([flags, body, lie]) => {
        const long = (flags & 0x02) !== 0;
        const size = lie ? 0xffff_ffff : body.length;
        const header = long ? Buffer.alloc(9) : Buffer.alloc(2);
        header[0] = flags;
        if (long) header.writeBigUInt64BE(BigInt(size), 1);
        else header[1] = Math.min(size, 255);
        return Buffer.concat([header, Buffer.from(body)]);
      });
    const stream = fc.oneof(
      fc.uint8Array({ maxLength: 500 }).map((b) => Buffer.from(b)),
      fc.array(zmtpFrame, { maxLength: 6 }).map((frames) => Buffer.concat([greeting, ready, ...frames])),
      fc.tuple(fc.nat({ max: greeting.length }), fc.uint8Array({ maxLength: 100 })).map(([cut, rest]) => Buffer.concat([greeting.subarray(0, cut), Buffer.from(rest)])),
    );
    await fc.assert(
      fc.asyncProperty(stream, async (bytes) => {
        await new Promise<void>((resolve) => {
          const socket = connect(port, "127.0.0.1", () => {
            socket.write(bytes, () => {
              setTimeout(() => socket.destroy(), 5);
            });
          });
          socket.on("error", () => resolve());
          socket.on("close", () => resolve());
        });
      }),
      { numRuns: Math.max(50, Math.floor(RUNS / 3)) },
    );
    await probe();
    await writeTree(src, { "after-tcp-garbage.txt": "still here\n" });
    await converged();
  });

  it("fuzz - a peer that subscribes, grants huge credit and never reads is dropped; its flood of HUGZ cannot grow the server", async () => {
    const dir = await tempDir("fmq-fuzz-deaf-");
    await writeRandomFile(path.join(dir, "big.bin"), 48 * 1024 * 1024);
    const local = new Server({ stableMs: 20, chunkSize: 256 * 1024, maxPendingMessages: 64, maxOutgoingMessages: 64 });
    const seen: string[] = [];
    local.on("warning", (w) => seen.push(w));
    try {
      await local.publish(dir, "/");
      const ep = await local.bind(`tcp://127.0.0.1:${await freePort()}`);
      await waitFor(() => local.mounts[0]!.files.size === 1, "published");
      const d = new Dealer({ linger: 0, receiveHighWaterMark: 1 });
      d.connect(ep);
      await d.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
      await d.send(encode({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() }));
      await d.send(encode({ id: "NOM", credit: 2n ** 40n, sequence: 0n }));
      const hugz = encode({ id: "HUGZ" });
      for (let i = 0; i < 2000 && !seen.some((w) => /dropped/.test(w)); i++) await d.send(hugz);
      await waitFor(() => seen.find((w) => /more than 64 messages waiting; dropped|does not read them; dropped/.test(w)), "the deaf peer dropped");
      await waitFor(() => local.clients === 0, "its session gone");
      d.close();
      // Everyone else is still served.
      const honestInbox = await tempDir("fmq-fuzz-honest-");
      const honest = new Client({ endpoint: ep, inbox: honestInbox, heartbeatMs: 200 });
      let delivered = 0;
      honest.on("delivered", () => delivered++);
      await honest.subscribe("/");
      honest.connect();
      await waitFor(() => delivered === 1, "the honest client's copy", 20_000);
      await honest.close();
      expect(await treeHashes(honestInbox)).toEqual(await treeHashes(dir));
    } finally {
      await local.close();
    }
  });

  it("fuzz - limits: more clients than max-clients get RTFM \"server full\", more subscriptions than the limit get SRSLY", async () => {
    const dir = await tempDir("fmq-fuzz-lim-");
    await writeTree(dir, { "a/x.txt": "x", "b/y.txt": "y", "c/z.txt": "z" });
    const local = new Server({ stableMs: 20, maxClients: 2, maxSubscriptions: 2 });
    const open: RawPeer[] = [];
    try {
      await local.publish(dir, "/");
      const ep = await local.bind(`tcp://127.0.0.1:${await freePort()}`);
      for (let i = 0; i < 3; i++) open.push(new RawPeer(ep));
      const [a, b, c] = open as [RawPeer, RawPeer, RawPeer];
      for (const p of [a, b]) {
        await p.send({ id: "OHAI", protocol: "FILEMQ", version: 2 });
        await p.expect("OHAI_OK");
      }
      await c.send({ id: "OHAI", protocol: "FILEMQ", version: 2 });
      expect((await c.expect("RTFM")).reason).toBe("server full");
      for (const sub of ["/a", "/b"]) {
        await a.send({ id: "ICANHAZ", path: sub, options: new Map(), cache: new Map() });
        await a.expect("ICANHAZ_OK");
      }
      await a.send({ id: "ICANHAZ", path: "/c", options: new Map(), cache: new Map() });
      expect((await a.expect("SRSLY")).reason).toBe("too many subscriptions (limit 2)");
      await a.send({ id: "HUGZ" });
      await a.expect("HUGZ_OK");
    } finally {
      await Promise.all(open.map((p) => p.close()));
      await local.close();
    }
  });
});
