// What the watcher is still adding. chokidar (5.0.0) adds a directory by reading it (readdirp, an lstat
// of every entry) and hands each entry to its add (another lstat, then a watch of each file) without
// waiting for those adds: its read has ended, and the directory's watch begun, while some of what it
// read is not yet in its record of the directory (`_watched`). In a big tree read at once, behind tens of
// thousands of lstats in libuv's four threads, that lasts seconds. The mount's check of what the watcher
// missed (mount.ts, #readAgainSoon) took those names for missed and had the directory read afresh: 132
// to 171 rereads of 100 directories of 500 files under load (measured), each dropping and adding back
// every name in it: twice the scan's time and CPU, and a third more peak memory.
//
// So this says, per directory, whether the watcher has work under way there, each piece ending as soon
// as what it would put in the record is there:
// - a read of the directory (its readdirp stream), until it ends or closes (a failed read closes
//   without ending: chokidar's own promise for it never settles, so that cannot be waited for);
// - an add of a name in it, until chokidar's record of the directory has the name (a subdirectory's
//   name goes in as its own read begins: its read is its own work, not its parent's), or the add ends;
// - an add of the directory itself, until its read begins or the add ends.
// Reaches into chokidar's internals (pinned at 5.0.0, as the mount's other uses of them): without
// them, nothing is said to be under way (the check then does as before).

import path from "node:path";
import type { FSWatcher } from "chokidar";

interface Internals {
  _readdirp(root: string, options: unknown): NodeJS.EventEmitter | undefined;
  _watched?: Map<string, { has(name: string): boolean }>;
  _nodeFsHandler?: { _addToNodeFs(path: string, ...rest: unknown[]): Promise<unknown> };
}

/** A piece of the watcher's work in a directory: over once `over()` says so, or once taken away. */
interface Work {
  over(): boolean;
}
const NEVER_OVER_BY_ITSELF: () => boolean = () => false;

export interface WatcherBusy {
  /** The watcher is reading `dir`, or adding it or something it read in it. */
  busyIn(dir: string): boolean;
}

/** Follow `watcher`'s reads and adds. Call right after watch(). Undefined if chokidar's internals differ. */
export function trackWatcherWork(watcher: FSWatcher): WatcherBusy | undefined {
  const internals = watcher as unknown as Internals;
  const handler = internals._nodeFsHandler;
  const readdirp = internals._readdirp;
  const addToNodeFs = handler?._addToNodeFs;
  if (!handler || typeof readdirp !== "function" || readdirp.length !== 2 || typeof addToNodeFs !== "function" || addToNodeFs.length !== 5) return undefined;

  // (Only directories with work under way: emptied as it ends, or as it is found over.)
  const underWay = new Map<string, Set<Work>>();
  const begin = (dir: string, work: Work) => {
    let pieces = underWay.get(dir);
    if (!pieces) underWay.set(dir, (pieces = new Set()));
    pieces.add(work);
  };
  const end = (dir: string, work: Work) => {
    const pieces = underWay.get(dir);
    if (pieces?.delete(work) && pieces.size === 0) underWay.delete(dir);
  };
  /** The adds under way by the path added, until its read begins (for a directory) or the add ends. */
  const addsOf = new Map<string, Set<Add>>();
  interface Add {
    readonly itself: Work;
    readonly inParent: Work;
  }
  const knows = (dir: string, name: string) => internals._watched instanceof Map && internals._watched.get(dir)?.has(name) === true;

  internals._readdirp = function (this: Internals, root: string, options: unknown) {
    const stream = readdirp.call(this, root, options);
    if (!stream) return stream;
    const dir = path.resolve(root);
    // Adds of the directory itself: its read is under way now, and its name is in its parent's record
    // (chokidar puts it there first). Both their pieces end here: an add whose read fails never ends,
    // and its name may leave the parent's record before the parent is looked at again, which kept the
    // parent busy for good (a review, run: a file made in a directory made again at that name was
    // published after 57 s instead of about 1).
    for (const add of addsOf.get(dir) ?? []) {
      end(dir, add.itself);
      end(path.dirname(dir), add.inParent);
    }
    addsOf.delete(dir);
    const reading: Work = { over: NEVER_OVER_BY_ITSELF };
    begin(dir, reading);
    const ended = () => end(dir, reading);
    stream.once("end", ended);
    stream.once("close", ended);
    return stream;
  };
  // (Its parameters spelt out: the other wrappers of chokidar's internals check them by their count.)
  handler._addToNodeFs = function (this: unknown, added: string, initialAdd: unknown, priorWh: unknown, depth: unknown, target: unknown) {
    const absolute = path.resolve(added);
    const dir = path.dirname(absolute);
    const name = path.basename(absolute);
    const inParent: Work = { over: () => knows(dir, name) };
    const itself: Work = { over: NEVER_OVER_BY_ITSELF };
    begin(dir, inParent);
    begin(absolute, itself);
    const add: Add = { itself, inParent };
    let adds = addsOf.get(absolute);
    if (!adds) addsOf.set(absolute, (adds = new Set()));
    adds.add(add);
    const ended = () => {
      end(dir, inParent);
      end(absolute, itself);
      if (adds.delete(add) && adds.size === 0 && addsOf.get(absolute) === adds) addsOf.delete(absolute);
    };
    let adding: Promise<unknown>;
    try {
      adding = addToNodeFs.call(this, added, initialAdd, priorWh, depth, target);
    } catch (error) {
      ended();
      throw error;
    }
    Promise.resolve(adding).then(ended, ended);
    return adding;
  };

  return {
    busyIn(dir) {
      const key = path.resolve(dir);
      const pieces = underWay.get(key);
      if (!pieces) return false;
      for (const work of pieces) if (work.over()) pieces.delete(work);
      if (pieces.size > 0) return true;
      underWay.delete(key);
      return false;
    },
  };
}
