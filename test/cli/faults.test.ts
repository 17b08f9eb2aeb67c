// Faults with real processes and real signals: kill -9 either side mid-transfer, start it again, and
// check the result byte for byte and how much was sent again.

import { stat } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { startFmq, type Running } from "../helpers/fmq.js";
import { tempDir } from "../helpers/tmp.js";
import { treeHashes, writeRandomFile, writeTree } from "../helpers/files.js";
import { waitFor } from "../helpers/wait.js";
import { freePort } from "../helpers/net.js";
import { partialName } from "../../src/client/inbox.js";
import { BLOCK_SIZE } from "../../src/digest/blocks.js";

const start = (args: string[]): Running => startFmq(args);

const MiB = 1024 * 1024;
const WINDOW = "1M";
const deliveries = (r: Running) => r.events.filter((e) => e.event === "delivered");

async function publisher(src: string, port: number): Promise<Running> {
  const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
  await waitFor(() => pub.events.some((e) => e.event === "ready"), "publisher ready");
  return pub;
}

function subscriber(inbox: string, port: number): Running {
  return start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json", "--window", WINDOW, "--heartbeat-ms", "200"]);
}

async function partialSize(file: string): Promise<number> {
  return (await stat(file).catch(() => ({ size: 0 }))).size;
}

async function kill9(r: Running): Promise<void> {
  r.child.kill("SIGKILL");
  await r.exited;
}

describe("faults", () => {
  it("faults - kill -9 the subscriber mid-file: after a restart only the rest is sent", async () => {
    const size = 200 * MiB;
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), size);
    const port = await freePort();
    await publisher(src, port);
    const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
    const first = subscriber(inbox, port);
    await waitFor(async () => (await partialSize(partial)) >= size * 0.3, "30% of the file", 30_000, 1);
    await kill9(first);
    expect(deliveries(first)).toEqual([]);
    const held = await partialSize(partial);
    expect(held).toBeGreaterThan(0);
    expect(held).toBeLessThan(size);

    const second = subscriber(inbox, port);
    await waitFor(() => deliveries(second).length === 1, "the file delivered after the restart", 60_000);
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    const received = deliveries(second)[0]!.received as number;
    // Resumed from the last whole block held: at most one block more than what was missing.
    expect(received).toBeLessThanOrEqual(size - held + BLOCK_SIZE);
    expect(received).toBeLessThan(size);
  }, 90_000);

  it("faults - kill -9 the publisher mid-file: the subscriber resumes against the new publisher", async () => {
    const size = 200 * MiB;
    const src = await tempDir();
    const inbox = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), size);
    const port = await freePort();
    const first = await publisher(src, port);
    const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
    const sub = subscriber(inbox, port);
    await waitFor(async () => (await partialSize(partial)) >= size * 0.3, "30% of the file", 30_000, 1);
    await kill9(first);
    const heldAtKill = await partialSize(partial);
    expect(heldAtKill).toBeLessThan(size);

    await publisher(src, port);
    await waitFor(() => deliveries(sub).length === 1, "the file delivered after the restart", 60_000);
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    const received = deliveries(sub)[0]!.received as number;
    expect(received).toBeLessThanOrEqual(size - heldAtKill + BLOCK_SIZE);
    expect(sub.events.some((e) => e.event === "disconnected")).toBe(true);
  }, 90_000);

  it("faults - kill -9 the subscriber while 2,000 small files are in flight: after a restart every file is there once, intact", async () => {
    const src = await tempDir();
    const inbox = await tempDir();
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 2000; i++) files[`d${i % 20}/f${i}.bin`] = Buffer.alloc(4096, i % 251);
    await writeTree(src, files);
    const port = await freePort();
    await publisher(src, port);
    const first = subscriber(inbox, port);
    await waitFor(() => deliveries(first).length >= 200, "200 deliveries", 60_000, 1);
    await kill9(first);
    expect(deliveries(first).length).toBeLessThan(2000);

    const second = subscriber(inbox, port);
    await waitFor(async () => JSON.stringify([...(await treeHashes(inbox))]) === JSON.stringify([...(await treeHashes(src))]), "the whole tree", 60_000, 200);
    // Nothing was delivered twice in the second run, and the first run's deliveries were not all sent again.
    const paths = deliveries(second).map((e) => e.path as string);
    expect(new Set(paths).size).toBe(paths.length);
    expect(paths.length).toBeLessThan(2000);
  }, 120_000);
});
