import { describe, it, expect } from "vitest";
import fc from "fast-check";

import { golden } from "../../fixtures/frames.js";
import { cheezburgerBytes, cheezburgerFrame, cheezburgerHeaderLength, decode, decodeBatch, decodeFrames, encode } from "../../src/protocol/codec.js";
import { MAX_BATCH_FRAMES } from "../../src/protocol/extensions.js";
import type { DecodeResult } from "../../src/protocol/codec.js";
import { DECODE_ERROR_REPLY, DecodeError, EncodeError } from "../../src/protocol/errors.js";
import type { DecodeErrorCode, EncodeErrorCode } from "../../src/protocol/errors.js";
import { MAX_DICTIONARY_ENTRIES, MAX_LONGSTR, MessageId } from "../../src/protocol/messages.js";
import type { Cheezburger, Dictionary, Message } from "../../src/protocol/messages.js";

// ---------------------------------------------------------------------------------------------
// Helpers

/** "AA A3 01" -> bytes. */
function hex(text: string): Buffer {
  return Buffer.from(text.replace(/\s+/g, ""), "hex");
}
function u32be(n: number): Buffer {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
}
function ascii(text: string): Buffer {
  return Buffer.from(text, "latin1");
}
const cat = (...parts: Buffer[]): Buffer => Buffer.concat(parts);

function expectDecodeError(result: DecodeResult, code: DecodeErrorCode, message?: string): DecodeError {
  if (result.ok) throw new Error(`${message ?? "frame"}: expected ${code}, decoded ${result.message.id}`);
  expect(result.error, message).toBeInstanceOf(DecodeError);
  expect(result.error.name).toBe("DecodeError");
  expect(result.error.code, message).toBe(code);
  expect(result.error.reply, message).toBe(code === "BAD_SIGNATURE" ? "discard" : "RTFM");
  return result.error;
}

function expectDecoded(result: DecodeResult): Message {
  if (!result.ok) throw new Error(`expected a message, got ${result.error.message}`);
  return result.message;
}

function expectEncodeError(fn: () => unknown, code: EncodeErrorCode): void {
  try {
    fn();
  } catch (e) {
    expect(e).toBeInstanceOf(EncodeError);
    expect((e as EncodeError).code).toBe(code);
    expect((e as EncodeError).name).toBe("EncodeError");
    return;
  }
  throw new Error(`expected EncodeError ${code}, nothing was thrown`);
}

const cheezburger = (fields: Partial<Cheezburger> = {}): Cheezburger => ({
  id: "CHEEZBURGER",
  sequence: 7n,
  operation: 1,
  filename: "/dir/file.bin",
  offset: 1_000_000n,
  eof: 0,
  headers: new Map(),
  chunk: Buffer.from("some file data"),
  ...fields,
});

const OHAI_HEADER = hex("AA A3 01");
const ICANHAZ_HEADER = hex("AA A3 05");
const EMPTY_HASH = u32be(0);

// ---------------------------------------------------------------------------------------------
// Golden frames

describe("codec golden frames", () => {
  it("codec - fixtures hold the 15 blocks of the reference dump", () => {
    expect(golden).toHaveLength(15);
  });

  for (const { title, bytes, message } of golden) {
    it(`codec - encodes ${title} byte for byte`, () => {
      expect(encode(message).equals(bytes)).toBe(true);
      expect(encode(message).toString("hex")).toBe(bytes.toString("hex"));
    });

    it(`codec - decodes ${title}`, () => {
      expect(expectDecoded(decode(bytes))).toEqual(message);
      expect(expectDecoded(decodeFrames([bytes]))).toEqual(message);
    });
  }

  it("codec - decodes a plain Uint8Array (not a Buffer) the same way", () => {
    for (const { bytes, message } of golden) {
      const plain = new Uint8Array(bytes.length + 8).subarray(4, 4 + bytes.length);
      plain.set(bytes);
      expect(expectDecoded(decode(plain))).toEqual(message);
    }
  });

  it("codec - ignores trailing bytes after the last field, as the reference does", () => {
    for (const { bytes, message } of golden) {
      expect(expectDecoded(decode(cat(bytes, hex("00 FF 12 34"))))).toEqual(message);
    }
  });

  it("codec - CHEEZBURGER chunk is a zero-copy view of the received frame", () => {
    const frame = encode(cheezburger());
    const msg = expectDecoded(decode(frame));
    if (msg.id !== "CHEEZBURGER") throw new Error("not a CHEEZBURGER");
    expect(msg.chunk.buffer).toBe(frame.buffer);
    expect(msg.chunk.byteOffset).toBe(frame.byteOffset + frame.length - msg.chunk.length);
    frame[frame.length - 1] = 0x21;
    expect(msg.chunk[msg.chunk.length - 1]).toBe(0x21);
  });

  it("codec - a 1 MiB chunk (beyond MAX_LONGSTR) round-trips", () => {
    const chunk = Buffer.alloc(1 << 20, 0x5a);
    const msg = cheezburger({ chunk });
    const frame = encode(msg);
    expect(frame.length).toBe(cheezburgerHeaderLength(msg.filename, msg.headers) + chunk.length);
    const decoded = expectDecoded(decode(frame));
    if (decoded.id !== "CHEEZBURGER") throw new Error("not a CHEEZBURGER");
    // Buffer#equals, not toEqual: element-by-element deep equality of 1 MiB takes seconds.
    expect(Buffer.from(decoded.chunk.buffer, decoded.chunk.byteOffset, decoded.chunk.length).equals(chunk)).toBe(true);
    expect({ ...decoded, chunk: null }).toEqual({ ...msg, chunk: null });
  });

  it("codec - dictionary duplicate keys: the first wins", () => {
    const entry = (k: string, v: string): Buffer => cat(Buffer.from([k.length]), ascii(k), u32be(v.length), ascii(v));
    const frame = cat(ICANHAZ_HEADER, u32be(1), ascii("/"), u32be(3), entry("a", "1"), entry("a", "2"), entry("b", "3"), EMPTY_HASH);
    expect(expectDecoded(decode(frame))).toEqual({
      id: "ICANHAZ",
      path: "/",
      options: new Map([
        ["a", "1"],
        ["b", "3"],
      ]),
      cache: new Map(),
    });
  });

  it("codec - keeps a leading byte order mark and NULs inside strings", () => {
    const msg: Message = { id: "ICANHAZ", path: "\uFEFF/a\u0000b", options: new Map([["\uFEFF", "\u0000"]]), cache: new Map() };
    expect(expectDecoded(decode(encode(msg)))).toEqual(msg);
  });
});

// ---------------------------------------------------------------------------------------------
// Malformed frames

describe("codec malformed frames", () => {
  const cases: { name: string; frame: Buffer; code: DecodeErrorCode }[] = [
    { name: "empty frame", frame: Buffer.alloc(0), code: "EMPTY" },
    // (It does not start with the signature's two octets: discarded, as the RFC says of any such message.)
    { name: "1 byte AA", frame: hex("AA"), code: "BAD_SIGNATURE" },
    { name: "1 byte 00 (not FILEMQ: discarded)", frame: hex("00"), code: "BAD_SIGNATURE" },
    { name: "2 bytes, good signature, no id", frame: hex("AA A3"), code: "TRUNCATED" },
    { name: "2 bytes, wrong signature", frame: hex("AA 00"), code: "BAD_SIGNATURE" },
    { name: "wrong signature AA A2 on an OHAI", frame: hex("AA A2 01 06 46 49 4C 45 4D 51 00 02"), code: "BAD_SIGNATURE" },
    { name: "byte-swapped signature A3 AA", frame: hex("A3 AA 04"), code: "BAD_SIGNATURE" },
    { name: "HTTP request on the port", frame: ascii("GET / HTTP/1.1\r\n\r\n"), code: "BAD_SIGNATURE" },
    { name: "ZMTP greeting as a body", frame: hex("FF 00 00 00 00 00 00 00 01 7F"), code: "BAD_SIGNATURE" },
    ...[0, 2, 3, 12, 127, 130, 255].map((id) => ({
      name: `unknown id ${id}`,
      frame: cat(hex("AA A3"), Buffer.from([id]), hex("00 00 00 00")),
      code: "UNKNOWN_ID" as const,
    })),
    { name: "unknown id 3 with nothing after it", frame: hex("AA A3 03"), code: "UNKNOWN_ID" },
    { name: "OHAI protocol FILEMQX", frame: cat(OHAI_HEADER, hex("07"), ascii("FILEMQX"), hex("00 02")), code: "BAD_PROTOCOL" },
    { name: "OHAI protocol filemq", frame: cat(OHAI_HEADER, hex("06"), ascii("filemq"), hex("00 02")), code: "BAD_PROTOCOL" },
    { name: "OHAI protocol empty", frame: cat(OHAI_HEADER, hex("00 00 02")), code: "BAD_PROTOCOL" },
    // Fields are checked in order: the protocol is wrong before the version is even missing.
    { name: "OHAI protocol FILEMQX, version missing", frame: cat(OHAI_HEADER, hex("07"), ascii("FILEMQX")), code: "BAD_PROTOCOL" },
    { name: "OHAI version 1", frame: cat(OHAI_HEADER, hex("06"), ascii("FILEMQ"), hex("00 01")), code: "BAD_VERSION" },
    { name: "OHAI version 3", frame: cat(OHAI_HEADER, hex("06"), ascii("FILEMQ"), hex("00 03")), code: "BAD_VERSION" },
    { name: "OHAI version 0x0200", frame: cat(OHAI_HEADER, hex("06"), ascii("FILEMQ"), hex("02 00")), code: "BAD_VERSION" },
    // v1 OHAI had a 1-octet version: the 2-octet read runs off the end.
    { name: "v1 OHAI (1-octet version)", frame: cat(OHAI_HEADER, hex("06"), ascii("FILEMQ"), hex("01")), code: "TRUNCATED" },
    { name: "ICANHAZ path FF (invalid UTF-8)", frame: cat(ICANHAZ_HEADER, u32be(1), hex("FF"), EMPTY_HASH, EMPTY_HASH), code: "BAD_STRING" },
    { name: "ICANHAZ path overlong '/' C0 AF", frame: cat(ICANHAZ_HEADER, u32be(2), hex("C0 AF"), EMPTY_HASH, EMPTY_HASH), code: "BAD_STRING" },
    { name: "ICANHAZ path UTF-8 surrogate ED A0 80", frame: cat(ICANHAZ_HEADER, u32be(3), hex("ED A0 80"), EMPTY_HASH, EMPTY_HASH), code: "BAD_STRING" },
    { name: "ICANHAZ path cut mid-character", frame: cat(ICANHAZ_HEADER, u32be(2), hex("2F C3"), EMPTY_HASH, EMPTY_HASH), code: "BAD_STRING" },
    {
      name: "ICANHAZ options key invalid UTF-8",
      frame: cat(ICANHAZ_HEADER, u32be(1), ascii("/"), u32be(1), hex("01 80"), u32be(0), EMPTY_HASH),
      code: "BAD_STRING",
    },
    {
      name: "ICANHAZ cache value invalid UTF-8",
      frame: cat(ICANHAZ_HEADER, u32be(1), ascii("/"), EMPTY_HASH, u32be(1), hex("01 61"), u32be(1), hex("FE")),
      code: "BAD_STRING",
    },
    { name: "SRSLY reason invalid UTF-8", frame: hex("AA A3 80 02 E2 82"), code: "BAD_STRING" },
    {
      name: "CHEEZBURGER header value invalid UTF-8",
      frame: cat(hex("AA A3 08 00 00 00 00 00 00 00 00 01"), u32be(2), hex("2F 61"), Buffer.alloc(8), hex("00"), u32be(1), hex("01 61"), u32be(1), hex("FF"), u32be(0)),
      code: "BAD_STRING",
    },
    { name: "ICANHAZ options count 0xFFFFFFFF", frame: cat(ICANHAZ_HEADER, u32be(1), ascii("/"), u32be(0xffffffff)), code: "TRUNCATED" },
    {
      name: "ICANHAZ cache count 2 with room for one entry",
      frame: cat(ICANHAZ_HEADER, u32be(1), ascii("/"), EMPTY_HASH, u32be(2), hex("00 00 00 00 00 00 00 00 00")),
      code: "TRUNCATED",
    },
    {
      name: "CHEEZBURGER headers count 0x80000000",
      frame: cat(hex("AA A3 08"), Buffer.alloc(8), hex("01"), u32be(1), ascii("/"), Buffer.alloc(8), hex("00"), u32be(0x80000000), u32be(0)),
      code: "TRUNCATED",
    },
    {
      name: "ICANHAZ path longstr over MAX_LONGSTR (bytes present)",
      frame: cat(ICANHAZ_HEADER, u32be(MAX_LONGSTR + 1), Buffer.alloc(MAX_LONGSTR + 1, 0x61), EMPTY_HASH, EMPTY_HASH),
      code: "TOO_LONG",
    },
    { name: "ICANHAZ path longstr 0xFFFFFFFF", frame: cat(ICANHAZ_HEADER, u32be(0xffffffff)), code: "TOO_LONG" },
    {
      name: "ICANHAZ cache of MAX_DICTIONARY_ENTRIES + 1 (all present)",
      frame: cat(ICANHAZ_HEADER, u32be(1), ascii("/"), EMPTY_HASH, u32be(MAX_DICTIONARY_ENTRIES + 1), Buffer.alloc(5 * (MAX_DICTIONARY_ENTRIES + 1))),
      code: "TOO_MANY",
    },
    {
      name: "ICANHAZ options value over MAX_LONGSTR",
      frame: cat(ICANHAZ_HEADER, u32be(1), ascii("/"), u32be(1), hex("01 61"), u32be(MAX_LONGSTR + 1), Buffer.alloc(MAX_LONGSTR + 1, 0x61), EMPTY_HASH),
      code: "TOO_LONG",
    },
    {
      name: "CHEEZBURGER chunk longer than the frame",
      frame: cat(hex("AA A3 08"), Buffer.alloc(8), hex("01"), u32be(1), ascii("/"), Buffer.alloc(8), hex("00"), EMPTY_HASH, u32be(10), ascii("short")),
      code: "TRUNCATED",
    },
    { name: "NOM missing its sequence", frame: cat(hex("AA A3 07"), Buffer.alloc(8)), code: "TRUNCATED" },
    { name: "SRSLY reason length past the end", frame: hex("AA A3 80 05 61 62"), code: "TRUNCATED" },
  ];

  it.each(cases)("codec - rejects $name with $code", ({ frame, code }) => {
    expectDecodeError(decode(frame), code);
    expectDecodeError(decodeFrames([frame]), code);
  });

  it("codec - reply is discard only for a bad signature, RTFM for everything else", () => {
    for (const [code, reply] of Object.entries(DECODE_ERROR_REPLY)) {
      expect(reply).toBe(code === "BAD_SIGNATURE" ? "discard" : "RTFM");
      expect(new DecodeError(code as DecodeErrorCode, "x").reply).toBe(reply);
    }
  });

  it("codec - every proper prefix of every golden frame is EMPTY (0 bytes), BAD_SIGNATURE (1 byte: not the signature's two octets) or TRUNCATED", () => {
    // A prefix of 2+ bytes keeps the good signature, so BAD_SIGNATURE cannot happen; a prefix of 3+ bytes keeps
    // the id. The golden frames end exactly at their last field (encode() reproduces them with no
    // extra bytes), so a prefix always cuts into some field: since fields are read in order and the
    // cut field is the first to fail, no prefix can be shorter-yet-valid or fail any other way
    // (OHAI's protocol/version checks need the whole field, which a cut prevents).
    let checked = 0;
    for (const { title, bytes } of golden) {
      for (let length = 0; length < bytes.length; length++) {
        const prefix = bytes.subarray(0, length);
        expectDecodeError(decode(prefix), length === 0 ? "EMPTY" : length === 1 ? "BAD_SIGNATURE" : "TRUNCATED", `${title} [0, ${length})`);
        checked++;
      }
    }
    expect(checked).toBe(golden.reduce((n, g) => n + g.bytes.length, 0));
  });

  it("codec - decodeFrames: no frame is EMPTY, two frames are MULTI_FRAME", () => {
    const ohai = golden[0]?.bytes ?? Buffer.alloc(0);
    expectDecodeError(decodeFrames([]), "EMPTY");
    expectDecodeError(decodeFrames([ohai, ohai]), "MULTI_FRAME");
    expectDecodeError(decodeFrames([ohai, Buffer.alloc(0)]), "MULTI_FRAME");
    expectDecodeError(decodeFrames([Buffer.alloc(0)]), "EMPTY");
    // v1 CHEEZBURGER carried its chunk as a second frame.
    expectDecodeError(decodeFrames([hex("AA A3 08"), ascii("chunk")]), "MULTI_FRAME");
    expect(expectDecoded(decodeFrames([ohai])).id).toBe("OHAI");
  });

  it("codec - decodeBatch: up to MAX_BATCH_FRAMES CHEEZBURGERs decode; one more makes the batch malformed as a whole", () => {
    const frame = encode({ id: "CHEEZBURGER", sequence: 1n, operation: 1, filename: "/x", offset: 0n, eof: 1, headers: new Map(), chunk: Buffer.from("x") });
    const full = decodeBatch(Array(MAX_BATCH_FRAMES).fill(frame));
    expect(full.ok && full.messages.length).toBe(MAX_BATCH_FRAMES);
    const over = decodeBatch(Array(MAX_BATCH_FRAMES + 1).fill(frame));
    expect(over.ok).toBe(false);
    if (!over.ok) expect(over.error.code).toBe("MULTI_FRAME");
  });
});

// ---------------------------------------------------------------------------------------------
// Encoder errors

describe("codec encoder errors", () => {
  it("codec - refuses a 256-byte SRSLY reason, accepts 255", () => {
    expectEncodeError(() => encode({ id: "SRSLY", reason: "x".repeat(256) }), "STRING_TOO_LONG");
    expect(encode({ id: "SRSLY", reason: "x".repeat(255) })).toHaveLength(3 + 1 + 255);
    // Bytes count, not characters: 128 x "é" is 256 bytes of UTF-8.
    expectEncodeError(() => encode({ id: "RTFM", reason: "é".repeat(128) }), "STRING_TOO_LONG");
  });

  it("codec - refuses a dictionary of more than MAX_DICTIONARY_ENTRIES entries, and reads one of exactly that many", () => {
    const cache: Dictionary = new Map();
    for (let i = 0; i < MAX_DICTIONARY_ENTRIES; i++) cache.set(String(i), "");
    const frame = encode({ id: "ICANHAZ", path: "/", options: new Map(), cache });
    const decoded = decode(frame);
    expect(decoded.ok && decoded.message.id === "ICANHAZ" && decoded.message.cache.size).toBe(MAX_DICTIONARY_ENTRIES);
    cache.set("one more", "");
    expectEncodeError(() => encode({ id: "ICANHAZ", path: "/", options: new Map(), cache }), "TOO_MANY_ENTRIES");
  });

  it("codec - refuses a 256-byte dictionary key", () => {
    const options: Dictionary = new Map([["k".repeat(256), "v"]]);
    expectEncodeError(() => encode({ id: "ICANHAZ", path: "/", options, cache: new Map() }), "STRING_TOO_LONG");
    expectEncodeError(() => encode(cheezburger({ headers: options })), "STRING_TOO_LONG");
    expectEncodeError(() => cheezburgerHeaderLength("/", options), "STRING_TOO_LONG");
  });

  it("codec - refuses a longstr over MAX_LONGSTR", () => {
    const long = "/".repeat(MAX_LONGSTR + 1);
    expectEncodeError(() => encode({ id: "ICANHAZ", path: long, options: new Map(), cache: new Map() }), "LONGSTR_TOO_LONG");
    expectEncodeError(() => encode(cheezburger({ filename: long })), "LONGSTR_TOO_LONG");
    expectEncodeError(() => encode({ id: "ICANHAZ", path: "/", options: new Map(), cache: new Map([["a", long]]) }), "LONGSTR_TOO_LONG");
    expect(() => encode({ id: "ICANHAZ", path: long.slice(1), options: new Map(), cache: new Map() })).not.toThrow();
  });

  it("codec - refuses numbers out of their field width", () => {
    expectEncodeError(() => encode({ id: "NOM", credit: -1n, sequence: 0n }), "NUMBER_RANGE");
    expectEncodeError(() => encode({ id: "NOM", credit: 0n, sequence: 1n << 64n }), "NUMBER_RANGE");
    expectEncodeError(() => encode({ id: "OHAI", protocol: "FILEMQ", version: 65536 }), "NUMBER_RANGE");
    expectEncodeError(() => encode({ id: "OHAI", protocol: "FILEMQ", version: 1.5 }), "NUMBER_RANGE");
    expectEncodeError(() => encode(cheezburger({ operation: 256 })), "NUMBER_RANGE");
    expectEncodeError(() => encode(cheezburger({ eof: -1 })), "NUMBER_RANGE");
    expectEncodeError(() => encode(cheezburger({ eof: Number.NaN })), "NUMBER_RANGE");
    expectEncodeError(() => encode(cheezburger({ offset: -5n })), "NUMBER_RANGE");
    expectEncodeError(() => cheezburgerFrame(cheezburger(), -1), "NUMBER_RANGE");
    expectEncodeError(() => cheezburgerFrame(cheezburger(), 2 ** 32), "NUMBER_RANGE");
    expect(encode({ id: "NOM", credit: (1n << 64n) - 1n, sequence: 0n }).toString("hex")).toBe("aaa307" + "ff".repeat(8) + "00".repeat(8));
  });

  it("codec - refuses a lone surrogate rather than sending U+FFFD", () => {
    expectEncodeError(() => encode({ id: "SRSLY", reason: "bad \uD800 half" }), "BAD_STRING");
    expectEncodeError(() => encode(cheezburger({ filename: "/\uDC00" })), "BAD_STRING");
    expect(() => encode({ id: "SRSLY", reason: "pair \uD83D\uDE00 ok" })).not.toThrow();
  });
});

// ---------------------------------------------------------------------------------------------
// Arbitraries

/** Up to 63 code points of any plane: at most 252 bytes of UTF-8, so always a valid `string`. */
const shortText = fc.string({ unit: "binary", maxLength: 63 });
/** Longer text for longstr fields: a few KiB at most, well under MAX_LONGSTR. */
const longText = fc.oneof(fc.string({ unit: "binary", maxLength: 300 }), fc.string({ unit: "grapheme", maxLength: 40 }));
const dictionaryArb: fc.Arbitrary<Dictionary> = fc
  .uniqueArray(fc.tuple(shortText, longText), { selector: ([key]) => key, maxLength: 6 })
  .map((entries) => new Map(entries));
const u8Arb = fc.integer({ min: 0, max: 0xff });
const u64Arb = fc.bigInt({ min: 0n, max: (1n << 64n) - 1n });
const chunkArb = fc.uint8Array({ maxLength: 4096 }).map((bytes) => Buffer.from(bytes));

const cheezburgerArb: fc.Arbitrary<Cheezburger> = fc.record({
  id: fc.constant("CHEEZBURGER" as const),
  sequence: u64Arb,
  operation: u8Arb,
  filename: longText,
  offset: u64Arb,
  eof: u8Arb,
  headers: dictionaryArb,
  chunk: chunkArb,
});

const messageArb: fc.Arbitrary<Message> = fc.oneof(
  fc.constant<Message>({ id: "OHAI", protocol: "FILEMQ", version: 2 }),
  fc.constant<Message>({ id: "OHAI_OK" }),
  fc.record({ id: fc.constant("ICANHAZ" as const), path: longText, options: dictionaryArb, cache: dictionaryArb }),
  fc.constant<Message>({ id: "ICANHAZ_OK" }),
  fc.record({ id: fc.constant("NOM" as const), credit: u64Arb, sequence: u64Arb }),
  cheezburgerArb,
  fc.constant<Message>({ id: "HUGZ" }),
  fc.constant<Message>({ id: "HUGZ_OK" }),
  fc.constant<Message>({ id: "KTHXBAI" }),
  fc.record({ id: fc.constant("SRSLY" as const), reason: shortText }),
  fc.record({ id: fc.constant("RTFM" as const), reason: shortText }),
);

// ---------------------------------------------------------------------------------------------
// cheezburgerFrame

describe("codec cheezburgerFrame", () => {
  it("codec - filling frame.subarray(chunkOffset) gives the bytes of encode()", () => {
    const data = Buffer.from("0123456789abcdef".repeat(100));
    const msg = cheezburger({ chunk: data, headers: new Map([["k", "v"], ["ü", "ÿ"]]), eof: 1, sequence: 2n ** 63n });
    const { frame, chunkOffset } = cheezburgerFrame(msg, data.length);
    expect(chunkOffset).toBe(cheezburgerHeaderLength(msg.filename, msg.headers));
    expect(frame.length).toBe(chunkOffset + data.length);
    data.copy(frame.subarray(chunkOffset));
    expect(frame.equals(encode(msg))).toBe(true);
    expect(expectDecoded(decode(frame))).toEqual(msg);
  });

  it("codec - matches every golden CHEEZBURGER", () => {
    let seen = 0;
    for (const { bytes, message } of golden) {
      if (message.id !== "CHEEZBURGER") continue;
      const { frame, chunkOffset } = cheezburgerFrame(message, message.chunk.length);
      frame.set(message.chunk, chunkOffset);
      expect(frame.toString("hex")).toBe(bytes.toString("hex"));
      seen++;
    }
    expect(seen).toBe(4);
  });

  it("codec - matches encode() for arbitrary CHEEZBURGERs", () => {
    fc.assert(
      fc.property(cheezburgerArb, (msg) => {
        const { frame, chunkOffset } = cheezburgerFrame(msg, msg.chunk.length);
        frame.set(msg.chunk, chunkOffset);
        expect(frame.equals(encode(msg))).toBe(true);
      }),
      { numRuns: 500 },
    );
  });
});

// ---------------------------------------------------------------------------------------------
// Properties

/** decode() must return ok, or a DecodeError whose reply matches its code; never throw. */
function checkTotal(frame: Uint8Array): void {
  const result = decode(frame);
  if (result.ok) {
    // Whatever decodes must re-encode (all limits hold) to something that decodes the same.
    expect(expectDecoded(decode(encode(result.message)))).toEqual(result.message);
  } else {
    expect(result.error).toBeInstanceOf(DecodeError);
    expect(result.error.reply).toBe(DECODE_ERROR_REPLY[result.error.code]);
  }
}

const validIds = Object.values(MessageId);

type Mutation =
  | { kind: "flip"; at: number; mask: number }
  | { kind: "insert"; at: number; byte: number }
  | { kind: "delete"; at: number }
  | { kind: "truncate"; at: number };

const mutationArb: fc.Arbitrary<Mutation> = fc.oneof(
  fc.record({ kind: fc.constant("flip" as const), at: fc.nat(), mask: fc.integer({ min: 1, max: 0xff }) }),
  fc.record({ kind: fc.constant("insert" as const), at: fc.nat(), byte: u8Arb }),
  fc.record({ kind: fc.constant("delete" as const), at: fc.nat() }),
  fc.record({ kind: fc.constant("truncate" as const), at: fc.nat() }),
);

function mutate(bytes: Buffer, mutations: readonly Mutation[]): Buffer {
  let out = Buffer.from(bytes);
  for (const m of mutations) {
    if (m.kind === "insert") {
      const at = m.at % (out.length + 1);
      out = Buffer.concat([out.subarray(0, at), Buffer.from([m.byte]), out.subarray(at)]);
    } else if (out.length > 0) {
      const at = m.at % out.length;
      if (m.kind === "flip") out[at] = (out[at] ?? 0) ^ m.mask;
      else if (m.kind === "delete") out = Buffer.concat([out.subarray(0, at), out.subarray(at + 1)]);
      else out = out.subarray(0, at);
    }
  }
  return out;
}

describe("codec properties", () => {
  it("codec - every well-formed message round-trips: decode(encode(m)) equals m", () => {
    fc.assert(
      fc.property(messageArb, (msg) => {
        const frame = encode(msg);
        expect(expectDecoded(decode(frame))).toEqual(msg);
        // One frame in a list decodes the same.
        expect(expectDecoded(decodeFrames([frame]))).toEqual(msg);
      }),
      { numRuns: 2000 },
    );
  });

  it("codec - OHAI with any other protocol or version is refused", () => {
    fc.assert(
      fc.property(shortText, fc.integer({ min: 0, max: 0xffff }), (protocol, version) => {
        fc.pre(protocol !== "FILEMQ" || version !== 2);
        const result = decode(encode({ id: "OHAI", protocol, version }));
        expectDecodeError(result, protocol !== "FILEMQ" ? "BAD_PROTOCOL" : "BAD_VERSION");
      }),
      { numRuns: 500 },
    );
  });

  it("codec - decode never throws on arbitrary bytes", () => {
    const withHeader = fc
      .tuple(fc.oneof(fc.constantFrom(...validIds), u8Arb), fc.uint8Array({ maxLength: 297 }))
      .map(([id, rest]) => Buffer.concat([Buffer.from([0xaa, 0xa3, id]), rest]));
    fc.assert(fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }), withHeader), checkTotal), { numRuns: 2000 });
  });

  it("codec - decode never throws on mutated golden frames", () => {
    fc.assert(
      fc.property(fc.nat({ max: golden.length - 1 }), fc.array(mutationArb, { minLength: 1, maxLength: 8 }), (index, mutations) => {
        const frame = golden[index]?.bytes ?? Buffer.alloc(0);
        checkTotal(mutate(frame, mutations));
      }),
      { numRuns: 2000 },
    );
  });

  it("codec - decode never throws on mutated encodings of arbitrary messages", () => {
    fc.assert(
      fc.property(messageArb, fc.array(mutationArb, { minLength: 1, maxLength: 4 }), (msg, mutations) => {
        checkTotal(mutate(encode(msg), mutations));
      }),
      { numRuns: 1000 },
    );
  });

  it("codec - chunks that do not decode (a header that is not UTF-8) count the credit they spent: their chunk's length, nothing for a delete, the whole frame when its layout does not hold", () => {
    // (Whole frames were counted, headers and deletes included: a server got more credit than our window.)
    const latin1 = (message: Cheezburger): Buffer => {
      const frame = Buffer.from(encode(message));
      frame[frame.indexOf(Buffer.from("caf_")) + 3] = 0xe9;
      expect(decode(frame).ok).toBe(false);
      return frame;
    };
    const base = { id: "CHEEZBURGER", sequence: 1n, filename: "/a.bin", offset: 0n, eof: 0 } as const;
    const create = latin1({ ...base, operation: 1, headers: new Map([["X-FMQ-Size", "4096"], ["X-Note", "caf_"]]), chunk: new Uint8Array(4096) });
    const del = latin1({ ...base, operation: 2, headers: new Map([["X-Note", "caf_"]]), chunk: new Uint8Array(0) });
    expect(cheezburgerBytes([create])).toBe(4096);
    expect(cheezburgerBytes([del])).toBe(0);
    expect(cheezburgerBytes([create, del, create])).toBe(8192);
    // Cut short: it cannot be walked, so all of it (no less than it may have carried).
    expect(cheezburgerBytes([create.subarray(0, 100)])).toBe(100);
    // Not a CHEEZBURGER at all: nothing.
    expect(cheezburgerBytes([Buffer.from(encode({ id: "HUGZ" }))])).toBe(0);
  });
});
