// Routing id -> user, as the ZAP handler records logins (see zap.ts). The routing id a login names is the
// client's word ("user#<routing id>"): nothing ties it to the connection that logged in. A record becomes
// the connection's only when the ROUTER gets a first message from that routing id (confirm); until then
// it is unconfirmed, and goes after a few seconds. A confirmed record goes only when its connection closes
// (remove). So a client that names routing ids it never connects with leaves nothing behind for long, and
// cannot push real logins out: a full table refuses new logins for now (ZAP 300) rather than evict one.

import { monotonic } from "../clock.js";

/** Most records kept, confirmed or not; beyond, logins are refused for now. */
export const MAX_LOGINS = 100_000;
/** An unconfirmed record goes after this long (our client says OHAI as soon as it is connected). */
export const UNCONFIRMED_MS = 10_000;
/** Most unconfirmed records per user at once (logins of one account can be had fast: see Access #verified). */
export const UNCONFIRMED_PER_USER = 64;

export interface LoginLimits {
  readonly maxLogins?: number;
  readonly unconfirmedMs?: number;
  readonly unconfirmedPerUser?: number;
}

/** What became of a login's claim on a routing id. */
export type Bound = "bound" | "taken" | "full" | "too many unconfirmed";

export class Logins {
  readonly #max: number;
  readonly #unconfirmedMs: number;
  readonly #perUser: number;
  readonly #confirmed = new Map<string, string>();
  /** In order of login, so the oldest (the first to expire) are first. */
  readonly #unconfirmed = new Map<string, { readonly user: string; readonly quota: string; readonly since: number }>();
  readonly #unconfirmedOf = new Map<string, number>();

  constructor(limits: LoginLimits = {}) {
    this.#max = limits.maxLogins ?? MAX_LOGINS;
    this.#unconfirmedMs = limits.unconfirmedMs ?? UNCONFIRMED_MS;
    this.#perUser = limits.unconfirmedPerUser ?? UNCONFIRMED_PER_USER;
  }

  get size(): number {
    return this.#confirmed.size + this.#unconfirmed.size;
  }

  /**
   * A login of `user` names routing id `key` (hex). `quota`: whose count of unconfirmed records it adds
   * to, the user's by default (see zap.ts: anonymous logins count per peer address).
   */
  bind(key: string, user: string, now = monotonic(), quota = user): Bound {
    this.#expire(now);
    const bound = this.#confirmed.get(key) ?? this.#unconfirmed.get(key)?.user;
    // (First login wins: a routing id is no secret, and another user must not take over its connection.)
    if (bound !== undefined) return bound === user ? "bound" : "taken";
    if (this.size >= this.#max) return "full";
    const waiting = this.#unconfirmedOf.get(quota) ?? 0;
    if (waiting >= this.#perUser) return "too many unconfirmed";
    this.#unconfirmed.set(key, { user, quota, since: now });
    this.#unconfirmedOf.set(quota, waiting + 1);
    return "bound";
  }

  /** The ROUTER got a message from routing id `key`: its record, if any, is its connection's now. */
  confirm(key: string): void {
    const record = this.#unconfirmed.get(key);
    if (record === undefined) return;
    this.#forget(key, record.quota);
    this.#confirmed.set(key, record.user);
  }

  /** The user logged in for routing id `key` (hex), if any. */
  userOf(key: string, now = monotonic()): string | undefined {
    const confirmed = this.#confirmed.get(key);
    if (confirmed !== undefined) return confirmed;
    const record = this.#unconfirmed.get(key);
    if (record === undefined) return undefined;
    if (now - record.since < this.#unconfirmedMs) return record.user;
    this.#forget(key, record.quota);
    return undefined;
  }

  /** The connection with routing id `key` closed: its login goes with it. */
  remove(key: string): void {
    this.#confirmed.delete(key);
    const record = this.#unconfirmed.get(key);
    if (record !== undefined) this.#forget(key, record.quota);
  }

  #expire(now: number): void {
    for (const [key, record] of this.#unconfirmed) {
      if (now - record.since < this.#unconfirmedMs) break;
      this.#forget(key, record.quota);
    }
  }

  #forget(key: string, quota: string): void {
    this.#unconfirmed.delete(key);
    const waiting = (this.#unconfirmedOf.get(quota) ?? 1) - 1;
    if (waiting > 0) this.#unconfirmedOf.set(quota, waiting);
    else this.#unconfirmedOf.delete(quota);
  }
}
