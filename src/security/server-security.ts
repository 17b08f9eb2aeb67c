// What a server needs for CURVE or PLAIN: its socket options, its ZAP domain (registered with the shared
// handler before the socket binds), and the per-connection access check.

import type { Router } from "zeromq";
import { Logins, type LoginLimits } from "./logins.js";
import { Access, type AccessPolicy } from "./policy.js";
import { publicKeyOf } from "./keys.js";
import { newZapDomain, registerZapDomain } from "./zap.js";
import { monotonic } from "../clock.js";

export interface ServerSecurityOptions {
  /** The policy: mechanism, CURVE allow-list, PLAIN accounts, anonymous access. */
  readonly policy: AccessPolicy;
  /** CURVE: the server's secret key (Z85). */
  readonly curveSecretKey?: string;
  /** Bounds of the routing id -> user table (see logins.ts); the defaults, unless a test needs them small. */
  readonly logins?: LoginLimits;
  /** Refusals of one kind from one address are said once, then counted and the count said this often (60 s). */
  readonly refusalLogMs?: number;
}

/** Most (kind, address) pairs whose refusals are counted apart; the rest are counted together. */
const MAX_REFUSAL_KINDS = 100;

export class SecurityError extends Error {
  override name = "SecurityError";
}

/** libzmq's handshake protocol errors, in words. */
const WHY_NOT: Record<string, string> = {
  ERR_ZMTP_CRYPTOGRAPHIC: "its HELLO could not be opened (a client with the wrong server public key?)",
  ERR_ZMTP_KEY_EXCHANGE: "the key exchange failed",
};

/** The ROUTER options, ZAP registration and access checks of one server. */
export class ServerSecurity {
  readonly access: Access;
  readonly domain: string | undefined;
  /** The server's CURVE public key (Z85), to tell clients. */
  readonly publicKey: string | undefined;
  /** routing id (hex) -> user, filled by the ZAP handler. */
  readonly #logins: Logins;
  /** ZAP refusals: (mechanism, address, kind) -> said when, and how many since then unsaid. */
  readonly #refusals = new Map<string, { readonly line: string; since: number; unsaid: number }>();
  /** Refusals unsaid because #refusals was full. */
  #otherRefusals = 0;
  #refusalTimer: NodeJS.Timeout | undefined;
  #release: (() => void) | undefined;
  #starting: Promise<void> | undefined;
  #stopped = false;

  constructor(
    readonly options: ServerSecurityOptions,
    private readonly refused: (message: string) => void,
  ) {
    this.access = new Access(options.policy);
    this.#logins = new Logins(options.logins);
    const { mechanism } = options.policy;
    if (mechanism === "curve" && options.curveSecretKey === undefined) throw new SecurityError("CURVE needs the server's secret key");
    if (mechanism === "null" && !this.access.anonymous) throw new SecurityError("anonymous access can only be turned off with CURVE or PLAIN");
    this.publicKey = mechanism === "curve" ? publicKeyOf(options.curveSecretKey!) : undefined;
    this.domain = mechanism === "null" ? undefined : newZapDomain();
  }

  /** Options for the server's ROUTER. */
  socketOptions(): { curveServer?: boolean; curveSecretKey?: string; plainServer?: boolean; zapDomain?: string; zapEnforceDomain?: boolean } {
    const { mechanism } = this.options.policy;
    if (mechanism === "null") return {};
    // With zapEnforceDomain, a missing ZAP handler means "refuse", never "admit everyone".
    const zap = { zapDomain: this.domain!, zapEnforceDomain: true };
    if (mechanism === "curve") return { curveServer: true, curveSecretKey: this.options.curveSecretKey!, ...zap };
    return { plainServer: true, ...zap };
  }

  /** Register with the ZAP handler. Call before the socket binds. */
  start(): Promise<void> {
    if (this.domain === undefined) return Promise.resolve();
    const domain = this.domain;
    this.#starting ??= registerZapDomain(domain, {
      access: this.access,
      logins: this.#logins,
      refused: (reason, mechanism, address) => this.#refusedByZap(reason, mechanism, address),
    }).then((release) => {
      // Stopped while registering: let go at once.
      if (this.#stopped) release();
      else this.#release = release;
    });
    return this.#starting;
  }

  /**
   * A handshake the ZAP handler refused. Said with the peer's address; but a client retries every second
   * or so, and anyone may make handshakes as fast as the server refuses them (a review: 200 made-up users,
   * 347 lines in 3 s): the first refusal of each kind from each address is said, the rest counted and the
   * count said once a minute. The kind is the reason without what the peer chose (a user name).
   */
  #refusedByZap(reason: string, mechanism: string, address: string): void {
    this.#sayRefused(`zap ${mechanism} ${address} ${reason.replace(/"[^"]*"/g, '"..."')}`, `refused ${mechanism} handshake from ${address}: ${reason}`);
  }

  /** A refusal of `kind` (what is counted together), said as `line` if it is the first of its kind this interval. */
  #sayRefused(kind: string, line: string): void {
    const now = monotonic();
    const interval = this.options.refusalLogMs ?? 60_000;
    const seen = this.#refusals.get(kind);
    if (seen && now - seen.since < interval) {
      seen.unsaid++;
      return;
    }
    if (seen) {
      if (seen.unsaid > 0) this.#sayUnsaid(seen, now);
      seen.since = now;
      return this.refused(line);
    }
    if (this.#refusals.size >= MAX_REFUSAL_KINDS) {
      this.#otherRefusals++;
      return;
    }
    this.#refusals.set(kind, { line, since: now, unsaid: 0 });
    this.refused(line);
    this.#refusalTimer ??= setInterval(() => this.#sayCounts(interval), interval).unref();
  }

  /** Once an interval: the counts of refusals not said, and forget kinds that have gone quiet. */
  #sayCounts(interval: number): void {
    const now = monotonic();
    for (const [kind, seen] of this.#refusals) {
      if (seen.unsaid > 0) this.#sayUnsaid(seen, now);
      else if (now - seen.since >= interval) this.#refusals.delete(kind);
    }
    if (this.#otherRefusals > 0) {
      this.refused(`refused ${this.#otherRefusals} more handshakes in the last ${Math.round(interval / 1000)} s (from other addresses or for other reasons)`);
      this.#otherRefusals = 0;
    }
    if (this.#refusals.size === 0) {
      clearInterval(this.#refusalTimer);
      this.#refusalTimer = undefined;
    }
  }

  #sayUnsaid(seen: { readonly line: string; since: number; unsaid: number }, now: number): void {
    this.refused(`${seen.line} (and ${seen.unsaid} more like it in the last ${Math.max(1, Math.round((now - seen.since) / 1000))} s)`);
    seen.unsaid = 0;
    seen.since = now;
  }

  /**
   * Handshakes that fail before the ZAP handler is asked (a client with the wrong server key, or
   * garbage) are reported by libzmq on the socket's monitor only: said too, and counted, as the handler's
   * refusals are (#sayRefused). libzmq names the endpoint they came in on, not the peer.
   */
  watch(socket: Router): void {
    if (this.domain === undefined) return;
    const mechanism = this.options.policy.mechanism.toUpperCase();
    const say = (address: string, why: string) => this.#sayRefused(`zmq ${address} ${why}`, `refused ${mechanism} handshake on ${address}: ${why}`);
    // (Not "handshake:error:other": a system error such as a peer hanging up mid-handshake, which every
    // refused client does once it has its answer.)
    socket.events.on("handshake:error:protocol", (event) => {
      const code = (event.error as { code?: string }).code ?? "";
      // (Not a client without security: libzmq does not always report it, and our own subscriber's
      // check of its endpoint, a bare connection closed at once, sometimes does, for a client that then
      // logs in well.)
      if (code === "ERR_ZMTP_MECHANISM_MISMATCH") return;
      const why = WHY_NOT[code] ?? `${event.error.message} (${code || "no code"})`;
      say(event.address, why);
    });
  }

  stop(): void {
    this.#stopped = true;
    clearInterval(this.#refusalTimer);
    this.#refusalTimer = undefined;
    this.#release?.();
    this.#release = undefined;
  }

  /** The user behind a connection (by its routing id, hex), if the server knows it. */
  userOf(key: string): string | undefined {
    if (this.options.policy.mechanism === "null") return "anonymous";
    return this.#logins.userOf(key);
  }

  /**
   * The ROUTER got a message from routing id `key` (hex): a login that named it is this connection's now,
   * kept until the connection closes. Until then it was only the client's word (see logins.ts).
   */
  confirm(key: string): void {
    this.#logins.confirm(key);
  }

  /**
   * A connection with this routing id closed (libzmq told the server): its login goes with it. Kept,
   * anyone who later connected with that routing id (it is no secret: PLAIN sends it in clear, our logs
   * print it) and logged in as anyone would read as its first user. Not when the server merely forgets
   * the session (KTHXBAI, RTFM, expiry): the connection, and so its login, may still be in use.
   */
  closed(key: string): void {
    this.#logins.remove(key);
  }

  mayRead(key: string, path: string): boolean {
    return this.access.mayRead(this.userOf(key), path);
  }
}
