// Defaults of the server, the client and the command line, as plain values in a module of their own: the
// CLI shows them in --help and each of its commands then loads only its own side (a subscriber does not
// load the publisher's code, chokidar or the config parser: about 60 ms less CPU to start, measured).

export const serverDefaults = {
  chunkSize: 1024 * 1024,
  readAhead: 2,
  stableMs: 150,
  hashAhead: true,
  expiryMs: 60_000,
  peerTimeoutMs: 15_000,
  maxClients: 10_000,
  maxSubscriptions: 256,
  maxQueuedMessages: 16,
  maxMessageSize: 16 * 1024 * 1024,
  maxPendingMessages: 256,
  maxPendingBytes: 64 * 1024 * 1024,
  maxPendingTotalBytes: 256 * 1024 * 1024,
  maxOutgoingMessages: 512,
  maxStalledBytes: 512 * 1024 * 1024,
} as const;

export const clientDefaults = {
  window: 16 * 1024 * 1024,
  slice: 1024 * 1024,
  heartbeatMs: 1000,
  fsync: false,
} as const;

/** The longest peer-timeout-ms: twice it is libzmq's TCP_MAXRT, a C int. */
export const MAX_PEER_TIMEOUT_MS = 2 ** 30 - 1;

/** The largest chunk a server sends: a client holds a whole one in memory (and its window is at least this). */
export const MAX_CHUNK_SIZE = 64 * 1024 * 1024;

/** Where `fmq publish` binds unless told. */
export const DEFAULT_BIND = "tcp://*:5670";

/**
 * `options` over `defaults`, an option set to undefined taking its default as one left out does. A plain
 * spread lets `{ timeoutMs: undefined }` (the types allow it) replace the default: the client then never
 * gave up on a silent server, and a heartbeat of undefined ticked every millisecond (a review).
 */
export function withDefaults<D extends object, O extends object>(defaults: D, options: O): D & O {
  const given = Object.fromEntries(Object.entries(options).filter(([, value]) => value !== undefined));
  return { ...defaults, ...given } as D & O;
}
