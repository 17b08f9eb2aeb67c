// The ICANHAZ cache: what we hold under a subscription, so the server sends only what we lack, resumes
// our partial files and tells us of deletes we missed. It must fit in one message a server will take:
// at most MAX_DICTIONARY_ENTRIES entries (our server refuses more) and CACHE_MAX_BYTES (servers bound
// a message, 16 MiB by default for ours). A subscriber holding more lists what costs most to send again
// (partial files, then the biggest files); the rest is sent again whole, and a delete of one of those
// while we were away is missed.

import { LONG_NAME_KEY, formatCacheEntry, type CacheEntry } from "../protocol/extensions.js";
import { hasStrayBytes } from "../raw-names.js";
import { MAX_DICTIONARY_ENTRIES, MAX_LONGSTR, MAX_STRING, type Dictionary } from "../protocol/messages.js";

/** What the entries may take on the wire, well under a 16 MiB message. */
export const CACHE_MAX_BYTES = 12 * 1024 * 1024;

export interface Cache {
  readonly cache: Dictionary;
  /** Entries left out (too many, or too big together). */
  readonly omitted: number;
}

/** The cache for `entries` (name relative to the subscription -> what we hold), within the limits. */
export function buildCache(entries: ReadonlyMap<string, CacheEntry>, maxEntries = MAX_DICTIONARY_ENTRIES, maxBytes = CACHE_MAX_BYTES): Cache {
  let long = 0;
  const formatted: { key: string; value: string; bytes: number; entry: CacheEntry }[] = [];
  let total = 0;
  let tooLong = 0;
  for (const [name, entry] of entries) {
    // Cache keys are 1-octet-length strings: a longer name goes in its entry, under a numbered key.
    // (So does a name that is not UTF-8: a key is strict UTF-8, its value's "name" the hex of any bytes.)
    const short = Buffer.byteLength(name) <= MAX_STRING && !hasStrayBytes(name);
    const key = short ? name : `${LONG_NAME_KEY}${long++}`;
    let value = formatCacheEntry(short ? entry : { ...entry, name });
    // A value is a longstr, and one over MAX_LONGSTR would make the whole ICANHAZ unsendable, every time
    // (a file of about 4 GiB has 4,096 block hashes: 64 KiB of hex). Its block hashes go first (a change
    // to it then comes whole, not as changed blocks); an entry still too long is left out. (ASCII: its
    // length is its size in bytes.)
    if (value.length > MAX_LONGSTR && entry.blocks !== undefined) {
      const { blocks: _dropped, ...withoutBlocks } = entry;
      value = formatCacheEntry(short ? withoutBlocks : { ...withoutBlocks, name });
    }
    if (value.length > MAX_LONGSTR) {
      tooLong++;
      continue;
    }
    // (1 + key, 4 + value: the key is at most 255 bytes, its length is close enough.)
    const bytes = 5 + Buffer.byteLength(key) + value.length;
    formatted.push({ key, value, bytes, entry });
    total += bytes;
  }
  if (formatted.length > maxEntries || total > maxBytes) {
    // Keep what is dearest to send again: partial files (resumed, not restarted), then big files.
    formatted.sort((a, b) => Number(b.entry.partial !== undefined) - Number(a.entry.partial !== undefined) || (b.entry.size ?? 0) - (a.entry.size ?? 0));
  }
  const cache: Dictionary = new Map();
  let bytes = 0;
  for (const item of formatted) {
    if (cache.size >= maxEntries || bytes + item.bytes > maxBytes) break;
    cache.set(item.key, item.value);
    bytes += item.bytes;
  }
  return { cache, omitted: formatted.length - cache.size + tooLong };
}
