// What the watcher skips without a word, looked for once after a mount's first scan, so that it is said
// rather than lost (or a whole directory of files with it):
// - a name that is not valid UTF-8 reaches us with U+FFFD in place of its bad bytes, and no file has that
//   name: it cannot be opened, so it cannot be published, nor anything under it;
// - a directory we may not read (the watcher, told to ignore permission errors, says nothing of it).
// A file we may not read is published, and each attempt to send it says so. The walk also hands over each
// symlink it meets (`symlink`): one that leads nowhere, the watcher never reports.

import type { Dirent } from "node:fs";
import { lstat, readdir } from "node:fs/promises";
import path from "node:path";
import { isUnpublished } from "../paths.js";

/**
 * Walk `root` and `report` each such name, at most `limit` of them (then one line more, and the walk ends);
 * `unreadable` hears of each directory we may not read, `symlink` of each symlink.
 */
export async function reportUnpublishable(
  root: string,
  limit: number,
  report: (message: string) => void,
  unreadable: (dir: string) => void,
  symlink: (absolute: string, relative: string) => void = () => undefined,
): Promise<void> {
  let reported = 0;
  const say = (message: string): boolean => {
    if (++reported > limit) {
      report(`more names could not be published (first ${limit} above)`);
      return false;
    }
    report(message);
    return true;
  };
  const walk = async (dir: string, relativeDir: string): Promise<boolean> => {
    let entries: Dirent[];
    try {
      entries = await readdir(dir, { withFileTypes: true });
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      if (code === "EACCES" || code === "EPERM") {
        unreadable(dir);
        return say(`not published: "${relativeDir || "."}/" and what is in it: cannot read it (${code})`);
      }
      return true; // (gone meanwhile: the watcher says so)
    }
    for (const entry of entries) {
      const relative = relativeDir === "" ? entry.name : `${relativeDir}/${entry.name}`;
      if (isUnpublished(relative)) continue;
      const absolute = path.join(dir, entry.name);
      if (relative.includes("\uFFFD") && !(await lstat(absolute).then(() => true, () => false))) {
        // (Each bad byte shown as "?": the replacement character would only add to the confusion.)
        if (!say(`not published: "${relative.replaceAll("\uFFFD", "?")}": its name is not valid UTF-8 (Node cannot open it); rename it`)) return false;
        continue;
      }
      if (entry.isSymbolicLink()) symlink(absolute, relative);
      if (entry.isDirectory() && !(await walk(absolute, relative))) return false;
    }
    return true;
  };
  await walk(root, "");
}
