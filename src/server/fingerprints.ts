// The server's memory of file fingerprints (block hashes and tree hash, and RFC 35's SHA-1 when a client
// asks with one), keyed by path and valid for one version of the file. A file sent to sixteen
// subscribers, resumed, or compared for sixteen resyncs, is hashed once.
//
// Big files are fingerprinted in the background as soon as they are published (one at a time, in a
// worker thread: fingerprint-thread.ts; what a client waits for is computed in another), so that
// sending them costs no hashing: on two cores, hashing 1 GiB on the send path cost a third of the
// transfer's time. A transfer that finds that pass still
// reading sends at once and takes the pass's fingerprint for its last chunk (the pass reads faster than
// we send). When the pass ran on the main thread, a transfer had to stop it and hash as it read instead
// (the two on one thread were slower still); with the worker, 1 GiB sent right after it was published
// took 1.16 s instead of 1.51 (bench workload 1, medians of 5 and 9 runs), 1.03 with the fingerprint
// known. A transfer that finds no fingerprint and no pass (hash-ahead off, a small file) hashes as it
// reads and leaves its result here. Bounded: oldest entries go first.

import { stat } from "node:fs/promises";
import type { Fingerprint } from "../digest/blocks.js";
import { FingerprintThread } from "../digest/fingerprint-thread.js";
import { sha1FileSync } from "../digest/sha1.js";
import { isRacy, sameVersion, versionOfStats, type Version } from "../digest/version.js";
import { addNewest, setNewest } from "../newest.js";

export { sameVersion, versionOfStats, type Version };

interface Entry {
  readonly version: Version;
  fingerprint?: Fingerprint;
  /** Being computed now (undefined when it ends: the file changed while it was read, or failed). */
  pending?: Promise<Fingerprint | undefined>;
  /** RFC 35's digest, and the mount root it was checked against (it proves nothing to a narrower mount: see sha1()). */
  sha1?: { readonly digest: string; readonly root: string };
}

/** Files smaller than this are hashed as they are sent: they are read whole in one go anyway. */
export const PREPARE_MIN_SIZE = 1024 * 1024;

export class Fingerprints {
  readonly #entries = new Map<string, Entry>();
  /** Files waiting to be fingerprinted in the background, in order. */
  readonly #backlog = new Set<string>();
  #working = false;
  /** The file (and its version) the background pass is reading now. */
  #passing: { readonly absolute: string; readonly version: Version } | undefined;
  #passes = 0;
  #closed = false;
  /** Where background passes run: off the main thread, which is busy sending. Closing it stops them. */
  readonly #background = new FingerprintThread();
  /**
   * Where what a client waits for is computed (the fingerprint a delta is planned from, RFC 35's SHA-1):
   * never behind a background pass over another file, which reads a whole file of any size (a review: a
   * 1 TiB sparse file, made in an instant by anyone who may write in a mount, is 40 minutes of reading
   * zeros here, and every client's delta and SHA-1 waited for it). Started on first use.
   */
  readonly #onDemand = new FingerprintThread();
  /**
   * RFC 35's SHA-1s, in a lane of their own: any client may list a SHA-1 for any file published, so have
   * the whole of a huge one read (a review: 24 s for an 8 GiB sparse file, and every delta plan waited
   * behind it). Started on first use (the C reference's client sends no cache).
   */
  readonly #sha1Thread = new FingerprintThread();

  constructor(private readonly max = 20_000) {}

  /**
   * A transfer computed this fingerprint from what it read of the file, from `readFrom` on, as it was at
   * `version`, and has checked that version again since. Not kept if the file changed a moment before the
   * read began (isRacy): a rewrite of the same size in the same clock tick would leave the version as it
   * is, and this fingerprint be sent for the new content, to fail the client's check, be asked for again,
   * and be sent again with it, for as long as the file stays as it is. (Not kept, the next transfer hashes
   * what it reads.)
   */
  remember(absolute: string, version: Version, fingerprint: Fingerprint, readFrom: number): void {
    if (isRacy(version, readFrom)) return;
    this.#entry(absolute, version, false).fingerprint = fingerprint;
  }

  /**
   * What is known of this version of the file, without waiting: its fingerprint, or the promise of the
   * one being computed now, or undefined (then the caller hashes the file itself as it reads it).
   */
  lookup(absolute: string, version: Version): Fingerprint | Promise<Fingerprint | undefined> | undefined {
    const entry = this.#current(absolute, version);
    return entry?.fingerprint ?? entry?.pending;
  }

  /** Background passes begun (tests and stats). */
  get passes(): number {
    return this.#passes;
  }

  /**
   * The fingerprint of exactly this version of the file, if known or being computed now (then it waits
   * for it). Never starts hashing.
   */
  async known(absolute: string, version: Version): Promise<Fingerprint | undefined> {
    return this.lookup(absolute, version);
  }

  /** The fingerprint of the file as it is now (computed if need be), or undefined if it changed while being hashed. */
  async fingerprint(absolute: string): Promise<{ version: Version; fingerprint: Fingerprint } | undefined> {
    const version = await versionOf(absolute);
    const known = await this.known(absolute, version);
    if (known) return { version, fingerprint: known };
    const fingerprint = await this.#compute(absolute, version, this.#onDemand, false);
    return fingerprint ? { version, fingerprint } : undefined;
  }

  /** Is a fingerprint of this file being computed now? */
  computing(absolute: string): boolean {
    return this.#entries.get(absolute)?.pending !== undefined;
  }

  /** Fingerprint a newly published file in the background (big files only; small ones cost nothing to hash as sent). */
  prepare(absolute: string, size: number, version?: Version): void {
    if (size < PREPARE_MIN_SIZE || this.#closed) return;
    // A pass over another version of it (`version`, when known) stops: its result would be of no use, and
    // a file rewritten or touched every few seconds kept the background thread reading versions gone by
    // (a review: for a huge file, never done). The next pass starts a new worker.
    const passing = this.#passing;
    if (passing?.absolute === absolute && (version === undefined || !sameVersion(version, passing.version))) void this.#background.restart();
    // Bounded like the entries: a flood of big files keeps only the newest waiting.
    addNewest(this.#backlog, absolute, this.max);
    void this.#work();
  }

  /**
   * A name that led to this file is no longer published: if the file is gone, a background pass over it
   * stops, and one waiting for it is not made. (A big file deleted was read to its end through the pass's
   * descriptor, holding up every pass after it: a review.) Whoever waits for that pass gets nothing, as
   * when a new version stops it. Not while the file is there: another name may still publish it (a link
   * to it, or an inner mount taking it over), and need that pass (a review).
   */
  forget(absolute: string): void {
    if (this.#passing?.absolute !== absolute && !this.#backlog.has(absolute)) return;
    void stat(absolute).then(
      () => undefined,
      () => {
        this.#backlog.delete(absolute);
        this.#entries.delete(absolute);
        if (this.#passing?.absolute === absolute) void this.#background.restart();
      },
    );
  }

  /** Stop background work: what is being hashed stops at its next read, nothing new starts. */
  close(): void {
    this.#closed = true;
    this.#backlog.clear();
    // Fails what is being computed at once (a big file takes seconds) and ends the workers.
    void this.#background.close();
    void this.#onDemand.close();
    void this.#sha1Thread.close();
  }

  /**
   * RFC 35's digest: SHA-1 of the content, 40 uppercase hex (CZMQ zfile_digest), of a file published
   * from the mount whose real root is `root`. Clients asking at once for the same file share one pass.
   */
  sha1(absolute: string, root: string): Promise<string | undefined> {
    // (By mount too: a pass checked against a wider mount's root proves nothing to a narrower one's.)
    const key = `${root}\0${absolute}`;
    let pass = this.#sha1Passes.get(key);
    if (!pass) {
      pass = this.#sha1(absolute, root).finally(() => this.#sha1Passes.delete(key));
      this.#sha1Passes.set(key, pass);
    }
    return pass;
  }
  /** SHA-1 passes under way, by mount root and file (bounded by the mounts' files). */
  readonly #sha1Passes = new Map<string, Promise<string | undefined>>();

  async #sha1(absolute: string, root: string): Promise<string | undefined> {
    // In the worker thread, off the main one, which is busy sending (an RFC 35 client lists a SHA-1 for
    // every file it holds). It says which version it hashed, or nothing if the file changed as it read;
    // given the digest we know, it checks whether the file is still that version (a stat there: 10,000
    // stats from this thread took 0.29 s of its time, measured, the pool's threads and this one taking
    // turns on two cores). If the worker cannot (it failed to start, or the file is refused), the same is
    // done here, where a refusal fails at once and is thrown as such.
    const entry = this.#entries.get(absolute);
    const known = entry?.sha1?.root === root ? { digest: entry.sha1.digest, version: entry.version } : undefined;
    const done = await this.#sha1Thread.sha1(absolute, root, known).then(
      (outcome) => outcome,
      () => (this.#closed ? undefined : sha1FileSync(absolute, root, known)),
    );
    if (done === undefined) return undefined;
    // (Changed a moment before it was read: right for now, but not remembered: see RACY_MS in version.ts.)
    if (done.racy) return done.digest;
    this.#entry(absolute, done.version, false).sha1 = { digest: done.digest, root };
    return done.digest;
  }

  async #work(): Promise<void> {
    if (this.#working) return;
    this.#working = true;
    try {
      for (let next = this.#take(); next !== undefined && !this.#closed; next = this.#take()) {
        const version = await versionOf(next).catch(() => undefined);
        if (!version || (await this.known(next, version))) continue;
        this.#passes++;
        this.#passing = { absolute: next, version };
        await this.#compute(next, version, this.#background, true).catch(() => undefined);
        this.#passing = undefined;
      }
    } finally {
      this.#working = false;
    }
  }

  /** What is known of exactly this version of the file. */
  #current(absolute: string, version: Version): Entry | undefined {
    const entry = this.#entries.get(absolute);
    return entry && sameVersion(entry.version, version) ? entry : undefined;
  }

  #take(): string | undefined {
    const next = this.#backlog.values().next().value;
    if (next !== undefined) this.#backlog.delete(next);
    return next;
  }

  /**
   * Hash the file (in `thread`), visible to `known` meanwhile; kept only if the file did not change while it
   * was read. `current`: of the version just found there (the background pass), see #entry.
   */
  #compute(absolute: string, version: Version, thread: FingerprintThread, current: boolean): Promise<Fingerprint | undefined> {
    const entry = this.#entry(absolute, version, current);
    const pending = (async () => {
      try {
        // (The worker reads after this: a time no later than its read began, as remember() wants.)
        const readFrom = Date.now();
        const read = await thread.fingerprint(absolute);
        // The version the worker read, from its descriptor, not a stat of the name after: a directory on
        // the way swapped for a moment would have the worker hash another file, and the name lead back to
        // this one by the time we looked (a review). Another file is another inode.
        if (!sameVersion(version, read.version)) return undefined;
        // (Changed a moment before it was read: right for now, but not remembered: see remember().)
        if (!isRacy(read.version, readFrom)) entry.fingerprint = read.fingerprint;
        return read.fingerprint;
      } catch {
        return undefined;
      } finally {
        entry.pending = undefined;
      }
    })();
    entry.pending = pending;
    return pending;
  }

  /**
   * The entry for this version of the file (a new one, dropping what was known of another version). Unless
   * `current`, not over what is known of a later version (by its inode's change time): a late result for
   * the version before (a SHA-1 pass, a transfer's, a pass asked for on demand) dropped the background
   * pass's work on the file as it is now, and its next transfer hashed as it sent (a review); that one's
   * entry is its own. The background pass's, of the version it has just found there, always goes in (a
   * clock stepped back, or a file system that leaves the change time alone on a rename, must not keep an
   * entry of a version gone for good: a review).
   */
  #entry(absolute: string, version: Version, current: boolean): Entry {
    let entry = this.#entries.get(absolute);
    if (!current && entry && !sameVersion(entry.version, version) && entry.version.ctimeMs > version.ctimeMs) return { version };
    if (!entry || !sameVersion(entry.version, version)) {
      entry = { version };
      setNewest(this.#entries, absolute, entry, this.max);
    }
    return entry;
  }
}

export async function versionOf(absolute: string): Promise<Version> {
  return versionOfStats(await stat(absolute));
}

