import { describe, it, expect } from "vitest";
import fc from "fast-check";
import path from "node:path";

import {
  PARTIAL_SUFFIX,
  covers,
  isUnpublished,
  joinVirtual,
  normaliseVirtualPath,
  overlaps,
  relativeInside,
  relativeTo,
  unsafeRelativeReason,
} from "../../src/paths.js";

describe("paths", () => {
  it("paths - covers: a prefix covers itself and what is below it, on a path boundary only", () => {
    expect(covers("/sub", "/sub")).toBe(true);
    expect(covers("/sub", "/sub/x")).toBe(true);
    expect(covers("/sub", "/sub/x/y.txt")).toBe(true);
    expect(covers("/sub", "/subway")).toBe(false);
    expect(covers("/sub", "/subway/b.txt")).toBe(false);
    expect(covers("/sub", "/su")).toBe(false);
    expect(covers("/sub", "/")).toBe(false);
    expect(covers("/sub/x", "/sub")).toBe(false);
    expect(covers("/a/b", "/a/bc/d")).toBe(false);
    expect(covers("/a/b", "/a/b/c/d")).toBe(true);
  });

  it("paths - covers: \"/\" covers every virtual path, and a name without its leading \"/\" is under none", () => {
    for (const p of ["/", "/a", "/sub/x", "/subway/b.txt", "/.x"]) expect(covers("/", p)).toBe(true);
    // (A hostile server's "noslash" was delivered as "oslash".)
    for (const p of ["noslash", "", "a/b"]) {
      expect(covers("/", p)).toBe(false);
      expect(relativeTo("/", p)).toBeUndefined();
    }
  });

  it("paths - covers never matches across a segment boundary (property)", () => {
    const segment = fc.stringMatching(/^[a-z]{1,6}$/);
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 4 }), segment, (segments, extra) => {
        const prefix = "/" + segments.join("/");
        expect(covers(prefix, prefix + "/" + extra)).toBe(true);
        expect(covers(prefix, prefix + extra)).toBe(false);
      }),
    );
  });

  it("paths - overlaps is symmetric", () => {
    expect(overlaps("/sub", "/sub/x")).toBe(true);
    expect(overlaps("/sub/x", "/sub")).toBe(true);
    expect(overlaps("/", "/data")).toBe(true);
    expect(overlaps("/data", "/other")).toBe(false);
    expect(overlaps("/sub", "/subway")).toBe(false);
  });

  it("paths - joinVirtual", () => {
    expect(joinVirtual("/", "a/b.txt")).toBe("/a/b.txt");
    expect(joinVirtual("/data", "a/b.txt")).toBe("/data/a/b.txt");
  });

  it("paths - relativeTo: the part below the prefix", () => {
    expect(relativeTo("/sub", "/sub/a/b")).toBe("a/b");
    expect(relativeTo("/sub", "/sub/a.txt")).toBe("a.txt");
    expect(relativeTo("/", "/a/b")).toBe("a/b");
    // A file equal to the prefix lands under its own base name.
    expect(relativeTo("/sub/file.txt", "/sub/file.txt")).toBe("file.txt");
    expect(relativeTo("/sub", "/subway/b.txt")).toBeUndefined();
    expect(relativeTo("/sub", "/other")).toBeUndefined();
  });

  it("paths - normaliseVirtualPath accepts and normalises good paths", () => {
    expect(normaliseVirtualPath("/")).toBe("/");
    expect(normaliseVirtualPath("/sub")).toBe("/sub");
    expect(normaliseVirtualPath("/sub/")).toBe("/sub");
    expect(normaliseVirtualPath("/a/b/c.txt")).toBe("/a/b/c.txt");
    expect(normaliseVirtualPath("/.hidden/x")).toBe("/.hidden/x");
    expect(normaliseVirtualPath("/" + "x".repeat(255))).toBe("/" + "x".repeat(255));
    expect(normaliseVirtualPath("/ünï/cödé")).toBe("/ünï/cödé");
    expect(normaliseVirtualPath("/😀/x")).toBe("/😀/x");
  });

  it("paths - normaliseVirtualPath refuses bad paths", () => {
    for (const bad of [
      "",
      "x",
      "sub/x",
      "/a/../b",
      "/..",
      "/a/..",
      "/./a",
      "/a/.",
      "//",
      "//a",
      "/a//b",
      "/a/b//",
      "/a\0b",
      "/a\\b",
      "/" + "x".repeat(256), // one segment over 255 bytes
      "/" + "é".repeat(128), // 256 bytes of UTF-8 in 128 characters
      "/" + Array.from({ length: 20 }, () => "y".repeat(250)).join("/"), // over 4096 bytes in all
      // A lone UTF-16 surrogate has no UTF-8 form: a subscription to it could never be sent.
      "/a\uD800",
      "/x/\uDC00b",
      "/" + "😀".slice(0, 1),
    ]) {
      expect(normaliseVirtualPath(bad), JSON.stringify(bad.slice(0, 40))).toBeUndefined();
    }
  });

  it("paths - unsafeRelativeReason accepts ordinary relative names", () => {
    for (const ok of ["a", "a/b.txt", "dir/sub/file.bin", ".hidden", "a..b", "x".repeat(255), "ünï/cödé", Array(128).fill("d").join("/")]) {
      expect(unsafeRelativeReason(ok), ok).toBeUndefined();
    }
  });

  it("paths - unsafeRelativeReason refuses every escape and oddity", () => {
    const cases: [string, RegExp][] = [
      ["", /empty name/],
      ["/etc/passwd", /absolute/],
      ["..", /"\.\." segment/],
      ["../x", /"\.\." segment/],
      ["a/../../x", /"\.\." segment/],
      ["a/..", /"\.\." segment/],
      [".", /"\." segment/],
      ["a/./b", /"\." segment/],
      ["a\0b", /NUL/],
      ["a\\..\\b", /backslash/],
      ["a\\b", /backslash/],
      ["a//b", /empty path segment/],
      ["a/", /empty path segment/],
      ["x".repeat(256), /segment too long/],
      ["d/" + "é".repeat(128), /segment too long/],
      [Array.from({ length: 20 }, () => "y".repeat(250)).join("/"), /name too long/],
      [Array(129).fill("d").join("/"), /more than 128 levels deep/],
      [Array(2000).fill("a").join("/"), /more than 128 levels deep/],
      ["file" + PARTIAL_SUFFIX, /reserved/],
      ["dir/file.bin" + PARTIAL_SUFFIX, /reserved/],
    ];
    for (const [name, reason] of cases) {
      expect(unsafeRelativeReason(name), JSON.stringify(name.slice(0, 40))).toMatch(reason);
    }
  });

  it("paths - a name unsafeRelativeReason accepts never leaves the inbox (property)", async () => {
    const path = await import("node:path");
    const inbox = "/inbox/root";
    fc.assert(
      fc.property(fc.array(fc.constantFrom("a", "b", "..", ".", "", "/", "\\", "\0", "é"), { maxLength: 12 }), (parts) => {
        const name = parts.join("");
        if (unsafeRelativeReason(name) !== undefined) return;
        const resolved = path.resolve(inbox, name);
        expect(resolved.startsWith(inbox + "/")).toBe(true);
      }),
    );
  });

  it("paths - isUnpublished: hidden files and directories, and partial files", () => {
    expect(isUnpublished(".hidden")).toBe(true);
    expect(isUnpublished("dir/.hidden")).toBe(true);
    expect(isUnpublished(".git/config")).toBe(true);
    expect(isUnpublished("a/.cache/b/c.txt")).toBe(true);
    expect(isUnpublished("x" + PARTIAL_SUFFIX)).toBe(true);
    expect(isUnpublished("dir/x.bin" + PARTIAL_SUFFIX)).toBe(true);
    expect(isUnpublished("a.txt")).toBe(false);
    expect(isUnpublished("dir/a.b.c")).toBe(false);
    expect(isUnpublished("a..b/c")).toBe(false);
    expect(isUnpublished("x.fmq-partial")).toBe(false);
  });

  it("paths - isUnpublished without splitting says what a segment-by-segment look says (property)", () => {
    const segment = fc.constantFrom("a", ".a", "..", ".", "", "b.c", "x.fmq-part", "c.");
    fc.assert(
      fc.property(fc.array(segment, { minLength: 1, maxLength: 5 }), (segments) => {
        const relative = segments.join("/");
        const bySegment = segments.some((s) => s.startsWith(".")) || relative.endsWith(PARTIAL_SUFFIX);
        expect(isUnpublished(relative)).toBe(bySegment);
      }),
    );
  });

  it("paths - relativeInside gives what path.relative gives, for names under the root and anything else (property)", () => {
    const segment = fc.constantFrom("a", "b", ".h", "..", ".", "", "c d", "é");
    const name = fc.array(segment, { minLength: 0, maxLength: 5 }).map((segments) => segments.join("/"));
    const root = fc.constantFrom("/", "/tmp/m", "/tmp/m/", "/tmp/./m", "tmp/m", "/tmp/m/..");
    fc.assert(
      fc.property(root, name, fc.constantFrom("", "/", "//"), (root, rest, join) => {
        const absolute = root + join + rest;
        expect(relativeInside(root, absolute)).toBe(path.relative(root, absolute).split(path.sep).join("/"));
      }),
      { numRuns: 2000 },
    );
    expect(relativeInside("/tmp/m", "/tmp/m/d/f")).toBe("d/f");
    expect(relativeInside("/tmp/m", "/tmp/m")).toBe("");
    expect(relativeInside("/tmp/m", "/tmp/mm/f")).toBe("../mm/f");
  });
});
