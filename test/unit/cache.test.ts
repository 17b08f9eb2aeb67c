// The ICANHAZ cache a subscriber sends: everything it holds when that fits in one message; otherwise
// what costs most to send again (partial files, then the biggest files).

import { describe, expect, it } from "vitest";
import { buildCache } from "../../src/client/cache.js";
import { LONG_NAME_KEY, parseCacheEntry, type CacheEntry } from "../../src/protocol/extensions.js";
import { decodeFrames, encode } from "../../src/protocol/codec.js";

describe("cache", () => {
  it("cache - within the limits: every entry, a name over 255 bytes under a numbered key with its name inside", () => {
    const long = "x".repeat(300);
    const entries = new Map<string, CacheEntry>([
      ["a.txt", { size: 1, mtime: 2 }],
      [long, { size: 3, mtime: 4 }],
    ]);
    const { cache, omitted } = buildCache(entries);
    expect(omitted).toBe(0);
    expect([...cache.keys()]).toEqual(["a.txt", `${LONG_NAME_KEY}0`]);
    expect(parseCacheEntry(cache.get(`${LONG_NAME_KEY}0`)!)).toEqual({ size: 3, mtime: 4, name: long });
    // And it goes on the wire and comes back as it was.
    const decoded = decodeFrames([encode({ id: "ICANHAZ", path: "/", options: new Map(), cache })]);
    expect(decoded.ok && decoded.message.id === "ICANHAZ" && decoded.message.cache).toEqual(cache);
  });

  it("cache - over the limits: partial files first, then the biggest files; the rest counted as omitted", () => {
    const entries = new Map<string, CacheEntry>([
      ["small", { size: 10, mtime: 1 }],
      ["big", { size: 1000, mtime: 1 }],
      ["partial", { partial: { length: 5, size: 50, mtime: 1 } }],
      ["medium", { size: 100, mtime: 1 }],
    ]);
    const byCount = buildCache(entries, 2);
    expect([...byCount.cache.keys()]).toEqual(["partial", "big"]);
    expect(byCount.omitted).toBe(2);
    // Room for the three dearest (on the wire: 1 + key, 4 + value each), not for the fourth.
    const wire = (name: string) => [...buildCache(new Map([[name, entries.get(name)!]])).cache].reduce((n, [k, v]) => n + 5 + k.length + v.length, 0);
    const byBytes = buildCache(entries, 100, wire("partial") + wire("big") + wire("medium"));
    expect(byBytes.cache.size).toBe(3);
    expect(byBytes.cache.has("small")).toBe(false);
    expect(byBytes.omitted).toBe(1);
  });

  it("cache - a file of about 4 GiB: its 4,096 block hashes would make the value too long for the wire, so they are left out, not the ICANHAZ", () => {
    const blocks = Buffer.alloc(4096 * 8, 0xab);
    const entries = new Map<string, CacheEntry>([
      ["big.iso", { size: 4096 * 1024 * 1024, mtime: 1764662400123.456, hash: "0123456789abcdef", blocks }],
      ["small", { size: 1, mtime: 2, hash: "fedcba9876543210", blocks: Buffer.alloc(8, 1) }],
    ]);
    const { cache, omitted } = buildCache(entries);
    expect(omitted).toBe(0);
    expect(parseCacheEntry(cache.get("big.iso")!)).toEqual({ size: 4096 * 1024 * 1024, mtime: 1764662400123.456, hash: "0123456789abcdef" });
    expect(parseCacheEntry(cache.get("small")!)).toEqual({ size: 1, mtime: 2, hash: "fedcba9876543210", blocks: Buffer.alloc(8, 1) });
    const decoded = decodeFrames([encode({ id: "ICANHAZ", path: "/", options: new Map(), cache })]);
    expect(decoded.ok && decoded.message.id === "ICANHAZ" && decoded.message.cache).toEqual(cache);
  });
});
