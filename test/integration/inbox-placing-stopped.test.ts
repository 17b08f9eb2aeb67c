// An inbox whose placing thread stops with files in its hands (their answers lost with it): each file is
// looked for on disk, delivered if it is there with its content, else said lost (EAGAIN: the client asks
// for it again). Never a file in place that the manifest does not know, nor one recorded that is not there.
// (A file of its own: the process's placing thread is stopped for good here.)

import { existsSync, readdirSync } from "node:fs";
import { readFile } from "node:fs/promises";
import { randomBytes } from "node:crypto";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Inbox, type InboxError } from "../../src/client/inbox.js";
import { placer } from "../../src/client/placer-thread.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const identity = (data: Uint8Array, vpath: string) => ({ vpath, size: data.length, mtime: 1_700_000_000_000 });

describe("inbox whose placing thread stops", () => {
  it("inbox placing - a thread stopped with files in its hands: each is either found in place (delivered, recorded, its content) or said lost (EAGAIN, not recorded), never in place unrecorded", async () => {
    // (The files are sent to the worker, then it is stopped at once: it may have placed some, all or none
    // of them. Its answer is lost with it; the inbox looks at the disk.)
    const root = path.join(await tempDir(), "in");
    const inbox = await Inbox.open(root);
    const thread = placer();
    expect(thread.available()).toBe(true);
    try {
      const files = Array.from({ length: 1000 }, (_, i) => ({ relative: `s/f${i}.bin`, data: randomBytes(2000 + i) }));
      const outcomes = files.map(
        ({ relative, data }) =>
          new Promise<string | Error>((resolve) => {
            expect(inbox.receiveWhole(relative, `/${relative}`, data, identity(data, `/${relative}`), undefined, resolve)).toBe(true);
          }),
      );
      // (Sent at the next turn; stopped once the worker has begun to place them.)
      await waitFor(() => existsSync(path.join(root, "s", "f0.bin")), "the first file in place", 10_000, 1);
      await thread.close();
      const results = await Promise.all(outcomes);
      for (const [i, { relative, data }] of files.entries()) {
        const result = results[i]!;
        const onDisk = await readFile(path.join(root, relative)).catch(() => undefined);
        if (result instanceof Error) {
          expect((result as InboxError).code).toBe("EAGAIN");
          expect(result.message).toMatch(/lost when the placing thread stopped/);
          expect(inbox.manifest.files.has(relative)).toBe(false);
          expect(onDisk?.equals(data) ?? false).toBe(false);
        } else {
          expect(result).toBe(path.join(root, relative));
          expect(onDisk?.equals(data)).toBe(true);
          expect(inbox.manifest.files.get(relative)?.size).toBe(data.length);
        }
      }
      // (Which of the two each was is up to the race; that each was one or the other is the point.)
      expect(inbox.isPlacing("s/f0.bin")).toBe(false);
      // Nor a partial file left by the worker stopped between its open and its rename (a review).
      expect(readdirSync(path.join(root, ".fmq", "partial"))).toEqual([]);
    } finally {
      inbox.close();
    }
  });
});
