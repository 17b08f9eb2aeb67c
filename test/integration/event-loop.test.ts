// A subscriber under a flood of small files still lets its event loop turn: a real `fmq publish` process
// (it sends as fast as credit allows, whatever this process does) and a real Client in this one, over
// TCP on 127.0.0.1; every file is checked byte for byte. Likewise a server under a flood of messages
// from a client in another process.

import { spawn } from "node:child_process";
import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { context } from "zeromq";
import { Client, Server, encode, PROTOCOL_NAME, PROTOCOL_VERSION } from "../../src/index.js";
import { startFmq } from "../helpers/fmq.js";
import { writeTree } from "../helpers/files.js";
import { tcpEndpoint } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

context.blocky = false;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

const sha256 = (data: Buffer) => createHash("sha256").update(data).digest("hex");

/**
 * The event loop's turns, counted by a chain of setImmediate callbacks (each runs on the next turn):
 * `mark()` notes the turn something happened in; `most()` is the most things in one turn.
 */
function turnCounter() {
  let turn = 0;
  let counting = true;
  const count = () => {
    turn++;
    if (counting) setImmediate(count);
  };
  setImmediate(count);
  const marks: number[] = [];
  return {
    mark: () => void marks.push(turn),
    get marked() {
      return marks.length;
    },
    stop: () => void (counting = false),
    most: () => {
      const perTurn = new Map<number, number>();
      for (const t of marks) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
      return Math.max(...perTurn.values());
    },
  };
}

it("client - a flood of small files is written with the event loop turning every few milliseconds, not after the flood (timers, signals and the freeing of received frames wait for it)", async () => {
  const FILES = 6000;
  const source = await tempDir();
  const content = (i: number) => Buffer.from(`${i}:`.padEnd(1000 + (i % 97), String.fromCharCode(97 + (i % 26))));
  const files: Record<string, Buffer> = {};
  for (let i = 0; i < FILES; i++) files[`d${i % 10}/f${i}.txt`] = content(i);
  await writeTree(source, files);

  const endpoint = await tcpEndpoint();
  const publisher = startFmq(["publish", source, "--bind", endpoint, "--json", "--stable-ms", "0"]);
  await waitFor(() => publisher.events.filter((e) => e.event === "published").length >= FILES, `${FILES} files published`, 60_000, 20);

  const turns = turnCounter();
  const inbox = path.join(await tempDir(), "inbox");
  const client = new Client({ endpoint, inbox });
  closers.push(() => client.close());
  client.on("delivered", turns.mark);
  await client.subscribe("/");
  client.connect();
  try {
    await waitFor(() => turns.marked >= FILES, `${FILES} deliveries`, 60_000, 20);
  } finally {
    turns.stop();
  }

  // Files delivered within one turn of the loop, at most. Before Turns, the reader and the client's
  // machine went on from one message already queued to the next: here up to all 6,000 in one turn
  // (1.8 s with 20,000). Now a turn comes every 10 ms: a few hundred files at the most.
  expect(turns.most()).toBeLessThan(1000);

  for (let i = 0; i < FILES; i++) {
    const name = `d${i % 10}/f${i}.txt`;
    expect(sha256(await readFile(path.join(inbox, name))), name).toBe(sha256(content(i)));
  }
}, 120_000);

// A peer in a process of its own: OHAI, then COUNT HUGZ as fast as its socket takes them, draining
// whatever comes back. (zeromq from this package.)
const FLOODER = `
import { Dealer, context } from "zeromq";
context.blocky = false;
const socket = new Dealer({ linger: 0, sendHighWaterMark: 0 });
socket.connect(process.env.ENDPOINT);
void (async () => { for await (const _ of socket); })();
await socket.send(Buffer.from(process.env.OHAI, "hex"));
const hugz = process.env.HUGZ;
for (let i = 0; i < Number(process.env.COUNT); i++) await socket.send(Buffer.from(hugz, "hex"));
setInterval(() => {}, 1000);
`;

it("server - a flood of messages from one client is handled with the event loop turning every few milliseconds, not after the flood", async () => {
  const COUNT = 8_000;
  // Each HUGZ made to cost the server 0.1 ms more (in its trace), as a request that takes work would:
  // the flood outruns it, so libzmq always has the next message queued. zeromq.js lets the loop turn
  // after 512 such receives (about 1,000 HUGZ here, with the HUGZ-OK sent back); our reader's turns
  // come every 10 ms, about 100 HUGZ at this cost.
  const turns = turnCounter();
  const trace = (line: string) => {
    if (!line.endsWith(": HUGZ")) return;
    turns.mark();
    const until = performance.now() + 0.1;
    while (performance.now() < until);
  };
  const server = new Server({ stableMs: 0, trace });
  closers.push(() => server.close());
  await server.publish(await tempDir(), "/");
  const endpoint = await server.bind(await tcpEndpoint());

  const flooder = spawn(process.execPath, ["--input-type=module", "-e", FLOODER], {
    cwd: path.resolve(import.meta.dirname, "../.."),
    env: {
      ...process.env,
      ENDPOINT: endpoint,
      OHAI: Buffer.from(encode({ id: "OHAI", protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION })).toString("hex"),
      HUGZ: Buffer.from(encode({ id: "HUGZ" })).toString("hex"),
      COUNT: String(COUNT),
    },
    stdio: ["ignore", "ignore", "inherit"],
  });
  closers.push(async () => {
    if (flooder.exitCode === null) {
      const exited = new Promise((resolve) => flooder.once("exit", resolve));
      flooder.kill("SIGKILL");
      await exited;
    }
  });
  try {
    await waitFor(() => turns.marked >= COUNT, `${COUNT} HUGZ handled`, 60_000, 20);
  } finally {
    turns.stop();
  }

  // Without the reader's turns: 1,025 HUGZ in one turn (zeromq.js's guard alone). With them, what one
  // 10 ms run handles, about 100.
  expect(turns.most()).toBeLessThan(500);
}, 120_000);
