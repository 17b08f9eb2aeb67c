// The FileMQ server: one ROUTER socket, one reader loop, one writer (the outbox), one state machine per
// routing id, and the mounts that feed them files. Nothing a peer sends can stop it: a message that does
// not decode is discarded or answered RTFM for that peer alone.

import { EventEmitter } from "node:events";
import { Router } from "zeromq";
import { MAX_CHUNK_SIZE, MAX_PEER_TIMEOUT_MS, clientDefaults, serverDefaults, withDefaults } from "../defaults.js";
import { DraftOption, setDraftOption } from "../zmq-draft.js";
import { decodeFrames } from "../protocol/codec.js";
import { encode } from "../protocol/codec.js";
import { covers, overlaps } from "../paths.js";
import { Mount, type PublishedFile } from "../mount/mount.js";
import { Connection, reasonOf, type ConnectionHost, type GoneNames } from "./connection.js";
import { nestingProblem } from "../mount/nesting.js";
import { Outbox } from "./outbox.js";
import { Fingerprints } from "./fingerprints.js";
import { ServerSecurity, type ServerSecurityOptions } from "../security/server-security.js";
import { endpointProblem } from "../endpoint.js";
import { Turns } from "../fsm/turn.js";
import { mergedNomCredit } from "../flow/credit.js";
import type { Nom } from "../protocol/messages.js";
import { monotonic } from "../clock.js";

/** A peer without a session that sends garbage is answered (RTFM) and logged this often a minute, at most. */
const STRANGER_ANSWERS = 16;
/** Answers a second to all peers without a session together, once too many of them are remembered. */
const CROWDED_ANSWERS_PER_SECOND = 200;
const STRANGER_MINUTE_MS = 60_000;
/** Such peers remembered at most; past that, garbage from new ones is dropped unanswered. */
const MAX_STRANGERS = 1024;

export interface ServerOptions {
  /** Payload bytes per CHEEZBURGER. 1 MiB: the bare zeromq.js pipe here was fastest at 1-4 MiB. */
  readonly chunkSize?: number;
  /** Chunks read ahead of the one being sent, per file. */
  readonly readAhead?: number;
  /** A file is shipped once its size and mtime have not changed for this long (ms). */
  readonly stableMs?: number;
  /**
   * Fingerprint files of 1 MiB or more in the background as they are published, so that sending them
   * costs no hashing (every file is read once more at publish). Off: each transfer hashes what it reads.
   */
  readonly hashAhead?: boolean;
  /** A client silent this long (ms) is forgotten. Our client sends HUGZ every second when idle. */
  readonly expiryMs?: number;
  /**
   * A connection that has sent nothing for this long (ms), not even libzmq's answer to a ZMTP PING, is
   * closed by libzmq (ZMTP heartbeats, a PING every third of it). A peer frozen with its TCP connection
   * open (SIGSTOP, a hung machine) otherwise keeps its pipe full of our chunks, and the kernel's socket
   * buffers, for as long as it stays frozen: its kernel still acknowledges, so TCP never gives up. A live
   * peer is never cut: its libzmq answers PINGs on its own I/O thread, however busy the program.
   */
  readonly peerTimeoutMs?: number;
  /** Most clients at once; more are answered RTFM. */
  readonly maxClients?: number;
  readonly maxSubscriptions?: number;
  /** Most messages waiting in our memory for one client. */
  readonly maxQueuedMessages?: number;
  /**
   * Most changed files (new versions, deletes) waiting for one client; past it, its session ends with
   * RTFM "too far behind" and our client subscribes again. Default MAX_QUEUED_CHANGES ([limits]
   * max-queued-changes).
   */
  readonly maxQueuedChanges?: number;
  /** Largest message we accept from a client (libzmq drops the connection beyond it). */
  readonly maxMessageSize?: number;
  /** Most messages from one client waiting to be handled; a client that sends more is dropped (RTFM). */
  readonly maxPendingMessages?: number;
  /**
   * Most bytes of messages from one client waiting to be handled (ICANHAZ caches are the big ones: a
   * client that piles them up while we send it files is dropped, RTFM, rather than held in memory; ours
   * keeps at most 32 MiB of them unanswered). At least max-message-size.
   */
  readonly maxPendingBytes?: number;
  /**
   * Most bytes of messages from all clients together waiting to be handled; beyond it the client with the
   * most waiting is dropped (RTFM), then the next, until it is not. At least max-message-size.
   */
  readonly maxPendingTotalBytes?: number;
  /** Most replies waiting for one client that does not read them; beyond this it is dropped. */
  readonly maxOutgoingMessages?: number;
  /**
   * Memory we may hold, across all clients, for clients that have stopped reading (each counted at the
   * most one can make us hold); beyond it, those stopped longest are dropped.
   */
  readonly maxStalledBytes?: number;
  /** CURVE or PLAIN, and who may read what (default: none, anyone reads everything). */
  readonly security?: ServerSecurityOptions;
  /** Print every state machine step. */
  readonly trace?: (line: string) => void;
}

export { serverDefaults } from "../defaults.js";

/**
 * Messages libzmq holds for one client before a send to it fails with EAGAIN (its pipe is full): a
 * client's default window of chunks (each message of ours is at most a chunk), 4 to 64 of them. An honest
 * client never has more unread than its window, so this does not slow it; one that grants a lot of
 * credit and stops reading pins no more than that. (64 chunks whatever their size let each of 40 such
 * clients pin 64 MiB: the publisher grew to 2.3 GB, a review.)
 */
function sendHighWaterMark(chunkSize: number): number {
  return Math.min(64, Math.max(4, Math.ceil(clientDefaults.window / chunkSize)));
}

/**
 * Messages libzmq reads ahead from one client before it stops reading that connection (the client's
 * sends then wait in TCP: back-pressure, nothing lost). libzmq's default, 1,000, let one client make us
 * hold 1,000 frames of up to max-message-size each: a review sent ICANHAZ frames of 16 MiB that take
 * 0.14 s each to decode (400,000 dictionary entries), faster than we decoded them, and the publisher grew
 * from 71 MB to 6 GB in 29 s, one connection, no login needed. Now one client holds at most this many
 * (plus the one being read). Our messages from a client are small and read at once (a NOM per slice of
 * its window, a HUGZ a second), so this never slows an honest one.
 */
const RECEIVE_HIGH_WATER_MARK = 4;

/**
 * A client whose pipe has stayed full this long, no message going out to it, has stopped reading. Not
 * less: libzmq makes room in a full pipe only once the reader has taken half of it (8 chunks of 1 MiB),
 * so a reader slower than that in this time looks stalled too (a review: at 1 s, a 100 Mbit/s link).
 */
const STALLED_MS = 5000;

/**
 * A client dropped for not reading is counted as still connected (see Server.#dropped) until its close is
 * reported, or for this many times peer-timeout-ms plus DROPPED_FORGET_MS at most: the kernel closes it
 * at twice peer-timeout-ms after it stopped taking our data (TCP_MAXRT), or it is reading again.
 */
const DROPPED_FORGET_FACTOR = 3;
const DROPPED_FORGET_MS = 10_000;

/**
 * A dropped client's empty message is answered by an RTFM that asks whether it is still there (see
 * Server.#hungUp), and asked once more this much later. libzmq hands us its notice of a close before it
 * takes the peer's pipe away (that comes a few commands between its threads later): an RTFM sent in
 * between goes into the closing pipe, fails nothing, and the peer stayed counted until it was forgotten
 * (16 s in a test that waited 5 for it, which failed once in CI under load).
 */
const ASK_AGAIN_MS = 1000;

/** ROUTER_NOTIFY's value for "tell us of disconnects" (not of connects). */
const ZMQ_NOTIFY_DISCONNECT = 2;

export interface SentEvent {
  readonly client: string;
  readonly path: string;
  readonly operation: "create" | "delete";
  readonly size: number;
}

export interface ServerEvents {
  /** A client opened a session (its first OHAI). */
  connected: [client: string];
  /** A client's state was dropped (KTHXBAI, expiry, protocol error, gone). */
  disconnected: [client: string];
  /** A mount has a new or changed stable file. */
  published: [file: PublishedFile];
  /** A file (all of it) or a delete went out to one client. */
  sent: [event: SentEvent];
  /** Nothing is left to send to this client (after its subscription, or after the latest changes). */
  "caught-up": [client: string];
  /** A client's subscription was taken, and what is already published under it queued for it. */
  subscribed: [event: { client: string; path: string }];
  /** A file could not be sent to a client (unreadable, leads outside its mount, reading failed); also a warning. */
  unsent: [event: { client: string; path: string; reason: string }];
  /** Something went wrong that did not stop the server (a mount error, a malformed message). */
  warning: [message: string];
}

export class ServerError extends Error {
  override name = "ServerError";
}

export class Server extends EventEmitter<ServerEvents> {
  readonly options: Required<Omit<ServerOptions, "trace" | "security" | "maxQueuedChanges">> & Pick<ServerOptions, "trace" | "security" | "maxQueuedChanges">;
  readonly mounts: Mount[] = [];
  readonly #router: Router;
  readonly #outbox: Outbox;
  readonly #fingerprints = new Fingerprints();
  readonly #connections = new Map<string, Connection>();
  /** Bytes of messages from all clients waiting in their machines (see maxPendingTotalBytes). */
  #pendingTotal = 0;
  /** Deletes waiting, across clients, for names their caches listed and no mount has (bounded). */
  readonly #goneNames: GoneNames = { count: 0, bytes: 0 };
  readonly #host: ConnectionHost;
  readonly #security: ServerSecurity | undefined;
  #expiryTimer: NodeJS.Timeout | undefined;
  #reading: Promise<void> | undefined;
  #closed = false;
  /** libzmq reports closed connections (ROUTER_NOTIFY). */
  #notified = false;
  /**
   * Clients dropped for not reading whose connection is still open, and when: libzmq still holds their
   * pipe (up to sendHighWaterMark chunks) until the kernel closes it (TCP_MAXRT) and ROUTER_NOTIFY
   * says so. Counted in max-clients and in max-stalled-bytes meanwhile; what they send is ignored (no new
   * session on that connection). Forgotten at the latest DROPPED_FORGET_FACTOR times peer-timeout-ms plus
   * DROPPED_FORGET_MS after the drop (a peer reading again keeps its connection: it may start again then).
   */
  readonly #dropped = new Map<string, number>();
  /** Dropped clients to ask again whether they are still there, and when (see ASK_AGAIN_MS); at most one each. */
  readonly #askAgain = new Map<string, { readonly routingId: Buffer; readonly at: number }>();

  constructor(options: ServerOptions = {}) {
    super();
    this.options = withDefaults(serverDefaults, options);
    verify(this.options);
    this.#security = options.security ? new ServerSecurity(options.security, (message) => this.emit("warning", message)) : undefined;
    this.#router = new Router({
      // Sends to a client whose pipe is full fail at once (EAGAIN) instead of silently dropping (the
      // default) or blocking the one writer for everybody; a gone client fails with EHOSTUNREACH.
      mandatory: true,
      sendTimeout: 0,
      // With maxQueuedMessages, bounds what one client that stops reading can make us hold.
      sendHighWaterMark: sendHighWaterMark(this.options.chunkSize),
      receiveHighWaterMark: RECEIVE_HIGH_WATER_MARK,
      linger: 0,
      heartbeatInterval: Math.max(1, Math.round(this.options.peerTimeoutMs / 3)),
      heartbeatTimeout: this.options.peerTimeoutMs,
      // ZMQ_TCP_MAXRT (TCP_USER_TIMEOUT on Linux): a connection whose peer has not taken our data for this
      // long (its receive window shut) is closed by the kernel. A peer that stops reading but keeps talking
      // (a HUGZ now and then) passes the heartbeat check, and a ROUTER cannot close one peer's connection:
      // dropping it freed our queue, while libzmq went on holding its pipe (then 64 chunks) and the kernel its
      // socket buffers until the peer left (a review: 190 MiB for 3 such peers). Twice peer-timeout-ms, so
      // that we drop it first, saying why (its pipe full for peer-timeout-ms: see #expire), and the
      // kernel closes the connection after; ROUTER_NOTIFY then reports it (see #dropped).
      tcpMaxRetransmitTimeout: 2 * this.options.peerTimeoutMs,
      maxMessageSize: this.options.maxMessageSize,
      ...this.#security?.socketOptions(),
    });
    this.#security?.watch(this.#router);
    // A closed connection is forgotten at once (its file, read-ahead and queue freed), not at expiry.
    const notified = setDraftOption(this.#router, DraftOption.ROUTER_NOTIFY, ZMQ_NOTIFY_DISCONNECT);
    this.#notified = notified;
    // Logins are tied to connections by these notices (ServerSecurity.closed): without them, a login would
    // outlive its connection, and a later connection given the same routing id would inherit it.
    if (!notified && this.#security && this.#security.options.policy.mechanism !== "null") {
      this.#router.close();
      throw new ServerError("this libzmq cannot report closed connections (ZMQ_ROUTER_NOTIFY, a draft option): refusing to serve with security, whose logins depend on it");
    }
    // (Urgent, as every event that ends a dialogue: handled at the next step, not after a run of them.)
    this.#outbox = new Outbox(this.#router, (key) => this.#unreachable(key));
    const server = this;
    this.#host = {
      chunkSize: this.options.chunkSize,
      readAhead: this.options.readAhead,
      maxQueuedMessages: this.options.maxQueuedMessages,
      ...(this.options.maxQueuedChanges !== undefined ? { maxQueuedChanges: this.options.maxQueuedChanges } : {}),
      maxSubscriptions: this.options.maxSubscriptions,
      filesNear: (path) => server.#filesNear(path),
      file: (vpath) => {
        for (const mount of server.mounts) {
          const file = mount.files.get(vpath);
          if (file) return file;
        }
        return undefined;
      },
      waiting: (vpath) => {
        for (const mount of server.mounts) {
          const size = mount.waitingSize(vpath);
          if (size !== undefined) return size;
        }
        return undefined;
      },
      recheck: (vpath) => {
        for (const mount of server.mounts) if (mount.files.has(vpath)) mount.recheck(vpath);
      },
      fingerprints: this.#fingerprints,
      serves: (path) => server.mounts.some((m) => overlaps(m.alias, path)),
      send: (key, routingId, frame) => server.#send(key, routingId, frame),
      mayRead: (key, path) => server.#security?.mayRead(key, path) ?? true,
      below: (key, limit) => server.#outbox.below(key, limit),
      forget: (key) => server.#forget(key),
      sent: (client, path, operation, size) => server.emit("sent", { client, path, operation, size }),
      caughtUp: (client) => server.emit("caught-up", client),
      unsent: (client, path, reason) => server.emit("unsent", { client, path, reason }),
      subscribed: (client, path) => server.emit("subscribed", { client, path }),
      warn: (message) => server.emit("warning", message),
      pendingChanged: (delta) => (server.#pendingTotal += delta),
      goneNames: this.#goneNames,
      ...(this.options.trace ? { trace: this.options.trace } : {}),
    };
  }

  /**
   * Publish `directory` under the virtual path `alias`. Resolves once the directory is watched; files
   * already there are shipped as soon as each is stable. Throws MountError for a missing directory.
   */
  async publish(directory: string, alias = "/"): Promise<Mount> {
    // A mount whose alias is inside another's owns that subtree: one virtual path, one file. And the way
    // to it: a file of the outer mount at a directory of that alias (/q/z for /q/z/w) is not published
    // either (a review: both were, and a subscriber of / could never place /q/z/w's files).
    // (Asked per file seen: a test per mount, no list made each time.)
    const isInner = (other: Mount) => other !== mount && other.alias.length > mount.alias.length;
    const ownedElsewhere = (vpath: string) => this.mounts.some((other) => isInner(other) && covers(other.alias, vpath));
    const isShadowed = (vpath: string) => this.mounts.some((other) => isInner(other) && overlaps(other.alias, vpath));
    if (this.#closed) throw new ServerError(`cannot publish ${directory}: the server is closed`);
    const mount: Mount = await Mount.open(directory, alias, { stableMs: this.options.stableMs, isShadowed, ownedElsewhere });
    // (Closed meanwhile: the mount would watch on for nobody, and keep the process alive; a review.)
    if (this.#closed) {
      await mount.close();
      throw new ServerError(`cannot publish ${directory}: the server is closed`);
    }
    // (Checked as the config's [[mount]]s are, for every caller: an alias twice had two mounts' files for
    // one name, which subscriber got which depending on when it came, and a delete in one took the file the
    // other still published; nesting directories leaked a mount's files under another's alias; a review.)
    // (No await from here to the push below: two publish() at once see each other.)
    const problem = this.#publishProblem(mount, directory);
    if (problem !== undefined) {
      await mount.close();
      throw new ServerError(`cannot publish ${directory}: ${problem}`);
    }
    for (const outer of this.mounts) if (outer.alias !== mount.alias && covers(outer.alias, mount.alias)) outer.shadow(mount.alias);
    mount.on("changed", (file) => {
      this.emit("published", file);
      // Hash big files now, while nobody waits, rather than on every transfer's send path.
      if (this.options.hashAhead) {
        const { size, mtimeMs, ctimeMs, ino } = file;
        this.#fingerprints.prepare(file.absolute, size, ctimeMs !== undefined && ino !== undefined ? { size, mtimeMs, ctimeMs, ino } : undefined);
      }
      for (const connection of this.#connections.values()) {
        if (connection.wants(file.vpath)) connection.queue({ op: "create", file });
      }
    });
    mount.on("deleted", (vpath, file) => {
      this.#fingerprints.forget(file.absolute);
      for (const connection of this.#connections.values()) {
        if (connection.wants(vpath)) connection.queue({ op: "delete", vpath });
      }
    });
    mount.on("warning", (error) => this.emit("warning", error.message));
    // Listed before its scan: the mounts it shadows skip its subtree from now on.
    this.mounts.push(mount);
    try {
      await mount.start();
      if (this.#closed) {
        // (Closing took its list of mounts before this one may have been on it: closed here, whatever.)
        await mount.close();
        throw new ServerError(`cannot publish ${directory}: the server is closed`);
      }
    } catch (error) {
      const at = this.mounts.indexOf(mount);
      if (at >= 0) this.mounts.splice(at, 1);
      // (Its watcher, if it began one, goes with it.)
      await mount.close();
      throw error;
    }
    return mount;
  }

  /** Why `mount` may not be published beside the mounts there are, or undefined. */
  #publishProblem(mount: Mount, directory: string): string | undefined {
    const adding = { directory, root: mount.root, alias: mount.alias };
    for (const other of this.mounts) {
      if (other.alias === mount.alias) return `alias ${mount.alias} is published already (from ${other.root})`;
      const there = { directory: other.root, root: other.root, alias: other.alias };
      const problem = nestingProblem(adding, there) ?? nestingProblem(there, adding);
      if (problem !== undefined) return problem;
    }
    return undefined;
  }

  /** Bind to an endpoint ("tcp://*:5670", "tcp://127.0.0.1:*", "ipc://...", "inproc://..."); returns the bound endpoint. */
  async bind(endpoint: string): Promise<string> {
    // The ZAP handler must be there before the first handshake.
    await this.#security?.start();
    const problem = endpointProblem(endpoint, "bind");
    if (problem) throw new ServerError(`cannot bind ${endpoint}: ${problem}`);
    // IPv6 for an endpoint that names an IPv6 address: tcp://[::1]:port failed to bind ("No such
    // device": a review). Not for an IPv4 address, a name or *, which bind as before: an IPv6 listener
    // takes IPv4 peers as ::ffff:127.0.0.1, in the bound endpoint and in every address logged.
    const ipv6 = wantsIpv6(endpoint);
    if (this.#router.ipv6 !== ipv6) {
      // (A socket option applies to the binds that follow it, which is what this wants; but set once the
      // socket is bound, zeromq.js says so as a process warning: two lines on stderr at every start of a
      // config that mixes both families, a review. That one warning is not passed on.)
      const emitWarning = process.emitWarning;
      process.emitWarning = () => undefined;
      try {
        this.#router.ipv6 = ipv6;
      } finally {
        process.emitWarning = emitWarning;
      }
    }
    try {
      await this.#router.bind(endpoint);
    } catch (error) {
      const code = (error as { code?: string }).code;
      const why = code === "EADDRINUSE" ? "address already in use" : (error as Error).message;
      throw new ServerError(`cannot bind ${endpoint}: ${why}`);
    }
    this.#reading ??= this.#read();
    this.#expiryTimer ??= setInterval(() => this.#expire(), Math.min(250, this.options.expiryMs / 4)).unref();
    return this.#router.lastEndpoint ?? endpoint;
  }

  /** The server's CURVE public key (Z85), when it uses CURVE. */
  get publicKey(): string | undefined {
    return this.#security?.publicKey;
  }

  /** The user a client logged in as, when the server knows it ("anonymous" without security). */
  userOf(client: string): string | undefined {
    return this.#security ? this.#security.userOf(client) : "anonymous";
  }

  /** Background fingerprint passes begun since the start (see hashAhead). */
  get hashedAhead(): number {
    return this.#fingerprints.passes;
  }

  /** Clients with a session. */
  get clients(): number {
    return this.#connections.size;
  }

  /** Files whose held version the server remembers, all clients together (for deltas; tests and stats). */
  get holdings(): number {
    let total = 0;
    for (const connection of this.#connections.values()) total += connection.holdings;
    return total;
  }

  /** Files waiting to be sent, all clients together (tests and stats). */
  get queuedFiles(): number {
    let total = 0;
    for (const connection of this.#connections.values()) total += connection.queued;
    return total;
  }

  close(): Promise<void> {
    // (Everyone who asks waits for the same closing: a second caller must not go on, e.g. to exit,
    // while the first is still saving.)
    this.#closing ??= this.#close();
    return this.#closing;
  }
  #closing: Promise<void> | undefined;

  async #close(): Promise<void> {
    this.#closed = true;
    if (this.#expiryTimer) clearInterval(this.#expiryTimer);
    await Promise.all([...this.#connections.values()].map((c) => c.close()));
    this.#connections.clear();
    this.#sessions.clear();
    this.#fingerprints.close();
    await Promise.all(this.mounts.map((m) => m.close()));
    this.#router.close();
    this.#security?.stop();
    await this.#outbox.close();
    await this.#reading;
  }

  async #read(): Promise<void> {
    try {
      // (Messages already queued come without a turn of the event loop: see Turns.)
      const turns = new Turns();
      for await (const [routingId, ...frames] of this.#router) {
        if (turns.due) {
          await turns.turn();
          if (this.#closed) break;
        }
        if (routingId === undefined) continue;
        try {
          this.#receive(routingId, frames);
        } catch (error) {
          // Never let one message end the loop for everyone.
          this.emit("warning", `client ${routingId.toString("hex")}: ${String(error)}`);
        }
      }
    } catch (error) {
      if (!this.#closed) this.emit("warning", `receive loop ended: ${String(error)}`);
    }
  }

  /**
   * Has this peer without a session had its answers for garbage this minute (STRANGER_ANSWERS), or are
   * too many such peers remembered already (then `crowded`: silence for garbage; an answer for a message of
   * the protocol, which an honest client of a restarted server sends)? If not, this answer is counted.
   */
  #strangerHeardOf(key: string, crowded = true): boolean {
    const now = monotonic();
    let stranger = this.#strangers.get(key);
    if (stranger && now - stranger.since >= STRANGER_MINUTE_MS) {
      this.#strangers.delete(key);
      stranger = undefined;
    }
    if (!stranger) {
      if (this.#strangers.size >= MAX_STRANGERS) {
        // Forget those whose minute is over; if none, many peers are at it: they get silence.
        for (const [other, { since }] of this.#strangers) if (now - since >= STRANGER_MINUTE_MS) this.#strangers.delete(other);
        if (this.#strangers.size >= MAX_STRANGERS) {
          if (crowded) return true;
          // (Answered, but a few hundred a second from all such peers together: a churn of connections
          // keeps the table full, and each message of a peer was answered again; a review.)
          if (now - this.#crowdedAnswers.since >= 1000) this.#crowdedAnswers = { since: now, answers: 0 };
          return ++this.#crowdedAnswers.answers > CROWDED_ANSWERS_PER_SECOND;
        }
      }
      stranger = { since: now, answers: 0 };
      this.#strangers.set(key, stranger);
    }
    return ++stranger.answers > STRANGER_ANSWERS;
  }
  /** Answers to peers without a session while the table of them is full (see #strangerHeardOf). */
  #crowdedAnswers = { since: 0, answers: 0 };
  /** Peers without a session answered RTFM for garbage: key -> since when, how many times. */
  readonly #strangers = new Map<string, { since: number; answers: number }>();

  #receive(routingId: Buffer, frames: Buffer[]): void {
    // (Nothing once closing: close() waits for the connections and mounts to close before the socket
    // does, and an OHAI read meanwhile made a connection nothing closed, a review.)
    if (this.#closed) return;
    const key = routingId.toString("hex");
    if (frames.length === 1 && frames[0]!.length === 0) return this.#hungUp(key, routingId);
    // (A login that named this routing id is this connection's now: see ServerSecurity.confirm.)
    this.#security?.confirm(key);
    let connection = this.#connections.get(key);
    // A client dropped for not reading costs no decoding for what it still sends (a frame may take 0.1 s).
    // (One dropped for sending too much is decoded as any peer is: it may start again at once, an honest
    // one that we were slow to answer. What a hostile one costs is bounded per frame by max-message-size,
    // and it is read in turn with everyone else: RECEIVE_HIGH_WATER_MARK.)
    if (!connection && this.#dropped.has(key)) return;
    const result = decodeFrames(frames);
    if (!result.ok) {
      // 35/FILEMQ: a message with a bad signature SHALL be silently discarded; other garbage gets RTFM.
      if (result.error.reply === "discard") return;
      if (!connection) {
        // Answered and said a few times a minute per peer, for few peers at a time: a peer with no session that
        // sends garbage frame after frame (an audit: 100,000 of 3 bytes) would get as many RTFM, queued for
        // a peer that may never read them, and fill the log 12 times faster than it sent.
        if (this.#strangerHeardOf(key)) return;
        this.emit("warning", `client ${key}: ${result.error.message}`);
        this.#send(key, routingId, encode({ id: "RTFM", reason: reasonOf(result.error.message) }));
      } else if (connection.engine.post("malformed", result.error, { urgent: true })) {
        // (Said once: garbage that follows, until the connection is dropped, is dropped with it.)
        this.emit("warning", `client ${key}: ${result.error.message}`);
      }
      return;
    }
    if (!connection && result.message.id !== "OHAI") {
      // The table's answer ("start": anything but OHAI, RTFM) without a connection made for it, and a few
      // times a minute per peer, as for garbage: a review had a peer's 100,000 HUGZ answered by 61,000
      // RTFM, a connection and its machine made and ended for each. (Our client of a restarted server
      // needs one: it starts a new session on the first.)
      if (!this.#strangerHeardOf(key, false)) this.#send(key, routingId, encode({ id: "RTFM", reason: reasonOf(`no session (the server restarted or dropped it): ${reasonOf(result.message)}`) }));
      return;
    }
    if (!connection) {
      if (this.#connections.size + this.#dropped.size >= this.options.maxClients) {
        // (A few answers a minute per peer, as for garbage: a peer sending frame after frame to a full
        // server would have as many RTFM queued for it. A review.)
        if (!this.#strangerHeardOf(key)) this.#send(key, routingId, encode({ id: "RTFM", reason: "server full" }));
        return;
      }
      connection = new Connection(key, routingId, this.#host);
      this.#connections.set(key, connection);
      if (result.message.id === "OHAI") {
        this.#sessions.add(key);
        this.emit("connected", key);
      }
    }
    const engine = connection.engine;
    // (Heard, whatever becomes of the message: a NOM folded, a HUGZ answered at once, one queued, or a
    // client dropped for too many.)
    connection.heard();
    // A NOM waits behind the file being sent (a run of steps), and our client sends one per slice of its
    // window: a client granting a large window had so many waiting that it was dropped for too many
    // messages mid-transfer (a review: 262 MiB into a 300 MiB window). Credit adds up, so a NOM is folded
    // into one still waiting, taking no place in the queue; not across an OHAI or KTHXBAI (a new session
    // starts with no credit; after KTHXBAI there is none).
    const message = result.message;
    if (message.id === "NOM") connection.readUpTo(message.sequence);
    if (message.id === "NOM" && engine.fold("NOM", (waiting) => ({ ...message, credit: mergedNomCredit((waiting as Nom).credit, message.credit) }), opensOrEndsSession)) return;
    // HUGZ is answered at once in a session: its reply needs nothing of the dialogue's state, and behind a
    // long step (a subscription's plan waiting for the SHA-1s of big files its cache lists, a file sent
    // chunk after chunk) it waited for seconds, while our client starts a new session after 5 s of
    // silence (a review: the first HUGZ-OK 2.3 s after an ICANHAZ). Not while an OHAI or KTHXBAI waits:
    // its answer (or its RTFM) must come first.
    if (message.id === "HUGZ" && engine.state !== "start" && !engine.stopped && !engine.waiting(opensOrEndsSession)) {
      // (Traced as the machine would, in its current state.)
      this.options.trace?.(`${key} ${engine.state}: HUGZ`);
      this.options.trace?.(`${key}     $ send HUGZ-OK (at once, outside the machine)`);
      return this.#send(key, routingId, encode({ id: "HUGZ_OK" }));
    }
    let bytes = 0;
    for (const frame of frames) bytes += frame.length;
    if (engine.pending >= this.options.maxPendingMessages || engine.pendingWeight + bytes > this.options.maxPendingBytes) {
      // Sending faster than we handle (e.g. while we wait for it to read): a flood, not a client.
      const what = engine.pending >= this.options.maxPendingMessages ? `${this.options.maxPendingMessages} messages` : `${this.options.maxPendingBytes} bytes of messages`;
      return this.#dropForTooMany(connection, `more than ${what} waiting`);
    }
    engine.post(result.message.id, result.message, { weight: bytes });
    if (this.#pendingTotal > this.options.maxPendingTotalBytes) this.#dropBiggestPending();
  }

  /**
   * What waits from all clients together is over max-pending-total-bytes: drop the client with the most
   * waiting, then the next, until it is not (as the per-client limit drops the one client). Not a pause
   * of the read loop: clients that keep their machines busy (reading just often enough not to count as
   * stalled) could then hold it for as long as they like, and nobody else would be heard meanwhile.
   */
  #dropBiggestPending(): void {
    while (this.#pendingTotal > this.options.maxPendingTotalBytes) {
      let biggest: Connection | undefined;
      for (const connection of this.#connections.values()) {
        if (connection.engine.pendingWeight > (biggest?.engine.pendingWeight ?? 0)) biggest = connection;
      }
      if (!biggest) return;
      // (Its machine stops at once: what waited there no longer counts.)
      this.#dropForTooMany(biggest, `${biggest.engine.pendingWeight} bytes of messages waiting, the most of the ${this.#pendingTotal} waiting from all clients (more than max-pending-total-bytes, ${this.options.maxPendingTotalBytes})`);
    }
  }

  /** Drop a client that has sent more than we hold for it (RTFM "too many messages"), saying why. */
  #dropForTooMany(connection: Connection, why: string): void {
    this.emit("warning", `client ${connection.key}: ${why}; dropped`);
    void connection.close();
    this.#forget(connection.key);
    this.#send(connection.key, connection.routingId, encode({ id: "RTFM", reason: "too many messages" }));
  }

  /** Bytes of messages from all clients waiting to be handled now. */
  get pendingBytes(): number {
    return this.#pendingTotal;
  }

  /** An empty message: the connection closed (see "hung up" in machine.ts), or a peer sent nothing. */
  #hungUp(key: string, routingId: Buffer): void {
    // (Its login goes with it: see ServerSecurity.closed.)
    this.#security?.closed(key);
    // A client dropped for not reading: its connection, and what libzmq held for it, is gone now; or it
    // sent an empty message itself, to be counted no more while libzmq still holds its full pipe (a
    // review). Asked: the RTFM fails at once (EHOSTUNREACH) if the connection is gone, and the outbox
    // then forgets it (#unreachable); asked once more a moment later (see ASK_AGAIN_MS); a peer still
    // there stays counted until it expires.
    if (this.#dropped.has(key)) {
      this.#askIfThere(key, routingId);
      // (From the last empty message: the notice of a real close may follow one the peer sent itself.)
      this.#askAgain.set(key, { routingId, at: monotonic() + ASK_AGAIN_MS });
      return;
    }
    const connection = this.#connections.get(key);
    if (connection) connection.engine.post("hung up", "empty message", { urgent: true });
    // (A few times a minute per peer, as for garbage.)
    else if (!this.#strangerHeardOf(key)) this.#send(key, routingId, encode({ id: "RTFM", reason: "empty message" }));
  }

  /** Ask a dropped client whether it is still there: an RTFM, which fails EHOSTUNREACH if it is not (#unreachable). */
  #askIfThere(key: string, routingId: Buffer): void {
    // (One at a time: a peer sending empty message after empty message does not fill our queue.)
    if (this.#outbox.queued(key) === 0) this.#outbox.send(key, routingId, encode({ id: "RTFM", reason: "empty message" }));
  }

  /** libzmq has no connection for this peer any more (a send failed EHOSTUNREACH). */
  #unreachable(key: string): void {
    this.#dropped.delete(key);
    this.#askAgain.delete(key);
    this.#connections.get(key)?.engine.post("expired", undefined, { urgent: true });
  }

  /** Queue a message for a client, unless it has stopped reading: then it is dropped with its queue. */
  #send(key: string, routingId: Buffer, frame: Buffer | readonly Buffer[]): void {
    if (this.#outbox.queued(key) < this.options.maxOutgoingMessages) return this.#outbox.send(key, routingId, frame);
    const connection = this.#connections.get(key);
    if (connection) {
      this.emit("warning", `client ${key}: ${this.options.maxOutgoingMessages} messages waiting and it does not read them; dropped`);
      void connection.close();
      this.#forget(key);
      this.#stillConnected(key);
    }
    this.#outbox.forget(key);
  }

  #forget(key: string): void {
    const connection = this.#connections.get(key);
    if (!connection) return;
    this.#connections.delete(key);
    // Let an RTFM already queued go out; drop the rest once the engine is stopped.
    setTimeout(() => {
      if (!this.#connections.has(key)) this.#outbox.forget(key);
    }, 1000).unref();
    // Only a session that was reported opened is reported ended (not a peer answered RTFM at once).
    if (this.#sessions.delete(key)) this.emit("disconnected", key);
  }

  /** Clients reported "connected" and not yet "disconnected". */
  readonly #sessions = new Set<string>();

  #expire(): void {
    const now = monotonic();
    for (const [key, since] of this.#dropped) {
      if (now - since <= DROPPED_FORGET_FACTOR * this.options.peerTimeoutMs + DROPPED_FORGET_MS) continue;
      this.#dropped.delete(key);
      this.#askAgain.delete(key);
      // (With the RTFM that asked whether it was still there, if it could never be sent.)
      if (!this.#connections.has(key)) this.#outbox.forget(key);
    }
    for (const [key, { routingId, at }] of this.#askAgain) {
      if (at > now) continue;
      // (The first question still waiting, behind what its full pipe holds: asked again after it.)
      if (this.#dropped.has(key) && this.#outbox.queued(key) > 0) this.#askAgain.set(key, { routingId, at: now + ASK_AGAIN_MS });
      else {
        this.#askAgain.delete(key);
        if (this.#dropped.has(key)) this.#askIfThere(key, routingId);
      }
    }
    const deadline = now - this.options.expiryMs;
    // Its pipe full for as long as a frozen peer is given (peer-timeout-ms), and not a word from it meanwhile
    // that it got further (a NOM's sequence, see Connection.readUpTo): it has stopped reading, and what
    // waits for it stays in our memory. Other messages (a HUGZ, a NOM that says no more than before) do
    // not keep it. (Seen with chunks: a pipe of small messages, deletes, gets room at each of libzmq's
    // heartbeats, a third of peer-timeout-ms apart, as its engine takes a batch in; such a peer that reads
    // nothing is closed by the kernel, TCP_MAXRT, at twice peer-timeout-ms.)
    const full = this.#pipesFull();
    for (const { connection, since } of full) {
      // (A client busy with what it read ahead, such as a long run of deletes at a few ms each, leaves its
      // pipe full while it works; it was dropped though it was getting on.)
      const quiet = Math.max(since, connection.lastRead);
      if (now - quiet <= this.options.peerTimeoutMs) continue;
      this.emit("warning", `client ${connection.key}: has not read for ${Math.round((now - quiet) / 1000)} s; dropped`);
      this.#drop(connection);
    }
    // (By the pipe alone, whatever the client says: what it holds is held all the same. A review: clients
    // that read nothing and counted up their NOMs' sequence escaped the budget.)
    this.#dropStalledBeyondBudget(full.filter(({ connection, since }) => now - since >= STALLED_MS && this.#connections.has(connection.key)), now);
    for (const connection of [...this.#connections.values()]) {
      if (connection.lastHeard >= deadline) continue;
      if (connection.expiryPosted) {
        // Still here a sweep later: its machine is stuck (waiting on a client that stopped reading), so
        // the "expired" event never got its turn. Forget it from outside the machine.
        void connection.close();
        this.#forget(connection.key);
      } else {
        connection.expiryPosted = true;
        connection.engine.post("expired", undefined, { urgent: true });
      }
    }
  }

  /**
   * Each client that stops reading can make us hold what libzmq queues for it, what our outbox queues,
   * and its read-ahead: bounded per client, but not across them (a hundred such clients, a hundred times
   * that). So only as many may sit stalled at once as `maxStalledBytes` allows, each counted at that
   * bound; beyond it, those stalled longest are dropped (a dropped client of ours reconnects and resumes).
   */
  #dropStalledBeyondBudget(stalled: { connection: Connection; since: number }[], now: number): void {
    const o = this.options;
    const pipe = sendHighWaterMark(o.chunkSize);
    const perClient = (pipe + o.maxQueuedMessages + o.readAhead + 1) * o.chunkSize;
    // (Those dropped already and still connected hold their pipe in libzmq: counted at that.)
    const held = this.#dropped.size * pipe * o.chunkSize;
    const allowed = Math.max(1, Math.floor((o.maxStalledBytes - held) / perClient));
    if (stalled.length <= allowed) return;
    stalled.sort((a, b) => a.since - b.since);
    for (const { connection, since } of stalled.slice(0, stalled.length - allowed)) {
      this.emit("warning", `client ${connection.key}: has not read for ${Math.round((now - since) / 1000)} s, and more clients have stopped reading than max-stalled-bytes allows (${allowed}); dropped`);
      this.#drop(connection);
    }
  }

  /** Clients whose pipe is full, and since when (nothing sent to them meanwhile). */
  #pipesFull(): { connection: Connection; since: number }[] {
    const full: { connection: Connection; since: number }[] = [];
    for (const connection of this.#connections.values()) {
      const since = this.#outbox.fullSince(connection.key);
      if (since > 0) full.push({ connection, since });
    }
    return full;
  }

  /** How many clients have stopped reading now: their pipe full for STALLED_MS (stats, tests). */
  get stalledClients(): number {
    const now = monotonic();
    return this.#pipesFull().filter(({ since }) => now - since >= STALLED_MS).length;
  }

  /** Forget a client that stopped reading, from outside its machine, and what waits for it. */
  #drop(connection: Connection): void {
    void connection.close();
    this.#forget(connection.key);
    this.#outbox.forget(connection.key);
    this.#stillConnected(connection.key);
  }

  /** A client dropped for not reading: its connection stays open until the kernel closes it (see #dropped). */
  #stillConnected(key: string): void {
    if (this.#notified && !this.#closed) this.#dropped.set(key, monotonic());
  }

  /** Clients dropped for not reading whose connection is not yet closed (stats, tests). */
  get droppedStillConnected(): number {
    return this.#dropped.size;
  }

  *#filesNear(path: string): Iterable<PublishedFile> {
    for (const mount of this.mounts) {
      if (!overlaps(mount.alias, path)) continue;
      // A file's own path (our client asks for one file again so): that file, not a walk of every file
      // published there (a review: 70 ms of the server's time per 100,000 files, for each such request).
      // (A mount never has a file both at a name and below it: a file that became a directory went first.)
      const file = mount.files.get(path);
      if (file) yield file;
      else yield* mount.files.values();
    }
  }
}

/** An event that opens or ends a session: nothing is folded across it, nor answered ahead of it. */
const opensOrEndsSession = (event: string): boolean => event === "OHAI" || event === "KTHXBAI";

/**
 * A TCP endpoint whose host is an IPv6 address ([...]). (A name or an interface binds as before, IPv4:
 * with IPv6 on, "localhost" may resolve to ::1 alone, and IPv4 clients would no longer reach it.)
 */
export function wantsIpv6(endpoint: string): boolean {
  return /^tcp:\/\/(?:[^;]*;)?\[[^\]]*\]:[^:\]]*$/.test(endpoint);
}

function verify(o: Required<Omit<ServerOptions, "trace" | "security" | "maxQueuedChanges">> & Pick<ServerOptions, "maxQueuedChanges">): void {
  const positive = (name: string, value: number) => {
    if (!Number.isInteger(value) || value <= 0) throw new ServerError(`${name} must be a positive integer, got ${value}`);
  };
  positive("chunk size", o.chunkSize);
  if (o.chunkSize > MAX_CHUNK_SIZE) throw new ServerError(`chunk size must be at most 64 MiB, got ${o.chunkSize}`);
  if (!Number.isInteger(o.readAhead) || o.readAhead < 0) throw new ServerError(`read-ahead must be >= 0, got ${o.readAhead}`);
  if (!Number.isFinite(o.stableMs) || o.stableMs < 0) throw new ServerError(`stability threshold must be >= 0 ms, got ${o.stableMs}`);
  positive("expiry", o.expiryMs);
  positive("peer timeout", o.peerTimeoutMs);
  if (o.peerTimeoutMs > MAX_PEER_TIMEOUT_MS) throw new ServerError(`peer timeout must be at most ${MAX_PEER_TIMEOUT_MS} ms (twice it is libzmq's TCP_MAXRT, an int), got ${o.peerTimeoutMs}`);
  positive("max clients", o.maxClients);
  positive("max subscriptions", o.maxSubscriptions);
  positive("max queued messages", o.maxQueuedMessages);
  if (o.maxQueuedChanges !== undefined) positive("max queued changes", o.maxQueuedChanges);
  positive("max message size", o.maxMessageSize);
  positive("max pending messages", o.maxPendingMessages);
  positive("max pending bytes", o.maxPendingBytes);
  // (One message, however big it may be, must fit: else a client would be dropped for it alone.)
  if (o.maxPendingBytes < o.maxMessageSize) throw new ServerError(`max-pending-bytes (${o.maxPendingBytes}) must be at least max-message-size (${o.maxMessageSize})`);
  positive("max pending total bytes", o.maxPendingTotalBytes);
  if (o.maxPendingTotalBytes < o.maxMessageSize) throw new ServerError(`max-pending-total-bytes (${o.maxPendingTotalBytes}) must be at least max-message-size (${o.maxMessageSize})`);
  positive("max outgoing messages", o.maxOutgoingMessages);
  positive("max stalled bytes", o.maxStalledBytes);
}
