// Never serve outside a mount, checked on the open descriptor itself. The mount checks a file's real path
// when it publishes it, but the path is opened later (seconds or hours): by then a file or a directory on
// the way may have been swapped for a symlink leading anywhere, and a file outside given the same size
// and mtime would pass every other check. The kernel says which file a descriptor really is.

import { readlinkSync } from "node:fs";
import path from "node:path";

/** The file open as `fd` is not inside the mount it was published from. */
export class OutsideMountError extends Error {
  override name = "OutsideMountError";
}

/**
 * Throws OutsideMountError unless the file open as `fd` is inside `root` (a real path). Where the kernel
 * does not say (no /proc/self/fd: not Linux), the realpath check at publication is the only guard. On
 * Linux a kernel that does not answer (a path longer than readlink returns, /proc not mounted) is a
 * refusal: the file is not sent rather than sent unchecked.
 */
export function assertOpenedInside(fd: number, root: string, vpath: string): void {
  let where: string;
  try {
    where = readlinkSync(`/proc/self/fd/${fd}`);
  } catch (error) {
    if (process.platform !== "linux") return;
    throw new OutsideMountError(`${vpath}: cannot tell where it leads (${(error as NodeJS.ErrnoException).code ?? String(error)}): not sent`);
  }
  // (A file deleted since it was opened reads "<path> (deleted)": still inside if its path was.)
  if (!where.startsWith(root.endsWith(path.sep) ? root : root + path.sep)) {
    throw new OutsideMountError(`${vpath} now leads outside ${root} (to ${where}): not sent`);
  }
}
