// Names that are not UTF-8, carried as lone surrogates (PEP 383) and given back to the kernel as their bytes.

import { isUtf8 } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { jsonLine, printable } from "../../cli/output.js";
import { partialName } from "../../src/client/inbox.js";
import { decode, encode } from "../../src/protocol/codec.js";
import { Operation } from "../../src/protocol/messages.js";
import { decodeName, fsPath, hasStrayBytes, nameByteLength, nameBytes, showStrayBytes } from "../../src/raw-names.js";

describe("raw names", () => {
  it("raw names - any bytes come back exactly; UTF-8 is read as UTF-8, and only bytes that are not UTF-8 become lone surrogates", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (raw) => {
        const bytes = Buffer.from(raw);
        const name = decodeName(bytes);
        expect(nameBytes(name).equals(bytes)).toBe(true);
        expect(nameByteLength(name)).toBe(bytes.length);
        expect(hasStrayBytes(name)).toBe(!isUtf8(bytes));
        if (isUtf8(bytes)) expect(name).toBe(bytes.toString("utf8"));
      }),
      { numRuns: 5000 },
    );
    // Text of every kind (pairs included: 😀's low half, U+DE00, is not taken for a stray byte).
    fc.assert(
      fc.property(fc.string({ unit: "grapheme", maxLength: 20 }), (text) => {
        expect(decodeName(Buffer.from(text))).toBe(text);
        expect(hasStrayBytes(text)).toBe(false);
        expect(fsPath(text)).toBe(text);
      }),
    );
  });

  it("raw names - what strict UTF-8 refuses is escaped byte by byte: Latin-1, overlong forms, encoded surrogates, cut sequences, past U+10FFFF", () => {
    const cases: [number[], string][] = [
      [[0x63, 0x61, 0x66, 0xe9], "caf\udce9"],
      [[0xc0, 0xaf], "\udcc0\udcaf"],
      [[0xed, 0xa0, 0x80], "\udced\udca0\udc80"],
      [[0x2f, 0xc3], "/\udcc3"],
      [[0xf4, 0x90, 0x80, 0x80], "\udcf4\udc90\udc80\udc80"],
      [[0xe2, 0x82, 0x41], "\udce2\udc82A"],
      [[0xc3, 0xa9, 0xff], "é\udcff"],
      [[0xf0, 0x9f, 0x98, 0x80, 0x80], "😀\udc80"],
    ];
    for (const [bytes, name] of cases) {
      expect(decodeName(Buffer.from(bytes))).toBe(name);
      expect([...nameBytes(name)]).toEqual(bytes);
    }
    expect(fsPath("/in/caf\udce9")).toEqual(Buffer.from("/in/caf\xe9", "latin1"));
  });

  it("raw names - a CHEEZBURGER's filename is read as its bytes and written back as them; other text stays strict", () => {
    const frame = Buffer.from(encode({ id: "CHEEZBURGER", sequence: 1n, operation: Operation.CREATE, filename: "/d\udcff/caf\udce9", offset: 0n, eof: 1, headers: new Map(), chunk: Buffer.from("x") }));
    // Length 8, then the very bytes "/d\xff/caf\xe9".
    const at = frame.indexOf(Buffer.from("/d"));
    expect(frame.subarray(at - 4, at + 8).toString("hex")).toBe("00000008" + Buffer.from("/d\xff/caf\xe9", "latin1").toString("hex"));
    const decoded = decode(frame);
    expect(decoded.ok && decoded.message.id === "CHEEZBURGER" && decoded.message.filename).toBe("/d\udcff/caf\udce9");
    // A lone surrogate that is no byte (U+DC00-DC7F, a high one) still has no form on the wire.
    expect(() => encode({ id: "CHEEZBURGER", sequence: 1n, operation: Operation.CREATE, filename: "/\udc00\udce9", offset: 0n, eof: 1, headers: new Map(), chunk: Buffer.alloc(0) })).toThrow(/BAD_STRING/);
    expect(() => encode({ id: "ICANHAZ", path: "/caf\udce9", options: new Map(), cache: new Map() })).toThrow(/BAD_STRING/);
  });

  it("raw names - two names that differ only in a byte that is not UTF-8 have their own partial files", () => {
    // (Hashed as a string, both read "x\ufffd": one's partial file would have been resumed for the other.)
    expect(partialName("x\udce8")).not.toBe(partialName("x\udce9"));
    expect(partialName("x\udce8")).not.toBe(partialName("x\ufffd"));
    expect(partialName("plain")).toBe(partialName("plain"));
  });

  it("raw names - shown to people as \\xNN, and in JSON as \\udcNN, which reads back as the same name", () => {
    expect(showStrayBytes("d\udcff/caf\udce9 😀")).toBe("d\\xFF/caf\\xE9 😀");
    expect(printable("delivered caf\udce9.txt\n")).toBe("delivered caf\\xE9.txt\\n");
    const line = jsonLine({ event: "delivered", path: "caf\udce9.txt" });
    expect(line).toBe('{"event":"delivered","path":"caf\\udce9.txt"}\n');
    expect(JSON.parse(line).path).toBe("caf\udce9.txt");
  });
});
