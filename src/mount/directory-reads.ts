// chokidar (5.0.0) reads a directory again, readdir and an lstat of every entry, at every event the
// kernel reports in it, a file written in place included; its one-second throttle ends as soon as a
// read does, and a read asked for meanwhile runs at once after it. So one file written twice a second in
// a directory of 10,000 kept the publisher at 79 % of a core, reading the directory back to back (a
// resource review: 22.7 of 33.5 busy CPU-s in readdirp, 17.4 of them lstat), where nothing in the
// directory had come or gone; names made and removed ten times a second there took 1.4 cores.
//
// Two rules, for the reads that the kernel's events ask for (a directory's first read, and any read not
// asked for by an event, is made at once, as chokidar asks):
// - The kernel says "rename" for every name made, removed or moved (inotify's CREATE, DELETE,
//   MOVED_FROM/TO; libuv maps only MODIFY and ATTRIB to "change"). A "change" of a file in the directory
//   (written, chmod'ed) cannot have added or removed a name: the read it asks for is skipped. The
//   directory's own events and a subdirectory's (a chmod that makes it readable again) come as "rename"
//   (inotify marks them ISDIR, which libuv maps to rename; seen here): they read, as before; they are
//   also told apart by name, in case another kernel says "change" for them.
// - A directory is read again no sooner than its last read took (at most a second later), and what is
//   asked for meanwhile, or while a read is under way, is one read then: reads take at most about half of
//   the time, a name made is found at most one read's time later, and a small directory (read in a
//   millisecond) is read as soon as before.
// Reaches into chokidar's handler (pinned at 5.0.0, as the mount's other uses of its internals): without
// that internal, nothing is changed.

import path from "node:path";
import type { FSWatcher } from "chokidar";

/** The longest wait between two reads of a directory (chokidar's own throttle is a second). */
const MAX_GAP_MS = 1000;
/** Directories whose last read is remembered beyond their gap: pruned past this. */
const MAX_REMEMBERED = 1024;

interface NodeFsHandler {
  _handleRead(directory: string, ...rest: unknown[]): Promise<unknown> | undefined;
}

/** A directory's reads asked for by events. */
interface Reads {
  /** When the next read may begin (performance.now()). */
  readyAt: number;
  /** Settles when the read under way ends. */
  underWay?: Promise<unknown>;
  /** The one read due once the time has come. */
  due?: Promise<unknown>;
}

export interface DirectoryReads {
  /** A read of `dir` is under way or due: what is in it now, the watcher will know once it is done. */
  pending(dir: string): boolean;
}

/**
 * Make `watcher` skip the directory reads that a "change" of a file asks for, and space the others by
 * their cost. `isDirectory(absolute)`: a directory the caller knows of (its changes still read).
 * Call before the watcher's first event (right after watch()). Undefined if chokidar's internals differ.
 */
export function economiseDirectoryReads(watcher: FSWatcher, isDirectory: (absolute: string) => boolean): DirectoryReads | undefined {
  const handler = (watcher as unknown as { _nodeFsHandler?: NodeFsHandler })._nodeFsHandler;
  const original = handler?._handleRead;
  if (!handler || typeof original !== "function" || original.length !== 7) return undefined;
  const closed = () => (watcher as unknown as { closed?: boolean }).closed === true;
  // chokidar's record of what each directory holds (`_watched`, 5.0.0); without it, nothing is known.
  const watchedDirectories = () => (watcher as unknown as { _watched?: Map<string, { has(name: string): boolean }> })._watched;
  const knows = (dir: string, name: string) => {
    const watched = watchedDirectories();
    return watched instanceof Map && watched.get(dir)?.has(name) === true;
  };
  // A directory chokidar no longer watches: removed (its record and watch dropped) while a read of it
  // waited its turn. chokidar's read would make its record again (_getWatchedDir), which nothing removes:
  // about 500 bytes of heap for every directory ever made and removed, for as long as the publisher runs
  // (a review: 5,637 records left after 6,000 made and removed, 2 of them still there). If it is made
  // again, its parent's read finds it and reads it afresh.
  const stillWatched = (directory: string) => {
    const watched = watchedDirectories();
    return !(watched instanceof Map) || watched.has(path.resolve(directory));
  };

  // The kernel's event behind the read being decided: chokidar calls a directory's listener, then emits
  // the raw event, both in one go, and Node runs microtasks only after that (each fs.watch event is a
  // callback of its own). So a read is decided in a microtask, with the raw event of its directory seen.
  // (Kept only for directories with a read being decided, counted: a few entries, for one turn.)
  const deciding = new Map<string, number>();
  const rawEvents = new Map<string, { event: string; filename: string }>();
  watcher.on("raw", (event: string, filename: unknown, details: unknown) => {
    const watched = (details as { watchedPath?: unknown } | undefined)?.watchedPath;
    if (typeof watched !== "string" || typeof filename !== "string") return;
    const key = path.join(watched, "");
    if (deciding.has(key)) rawEvents.set(key, { event, filename });
  });

  const remembered = new Map<string, Reads>();
  const pendingRead = (key: string) => {
    const reads = remembered.get(key);
    return reads !== undefined && (reads.underWay !== undefined || reads.due !== undefined);
  };
  const forgetOld = (now: number) => {
    if (remembered.size < MAX_REMEMBERED) return;
    for (const [key, reads] of remembered) if (!reads.underWay && !reads.due && reads.readyAt <= now) remembered.delete(key);
  };
  /** Read now, noting how long it took. */
  const readNow = (reads: Reads, read: () => Promise<unknown> | undefined): Promise<unknown> => {
    if (closed()) return Promise.resolve(undefined);
    const began = performance.now();
    let reading: Promise<unknown> | undefined;
    try {
      reading = read();
    } catch (error) {
      return Promise.reject(error);
    }
    // (undefined: chokidar took it as asked during a read under way, and reads once more after that.)
    if (!reading) return Promise.resolve(undefined);
    const ended = () => {
      const now = performance.now();
      reads.underWay = undefined;
      reads.readyAt = now + Math.min(now - began, MAX_GAP_MS);
    };
    // A read that fails (the directory turned into a file as it was read, EMFILE, EIO) never ends:
    // readdirp drops it without its "end", and chokidar's promise never settles (its throttle ends by a
    // timer of a second). So a read counts as over when it ends or after that second, whichever comes
    // first; waiting for it alone stopped every later read of the directory (a review).
    reads.underWay = new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, MAX_GAP_MS).unref();
      const settle = () => {
        clearTimeout(timer);
        resolve();
      };
      reading.then(settle, settle);
    }).then(ended);
    return reading;
  };
  const spaced = (key: string, read: () => Promise<unknown> | undefined): Promise<unknown> => {
    const now = performance.now();
    let reads = remembered.get(key);
    if (!reads) {
      forgetOld(now);
      reads = { readyAt: now };
      remembered.set(key, reads);
    }
    if (reads.due) return reads.due; // (the read already due covers this one)
    if (!reads.underWay && reads.readyAt <= now) return readNow(reads, read);
    const waiting = reads;
    waiting.due = (waiting.underWay ?? Promise.resolve())
      .then(() => new Promise<void>((resolve) => setTimeout(resolve, Math.max(0, waiting.readyAt - performance.now())).unref()))
      .then(() => {
        waiting.due = undefined;
        return readNow(waiting, read);
      });
    return waiting.due;
  };

  handler._handleRead = function (this: NodeFsHandler, directory: string, ...rest: unknown[]) {
    const initialAdd = rest[0];
    if (initialAdd !== false) return original.call(this, directory, ...rest);
    const key = path.join(directory, "");
    deciding.set(key, (deciding.get(key) ?? 0) + 1);
    const read = new Promise<unknown>((resolve, reject) => {
      queueMicrotask(() => {
        const raw = rawEvents.get(key);
        const left = deciding.get(key)! - 1;
        if (left > 0) deciding.set(key, left);
        else {
          deciding.delete(key);
          rawEvents.delete(key);
        }
        const readNowAsAsked = () => (stillWatched(directory) ? original.call(this, directory, ...rest) : undefined);
        // Not asked for by this directory's own watch (a directory being added, chokidar's one more read
        // after a read): at once.
        if (raw === undefined) {
          try {
            return Promise.resolve(readNowAsAsked()).then(resolve, reject);
          } catch (error) {
            return reject(error);
          }
        }
        // (And only for a name chokidar knows, or one a read under way or due will find: its "rename"
        // came first, and asked for that read. One chokidar missed, a change of it is a chance to find it.)
        const spacedKey = key + "\0" + String(rest[2] ?? "");
        const onlyWritten =
          raw.event === "change" &&
          raw.filename !== "" &&
          raw.filename !== path.basename(key) &&
          !isDirectory(path.join(key, raw.filename)) &&
          (knows(key, raw.filename) || pendingRead(spacedKey));
        if (onlyWritten) return resolve(undefined);
        spaced(spacedKey, readNowAsAsked).then(resolve, reject);
      });
    });
    // (chokidar's own listener never waits for a read: one that fails is not an unhandled rejection.)
    read.catch(() => undefined);
    return read;
  };
  return { pending: (dir) => pendingRead(path.join(dir, "") + "\0") };
}
