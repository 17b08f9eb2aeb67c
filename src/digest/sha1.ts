// RFC 35's file digest: SHA-1 of the content, 40 uppercase hex (CZMQ zfile_digest), which a reference
// client lists in its ICANHAZ cache for each file it holds. Computed in the fingerprint worker; on the
// calling thread only when the worker cannot.

import { createHash } from "node:crypto";
import { closeSync, fstatSync, readSync, statSync } from "node:fs";
import { assertOpenedInside } from "../server/opened-inside.js";
import { openRegularSync } from "./open-regular.js";
import { isRacy, sameVersion, versionOfStats, type Version } from "./version.js";

/** A digest, and the version of the file it is of. */
export interface Sha1Digest {
  readonly digest: string;
  readonly version: Version;
  /** Changed too recently to be told from a change still to come (see RACY_MS in version.ts): not to be remembered. */
  readonly racy?: boolean;
}

/**
 * One read buffer per thread, kept: a client's cache may list a SHA-1 for each of 10,000 small files, and
 * a fresh 1 MiB buffer for each cost the worker more than reading them (its allocation and the collections
 * it brought on: 175 of 680 ms for 10,000 files of 4 KiB, measured). Safe to share: the reads are
 * synchronous, and the bytes are hashed before the next one.
 */
let readBuffer: Buffer | undefined;

/**
 * The SHA-1 of a regular file (nothing else is opened: openRegularSync), read through a
 * descriptor checked to be inside `root`: the file the mount published, not one outside it reached through
 * a directory swapped for a symlink since (whether a client's guess of its digest is right would tell it
 * about that file). With the version it is of, from the descriptor: the caller needs no stat of its own
 * (on the server's busy thread, 10,000 stats cost more than the 10,000 digests did in this thread).
 * Undefined if the file changed while it was read (then the digest is of no version: unsure, it goes).
 * `known`: a digest computed before, through a descriptor checked against the same `root`; if the file is
 * still that version (one stat: the same inode, unchanged), it is the answer.
 */
export function sha1FileSync(file: string, root: string, known?: Sha1Digest): Sha1Digest | undefined {
  if (known) {
    const now = statSync(file, { throwIfNoEntry: false });
    // (The same inode, size, mtime and ctime: the very file hashed, inside this root then, unchanged.)
    if (now?.isFile() && sameVersion(versionOfStats(now), known.version)) return known;
  }
  const readFrom = Date.now();
  const { fd, stats: before } = openRegularSync(file);
  try {
    assertOpenedInside(fd, root, file);
    const hash = createHash("sha1");
    const buffer = (readBuffer ??= Buffer.allocUnsafe(1024 * 1024));
    // No further than the size it had: a file that keeps growing (a sparse one made longer and longer, in
    // no time) must not hold the one worker for ever. Longer or shorter after, it is not this version.
    for (let at = 0; at < before.size; ) {
      const bytesRead = readSync(fd, buffer, 0, Math.min(buffer.length, before.size - at), at);
      if (bytesRead === 0) return undefined;
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
    const version = versionOfStats(before);
    const after = fstatSync(fd);
    if (!sameVersion(versionOfStats(after), version)) return undefined;
    const racy = isRacy(after, readFrom);
    return { digest: hash.digest("hex").toUpperCase(), version, ...(racy ? { racy } : {}) };
  } finally {
    closeSync(fd);
  }
}
