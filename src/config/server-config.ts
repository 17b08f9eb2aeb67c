// The server's config file: TOML, for people to edit. Binds, mounts, security, limits. Every bad key or
// value is one line, "<file>:<line>: <what is wrong>", found before anything is bound. Command-line
// flags override the file (see resolveServerSettings). Paths in the file are relative to the file.
//
//     bind = "tcp://*:5670"                # or a list
//     chunk-size = "1M"
//     stable-ms = 150
//     hash-ahead = true                    # fingerprint big files in the background when published
//
//     [[mount]]
//     directory = "outbox"
//     alias = "/"
//
//     [security]
//     mechanism = "curve"                  # "null" (default), "curve" or "plain"
//     curve-secret = "keys/server.key"
//     allow = ["keys/clients"]             # .pub files or directories of them
//     anonymous = false
//     anonymous-mounts = ["/public"]
//
//     [[account]]                          # PLAIN
//     user = "alice"
//     password-hash = "scrypt$..."         # from `fmq passwd`; or password = "..."
//     mounts = ["/logs"]
//
//     [limits]
//     max-clients = 10000

import { readFile, realpath, stat } from "node:fs/promises";
import path from "node:path";
import { parse, TomlError } from "smol-toml";
import { DEFAULT_BIND, MAX_CHUNK_SIZE, MAX_PEER_TIMEOUT_MS } from "../defaults.js";
import { endpointProblem } from "../endpoint.js";
import { normaliseVirtualPath, overlaps } from "../paths.js";
import { nestingProblem } from "../mount/nesting.js";
import type { ServerOptions } from "../server/server.js";
import type { Account, AccessPolicy, Mechanism } from "../security/policy.js";
import { passwordHashProblem, USER_SESSION_SEPARATOR } from "../security/policy.js";
import { describe, KeyError, othersMayAccess, othersMayChange, readAllowList, readSecretKeyFile } from "../security/keys.js";

export class ConfigError extends Error {
  override name = "ConfigError";
}

/** Where a value came from, for error messages: "server.toml:12", or "--allow". */
type Origin = string;

export interface MountConfig {
  readonly directory: string;
  readonly alias: string;
  readonly origin: Origin;
}

export interface SecurityConfig {
  readonly mechanism: Mechanism;
  readonly curveSecret?: { readonly file: string; readonly origin: Origin };
  readonly allow?: { readonly location: string; readonly origin: Origin }[];
  readonly anonymous?: boolean;
  readonly anonymousMounts?: readonly string[];
  readonly accounts: readonly Account[];
  readonly origin: Origin;
}

export type LimitOptions = Pick<
  ServerOptions,
  "maxClients" | "maxSubscriptions" | "maxMessageSize" | "maxPendingMessages" | "maxPendingBytes" | "maxPendingTotalBytes" | "maxOutgoingMessages" | "maxQueuedMessages" | "maxStalledBytes" | "maxQueuedChanges" | "expiryMs" | "peerTimeoutMs"
>;

export interface ServerConfig {
  readonly file: string;
  readonly binds: readonly string[];
  readonly mounts: readonly MountConfig[];
  readonly chunkSize?: number;
  readonly stableMs?: number;
  readonly hashAhead?: boolean;
  readonly limits: LimitOptions;
  readonly security?: SecurityConfig;
}

const LIMITS: Record<string, { option: keyof LimitOptions; size?: boolean; least?: number; most?: number }> = {
  "max-clients": { option: "maxClients" },
  "max-subscriptions": { option: "maxSubscriptions" },
  "max-message-size": { option: "maxMessageSize", size: true },
  "max-pending-messages": { option: "maxPendingMessages" },
  "max-pending-bytes": { option: "maxPendingBytes", size: true },
  "max-pending-total-bytes": { option: "maxPendingTotalBytes", size: true },
  "max-outgoing-messages": { option: "maxOutgoingMessages" },
  "max-queued-messages": { option: "maxQueuedMessages" },
  "max-stalled-bytes": { option: "maxStalledBytes", size: true },
  "max-queued-changes": { option: "maxQueuedChanges" },
  // (Bounded: at most what a timer and libzmq's int options take; at least what a live, idle client of
  // ours can meet: it sends HUGZ once a second of silence is seen by a timer that ticks each second, so up
  // to 2 s apart, more over a slow link. At 1000, such clients were dropped and subscribed again every
  // few seconds, resending their caches each time: a review.)
  "expiry-ms": { option: "expiryMs", least: 5000, most: 2 ** 31 - 1 },
  // (Twice it is libzmq's TCP_MAXRT, an int: from 2^30 on the server failed to start, "Invalid argument".)
  "peer-timeout-ms": { option: "peerTimeoutMs", least: 100, most: MAX_PEER_TIMEOUT_MS },
};

const TOP_KEYS = ["bind", "chunk-size", "stable-ms", "hash-ahead", "mount", "security", "account", "limits"];
const MOUNT_KEYS = ["directory", "alias"];
const SECURITY_KEYS = ["mechanism", "curve-secret", "allow", "anonymous", "anonymous-mounts"];
const ACCOUNT_KEYS = ["user", "password", "password-hash", "mounts"];

/** Read and check a config file. Throws ConfigError ("<file>:<line>: ...") on the first problem. */
export async function loadServerConfig(file: string): Promise<ServerConfig> {
  const cannotRead = (error: unknown): never => {
    throw new ConfigError(`cannot read config file ${file}: ${describe(error)}`);
  };
  const info = await stat(file).catch(cannotRead);
  if (info.isDirectory()) throw new ConfigError(`cannot read config file ${file}: is a directory`);
  // What is published, to whom, and who may connect is the file's owner's to say: one that group or others
  // may write, or that another user (not root) owns, is refused, as ssh refuses such an authorized_keys
  // (a review: a 0666 file with accounts, or a directory to publish, was taken as it was).
  const changeable = othersMayChange(info);
  if (changeable && "mode" in changeable) throw new ConfigError(`${file} may be written by others (mode ${changeable.mode}): who may connect and what is published must be its owner's to say; run: chmod go-w ${file}`);
  if (changeable) throw new ConfigError(`${file} belongs to another user (uid ${changeable.uid}): who may connect and what is published must be ours (or root's) to say`);
  const config = parseServerConfig(await readFile(file, "utf8").catch(cannotRead), file);
  // Passwords in clear are a secret of the file's owner (password-hash entries are not: they are made to
  // be stored).
  const open = othersMayAccess(info);
  if (open && config.security?.accounts.some((account) => account.password !== undefined)) {
    throw new ConfigError(`${file} holds passwords in clear and is accessible by others (mode ${open}); run: chmod 600 ${file}, or store password-hash = "..." from fmq passwd instead`);
  }
  return config;
}

/** Check a config file's text (`file` names it in errors and anchors its relative paths). */
export function parseServerConfig(text: string, file: string): ServerConfig {
  let data: Record<string, unknown>;
  try {
    data = parse(text) as Record<string, unknown>;
  } catch (error) {
    if (error instanceof TomlError) {
      const what = error.message.split("\n")[0]!.replace(/^Invalid TOML document: /, "");
      throw new ConfigError(`${file}:${error.line}: invalid TOML: ${what}`);
    }
    throw new ConfigError(`${file}: invalid TOML: ${(error as Error).message}`);
  }
  const lines = locate(text);
  const base = path.dirname(path.resolve(file));
  const at = (...keys: (string | number)[]): Origin => {
    // The line of the most specific key we can find: the key itself, else its table.
    for (let n = keys.length; n > 0; n--) {
      const line = lines.get(keys.slice(0, n).join("."));
      if (line !== undefined) return `${file}:${line}`;
    }
    return `${file}:1`;
  };
  const fail = (keys: (string | number)[], message: string): never => {
    throw new ConfigError(`${at(...keys)}: ${message}`);
  };
  const unknownKeys = (table: Record<string, unknown>, allowed: string[], keys: (string | number)[], what: string) => {
    for (const key of Object.keys(table)) {
      if (!allowed.includes(key)) fail([...keys, key], `unknown key "${key}" in ${what} (expected one of: ${allowed.join(", ")})`);
    }
  };
  const resolvePath = (p: string) => path.resolve(base, p);

  unknownKeys(data, TOP_KEYS, [], "the config file");

  // bind
  let binds: string[] = [];
  if (data.bind !== undefined) {
    const list = typeof data.bind === "string" ? [data.bind] : data.bind;
    if (!Array.isArray(list) || list.length === 0) fail(["bind"], `bind must be an endpoint or a list of endpoints, e.g. "tcp://*:5670"`);
    binds = (list as unknown[]).map((e) => {
      if (typeof e !== "string" || !/^(tcp|ipc|inproc):\/\/./.test(e)) fail(["bind"], `bind: not an endpoint: ${JSON.stringify(e)} (expected tcp://host:port, ipc://path or inproc://name)`);
      // (Checked here too, not only when bound: reported with its line, before anything is bound. A review.)
      const problem = endpointProblem(e as string, "bind");
      if (problem) fail(["bind"], `bind: ${e}: ${problem}`);
      return e as string;
    });
  }
  const chunkSize = data["chunk-size"] === undefined ? undefined : sizeOf(data["chunk-size"], () => fail(["chunk-size"], `chunk-size must be a size like 1M or 1048576, got ${show(data["chunk-size"])}`));
  if (chunkSize !== undefined && chunkSize > MAX_CHUNK_SIZE) fail(["chunk-size"], "chunk-size must be at most 64M");
  const stableMs = data["stable-ms"] === undefined ? undefined : count(data["stable-ms"], true, () => fail(["stable-ms"], `stable-ms must be a number of milliseconds (>= 0), got ${show(data["stable-ms"])}`));
  const hashAhead = data["hash-ahead"];
  if (hashAhead !== undefined && typeof hashAhead !== "boolean") return fail(["hash-ahead"], `hash-ahead must be true or false, got ${show(hashAhead)}`);

  // [[mount]]
  const mounts: MountConfig[] = [];
  if (data.mount !== undefined) {
    if (!isTableArray(data.mount)) fail(["mount"], "mount must be written [[mount]] (a list of tables with directory and alias)");
    for (const [i, m] of (data.mount as Record<string, unknown>[]).entries()) {
      unknownKeys(m, MOUNT_KEYS, ["mount", i], "[[mount]]");
      if (typeof m.directory !== "string" || m.directory === "") fail(["mount", i, "directory"], `[[mount]] needs directory = "<path>"`);
      const alias = m.alias === undefined ? "/" : typeof m.alias === "string" ? normaliseVirtualPath(m.alias) : undefined;
      if (alias === undefined) fail(["mount", i, "alias"], `alias must be a virtual path like "/" or "/logs", got ${show(m.alias)}`);
      if (mounts.some((other) => other.alias === alias)) fail(["mount", i, "alias"], `alias ${alias} is used by two mounts`);
      mounts.push({ directory: resolvePath(m.directory as string), alias: alias!, origin: at("mount", i, "directory") });
    }
  }

  // [limits]
  const limits: Record<string, number> = {};
  if (data.limits !== undefined) {
    if (!isTable(data.limits)) fail(["limits"], "limits must be a table: [limits]");
    const table = data.limits as Record<string, unknown>;
    unknownKeys(table, Object.keys(LIMITS), ["limits"], "[limits]");
    for (const [key, value] of Object.entries(table)) {
      const spec = LIMITS[key]!;
      const bad = () => fail(["limits", key], `${key} must be a positive ${spec.size ? "size like 16M" : "integer"}, got ${show(value)}`);
      const n = spec.size ? sizeOf(value, bad) : count(value, false, bad);
      if ((spec.least !== undefined && n < spec.least) || (spec.most !== undefined && n > spec.most)) fail(["limits", key], `${key} must be from ${spec.least ?? 1} to ${spec.most ?? Number.MAX_SAFE_INTEGER}, got ${show(value)}`);
      limits[spec.option] = n;
    }
  }

  // [[account]]
  const accounts: Account[] = [];
  if (data.account !== undefined) {
    if (!isTableArray(data.account)) fail(["account"], "account must be written [[account]] (a list of tables with user, password-hash, mounts)");
    for (const [i, a] of (data.account as Record<string, unknown>[]).entries()) {
      unknownKeys(a, ACCOUNT_KEYS, ["account", i], "[[account]]");
      const user = a.user;
      if (typeof user !== "string" || user === "" || user.length > 200 || /[\s#]/.test(user)) {
        fail(["account", i, "user"], `[[account]] needs user = "<name>" (no spaces, no "${USER_SESSION_SEPARATOR}")`);
      }
      if (user === "anonymous") fail(["account", i, "user"], `"anonymous" is not an account: use anonymous = true in [security]`);
      if (accounts.some((other) => other.user === user)) fail(["account", i, "user"], `user "${user as string}" is listed twice`);
      const hash = a["password-hash"];
      const password = a.password;
      if ((hash === undefined) === (password === undefined)) fail(["account", i], `account "${user as string}" needs exactly one of password-hash or password`);
      if (hash !== undefined) {
        const problem = typeof hash === "string" ? passwordHashProblem(hash) : "must be a string";
        if (problem) fail(["account", i, "password-hash"], `password-hash of "${user as string}": ${problem}`);
      }
      if (password !== undefined && (typeof password !== "string" || password === "")) fail(["account", i, "password"], `password of "${user as string}" must be a non-empty string`);
      const mountList = a.mounts === undefined ? undefined : virtualPaths(a.mounts, () => fail(["account", i, "mounts"], `mounts must be a list of virtual paths like ["/logs"], got ${show(a.mounts)}`));
      if (mountList && mounts.length > 0) {
        for (const p of mountList) if (!mounts.some((m) => overlaps(m.alias, p))) fail(["account", i, "mounts"], `${p} (for "${user as string}") matches no mount`);
      }
      accounts.push({
        user: user as string,
        ...(hash !== undefined ? { passwordHash: hash as string } : { password: password as string }),
        ...(mountList ? { mounts: mountList } : {}),
      });
    }
  }

  // [security]
  let security: SecurityConfig | undefined;
  if (data.security !== undefined || accounts.length > 0) {
    const table = (data.security ?? {}) as Record<string, unknown>;
    if (!isTable(table)) fail(["security"], "security must be a table: [security]");
    unknownKeys(table, SECURITY_KEYS, ["security"], "[security]");
    const mechanism = table.mechanism ?? (accounts.length > 0 ? "plain" : "null");
    if (mechanism !== "null" && mechanism !== "curve" && mechanism !== "plain") fail(["security", "mechanism"], `mechanism must be "null", "curve" or "plain", got ${show(mechanism)}`);
    const curveSecret = table["curve-secret"];
    if (curveSecret !== undefined && (typeof curveSecret !== "string" || curveSecret === "")) fail(["security", "curve-secret"], "curve-secret must be the path of the server's .key file");
    if (curveSecret !== undefined && mechanism !== "curve") fail(["security", "curve-secret"], `curve-secret needs mechanism = "curve"`);
    let allow: { location: string; origin: Origin }[] | undefined;
    if (table.allow !== undefined) {
      const list = typeof table.allow === "string" ? [table.allow] : table.allow;
      if (!Array.isArray(list) || list.some((e) => typeof e !== "string" || e === "")) fail(["security", "allow"], "allow must be a .pub file or directory, or a list of them");
      if (mechanism !== "curve") fail(["security", "allow"], `allow needs mechanism = "curve"`);
      allow = (list as string[]).map((location) => ({ location: resolvePath(location), origin: at("security", "allow") }));
    }
    const anonymous = table.anonymous;
    if (anonymous !== undefined && typeof anonymous !== "boolean") fail(["security", "anonymous"], `anonymous must be true or false, got ${show(anonymous)}`);
    if (anonymous === false && mechanism === "null") fail(["security", "anonymous"], `anonymous = false needs mechanism = "curve" or "plain" (with "null" nobody could connect)`);
    const anonymousMounts =
      table["anonymous-mounts"] === undefined
        ? undefined
        : virtualPaths(table["anonymous-mounts"], () => fail(["security", "anonymous-mounts"], `anonymous-mounts must be a list of virtual paths like ["/public"], got ${show(table["anonymous-mounts"])}`));
    if (accounts.length > 0 && mechanism !== "plain") fail(["account", 0], `[[account]] needs mechanism = "plain" in [security]`);
    if (mechanism === "plain" && accounts.length === 0 && anonymous !== true) fail(["security", "mechanism"], `mechanism "plain" with no [[account]] and anonymous off: nobody could log in`);
    security = {
      mechanism: mechanism as Mechanism,
      ...(typeof curveSecret === "string" ? { curveSecret: { file: resolvePath(curveSecret), origin: at("security", "curve-secret") } } : {}),
      ...(allow ? { allow } : {}),
      ...(anonymous !== undefined ? { anonymous: anonymous as boolean } : {}),
      ...(anonymousMounts ? { anonymousMounts } : {}),
      accounts,
      origin: at("security", "mechanism"),
    };
  }

  return {
    file,
    binds,
    mounts,
    ...(chunkSize !== undefined ? { chunkSize } : {}),
    ...(stableMs !== undefined ? { stableMs } : {}),
    ...(hashAhead !== undefined ? { hashAhead } : {}),
    limits: limits as LimitOptions,
    ...(security ? { security } : {}),
  };
}

/** What the command line says, each only if given (it wins over the file). */
export interface PublishFlags {
  readonly directory?: string;
  readonly alias?: string;
  /** --bind, as often as given (each bound). */
  readonly binds?: readonly string[];
  readonly chunkSize?: number;
  readonly stableMs?: number;
  readonly hashAhead?: boolean;
  readonly curveSecret?: string;
  readonly allow?: readonly string[];
}

export interface ServerSettings {
  readonly binds: readonly string[];
  readonly mounts: readonly { readonly directory: string; readonly alias: string }[];
  readonly options: ServerOptions;
}

export { DEFAULT_BIND } from "../defaults.js";

/**
 * Merge a config file (if any) and the flags, read the key files and check the directories. Throws
 * ConfigError with the origin of the bad value.
 */
export async function resolveServerSettings(config: ServerConfig | undefined, flags: PublishFlags): Promise<ServerSettings> {
  // A directory from the command line is checked by Mount.open, with its own messages.
  const fromFlags: MountConfig[] = flags.directory !== undefined ? [{ directory: flags.directory, alias: flags.alias ?? "/", origin: "<dir>" }] : [];
  const mounts = fromFlags.length > 0 ? fromFlags : (config?.mounts ?? []);
  if (mounts.length === 0) throw new ConfigError(config ? `${config.file}: no [[mount]] and no directory given: nothing to publish` : "no directory to publish");
  for (const mount of fromFlags.length > 0 ? [] : mounts) {
    const info = await stat(mount.directory).catch(() => undefined);
    if (!info?.isDirectory()) fail(mount.origin, `${mount.directory} is not a directory`);
  }
  if (fromFlags.length === 0) await checkNesting(mounts);
  const binds = flags.binds?.length ? flags.binds : config?.binds.length ? config.binds : [DEFAULT_BIND];

  let security = config?.security;
  if (flags.curveSecret !== undefined || flags.allow !== undefined) {
    const base: SecurityConfig = security ?? { mechanism: "curve", accounts: [], origin: "--curve-secret" };
    if (base.mechanism === "plain") fail(flags.curveSecret !== undefined ? "--curve-secret" : "--allow", `conflicts with mechanism "plain" in ${config?.file}`);
    security = {
      ...base,
      mechanism: "curve",
      ...(flags.curveSecret !== undefined ? { curveSecret: { file: path.resolve(flags.curveSecret), origin: "--curve-secret" } } : {}),
      ...(flags.allow !== undefined ? { allow: flags.allow.map((location) => ({ location: path.resolve(location), origin: "--allow" })) } : {}),
    };
  }

  // What accounts and anonymous clients may read must name something published: checked when the file
  // is read against its own [[mount]]s, and here against the mounts in force (a directory given on the
  // command line replaces them): a typo would otherwise start silently and serve that account nothing.
  if (security) {
    const aliases = mounts.map((m) => m.alias ?? "/");
    const unmatched = (p: string) => !aliases.some((alias) => overlaps(alias, p));
    for (const account of security.accounts)
      for (const p of account.mounts ?? []) if (unmatched(p)) fail(security.origin, `${p} (for "${account.user}") matches no mount (published: ${aliases.join(", ")})`);
    for (const p of security.anonymousMounts ?? []) if (unmatched(p)) fail(security.origin, `${p} (in anonymous-mounts) matches no mount (published: ${aliases.join(", ")})`);
  }

  let serverSecurity: ServerOptions["security"];
  if (security && (security.mechanism !== "null" || security.anonymousMounts !== undefined)) {
    if (security.mechanism === "curve" && !security.curveSecret) fail(security.allow?.[0]?.origin ?? security.origin, "CURVE needs the server's secret key: --curve-secret <file.key> (or curve-secret in [security])");
    const keys = security.curveSecret ? await readSecretKeyFile(security.curveSecret.file).catch((error: unknown) => fail(security!.curveSecret!.origin, keyMessage(error))) : undefined;
    let allow: string[] | undefined;
    for (const entry of security.allow ?? []) {
      const listed = await readAllowList(entry.location).catch((error: unknown) => fail(entry.origin, keyMessage(error)));
      allow = [...(allow ?? []), ...listed];
    }
    const policy: AccessPolicy = {
      mechanism: security.mechanism,
      ...(allow ? { allow } : {}),
      accounts: security.accounts,
      ...(security.anonymous !== undefined ? { anonymous: security.anonymous } : {}),
      ...(security.anonymousMounts ? { anonymousMounts: security.anonymousMounts } : {}),
    };
    serverSecurity = { policy, ...(keys ? { curveSecretKey: keys.secretKey } : {}) };
  }

  const options: ServerOptions = {
    ...config?.limits,
    ...(config?.chunkSize !== undefined ? { chunkSize: config.chunkSize } : {}),
    ...(config?.stableMs !== undefined ? { stableMs: config.stableMs } : {}),
    ...(config?.hashAhead !== undefined ? { hashAhead: config.hashAhead } : {}),
    ...(flags.chunkSize !== undefined ? { chunkSize: flags.chunkSize } : {}),
    ...(flags.stableMs !== undefined ? { stableMs: flags.stableMs } : {}),
    ...(flags.hashAhead !== undefined ? { hashAhead: flags.hashAhead } : {}),
    ...(serverSecurity ? { security: serverSecurity } : {}),
  };
  return { binds, mounts: mounts.map(({ directory, alias }) => ({ directory, alias })), options };
}

// --- helpers -------------------------------------------------------------------------------------

/** Mounts whose directories nest: see nesting.ts. */
async function checkNesting(mounts: readonly MountConfig[]): Promise<void> {
  if (mounts.length < 2) return;
  const real = await Promise.all(mounts.map((m) => realpath(m.directory).catch(() => path.resolve(m.directory))));
  for (const [i, inner] of mounts.entries()) {
    for (const [j, outer] of mounts.entries()) {
      // (The same directory twice: said of the later mount.)
      if (i === j || (real[i] === real[j] && i < j)) continue;
      const problem = nestingProblem({ ...inner, root: real[i]! }, { ...outer, root: real[j]! });
      if (problem !== undefined) fail(inner.origin, problem);
    }
  }
}

function fail(origin: Origin, message: string): never {
  throw new ConfigError(`${origin}: ${message}`);
}

function keyMessage(error: unknown): string {
  return error instanceof KeyError ? error.message : String(error);
}

function show(value: unknown): string {
  if (value === undefined) return "nothing";
  const text = JSON.stringify(value) ?? String(value);
  return text.length > 60 ? text.slice(0, 57) + "..." : text;
}

function isTable(value: unknown): value is Record<string, unknown> {
  return typeof value === "object" && value !== null && !Array.isArray(value) && !(value instanceof Date);
}

function isTableArray(value: unknown): value is Record<string, unknown>[] {
  return Array.isArray(value) && value.every(isTable);
}

/** A count: a non-negative (or positive) integer. */
function count(value: unknown, zeroOk: boolean, bad: () => never): number {
  if (typeof value === "bigint") value = Number(value);
  if (typeof value !== "number" || !Number.isSafeInteger(value) || value < (zeroOk ? 0 : 1)) bad();
  return value as number;
}

/** A size: a positive integer of bytes, or "256k", "1M", "1MiB", "2G" (binary multiples). */
function sizeOf(value: unknown, bad: () => never): number {
  if (typeof value === "number" || typeof value === "bigint") return count(value, false, bad);
  if (typeof value !== "string") bad();
  const match = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec((value as string).trim());
  if (!match) bad();
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match![2]!.toLowerCase() as "" | "k" | "m" | "g"];
  const n = Number(match![1]) * unit;
  if (!Number.isSafeInteger(n) || n <= 0) bad();
  return n;
}

function virtualPaths(value: unknown, bad: () => never): string[] {
  if (!Array.isArray(value)) bad();
  return (value as unknown[]).map((p) => (typeof p === "string" ? normaliseVirtualPath(p) : undefined) ?? bad());
}

/**
 * Line numbers of keys and tables in TOML text, by dotted path ("security.mechanism", "mount.1.alias",
 * "account.0"). smol-toml gives values, not positions, so this scans lines the way TOML is usually
 * written: [table], [[array]], key = value, dotted and quoted keys. Good enough to point at a line.
 */
function locate(text: string): Map<string, number> {
  const lines = new Map<string, number>();
  const counters = new Map<string, number>();
  let table: string[] = [];
  let inMultiline: '"""' | "'''" | undefined;
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    const number = index + 1;
    if (inMultiline) {
      if (line.includes(inMultiline)) inMultiline = undefined;
      continue;
    }
    if (line === "" || line.startsWith("#")) continue;
    const arrayTable = /^\[\[\s*([^\]]+?)\s*\]\]/.exec(line);
    if (arrayTable) {
      const name = splitKey(arrayTable[1]!).join(".");
      const n = counters.get(name) ?? 0;
      counters.set(name, n + 1);
      table = [...name.split("."), String(n)];
      if (!lines.has(name)) lines.set(name, number);
      lines.set(table.join("."), number);
      continue;
    }
    const plainTable = /^\[\s*([^\]]+?)\s*\]/.exec(line);
    if (plainTable) {
      table = splitKey(plainTable[1]!);
      lines.set(table.join("."), number);
      continue;
    }
    const assignment = /^((?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*')(?:\s*\.\s*(?:[A-Za-z0-9_-]+|"[^"]*"|'[^']*'))*)\s*=(.*)$/.exec(line);
    if (assignment) {
      const keys = splitKey(assignment[1]!);
      for (let n = 1; n <= keys.length; n++) {
        const key = [...table, ...keys.slice(0, n)].join(".");
        if (!lines.has(key)) lines.set(key, number);
      }
      const value = assignment[2]!;
      for (const quote of ['"""', "'''"] as const) {
        const at = value.indexOf(quote);
        if (at >= 0 && value.indexOf(quote, at + 3) < 0) inMultiline = quote;
      }
    }
  }
  return lines;
}

function splitKey(key: string): string[] {
  const parts: string[] = [];
  const re = /\s*(?:"([^"]*)"|'([^']*)'|([A-Za-z0-9_-]+))\s*(?:\.|$)/gy;
  let match: RegExpExecArray | null;
  while ((match = re.exec(key)) !== null && match[0] !== "") parts.push(match[1] ?? match[2] ?? match[3]!);
  return parts;
}
