// Our cache entries (ICANHAZ cache values) as the client writes them and the server reads them.

import { describe, expect, it } from "vitest";

import { formatCacheEntry, parseCacheEntry, wireDecimal, wireNumber, wireSize, type CacheEntry } from "../../src/protocol/extensions.js";

describe("cache entries", () => {
  it("extensions - an mtime before 1970 survives the round trip (the file was sent again at every subscription and never resumed)", () => {
    const tenYearsBefore1970 = -315_619_200_000;
    const entry: CacheEntry = {
      size: 5,
      mtime: tenYearsBefore1970,
      hash: "0123456789abcdef",
      partial: { length: 3, size: 9, mtime: tenYearsBefore1970 - 0.5 },
    };
    expect(parseCacheEntry(formatCacheEntry(entry))).toEqual(entry);
  });

  it("extensions - sizes and partial lengths stay non-negative", () => {
    expect(parseCacheEntry("fmq1;size=-5;mtime=1;partial=-1;psize=9;pmtime=2")).toEqual({ mtime: 1 });
    expect(parseCacheEntry("fmq1;size=5;mtime=--1;psize=-9;partial=1;pmtime=2")).toEqual({ size: 5 });
  });

  it("extensions - a partial's version tag (ptag) comes back as it went; one too long or with other characters is dropped, not the partial", () => {
    const entry: CacheEntry = { partial: { length: 3, size: 9, mtime: 2, tag: "1234-1700000000123.4567" } };
    expect(parseCacheEntry(formatCacheEntry(entry))).toEqual(entry);
    for (const hostile of ["", "x".repeat(65), "a b", "é", "a\u0000b", "a,b"]) {
      expect(parseCacheEntry(`fmq1;partial=3;psize=9;pmtime=2;ptag=${hostile}`)).toEqual({ partial: { length: 3, size: 9, mtime: 2 } });
    }
    expect(parseCacheEntry(`fmq1;partial=3;psize=9;pmtime=2;ptag=${"x".repeat(64)}`)?.partial?.tag).toBe("x".repeat(64));
  });

  it("extensions - a refused partial's block hashes (pblocks) come back as they went; anything but whole 8-byte hashes in hex is dropped", () => {
    const pblocks = Buffer.from("0123456789abcdeffedcba9876543210", "hex");
    expect(formatCacheEntry({ pblocks })).toBe("fmq1;pblocks=0123456789abcdeffedcba9876543210");
    expect(parseCacheEntry(formatCacheEntry({ pblocks }))).toEqual({ pblocks });
    for (const hostile of ["", "0123", "0123456789abcdeg", "0123456789ABCDEF", "0123456789abcdef0"]) expect(parseCacheEntry(`fmq1;pblocks=${hostile}`)).toEqual({});
  });

  it("extensions - numbers from the wire are taken only as we write them", () => {
    expect(wireNumber("4096")).toBe(4096);
    expect(wireNumber("1700000000123.456", true)).toBe(1700000000123.456);
    expect(wireNumber("-86400000", true)).toBe(-86400000);
    for (const text of [undefined, "", " 12", "12 ", "+12", "1e3", "0x10", "0b11", "12abc", "-1", "Infinity", "NaN", "9007199254740993"]) expect(wireNumber(text), String(text)).toBeUndefined();
    expect(wireNumber("1e300", true)).toBeUndefined();
    expect(wireNumber("--1", true)).toBeUndefined();
  });

  it("extensions - an mtime a few hundred nanoseconds from 1970 is written in plain digits and reads back the same (String() wrote '-1e-7', refused, so the file had no identity)", () => {
    for (const mtime of [-1e-7, 1e-7, -9.999999974752427e-7, 5e-324, -0.000001, 1700000000123.4567, -315_619_200_000.5, 0]) {
      const text = wireDecimal(mtime);
      expect(text, String(mtime)).toMatch(/^-?\d+(\.\d+)?$/);
      expect(wireNumber(text, true), text).toBe(mtime);
      const entry: CacheEntry = { size: 5, mtime, partial: { length: 1, size: 9, mtime } };
      expect(parseCacheEntry(formatCacheEntry(entry))).toEqual(entry);
    }
  });

  it("extensions - sizes and byte counts are whole numbers (a fraction was taken and rounded down to a block)", () => {
    expect(wireSize("4096")).toBe(4096);
    for (const text of [undefined, "", "1.5", "4096.0", "-1", "1e3", "9007199254740993"]) expect(wireSize(text), String(text)).toBeUndefined();
    expect(parseCacheEntry("fmq1;size=5.5;mtime=1;partial=1.5;psize=9;pmtime=2")).toEqual({ mtime: 1 });
    expect(parseCacheEntry("fmq1;size=5;partial=1;psize=9.25;pmtime=2")).toEqual({ size: 5 });
  });
});
