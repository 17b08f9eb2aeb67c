// The contenders, each as "copy this source into K destinations and time it":
//  - fmq: a real `fmq publish` and K real `fmq subscribe` processes;
//  - the raw zeromq.js credit pipe (raw-pipe.ts), one server and K clients;
//  - cp, and rsync pushing to a daemon on 127.0.0.1, K of them at once.
// Each returns a Run without verification; the workload checks the bytes.

import { closeSync, openSync, unlinkSync, writeSync } from "node:fs";
import { mkdir, readdir, rm, writeFile } from "node:fs/promises";
import { setTimeout as sleep } from "node:timers/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { Proc, CpuMeter, freePort, now, reapedChildrenCpuSeconds, timeCommands, waitForPort, type ProcSample } from "./measure.js";
import { waitForPartial } from "./data.js";
import type { Profiler, Recording } from "./cpu-split.js";
import type { ProcessCost, Run } from "./types.js";

export const FMQ_CLI = fileURLToPath(new URL("../cli/fmq.js", import.meta.url));
export const RAW_PIPE = fileURLToPath(new URL("./raw-pipe.js", import.meta.url));

export interface Transfer {
  /** A file or a directory (published as /). */
  readonly src: string;
  /** One destination directory per receiver (created fresh). */
  readonly dsts: readonly string[];
  /** Files each receiver must get. */
  readonly files: number;
  /** Bytes each receiver must get. */
  readonly bytes: number;
  readonly timeoutMs: number;
  /** With --perf: the run is recorded, and its CPU split between who did what (cpu-split.ts). */
  readonly profiler?: Profiler;
}

// --- the same memory for everyone ------------------------------------------------------------------------

/** At most this much is written and deleted before a run (see freeMemoryNow). */
const MAX_FREED = 5 * 1024 ** 3;

/**
 * Write as many bytes as the run is about to write into the page cache (a scratch file beside its
 * destinations), then delete them, right before the run's clock starts: every contender then writes
 * into memory freed a moment ago. On these VMs (free page reporting) memory freed longer ago may have
 * gone back to the host, and writing into it costs a fault the host must serve: a 1 GiB transfer of
 * any contender took about 1 s or about 2.5 s depending on which memory it got. Without this, whoever
 * started right after deleting its previous output (cp and rsync delete theirs just before their
 * command; fmq and the pipe before starting a server) got the fast memory, and a run that kept 1 GiB
 * of someone else's output until after its clock got the slow one every time (fmq with a warm-up
 * subscriber: 3.13-3.66 s in 7 of 7 runs, against 1.17-2.86 for the same transfer without it).
 */
function freeMemoryNow(transfer: Transfer): void {
  const dir = path.dirname(transfer.dsts[0]!);
  const file = path.join(dir, `.freed-${process.pid}`);
  const block = Buffer.alloc(1024 * 1024);
  const total = Math.min(MAX_FREED, transfer.bytes * transfer.dsts.length);
  const fd = openSync(file, "w");
  try {
    for (let written = 0; written < total; written += block.length) writeSync(fd, block);
  } finally {
    closeSync(fd);
    unlinkSync(file);
  }
}

// --- fmq and the raw pipe: a server process and K client processes ----------------------------------

const removeTree = (dir: string): Promise<void> => rm(dir, { recursive: true, force: true });

interface Pipeline {
  readonly contender: string;
  readonly rep: number;
  /**
   * Spawns the server and resolves once it is ready to serve. `leftovers`: directories the setting wrote
   * (a warm-up's inbox), removed before the timed run's scratch step. Every process it spawns goes
   * through `spawned` at once: stopped with the rest even if the start fails part way (a publisher never
   * ready, a warm-up that fails), not left running through the contenders timed after it.
   */
  readonly startServer: (spawned: (proc: Proc) => Proc) => Promise<{ server: Proc; extra: Record<string, unknown>; others?: Proc[]; leftovers?: string[]; discard?: (dir: string) => Promise<void> }>;
  /** Spawns receiver k. */
  readonly startClient: (k: number) => Proc;
  /** The receiver's line that starts the clock (fmq: "subscribed"; raw: "open"). */
  readonly startEvent: string;
  /** The receiver's line for one finished file (fmq: "delivered"; raw: "done"). */
  readonly doneEvent: string;
  readonly transfer: Transfer;
}

async function runPipeline(p: Pipeline): Promise<Run> {
  const { transfer } = p;
  const procs: Proc[] = [];
  /** Processes that are part of the setting but not timed (a stalled subscriber): stopped at the end. */
  const untimed: Proc[] = [];
  const stopUntimed = async () => {
    await Promise.all(untimed.map((proc) => proc.resume().stop()));
  };
  const steal = CpuMeter.start();
  let recording: Recording | undefined;
  try {
    for (const dst of transfer.dsts) {
      await rm(dst, { recursive: true, force: true });
      await mkdir(dst, { recursive: true });
    }
    // (Until the start is done, everything it spawned is untimed, so stopped on any failure below.)
    const { server, extra, others = [], leftovers: left = [], discard = removeTree } = await p.startServer((proc) => (untimed.push(proc), proc));
    untimed.splice(0, untimed.length, ...others);
    procs.push(server);
    // A warm-up's output goes now, before the scratch step below evens out the memory everyone writes
    // into (removed after the timed run instead, it freed 1 GiB more just before whichever row came next).
    await Promise.all(left.map(discard));
    freeMemoryNow(transfer);
    recording = await transfer.profiler?.start(`${p.contender} rep ${p.rep}`);
    let serverAtStart: ProcSample | undefined;
    const clients: {
      proc: Proc;
      started?: number;
      ended?: number;
      delivered: number;
      atStart?: ProcSample;
      atEnd?: ProcSample;
      done: Promise<void>;
    }[] = [];
    const spawnedAt = now();
    for (let k = 0; k < transfer.dsts.length; k++) {
      const proc = p.startClient(k);
      procs.push(proc);
      let finish!: () => void;
      const client: (typeof clients)[number] = { proc, delivered: 0, done: new Promise<void>((resolve) => (finish = resolve)) };
      // CPU is sampled the moment the line arrives: the timed part only, startup excluded.
      proc.onLine((line) => {
        if (!line) return;
        if (line.data.event === p.startEvent && client.started === undefined) {
          client.started = line.t;
          client.atStart = proc.sample();
          serverAtStart ??= server.sample();
        } else if (line.data.event === p.doneEvent && ++client.delivered === transfer.files) {
          client.ended = line.t;
          client.atEnd = proc.sample();
          finish();
        }
      });
      clients.push(client);
    }
    // Wait for every receiver to finish, failing at once if any process dies.
    const died = (proc: Proc) => proc.waitFor(() => false, 2 ** 31 - 1, `${transfer.files} × ${p.doneEvent}`);
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(() => {
        const got = clients.map((c) => c.delivered).join(", ");
        reject(new Error(`timed out after ${(transfer.timeoutMs / 1000).toFixed(0)} s: receivers had ${got} of ${transfer.files} files`));
      }, transfer.timeoutMs);
    });
    try {
      await Promise.race([Promise.all(clients.map((c) => c.done)), timeout, ...procs.map(died)]);
    } finally {
      clearTimeout(timer);
    }
    const serverAtEnd = server.sample();
    await recording?.stop();
    const roles = new Map<number, string>(procs.map((proc, i) => [proc.pid ?? -1, i === 0 ? "server" : "client"]));
    const stopped = await Promise.all(procs.map((proc) => proc.stop()));
    await stopUntimed();
    const errors = procs.flatMap((proc) => proc.errors().map((e) => `${proc.name}: ${e}`));

    const t0 = Math.min(...clients.map((c) => c.started!));
    const t1 = Math.max(...clients.map((c) => c.ended!));
    // (A receiver that finished without its start line: no time to give, and a NaN would sort anywhere.)
    if (!Number.isFinite(t1 - t0)) throw new Error(`a receiver finished without its "${p.startEvent}" line: no time`);
    // Peak RSS over each process's life (read just before stopping it); CPU over the timed part only.
    const cpu = (a: ProcSample | undefined, b: ProcSample | undefined) => (b?.cpuSeconds ?? NaN) - (a?.cpuSeconds ?? NaN);
    const serverCost: ProcessCost = { peakRssMiB: stopped[0]?.peakRssMiB ?? NaN, cpuSeconds: cpu(serverAtStart, serverAtEnd) };
    const clientCosts: ProcessCost[] = clients.map((c, k) => ({ peakRssMiB: stopped[k + 1]?.peakRssMiB ?? NaN, cpuSeconds: cpu(c.atStart, c.atEnd) }));
    const share = steal.stop();
    const cpuSplit = await recording?.split(t0, t1, { pids: roles });
    const run: Run = {
      contender: p.contender,
      rep: p.rep,
      ok: errors.length === 0,
      ...(errors.length ? { error: errors.slice(0, 3).join("; ") } : {}),
      seconds: (t1 - t0) / 1000,
      wallSeconds: (t1 - spawnedAt) / 1000,
      bytes: transfer.bytes * clients.length,
      files: transfer.files * clients.length,
      stealPct: share.stealPct,
      disturbance: share.disturbance,
      server: serverCost,
      clients: clientCosts,
      ...(cpuSplit ? { cpuSplit } : {}),
      extra: {
        ...extra,
        /** When each receiver's clock started and ended, seconds after the first start. */
        startedAfterS: clients.map((c) => (c.started! - t0) / 1000),
        endedAfterS: clients.map((c) => (c.ended! - t0) / 1000),
        /** Each receiver's own start → end. */
        ownSeconds: clients.map((c) => (c.ended! - c.started!) / 1000),
      },
    };
    return run;
  } catch (error) {
    await recording?.stop().catch(() => undefined);
    await Promise.all(procs.map((proc) => proc.stop()));
    await stopUntimed();
    return failedRun(p.contender, p.rep, error, steal.stop().stealPct);
  }
}

export function failedRun(contender: string, rep: number, error: unknown, stealPct = NaN): Run {
  return {
    contender,
    rep,
    ok: false,
    error: error instanceof Error ? error.message : String(error),
    seconds: NaN,
    wallSeconds: NaN,
    bytes: 0,
    files: 0,
    stealPct,
  };
}

export interface FmqSettings {
  /** The CLI to run (dist/cli/fmq.js). */
  readonly cli: string;
  readonly chunkSize: number;
  readonly window: number;
  readonly stableMs: number;
  /** More `fmq publish` flags. */
  readonly publishFlags?: readonly string[];
  /**
   * Untimed, before the timed subscriber: one subscriber receives everything into this directory, so
   * the publisher has fingerprinted its files (as one that has been running a while would have).
   */
  readonly warmUpInbox?: string;
  /**
   * How the warm-up's inbox is got rid of (default: deleted). A tree of many files is set aside instead:
   * deleting 10,000 files just before the timed subscriber creates 10,000 slows its creates (setAside).
   */
  readonly discardWarmUp?: (dir: string) => Promise<void>;
  /**
   * Untimed, before the timed subscribers: one more subscriber (inbox here, default window) that is
   * frozen with SIGSTOP once it has received its first MiB, as if its machine hung with credit granted:
   * the server's pipe to it fills and stays full while the timed subscribers run.
   */
  readonly stalledInbox?: string;
}

/** fmq: `fmq publish <src dir>` and K × `fmq subscribe / --inbox <dst>`. */
export function runFmq(contender: string, rep: number, transfer: Transfer, s: FmqSettings): Promise<Run> {
  let endpoint = "";
  return runPipeline({
    contender,
    rep,
    transfer,
    startEvent: "subscribed",
    doneEvent: "delivered",
    startServer: async (spawned) => {
      endpoint = `tcp://127.0.0.1:${await freePort()}`;
      const args = ["publish", transfer.src, "--bind", endpoint, "--json", "--chunk-size", String(s.chunkSize), "--stable-ms", String(s.stableMs), ...(s.publishFlags ?? [])];
      if (s.stalledInbox !== undefined) {
        // The frozen subscriber must stay frozen, and held, for the whole timed run: the publisher's
        // default peer-timeout-ms (15 s) would cut it part way through a slow repetition at 16
        // subscribers (frozen before the scratch step and 16 start-ups), and the rest of that run would
        // measure nothing. It only concerns a client that has stopped reading.
        const config = `${s.stalledInbox}.toml`;
        await writeFile(config, "[limits]\npeer-timeout-ms = 120000\n");
        args.push("--config", config);
      }
      const server = spawned(Proc.node("fmq publish", s.cli, args, transfer.profiler?.nodeFlags));
      const ready = await server.waitFor((d) => d.event === "ready", 120_000, '"ready"');
      // The initial files must be stable (in the publisher's catalogue) before the clock starts, or the
      // timing would include their quiet period: wait for a "published" line per file.
      const settled = await server.waitFor((d) => d.event === "published", transfer.timeoutMs, '"published" for every file', transfer.files);
      const leftovers: string[] = [];
      if (s.warmUpInbox !== undefined) {
        // (One left by a warm-up that failed: a tree of many files is set aside too, not deleted.)
        await (s.discardWarmUp ?? removeTree)(s.warmUpInbox);
        const warm = spawned(Proc.node("fmq subscribe (warm-up)", s.cli, ["subscribe", "/", "--connect", endpoint, "--inbox", s.warmUpInbox, "--json", "--window", String(s.window)]));
        try {
          await warm.waitFor((d) => d.event === "delivered", transfer.timeoutMs, '"delivered" for every file (warm-up)', transfer.files);
        } finally {
          await warm.stop();
        }
        // Its inbox goes before the scratch step (runPipeline), not right before the timed subscriber:
        // on these VMs memory freed a moment ago is fast to write into, and deleting 1 GiB just before
        // the timed subscriber wrote 1 GiB gave this row alone that head start (1.07-1.39 s in 7 of 7
        // runs, when the plain row took 1.47-3.93). Removed after the timed run instead (until
        // 2026-12-02), it freed 2 GiB in all just before whichever row came next (a review).
        leftovers.push(s.warmUpInbox);
      }
      const others: Proc[] = [];
      const extraStalled: Record<string, unknown> = {};
      if (s.stalledInbox !== undefined) {
        await rm(s.stalledInbox, { recursive: true, force: true });
        const stalled = spawned(Proc.node("fmq subscribe (stalled)", s.cli, ["subscribe", "/", "--connect", endpoint, "--inbox", s.stalledInbox, "--json", "--window", String(s.window)]));
        others.push(stalled);
        // The workloads that use it publish one file.
        const file = (await readdir(transfer.src))[0]!;
        const held = await waitForPartial(stalled, path.join(s.stalledInbox, ".fmq", "partial"), file, 1024 * 1024, transfer.timeoutMs);
        stalled.pause();
        extraStalled.stalledAtBytes = held;
      }
      return { server, others, leftovers, ...(s.discardWarmUp ? { discard: s.discardWarmUp } : {}), extra: { publisherStartupS: (ready.t - server.spawnedAt) / 1000, publisherSettledS: (settled.t - server.spawnedAt) / 1000, ...extraStalled } };
    },
    startClient: (k) =>
      Proc.node(`fmq subscribe #${k}`, s.cli, ["subscribe", "/", "--connect", endpoint, "--inbox", transfer.dsts[k]!, "--json", "--window", String(s.window)], transfer.profiler?.nodeFlags),
  });
}

/** The raw pipe: one file, one server, K clients each writing dst/<name>. */
export function runRawPipe(contender: string, rep: number, transfer: Transfer, chunkSize: number, window: number): Promise<Run> {
  let endpoint = "";
  return runPipeline({
    contender,
    rep,
    transfer,
    startEvent: "open",
    doneEvent: "done",
    startServer: async (spawned) => {
      endpoint = `tcp://127.0.0.1:${await freePort()}`;
      const server = spawned(Proc.node("raw-pipe server", RAW_PIPE, ["server", "--file", transfer.src, "--bind", endpoint, "--chunk", String(chunkSize), "--read-ahead", "2"], transfer.profiler?.nodeFlags));
      await server.waitFor((d) => d.event === "ready", 30_000, '"ready"');
      return { server, extra: {} };
    },
    startClient: (k) =>
      Proc.node(`raw-pipe client #${k}`, RAW_PIPE, [
        "client",
        "--connect",
        endpoint,
        "--out",
        path.join(transfer.dsts[k]!, path.basename(transfer.src)),
        "--window",
        String(window),
      ], transfer.profiler?.nodeFlags),
  });
}

// --- cp and rsync: K commands at once -------------------------------------------------------------------

/**
 * Runs one command per destination at once. CPU: the commands' own (reaped by us), and with `serverPid`
 * a daemon's (the children it forked and reaped for these connections): the same "server / clients"
 * split as fmq's, so the table shows what each contender costs two cores, not only how long it took.
 */
async function runCommands(contender: string, rep: number, transfer: Transfer, createDst: boolean, command: (dst: string) => string[], serverPid?: number): Promise<Run> {
  const steal = CpuMeter.start();
  let recording: Recording | undefined;
  try {
    for (const dst of transfer.dsts) {
      await rm(dst, { recursive: true, force: true });
      await mkdir(createDst ? dst : path.dirname(dst), { recursive: true });
    }
    freeMemoryNow(transfer);
    recording = await transfer.profiler?.start(`${contender} rep ${rep}`);
    const ownBefore = reapedChildrenCpuSeconds(process.pid);
    const serverBefore = serverPid === undefined ? 0 : reapedChildrenCpuSeconds(serverPid);
    const startedAt = now();
    const each = await timeCommands(transfer.dsts.map(command), transfer.timeoutMs);
    const seconds = Math.max(...each);
    await recording?.stop();
    const clientCpu = reapedChildrenCpuSeconds(process.pid) - ownBefore;
    let serverCpu = 0;
    if (serverPid !== undefined) {
      // The daemon reaps each connection's process a moment after our command exits: wait until the
      // figure has stopped growing for 200 ms (with K clients, the first reaped is not the last).
      const deadline = now() + 2000;
      let steadySince = now();
      do {
        const seen = reapedChildrenCpuSeconds(serverPid) - serverBefore;
        if (seen !== serverCpu) {
          serverCpu = seen;
          steadySince = now();
        } else if (serverCpu > 0 && now() - steadySince >= 200) break;
        await sleep(20);
      } while (now() < deadline);
    }
    const share = steal.stop();
    // (The commands are ours to name, not to number: a daemon's connection processes are its children,
    // found through perf's fork records; the rest of the processes so named are the commands.)
    const names = new Map(transfer.dsts.map((dst) => [command(dst)[0]!, "client"]));
    const cpuSplit = await recording?.split(startedAt, startedAt + seconds * 1000, { pids: new Map(serverPid === undefined ? [] : [[serverPid, "server"]]), comms: names });
    return {
      contender,
      rep,
      ok: true,
      seconds,
      wallSeconds: seconds,
      bytes: transfer.bytes * transfer.dsts.length,
      files: transfer.files * transfer.dsts.length,
      stealPct: share.stealPct,
      disturbance: share.disturbance,
      server: { peakRssMiB: NaN, cpuSeconds: serverCpu },
      clients: [{ peakRssMiB: NaN, cpuSeconds: clientCpu }],
      ...(cpuSplit ? { cpuSplit } : {}),
      extra: { endedAfterS: each, ownSeconds: each },
    };
  } catch (error) {
    await recording?.stop().catch(() => undefined);
    return failedRun(contender, rep, error, steal.stop().stealPct);
  }
}

/** `cp src dst/` for a file, `cp -r src dst` for a directory (dst then is the copy). */
export function runCp(contender: string, rep: number, transfer: Transfer, isDirectory: boolean): Promise<Run> {
  return runCommands(contender, rep, transfer, !isDirectory, (dst) => (isDirectory ? ["cp", "-r", transfer.src, dst] : ["cp", transfer.src, dst + "/"]));
}

/**
 * An rsync daemon on 127.0.0.1 with one writable module, `dst`, at `root`. Each push is
 * `rsync -a --whole-file <src> rsync://127.0.0.1:<port>/dst/<name>/`.
 */
export class RsyncDaemon {
  private constructor(
    readonly root: string,
    readonly port: number,
    private readonly proc: Proc,
  ) {}

  static async start(dir: string): Promise<RsyncDaemon> {
    const root = path.join(dir, "module");
    await mkdir(root, { recursive: true });
    const port = await freePort();
    const conf = path.join(dir, "rsyncd.conf");
    const uid = process.getuid?.() ?? 0;
    const gid = process.getgid?.() ?? 0;
    await writeFile(
      conf,
      [
        `pid file = ${path.join(dir, "rsyncd.pid")}`,
        "use chroot = no",
        `uid = ${uid}`,
        `gid = ${gid}`,
        `log file = ${path.join(dir, "rsyncd.log")}`,
        "[dst]",
        `  path = ${root}`,
        "  read only = false",
        "",
      ].join("\n"),
    );
    const proc = new Proc("rsync --daemon", "rsync", ["--daemon", "--no-detach", `--config=${conf}`, `--port=${port}`, "--address=127.0.0.1"]);
    await waitForPort(port, 10_000);
    return new RsyncDaemon(root, port, proc);
  }

  /** Where a push named `name` lands on disk. */
  local(name: string): string {
    return path.join(this.root, name);
  }

  /** The daemon URL of the directory `name` in the module (what `local(name)` is on disk). */
  url(name: string): string {
    return `rsync://127.0.0.1:${this.port}/dst/${name}/`;
  }

  run(contender: string, rep: number, transfer: Transfer, isDirectory: boolean): Promise<Run> {
    // dsts are paths under this.root; the module path is the part below it.
    return runCommands(contender, rep, transfer, true, (dst) => {
      const name = path.relative(this.root, dst);
      return ["rsync", "-a", "--whole-file", isDirectory ? transfer.src + "/" : transfer.src, `rsync://127.0.0.1:${this.port}/dst/${name}/`];
    }, this.proc.child.pid);
  }

  async stop(): Promise<void> {
    await this.proc.stop();
  }
}
