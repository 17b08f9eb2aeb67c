// The main thread's side of placer-worker.ts: one worker for the process, started at the first small file
// and referenced only while files are on their way (it never keeps an idle process alive). The files a
// turn of the event loop hands over go to the worker as one message, their bytes copied into one buffer
// that is moved, not copied again. Replies come in the order the files were handed over.
//
// Measured (10,000 files of 4 KiB, 100 to a directory, from one publisher with the bench's flags; a fresh
// subscriber each time, `--window 16M`; 10 pairs alternating with the build before, on the 2-core VM,
// 2026-12-06): this form faster in 9 of 10 pairs, by 21 % (paired median; 1.05 s against 1.39; one pair
// 2.9 times slower, not seen again in 6 more runs), CPU 1.71 against 1.92 CPU-s (the subscriber with its
// measuring parent); two earlier forms 5 % (7 of 10) and 16 % (9 of 10). Peak RSS 125-133 MiB against
// 99-111 (the worker's heap, the batches' buffers). The main thread's profile: a quarter of it idle,
// where it was busy throughout. An attempt of 2026-12-02, also a batch per turn, was measured slower and
// not kept; its code is gone, and what made the difference is not on record (README, "What limits").

import { Worker } from "node:worker_threads";
import { workerUrl } from "../worker-url.js";
import { fsPath } from "../raw-names.js";
import { JOB_HEADER_BYTES, type PlacementBatch, type PlacementReply } from "./placer-worker.js";

/**
 * What to do once a file handed over is in place (`failure` null) or is not (why). A file not in place
 * comes with its bytes (`data`, good until `done` returns), unless the worker stopped with them.
 */
export type Placed = (failure: string | null, data?: Uint8Array) => void;

/**
 * What may be handed over and not yet in place: past either, the subscriber takes no more files until
 * half have landed (placingRoom). 2 MiB is two of the server's batches of small files, one being placed
 * while the next is made ready.
 */
export const PLACING_MAX_BYTES = 2 * 1024 * 1024;
export const PLACING_MAX_FILES = 1024;

/**
 * Batches handed over and not yet answered, at most (then room() waits, as past the bounds above): each
 * has a buffer, and a turn may hand over a single file (a server that sends one per message).
 */
export const PLACING_MAX_BATCHES = 16;

/** The batches' buffers: each at least this big to start with (doubled as a batch needs), and this many kept for the next batches. */
const BUFFER_BYTES = 64 * 1024;
const SPARE_BUFFERS = 2;

/**
 * The worker's own heap: it keeps nothing but its code, and makes little garbage, so a small one; V8's
 * default young generation alone would let it grow by tens of MiB. Past these it stops
 * (ERR_WORKER_OUT_OF_MEMORY): the files not sent to it yet come back with their bytes (their caller
 * places them), those it had without (their caller looks whether they landed).
 */
const WORKER_LIMITS = { maxYoungGenerationSizeMb: 2, maxOldGenerationSizeMb: 32 };

/** A batch being filled or on its way: its buffer (see PlacementBatch), and each file's `placed`, and where its data is in the buffer. */
interface Batch {
  bytes: Buffer;
  used: number;
  readonly placed: Placed[];
  readonly dataAt: number[];
  readonly sizes: number[];
}

export class PlacerThread {
  #worker: Worker | undefined;
  /** The worker could not start, or failed, or is stopping: every file is placed by the main thread from then on. */
  #broken = false;
  /** The worker has exited, and what it had was answered. */
  #stopped = false;
  /** The batch this turn of the event loop fills; sent at the next. */
  #filling: Batch | undefined;
  readonly #inFlight = new Map<number, Batch>();
  #batches = 0;
  #bytes = 0;
  /** Files handed over, and answered, since the start: answers come in the order files were handed over. */
  #handedOver = 0;
  #answered = 0;
  #roomWaiters: (() => void)[] = [];
  #idleWaiters: { readonly upTo: number; readonly resolve: () => void }[] = [];
  /** Buffers the worker gave back, to be filled again (at most SPARE_BUFFERS). */
  readonly #spare: ArrayBuffer[] = [];

  constructor(private readonly url: URL = workerUrl(import.meta.url, "placer-worker")) {}

  /** Files handed over and not yet answered. */
  get pending(): number {
    return this.#handedOver - this.#answered;
  }

  /** Can files be handed over? Starts the worker at the first ask; false if it cannot run. */
  available(): boolean {
    if (this.#broken) return false;
    if (this.#worker) return true;
    try {
      const worker = new Worker(this.url, { resourceLimits: WORKER_LIMITS });
      worker.unref();
      // (A worker that fails takes no more files; once it has exited, and only then (until it has, it may
      // still be using the directories lent for its files), what it had is answered as not placed.)
      worker.on("error", () => (this.#broken = true));
      worker.on("exit", () => this.#stop());
      worker.on("message", (reply: PlacementReply) => this.#reply(reply));
      this.#worker = worker;
      return true;
    } catch {
      this.#broken = true;
      return false;
    }
  }

  /**
   * Hand over a file (after available() said yes): `data` written to `partial`, which is then renamed to
   * `target` (paths for the kernel). Its bytes are copied now. `placed` is called once, from a later turn
   * of the event loop, in the order files were handed over; if the worker has stopped meanwhile, with a
   * failure (and the bytes, unless the worker had them).
   */
  place(partial: string, target: string, data: Uint8Array, placed: Placed): void {
    const from = fsPath(partial);
    const to = fsPath(target);
    // (At most 3 bytes of UTF-8 per UTF-16 unit.)
    const most = JOB_HEADER_BYTES + 3 * (from.length + to.length) + data.length;
    let batch = this.#filling;
    if (!batch) {
      batch = this.#filling = { bytes: this.#buffer(most), used: 0, placed: [], dataAt: [], sizes: [] };
      setImmediate(() => this.#flush());
    } else if (batch.used + most > batch.bytes.length) {
      const bigger = this.#buffer(Math.max(2 * batch.bytes.length, batch.used + most));
      batch.bytes.copy(bigger, 0, 0, batch.used);
      batch.bytes = bigger;
    }
    const buffer = batch.bytes;
    const start = batch.used;
    let at = start + JOB_HEADER_BYTES;
    const fromLength = typeof from === "string" ? buffer.write(from, at) : from.copy(buffer, at);
    at += fromLength;
    const toLength = typeof to === "string" ? buffer.write(to, at) : to.copy(buffer, at);
    at += toLength;
    buffer.set(data, at);
    buffer.writeUInt32LE(fromLength, start);
    buffer.writeUInt32LE(toLength, start + 4);
    buffer.writeUInt32LE(data.length, start + 8);
    batch.used = at + data.length;
    batch.placed.push(placed);
    batch.dataAt.push(at);
    batch.sizes.push(data.length);
    this.#bytes += data.length;
    this.#handedOver++;
  }

  /** Past PLACING_MAX_BYTES, PLACING_MAX_FILES or PLACING_MAX_BATCHES: a promise of room again (below half of each); else undefined. */
  room(): Promise<void> | undefined {
    if (this.#bytes < PLACING_MAX_BYTES && this.pending < PLACING_MAX_FILES && this.#inFlight.size < PLACING_MAX_BATCHES) return undefined;
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /**
   * Every file handed over before this call answered (in place, or done by its caller after a failure).
   * Not those handed over later: a flood of them, by another client of the process or by this one, does
   * not hold up whoever waits (a review).
   */
  idle(): Promise<void> {
    const upTo = this.#handedOver;
    if (this.#answered >= upTo) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push({ upTo, resolve }));
  }

  /** Stop the worker (tests); once it has exited, what was on its way is answered as failed, then what was not sent yet, with its bytes. */
  async close(): Promise<void> {
    this.#broken = true;
    await this.#worker?.terminate();
    this.#stop();
  }

  /** A buffer of at least `size` bytes: one the worker gave back, or a new one. */
  #buffer(size: number): Buffer {
    const index = this.#spare.findIndex((buffer) => buffer.byteLength >= size);
    if (index >= 0) return Buffer.from(this.#spare.splice(index, 1)[0]!);
    return Buffer.from(new ArrayBuffer(Math.max(size, BUFFER_BYTES)));
  }

  #flush(): void {
    // (A worker that failed, or is being stopped, takes nothing more: the batch waits for its exit, and is
    // answered then, after those it had, with its bytes.)
    if (this.#broken && !this.#stopped) return;
    const batch = this.#filling;
    this.#filling = undefined;
    if (!batch) return;
    if (!this.#worker) return this.#answer(batch, () => "the placing thread stopped", true);
    const number = ++this.#batches;
    this.#inFlight.set(number, batch);
    // (Referenced while files are on their way: an exit meanwhile would leave them unrecorded.)
    this.#worker.ref();
    const message: PlacementBatch = { batch: number, files: batch.placed.length, bytes: batch.bytes.buffer as ArrayBuffer };
    this.#worker.postMessage(message, [message.bytes]);
  }

  #reply({ batch: number, failed, bytes }: PlacementReply): void {
    const batch = this.#inFlight.get(number);
    if (!batch) return;
    this.#inFlight.delete(number);
    if (this.#inFlight.size === 0) this.#worker?.unref();
    batch.bytes = Buffer.from(bytes);
    const why = new Map(failed);
    this.#answer(batch, (i) => why.get(i) ?? null, true);
    if (this.#spare.length < SPARE_BUFFERS) this.#spare.push(bytes);
  }

  /**
   * Each file's `placed`, in order, with the answer `failure` gives (its bytes, from `batch`'s buffer, for
   * one not in place, if `withData`); all of them even if one throws (a listener of the caller's), which
   * is thrown again after.
   */
  #answer(batch: Batch, failure: (i: number) => string | null, withData: boolean): void {
    let thrown: { error: unknown } | undefined;
    batch.placed.forEach((placed, i) => {
      const size = batch.sizes[i]!;
      const dataAt = batch.dataAt[i]!;
      this.#bytes -= size;
      this.#answered++;
      try {
        const why = failure(i);
        if (why === null) placed(null);
        else placed(why, withData ? batch.bytes.subarray(dataAt, dataAt + size) : undefined);
      } catch (error) {
        thrown ??= { error };
      }
    });
    if (this.#bytes < PLACING_MAX_BYTES / 2 && this.pending < PLACING_MAX_FILES / 2 && this.#inFlight.size <= PLACING_MAX_BATCHES / 2) {
      for (const resolve of this.#roomWaiters.splice(0)) resolve();
    }
    const waiting = this.#idleWaiters;
    this.#idleWaiters = waiting.filter((waiter) => waiter.upTo > this.#answered);
    for (const waiter of waiting) if (waiter.upTo <= this.#answered) waiter.resolve();
    if (thrown) throw thrown.error;
  }

  /** The worker is gone: what it had (whose bytes went with it), then what waits to go, answered as failed, in order. */
  #stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    this.#broken = true;
    this.#worker = undefined;
    const inFlight = [...this.#inFlight.entries()].sort((a, b) => a[0] - b[0]);
    this.#inFlight.clear();
    const filling = this.#filling;
    this.#filling = undefined;
    let thrown: { error: unknown } | undefined;
    const answer = (batch: Batch, withData: boolean) => {
      try {
        this.#answer(batch, () => "the placing thread stopped", withData);
      } catch (error) {
        thrown ??= { error };
      }
    };
    // (A batch on its way: its buffer was moved to the worker. Its files are answered without their bytes.)
    for (const [, batch] of inFlight) answer(batch, false);
    if (filling) answer(filling, true);
    if (thrown) throw thrown.error;
  }
}

let shared: PlacerThread | undefined;

/** The process's placing thread. */
export function placer(): PlacerThread {
  return (shared ??= new PlacerThread());
}
