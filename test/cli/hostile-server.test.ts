// A malicious server against a real `fmq subscribe` process: a scripted ROUTER that sends path-escape
// file names. Nothing may appear outside the inbox (the whole temp root is checked), every refusal is
// reported, and the subscriber carries on.

import { randomBytes } from "node:crypto";
import { existsSync } from "node:fs";
import { mkdir, readFile, readdir, lstat, symlink, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { context, Router } from "zeromq";
import { decodeFrames, encode } from "../../src/protocol/codec.js";
import { Operation, type Message } from "../../src/protocol/messages.js";
import { startFmq } from "../helpers/fmq.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";
import { freePort } from "../helpers/net.js";

context.blocky = false;
const closers: (() => void)[] = [];
afterEach(() => {
  for (const close of closers.splice(0)) close();
});

/** Every path under `root` with its kind, symlinks not followed. */
async function snapshot(root: string): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string): Promise<void> => {
    for (const name of await readdir(dir)) {
      const full = path.join(dir, name);
      const stats = await lstat(full);
      const relative = path.relative(root, full);
      if (relative.split(path.sep).includes(".fmq")) continue; // the subscriber's own state
      out.push(`${relative}${stats.isDirectory() ? "/" : stats.isSymbolicLink() ? "@" : ""}`);
      if (stats.isDirectory()) await walk(full);
    }
  };
  await walk(root);
  return out.sort();
}

function chunk(filename: string, data: Buffer, offset: number, eof: 0 | 1): Buffer {
  return encode({ id: "CHEEZBURGER", sequence: 0n, operation: Operation.CREATE, filename, offset: BigInt(offset), eof, headers: new Map(), chunk: data });
}

describe("hostile server", () => {
  it("hostile server - path-escape names sent to a real fmq subscribe: nothing outside the inbox, each refusal reported, the client carries on", async () => {
    const root = await tempDir();
    const inbox = path.join(root, "inbox");
    const sibling = path.join(root, "sibling");
    await mkdir(inbox);
    await mkdir(sibling);
    await writeFile(path.join(sibling, "precious.txt"), "keep me");
    // A symlink planted in the inbox, pointing outside it.
    await symlink(sibling, path.join(inbox, "link"));
    const before = await snapshot(root);

    const port = await freePort();
    const router = new Router({ linger: 0 });
    closers.push(() => router.close());
    await router.bind(`tcp://127.0.0.1:${port}`);
    const sub = startFmq(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);

    const receive = async (): Promise<[Buffer, Message]> => {
      const [rid, ...frames] = await router.receive();
      const result = decodeFrames(frames);
      if (!result.ok) throw result.error;
      return [rid!, result.message];
    };
    let [rid, message] = await receive();
    expect(message.id).toBe("OHAI");
    await router.send([rid, encode({ id: "OHAI_OK" })]);
    [rid, message] = await receive();
    expect(message.id).toBe("ICANHAZ");
    await router.send([rid, encode({ id: "ICANHAZ_OK" })]);
    [rid, message] = await receive();
    expect(message.id).toBe("NOM");

    const absolute = path.join(tmpdir(), `fmq-absolute-${process.pid}-${randomBytes(4).toString("hex")}.txt`);
    const hostile = [
      "/../escape.txt",
      "/a/../../escape2.txt",
      // (Outside the temp root: checked on its own below. A name of this run's, so none can be there before.)
      `/${absolute}`,
      "/x\\..\\..\\backslash.txt",
      "/nul\0.txt",
      `/${"a".repeat(300)}.txt`,
      "/./dot.txt",
      "/.fmq/manifest.json",
      "/link/pwned.txt",
    ];
    for (const name of hostile) {
      const data = Buffer.from(`pwned by ${JSON.stringify(name)}`);
      await router.send([rid, chunk(name, data, 0, 0)]);
      await router.send([rid, chunk(name, Buffer.alloc(0), data.length, 1)]);
    }
    const good = Buffer.from("a normal file\n");
    await router.send([rid, chunk("/ok.txt", good, 0, 0)]);
    await router.send([rid, chunk("/ok.txt", Buffer.alloc(0), good.length, 1)]);

    await waitFor(() => sub.events.some((e) => e.event === "delivered" && e.path === "ok.txt"), "ok.txt delivered");
    const errors = sub.events.filter((e) => e.event === "error");
    expect(errors.length).toBeGreaterThanOrEqual(hostile.length);
    expect(sub.events.filter((e) => e.event === "delivered")).toEqual([{ event: "delivered", path: "ok.txt", size: good.length, received: good.length }]);
    expect(await snapshot(root)).toEqual([...before, "inbox/ok.txt"].sort());
    expect(await readdir(sibling)).toEqual(["precious.txt"]);
    expect(await readdir(path.dirname(root))).not.toContain("escape.txt");
    expect(existsSync(absolute)).toBe(false);
    expect(await readFile(path.join(inbox, "ok.txt"))).toEqual(good);
    expect(sub.child.exitCode).toBe(null);
  });
});
