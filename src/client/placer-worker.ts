// A worker thread that puts whole small files in place for the subscriber (placer-thread.ts is the main
// thread's side): for each, the four system calls of a delivery, open, write, close and rename, half of
// a small file's cost on the main thread (a profile of 10,000 files of 4 KiB: 530 ms of its 1,000 in
// these calls). Here they run beside the main thread's own work on the next files.
//
// It decides nothing: every name it is given was checked, and every directory opened, by the main thread
// (paths through /proc/self/fd, descriptors the main thread keeps open until the answer comes). A failure
// of any kind is only reported, its partial file removed: the main thread does the file again its own
// way, which knows how to make a removed state directory again, clear an empty directory in the way, or
// say why it cannot.

import { closeSync, constants, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import { parentPort } from "node:worker_threads";

/**
 * A batch, as the main thread packs it (one buffer, moved to this thread and back, not copied): per file,
 * three 32-bit lengths (little-endian), then its partial file's path, its final path (each as the bytes
 * the kernel is to get: a name that is not UTF-8 is its own bytes) and its content.
 */
export interface PlacementBatch {
  readonly batch: number;
  readonly files: number;
  readonly bytes: ArrayBuffer;
}

/** The bytes of a file's header in a batch: three lengths. */
export const JOB_HEADER_BYTES = 12;

/**
 * To the main thread: the files of the batch that are not in place, by their index in it, and why
 * ("rename: EISDIR"); and the batch's buffer, moved back to be filled again (moved here, it would be freed
 * only when this thread's collector ran, which its little garbage seldom makes it do: a subscriber's peak
 * RSS grew by about 50 MiB over 10,000 files of 4 KiB).
 */
export interface PlacementReply {
  readonly batch: number;
  readonly failed: readonly (readonly [index: number, why: string])[];
  readonly bytes: ArrayBuffer;
}

/** As the main thread opens a new partial file (inbox.ts, NEW_PARTIAL): never through a planted symlink. */
const NEW_PARTIAL = constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW;

/** Put one file in place: why not, or null. */
export function place(partial: Buffer, target: Buffer, data: Buffer): string | null {
  let fd: number;
  try {
    fd = openSync(partial, NEW_PARTIAL, 0o644);
  } catch (error) {
    return `open: ${codeOf(error)}`;
  }
  let step = "write";
  try {
    try {
      for (let written = 0; written < data.length; ) written += writeSync(fd, data, written, data.length - written);
    } catch (error) {
      // (The write's error is the one said: the descriptor goes all the same.)
      try {
        closeSync(fd);
      } catch {
        // (Closed anyway: Linux frees the number whatever close() says.)
      }
      throw error;
    }
    step = "close";
    closeSync(fd);
    step = "rename";
    renameSync(partial, target);
    return null;
  } catch (error) {
    try {
      unlinkSync(partial);
    } catch {
      // (Gone already, or its directory: nothing of ours is left there.)
    }
    return `${step}: ${codeOf(error)}`;
  }
}

function codeOf(error: unknown): string {
  return (error as NodeJS.ErrnoException).code ?? String(error);
}

/** Every file of a packed batch, in order: why each one is not in place. */
export function placeBatch(files: number, bytes: ArrayBuffer): [number, string][] {
  const all = Buffer.from(bytes);
  const failed: [number, string][] = [];
  let at = 0;
  for (let i = 0; i < files; i++) {
    const partialEnd = at + JOB_HEADER_BYTES + all.readUInt32LE(at);
    const targetEnd = partialEnd + all.readUInt32LE(at + 4);
    const dataEnd = targetEnd + all.readUInt32LE(at + 8);
    const why = place(all.subarray(at + JOB_HEADER_BYTES, partialEnd), all.subarray(partialEnd, targetEnd), all.subarray(targetEnd, dataEnd));
    if (why !== null) failed.push([i, why]);
    at = dataEnd;
  }
  return failed;
}

parentPort?.on("message", ({ batch, files, bytes }: PlacementBatch) => {
  const reply: PlacementReply = { batch, failed: placeBatch(files, bytes), bytes };
  parentPort!.postMessage(reply, [bytes]);
});
