// Reads one file for one client as ready-to-send CHEEZBURGER frames. Each read lands straight in the frame
// that will go on the wire (no copy), and `readAhead` reads are kept in flight so the disk works while the
// socket sends. Frames are built with sequence 0; the sender stamps the real sequence just before sending.

import { open, type FileHandle } from "node:fs/promises";
import { cheezburgerFrame } from "../protocol/codec.js";
import { Operation } from "../protocol/messages.js";

/** CHEEZBURGER's sequence sits right after the 2-byte signature and the 1-byte id. */
const SEQUENCE_OFFSET = 3;
const NO_HEADERS = new Map<string, string>();

export interface ChunkFrame {
  readonly frame: Buffer;
  /** Payload bytes in this frame (what it costs in credit). */
  readonly bytes: number;
  /** This is the final, empty, eof=1 chunk. */
  readonly eof: boolean;
}

interface Prefetched {
  readonly offset: number;
  /** Payload bytes asked for. */
  readonly want: number;
  /** The frame, sized for `want` payload bytes, and where its payload starts. */
  readonly frame: Buffer;
  readonly chunkOffset: number;
  readonly read: Promise<number>;
}

export class FileCursor {
  /** Offset of the next payload byte to send. */
  #offset: number;
  #ahead: Prefetched[] = [];
  /** Where reads have got to (prefetches included). */
  #readOffset: number;
  /** The file's size when opened, lowered if a read comes back short (the file shrank). */
  #limit: number;
  #closed = false;

  private constructor(
    private readonly handle: FileHandle,
    readonly vpath: string,
    private readonly chunkSize: number,
    private readonly readAhead: number,
    size: number,
    start: number,
  ) {
    this.#offset = start;
    this.#readOffset = start;
    this.#limit = size;
  }

  /** Opens the file and fixes its size: the bytes sent are those of the file as it is now. */
  static async open(absolute: string, vpath: string, chunkSize: number, readAhead: number, start = 0): Promise<FileCursor> {
    const handle = await open(absolute, "r");
    try {
      const { size } = await handle.stat();
      return new FileCursor(handle, vpath, chunkSize, readAhead, size, Math.min(start, size));
    } catch (error) {
      await handle.close();
      throw error;
    }
  }

  get offset(): number {
    return this.#offset;
  }

  /** The file's size as this cursor sends it. */
  get size(): number {
    return this.#limit;
  }

  /** Every payload byte has been handed out: only the eof chunk remains. */
  get atEnd(): boolean {
    return this.#offset >= this.#limit;
  }

  /**
   * The next frame, carrying at most `credit` payload bytes, or undefined if a data chunk is due and
   * credit is 0. A chunk larger than the credit is split: the server never sends more than its credit,
   * and never stalls while credit and data remain (the reference's livelock).
   */
  async next(credit: number): Promise<ChunkFrame | undefined> {
    this.#fill();
    const head = this.#ahead[0];
    if (!head) return this.#eofFrame();
    const got = await head.read;
    if (got < head.want) this.#shrunk(head.offset + got);
    // (#shrunk has already dropped an empty read: its offset is the new end)
    if (got === 0) return this.#eofFrame();
    if (credit <= 0) return undefined;
    const skip = this.#offset - head.offset; // payload of this read already sent (a split chunk)
    const bytes = Math.min(got - skip, credit);
    let frame: Buffer;
    if (skip === 0 && bytes === got) {
      // The common case: the whole read goes out in the very frame it was read into.
      this.#ahead.shift();
      frame = got === head.want ? head.frame : head.frame.subarray(0, head.chunkOffset + got);
      if (got < head.want) frame.writeUInt32BE(got, head.chunkOffset - 4);
    } else {
      // Credit is short: send a fresh copy of just the part that fits, keep the rest for later.
      const part = cheezburgerFrame(this.#fields(this.#offset), bytes);
      const from = head.chunkOffset + skip;
      head.frame.copy(part.frame, part.chunkOffset, from, from + bytes);
      frame = part.frame;
      if (skip + bytes === got) this.#ahead.shift();
    }
    this.#offset += bytes;
    this.#fill();
    return { frame, bytes, eof: false };
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    // Let reads in flight finish before closing the descriptor under them.
    await Promise.allSettled(this.#ahead.map((p) => p.read));
    this.#ahead = [];
    await this.handle.close().catch(() => undefined);
  }

  #fields(offset: number) {
    return { sequence: 0n, operation: Operation.CREATE, filename: this.vpath, offset: BigInt(offset), eof: 0, headers: NO_HEADERS };
  }

  #eofFrame(): ChunkFrame {
    const { frame } = cheezburgerFrame({ ...this.#fields(this.#offset), eof: 1 }, 0);
    return { frame, bytes: 0, eof: true };
  }

  /** The file ended early (it shrank while we sent it): send what was read, then end. */
  #shrunk(end: number): void {
    this.#limit = Math.min(this.#limit, end);
    // Reads beyond the new end will return nothing; drop them (close() still waits for them).
    const beyond = this.#ahead.filter((p) => p.offset >= this.#limit);
    this.#ahead = this.#ahead.filter((p) => p.offset < this.#limit);
    for (const p of beyond) void p.read.catch(() => undefined);
    this.#readOffset = Math.min(this.#readOffset, this.#limit);
  }

  /** Keep up to 1 + readAhead reads in flight, never past the end. */
  #fill(): void {
    while (!this.#closed && this.#readOffset < this.#limit && this.#ahead.length < 1 + this.readAhead) {
      const offset = this.#readOffset;
      const want = Math.min(this.chunkSize, this.#limit - offset);
      const { frame, chunkOffset } = cheezburgerFrame(this.#fields(offset), want);
      const read = this.handle.read(frame, chunkOffset, want, offset).then((r) => r.bytesRead);
      // A failed read is reported when its chunk is due; never leave a rejection unhandled meanwhile.
      read.catch(() => undefined);
      this.#ahead.push({ offset, want, frame, chunkOffset, read });
      this.#readOffset += want;
    }
  }

  /** Stamp the session's sequence number into a frame just before it is sent. */
  static stamp(frame: Buffer, sequence: bigint): void {
    frame.writeBigUInt64BE(sequence, SEQUENCE_OFFSET);
  }
}
