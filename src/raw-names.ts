// Names that are not UTF-8. A Linux name is any bytes but "/" and NUL, and the C reference server sends a
// file's name as the bytes it found on disk ("caf\xe9.txt", written by a Latin-1 program). Our names are
// JavaScript strings, so such a name is carried as Python carries it (PEP 383, "surrogateescape"): every
// byte that is not part of valid UTF-8 becomes a lone surrogate, U+DC80 to U+DCFF, which no valid UTF-8
// can produce. The string is then exact: its bytes are given back to the kernel at every file-system call
// (Node would write a lone surrogate as U+FFFD, "\xef\xbf\xbd": another name), and JSON keeps it as
// "\udce9", which Python's os.fsencode turns back into the very bytes.
//
// Only a file's name from a server is read so (CHEEZBURGER's filename): the rest of the protocol's text
// stays strict UTF-8, and our server never publishes such a name (a mount skips what Node cannot open).

import { isUtf8 } from "node:buffer";

/** One stray byte, as a lone surrogate (in a `u` regex a well-formed pair is one code point: not matched). */
const STRAY_BYTE = /[\udc80-\udcff]/u;
const STRAY_BYTES = /[\udc80-\udcff]/gu;

/** Bytes of one valid UTF-8 sequence at `i` (no overlong forms, no surrogates, at most U+10FFFF), or 0. */
function sequenceLength(bytes: Uint8Array, i: number): number {
  const lead = bytes[i]!;
  const follows = (at: number, low = 0x80, high = 0xbf) => at < bytes.length && bytes[at]! >= low && bytes[at]! <= high;
  if (lead < 0x80) return 1;
  if (lead < 0xc2) return 0;
  if (lead < 0xe0) return follows(i + 1) ? 2 : 0;
  if (lead < 0xf0) return follows(i + 1, lead === 0xe0 ? 0xa0 : 0x80, lead === 0xed ? 0x9f : 0xbf) && follows(i + 2) ? 3 : 0;
  if (lead < 0xf5) return follows(i + 1, lead === 0xf0 ? 0x90 : 0x80, lead === 0xf4 ? 0x8f : 0xbf) && follows(i + 2) && follows(i + 3) ? 4 : 0;
  return 0;
}

/** A name's bytes as a string: UTF-8 where they are UTF-8, each other byte a lone surrogate (U+DC00 + byte). */
export function decodeName(bytes: Buffer): string {
  // (Nearly every name: one native check, as strict as the walk below.)
  if (isUtf8(bytes)) return bytes.toString("utf8");
  let name = "";
  let from = 0;
  for (let i = 0; i < bytes.length; ) {
    const n = sequenceLength(bytes, i);
    if (n > 0) {
      i += n;
      continue;
    }
    name += bytes.toString("utf8", from, i) + String.fromCharCode(0xdc00 + bytes[i]!);
    from = ++i;
  }
  return name + bytes.toString("utf8", from);
}

/** Holds a byte that is not UTF-8 (carried as a lone surrogate). */
export function hasStrayBytes(name: string): boolean {
  return STRAY_BYTE.test(name);
}

/** The bytes a name stands for: UTF-8, with each stray byte given back as it came. */
export function nameBytes(name: string): Buffer {
  if (!hasStrayBytes(name)) return Buffer.from(name, "utf8");
  const parts: Buffer[] = [];
  let from = 0;
  for (const match of name.matchAll(STRAY_BYTES)) {
    parts.push(Buffer.from(name.slice(from, match.index), "utf8"), Buffer.of(match[0].charCodeAt(0) - 0xdc00));
    from = match.index + 1;
  }
  parts.push(Buffer.from(name.slice(from), "utf8"));
  return Buffer.concat(parts);
}

/** Its length in bytes on the wire and on disk. */
export function nameByteLength(name: string): number {
  return hasStrayBytes(name) ? nameBytes(name).length : Buffer.byteLength(name, "utf8");
}

/**
 * A path for node:fs: the string itself, or its bytes when it holds stray ones (a Buffer path reaches the
 * kernel as it is). Every file-system call on a path that may hold a name from the wire goes through it.
 */
export function fsPath(path: string): string | Buffer {
  return hasStrayBytes(path) ? nameBytes(path) : path;
}

/** For people: each stray byte as \xNN (a terminal would show U+FFFD for any of them). */
export function showStrayBytes(name: string): string {
  return name.replace(STRAY_BYTES, (c) => `\\x${(c.charCodeAt(0) - 0xdc00).toString(16).toUpperCase().padStart(2, "0")}`);
}
