// The fmq command line as users run it: real `fmq` processes (cli/fmq, which runs the built dist/cli/fmq.js), real files,
// real signals. Flags and JSON events are a contract; these tests pin them.

import { execFileSync, spawn, spawnSync, type ChildProcess } from "node:child_process";
import { once } from "node:events";
import { createHash } from "node:crypto";
import { createServer } from "node:net";
import { constants as osConstants, networkInterfaces } from "node:os";
import { closeSync, constants, createReadStream, openSync, readFileSync, writeSync } from "node:fs";
import { chmod, chown, mkdir, open, readFile, realpath, rename, stat, symlink, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import readline from "node:readline";
import { describe, expect, it } from "vitest";
import stringWidth from "string-width";
import { FMQ, FMQ_COMMAND, startFmq, stopProcess, type Running } from "../helpers/fmq.js";
import { FMQ_MALLOC_TUNABLES } from "../../bench/measure.js";
import { tempDir } from "../helpers/tmp.js";
import { makeFifo, sha256File, treeHashes, writeRandomFile, writeTree } from "../helpers/files.js";
import { waitFor } from "../helpers/wait.js";
import { freePort } from "../helpers/net.js";
import { partialName } from "../../src/client/inbox.js";

const start = (args: string[]): Running => startFmq(args);

/** `fmq track <src> <dst> --once --stable-ms 200` of a new <src> of `tree` and a log.txt written to every 50 ms until `writer.stop()`. */
async function trackOnceWhileLogChanges(tree: Record<string, string>): Promise<{ src: string; dst: string; writer: { stop: () => Promise<void> }; track: Running }> {
  const src = await tempDir();
  const dst = path.join(await tempDir(), "dst");
  await writeTree(src, { ...tree, "log.txt": "" });
  const writer = await keepWriting(path.join(src, "log.txt"));
  return { src, dst, writer, track: start(["track", src, dst, "--once", "--json", "--stable-ms", "200"]) };
}

/** Appends a line to `file` every 50 ms until stopped (a file that keeps changing holds `track --once` open). */
async function keepWriting(file: string): Promise<{ stop: () => Promise<void> }> {
  const log = await open(file, "a");
  let lines = 0;
  let writing = Promise.resolve();
  const timer = setInterval(() => (writing = log.appendFile(`line ${++lines}\n`)), 50);
  let stopped: Promise<void> | undefined;
  return {
    stop: () =>
      (stopped ??= (async () => {
        clearInterval(timer);
        await writing;
        await log.close();
      })()),
  };
}


const has = (r: Running, event: string, test: (e: Record<string, unknown>) => boolean = () => true) =>
  r.events.find((e) => e.event === event && test(e));

/**
 * Two signals pending at once (in either order: which of Node's threads takes each decides), so that the
 * second comes while the first is being acted on: the process must die of one of them.
 */
async function expectKilledByTwoSignals(r: Running, release?: () => Promise<void>): Promise<void> {
  r.child.kill("SIGSTOP");
  r.child.kill("SIGINT");
  r.child.kill("SIGTERM");
  r.child.kill("SIGCONT");
  await release?.();
  const { code, signal } = await r.exited;
  expect(code).toBeNull();
  expect(["SIGINT", "SIGTERM"]).toContain(signal);
}

/**
 * Hold a `track` or `subscribe` into <dst> in its last step, the save of its manifest: the snapshot's
 * temporary name, <dst>/.fmq/manifest.json.tmp, made a FIFO, whose opening blocks until `release` reads
 * it. (Caught by SIGSTOP when it said what comes before, a loaded machine could see the line after that
 * step was over.) The process must not yet exist. A manifest that grows past its fold point (4 MiB of
 * journal) is saved earlier too: not for the small trees these tests use.
 */
async function holdLastStep(dst: string): Promise<(r: Running) => Promise<void>> {
  await mkdir(path.join(dst, ".fmq"), { recursive: true });
  const fifo = path.join(dst, ".fmq", "manifest.json.tmp");
  const { release: unblockReader } = makeFifo(fifo);
  return async (r: Running) => {
    let read = false;
    // Should it never open its end (dead before: killed by a signal mid-file), a writer of ours lets the
    // reader's open return: tried until our reader has its end open (before, the open fails with ENXIO).
    void r.exited.then(async () => {
      while (!read) {
        try {
          unblockReader();
        } catch {
          // (No reader yet.)
        }
        await new Promise((resolve) => setTimeout(resolve, 20));
      }
    });
    await new Promise<void>((resolve) => createReadStream(fifo).on("data", () => {}).on("close", () => resolve()).on("error", () => resolve()));
    read = true;
  };
}

/** A <src> of 3,000 small files in 30 directories, and a <dst> not made yet. */
async function manySmallFiles(): Promise<{ src: string; dst: string }> {
  const src = await tempDir();
  const files: Record<string, string> = {};
  for (let i = 0; i < 3000; i++) files[`d${i % 30}/f${i}.txt`] = String(i);
  await writeTree(src, files);
  return { src, dst: path.join(await tempDir(), "dst") };
}

describe("cli", () => {
  it("cli - publish and subscribe in two processes mirror a tree, live changes and deletes included", async () => {
    const src = await tempDir();
    const inbox = path.join(await tempDir(), "inbox");
    await writeTree(src, { "a.txt": "alpha\n", "sub/b.bin": Buffer.from([0, 1, 2, 3]), "sub/deep/c.txt": "" });
    await writeRandomFile(path.join(src, "sub/big.bin"), 5 * 1024 * 1024 + 3);
    const port = await freePort();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    expect(has(pub, "ready")).toMatchObject({ event: "ready", endpoint: `tcp://127.0.0.1:${port}` });

    const sub = start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);
    await waitFor(() => sub.events.filter((e) => e.event === "delivered").length === 4, "4 deliveries");
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    // In the order they happen: connecting, connected, subscribed.
    expect(sub.events.slice(0, 3).map((e) => e.event)).toEqual(["connecting", "connected", "subscribed"]);
    expect(has(sub, "connecting")).toEqual({ event: "connecting", endpoint: `tcp://127.0.0.1:${port}`, inbox });
    expect(has(sub, "subscribed")).toEqual({ event: "subscribed", path: "/" });
    expect(has(sub, "delivered", (e) => e.path === "sub/big.bin")).toEqual({ event: "delivered", path: "sub/big.bin", size: 5 * 1024 * 1024 + 3, received: 5 * 1024 * 1024 + 3 });

    await writeFile(path.join(src, "live.txt"), "live\n");
    await waitFor(() => has(sub, "delivered", (e) => e.path === "live.txt"), "live.txt delivered");
    await unlink(path.join(src, "a.txt"));
    await waitFor(() => has(sub, "deleted", (e) => e.path === "a.txt"), "a.txt deleted");
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    expect(sub.stderr).toEqual([]);
  });

  it("cli - a subscriber whose publisher is down says so once per outage, not at every attempt", async () => {
    const port = await freePort();
    const sub = start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir(), "--json", "--heartbeat-ms", "100"]);
    // (With a heartbeat of 100 ms it gave up on the silent server and tried again about once a second:
    // five such lines in 6 s before. 4 s after the first, there would have been more.)
    await waitFor(() => sub.events.some((e) => e.event === "disconnected"), "the first disconnected line", 10_000);
    const firstAt = Date.now();
    await waitFor(() => Date.now() - firstAt > 4000, "4 s more", 10_000);
    expect(sub.events.filter((e) => e.event === "disconnected")).toHaveLength(1);
    // Once a publisher comes and goes, the next outage is said again.
    const src = await tempDir();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json"]);
    await waitFor(() => sub.events.some((e) => e.event === "connected"), "the subscriber connected", 15_000);
    pub.child.kill("SIGKILL");
    await waitFor(() => sub.events.filter((e) => e.event === "disconnected").length === 2, "the second outage said", 15_000);
  });

  it("cli - subscribe to /sub puts the server's /sub/x.txt at <inbox>/x.txt, and never /subway", async () => {
    const src = await tempDir();
    const inbox = path.join(await tempDir(), "in");
    await writeTree(src, { "sub/x.txt": "x", "sub/y/z.txt": "z", "subway/no.txt": "no" });
    const port = await freePort();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    const sub = start(["subscribe", "/sub", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);
    await waitFor(() => sub.events.filter((e) => e.event === "delivered").length === 2, "2 deliveries");
    expect(await treeHashes(inbox)).toEqual(await treeHashes(path.join(src, "sub")));
  });

  it("cli - what the start scan cannot publish is reported, after ready with --json and on stderr on a terminal", async () => {
    const src = await tempDir();
    await writeTree(src, { "ok.txt": "ok" });
    // A Latin-1 name: not valid UTF-8 (Node's fs takes a Buffer path for it).
    await writeFile(Buffer.concat([Buffer.from(src + "/caf"), Buffer.from([0xe9]), Buffer.from(".txt")]), "x");
    const expected = 'not published: "caf?.txt": its name is not valid UTF-8 (Node cannot open it); rename it';
    for (let run = 0; run < 3; run++) {
      const json = start(["publish", src, "--bind", `tcp://127.0.0.1:${await freePort()}`, "--json", "--stable-ms", "50"]);
      await waitFor(() => has(json, "warning"), "the warning (--json)");
      expect(has(json, "warning")).toEqual({ event: "warning", message: expected });
      expect(json.events.findIndex((e) => e.event === "ready")).toBeLessThan(json.events.findIndex((e) => e.event === "warning"));
      json.child.kill("SIGTERM");
      const human = start(["publish", src, "--bind", `tcp://127.0.0.1:${await freePort()}`, "--stable-ms", "50"]);
      await waitFor(() => human.stderr.includes(`warning: ${expected}`), "the warning (human)");
      human.child.kill("SIGTERM");
    }
  });

  it("cli - one subscriber per inbox: a second is refused with one line and exit 1; once the first is killed (-9), a new one starts", async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "a" });
    const port = await freePort();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    const inbox = path.join(await tempDir(), "in");
    const args = ["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"];
    const first = start(args);
    await waitFor(() => has(first, "delivered"), "the first subscriber's delivery");
    const second = start(args);
    expect((await second.exited).code).toBe(1);
    expect(second.stderr).toEqual([`fmq: ${await realpath(inbox)} is in use by another subscriber (one inbox, one subscriber)`]);
    first.child.kill("SIGKILL");
    await first.exited;
    const third = start(args);
    await waitFor(() => has(third, "subscribed"), "the third subscriber");
    await writeFile(path.join(src, "b.txt"), "b");
    await waitFor(() => has(third, "delivered", (e) => e.path === "b.txt"), "b.txt");
    expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
  });

  it("cli - the inbox lock cannot be taken first by someone who only knows the inbox's path (its name holds a key only the owner may read)", async () => {
    const inbox = path.join(await tempDir(), "in");
    await mkdir(inbox);
    // What anyone on the host could bind before: the lock's name made from the inbox's real path alone.
    const squatter = createServer();
    const oldName = `\0fmq-inbox-${createHash("sha256").update(await realpath(inbox)).digest("hex").slice(0, 40)}`;
    await new Promise<void>((resolve) => squatter.listen({ path: oldName }, resolve));
    try {
      // (Subscribed: its inbox open and locked. "connecting" is said before the inbox is opened.)
      const port = await freePort();
      const pub = start(["publish", await tempDir(), "--bind", `tcp://127.0.0.1:${port}`, "--json"]);
      await waitFor(() => has(pub, "ready"), "publisher ready");
      const sub = start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);
      await waitFor(() => has(sub, "subscribed"), "the subscriber under way");
      expect(sub.stderr).toEqual([]);
      expect((await stat(path.join(inbox, ".fmq", "lock-key"))).mode & 0o777).toBe(0o600);
    } finally {
      squatter.close();
    }
  });

  // A real terminal: `script` (util-linux) runs the subscriber on a pseudo-terminal, as a user would.
  const hasScript = spawnSync("script", ["--version"]).status === 0;
  /**
   * A subscriber on a terminal receiving a 64 MiB file, its publisher held (SIGSTOP) once 4 MiB are in,
   * so that what the terminal shows mid-file is seen whatever the speed. The smallest window: once the
   * publisher is held, about 1 MiB more arrives at most, and the file takes long enough for bars mid-file
   * even if the hold comes late (with the default 16 MiB, a loaded machine could see it done first).
   * `end` lets the publisher go and kills the terminal.
   */
  async function subscribingOnTerminal() {
    const src = await tempDir();
    const inbox = path.join(await tempDir(), "inbox");
    await writeRandomFile(path.join(src, "big.bin"), 64 * 1024 * 1024);
    const port = await freePort();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json"]);
    await waitFor(() => has(pub, "published"), "the file published");
    // (An 80-column terminal, as most are: the bar must fit it.)
    const command = ["stty", "cols", "80", "rows", "24;", FMQ_COMMAND, "subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--window", "1M"].join(" ");
    const terminal = spawn("script", ["-q", "-e", "-c", command, "/dev/null"], { stdio: ["pipe", "pipe", "pipe"], detached: true });
    const shown = { screen: "" };
    terminal.stdout.on("data", (data: Buffer) => (shown.screen += data.toString("utf8")));
    const end = () => {
      pub.child.kill("SIGCONT");
      try {
        process.kill(-terminal.pid!, "SIGKILL");
      } catch {
        // already gone
      }
    };
    try {
      const partial = path.join(inbox, ".fmq", "partial", partialName("big.bin"));
      await waitFor(async () => ((await stat(partial).catch(() => undefined))?.size ?? 0) >= 4 * 1024 * 1024, "part of the file", 30_000, 1);
      pub.child.kill("SIGSTOP");
    } catch (error) {
      end();
      throw error;
    }
    return { src, inbox, pub, terminal, shown, end };
  }

  /**
   * Waits until the terminal has its cursor shown again after the bar last hid it, and its line wrapping
   * on again after the bar last turned it off (without, every long line of the user's shell was cut at the
   * screen's edge until `reset`).
   */
  async function terminalPutBack(terminal: ChildProcess, shown: { screen: string }): Promise<void> {
    const after = (off: string, on: string) => shown.screen.slice(shown.screen.lastIndexOf(off)).includes(on);
    // (script may stop itself only after it was continued, when it saw its child stopped late: a loaded
    // run showed the bar and nothing after it. Continued whenever it is found stopped.)
    const terminalStopped = async () => (await readFile(`/proc/${terminal.pid}/stat`, "utf8").catch(() => undefined))?.split(") ")[1]?.[0] === "T";
    const putBack = async () => {
      if (await terminalStopped()) process.kill(terminal.pid!, "SIGCONT");
      return after("\x1b[?25l", "\x1b[?25h") && after("\x1b[?7l", "\x1b[?7h");
    };
    await waitFor(putBack, "the cursor shown and line wrapping on again", 5_000).catch((error: Error) => {
      throw new Error(`${error.message}; the terminal showed: ${JSON.stringify(shown.screen.slice(-300))}`);
    });
  }

  /** The subscriber itself (Node, which the launcher exec'd) behind the terminal, by its inbox. */
  function subscriberPid(inbox: string): number {
    const pids = spawnSync("pgrep", ["-f", "--", `--inbox ${inbox}`], { encoding: "utf8" }).stdout.split("\n").filter(Boolean).map(Number);
    const node = pids.find((pid) => path.resolve(readFileSync(`/proc/${pid}/cmdline`, "latin1").split("\0")[1] ?? "") === FMQ);
    expect(node).toBeDefined();
    return node!;
  }

  it.skipIf(!hasScript)("cli - on a terminal, subscribe draws a progress bar (file, bar, percentage, rate) while a file arrives", async () => {
    const { src, inbox, pub, shown, end } = await subscribingOnTerminal();
    try {
      // "big.bin |███░░░| 12% 8.4 MB/67.1 MB 50.1 MB/s ..." (cli-progress, redrawn every 250 ms). The first
      // past 0%: one may be drawn while the first chunk is still being written.
      const bars = () => shown.screen.matchAll(/big\.bin \|[█░]+\| +(\d+)% ([\d.]+ [kMG]?B)\/67\.1 MB ([\d.]+ [kMG]?B)\/s/g);
      const bar = await waitFor(() => [...bars()].find((b) => Number(b[1]) > 0), "a progress bar past 0% on the terminal", 10_000).catch((error: Error) => {
        throw new Error(`${error.message}; the terminal showed: ${JSON.stringify(shown.screen.slice(-600))}`);
      });
      expect(Number(bar[1])).toBeGreaterThan(0);
      expect(Number(bar[1])).toBeLessThan(100);
      // Each line of the bar (drawn from column 1, then the rest of the line cleared) fits the 80 columns,
      // totals included: line wrapping is off while it shows, and a fixed 24-column bar lost the totals at
      // 80 columns, a long name the rate and ETA too (a review).
      // (Waited for: the end of the line drawn may come in a later read of the terminal than the bar; a
      // full run of the suite saw none yet once.)
      const linesDrawn = () => [...shown.screen.matchAll(/\x1b\[1G([^\x1b]*big\.bin[^\x1b]*)\x1b\[0K/g)].map((m) => m[1]!);
      const drawn = await waitFor(() => (linesDrawn().length > 0 ? linesDrawn() : undefined), "a whole line of the bar drawn", 10_000);
      for (const line of drawn) expect(stringWidth(line), line).toBeLessThanOrEqual(79);
      expect(drawn.at(-1)).toMatch(/\| \d+ files?, [\d.]+ [kMG]?B$/);
      pub.child.kill("SIGCONT");
      await waitFor(() => shown.screen.includes("delivered big.bin (67108864 bytes)"), "the delivered line", 30_000);
      // Written with the terminal's line wrapping on (the bar keeps it off: a line longer than the screen
      // lost its end), and off again after it, for the bar.
      expect(shown.screen).toContain("\x1b[?7hdelivered big.bin (67108864 bytes)\r\n\x1b[?7l");
      expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    } finally {
      end();
    }
  });

  it.skipIf(!hasScript)("cli - on a terminal, a subscriber killed by a second signal mid-file gives the terminal its cursor back (the progress bar hides it)", async () => {
    const { inbox, terminal, shown, end } = await subscribingOnTerminal();
    try {
      await waitFor(() => /big\.bin \|[█░]+\|/.test(shown.screen), "a progress bar on the terminal", 10_000);
      expect(shown.screen).toContain("\x1b[?25l");
      // The subscriber itself (Node, which the launcher exec'd), frozen with two signals pending: it
      // takes the first (stop cleanly), then the second while stopping (die of it at once).
      const node = subscriberPid(inbox);
      await stopProcess(node);
      process.kill(node, "SIGINT");
      process.kill(node, "SIGTERM");
      process.kill(node, "SIGCONT");
      // (script stops itself when its child is stopped, and no longer passes on what the child writes
      // until it is continued.)
      process.kill(terminal.pid!, "SIGCONT");
      // Dead of the second (a zombie until the shell script started reaps it, or gone).
      const stat = () => readFile(`/proc/${node}/stat`, "utf8").catch(() => undefined);
      await waitFor(async () => [undefined, "Z"].includes((await stat())?.split(") ")[1]?.[0]), "the subscriber dead", 10_000);
      // Killed (not stopped cleanly: the bar's own stop would have shown the cursor), if its status is
      // still there to read (the last field of a zombie's stat); and its session never dropped (that also
      // ends the bar). Else the test would pass without what it checks.
      const exitCode = (await stat())?.trim().split(" ").at(-1);
      if (exitCode !== undefined) expect(Number(exitCode) & 0x7f).toBeGreaterThan(0);
      expect(shown.screen).not.toContain("disconnected");
      await terminalPutBack(terminal, shown);
    } finally {
      end();
    }
  });

  it.skipIf(!hasScript)("cli - on a terminal, SIGQUIT (Ctrl-\\) mid-file kills the subscriber at once, of SIGQUIT, with the terminal's cursor and line wrapping put back", async () => {
    const { inbox, terminal, shown, end } = await subscribingOnTerminal();
    try {
      await waitFor(() => /big\.bin \|[█░]+\|/.test(shown.screen), "a progress bar on the terminal", 10_000);
      const node = subscriberPid(inbox);
      process.kill(node, "SIGQUIT");
      // Dead (a zombie until the shell script started reaps it, or gone), of SIGQUIT itself when its status
      // is still there to read (a zombie's last field).
      const stat = () => readFile(`/proc/${node}/stat`, "utf8").catch(() => undefined);
      await waitFor(async () => [undefined, "Z"].includes((await stat())?.split(") ")[1]?.[0]), "the subscriber dead", 10_000);
      const exitCode = (await stat())?.trim().split(" ").at(-1);
      if (exitCode !== undefined) expect(Number(exitCode) & 0x7f).toBe(osConstants.signals.SIGQUIT);
      await terminalPutBack(terminal, shown);
    } finally {
      end();
    }
  });

  it("cli - human output is one line per delivered file, whatever the name holds", async () => {
    const src = await tempDir();
    const dst = path.join(await tempDir(), "dst");
    // Names may hold control characters: a newline must not make two lines (nor fake an event), an
    // escape sequence must not reach the terminal.
    await writeTree(src, { "one.txt": "1", "two/three.txt": "23", "x\ndelivered fake.txt": "4", "esc\u001b[31mred": "5" });
    const track = start(["track", src, dst, "--once", "--stable-ms", "50"]);
    const { code } = await track.exited;
    expect(code).toBe(0);
    const lines = track.events.map((e) => e.line as string);
    expect(lines).toContain("delivered one.txt (1 bytes)");
    expect(lines).toContain("delivered two/three.txt (2 bytes)");
    expect(lines).toContain("delivered x\\ndelivered fake.txt (1 bytes)");
    expect(lines).toContain("delivered esc\\x1b[31mred (1 bytes)");
    expect(lines.filter((l) => l.startsWith("delivered"))).toHaveLength(4);
    expect(await treeHashes(dst)).toEqual(await treeHashes(src));
  });

  it("cli - track --json --once mirrors and reports synced", async () => {
    const src = await tempDir();
    const dst = path.join(await tempDir(), "dst");
    await writeRandomFile(path.join(src, "r.bin"), 1_000_001);
    const track = start(["track", src, dst, "--once", "--json"]);
    expect((await track.exited).code).toBe(0);
    expect(has(track, "synced")).toMatchObject({ event: "synced", files: 1, bytes: 1_000_001 });
    expect(await treeHashes(dst)).toEqual(await treeHashes(src));
  });

  it("cli - --version is our package.json's, even when run from another package's npm script", async () => {
    const ours = (JSON.parse(await readFile(path.join(import.meta.dirname, "../../package.json"), "utf8")) as { version: string }).version;
    const run = startFmq(["--version"], { npm_package_version: "9.9.9" });
    expect((await run.exited).code).toBe(0);
    expect(run.events.map((e) => e.line)).toEqual([ours]);
  });

  it("cli - track --once stopped by a signal before it is done exits 128 + the signal (not 0: a script must not take the copy as made); track without --once stops with 0", async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "a" });
    // (SIGHUP too, the terminal gone: it died of it, no KTHXBAI, its inbox's state unsaved.)
    for (const [signal, status] of [["SIGINT", 130], ["SIGTERM", 143], ["SIGHUP", 129]] as const) {
      // A minute's stability period: nothing is done when the signal comes.
      const track = start(["track", src, path.join(await tempDir(), "dst"), "--once", "--json", "--stable-ms", "60000"]);
      await waitFor(() => has(track, "ready"), "ready", 10_000);
      track.child.kill(signal);
      expect((await track.exited).code).toBe(status);
    }
    const service = start(["track", src, path.join(await tempDir(), "dst"), "--json", "--stable-ms", "60000"]);
    await waitFor(() => has(service, "ready"), "ready", 10_000);
    service.child.kill("SIGHUP");
    expect((await service.exited).code).toBe(0);
  });

  it("cli - a second signal while stopping kills at once: the process dies of it (its parent sees the signal, not a status of ours)", async () => {
    const src = await tempDir();
    const dst = path.join(await tempDir(), "dst");
    await writeRandomFile(path.join(src, "big.bin"), 128 * 1024 * 1024);
    // The clean stop held in its last step, so that the second signal comes while it is under way (a
    // stop with nothing under way is over within the turn of the loop that took the first signal, and
    // the second finds it gone; a loaded machine could see "mid-file" after the file was done).
    const release = await holdLastStep(dst);
    const track = start(["track", src, dst, "--once", "--json"]);
    const partial = path.join(dst, ".fmq", "partial", partialName("big.bin"));
    await waitFor(async () => ((await stat(partial).catch(() => undefined))?.size ?? 0) >= 16 * 1024 * 1024, "part of the file", 30_000, 1);
    // It used to exit with status 1.
    await expectKilledByTwoSignals(track, () => release(track));
  });

  it("cli - track --once finishing (synced said, its inbox's state being saved): a first signal changes nothing, a second kills it at once", async () => {
    const { src, dst } = await manySmallFiles();
    // Held in its last step (the job done and said), where the signals come.
    const finishing = async (into: string): Promise<{ track: Running; release: () => Promise<void> }> => {
      const release = await holdLastStep(into);
      const track = start(["track", src, into, "--once", "--json", "--stable-ms", "0"]);
      await waitFor(() => has(track, "synced") !== undefined, "synced", 30_000, 1);
      return { track, release: () => release(track) };
    };
    // One: the copy is made, and the status is the job's.
    const one = await finishing(dst);
    one.track.child.kill("SIGINT");
    await one.release();
    expect(await one.track.exited).toEqual({ code: 0, signal: null });
    expect(await treeHashes(dst)).toEqual(await treeHashes(src));
    // Two: killed. (Both were ignored: a hung last step could not be stopped but by SIGKILL.)
    const two = await finishing(path.join(await tempDir(), "dst"));
    await expectKilledByTwoSignals(two.track, two.release);
  }, 60_000);

  it("cli - a subscriber told to stop while it starts (its password file a FIFO not yet written) stops cleanly with 0 once it is up; one not up within a second dies of the signal", async () => {
    // (It used to die of the signal, mid-start, with no status of its own.)
    const dir = await tempDir();
    const fifo = path.join(dir, "password");
    execFileSync("mkfifo", ["-m", "600", fifo]);
    const args = ["subscribe", "/", "--connect", "tcp://127.0.0.1:1", "--inbox", path.join(dir, "in"), "--user", "u", "--password-file", fifo, "--json"];
    /** Once the subscriber has the FIFO open to read (it is started, and waits in its start), a writer on it. */
    const writerOnceRead = async (): Promise<number> => {
      let fd = -1;
      await waitFor(() => {
        try {
          fd = openSync(fifo, constants.O_WRONLY | constants.O_NONBLOCK);
          return true;
        } catch {
          return false; // (ENXIO: nobody reads it yet)
        }
      }, "the subscriber reading its password file", 10_000);
      return fd;
    };
    const sub = start(args);
    let fd = await writerOnceRead();
    sub.child.kill("SIGTERM");
    writeSync(fd, "secret\n");
    closeSync(fd);
    expect(await sub.exited).toEqual({ code: 0, signal: null });

    // Never up (nobody writes the password, and a writer holds the FIFO open): it dies of the signal
    // within about a second, as it would have at once before.
    const stuck = start(args);
    fd = await writerOnceRead();
    try {
      const signalled = Date.now();
      stuck.child.kill("SIGTERM");
      expect(await stuck.exited).toEqual({ code: null, signal: "SIGTERM" });
      expect(Date.now() - signalled).toBeLessThan(8000);
    } finally {
      closeSync(fd);
    }
  });

  it("cli - track --once again into the same <dst>: what it holds already is not sent again, and it exits at once", async () => {
    const src = await tempDir();
    const dst = path.join(await tempDir(), "dst");
    await writeTree(src, { "a.txt": "a", "d/b.txt": "b" });
    const first = start(["track", src, dst, "--once", "--json", "--stable-ms", "50"]);
    expect((await first.exited).code).toBe(0);
    await writeTree(src, { "c.txt": "c" });
    const second = start(["track", src, dst, "--once", "--json", "--stable-ms", "50"]);
    expect((await second.exited).code).toBe(0);
    expect(has(second, "synced")).toMatchObject({ files: 1, unchanged: 2 });
    expect(second.events.filter((e) => e.event === "delivered").map((e) => e.path)).toEqual(["c.txt"]);
    expect(await treeHashes(dst)).toEqual(await treeHashes(src));
    // A file changed in <dst> since (another size) is not held as delivered: it is sent again, and waited for.
    await writeFile(path.join(dst, "a.txt"), "changed in dst");
    const third = start(["track", src, dst, "--once", "--json", "--stable-ms", "50"]);
    expect((await third.exited).code).toBe(0);
    expect(has(third, "synced")).toMatchObject({ files: 1, unchanged: 2 });
    expect(await treeHashes(dst)).toEqual(await treeHashes(src));
  });

  it("cli - track --once again after files were removed from <src> exits only once their deletes are applied; with 3,000 files held, none is sent again", async () => {
    const { src, dst } = await manySmallFiles();
    const first = start(["track", src, dst, "--once", "--json", "--stable-ms", "0"]);
    expect((await first.exited).code).toBe(0);
    expect(await treeHashes(dst)).toEqual(await treeHashes(src));
    for (let i = 0; i < 3000; i += 3) await unlink(path.join(src, `d${i % 30}/f${i}.txt`));
    const second = start(["track", src, dst, "--once", "--json", "--stable-ms", "0"]);
    expect((await second.exited).code).toBe(0);
    // Every delete applied before it said synced; nothing it held was sent again (64 were, every run).
    expect(await treeHashes(dst)).toEqual(await treeHashes(src));
    expect(second.events.filter((e) => e.event === "delivered")).toEqual([]);
    expect(has(second, "synced")).toMatchObject({ files: 0, unchanged: 2000 });
  }, 60_000);

  it("cli - track --once while a file keeps changing: says every 10 s which it waits for, and exits 0 once it is still", async () => {
    const { src, dst, writer, track } = await trackOnceWhileLogChanges({ "ok.txt": "ok" });
    try {
      const waiting = await waitFor(() => track.events.find((e) => e.event === "waiting"), "a waiting event", 20_000);
      expect(waiting).toMatchObject({ unstable: 1, names: ["log.txt"] });
      await writer.stop();
      expect((await track.exited).code).toBe(0);
      expect(await readFile(path.join(dst, "log.txt"), "utf8")).toBe(await readFile(path.join(src, "log.txt"), "utf8"));
    } finally {
      await writer.stop();
    }
  }, 40_000);

  it("cli - track --once where a file is deleted from <src> and made again while it runs: exits 0 with the new file in <dst> (it waited for ever: the delete's name stayed held)", async () => {
    // (A file that keeps changing holds the run open while again.txt goes and comes back.)
    const { src, dst, writer, track } = await trackOnceWhileLogChanges({ "again.txt": "first" });
    try {
      const deliveries = () => track.events.filter((e) => e.event === "delivered" && e.path === "again.txt").length;
      await waitFor(() => deliveries() >= 1 || undefined, "again.txt delivered", 20_000);
      await unlink(path.join(src, "again.txt"));
      await waitFor(() => track.events.find((e) => e.event === "deleted" && e.path === "again.txt"), "again.txt deleted in <dst>", 20_000);
      await writeFile(path.join(src, "again.txt"), "second");
      await waitFor(() => deliveries() >= 2 || undefined, "again.txt delivered again", 20_000);
      await writer.stop();
      let exit: { code: number | null } | undefined;
      void track.exited.then((e) => (exit = e));
      expect((await waitFor(() => exit, "track --once to exit once log.txt is still", 15_000)).code).toBe(0);
      expect(await readFile(path.join(dst, "again.txt"), "utf8")).toBe("second");
      expect(await readFile(path.join(dst, "log.txt"), "utf8")).toBe(await readFile(path.join(src, "log.txt"), "utf8"));
    } finally {
      await writer.stop();
    }
  }, 90_000);

  it("cli - track --once where a file already delivered changes in <src> while the run is open: waits for the new version (it ended with the first one in <dst>)", async () => {
    // (A review: a file published while still being written (a pause longer than --stable-ms), then
    // finished, counted as arrived by its name once its first, short version had come.)
    const { src, dst, writer, track } = await trackOnceWhileLogChanges({ "grows.bin": "short" });
    try {
      await waitFor(() => track.events.find((e) => e.event === "delivered" && e.path === "grows.bin"), "the short version delivered", 20_000);
      // log.txt still from now on; then the rest of grows.bin, big enough to be still on its way when it is
      // found still (log.txt long before).
      await writer.stop();
      await writeRandomFile(path.join(src, "grows.bin"), 200 * 1024 * 1024);
      expect((await track.exited).code).toBe(0);
      expect(await sha256File(path.join(dst, "grows.bin"))).toBe(await sha256File(path.join(src, "grows.bin")));
    } finally {
      await writer.stop();
    }
  }, 90_000);

  it("cli - track --once with a file the subscriber refuses: exits 1 once all else has arrived, saying how many could not be", async () => {
    const src = await tempDir();
    const dst = path.join(await tempDir(), "dst");
    // <dst> has a directory (not empty) where <src> has a file: the subscriber refuses to replace it.
    await writeTree(src, { "ok.txt": "ok", x: "a file" });
    await writeTree(dst, { "x/keep.txt": "a person's file" });
    const track = start(["track", src, dst, "--once", "--json", "--stable-ms", "50"]);
    expect((await track.exited).code).toBe(1);
    expect(has(track, "synced")).toMatchObject({ event: "synced", files: 1, failed: 1 });
    expect(has(track, "error")).toMatchObject({ message: "x: a directory has that name" });
    expect(await readFile(path.join(dst, "ok.txt"), "utf8")).toBe("ok");
    expect(await readFile(path.join(dst, "x", "keep.txt"), "utf8")).toBe("a person's file");
  });

  // Permissions mean nothing to root: as root, the command runs as nobody (if nobody may run it here).
  const asUser = process.getuid?.() === 0 ? { uid: 65534, gid: 65534 } : {};
  const userCanRun = spawnSync(FMQ_COMMAND, ["--version"], { ...asUser }).status === 0;
  /** `fmq track <src> <dst> --once --json` as that user: its exit status and its events. */
  async function trackOnceAsUser(src: string, dst: string): Promise<{ code: number | null; events: Record<string, unknown>[] }> {
    const child = spawn(FMQ_COMMAND, ["track", src, dst, "--once", "--json", "--stable-ms", "50"], { ...asUser, stdio: ["ignore", "pipe", "pipe"] });
    // (Not through startFmq, which cannot change user: killed here if it never exits.)
    const deadline = setTimeout(() => child.kill("SIGKILL"), 20_000);
    let stdout = "";
    child.stdout.on("data", (data) => (stdout += String(data)));
    const [code] = (await once(child, "close")) as [number | null];
    clearTimeout(deadline);
    return { code, events: stdout.split("\n").filter(Boolean).map((line) => JSON.parse(line) as Record<string, unknown>) };
  }
  it.skipIf(!userCanRun)("cli - an inbox the subscriber may not write: one line naming the inbox (not a /proc path), exit 1", async () => {
    const top = await tempDir();
    const inbox = path.join(top, "inbox");
    await mkdir(inbox, { mode: 0o755 });
    await chmod(top, 0o755);
    const child = spawn(FMQ_COMMAND, ["subscribe", "/", "--connect", "tcp://127.0.0.1:1", "--inbox", inbox], { ...asUser, stdio: ["ignore", "pipe", "pipe"] });
    const deadline = setTimeout(() => child.kill("SIGKILL"), 20_000);
    let stderr = "";
    child.stderr.on("data", (data) => (stderr += String(data)));
    const [code] = (await once(child, "close")) as [number | null];
    clearTimeout(deadline);
    expect(code).toBe(1);
    expect(stderr).toBe(`fmq: cannot use ${inbox} as an inbox: cannot make ${path.join(await realpath(inbox), ".fmq")}: permission denied\n`);
  });

  it.skipIf(!userCanRun)("cli - track --once with a file and a directory it may not read: both reported, exit 1 with failed, the rest delivered", async () => {
    const top = await tempDir();
    await chmod(top, 0o777);
    const src = path.join(top, "src");
    await writeTree(src, { "ok.txt": "ok", "locked.txt": "locked", "closed/inside.txt": "inside" });
    await chmod(src, 0o755);
    await chmod(path.join(src, "locked.txt"), 0o000);
    await chmod(path.join(src, "closed"), 0o000);
    const dst = path.join(top, "dst");
    const { code, events } = await trackOnceAsUser(src, dst);
    const warnings = events.filter((e) => e.event === "warning").map((e) => e.message);
    expect(warnings).toContain('not published: "closed/" and what is in it: cannot read it (EACCES)');
    expect(warnings).toContain("cannot send /locked.txt: EACCES");
    expect(events.find((e) => e.event === "synced")).toMatchObject({ files: 1, failed: 1 });
    expect(code).toBe(1);
    expect(await readFile(path.join(dst, "ok.txt"), "utf8")).toBe("ok");
  });

  it.skipIf(!userCanRun)("cli - track --once where a delete cannot be applied in <dst> (its directory not writable): said, exit 1 with undeleted, not waiting for ever", async () => {
    // (A review: the delete stayed "not applied yet" for good, and the run never ended.)
    const top = await tempDir();
    await chmod(top, 0o777);
    const src = path.join(top, "src");
    await writeTree(src, { "keep.txt": "keep", "sub/gone.txt": "gone" });
    await chmod(src, 0o755);
    const dst = path.join(top, "dst");
    expect((await trackOnceAsUser(src, dst)).code).toBe(0);
    await unlink(path.join(src, "sub", "gone.txt"));
    await chmod(path.join(dst, "sub"), 0o555);
    const { code, events } = await trackOnceAsUser(src, dst);
    expect(events.some((e) => e.event === "error" && String(e.message).includes("gone.txt"))).toBe(true);
    expect(events.find((e) => e.event === "synced")).toMatchObject({ undeleted: 1 });
    expect(code).toBe(1);
    expect(await readFile(path.join(dst, "keep.txt"), "utf8")).toBe("keep");
  });

  // (A review: the tree was found "only empty directories", then could not be removed, EACCES, and the file
  // was asked for again at every retry.)  // (A review: the tree was found "only empty directories", then could not be removed, EACCES, and the file
  // was asked for again at every retry.)
  it.skipIf(!userCanRun)("cli - a tree of empty directories where a file goes, with a level the subscriber may not write: in the way (said so), not asked for again and again", async () => {
    const top = await tempDir();
    await chmod(top, 0o777);
    const src = path.join(top, "src");
    await writeTree(src, { x: "file x", "ok.txt": "ok" });
    await chmod(src, 0o755);
    const dst = path.join(top, "dst");
    await mkdir(path.join(dst, "x", "p", "q"), { recursive: true });
    for (const dir of [dst, path.join(dst, "x"), path.join(dst, "x", "p"), path.join(dst, "x", "p", "q")]) await chown(dir, asUser.uid ?? process.getuid!(), asUser.gid ?? process.getgid!());
    await chmod(path.join(dst, "x", "p"), 0o555);
    const { code, events } = await trackOnceAsUser(src, dst);
    expect(events.filter((e) => e.event === "error").map((e) => e.message)).toEqual(["x: a directory has that name"]);
    expect(events.find((e) => e.event === "synced")).toMatchObject({ files: 1, failed: 1 });
    expect(code).toBe(1);
    expect((await stat(path.join(dst, "x", "p", "q"))).isDirectory()).toBe(true);
  });

  for (const which of ["a directory in it", "the source itself"] as const) it.skipIf(!userCanRun)(`cli - track --once where ${which} may not be read: exit 1, the synced line says so (it said "synced", status 0)`, async () => {
    const top = await tempDir();
    await chmod(top, 0o777);
    const src = path.join(top, "src");
    await writeTree(src, { "ok.txt": "ok", "closed/inside.txt": "inside" });
    await chmod(src, 0o755);
    await chmod(which === "the source itself" ? src : path.join(src, "closed"), 0o000);
    const dst = path.join(top, "dst");
    const { code, events } = await trackOnceAsUser(src, dst);
    await chmod(src, 0o755);
    expect(events.find((e) => e.event === "synced")).toMatchObject({ files: which === "the source itself" ? 0 : 1, unreadable: 1 });
    expect(code).toBe(1);
  });

  it.skipIf(!userCanRun)("cli - a published directory the publisher may no longer read (chmod 000) is not taken for deleted; once readable again, what changed in it is published, and only that", async () => {
    const top = await tempDir();
    await chmod(top, 0o777);
    const src = path.join(top, "src");
    await writeTree(src, { "a.txt": "a", "sub/b.txt": "b", "sub/same.txt": "unchanged all along", "locked/z.txt": "z" });
    for (const dir of [src, path.join(src, "sub")]) await chmod(dir, 0o777);
    // Unreadable from the start: reported, and published once readable.
    await chmod(path.join(src, "locked"), 0o000);
    const port = await freePort();
    const pub = spawn(FMQ_COMMAND, ["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"], { ...asUser, stdio: ["ignore", "pipe", "pipe"] });
    const pubEvents: Record<string, unknown>[] = [];
    readline.createInterface({ input: pub.stdout }).on("line", (line) => pubEvents.push(JSON.parse(line) as Record<string, unknown>));
    try {
      await waitFor(() => pubEvents.some((e) => e.event === "ready"), "publisher ready");
      const inbox = path.join(await tempDir(), "in");
      const sub = start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);
      await waitFor(() => sub.events.filter((e) => e.event === "delivered").length === 3, "3 deliveries");
      await chmod(path.join(src, "sub"), 0o000);
      await waitFor(() => pubEvents.some((e) => e.event === "warning" && /^cannot look into \/sub any more \(EACCES\)/.test(String(e.message))), "the warning");
      // A later file arrives; no delete came before it.
      await writeFile(path.join(src, "c.txt"), "c");
      await waitFor(() => has(sub, "delivered", (e) => e.path === "c.txt"), "c.txt");
      await writeFile(path.join(src, "sub", "d.txt"), "d");
      // (Removed while unreadable to the publisher: its delete follows once readable again.)
      await unlink(path.join(src, "sub", "b.txt"));
      await chmod(path.join(src, "sub"), 0o777);
      await waitFor(() => has(sub, "delivered", (e) => e.path === "sub/d.txt"), "sub/d.txt, once readable again", 10_000);
      expect(pubEvents.some((e) => e.event === "warning" && e.message === 'not published: "locked/" and what is in it: cannot read it (EACCES)')).toBe(true);
      await chmod(path.join(src, "locked"), 0o777);
      await waitFor(() => has(sub, "delivered", (e) => e.path === "locked/z.txt"), "locked/z.txt, once readable", 10_000);
      await waitFor(() => has(sub, "deleted", (e) => e.path === "sub/b.txt"), "sub/b.txt deleted, once readable again", 10_000);
      expect(sub.events.filter((e) => e.event === "deleted").map((e) => e.path)).toEqual(["sub/b.txt"]);
      // A file written after the rescan arrives after anything the rescan sent: by then, sub/same.txt
      // would have been sent again (it was, every time, before the mount knew a version it had published).
      await writeFile(path.join(src, "last.txt"), "last");
      await waitFor(() => has(sub, "delivered", (e) => e.path === "last.txt"), "last.txt");
      expect(sub.events.filter((e) => e.event === "delivered" && e.path === "sub/same.txt")).toHaveLength(1);
      expect(await treeHashes(inbox)).toEqual(await treeHashes(src));

      // A tree moved in with a directory in it that may not be read: reported as at start (the watcher
      // says nothing of it), and published once readable.
      const outside = path.join(top, "outside");
      await writeTree(outside, { "moved/m.txt": "m", "moved/closed/y.txt": "y" });
      for (const dir of [outside, path.join(outside, "moved")]) await chmod(dir, 0o777);
      await chmod(path.join(outside, "moved", "closed"), 0o000);
      await rename(path.join(outside, "moved"), path.join(src, "moved"));
      await waitFor(() => pubEvents.some((e) => e.event === "warning" && e.message === 'not published: "moved/closed/" and what is in it: cannot read it (EACCES)'), "moved/closed/ reported", 10_000);
      await waitFor(() => has(sub, "delivered", (e) => e.path === "moved/m.txt"), "moved/m.txt");
      await chmod(path.join(src, "moved", "closed"), 0o777);
      await waitFor(() => has(sub, "delivered", (e) => e.path === "moved/closed/y.txt"), "moved/closed/y.txt, once readable", 10_000);
      expect(await treeHashes(inbox)).toEqual(await treeHashes(src));
    } finally {
      pub.kill("SIGKILL");
    }
  });

  it("cli - a name every subscriber would refuse (a backslash) is not published: the publisher says so once, and track --once ends with 1 (unpublished)", async () => {
    // (Status 0 until a review: the file was not in <dst>, and `track --once && rm -rf src` lost it.)
    const src = await tempDir();
    const dst = path.join(await tempDir(), "dst");
    await writeTree(src, { "ok.txt": "ok", "back\\slash": "refused" });
    const track = start(["track", src, dst, "--once", "--json", "--stable-ms", "50"]);
    expect((await track.exited).code).toBe(1);
    expect(has(track, "synced")).toMatchObject({ event: "synced", files: 1, unpublished: 1 });
    expect(await readFile(path.join(dst, "ok.txt"), "utf8")).toBe("ok");
    expect(track.events.filter((e) => e.event === "warning").map((e) => e.message)).toEqual(['not published: "back\\slash": backslash in name (subscribers refuse such names)']);
    expect(track.events.filter((e) => e.event === "error")).toEqual([]);
  });

  it("cli - a file more than 128 levels deep is not published (subscribers refuse such names): the publisher says so once, the rest arrives (track --once: 1, unpublished)", async () => {
    const src = await tempDir();
    const dst = path.join(await tempDir(), "dst");
    const deep = Array(129).fill("d").join("/");
    await writeTree(src, { "ok.txt": "ok", [`${deep}/f.txt`]: "too deep", [`${Array(127).fill("d").join("/")}/g.txt`]: "deep enough" });
    const track = start(["track", src, dst, "--once", "--json", "--stable-ms", "50"]);
    expect((await track.exited).code).toBe(1);
    expect(has(track, "synced")).toMatchObject({ event: "synced", files: 2, unpublished: 1 });
    const warnings = track.events.filter((e) => e.event === "warning").map((e) => String(e.message));
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^not published: "d\/d\/.*f\.txt": more than 128 levels deep/);
    expect(await readFile(path.join(dst, ...Array(127).fill("d"), "g.txt"), "utf8")).toBe("deep enough");
  });

  it("cli - publish --json that cannot bind still says what its start scan could not publish, then the error", async () => {
    const src = await tempDir();
    await writeTree(src, { "ok.txt": "ok", "back\\slash": "refused" });
    const taken = createServer();
    await new Promise<void>((resolve) => taken.listen(0, "127.0.0.1", resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json"]);
      expect((await pub.exited).code).toBe(1);
      expect(pub.events.map((e) => e.event)).toEqual(["warning", "error"]);
      expect(pub.events[0]!.message).toBe('not published: "back\\slash": backslash in name (subscribers refuse such names)');
      expect(pub.stderr).toEqual([expect.stringMatching(/^fmq: .*Address already in use/i)]);
    } finally {
      taken.close();
    }
  });

  it("cli - track into a hidden directory of its source is fine (hidden files are not published)", async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "a" });
    const track = start(["track", src, path.join(src, ".mirror"), "--once", "--json", "--stable-ms", "50"]);
    expect((await track.exited).code).toBe(0);
    expect(await readFile(path.join(src, ".mirror", "a.txt"), "utf8")).toBe("a");
  });

  it("cli - a subscription the server refuses (no such path) is an error line and exit 1, not a subscriber waiting for nothing", async () => {
    const src = await tempDir();
    const port = await freePort();
    const pub = start(["publish", src, "--alias", "/pub", "--bind", `tcp://127.0.0.1:${port}`, "--json"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    const sub = start(["subscribe", "/other", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir(), "--json"]);
    expect((await sub.exited).code).toBe(1);
    expect(has(sub, "error")).toMatchObject({ message: expect.stringMatching(/^subscription to \/other refused: /) });
    // (With --json too, the reason for the exit status is one line on stderr.)
    expect(sub.stderr).toEqual([expect.stringMatching(/^fmq: subscription to \/other refused: no such path: \/other$/)]);
    // Without --json: that one line, as every failure says it (it said "error: ...", as if it went on).
    const human = start(["subscribe", "/other", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir()]);
    expect((await human.exited).code).toBe(1);
    expect(human.stderr).toEqual(["fmq: subscription to /other refused: no such path: /other"]);
  });

  it("cli - SIGTERM and SIGINT stop publish and subscribe within a second", async () => {
    const src = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 64 * 1024 * 1024);
    const port = await freePort();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    const sub = start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir(), "--json", "--window", "1M"]);
    await waitFor(() => has(sub, "subscribed"), "subscribed");
    for (const [r, signal] of [[sub, "SIGINT"], [pub, "SIGTERM"]] as const) {
      const t0 = Date.now();
      r.child.kill(signal);
      const { code } = await r.exited;
      // (It gives its close 900 ms; the rest is slack for a loaded machine. A stop that hangs, or that
      // waits for the server, still fails.)
      expect(Date.now() - t0).toBeLessThan(5000);
      expect(code).toBe(0);
    }
  });

  it("cli - a subscriber with nothing to talk to also stops at once on SIGTERM", async () => {
    const port = await freePort();
    const sub = start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir(), "--json"]);
    await waitFor(() => has(sub, "connecting"), "connecting");
    const t0 = Date.now();
    sub.child.kill("SIGTERM");
    const { code } = await sub.exited;
    // (As above: 900 ms at most for its close, and slack for a loaded machine.)
    expect(Date.now() - t0).toBeLessThan(5000);
    expect(code).toBe(0);
  });

  it("cli - publish and subscribe stop cleanly, with no stack trace, once nobody reads their output (| head)", async () => {
    const src = await tempDir();
    for (let i = 0; i < 20; i++) await writeRandomFile(path.join(src, `f${i}.bin`), 100_000);
    const port = await freePort();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    const inbox = path.join(await tempDir(), "in");
    const sub = start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", inbox, "--json"]);
    // Like `| head -1`: the reader goes away after the first line; connected, subscribed and deliveries follow.
    await waitFor(() => has(sub, "connecting"), "first line");
    sub.child.stdout!.destroy();
    const subExit = await sub.exited;
    expect(subExit).toEqual({ code: 0, signal: null });
    expect(sub.stderr).toEqual([]);
    // Stopped by its close, not killed: the manifest snapshot (written on close) is there.
    await expect(readFile(path.join(inbox, ".fmq", "manifest.json"), "utf8")).resolves.toContain('"version":1');
    // The publisher's reader goes away; its next line (a new subscriber connecting) finds the pipe closed.
    pub.child.stdout!.destroy();
    start(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir(), "--json"]);
    expect(await pub.exited).toEqual({ code: 0, signal: null });
    expect(pub.stderr).toEqual([]);
  });

  it("cli - track --once whose reader goes before it is done stops with 141, as a command killed by SIGPIPE: not 0, which says the copy is made", async () => {
    const src = await tempDir();
    await writeRandomFile(path.join(src, "big.bin"), 16 * 1024 * 1024);
    const dst = path.join(await tempDir(), "dst");
    const track = start(["track", src, dst, "--once", "--json"]);
    // Gone before its first line ("ready", said before the transfer begins), as `| true` would be: the
    // job cannot be done when it finds out.
    track.child.stdout!.destroy();
    expect(await track.exited).toEqual({ code: 141, signal: null });
    expect(track.stderr).toEqual([]);
    expect((await stat(path.join(dst, "big.bin")).catch(() => undefined))?.size).not.toBe(16 * 1024 * 1024);
  });

  it("cli - output that cannot be written (a full disk) is one line on stderr and a non-zero exit, not a crash", async () => {
    const src = await tempDir();
    await writeTree(src, { "a.txt": "a" });
    const port = await freePort();
    const pub = start(["publish", src, "--bind", `tcp://127.0.0.1:${port}`, "--json", "--stable-ms", "50"]);
    await waitFor(() => has(pub, "ready"), "publisher ready");
    // Every write to /dev/full fails with ENOSPC.
    const full = await open("/dev/full", "w");
    const child = spawn(FMQ_COMMAND, ["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir(), "--json"], { stdio: ["ignore", full.fd, "pipe"] });
    await full.close();
    let stderr = "";
    child.stderr!.on("data", (data: Buffer) => (stderr += String(data)));
    const [code] = (await once(child, "exit")) as [number | null];
    expect(code).toBe(1);
    expect(stderr).toBe("fmq: cannot write output: ENOSPC\n");
  });

  it("cli - --help and --version into a full disk are one line on stderr and exit status 1 (they exited 0)", async () => {
    for (const args of [["--help"], ["--version"], ["subscribe", "--help"]]) {
      const full = await open("/dev/full", "w");
      const child = spawn(FMQ_COMMAND, args, { stdio: ["ignore", full.fd, "pipe"] });
      await full.close();
      let stderr = "";
      child.stderr!.on("data", (data: Buffer) => (stderr += String(data)));
      const [code] = (await once(child, "exit")) as [number | null];
      expect(code, args.join(" ")).toBe(1);
      expect(stderr).toBe("fmq: cannot write output: ENOSPC\n");
    }
    // Still written where it can be.
    const help = spawnSync(FMQ_COMMAND, ["--version"], { encoding: "utf8" });
    expect(help.status).toBe(0);
    expect(help.stdout).toMatch(/^\d+\.\d+\.\d+\n$/);
  });

  const failures: [string, () => Promise<string[]>, RegExp][] = [
    ["a missing directory", async () => ["publish", path.join(await tempDir(), "nope"), "--bind", `tcp://127.0.0.1:${await freePort()}`], /^fmq: no such directory: /],
    ["a file instead of a directory", async () => {
      const dir = await tempDir();
      await writeFile(path.join(dir, "f"), "x");
      return ["publish", path.join(dir, "f"), "--bind", `tcp://127.0.0.1:${await freePort()}`];
    }, /^fmq: not a directory: /],
    ["an unknown flag", async () => ["publish", ".", "--bogus"], /unknown option '--bogus'/],
    ["a missing argument", async () => ["subscribe"], /missing required argument 'path'/],
    ["an unknown command", async () => ["publsh", "."], /unknown command 'publsh'/],
    ["a bad size", async () => ["publish", ".", "--chunk-size", "lots"], /not a size: "lots"/],
    ["a window below one credit slice", async () => ["subscribe", "/", "--window", "1"], /'--window <bytes>' argument '1' is invalid\. at least 1 MiB/],
    ["a heartbeat of 0 ms", async () => ["subscribe", "/", "--heartbeat-ms", "0"], /'--heartbeat-ms <ms>' argument '0' is invalid\. from 100 to /],
    ["an empty number of milliseconds (Number() took it for 0)", async () => ["publish", ".", "--stable-ms", ""], /'--stable-ms <ms>' argument '' is invalid\. not a number of milliseconds/],
    ["a hexadecimal number of milliseconds", async () => ["subscribe", "/", "--heartbeat-ms", "0x3e8"], /argument '0x3e8' is invalid\. not a number of milliseconds/],
    ["a missing directory whose name has a newline and an escape (shown escaped, on one line)", async () => ["publish", path.join(await tempDir(), "no\nsuch\u001b[31m"), "--bind", `tcp://127.0.0.1:${await freePort()}`], /^fmq: no such directory: .*no\\nsuch\\x1b\[31m$/],
    ["a heartbeat beyond what a timer can wait", async () => ["subscribe", "/", "--heartbeat-ms", "99999999999"], /'--heartbeat-ms <ms>' argument '99999999999' is invalid/],
    ["a TCP port beyond 65535 to bind", async () => ["publish", await tempDir(), "--bind", "tcp://127.0.0.1:99999"], /^fmq: cannot bind tcp:\/\/127\.0\.0\.1:99999: port 99999 is not a TCP port/],
    ["a TCP port beyond 65535 to connect to", async () => ["subscribe", "/", "--connect", "tcp://127.0.0.1:99999", "--inbox", await tempDir()], /^fmq: cannot connect to tcp:\/\/127\.0\.0\.1:99999: port 99999 is not a TCP port/],
    ["a bad endpoint", async () => ["publish", await tempDir(), "--bind", "nonsense"], /^fmq: cannot bind nonsense: /],
    ["a relative subscription path", async () => ["subscribe", "sub", "--inbox", await tempDir()], /^fmq: invalid path "sub"/],
    ["port 0 to connect to (libzmq retried it for ever)", async () => ["subscribe", "/", "--connect", "tcp://127.0.0.1:0", "--inbox", await tempDir()], /^fmq: cannot connect to tcp:\/\/127\.0\.0\.1:0: port 0 is nowhere to connect to$/],
    ["keygen with an empty --out (it wrote hidden .pub and .key)", async () => ["keygen", "--out", ""], /^fmq: --out needs a file name/],
    ["a bad endpoint to connect to", async () => ["subscribe", "/", "--connect", "nonsense", "--inbox", await tempDir()], /^fmq: cannot connect to nonsense: /],
    ["an unknown transport to connect to", async () => ["subscribe", "/", "--connect", "tcpx://127.0.0.1:1", "--inbox", await tempDir()], /^fmq: cannot connect to tcpx:\/\/127.0.0.1:1: /],
    ["track into a directory inside its source", async () => {
      const src = await tempDir();
      await writeFile(path.join(src, "a.txt"), "a");
      return ["track", src, path.join(src, "mirror")];
    }, /^fmq: <dst> .*mirror is inside <src> .*: track would copy its own copies forever$/],
    // (A review: src/sub/readme landed on dst/sub/readme, which is src/readme, over the source's own file.)
    ["track from a directory inside its destination", async () => {
      const dst = await tempDir();
      await mkdir(path.join(dst, "sub", "sub"), { recursive: true });
      await writeFile(path.join(dst, "sub", "readme"), "ORIGINAL");
      await writeFile(path.join(dst, "sub", "sub", "readme"), "OTHER");
      return ["track", path.join(dst, "sub"), dst, "--once"];
    }, /^fmq: <src> .*sub is inside <dst> .*: track would write into what it publishes$/],
    ["an unknown command, with commander's suggestion kept on the same line", async () => ["publihs", "."], /^fmq: unknown command 'publihs' \(Did you mean publish\?\)$/],
    ["a bind in a config file that libzmq would take and mangle, with its line, before anything is bound", async () => {
      const dir = await tempDir();
      await mkdir(path.join(dir, "pub"));
      const config = path.join(dir, "c.toml");
      await writeFile(path.join(dir, "c.toml"), `bind = ["tcp://127.0.0.1:${await freePort()}", "tcp://127.0.0.1:99999"]\n[[mount]]\ndirectory = "pub"\n`, { mode: 0o600 });
      return ["publish", "--config", config];
    }, /^fmq: .*c\.toml:1: bind: tcp:\/\/127\.0\.0\.1:99999: port 99999 is not a TCP port/],
    ["track into its own source", async () => {
      const src = await tempDir();
      return ["track", src, src];
    }, /^fmq: <dst> is <src> /],
    ["an inbox that is a file", async () => {
      const dir = await tempDir();
      await writeFile(path.join(dir, "f"), "x");
      return ["subscribe", "/", "--inbox", path.join(dir, "f")];
    }, /^fmq: cannot use .*f as an inbox: not a directory$/],
    // Node's own recursive mkdir never returned here (it retried ENOENT forever).
    ["an inbox where no directory can be made", async () => ["subscribe", "/", "--inbox", "/proc/fmq-no/inbox"], /^fmq: cannot use \/proc\/fmq-no\/inbox as an inbox: no directory can be made there$/],
    ["an inbox under a file", async () => {
      const dir = await tempDir();
      await writeFile(path.join(dir, "f"), "x");
      return ["subscribe", "/", "--inbox", path.join(dir, "f", "inbox")];
    }, /^fmq: cannot use .*f\/inbox as an inbox: not a directory$/],
    ["an alias with ..", async () => ["publish", await tempDir(), "--alias", "/a/../b", "--bind", `tcp://127.0.0.1:${await freePort()}`], /^fmq: invalid alias "\/a\/..\/b"/],
    // (A review: these said raw Node errors naming no flag, or "" was taken for the working directory.)
    ["an empty <src> for track (it tracked the working directory)", async () => ["track", "", path.join(await tempDir(), "dst"), "--once"], /^fmq: command-argument value '' is invalid for argument 'src'\. must not be empty$/],
    ["an empty --inbox (\"realpath ''\")", async () => ["subscribe", "/", "--inbox", ""], /^fmq: option '--inbox <dir>' argument '' is invalid\. must not be empty$/],
    ["an empty --bind among others", async () => ["publish", await tempDir(), "--bind", `tcp://127.0.0.1:${await freePort()}`, "--bind", ""], /^fmq: option '--bind <endpoint>' argument '' is invalid\. must not be empty$/],
    ["a chunk size over 64 MiB, named by its flag", async () => ["publish", await tempDir(), "--chunk-size", "65M"], /^fmq: option '--chunk-size <bytes>' argument '65M' is invalid\. at most 64 MiB \(67108864 bytes\)$/],
    ["a directory given as --curve-server", async () => ["subscribe", "/", "--inbox", await tempDir(), "--curve-server", await tempDir(), "--curve-secret", "x.key"], /^fmq: --curve-server: cannot read public key file .*: is a directory$/],
    ["a directory given as --password-file (mode 0755: it was said to be accessible by others)", async () => {
      const dir = await tempDir();
      await chmod(dir, 0o755);
      return ["subscribe", "/", "--inbox", await tempDir(), "--user", "u", "--password-file", dir];
    }, /^fmq: --password-file: cannot read .*: is a directory$/],
    ["a directory given as --config", async () => ["publish", "--config", await tempDir()], /^fmq: cannot read config file .*: is a directory$/],
    ["a missing --password-file", async () => ["subscribe", "/", "--inbox", await tempDir(), "--user", "u", "--password-file", path.join(await tempDir(), "nope")], /^fmq: --password-file: cannot read .*nope: no such file$/],
  ];
  for (const [what, args, message] of failures) {
    it(`cli - ${what} is one clear line on stderr and a non-zero exit`, async () => {
      const r = start(await args());
      const { code } = await r.exited;
      expect(code).not.toBe(0);
      expect(r.stderr).toHaveLength(1);
      expect(r.stderr[0]).toMatch(message);
    });
  }

  it("cli - a subscription path that is not one is refused before anything is said of a connection (it said 'connecting to ...' first)", async () => {
    const inbox = path.join(await tempDir(), "inbox");
    const json = start(["subscribe", "sub", "--inbox", inbox, "--connect", "tcp://127.0.0.1:1", "--json"]);
    expect((await json.exited).code).toBe(1);
    expect(json.events).toEqual([{ event: "error", message: expect.stringMatching(/^invalid path "sub"/) }]);
    const human = start(["subscribe", "sub", "--inbox", inbox, "--connect", "tcp://127.0.0.1:1"]);
    expect((await human.exited).code).toBe(1);
    expect(human.events).toEqual([]);
    expect(human.stderr).toEqual([expect.stringMatching(/^fmq: invalid path "sub"/)]);
  });

  it("cli - with --json, a bad flag (commander's own error) is also an error event on stdout, as the same line on stderr", async () => {
    for (const args of [["subscribe", "/", "--json", "--window", "0"], ["publish", ".", "--json", "--bogus"]]) {
      const r = start(args);
      expect((await r.exited).code).toBe(1);
      expect(r.stderr).toHaveLength(1);
      expect(r.stderr[0]).toMatch(/^fmq: /);
      expect(r.events).toEqual([{ event: "error", message: r.stderr[0]!.slice("fmq: ".length) }]);
    }
  });

  it.skipIf(!networkInterfaces().lo?.some((i) => i.address === "::1"))("cli - a config that binds both an IPv4 and an IPv6 address binds both, with nothing on stderr", async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, "pub"));
    await writeFile(path.join(dir, "pub", "a.txt"), "a");
    const [v4, v6] = [await freePort(), await freePort()];
    const config = path.join(dir, "c.toml");
    await writeFile(config, `bind = ["tcp://127.0.0.1:${v4}", "tcp://[::1]:${v6}"]\n[[mount]]\ndirectory = "pub"\n`, { mode: 0o600 });
    const pub = start(["publish", "--config", config, "--json"]);
    try {
      const ready = await waitFor(() => pub.events.find((e) => e.event === "ready"), "the ready event");
      // (IPv4 stays IPv4: not tcp://[::ffff:127.0.0.1]:port.)
      expect(ready.endpoints).toEqual([`tcp://127.0.0.1:${v4}`, `tcp://[::1]:${v6}`]);
      for (const endpoint of [`tcp://127.0.0.1:${v4}`, `tcp://[::1]:${v6}`]) {
        const inbox = path.join(dir, `in-${endpoint.length}`);
        const sub = start(["subscribe", "/", "--connect", endpoint, "--inbox", inbox, "--json"]);
        await waitFor(() => sub.events.some((e) => e.event === "delivered"), `a.txt over ${endpoint}`);
        sub.child.kill("SIGTERM");
        await sub.exited;
        expect(await readFile(path.join(inbox, "a.txt"), "utf8")).toBe("a");
      }
      expect(pub.stderr).toEqual([]);
    } finally {
      pub.child.kill("SIGTERM");
      await pub.exited;
    }
  });

  it("cli - subscribe with an endpoint libzmq refuses: one line, exit 1, and no inbox made", async () => {
    const inbox = path.join(await tempDir(), "new-inbox");
    const r = start(["subscribe", "/", "--connect", "tcp://127.0.0.1:notaport", "--inbox", inbox]);
    expect((await r.exited).code).toBe(1);
    expect(r.stderr).toHaveLength(1);
    expect(r.stderr[0]).toMatch(/^fmq: cannot connect to tcp:\/\/127\.0\.0\.1:notaport: /);
    expect(await stat(inbox).then(() => "made", () => "absent")).toBe("absent");
  });

  it("cli - --bind given twice binds both (the first was dropped silently); a subscriber on each gets the file", async () => {
    const dir = await tempDir();
    await mkdir(path.join(dir, "pub"));
    await writeFile(path.join(dir, "pub", "a.txt"), "a");
    const endpoints = [`tcp://127.0.0.1:${await freePort()}`, `tcp://127.0.0.1:${await freePort()}`];
    const pub = start(["publish", path.join(dir, "pub"), "--bind", endpoints[0]!, "--bind", endpoints[1]!, "--json"]);
    try {
      const ready = await waitFor(() => pub.events.find((e) => e.event === "ready"), "the ready event");
      expect(ready.endpoints).toEqual(endpoints);
      for (const [i, endpoint] of endpoints.entries()) {
        const inbox = path.join(dir, `in-${i}`);
        const sub = start(["subscribe", "/", "--connect", endpoint, "--inbox", inbox, "--json"]);
        await waitFor(() => sub.events.some((e) => e.event === "delivered"), `a.txt over ${endpoint}`);
        sub.child.kill("SIGTERM");
        await sub.exited;
        expect(await readFile(path.join(inbox, "a.txt"), "utf8")).toBe("a");
      }
    } finally {
      pub.child.kill("SIGTERM");
      await pub.exited;
    }
  });

  it("cli - with --json, a failure to start is also an error event on stdout (the only line there), as the same line on stderr", async () => {
    const missing = path.join(await tempDir(), "nope");
    const r = start(["publish", missing, "--bind", `tcp://127.0.0.1:${await freePort()}`, "--json"]);
    expect((await r.exited).code).toBe(1);
    expect(r.stderr).toEqual([`fmq: no such directory: ${missing}`]);
    expect(r.events).toEqual([{ event: "error", message: `no such directory: ${missing}` }]);
  });

  it("cli - the fmq command (package.json bin) execs Node with its allocator settings, also reached through a symlink as in node_modules/.bin", async () => {
    const bin = path.join(await tempDir(), "node_modules", ".bin");
    await mkdir(bin, { recursive: true });
    await symlink(path.relative(bin, FMQ_COMMAND), path.join(bin, "fmq"));
    const port = await freePort();
    const r = startFmq(["subscribe", "/", "--connect", `tcp://127.0.0.1:${port}`, "--inbox", await tempDir(), "--json"], { GLIBC_TUNABLES: "glibc.malloc.arena_max=4" }, path.join(bin, "fmq"));
    await waitFor(() => has(r, "connecting"), "connecting");
    // One process: the PID we started is Node running the built CLI (the script exec'd it).
    const cmdline = (await readFile(`/proc/${r.child.pid}/cmdline`, "latin1")).split("\0");
    expect(await realpath(cmdline[1]!)).toBe(await realpath(FMQ));
    // glibc may cut the variable at its ":" separators in place; every setting is there, the caller's too.
    const environ = await readFile(`/proc/${r.child.pid}/environ`, "latin1");
    for (const setting of [...FMQ_MALLOC_TUNABLES.split(":"), "glibc.malloc.arena_max=4"]) expect(environ).toContain(setting);
    r.child.kill("SIGTERM");
    expect(await r.exited).toEqual({ code: 0, signal: null });
  });

  it("cli - an endpoint already in use is one clear line and a non-zero exit", async () => {
    const port = await freePort();
    const first = start(["publish", await tempDir(), "--bind", `tcp://127.0.0.1:${port}`, "--json"]);
    await waitFor(() => has(first, "ready"), "first publisher ready");
    const second = start(["publish", await tempDir(), "--bind", `tcp://127.0.0.1:${port}`, "--json"]);
    const { code } = await second.exited;
    expect(code).toBe(1);
    expect(second.stderr).toEqual([`fmq: cannot bind tcp://127.0.0.1:${port}: address already in use`]);
  });
});
