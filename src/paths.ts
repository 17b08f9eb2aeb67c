// Virtual paths: the names files have on the wire ("/logs/app/x.txt"), and the rules that keep them
// inside a mount on the server and inside the inbox on the client. Every name from the wire is hostile
// until one of these functions has said otherwise.

import path from "node:path";
import { nameByteLength } from "./raw-names.js";

/** Suffix of the client's partial files. The server never publishes them; the client never accepts such a name. */
export const PARTIAL_SUFFIX = ".fmq-part";

/** Linux NAME_MAX and a generous PATH_MAX for relative names. */
const MAX_SEGMENT_BYTES = 255;
const MAX_RELATIVE_BYTES = 4096;
/**
 * Levels of directories in a name, at most. A name of 4 KiB may be 2,000 levels deep ("a/a/.../f"), and a
 * subscriber removing the empty directories left by its delete walks from the inbox once per level: 33 s
 * of its time for one such name from a hostile server (a review; measured). Real trees are far shallower.
 */
const MAX_SEGMENTS = 128;

/**
 * Normalise a subscription or mount alias: must start with "/", "/" separators, no empty, "." or ".."
 * segments, no NUL, backslash or lone UTF-16 surrogate. A trailing "/" is dropped ("/sub/" is "/sub").
 * Returns undefined if invalid.
 */
export function normaliseVirtualPath(path: string): string | undefined {
  if (!path.startsWith("/")) return undefined;
  if (path === "/") return "/";
  const trimmed = path.endsWith("/") ? path.slice(0, -1) : path;
  const segments = trimmed.slice(1).split("/");
  if (!segments.every(isSafeSegment)) return undefined;
  if (Buffer.byteLength(trimmed) > MAX_RELATIVE_BYTES) return undefined;
  return trimmed;
}

/** Path-boundary match: "/sub" covers "/sub" and "/sub/x", never "/subway". "/" covers everything. */
export function covers(prefix: string, vpath: string): boolean {
  // (A name from the wire that does not start with "/" is under no path at all, not even "/".)
  if (prefix === "/") return vpath.startsWith("/");
  return vpath === prefix || (vpath.startsWith(prefix) && vpath.charCodeAt(prefix.length) === 0x2f);
}

/** Two virtual paths overlap if either covers the other (a subscription that can receive files of a mount). */
export function overlaps(a: string, b: string): boolean {
  return covers(a, b) || covers(b, a);
}

/** The virtual path of a file published under `alias` at `relative` ("a/b.txt"). */
export function joinVirtual(alias: string, relative: string): string {
  return alias === "/" ? `/${relative}` : `${alias}/${relative}`;
}

/**
 * The part of `vpath` below `prefix` ("/sub", "/sub/a/b" -> "a/b"), or undefined if `prefix` does not
 * cover it. A file equal to the prefix itself lands under its own base name.
 */
export function relativeTo(prefix: string, vpath: string): string | undefined {
  if (!covers(prefix, vpath)) return undefined;
  if (prefix === "/") return vpath.slice(1);
  if (vpath === prefix) return vpath.slice(vpath.lastIndexOf("/") + 1);
  return vpath.slice(prefix.length + 1);
}

/** A lone UTF-16 surrogate: no UTF-8 form (in a `u` regex, a well-formed pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Cs}/u;

function isSafeSegment(segment: string): boolean {
  return (
    segment.length > 0 &&
    segment !== "." &&
    segment !== ".." &&
    !segment.includes("\0") &&
    !segment.includes("\\") &&
    // (No UTF-8 form: a subscription to it was accepted, and its ICANHAZ could never be encoded.)
    !LONE_SURROGATE.test(segment) &&
    Buffer.byteLength(segment) <= MAX_SEGMENT_BYTES
  );
}

/**
 * Why a relative name received from the wire may not be written under the inbox, or undefined if it may.
 * Refused: empty, absolute, "." or ".." segments, empty segments ("a//b"), NUL, backslash, over-long
 * names, and names that would collide with our own partial files.
 */
export function unsafeRelativeReason(relative: string): string | undefined {
  if (relative.length === 0) return "empty name";
  if (relative.startsWith("/")) return "absolute name";
  if (relative.includes("\0")) return "NUL in name";
  if (relative.includes("\\")) return "backslash in name";
  if (nameByteLength(relative) > MAX_RELATIVE_BYTES) return "name too long";
  const segments = relative.split("/");
  if (segments.length > MAX_SEGMENTS) return `more than ${MAX_SEGMENTS} levels deep`;
  for (const segment of segments) {
    if (segment === "" ) return "empty path segment";
    if (segment === "." || segment === "..") return `"${segment}" segment`;
    if (nameByteLength(segment) > MAX_SEGMENT_BYTES) return "path segment too long";
  }
  if (relative.endsWith(PARTIAL_SUFFIX)) return "reserved name";
  return undefined;
}

/** Hidden files and directories (".x") and our partial files are never published. */
export function isUnpublished(relative: string): boolean {
  // (A segment that begins with "." begins the name or follows a "/": asked several times of every name a
  // scan finds, so without splitting it.)
  return relative.startsWith(".") || relative.includes("/.") || relative.endsWith(PARTIAL_SUFFIX);
}

/** A relative name that path.relative would write otherwise: empty, "." or ".." segments, a leading or trailing "/". */
const NOT_NORMAL = /^\/|\/\/|\/$|(^|\/)\.\.?(\/|$)/;

/**
 * `absolute` relative to the directory `root`, with "/" between names: what path.relative(root, absolute)
 * gives on POSIX. A watcher's name under the root (normal already) is cut from it: path.relative resolves
 * both against the working directory first, and a scan asks several times for each name it finds (a
 * sixth of what a 50,000-file mount's scan allocated, measured: 1.49 GB, 1.24 without). Anything else goes to path.relative.
 */
export function relativeInside(root: string, absolute: string): string {
  const prefix = root.endsWith("/") ? root : root + "/";
  if (absolute.startsWith(prefix) && path.isAbsolute(root)) {
    const rest = absolute.slice(prefix.length);
    if (rest !== "" && !NOT_NORMAL.test(rest)) return rest;
  }
  return path.relative(root, absolute).split(path.sep).join("/");
}

/**
 * What must not reach a terminal as it is in a name from the wire or the disk: control characters, the
 * bidirectional controls that reorder what a terminal shows after them ("invoice\u202etxt.exe" shows as
 * "invoiceexe.txt"), and the line and paragraph separators U+2028 and U+2029, which JSON leaves raw and
 * readers that split lines on them (Python's splitlines) take for the end of a line: one event read as
 * two (a review). Global: for String.replace.
 */
export const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]/g;
