// The main thread's side of fingerprint-worker.ts: one worker, started on first use and unref'd (it never
// keeps the process alive), fingerprinting files on request. If the worker cannot start (its compiled
// file is missing), requests fail and the caller falls back to hashing on its own thread.

import { Worker } from "node:worker_threads";
import { workerUrl } from "../worker-url.js";
import type { Fingerprint } from "./blocks.js";
import type { Sha1Digest } from "./sha1.js";
import type { Version } from "./version.js";
import type { WorkerReply, WorkerRequest } from "./fingerprint-worker.js";

interface Waiting {
  readonly resolve: (reply: WorkerReply) => void;
  readonly reject: (error: Error) => void;
}

export class FingerprintThread {
  #worker: Worker | undefined;
  #nextId = 0;
  readonly #waiting = new Map<number, Waiting>();
  #closed = false;

  /**
   * Fingerprint the whole file in the worker, with the version it is of (fingerprintFileSync); rejects if
   * it fails or the thread is closed meanwhile.
   */
  async fingerprint(file: string): Promise<{ fingerprint: Fingerprint; version: Version }> {
    const reply = await this.#ask((id) => ({ id, file }));
    if (!("blocks" in reply)) throw new Error("unexpected reply");
    return { fingerprint: { blocks: Buffer.from(reply.blocks), hash: reply.hash }, version: reply.version };
  }

  /**
   * RFC 35's SHA-1 of the file (and the version it is of), read in the worker through a descriptor checked
   * to be inside `root`; `known` is the answer if the file is still the version it was computed for.
   */
  async sha1(file: string, root: string, known?: Sha1Digest): Promise<Sha1Digest | undefined> {
    const reply = await this.#ask((id) => ({ id, file, sha1: true, root, ...(known ? { known } : {}) }));
    if (!("sha1" in reply)) throw new Error("unexpected reply");
    return reply.sha1;
  }

  #ask(request: (id: number) => WorkerRequest): Promise<WorkerReply> {
    if (this.#closed) return Promise.reject(new Error("closed"));
    const worker = this.#start();
    const id = ++this.#nextId;
    return new Promise<WorkerReply>((resolve, reject) => {
      this.#waiting.set(id, { resolve, reject });
      worker.postMessage(request(id));
    });
  }

  /** Stop what the worker is doing: what is waiting fails at once, and the next request starts a new worker. */
  async restart(): Promise<void> {
    const worker = this.#worker;
    this.#worker = undefined;
    this.#failAll(new Error("restarted"));
    await worker?.terminate();
  }

  /** Stop the worker; what is waiting fails. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#failAll(new Error("closed"));
    await this.#worker?.terminate();
    this.#worker = undefined;
  }

  #start(): Worker {
    if (this.#worker) return this.#worker;
    const worker = new Worker(workerUrl(import.meta.url, "fingerprint-worker"));
    worker.unref();
    worker.on("message", (reply: WorkerReply) => {
      const waiting = this.#waiting.get(reply.id);
      if (!waiting) return;
      this.#waiting.delete(reply.id);
      if ("error" in reply) waiting.reject(new Error(reply.error));
      else waiting.resolve(reply);
    });
    // A worker that fails to start or dies: everything waiting fails (callers hash themselves), and the
    // next request starts a new one.
    // (Not one restarted: what it had failed then, and what waits now is the new worker's.)
    const lost = (error: Error) => {
      if (this.#worker !== worker) return;
      this.#worker = undefined;
      this.#failAll(error);
    };
    worker.on("error", lost);
    worker.on("exit", (code) => lost(new Error(`fingerprint worker exited (${code})`)));
    this.#worker = worker;
    return worker;
  }

  #failAll(error: Error): void {
    const waiting = [...this.#waiting.values()];
    this.#waiting.clear();
    for (const w of waiting) w.reject(error);
  }
}
