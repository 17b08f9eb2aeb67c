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
