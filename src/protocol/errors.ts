// Errors of the FILEMQ v2 codec. Decoding never throws (decode() returns a DecodeError);
// encoding throws EncodeError, because a message we cannot encode is a bug on our side.

/** What a peer does with a message it could not decode. */
export type DecodeReply = "discard" | "RTFM";

/** Why a frame could not be decoded. */
export const DecodeErrorCode = {
  /** No frame at all, or a frame of zero bytes. */
  EMPTY: "EMPTY",
  /** A field (or the 3-octet header) runs past the end of the frame. */
  TRUNCATED: "TRUNCATED",
  /** The first two octets are not AA A3: not a FILEMQ message at all. */
  BAD_SIGNATURE: "BAD_SIGNATURE",
  /** The message id is none of the v2 ids (v1's ORLY = 2 and YARLY = 3 included). */
  UNKNOWN_ID: "UNKNOWN_ID",
  /** OHAI whose protocol is not exactly "FILEMQ". */
  BAD_PROTOCOL: "BAD_PROTOCOL",
  /** OHAI whose version is not exactly 2. */
  BAD_VERSION: "BAD_VERSION",
  /** A string, longstr or dictionary key/value that is not valid UTF-8. */
  BAD_STRING: "BAD_STRING",
  /** A longstr (path, filename, dictionary value) over MAX_LONGSTR: we refuse to hold it. */
  TOO_LONG: "TOO_LONG",
  /** A ZeroMQ message with more than one frame: every FILEMQ v2 command is exactly one frame. */
  MULTI_FRAME: "MULTI_FRAME",
  /** A dictionary (ICANHAZ cache...) of more than MAX_DICTIONARY_ENTRIES entries: we refuse to hold it. */
  TOO_MANY: "TOO_MANY",
} as const;
export type DecodeErrorCode = (typeof DecodeErrorCode)[keyof typeof DecodeErrorCode];

/**
 * The reply each failure deserves.
 *
 * 35/FILEMQ: "The server and client SHALL silently discard any message received that does not
 * start with these two octets." and "the server SHALL not send RTFM to clients which send an
 * invalid protocol signature": a bad signature is probably another protocol on a reused port,
 * so answering it would only add noise.
 *
 * 35/FILEMQ: "The server SHALL respond to an invalid command by sending RTFM." Everything else
 * came from something that speaks FILEMQ (or claims to) and broke it, so it is told so.
 * (The C reference instead stops its whole reactor on any of these; we do not copy that.)
 */
export const DECODE_ERROR_REPLY: { readonly [C in DecodeErrorCode]: DecodeReply } = {
  EMPTY: "RTFM",
  TRUNCATED: "RTFM",
  BAD_SIGNATURE: "discard",
  UNKNOWN_ID: "RTFM",
  BAD_PROTOCOL: "RTFM",
  BAD_VERSION: "RTFM",
  BAD_STRING: "RTFM",
  TOO_LONG: "RTFM",
  MULTI_FRAME: "RTFM",
  TOO_MANY: "RTFM",
};

/** A frame that is not a well-formed FILEMQ v2 message. Returned by decode(), never thrown by it. */
export class DecodeError extends Error {
  override readonly name = "DecodeError";
  readonly code: DecodeErrorCode;
  /** How the receiver should react: drop it silently, or answer RTFM. */
  readonly reply: DecodeReply;

  constructor(code: DecodeErrorCode, detail: string) {
    super(`${code}: ${detail}`);
    this.code = code;
    this.reply = DECODE_ERROR_REPLY[code];
  }
}

/** Why a message could not be encoded. */
export const EncodeErrorCode = {
  /** A `string` field (SRSLY/RTFM reason, OHAI protocol) or a dictionary key over 255 bytes of UTF-8:
   *  its length must fit in one octet. The C encoder writes `len & 0xFF` and corrupts the frame; we refuse. */
  STRING_TOO_LONG: "STRING_TOO_LONG",
  /** A longstr (path, filename, dictionary value) over MAX_LONGSTR bytes: our own decoder would refuse it. */
  LONGSTR_TOO_LONG: "LONGSTR_TOO_LONG",
  /** A number or bigint that is negative, not an integer, or too wide for its field (or a chunk over 4 GiB - 1). */
  NUMBER_RANGE: "NUMBER_RANGE",
  /** A string holding a lone UTF-16 surrogate: it has no UTF-8 form, and Node would silently send U+FFFD instead. */
  BAD_STRING: "BAD_STRING",
  /** A dictionary of more than MAX_DICTIONARY_ENTRIES entries: our own decoder would refuse it. */
  TOO_MANY_ENTRIES: "TOO_MANY_ENTRIES",
} as const;
export type EncodeErrorCode = (typeof EncodeErrorCode)[keyof typeof EncodeErrorCode];

/** A message that cannot be put on the wire as given. Thrown by encode() and cheezburgerFrame(). */
export class EncodeError extends Error {
  override readonly name = "EncodeError";
  readonly code: EncodeErrorCode;
  /** The offending field, e.g. "SRSLY.reason" or "ICANHAZ.options key". */
  readonly field: string;

  constructor(code: EncodeErrorCode, field: string, detail: string) {
    super(`${code}: ${field}: ${detail}`);
    this.code = code;
    this.field = field;
  }
}
