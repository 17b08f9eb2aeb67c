// One client as the server sees it: its subscriptions, credit, queue of files to send, and the file being
// sent. The dialogue itself is the table in machine.ts; this file holds the actions it names.

import { Engine, type Actions } from "../fsm/engine.js";
import { SendCredit } from "../flow/credit.js";
import { encode } from "../protocol/codec.js";
import { MAX_DICTIONARY_ENTRIES, Operation, isMessageName, type Icanhaz, type Message, type Nom } from "../protocol/messages.js";
import { Capability, LONG_NAME_KEY, MAX_BATCH_FRAMES, MAX_UNFINISHED_DELTAS, RESUME_MIN_SIZE, SubscribeOption, isSha1Digest, parseCacheEntry, type CacheEntry } from "../protocol/extensions.js";
import type { DecodeError } from "../protocol/errors.js";
import { covers, joinVirtual, normaliseVirtualPath, relativeTo, unsafeRelativeReason } from "../paths.js";
import type { PublishedFile } from "../mount/mount.js";
import type { XXHashAPI } from "xxhash-wasm";
import { BLOCK_SIZE, changedBlocks, treeHashOfBlocks, xxh } from "../digest/blocks.js";
import { versionTag } from "../digest/version.js";
import { OutsideMountError } from "./opened-inside.js";
import { FileChangedError, FileCursor, readsWhole, sameIdentity, type ChunkFrame, type CursorOptions, type TransferPlan } from "./file-cursor.js";
import { sameVersion, type Fingerprints, type Version } from "./fingerprints.js";
import { serverMachine, type ServerAction, type ServerEvent, type ServerState } from "./machine.js";
import { monotonic } from "../clock.js";
import { setNewest } from "../newest.js";

/** What a connection needs from the server around it (a narrow interface, so tests can fake it). */
export interface ConnectionHost {
  readonly chunkSize: number;
  readonly readAhead: number;
  /** Most messages queued for one client before its dispatching waits (bounds memory per client). */
  readonly maxQueuedMessages: number;
  readonly maxSubscriptions: number;
  /** Most changed files (new versions, deletes) queued for one client; past it its session ends (RTFM). */
  readonly maxQueuedChanges?: number;
  /**
   * Every published file of the mounts that overlap `path`: those under it, and others (the caller
   * picks; it can let other clients in between any two, matching or not).
   */
  filesNear(path: string): Iterable<PublishedFile>;
  /** The published file at `vpath`, if any. */
  file(vpath: string): PublishedFile | undefined;
  /** Is there a file at `vpath` that is not published yet, only waiting to be stable (a server starting)? Its size as last seen, if so. */
  waiting?(vpath: string): number | undefined;
  /** The file at `vpath` is not what was published (found when opened): have its mount check it again. */
  recheck?(vpath: string): void;
  readonly fingerprints: Fingerprints;
  /** Does `path` overlap any mount? */
  serves(path: string): boolean;
  /** May this client read `path` (per-mount access)? Absent: yes. */
  mayRead?(key: string, path: string): boolean;
  /** Queue a message: one frame, or several as one ZeroMQ message (a batch, capability "batch"). */
  send(key: string, routingId: Buffer, frame: Buffer | readonly Buffer[]): void;
  /** Resolves when fewer than `limit` messages wait for this client. */
  below(key: string, limit: number): Promise<void>;
  forget(key: string): void;
  /** Nothing is left to send this client: it has everything it subscribed to. */
  caughtUp(key: string): void;
  /** A subscription was taken, and what is already published under it queued (its caught-up follows). */
  subscribed?(key: string, path: string): void;
  /** A file could not be sent to this client (unreadable, leads outside its mount, reading failed). */
  unsent?(key: string, vpath: string, reason: string): void;
  /** A file (or a delete) went out to this client in full. */
  sent(key: string, vpath: string, operation: "create" | "delete", size: number): void;
  trace?: (line: string) => void;
  warn(message: string): void;
  /** What waits in this client's machine grew or shrank by `delta` bytes (the server's sum across clients). */
  pendingChanged?: (delta: number) => void;
  /** Deletes waiting for names caches listed that the server does not have, across all clients (see MAX_GONE_NAMES_TOTAL). */
  readonly goneNames?: GoneNames;
}

/** Deletes waiting for names a cache listed and the server does not have: how many, and their names' length. */
export interface GoneNames {
  count: number;
  bytes: number;
}

/** What one file of a subscription's plan comes to (patch: nothing to send when undefined). */
interface Plan {
  readonly vpath: string;
  readonly planned: PublishedFile;
  patch: Patch | undefined;
}

type Patch =
  | { readonly op: "create"; readonly file: PublishedFile; readonly resumeAt?: number }
  | {
      readonly op: "delete";
      readonly vpath: string;
      /** For a name the client's cache listed and we do not have: counted against MAX_GONE_NAMES while it waits. */
      readonly gone?: true;
    };

/**
 * Most small files sent in one step (and, to a client that says "batch", in one ZeroMQ message); a step
 * also stops at a chunk's worth of bytes, so a batch holds no more memory than a chunk.
 */
const SMALL_RUN_FILES = MAX_BATCH_FRAMES;

/**
 * Deletes waiting to be sent, in one session, for names the client's caches list and the server does
 * not have, at most: a whole cache's worth (MAX_DICTIONARY_ENTRIES), and names of at most this many bytes (UTF-16
 * units, close enough). A delete a client misses this way comes with its next session.
 */
const MAX_GONE_NAMES = MAX_DICTIONARY_ENTRIES;
const MAX_GONE_NAME_BYTES = 32 * 1024 * 1024;
/**
 * The same, across all clients: each such delete costs the server about 150 bytes besides its name, so
 * one session's bound is some 60-80 MB of heap, and 60 clients at it took more than a Node heap holds
 * (a review). Past this, deletes for the rest wait for those clients' next sessions.
 */
export const MAX_GONE_NAMES_TOTAL = 2 * MAX_GONE_NAMES;
export const MAX_GONE_NAME_BYTES_TOTAL = 2 * MAX_GONE_NAME_BYTES;
const MiB = 1024 * 1024;

/**
 * Changed files (a new version, a delete: an entry of about 90 bytes each) queued for one client at most,
 * by default: about 6 MB. A session that grants no credit held one per change for as long as it stayed
 * (a review: 20 such sessions and 5,000 files written, 100,000 entries, without limit); past this, it
 * ends with RTFM "too far behind", and our client subscribes again with what it holds, which costs the
 * server a pointer per file. Well above the 10,000-file floods of the bench, which a reading client takes
 * as they come.
 */
export const MAX_QUEUED_CHANGES = 65_536;

/**
 * Partial files remembered per client (see Connection.#keptPartials), at most: as the client's inbox
 * remembers their block hashes. Past it the oldest is forgotten, and its next version goes whole.
 */
const MAX_KEPT_PARTIALS = 64;

/**
 * What the client keeps of a file (see Connection.#keptPartials): its first `length` bytes, of the inode
 * `tag`, from a transfer of ours cut short this session or listed in its cache; or a partial it listed by
 * its blocks' hashes (pblocks), whatever version they are of.
 */
type KeptPartial = { readonly source: "cut" | "cache"; readonly length: number; readonly tag: string } | { readonly source: "blocks"; readonly blocks: Buffer };

/** The name of `vpath` under `path` as a cache lists it (joinVirtual(path, name) === vpath), if any. */
function nameBelow(path: string, vpath: string): string | undefined {
  if (path === "/") return vpath.startsWith("/") ? vpath.slice(1) : undefined;
  return vpath.length > path.length + 1 && vpath.startsWith(path) && vpath.charCodeAt(path.length) === 0x2f ? vpath.slice(path.length + 1) : undefined;
}

/** Cache entries handled between two turns of the event loop (about 10 ms of work). */
const YIELD_EVERY = 2000;
const yieldToOthers = () => new Promise<void>((resolve) => setImmediate(resolve));

/**
 * Hashes one plan waits for at once: the SHA-1s of an RFC 35 client's cache (the reference client lists
 * one for every file it holds), and look-alikes. The worker thread hashes them one after another; asked
 * one at a time, each also waited for its round trip to the worker and its stats. Measured here: SHA-1s
 * of 10,000 files of 4 KiB through Fingerprints alone, 2.28 s one at a time, 0.99 s 8 at once, 0.79 s
 * 32 at once; an ICANHAZ listing them, to the server's "caught-up", 2.37-2.48 s before and 1.03-1.32 s.
 * (Then 0.42-0.62 s, once the worker said which version it hashed instead of the main thread stat-ing
 * each file twice, and kept its read buffer; a return with the digests known 0.17-0.28 s, against 0.43
 * with a stat each from the main thread: see ../digest/sha1.ts.)
 */
const PLAN_HASHES_AT_ONCE = 32;
/**
 * And of this many bytes of files at most (one file at least): the worker is shared, and a big file gains
 * nothing from being asked for early (it is hashed in its turn), while everyone else's hashes (a delta's
 * fingerprint, which holds up that client's sending) would wait behind it.
 */
const PLAN_HASH_BYTES = 8 * 1024 * 1024;

/** The version a client holds of a file of more than one block (from its cache, or because we sent it): what a delta is built on. */
interface Holding {
  readonly hash: string;
  readonly blocks: Buffer;
}

/** The argument an event carries: the message that caused it, or an error, or nothing. */
export type EventArg = Message | DecodeError | string | undefined;

export class Connection {
  readonly engine: Engine<ServerState, ServerEvent, ServerAction, EventArg>;
  /** Last time anything arrived from this client (for expiry). */
  lastHeard = monotonic();
  /** "expired" was posted and nothing has arrived since. */
  expiryPosted = false;

  /** Something arrived from this client: its silence starts again. */
  heard(): void {
    this.lastHeard = monotonic();
    this.expiryPosted = false;
  }

  /** Last time the client said it had read further than before (see readUpTo); 0: never this session. */
  lastRead = 0;
  /** The furthest CHEEZBURGER the client has said it read this session. */
  #readUpTo = 0n;

  /**
   * The client says it has got up to this CHEEZBURGER (a NOM's sequence: the reference client gives the
   * last it received; ours the last it handled, and sends a NOM of no credit now and then while it works
   * through messages that earn none, such as deletes). A client whose pipe stays full while it says so
   * is slow, not stalled: not dropped after peer-timeout-ms (see Server#expire). A word, not proof: it
   * is taken only further than before and not past what we have queued for it, and it spares the client
   * nothing else (max-stalled-bytes counts its pipe all the same; the kernel closes a connection that
   * takes none of our data for twice peer-timeout-ms). Taken as the NOM arrives, not in the machine's
   * turn: there it waits behind the step that waits for this client's pipe.
   */
  readUpTo(sequence: bigint): void {
    if (sequence <= this.#readUpTo || sequence >= this.#sequence) return;
    this.#readUpTo = sequence;
    this.lastRead = monotonic();
  }

  readonly #subscriptions = new Set<string>();
  readonly #credit = new SendCredit();
  /** Files waiting to go, in order, one entry per virtual path (a newer change replaces a queued one). */
  readonly #queue = new Map<string, Patch>();
  /**
   * What was published before a subscription came, to send whole once #queue is empty: the mount's own
   * file objects, in order, not a patch and a map entry each (an audit: 400 clients subscribed to 20,000
   * files without granting credit held 930 MiB; 10,000 clients, the default limit, would hold 23 GB). An
   * entry whose file has changed or gone since is skipped: the mount queued that in #queue.
   */
  #backlog: PublishedFile[] = [];
  #backlogAt = 0;
  /** Versions sent from #queue (a resume, a change): not sent again from the backlog. Weak: a version replaced goes. */
  #sentFromQueue = new WeakSet<PublishedFile>();
  #cursor: FileCursor | undefined;
  #sequence = 0n;
  /** Extensions the client said it understands (ICANHAZ option X-FMQ-Caps). */
  #caps = new Set<string>();
  /** How files are read for this client (follows #caps). */
  #cursorOptions: CursorOptions;
  /**
   * What the client holds, by virtual path, where a changed version may go as its changed blocks: files of
   * more than one block only. (Of small files it was never used, and 20,000 of them sent to each of 400
   * clients were 8 million entries.)
   */
  readonly #holdings = new Map<string, Holding>();
  /**
   * Partial files the client keeps from transfers that stopped short or ended marked changed this session
   * (see RESUME_MIN_SIZE), by virtual path: how many bytes from the start, and of which inode. The next
   * version of that file resumes there, with X-FMQ-Prefix: a file that grows (a log) or is written in
   * place changes every few hundred milliseconds, and sent from byte 0 at each change, a big one never
   * got to its end (a soak test: 3.86 GB sent for a 180 MB file; 14.7 GB for a 1.3 GiB one growing 8 MiB
   * every 0.6 s, delivered only once it stopped). Bytes that no longer match are refused by the client
   * at the prefix, and the file is asked for again with the partial's block hashes (`blocks`, the
   * cache's pblocks): it resumes after those that match the file as it is when its turn comes.
   */
  readonly #keptPartials = new Map<string, KeptPartial>();
  /**
   * Deltas cut short this session, by virtual path, until the file goes out whole: our client takes no
   * more than MAX_UNFINISHED_DELTAS of a file it has not had since (each costs it a copy of the version
   * it holds), and asks for the file whole, saying so as an error. Past that, a kept partial is resumed
   * rather than a delta begun. Bounded as #keptPartials.
   */
  readonly #deltasCut = new Map<string, number>();
  /**
   * Cache entries (vpath -> what the value said, kept small: see retainedEntry) of files the server has
   * seen but not yet published.
   */
  readonly #retained = new Map<string, string | CacheEntry>();
  /** Deletes this session queued for names a cache listed and we do not have (see MAX_GONE_NAMES). */
  #goneNames = { count: 0, bytes: 0, said: false };

  constructor(
    readonly key: string,
    readonly routingId: Buffer,
    private readonly host: ConnectionHost,
  ) {
    const actions: Actions<ServerAction, EventArg> = {
      "start session": () => this.#startSession(),
      "send OHAI-OK": () => this.#send({ id: "OHAI_OK" }),
      "store subscription": (arg) => this.#storeSubscription(arg as Icanhaz),
      "send ICANHAZ-OK": () => this.#send({ id: "ICANHAZ_OK" }),
      "queue files already published": async (arg) => {
        await this.#queueExisting(arg as Icanhaz);
        if (!this.engine.stopped) this.host.subscribed?.(this.key, (arg as Icanhaz).path);
      },
      "store credit": (arg) => this.#credit.grant((arg as Nom).credit),
      "check for client data": () => this.#checkForClientData(),
      "send next chunk": () => this.#sendNextChunk(),
      "report caught up": () => this.host.caughtUp(this.key),
      "send HUGZ-OK": () => this.#send({ id: "HUGZ_OK" }),
      "send SRSLY": (arg) => this.#send({ id: "SRSLY", reason: reasonOf(arg) }),
      // A message other than OHAI from a peer we have no session for is most often a client of ours from
      // before a restart (or one we dropped): say that, rather than only what it sent.
      "send RTFM": (arg) => this.#send({ id: "RTFM", reason: this.engine.state === "start" && arg && typeof arg === "object" && "id" in arg ? reasonOf(`no session (the server restarted or dropped it): ${reasonOf(arg)}`) : reasonOf(arg) }),
      terminate: () => this.#terminate(),
    };
    this.#cursorOptions = this.#optionsFor(this.#caps);
    this.engine = new Engine(serverMachine, actions, {
      // "*" catches unexpected protocol messages, never the machine's own internal events.
      isWildcardEvent: isMessageName,
      ...(host.trace ? { trace: (line: string) => host.trace?.(`${key} ${line}`) } : {}),
      onActionError: (error, state, event, action) => {
        host.warn(`client ${key}: "${action}" failed on ${event} in ${state}: ${String(error)}`);
        this.engine.post("malformed", `internal error: ${String(error)}`, { urgent: true });
      },
      ...(host.pendingChanged ? { onWeight: host.pendingChanged } : {}),
    });
  }

  /** Does this client want the file at `vpath`? */
  wants(vpath: string): boolean {
    // A (normalised) subscription covers vpath if it is vpath or one of its ancestors: a look-up per level
    // of vpath, not a comparison per subscription (up to max-subscriptions, for every client, for every
    // file a mount reports).
    if (this.#subscriptions.has("/")) return vpath.startsWith("/");
    for (let end = vpath.length; end > 0; end = vpath.lastIndexOf("/", end - 1)) {
      if (this.#subscriptions.has(vpath.slice(0, end))) return true;
    }
    return false;
  }

  /** A mount reported a file for this client: queue it (replacing a queued older change) and wake the machine. */
  queue(patch: Patch): void {
    if (this.#behind) return;
    // (A link that now leads where this client may not read: the copy it may hold goes.)
    if (patch.op === "create" && !this.#mayHave(patch.file)) patch = { op: "delete", vpath: patch.file.vpath };
    const vpath = patch.op === "create" ? patch.file.vpath : patch.vpath;
    this.#queuedMeanwhile?.add(vpath);
    const retained = this.#retained.get(vpath);
    if (retained !== undefined) {
      // Published after the client told us what it holds of it: skip it, resume it, or send it all.
      this.#retained.delete(vpath);
      if (patch.op === "create") {
        // (Only if no newer version was published while it was planned: that one was queued, and stands.
        // Nor once a new session has begun: it was planned from what the old one's client held, a review.)
        const session = this.#sessions;
        void Promise.resolve(this.#planFor(patch.file, retained)).then((planned) => {
          if (this.#sessions !== session) return;
          if (planned && (planned.op !== "create" || this.host.file(vpath) === planned.file)) this.queue(planned);
        });
        return;
      }
    }
    const replaced = this.#queue.get(vpath);
    // (Not while a subscription is being planned: it skips names queued meanwhile, taking them as queued
    // by the mount, and so would never see that the client asked for this one whole again. A review.)
    if (patch.op === "create" && this.#queuedMeanwhile === undefined) {
      const sending = this.#sending(patch.file);
      if (sending) {
        // The mount's record of the very version being sent: a change of the inode alone (a chmod) that it
        // saw after we opened the file again (see #sendAgain). What goes is that version already: not
        // queued, or the transfer was cut short as superseded and the same bytes went a third time (CI).
        this.#versionOf.set(sending, patch.file);
        if (replaced) {
          this.#noLongerWaiting(replaced);
          this.#queue.delete(vpath);
        }
        return;
      }
    }
    if (replaced) this.#noLongerWaiting(replaced);
    else if (this.#queue.size - this.#goneNames.count >= (this.host.maxQueuedChanges ?? MAX_QUEUED_CHANGES)) return this.#tooFarBehind();
    this.#queue.delete(vpath);
    this.#queue.set(vpath, patch);
    this.engine.post("dispatch", undefined, { coalesce: true });
  }

  /**
   * The current transfer (whole, resumed or a delta), if it sends `file`, this very version (size, mtime,
   * ctime, inode). Also while it waits for its fingerprint with every byte sent (a record landing then was
   * queued, and the file went again: a review).
   */
  #sending(file: PublishedFile): FileCursor | undefined {
    // (Not if the client has asked for anything since the transfer was taken from the queue: it may have
    // refused this one, or asked for the file otherwise, and only the record queued makes sure that what
    // it asked for goes (a review found a refusal during the wait for a fingerprint, not marked #refused,
    // and the file then never sent that session). Rare: a client asks when it subscribes and refetches.)
    if (this.#requests !== this.#requestsAtTake) return undefined;
    const cursor = this.#inHand();
    // (Not one the client asked for whole instead: that is cut short, and what it asked for must still go.)
    if (cursor === undefined || cursor === this.#refused || cursor.vpath !== file.vpath || cursor.version === undefined || cursor.changed) return undefined;
    return isVersionOf(cursor.version, file) ? cursor : undefined;
  }

  /** Its queue is at its bound: end the session (once; nothing more is queued meanwhile). */
  #tooFarBehind(): void {
    if (this.#behind) return;
    this.#behind = true;
    const limit = this.host.maxQueuedChanges ?? MAX_QUEUED_CHANGES;
    this.host.warn(`client ${this.key}: more than ${limit} changed files wait for it; session ended (RTFM), for it to subscribe again with what it holds`);
    this.engine.post("too far behind", `too far behind: more than ${limit} changed files waiting`, { urgent: true });
  }
  /** Its session is ending for a queue at its bound (see #tooFarBehind). */
  #behind = false;

  /** Files whose version the client holds that we remember (for deltas; tests and stats). */
  get holdings(): number {
    return this.#holdings.size;
  }

  /** Files waiting (not counting the one being sent; some of the backlog may have changed or gone since). */
  get queued(): number {
    return this.#queue.size + this.#backlog.length - this.#backlogAt;
  }

  async close(): Promise<void> {
    this.engine.stop();
    // A subscription's plan waiting for hashes ends now, letting go of its message and cache (the hashes
    // run on, for nobody).
    this.#wakePlan?.();
    this.#dropGoneNames();
    await Promise.all([this.#forgetWaiting(), this.#closeCursor()]);
  }

  // --- actions -------------------------------------------------------------------------------------

  #startSession(): void {
    // OHAI is "start again" whatever came before: nothing of an earlier session survives it.
    this.#sessions++;
    this.#subscriptions.clear();
    this.#queue.clear();
    this.#backlog = [];
    this.#backlogAt = 0;
    this.#sentFromQueue = new WeakSet();
    this.#sentAgain = new WeakSet();
    this.#credit.reset();
    this.#sequence = 0n;
    this.#readUpTo = 0n;
    this.lastRead = 0;
    this.#setCaps(new Set());
    this.#holdings.clear();
    this.#keptPartials.clear();
    this.#deltasCut.clear();
    this.#retained.clear();
    this.#dropGoneNames();
    void this.#forgetWaiting();
    void this.#closeCursor();
  }

  #storeSubscription(message: Icanhaz): void {
    const path = normaliseVirtualPath(message.path);
    if (path === undefined) return this.engine.raise("refused", `invalid path "${message.path.slice(0, 200)}"`);
    if (!this.host.serves(path)) return this.engine.raise("refused", `no such path: ${path}`);
    if (this.host.mayRead?.(this.key, path) === false) return this.engine.raise("refused", `access denied: ${path}`);
    if (!this.#subscriptions.has(path) && this.#subscriptions.size >= this.host.maxSubscriptions) {
      return this.engine.raise("refused", `too many subscriptions (limit ${this.host.maxSubscriptions})`);
    }
    this.#subscriptions.add(path);
    const caps = message.options.get(SubscribeOption.CAPABILITIES);
    if (caps !== undefined) this.#setCaps(new Set(caps.split(",").map((c) => c.trim())));
  }

  /**
   * A new subscription gets what is already published under its path (the late joiner), except what its
   * cache shows it holds already (RFC 35 RESYNC: filename -> SHA-1; or our size/mtime/hash entries), and a
   * delete for every cached file that is gone from the server (deletes missed while away). A partial file
   * of the current version is resumed where it stopped.
   */
  async #queueExisting(message: Icanhaz): Promise<void> {
    this.#requests++;
    try {
      await this.#queueExistingNow(message);
    } finally {
      this.#queuedMeanwhile = undefined;
      this.#wakePlan = undefined;
    }
  }

  /** Wakes #queueExistingNow where it waits for hashes (set while it runs): close() ends that wait. */
  #wakePlan: (() => void) | undefined;

  /** Sessions begun (OHAI): what was under way for an earlier one is dropped when it ends. */
  #sessions = 0;
  /** ICANHAZ taken from this client (see #sending). */
  #requests = 0;
  /** #requests when the last patch was taken from the queue (the current transfer's, or the one awaited). */
  #requestsAtTake = 0;

  /** Patches queued (by the mounts) while #queueExistingNow lets other clients in. */
  #queuedMeanwhile: Set<string> | undefined;

  async #queueExistingNow(message: Icanhaz): Promise<void> {
    const path = normaliseVirtualPath(message.path);
    if (path === undefined) return;
    // What the backlog has sent goes first: kept, a client asking again and again, its backlog never
    // drained, held a pointer to every file ever sent it, and the file (a review). (Nothing else takes
    // from the backlog while this runs: it is this client's step.)
    if (this.#backlogAt > 0) {
      this.#backlog = this.#backlog.slice(this.#backlogAt);
      this.#backlogAt = 0;
    }
    // Keyed by the name below the path, as it came: a full path per entry (the path may be 4 KiB long)
    // would cost a copy of the path per name, hundreds of MiB for one hostile cache (an audit).
    const cache = new Map<string, string>();
    // A cache may list 200,000 names (MAX_DICTIONARY_ENTRIES), a mount hold as many files: let other
    // clients' messages in every so often (and stop if this client is gone meanwhile).
    let done = 0;
    const queuedMeanwhile = new Set<string>();
    this.#queuedMeanwhile = queuedMeanwhile;
    // (No await at all between two pauses: an await per file was a promise per file per client.)
    const pause = (): Promise<boolean> | false => (++done % YIELD_EVERY === 0 ? yieldToOthers().then(() => this.engine.stopped) : false);
    for (const [key, value] of message.cache) {
      const paused = pause();
      if (paused !== false && (await paused)) return;
      // Cache keys are names relative to the subscription path, or (too long for a key) in the value;
      // hostile until checked.
      const name = key.startsWith(LONG_NAME_KEY) ? parseCacheEntry(value)?.name : key;
      if (name === undefined) continue;
      const relative = name.startsWith("/") ? relativeTo(path, name) : name;
      if (relative === undefined || unsafeRelativeReason(relative)) continue;
      cache.set(relative, value);
    }
    const plans: Plan[] = [];
    // Plans waiting for a hash: PLAN_HASHES_AT_ONCE at most, of PLAN_HASH_BYTES of files (one at least);
    // all are settled before the plans are used. One waiter at most: this loop, for room.
    let hashing = 0;
    let hashingBytes = 0;
    let room: (() => void) | undefined;
    const wake = () => {
      const waiting = room;
      room = undefined;
      waiting?.();
    };
    this.#wakePlan = wake;
    const settledOne = (size: number) => {
      hashing--;
      hashingBytes -= size;
      wake();
    };
    // (A promise only when the bound is reached: most plans are decided at once, with no await.)
    const plan = (vpath: string, planned: PublishedFile, value: string | undefined): Promise<void> | undefined => {
      const entry: Plan = { vpath, planned, patch: undefined };
      plans.push(entry);
      const patch = this.#planFor(planned, value);
      if (!(patch instanceof Promise)) {
        entry.patch = patch;
        return undefined;
      }
      hashing++;
      hashingBytes += planned.size;
      void patch
        .then(
          (decided) => void (entry.patch = decided),
          // (Not expected: #planFor's hashes are caught. Unsure means it goes; the send checks it again.)
          () => void (entry.patch = { op: "create", file: planned }),
        )
        .finally(() => settledOne(planned.size));
      return hashing >= PLAN_HASHES_AT_ONCE || hashingBytes >= PLAN_HASH_BYTES ? new Promise<void>((resolve) => (room = resolve)) : undefined;
    };
    /** Files the cache does not list, to send whole: the usual case, kept to one pointer each. */
    const whole: PublishedFile[] = [];
    for (const file of this.host.filesNear(path)) {
      // (A pause per file looked at, not per file taken: a path that matches few of a million files
      // must not hold everyone else up while they are gone through.)
      const paused = pause();
      if (paused !== false && (await paused)) return;
      if (!covers(path, file.vpath)) continue;
      // (A file that is the path itself, subscribed to or asked for again by name, is listed under its
      // base name, as the client names it: else that name was taken for gone, and the client told to
      // delete the file it holds, then sent it again, at every session.)
      const name = file.vpath === path ? path.slice(path.lastIndexOf("/") + 1) : nameBelow(path, file.vpath);
      const value = name === undefined ? undefined : cache.get(name);
      if (name !== undefined) cache.delete(name);
      if (value === undefined && this.#mayHave(file)) {
        // (What #planFor does for it, without a patch: not listed, not held.)
        this.#holdings.delete(file.vpath);
        this.#keptPartials.delete(file.vpath);
        whole.push(file);
      } else {
        const full = plan(file.vpath, file, value);
        if (full && (await full, this.engine.stopped)) return;
      }
    }
    // What remains in the cache is held by the client and gone from the server; unless the server has
    // seen the file but not yet published it (it has just started): then the client's entry is kept and
    // applied when the file is published, so a restarted publisher neither deletes nor re-sends it.
    // Deletes go first: a file that became a directory of its name while the client was away (or the
    // other way round) is out of the way before what replaced it comes (a review: it never came).
    for (const [name, value] of cache) {
      const paused = pause();
      if (paused !== false && (await paused)) return;
      const vpath = joinVirtual(path, name);
      // Published while we let others in, after the scan above went by: planned as the others (the mount
      // queued its create meanwhile; the cache's word wins below). Not a delete, nor sent again whole.
      const published = this.host.file(vpath);
      if (published) {
        const full = plan(vpath, published, value);
        if (full && (await full, this.engine.stopped)) return;
        continue;
      }
      this.#holdings.delete(vpath);
      this.#keptPartials.delete(vpath);
      const seen = this.host.waiting?.(vpath);
      if (seen !== undefined) this.#retained.set(vpath, retainedEntry(value, seen));
      else if (!this.#queue.has(vpath)) {
        // Bounded: a client may list names we never had, cache after cache, and their deletes wait behind
        // a file it gives no credit for. Past the bound the rest wait for its next session.
        const all = this.host.goneNames;
        if (this.#goneNames.count >= MAX_GONE_NAMES || this.#goneNames.bytes + vpath.length > MAX_GONE_NAME_BYTES) {
          if (!this.#goneNames.said) this.host.warn(`client ${this.key}: its caches list more than ${MAX_GONE_NAMES} names, or ${MAX_GONE_NAME_BYTES / MiB} MiB of names, that are not on this server: deletes for the rest wait for its next session`);
          this.#goneNames.said = true;
          break;
        }
        if (all && (all.count >= MAX_GONE_NAMES_TOTAL || all.bytes + vpath.length > MAX_GONE_NAME_BYTES_TOTAL)) {
          if (!this.#goneNames.said) this.host.warn(`client ${this.key}: deletes waiting for names not on this server come to more than ${MAX_GONE_NAMES_TOTAL} names, or ${MAX_GONE_NAME_BYTES_TOTAL / MiB} MiB of names, across all clients: deletes for the rest wait for its next session`);
          this.#goneNames.said = true;
          break;
        }
        this.#countGone(1, vpath.length);
        this.#queue.set(vpath, { op: "delete", vpath, gone: true });
      }
    }
    while (hashing > 0 && !this.engine.stopped) await new Promise<void>((resolve) => (room = resolve));
    if (this.engine.stopped) return;
    // (Another subscription's backlog still to send, of files still as they were: a file in both goes
    // once. Made with pauses, as the scan: a backlog may hold a million files.)
    // By name: true, an entry that will go; false, only entries skipped since the file went from #queue.
    let backlogged: Map<string, boolean> | undefined;
    if (this.#backlogAt < this.#backlog.length) {
      backlogged = new Map();
      for (let i = this.#backlogAt; i < this.#backlog.length; i++) {
        const file = this.#backlog[i]!;
        if (this.host.file(file.vpath) === file) backlogged.set(file.vpath, backlogged.get(file.vpath) === true || !this.#sentFromQueue.has(file));
        const paused = pause();
        if (paused !== false && (await paused)) return;
      }
    }
    // (These two loops pause as the scan does: a million files' lookups in one turn held everyone up, a review.)
    for (const file of whole) {
      const paused = pause();
      if (paused !== false && (await paused)) return;
      // Queued meanwhile (a newer version, or its delete), or queued already: that stands. Changed since:
      // the mount has queued it.
      if (queuedMeanwhile.has(file.vpath) || this.#queue.has(file.vpath) || this.host.file(file.vpath) !== file) continue;
      // Being sent now as a resume or a delta, and asked for whole: the client refused that transfer (our
      // client asks again for the file alone, with nothing listed), and ignores the rest of it. It stops
      // at the next step, rather than send up to the whole file for nothing before the file goes again.
      // (Also one that has sent every byte and waits for its fingerprint: it stops when the wait ends.)
      this.#refuseInHand(file);
      this.#toBacklog(file, backlogged);
    }
    for (const { vpath, planned, patch } of plans) {
      const paused = pause();
      if (paused !== false && (await paused)) return;
      // What this cache says wins over a create queued meanwhile (a file published while we let others
      // in): one the client holds is not sent again. (A patch queued before, for another subscription of
      // this client, stays: that one may go to another inbox.)
      const meanwhile = queuedMeanwhile.has(vpath);
      // (But a delete queued meanwhile is newer than this plan: the file went during the scan; and so is a
      // create of another version than the one planned: published while the plan was made.)
      const queued = meanwhile ? this.#queue.get(vpath) : undefined;
      if (queued?.op === "delete" || (queued?.op === "create" && queued.file !== planned)) continue;
      if (patch && (meanwhile || !this.#queue.has(vpath))) {
        // The whole file, as published when looked at: the backlog. Anything else (resumed, or queued
        // meanwhile) takes its place in #queue.
        if (!meanwhile && patch.op === "create" && patch.resumeAt === undefined && this.host.file(vpath) === patch.file) this.#toBacklog(patch.file, backlogged);
        else this.#queue.set(vpath, patch);
      } else if (!patch && queued?.op === "create") this.#queue.delete(vpath);
    }
  }

  /** A patch leaves the queue (sent or replaced): a delete for a name the cache listed is one fewer waiting. */
  #noLongerWaiting(patch: Patch): void {
    if (patch.op === "delete" && patch.gone) this.#countGone(-1, -patch.vpath.length);
  }

  /** This session's deletes for names the server does not have are dropped (a new session, or the end). */
  #dropGoneNames(): void {
    this.#countGone(-this.#goneNames.count, -this.#goneNames.bytes);
    this.#goneNames.said = false;
  }

  /** Such deletes waiting, counted for this session and across all clients (the server's sum). */
  #countGone(count: number, bytes: number): void {
    this.#goneNames.count += count;
    this.#goneNames.bytes += bytes;
    const all = this.host.goneNames;
    if (all) {
      all.count += count;
      all.bytes += bytes;
    }
  }

  /** `file` to send whole, after what waits already, unless the backlog holds it still (`backlogged`). */
  #toBacklog(file: PublishedFile, backlogged: Map<string, boolean> | undefined): void {
    const waiting = backlogged?.get(file.vpath);
    if (waiting === true) return;
    // (Asked for again after it went from #queue, it goes again.)
    this.#sentFromQueue.delete(file);
    // An entry of it skipped so far (it went from #queue) goes now: another pushed beside it, both went (a
    // review: a resume refused, then the file sent whole twice).
    if (waiting === false) return;
    this.#backlog.push(file);
  }

  /**
   * What to send of `file` to a client whose cache says `value` (undefined: send it all). Decided at once,
   * unless a hash must be computed or looked up (a promise then).
   */
  #planFor(file: PublishedFile, value: string | CacheEntry | undefined): Patch | undefined | Promise<Patch | undefined> {
    // (Not for this client: not sent, and a copy it says it holds goes.)
    if (!this.#mayHave(file)) return value === undefined ? undefined : { op: "delete", vpath: file.vpath };
    // The cache is the client's word on what it holds under this path: not listed, not held.
    this.#holdings.delete(file.vpath);
    this.#keptPartials.delete(file.vpath);
    if (value === undefined) return { op: "create", file };
    if (typeof value === "string" && isSha1Digest(value)) {
      return this.host.fingerprints.sha1(file.absolute, file.root).then(
        (digest) => (digest === value.toUpperCase() ? undefined : { op: "create", file }),
        () => ({ op: "create", file }),
      );
    }
    const entry = typeof value === "string" ? parseCacheEntry(value) : value;
    if (!entry) return { op: "create", file };
    // (Kept only where a delta may follow, as #holdings says: a file of more than one block. Only the
    // blocks this file has: a delta compares no others, and a cache may list 32 KiB of them for any file.)
    if (entry.blocks !== undefined && entry.hash !== undefined && file.size > BLOCK_SIZE) this.#holdings.set(file.vpath, { hash: entry.hash, blocks: blocksUpTo(entry.blocks, file.size) });
    // rsync's quick check: same size and mtime is the same file. Unless the mount saw this file's mtime
    // set back (lookAlike: the client may hold another content of that size and mtime): then its hash
    // decides, computed now if need be (big files were fingerprinted when published; small ones are
    // quick). Unsure (what was hashed is not this version, or it could not be read), it goes: the send
    // checks it again.
    if (entry.size === file.size && entry.mtime === file.mtimeMs) {
      if (!file.lookAlike) return undefined;
      // (Nothing to compare: unsure, it goes. It was taken for held: a review.)
      if (entry.hash === undefined) return { op: "create", file };
      const held = entry.hash;
      return this.host.fingerprints.fingerprint(file.absolute).then(
        (now) => (now !== undefined && isVersionOf(now.version, file) && now.fingerprint.hash === held ? undefined : { op: "create", file }),
        () => ({ op: "create", file }),
      );
    }
    // A partial whose resume the client refused (what it held before the offset was not this file's: the
    // file written in place behind where it had come to), listed with its blocks' hashes: resumed after the
    // blocks that still match. Sent from byte 0, it came whole again at each such write (a soak test).
    // (Remembered as a kept partial, and taken up when the file's turn comes, with the file as it is then:
    // a file written again and again changes between now and then.) The refused transfer, if it is still
    // under way, stops.
    if (entry.pblocks !== undefined && this.#caps.has(Capability.VERIFY)) {
      this.#refuseInHand(file);
      // (As many as the file has blocks, in memory of their own: a client may list 4,000 for any file. A
      // delta onto them names them by their tree hash; our client knows how many we kept, see
      // Inbox.listedBase.)
      setNewest(this.#keptPartials, file.vpath, { source: "blocks", blocks: blocksUpTo(entry.pblocks, file.size) }, MAX_KEPT_PARTIALS);
      return { op: "create", file };
    }
    const partial = entry.partial;
    // (Of another file by its tag, one renamed over it: not resumed, and a delta on the version held may
    // still be. No need to look again when the file is opened: it is sent only if it is still the inode
    // published, FileCursor.open's samePublished.)
    const sameFile = partial?.tag === undefined || file.ino === undefined || partial.tag === versionTag({ ino: file.ino });
    // (Only to a client that said "verify": it alone gets the headers that say what a resumed transfer is,
    // its X-FMQ-Prefix among them. To any other, a resume came with nothing to tell it; a review.)
    if (!partial || partial.length <= 0 || !this.#caps.has(Capability.VERIFY)) return { op: "create", file };
    // (Remembered as kept, too: a newer version of the file published before this resume opens replaces
    // it in the queue, and takes the partial up in its place. A soak test: a growing file, the publisher
    // restarted, went from byte 0 again.)
    if (partial.tag !== undefined) setNewest(this.#keptPartials, file.vpath, { source: "cache", length: partial.length, tag: partial.tag }, MAX_KEPT_PARTIALS);
    if (sameFile && partial.size === file.size && partial.mtime === file.mtimeMs) return { op: "create", file, resumeAt: partial.length };
    // A partial of an earlier version of this very inode (a file growing, or written in place, while it
    // came) is resumed too, if it is no longer than the file, unless changed blocks on the version the
    // client holds whole send less: #transferPlan decides, as for one kept this session (remembered just
    // above). The client checks the bytes it holds against X-FMQ-Prefix, and refuses a prefix that
    // changed (the file comes whole then).
    return { op: "create", file };
  }

  /**
   * A partial known by its blocks' hashes (`blocks`: the cache's pblocks) taken up: resumed after those
   * that match `file`'s own (its fingerprint), or, to a client that takes deltas, as the blocks that differ
   * and those beyond it, on top of it, when that sends less (a file written in place at scattered places,
   * a disk image); else the whole file.
   */
  async #resumeAfterMatching(file: PublishedFile, blocks: Buffer): Promise<TransferPlan> {
    const now = await this.host.fingerprints.fingerprint(file.absolute).catch(() => undefined);
    if (!now || !sameIdentity(now.version, file)) return {};
    // (Whole blocks of the file only: a resume starts at a block, and no later than the file's end.)
    const limit = Math.min(blocks.length / 8, Math.floor(file.size / BLOCK_SIZE));
    const ours = now.fingerprint.blocks;
    let matching = 0;
    while (matching < limit && ours.length >= matching * 8 + 8 && blocks.compare(ours, matching * 8, matching * 8 + 8, matching * 8, matching * 8 + 8) === 0) matching++;
    const resume: TransferPlan = matching > 0 ? { start: matching * BLOCK_SIZE } : {};
    if (!this.#caps.has(Capability.DELTA)) return resume;
    const changed = changedBlocks(ours, blocks);
    if (changed.length >= ours.length / 8 - matching) return resume;
    return { delta: { blocks: changed, base: treeHashOfBlocks(await xxh(), blocks), fingerprint: now.fingerprint, version: now.version } };
  }

  /**
   * A file reached through a symlink goes only to a client that may read what it leads to as well (it
   * was allowed the link's path when it subscribed).
   */
  #mayHave(file: PublishedFile): boolean {
    return file.target === undefined || this.host.mayRead?.(this.key, file.target) !== false;
  }

  /**
   * Resume, delta, or whole: decided when the file's turn comes, with the file as it is then. A promise
   * only where it asks the file's fingerprint (a delta may be due).
   */
  #transferPlan(patch: Patch & { op: "create" }): TransferPlan | Promise<TransferPlan> {
    if (patch.resumeAt !== undefined) return { start: patch.resumeAt };
    // (The client's partial of this file from earlier in the session, if this is still its inode. Kept
    // until another transfer of the file stops or ends: this one may not open, the file changed again.)
    const kept = this.#keptPartials.get(patch.file.vpath);
    if (kept?.source === "blocks") return this.#resumeAfterMatching(patch.file, kept.blocks);
    const resume = kept && this.#resumableElsewhere(patch.file, kept.length, kept.tag) ? { start: kept.length } : undefined;
    // (One listed in a cache, of a session begun after a restart most likely, waits for the file's hash:
    // see #afterFingerprint. One kept this session does not: the file's hash was begun when it was
    // published, and a file that grows, the usual case, would wait for it at every change.)
    const waited = (plan: TransferPlan) => (kept?.source === "cache" ? this.#afterFingerprint(patch.file, plan) : plan);
    const held = this.#holdings.get(patch.file.vpath);
    // (And "verify": a delta's X-FMQ-Base, which says what the blocks apply to, is among the headers only
    // such a client gets.)
    if (!this.#caps.has(Capability.DELTA) || !this.#caps.has(Capability.VERIFY) || !held || patch.file.size <= BLOCK_SIZE) return resume ? waited(resume) : {};
    if (!resume) return this.#deltaPlan(patch, held);
    // (A delta the client would refuse: see #deltasCut.)
    if ((this.#deltasCut.get(patch.file.vpath) ?? 0) >= MAX_UNFINISHED_DELTAS) return waited(resume);
    // Both: whichever sends less. A file written in place, its header and a block far on changed, whose
    // delta was cut after the header: resumed, it sent all the rest; as changed blocks on the version the
    // client still holds whole, two blocks (a review).
    return this.#deltaPlan(patch, held).then((delta) => {
      const rest = patch.file.size - Math.floor(resume.start / BLOCK_SIZE) * BLOCK_SIZE;
      return delta.delta && delta.delta.blocks.length * BLOCK_SIZE < rest ? delta : resume;
    });
  }

  /**
   * `plan`, a resume of a partial of an earlier version, once the file's fingerprint is known: its
   * X-FMQ-Prefix then goes on the first chunk, and a partial the file was written over behind is refused
   * there. Not waited for (the prefix said once known, see FileCursor.open), a publisher just restarted,
   * hashing every file anew, streamed hundreds of MB of such a resume before the prefix came and the
   * client refused it (a soak test: a 600 MiB file written in place, 3.2x its size received in one run).
   * The wait: about 0.3-0.5 s per GiB here, less what the publisher had hashed of it already.
   */
  async #afterFingerprint(file: PublishedFile, plan: TransferPlan): Promise<TransferPlan> {
    await this.host.fingerprints.fingerprint(file.absolute).catch(() => undefined);
    return plan;
  }

  async #deltaPlan(patch: Patch & { op: "create" }, held: Holding): Promise<TransferPlan> {
    const now = await this.host.fingerprints.fingerprint(patch.file.absolute).catch(() => undefined);
    if (!now || !sameIdentity(now.version, patch.file)) return {};
    const blocks = changedBlocks(now.fingerprint.blocks, held.blocks);
    // Worth it only if most of the file is unchanged (a block hash is 8 bytes).
    if (blocks.length * 2 > now.fingerprint.blocks.length / 8) return {};
    return { delta: { blocks, base: held.hash, fingerprint: now.fingerprint, version: now.version } };
  }

  /**
   * May a partial of `length` bytes of another version of `file` be resumed: of the same inode (its tag),
   * no longer than the file is now, and holding a block (a resume starts at the last whole block)?
   */
  #resumableElsewhere(file: PublishedFile, length: number, tag: string | undefined): boolean {
    return tag !== undefined && file.ino !== undefined && tag === versionTag({ ino: file.ino }) && length >= BLOCK_SIZE && length <= file.size;
  }

  /**
   * `cursor`'s transfer stopped short or ended marked changed: remember what the client keeps of it (it
   * keeps the partial of a file of at least RESUME_MIN_SIZE, holding a block; ours, saying "verify").
   */
  #keepPartial(cursor: FileCursor): void {
    const length = cursor.heldPrefix;
    // (One the client saw some of: it counts those.)
    if (cursor.isDelta && cursor.extensions && cursor !== this.#refused && length > 0) {
      setNewest(this.#deltasCut, cursor.vpath, (this.#deltasCut.get(cursor.vpath) ?? 0) + 1, MAX_KEPT_PARTIALS);
    }
    const version = cursor.version;
    // (Not one the client refused, asking for the file whole or listing its partial by its blocks; nor over
    // such a listing, which says what it holds now: a transfer cut short opened before it, and one opened
    // after it took it up.)
    if (cursor === this.#refused || !cursor.extensions || version === undefined || cursor.identity.size < RESUME_MIN_SIZE || length < BLOCK_SIZE) return;
    if (this.#keptPartials.get(cursor.vpath)?.source === "blocks") return;
    setNewest(this.#keptPartials, cursor.vpath, { source: "cut", length, tag: versionTag(version) }, MAX_KEPT_PARTIALS);
  }

  #checkForClientData(): void {
    if (this.#cursor === undefined && this.#waiting === undefined && this.#queue.size === 0 && this.#backlogHead() === undefined) this.engine.next("finished", undefined);
    else this.engine.next("send chunk", undefined);
  }

  async #sendNextChunk(): Promise<void> {
    // Bound what one client can hold in our memory: wait while its outgoing queue is long.
    await this.host.below(this.key, this.host.maxQueuedMessages);
    if (this.engine.stopped) return;
    if (this.#cursor === undefined) {
      // (Still waiting for what the last step needed: nothing else goes first.)
      if (this.#waiting) return this.engine.raise("not ready", undefined);
      // No file is opened (nor read ahead) for a client that has granted no credit: idle clients cost little.
      const first = this.#peekPatch();
      if (first?.op === "create" && first.file.size > 0 && this.#credit.available <= 0) return this.engine.raise("no credit", undefined);
      if (this.#fitsOneMessage(first)) return this.#sendSmallFiles();
      const patch = this.#takePatch();
      if (patch === undefined) return;
      if (patch.op === "delete") {
        this.#sendDelete(patch.vpath);
        this.#holdings.delete(patch.vpath);
        this.#keptPartials.delete(patch.vpath);
        this.host.sent(this.key, patch.vpath, "delete", 0);
        return;
      }
      // A delta is planned from the file's fingerprint, which may be coming from the worker (behind other
      // files): wait for it outside this step (see "not ready").
      const plan = this.#transferPlan(patch);
      if (plan instanceof Promise) return this.#notReady(plan.then((planned) => this.#openCursor(patch, planned)), patch.file.vpath);
      // Resumed: opening hashes what the client holds already (unless its fingerprint is known), up to
      // the whole file: likewise outside the step.
      if (plan.start !== undefined && plan.start > 0) return this.#notReady(this.#openCursor(patch, plan), patch.file.vpath);
      this.#cursor = await this.#openCursor(patch, plan);
      if (this.#cursor === undefined) return;
    }
    const cursor = this.#cursor;
    // A delete or a newer version of this file is queued: the client would drop the rest of this one
    // (it changed), so it stops here and what is queued goes next, not after up to the whole file.
    if (this.#superseded(cursor)) return this.#abandon(cursor);
    // All sent but the eof chunk, which carries the fingerprint the worker is computing: likewise.
    const due = cursor.fingerprintDue();
    if (due) return this.#notReady(due.then(() => cursor), cursor.vpath, cursor);
    const chunk = await this.#next(cursor);
    if (this.engine.stopped || chunk === null) return;
    if (chunk === undefined) return this.engine.raise("no credit", undefined);
    this.#credit.spend(chunk.bytes);
    this.#sendFrame(chunk.frame);
    if (chunk.eof) {
      // "Every file ends with an empty chunk with eof=1": the reference client finishes on the empty chunk.
      this.#finished(cursor);
      await this.#closeCursor();
    }
  }

  /**
   * Small files in a row, while the client's credit lasts: each read whole and sent as one message
   * (capability "single"), up to SMALL_RUN_FILES files or a chunk's worth of bytes in one step; to a
   * client that says "batch", all in one ZeroMQ message. A flood of small files costs per message and per
   * step, not per byte: a run pays those once instead of once per file.
   */
  async #sendSmallFiles(): Promise<void> {
    const frames: Buffer[] = [];
    /** Files whose frame is ready: said sent once the frames are handed over. */
    const done: FileCursor[] = [];
    let bytes = 0;
    const xx = this.#cursorOptions.extensions ? await xxh() : undefined;
    let patch = this.#peekPatch();
    // (Stopped meanwhile, even from inside one of our own calls, e.g. a listener: nothing more is read or sent.)
    while (!this.engine.stopped && this.#fitsOneMessage(patch) && frames.length < SMALL_RUN_FILES && bytes + patch.file.size <= this.host.chunkSize) {
      this.#takePatch();
      // The short way, with no await: opened, read, framed and closed synchronously. Else the usual steps.
      let cursor = this.#openSmall(patch, xx);
      let chunk: ChunkFrame | null | undefined = cursor?.nextWhole(this.#credit.available);
      if (!chunk) {
        // (A file read whole big enough for a delta is rare: its plan is awaited here, as before.)
        if (cursor === null) cursor = await this.#openCursor(patch, await this.#transferPlan(patch));
        if (this.engine.stopped) return void (await cursor?.close()); // (#openCursor closed what it opened)
        chunk = cursor && (await this.#next(cursor));
        if (this.engine.stopped) return void (await cursor?.close());
      }
      if (cursor && chunk) {
        this.#credit.spend(chunk.bytes);
        bytes += chunk.bytes;
        frames.push(FileCursor.stamp(chunk.frame, this.#sequence++));
        if (!chunk.eof) {
          // Not one message after all (it is not a regular file, or it emptied): the usual steps finish it.
          this.#cursor = cursor;
          break;
        }
        done.push(cursor);
        if (!cursor.dispose()) await cursor.close();
      }
      patch = this.#peekPatch();
    }
    if (this.engine.stopped) return;
    if (frames.length > 1 && this.#caps.has(Capability.BATCH)) this.host.send(this.key, this.routingId, frames);
    else for (const frame of frames) this.host.send(this.key, this.routingId, frame);
    for (const cursor of done) this.#finished(cursor);
  }

  /** Can this patch go as one message now: a small file, whole, to a client that says "single", with credit for all of it? */
  #fitsOneMessage(patch: Patch | undefined): patch is Patch & { op: "create" } {
    return (
      patch?.op === "create" &&
      patch.resumeAt === undefined &&
      patch.file.size > 0 &&
      readsWhole(patch.file.size, this.host.chunkSize) &&
      patch.file.size <= this.#credit.available &&
      this.#cursorOptions.single === true
    );
  }

  /**
   * A small file opened and read whole synchronously (FileCursor.openSmall), when nothing needs planning:
   * it is below a block, so no delta, and sent from its start. Undefined if it cannot go now (as
   * #openCursor); null if the usual steps must open it.
   */
  #openSmall(patch: Patch & { op: "create" }, xx: XXHashAPI | undefined): FileCursor | undefined | null {
    if (patch.resumeAt !== undefined || patch.file.size > BLOCK_SIZE) return null;
    try {
      const opened = FileCursor.openSmall(patch.file.absolute, patch.file.vpath, this.#cursorOptions, patch.file, xx);
      this.#versionOf.set(opened, patch.file);
      return opened;
    } catch (error) {
      this.#cannotOpen(patch, error);
      return undefined;
    }
  }

  /**
   * The next step waits for `ready` (a cursor to go on with, opened or the one in hand): the machine goes
   * back to "ready", where the client's messages are answered (HUGZ: a client hearing nothing for seconds
   * starts a new session, and a resumed big file is hashed again from its start each time), and is told
   * "dispatch" once it is there. Nothing else is sent meanwhile: the queue's order stands.
   */
  #notReady(ready: Promise<FileCursor | undefined>, vpath: string, inHand?: FileCursor): void {
    const waiting = ready.then(
      (cursor) => {
        if (this.#waiting !== waiting) return void cursor?.close();
        this.#waiting = undefined;
        this.#cursor = cursor;
        this.engine.post("dispatch", undefined, { coalesce: true });
      },
      (error: unknown) => {
        // (Nothing waited for throws today: a fingerprint that fails is undefined. Should one, the file
        // is said unsent and whatever was opened for it closed, not left open and lost.)
        void inHand?.close();
        if (this.#waiting !== waiting) return;
        this.#waiting = undefined;
        this.#unsent(vpath, `cannot send ${vpath}: ${String(error)}`);
        this.engine.post("dispatch", undefined, { coalesce: true });
      },
    );
    this.#waiting = waiting;
    this.#waitingWith = inHand;
    this.#cursor = undefined;
    this.engine.raise("not ready", undefined);
  }
  /** What the next step waits for (see #notReady); a new session or the end forgets it. */
  #waiting: Promise<void> | undefined;
  /** The cursor that step goes on with, when it has one already (its fingerprint is awaited). */
  #waitingWith: FileCursor | undefined;

  /**
   * Forget the step waiting (a new session, the end), closing the file it holds now: left to the wait's
   * end, it stayed open as long as the fingerprint took (a pass over a huge file: minutes), and a client
   * starting session after session in a resume's wait kept one descriptor open each (a review).
   */
  async #forgetWaiting(): Promise<void> {
    const held = this.#waiting !== undefined ? this.#waitingWith : undefined;
    this.#waiting = undefined;
    this.#waitingWith = undefined;
    await held?.close();
  }

  /** The transfer under way: the current cursor, or the one whose next step waits for its fingerprint. */
  #inHand(): FileCursor | undefined {
    return this.#cursor ?? (this.#waiting !== undefined ? this.#waitingWith : undefined);
  }

  /** Open a file to send; undefined if it cannot go now (changed since it was published, gone, unreadable). */
  async #openCursor(patch: Patch & { op: "create" }, plan: TransferPlan): Promise<FileCursor | undefined> {
    try {
      const opened = await FileCursor.open(patch.file.absolute, patch.file.vpath, this.#cursorOptions, plan, patch.file);
      // Closed (dropped, expired) while the file was opening: nobody else will close it.
      if (this.engine.stopped) return void (await opened.close());
      // A partial the client kept is taken up by this transfer, or replaced by it (see #keepPartial): a
      // transfer that stops remembers what the client then keeps, and one refused (the bytes held are not
      // the file's) must not be offered again. (Not forgotten when the file cannot be opened: it changed
      // again, and its next version takes the partial up.)
      this.#keptPartials.delete(patch.file.vpath);
      this.#versionOf.set(opened, patch.file);
      return opened;
    } catch (error) {
      this.#cannotOpen(patch, error);
      return undefined;
    }
  }

  /** The resume or delta of `file` in hand, if any, is refused: the client asked for that file again. */
  #refuseInHand(file: PublishedFile): void {
    const cursor = this.#inHand();
    if (cursor?.vpath === file.vpath && cursor.sendsPart && this.#versionOf.get(cursor) === file) this.#refused = cursor;
  }

  /** A resume or delta being sent that the client has since asked for again, whole or by its partial's blocks (see #queueExisting, #planFor). */
  #refused: FileCursor | undefined;

  /** The published version each cursor sends (to tell a newer one queued for its name from itself queued again). */
  readonly #versionOf = new WeakMap<FileCursor, PublishedFile>();

  /**
   * Is a delete or another version of the file `cursor` sends queued, or has the client refused what it
   * sends (#refused)? (Not the same version asked for again otherwise: that waits its turn.)
   */
  #superseded(cursor: FileCursor): boolean {
    if (cursor === this.#refused) return true;
    const queued = this.#queue.get(cursor.vpath);
    return queued !== undefined && (queued.op === "delete" || queued.file !== this.#versionOf.get(cursor));
  }

  /** Stop sending `cursor`'s file before its end (see FileCursor.abandon); what is queued for its name goes next. */
  async #abandon(cursor: FileCursor): Promise<void> {
    this.#cutShort(cursor, this.#queue.get(cursor.vpath)?.op === "delete");
    const why = cursor === this.#refused ? "the client asked for it again" : "a newer version or its delete is queued";
    this.host.trace?.(`${this.key} ${cursor.vpath}: stopped at ${cursor.sent} bytes, ${why}`);
    await this.#closeCursor();
  }

  /**
   * End the transfer of `cursor`'s file where it stopped (FileCursor.abandon). A plain client (the C
   * reference's) then holds the part it got as if it were the whole file, and cannot be told otherwise:
   * the file is deleted on it, unless its delete goes next anyway (`deleteQueued`). A new version then
   * starts from an empty file, where the reference, which never truncates, would have kept the old tail.
   */
  #cutShort(cursor: FileCursor, deleteQueued: boolean): void {
    const end = cursor.abandon();
    // (Also when nothing of it went: a resume's partial is still the client's, as it was.)
    if (!deleteQueued) this.#keepPartial(cursor);
    if (!end) return;
    this.#sendFrame(end.frame);
    if (!cursor.extensions && !deleteQueued) this.#sendDelete(cursor.vpath);
  }

  #sendDelete(vpath: string): void {
    this.#sendFrame(encode({ id: "CHEEZBURGER", sequence: 0n, operation: Operation.DELETE, filename: vpath, offset: 0n, eof: 0, headers: new Map(), chunk: new Uint8Array(0) }));
  }

  /** Why a file could not be opened to send, handled: looked at again, or said. */
  #cannotOpen(patch: Patch & { op: "create" }, error: unknown): void {
    // Changed since it was published (it is being written again: the mount publishes it again once
    // stable), gone (a delete follows), unreadable, or now leading outside the mount: skip it.
    const code = (error as NodeJS.ErrnoException).code;
    if (error instanceof FileChangedError || code === "ENOENT" || code === "ENOTDIR") {
      // Normally the watcher has seen the change (the new version follows) or the delete (it follows);
      // this makes sure of it (a symlink's target changed, an event was missed, a renamed directory
      // lost track of): the mount looks again, and publishes the file again or sends its delete.
      this.host.recheck?.(patch.file.vpath);
    } else {
      this.#unsent(patch.file.vpath, error instanceof OutsideMountError ? error.message : `cannot send ${patch.file.vpath}: ${code ?? String(error)}`);
    }
  }

  /** The cursor's next frame within our credit (undefined: no credit); null if reading failed (the cursor is dropped). */
  async #next(cursor: FileCursor): Promise<Awaited<ReturnType<FileCursor["next"]>> | null> {
    try {
      return await cursor.next(this.#credit.available);
    } catch (error) {
      this.#unsent(cursor.vpath, `reading ${cursor.vpath} failed: ${(error as NodeJS.ErrnoException).code ?? String(error)}`);
      // (A client of ours copes with a file that just stops: the next one tells it the server moved on.
      // A plain one would write the next file into this one: it is told this one ended, and it is deleted.)
      if (!cursor.extensions) this.#cutShort(cursor, false);
      if (this.#cursor === cursor) this.#cursor = undefined;
      if (this.#refused === cursor) this.#refused = undefined;
      await cursor.close();
      return null;
    }
  }

  /** A file could not be sent to this client: said as a warning, and as an event. */
  #unsent(vpath: string, reason: string): void {
    this.host.warn(reason);
    this.host.unsent?.(this.key, vpath, reason);
  }

  /** A file went out whole: remember what the client now holds, and say so. */
  #finished(cursor: FileCursor): void {
    const { fingerprint, identity, version } = cursor;
    if (fingerprint && !cursor.changed) {
      // (Only where a delta may follow: a file of one block is sent whole.)
      if (identity.size > BLOCK_SIZE) this.#holdings.set(cursor.vpath, { hash: fingerprint.hash, blocks: fingerprint.blocks });
      else this.#holdings.delete(cursor.vpath);
      const file = this.host.file(cursor.vpath);
      // (Only one it hashed itself from what it read: see FileCursor.ownFingerprint.)
      if (file && version && cursor.readFrom !== undefined && cursor.ownFingerprint) this.host.fingerprints.remember(file.absolute, version, fingerprint, cursor.readFrom);
    }
    // A file that changed while it was read went out marked so, to be dropped, or kept to resume (see
    // #keepPartial): not a file sent (its new version follows, and is).
    if (!cursor.changed) {
      this.#keptPartials.delete(cursor.vpath);
      this.#deltasCut.delete(cursor.vpath);
      this.host.sent(this.key, cursor.vpath, "create", cursor.sent);
    } else {
      this.#keepPartial(cursor);
      this.#sendAgain(cursor);
    }
  }

  /**
   * A file that went out marked changed goes again, from the start, if the mount still publishes the very
   * version it was opened as. A new version (size or mtime moved) is published again by the watcher once
   * stable, and replaces it in the queue; opening it meanwhile fails as changed and has the mount look
   * again. But a change of the inode alone (its ctime: chmod, chown, a hard link, an xattr, a tool putting
   * the access time back) is one the watcher never reports: without this the client, which dropped what
   * it got, waited for a version that never came (a review).
   */
  #sendAgain(cursor: FileCursor): void {
    const file = this.host.file(cursor.vpath);
    if (file === undefined || this.#queue.has(cursor.vpath) || !this.wants(cursor.vpath)) return;
    // (Once per version and session: a file that cannot even be stat'ed at its end, ESTALE say, is
    // marked changed every time, and would go again and again. A review.)
    if (file.size === cursor.identity.size && file.mtimeMs === cursor.identity.mtimeMs && !this.#sentAgain.has(file)) {
      this.#sentAgain.add(file);
      this.queue({ op: "create", file });
    } else this.host.recheck?.(cursor.vpath);
  }
  /** Versions sent again by #sendAgain this session. */
  #sentAgain = new WeakSet<PublishedFile>();

  #setCaps(caps: Set<string>): void {
    this.#caps = caps;
    this.#cursorOptions = this.#optionsFor(caps);
  }

  #optionsFor(caps: Set<string>): CursorOptions {
    return {
      chunkSize: this.host.chunkSize,
      readAhead: this.host.readAhead,
      extensions: caps.has(Capability.VERIFY),
      single: caps.has(Capability.VERIFY) && caps.has(Capability.SINGLE),
      // A transfer that finds the background pass still reading its file sends at once and takes the
      // pass's result for its last chunk (the pass runs in a worker thread, faster than we send).
      knownFingerprint: (absolute: string, version: Version) => this.host.fingerprints.lookup(absolute, version),
    };
  }

  #terminate(): void {
    void this.close();
    this.host.forget(this.key);
  }

  // --- helpers -------------------------------------------------------------------------------------

  /** The next file to send: what #queue holds first (changes, deletes, resumes), then the backlog. */
  #peekPatch(): Patch | undefined {
    const queued = this.#queue.values().next().value;
    if (queued) return queued;
    const file = this.#backlogHead();
    return file && { op: "create", file };
  }

  #takePatch(): Patch | undefined {
    this.#requestsAtTake = this.#requests;
    for (const [vpath, patch] of this.#queue) {
      this.#queue.delete(vpath);
      // (The backlog may hold this very version too, for another subscription: it goes once.)
      if (patch.op === "create") this.#sentFromQueue.add(patch.file);
      else this.#noLongerWaiting(patch);
      return patch;
    }
    const file = this.#backlogHead();
    if (!file) return undefined;
    this.#backlogAt++;
    return { op: "create", file };
  }

  /** The backlog's next file still as published (and not queued anew), past any that are not. */
  #backlogHead(): PublishedFile | undefined {
    while (this.#backlogAt < this.#backlog.length) {
      const file = this.#backlog[this.#backlogAt]!;
      if (this.host.file(file.vpath) === file && !this.#sentFromQueue.has(file)) return file;
      this.#backlogAt++;
    }
    if (this.#backlog.length > 0) {
      this.#backlog = [];
      this.#backlogAt = 0;
    }
    return undefined;
  }

  #sendFrame(frame: Buffer): void {
    this.host.send(this.key, this.routingId, FileCursor.stamp(frame, this.#sequence++));
  }

  #send(message: Message): void {
    this.host.send(this.key, this.routingId, encode(message));
  }

  async #closeCursor(): Promise<void> {
    const cursor = this.#cursor;
    this.#cursor = undefined;
    if (this.#refused === cursor) this.#refused = undefined;
    await cursor?.close();
  }
}

/** The first block hashes of `blocks`, as many as a file of `size` bytes has, in a buffer of their own (not a view of a larger one). */
function blocksUpTo(blocks: Buffer, size: number): Buffer {
  const length = Math.min(blocks.length, 8 * Math.ceil(size / BLOCK_SIZE));
  const own = Buffer.allocUnsafeSlow(length);
  blocks.copy(own, 0, 0, length);
  return own;
}

/**
 * A cache value kept until its file is published (#retained), as small as what it says: a SHA-1 as a
 * string of its own, one of ours parsed (block hashes only as many as the version it describes has, and
 * only with the hash a delta needs; a partial's, pblocks, as many as the file has as we saw it),
 * anything else as "" (listed, and not understood: the file goes). The raw value may be 64 KiB of
 * anything (a review).
 */
function retainedEntry(value: string, sizeSeen: number): string | CacheEntry {
  if (isSha1Digest(value)) return Buffer.from(value, "latin1").toString("latin1");
  const entry = parseCacheEntry(value);
  if (!entry) return "";
  const { blocks, pblocks, ...rest } = entry;
  // (Block hashes only as many as the file has as we saw it, not as many as the client says: else one
  // client listing every waiting file with 4 GiB of blocks (32 KiB each) made us keep 32 KiB per file
  // for it, 320 MB for 10,000 small files waiting at a start: a review. A partial's blocks likewise: a
  // client lists them in a subscription after it restarts, and a publisher restarted meanwhile has not
  // yet published the file it resumes.)
  return {
    ...rest,
    ...(blocks !== undefined && entry.hash !== undefined && entry.size !== undefined ? { blocks: blocksUpTo(blocks, Math.min(entry.size, sizeSeen)) } : {}),
    ...(pblocks !== undefined && sizeSeen > 0 ? { pblocks: blocksUpTo(pblocks, sizeSeen) } : {}),
  };
}

/** A reason for SRSLY/RTFM: a 1-octet-length string on the wire, so at most 255 bytes. */
export function reasonOf(arg: EventArg): string {
  let text = "";
  if (typeof arg === "string") text = arg;
  else if (arg instanceof Error) text = arg.message;
  else if (arg && "id" in arg) text = `unexpected ${arg.id}`;
  // (Through UTF-8 either way: a lone surrogate, e.g. an emoji cut in two by whoever made the text, has
  // no UTF-8 form and would make the whole message unsendable; it becomes U+FFFD.)
  const bytes = Buffer.from(text);
  return bytes.length <= 255 ? bytes.toString() : bytes.subarray(0, 252).toString().replace(/\uFFFD$/, "") + "...";
}

/** Is `version` (of a file on disk now) the very version published as `file`? (Size and mtime alone can be those of a look-alike.) */
function isVersionOf(version: Version, file: PublishedFile): boolean {
  return file.ino !== undefined && file.ctimeMs !== undefined && sameVersion(version, { size: file.size, mtimeMs: file.mtimeMs, ctimeMs: file.ctimeMs, ino: file.ino });
}
