// The ZAP handler (ZeroMQ RFC 27): libzmq asks it, over inproc://zeromq.zap.01, whether each CURVE or
// PLAIN handshake may proceed. zeromq.js has none built in. There can be one per ZeroMQ context (one
// endpoint), so it is shared by every secured server of the process: each server has its own ZAP domain
// and its own Access policy, and the handler lives while at least one server needs it. A secured
// server's socket also sets zapEnforceDomain, so if the handler were ever missing libzmq would refuse
// the handshake instead of admitting everyone.
//
// Sessions: libzmq tells ZAP nothing about the connection that the ROUTER will later name (the ZAP
// "identity" is the server socket's own routing id). Our client therefore logs in to PLAIN as
// "user#<routing id>" and sets that routing id on its socket: the handler records routing id -> user
// (first login wins; see logins.ts), and the server looks the user up by the routing id its ROUTER sees.

import { Router } from "zeromq";
import type { Logins } from "./logins.js";
import { ANONYMOUS, type Access } from "./policy.js";
import { monotonic } from "../clock.js";

export const ZAP_ENDPOINT = "inproc://zeromq.zap.01";
const ZAP_VERSION = "1.0";

/** Binding the handler's endpoint while a closed one still holds it: tries, and the wait between them (2 s in all). */
const BIND_ATTEMPTS = 40;
const BIND_RETRY_MS = 50;

/** Most handshakes being judged at once (scrypt is slow on purpose); beyond this, refused at once. */
const MAX_PENDING = 256;

export interface Domain {
  readonly access: Access;
  /** routing id (as the ROUTER sees it, hex) -> authenticated user. */
  readonly logins: Logins;
  /** A handshake was refused: the reason, the mechanism and the peer address. */
  readonly refused: (reason: string, mechanism: string, address: string) => void;
}

class ZapHandler {
  readonly #socket = new Router({ linger: 0 });
  readonly #domains = new Map<string, Domain>();
  #sending: Promise<unknown> = Promise.resolve();
  #pending = 0;

  static async open(): Promise<ZapHandler> {
    const handler = new ZapHandler();
    // (The handler closed a moment ago, the last server of this process gone, may still hold the endpoint:
    // libzmq unbinds a closed socket's inproc endpoint in its own time. A server started right after failed
    // with "Address already in use", seen under load in the test suite. Tried again for a while.)
    for (let attempt = 1; ; attempt++) {
      try {
        await handler.#socket.bind(ZAP_ENDPOINT);
        break;
      } catch (error) {
        if ((error as { code?: string }).code === "EADDRINUSE" && attempt < BIND_ATTEMPTS) {
          await new Promise((resolve) => setTimeout(resolve, BIND_RETRY_MS));
          continue;
        }
        handler.#socket.close();
        throw new Error(`cannot start the ZAP authentication handler on ${ZAP_ENDPOINT}: ${(error as Error).message}`);
      }
    }
    void handler.#run();
    return handler;
  }

  get domains(): number {
    return this.#domains.size;
  }

  add(name: string, domain: Domain): void {
    this.#domains.set(name, domain);
  }

  remove(name: string): void {
    this.#domains.delete(name);
  }

  close(): void {
    this.#socket.close();
  }

  async #run(): Promise<void> {
    try {
      for await (const frames of this.#socket) void this.#answer(frames);
    } catch {
      // closed
    }
  }

  /** Request: [routing id, "", version, request id, domain, address, identity, mechanism, credentials...]. */
  async #answer(frames: Buffer[]): Promise<void> {
    const [routingId, empty, version, requestId, domainName, address, , mechanismFrame, ...credentials] = frames;
    if (!routingId || !empty || !version || !requestId) return;
    const reply = (status: "200" | "300" | "400" | "500", text: string, user = "") =>
      this.#send([routingId, empty, ZAP_VERSION, requestId, status, text, user, ""]);
    if (version.toString() !== ZAP_VERSION || !domainName || !mechanismFrame) return reply("500", "bad ZAP request");
    const mechanism = mechanismFrame.toString();
    const domain = this.#domains.get(domainName.toString());
    const peer = address?.toString() ?? "?";
    if (!domain) return reply("400", "unknown ZAP domain");
    if (this.#pending >= MAX_PENDING) {
      domain.refused("too many handshakes at once", mechanism, peer);
      return reply("300", "busy");
    }
    this.#pending++;
    let verdict;
    try {
      verdict = await domain.access.judge(mechanism, credentials);
    } catch (error) {
      verdict = { ok: false as const, reason: `internal error: ${(error as Error).message}` };
    } finally {
      this.#pending--;
    }
    if (!verdict.ok) {
      domain.refused(verdict.reason, mechanism, peer);
      return reply(verdict.busy ? "300" : "400", verdict.reason.slice(0, 200));
    }
    if (verdict.session !== undefined) {
      const key = Buffer.from(verdict.session).toString("hex");
      // (Anonymous logins cost no password, so anyone could use up the user's quota of unconfirmed
      // records and keep every anonymous client out (64 handshakes every 10 s: a review). They count per
      // peer address instead: a flood from one host keeps out that host's anonymous logins only.)
      const quota = verdict.user === ANONYMOUS ? `${ANONYMOUS} from ${peer}` : verdict.user;
      const bound = domain.logins.bind(key, verdict.user, monotonic(), quota);
      if (bound === "taken") {
        domain.refused(`routing id already bound to another user`, mechanism, peer);
        return reply("400", "session id in use");
      }
      // (Never by pushing another login out: that one may be a live connection's.)
      if (bound !== "bound") {
        domain.refused(bound === "full" ? "too many logins" : `too many logins of "${verdict.user.slice(0, 64)}" not yet used`, mechanism, peer);
        return reply("300", "busy");
      }
    }
    return reply("200", "OK", verdict.user);
  }

  /** zeromq.js allows one send in flight per socket: chain them. */
  #send(frames: (Buffer | string)[]): Promise<void> {
    const next = this.#sending.then(() => this.#socket.send(frames)).catch(() => undefined);
    this.#sending = next;
    return next;
  }
}

let shared: Promise<ZapHandler> | undefined;
let counter = 0;

/** A ZAP domain name unique in this process, for a server socket's zapDomain option. */
export function newZapDomain(): string {
  return `fmq-${process.pid}-${++counter}`;
}

/**
 * Register a domain with the process's ZAP handler (started on first use). Resolves once the handler is
 * bound, so a server that binds afterwards never handshakes without it. Returns a release function (the
 * handler stops when the last domain is released).
 */
export async function registerZapDomain(name: string, domain: Domain): Promise<() => void> {
  for (;;) {
    const opening = (shared ??= ZapHandler.open().catch((error: unknown) => {
      shared = undefined;
      throw error;
    }));
    const handler = await opening;
    // Released and closed by someone else while we waited: open a new one.
    if (shared !== opening) continue;
    handler.add(name, domain);
    let released = false;
    return () => {
      if (released) return;
      released = true;
      handler.remove(name);
      if (handler.domains === 0 && shared === opening) {
        shared = undefined;
        handler.close();
      }
    };
  }
}
