// The FILEMQ v2 codec: one Message <-> one ZeroMQ frame body, byte for byte as zeromq/filemq's
// fmq_msg.c writes it (see shared/protocol/FILEMQ-v2.md and fixtures/golden-frames.txt).
//
// encode() throws EncodeError for a message that cannot be represented (our bug, not the peer's).
// decode() is total: whatever the bytes, it returns { ok: false, error } instead of throwing. It
// does so without exceptions: the Reader checks the remaining length before every read and, once a
// read has failed, records the first error and makes every later read a no-op.

import { isUtf8 } from "node:buffer";

import { MAX_BATCH_FRAMES } from "./extensions.js";
import { allocFrame } from "./frames.js";
import { DecodeError, EncodeError } from "./errors.js";
import type { DecodeErrorCode, EncodeErrorCode } from "./errors.js";
import { MAX_DICTIONARY_ENTRIES, MAX_LONGSTR, MAX_STRING, MessageId, Operation, PROTOCOL_NAME, PROTOCOL_VERSION, SIGNATURE } from "./messages.js";
import type { Cheezburger, Dictionary, Message, MessageName } from "./messages.js";
import { decodeName, hasStrayBytes, nameBytes, nameByteLength } from "../raw-names.js";

export type DecodeResult = { ok: true; message: Message } | { ok: false; error: DecodeError };

/** Signature (2 octets) + message id (1 octet). */
const HEADER_LENGTH = 3;
const U32_MAX = 0xffff_ffff;
const U64_MAX = 0xffff_ffff_ffff_ffffn;

const NAME_BY_ID: ReadonlyMap<number, MessageName> = new Map(
  (Object.entries(MessageId) as [MessageName, number][]).map(([name, id]) => [id, name]),
);

// ---------------------------------------------------------------------------------------------
// Encoding

/** A lone UTF-16 surrogate (in a `u` regex, a well-formed pair is one code point and does not match). */
const LONE_SURROGATE = /\p{Cs}/u;

function utf8Length(value: string, field: string): number {
  if (LONE_SURROGATE.test(value)) {
    throw new EncodeError("BAD_STRING", field, "lone UTF-16 surrogate, no UTF-8 form");
  }
  return Buffer.byteLength(value, "utf8");
}

/** Size on the wire of a `string`: 1-octet length + bytes. */
function stringSize(value: string, field: string): number {
  const n = utf8Length(value, field);
  // 35/FILEMQ: "string = number-1 *VCHAR". The C encoder writes `strlen & 0xFF` and still copies
  // every byte, corrupting the frame; we refuse instead.
  if (n > MAX_STRING) fail("STRING_TOO_LONG", field, `${n} bytes of UTF-8, at most ${MAX_STRING}`);
  return 1 + n;
}

/** Size on the wire of a `longstr`: 4-octet length + bytes. */
function longstrSize(value: string, field: string): number {
  const n = utf8Length(value, field);
  // Our decoder refuses longstrs over MAX_LONGSTR, so we never send one.
  if (n > MAX_LONGSTR) fail("LONGSTR_TOO_LONG", field, `${n} bytes of UTF-8, at most ${MAX_LONGSTR}`);
  return 4 + n;
}

/**
 * Size on the wire of a file's name (CHEEZBURGER's filename, a `longstr`): its bytes may be any, a byte
 * that is not UTF-8 carried in it as a lone surrogate (raw-names.ts); any other lone surrogate is refused.
 */
function nameSize(value: string, field: string): number {
  // (One test for a name with no lone surrogate, nearly every one, as for any string: this runs per chunk.)
  const n = LONE_SURROGATE.test(value) ? strayNameLength(value, field) : Buffer.byteLength(value, "utf8");
  if (n > MAX_LONGSTR) fail("LONGSTR_TOO_LONG", field, `${n} bytes, at most ${MAX_LONGSTR}`);
  return 4 + n;
}

/** Bytes of a name with lone surrogates: each must be a stray byte (U+DC80-U+DCFF), else it has no form. */
function strayNameLength(value: string, field: string): number {
  utf8Length(value.replace(/[\udc80-\udcff]/gu, ""), field);
  return nameByteLength(value);
}

/** Size on the wire of a `hash`: 4-octet count + (string key, longstr value) entries. */
function dictionarySize(dict: Dictionary, field: string): number {
  // Our decoder refuses more entries than this, so we never send them.
  if (dict.size > MAX_DICTIONARY_ENTRIES) fail("TOO_MANY_ENTRIES", field, `${dict.size} entries, at most ${MAX_DICTIONARY_ENTRIES}`);
  let size = 4;
  for (const [key, value] of dict) {
    size += stringSize(key, `${field} key`) + longstrSize(value, `${field}[${key}]`);
  }
  return size;
}

function fail(code: EncodeErrorCode, field: string, detail: string): never {
  throw new EncodeError(code, field, detail);
}

function checkUint(value: number, max: number, field: string): void {
  if (!Number.isInteger(value) || value < 0 || value > max) {
    fail("NUMBER_RANGE", field, `${value} is not an integer in 0..${max}`);
  }
}

/**
 * Writes one frame into a Buffer allocated at its exact final size (sizes are computed, and
 * strings validated, before allocation). Numbers are big-endian and range-checked here.
 */
class Writer {
  private pos = HEADER_LENGTH;

  constructor(
    readonly buf: Buffer,
    id: number,
  ) {
    // 35/FILEMQ: "Every ZeroMQ message SHALL start with the FILEMQ protocol signature, %xAA %xA3."
    buf.writeUInt16BE(SIGNATURE, 0);
    buf.writeUInt8(id, 2);
  }

  static alloc(id: number, bodySize: number): Writer {
    return new Writer(Buffer.allocUnsafe(HEADER_LENGTH + bodySize), id);
  }

  get offset(): number {
    return this.pos;
  }

  u8(value: number, field: string): void {
    checkUint(value, 0xff, field);
    this.pos = this.buf.writeUInt8(value, this.pos);
  }

  u16(value: number, field: string): void {
    checkUint(value, 0xffff, field);
    this.pos = this.buf.writeUInt16BE(value, this.pos);
  }

  u32(value: number, field: string): void {
    checkUint(value, U32_MAX, field);
    this.pos = this.buf.writeUInt32BE(value, this.pos);
  }

  u64(value: bigint, field: string): void {
    if (typeof value !== "bigint" || value < 0n || value > U64_MAX) {
      fail("NUMBER_RANGE", field, `${String(value)} is not a bigint in 0..2^64-1`);
    }
    this.pos = this.buf.writeBigUInt64BE(value, this.pos);
  }

  /** A `string` already validated by stringSize(): the bytes first, then their count in front. */
  string(value: string): void {
    const n = this.buf.write(value, this.pos + 1, "utf8");
    this.buf.writeUInt8(n, this.pos);
    this.pos += 1 + n;
  }

  /** A `longstr` already validated by longstrSize(). */
  longstr(value: string): void {
    const n = this.buf.write(value, this.pos + 4, "utf8");
    this.buf.writeUInt32BE(n, this.pos);
    this.pos += 4 + n;
  }

  /** A file's name already validated by nameSize(). */
  name(value: string): void {
    if (!hasStrayBytes(value)) return this.longstr(value);
    const bytes = nameBytes(value);
    this.pos = this.buf.writeUInt32BE(bytes.length, this.pos);
    this.pos += bytes.copy(this.buf, this.pos);
  }

  /** A `hash` already validated by dictionarySize(). */
  dictionary(dict: Dictionary): void {
    this.pos = this.buf.writeUInt32BE(dict.size, this.pos);
    for (const [key, value] of dict) {
      this.string(key);
      this.longstr(value);
    }
  }

  /** Returns the frame, checking that the size computed up front was exactly filled. */
  done(): Buffer {
    if (this.pos !== this.buf.length) {
      throw new Error(`codec bug: wrote ${this.pos} bytes into a ${this.buf.length}-byte frame`);
    }
    return this.buf;
  }
}

/** Bytes of a CHEEZBURGER frame before the chunk data (i.e. the chunk data's offset). Validates the strings. */
export function cheezburgerHeaderLength(filename: string, headers: Dictionary): number {
  return (
    HEADER_LENGTH +
    8 + // sequence
    1 + // operation
    nameSize(filename, "CHEEZBURGER.filename") +
    8 + // offset
    1 + // eof
    dictionarySize(headers, "CHEEZBURGER.headers") +
    4 // chunk length
  );
}

/**
 * Allocates one CHEEZBURGER frame for a chunk of `chunkLength` bytes and writes everything but the
 * chunk data, so file data can be read straight into `frame.subarray(chunkOffset)` with no copy.
 *
 * The frame is uninitialised memory (allocFrame): the caller MUST fill all `chunkLength` bytes at
 * `chunkOffset` before sending it, or stale memory goes on the wire. If fewer bytes are available
 * (the file shrank), build a new frame with the smaller length instead.
 */
export function cheezburgerFrame(
  fields: Omit<Cheezburger, "id" | "chunk">,
  chunkLength: number,
): { frame: Buffer; chunkOffset: number } {
  // 35/FILEMQ: "chunk = number-4 *OCTET": the length must fit in 4 octets.
  checkUint(chunkLength, U32_MAX, "CHEEZBURGER.chunk length");
  const chunkOffset = cheezburgerHeaderLength(fields.filename, fields.headers);
  const w = new Writer(allocFrame(chunkOffset + chunkLength), MessageId.CHEEZBURGER);
  w.u64(fields.sequence, "CHEEZBURGER.sequence");
  w.u8(fields.operation, "CHEEZBURGER.operation");
  w.name(fields.filename);
  w.u64(fields.offset, "CHEEZBURGER.offset");
  w.u8(fields.eof, "CHEEZBURGER.eof");
  w.dictionary(fields.headers);
  w.u32(chunkLength, "CHEEZBURGER.chunk length");
  return { frame: w.buf, chunkOffset: w.offset };
}

/** Encodes a message as the one and only frame of a ZeroMQ message. Throws EncodeError. */
export function encode(msg: Message): Buffer {
  switch (msg.id) {
    case "OHAI": {
      const w = Writer.alloc(MessageId.OHAI, stringSize(msg.protocol, "OHAI.protocol") + 2);
      w.string(msg.protocol);
      w.u16(msg.version, "OHAI.version");
      return w.done();
    }
    case "ICANHAZ": {
      // 35/FILEMQ says "path = string"; fmq_msg.c (and fmq_msg.bnf) use a longstr. We follow the code.
      const size =
        longstrSize(msg.path, "ICANHAZ.path") +
        dictionarySize(msg.options, "ICANHAZ.options") +
        dictionarySize(msg.cache, "ICANHAZ.cache");
      const w = Writer.alloc(MessageId.ICANHAZ, size);
      w.longstr(msg.path);
      w.dictionary(msg.options);
      w.dictionary(msg.cache);
      return w.done();
    }
    case "NOM": {
      const w = Writer.alloc(MessageId.NOM, 8 + 8);
      w.u64(msg.credit, "NOM.credit");
      w.u64(msg.sequence, "NOM.sequence");
      return w.done();
    }
    case "CHEEZBURGER": {
      const { frame, chunkOffset } = cheezburgerFrame(msg, msg.chunk.length);
      frame.set(msg.chunk, chunkOffset);
      return frame;
    }
    case "SRSLY":
    case "RTFM": {
      const w = Writer.alloc(MessageId[msg.id], stringSize(msg.reason, `${msg.id}.reason`));
      w.string(msg.reason);
      return w.done();
    }
    case "OHAI_OK":
    case "ICANHAZ_OK":
    case "HUGZ":
    case "HUGZ_OK":
    case "KTHXBAI":
      return Writer.alloc(MessageId[msg.id], 0).done();
    default:
      return unreachable(msg);
  }
}

function unreachable(msg: never): never {
  throw new TypeError(`not a FILEMQ message: ${JSON.stringify((msg as { id?: unknown }).id)}`);
}

// ---------------------------------------------------------------------------------------------
// Decoding

const EMPTY_BYTES = Buffer.alloc(0);

/**
 * Bounds-checked big-endian reader over one frame. Every read checks the remaining length first.
 * The first failure is kept in `error`; after it every read returns a placeholder without touching
 * the buffer, so a message decoder can read all its fields in order and check `error` once.
 */
class Reader {
  private pos = HEADER_LENGTH;
  error: DecodeError | undefined = undefined;

  constructor(
    private readonly buf: Buffer,
    private readonly message: MessageName,
  ) {}

  get ok(): boolean {
    return this.error === undefined;
  }

  fail(code: DecodeErrorCode, field: string, detail: string): void {
    this.error ??= new DecodeError(code, `${this.message}.${field}: ${detail}`);
  }

  /** Reserves `n` bytes and returns their offset, or -1 after a failure. */
  private take(n: number, field: string): number {
    if (this.error !== undefined) return -1;
    const left = this.buf.length - this.pos;
    if (n > left) {
      // fmq_msg.c: any field running past the end of the frame is malformed.
      this.fail("TRUNCATED", field, `needs ${n} bytes at offset ${this.pos}, only ${left} left`);
      return -1;
    }
    const at = this.pos;
    this.pos += n;
    return at;
  }

  u8(field: string): number {
    const at = this.take(1, field);
    return at < 0 ? 0 : this.buf.readUInt8(at);
  }

  u16(field: string): number {
    const at = this.take(2, field);
    return at < 0 ? 0 : this.buf.readUInt16BE(at);
  }

  u32(field: string): number {
    const at = this.take(4, field);
    return at < 0 ? 0 : this.buf.readUInt32BE(at);
  }

  u64(field: string): bigint {
    const at = this.take(8, field);
    return at < 0 ? 0n : this.buf.readBigUInt64BE(at);
  }

  /** `n` raw bytes as a view of the frame (no copy). */
  bytes(n: number, field: string): Buffer {
    const at = this.take(n, field);
    return at < 0 ? EMPTY_BYTES : this.buf.subarray(at, at + n);
  }

  /** `n` bytes of UTF-8 text. */
  private text(n: number, field: string): string {
    const at = this.take(n, field);
    if (at < 0) return "";
    const bytes = this.buf.subarray(at, at + n);
    // The RFC says *VCHAR; the reference moves raw bytes. We hand out JS strings, so we need
    // text that round-trips: valid UTF-8 (isUtf8 is fatal-mode validation without exceptions,
    // and Buffer#toString keeps a leading BOM, unlike TextDecoder's default).
    if (!isUtf8(bytes)) {
      this.fail("BAD_STRING", field, "not valid UTF-8");
      return "";
    }
    return bytes.toString("utf8");
  }

  /** 35/FILEMQ: "string = number-1 *VCHAR" (so at most 255 bytes, nothing more to check). */
  string(field: string): string {
    return this.text(this.u8(field), field);
  }

  /** 35/FILEMQ: "longstr = number-4 *VCHAR". */
  longstr(field: string): string {
    return this.text(this.longstrLength(field), field);
  }

  /**
   * A file's name: a `longstr` whose bytes are taken as they are, UTF-8 or not (the C reference sends a
   * name as the bytes it found on disk); a byte that is not UTF-8 is carried as a lone surrogate.
   */
  name(field: string): string {
    const n = this.longstrLength(field);
    const at = this.take(n, field);
    return at < 0 ? "" : decodeName(this.buf.subarray(at, at + n));
  }

  private longstrLength(field: string): number {
    const n = this.u32(field);
    // Ours, not the spec's: a 4-octet length could announce 4 GiB; paths never need more than MAX_LONGSTR.
    if (this.ok && n > MAX_LONGSTR) {
      this.fail("TOO_LONG", field, `longstr of ${n} bytes, at most ${MAX_LONGSTR}`);
    }
    return n;
  }

  /** 35/FILEMQ: "dictionary = dict-count *( dict-name dict-value )", dict-count = number-4. */
  dictionary(field: string): Dictionary {
    const dict: Dictionary = new Map();
    const count = this.u32(`${field} count`);
    // Every entry takes at least 1 + 4 octets (empty key, empty value): a count the rest of the
    // frame cannot hold is truncated right away instead of looping up to 2^32 times.
    const left = this.buf.length - this.pos;
    if (this.ok && count > Math.floor(left / 5)) {
      this.fail("TRUNCATED", `${field} count`, `${count} entries cannot fit in ${left} bytes`);
    }
    if (this.ok && count > MAX_DICTIONARY_ENTRIES) {
      this.fail("TOO_MANY", `${field} count`, `${count} entries, at most ${MAX_DICTIONARY_ENTRIES}`);
    }
    for (let i = 0; i < count && this.ok; i++) {
      const key = this.string(`${field} key`);
      const value = this.longstr(`${field} value`);
      // FILEMQ-v2.md: "On decode, a duplicate key is dropped (first wins)."
      if (this.ok && !dict.has(key)) dict.set(key, value);
    }
    return dict;
  }

  /** 35/FILEMQ: "A chunk has 4-octet length + binary contents", inline in this frame. Zero-copy. */
  chunk(field: string): Buffer {
    // No MAX_LONGSTR here: a chunk may be as long as the frame that carries it.
    return this.bytes(this.u32(field), field);
  }
}

/** Reads the fields of message `id` in wire order; undefined for an id that FILEMQ v2 does not have. */
function readBody(id: number, r: Reader): Message | undefined {
  switch (id) {
    case MessageId.OHAI: {
      const protocol = r.string("protocol");
      // 35/FILEMQ: "protocol = string ; Constant "FILEMQ"" and "version = number-2 ; Protocol version 2".
      // "If the server does not support the request protocol version it SHALL reply with a RTFM command."
      if (r.ok && protocol !== PROTOCOL_NAME) {
        r.fail("BAD_PROTOCOL", "protocol", `${JSON.stringify(protocol)} is not ${JSON.stringify(PROTOCOL_NAME)}`);
      }
      const version = r.u16("version");
      if (r.ok && version !== PROTOCOL_VERSION) {
        r.fail("BAD_VERSION", "version", `${version} is not ${PROTOCOL_VERSION}`);
      }
      return { id: "OHAI", protocol, version };
    }
    case MessageId.ICANHAZ: {
      // The RFC types path as a string; fmq_msg.c uses a longstr. FILEMQ-v2.md: "Follow the code."
      const path = r.longstr("path");
      const options = r.dictionary("options");
      const cache = r.dictionary("cache");
      return { id: "ICANHAZ", path, options, cache };
    }
    case MessageId.NOM: {
      const credit = r.u64("credit");
      const sequence = r.u64("sequence");
      return { id: "NOM", credit, sequence };
    }
    case MessageId.CHEEZBURGER: {
      const sequence = r.u64("sequence");
      const operation = r.u8("operation");
      // As for ICANHAZ.path: a longstr in the code, a string in the RFC.
      const filename = r.name("filename");
      const offset = r.u64("offset");
      const eof = r.u8("eof");
      const headers = r.dictionary("headers");
      const chunk = r.chunk("chunk");
      return { id: "CHEEZBURGER", sequence, operation, filename, offset, eof, headers, chunk };
    }
    case MessageId.SRSLY:
      return { id: "SRSLY", reason: r.string("reason") };
    case MessageId.RTFM:
      return { id: "RTFM", reason: r.string("reason") };
    case MessageId.OHAI_OK:
      return { id: "OHAI_OK" };
    case MessageId.ICANHAZ_OK:
      return { id: "ICANHAZ_OK" };
    case MessageId.HUGZ:
      return { id: "HUGZ" };
    case MessageId.HUGZ_OK:
      return { id: "HUGZ_OK" };
    case MessageId.KTHXBAI:
      return { id: "KTHXBAI" };
    default:
      return undefined;
  }
}

function failure(code: DecodeErrorCode, detail: string): DecodeResult {
  return { ok: false, error: new DecodeError(code, detail) };
}

/**
 * Decodes one frame body. Total: never throws, whatever the input. A CHEEZBURGER's chunk is a
 * view of `frame` (copy it to keep it after `frame` is reused). Bytes after the last field are
 * ignored, as fmq_msg.c does.
 */
export function decode(frame: Uint8Array): DecodeResult {
  const buf = Buffer.isBuffer(frame) ? frame : Buffer.from(frame.buffer, frame.byteOffset, frame.byteLength);
  if (buf.length === 0) return failure("EMPTY", "zero-byte frame");
  // One byte, even 0xaa: it does not start with the signature's two octets, so it is discarded as any
  // message that does not (below). (It was answered RTFM as a truncated header.)
  if (buf.length < 2) return failure("BAD_SIGNATURE", `a 1-byte frame (0x${buf[0]!.toString(16).padStart(2, "0")}) does not start with 0xaaa3`);

  // 35/FILEMQ: "Every ZeroMQ message SHALL start with the FILEMQ protocol signature, %xAA %xA3.
  // The server and client SHALL silently discard any message received that does not start with
  // these two octets." (DecodeError.reply is "discard" for this code.)
  const signature = buf.readUInt16BE(0);
  if (signature !== SIGNATURE) {
    return failure("BAD_SIGNATURE", `0x${signature.toString(16).padStart(4, "0")} is not 0xaaa3`);
  }
  if (buf.length < HEADER_LENGTH) return failure("TRUNCATED", "no message id after the signature");

  const id = buf.readUInt8(2);
  const name = NAME_BY_ID.get(id);
  // 35/FILEMQ: "The server SHALL respond to an invalid command by sending RTFM."
  // FILEMQ-v2.md: "Ids 2 and 3 (ORLY/YARLY of protocol v1) no longer exist: receiving them is a decode error."
  if (name === undefined) return failure("UNKNOWN_ID", `message id ${id}`);

  const r = new Reader(buf, name);
  const message = readBody(id, r);
  if (r.error !== undefined) return { ok: false, error: r.error };
  // Unreachable (NAME_BY_ID and readBody list the same ids), kept so the types need no assertion.
  if (message === undefined) return failure("UNKNOWN_ID", `message id ${id}`);
  // FILEMQ-v2.md: "trailing bytes after the last field are ignored (no end check)". So are we.
  return { ok: true, message };
}

/**
 * Decodes a whole ZeroMQ message as received (routing id already removed on a ROUTER).
 * FILEMQ-v2.md: "Each FileMQ command is exactly one ZeroMQ message made of exactly one frame".
 */
export function decodeFrames(frames: readonly Uint8Array[]): DecodeResult {
  const [first] = frames;
  if (first === undefined) return failure("EMPTY", "message with no frame");
  if (frames.length > 1) return failure("MULTI_FRAME", `${frames.length} frames, a FILEMQ command is exactly one`);
  return decode(first);
}

/**
 * The credit spent by frames that claim to be CHEEZBURGERs (our signature and that id) but do not decode
 * (a header that is not UTF-8, a field cut short): each one's chunk length when
 * its layout can be walked (text not checked; a delete spends nothing), else its whole length, which is
 * no less than what it can have carried. (Whole lengths alone gave a server more credit than our window
 * for every such chunk, headers and deletes counted: a review.)
 */
export function cheezburgerBytes(frames: readonly Uint8Array[]): number {
  let bytes = 0;
  for (const frame of frames) if (frame.length >= 3 && frame[0] === SIGNATURE >> 8 && frame[1] === (SIGNATURE & 0xff) && frame[2] === MessageId.CHEEZBURGER) bytes += chunkSpent(frame) ?? frame.length;
  return bytes;
}

/** A CHEEZBURGER frame's chunk length (0 for a delete), by its layout alone; undefined if it does not hold together. */
function chunkSpent(frame: Uint8Array): number | undefined {
  const view = Buffer.from(frame.buffer, frame.byteOffset, frame.length);
  let at = 3 + 8; // signature, id, sequence
  const u8 = (): number | undefined => (at + 1 <= view.length ? view[at++] : undefined);
  const u32 = (): number | undefined => {
    if (at + 4 > view.length) return undefined;
    const n = view.readUInt32BE(at);
    at += 4;
    return n;
  };
  const skip = (n: number | undefined): boolean => n !== undefined && (at += n) <= view.length;
  const operation = u8();
  if (!skip(u32()) || !skip(8 + 1)) return undefined; // filename, offset, eof
  const entries = u32();
  if (entries === undefined || entries > (view.length - at) / 5) return undefined;
  for (let i = 0; i < entries; i++) if (!skip(u8()) || !skip(u32())) return undefined;
  const chunk = u32();
  if (chunk === undefined || at + chunk > view.length) return undefined;
  return operation === Operation.CREATE ? chunk : 0;
}

/**
 * Decodes a batch (our extension, capability "batch"): a multipart message from the server whose every
 * frame is a complete CHEEZBURGER. A single frame decodes as usual; in a batch, any frame that is not a
 * CHEEZBURGER makes the whole message malformed (nothing of it is applied).
 */
export function decodeBatch(frames: readonly Uint8Array[]): { ok: true; messages: Message[] } | { ok: false; error: DecodeError } {
  if (frames.length <= 1) {
    const result = decodeFrames(frames);
    return result.ok ? { ok: true, messages: [result.message] } : result;
  }
  // (A server sends at most MAX_BATCH_FRAMES: one that sends more is not decoded frame by frame into the
  // client's queue. libzmq has received the message whole by now: what it may cost there, see README.)
  if (frames.length > MAX_BATCH_FRAMES) return { ok: false, error: new DecodeError("MULTI_FRAME", `a batch of ${frames.length} frames, more than ${MAX_BATCH_FRAMES}`) };
  const messages: Message[] = [];
  for (const [i, frame] of frames.entries()) {
    const result = decode(frame);
    // (A frame without our signature is noise to ignore only as a message of its own: inside a batch of
    // CHEEZBURGERs it makes the batch malformed, which is said.)
    if (!result.ok) return i > 0 && result.error.reply === "discard" ? { ok: false, error: new DecodeError("MULTI_FRAME", `frame ${i + 1} of a batch of ${frames.length}: ${result.error.message}`) } : result;
    if (result.message.id !== "CHEEZBURGER") return { ok: false, error: new DecodeError("MULTI_FRAME", `${result.message.id} in a batch of ${frames.length} frames`) };
    messages.push(result.message);
  }
  return { ok: true, messages };
}
