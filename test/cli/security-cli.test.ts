// The security commands and flags as users run them: real `fmq` processes (dist/cli/fmq.js).

import { spawnSync } from "node:child_process";
import { readFile, stat, writeFile, chmod, mkdir, rm, symlink, lstat } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { scryptSync } from "node:crypto";
import { fileURLToPath } from "node:url";
import { FMQ, FMQ_COMMAND, startFmq, type Running } from "../helpers/fmq.js";
import { tempDir } from "../helpers/tmp.js";
import { treeHashes, writeTree } from "../helpers/files.js";
import { waitFor } from "../helpers/wait.js";
import { freePort } from "../helpers/net.js";

const start = (args: string[], env: Record<string, string> = {}): Running => startFmq(args, env);

/** Run to completion (with standard input), for the short commands. */
function run(args: string[], input = ""): { code: number | null; stdout: string; stderr: string } {
  const r = spawnSync(process.execPath, [FMQ, ...args], { input, encoding: "utf8", timeout: 15_000 });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

const has = (r: Running, event: string, test: (e: Record<string, unknown>) => boolean = () => true) => r.events.find((e) => e.event === event && test(e));

async function keygen(basename: string): Promise<string> {
  const r = run(["keygen", "--out", basename, "--json"]);
  expect(r.code, r.stderr).toBe(0);
  return (JSON.parse(r.stdout) as { publicKey: string }).publicKey;
}

describe("cli security", () => {
  it("cli security - keygen writes <out>.pub (0644, the key and a newline) and <out>.key (0600), and never overwrites without --force", async () => {
    const dir = await tempDir();
    const base = path.join(dir, "keys", "server");
    await mkdir(path.dirname(base));
    const r = run(["keygen", "--out", base]);
    expect(r.code).toBe(0);
    const publicKey = (await readFile(`${base}.pub`, "utf8")).trimEnd();
    expect(publicKey).toMatch(/^[0-9a-zA-Z.\-:+=^!/*?&<>()[\]{}@%$#]{40}$/);
    expect(r.stdout).toBe(`wrote ${base}.pub (public key ${publicKey}) and ${base}.key (secret, mode 0600)\n`);
    expect((await stat(`${base}.pub`)).mode & 0o777).toBe(0o644);
    expect((await stat(`${base}.key`)).mode & 0o777).toBe(0o600);
    const secret = await readFile(`${base}.key`, "utf8");
    expect(secret).toContain(`public-key = "${publicKey}"`);
    expect(secret).toMatch(/secret-key = "[^"]{40}"/);
    const again = run(["keygen", "--out", base]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe(`fmq: ${base}.key exists; use --force to replace it\n`);
    expect(await readFile(`${base}.key`, "utf8")).toBe(secret);
    expect(run(["keygen", "--out", base, "--force"]).code).toBe(0);
    expect(await readFile(`${base}.key`, "utf8")).not.toBe(secret);
    // --force replaces what is there; it never writes the secret into it (a symlink to a file of
    // someone else's, or their own file, would then hold it).
    const elsewhere = path.join(dir, "someone-else's");
    await writeFile(elsewhere, "theirs");
    await rm(`${base}.key`);
    await symlink(elsewhere, `${base}.key`);
    expect(run(["keygen", "--out", base, "--force"]).code).toBe(0);
    expect(await readFile(elsewhere, "utf8")).toBe("theirs");
    expect((await lstat(`${base}.key`)).isFile()).toBe(true);
    expect((await stat(`${base}.key`)).mode & 0o777).toBe(0o600);
    expect(run(["keygen"]).stderr).toMatch(/required option '--out <basename>'/);
    // A refusal leaves the pair as it was: with only the .pub there, no new .key is written beside it.
    const pub = await readFile(`${base}.pub`, "utf8");
    await rm(`${base}.key`);
    const refused = run(["keygen", "--out", base]);
    expect([refused.code, refused.stderr]).toEqual([1, `fmq: ${base}.pub exists; use --force to replace it\n`]);
    await expect(stat(`${base}.key`)).rejects.toThrow(/ENOENT/);
    expect(await readFile(`${base}.pub`, "utf8")).toBe(pub);
    // Directories on the way are made (as the README's keys/clients/alice asks), the new one mode 0700.
    const nested = path.join(dir, "fresh", "clients", "alice");
    expect(run(["keygen", "--out", nested]).code).toBe(0);
    expect((await stat(`${nested}.key`)).mode & 0o777).toBe(0o600);
    expect((await stat(path.dirname(nested))).mode & 0o777).toBe(0o700);
    // A file on the way is said as such, not as a key that exists.
    const blocked = run(["keygen", "--out", path.join(`${nested}.pub`, "server")]);
    expect([blocked.code, blocked.stderr]).toEqual([1, `fmq: cannot make directory ${nested}.pub: EEXIST\n`]);
    // --force over a .pub that cannot be replaced (a directory) replaces neither.
    const keyBefore = await readFile(`${nested}.key`, "utf8");
    await rm(`${nested}.pub`);
    await mkdir(`${nested}.pub`);
    const forced = run(["keygen", "--out", nested, "--force"]);
    expect([forced.code, forced.stderr]).toEqual([1, `fmq: cannot replace ${nested}.pub: not a file\n`]);
    expect(await readFile(`${nested}.key`, "utf8")).toBe(keyBefore);
  });

  it("cli security - publish --curve-secret --allow and subscribe --curve-server --curve-secret deliver; an unlisted key gets a clear error at once", async () => {
    const dir = await tempDir();
    const src = path.join(dir, "outbox");
    await writeTree(src, { "a.txt": "alpha\n", "sub/b.bin": Buffer.from([0, 1, 2, 255]) });
    await mkdir(path.join(dir, "clients"));
    await keygen(path.join(dir, "server"));
    await keygen(path.join(dir, "clients", "c1"));
    await keygen(path.join(dir, "stranger"));
    const port = await freePort();
    const endpoint = `tcp://127.0.0.1:${port}`;
    const pub = start(["publish", src, "--bind", endpoint, "--curve-secret", path.join(dir, "server.key"), "--allow", path.join(dir, "clients"), "--json", "--stable-ms", "30"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    expect(has(pub, "ready")).toMatchObject({ security: "curve", publicKey: (await readFile(path.join(dir, "server.pub"), "utf8")).trim() });

    const inbox = path.join(dir, "inbox");
    const sub = start(["subscribe", "/", "--connect", endpoint, "--inbox", inbox, "--curve-server", path.join(dir, "server.pub"), "--curve-secret", path.join(dir, "clients", "c1.key"), "--json"]);
    await waitFor(() => sub.events.filter((e) => e.event === "delivered").length === 2, "2 deliveries over CURVE");
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    expect(sub.events.filter((e) => e.event === "error")).toEqual([]);

    const stranger = start(["subscribe", "/", "--connect", endpoint, "--inbox", path.join(dir, "no"), "--curve-server", path.join(dir, "server.pub"), "--curve-secret", path.join(dir, "stranger.key"), "--json"]);
    // Timed from its first line, not from the spawn: starting Node takes seconds on a loaded machine.
    await waitFor(() => has(stranger, "connecting"), "the stranger connecting");
    const t0 = Date.now();
    await waitFor(() => has(stranger, "error"), "an error from the stranger", 15_000);
    // (Said at its first refused handshake, not after a long wait.)
    expect(Date.now() - t0).toBeLessThan(10_000);
    expect(has(stranger, "error")).toEqual({ event: "error", message: "authentication failed: the server refused our CURVE key (not in its allow-list?)" });
    await waitFor(() => has(pub, "warning", (e) => /refused CURVE handshake from 127\.0\.0\.1: client key not in the allow-list/.test(String(e.message))), "publisher warning");

    // Human output: the same error on stderr.
    const human = start(["subscribe", "/", "--connect", endpoint, "--inbox", path.join(dir, "no2"), "--curve-server", path.join(dir, "clients", "c1.pub"), "--curve-secret", path.join(dir, "clients", "c1.key")]);
    await waitFor(() => human.stderr.find((l) => l.startsWith("error: handshake failed")), "an error on stderr");
    expect(human.stderr.find((l) => l.startsWith("error: "))).toMatch(/is --curve-server not the server's public key/);
    // The publisher says it too (the wrong server key never reaches its allow-list: libzmq's monitor
    // reports it), once however often the client tries again.
    const wrongKey = (e: Record<string, unknown>) => /^refused CURVE handshake on tcp:\/\/127\.0\.0\.1:\d+: its HELLO could not be opened \(a client with the wrong server public key\?\)$/.test(String(e.message));
    await waitFor(() => has(pub, "warning", wrongKey), "publisher warning for the wrong server key");
    await new Promise<void>((resolve) => setTimeout(resolve, 2500)); // (the client retries meanwhile)
    expect(pub.events.filter((e) => e.event === "warning" && wrongKey(e))).toHaveLength(1);
    expect(has(stranger, "delivered")).toBeUndefined();
  });

  it("cli security - bad key files, bad flags and bad config files: one line on stderr, exit 1, nothing bound", async () => {
    const dir = await tempDir();
    await keygen(path.join(dir, "server"));
    const port = await freePort();
    const bind = `tcp://127.0.0.1:${port}`;
    const failing = async (args: string[], message: string | RegExp) => {
      const r = start(args);
      const { code } = await r.exited;
      expect(code, args.join(" ")).toBe(1);
      expect(r.stderr).toHaveLength(1);
      if (typeof message === "string") expect(r.stderr[0]).toBe(message);
      else expect(r.stderr[0]).toMatch(message);
      expect(r.events.filter((e) => e.event === "ready")).toEqual([]);
    };
    await chmod(path.join(dir, "server.key"), 0o644);
    const key = path.join(dir, "server.key");
    await failing(["publish", dir, "--bind", bind, "--curve-secret", key, "--json"], `fmq: --curve-secret: ${key} is accessible by others (mode 0644); run: chmod 600 ${key}`);
    await chmod(key, 0o600);
    await failing(["publish", dir, "--bind", bind, "--curve-secret", path.join(dir, "server.pub")], `fmq: --curve-secret: ${path.join(dir, "server.pub")} holds a public key only: give the secret key file (.key, from fmq keygen)`);
    await failing(["publish", dir, "--bind", bind, "--allow", path.join(dir, "server.pub")], "fmq: --allow: CURVE needs the server's secret key: --curve-secret <file.key> (or curve-secret in [security])");
    const config = path.join(dir, "fmq.toml");
    await writeFile(config, `[[mount]]\ndirectory = "."\n\n[security]\nmechanism = "curve"\ncurve-secret = "server.key"\nanonymus = false\n`);
    await failing(["publish", "--config", config, "--bind", bind], `fmq: ${config}:7: unknown key "anonymus" in [security] (expected one of: mechanism, curve-secret, allow, anonymous, anonymous-mounts)`);
    await failing(["publish", "--bind", bind], "fmq: give a directory to publish, or --config <file> with [[mount]]s");
    await failing(["subscribe", "/", "--curve-server", path.join(dir, "server.pub")], "fmq: --curve-server needs --curve-secret <client.key>: our own key (make one with: fmq keygen --out <name>)");
    await failing(["subscribe", "/", "--user", "alice"], "fmq: --user needs a password: --password-file <file>, or FMQ_PASSWORD in the environment");
    // A password file, and a config file with a password in clear, that others may read.
    const pw = path.join(dir, "pw.txt");
    await writeFile(pw, "secret\n", { mode: 0o644 });
    await failing(["subscribe", "/", "--user", "alice", "--password-file", pw], `fmq: --password-file: ${pw} is accessible by others (mode 0644); run: chmod 600 ${pw}`);
    const clear = path.join(dir, "clear.toml");
    await writeFile(clear, `[[mount]]\ndirectory = "."\n\n[[account]]\nuser = "alice"\npassword = "secret"\n`, { mode: 0o640 });
    await failing(["publish", "--config", clear, "--bind", bind], `fmq: ${clear} holds passwords in clear and is accessible by others (mode 0640); run: chmod 600 ${clear}, or store password-hash = "..." from fmq passwd instead`);
    // Nothing was bound on the way.
    const ok = start(["publish", dir, "--bind", bind, "--json"]);
    await waitFor(() => has(ok, "ready"), "the port was still free");
  });

  it("cli security - fmq passwd reads standard input up to its first line only, and refuses a line without end", async () => {
    // (It read all of its input first: `yes pw | fmq passwd` grew until it failed.)
    const endless = spawnSync("sh", ["-c", `yes hunter2 | "${process.execPath}" "${FMQ}" passwd`], { encoding: "utf8", timeout: 40_000 });
    expect(endless.status).toBe(0);
    expect(endless.stdout).toMatch(/^password-hash = "scrypt\$/);
    const zeros = spawnSync("sh", ["-c", `head -c 100000 /dev/zero | "${process.execPath}" "${FMQ}" passwd`], { encoding: "utf8", timeout: 40_000 });
    expect(zeros.status).toBe(1);
    expect(zeros.stderr).toBe("fmq: the password line is longer than 4096 characters\n");
  });

  it("cli security - fmq passwd on a terminal asks, does not echo, and stops at Enter (not at the end of input)", async () => {
    const helper = fileURLToPath(new URL("../helpers/in-terminal.py", import.meta.url));
    const r = spawnSync("python3", [helper, "hunter2", FMQ_COMMAND, "passwd"], { encoding: "utf8", timeout: 40_000 });
    const { output, code } = JSON.parse(r.stdout) as { output: string; code: number };
    expect(code).toBe(0);
    expect(output).not.toContain("hunter2");
    const hash = /password-hash = "scrypt\$(\d+)\$(\d+)\$(\d+)\$([^$]+)\$([^"]+)"/.exec(output);
    expect(output.startsWith("password: ")).toBe(true);
    const [N, r8, p, salt, key] = hash!.slice(1) as [string, string, string, string, string];
    const derived = scryptSync("hunter2", Buffer.from(salt, "base64"), Buffer.from(key, "base64").length, { N: Number(N), r: Number(r8), p: Number(p), maxmem: 64 * 1024 * 1024 });
    expect(derived.toString("base64")).toBe(key);
  });

  it("cli security - PLAIN from a config file: fmq passwd, accounts with mounts, --password-file and FMQ_PASSWORD; a wrong password is refused", async () => {
    const dir = await tempDir();
    await writeTree(dir, { "logs/app.log": "log line\n", "builds/b1.tar": "tar\n" });
    const hashed = run(["passwd"], "wonderland\n");
    expect(hashed.code, hashed.stderr).toBe(0);
    expect(hashed.stdout).toMatch(/^password-hash = "scrypt\$16384\$8\$1\$[^$]+\$[^$"]+"\n$/);
    const port = await freePort();
    const endpoint = `tcp://127.0.0.1:${port}`;
    const config = path.join(dir, "fmq.toml");
    await writeFile(
      config,
      `bind = "${endpoint}"\nstable-ms = 30\n\n[[mount]]\ndirectory = "logs"\nalias = "/logs"\n\n[[mount]]\ndirectory = "builds"\nalias = "/builds"\n\n` +
        `[security]\nmechanism = "plain"\n\n[[account]]\nuser = "alice"\n${hashed.stdout}mounts = ["/logs"]\n`,
    );
    const pub = start(["publish", "--config", config, "--json"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    expect(has(pub, "ready")).toMatchObject({ endpoint, security: "plain", mounts: [{ alias: "/logs" }, { alias: "/builds" }] });

    const passwordFile = path.join(dir, "pw");
    await writeFile(passwordFile, "wonderland\n", { mode: 0o600 });
    const inbox = path.join(dir, "in");
    const sub = start(["subscribe", "/logs", "--connect", endpoint, "--inbox", inbox, "--user", "alice", "--password-file", passwordFile, "--json"]);
    await waitFor(() => has(sub, "delivered"), "alice's log");
    expect(await readFile(path.join(inbox, "app.log"), "utf8")).toBe("log line\n");
    await waitFor(() => has(pub, "connected", (e) => e.user === "alice"), "the publisher names the user");

    const denied = start(["subscribe", "/builds", "--connect", endpoint, "--inbox", path.join(dir, "in2"), "--user", "alice", "--json"], { FMQ_PASSWORD: "wonderland" });
    await waitFor(() => has(denied, "error"), "access denied");
    expect(has(denied, "error")).toEqual({ event: "error", message: "subscription to /builds refused: access denied: /builds" });

    const wrong = start(["subscribe", "/logs", "--connect", endpoint, "--inbox", path.join(dir, "in3"), "--user", "alice", "--json"], { FMQ_PASSWORD: "looking-glass" });
    await waitFor(() => has(wrong, "error"), "refused");
    expect(has(wrong, "error")).toEqual({ event: "error", message: 'authentication failed: the server refused user "alice" (wrong user name or password?)' });
    expect(has(wrong, "delivered")).toBeUndefined();
  });
});
