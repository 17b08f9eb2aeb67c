// chokidar (5.0.0) adds a directory by reading it, and only then starts watching it (handler.js,
// _handleDir): a file made in between is in neither, and never reported. A directory made and filled at
// once (cp -r, tar x, a build writing its output) lost some of its files that way for good: 17-423 of
// 10,000 in a review's runs, the last names written into a directory, never published until they
// changed again. This says when a directory's watch has begun, so that the mount can then compare what
// is in it with what the watcher knows. Reaches into chokidar's handler (pinned at 5.0.0, as the mount's
// other uses of its internals): without that internal, nothing is said.

import type { FSWatcher } from "chokidar";

interface NodeFsHandler {
  _handleDir(dir: string, ...rest: unknown[]): Promise<unknown>;
}

/**
 * Call `begun(dir)` each time `watcher` has read a directory and begun to watch it (at its first scan
 * and later). Call right after watch(). False if chokidar's internals differ.
 */
export function onWatchBegun(watcher: FSWatcher, begun: (dir: string) => void): boolean {
  const handler = (watcher as unknown as { _nodeFsHandler?: NodeFsHandler })._nodeFsHandler;
  const original = handler?._handleDir;
  if (!handler || typeof original !== "function" || original.length !== 7) return false;
  handler._handleDir = async function (this: NodeFsHandler, dir: string, ...rest: unknown[]) {
    const closer = await original.call(this, dir, ...rest);
    // (No closer: not watched, a symlink's target, or the watcher closed meanwhile.)
    const target = rest[3];
    if (closer !== undefined && target === undefined && !(watcher as unknown as { closed?: boolean }).closed) begun(dir);
    return closer;
  };
  return true;
}
