// What the watcher skips without a word, looked for in the whole tree once after a mount's first scan,
// and in each directory the watcher finds after that (made, moved in, unpacked), so that it is said rather
// than lost (or a whole directory of files with it):
// - a name that is not valid UTF-8 reaches us with U+FFFD in place of its bad bytes, and no file has that
//   name: it cannot be opened, so it cannot be published, nor anything under it (one made later in a
//   directory already watched is said by the mount, from the watcher's raw events);
// - a directory we may not read (the watcher, told to ignore permission errors, says nothing of it).
// A file we may not read is published, and each attempt to send it says so. The walk also hands over each
// symlink it meets (`symlink`): one that leads nowhere, the watcher never reports.

import type { Dirent } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";
import { isUnpublished } from "../paths.js";

/** What is said of a name that is not valid UTF-8 (as Node reads it: U+FFFD for each bad byte). */
export function notUtf8(relative: string): string {
  // (Each bad byte shown as "?": the replacement character would only add to the confusion.)
  return `not published: "${relative.replaceAll("\uFFFD", "?")}": its name is not valid UTF-8 (Node cannot open it); rename it`;
}

/** What a walk hears of. */
export interface Findings {
  /** A name that cannot be published, in words. */
  readonly report: (message: string) => void;
  /** A directory we may not read (`code`: EACCES or EPERM), to be said and looked at until we may. */
  readonly unreadable: (dir: string, code: string) => void;
  /** A symlink (one that leads nowhere, the watcher never reports). */
  readonly symlink: (absolute: string, relative: string) => void;
  /** The walk is no longer wanted (the mount closed): it ends at its next directory. */
  readonly stopped?: () => boolean;
}

/**
 * Look through the directory `from` (relative to `root`; "" for root itself) and hand over what the
 * watcher skips. `deep`: its subdirectories too (the first walk); else that directory alone (one the
 * watcher has just found, for which it reports each directory in it in turn). Every name is looked at:
 * how many are said is for the caller to bound, and links and unreadable directories past that bound
 * must still be found (a walk that stopped after its 100th report left them unpublished for good).
 */
export async function findUnpublishable(root: string, from: string, deep: boolean, findings: Findings): Promise<void> {
  const { report, unreadable, symlink, stopped } = findings;
  const walk = async (dir: string, relativeDir: string): Promise<void> => {
    if (stopped?.()) return;
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") {
        unreadable(dir, code);
      }
      return; // (else gone meanwhile: the watcher says so)
    }
    for (const entry of entries) {
      const relative = relativeDir === "" ? entry.name : `${relativeDir}/${entry.name}`;
      if (isUnpublished(relative)) continue;
      const absolute = path.join(dir, entry.name);
      if (relative.includes("\uFFFD") && !(await lstat(absolute).then(() => true, () => false))) {
        report(notUtf8(relative));
        continue;
      }
      if (entry.isSymbolicLink()) symlink(absolute, relative);
      if (deep && entry.isDirectory()) await walk(absolute, relative);
    }
  };
  const start = from === "" ? root : path.join(root, from);
  // (A directory that is one, not a symlink to one, which the watcher does not follow either: what is
  // read through it is not in the mount, and may be outside it. Subdirectories are Dirents: a link is
  // never one.)
  if (!(await lstat(start).then((stats) => stats.isDirectory(), () => false))) return;
  await walk(start, from);
}
