// The server's memory of file fingerprints (block hashes and tree hash, and RFC 35's SHA-1 when a client
// asks with one), keyed by path and valid while the file's size and mtime are unchanged. A file sent to
// sixteen subscribers, or compared for sixteen resyncs, is hashed once. Bounded: oldest entries go first.

import { createHash } from "node:crypto";
import { createReadStream } from "node:fs";
import { stat } from "node:fs/promises";
import { fingerprintFile, type Fingerprint } from "../digest/blocks.js";
import type { Identity } from "./file-cursor.js";

interface Entry {
  readonly size: number;
  readonly mtimeMs: number;
  fingerprint?: Fingerprint;
  sha1?: string;
}

export class Fingerprints {
  readonly #entries = new Map<string, Entry>();

  constructor(private readonly max = 20_000) {}

  /** A transfer computed this fingerprint of the file as it was at `identity`. */
  remember(absolute: string, identity: Identity, fingerprint: Fingerprint): void {
    const entry = this.#fresh(absolute, identity);
    entry.fingerprint = fingerprint;
  }

  /** The fingerprint of the file as it is now, or undefined if it changed while being hashed. */
  async fingerprint(absolute: string): Promise<{ identity: Identity; fingerprint: Fingerprint } | undefined> {
    const identity = await identityOf(absolute);
    const known = this.#entries.get(absolute);
    if (known?.fingerprint && same(known, identity)) return { identity, fingerprint: known.fingerprint };
    const fingerprint = await fingerprintFile(absolute);
    if (!same(identity, await identityOf(absolute))) return undefined;
    this.#fresh(absolute, identity).fingerprint = fingerprint;
    return { identity, fingerprint };
  }

  /** RFC 35's digest: SHA-1 of the content, 40 uppercase hex (CZMQ zfile_digest). */
  async sha1(absolute: string): Promise<string | undefined> {
    const identity = await identityOf(absolute);
    const known = this.#entries.get(absolute);
    if (known?.sha1 && same(known, identity)) return known.sha1;
    const hash = createHash("sha1");
    for await (const chunk of createReadStream(absolute, { highWaterMark: 1024 * 1024 })) hash.update(chunk as Buffer);
    const digest = hash.digest("hex").toUpperCase();
    if (!same(identity, await identityOf(absolute))) return undefined;
    this.#fresh(absolute, identity).sha1 = digest;
    return digest;
  }

  #fresh(absolute: string, identity: Identity): Entry {
    let entry = this.#entries.get(absolute);
    if (!entry || !same(entry, identity)) {
      entry = { size: identity.size, mtimeMs: identity.mtimeMs };
      this.#entries.delete(absolute);
      this.#entries.set(absolute, entry);
      if (this.#entries.size > this.max) this.#entries.delete(this.#entries.keys().next().value!);
    }
    return entry;
  }
}

async function identityOf(absolute: string): Promise<Identity> {
  const s = await stat(absolute);
  return { size: s.size, mtimeMs: s.mtimeMs };
}

function same(a: Identity, b: Identity): boolean {
  return a.size === b.size && a.mtimeMs === b.mtimeMs;
}
