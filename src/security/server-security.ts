// What a server needs for CURVE or PLAIN: its socket options, its ZAP domain (registered with the shared
// handler before the socket binds), and the per-connection access check.

import { Access, type AccessPolicy } from "./policy.js";
import { publicKeyOf } from "./keys.js";
import { newZapDomain, registerZapDomain } from "./zap.js";

export interface ServerSecurityOptions {
  /** The policy: mechanism, CURVE allow-list, PLAIN accounts, anonymous access. */
  readonly policy: AccessPolicy;
  /** CURVE: the server's secret key (Z85). */
  readonly curveSecretKey?: string;
}

export class SecurityError extends Error {
  override name = "SecurityError";
}

/** The ROUTER options, ZAP registration and access checks of one server. */
export class ServerSecurity {
  readonly access: Access;
  readonly domain: string | undefined;
  /** The server's CURVE public key (Z85), to tell clients. */
  readonly publicKey: string | undefined;
  /** routing id (hex) -> user, filled by the ZAP handler. */
  readonly #sessions = new Map<string, string>();
  #release: (() => void) | undefined;
  #starting: Promise<void> | undefined;
  #stopped = false;

  constructor(
    readonly options: ServerSecurityOptions,
    private readonly refused: (message: string) => void,
  ) {
    this.access = new Access(options.policy);
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
      sessions: this.#sessions,
      refused: (reason, mechanism, address) => this.refused(`refused ${mechanism} handshake from ${address}: ${reason}`),
    }).then((release) => {
      // Stopped while registering: let go at once.
      if (this.#stopped) release();
      else this.#release = release;
    });
    return this.#starting;
  }

  stop(): void {
    this.#stopped = true;
    this.#release?.();
    this.#release = undefined;
  }

  /** The user behind a connection (by its routing id, hex), if the server knows it. */
  userOf(key: string): string | undefined {
    if (this.options.policy.mechanism === "null") return "anonymous";
    return this.#sessions.get(key);
  }

  /**
   * A connection with this routing id closed (libzmq told the server): its login goes with it. Kept,
   * anyone who later connected with that routing id (it is no secret: PLAIN sends it in clear, our logs
   * print it) and logged in as anyone would read as its first user. Not when the server merely forgets
   * the session (KTHXBAI, RTFM, expiry): the connection, and so its login, may still be in use.
   */
  closed(key: string): void {
    this.#sessions.delete(key);
  }

  mayRead(key: string, path: string): boolean {
    return this.access.mayRead(this.userOf(key), path);
  }
}
