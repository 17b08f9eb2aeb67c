// The FileMQ client: one DEALER socket per session, one reader loop and one writer per socket, the
// dialogue in machine.ts, and the inboxes files land in. A session that goes wrong (RTFM, a silent
// server) is dropped with its socket and a new one is opened: the server sees a new routing id, so no
// message of the old session can confuse the new one.

import { EventEmitter } from "node:events";
import { Dealer } from "zeromq";
import { Engine, type Actions } from "../fsm/engine.js";
import { ReceiveWindow } from "../flow/credit.js";
import { decodeFrames, encode } from "../protocol/codec.js";
import { PROTOCOL_NAME, PROTOCOL_VERSION, Operation, type Cheezburger, type ClientMessage, type Message, type Srsly } from "../protocol/messages.js";
import type { DecodeError } from "../protocol/errors.js";
import { covers, normaliseVirtualPath, relativeTo } from "../paths.js";
import { Heartbeat } from "./heartbeat.js";
import { Inbox, InboxError, type IncomingFile } from "./inbox.js";
import { clientMachine, type ClientAction, type ClientEvent, type ClientState } from "./machine.js";

export interface ClientOptions {
  /** Server endpoint, e.g. "tcp://127.0.0.1:5670". */
  readonly endpoint: string;
  /** Directory files land in (relative to the subscribed path), unless a subscription names its own. */
  readonly inbox: string;
  /** Most bytes granted to the server and not yet received (bounds memory). Default 16 MiB. */
  readonly window?: number;
  /** Credit is granted in multiples of this. Default 1 MiB. */
  readonly slice?: number;
  /** HUGZ after this much silence from the server (ms). Default 1000. */
  readonly heartbeatMs?: number;
  /** Start a new session after this much silence (ms). Default 5 heartbeats. */
  readonly timeoutMs?: number;
  /** Print every state machine step. */
  readonly trace?: (line: string) => void;
}

export const clientDefaults = {
  window: 16 * 1024 * 1024,
  slice: 1024 * 1024,
  heartbeatMs: 1000,
} as const;

export interface DeliveredEvent {
  /** Path relative to the inbox. */
  readonly path: string;
  /** Virtual path on the server. */
  readonly vpath: string;
  /** Absolute path of the delivered file. */
  readonly file: string;
  readonly size: number;
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
  /** A file is complete at its final path. */
  delivered: [event: DeliveredEvent];
  /** A file was deleted because the server deleted it. */
  deleted: [event: DeletedEvent];
  /** The session ended (RTFM, or the server fell silent); the client is already reconnecting. */
  disconnected: [reason: string];
  /** A file or message was refused or failed; the client carries on. Emitted only if listened to. */
  error: [error: Error];
}

interface Subscription {
  readonly path: string;
  readonly inbox: Inbox;
}

type EventArg = Message | DecodeError | string | undefined;

/** Delay before opening socket number n of a run of failures (reset when a session opens). */
const RECONNECT_BACKOFF_MS = [0, 100, 250, 500, 1000, 2000];

export class ClientError extends Error {
  override name = "ClientError";
}

export class Client extends EventEmitter<ClientEvents> {
  readonly options: Required<Omit<ClientOptions, "trace">> & Pick<ClientOptions, "trace">;
  readonly #engine: Engine<ClientState, ClientEvent, ClientAction, EventArg>;
  readonly #heartbeat: Heartbeat;
  readonly #window: ReceiveWindow;
  readonly #subscriptions = new Map<string, Subscription>();
  /** ICANHAZ sent and not yet answered, in order (the server answers each with ICANHAZ-OK or SRSLY). */
  #awaitingReply: string[] = [];
  #socket: Dealer | undefined;
  #outgoing: { socket: Dealer; frame: Buffer }[] = [];
  #sending = false;
  #current: { vpath: string; file: IncomingFile } | undefined;
  #failedOpens = 0;
  #defaultInbox: Promise<Inbox> | undefined;
  #closed = false;

  constructor(options: ClientOptions) {
    super();
    const heartbeatMs = options.heartbeatMs ?? clientDefaults.heartbeatMs;
    this.options = { ...clientDefaults, timeoutMs: heartbeatMs * 5, ...options };
    this.#window = new ReceiveWindow(this.options.window, this.options.slice);
    this.#heartbeat = new Heartbeat(
      { intervalMs: this.options.heartbeatMs, timeoutMs: this.options.timeoutMs },
      () => this.#engine.post("expired", undefined),
      () => this.#engine.post("server lost", "server is silent"),
    );
    const actions: Actions<ClientAction, EventArg> = {
      "open socket and send OHAI": () => this.#openSocket(),
      "start session": () => this.#startSession(),
      "send every subscription": () => {
        for (const path of this.#subscriptions.keys()) this.#sendIcanhaz(path);
      },
      "store subscription": (arg) => this.#storeSubscription(arg as string),
      "send ICANHAZ": (arg) => this.#sendIcanhaz(arg as string),
      "confirm subscription": () => {
        const path = this.#awaitingReply.shift();
        if (path !== undefined) this.emit("subscribed", path);
      },
      "refuse subscription": (arg) => {
        const path = this.#awaitingReply.shift();
        if (path !== undefined) this.#subscriptions.delete(path);
        this.#report(new ClientError(`subscription to ${path ?? "?"} refused: ${(arg as Srsly).reason || "no reason given"}`));
      },
      "grant credit": () => {
        const grant = this.#window.refill();
        if (grant > 0) this.#send({ id: "NOM", credit: BigInt(grant), sequence: 0n });
      },
      "process the chunk": (arg) => this.#processChunk(arg as Cheezburger),
      "send HUGZ": () => this.#send({ id: "HUGZ" }),
      "report disconnection": (arg) => {
        const reason = typeof arg === "string" ? arg : arg && "id" in arg && arg.id === "RTFM" ? `server said RTFM${arg.reason ? `: ${arg.reason}` : ""}` : "session lost";
        this.emit("disconnected", reason);
      },
      "report protocol error": (arg) => {
        const what = arg instanceof Error ? arg.message : arg && typeof arg === "object" && "id" in arg ? `unexpected ${arg.id}` : String(arg);
        this.#report(new ClientError(`protocol error from server: ${what}`));
      },
      "send KTHXBAI and stop": () => this.#goodbye(),
    };
    this.#engine = new Engine(clientMachine, actions, {
      isWildcardEvent: (event) => event === event.toUpperCase(),
      ...(this.options.trace ? { trace: this.options.trace } : {}),
      onActionError: (error, _state, event, action) => this.#report(new ClientError(`"${action}" failed on ${event}: ${String(error)}`)),
    });
  }

  /** Start: connect and open a session. Subscriptions made before or after are sent once it is open. */
  connect(): this {
    this.#heartbeat.start();
    this.#engine.post("connect", undefined);
    return this;
  }

  /**
   * Subscribe to a virtual path ("/" for everything). Files under it land in `inbox` (default: the
   * client's inbox), named relative to the path: subscribing to "/sub" puts "/sub/x.txt" at inbox/x.txt.
   */
  async subscribe(path: string, inbox?: string): Promise<void> {
    const normalised = normaliseVirtualPath(path);
    if (normalised === undefined) throw new ClientError(`invalid path "${path}": must start with "/" and contain no "." or ".." segments`);
    const box = inbox === undefined ? await this.#inbox() : await Inbox.open(inbox);
    this.#subscriptions.set(normalised, { path: normalised, inbox: box });
    this.#engine.post("subscribe", normalised);
  }

  get state(): string {
    return this.#engine.state;
  }

  /** Say KTHXBAI (best effort), stop, and release everything. Resolves within about 100 ms. */
  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    this.#heartbeat.stop();
    const socket = this.#socket;
    if (socket && !socket.closed && this.#engine.state === "connected") {
      // A parting KTHXBAI; never wait on it for long (the server may be gone).
      await Promise.race([socket.send(encode({ id: "KTHXBAI" })).catch(() => undefined), new Promise((r) => setTimeout(r, 100))]);
    }
    this.#engine.stop();
    this.#socket = undefined;
    socket?.close();
    await this.#current?.file.abandon();
    this.#current = undefined;
  }

  // --- actions -------------------------------------------------------------------------------------

  async #openSocket(): Promise<void> {
    const delay = RECONNECT_BACKOFF_MS[Math.min(this.#failedOpens, RECONNECT_BACKOFF_MS.length - 1)]!;
    this.#failedOpens++;
    if (delay > 0) await new Promise((resolve) => setTimeout(resolve, delay));
    if (this.#closed) return;
    this.#socket?.close();
    this.#outgoing = [];
    this.#awaitingReply = [];
    const socket = new Dealer({ linger: 0, receiveHighWaterMark: 10_000 });
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
    this.#failedOpens = 0;
    this.#window.reset();
    this.#awaitingReply = [];
    // A file half received in the last session will be sent again from the start.
    await this.#dropCurrent();
    this.emit("connected");
  }

  #storeSubscription(path: string): void {
    // Stored by subscribe() already (with its inbox); the table keeps this step visible.
    if (!this.#subscriptions.has(path)) throw new ClientError(`unknown subscription ${path}`);
  }

  #sendIcanhaz(path: string): void {
    this.#awaitingReply.push(path);
    this.#send({ id: "ICANHAZ", path, options: new Map(), cache: new Map() });
  }

  async #processChunk(message: Cheezburger): Promise<void> {
    // Count credit for every chunk, wanted or not: otherwise client and server disagree and the
    // transfer stalls (the reference's credit divergence).
    if (message.operation === Operation.CREATE) this.#window.received(message.chunk.length);
    const target = this.#route(message.filename);
    if (typeof target === "string") return this.#report(new InboxError(target, message.filename));
    const { sub, relative } = target;
    try {
      if (message.operation === Operation.DELETE) {
        if (this.#current?.vpath === message.filename) await this.#dropCurrent();
        if (await sub.inbox.remove(relative)) this.emit("deleted", { path: relative, vpath: message.filename });
        return;
      }
      if (message.operation !== Operation.CREATE) throw new InboxError(`unknown operation ${message.operation}`, relative);
      const offset = Number(message.offset);
      if (!Number.isSafeInteger(offset)) throw new InboxError(`offset ${message.offset} out of range`, relative);
      let current = this.#current;
      if (current && (current.vpath !== message.filename || offset === 0)) {
        // The server moved on to another file (or restarted this one): the old partial is incomplete.
        if (current.vpath !== message.filename) this.#report(new InboxError(`${current.file.relative}: incomplete, server moved on`, current.file.relative));
        await this.#dropCurrent();
        current = undefined;
      }
      if (!current) {
        if (offset !== 0) throw new InboxError(`${relative}: chunk at offset ${offset} without the start of the file`, relative);
        current = { vpath: message.filename, file: await sub.inbox.create(relative) };
        this.#current = current;
      }
      if (message.chunk.length > 0) await current.file.write(message.chunk, offset);
      // The reference client finishes a file on an empty chunk; the spec's signal is eof=1. Accept either.
      if (message.chunk.length === 0 || message.eof === 1) {
        this.#current = undefined;
        await current.file.finish();
        this.emit("delivered", { path: relative, vpath: message.filename, file: current.file.finalPath, size: current.file.received });
      }
    } catch (error) {
      if (this.#current?.vpath === message.filename) await this.#dropCurrent();
      const code = (error as NodeJS.ErrnoException).code;
      this.#report(error instanceof InboxError ? error : new InboxError(`${relative}: ${code ?? String(error)}`, relative));
    }
  }

  #goodbye(): void {
    this.#send({ id: "KTHXBAI" });
    this.#engine.stop();
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
    return { sub: best, relative };
  }

  async #dropCurrent(): Promise<void> {
    const current = this.#current;
    this.#current = undefined;
    await current?.file.abandon();
  }

  #inbox(): Promise<Inbox> {
    this.#defaultInbox ??= Inbox.open(this.options.inbox);
    return this.#defaultInbox;
  }

  #report(error: Error): void {
    if (this.listenerCount("error") > 0) this.emit("error", error);
  }

  #send(message: ClientMessage): void {
    const socket = this.#socket;
    if (!socket || socket.closed) return;
    this.#outgoing.push({ socket, frame: encode(message) });
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
      for await (const frames of socket) {
        if (socket !== this.#socket) break;
        this.#heartbeat.heard();
        const result = decodeFrames(frames);
        if (result.ok) this.#engine.post(result.message.id, result.message);
        else if (result.error.reply !== "discard") this.#engine.post("malformed", result.error);
      }
    } catch {
      // The socket was closed under us: a new session has its own reader.
    }
  }
}
