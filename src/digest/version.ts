// One version of a file, as the server's fingerprint memory (server/fingerprints.ts) and the RFC 35 digest
// worker (sha1.ts) both tell versions apart: here so that the worker need not load the server's modules.

/**
 * One version of a file. Size and mtime are what a writer would change; the inode and ctime catch what
 * they miss (a file replaced by rename, or rewritten with its mtime set back: ctime cannot be set back).
 */
export interface Version {
  readonly size: number;
  readonly mtimeMs: number;
  readonly ctimeMs: number;
  readonly ino: number;
}

export function versionOfStats(s: { size: number; mtimeMs: number; ctimeMs: number; ino: number }): Version {
  return { size: s.size, mtimeMs: s.mtimeMs, ctimeMs: s.ctimeMs, ino: s.ino };
}

export function sameVersion(a: Version, b: Version): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs && a.ctimeMs === b.ctimeMs && a.ino === b.ino;
}

/**
 * What is sent as X-FMQ-Version: the part of a version size and mtime do not say. A partial listed back
 * with another tag holds bytes of another version, whatever its size and mtime (a rewrite with them put
 * back, `touch -r`, `cp -p` over it): resumed, it would fail the final check and come again whole.
 */
export function versionTag(version: Version): string {
  return `${version.ino}-${version.ctimeMs}`;
}

/**
 * A file's times come from the kernel's coarse clock, which moves in ticks (1-10 ms): a rewrite of the same
 * size within the tick of the version we hashed leaves size, mtime and ctime as they were, and a digest
 * remembered for that version would be answered for the new content until the file changed again (git's
 * "racily clean" entries). A digest of a file changed less than this long before its read began is used
 * once and not remembered. (Linux 6.13 and later give ext4, xfs, btrfs and tmpfs a fine-grained time for
 * a change made after the times were read, so there the window never bites; older kernels and other file
 * systems have it.)
 */
const RACY_MS = 20;

/**
 * Was the file (its times as `stats` say) changed within RACY_MS of `now`? For a digest, `now` is when its
 * read began (or earlier): a same-tick rewrite during a long read would leave the version as it was too,
 * and the digest be of bytes from both; one that began RACY_MS after the last change is safe whatever
 * comes after, since any later write lands in a later tick.
 */
export function isRacy(stats: { readonly mtimeMs: number; readonly ctimeMs: number }, now = Date.now()): boolean {
  return now - Math.max(stats.mtimeMs, stats.ctimeMs) < RACY_MS;
}
