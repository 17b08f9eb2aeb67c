// The client's side of CURVE and PLAIN: the DEALER's options, and plain words for a handshake that fails
// (libzmq only retries, silently, so without this a client with the wrong key would just wait forever).

import { randomBytes } from "node:crypto";
import type { Dealer } from "zeromq";
import { USER_SESSION_SEPARATOR } from "./policy.js";

export interface ClientSecurity {
  /** CURVE: the server's public key, and ours (all Z85). */
  readonly curve?: { readonly serverKey: string; readonly publicKey: string; readonly secretKey: string };
  /** PLAIN: user name and password (sent in clear: PLAIN authenticates, it does not encrypt). */
  readonly plain?: { readonly username: string; readonly password: string };
}

export interface DealerSecurityOptions {
  routingId: string;
  curveServerKey?: string;
  curvePublicKey?: string;
  curveSecretKey?: string;
  plainUsername?: string;
  plainPassword?: string;
}

/**
 * Options for a new DEALER: a fresh random routing id (so the server can tie a PLAIN login to this
 * connection: we log in as "user#<routing id>"), and the CURVE or PLAIN credentials.
 */
export function dealerSecurityOptions(security: ClientSecurity | undefined): DealerSecurityOptions {
  // base64url never has a NUL byte, which libzmq reserves for the ids it makes itself.
  const routingId = `fmq${randomBytes(9).toString("base64url")}`;
  if (security?.curve) {
    const { serverKey, publicKey, secretKey } = security.curve;
    return { routingId, curveServerKey: serverKey, curvePublicKey: publicKey, curveSecretKey: secretKey };
  }
  if (security?.plain) {
    const { username, password } = security.plain;
    // libzmq refuses an empty PLAIN password (EINVAL).
    if (password === "") throw new Error("PLAIN needs a non-empty password");
    if (username === "" || username.includes(USER_SESSION_SEPARATOR)) throw new Error(`PLAIN user name must be non-empty and without "${USER_SESSION_SEPARATOR}"`);
    return { routingId, plainUsername: `${username}${USER_SESSION_SEPARATOR}${routingId}`, plainPassword: password };
  }
  return { routingId };
}

/** Watches each socket's handshakes and reports a failure once (again only after a success). */
export class HandshakeWatcher {
  #reported: string | undefined;

  constructor(
    private readonly security: ClientSecurity | undefined,
    private readonly report: (message: string) => void,
  ) {}

  watch(socket: Dealer): void {
    const events = socket.events;
    events.on("handshake", () => {
      this.#reported = undefined;
    });
    events.on("handshake:error:auth", (event) => {
      const status = (event.error as { status?: number } | undefined)?.status;
      const why = status === 300 ? "the server is busy (try again)" : this.#refusedWhat();
      this.#once(`authentication failed: ${why}`);
    });
    events.on("handshake:error:protocol", (event) => {
      this.#once(`handshake failed: ${event.error.message}; ${this.#mismatchHint()}`);
    });
    events.on("handshake:error:other", (event) => {
      // CURVE with the wrong server key: the server cannot open our HELLO and hangs up.
      const hint = this.security?.curve
        ? "the server did not accept our CURVE handshake: is --curve-server the server's public key, and does the server use CURVE?"
        : this.#mismatchHint();
      this.#once(`handshake failed (${event.error.message}): ${hint}`);
    });
  }

  #refusedWhat(): string {
    if (this.security?.curve) return "the server refused our CURVE key (not in its allow-list?)";
    if (this.security?.plain) return `the server refused user "${this.security.plain.username}" (wrong user name or password?)`;
    return "the server refused us";
  }

  #mismatchHint(): string {
    if (this.security?.curve) return "does the server use CURVE?";
    if (this.security?.plain) return "does the server use PLAIN?";
    return "the server may require CURVE (--curve-server, --curve-secret) or PLAIN (--user)";
  }

  #once(message: string): void {
    if (message === this.#reported) return;
    this.#reported = message;
    this.report(message);
  }
}
