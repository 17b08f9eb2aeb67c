// The FILEMQ v2 wire vocabulary (35/FILEMQ as zeromq/filemq's fmq_msg.c encodes it).
// This module imports nothing: ids, names, field layouts and constants live here and only here.
// See ../../../shared/protocol/FILEMQ-v2.md (copied into the README's protocol section).

/** Every body starts with these two octets: 0xAAA0 | 3 (the `signature` attribute in fmq_msg.xml). */
export const SIGNATURE = 0xaaa3;

/** OHAI carries the protocol name and version; anything else is not a FILEMQ v2 peer. */
export const PROTOCOL_NAME = "FILEMQ";
export const PROTOCOL_VERSION = 2;

/** The well-known port of RFC 35. */
export const DEFAULT_PORT = 5670;

/** CHEEZBURGER.operation values. */
export const Operation = {
  /** File content follows (create or update). */
  CREATE: 1,
  /** The file was deleted; offset and chunk are meaningless (the reference sends stale values). */
  DELETE: 2,
} as const;
export type Operation = (typeof Operation)[keyof typeof Operation];

/** Message ids. 2 and 3 (ORLY/YARLY of protocol v1) no longer exist and are decode errors. */
export const MessageId = {
  /** C: open a peering. */
  OHAI: 1,
  /** S: the peering is open. */
  OHAI_OK: 4,
  /** C: subscribe to a path (options and cache dictionaries follow). */
  ICANHAZ: 5,
  /** S: the subscription was accepted. */
  ICANHAZ_OK: 6,
  /** C: grant `credit` more bytes of chunk payload. */
  NOM: 7,
  /** S: one chunk of a file, or a delete. */
  CHEEZBURGER: 8,
  /** C: heartbeat. */
  HUGZ: 9,
  /** S: heartbeat reply. */
  HUGZ_OK: 10,
  /** C: close the peering. */
  KTHXBAI: 11,
  /** S: the request was refused (access denied, no such path). */
  SRSLY: 128,
  /** S: the peer broke the protocol; it must start again with OHAI. */
  RTFM: 129,
} as const;
export type MessageName = keyof typeof MessageId;

/** Is `name` one of the protocol's messages (as opposed to an internal event of a state machine)? */
export function isMessageName(name: string): name is MessageName {
  return Object.hasOwn(MessageId, name);
}
export type MessageIdValue = (typeof MessageId)[MessageName];

/** Dictionaries (options, cache, headers): string keys (<= 255 bytes), longstr values. Order is not significant. */
export type Dictionary = Map<string, string>;

export interface Ohai {
  readonly id: "OHAI";
  /** Always "FILEMQ"; the decoder refuses anything else. */
  readonly protocol: string;
  /** Always 2; the decoder refuses anything else. */
  readonly version: number;
}
export interface OhaiOk {
  readonly id: "OHAI_OK";
}
export interface Icanhaz {
  readonly id: "ICANHAZ";
  /** Virtual path to subscribe to; starts with "/". A longstr on the wire (the RFC text says string; follow the code). */
  readonly path: string;
  /** Subscription options, e.g. RESYNC=1. */
  readonly options: Dictionary;
  /** What the client already holds: filename -> SHA-1 (40 uppercase hex). */
  readonly cache: Dictionary;
}
export interface IcanhazOk {
  readonly id: "ICANHAZ_OK";
}
export interface Nom {
  readonly id: "NOM";
  /** Bytes of chunk payload the server may send in addition to what it had: additive, not a window. */
  readonly credit: bigint;
  /** Ignored by servers (the reference client sends a stale value). */
  readonly sequence: bigint;
}
export interface Cheezburger {
  readonly id: "CHEEZBURGER";
  /** Per-session counter, +1 for every CHEEZBURGER sent. */
  readonly sequence: bigint;
  readonly operation: number;
  /** Full virtual path of the file, starting with "/". A longstr on the wire. */
  readonly filename: string;
  /** Byte offset of this chunk within the file. */
  readonly offset: bigint;
  /** 1 on the final, empty chunk of a file. */
  readonly eof: number;
  readonly headers: Dictionary;
  /** File data, inline in the same frame. A view into the received frame: copy it to keep it past the handler. */
  readonly chunk: Uint8Array;
}
export interface Hugz {
  readonly id: "HUGZ";
}
export interface HugzOk {
  readonly id: "HUGZ_OK";
}
export interface Kthxbai {
  readonly id: "KTHXBAI";
}
export interface Srsly {
  readonly id: "SRSLY";
  /** A string (<= 255 bytes) on the wire. */
  readonly reason: string;
}
export interface Rtfm {
  readonly id: "RTFM";
  readonly reason: string;
}

export type Message =
  | Ohai
  | OhaiOk
  | Icanhaz
  | IcanhazOk
  | Nom
  | Cheezburger
  | Hugz
  | HugzOk
  | Kthxbai
  | Srsly
  | Rtfm;

/** Messages a client sends and a server receives. */
export type ClientMessage = Ohai | Icanhaz | Nom | Hugz | Kthxbai;
/** Messages a server sends and a client receives. */
export type ServerMessage = OhaiOk | IcanhazOk | Cheezburger | HugzOk | Srsly | Rtfm;

/** The largest value a 1-octet length `string` field can carry. */
export const MAX_STRING = 255;
/** Our own ceiling on longstr fields (paths): far above any real path, far below memory exhaustion. */
export const MAX_LONGSTR = 64 * 1024;

/**
 * Ours, not the spec's: at most this many entries in one dictionary. Decoding takes about 1 µs per entry,
 * on the thread that serves every client: a 16 MiB ICANHAZ of 1.8 million tiny cache entries held a
 * publisher for seconds. A real cache of our client's entries (80-odd bytes each) fills 16 MiB at about
 * 200,000; our client sends at most this many (src/client/cache.ts).
 */
export const MAX_DICTIONARY_ENTRIES = 200_000;
