// RFC 35's file digest: SHA-1 of the content, 40 uppercase hex (CZMQ zfile_digest), which a reference
// client lists in its ICANHAZ cache for each file it holds. Computed in the fingerprint worker; on the
// calling thread only when the worker cannot.

import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { assertOpenedInside } from "../server/opened-inside.js";
import { READ_FLAGS } from "./blocks.js";

/**
 * The SHA-1 of a regular file (never waiting in open(): a FIFO swapped in fails at once), read through a
 * descriptor checked to be inside `root`: the file the mount published, not one outside it reached through
 * a directory swapped for a symlink since (whether a client's guess of its digest is right would tell it
 * about that file).
 */
export function sha1FileSync(file: string, root: string): string {
  const fd = openSync(file, READ_FLAGS);
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${file}: not a regular file`);
    assertOpenedInside(fd, root, file);
    const hash = createHash("sha1");
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (let at = 0; ; ) {
      const bytesRead = readSync(fd, buffer, 0, buffer.length, at);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
    return hash.digest("hex").toUpperCase();
  } finally {
    closeSync(fd);
  }
}
