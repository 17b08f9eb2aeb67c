// The client's side of CURVE and PLAIN: the DEALER's options, and plain words for a handshake that fails
// (libzmq only retries, silently, so without this a client with the wrong key would just wait forever).

import { randomBytes } from "node:crypto";
import { readFile, stat } from "node:fs/promises";
import type { Dealer } from "zeromq";
import { USER_SESSION_SEPARATOR } from "./policy.js";
import { describe, othersMayAccess, readPublicKey, readSecretKeyFile } from "./keys.js";

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
  /** Kinds of failure said since the last handshake that succeeded (kinds may alternate between tries). */
  readonly #reported = new Set<string>();

  constructor(
    private readonly security: ClientSecurity | undefined,
    private readonly report: (message: string) => void,
  ) {}

  watch(socket: Dealer): void {
    const events = socket.events;
    events.on("handshake", () => {
      this.#reported.clear();
    });
    events.on("handshake:error:auth", (event) => {
      const status = (event.error as { status?: number } | undefined)?.status;
      const why = status === 300 ? "the server is busy (try again)" : this.#refusedWhat();
      this.#once("auth", `authentication failed: ${why}`);
    });
    events.on("handshake:error:protocol", (event) => {
      this.#once("protocol", `handshake failed: ${event.error.message}; ${this.#mismatchHint()}`);
    });
    events.on("handshake:error:other", (event) => {
      // The server hung up: a publisher stopped while it answered (a restart, which passes by itself: said
      // first; a soak test was told to look at its security), CURVE with the wrong server key (the server
      // cannot open our HELLO), or no ZeroMQ server at all (a web server answers and hangs up).
      const hint = this.security?.curve
        ? "the server hung up on our CURVE handshake: a publisher restarting (then this passes), or is --curve-server not the server's public key, or does the server not use CURVE?"
        : `the server hung up: a publisher restarting (then this passes), or is it not an fmq publisher? ${this.#mismatchHint()}`;
      this.#once("other", `handshake failed (${event.error.message}): ${hint}`);
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

  /**
   * Said once per kind of failure until a handshake succeeds: libzmq retries a few times a second, and
   * the system's words for one failure vary between tries (black-box testing: a web server's port gave
   * "Broken pipe" and "Connection reset" in turn, and a line twice a second for ever).
   */
  #once(kind: string, message: string): void {
    if (this.#reported.has(kind)) return;
    this.#reported.add(kind);
    this.report(message);
  }
}

/** What `fmq subscribe` was given for security (file paths; the password from a file or the environment). */
export interface ClientSecurityFlags {
  readonly curveServer?: string;
  readonly curveSecret?: string;
  readonly user?: string;
  readonly passwordFile?: string;
  readonly password?: string;
}

/** Read key and password files into ClientSecurity; one-line errors that say which flag is wrong. */
export async function loadClientSecurity(flags: ClientSecurityFlags): Promise<ClientSecurity | undefined> {
  const curve = flags.curveServer !== undefined || flags.curveSecret !== undefined;
  if (curve && flags.user !== undefined) throw new Error("choose CURVE (--curve-server, --curve-secret) or PLAIN (--user), not both");
  if (curve) {
    if (flags.curveServer === undefined) throw new Error("--curve-secret needs --curve-server <server.pub>: the server's public key");
    if (flags.curveSecret === undefined) throw new Error("--curve-server needs --curve-secret <client.key>: our own key (make one with: fmq keygen --out <name>)");
    const serverKey = await readPublicKey(flags.curveServer).catch((error: unknown) => {
      throw new Error(`--curve-server: ${(error as Error).message}`);
    });
    const ours = await readSecretKeyFile(flags.curveSecret).catch((error: unknown) => {
      throw new Error(`--curve-secret: ${(error as Error).message}`);
    });
    return { curve: { serverKey, publicKey: ours.publicKey, secretKey: ours.secretKey } };
  }
  if (flags.user !== undefined) {
    if (flags.user === "" || flags.user.includes(USER_SESSION_SEPARATOR)) throw new Error(`--user must be non-empty and without "${USER_SESSION_SEPARATOR}"`);
    let password = flags.password;
    if (flags.passwordFile !== undefined) {
      const file = flags.passwordFile;
      const cannotRead = (error: unknown): never => {
        throw new Error(`--password-file: cannot read ${file}: ${describe(error)}`);
      };
      const info = await stat(file).catch(cannotRead);
      // (Before its mode: a directory's 0755 was said to be "accessible by others", a review.)
      if (info.isDirectory()) throw new Error(`--password-file: cannot read ${file}: is a directory`);
      const open = othersMayAccess(info);
      if (open) throw new Error(`--password-file: ${file} is accessible by others (mode ${open}); run: chmod 600 ${file}`);
      const text = await readFile(file, "utf8").catch(cannotRead);
      password = text.split(/\r?\n/)[0];
    }
    if (password === undefined || password === "") throw new Error("--user needs a password: --password-file <file>, or FMQ_PASSWORD in the environment");
    return { plain: { username: flags.user, password } };
  }
  if (flags.passwordFile !== undefined) throw new Error("--password-file needs --user <name>");
  return undefined;
}
