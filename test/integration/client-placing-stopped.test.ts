// A subscriber whose placing thread stops with files in its hands, end to end (a real server, a real
// client, real files): the files whose answers were lost with the thread and that did not land are said
// lost (EAGAIN) and asked for again by a resync, the files that landed are delivered, each file once in
// all, and the inbox ends a byte-for-byte mirror of the source. (A file of its own: the process's placing
// thread is stopped for good here.)

import { randomBytes } from "node:crypto";
import { Worker, type Transferable } from "node:worker_threads";
import path from "node:path";
import { afterEach, describe, expect, it, vi } from "vitest";
import { context } from "zeromq";
import { Client, Server } from "../../src/index.js";
import { placer } from "../../src/client/placer-thread.js";
import type { PlacementBatch } from "../../src/client/placer-worker.js";
import { treeHashes, writeTree } from "../helpers/files.js";
import { tcpEndpoint } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

context.blocky = false;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

function isPlacementBatch(message: unknown): message is PlacementBatch {
  return typeof message === "object" && message !== null && "batch" in message && "files" in message && (message as PlacementBatch).bytes instanceof ArrayBuffer;
}

describe("subscriber whose placing thread stops", () => {
  it("placing stopped - files lost with the thread are said lost (EAGAIN) and come again by a resync; each file delivered once; the inbox mirrors the source", { timeout: 60_000 }, async () => {
    const src = await tempDir();
    const files: Record<string, Buffer> = {};
    for (let i = 0; i < 3000; i++) files[`d${i % 30}/f${i}.bin`] = randomBytes(1000 + ((i * 37) % 7000));
    await writeTree(src, files);
    const server = new Server({ stableMs: 50 });
    closers.push(() => server.close());
    await server.publish(src);
    const endpoint = await server.bind(await tcpEndpoint());

    const inbox = path.join(await tempDir(), "in");
    const client = new Client({ endpoint, inbox, heartbeatMs: 100, timeoutMs: 60_000 });
    closers.push(() => client.close());
    const delivered: string[] = [];
    const lost: string[] = [];
    const otherErrors: string[] = [];
    let stopped: Promise<void> | undefined;
    client.on("delivered", (e) => delivered.push(e.path));
    // Stopped as its third batch is handed to it, just before the batch is posted: a worker failing with
    // batches on their way. That batch never reaches it, so none of its files can land and each is lost
    // with the thread; of the batches before, whatever the worker put in place before it stopped is
    // delivered. (Stopped just after the post instead, the worker could place the whole third batch
    // before it stopped and leave nothing lost: by my reading, how this test failed once in a full suite
    // run, 2026-12-06, "expected 0 to be greater than 0"; not reproduced alone or under load since.)
    let batches = 0;
    const post = Worker.prototype.postMessage;
    const spy = vi.spyOn(Worker.prototype, "postMessage").mockImplementation(function (this: Worker, message: unknown, transfer?: readonly Transferable[]) {
      if (isPlacementBatch(message) && ++batches === 3) stopped = placer().close();
      post.call(this, message, transfer as Transferable[]);
    });
    closers.push(async () => spy.mockRestore());
    client.on("error", (e) => {
      if ((e as NodeJS.ErrnoException).code === "EAGAIN" && /lost when the placing thread stopped/.test(e.message)) lost.push(e.message);
      else otherErrors.push(e.message);
    });
    await client.subscribe("/");
    client.connect();

    // (The resync comes 5 s after the first loss.)
    await waitFor(() => delivered.length >= Object.keys(files).length, "every file delivered", 40_000, 20);
    await stopped;
    expect([...(await treeHashes(inbox))]).toEqual([...(await treeHashes(src))]);
    expect(lost.length).toBeGreaterThan(0);
    expect(otherErrors).toEqual([]);
    // Each file delivered once: those that landed before or despite the stop, and the lost ones once they came again.
    expect(delivered.length).toBe(Object.keys(files).length);
    expect(new Set(delivered).size).toBe(delivered.length);
  });
});
