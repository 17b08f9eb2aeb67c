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
 * What is sent as X-FMQ-Version: the part of a version size and mtime do not say that a partial must
 * share to be resumed: the inode. A partial listed back with another holds bytes of another file, whatever
 * its size and mtime (one renamed over it, as rsync, tar and most editors replace a file): resumed, it
 * would fail the final check and come again whole. Not the ctime: a chmod, a new hard link (a snapshot
 * backup makes one of every file) or an xattr moves it without changing a byte, and every interrupted
 * transfer would start again from nothing (a review). A rewrite in place with size and mtime put back
 * (`cp -p` over it) keeps the inode: that one the final check still catches.
 */
export function versionTag(version: { readonly ino: number }): string {
  return String(version.ino);
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
 * The same for a file system whose times move once a second, or every two (vfat, exFAT, ext4 with small
 * inodes, some NFS servers): there a same-size rewrite up to two seconds after the version was taken
 * leaves it as it was, and a digest remembered 20 ms after the change was answered for other bytes until
 * the file changed again (the client refusing each copy: a review). Told by both times being whole
 * seconds, which a file system with a finer clock gives once in a billion.
 */
const COARSE_RACY_MS = 2_000;

/**
 * Was the file (its times as `stats` say) changed within RACY_MS of `now`? For a digest, `now` is when its
 * read began (or earlier): a same-tick rewrite during a long read would leave the version as it was too,
 * and the digest be of bytes from both; one that began RACY_MS after the last change is safe whatever
 * comes after, since any later write lands in a later tick.
 */
export function isRacy(stats: { readonly mtimeMs: number; readonly ctimeMs: number }, now = Date.now()): boolean {
  const coarse = stats.mtimeMs % 1000 === 0 && stats.ctimeMs % 1000 === 0;
  return now - Math.max(stats.mtimeMs, stats.ctimeMs) < (coarse ? COARSE_RACY_MS : RACY_MS);
}
