// An inbox hands whole small files to the placing thread (placer-thread.ts): said placed only once they
// are on disk, recorded then, and when the thread stops with files still waiting for it, those are put
// in place by the main thread, in order; after that every file is placed on the main thread, at once.
// (Each test file has its own modules: the process's placing thread here is this file's.)

import { existsSync } from "node:fs";
import { readFile, readdir } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Inbox } from "../../src/client/inbox.js";
import { placer } from "../../src/client/placer-thread.js";
import { tempDir } from "../helpers/tmp.js";

const identity = (data: Uint8Array, vpath: string) => ({ vpath, size: data.length, mtime: 1_700_000_000_000 });

describe("inbox and its placing thread", () => {
  it("inbox placing - files placed by the thread are said placed once on disk, then recorded; a thread stopped with files waiting leaves them to the main thread, in order; then each file is placed at once", async () => {
    const root = path.join(await tempDir(), "in");
    const inbox = await Inbox.open(root);
    try {
      // Through the thread: said once on disk (looked at from the callback itself), recorded then.
      const early = [0, 1].map((i) => ({ relative: `e/g${i}.bin`, data: randomBytes(500 + i) }));
      const seen: { relative: string; onDisk: boolean; recorded: boolean }[] = [];
      const early$ = early.map(
        ({ relative, data }) =>
          new Promise<string | Error>((resolve) => {
            const accepted = inbox.receiveWhole(relative, `/${relative}`, data, identity(data, `/${relative}`), undefined, (where) => {
              seen.push({ relative, onDisk: existsSync(path.join(root, relative)), recorded: inbox.manifest.files.has(relative) });
              resolve(where);
            });
            expect(accepted).toBe(true);
          }),
      );
      expect(seen).toEqual([]);
      expect(await Promise.all(early$)).toEqual(early.map((file) => path.join(root, file.relative)));
      expect(seen).toEqual(early.map(({ relative }) => ({ relative, onDisk: true, recorded: true })));
      for (const { relative, data } of early) expect((await readFile(path.join(root, relative))).equals(data)).toBe(true);
      expect(inbox.placed()).toBeUndefined();

      const files = [0, 1, 2].map((i) => ({ relative: `d/f${i}.bin`, data: randomBytes(1000 + i) }));
      const said: string[] = [];
      const placedAll = files.map(
        ({ relative, data }) =>
          new Promise<string | Error>((resolve) => {
            expect(inbox.receiveWhole(relative, `/${relative}`, data, identity(data, `/${relative}`), undefined, (where) => (said.push(relative), resolve(where)))).toBe(true);
          }),
      );
      // Handed over: not placed yet, not recorded yet.
      expect(said).toEqual([]);
      expect(inbox.isPlacing("d/f1.bin")).toBe(true);
      expect(inbox.manifest.files.has("d/f0.bin")).toBe(false);
      // The thread stops before it took them (this turn's batch is sent at the next): the main thread
      // places them, in the order they came.
      await placer().close();
      const where = await Promise.all(placedAll);
      expect(said).toEqual(files.map((file) => file.relative));
      expect(where).toEqual(files.map((file) => path.join(root, file.relative)));
      for (const { relative, data } of files) {
        expect((await readFile(path.join(root, relative))).equals(data)).toBe(true);
        expect(inbox.manifest.files.get(relative)?.size).toBe(data.length);
      }
      expect(inbox.isPlacing("d/f1.bin")).toBe(false);
      expect(inbox.placed()).toBeUndefined();
      // No thread now: a file is placed before receiveWhole returns.
      const last = randomBytes(10);
      let now: string | Error | undefined;
      expect(inbox.receiveWhole("last.bin", "/last.bin", last, identity(last, "/last.bin"), undefined, (w) => (now = w))).toBe(true);
      expect(now).toBe(path.join(root, "last.bin"));
      expect((await readFile(path.join(root, "last.bin"))).equals(last)).toBe(true);
      // Nothing left in the state directory's partial/ (the worker's or the main thread's).
      expect(await readdir(path.join(root, ".fmq", "partial"))).toEqual([]);
    } finally {
      inbox.close();
    }
  });

  it("inbox placing - a file whose content does not match the server's hash is refused, nothing handed over", async () => {
    const root = path.join(await tempDir(), "in");
    const inbox = await Inbox.open(root);
    try {
      const data = randomBytes(100);
      let called = false;
      expect(inbox.receiveWhole("x.bin", "/x.bin", data, identity(data, "/x.bin"), "0000000000000000", () => (called = true))).toBe(false);
      expect(called).toBe(false);
      expect(inbox.isPlacing("x.bin")).toBe(false);
      expect(await readdir(root)).toEqual([".fmq"]);
    } finally {
      inbox.close();
    }
  });
});
