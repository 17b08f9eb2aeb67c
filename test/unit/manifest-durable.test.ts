// With --fsync (Manifest.durable), every journal write is fsynced (in the thread pool: synced() says when),
// and a snapshot is fsynced, renamed, and its directory fsynced before the journal is emptied; without it,
// none is. Counted on the fsync calls node:fs sees (a power loss cannot be had in a test).

import { fstatSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it, vi } from "vitest";
import { tempDir } from "../helpers/tmp.js";

const synced: string[] = [];
vi.mock("node:fs", async (importOriginal) => {
  const fs = await importOriginal<typeof import("node:fs")>();
  const what = (fd: number) => (fstatSync(fd).isDirectory() ? "directory" : "file");
  const fsyncSync = (fd: number) => {
    synced.push(`${what(fd)}, at once`);
    return fs.fsyncSync(fd);
  };
  const fsync = (fd: number, callback: (error: NodeJS.ErrnoException | null) => void) => {
    synced.push(`${what(fd)}, in the thread pool`);
    return fs.fsync(fd, callback);
  };
  return { ...fs, fsyncSync, fsync, default: { ...fs, fsyncSync, fsync } };
});

const { Manifest } = await import("../../src/client/manifest.js");

const entry = (size: number) => ({ vpath: `/f${size}`, size, hash: "0123456789abcdef" });

describe("manifest durable", () => {
  for (const durable of [false, true]) {
    it(`manifest - ${durable ? "durable: each journal write is fsynced in the thread pool, the snapshot and its directory before the journal is emptied" : "not durable: nothing is fsynced"}`, async () => {
      const dir = path.join(await tempDir(), ".fmq");
      await mkdir(dir);
      const manifest = await Manifest.load(dir);
      manifest.durable = durable;
      synced.length = 0;
      manifest.delivered("a", entry(1));
      manifest.flush();
      await manifest.synced();
      manifest.aboutToPlace("b", entry(2));
      await manifest.synced();
      expect(synced).toEqual(durable ? ["file, in the thread pool", "file, in the thread pool"] : []);
      synced.length = 0;
      manifest.close();
      // The snapshot (its temporary file), then the directory it was renamed in; the journal is emptied after.
      expect(synced).toEqual(durable ? ["file, at once", "directory, at once"] : []);
    });
  }
});
