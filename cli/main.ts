// The fmq command line (loaded by fmq.ts once the signal handlers are in). It only parses flags, builds
// options and wires events to output; everything else lives in src/. Commands and flags are a contract:
// scripts rely on them.

import { Command, InvalidArgumentError, Option } from "commander";
import { readFileSync, writeSync } from "node:fs";
import { realpath } from "node:fs/promises";
import { constants as osConstants } from "node:os";
import { basename, dirname, isAbsolute, join as joinPath, relative as relativePath, resolve as resolvePath, sep } from "node:path";
import { context } from "zeromq";
import { DEFAULT_BIND, MAX_CHUNK_SIZE, clientDefaults, serverDefaults } from "../src/defaults.js";
import { isUnpublished } from "../src/paths.js";
import type { Client, DeliveredEvent, PublishedFile, Server } from "../src/index.js";
import type { PublishFlags, ServerSettings } from "../src/config/server-config.js";
import { Output, jsonLine, printable } from "./output.js";
import { dieOf, takeSignals } from "./signals.js";
import { boundHeapGrowth } from "./heap.js";
import prettyBytes from "pretty-bytes";

// Each command loads only what it uses (`await import` in its action): a subscriber does not load the
// publisher's code, chokidar or the config parser, nor a publisher the client's. About 60 ms less CPU to
// start a subscriber (124 against 184 ms of imports, measured), which counts when 16 start at once.

// A CLI must never hang on exit waiting for queued messages (zeromq.js' default).
context.blocky = false;

/** What to do when stdout cannot be written: until a command says how it stops, exit. */
let outputLost: (status: number) => void = (status) => process.exit(status);
/** The status a stop under way exits with (see onStop), once one is (see fail). */
let stopStatus: number | undefined;

// Whoever read our output has gone (`fmq subscribe / --json | head -3`): stop quietly, as on a signal,
// instead of dying of an unhandled EPIPE with a stack trace. Any other failure to write stdout (a full
// disk under `> log`) is one line on stderr and a non-zero exit, also after a clean stop. Later writes
// fail the same way and are ignored. A lost stderr is ignored: stdout may still be read.
let stdoutFailed = false;
process.stdout.on("error", (error: NodeJS.ErrnoException) => {
  if (stdoutFailed) return;
  stdoutFailed = true;
  if (error.code !== "EPIPE") process.stderr.write(`fmq: cannot write output: ${error.code ?? error.message}\n`);
  outputLost(error.code === "EPIPE" ? 0 : 1);
});
process.stderr.on("error", () => undefined);

const program = new Command()
  .name("fmq")
  .description("FileMQ: publish directories, subscribe to them, over ZeroMQ (35/FILEMQ v2)")
  .version(ownVersion())
  .configureOutput({ outputError: (text) => usageError(text), writeOut: (text) => writeOutOrFail(text) });

program
  .command("publish")
  .description("publish a directory to subscribers")
  .argument("[dir]", "directory to publish (default: the [[mount]]s of --config)", notEmpty)
  .option("--config <file>", "server config file (TOML): binds, mounts, security, limits; flags override it", notEmpty)
  .option("--bind <endpoint>", `endpoint to bind (repeatable) (default: "${DEFAULT_BIND}")`, collectNotEmpty)
  .option("--alias <vpath>", "virtual path the directory is published under", "/")
  .addOption(sizeOption("--chunk-size <bytes>", "payload bytes per chunk (e.g. 256k, 1M; at most 64M)", serverDefaults.chunkSize, 1, MAX_CHUNK_SIZE))
  .addOption(msOption("--stable-ms <ms>", "ship a file once unchanged for this long", serverDefaults.stableMs))
  .option("--no-hash-ahead", "do not read big files at publish to fingerprint them; each transfer hashes what it sends")
  .option("--curve-secret <file>", "encrypt with CURVE: the server's key file (from fmq keygen)", notEmpty)
  .option("--allow <file-or-dir>", "with CURVE, admit only these client keys: a .pub file or a directory of them (repeatable)", collectNotEmpty)
  .option("--json", "one JSON object per line on stdout")
  .option("--trace", "print every state machine step on stderr")
  .action(async (dir: string | undefined, opts: PublishOptions, command: Command) => {
    const out = new Output(opts.json === true);
    const given = (name: string) => command.getOptionValueSource(name) === "cli";
    if (dir === undefined && given("alias")) fail("--alias needs <dir>");
    const flags: PublishFlags = {
      ...(dir !== undefined ? { directory: dir, alias: opts.alias } : {}),
      // (Each --bind is bound: given twice, the first was dropped silently, a review.)
      ...(opts.bind !== undefined ? { binds: opts.bind } : {}),
      ...(given("chunkSize") ? { chunkSize: opts.chunkSize } : {}),
      ...(given("stableMs") ? { stableMs: opts.stableMs } : {}),
      ...(given("hashAhead") ? { hashAhead: opts.hashAhead } : {}),
      ...(opts.curveSecret !== undefined ? { curveSecret: opts.curveSecret } : {}),
      ...(opts.allow !== undefined ? { allow: opts.allow } : {}),
    };
    boundHeapGrowth();
    // Everything is checked (config file, key files, directories) before anything binds.
    const [{ Server }, { loadServerConfig, resolveServerSettings }] = await Promise.all([import("../src/server/server.js"), import("../src/config/server-config.js")]);
    let server: Server;
    let settings: ServerSettings;
    try {
      if (dir === undefined && opts.config === undefined) throw new Error("give a directory to publish, or --config <file> with [[mount]]s");
      settings = await resolveServerSettings(opts.config !== undefined ? await loadServerConfig(opts.config) : undefined, flags);
      server = new Server({ ...settings.options, ...traceOption(opts.trace) });
    } catch (error) {
      fail(error);
    }
    onStop(() => server.close());
    // Listen before publishing: files found at start can become stable before bind() returns, and a
    // client can connect to the first of two binds while the second is made (its "connected" was lost
    // when the handlers were wired after every bind). Their lines wait until "ready" is out, so "ready"
    // always comes first.
    let held: (() => void)[] | undefined = [];
    const say = (line: () => void) => (held ? held.push(line) : line());
    // Warnings too: the start scan reports what it cannot publish as soon as it is done (with --json they
    // wait for "ready" as well; on a terminal they go to stderr at once).
    let earlyWarnings: string[] | undefined = [];
    server.on("warning", (message) => {
      if (out.json && earlyWarnings) earlyWarnings.push(message);
      else out.warning(message);
    });
    server.on("published", (file) => {
      if (out.json) say(() => out.event({ event: "published", path: file.vpath, size: file.size }, ""));
    });
    const userOf = (client: string) => (settings.options.security ? server.userOf(client) : undefined);
    server.on("connected", (client) => {
      const user = userOf(client);
      say(() => out.event({ event: "connected", client, ...(user !== undefined ? { user } : {}) }, `client ${client} connected${user !== undefined ? ` as ${user}` : ""}`));
    });
    server.on("disconnected", (client) => say(() => out.event({ event: "disconnected", client }, `client ${client} gone`)));
    server.on("sent", (e) =>
      say(() =>
        out.event(
          { event: e.operation === "create" ? "sent" : "deleted", client: e.client, path: e.path, ...(e.operation === "create" ? { size: e.size } : {}) },
          e.operation === "create" ? `sent ${e.path} (${e.size} bytes) to ${e.client}` : `sent delete of ${e.path} to ${e.client}`,
        ),
      ),
    );
    server.on("caught-up", (client) => {
      if (out.json) say(() => out.event({ event: "caught-up", client }, ""));
    });
    try {
      const mounts = [];
      for (const m of settings.mounts) mounts.push(await server.publish(m.directory, m.alias));
      const endpoints = [];
      for (const b of settings.binds) endpoints.push(await server.bind(b));
      const security = settings.options.security?.policy.mechanism ?? "null";
      const [mount, endpoint] = [mounts[0]!, endpoints[0]!];
      out.event(
        {
          event: "ready",
          endpoint,
          directory: mount.root,
          alias: mount.alias,
          ...(endpoints.length > 1 ? { endpoints } : {}),
          ...(mounts.length > 1 ? { mounts: mounts.map((m) => ({ directory: m.root, alias: m.alias })) } : {}),
          ...(security !== "null" ? { security } : {}),
          ...(server.publicKey ? { publicKey: server.publicKey } : {}),
        },
        `publishing ${mounts.map((m) => `${m.root} as ${m.alias}`).join(", ")} on ${endpoints.join(", ")}` +
          (security === "curve" ? ` (CURVE, server key ${server.publicKey})` : security === "plain" ? " (PLAIN)" : ""),
      );
    } catch (error) {
      await server.close();
      // (What the start scan could not publish is said all the same: it is so whatever the bind did.)
      for (const message of earlyWarnings) out.warning(message);
      fail(error);
    }
    for (const line of held) line();
    held = undefined;
    for (const message of earlyWarnings) out.warning(message);
    earlyWarnings = undefined;
    if (!out.json) reportServing(server, out);
  });

program
  .command("subscribe")
  .description("receive every file under a virtual path, and every change")
  .argument("<path>", "virtual path to subscribe to, e.g. / or /logs")
  .option("--connect <endpoint>", "server endpoint", notEmpty, "tcp://127.0.0.1:5670")
  .option("--inbox <dir>", "directory files land in", notEmpty, "./inbox")
  .addOption(sizeOption("--window <bytes>", "credit window: most bytes in flight (at least 1M; while only small files arrive, an eighth of it or 2M, whichever is more)", clientDefaults.window, clientDefaults.slice))
  .addOption(msOption("--heartbeat-ms <ms>", "HUGZ after this much silence (at least 100; the server is given up after 5 of them)", clientDefaults.heartbeatMs, 100, Math.floor((2 ** 31 - 1) / 5)))
  .option("--fsync", "fsync each file and its directory before reporting it delivered")
  .option("--curve-server <file>", "encrypt with CURVE: the server's public key file (.pub)", notEmpty)
  .option("--curve-secret <file>", "with --curve-server: our key file (.key, from fmq keygen)", notEmpty)
  .option("--user <name>", "log in with PLAIN as this user (password from --password-file or $FMQ_PASSWORD)")
  .option("--password-file <file>", "with --user: a file whose first line is the password", notEmpty)
  .option("--json", "one JSON object per line on stdout")
  .option("--trace", "print every state machine step on stderr")
  .action(async (path: string, opts: SubscribeOptions) => {
    const out = new Output(opts.json === true);
    const [{ Client, subscriptionPath, checkEndpoint }, { loadClientSecurity }] = await Promise.all([import("../src/client/client.js"), import("../src/security/client-socket.js")]);
    // (Before anything is said of a connection: a bad path said "connecting to ..." first, a review. The
    // endpoint before the inbox is opened: a bad one left a new inbox made for nothing, another.)
    try {
      subscriptionPath(path);
      checkEndpoint(opts.connect);
    } catch (error) {
      fail(error);
    }
    const security = await loadClientSecurity({
      ...(opts.curveServer !== undefined ? { curveServer: opts.curveServer } : {}),
      ...(opts.curveSecret !== undefined ? { curveSecret: opts.curveSecret } : {}),
      ...(opts.user !== undefined ? { user: opts.user } : {}),
      ...(opts.passwordFile !== undefined ? { passwordFile: opts.passwordFile } : {}),
      ...(process.env.FMQ_PASSWORD !== undefined ? { password: process.env.FMQ_PASSWORD } : {}),
    }).catch(fail);
    const client = new Client({
      ...(security ? { security } : {}),
      endpoint: opts.connect,
      inbox: opts.inbox,
      window: opts.window,
      heartbeatMs: opts.heartbeatMs,
      fsync: opts.fsync === true,
      ...traceOption(opts.trace),
    });
    await wireClient(client, out, { refusalIsFatal: true });
    onStop(() => client.close());
    // Our one subscription refused: nothing is left to do. The reason for the exit status is one line on
    // stderr, "fmq: ...", as for every failure (with --json, after the error line on stdout; in human
    // mode instead of an "error: ..." line, which said it as if the subscriber went on).
    client.on("refused", (path, reason) => {
      out.fatal(`subscription to ${path} refused: ${reason}`);
      void client.close().finally(() => process.exit(1));
    });
    try {
      // The inbox opened (and found free: another subscriber's says so) before the connection is begun,
      // which said "connected" first; the subscription goes once the session opens.
      await client.subscribe(path);
      client.connect();
      out.event({ event: "connecting", endpoint: opts.connect, inbox: opts.inbox }, `connecting to ${opts.connect}, inbox ${opts.inbox}`);
    } catch (error) {
      await client.close();
      fail(error);
    }
  });

program
  .command("track")
  .description("keep <dst> a copy of <src>: publisher and subscriber in one process")
  .argument("<src>", "directory to publish", notEmpty)
  .argument("<dst>", "directory to mirror it into", notEmpty)
  .addOption(msOption("--stable-ms <ms>", "ship a file once unchanged for this long", serverDefaults.stableMs))
  .option("--once", "exit once every file present at start has been delivered (status 1 if any could not be)")
  .option("--json", "one JSON object per line on stdout")
  .option("--trace", "print every state machine step on stderr")
  .action(async (src: string, dst: string, opts: { stableMs: number; once?: boolean; json?: boolean; trace?: boolean }) => {
    const out = new Output(opts.json === true);
    const loop = await copiesItself(src, dst);
    if (loop) fail(loop);
    boundHeapGrowth();
    const [{ Server }, { Client }, { InboxError }] = await Promise.all([import("../src/server/server.js"), import("../src/client/client.js"), import("../src/client/inbox.js")]);
    const server = new Server({ stableMs: opts.stableMs, ...traceOption(opts.trace) });
    const client = new Client({ endpoint: `inproc://fmq-track-${process.pid}`, inbox: dst, ...traceOption(opts.trace) });
    const stop = async () => {
      await client.close();
      await server.close();
    };
    const finish = onStop(stop, { signalFails: opts.once === true });
    server.on("warning", (message) => out.warning(message));
    try {
      const mount = await server.publish(src, "/");
      await server.bind(client.options.endpoint);
      await wireClient(client, out);
      // (Ready once <dst> is found fit for an inbox, which subscribing checks: not before a refusal.)
      await client.subscribe("/");
      out.event({ event: "ready", directory: mount.root, inbox: dst }, `tracking ${mount.root} into ${dst}`);
      client.connect();
      if (opts.once) {
        const started = Date.now();
        let bytes = 0;
        // The version each file came in last (its size and the server's mtime): one that changed since in
        // <src> is waited for again (a file published while it was still being written, then finished,
        // had the run end with the first, short version in <dst>: a review).
        const delivered = new Map<string, { readonly size: number; readonly mtime?: number }>();
        // Files the subscriber refused or could not write (reported as errors): they will not arrive.
        const failed = new Set<string>();
        client.on("delivered", (e: DeliveredEvent) => {
          delivered.set(e.vpath, { size: e.size, ...(e.mtime !== undefined ? { mtime: e.mtime } : {}) });
          failed.delete(e.vpath);
          bytes += e.size;
        });
        client.on("error", (error) => {
          // (Names are relative to the subscription, "/".)
          if (error instanceof InboxError && error.relative !== undefined) failed.add(`/${error.relative}`);
        });
        // The publisher could not send it (unreadable...): it will not arrive either.
        server.on("unsent", (e) => failed.add(e.path));
        // Deletes too (of what <dst> holds and <src> no longer has): the publisher has sent everything it
        // had for the subscription once it reports caught-up after taking it, and a delete has been
        // applied once the subscriber no longer holds the file.
        let caughtUp = false;
        // (What the publisher could not publish or read is counted by a look through <src> that ends after
        // the scan: a small run could be said done before it reached an unreadable directory, status 0.)
        let walked = false;
        void mount.walked().then(() => (walked = true));
        server.on("subscribed", () => (caughtUp = false));
        server.on("caught-up", () => (caughtUp = true));
        const deletes = new Set<string>();
        server.on("sent", (e) => {
          // (A name sent again after its delete (the file made again in <src>) is a file again, waited for
          // as the others: kept here, it held the run for ever once the new file had arrived, holds() then
          // true for good. And the delivery of the file it was before counts no more: the new one must come.)
          if (e.operation === "delete") {
            deletes.add(e.path);
            delivered.delete(e.path);
          } else deletes.delete(e.path);
        });
        // A file <dst> holds already as it is in <src> (an earlier run) is not sent again: it counts as done.
        // (Found once per published version: the check below runs every 20 ms, and holds() looks at the disk.)
        const heldVersions = new WeakSet<PublishedFile>();
        const held = (vpath: string, file: PublishedFile) => {
          if (heldVersions.has(file)) return true;
          // (Not while a version of it is on its way into place: a file changed in <dst> and sent again was
          // counted held, the run ending "0 files, 3 held already" before its delivery was said, when
          // the placing thread had renamed it into place and its answer had not come back: the manifest
          // still had the record of the version it replaced, of the same size. By my reading of a test that
          // failed once so; test/integration/client-placing-window.test.ts holds that window open.)
          if (client.placing(vpath)) return false;
          const mine = client.holds(vpath);
          const same = mine !== undefined && mine.size === file.size && mine.mtime === file.mtimeMs;
          if (same) heldVersions.add(file);
          return same;
        };
        /** The file came in this run, as it is published now. */
        const arrived = (vpath: string, file: PublishedFile) => {
          const version = delivered.get(vpath);
          return version !== undefined && version.size === file.size && (version.mtime === undefined || version.mtime === file.mtimeMs);
        };
        // A file that never stops changing (a log written to every 100 ms) holds --once up for as long:
        // said every 10 s, naming some of them, so that a script's author knows what it waits for (a
        // review: it waited silently for ever).
        let waitingSaid = started;
        // Done when the mount has no file left to settle and every published file has arrived, was held
        // already, or failed.
        const timer = setInterval(() => {
          if (mount.unstable > 0 && Date.now() - waitingSaid >= WAITING_SAID_EVERY_MS) {
            waitingSaid = Date.now();
            const names = mount.unstableNames();
            out.event(
              { event: "waiting", unstable: mount.unstable, names },
              `waiting for ${mount.unstable} ${mount.unstable === 1 ? "file" : "files"} to stop changing: ${names.join(", ")}${mount.unstable > names.length ? ", ..." : ""}`,
            );
          }
          if (mount.unstable > 0 || client.state !== "connected" || !caughtUp || !walked) return;
          // (A delete the subscriber could not apply (EPERM...) was said as an error: not waited for for ever.)
          for (const vpath of deletes) if (!failed.has(vpath) && (client.holds(vpath) || client.placing(vpath))) return;
          for (const [vpath, file] of mount.files) if (!arrived(vpath, file) && !failed.has(vpath) && !held(vpath, file)) return;
          clearInterval(timer);
          const seconds = (Date.now() - started) / 1000;
          const missing = [...mount.files.keys()].filter((vpath) => failed.has(vpath) && !delivered.has(vpath)).length;
          const unchanged = [...mount.files].filter(([vpath, file]) => !delivered.has(vpath) && !failed.has(vpath) && held(vpath, file)).length;
          // A directory of <src> we could not read: what is in it was not synced, so not a success (a
          // review: "synced 0 files", status 0, for a <src> of mode 000, and `track --once && rm -rf src`).
          const unreadable = mount.unreadableDirectories;
          // Names of <src> the publisher could not publish (said above as warnings): not in <dst> either, so
          // not a success (a review: "synced", status 0, for a <src> with a name holding a backslash).
          const unpublished = mount.unpublishedNames;
          // Deletes of <dst>'s files gone from <src> that could not be applied (said as errors).
          const undeleted = [...deletes].filter((vpath) => failed.has(vpath) && client.holds(vpath)).length;
          out.event(
            {
              event: "synced",
              files: delivered.size,
              bytes,
              seconds,
              ...(unchanged > 0 ? { unchanged } : {}),
              ...(missing > 0 ? { failed: missing } : {}),
              ...(unreadable > 0 ? { unreadable } : {}),
              ...(unpublished > 0 ? { unpublished } : {}),
              ...(undeleted > 0 ? { undeleted } : {}),
            },
            `synced ${delivered.size} ${delivered.size === 1 ? "file" : "files"}, ${bytes} bytes in ${seconds.toFixed(2)} s` +
              (unchanged > 0 ? `; ${unchanged} held already` : "") +
              (missing > 0 ? `; ${missing} could not be delivered` : "") +
              (unreadable > 0 ? `; ${unreadable} ${unreadable === 1 ? "directory" : "directories"} could not be read` : "") +
              (unpublished > 0 ? `; ${unpublished > 100 ? "over 100" : unpublished} ${unpublished === 1 ? "name" : "names"} not published (said above)` : "") +
              (undeleted > 0 ? `; ${undeleted} ${undeleted === 1 ? "file" : "files"} gone from the source could not be deleted` : ""),
          );
          finish(missing > 0 || unreadable > 0 || unpublished > 0 || undeleted > 0 ? 1 : 0);
        }, 20);
      }
    } catch (error) {
      await stop();
      fail(error);
    }
  });

program
  .command("keygen")
  .description("make a CURVE key pair: <basename>.pub (give it out) and <basename>.key (keep it: mode 0600)")
  .requiredOption("--out <basename>", "where to write, e.g. keys/server makes keys/server.pub and keys/server.key")
  .option("--force", "replace existing key files")
  .option("--json", "one JSON object per line on stdout")
  .action(async (opts: { out: string; force?: boolean; json?: boolean }) => {
    const out = new Output(opts.json === true);
    const { generateKeyPair, writeKeyFiles } = await import("../src/security/keys.js");
    const pair = generateKeyPair();
    const files = await writeKeyFiles(opts.out, pair, opts.force === true).catch(fail);
    out.event(
      { event: "keygen", publicFile: files.publicFile, secretFile: files.secretFile, publicKey: pair.publicKey },
      `wrote ${files.publicFile} (public key ${pair.publicKey}) and ${files.secretFile} (secret, mode 0600)`,
    );
  });

program
  .command("passwd")
  .description('hash a password for an [[account]] of the server config: reads it from standard input, prints password-hash = "..."')
  .action(async () => {
    const password = process.stdin.isTTY ? await askPassword() : await firstLineOfStdin();
    if (password === "") fail("no password on standard input");
    const { hashPassword } = await import("../src/security/policy.js");
    process.stdout.write(`password-hash = "${await hashPassword(password)}"\n`);
  });

await program.parseAsync().catch(fail);

// --- helpers -------------------------------------------------------------------------------------

/** The first line of standard input: read up to its end (or MAX_PASSWORD_LINE), not the whole input. */
async function firstLineOfStdin(): Promise<string> {
  // Longest password line read: `yes pw | fmq passwd` or `< /dev/zero` must not grow until it fails.
  // (Here, not at the top level: the commands run before the module's later lines are evaluated.)
  const MAX_PASSWORD_LINE = 4096;
  let text = "";
  for await (const chunk of process.stdin) {
    text += String(chunk);
    const end = text.search(/\r?\n/);
    if (end >= 0) {
      text = text.slice(0, end);
      break;
    }
    if (text.length > MAX_PASSWORD_LINE) fail(`the password line is longer than ${MAX_PASSWORD_LINE} characters`);
  }
  if (text.length > MAX_PASSWORD_LINE) fail(`the password line is longer than ${MAX_PASSWORD_LINE} characters`);
  process.stdin.destroy();
  return text;
}

/** On a terminal: a prompt on stderr, the password read without echo, up to Enter (not to end of input). */
function askPassword(): Promise<string> {
  return new Promise((resolve) => {
    const stdin = process.stdin;
    // Echo off before the prompt shows: whoever types once they see it is never echoed.
    stdin.setRawMode(true);
    process.stderr.write("password: ");
    stdin.setEncoding("utf8");
    let typed = "";
    // (Raw mode turns the keyboard's signals off; one sent otherwise must not leave the terminal raw.)
    const restore = () => stdin.setRawMode(false);
    const interrupted = (signal: NodeJS.Signals) => {
      restore();
      process.stderr.write("\n");
      process.exit(128 + (osConstants.signals[signal] ?? 1));
    };
    const signals: NodeJS.Signals[] = ["SIGHUP", "SIGQUIT", "SIGTERM", "SIGINT"];
    for (const signal of signals) process.once(signal, interrupted);
    const done = (password: string) => {
      restore();
      for (const signal of signals) process.off(signal, interrupted);
      stdin.pause();
      stdin.off("data", onData);
      process.stderr.write("\n");
      resolve(password);
    };
    const onData = (text: string) => {
      // (A key that sends an escape sequence, an arrow, is no part of a password: the chunk is dropped.)
      if (text.startsWith("\u001b")) return;
      for (const c of text) {
        if (c === "\r" || c === "\n") return done(typed);
        if (c === "\u0003") return interrupted("SIGINT"); // Ctrl-C
        if (c === "\u0004") return done(""); // Ctrl-D: nothing typed
        if (c === "\u007f" || c === "\b") typed = typed.slice(0, -1);
        else if (c >= " ") typed += c;
      }
    };
    stdin.on("data", onData);
    stdin.resume();
  });
}

/** `refusalIsFatal`: the caller says a refused subscription itself, as the failure it is, and exits. */
async function wireClient(client: Client, out: Output, { refusalIsFatal = false } = {}): Promise<void> {
  const [{ ProgressDisplay }, { SubscriptionRefused }] = await Promise.all([import("./progress.js"), import("../src/client/client.js")]);
  const progress = new ProgressDisplay(() => client.progress, out);
  client.once("connected", () => progress.start());
  process.once("exit", () => progress.stop());
  client.on("connected", () => out.event({ event: "connected" }, "connected"));
  client.on("subscribed", (path) => out.event({ event: "subscribed", path }, `subscribed to ${path}`));
  client.on("delivered", (e) =>
    out.event(
      { event: "delivered", path: e.path, size: e.size, received: e.received },
      `delivered ${e.path} (${e.size} bytes${e.received !== e.size ? `, ${e.received} received` : ""})`,
    ),
  );
  // Lines are batched to the end of a turn; the inbox records deliveries at times of its own (a batch of
  // small files, a big file's placing line). Written out first, every file recorded has been said: after
  // a kill -9, files were in the inbox with no line ever said of them (a review: 14 to 26 of 5,000 over
  // 6 kills), as the next start found them held. (A file said and not yet recorded is said again then.)
  client.on("recording", () => out.flush());
  client.on("deleted", (e) => out.event({ event: "deleted", path: e.path }, `deleted ${e.path}`));
  // Said once per outage: a publisher down for hours is one line, not one every few seconds.
  let down = false;
  client.on("connected", () => (down = false));
  client.on("disconnected", (reason) => {
    if (down) return;
    down = true;
    out.event({ event: "disconnected", reason }, `disconnected: ${reason}; reconnecting`);
  });
  client.on("error", (error) => {
    if (refusalIsFatal && error instanceof SubscriptionRefused && !out.json) return;
    out.error(error.message);
  });
}

interface PublishOptions {
  config?: string;
  bind?: string[];
  alias: string;
  chunkSize: number;
  stableMs: number;
  hashAhead: boolean;
  curveSecret?: string;
  allow?: string[];
  json?: boolean;
  trace?: boolean;
}

interface SubscribeOptions {
  connect: string;
  inbox: string;
  window: number;
  heartbeatMs: number;
  fsync?: boolean;
  curveServer?: string;
  curveSecret?: string;
  user?: string;
  passwordFile?: string;
  json?: boolean;
  trace?: boolean;
}

/** track --once: how often it says which files it waits for while some keep changing. */
const WAITING_SAID_EVERY_MS = 10_000;

/**
 * For paths and endpoints: "" is refused by name. (It was taken as the working directory by `track ""`,
 * and other flags failed with raw Node messages that named no flag, e.g. "realpath ''"; a review.)
 */
function notEmpty(text: string): string {
  if (text === "") throw new InvalidArgumentError("must not be empty");
  return text;
}

/** For repeatable flags: every value, in order (none empty). */
function collectNotEmpty(value: string, previous: string[] | undefined): string[] {
  return [...(previous ?? []), notEmpty(value)];
}

/** Human mode: what the publisher serves (files, bytes, subscribers), a line whenever that changes (at most every 2 s). */
function reportServing(server: Server, out: Output): void {
  let last = "";
  const timer = setInterval(() => {
    let files = 0;
    let bytes = 0;
    for (const mount of server.mounts) {
      files += mount.files.size;
      for (const file of mount.files.values()) bytes += file.size;
    }
    const aliases = server.mounts.map((m) => m.alias).join(", ");
    const line = `serving ${files.toLocaleString("en")} file${files === 1 ? "" : "s"} (${prettyBytes(bytes)}) under ${aliases} to ${server.clients} subscriber${server.clients === 1 ? "" : "s"}`;
    if (line !== last) out.event({ event: "serving", files, bytes, subscribers: server.clients }, line);
    last = line;
  }, 2000);
  timer.unref();
}

/**
 * How a long-running command stops: cleanly (its close: KTHXBAI, manifests saved), within a second,
 * on SIGINT, SIGTERM or SIGHUP (a second signal: at once), or when its output can no longer be written.
 */
function onStop(close: () => Promise<void>, opts: { signalFails?: boolean } = {}): (status: number) => void {
  /** Running; stopping (asked to: a signal, lost output, or a signal while finishing); or finishing (the job is done, with its own status). */
  let phase: "running" | "stopping" | "finishing" = "running";
  const stop = (status: number) => {
    if (phase !== "running") return;
    phase = "stopping";
    stopStatus = status;
    setTimeout(() => process.exit(status), 900).unref();
    void close().finally(() => exitAfterSignals(status));
  };
  // A service asked to stop has done its job (status 0); a job with an end (track --once) stopped before
  // it has not: 128 + the signal's number, as a shell reports it, so that `fmq track --once a b && ...`
  // goes no further. A second signal stops at once: the process dies of it, as it would without a
  // handler, so its parent sees it killed, not a status of ours. While finishing (the job done, its last
  // step under way), the first changes nothing but that the command is now stopping (with the job's own
  // status): a second stops at once.
  const signal = (name: NodeJS.Signals) => {
    if (phase === "finishing") phase = "stopping";
    else if (phase === "stopping") dieOf(name);
    else stop(opts.signalFails ? 128 + osConstants.signals[name] : 0);
  };
  const early = takeSignals(signal);
  // Likewise its reader gone before the job is done (`fmq track --once a b | head -1`): not 0, which
  // would say the copy is made, but what a shell reports for a command killed by SIGPIPE, 141.
  outputLost = (status) => stop(status === 0 && opts.signalFails ? 128 + osConstants.signals.SIGPIPE : status);
  // (One came while the command started: acted on now. See signals.ts.)
  if (early) signal(early);
  // (No time limit on this one: the job's last step, e.g. saving a large inbox's manifest, is part of it.)
  return (status: number) => {
    if (phase !== "running") return;
    phase = "finishing";
    stopStatus = status;
    void close().finally(() => exitAfterSignals(status));
  };
}

/**
 * Exit once the event loop has looked for signals again: one that came while the close held the thread
 * (a manifest is saved synchronously) waits in libuv's pipe, and is acted on first (a second signal
 * kills). Exiting from the close's own turn, it was lost whenever it had not been read with the first:
 * the two tests that hold that save failed in 2 of 20 runs under two busy loops, and once in CI (their
 * parent saw a status, 143 or 0, not the signal); 0 of 20 (and 0 of 20 unloaded) with this.
 * (Two turns: the first immediate runs before the loop's next poll, the second after it.)
 */
function exitAfterSignals(status: number): void {
  setImmediate(() => setImmediate(() => process.exit(status)));
}

/**
 * Why `track src dst` would copy its own copies forever (dst is src, or inside it where it would be
 * published) or write into what it publishes (src inside dst: src/sub/x lands on dst/sub/x, which is
 * src/x when src is dst/sub; a review), or undefined. Inside a hidden directory of the other is fine:
 * hidden files are neither published nor written.
 */
async function copiesItself(src: string, dst: string): Promise<string | undefined> {
  const real = async (p: string): Promise<string> => {
    // dst may not exist yet: resolve what does, and keep the rest as written.
    const absolute = resolvePath(p);
    for (let head = absolute, tail = ""; ; tail = tail ? `${basename(head)}/${tail}` : basename(head), head = dirname(head)) {
      const found = await realpath(head).catch(() => undefined);
      if (found !== undefined) return tail ? joinPath(found, tail) : found;
      if (dirname(head) === head) return absolute;
    }
  };
  const [from, to] = [await real(src), await real(dst)];
  /** Where `inner` is below `outer`, as a published name ("" for the same directory), or undefined if it is not, or is hidden there. */
  const below = (outer: string, inner: string): string | undefined => {
    const inside = relativePath(outer, inner);
    if (inside.startsWith("..") || isAbsolute(inside)) return undefined;
    return inside !== "" && isUnpublished(inside.split(sep).join("/")) ? undefined : inside;
  };
  const dstInSrc = below(from, to);
  if (dstInSrc === "") return `<dst> is <src> (${from}): nothing to track`;
  if (dstInSrc !== undefined) return `<dst> ${to} is inside <src> ${from}: track would copy its own copies forever`;
  if (below(to, from) !== undefined) return `<src> ${from} is inside <dst> ${to}: track would write into what it publishes`;
  return undefined;
}

/**
 * Commander's own errors (a bad flag or value, an unknown command; it exits 1 after): said as ours are,
 * one line "fmq: ..." on stderr and, with --json, an error event on stdout (a review: nothing came on
 * stdout). Its "(Did you mean publish?)" comes on a line of its own: kept, on the same line.
 */
function usageError(text: string): void {
  const message = printable(text.replace(/^error: /, "").split("\n").filter((line) => line.trim() !== "").join(" "));
  const args = process.argv.slice(2);
  const end = args.indexOf("--");
  if ((end === -1 ? args : args.slice(0, end)).includes("--json")) process.stdout.write(jsonLine({ event: "error", message }));
  process.stderr.write(`fmq: ${message}\n`);
}

/**
 * Commander's own output (--help, --version), written at once: it exits 0 right after, before a failed
 * write to stdout is reported, so `fmq --help > /dev/full` said nothing and exited 0 (a review).
 */
function writeOutOrFail(text: string): void {
  try {
    writeSync(1, text);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    // (A pipe its reader has not emptied: left to the stream, which waits.)
    if (code === "EAGAIN") return void process.stdout.write(text);
    // (Whoever read it has gone: quietly, as for every command. See process.stdout's error handler.)
    if (code === "EPIPE") process.exit(0);
    process.stderr.write(`fmq: cannot write output: ${code ?? String(error)}\n`);
    process.exit(1);
  }
}

/** One line on stderr, exit status 1; with --json, the same as an {"event":"error"} line on stdout too. */
function fail(error: unknown): never {
  // A stop under way (told to stop while it started): what fails now fails for it (its client closed
  // under the subscription), and its status stands, at once, as when its exit came first.
  if (stopStatus !== undefined) process.exit(stopStatus);
  // One line, whatever it quotes (a path given with a newline or an escape sequence in it is shown escaped).
  const message = printable(error instanceof Error ? error.message : String(error));
  const out = Output.current;
  if (out?.json) {
    out.error(message);
    out.flush();
  }
  process.stderr.write(`fmq: ${message}\n`);
  process.exit(1);
}

function traceOption(on: boolean | undefined): { trace?: (line: string) => void } {
  // (Printable: a line may name a file, "stopped at ..." of a transfer cut short, whose name may hold a newline or an escape sequence.)
  return on ? { trace: (line: string) => process.stderr.write(printable(line) + "\n") } : {};
}

/** "1048576", "256k", "1M", "1MiB", "2G": binary multiples. */
function parseSize(text: string): number {
  const match = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`not a size: "${text}" (e.g. 262144, 256k, 1M)`);
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  const value = Number(match[1]) * unit;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`not a positive size: "${text}"`);
  return value;
}

function sizeOption(flags: string, description: string, fallback: number, least = 1, most = Number.MAX_SAFE_INTEGER): Option {
  return new Option(flags, description)
    .argParser((text: string) => {
      const value = parseSize(text);
      if (value < least) throw new InvalidArgumentError(`at least ${prettyBytes(least, { binary: true })} (${least} bytes)`);
      // (Checked here so the message names the flag: the server's own check said "chunk size", a review.)
      if (value > most) throw new InvalidArgumentError(`at most ${prettyBytes(most, { binary: true })} (${most} bytes)`);
      return value;
    })
    .default(fallback);
}

/** Milliseconds from `least` to `most` (by default what a Node timer can wait: about 24.8 days). */
function msOption(flags: string, description: string, fallback: number, least = 0, most = 2 ** 31 - 1): Option {
  // (2^31 - 1 ms is the longest delay setTimeout takes; a longer one fires at once, with a warning.)
  return new Option(flags, description)
    .argParser((text: string) => {
      // (Digits only: Number() would take "", " 1e3 " and "0x3e8" too.)
      const value = /^\d+$/.test(text) ? Number(text) : NaN;
      if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError(`not a number of milliseconds: "${printable(text)}"`);
      if (value < least || value > most) throw new InvalidArgumentError(`from ${least} to ${most} ms`);
      return value;
    })
    .default(fallback);
}

/** The version in our own package.json (dist/cli/fmq.js is two levels below it), not whatever npm ran us. */
function ownVersion(): string {
  try {
    return (JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string }).version;
  } catch {
    return "unknown";
  }
}
