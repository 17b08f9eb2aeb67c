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

/**
 * What one NOM's credit adds: the hedge taken off if it carries it, at most MAX_CREDIT. Ours always
 * carries a grant on top of it, so exactly 2^50 is not ours: another client's round "unlimited" grant,
 * taken as it is (taken off, it was no credit at all, and that client waited for good: a review).
 */
export function nomCredit(bytes: bigint): number {
  if (bytes > CREDIT_HEDGE) bytes -= CREDIT_HEDGE;
  return bytes > BigInt(MAX_CREDIT) ? MAX_CREDIT : Number(bytes);
}

/**
 * The credit of two NOMs as one (the server folds a NOM into one still waiting to be handled): each
 * one's, hedge off, added; at most just under the hedge, so that the sum is never taken for one.
 */
export function mergedNomCredit(a: bigint, b: bigint): bigint {
  const sum = BigInt(nomCredit(a)) + BigInt(nomCredit(b));
  return sum < CREDIT_HEDGE ? sum : CREDIT_HEDGE - 1n;
}

/** The server's view of one client's credit. */
export class SendCredit {
  #available = 0;

  get available(): number {
    return this.#available;
  }

  /** NOM: "the client SHALL send NOM ... the server MAY send this many more bytes". */
  grant(bytes: bigint): void {
    this.#available = Math.min(MAX_CREDIT, this.#available + nomCredit(bytes));
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

/**
 * Chunks of at least this size are a big file's: while they flow, the whole window is kept granted.
 * (Our server sends 1 MiB chunks, the reference 1,000,000 bytes; a small file comes whole, in one.) So
 * is any piece of a file at least this big, whatever the piece's size (a server configured with 128 KiB
 * chunks sends big files in pieces under this).
 */
export const BIG_CHUNK = 256 * 1024;

/**
 * The client's view: a window of bytes kept granted ahead of what it has written, topped up in slices.
 *
 * How much must be in flight to keep the pipe full depends on what flows. A big file's 1 MiB chunks
 * want about 16 in flight. A flood of small files wants far less, and more costs both ends: every
 * byte granted is a frame the server has read and holds, and libzmq's buffers on our side, until it is
 * written. Held that long (a 16 MiB window is 4,000 files of 4 KiB), the buffers outlive V8's young
 * generation and are only freed by a full collection, so each process takes fresh memory for the whole
 * flood and faults it in page by page. Measured here (10,000 × 4 KiB, inbox on tmpfs, 2026-12-01):
 * window 16 MiB 1.31-1.44 s, publisher 1.05-1.07 CPU-s and 11,000 page faults; 2 MiB 1.06-1.10 s,
 * 0.78-0.80 CPU-s and 2,900-3,400 faults; 1 MiB 1.26 s (the pipe runs dry); 4 MiB 1.20 s.
 * So the window is `small` until a big file's chunk arrives (BIG_CHUNK), and the whole window while
 * they flow; it closes back to `small` once a whole window's worth of other chunks came without one.
 */
export class ReceiveWindow {
  /** Granted to the server and not yet received. */
  #outstanding = 0;
  /** What we keep granted now: `small`, or `window` while big chunks flow. */
  #limit: number;
  /** Bytes of small chunks received since the last big one. */
  #smallRun = 0;

  constructor(
    /** Most bytes granted and not yet received: the most chunk data that can be in flight or queued. */
    readonly window: number,
    /** Grants are made in multiples of this, so a busy transfer sends one NOM per slice, not per chunk. */
    readonly slice: number,
    /** The window while only small chunks arrive (at most `window`, at least `slice`); default `window`. */
    readonly small: number = window,
  ) {
    if (!(slice > 0 && window >= slice)) throw new RangeError(`credit window ${window} must be >= slice ${slice} > 0`);
    if (!(small >= slice && small <= window)) throw new RangeError(`small-chunk window ${small} must be between slice ${slice} and window ${window}`);
    this.#limit = small;
  }

  get outstanding(): number {
    return this.#outstanding;
  }

  /** What is kept granted now (see the class comment). */
  get limit(): number {
    return this.#limit;
  }

  /**
   * A chunk arrived: it used `bytes` of the credit we gave. Extra bytes from a misbehaving server are
   * ignored. `ofBigFile`: it is a piece of a file of BIG_CHUNK bytes or more.
   */
  received(bytes: number, ofBigFile = false): void {
    this.#outstanding = Math.max(0, this.#outstanding - bytes);
    if (bytes >= BIG_CHUNK || (ofBigFile && bytes > 0)) {
      this.#limit = this.window;
      this.#smallRun = 0;
    } else if ((this.#smallRun += bytes) >= this.window) {
      this.#limit = this.small;
    }
  }

  /** The bytes to grant now (0 if less than a slice is missing from what is kept granted). */
  refill(): number {
    const missing = this.#limit - this.#outstanding;
    if (missing < this.slice) return 0;
    const grant = missing - (missing % this.slice);
    this.#outstanding += grant;
    return grant;
  }

  /** A new session: the server starts from zero credit. */
  reset(): void {
    this.#outstanding = 0;
    this.#limit = this.small;
    this.#smallRun = 0;
  }
}
