// The FileMQ client: one DEALER socket per session, one reader loop and one writer per socket, the
// dialogue in machine.ts, and the inboxes files land in. A session that goes wrong (RTFM, a silent
// server) is dropped with its socket and a new one is opened: the server sees a new routing id, so no
// message of the old session can confuse the new one.

import { EventEmitter } from "node:events";
import { realpath } from "node:fs/promises";
import { basename, dirname, join, resolve } from "node:path";
import { Dealer } from "zeromq";
import { clientDefaults, withDefaults } from "../defaults.js";
import { Engine, type Actions } from "../fsm/engine.js";
import { Turns } from "../fsm/turn.js";
import { BIG_CHUNK, CREDIT_HEDGE, ReceiveWindow } from "../flow/credit.js";
import { cheezburgerBytes, decodeBatch, encode } from "../protocol/codec.js";
import { PROTOCOL_NAME, PROTOCOL_VERSION, Operation, isMessageName, type Cheezburger, type ClientMessage, type Dictionary, type Message, type Srsly } from "../protocol/messages.js";
import { Capability, Header, MAX_UNFINISHED_DELTAS, isVersionTag, SubscribeOption, wireNumber, wireSize, type CacheEntry } from "../protocol/extensions.js";
import { BLOCK_SIZE, type Fingerprint } from "../digest/blocks.js";
import type { DecodeError } from "../protocol/errors.js";
import { covers, normaliseVirtualPath, overlaps, relativeTo } from "../paths.js";
import { hasStrayBytes } from "../raw-names.js";
import { endpointProblem } from "../endpoint.js";
import { Heartbeat } from "./heartbeat.js";
import { copyOutOfBatches, setReceiveBatch } from "./receive-batch.js";
import { buildCache } from "./cache.js";
import { addNewest, setNewest } from "../newest.js";
import { AlreadyHeldError, Inbox, InboxError, NoPartialError, NotDurableError, OutdatedPartialError, PrefixMismatchError, RESUME_MIN_SIZE, UNVERSIONED_MTIME, RefetchError, SMALL_FILE, diskFull, inTheWay, type IncomingFile } from "./inbox.js";
import { isTreeHash, type PartialFile } from "./manifest.js";
import { placer } from "./placer-thread.js";
import { clientMachine, type ClientAction, type ClientEvent, type ClientState } from "./machine.js";
import { HandshakeWatcher, dealerSecurityOptions, type ClientSecurity } from "../security/client-socket.js";
import { monotonic } from "../clock.js";

export interface ClientOptions {
  /** Server endpoint, e.g. "tcp://127.0.0.1:5670". */
  readonly endpoint: string;
  /** Directory files land in (relative to the subscribed path), unless a subscription names its own. */
  readonly inbox: string;
  /** Most bytes granted to the server and not yet received (bounds memory). Default 16 MiB. */
  readonly window?: number;
  /** Credit is granted in multiples of this. Default 1 MiB. */
  readonly slice?: number;
  /**
   * The window while only small files arrive (see ReceiveWindow). Default: 2 MiB (SMALL_WINDOW), or an
   * eighth of `window` if that is more, so that a subscriber far away that raises its window for a long
   * round trip raises this too.
   */
  readonly smallWindow?: number;
  /** HUGZ after this much silence from the server (ms). Default 1000. */
  readonly heartbeatMs?: number;
  /** Start a new session after this much silence (ms). Default 5 heartbeats. */
  readonly timeoutMs?: number;
  /** fsync each file and its directory before reporting it delivered. Default off (like rsync). */
  readonly fsync?: boolean;
  /** Print every state machine step. */
  readonly trace?: (line: string) => void;
  /** CURVE or PLAIN credentials (default: none). */
  readonly security?: ClientSecurity;
}

/** What a flood of small files needs in flight here (measured in ../flow/credit.ts). */
const SMALL_WINDOW = 2 * 1024 * 1024;

export { clientDefaults } from "../defaults.js";

export interface DeliveredEvent {
  /** Path relative to the inbox. */
  readonly path: string;
  /** Virtual path on the server. */
  readonly vpath: string;
  /** Absolute path of the delivered file. */
  readonly file: string;
  readonly size: number;
  /** The server's mtime of the version delivered (ms), when the server said it (our extension). */
  readonly mtime?: number;
  /** File bytes received over the network for it (less than size when resumed or sent as changed blocks). */
  readonly received: number;
}

/** What the client is doing now, for progress displays (read it as often as you like; it is cheap). */
export interface ClientProgress {
  /**
   * The file being received, if any: its path in the inbox, how far through it the transfer is (bytes it
   * has so far; for a delta, the end of the last changed block received: only those cross the wire), its
   * size if known, and whether it comes as changed blocks.
   */
  readonly current?: { readonly path: string; readonly bytes: number; readonly size?: number; readonly delta?: true };
  /** The file delivered last, if any: its path in the inbox and its size (a display shows it done). */
  readonly last?: { readonly path: string; readonly size: number };
  /** Files delivered and deleted, and file bytes received over the wire, since the client started. */
  readonly delivered: number;
  readonly deleted: number;
  readonly bytes: number;
}

export interface DeletedEvent {
  readonly path: string;
  readonly vpath: string;
}

export interface ClientEvents {
  /** A session is open (OHAI-OK). Comes again after every reconnection. */
  connected: [];
  /** The server accepted a subscription (ICANHAZ-OK). Comes again after every reconnection. */
  subscribed: [path: string];
  /**
   * A file is complete at its final path. Said at least once per version: one placed by a run killed
   * before it recorded so is said again at the next start (with `received` 0).
   */
  delivered: [event: DeliveredEvent];
  /**
   * The inbox is about to record deliveries on disk: what is said of those delivered so far must be out
   * first (written, not batched), or a kill could leave a file recorded, so never said again, and unsaid.
   */
  recording: [];
  /** A file was deleted because the server deleted it. */
  deleted: [event: DeletedEvent];
  /** The server refused a subscription (SRSLY: no such path, access denied...); it is dropped. */
  refused: [path: string, reason: string];
  /** The session ended (RTFM, or the server fell silent); the client is already reconnecting. */
  disconnected: [reason: string];
  /** A file or message was refused or failed; the client carries on. Emitted only if listened to. */
  error: [error: Error];
}

interface Subscription {
  readonly path: string;
  readonly inbox: Inbox;
}

type EventArg = Message | DecodeError | string | number | undefined;

/** Why an ICANHAZ goes out: a subscription, one file asked for again from scratch, or a subscription sent again. */
type IcanhazKind = "subscribe" | "refetch" | "resync";

/** Delay before opening socket number n of a run of failures (reset once a subscription is confirmed). */
const RECONNECT_BACKOFF_MS = [0, 100, 250, 500, 1000, 2000];
/** A session that lasted this long after a subscription was confirmed resets the backoff. */
const SESSION_PROVEN_MS = 2000;

/**
 * How far the machine may fall behind the reader (chunk bytes, or messages, waiting to be handled) before
 * the reader waits for it to catch up: our server never has more in flight than the credit window, but
 * the C reference, given the hedge (see CREDIT_HEDGE), sends as fast as it reads its disk, and a reader
 * that never waits would queue all of it in our memory. While the reader waits, libzmq's receive queue
 * fills and TCP pushes back on the server.
 */
const READ_AHEAD_BYTES = 64 * 1024 * 1024;
const READ_AHEAD_MESSAGES = 4096;

/** The caches a server has still to read from us, at most (see #sendHeldBack), in ICANHAZ bytes. */
const ICANHAZ_BYTES_IN_FLIGHT = 32 * 1024 * 1024;

/** Files whose delta was left unfinished remembered at most (see #leftUnfinished). */
const MAX_DELTAS_LEFT = 4096;
/** Names whose full-disk failure is said once (see #firstTimeFull). */
const MAX_FULL_SAID = 10_000;

/** The silence after which a plain FILEMQ server (the C reference's) is given up: its own client expiry (see #knowServer). */
export const PLAIN_SERVER_TIMEOUT_MS = 60_000;

/** Files asked for again (a failed check) and not yet answered, at most. */
const MAX_REFETCHES_WAITING = 256;

/** Names refused for something in their way, remembered per subscription until its next resync, at most. */
export const MAX_BLOCKED_NAMES = 1024;

/** The largest frame we take from a server: its largest chunk (64 MiB, see chunk-size) and headers. */
const MAX_FRAME_BYTES = 65 * 1024 * 1024;
/**
 * Room for a chunk's headers in a frame: no chunk carries more bytes than our window lets the server send
 * at once (ours splits a chunk to its credit; the C reference's are 1,000,000 bytes, within this room
 * whatever the window), so a frame is at most the window and this. Not 65 MiB whatever the window:
 * libzmq may hold RECEIVE_HIGH_WATER_MARK of them for a server that ignores credit while we are busy
 * (256 of 65 MiB were 16 GiB, a review's reading; 64 of 17 MiB at the default window are 1.1 GiB).
 */
const FRAME_HEADROOM = 1024 * 1024;
/**
 * Messages libzmq takes in for us before TCP pushes back on the server: our server never has more in
 * flight than the window (16 chunks of 1 MiB at the default), the C reference, given the hedge, sends as
 * fast as it reads its disk: this bounds what waits for it (64 MB of its 1,000,000-byte chunks).
 */
const RECEIVE_HIGH_WATER_MARK = 64;

export class ClientError extends Error {
  override name = "ClientError";
}

/** The server refused one of our subscriptions (SRSLY to its ICANHAZ; not a refetch's): "refused" is emitted after it. */
export class SubscriptionRefused extends ClientError {
  override name = "SubscriptionRefused";
  constructor(
    readonly path: string,
    readonly reason: string,
  ) {
    super(`subscription to ${path} refused: ${reason}`);
  }
}

export class Client extends EventEmitter<ClientEvents> {
  readonly options: Required<Omit<ClientOptions, "trace" | "security" | "smallWindow">> & Pick<ClientOptions, "trace" | "security" | "smallWindow">;
  readonly #engine: Engine<ClientState, ClientEvent, ClientAction, EventArg>;
  readonly #heartbeat: Heartbeat;
  readonly #handshakes: HandshakeWatcher;
  readonly #window: ReceiveWindow;
  readonly #subscriptions = new Map<string, Subscription>();
  /** Subscriptions (each subscribe() call's own) whose ICANHAZ this session has sent: each goes once. */
  #askedThisSession = new WeakSet<Subscription>();
  /** ICANHAZ sent and not yet answered, in order (the server answers each with ICANHAZ-OK or SRSLY). */
  #awaitingReply: { path: string; kind: IcanhazKind; bytes: number }[] = [];
  /**
   * ICANHAZ not sent yet: they go once the server has answered enough of those before it that the
   * caches it has still to read stay within ICANHAZ_BYTES_IN_FLIGHT.
   */
  #heldBack: { path: string; kind: IcanhazKind; frame: Buffer }[] = [];
  /** Subscriptions to send again, with what we hold, after a disk-full failure: path -> timer. */
  readonly #resyncs = new Map<string, NodeJS.Timeout>();
  /** Disk-full failures since the last delivery (the next resync waits longer). */
  #fullFailures = 0;
  /** Files refused for something in the inbox in their way, this session (the next resync waits longer). */
  #blockedFailures = 0;
  /** Of each subscription, the names refused for something in their way since its last resync. */
  readonly #blockedNames = new Map<string, Set<string>>();
  /** Subscriptions with a disk-full failure since their last resync (which then goes whatever else). */
  readonly #fullSince = new Set<string>();
  #socket: Dealer | undefined;
  /** Ends the pause before a reconnection now (set while it lasts). */
  #stopWaiting: (() => void) | undefined;
  #outgoing: { socket: Dealer; frame: Buffer }[] = [];
  #sending = false;
  /** The transfer under way, with the inbox it was begun in (a subscription made since may route its name elsewhere). */
  #current: { vpath: string; file: IncomingFile; inbox: Inbox } | undefined;
  #totals = { delivered: 0, deleted: 0, bytes: 0 };
  /** The file delivered last (for progress displays). */
  #lastDelivered: DeliveredEvent | undefined;
  /** A transfer we refused (and asked for again whole): its remaining chunks are ignored. */
  #refused: string | undefined;
  #failedOpens = 0;
  /** When this session's first subscription was confirmed (-Infinity once it delivered a file). */
  #confirmedAt: number | undefined;
  /** This session's first NOM (with the hedge) has gone. */
  #hedged = false;
  /**
   * The sequence of the last CHEEZBURGER handled this session: every NOM carries it (see "say how far it
   * has read"). (Our server numbers a session's from 0, so the first handled says nothing new: no matter.)
   */
  #readUpTo = 0n;
  /** When the last NOM went. */
  #nomSentAt = 0;
  readonly #inboxes = new Map<string, Promise<Inbox>>();
  #closed = false;

  constructor(options: ClientOptions) {
    super();
    const heartbeatMs = options.heartbeatMs ?? clientDefaults.heartbeatMs;
    this.options = withDefaults({ ...clientDefaults, timeoutMs: heartbeatMs * 5 }, options);
    const { window, slice } = this.options;
    const small = this.options.smallWindow ?? Math.max(Math.min(window, SMALL_WINDOW), Math.floor(window / 8 / slice) * slice);
    this.#window = new ReceiveWindow(window, slice, Math.max(slice, Math.min(window, small)));
    this.#handshakes = new HandshakeWatcher(this.options.security, (message) => this.#report(new ClientError(message)));
    this.#heartbeat = new Heartbeat(
      { intervalMs: this.options.heartbeatMs, timeoutMs: this.options.timeoutMs },
      () => {
        // Busy (a step under way, or events waiting behind it: a resumed file's prefix hashed again, the
        // held version copied for a delta, seconds per GiB), the machine would take "expired" only after
        // it, and a server hearing nothing for its expiry (60 s) forgets us mid-step: a large resume then
        // began again, and again, and never ended (a review). HUGZ needs no state of ours: sent at once.
        if (this.#engine.busy && this.#engine.state === "connected") return this.#send({ id: "HUGZ" });
        this.#engine.post("expired", undefined, { coalesce: true });
      },
      () => {
        // Silent, or only unheard while we were busy with what it sent (a long step, a backlog): then
        // the server is not lost, we are slow, and the next beat looks again.
        if (this.#engine.busy) return;
        this.#engine.post("server lost", "server is silent");
      },
    );
    const actions: Actions<ClientAction, EventArg> = {
      "open socket and send OHAI": () => this.#openSocket(),
      "start session": () => this.#startSession(),
      "send every subscription": async () => {
        // One that cannot be sent (its inbox unreadable...) is reported; the others go, and the session
        // opens: a throw here would leave the machine in "connecting", starting sessions for ever.
        // (One subscribe() adds meanwhile, while this waits on an inbox, goes here or by its own event, once:
        // see "send ICANHAZ".)
        for (const [path, subscription] of this.#subscriptions) {
          this.#askedThisSession.add(subscription);
          await this.#sendIcanhaz(path).catch((error: unknown) => this.#report(new ClientError(`${path}: cannot subscribe: ${String(error)}`)));
        }
      },
      "store subscription": (arg) => this.#storeSubscription(arg as string),
      "send ICANHAZ": (arg) => {
        // (Not if this very subscription went when the session opened: its subscribe() stored it while
        // that was under way, and its event, queued, comes after. Asked for twice, the server planned it
        // twice and could send a file again: a review.)
        const subscription = this.#subscriptions.get(arg as string);
        if (subscription === undefined || this.#askedThisSession.has(subscription)) return;
        this.#askedThisSession.add(subscription);
        return this.#sendIcanhaz(arg as string);
      },
      "confirm subscription": () => {
        // The session works, if it lasts (see #openSocket).
        this.#confirmedAt ??= monotonic();
        const request = this.#answered();
        if (request?.kind === "subscribe") this.emit("subscribed", request.path);
      },
      "refuse subscription": (arg) => {
        const request = this.#answered();
        const reason = (arg as Srsly).reason || "no reason given";
        // (A refetch refused, one file asked for again: an error for that file, the subscription stands.)
        const subscription = request !== undefined && request.kind !== "refetch";
        const inbox = subscription ? this.#subscriptions.get(request.path)?.inbox : undefined;
        if (subscription) this.#subscriptions.delete(request.path);
        if (!request) this.#report(new ClientError(`the server refused a subscription we had not asked for: ${reason}`));
        else this.#report(subscription ? new SubscriptionRefused(request.path, reason) : new ClientError(`subscription to ${request.path} refused: ${reason}`));
        if (subscription) this.emit("refused", request.path, reason);
        if (subscription && inbox) this.#handBack(request.path, inbox);
      },
      "grant credit": () => {
        const grant = this.#window.refill();
        if (grant === 0) return;
        // The session's first grant carries the hedge that keeps the C reference server out of its
        // credit livelock (see CREDIT_HEDGE); our server takes it off. Flow control against the
        // reference then rests on ZeroMQ's queues (our receive high-water mark).
        const hedge = this.#hedged ? 0n : CREDIT_HEDGE;
        this.#hedged = true;
        this.#sendNom(BigInt(grant) + hedge);
      },
      // Deletes earn no credit, so a long run of them (a tree removed on the server) sends no NOM: while
      // the machine worked through what was read ahead, the server found its pipe to us full and heard
      // nothing of it, and took us for stalled. A NOM of no credit once a heartbeat interval says how far
      // we are; our server counts that as reading. (Not to a server known to be the reference: it ignores
      // the sequence.)
      "say how far it has read": () => {
        if (this.#ourServer !== false && monotonic() - this.#nomSentAt >= this.options.heartbeatMs) this.#sendNom(0n);
      },
      // (Never throws: the row's "grant credit" must follow whatever became of the chunk, whose credit was
      // counted as spent when its processing began. A chunk that failed, and took the server's last credit,
      // left the session waiting for good: a listener of ours that threw, an EIO while a file was dropped; a
      // review. Synchronous when the chunk's processing is: a batch of small files is handled in one turn.)
      "process the chunk": (arg) => {
        this.#readUpTo = (arg as Cheezburger).sequence;
        const failed = (error: unknown) => this.#report(new ClientError(`"process the chunk" failed on CHEEZBURGER: ${String(error)}`));
        try {
          return this.#processChunkOfBatch(arg as Cheezburger)?.catch(failed);
        } catch (error) {
          failed(error);
        }
      },
      "send HUGZ": () => this.#send({ id: "HUGZ" }),
      "report disconnection": (arg) => {
        const reason = typeof arg === "string" ? arg : arg && typeof arg === "object" && "id" in arg && arg.id === "RTFM" ? `server said RTFM${arg.reason ? `: ${arg.reason}` : ""}` : "session lost";
        this.emit("disconnected", reason);
      },
      "report protocol error": (arg) => {
        const what = arg instanceof Error ? arg.message : arg && typeof arg === "object" && "id" in arg ? `unexpected ${arg.id}` : String(arg);
        this.#report(new ClientError(`protocol error from server: ${what}`));
      },
      "leave the session": () => this.#leave(),
      "count what it spent": (arg) => this.#window.received(arg as number),
    };
    this.#engine = new Engine(clientMachine, actions, {
      // "*" catches unexpected protocol messages, never the machine's own internal events.
      isWildcardEvent: isMessageName,
      ...(this.options.trace ? { trace: this.options.trace } : {}),
      onActionError: (error, _state, event, action) => this.#report(new ClientError(`"${action}" failed on ${event}: ${String(error)}`)),
    });
  }

  /**
   * Start: connect and open a session. Subscriptions made before or after are sent once it is open.
   * Throws at once if libzmq refuses the endpoint (bad syntax, unknown transport): no retry could help.
   * (A server that is not there yet is no error: the client keeps trying.)
   */
  connect(): this {
    checkEndpoint(this.options.endpoint);
    this.#heartbeat.start();
    this.#engine.post("connect", undefined);
    return this;
  }

  /**
   * Subscribe to a virtual path ("/" for everything). Files under it land in `inbox` (default: the
   * client's inbox), named relative to the path: subscribing to "/sub" puts "/sub/x.txt" at inbox/x.txt.
   * A file under several subscriptions lands in the most specific one's inbox. Refused (ClientError): a
   * path subscribed already, a path overlapping another's into the same inbox, an inbox inside or around
   * another subscription's (each would have two subscriptions write the same names).
   */
  async subscribe(path: string, inbox?: string): Promise<void> {
    const normalised = subscriptionPath(path);
    // (Not after close(): it opened the inbox, locked it and wrote its journal, and nothing closed it again.)
    if (this.#closed) throw new ClientError(`cannot subscribe to ${normalised}: the client is closed`);
    const directory = inbox ?? this.options.inbox;
    // Checked before the inbox is opened (made, locked, its .fmq written: refused after, an inbox around
    // another's kept a .fmq inside that one for good; a review), against the subscriptions made and those
    // being made (two subscribe() at once saw nothing of each other; a review).
    const claim = { path: normalised, root: await realDirectory(directory) };
    if (this.#closed) throw new ClientError(`cannot subscribe to ${normalised}: the client is closed`);
    const clash = this.#clash(claim);
    if (clash !== undefined) throw new ClientError(clash);
    this.#claims.add(claim);
    try {
      const box = await this.#inbox(directory);
      // (Closed while the inbox opened: told it subscribed, the caller was not; a review.)
      if (this.#closed) throw new ClientError(`cannot subscribe to ${normalised}: the client is closed`);
      this.#subscriptions.set(normalised, { path: normalised, inbox: box });
    } finally {
      this.#claims.delete(claim);
    }
    this.#engine.post("subscribe", normalised);
  }
  /** Subscriptions being made (their inboxes opening): path, and the inbox's real path. */
  readonly #claims = new Set<{ readonly path: string; readonly root: string }>();

  /**
   * Why a subscription to `claim.path` into the directory `claim.root` would tread on another's files, or
   * undefined. The same path twice (the second replaced the first without a word, its inbox left to
   * nothing); overlapping paths into one inbox, which share names ("/x.txt" under "/" and "/sub/x.txt"
   * under "/sub" are both x.txt: each overwrote the other, and a delete of one removed the other's); an
   * inbox inside another's, written by both (a review, each reproduced).
   */
  #clash(claim: { readonly path: string; readonly root: string }): string | undefined {
    const others = [...[...this.#subscriptions.values()].map((other) => ({ path: other.path, root: other.inbox.root })), ...this.#claims];
    for (const other of others) {
      if (other.path === claim.path) return `already subscribed to ${claim.path}`;
      const why =
        other.root === claim.root
          ? overlaps(other.path, claim.path)
            ? `${other.path} goes there too, and their names would clash (subscriptions into one inbox must not overlap)`
            : undefined
          : other.root.startsWith(claim.root + "/")
            ? `the inbox of ${other.path}, ${other.root}, is inside it`
            : claim.root.startsWith(other.root + "/")
              ? `the inbox of ${other.path}, ${other.root}, is around it`
              : undefined;
      if (why !== undefined) return `cannot subscribe to ${claim.path} into ${claim.root}: ${why}`;
    }
    return undefined;
  }

  /**
   * A subscription refused after files under it came (sent under a wider one, which the server answered
   * first, and routed here meanwhile): those names land in the wider one's inbox from now on, where they
   * are not; its subscription goes again, with what it holds, so that they come there (a review: they
   * stayed in the refused one's inbox, never updated or deleted, and missing from the other). What came
   * into the refused one's inbox stays there, as the user's.
   */
  #handBack(refused: string, inbox: Inbox): void {
    let wider: Subscription | undefined;
    for (const sub of this.#subscriptions.values()) if (covers(sub.path, refused) && (!wider || sub.path.length > wider.path.length)) wider = sub;
    if (!wider || this.#engine.state !== "connected") return;
    const came = (held: { readonly vpath: string }) => covers(refused, held.vpath);
    // (Those on their way count too: a whole file the placing thread has not answered for yet has only its
    // placing record, and a file coming in chunks, too small to be recorded as a partial, none; both land
    // in this inbox. Missed, they were not sent again to the wider one: a review.)
    const current = this.#current;
    const coming = [...inbox.manifest.placing.values()].some(came) || (current?.inbox === inbox && covers(refused, current.vpath));
    if (!coming && ![...inbox.manifest.files.values()].some(came) && ![...inbox.manifest.partials.values()].some(came)) return;
    const path = wider.path;
    this.#sendIcanhaz(path, "resync").catch((error: unknown) => this.#report(new ClientError(`${path}: cannot subscribe again: ${String(error)}`)));
  }

  get state(): string {
    return this.#engine.state;
  }

  /**
   * What the inbox holds of the file the server calls `vpath`, as this client delivered it (its size and
   * the server's mtime): undefined if it holds no such file, or not as delivered. (A file held as
   * delivered is not sent again.)
   */
  holds(vpath: string): { readonly size: number; readonly mtime?: number } | undefined {
    const target = this.#route(vpath);
    if (typeof target === "string") return undefined;
    const held = target.sub.inbox.manifest.files.get(target.relative);
    // (Only if it is still there as delivered: one changed in the inbox since is not listed to the server,
    // which sends it again.)
    return held && held.vpath === vpath && target.sub.inbox.stillHeld(target.relative, held.size) ? held : undefined;
  }

  /**
   * Is a version of the file the server calls `vpath` on its way into place now (handed to the placing
   * thread, its answer not back yet)? Meanwhile the file on disk may already be the new version while
   * the manifest still has the record of the one it replaces: what holds() says then is not yet this
   * delivery's.
   */
  placing(vpath: string): boolean {
    const target = this.#route(vpath);
    return typeof target !== "string" && target.sub.inbox.isPlacing(target.relative);
  }

  /** What has been read from the server and waits to be handled: bounded (see READ_AHEAD_BYTES). */
  get backlog(): { readonly messages: number; readonly bytes: number } {
    return { messages: this.#engine.pending, bytes: this.#engine.pendingWeight };
  }

  get progress(): ClientProgress {
    const current = this.#current?.file;
    return {
      ...this.#totals,
      ...(this.#lastDelivered ? { last: { path: this.#lastDelivered.path, size: this.#lastDelivered.size } } : {}),
      ...(current
        ? { current: { path: current.relative, bytes: current.reached, ...(current.identity ? { size: current.identity.size } : {}), ...(current.mode === "delta" ? { delta: true as const } : {}) } }
        : this.#opening
          ? { current: this.#opening }
          : {}),
    };
  }
  /** The transfer being begun (its partial opened, a delta's copy made), for progress. */
  #opening: NonNullable<ClientProgress["current"]> | undefined;

  /** Say KTHXBAI (best effort), stop, and release everything. Never waits on the server. */
  close(): Promise<void> {
    // (Everyone who asks waits for the same closing: a second caller must not go on, e.g. to exit,
    // while the first is still saving.)
    this.#closing ??= this.#close();
    return this.#closing;
  }
  #closing: Promise<void> | undefined;

  async #close(): Promise<void> {
    this.#closed = true;
    for (const timer of this.#resyncs.values()) clearTimeout(timer);
    this.#resyncs.clear();
    this.#heartbeat.stop();
    if (this.#engine.state === "connected") this.#leave();
    this.#engine.stop();
    // With the linger "leave the session" gave it, libzmq flushes the KTHXBAI in the background.
    this.#socket?.close();
    this.#socket = undefined;
    // An action may be under way (a file being opened, written, put in place): it finishes its step
    // first, or what it opens after we let go of everything would leak, and a file it puts in place
    // after the manifest is closed would go unrecorded. Steps wait on the disk, never on the server;
    // the one wait of ours (the pause before reconnecting) is cut short.
    this.#stopWaiting?.();
    await this.#engine.idle();
    await this.#dropCurrent();
    // (Files on their way into place land, and are recorded, before the manifests close.)
    await this.#placedAll();
    for (const inbox of this.#inboxes.values()) (await inbox.catch(() => undefined))?.close();
  }

  // --- actions -------------------------------------------------------------------------------------

  async #openSocket(): Promise<void> {
    // A session that worked (a subscription confirmed) for a while, or delivered a file, was no failure:
    // the next one opens at once. Not on OHAI-OK or ICANHAZ-OK alone: a server that accepts every
    // session, or every subscription, and then answers RTFM had us reconnecting hundreds of times a second.
    if (this.#confirmedAt !== undefined && monotonic() - this.#confirmedAt >= SESSION_PROVEN_MS) this.#failedOpens = 0;
    this.#confirmedAt = undefined;
    const delay = RECONNECT_BACKOFF_MS[Math.min(this.#failedOpens, RECONNECT_BACKOFF_MS.length - 1)]!;
    this.#failedOpens++;
    if (delay > 0) {
      // (Cut short by close(): which waits for the step under way.)
      await new Promise<void>((resolve) => {
        const timer = setTimeout(resolve, delay);
        this.#stopWaiting = () => {
          clearTimeout(timer);
          resolve();
        };
      });
      this.#stopWaiting = undefined;
    }
    if (this.#closed) return;
    this.#socket?.close();
    // What the old socket's reader queued and the machine has not taken yet belongs to the session that
    // is over: a second RTFM would end this new one, an OHAI_OK be taken for its own (a review: a server
    // restarted while a HUGZ and a NOM were on their way answered both with RTFM, and the client said
    // "unexpected OHAI_OK"). (Nothing more comes from that reader: it stops at the socket's change.)
    this.#engine.drop((event) => isMessageName(event) || event === "malformed" || event === "unreadable chunk");
    // (A batch of small files cut short so: the placing lines it announced and did not place are taken
    // back now, not when the next batch comes.)
    this.#batchHandled?.inboxes.forEach((inbox) => inbox.endAnnounced());
    this.#batchHandled = undefined;
    this.#outgoing = [];
    this.#forgetRequests();
    // At most RECEIVE_HIGH_WATER_MARK messages wait in libzmq for us, none bigger than our window lets
    // a server send (FRAME_HEADROOM): libzmq drops a peer that sends more rather than allocate whatever
    // length it announces.
    // Each small message copied out of libzmq's receive batch, so a frame not yet collected holds its own
    // bytes and not the whole batch (receive-batch.ts). Set on the context, before the socket is made.
    copyOutOfBatches();
    // (ipv6: a publisher at tcp://[::1]:port, or a host name with only an IPv6 address, was never reached.)
    const socket = new Dealer({ linger: 0, ipv6: true, receiveHighWaterMark: RECEIVE_HIGH_WATER_MARK, maxMessageSize: Math.min(MAX_FRAME_BYTES, this.options.window + FRAME_HEADROOM), ...dealerSecurityOptions(this.options.security) });
    // Read 256 KiB per recv() instead of 8 KiB: a batch of small files costs libzmq's I/O thread less.
    setReceiveBatch(socket);
    this.#handshakes.watch(socket);
    this.#socket = socket;
    try {
      socket.connect(this.options.endpoint);
    } catch (error) {
      throw new ClientError(`cannot connect to ${this.options.endpoint}: ${(error as Error).message}`);
    }
    void this.#read(socket);
    this.#heartbeat.heard();
    this.#send({ id: "OHAI", protocol: PROTOCOL_NAME, version: PROTOCOL_VERSION });
  }

  async #startSession(): Promise<void> {
    this.#window.reset();
    this.#blockedFailures = 0;
    // (The session's subscriptions go with all we hold: what was refused before comes again, and says
    // again whether it is still refused.)
    this.#blockedNames.clear();
    this.#fullSince.clear();
    this.#askedThisSession = new WeakSet();
    // (A new session's server knows of our partials only what this session's caches list.)
    this.#droppedPartials.clear();
    // (And the resyncs the last session planned for them: this session's subscriptions carry what we hold.
    // Left, one fired into this session with no reason left, and sent a subscription again, whole cache
    // and all, for the server to plan twice: a review.)
    for (const timer of this.#resyncs.values()) clearTimeout(timer);
    this.#resyncs.clear();
    this.#hedged = false;
    this.#readUpTo = 0n;
    // (What was refused of the last session's transfers is not coming: this session's begin afresh.)
    this.#refused = undefined;
    this.#forgetRequests();
    // A file half received in the last session: kept if it can be resumed, else dropped.
    await this.#dropCurrent();
    this.emit("connected");
  }

  #storeSubscription(path: string): void {
    // Stored by subscribe() already (with its inbox); the table keeps this step visible.
    if (!this.#subscriptions.has(path)) throw new ClientError(`unknown subscription ${path}`);
  }

  /**
   * ICANHAZ with what we hold under the path (RESYNC), so the server sends only what we lack, resumes our
   * partial files, and tells us of deletes we missed. "refetch": ask again for one file, from scratch;
   * "resync": a subscription sent again (after a failure), with no "subscribed" event.
   */
  async #sendIcanhaz(path: string, kind: IcanhazKind = "subscribe", listPartial = false): Promise<void> {
    const refetch = kind === "refetch";
    // (Its cache is built with awaits: if a new session begins meanwhile, this request is not for it. Sent
    // on the new socket, the server's answer to it was taken for the answer to that session's first
    // request, and every answer after was matched to the wrong path; a review.)
    const session = this.#requestsSession;
    // A file asked for again once until the server answers; and only so many at once: a server sending
    // file after file that fails its check must not make us hold (and send) a request for each.
    if (refetch) {
      // (ICANHAZ's path is strict UTF-8, as every server reads it: a name that is not cannot be asked for.)
      if (hasStrayBytes(path)) {
        this.#report(new ClientError(`${path}: not asked for again: its name is not UTF-8, and no request can carry it; it comes with the next session`));
        return;
      }
      const waiting = [...this.#awaitingReply, ...this.#heldBack].filter((request) => request.kind === "refetch");
      if (waiting.some((request) => request.path === path)) return;
      if (waiting.length >= MAX_REFETCHES_WAITING) {
        this.#report(new ClientError(`${path}: not asked for again now (${MAX_REFETCHES_WAITING} files asked for again are still unanswered); it comes with the next session`));
        return;
      }
    }
    let cache: Dictionary = new Map();
    if (refetch && listPartial) {
      // A partial of it kept after a refused resume: its blocks' hashes, for the server to resume after
      // those that still match (pblocks). Listed under the file's own name, as a subscription to it would.
      // (Only then: a refetch for another cause, say a third delta refused, must not have the server take
      // a kept partial up by a delta of its own.)
      const route = this.#route(path);
      const blocks = typeof route === "string" ? undefined : await route.sub.inbox.listBlocks(route.relative);
      if (blocks !== undefined) cache = buildCache(new Map([[path.slice(path.lastIndexOf("/") + 1), { pblocks: blocks }]])).cache;
    } else if (!refetch && this.#subscriptions.has(path)) {
      // (Files on their way into place are held once they land: listed as held, not sent again.)
      await this.#placedAll();
      if (session !== this.#requestsSession) return;
      const entries = new Map<string, CacheEntry>();
      // What this client holds under the path, in whichever inbox each name lands now: a narrower
      // subscription's files are in its own inbox (listed from the subscription's inbox alone, they were
      // sent again whole at every session; a review). A record at a name the file would no longer land
      // at (a subscription of another path into this inbox, in an earlier run) is not listed.
      const landsHere = (inbox: Inbox, relative: string, vpath: string): boolean => {
        const route = this.#route(vpath);
        return typeof route !== "string" && route.sub.inbox === inbox && route.relative === relative;
      };
      const inboxes = new Set([...this.#subscriptions.values()].map((subscription) => subscription.inbox));
      for (const inbox of inboxes) {
        for (const [relative, held] of inbox.manifest.files) {
          const name = relativeTo(path, held.vpath);
          if (name === undefined || !landsHere(inbox, relative, held.vpath) || !inbox.stillHeld(relative, held.size)) continue;
          entries.set(name, {
            size: held.size,
            ...(held.mtime !== undefined ? { mtime: held.mtime } : {}),
            ...(held.hash !== undefined ? { hash: held.hash } : {}),
            // (Not the block hashes of a file whose deltas we now refuse, see #leftUnfinished: a server
            // knows only the deltas it cut itself, and one restarted offered a third, refused and said.)
            ...(held.blocks !== undefined && (this.#deltasLeft.get(held.vpath) ?? 0) < MAX_UNFINISHED_DELTAS ? { blocks: Buffer.from(held.blocks, "hex") } : {}),
          });
        }
      }
      for (const inbox of inboxes) {
        for (const [relative, partial] of inbox.manifest.partials) {
          const name = relativeTo(path, partial.vpath);
          if (name === undefined || !landsHere(inbox, relative, partial.vpath)) continue;
          // (One of no version, its resume refused for its prefix, by its blocks, as a refetch lists it:
          // nothing resumes it by its length. Of an earlier run: hashed as the inbox opened.)
          if (partial.mtime === UNVERSIONED_MTIME) {
            const pblocks = await inbox.listBlocks(relative);
            if (pblocks !== undefined) entries.set(name, { ...entries.get(name), pblocks });
            continue;
          }
          const length = await inbox.partialLength(relative);
          if (length < BLOCK_SIZE) continue;
          entries.set(name, { ...entries.get(name), partial: { length, size: partial.size, mtime: partial.mtime, ...(partial.tag !== undefined ? { tag: partial.tag } : {}) } });
        }
      }
      const built = buildCache(entries);
      cache = built.cache;
      if (built.omitted > 0) {
        this.#report(new ClientError(`${path}: ${built.omitted} of the ${entries.size} files held are not listed to the server (too many for one message): they are sent again whole`));
      }
    }
    const options: Dictionary = new Map([
      [SubscribeOption.RESYNC, "1"],
      [SubscribeOption.CAPABILITIES, [Capability.VERIFY, Capability.DELTA, Capability.SINGLE, Capability.BATCH].join(",")],
    ]);
    if (session !== this.#requestsSession) return;
    this.#heldBack.push({ path, kind, frame: encode({ id: "ICANHAZ", path, options, cache }) });
    this.#sendHeldBack();
  }

  /**
   * Send the ICANHAZ held back, in order, while the caches the server has still to read stay within
   * ICANHAZ_BYTES_IN_FLIGHT (always one: a single cache is at most CACHE_MAX_BYTES). A server bounds
   * what it keeps waiting from one client (ours: max-pending-bytes); all of a session's subscriptions
   * sent at once, each with a large cache, would exceed that, and be dropped again at every reconnection.
   */
  #sendHeldBack(): void {
    let inFlight = 0;
    for (const request of this.#awaitingReply) inFlight += request.bytes;
    while (this.#heldBack.length > 0) {
      const next = this.#heldBack[0]!;
      if (this.#awaitingReply.length > 0 && inFlight + next.frame.length > ICANHAZ_BYTES_IN_FLIGHT) return;
      this.#heldBack.shift();
      this.#awaitingReply.push({ path: next.path, kind: next.kind, bytes: next.frame.length });
      inFlight += next.frame.length;
      this.#sendFrame(next.frame);
    }
  }

  /** The server answered the oldest ICANHAZ (ICANHAZ-OK or SRSLY): which it was; the next may go. */
  #answered(): { path: string; kind: IcanhazKind } | undefined {
    const request = this.#awaitingReply.shift();
    this.#sendHeldBack();
    return request;
  }

  /** A new session: no request is waiting for an answer, and none is held back (they are sent again). */
  #forgetRequests(): void {
    this.#awaitingReply = [];
    this.#heldBack = [];
    this.#requestsSession++;
  }
  /** Counts #forgetRequests: a request built across one belongs to a session that is over. */
  #requestsSession = 0;

  /**
   * What the first chunk of a file says of the server: ours sends our headers there (we ask for them);
   * a plain FILEMQ server, the C reference's, does not. That one answers nothing while it computes the
   * SHA-1 of a new file, on its only thread, before it queues it (2.3-3.4 s per GiB): 5 heartbeats are
   * too few for a file of 2 GiB, and a new session loses what it had queued for the old one (it has no
   * resync; an interop review). Against it we wait as long as it waits for us: 60 s, its client expiry.
   * (A server that has sent nothing yet is not known: it gets the usual 5 heartbeats.)
   */
  #knowServer(ours: boolean): void {
    if (ours === this.#ourServer) return;
    this.#ourServer = ours;
    this.#heartbeat.patience(ours ? this.options.timeoutMs : Math.max(this.options.timeoutMs, PLAIN_SERVER_TIMEOUT_MS));
  }
  #ourServer: boolean | undefined;

  /** The file not under any subscription whose chunks are arriving (reported at its first). */
  #outside: string | undefined;

  #processChunk(message: Cheezburger): void | Promise<void> {
    // Count credit for every chunk, wanted or not: otherwise client and server disagree and the
    // transfer stalls (the reference's credit divergence).
    if (message.operation === Operation.CREATE) {
      this.#window.received(message.chunk.length, this.#ofBigFile(message));
      if (message.offset === 0n) this.#knowServer(message.headers.has(Header.SIZE));
    }
    const target = this.#route(message.filename);
    if (typeof target === "string") {
      // Not under any subscription: there is no name in an inbox to report. Said once per file, not once
      // per chunk (the C reference server sends every file of a mount to every subscriber, whatever its
      // path: a thousand errors per GB of files nobody asked for; an interop review), and not counted
      // in what was received.
      if (this.#outside !== message.filename) this.#report(new InboxError(target));
      this.#outside = message.operation === Operation.CREATE && message.eof === 0 ? message.filename : undefined;
      return;
    }
    this.#outside = undefined;
    if (message.operation === Operation.CREATE) this.#totals.bytes += message.chunk.length;
    // Between transfers, a whole small file takes the short synchronous path.
    if (this.#current === undefined && this.#refused === undefined) {
      const handled = this.#receiveWhole(message, target);
      if (handled !== false) return handled;
    }
    return this.#applyChunk(message, target);
  }

  /**
   * A file that came whole in one message (capability "single": eof=1 at offset 0, with our identity
   * headers): verified, written, renamed and recorded without an IncomingFile or a single await, so a
   * batch of small files is handled in one turn. Returns false when the message is anything else (a
   * chunk of a bigger file, a delta, a file that changed while read, an inbox with fsync): the general
   * path takes it.
   */
  #receiveWhole(message: Cheezburger, { sub, relative }: { sub: Subscription; relative: string }): false | undefined | Promise<void> {
    const identity = wholeFile(message, sub.inbox);
    if (identity === undefined) return false;
    // (Another version of this very name still on its way into place: that one lands first.)
    const earlier = sub.inbox.isPlacing(relative) ? sub.inbox.placed() : undefined;
    if (earlier) return earlier.then(() => this.#placeWhole(message, sub, relative, identity));
    return this.#placeWhole(message, sub, relative, identity);
  }

  /** #receiveWhole's file handed over to be put in place; said delivered (or failed) once it is. */
  #placeWhole(message: Cheezburger, sub: Subscription, relative: string, identity: PartialFile): undefined | Promise<void> {
    const vpath = message.filename;
    const session = this.#requestsSession;
    let accepted: boolean;
    try {
      accepted = sub.inbox.receiveWhole(relative, vpath, message.chunk, identity, message.headers.get(Header.HASH), (where) => {
        // (Later, outside the machine's step: what fails here, a listener of the application's, is said
        // as the step would say it, not thrown at the event loop.)
        try {
          if (where instanceof AlreadyHeldError) return;
          if (where instanceof Error) this.#wholeFailed(where, sub, relative);
          else this.#delivered({ path: relative, vpath, file: where, size: identity.size, mtime: identity.mtime, received: identity.size }, session === this.#requestsSession);
        } catch (error) {
          this.#report(new ClientError(`"process the chunk" failed on CHEEZBURGER: ${String(error)}`));
        }
      });
    } catch (error) {
      this.#wholeFailed(error, sub, relative);
      return undefined;
    }
    if (!accepted) {
      this.#report(new InboxError(`${relative}: content does not match the server's hash; fetching it again`, relative));
      return this.#sendIcanhaz(vpath, "refetch");
    }
    // (Bounded: with too much on its way into place, the next message waits for room.)
    return sub.inbox.placingRoom();
  }

  /** A whole small file could not be put in place. */
  #wholeFailed(error: unknown, sub: Subscription, relative: string): void {
    const code = (error as NodeJS.ErrnoException).code;
    if (diskFull(code)) {
      if (this.#firstTimeFull(relative)) this.#report(new InboxError(`${relative}: disk full (${code}); it comes again once there is room`, relative, code));
      this.#resyncLater(sub.path);
    } else {
      this.#report(error instanceof InboxError ? error : new InboxError(`${relative}: ${code ?? String(error)}`, relative));
      // (A directory on its way removed meanwhile: tried again later, as on the other path; it was lost
      // for the session; a review.)
      // (EAGAIN: lost on its way into place, when the placing thread stopped.)
      if (code === "ENOENT" || code === "EAGAIN") this.#resyncLater(sub.path);
      else if (inTheWay(error)) this.#resyncLater(sub.path, "blocked", relative);
    }
  }

  /**
   * Whole small files still on their way into place (#receiveWhole), in any inbox: undefined if none,
   * else a promise that they have landed. A delete, a bigger file, a listing of what is held must find
   * them where they go.
   */
  #placedAll(): Promise<void> | undefined {
    const thread = placer();
    return thread.pending === 0 ? undefined : thread.idle();
  }

  /**
   * Is this chunk a piece of a big file (so the whole credit window is wanted)? A whole file in one
   * message is not. A piece is, by the size our server gives on a transfer's first chunk (a small file
   * may come in pieces when credit is short), or, from a server that gives none, always.
   */
  #ofBigFile(message: Cheezburger): boolean {
    if (message.offset === 0n && message.eof === 1) return false;
    const current = this.#current?.vpath === message.filename ? this.#current.file.identity : undefined;
    const size = identityOf(message.headers, message.filename)?.size ?? current?.size;
    return size === undefined || size >= BIG_CHUNK;
  }

  /** The first message of a batch of small files (one ZeroMQ message, read ahead of handling), and what the batch holds. */
  readonly #batchFirst = new WeakMap<Message, readonly Message[]>();
  /** The batch being handled (the engine handles one at a time, in order): its last message, and the inboxes told of it. */
  #batchHandled: { readonly last: Message; readonly inboxes: readonly Inbox[] } | undefined;

  /** A chunk, announcing its batch when it is the batch's first, and ending it when it is its last. */
  #processChunkOfBatch(message: Cheezburger): void | Promise<void> {
    const batch = this.#batchFirst.get(message);
    if (batch) {
      this.#batchFirst.delete(message);
      const inboxes = this.#announce(batch);
      this.#batchHandled = inboxes.length > 0 ? { last: batch[batch.length - 1]!, inboxes } : undefined;
    }
    const handled = this.#batchHandled;
    if (handled?.last !== message) return this.#processChunk(message);
    this.#batchHandled = undefined;
    const end = () => handled.inboxes.forEach((inbox) => inbox.endAnnounced());
    let done: void | Promise<void> = undefined;
    try {
      done = this.#processChunk(message);
    } finally {
      if (!done) end(); // (handled, or thrown)
    }
    return done?.finally(end);
  }

  /**
   * A batch of small files is about to be handled: the placing lines of those that will take the short
   * path are written now, one write per inbox, before any of them is handled (Manifest.announce). When
   * its first message is handled, not when it is read: the client reads up to thousands of messages
   * ahead. Returns the inboxes told.
   */
  #announce(messages: readonly Message[]): Inbox[] {
    const byInbox = new Map<Inbox, Parameters<Inbox["announce"]>[0][number][]>();
    for (const message of messages) {
      if (message.id !== "CHEEZBURGER") continue;
      const target = this.#route(message.filename);
      if (typeof target === "string") continue;
      const identity = wholeFile(message, target.sub.inbox);
      // (A hash of another form: receiveWhole refuses the file anyway, and a placing line must never say
      // what a reload would take for a garbled manifest.)
      const hash = message.headers.get(Header.HASH);
      if (identity === undefined || !isTreeHash(hash)) continue;
      // (Not a name whose earlier version is still on its way into place: its placing line would stand,
      // in the journal, for that version's, and a kill before that version's record was written would
      // leave it in place unknown (a review). It writes its own line once that version has landed.)
      if (target.sub.inbox.isPlacing(target.relative)) continue;
      let files = byInbox.get(target.sub.inbox);
      if (!files) byInbox.set(target.sub.inbox, (files = []));
      files.push({ relative: target.relative, vpath: message.filename, identity, hash });
    }
    for (const [inbox, files] of byInbox) inbox.announce(files);
    return [...byInbox.keys()];
  }

  /** Any chunk: begin, continue or finish the current transfer, or apply a delete. */
  async #applyChunk(message: Cheezburger, { sub, relative }: { sub: Subscription; relative: string }): Promise<void> {
    const vpath = message.filename;
    // (Whole small files still on their way into place land first: a delete, or a bigger file, of the same
    // name or in the same directory, must find them there.)
    const placing = this.#placedAll();
    if (placing) await placing;
    // The transfer's end: an empty chunk (the reference's) or eof=1 (the spec's).
    const last = message.chunk.length === 0 || message.eof === 1;
    try {
      if (message.operation === Operation.DELETE) {
        if (this.#current?.vpath === vpath) await this.#dropCurrent(false);
        const outcome = await sub.inbox.remove(relative, vpath);
        if (outcome === "deleted") {
          this.#totals.deleted++;
          this.emit("deleted", { path: relative, vpath });
        } else if (outcome === "kept") {
          this.#report(new InboxError(`${relative}: deleted on the server, but changed in the inbox since it was delivered: kept`, relative));
        }
        return;
      }
      if (message.operation !== Operation.CREATE) throw new InboxError(`${relative}: unknown operation ${message.operation}`, relative);
      const offset = Number(message.offset);
      if (!Number.isSafeInteger(offset)) throw new InboxError(`${relative}: offset ${message.offset} out of range`, relative);
      const identity = identityOf(message.headers, vpath);
      const base = message.headers.get(Header.BASE);
      // A new transfer begins with our identity headers on its first data chunk, or at offset 0.
      const begins = (identity !== undefined && !last) || base !== undefined || (offset === 0 && message.chunk.length > 0);
      if (this.#refused !== undefined && (this.#refused !== vpath || begins)) this.#refused = undefined;
      if (this.#refused === vpath) {
        if (last) this.#refused = undefined;
        return;
      }
      let current = this.#current;
      if (current && (current.vpath !== vpath || begins)) {
        // The server moved on to another file (or started this one again): the old one is incomplete.
        if (current.vpath !== vpath) this.#report(new InboxError(`${current.file.relative}: incomplete, server moved on`, current.file.relative));
        await this.#dropCurrent();
        current = undefined;
      }
      if (!current) {
        // (Not one onto a partial we listed: it copies nothing.)
        if (base !== undefined && (this.#deltasLeft.get(vpath) ?? 0) >= MAX_UNFINISHED_DELTAS && sub.inbox.listedBase(relative, base) === 0) {
          throw new RefetchError(`${relative}: a delta of it was begun and left unfinished before; fetching it whole`, relative);
        }
        // (Said to progress while it opens: a delta's copy of the version held, or a resume's prefix read
        // again, takes seconds of a big file, and bytes were counted with no file named; a review.)
        this.#opening = { path: relative, bytes: offset, ...(identity ? { size: identity.size } : {}), ...(base !== undefined ? { delta: true as const } : {}) };
        try {
          current = { vpath, file: await sub.inbox.create(relative, vpath, offset, identity, base), inbox: sub.inbox };
        } finally {
          this.#opening = undefined;
        }
        this.#current = current;
      }
      // A resume's prefix hash (on its first chunk, or a later one when the server's fingerprint of the
      // file came late): the bytes held must be the server's, or the rest would only fail the final check.
      const prefix = message.headers.get(Header.PREFIX);
      if (isTreeHash(prefix)) current.file.checkPrefix(prefix);
      if (message.chunk.length > 0) await current.file.write(message.chunk, offset);
      // The reference client finishes a file on an empty chunk; the spec's signal is eof=1. Accept either.
      // (Recorded in the inbox it was begun in: routed again now, a subscription made meanwhile to a
      // narrower path sent its record to another inbox's manifest, the file itself to this one; a review.)
      if (last) await this.#complete(current, message);
    } catch (error) {
      const code = (error as NodeJS.ErrnoException).code;
      // Out of space: keep what was received (a big file resumes from it once there is room again).
      const full = diskFull(code);
      // (Or it was complete, and could not be put in place: it may have been kept, see IncomingFile.finish.)
      const finishing = this.#finishing?.vpath === vpath ? this.#finishing.file : undefined;
      this.#finishing = undefined;
      const inHand = this.#current?.vpath === vpath ? this.#current : undefined;
      const held = inHand ? inHand.file.length : (finishing?.length ?? 0);
      // (And a resume's partial whose bytes before the offset changed: kept, its blocks listed when the
      // file is asked for again, see PrefixMismatchError. Its bytes are of no version: recorded so (see
      // UNVERSIONED_MTIME), else the next session offered its resume in vain.)
      const mismatch = error instanceof PrefixMismatchError;
      const kept = inHand ? await this.#dropCurrent(full || mismatch) : (finishing?.kept ?? false);
      if (inHand && kept && mismatch) inHand.inbox.manifest.partialStarted(inHand.file.relative, { vpath, size: inHand.file.identity!.size, mtime: UNVERSIONED_MTIME });
      // The rest of this transfer is ignored: one error per failed file, not one per chunk. (Not after its
      // last chunk: nothing of it is left to come, and the next chunk of this name is a new transfer, maybe
      // no more than the end of the file we kept whole, taken up at its last block. A review: ignored, the
      // file never came.)
      if (!last) this.#refused = vpath;
      if (error instanceof AlreadyHeldError) return;
      let failure = error instanceof InboxError ? error : new InboxError(`${relative}: ${code ?? String(error)}`, relative);
      // (Not one in place already, whose directory could not be synced: its own words say that.)
      if (full && !(error instanceof NotDurableError)) failure = new InboxError(`${relative}: disk full (${code}); ${held} bytes received${kept ? ", kept to resume" : ""}`, relative);
      else if (kept && !inHand) failure = new InboxError(`${failure.message}; received whole, kept until it can be put in place`, relative, failure.code);
      // (Quiet: a try at an earlier version's partial that did not match, or a resume offered of a partial
      // we dropped while the server counted on it, our refusal and its offer crossing: the file comes
      // whole, as asked, and nothing is wrong.)
      // (The mark silences one such offer: a second is not a crossing.)
      const crossed = error instanceof NoPartialError && this.#droppedPartials.delete(vpath);
      const quiet = error instanceof OutdatedPartialError || crossed;
      // (A partial whose blocks we listed, taken up by a resume, is of no version we recorded: its
      // mismatch, a resume offered before the server read our list, is an OutdatedPartialError, quiet.)
      if (!quiet && (!full || this.#firstTimeFull(relative))) this.#report(failure);
      if (error instanceof RefetchError) await this.#sendIcanhaz(vpath, "refetch", mismatch && kept);
      // (ENOENT: the inbox's .fmq, or the whole inbox, removed under us and the file with it; asked for again
      // as after a full disk. The next file makes them again, but this one never came until a restart: a
      // review, 3 runs of 3.)
      if (full || code === "ENOENT") this.#resyncLater(sub.path);
      else if (inTheWay(error)) this.#resyncLater(sub.path, "blocked", relative);
    }
  }

  /** The last chunk arrived: verify, rename into place, record, report; or discard and ask again. */
  async #complete(current: { vpath: string; file: IncomingFile; inbox: Inbox }, message: Cheezburger): Promise<void> {
    this.#current = undefined;
    const { file, inbox } = current;
    if (message.headers.get(Header.STATUS) === "changed") {
      // The file changed while the server read it: what we have may mix two versions, and the new version
      // follows. Kept if it can be resumed: a file growing or written in place while it came resumes where
      // its bytes still match (checked by X-FMQ-Prefix). Dropped, it came from byte 0 at every change, and
      // a big one that changed faster than it came never came. (A delta so ended cost a copy of the whole
      // version held, as one left unfinished: counted, or a server ending each delta so had us copy it
      // again and again; a review.)
      await this.#keepOrDrop(current);
      return;
    }
    const expected = message.headers.get(Header.HASH);
    let fingerprint: Fingerprint | undefined;
    try {
      // (Resumed from an earlier version's partial: likewise. A review.)
      if (file.ofEarlierVersion && expected === undefined) throw new RefetchError(`${file.relative}: resumed from an earlier version, and no hash to check it by; fetching it whole`, file.relative);
      // A delta is a few blocks on top of what we hold: only the whole file's hash says the result is right.
      if (file.mode === "delta" && expected === undefined) throw new RefetchError(`${file.relative}: a delta without the file's hash; fetching it whole`, file.relative);
      // (Nor is the size it ends at known without X-FMQ-Size: recorded as what the delta sent, the file
      // was never listed as held again, and a delete of it was answered "kept". A review.)
      if (file.mode === "delta" && file.identity === undefined) throw new RefetchError(`${file.relative}: a delta without the file's size; fetching it whole`, file.relative);
      // Ended short of the size the server gave (a chunk past it is refused as it comes): recorded at the
      // length it ended, it was delivered as the server's version of that size (a review).
      if (file.mode !== "delta" && file.identity && file.length !== file.identity.size) {
        throw new RefetchError(`${file.relative}: ended at ${file.length} bytes, not the ${file.identity.size} the server said; fetching it again`, file.relative);
      }
      fingerprint = expected !== undefined || file.identity ? await file.fingerprint() : undefined;
    } catch (error) {
      await file.abandon();
      inbox.manifest.partialDropped(file.relative);
      // A delta that ends without a hash, or short, cost a copy of the whole version held: as one left
      // unfinished does (a review: ending each delta so, a server had us copy it again and again).
      if (file.copiedHeldVersion) this.#leftUnfinished(current.vpath);
      throw error;
    }
    if (expected !== undefined && fingerprint?.hash !== expected) {
      await file.abandon();
      inbox.manifest.partialDropped(file.relative);
      if (file.copiedHeldVersion) this.#leftUnfinished(current.vpath);
      // (Not said of a resume from an earlier version's partial that no prefix checked: its bytes being
      // another version's is how such a try ends, see OutdatedPartialError.)
      if (!file.earlierPrefixUnchecked) this.#report(new InboxError(`${file.relative}: content does not match the server's hash; fetching it again`, file.relative));
      await this.#sendIcanhaz(current.vpath, "refetch");
      return;
    }
    const size = file.mode === "delta" ? file.identity!.size : file.length;
    const mtime = file.identity?.mtime;
    // This very version is here already (see Inbox.holds; the same as #placeWhole's small files): its copy
    // goes, and nothing is placed or said.
    if (file.mode !== "delta" && fingerprint && mtime !== undefined && inbox.holds(file.relative, current.vpath, { size, mtime }, fingerprint.hash)) {
      await file.abandon();
      inbox.manifest.partialDropped(file.relative);
      return;
    }
    const blocks = fingerprint && fingerprint.blocks.length > 8 && fingerprint.blocks.length <= 8 * 4096 ? fingerprint.blocks.toString("hex") : undefined;
    const entry = {
      vpath: current.vpath,
      size,
      ...(mtime !== undefined ? { mtime } : {}),
      ...(fingerprint ? { hash: fingerprint.hash } : {}),
      ...(blocks !== undefined ? { blocks } : {}),
    };
    // Recorded before the rename, so that a kill in between cannot leave it in place unknown.
    try {
      inbox.manifest.aboutToPlace(file.relative, entry);
      // (--fsync: its placing line on disk before the rename, or a power loss could leave it in place unknown.)
      if (inbox.manifest.durable) await inbox.manifest.synced();
    } catch (error) {
      // (A full disk, most likely: the file waits, resumable, for the next try; its handle is closed.)
      inbox.manifest.unplaced(file.relative);
      await inbox.suspend(file);
      throw error;
    }
    try {
      this.#finishing = current;
      await file.finish();
      this.#finishing = undefined;
    } catch (error) {
      // In place but not made durable (its directory's fsync failed): it is there, so the manifest says
      // so (else a delete could never reach it); the failure is still reported, and no "delivered".
      if (file.placed) inbox.manifest.delivered(file.relative, entry);
      else inbox.manifest.unplaced(file.relative);
      throw error;
    }
    inbox.manifest.delivered(file.relative, entry);
    this.#deltasLeft.delete(current.vpath);
    this.#droppedPartials.delete(current.vpath);
    this.#delivered({ path: file.relative, vpath: current.vpath, file: file.finalPath, size, ...(mtime !== undefined ? { mtime } : {}), received: file.received });
  }

  /** The file whose finish is under way (or just failed). */
  #finishing: { vpath: string; file: IncomingFile } | undefined;

  /**
   * Say a file failed for a full disk only the first time while the disk stays full: each retry failed
   * again and said so again (a review: 1,000 lines in 18 s for 200 files). Forgotten once a file is
   * delivered (there was room again). Bounded: past MAX_FULL_SAID names, the rest are said each time.
   */
  #firstTimeFull(relative: string): boolean {
    if (this.#fullSaid.has(relative)) return false;
    if (this.#fullSaid.size < MAX_FULL_SAID) this.#fullSaid.add(relative);
    return true;
  }
  readonly #fullSaid = new Set<string>();

  /** A file is in place and recorded (either way in): counted, kept for progress, and said. */
  #delivered(event: DeliveredEvent, thisSession = true): void {
    this.#totals.delivered++;
    this.#lastDelivered = event;
    // (A file of an earlier session landing now, from the placing thread, says nothing of this one.)
    if (thisSession) this.#confirmedAt = -Infinity;
    this.#fullFailures = 0;
    this.#fullSaid.clear();
    this.emit("delivered", event);
  }

  /**
   * A file failed for want of space: send its subscription again later, with what we hold, so it (and
   * any other that failed) comes once there is room, a big one resumed from its partial file. 5 s after
   * the first failure, doubling up to a minute while they go on; a reconnection does the same at once.
   */
  #resyncLater(path: string, why: "full" | "blocked" = "full", relative?: string): void {
    if (why === "full") this.#fullSince.add(path);
    else if (relative !== undefined) {
      // (At most MAX_BLOCKED_NAMES a subscription: a server sending file after file under a name that is a
      // file here made the set grow with every one, and each look at them walk every name: a review. Those
      // kept stand for the rest: once one of them is clear, the subscription goes again.)
      const names = this.#blockedNames.get(path) ?? new Set();
      if (names.size < MAX_BLOCKED_NAMES) this.#blockedNames.set(path, names.add(relative));
    }
    if (this.#resyncs.has(path) || this.#closed) return;
    // (Blocked: by something of the user's in the inbox, which they may remove at any time; other files
    // delivered meanwhile say nothing of it, so its backoff is its own, and starts again with a session.)
    const failures = why === "full" ? this.#fullFailures++ : this.#blockedFailures++;
    const delay = Math.min(60_000, 5_000 * 2 ** Math.min(failures, 4));
    const timer = setTimeout(() => {
      this.#resyncs.delete(path);
      const sub = this.#subscriptions.get(path);
      if (this.#engine.state !== "connected" || !sub) return;
      // Every file refused only for something still in its way: asking again would have the server send
      // each again, and a big one kept whole be read through again to resume it (a review: 50 GB read
      // once a minute while a directory of that name stayed). Looked at again later instead.
      const names = this.#blockedNames.get(path);
      if (!this.#fullSince.has(path) && names !== undefined && [...names].every((name) => sub.inbox.stillInTheWay(name))) {
        return this.#resyncLater(path, "blocked");
      }
      this.#fullSince.delete(path);
      this.#blockedNames.delete(path);
      this.#sendIcanhaz(path, "resync").catch((error: unknown) => this.#report(new ClientError(`${path}: cannot subscribe again: ${String(error)}`)));
    }, delay);
    this.#resyncs.set(path, timer);
  }

  /**
   * A KTHXBAI on the socket we are about to replace or close, best effort: sent now if libzmq will take
   * it at once (never waiting, never queued behind our writer), and given 100 ms of linger when the
   * socket is closed. A server that is gone costs nothing; one that is alive drops the session at once.
   */
  #leave(): void {
    const socket = this.#socket;
    if (!socket || socket.closed) return;
    socket.linger = 100;
    if (this.#sending) return; // a send is in flight on it (zeromq.js allows one): it is stuck anyway
    try {
      socket.sendTimeout = 0;
      socket.send(encode({ id: "KTHXBAI" })).catch(() => undefined);
    } catch {
      // EBUSY or closed: the server will expire the session instead.
    }
  }

  // --- helpers -------------------------------------------------------------------------------------

  /** Which subscription a file belongs to (the most specific), and its name below it; or why not. */
  #route(vpath: string): { sub: Subscription; relative: string } | string {
    let best: Subscription | undefined;
    for (const sub of this.#subscriptions.values()) {
      if (covers(sub.path, vpath) && (!best || sub.path.length > best.path.length)) best = sub;
    }
    if (!best) return `refused "${vpath.slice(0, 200)}": not under any subscription`;
    const relative = relativeTo(best.path, vpath);
    if (relative === undefined) return `refused "${vpath.slice(0, 200)}"`;
    // (Said of the name the server sent: below "/sub", "/sub//x" was "refused "/x": absolute name", a review.)
    if (vpath.includes("//")) return `refused "${vpath.slice(0, 200)}": empty path segment`;
    return { sub: best, relative };
  }

  /**
   * Stop receiving the current file: keep its partial file if it can be resumed later, else remove it.
   * Not one of less than a block: a resume starts at the last whole block, so it would start from
   * nothing (and a server that began 40,000 files of "2^40 bytes" with a byte each and moved on left
   * 40,000 files in .fmq/partial, 163 MB of disk, a review).
   */
  async #dropCurrent(keep = true): Promise<boolean> {
    const current = this.#current;
    this.#current = undefined;
    if (!current) return false;
    return this.#keepOrDrop(current, keep);
  }

  /** Keep `current`'s partial file if it can be resumed (and `keep`), else remove it; says whether it was kept. */
  async #keepOrDrop(current: { vpath: string; file: IncomingFile; inbox: Inbox }, keep = true): Promise<boolean> {
    const { file } = current;
    // A delta left unfinished counts so (see #leftUnfinished) even when what it reached is kept.
    if (file.copiedHeldVersion) this.#leftUnfinished(current.vpath);
    // (In the inbox it was begun in, whatever its name routes to now.)
    if (keep && file.identity && file.identity.size >= RESUME_MIN_SIZE && file.prefixHeld >= BLOCK_SIZE) {
      try {
        this.#droppedPartials.delete(current.vpath);
        await current.inbox.suspend(file);
        // (A delta's copy is recorded as a partial of the version it was making only now: it was the
        // version held until it was cut where its blocks reached.)
        if (file.mode === "delta") current.inbox.manifest.partialStarted(file.relative, file.identity);
        return true;
      } catch {
        // (Not cut where it should be: not kept.)
      }
    }
    await file.abandon();
    // Its partial file is gone: so is the manifest's note of it (else it stayed there for good).
    current.inbox.manifest.partialDropped(file.relative);
    // (A server of ours may offer to resume it, not knowing: see #droppedPartials.)
    if (file.identity && file.identity.size >= RESUME_MIN_SIZE) addNewest(this.#droppedPartials, current.vpath, MAX_DELTAS_LEFT);
    return false;
  }
  /**
   * Files whose partial we dropped (refused, failed) where the server may take it as kept (see
   * RESUME_MIN_SIZE): a resume of one that comes meanwhile finds nothing, and is fetched whole without a
   * word, once. Forgotten when the file comes, a partial of it is kept again, or a session begins.
   * Bounded as #deltasLeft.
   */
  readonly #droppedPartials = new Set<string>();

  /**
   * A delta begins with a copy of the whole version we hold, made for a chunk of a few bytes: a server
   * that begins deltas of a file and never finishes them (an audit: 40 such chunks, 2,920 bytes, made a
   * subscriber write 10 GiB) would have us copy it again and again. So a file whose deltas were left
   * unfinished MAX_UNFINISHED_DELTAS times comes whole from then on (whole, it costs the server credit),
   * until it is delivered. Not after the first: a publisher killed and started again, or a file changed
   * again while its delta came, begins a delta again, and 60 MiB changed in 300 came whole (a review).
   */
  #leftUnfinished(vpath: string): void {
    // (Bounded: the oldest is forgotten first.)
    setNewest(this.#deltasLeft, vpath, (this.#deltasLeft.get(vpath) ?? 0) + 1, MAX_DELTAS_LEFT);
  }
  /** Files whose deltas were left unfinished, and how many times (see #leftUnfinished). */
  readonly #deltasLeft = new Map<string, number>();

  /** One Inbox (and so one manifest) per directory, however many subscriptions share it. */
  #inbox(directory: string): Promise<Inbox> {
    const key = resolve(directory);
    let inbox = this.#inboxes.get(key);
    if (!inbox) {
      inbox = Inbox.open(directory, {
        fsync: this.options.fsync,
        problem: (message) => this.#report(new InboxError(`${directory}: ${message}`)),
        beforeRecording: () => this.emit("recording"),
      });
      inbox.then(
        (opened) => {
          for (const found of opened.takeRecovered()) this.#delivered({ path: found.relative, vpath: found.vpath, file: found.file, size: found.size, ...(found.mtime !== undefined ? { mtime: found.mtime } : {}), received: 0 });
        },
        () => this.#inboxes.delete(key),
      );
      this.#inboxes.set(key, inbox);
    }
    return inbox;
  }

  #report(error: Error): void {
    if (this.listenerCount("error") > 0) this.emit("error", error);
  }

  /** NOM: `credit` more, and the sequence of the last chunk handled (as the reference client sends it). */
  #sendNom(credit: bigint): void {
    this.#send({ id: "NOM", credit, sequence: this.#readUpTo });
    this.#nomSentAt = monotonic();
  }

  #send(message: ClientMessage): void {
    this.#sendFrame(encode(message));
  }

  #sendFrame(frame: Buffer): void {
    const socket = this.#socket;
    if (!socket || socket.closed) return;
    this.#outgoing.push({ socket, frame });
    void this.#pump();
  }

  /** The one writer: zeromq.js allows a single send in flight per socket. */
  async #pump(): Promise<void> {
    if (this.#sending) return;
    this.#sending = true;
    try {
      let item = this.#outgoing.shift();
      while (item) {
        if (!item.socket.closed) await item.socket.send(item.frame).catch(() => undefined);
        item = this.#outgoing.shift();
      }
    } finally {
      this.#sending = false;
    }
  }

  async #read(socket: Dealer): Promise<void> {
    try {
      // (Messages already queued come without a turn of the event loop: see Turns.)
      const turns = new Turns();
      for await (const frames of socket) {
        if (turns.due) await turns.turn();
        if (socket !== this.#socket) break;
        this.#heartbeat.heard();
        // Several frames: a batch of small files (we said "batch"), each frame one CHEEZBURGER.
        const result = decodeBatch(frames);
        if (result.ok && result.messages.length > 1) this.#batchFirst.set(result.messages[0]!, result.messages);
        // Weighed by what each message holds in memory, its frame: a chunk's bytes alone would let a server
        // queue 4,096 messages of empty chunks and 65 MiB of headers each while we are busy.
        if (result.ok) result.messages.forEach((message, i) => this.#engine.post(message.id, message, { weight: frames[i]?.length ?? 0 }));
        else {
          // (Said unless it is noise to ignore, as a frame without our signature is. Counted whatever it is:
          // a batch whose last frame had no signature was dropped in silence, its chunks' credit lost
          // with it, and the session could stall for want of credit; a review.)
          if (result.error.reply !== "discard") this.#engine.post("malformed", result.error);
          const spent = cheezburgerBytes(frames);
          if (spent > 0) this.#engine.post("unreadable chunk", spent);
        }
        if (this.#engine.pendingWeight >= READ_AHEAD_BYTES || this.#engine.pending >= READ_AHEAD_MESSAGES) {
          // The machine is that far behind: let it catch up by a quarter before reading more. (Not all the
          // way: the socket went unread for as long as 4,096 messages took, deletes at a few ms each under
          // load, 15 s and more, and the server's kernel closed the connection, our receive window shut for
          // twice its peer timeout; or the server dropped us for not reading, its pipe full all that time.)
          await this.#engine.below((READ_AHEAD_MESSAGES * 3) / 4, (READ_AHEAD_BYTES * 3) / 4);
          this.#heartbeat.heard();
        }
      }
    } catch {
      // The socket was closed under us: a new session has its own reader.
    }
  }
}

/** A path one may subscribe to, normalised; throws a ClientError for any other (checked by the command line before it connects). */
export function subscriptionPath(path: string): string {
  const normalised = normaliseVirtualPath(path);
  if (normalised === undefined) throw new ClientError(`invalid path "${path}": must start with "/" and contain no empty, "." or ".." segments`);
  return normalised;
}

/** Throws a ClientError if libzmq refuses to connect to `endpoint`, as found by a socket that is closed at once. */
export function checkEndpoint(endpoint: string): void {
  const problem = endpointProblem(endpoint, "connect");
  if (problem) throw new ClientError(`cannot connect to ${endpoint}: ${problem}`);
  const probe = new Dealer({ linger: 0, ipv6: true });
  try {
    probe.connect(endpoint);
  } catch (error) {
    throw new ClientError(`cannot connect to ${endpoint}: ${(error as Error).message}`);
  } finally {
    probe.close();
  }
}

/**
 * A small file whole in one message (capability "single": eof=1 at offset 0, our identity headers, all
 * its bytes), for an inbox without fsync: its identity; undefined for anything else (a chunk of a bigger
 * file, a delta, a file that changed while read), which takes the general path.
 */
function wholeFile(message: Cheezburger, inbox: Inbox): PartialFile | undefined {
  if (message.operation !== Operation.CREATE || message.offset !== 0n || message.eof !== 1 || inbox.fsyncs) return undefined;
  const identity = identityOf(message.headers, message.filename);
  if (identity === undefined || identity.size !== message.chunk.length || identity.size > SMALL_FILE) return undefined;
  if (message.headers.has(Header.BASE) || message.headers.get(Header.STATUS) === "changed") return undefined;
  return identity;
}

/** The server's identity headers (our extension) on a chunk, if present and sane. */
function identityOf(headers: Dictionary, vpath: string): PartialFile | undefined {
  // (Numbers as we write them: Number() alone took "1e300" for an mtime, kept and sent back in our cache,
  // where the server refuses it, so the file came again at every session; " 12" and "0x10" for sizes.)
  const size = wireSize(headers.get(Header.SIZE));
  const mtime = wireNumber(headers.get(Header.MTIME), true);
  if (size === undefined || mtime === undefined) return undefined;
  // (A tag we cannot keep safely is as good as none: the final hash check is there either way.)
  const tag = headers.get(Header.VERSION);
  return { vpath, size, mtime, ...(isVersionTag(tag) ? { tag } : {}) };
}

/**
 * The real path `directory` has, or will have once made: that of its nearest ancestor that exists, with
 * the rest of the names after it. (An inbox is made when first subscribed into.)
 */
async function realDirectory(directory: string): Promise<string> {
  const rest: string[] = [];
  for (let at = resolve(directory); ; at = dirname(at)) {
    const real = await realpath(at).catch(() => undefined);
    if (real !== undefined) return join(real, ...rest.reverse());
    if (dirname(at) === at) return resolve(directory);
    rest.push(basename(at));
  }
}
