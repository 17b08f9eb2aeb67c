// fmq's extensions to FILEMQ v2. They live only in dictionaries (ICANHAZ options and cache, CHEEZBURGER
// headers), which a plain v2 peer ignores, so every extension degrades to plain FILEMQ: a reference
// client gets whole files, a reference server gets caches it does not read and sends every change to its mounts.
// The README's protocol section lists them.

import { isUtf8 } from "node:buffer";
import { nameBytes } from "../raw-names.js";

/** ICANHAZ options. */
export const SubscribeOption = {
  /** RFC 35: "the server SHALL send the whole content of the path, except files listed in the cache". */
  RESYNC: "RESYNC",
  /** Ours: the client understands the headers below and can take a changed file as changed blocks. */
  CAPABILITIES: "X-FMQ-Caps",
} as const;

/** Values of X-FMQ-Caps, comma-separated. */
export const Capability = {
  /** Verify files against X-FMQ-XXH64T; accept resumed transfers. */
  VERIFY: "verify",
  /** Accept a changed file as its changed blocks on top of the version it holds (X-FMQ-Base). */
  DELTA: "delta",
  /** Take a file that fits in one chunk as one CHEEZBURGER: its data with eof=1 and the eof chunk's headers. */
  SINGLE: "single",
  /**
   * Take several such one-message files in one ZeroMQ message: a multipart message whose every frame is a
   * complete CHEEZBURGER (with "single"). The costs of a flood of small files are per message, not per byte.
   */
  BATCH: "batch",
} as const;

/** Most frames in one batch (capability "batch"): a batch of more is malformed as a whole. */
export const MAX_BATCH_FRAMES = 64;

/**
 * A client of ours keeps the partial file of a transfer that stops before its end (the session ends, or
 * the server moves on) or ends marked changed (X-FMQ-Status), if the file is at least this big and a
 * block of it came, and lists it in its next cache: a resume may take it up. In a session, our server
 * offers such a resume only where the client keeps one (a resume it has nothing for is refused, said
 * as an error, and the file asked for whole).
 */
export const RESUME_MIN_SIZE = 2 * 1024 * 1024;

/**
 * Deltas of a file cut short (each began with a copy of the version held) that our client takes before it
 * asks for the file whole instead, until the file comes; our server, knowing, resumes what the client
 * kept of them rather than begin another.
 */
export const MAX_UNFINISHED_DELTAS = 2;

/** CHEEZBURGER headers, on the first chunk of a transfer and on the final (eof) chunk. */
export const Header = {
  /** The file's size on the server when the transfer began (decimal). */
  SIZE: "X-FMQ-Size",
  /** The file's mtime on the server, in ms since the epoch (decimal, may have a fraction). */
  MTIME: "X-FMQ-Mtime",
  /** On the eof chunk: the file's tree hash (XXH64 of its 1 MiB blocks' XXH64s), 16 hex digits. */
  HASH: "X-FMQ-XXH64T",
  /** On the first chunk of a delta: the tree hash of the version the chunks apply to. */
  BASE: "X-FMQ-Base",
  /**
   * On the first chunk of a file sent in more than one: a tag of the version being sent beyond its size
   * and mtime (the server's inode number of it: versionTag), opaque to the client, which lists it back
   * with a partial (ptag) so that the server resumes only a file the bytes held can be of.
   */
  VERSION: "X-FMQ-Version",
  /**
   * On the first chunk of a resumed transfer (its offset a whole number of blocks), or, when the server's
   * fingerprint of the file was still being computed then, on the first data chunk after it is: the tree
   * hash the bytes before the offset would have as a file of their own (XXH64 of those blocks' XXH64s).
   * The client hashes the part it holds before it writes on (it must, for the whole file's check), and
   * compares: a partial of other bytes (the file rewritten in place with its size and mtime put back, as
   * `cp -p` does, keeping its inode and so its tag; or damaged on disk) is refused there and the file
   * asked for whole, instead of the rest being sent to fail the final check and come again. (A
   * fingerprint that comes only after the last data chunk: no prefix is said; the final check remains.)
   */
  PREFIX: "X-FMQ-Prefix",
  /** On the eof chunk: "changed" if the file changed while it was sent; the receiver discards it. */
  STATUS: "X-FMQ-Status",
} as const;

/**
 * A cache entry (ICANHAZ cache value) from our client, keyed by the file's name relative to the
 * subscription path. RFC 35 puts a SHA-1 there (40 uppercase hex); ours starts with "fmq1;" and carries
 * fields separated by ";": size, mtime, hash (tree hash), blocks (hex block hashes, for delta), and for a
 * partial file of a newer version: partial (bytes held), psize, pmtime, ptag (that version's identity); or
 * for a partial whose resume was refused: pblocks (its blocks' hashes).
 */
export const CACHE_PREFIX = "fmq1;";

/**
 * Cache keys are 1-octet-length strings, so a name over 255 bytes cannot be one: its entry goes under a
 * key of this prefix and a number (never a file's name: "//" is an empty segment), with the name in its
 * value (field "name", hex of the UTF-8 bytes). A reference server finds no such file and ignores it.
 */
export const LONG_NAME_KEY = "X-FMQ-Long//";

export interface CacheEntry {
  /** The complete version held (absent when only a partial is held). */
  readonly size?: number;
  readonly mtime?: number;
  readonly hash?: string;
  /** Block hashes of the complete version, 8 bytes each. */
  readonly blocks?: Buffer;
  /** A partial file: bytes held, and the identity of the version they belong to (its tag: X-FMQ-Version). */
  readonly partial?: { readonly length: number; readonly size: number; readonly mtime: number; readonly tag?: string };
  /** The file's name, when it is too long to be the entry's key (under LONG_NAME_KEY). */
  readonly name?: string;
  /**
   * A partial file's whole blocks' hashes (8 bytes each), its bytes known by them and by nothing else:
   * listed when a resume of it was refused because the bytes before the offset had changed (a file written
   * in place behind the point it had come to). The server resumes after the blocks that still match.
   */
  readonly pblocks?: Buffer;
}

export function formatCacheEntry(entry: CacheEntry): string {
  const fields: string[] = [];
  if (entry.size !== undefined) fields.push(`size=${entry.size}`);
  if (entry.mtime !== undefined) fields.push(`mtime=${wireDecimal(entry.mtime)}`);
  if (entry.hash !== undefined) fields.push(`hash=${entry.hash}`);
  if (entry.blocks !== undefined && entry.blocks.length > 0) fields.push(`blocks=${entry.blocks.toString("hex")}`);
  if (entry.partial) fields.push(`partial=${entry.partial.length}`, `psize=${entry.partial.size}`, `pmtime=${wireDecimal(entry.partial.mtime)}`);
  if (entry.partial?.tag !== undefined) fields.push(`ptag=${entry.partial.tag}`);
  if (entry.name !== undefined) fields.push(`name=${nameBytes(entry.name).toString("hex")}`);
  if (entry.pblocks !== undefined && entry.pblocks.length > 0) fields.push(`pblocks=${entry.pblocks.toString("hex")}`);
  return CACHE_PREFIX + fields.join(";");
}

/**
 * A number as we write them on the wire (a size, an mtime in ms, maybe with a fraction; `signed` for an
 * mtime, which is before 1970 for a file touched so), within what a Number holds exactly; undefined for
 * anything else. Not Number() alone, which takes "1e300", "0x10", " 12" and "" (0) from a hostile peer.
 */
export function wireNumber(text: string | undefined, signed = false): number | undefined {
  if (text === undefined || !(signed ? /^-?\d+(\.\d+)?$/ : /^\d+(\.\d+)?$/).test(text)) return undefined;
  const n = Number(text);
  return Number.isFinite(n) && Math.abs(n) <= Number.MAX_SAFE_INTEGER ? n : undefined;
}

/** A size or a byte count from the wire: a whole number (wireNumber's, without a fraction). */
export function wireSize(text: string | undefined): number | undefined {
  return text !== undefined && /^\d+$/.test(text) ? wireNumber(text) : undefined;
}

/**
 * An mtime (ms) as wireNumber reads it. String() writes a number under 1e-6 in exponent form ("-1e-7":
 * a file's time a few hundred nanoseconds from the epoch), which wireNumber refuses: such a file had no
 * identity, so no resume and no quick check. Written out in plain digits instead, the same shortest
 * digits String() chose, so it reads back as the very same Number.
 */
export function wireDecimal(n: number): string {
  const text = String(n);
  const exponent = /^(-?)(\d)(?:\.(\d+))?e-(\d+)$/.exec(text);
  if (exponent === null) return text;
  const [, sign, first, rest = "", power] = exponent;
  return `${sign}0.${"0".repeat(Number(power) - 1)}${first}${rest}`;
}

/** Parse one of our cache values; undefined for anything else (a SHA-1, garbage). Hostile input: be strict. */
export function parseCacheEntry(value: string): CacheEntry | undefined {
  if (!value.startsWith(CACHE_PREFIX)) return undefined;
  const fields = new Map<string, string>();
  for (const field of value.slice(CACHE_PREFIX.length).split(";")) {
    const eq = field.indexOf("=");
    if (eq <= 0) continue;
    fields.set(field.slice(0, eq), field.slice(eq + 1));
  }
  // Sizes are never negative; an mtime is before 1970 for a file touched so (formatCacheEntry writes it
  // with its sign), and refusing it would send that file again at every subscription and never resume it.
  const hash = fields.get("hash");
  const blocksHex = fields.get("blocks");
  const size = wireSize(fields.get("size"));
  const mtime = wireNumber(fields.get("mtime"), true);
  const partialLength = wireSize(fields.get("partial"));
  const psize = wireSize(fields.get("psize"));
  const pmtime = wireNumber(fields.get("pmtime"), true);
  const ptag = fields.get("ptag");
  const name = decodeHexName(fields.get("name"));
  const pblocksHex = fields.get("pblocks");
  return {
    ...(size !== undefined ? { size } : {}),
    ...(mtime !== undefined ? { mtime } : {}),
    ...(hash !== undefined && /^[0-9a-f]{16}$/.test(hash) ? { hash: copied(hash) } : {}),
    ...(blocksHex !== undefined && /^([0-9a-f]{16})+$/.test(blocksHex) ? { blocks: Buffer.from(blocksHex, "hex") } : {}),
    ...(partialLength !== undefined && psize !== undefined && pmtime !== undefined && partialLength <= psize
      ? { partial: { length: partialLength, size: psize, mtime: pmtime, ...(isVersionTag(ptag) ? { tag: copied(ptag) } : {}) } }
      : {}),
    ...(name !== undefined ? { name } : {}),
    ...(pblocksHex !== undefined && /^([0-9a-f]{16})+$/.test(pblocksHex) ? { pblocks: Buffer.from(pblocksHex, "hex") } : {}),
  };
}

/** A string of its own. (A slice of the value would keep all of it alive, up to 64 KiB, for as long as the slice is held.) */
function copied(ascii: string): string {
  return Buffer.from(ascii, "latin1").toString("latin1");
}

/** X-FMQ-Version's value, from the wire: short, and nothing a cache entry or a log line would misread. */
export function isVersionTag(value: string | undefined): value is string {
  return value !== undefined && /^[0-9A-Za-z.:_-]{1,64}$/.test(value);
}

/** A name sent as hex of its UTF-8 bytes; undefined unless that is exactly what it is. */
function decodeHexName(hex: string | undefined): string | undefined {
  if (hex === undefined || hex.length === 0 || !/^([0-9a-f]{2})+$/.test(hex)) return undefined;
  const bytes = Buffer.from(hex, "hex");
  return isUtf8(bytes) ? bytes.toString() : undefined;
}

/** RFC 35's cache digest: SHA-1 of the content, 40 uppercase hex digits (CZMQ zfile_digest). */
export function isSha1Digest(value: string): boolean {
  return /^[0-9A-Fa-f]{40}$/.test(value);
}
