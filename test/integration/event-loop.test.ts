// A subscriber under a flood of small files still lets its event loop turn: a real `fmq publish` process
// (it sends as fast as credit allows, whatever this process does) and a real Client in this one, over
// TCP on 127.0.0.1; every file is checked byte for byte.

import { createHash } from "node:crypto";
import { readFile } from "node:fs/promises";
import path from "node:path";
import { afterEach, expect, it } from "vitest";
import { context } from "zeromq";
import { Client } from "../../src/index.js";
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

  // The loop's turns, counted by a chain of setImmediate callbacks (each runs on the next turn).
  let turn = 0;
  let counting = true;
  const count = () => {
    turn++;
    if (counting) setImmediate(count);
  };
  setImmediate(count);

  const inbox = path.join(await tempDir(), "inbox");
  const client = new Client({ endpoint, inbox });
  closers.push(() => client.close());
  const turnOfDelivery: number[] = [];
  client.on("delivered", () => turnOfDelivery.push(turn));
  await client.subscribe("/");
  client.connect();
  try {
    await waitFor(() => turnOfDelivery.length >= FILES, `${FILES} deliveries`, 60_000, 20);
  } finally {
    counting = false;
  }

  // Files delivered within one turn of the loop, at most. Before Turns, the reader and the client's
  // machine went on from one message already queued to the next: here up to all 6,000 in one turn
  // (1.8 s with 20,000). Now a turn comes every 10 ms: a few hundred files at the most.
  const perTurn = new Map<number, number>();
  for (const t of turnOfDelivery) perTurn.set(t, (perTurn.get(t) ?? 0) + 1);
  const most = Math.max(...perTurn.values());
  expect(most).toBeLessThan(1000);

  for (let i = 0; i < FILES; i++) {
    const name = `d${i % 10}/f${i}.txt`;
    expect(sha256(await readFile(path.join(inbox, name))), name).toBe(sha256(content(i)));
  }
}, 120_000);
