// How fmq opens a file it reads (to send it, fingerprint it, digest it): only once it is known to be a
// regular file. A published tree, or an inbox, may be written by others, and between the moment a name
// was looked at and the moment it is opened, it (or a directory on its way) may be swapped for something
// else. Checking the descriptor after open() is too late for a device: opening one is itself the harm
// (a watchdog armed and then left to reboot the host, a tape rewound, a terminal taken as controlling
// terminal by a daemon without one). So on Linux the name is first opened with O_PATH, which runs no
// driver's open(); that descriptor is checked (fstat: a regular file), and only then is the very inode it
// names opened to read, through /proc/self/fd (which cannot lead anywhere else).

import { closeSync, constants, fstatSync, openSync, type Stats } from "node:fs";
import { open, type FileHandle } from "node:fs/promises";
// (A name that is not UTF-8, received by a subscriber, is opened by its bytes.)
import { fsPath } from "../raw-names.js";

/**
 * Reading flags. O_NONBLOCK: where the check cannot be made (not Linux), a FIFO swapped in fails at once
 * instead of holding a thread in open() until a writer comes; a regular file reads the same with it.
 * O_NOCTTY: never a controlling terminal, whatever is opened.
 */
export const READ_FLAGS = constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY;

/**
 * O_PATH (Linux; the same value on x86-64 and arm64, absent from node:fs's constants): a descriptor that
 * names a file without opening it. With O_NOFOLLOW, a symlink at the name is named, not followed.
 */
const O_PATH = 0o10000000;
const NAME_ONLY = process.platform === "linux" ? O_PATH | constants.O_NOFOLLOW : undefined;

export class NotRegularError extends Error {
  override name = "NotRegularError";
}

function notRegular(file: string, stats: Stats): NotRegularError {
  return new NotRegularError(`${file}: not a regular file${stats.isSymbolicLink() ? " (a symlink)" : ""}`);
}

/**
 * Open the regular file at `file` to read it, and its stats (of the descriptor: the file read). A symlink
 * at the name is not followed, and anything but a regular file is refused (NotRegularError) without being
 * opened.
 */
export function openRegularSync(file: string): { fd: number; stats: Stats } {
  if (NAME_ONLY === undefined) {
    const fd = openSync(fsPath(file), READ_FLAGS | constants.O_NOFOLLOW);
    try {
      const stats = fstatSync(fd);
      if (!stats.isFile()) throw notRegular(file, stats);
      return { fd, stats };
    } catch (error) {
      closeSync(fd);
      throw error;
    }
  }
  const name = openSync(fsPath(file), NAME_ONLY);
  try {
    const stats = fstatSync(name);
    if (!stats.isFile()) throw notRegular(file, stats);
    return { fd: openSync(`/proc/self/fd/${name}`, READ_FLAGS), stats };
  } finally {
    closeSync(name);
  }
}

/** openRegularSync through the thread pool. */
export async function openRegular(file: string): Promise<{ handle: FileHandle; stats: Stats }> {
  if (NAME_ONLY === undefined) {
    const handle = await open(fsPath(file), READ_FLAGS | constants.O_NOFOLLOW);
    try {
      const stats = await handle.stat();
      if (!stats.isFile()) throw notRegular(file, stats);
      return { handle, stats };
    } catch (error) {
      await handle.close();
      throw error;
    }
  }
  const name = await open(fsPath(file), NAME_ONLY);
  try {
    const stats = await name.stat();
    if (!stats.isFile()) throw notRegular(file, stats);
    return { handle: await open(`/proc/self/fd/${name.fd}`, READ_FLAGS), stats };
  } finally {
    await name.close();
  }
}
