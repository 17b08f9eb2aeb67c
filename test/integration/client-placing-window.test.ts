// The window between the placing thread renaming a small file into place and its answer coming back to
// the main thread: the file on disk is the new version already, while the manifest still has the record
// of the version it replaces. Client.placing() says so, and `track --once` does not count such a file as
// "held already" (a run ended "synced 0 files, 3 held already" once, the file changed in <dst> and sent
// again still in that window). Here the window is held open: the worker's answer is kept back until the
// test lets it go. (A file of its own: the process's placing thread is this file's.)

import { writeFile } from "node:fs/promises";
import path from "node:path";
import { Worker } from "node:worker_threads";
import { afterEach, describe, expect, it, vi } from "vitest";
import { context } from "zeromq";
import { Client, Server } from "../../src/index.js";
import type { PlacementReply } from "../../src/client/placer-worker.js";
import { treeHashes, writeTree } from "../helpers/files.js";
import { tcpEndpoint } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

context.blocky = false;

const closers: (() => Promise<void>)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe("a file on its way into place", () => {
  it("placing window - a file the placing thread has put on disk, its answer not back yet, is placing(), not yet delivered; once the answer comes it is delivered and held", { timeout: 30_000 }, async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "a" });
    const server = new Server({ stableMs: 50 });
    closers.push(() => server.close());
    await server.publish(src);
    const endpoint = await server.bind(await tcpEndpoint());
    const inbox = path.join(await tempDir(), "in");
    let holding = false;
    const kept: (() => void)[] = [];
    const on = Worker.prototype.on;
    const spy = vi.spyOn(Worker.prototype, "on").mockImplementation(function (this: Worker, event: string | symbol, listener: (...args: unknown[]) => void) {
      if (event !== "message") return on.call(this, event, listener);
      return on.call(this, event, (reply: PlacementReply) => (holding ? kept.push(() => listener(reply)) : listener(reply)));
    });
    closers.push(async () => spy.mockRestore());

    // First the file arrives as usual, and is held.
    const first = new Client({ endpoint, inbox, heartbeatMs: 100 });
    await first.subscribe("/");
    first.connect();
    await waitFor(() => first.holds("/a.txt"), "a.txt held");
    await first.close();
    // Changed in the inbox (another size): not held, so the server sends it again at the next start.
    await writeFile(path.join(inbox, "a.txt"), "changed in the inbox");

    // From the second client on, the worker's answers are kept back: the main thread hears nothing of
    // them until they are let go. (The worker is the process's, started by the first client's file: its
    // listener is wrapped from the start.)
    holding = true;
    const client = new Client({ endpoint, inbox, heartbeatMs: 100 });
    closers.push(() => client.close());
    const delivered: string[] = [];
    client.on("delivered", (e) => delivered.push(e.vpath));
    await client.subscribe("/");
    client.connect();

    // On disk again as published, its answer held back: on its way into place, not delivered; holds()
    // alone would say held (the old record, the same size as the new version's).
    await waitFor(() => kept.length > 0, "the worker's answer (kept back)");
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    expect(client.placing("/a.txt")).toBe(true);
    expect(client.holds("/a.txt")).toBeDefined();
    expect(delivered).toEqual([]);

    for (const release of kept.splice(0)) release();
    await waitFor(() => delivered.length > 0, "a.txt delivered");
    expect(delivered).toEqual(["/a.txt"]);
    expect(client.placing("/a.txt")).toBe(false);
    expect(client.holds("/a.txt")).toMatchObject({ size: 1 });
  });
});
