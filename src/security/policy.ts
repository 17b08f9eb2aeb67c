// Who may connect and what each may read. A policy is plain data (from the config file or the CLI);
// the ZAP handler (zap.ts) asks it to judge each handshake, and the server asks it before storing a
// subscription.
//
// Principals: each PLAIN account; each allow-listed CURVE key (reads everything); and "anonymous"
// (NULL clients, CURVE clients with an unlisted key when anonymous CURVE is allowed, PLAIN user
// "anonymous" with any password). A connection whose principal is unknown to the server (zeromq.js gives
// no per-message metadata, so a CURVE connection, or a PLAIN client that does not tell us its routing id,
// cannot be tied to its login) may read only what every principal that could have logged in may read.

import { randomBytes, scrypt as scryptCallback, timingSafeEqual, createHash, type ScryptOptions } from "node:crypto";
import { monotonic } from "../clock.js";
import { covers } from "../paths.js";
import { z85Decode } from "./z85.js";

export type Mechanism = "null" | "curve" | "plain";

export interface Account {
  readonly user: string;
  /** "scrypt$N$r$p$salt$hash" (see hashPassword) ... */
  readonly passwordHash?: string;
  /** ... or the password itself (a config file readable only by the server's user). */
  readonly password?: string;
  /** Virtual paths this account may read (and everything below them). Undefined: everything. */
  readonly mounts?: readonly string[];
}

export interface AccessPolicy {
  readonly mechanism: Mechanism;
  /** CURVE: client public keys (Z85) that are admitted; they read everything. */
  readonly allow?: readonly string[];
  /** PLAIN: the accounts. */
  readonly accounts?: readonly Account[];
  /**
   * Admit clients that are not listed: NULL clients (mechanism "null"), CURVE clients with any key,
   * PLAIN user "anonymous" with any password. Default: true for "null", and for "curve" without an
   * allow-list; false otherwise.
   */
  readonly anonymous?: boolean;
  /** What anonymous clients may read. Undefined: everything. */
  readonly anonymousMounts?: readonly string[];
}

/** PLAIN user name our client sends: `user#routing-id`, so the server can tie the login to the session. */
export const USER_SESSION_SEPARATOR = "#";
export const ANONYMOUS = "anonymous";

export type Verdict =
  | { readonly ok: true; readonly user: string; readonly session?: string }
  /** `busy`: refused for now (too many password checks at once), not for the credentials: ZAP status 300. */
  | { readonly ok: false; readonly reason: string; readonly busy?: true };

/** scrypt cost: N=2^14, r=8 (16 MiB, ~40 ms), like the OWASP minimum. Stored in the hash, so it can change. */
const SCRYPT = { N: 16384, r: 8, p: 1, keylen: 32 } as const;

/** The memory OpenSSL's scrypt asks for: 128 * r * (N + p + 2) bytes, and refuses to run in less. */
const scryptMemory = (N: number, r: number, p: number): number => 128 * r * (N + p + 2);

function scrypt(password: string, salt: Buffer, keylen: number, options: ScryptOptions): Promise<Buffer> {
  // (maxmem below what OpenSSL needs fails every check with "memory limit exceeded": 256 * N * r did
  // for N = 2, or p = 16 with N = 16. The 1 MiB is slack for any rounding of OpenSSL's own.)
  const maxmem = scryptMemory(options.N!, options.r!, options.p!) + 1024 * 1024;
  return new Promise((resolve, reject) => scryptCallback(password, salt, keylen, { ...options, maxmem }, (error, key) => (error ? reject(error) : resolve(key))));
}

/** "scrypt$16384$8$1$<salt, base64>$<hash, base64>" for a config file. */
export async function hashPassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt, SCRYPT.keylen, SCRYPT);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString("base64")}$${key.toString("base64")}`;
}

/** Why a stored hash is unusable, or undefined if it is fine. */
export function passwordHashProblem(hash: string): string | undefined {
  const parts = hash.split("$");
  if (parts.length !== 6 || parts[0] !== "scrypt") return 'expected "scrypt$N$r$p$salt$hash" (make one with: fmq passwd)';
  const [N, r, p] = parts.slice(1, 4).map(Number) as [number, number, number];
  if (!Number.isInteger(N) || N < 2 || (N & (N - 1)) !== 0 || N > 2 ** 20) return "scrypt N must be a power of 2 up to 2^20";
  if (!Number.isInteger(r) || r < 1 || r > 32 || !Number.isInteger(p) || p < 1 || p > 16) return "scrypt r or p out of range";
  // (OpenSSL refuses N >= 2^(16 r) at every login: an account with such a hash could never log in.)
  if (16 * r < 64 && N >= 2 ** (16 * r)) return `scrypt N must be below 2^(16 * r) (2^${16 * r} for r = ${r})`;
  // (Memory per check is 128 * N * r bytes; a check runs per login attempt, CHECKS_AT_ONCE at a time.)
  if (128 * N * r > MAX_SCRYPT_MEMORY) return `scrypt N * r too large: 128 * N * r must be at most ${MAX_SCRYPT_MEMORY / 1024 ** 2} MiB`;
  if (Buffer.from(parts[4]!, "base64").length < 8 || Buffer.from(parts[5]!, "base64").length < 16) return "salt or hash too short";
  return undefined;
}

/** Most memory one password check may take (128 * N * r). */
const MAX_SCRYPT_MEMORY = 128 * 1024 * 1024;

/**
 * Password checks (scrypt, slow on purpose) running at once, and waiting, at most. scrypt runs in libuv's
 * thread pool (4 threads), which also does the server's file reads: anyone who can reach the port could
 * otherwise fill it with wrong passwords (a review measured a file read waiting 1.5 s behind 64 checks).
 * Beyond the waiting room a login is refused as busy (ZAP 300) at once, and costs nothing.
 */
const CHECKS_AT_ONCE = 2;
const CHECKS_WAITING = 16;

class PasswordChecks {
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  /** Run `check` when a slot is free; "busy" if too many wait already. */
  async run<T>(check: () => Promise<T>): Promise<T | "busy"> {
    if (this.#running < CHECKS_AT_ONCE) this.#running++;
    else if (this.#waiting.length >= CHECKS_WAITING) return "busy";
    // (Woken with the slot of the check that ended: #running already counts us.)
    else await new Promise<void>((resolve) => this.#waiting.push(resolve));
    try {
      return await check();
    } finally {
      const next = this.#waiting.shift();
      if (next) next();
      else this.#running--;
    }
  }
}

/** One queue for the process: the thread pool is the process's. */
const checks = new PasswordChecks();

/** The most a refusal is held to look like an unknown user's (see #asSlowAsAnyRefusal). */
const MAX_REFUSAL_PADDING_MS = 1_000;

/** A login refused for now, not for its credentials (ZAP 300). */
const BUSY: Verdict = { ok: false, reason: "too many password checks at once", busy: true };

/** Checked against for an unknown user, so that its refusal takes as long as a wrong password's. */
const DUMMY_HASH = `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${Buffer.alloc(16).toString("base64")}$${Buffer.alloc(SCRYPT.keylen).toString("base64")}`;

/** A hash of nobody's password with the costliest scrypt parameters among `hashes` (N × r × p; DUMMY_HASH's at least). */
function costliest(hashes: readonly string[]): string {
  let best = DUMMY_HASH;
  const cost = (hash: string) => {
    const [, N, r, p] = hash.split("$");
    return Number(N) * Number(r) * Number(p);
  };
  // (Only hashes a check can be run against: one OpenSSL refuses fails at once, and an unknown user's
  // refusal would then be quicker than a wrong password's, telling which users exist.)
  for (const hash of hashes) if (passwordHashProblem(hash) === undefined && cost(hash) > cost(best)) best = hash;
  const [, N, r, p, salt, expected] = best.split("$") as [string, string, string, string, string, string];
  // (Its salt and key replaced: the same cost, and no account's password matches it.)
  return `scrypt$${N}$${r}$${p}$${Buffer.alloc(Buffer.from(salt, "base64").length).toString("base64")}$${Buffer.alloc(Buffer.from(expected, "base64").length).toString("base64")}`;
}

async function verifyHash(password: string, hash: string): Promise<boolean> {
  const [, N, r, p, salt, expected] = hash.split("$") as [string, string, string, string, string, string];
  const want = Buffer.from(expected, "base64");
  const got = await scrypt(password, Buffer.from(salt, "base64"), want.length, { N: Number(N), r: Number(r), p: Number(p) });
  return timingSafeEqual(got, want);
}

const digest = (text: string): Buffer => createHash("sha256").update(text).digest();

/** A policy, ready to judge handshakes and subscriptions. */
export class Access {
  readonly mechanism: Mechanism;
  readonly anonymous: boolean;
  readonly #accounts = new Map<string, Account>();
  /** Allow-listed CURVE keys, as hex of the 32 binary bytes (what ZAP hands us). */
  readonly #allowed = new Set<string>();
  /** Passwords that verified before (sha256 of user NUL password): reconnections skip scrypt. */
  readonly #verified = new Map<string, Buffer>();
  readonly #anonymousMounts: readonly string[] | undefined;
  /** Some account's password is a scrypt hash (see #login). */
  readonly #hashed: boolean;
  /**
   * What an unknown user's password is checked against, so that a refusal takes as long as a wrong
   * password: a hash with the costliest parameters any account's hash has (with fixed parameters, accounts
   * hashed at a higher cost answered measurably slower, telling which users exist; a review).
   */
  readonly #dummyHash: string;

  constructor(readonly policy: AccessPolicy) {
    this.mechanism = policy.mechanism;
    for (const key of policy.allow ?? []) this.#allowed.add(z85Decode(key).toString("hex"));
    for (const account of policy.accounts ?? []) this.#accounts.set(account.user, account);
    this.#hashed = [...this.#accounts.values()].some((account) => account.passwordHash !== undefined);
    this.#dummyHash = costliest([...this.#accounts.values()].flatMap((account) => (account.passwordHash !== undefined ? [account.passwordHash] : [])));
    const listed = this.#allowed.size > 0 || this.#accounts.size > 0;
    this.anonymous = policy.anonymous ?? (policy.mechanism === "null" || (policy.mechanism === "curve" && !listed));
    this.#anonymousMounts = policy.anonymousMounts;
  }

  /** Judge a ZAP request: mechanism "NULL", "PLAIN" or "CURVE", and its credentials frames. */
  async judge(mechanism: string, credentials: readonly Buffer[]): Promise<Verdict> {
    if (mechanism === "CURVE") {
      if (this.mechanism !== "curve") return { ok: false, reason: "CURVE not expected" };
      const key = credentials[0];
      if (!key || key.length !== 32) return { ok: false, reason: "malformed CURVE key" };
      if (this.#allowed.has(key.toString("hex"))) return { ok: true, user: `curve:${key.toString("hex")}` };
      return this.anonymous ? { ok: true, user: ANONYMOUS } : { ok: false, reason: "client key not in the allow-list" };
    }
    if (mechanism === "PLAIN") {
      if (this.mechanism !== "plain") return { ok: false, reason: "PLAIN not expected" };
      return this.#login(credentials[0]?.toString() ?? "", credentials[1]?.toString() ?? "");
    }
    if (mechanism === "NULL") return this.anonymous ? { ok: true, user: ANONYMOUS } : { ok: false, reason: "anonymous access is off" };
    return { ok: false, reason: `unsupported mechanism ${mechanism.slice(0, 20)}` };
  }

  async #login(name: string, password: string): Promise<Verdict> {
    const started = monotonic();
    const verdict = await this.#checkLogin(name, password);
    if (!verdict.ok && verdict.busy !== true && this.#hashed) await this.#asSlowAsAnyRefusal(started);
    return verdict;
  }

  /**
   * A refusal takes as long as an unknown user's (the costliest hash's check): a wrong password for an
   * account hashed at a lower cost, or one with a clear password, was refused sooner (42 ms, 0.1 ms,
   * against 190-260 for an unknown user: a review), telling which users exist. Padded with a timer, not
   * with work: the time of the last check against the dummy hash, which is made once first if none was.
   */
  async #asSlowAsAnyRefusal(started: number): Promise<void> {
    if (this.#dummyMs === undefined) await this.#dummyCheck("");
    const left = (this.#dummyMs ?? 0) - (monotonic() - started);
    if (left > 1) await new Promise((resolve) => setTimeout(resolve, left));
  }
  /** How long the last check against the dummy hash took (ms). */
  #dummyMs: number | undefined;

  async #dummyCheck(password: string): Promise<boolean | "busy"> {
    // (The check alone, not its wait for a slot: a flood of unknown names made that wait, and with it
    // every refusal's padding, seconds long, each holding one of the handler's slots meanwhile; a review.
    // Capped for the same reason.)
    return checks.run(async () => {
      const started = monotonic();
      try {
        return await verifyHash(password, this.#dummyHash);
      } finally {
        this.#dummyMs = Math.min(MAX_REFUSAL_PADDING_MS, monotonic() - started);
      }
    });
  }

  async #checkLogin(name: string, password: string): Promise<Verdict> {
    // Our client says "user#routing-id"; other clients just "user".
    const at = name.lastIndexOf(USER_SESSION_SEPARATOR);
    const user = at >= 0 ? name.slice(0, at) : name;
    const session = at >= 0 && at < name.length - 1 ? name.slice(at + 1) : undefined;
    const ok = (u: string): Verdict => (session !== undefined ? { ok: true, user: u, session } : { ok: true, user: u });
    const account = this.#accounts.get(user);
    if (!account) {
      if (user === ANONYMOUS && this.anonymous) return ok(ANONYMOUS);
      // As long as a wrong password takes (when accounts have hashes): a refusal must not tell which users exist.
      if (this.#hashed && (await this.#dummyCheck(password)) === "busy") return BUSY;
      return { ok: false, reason: `unknown user "${user.slice(0, 64)}"` };
    }
    // (A password that verified before costs no check, and never waits behind others' checks.)
    const token = digest(`${user}\0${password}`);
    const known = this.#verified.get(user);
    if (known && timingSafeEqual(known, token)) return ok(user);
    let good: boolean;
    if (account.passwordHash !== undefined) {
      const checked = await checks.run(() => verifyHash(password, account.passwordHash!));
      if (checked === "busy") return BUSY;
      good = checked;
    } else good = account.password !== undefined && timingSafeEqual(digest(account.password), digest(password));
    if (!good) return { ok: false, reason: `wrong password for "${user.slice(0, 64)}"` };
    this.#verified.set(user, token);
    return ok(user);
  }

  /** May `user` (a principal from judge(); undefined: not known for this connection) read `path`? */
  mayRead(user: string | undefined, path: string): boolean {
    if (user !== undefined) return this.#paths(user).some((allowed) => covers(allowed, path));
    // Unknown: only what every principal that could have logged in may read.
    return this.#principals().every((principal) => this.#paths(principal).some((allowed) => covers(allowed, path)));
  }

  #paths(user: string): readonly string[] {
    if (user === ANONYMOUS) return this.#anonymousMounts ?? ["/"];
    const account = this.#accounts.get(user);
    if (account) return account.mounts ?? ["/"];
    if (user.startsWith("curve:")) return ["/"];
    return [];
  }

  #principals(): string[] {
    const principals: string[] = [];
    if (this.anonymous) principals.push(ANONYMOUS);
    if (this.mechanism === "plain") principals.push(...this.#accounts.keys());
    if (this.mechanism === "curve" && this.#allowed.size > 0) principals.push("curve:");
    return principals;
  }
}
