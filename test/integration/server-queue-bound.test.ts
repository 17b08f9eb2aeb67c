// What the server keeps per client for changed files is bounded: past max-queued-changes, a session ends
// with RTFM "too far behind", and our client, subscribing again with what it holds, still gets everything.

import { afterEach, describe, expect, it } from "vitest";
import { Dealer } from "zeromq";

import { Client } from "../../src/client/client.js";
import { decodeFrames, encode } from "../../src/protocol/codec.js";
import { Server } from "../../src/server/server.js";
import { treeHashes, writeTree } from "../helpers/files.js";
import { tcpEndpoint } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const closers: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const close of closers.splice(0).reverse()) await close();
});

describe("the queue of changes per client", () => {
  it("server - sessions that grant no credit hold at most max-queued-changes changed files each: past it they are ended (RTFM too far behind); a real client still ends up with everything", async () => {
    // (A review: 20 sessions with no credit and 5,000 files written held 100,000 entries, without limit.
    // The same with a bound of 50 and 200 files.)
    const dir = await tempDir("fmq-queue-");
    const inbox = await tempDir("fmq-queue-inbox-");
    const server = new Server({ stableMs: 50, maxQueuedChanges: 50 });
    closers.push(() => server.close());
    const warnings: string[] = [];
    server.on("warning", (w) => warnings.push(w));
    await server.publish(dir, "/");
    const endpoint = await server.bind(await tcpEndpoint());

    // Idle sessions: subscribed, no credit, reading what comes.
    const idle = await Promise.all(
      [0, 1, 2].map(async () => {
        const socket = new Dealer({ linger: 0 });
        closers.push(() => socket.close());
        socket.connect(endpoint);
        socket.receiveTimeout = 10_000;
        await socket.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
        await socket.send(encode({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map() }));
        for (const id of ["OHAI_OK", "ICANHAZ_OK"]) {
          const result = decodeFrames(await socket.receive());
          expect(result.ok && result.message.id).toBe(id);
        }
        return socket;
      }),
    );
    const client = new Client({ endpoint, inbox, heartbeatMs: 200 });
    closers.push(() => client.close());
    await client.subscribe("/");
    client.connect();
    await waitFor(() => server.clients === 4, "four sessions", 10_000);

    const files: Record<string, string> = {};
    for (let i = 0; i < 200; i++) files[`d${i % 10}/f${i}.txt`] = `file ${i} `.repeat(1 + (i % 50));
    await writeTree(dir, files);

    // Each idle session: RTFM too far behind, never more than the bound queued meanwhile.
    let most = 0;
    const ended = idle.map(async (socket) => {
      for (;;) {
        most = Math.max(most, server.queuedFiles);
        const result = decodeFrames(await socket.receive());
        if (result.ok && result.message.id === "RTFM") return result.message.reason;
      }
    });
    for (const reason of await Promise.all(ended)) expect(reason).toMatch(/^too far behind/);
    expect(most).toBeLessThanOrEqual(4 * 51);
    expect(warnings.filter((w) => /changed files wait for it; session ended/.test(w)).length).toBeGreaterThanOrEqual(3);

    // The real client, ended too or not, has everything, byte for byte.
    const expected = await treeHashes(dir);
    expect(expected.size).toBe(200);
    await waitFor(async () => {
      // (treeHashes leaves out the subscriber's own .fmq/.)
      const held = await treeHashes(inbox);
      return JSON.stringify([...held]) === JSON.stringify([...expected]);
    }, "the inbox to mirror the published tree", 30_000, 50);
  }, 60_000);
});
