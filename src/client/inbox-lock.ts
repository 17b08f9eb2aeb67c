// One subscriber per inbox. Two writing into the same inbox race on its partial files and its manifest
// (each renames the other's files away, and the manifest says what neither delivered). The lock is an
// abstract Unix socket (Linux): the kernel releases it when the process ends, however it ends, so a
// subscriber killed with -9 leaves no stale lock behind. Abstract sockets have no permissions: anyone on
// the host may bind any name. Named after the inbox's real path alone, another user could take the name
// first and keep every subscriber out of that inbox (a review did). So the name also holds a random key
// kept in the inbox's state directory, readable by its owner alone. Where there are no abstract sockets,
// nothing is locked.

import { createHash, randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, linkSync, openSync, readSync, unlinkSync, writeSync } from "node:fs";
import { createServer, type Server } from "node:net";

export class InboxInUseError extends Error {
  override name = "InboxInUseError";
}

/**
 * The inbox's lock key, kept at `keyFile` (a path through the held state directory): made once (mode 0600,
 * never through a symlink), then read by every subscriber of that inbox. One another user made is refused.
 */
export function lockKey(keyFile: string, shown: string): string {
  // Made only when missing: a subscriber restarted on a full disk must still get in (writing a new key
  // every time, even one that would lose to the key already there, failed with ENOSPC).
  let key: number;
  try {
    key = openSync(keyFile, constants.O_RDONLY | constants.O_NOFOLLOW);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "ENOENT") throw error;
    writeLockKey(keyFile, randomBytes(32).toString("hex"));
    key = openSync(keyFile, constants.O_RDONLY | constants.O_NOFOLLOW);
  }
  try {
    const stats = fstatSync(key);
    if (!stats.isFile() || (process.getuid && stats.uid !== process.getuid()) || (stats.mode & 0o077) !== 0) {
      throw new InboxInUseError(`${shown} is not ours (another user's, or readable by others): cannot lock the inbox`);
    }
    const buffer = Buffer.alloc(64);
    return buffer.subarray(0, readSync(key, buffer, 0, 64, 0)).toString("latin1");
  } finally {
    closeSync(key);
  }
}

/** Put `key` at `keyFile` unless a key is there already (then that one stands: the first link wins). */
export function writeLockKey(keyFile: string, key: string): void {
  const temp = `${keyFile}.${process.pid}.${randomBytes(6).toString("hex")}`;
  try {
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      writeSync(fd, key);
    } finally {
      closeSync(fd);
    }
    // (Two subscribers starting at once: the first link wins, and both read its key.)
    linkSync(temp, keyFile);
  } catch (error) {
    if ((error as NodeJS.ErrnoException).code !== "EEXIST") throw error;
  } finally {
    try {
      unlinkSync(temp);
    } catch {
      // (Never made.)
    }
  }
}

/** Hold the lock of the inbox at `root` (a real path), whose lock key is `key`, until `release()`. */
export async function lockInbox(root: string, key: string): Promise<{ release(): void }> {
  if (process.platform !== "linux") return { release: () => undefined };
  const name = `\0fmq-inbox-${createHash("sha256").update(root).update("\0").update(key).digest("hex").slice(0, 40)}`;
  const server: Server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", (error: NodeJS.ErrnoException) => {
      if (error.code === "EADDRINUSE") reject(new InboxInUseError(`${root} is in use by another subscriber (one inbox, one subscriber)`));
      else resolve(); // no lock to be had here: go on without one
    });
    server.listen({ path: name }, () => resolve());
  });
  // It must not keep the process alive.
  server.unref();
  return { release: () => void server.close() };
}
