// What the watcher keeps of each file. chokidar (5.0.0) holds the `Stats` of every file it watches for
// as long as it watches it (its per-file listener compares the next change's mtime and inode with them,
// handler.js `_handleFile`), and on Node 20 a `Stats` is fourteen numbers and four `Date`s made with
// it: about 650 bytes of heap a file that nothing reads. A heap snapshot of a publisher holding 50,000
// files: 162 MB, 127 MB with this (measured). So chokidar is handed, for each file it adds, a copy of
// the few fields it and the mount read; it replaces it with the full `Stats` of the file's next change,
// as before. Reaches into chokidar's handler (pinned at 5.0.0, as the mount's other uses of its
// internals): without that internal, it keeps what it keeps.

import { constants, type Stats } from "node:fs";
import type { FSWatcher } from "chokidar";

/** What the mount and chokidar read of a file the watcher reports as added. */
export type SeenStats = Pick<Stats, "dev" | "ino" | "mode" | "size" | "atimeMs" | "mtimeMs" | "ctimeMs" | "isFile" | "isDirectory" | "isSymbolicLink">;

class Seen implements SeenStats {
  readonly dev: number;
  readonly ino: number;
  readonly mode: number;
  readonly size: number;
  readonly atimeMs: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  constructor(stats: Stats) {
    this.dev = stats.dev;
    this.ino = stats.ino;
    this.mode = stats.mode;
    this.size = stats.size;
    this.atimeMs = stats.atimeMs;
    this.mtimeMs = stats.mtimeMs;
    this.ctimeMs = stats.ctimeMs;
  }
  isFile(): boolean {
    return (this.mode & constants.S_IFMT) === constants.S_IFREG;
  }
  isDirectory(): boolean {
    return (this.mode & constants.S_IFMT) === constants.S_IFDIR;
  }
  isSymbolicLink(): boolean {
    return (this.mode & constants.S_IFMT) === constants.S_IFLNK;
  }
}

interface NodeFsHandler {
  _handleFile(file: string, stats: Stats | undefined, initialAdd: unknown): unknown;
}

/** Have `watcher` keep a `SeenStats` of each file it adds, not its `Stats`. Call right after watch(). False if chokidar's internals differ. */
export function keepLessOfEachFile(watcher: FSWatcher): boolean {
  const handler = (watcher as unknown as { _nodeFsHandler?: NodeFsHandler })._nodeFsHandler;
  const handleFile = handler?._handleFile;
  if (!handler || typeof handleFile !== "function" || handleFile.length !== 3) return false;
  handler._handleFile = function (this: NodeFsHandler, file: string, stats: Stats | undefined, initialAdd: unknown) {
    return handleFile.call(this, file, stats ? (new Seen(stats) as unknown as Stats) : stats, initialAdd);
  };
  return true;
}
