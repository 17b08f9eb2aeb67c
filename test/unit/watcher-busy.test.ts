// What the watcher still has under way in a directory, against a stand-in for chokidar's internals (the
// real watcher's part is in mount.test.ts: a directory whose files are still being added is not read
// afresh for them).

import { EventEmitter } from "node:events";
import type { FSWatcher } from "chokidar";
import { describe, expect, it } from "vitest";
import { trackWatcherWork } from "../../src/mount/watcher-busy.js";

/** A watcher whose reads are streams the test ends, and whose adds the test settles. */
function standIn() {
  const adds: { added: string; settle: () => void }[] = [];
  const _watched = new Map<string, Set<string>>();
  const watcher = {
    _watched,
    // (Their parameters counted as chokidar 5.0.0's: the tracker checks it has the functions it knows.)
    _readdirp(_root: string, _options: unknown) {
      return new EventEmitter();
    },
    _nodeFsHandler: {
      _addToNodeFs(added: string, _initialAdd: unknown, _priorWh: unknown, _depth: unknown, _target: unknown) {
        return new Promise<void>((resolve) => adds.push({ added, settle: resolve }));
      },
    },
  };
  const busy = trackWatcherWork(watcher as unknown as FSWatcher);
  expect(busy).toBeDefined();
  const read = (root: string) => watcher._readdirp(root, {});
  const add = (added: string) => void watcher._nodeFsHandler._addToNodeFs(added, true, undefined, 0, undefined);
  const record = (dir: string, name: string) => {
    if (!_watched.has(dir)) _watched.set(dir, new Set());
    _watched.get(dir)!.add(name);
  };
  const unrecord = (dir: string, name: string) => _watched.get(dir)?.delete(name);
  return { busyIn: (dir: string) => busy!.busyIn(dir), read, add, adds, record, unrecord };
}

const settled = () => new Promise<void>((resolve) => setImmediate(resolve));

describe("watcher busy", () => {
  it("watcher busy - a read is under way until its stream ends, or closes without ending (a failed read, whose promise in chokidar never settles)", async () => {
    const { busyIn, read } = standIn();
    expect(busyIn("/m/d")).toBe(false);
    const ending = read("/m/d");
    expect(busyIn("/m/d")).toBe(true);
    expect(busyIn("/m")).toBe(false);
    ending?.emit("end");
    expect(busyIn("/m/d")).toBe(false);
    const failing = read("/m/d/");
    expect(busyIn("/m/d")).toBe(true);
    failing?.emit("close");
    expect(busyIn("/m/d")).toBe(false);
  });

  it("watcher busy - an add of a name is under way in its directory until the watcher's record has the name, whether or not the add has ended", async () => {
    const { busyIn, add, adds, record } = standIn();
    add("/m/d/f1");
    add("/m/d/f2");
    expect(busyIn("/m/d")).toBe(true);
    adds[0]!.settle(); // (ended without a record: ignored, or gone)
    await settled();
    expect(busyIn("/m/d")).toBe(true);
    record("/m/d", "f2"); // (in the record: a subdirectory's name is, as its own read begins)
    expect(busyIn("/m/d")).toBe(false);
  });

  it("watcher busy - an add of a directory keeps the directory busy until its read begins; then its read does, and an add that never ends no longer counts", async () => {
    const { busyIn, add, read, record } = standIn();
    add("/m/sub");
    expect(busyIn("/m/sub")).toBe(true);
    expect(busyIn("/m")).toBe(true);
    record("/m", "sub");
    expect(busyIn("/m")).toBe(false);
    const reading = read("/m/sub");
    expect(busyIn("/m/sub")).toBe(true);
    reading?.emit("close"); // the read failed: the add that is waiting for it never ends
    expect(busyIn("/m/sub")).toBe(false);
  });

  it("watcher busy - a subdirectory whose read failed, and whose name left its parent's record before the parent was looked at, does not keep the parent busy", async () => {
    const { busyIn, add, read, record, unrecord } = standIn();
    add("/m/sub");
    record("/m", "sub"); // (chokidar records the name as it begins the directory's read)
    read("/m/sub")?.emit("close"); // the read failed: the add never ends
    unrecord("/m", "sub"); // (the parent's next read found it gone)
    expect(busyIn("/m")).toBe(false);
    expect(busyIn("/m/sub")).toBe(false);
  });
});
