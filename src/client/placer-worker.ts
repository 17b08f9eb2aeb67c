// A worker thread that puts whole small files in place for the subscriber (placer-thread.ts is the main
// thread's side): for each, the four system calls of a delivery, open, write, close and rename, the half
// of a small file's cost on the main thread (a profile of 10,000 files of 4 KiB: 530 ms of its 1,000 in
// these calls). Here they run beside the main thread's own work on the next files.
//
// It decides nothing: every name it is given was checked, and every directory opened, by the main thread
// (paths through /proc/self/fd, descriptors the main thread keeps open until the answer comes). A failure
// of any kind is only reported, its partial file removed: the main thread does the file again its own
// way, which knows how to make a removed state directory again, clear an empty directory in the way, or
// say why it cannot.

import { writeSync } from "node:fs";
import { parentPort } from "node:worker_threads";
// (A name that is not UTF-8 goes to the kernel as its bytes, as on the main thread: raw-names.ts.)
import { closeSync, constants, openSync, renameSync, unlinkSync } from "./fs-names.js";

/** One file: its bytes are `length` bytes at `offset` in the batch's buffer. */
export interface PlacementJob {
  readonly partial: string;
  readonly target: string;
  readonly offset: number;
  readonly length: number;
}

/** From the main thread: a batch of files, in order, and their bytes, one buffer for all (moved, not copied). */
export interface PlacementBatch {
  readonly batch: number;
  readonly jobs: readonly PlacementJob[];
  readonly bytes: ArrayBuffer;
}

/** To the main thread: for each job of the batch, in order, null (in place) or why not ("rename: EISDIR"). */
export interface PlacementReply {
  readonly batch: number;
  readonly failures: readonly (string | null)[];
}

/** As the main thread opens a new partial file (inbox.ts, NEW_PARTIAL): never through a planted symlink. */
const NEW_PARTIAL = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

/** Put one file in place; why not, or null. */
export function place(job: PlacementJob, bytes: Uint8Array): string | null {
  let fd: number;
  try {
    fd = openSync(job.partial, NEW_PARTIAL, 0o644);
  } catch (error) {
    return `open: ${codeOf(error)}`;
  }
  let step = "write";
  try {
    try {
      for (let written = 0; written < job.length; ) written += writeSync(fd, bytes, job.offset + written, job.length - written);
    } finally {
      step = "close";
      closeSync(fd);
    }
    step = "rename";
    renameSync(job.partial, job.target);
    return null;
  } catch (error) {
    try {
      unlinkSync(job.partial);
    } catch {
      // (Gone already, or its directory: nothing of ours is left there.)
    }
    return `${step}: ${codeOf(error)}`;
  }
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? String(error);
}

parentPort?.on("message", ({ batch, jobs, bytes }: PlacementBatch) => {
  const all = new Uint8Array(bytes);
  const reply: PlacementReply = { batch, failures: jobs.map((job) => place(job, all)) };
  parentPort!.postMessage(reply);
});
