// What the watcher is still adding. chokidar (5.0.0) adds a directory by reading it (readdirp, an lstat
// of every entry) and then hands each entry to its add (another lstat, then a watch of each file),
// without waiting for those adds: its read has ended, and the directory's watch begun, while some of
// what it read is not yet in its record of the directory (`_watched`). In a big tree read at once,
// behind tens of thousands of lstats in libuv's four threads, that lasts seconds. The mount's check of
// what the watcher missed (mount.ts, #readAgainSoon) took those names for missed and had the directory
// read afresh: 171 directories read again for 100 directories of 500 files under load (measured), each
// re-read dropping and adding back every name in it, work and garbage that ran the publisher's heap up.
// This counts, per directory, the reads and adds under way in it, so the check waits for them to end.
// Reaches into chokidar's handler (pinned at 5.0.0, as the mount's other uses of its internals): without
// those internals, nothing is counted (the check then does as before).

import path from "node:path";
import type { FSWatcher } from "chokidar";

interface NodeFsHandler {
  _handleDir(dir: string, ...rest: unknown[]): Promise<unknown>;
  _addToNodeFs(path: string, ...rest: unknown[]): Promise<unknown>;
}

export interface WatcherBusy {
  /** The watcher is reading `dir`, or adding something it read in it. */
  busyIn(dir: string): boolean;
}

/** Count `watcher`'s reads and adds under way. Call right after watch(). Undefined if chokidar's internals differ. */
export function trackWatcherWork(watcher: FSWatcher): WatcherBusy | undefined {
  const handler = (watcher as unknown as { _nodeFsHandler?: NodeFsHandler })._nodeFsHandler;
  const handleDir = handler?._handleDir;
  const addToNodeFs = handler?._addToNodeFs;
  if (!handler || typeof handleDir !== "function" || handleDir.length !== 7 || typeof addToNodeFs !== "function" || addToNodeFs.length !== 5) return undefined;

  // (Only directories with work under way: the map empties as the work ends.)
  const underWay = new Map<string, number>();
  const begin = (dir: string) => underWay.set(dir, (underWay.get(dir) ?? 0) + 1);
  const end = (dir: string) => {
    const left = (underWay.get(dir) ?? 1) - 1;
    if (left > 0) underWay.set(dir, left);
    else underWay.delete(dir);
  };
  /** Call `work`, counting it against `dir` until what it returns settles. */
  const counted = <T>(dir: string, work: () => Promise<T>): Promise<T> => {
    begin(dir);
    let result: Promise<T>;
    try {
      result = work();
    } catch (error) {
      end(dir);
      throw error;
    }
    // (A failed read never settles: readdirp drops it without its "end". Its directory then stays busy;
    // the mount waits for it a bounded time.)
    Promise.resolve(result).then(
      () => end(dir),
      () => end(dir),
    );
    return result;
  };

  // (Their parameters spelt out: the other wrappers of these internals check chokidar's by their count.)
  handler._handleDir = function (this: NodeFsHandler, dir: string, stats: unknown, initialAdd: unknown, depth: unknown, target: unknown, wh: unknown, realpath: unknown) {
    const read = () => handleDir.call(this, dir, stats, initialAdd, depth, target, wh, realpath);
    // (With a target, chokidar is adding a symlink in the directory, not reading it.)
    return target === undefined ? counted(path.resolve(dir), read) : read();
  };
  handler._addToNodeFs = function (this: NodeFsHandler, added: string, initialAdd: unknown, priorWh: unknown, depth: unknown, target: unknown) {
    return counted(path.dirname(path.resolve(added)), () => addToNodeFs.call(this, added, initialAdd, priorWh, depth, target));
  };
  return { busyIn: (dir) => underWay.has(path.resolve(dir)) };
}
