// The server config file: a good file becomes settings; each bad key or value is one line naming the
// file and the line; flags override the file.

import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { Server } from "../../src/server/server.js";
import { curveKeyPair } from "zeromq";
import { ConfigError, loadServerConfig, parseServerConfig, resolveServerSettings } from "../../src/config/server-config.js";
import { writeKeyFiles } from "../../src/security/keys.js";
import { hashPassword } from "../../src/security/policy.js";
import { tempDir } from "../helpers/tmp.js";

const F = "/etc/fmq/server.toml";

/** The one-line error for `text`. */
function errorOf(text: string): string {
  try {
    parseServerConfig(text, F);
  } catch (error) {
    expect(error).toBeInstanceOf(ConfigError);
    const message = (error as Error).message;
    expect(message.split("\n")).toHaveLength(1);
    return message;
  }
  throw new Error("expected an error");
}

describe("config", () => {
  it("config - a full file parses into binds, mounts, limits, security and accounts", async () => {
    const hash = await hashPassword("pw");
    const config = parseServerConfig(
      `# fmq server
bind = ["tcp://*:5670", "ipc:///tmp/fmq.sock"]
chunk-size = "256k"
stable-ms = 0
hash-ahead = false

[[mount]]
directory = "outbox"

[[mount]]
directory = "/srv/logs"
alias = "/logs/"

[security]
mechanism = "plain"
anonymous = true
anonymous-mounts = ["/logs/public"]

[[account]]
user = "alice"
password-hash = "${hash}"
mounts = ["/logs"]

[[account]]
user = "bob"
password = "builder"

[limits]
max-clients = 50
max-message-size = "1M"
max-stalled-bytes = "256M"
max-queued-changes = 1000
expiry-ms = 30000
peer-timeout-ms = 20000
`,
      F,
    );
    expect(config.binds).toEqual(["tcp://*:5670", "ipc:///tmp/fmq.sock"]);
    expect(config.chunkSize).toBe(256 * 1024);
    expect(config.stableMs).toBe(0);
    expect(config.hashAhead).toBe(false);
    expect(config.mounts.map(({ directory, alias }) => ({ directory, alias }))).toEqual([
      { directory: "/etc/fmq/outbox", alias: "/" },
      { directory: "/srv/logs", alias: "/logs" },
    ]);
    expect(config.limits).toEqual({ maxClients: 50, maxMessageSize: 1024 * 1024, maxStalledBytes: 256 * 1024 * 1024, maxQueuedChanges: 1000, expiryMs: 30000, peerTimeoutMs: 20000 });
    expect(config.security).toMatchObject({
      mechanism: "plain",
      anonymous: true,
      anonymousMounts: ["/logs/public"],
      accounts: [
        { user: "alice", passwordHash: hash, mounts: ["/logs"] },
        { user: "bob", password: "builder" },
      ],
    });
  });

  it("config - an empty file is fine (everything from flags and defaults)", () => {
    expect(parseServerConfig("", F)).toEqual({ file: F, binds: [], mounts: [], limits: {} });
  });

  it("config - every bad key or value is one line with the file and the line", () => {
    const cases: [string, string][] = [
      [`bind = "tcp://*:5670"\nbnid = "x"\n`, `${F}:2: unknown key "bnid" in the config file (expected one of: bind, chunk-size, stable-ms, hash-ahead, mount, security, account, limits)`],
      [`bind = 5670\n`, `${F}:1: bind must be an endpoint or a list of endpoints, e.g. "tcp://*:5670"`],
      [`\nbind = ["tcp://*:1", "localhost:2"]\n`, `${F}:2: bind: not an endpoint: "localhost:2" (expected tcp://host:port, ipc://path or inproc://name)`],
      [`chunk-size = "lots"\n`, `${F}:1: chunk-size must be a size like 1M or 1048576, got "lots"`],
      [`chunk-size = "1G"\n`, `${F}:1: chunk-size must be at most 64M`],
      [`stable-ms = -5\n`, `${F}:1: stable-ms must be a number of milliseconds (>= 0), got -5`],
      [`\nhash-ahead = "no"\n`, `${F}:2: hash-ahead must be true or false, got "no"`],
      [`[[mount]]\ndirectory = "a"\n\n[[mount]]\nalias = "/b"\n`, `${F}:4: [[mount]] needs directory = "<path>"`],
      [`[[mount]]\ndirectory = "a"\nalias = "b"\n`, `${F}:3: alias must be a virtual path like "/" or "/logs", got "b"`],
      [`[[mount]]\ndirectory = "a"\n[[mount]]\ndirectory = "b"\n`, `${F}:3: alias / is used by two mounts`],
      [`[[mount]]\ndirectory = "a"\nreadonly = true\n`, `${F}:3: unknown key "readonly" in [[mount]] (expected one of: directory, alias)`],
      [`mount = "a"\n`, `${F}:1: mount must be written [[mount]] (a list of tables with directory and alias)`],
      [`[security]\nmechanism = "tls"\n`, `${F}:2: mechanism must be "null", "curve" or "plain", got "tls"`],
      [`[security]\nmechanism = "curve"\nanonymous = "no"\n`, `${F}:3: anonymous must be true or false, got "no"`],
      [`[security]\nanonymous = false\n`, `${F}:2: anonymous = false needs mechanism = "curve" or "plain" (with "null" nobody could connect)`],
      [`[security]\nmechanism = "plain"\nallow = "keys"\n`, `${F}:3: allow needs mechanism = "curve"`],
      [`[security]\nmechanism = "plain"\n`, `${F}:2: mechanism "plain" with no [[account]] and anonymous off: nobody could log in`],
      [`[security]\nmechanism = "curve"\ncurve_secret = "k"\n`, `${F}:3: unknown key "curve_secret" in [security] (expected one of: mechanism, curve-secret, allow, anonymous, anonymous-mounts)`],
      [`[security]\nanonymous-mounts = ["public"]\n`, `${F}:2: anonymous-mounts must be a list of virtual paths like ["/public"], got ["public"]`],
      [`[[account]]\nuser = "alice"\n`, `${F}:1: account "alice" needs exactly one of password-hash or password`],
      [`[[account]]\nuser = "al ice"\npassword = "x"\n`, `${F}:2: [[account]] needs user = "<name>" (no spaces, no "#")`],
      [`[[account]]\nuser = "a"\npassword = "x"\n[[account]]\nuser = "a"\npassword = "y"\n`, `${F}:5: user "a" is listed twice`],
      [`[[account]]\nuser = "a"\npassword-hash = "md5$abc"\n`, `${F}:3: password-hash of "a": expected "scrypt$N$r$p$salt$hash" (make one with: fmq passwd)`],
      [`[[account]]\nuser = "a"\npassword = "x"\nmounts = "/logs"\n`, `${F}:4: mounts must be a list of virtual paths like ["/logs"], got "/logs"`],
      [`[[mount]]\ndirectory = "d"\nalias = "/logs"\n[[account]]\nuser = "a"\npassword = "x"\nmounts = ["/lgos"]\n`, `${F}:7: /lgos (for "a") matches no mount`],
      [`[security]\nmechanism = "curve"\n[[account]]\nuser = "a"\npassword = "x"\n`, `${F}:3: [[account]] needs mechanism = "plain" in [security]`],
      [`[limits]\nmax-clients = 0\n`, `${F}:2: max-clients must be a positive integer, got 0`],
      [`[limits]\nmax-message-size = "big"\n`, `${F}:2: max-message-size must be a positive size like 16M, got "big"`],
      [`[limits]\nexpiry-ms = 1\n`, `${F}:2: expiry-ms must be from 5000 to 2147483647, got 1`],
      [`[limits]\nexpiry-ms = 1000\n`, `${F}:2: expiry-ms must be from 5000 to 2147483647, got 1000`],
      [`[limits]\npeer-timeout-ms = 2147483648\n`, `${F}:2: peer-timeout-ms must be from 100 to 1073741823, got 2147483648`],
      // (Twice it is libzmq's TCP_MAXRT, an int: the server failed to start with "Invalid argument".)
      [`[limits]\npeer-timeout-ms = 1073741824\n`, `${F}:2: peer-timeout-ms must be from 100 to 1073741823, got 1073741824`],
      [`[limits]\nmax-peers = 5\n`, `${F}:2: unknown key "max-peers" in [limits] (expected one of: max-clients, max-subscriptions, max-message-size, max-pending-messages, max-pending-bytes, max-pending-total-bytes, max-outgoing-messages, max-queued-messages, max-stalled-bytes, max-queued-changes, expiry-ms, peer-timeout-ms)`],
      [`a = 1\nb = \n`, `${F}:2: invalid TOML: invalid value`],
      [`[security\n`, `${F}:1: invalid TOML: illegal character in key`],
      // Dotted keys and quoted keys are found too.
      [`security.mechanism = "plain"\nsecurity."anonymous" = 3\n`, `${F}:2: anonymous must be true or false, got 3`],
    ];
    for (const [text, message] of cases) expect(errorOf(text), text).toBe(message);
  });

  it("config - max-pending-bytes below max-message-size is refused (one message alone would drop its client)", async () => {
    expect(() => new Server({ maxPendingBytes: 1024 * 1024 })).toThrow("max-pending-bytes (1048576) must be at least max-message-size (16777216)");
    await new Server({ maxPendingBytes: 1024 * 1024, maxMessageSize: 1024 * 1024 }).close();
  });

  it("config - max-pending-total-bytes below max-message-size is refused; it is read from [limits]", async () => {
    expect(() => new Server({ maxPendingTotalBytes: 1024 * 1024 })).toThrow("max-pending-total-bytes (1048576) must be at least max-message-size (16777216)");
    await new Server({ maxPendingTotalBytes: 1024 * 1024, maxPendingBytes: 1024 * 1024, maxMessageSize: 1024 * 1024 }).close();
    expect(parseServerConfig(`[limits]\nmax-pending-total-bytes = "1G"\n`, F).limits.maxPendingTotalBytes).toBe(1024 ** 3);
  });

  it("config - a missing file is a clear error", async () => {
    await expect(loadServerConfig("/nonexistent/fmq.toml")).rejects.toThrow("cannot read config file /nonexistent/fmq.toml: no such file");
  });
});

describe("settings", () => {
  it("settings - flags override the file; key files are read; errors name the line that named the file", async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, "outbox"));
    await mkdir(path.join(dir, "other"));
    await mkdir(path.join(dir, "clients"));
    const server = curveKeyPair();
    const client = curveKeyPair();
    await writeKeyFiles(path.join(dir, "server"), server);
    await writeKeyFiles(path.join(dir, "clients", "c1"), client);
    const file = path.join(dir, "fmq.toml");
    const text = `bind = "tcp://127.0.0.1:7000"\nstable-ms = 10\nhash-ahead = false\n\n[[mount]]\ndirectory = "outbox"\nalias = "/out"\n\n[security]\nmechanism = "curve"\ncurve-secret = "server.key"\nallow = "clients"\n\n[limits]\nmax-clients = 3\n`;
    await writeFile(file, text);
    const config = await loadServerConfig(file);

    const plain = await resolveServerSettings(config, {});
    expect(plain.binds).toEqual(["tcp://127.0.0.1:7000"]);
    expect(plain.mounts).toEqual([{ directory: path.join(dir, "outbox"), alias: "/out" }]);
    expect(plain.options).toMatchObject({ stableMs: 10, hashAhead: false, maxClients: 3, security: { curveSecretKey: server.secretKey, policy: { mechanism: "curve", allow: [client.publicKey] } } });

    const overridden = await resolveServerSettings(config, { directory: path.join(dir, "other"), alias: "/o", binds: ["tcp://127.0.0.1:7001"], stableMs: 99, chunkSize: 4096, hashAhead: true });
    expect(overridden.binds).toEqual(["tcp://127.0.0.1:7001"]);
    expect(overridden.mounts).toEqual([{ directory: path.join(dir, "other"), alias: "/o" }]);
    expect(overridden.options).toMatchObject({ stableMs: 99, chunkSize: 4096, hashAhead: true, maxClients: 3 });

    await chmod(path.join(dir, "server.key"), 0o640);
    await expect(resolveServerSettings(config, {})).rejects.toThrow(`${file}:11: ${path.join(dir, "server.key")} is accessible by others (mode 0640)`);
    await expect(resolveServerSettings(config, { curveSecret: path.join(dir, "nope.key") })).rejects.toThrow(/^--curve-secret: cannot read secret key file .*nope\.key: no such file$/);
    await chmod(path.join(dir, "server.key"), 0o600);
    await writeFile(path.join(dir, "clients", "bad.pub"), "xyz\n");
    await expect(resolveServerSettings(config, {})).rejects.toThrow(`${file}:12: ${path.join(dir, "clients", "bad.pub")}:1: not a CURVE public key`);
  });

  it("config - account and anonymous mounts must match the mounts in force, also when the directory comes from the command line", async () => {
    const dir = await tempDir();
    const file = path.join(dir, "fmq.toml");
    const hash = 'scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA';
    await writeFile(file, `[security]\nmechanism = "plain"\nanonymous-mounts = ["/public"]\n\n[[account]]\nuser = "alice"\npassword-hash = "${hash}"\nmounts = ["/lgos"]\n`);
    const config = await loadServerConfig(file);
    await expect(resolveServerSettings(config, { directory: dir, alias: "/logs" })).rejects.toThrow(`${file}:2: /lgos (for "alice") matches no mount (published: /logs)`);
    await writeFile(file, `[security]\nmechanism = "plain"\nanonymous-mounts = ["/public"]\n\n[[account]]\nuser = "alice"\npassword-hash = "${hash}"\nmounts = ["/logs"]\n`);
    await expect(resolveServerSettings(await loadServerConfig(file), { directory: dir, alias: "/logs" })).rejects.toThrow(`${file}:2: /public (in anonymous-mounts) matches no mount (published: /logs)`);
    // Under "/" everything matches.
    await expect(resolveServerSettings(await loadServerConfig(file), { directory: dir })).resolves.toBeDefined();
  });

  it("config - a password in clear makes the file its owner's secret: refused if group or others may read or write it; password-hash entries may be read by others", async () => {
    const dir = await tempDir();
    const clear = path.join(dir, "clear.toml");
    await writeFile(clear, `[[account]]\nuser = "a"\npassword = "x"\n`);
    for (const mode of [0o644, 0o640, 0o604]) {
      await chmod(clear, mode);
      const shown = mode.toString(8).padStart(4, "0");
      await expect(loadServerConfig(clear)).rejects.toThrow(`${clear} holds passwords in clear and is accessible by others (mode ${shown}); run: chmod 600 ${clear}`);
    }
    await chmod(clear, 0o600);
    expect((await loadServerConfig(clear)).security?.accounts).toEqual([expect.objectContaining({ user: "a", password: "x" })]);
    const hashed = path.join(dir, "hashed.toml");
    await writeFile(hashed, `[[account]]\nuser = "a"\npassword-hash = "${await hashPassword("x")}"\n`, { mode: 0o644 });
    expect((await loadServerConfig(hashed)).security?.accounts).toHaveLength(1);
  });

  it("settings - flags alone: --curve-secret turns CURVE on, --allow without it is an error, a missing directory is an error", async () => {
    const dir = await tempDir();
    const keys = curveKeyPair();
    await writeKeyFiles(path.join(dir, "s"), keys);
    const curve = await resolveServerSettings(undefined, { directory: dir, curveSecret: path.join(dir, "s.key") });
    expect(curve.binds).toEqual(["tcp://*:5670"]);
    expect(curve.options.security).toEqual({ policy: { mechanism: "curve", accounts: [] }, curveSecretKey: keys.secretKey });
    await expect(resolveServerSettings(undefined, { directory: dir, allow: [path.join(dir, "s.pub")] })).rejects.toThrow(/^--allow: CURVE needs the server's secret key/);
    // A directory given on the command line is left to Mount.open (its messages are the CLI's contract).
    expect((await resolveServerSettings(undefined, { directory: "rel/dir", alias: "/a/../b" })).mounts).toEqual([{ directory: "rel/dir", alias: "/a/../b" }]);
    const missing = path.join(dir, "missing.toml");
    await writeFile(missing, `[[mount]]\ndirectory = "missing"\n`);
    await expect(resolveServerSettings(await loadServerConfig(missing), {})).rejects.toThrow(`${missing}:2: ${path.join(dir, "missing")} is not a directory`);
    await expect(resolveServerSettings(undefined, {})).rejects.toThrow("no directory to publish");
    const file = path.join(dir, "plain.toml");
    await writeFile(file, `[[account]]\nuser = "a"\npassword = "x"\n`, { mode: 0o600 });
    await expect(resolveServerSettings(await loadServerConfig(file), { directory: dir, curveSecret: path.join(dir, "s.key") })).rejects.toThrow(`--curve-secret: conflicts with mechanism "plain" in ${file}`);
  });

  it("settings - a mount inside another's directory (or the same directory twice) is refused unless aliased where the outer mount shows it; inside a hidden directory it is fine", async () => {
    const dir = await tempDir();
    for (const d of ["share/hr", "share/.private"]) await mkdir(path.join(dir, d), { recursive: true });
    const settings = async (mounts: [string, string][]) => {
      const file = path.join(dir, "fmq.toml");
      await writeFile(file, mounts.map(([d, a]) => `[[mount]]\ndirectory = "${d}"\nalias = "${a}"\n`).join("\n"));
      return resolveServerSettings(await loadServerConfig(file), {});
    };
    // The review's case: bob may read /pub only, and would get /pub/hr/* through it.
    await expect(settings([["share", "/pub"], ["share/hr", "/hr"]])).rejects.toThrow(`${path.join(dir, "share", "hr")} (mount /hr) is inside the directory of mount /pub, which would publish it as /pub/hr too: alias it /pub/hr, or publish directories that do not nest`);
    await expect(settings([["share", "/pub"], ["share", "/again"]])).rejects.toThrow(`${path.join(dir, "share")} (mount /again) is the directory of mount /pub, which would publish it too: alias it once, or publish directories that do not nest`);
    // Where the outer mount shows it: the inner alias shadows that part (published once).
    expect((await settings([["share", "/pub"], ["share/hr", "/pub/hr"]])).mounts).toHaveLength(2);
    expect((await settings([["share", "/"], ["share/hr", "/hr"]])).mounts).toHaveLength(2);
    // Not published by the outer mount at all.
    expect((await settings([["share", "/pub"], ["share/.private", "/private"]])).mounts).toHaveLength(2);
  });

  it("config - a file that group or others may write, or that another user owns, is refused (as ssh refuses such an authorized_keys); readable by others is fine", async () => {
    const dir = await tempDir();
    const file = path.join(dir, "fmq.toml");
    await writeFile(file, `[[account]]\nuser = "a"\npassword-hash = "${await hashPassword("x")}"\n`);
    for (const mode of [0o666, 0o664, 0o646]) {
      await chmod(file, mode);
      const shown = mode.toString(8).padStart(4, "0");
      await expect(loadServerConfig(file)).rejects.toThrow(`${file} may be written by others (mode ${shown}): who may connect and what is published must be its owner's to say; run: chmod go-w ${file}`);
    }
    await chmod(file, 0o644);
    expect((await loadServerConfig(file)).security?.accounts).toHaveLength(1);
    if (process.getuid?.() === 0) {
      await chown(file, 65534, 65534);
      await expect(loadServerConfig(file)).rejects.toThrow(`${file} belongs to another user (uid 65534)`);
    }
  });
});
