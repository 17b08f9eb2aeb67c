// With --fsync (Manifest.durable), every journal write is fsynced, and a snapshot is fsynced, renamed,
// and its directory fsynced before the journal is emptied; without it, none is. Counted on the fsync calls
// node:fs sees (a power loss cannot be had in a test).

import { fstatSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { tempDir } from "../helpers/tmp.js";

const synced: string[] = [];
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const fsyncSync = (fd: number) => {
    synced.push(fstatSync(fd).isDirectory() ? "directory" : `file of ${fstatSync(fd).size} bytes`);
    return fs.fsyncSync(fd);
  };
  return { ...fs, fsyncSync, default: { ...fs, fsyncSync } };
});

const { Manifest } = await import("../../src/client/manifest.js");

const entry = (size: number) => ({ vpath: `/f${size}`, size, hash: "0123456789abcdef" });

describe("manifest durable", () => {
  for (const durable of [false, true]) {
    it(`manifest - ${durable ? "durable: each journal write, the snapshot and its directory are fsynced" : "not durable: nothing is fsynced"}`, async () => {
      const dir = path.join(await tempDir(), ".fmq");
      await mkdir(dir);
      const manifest = await Manifest.load(dir);
      manifest.durable = durable;
      synced.length = 0;
      manifest.delivered("a", entry(1));
      manifest.flush();
      manifest.aboutToPlace("b", entry(2));
      expect(synced).toEqual(durable ? [expect.stringMatching(/^file of \d+ bytes$/), expect.stringMatching(/^file of \d+ bytes$/)] : []);
      synced.length = 0;
      manifest.close();
      // The snapshot (temp file), then the directory it was renamed in; the journal is emptied after.
      expect(synced).toEqual(durable ? [expect.stringMatching(/^file of \d+ bytes$/), "directory"] : []);
    });
  }
});
