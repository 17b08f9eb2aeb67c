// What the client has delivered into an inbox, and which partial files it can resume. Kept in
// <inbox>/.fmq/ (hidden, so never published if someone publishes the inbox). The manifest is what lets a
// returning client tell the server what it holds (so unchanged files are not sent again), learn about
// deletes it missed, and delete only files it delivered itself: a file a person put in the inbox is never
// in the manifest, so it is never touched.
//
// Two files: manifest.json, a snapshot, and journal.jsonl, one line per change since the snapshot. Most
// lines of one turn of the event loop are appended with one synchronous write at the end of that turn.
// One kind is written at once: "placing", before a file is renamed into place. Without it, a kill -9
// lost the records of a whole batch of small files already in place (hundreds, in a review), files the
// subscriber then did not know it held: deletes made on the server never reached them. On load, a
// placement not followed by its "placed" (or "delivered") line is checked against the file on disk (its
// hash). The journal is folded into a new snapshot once it is as long as the snapshot (so a big tree is
// not written out again every few thousand files), and on close.

import { randomBytes } from "node:crypto";
import { closeSync, constants, fstatSync, fsync, fsyncSync, ftruncateSync, mkdirSync, openSync, readFileSync, renameSync, rmSync, writeSync } from "node:fs";
import { lstat } from "node:fs/promises";
import path from "node:path";
import { monotonic } from "../clock.js";
import { isVersionTag } from "../protocol/extensions.js";
import type { Place } from "./held-directory.js";

/** A delivered file, as the server described it. */
export interface Delivered {
  readonly vpath: string;
  readonly size: number;
  /** The server's mtime (ms), when the server sent it (our extension), else undefined. */
  readonly mtime?: number;
  /** Tree hash (16 hex). */
  readonly hash?: string;
  /** Block hashes, hex (only for files of more than one block). */
  readonly blocks?: string;
}

/** A partial file that can be resumed: the identity of the version its bytes belong to. */
export interface PartialFile {
  readonly vpath: string;
  readonly size: number;
  readonly mtime: number;
  /** The server's tag of that version beyond size and mtime (X-FMQ-Version), if it sent one. */
  readonly tag?: string;
}

interface Stored {
  readonly version: 1;
  readonly files: Record<string, Delivered>;
  readonly partials: Record<string, PartialFile>;
  /** Placements not known to have happened (see `placing`). */
  readonly placing?: Record<string, Delivered>;
  /**
   * This snapshot's name for itself: the journal lines that follow it come after an epoch line naming it
   * (see EpochLine). Absent from snapshots written before there were epochs: all the journal follows.
   */
  readonly epoch?: string;
}

/**
 * The first line written to the journal after a snapshot: the lines after it follow that snapshot. A
 * journal left beside a newer snapshot (killed between the snapshot's rename and the journal's
 * truncation) is not replayed over it: every line of it is in that snapshot already, and some may have
 * been undone since by records that never reached the journal (a full disk: see #owesSnapshot), so
 * replaying it brought back files removed meanwhile (a review).
 */
interface EpochLine {
  // (Written as an "unplaced" of the empty name, which no file has: a version of fmq from before epochs
  // takes it for a no-op, where "op": "epoch" was a garbled line to it.)
  readonly op: "unplaced";
  readonly name: "";
  readonly epoch: string;
}

/** One journal line. */
type Change =
  | { readonly op: "delivered"; readonly name: string; readonly entry: Delivered }
  | { readonly op: "removed"; readonly name: string }
  | { readonly op: "partial"; readonly name: string; readonly entry: PartialFile }
  | { readonly op: "unpartial"; readonly name: string }
  | { readonly op: "placing"; readonly name: string; readonly entry: Delivered }
  /**
   * The placing recorded for `name` happened: delivered as that line said (a short line, written once per
   * file). It names the version (hash, mtime) and applies only to a placing of that version: a journal may
   * be replayed twice over (killed between a fold's snapshot and its truncation), and by then the placing
   * of that name can be the next version's.
   */
  | { readonly op: "placed"; readonly name: string; readonly hash: string; readonly mtime?: number }
  | { readonly op: "unplaced"; readonly name: string };

/** The client's own directory inside an inbox. */
export const STATE_DIR = ".fmq";

/**
 * Fold the journal into a snapshot once it holds this many bytes, or as many as the last snapshot if that
 * is more: each fold writes the whole manifest, so folding at a fixed length made a big tree cost time
 * growing with the square of its files; this way a fold is paid for by as many bytes of journal.
 */
const JOURNAL_MIN_BYTES = 4 * 1024 * 1024;

export class Manifest {
  readonly files = new Map<string, Delivered>();
  readonly partials = new Map<string, PartialFile>();
  /**
   * Files about to be renamed into place, not yet recorded delivered: after a crash, each is either in
   * place (then it is delivered) or not (then nothing changed); the inbox looks (`placed`, `unplaced`).
   */
  readonly placing = new Map<string, Delivered>();
  #journal: number | undefined;
  /** The journal's allowance before a fold: the last snapshot's length, at least JOURNAL_MIN_BYTES. */
  #allowance = JOURNAL_MIN_BYTES;
  /** The journal length (#journalLength) at which the next fold is tried. */
  #foldAt = JOURNAL_MIN_BYTES;
  /** Journal lines not written yet (written at the end of this turn of the event loop). */
  #unwritten = "";
  #flushScheduled = false;
  /**
   * The lines that could not be written grew past what a snapshot takes (a full disk, and a server
   * sending batch after batch: 142 MB of lines in memory after 30 batches of 2,000 files, a review), and
   * were let go: everything they said is in the maps, and the next write must be a snapshot of those, not
   * a line appended after a gap. Tried at most once a second meanwhile (each try writes the whole manifest).
   */
  #owesSnapshot = false;
  #nextSnapshotTry = 0;
  /** The last snapshot failed (said once, until one is written). */
  #snapshotFailing = false;

  /**
   * Each write of the journal and the snapshot is made durable (fsync, and the state directory after a
   * snapshot's rename): the subscriber's --fsync. Without it a power loss (not a kill) could lose the
   * records of files that were themselves on disk, and deletes would never reach them (a review).
   */
  durable = false;

  private constructor(
    private readonly place: Place,
    /** Told of what goes wrong with the manifest's own files (a garbled snapshot, a full disk). */
    private readonly problem: (message: string) => void,
    /** Called before anything is written to disk (see InboxOptions.beforeRecording). */
    private readonly beforeWrite: () => void,
  ) {}

  /** Load (or start) the manifest kept in the state directory `stateDir` (a path, or a held directory). */
  static async load(stateDir: string | Place, problem: (message: string) => void = () => undefined, beforeWrite: () => void = () => undefined): Promise<Manifest> {
    const manifest = new Manifest(typeof stateDir === "string" ? pathPlace(stateDir) : stateDir, problem, beforeWrite);
    /** Entries and journal lines that are not what we write: dropped, and said once. */
    let garbled = 0;
    let text: string | undefined;
    /** The snapshot's epoch: journal lines count only after an epoch line naming it (none: all of them). */
    let epoch: string | undefined;
    try {
      text = readNoFollow(manifest.#snapshotPath).toString("utf8");
      manifest.#allowance = manifest.#foldAt = Math.max(JOURNAL_MIN_BYTES, text.length);
    } catch (error) {
      // No snapshot yet: start from the journal. One there that cannot be read (EACCES, EIO, a symlink,
      // never followed) is not taken for none: the next fold would write over it, and every record it
      // holds would be lost (deletes made on the server would never reach those files). Said, and the
      // inbox is not used until it can be read (a review: it was ignored silently).
      unlessMissing(error, "manifest.json");
    }
    if (text !== undefined) {
      try {
        const stored = JSON.parse(text) as Stored;
        if (stored.version !== 1) throw new Error("not a manifest of this version");
        // Each entry checked: one that is valid JSON but not what we write (edited by hand, or garbled)
        // is dropped alone, not taken as it is (its file listed with a number for block hashes made
        // every ICANHAZ of that subscription throw, session after session).
        // A table that is not one (null, which is an "object" too, threw half way through: the files
        // kept, the placings not, and all said lost; a review) is one garbled entry, and the others stand.
        const take = <T>(entries: unknown, isValid: (entry: unknown) => entry is T, into: Map<string, T>, optional = false) => {
          if (entries === undefined && optional) return;
          if (typeof entries !== "object" || entries === null || Array.isArray(entries)) return void garbled++;
          for (const [name, entry] of Object.entries(entries)) {
            if (isValid(entry)) into.set(name, entry);
            else garbled++;
          }
        };
        take(stored.files, isDelivered, manifest.files);
        take(stored.partials, isPartialFile, manifest.partials);
        take(stored.placing, isDelivered, manifest.placing, true);
        if (isEpochId(stored.epoch)) epoch = stored.epoch;
      } catch (error) {
        // The worst outcome is files sent again, never files lost; but deletes made on the server before
        // now may not reach the files it listed: said, not silently taken for "nothing held". (Not
        // JSON.parse's own words: they quote the text, which is not necessarily ours.)
        const why = error instanceof SyntaxError ? "not valid JSON" : (error as Error).message;
        problem(`the inbox's manifest (.fmq/manifest.json) cannot be read (${why}): what it listed is taken as not held (sent again; deletes made meanwhile may not reach those files)`);
      }
    }
    let journal: Buffer = Buffer.alloc(0);
    try {
      journal = readNoFollow(manifest.#journalPath);
    } catch (error) {
      // No journal yet. (One that cannot be read: as for the snapshot.)
      unlessMissing(error, "journal.jsonl");
    }
    // A torn last line (killed mid-append) is cut off below, or the next line appended would be glued to it.
    const whole = journal.lastIndexOf(0x0a) + 1;
    // Lines count once an epoch line names the snapshot (all of them, beside a snapshot without one).
    let following = epoch === undefined;
    // (Line by line from the bytes: the whole journal as one string fails past V8's longest string, about
    // 512 MiB, and the subscriber could not start again; a review.)
    for (let start = 0, end = journal.indexOf(0x0a); end >= 0 && end < whole; start = end + 1, end = journal.indexOf(0x0a, start)) {
      if (end === start) continue;
      const line = journal.toString("utf8", start, end);
      let change: unknown;
      try {
        change = JSON.parse(line);
      } catch {
        // A line cut short (killed mid-write, before the newline that follows it): ignore it.
        continue;
      }
      // (Once following, a later epoch line is of a snapshot that never landed: what comes after it still
      // follows this one.)
      if (isEpochLine(change)) following ||= change.epoch === epoch;
      else if (!isChange(change)) garbled++;
      else if (following) manifest.#apply(change);
    }
    manifest.#epoch = epoch;
    manifest.#epochWritten = epoch !== undefined && following;
    if (garbled > 0) {
      problem(`the inbox's manifest (.fmq/) has ${garbled} garbled ${garbled === 1 ? "entry" : "entries"}, left out: what ${garbled === 1 ? "it" : "they"} listed is taken as not held (sent again; deletes made meanwhile may not reach those files)`);
    }
    const existing = await lstat(manifest.#journalPath).catch(() => undefined);
    if (existing && !existing.isFile()) throw new Error(`${manifest.#journalPath} is not a regular file`);
    manifest.#journal = openSync(manifest.#journalPath, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o644);
    try {
      if (whole < journal.length) ftruncateSync(manifest.#journal, whole);
    } catch (error) {
      // (Not left open: a caller trying again leaked one each time; a review.)
      closeSync(manifest.#journal);
      throw error;
    }
    manifest.#journalSize = whole;
    manifest.#writeEpochLine();
    return manifest;
  }

  get #snapshotPath(): string {
    return this.place.join("manifest.json");
  }

  get #journalPath(): string {
    return this.place.join("journal.jsonl");
  }

  delivered(name: string, entry: Delivered): void {
    // After its placing line (every file renamed into place has one), a short line says it happened.
    const placing = this.placing.get(name);
    if (placing !== undefined && entry.hash !== undefined && sameDelivered(placing, entry)) {
      this.#record({ op: "placed", name, hash: entry.hash, ...(entry.mtime !== undefined ? { mtime: entry.mtime } : {}) });
    } else {
      this.#record({ op: "delivered", name, entry });
    }
  }

  removed(name: string): void {
    this.#record({ op: "removed", name });
  }

  /**
   * `name` is about to be renamed into place as `entry`: on disk before the rename (a line written now,
   * with what else waits), so that no kill can leave a file in place that the manifest does not know.
   * `delivered` follows the rename.
   */
  aboutToPlace(name: string, entry: Delivered): void {
    const announced = this.#announced.get(name);
    this.#announced.delete(name);
    // Its line went with its batch's (see announce): on disk already, unless something about that name
    // was recorded since (a delete handled before it, say), which a crash would replay after it.
    if (announced?.written && this.placing.get(name) === announced.entry && sameDelivered(announced.entry, entry)) return;
    this.#record({ op: "placing", name, entry });
    // (Once per file: no check that the state directory is still there, which the end of the turn does.)
    this.flush({ checkGone: false });
  }

  /**
   * A batch of small files (one ZeroMQ message) is about to be placed: the placing lines of all of them
   * are written now, with one system call, and each file's own aboutToPlace then finds its line on disk
   * instead of writing one (a write per file was a tenth of the subscriber's time for a flood of 4 KiB
   * files). A line for a file that does not come to be placed (refused, or its content did not match) is
   * harmless: it is taken back at the end of the turn, and on load a placing is checked against the file
   * by its hash anyway. If the write fails, each file writes its own line (and fails on its own).
   */
  announce(placements: Iterable<readonly [string, Delivered]>): void {
    // (The batches before this one have been handled: what they announced and did not place goes.)
    this.endAnnounced();
    const batch: { entry: Delivered; written: boolean }[] = [];
    for (const [name, entry] of placements) {
      if (this.#announced.has(name)) continue; // (the same name twice in a batch: the second writes its own)
      this.#record({ op: "placing", name, entry });
      const announced = { entry, written: false };
      this.#announced.set(name, announced);
      batch.push(announced);
    }
    if (batch.length === 0) return;
    try {
      this.flush({ checkGone: false });
      for (const announced of batch) announced.written = true;
    } catch {
      // (Not on disk: each file writes its own line. The lines wait with the journal's others.)
    }
  }
  /** Placing lines recorded ahead by announce (and whether they are on disk), whose files have not reached aboutToPlace yet. */
  readonly #announced = new Map<string, { readonly entry: Delivered; written: boolean }>();

  /**
   * The batch announced has been handled (or another is about to be): announced files that were not
   * placed are not being placed. Not at the end of the turn, as before: the client reads batches ahead
   * of handling them, and nearly every line announced was taken back, then written again by its file
   * (a resource review: 19,839 placing lines and 9,839 unplaced for 10,000 files).
   */
  endAnnounced(): void {
    for (const [name, { entry }] of this.#announced) if (this.placing.get(name) === entry) this.#record({ op: "unplaced", name });
    this.#announced.clear();
  }

  /** A placement found (on load) not to have happened, or failed: forgotten. */
  unplaced(name: string): void {
    if (this.placing.has(name)) this.#record({ op: "unplaced", name });
  }

  /** A resumable partial was started: recorded before its first byte is written. */
  partialStarted(name: string, entry: PartialFile): void {
    this.#record({ op: "partial", name, entry });
    // Written now, before the file's first byte (once per big file: costs nothing).
    this.flush();
  }

  partialDropped(name: string): void {
    if (this.partials.has(name)) this.#record({ op: "unpartial", name });
  }

  /**
   * Write a snapshot now (temp file + rename: never a torn manifest) and empty the journal. Synchronous,
   * so no change can slip in between the snapshot and the truncation; it runs when the journal has grown
   * as long as the snapshot (see JOURNAL_MIN_BYTES) and on close (a 10,000-file manifest is about 1.5 MB:
   * milliseconds).
   */
  save(): void {
    try {
      this.#snapshot();
    } catch (error) {
      // The journal still holds every change (or the maps do, and a snapshot is owed): nothing is lost
      // while the process runs. The next fold is tried after another allowance of journal, not at the
      // very next record (a full disk would otherwise have every file write out the whole manifest in
      // vain). Said once: a snapshot that can never be written (a directory planted at its temporary
      // name, a read-only state directory) let the journal grow without end, silently, until a restart
      // could not read it (a review).
      this.#foldAt = this.#journalLength + this.#allowance;
      if (!this.#snapshotFailing) this.problem(`cannot save the inbox's manifest (${(error as NodeJS.ErrnoException).code ?? String(error)}): its records wait in its journal or in memory until it can`);
      this.#snapshotFailing = true;
    }
  }

  /** Write a snapshot now (see save); throws if it cannot be written. */
  #snapshot(): void {
    try {
      this.#writeSnapshot();
    } catch (error) {
      this.#lastSnapshotError = error;
      throw error;
    }
  }

  #writeSnapshot(): void {
    if (this.#owesSnapshot) {
      // (Not tried again within the second: the last try's failure stands, a full disk's code with it,
      // so that a file failing for it is taken for a full disk and tried again once there is room.)
      if (monotonic() < this.#nextSnapshotTry && this.#lastSnapshotError) throw this.#lastSnapshotError;
      this.#nextSnapshotTry = monotonic() + 1000;
    } else {
      // (Every line waiting is written first, as any write: told beforehand, and into a journal that is
      // still there. Then the journal holds all the snapshot says, if a kill comes before it is emptied.)
      this.flush();
    }
    this.place.restore();
    this.beforeWrite();
    const temp = `${this.#snapshotPath}.tmp`;
    const epoch = randomBytes(8).toString("hex");
    const data: Stored = { version: 1, files: Object.fromEntries(this.files), partials: Object.fromEntries(this.partials), placing: Object.fromEntries(this.placing), epoch };
    // Never through a symlink planted at the temporary name.
    const fd = openSync(temp, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
    const bytes = Buffer.from(JSON.stringify(data));
    try {
      // All of it, or an error before the rename: a full disk can make a write short rather than fail,
      // and a torn snapshot renamed over the good one would lose every record (its journal is emptied).
      writeAll(fd, bytes);
      if (this.durable) fsyncSync(fd);
    } catch (error) {
      // (What was written of it would only take the room a full disk lacks.)
      closeSync(fd);
      rmSync(temp, { force: true });
      throw error;
    }
    closeSync(fd);
    renameSync(temp, this.#snapshotPath);
    // From here the journal on disk is the snapshot's past, whatever comes: lines written from now on go
    // after an epoch line naming it.
    this.#epoch = epoch;
    this.#epochWritten = false;
    // (Durable: the new snapshot's name must be on disk before the journal it replaces is emptied.)
    if (this.durable) this.place.sync();
    if (this.#journal !== undefined) {
      // (The state directory removed since the journal was opened: a new one, not lines into the old.)
      if (fstatSync(this.#journal).nlink === 0) this.#reopenJournal();
      ftruncateSync(this.#journal, 0);
    }
    this.#journalSize = 0;
    this.#allowance = this.#foldAt = Math.max(JOURNAL_MIN_BYTES, bytes.length);
    this.#owesSnapshot = false;
    this.#snapshotFailing = false;
    this.#lastSnapshotError = undefined;
    this.#failing = false;
    this.#writeEpochLine();
  }

  /**
   * The epoch line now, if the journal lacks it (best effort: else it goes with the next lines). So that
   * lines a version of fmq from before epochs appends (a downgrade, then an upgrade) follow it, and are
   * not skipped as lines of an older snapshot (a review).
   */
  #writeEpochLine(): void {
    if (this.#journal === undefined || this.#epoch === undefined || this.#epochWritten) return;
    try {
      this.#append(epochLineOf(this.#epoch));
    } catch {
      return;
    }
    this.#epochWritten = true;
  }

  /**
   * `text` appended to the journal. A write that fails part way has what it wrote cut off again (then
   * throws), so that no torn line precedes the next; if even that fails, the next write begins with a
   * newline (a torn line is cut off on load only last).
   */
  #append(text: string): void {
    const bytes = Buffer.from((this.#torn && !text.startsWith("\n") ? "\n" : "") + text);
    try {
      writeAll(this.#journal!, bytes);
    } catch (error) {
      try {
        ftruncateSync(this.#journal!, this.#journalSize);
      } catch {
        this.#torn = true;
      }
      throw error;
    }
    this.#journalSize += bytes.length;
    this.#torn = false;
  }
  #lastSnapshotError: unknown;
  /** The epoch of the snapshot on disk (see EpochLine), and whether the journal has its line yet. */
  #epoch: string | undefined;
  #epochWritten = false;
  /** A torn line may end the journal (a write cut short, and its truncation failed too). */
  #torn = false;

  /** Snapshot and stop journaling (the client is closing). */
  close(): void {
    // (The last chance: tried now, even within a second of a failed try.)
    this.#nextSnapshotTry = 0;
    this.save();
    // (What could be neither snapshot nor journaled, a full disk at the end, is lost with the process:
    // said, not dropped in silence. The placing lines of files already placed are on disk: a restart
    // finds those files; what is lost costs files sent again or deletes not reaching them.)
    if (this.#unwritten.length > 0 || this.#owesSnapshot) this.problem("the inbox's latest records could not be written before closing (see above): the next start may have files sent again, or miss deletes made meanwhile");
    if (this.#journal !== undefined) closeSync(this.#journal);
    this.#journal = undefined;
  }

  /**
   * Write the journal lines waiting now. Throws if they cannot be written (a full disk): they stay
   * waiting, and what was written of them is cut off again (no torn line for the next one to be glued to).
   */
  flush({ checkGone = true }: { checkGone?: boolean } = {}): void {
    this.#flushScheduled = false;
    if (this.#journal === undefined) return;
    if (this.#owesSnapshot) return this.#snapshot();
    if (this.#unwritten.length === 0) return;
    this.beforeWrite();
    // The state directory was removed under us (rm -rf of the inbox or its .fmq): lines appended to the
    // deleted journal would be lost. Start a new journal, then a snapshot of everything we know.
    if (checkGone && fstatSync(this.#journal).nlink === 0) return this.#reopen();
    this.#writeLines();
  }

  /** The lines waiting, appended to the journal (see flush). */
  #writeLines(): void {
    if (this.#unwritten.length === 0 || this.#journal === undefined) return;
    // (The epoch line first, if the journal lacks it. After a torn line that could not be cut off, #append
    // puts a newline first: glued to it, the next line was lost.)
    this.#append((this.#epoch !== undefined && !this.#epochWritten ? epochLineOf(this.#epoch) : "") + this.#unwritten);
    this.#unwritten = "";
    this.#epochWritten = this.#epoch !== undefined;
    this.#failing = false;
    // Durable: made so in the thread pool, not on the event loop (one fsync a turn, and one per file
    // placed, would hold it up for each). What must be on disk before a step (a placing line before its
    // rename) is waited for with synced().
    if (this.durable) this.#synced = this.#sync();
  }

  /** With `durable`: resolves once what flush() has written so far is on disk. */
  synced(): Promise<void> {
    return this.#synced;
  }
  #synced: Promise<void> = Promise.resolve();

  #sync(): Promise<void> {
    const journal = this.#journal;
    if (journal === undefined) return Promise.resolve();
    // (An fsync that fails is let be: the lines stay written, in the page cache, as without --fsync. But
    // said, once: whoever asked for --fsync is told it did not hold.)
    return new Promise<void>((resolve) =>
      fsync(journal, (error) => {
        // (Not when the journal was closed or opened anew meanwhile: that descriptor is not ours any more.)
        if (this.#journal !== journal) return resolve();
        if (error && !this.#syncFailed) this.problem(`cannot make the inbox's journal durable (${error.code ?? error.message}): its records are written but may not survive a power loss`);
        this.#syncFailed ||= error !== null;
        resolve();
      }),
    );
  }
  /** The journal's length (ours alone to write: one subscriber per inbox). */
  #journalSize = 0;
  #syncFailed = false;

  /** The journal's length with the lines waiting (characters for those: close to bytes, names are mostly ASCII). */
  get #journalLength(): number {
    return this.#journalSize + this.#unwritten.length;
  }

  /** The end-of-turn flush: a failure is said once (until a flush succeeds again), never thrown into the event loop. */
  #flushLater(): void {
    try {
      this.flush();
    } catch (error) {
      if (!this.#failing) this.problem(`cannot write the inbox's journal (${(error as NodeJS.ErrnoException).code ?? String(error)}): its records wait in memory and are written once it can be`);
      this.#failing = true;
    }
  }
  #failing = false;

  #reopen(): void {
    try {
      this.place.restore();
      this.#reopenJournal();
    } catch {
      return; // cannot be made now: the lines wait in memory for the next flush
    }
    // What the removed directory held is now only in memory: a snapshot is owed until one is written (not
    // left to the next fold, 4 MiB of journal on: a kill before it lost every earlier record; a review).
    this.#owesSnapshot = true;
    this.#unwritten = "";
    this.save();
  }

  /** A new journal at its name, in place of the one open (whose directory was removed). */
  #reopenJournal(): void {
    const journal = openSync(this.#journalPath, constants.O_WRONLY | constants.O_CREAT | constants.O_APPEND | constants.O_NOFOLLOW, 0o644);
    closeSync(this.#journal!);
    this.#journal = journal;
    this.#journalSize = fstatSync(journal).size;
    this.#epochWritten = false;
    this.#torn = false;
  }

  #record(change: Change): void {
    this.#apply(change);
    if (this.#journal === undefined) return;
    const line = JSON.stringify(change) + "\n";
    if (this.#owesSnapshot) {
      // (Lines after a gap mean nothing: the snapshot owed will say it.)
    } else if (this.#unwritten.length + line.length > this.#allowance && !this.#written()) {
      this.#unwritten = "";
      this.#owesSnapshot = true;
    } else {
      this.#unwritten += line;
    }
    if (!this.#flushScheduled) {
      this.#flushScheduled = true;
      setImmediate(() => this.#flushLater());
    }
    if (this.#journalLength >= this.#foldAt) this.save();
  }

  /** The lines waiting written now, if they can be (a big turn's, before any is let go: see #owesSnapshot). */
  #written(): boolean {
    try {
      this.flush();
    } catch {
      return false;
    }
    // (A flush may also end with them still waiting: the state directory removed and not made again.)
    return this.#unwritten.length === 0;
  }

  #apply(change: Change): void {
    switch (change.op) {
      case "delivered":
        this.files.set(change.name, change.entry);
        this.partials.delete(change.name);
        this.placing.delete(change.name);
        break;
      case "removed":
        this.files.delete(change.name);
        this.partials.delete(change.name);
        this.placing.delete(change.name);
        break;
      case "placing":
        this.placing.set(change.name, change.entry);
        break;
      case "placed": {
        const entry = this.placing.get(change.name);
        // Not the version this line speaks of (a journal replayed over a snapshot that already holds it):
        // nothing to do, the lines after it settle the name.
        if (entry === undefined || entry.hash !== change.hash || entry.mtime !== change.mtime) break;
        this.files.set(change.name, entry);
        this.partials.delete(change.name);
        this.placing.delete(change.name);
        break;
      }
      case "unplaced":
        this.placing.delete(change.name);
        break;
      case "partial":
        this.partials.set(change.name, change.entry);
        break;
      case "unpartial":
        this.partials.delete(change.name);
        break;
    }
  }
}

// What the manifest's files hold is checked as it is loaded: they are ours, but may have been edited or
// garbled, and an entry of the wrong shape must cost that file (sent again), not the subscription.

const isRecord = (value: unknown): value is Record<string, unknown> => typeof value === "object" && value !== null && !Array.isArray(value);
const isSize = (value: unknown): value is number => Number.isSafeInteger(value) && (value as number) >= 0;
const isTime = (value: unknown): value is number => typeof value === "number" && Number.isFinite(value);
const TREE_HASH = /^[0-9a-f]{16}$/;
/** A tree hash as we write it (16 lowercase hex): one from the wire that is not is never recorded. */
export const isTreeHash = (value: unknown): value is string => typeof value === "string" && TREE_HASH.test(value);
const BLOCK_HASHES = /^(?:[0-9a-f]{16})+$/;

function isDelivered(value: unknown): value is Delivered {
  return (
    isRecord(value) &&
    typeof value.vpath === "string" &&
    isSize(value.size) &&
    (value.mtime === undefined || isTime(value.mtime)) &&
    (value.hash === undefined || isTreeHash(value.hash)) &&
    (value.blocks === undefined || (typeof value.blocks === "string" && BLOCK_HASHES.test(value.blocks)))
  );
}

function isPartialFile(value: unknown): value is PartialFile {
  return isRecord(value) && typeof value.vpath === "string" && isSize(value.size) && isTime(value.mtime) && (value.tag === undefined || (typeof value.tag === "string" && isVersionTag(value.tag)));
}

/**
 * The line that says the lines after it follow the snapshot `epoch`. Begun with a newline: after a torn
 * line that could not be cut off (a short write on a full disk, then a failed truncation), glued to it,
 * it would not parse, and every line after it would be skipped.
 */
function epochLineOf(epoch: string): string {
  return "\n" + JSON.stringify({ op: "unplaced", name: "", epoch } satisfies EpochLine) + "\n";
}

function isEpochId(value: unknown): value is string {
  return typeof value === "string" && /^[0-9a-f]{16}$/.test(value);
}

function isEpochLine(value: unknown): value is EpochLine {
  return isRecord(value) && value.op === "unplaced" && value.name === "" && isEpochId(value.epoch);
}

function isChange(value: unknown): value is Change {
  if (!isRecord(value) || typeof value.name !== "string") return false;
  switch (value.op) {
    case "delivered":
    case "placing":
      return isDelivered(value.entry);
    case "partial":
      return isPartialFile(value.entry);
    case "placed":
      return isTreeHash(value.hash) && (value.mtime === undefined || isTime(value.mtime));
    case "removed":
    case "unpartial":
    case "unplaced":
      return true;
    default:
      return false;
  }
}

/** The same delivered version (what a placing line says, against what is placed). */
function sameDelivered(a: Delivered, b: Delivered): boolean {
  return a.vpath === b.vpath && a.size === b.size && a.mtime === b.mtime && a.hash === b.hash && a.blocks === b.blocks;
}

/** A state directory named by its path (tests, tools): made again, path and all, if it went. */
function pathPlace(dir: string): Place {
  return {
    join: (name) => path.join(dir, name),
    restore: () => mkdirSync(dir, { recursive: true }),
    sync: () => {
      const fd = openSync(dir, constants.O_RDONLY | constants.O_DIRECTORY);
      try {
        fsyncSync(fd);
      } finally {
        closeSync(fd);
      }
    },
  };
}

/** Throws a ManifestError unless `error` says the state file `name` is not there. */
function unlessMissing(error: unknown, name: string): void {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return;
  const why = code === "ELOOP" ? "it is a symlink" : (code ?? String(error));
  throw new ManifestError(`the inbox's ${STATE_DIR}/${name} cannot be read (${why}): nothing is changed; the inbox is used again once it can be read`);
}

/** The manifest's own files are there and cannot be read. */
export class ManifestError extends Error {
  override name = "ManifestError";
}

/** A whole file, never through a symlink at its name. */
function readNoFollow(file: string): Buffer {
  const fd = openSync(file, constants.O_RDONLY | constants.O_NOFOLLOW);
  try {
    return readFileSync(fd);
  } finally {
    closeSync(fd);
  }
}

/** All of `bytes`, however many calls it takes (a write may be short: a full disk, a signal). */
function writeAll(fd: number, bytes: Buffer): void {
  for (let at = 0; at < bytes.length; ) at += writeSync(fd, bytes, at);
}
