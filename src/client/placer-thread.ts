// The main thread's side of placer-worker.ts: one worker for the process, started at the first small file
// and referenced only while files are on their way (it never keeps an idle process alive). The files a
// turn of the event loop hands over go to the worker as one message, their bytes copied into one buffer
// that is moved, not copied again. Replies come in the order the files were handed over.
//
// Measured before it was built (a prototype, 10,000 files of 4 KiB from one publisher, a fresh subscriber
// each time, 4 alternating pairs on the 2-core VM): 0.81-0.87 s from `subscribed` to the last `delivered`
// against 0.90-1.05 s with every call on the main thread.

import { Worker } from "node:worker_threads";
import type { PlacementBatch, PlacementJob, PlacementReply } from "./placer-worker.js";

/**
 * The compiled worker. Tests run the TypeScript sources (vitest) but Node 20 runs a worker only from
 * JavaScript, so from src/ we use the build's copy (the test command builds first).
 */
function workerUrl(): URL {
  const here = new URL(import.meta.url);
  return here.pathname.endsWith(".ts") ? new URL("../../dist/src/client/placer-worker.js", here) : new URL("./placer-worker.js", here);
}

/** A whole file to put in place: its partial file's name and its final one (both for the kernel), its bytes, and what to do once it is in place (null) or is not (why). */
export interface Placement {
  readonly partial: string;
  readonly target: string;
  readonly bytes: Uint8Array;
  readonly done: (failure: string | null) => void;
}

/**
 * What may be handed over and not yet in place: past either, the subscriber takes no more files until
 * half have landed (placingRoom). Bytes held twice meanwhile (the message's and the copy's), so a bound
 * on memory as much as a queue; 8 MiB is eight of the server's batches of small files.
 */
export const PLACING_MAX_BYTES = 8 * 1024 * 1024;
export const PLACING_MAX_FILES = 4096;

export class PlacerThread {
  #worker: Worker | undefined;
  /** The worker could not start, or stopped: every file is placed by the main thread from then on. */
  #broken = false;
  #queue: Placement[] = [];
  readonly #inFlight = new Map<number, Placement[]>();
  #batches = 0;
  #flushScheduled = false;
  #files = 0;
  #bytes = 0;
  #roomWaiters: (() => void)[] = [];
  #idleWaiters: (() => void)[] = [];

  constructor(private readonly url: URL = workerUrl()) {}

  /** Files handed over and not yet answered. */
  get pending(): number {
    return this.#files;
  }

  /** Can files be handed over? Starts the worker at the first ask; false if it cannot run. */
  available(): boolean {
    if (this.#broken) return false;
    if (this.#worker) return true;
    try {
      const worker = new Worker(this.url);
      worker.unref();
      worker.on("message", (reply: PlacementReply) => this.#answered(reply));
      // (A worker that fails, or exits, leaves its files to the main thread: done again there, in order.)
      worker.on("error", () => this.#stop());
      worker.on("exit", () => this.#stop());
      this.#worker = worker;
      return true;
    } catch {
      this.#broken = true;
      return false;
    }
  }

  /**
   * Hand `placement` over (after available() said yes). Its `done` is called once, from a later turn of
   * the event loop; if the worker has stopped meanwhile, with a failure, and the caller places it itself.
   */
  place(placement: Placement): void {
    this.#queue.push(placement);
    this.#files++;
    this.#bytes += placement.bytes.length;
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flush());
    }
  }

  /** Past PLACING_MAX_BYTES or PLACING_MAX_FILES: a promise of room again (half of either); else undefined. */
  room(): Promise<void> | undefined {
    if (this.#bytes < PLACING_MAX_BYTES && this.#files < PLACING_MAX_FILES) return undefined;
    return new Promise((resolve) => this.#roomWaiters.push(resolve));
  }

  /** Every file handed over so far answered (in place, or done by its caller after a failure). */
  idle(): Promise<void> {
    if (this.#files === 0) return Promise.resolve();
    return new Promise((resolve) => this.#idleWaiters.push(resolve));
  }

  /** Stop the worker (tests); what is on its way is answered as failed. */
  async close(): Promise<void> {
    const worker = this.#worker;
    this.#stop();
    await worker?.terminate();
  }

  #flush(): void {
    this.#flushScheduled = false;
    const placements = this.#queue;
    if (placements.length === 0) return;
    this.#queue = [];
    if (!this.#worker) return this.#fail(placements, "the placing thread stopped");
    let total = 0;
    for (const placement of placements) total += placement.bytes.length;
    const bytes = new Uint8Array(total);
    let offset = 0;
    const jobs: PlacementJob[] = placements.map(({ partial, target, bytes: data }) => {
      bytes.set(data, offset);
      const job = { partial, target, offset, length: data.length };
      offset += data.length;
      return job;
    });
    const batch = ++this.#batches;
    this.#inFlight.set(batch, placements);
    // (Referenced while files are on their way: an exit meanwhile would leave them unrecorded.)
    this.#worker.ref();
    const message: PlacementBatch = { batch, jobs, bytes: bytes.buffer };
    this.#worker.postMessage(message, [bytes.buffer]);
  }

  #answered({ batch, failures }: PlacementReply): void {
    const placements = this.#inFlight.get(batch);
    if (!placements) return;
    this.#inFlight.delete(batch);
    if (this.#inFlight.size === 0) this.#worker?.unref();
    // (null is "in place": only a missing answer is a failure.)
    this.#doneAll(placements, (i) => (i < failures.length ? failures[i]! : "no answer"));
  }

  /**
   * Each placement's `done`, in order; all of them even if one throws (a listener of the caller's), which
   * is thrown again after.
   */
  #doneAll(placements: readonly Placement[], failure: (i: number) => string | null): void {
    let thrown: { error: unknown } | undefined;
    placements.forEach((placement, i) => {
      this.#files--;
      this.#bytes -= placement.bytes.length;
      try {
        placement.done(failure(i));
      } catch (error) {
        thrown ??= { error };
      }
    });
    if (this.#bytes < PLACING_MAX_BYTES / 2 && this.#files < PLACING_MAX_FILES / 2) for (const resolve of this.#roomWaiters.splice(0)) resolve();
    if (this.#files === 0) for (const resolve of this.#idleWaiters.splice(0)) resolve();
    if (thrown) throw thrown.error;
  }

  #fail(placements: readonly Placement[], why: string): void {
    this.#doneAll(placements, () => why);
  }

  /** The worker is gone: what it had, then what waits to go, answered as failed, in order. */
  #stop(): void {
    if (this.#broken && !this.#worker) return;
    this.#broken = true;
    this.#worker = undefined;
    const inFlight = [...this.#inFlight.entries()].sort((a, b) => a[0] - b[0]);
    this.#inFlight.clear();
    const queued = this.#queue;
    this.#queue = [];
    this.#fail([...inFlight.flatMap(([, placements]) => placements), ...queued], "the placing thread stopped");
  }
}

let shared: PlacerThread | undefined;

/** The process's placing thread. */
export function placer(): PlacerThread {
  return (shared ??= new PlacerThread());
}
