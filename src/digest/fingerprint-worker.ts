// A worker thread that fingerprints files (block hashes and tree hash, blocks.ts) off the main thread, and
// computes RFC 35's SHA-1 of a file when a client's cache asks for one.
// The server's background pass runs here so that a transfer that starts while the pass is still reading
// the file need not stop it and hash on its own thread (which slows the sending); it sends at once and
// takes the pass's fingerprint for its last chunk. Requests run as they arrive (the server queues its
// background passes one at a time); closing the thread (terminating the worker) stops them.

import { parentPort } from "node:worker_threads";
import { fingerprintFileSync, xxh } from "./blocks.js";
import { sha1FileSync, type Sha1Digest } from "./sha1.js";
import type { Version } from "./version.js";

/** From the main thread: fingerprint `file`, or (sha1) RFC 35's digest of it, which must be inside `root`. */
export type WorkerRequest =
  | { readonly id: number; readonly file: string }
  | { readonly id: number; readonly file: string; readonly sha1: true; readonly root: string; readonly known?: Sha1Digest };

/** To the main thread: request `id`'s fingerprint (blocks as an ArrayBuffer), its SHA-1, or why it failed. */
export type WorkerReply =
  | { readonly id: number; readonly blocks: ArrayBuffer; readonly hash: string; readonly version: Version }
  | { readonly id: number; readonly sha1: Sha1Digest | undefined }
  | { readonly id: number; readonly error: string };

// This thread does nothing else, so it reads as well as hashes (fingerprintFileSync: less CPU than reads in
// the thread pool); requests queue meanwhile and run in order.
parentPort?.on("message", (request: WorkerRequest) => {
  if ("sha1" in request) {
    let reply: WorkerReply;
    try {
      reply = { id: request.id, sha1: sha1FileSync(request.file, request.root, request.known) };
    } catch (error) {
      reply = { id: request.id, error: String(error) };
    }
    parentPort!.postMessage(reply);
    return;
  }
  xxh().then((xx) => fingerprintFileSync(xx, request.file)).then(
    ({ fingerprint: { blocks, hash }, version }) => {
      // Copied once into a buffer of its own, which is then moved, not copied, to the main thread.
      const own = new Uint8Array(blocks).buffer;
      parentPort!.postMessage({ id: request.id, blocks: own, hash, version } satisfies WorkerReply, [own]);
    },
    (error: unknown) => parentPort!.postMessage({ id: request.id, error: String(error) } satisfies WorkerReply),
  );
});
