// One subscriber per inbox. Two writing into the same inbox race on its partial files and its manifest
// (each renames the other's files away, and the manifest says what neither delivered). The lock is an
// abstract Unix socket (Linux) named after the inbox's real path: the kernel releases it when the process
// ends, however it ends, so a subscriber killed with -9 leaves no stale lock behind. Where there are no
// abstract sockets, nothing is locked.

import { createHash } from "node:crypto";
import { createServer, type Server } from "node:net";

export class InboxInUseError extends Error {
  override name = "InboxInUseError";
}

/** Hold the lock of the inbox at `root` (a real path) until `release()`. */
export async function lockInbox(root: string): Promise<{ release(): void }> {
  if (process.platform !== "linux") return { release: () => undefined };
  const name = `\0fmq-inbox-${createHash("sha256").update(root).digest("hex").slice(0, 40)}`;
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
