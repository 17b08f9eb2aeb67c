// A worker thread that fingerprints files (block hashes and tree hash, blocks.ts) off the main thread, and
// computes RFC 35's SHA-1 of a file when a client's cache asks for one.
// The server's background pass runs here so that a transfer that starts while the pass is still reading
// the file need not stop it and hash on its own thread (which slows the sending); it sends at once and
// takes the pass's fingerprint for its last chunk. Requests run as they arrive (the server queues its
// background passes one at a time); closing the thread (terminating the worker) stops them.

import { createHash } from "node:crypto";
import { closeSync, fstatSync, openSync, readSync } from "node:fs";
import { parentPort } from "node:worker_threads";
import { assertOpenedInside } from "../server/opened-inside.js";
import { READ_FLAGS, fingerprintFileSync, xxh } from "./blocks.js";

/** From the main thread: fingerprint `file`, or (sha1) RFC 35's digest of it, which must be inside `root`. */
export type WorkerRequest = { readonly id: number; readonly file: string } | { readonly id: number; readonly file: string; readonly sha1: true; readonly root: string };

/** To the main thread: request `id`'s fingerprint (blocks as an ArrayBuffer), its SHA-1, or why it failed. */
export type WorkerReply =
  | { readonly id: number; readonly blocks: ArrayBuffer; readonly hash: string }
  | { readonly id: number; readonly sha1: string }
  | { readonly id: number; readonly error: string };

/** SHA-1 of a regular file, 40 uppercase hex (CZMQ zfile_digest), read through a descriptor checked to be inside `root`. */
export function sha1FileSync(file: string, root: string): string {
  const fd = openSync(file, READ_FLAGS);
  try {
    if (!fstatSync(fd).isFile()) throw new Error(`${file}: not a regular file`);
    assertOpenedInside(fd, root, file);
    const hash = createHash("sha1");
    const buffer = Buffer.allocUnsafe(1024 * 1024);
    for (let at = 0; ; ) {
      const bytesRead = readSync(fd, buffer, 0, buffer.length, at);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      at += bytesRead;
    }
    return hash.digest("hex").toUpperCase();
  } finally {
    closeSync(fd);
  }
}

// This thread does nothing else, so it reads as well as hashes (fingerprintFileSync: less CPU than reads in
// the thread pool); requests queue meanwhile and run in order.
parentPort?.on("message", (request: WorkerRequest) => {
  if ("sha1" in request) {
    let reply: WorkerReply;
    try {
      reply = { id: request.id, sha1: sha1FileSync(request.file, request.root) };
    } catch (error) {
      reply = { id: request.id, error: String(error) };
    }
    parentPort!.postMessage(reply);
    return;
  }
  xxh().then((xx) => fingerprintFileSync(xx, request.file)).then(
    ({ blocks, hash }) => {
      // Copied once into a buffer of its own, which is then moved, not copied, to the main thread.
      const own = new Uint8Array(blocks).buffer;
      parentPort!.postMessage({ id: request.id, blocks: own, hash } satisfies WorkerReply, [own]);
    },
    (error: unknown) => parentPort!.postMessage({ id: request.id, error: String(error) } satisfies WorkerReply),
  );
});
