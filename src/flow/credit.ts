// Credit-based flow control, as 35/FILEMQ defines it: credit counts bytes of chunk payload ("credit ...
// corresponds to actual file content"); NOM adds to it; commands, deletes and the empty end-of-file chunk
// cost nothing. The client grants in whole slices and keeps at most `window` bytes granted and unreceived,
// which bounds its memory; the server never sends more payload than it was granted.

/** Largest credit we track exactly; a NOM beyond it (2^64 - 1 from a hostile peer) is clamped. */
const MAX_CREDIT = Number.MAX_SAFE_INTEGER;

/**
 * Credit of this much or more in one NOM is a hedge, not credit: our client adds it to the first grant
 * of each session, and our server takes it off again. The C reference server livelocks (re-sending one
 * chunk forever, reading nothing, until it runs out of memory) whenever its credit is above 0 but below
 * its next chunk (1,000,000 bytes, or a file's short last chunk), and it spends all of its credit before
 * it reads the next NOM: whatever the grants, a run of files longer than the credit gets it there. With
 * a petabyte more it never runs short. No real client grants a petabyte at once.
 */
export const CREDIT_HEDGE = 2n ** 50n;

/** The server's view of one client's credit. */
export class SendCredit {
  #available = 0;

  get available(): number {
    return this.#available;
  }

  /** NOM: "the client SHALL send NOM ... the server MAY send this many more bytes". */
  grant(bytes: bigint): void {
    if (bytes >= CREDIT_HEDGE) bytes -= CREDIT_HEDGE;
    const add = bytes > BigInt(MAX_CREDIT) ? MAX_CREDIT : Number(bytes);
    this.#available = Math.min(MAX_CREDIT, this.#available + add);
  }

  /** How many payload bytes of a chunk of `wanted` bytes may go now: the sender never exceeds its credit. */
  allow(wanted: number): number {
    return Math.min(wanted, this.#available);
  }

  spend(bytes: number): void {
    if (bytes > this.#available) throw new RangeError(`spending ${bytes} with ${this.#available} credit`);
    this.#available -= bytes;
  }

  reset(): void {
    this.#available = 0;
  }
}

/** The client's view: a window of bytes kept granted ahead of what it has written, topped up in slices. */
export class ReceiveWindow {
  /** Granted to the server and not yet received. */
  #outstanding = 0;

  constructor(
    /** Most bytes granted and not yet received: the most chunk data that can be in flight or queued. */
    readonly window: number,
    /** Grants are made in multiples of this, so a busy transfer sends one NOM per slice, not per chunk. */
    readonly slice: number,
  ) {
    if (!(slice > 0 && window >= slice)) throw new RangeError(`credit window ${window} must be >= slice ${slice} > 0`);
  }

  get outstanding(): number {
    return this.#outstanding;
  }

  /** A chunk arrived: it used `bytes` of the credit we gave. Extra bytes from a misbehaving server are ignored. */
  received(bytes: number): void {
    this.#outstanding = Math.max(0, this.#outstanding - bytes);
  }

  /** The bytes to grant now (0 if less than a slice is missing from the window). */
  refill(): number {
    const missing = this.window - this.#outstanding;
    if (missing < this.slice) return 0;
    const grant = missing - (missing % this.slice);
    this.#outstanding += grant;
    return grant;
  }

  /** A new session: the server starts from zero credit. */
  reset(): void {
    this.#outstanding = 0;
  }
}
