// Measuring tools: child processes whose JSON lines are time-stamped on arrival, their peak RSS and CPU
// from /proc, hypervisor steal from /proc/stat, free ports, and cleanup of everything on exit.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import net from "node:net";
import { performance } from "node:perf_hooks";
import readline from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";

export { sleep };

/**
 * What cli/fmq (the `fmq` command) puts in GLIBC_TUNABLES: glibc keeps freed memory for the next
 * message instead of returning it to the kernel (see that script). A test checks the two agree.
 */
export const FMQ_MALLOC_TUNABLES = "glibc.malloc.mmap_threshold=33554432:glibc.malloc.trim_threshold=268435456";

/** Milliseconds on the bench's clock. */
export const now = (): number => performance.now();

// --- every child we start is killed when we exit, however we exit ---------------------------------

const live = new Set<ChildProcess>();
const exitHooks: (() => void)[] = [];

/** Run `hook` (synchronously) when the bench exits, normally or not. */
export function onExit(hook: () => void): void {
  stopChildrenOnExit();
  exitHooks.push(hook);
}

function killAll(): void {
  for (const child of live) {
    try {
      child.kill("SIGKILL");
    } catch {
      // already gone
    }
  }
  live.clear();
  for (const hook of exitHooks.splice(0)) {
    try {
      hook();
    } catch {
      // best effort
    }
  }
}

/**
 * Installed with the first child (not on import: a test that reads the report's code must keep its own
 * signal handling): whatever ends the bench ends what it started.
 */
let stopsChildren = false;
function stopChildrenOnExit(): void {
  if (stopsChildren) return;
  stopsChildren = true;
  process.on("exit", killAll);
  for (const signal of ["SIGINT", "SIGTERM", "SIGHUP"] as const) {
    process.on(signal, () => {
      process.stderr.write(`\nbench: ${signal}, stopping every child process\n`);
      killAll();
      process.exit(130);
    });
  }
}

export function track(child: ChildProcess): ChildProcess {
  stopChildrenOnExit();
  live.add(child);
  child.on("exit", () => live.delete(child));
  return child;
}

// --- /proc ------------------------------------------------------------------------------------------

const CLK_TCK = (() => {
  const out = spawnSync("getconf", ["CLK_TCK"], { encoding: "utf8" });
  const value = Number(out.stdout?.trim());
  return Number.isFinite(value) && value > 0 ? value : 100;
})();

export interface ProcSample {
  readonly peakRssMiB: number;
  /** user + system CPU seconds so far. */
  readonly cpuSeconds: number;
}

/** Peak RSS (VmHWM) and CPU time of a live process, or undefined if it is gone. */
export function sampleProcess(pid: number | undefined): ProcSample | undefined {
  if (pid === undefined) return undefined;
  try {
    const status = readFileSync(`/proc/${pid}/status`, "utf8");
    const hwm = /^VmHWM:\s+(\d+)\s+kB/m.exec(status);
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": state is field 3, utime 14, stime 15.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    const ticks = Number(fields[11]) + Number(fields[12]);
    return { peakRssMiB: hwm ? Number(hwm[1]) / 1024 : NaN, cpuSeconds: ticks / CLK_TCK };
  } catch {
    return undefined;
  }
}

/**
 * CPU seconds (user + system) of the children that `pid` has reaped so far: the cost of commands such
 * as cp and rsync, which we cannot sample while they run (they are gone when we look). NaN if unreadable.
 */
export function reapedChildrenCpuSeconds(pid: number): number {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, "utf8");
    // Fields after "(comm)": cutime is field 16, cstime 17.
    const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
    return (Number(fields[13]) + Number(fields[14])) / CLK_TCK;
  } catch {
    return NaN;
  }
}

/**
 * What the machine did between start() and stop(): its CPUs, as % of all CPU time (every core), and its
 * disk reads. Every contender reads sources that were warmed into the page cache, so a run that reads
 * from disk was disturbed: seen here, the host dropped this VM's page cache during a session
 * (/proc/vmstat drop_pagecache went to 1), and the publisher's reads of "warm" 4 KiB files then went to
 * the virtio disk (perf: pread -> read_pages -> virtio_queue_rq), slowing that run by a fifth.
 */
export interface CpuShare {
  /** Hypervisor steal: time our VM wanted to run and could not. */
  readonly stealPct: number;
  /** Busy (user, nice, system, irq, softirq), whoever it was. */
  readonly busyPct: number;
  readonly disturbance: Disturbance;
}

/** What else the machine went through meanwhile, from /proc/vmstat. */
export interface Disturbance {
  /** Read from disk by anyone (pgpgin), MiB. */
  readonly diskReadMiB: number;
  /** Times the page cache was dropped (echo 1 or 3 > drop_caches, by anyone: here, the host's agent). */
  readonly cacheDrops: number;
  /** Memory the kernel had to reclaim (pages scanned by kswapd or direct reclaim), MiB: RAM was full. */
  readonly reclaimMiB: number;
}

export class CpuMeter {
  #start = readCpuLine();
  #vm = readVmstat();

  static start(): CpuMeter {
    return new CpuMeter();
  }

  stop(): CpuShare {
    const end = readCpuLine();
    const vm = readVmstat();
    const total = end.total - this.#start.total;
    const disturbance = {
      diskReadMiB: (vm.pgpginKiB - this.#vm.pgpginKiB) / 1024,
      cacheDrops: vm.drops - this.#vm.drops,
      reclaimMiB: ((vm.scannedPages - this.#vm.scannedPages) * 4096) / 2 ** 20,
    };
    if (total <= 0) return { stealPct: 0, busyPct: 0, disturbance };
    return { stealPct: (100 * (end.steal - this.#start.steal)) / total, busyPct: (100 * (end.busy - this.#start.busy)) / total, disturbance };
  }
}

/** A run that read this much from disk is marked in the report (sources are meant to be in the page cache). */
export const DISK_READ_NOTE_MIB = 16;
/**
 * A run during which the kernel reclaimed this much is marked too: RAM was full of page cache (seen here
 * when scratch files piled up beside the bench: kswapd reclaimed 26 GiB, and 16-subscriber fan-out took
 * twice as long).
 */
export const RECLAIM_NOTE_MIB = 64;

/** Times the page cache has been dropped since boot. */
export function cacheDrops(): number {
  return readVmstat().drops;
}

function readVmstat(): { pgpginKiB: number; drops: number; scannedPages: number } {
  try {
    const text = readFileSync("/proc/vmstat", "utf8");
    const get = (name: string) => Number(new RegExp(`^${name} (\\d+)$`, "m").exec(text)?.[1] ?? 0);
    return { pgpginKiB: get("pgpgin"), drops: get("drop_pagecache"), scannedPages: get("pgscan_kswapd") + get("pgscan_direct") };
  } catch {
    return { pgpginKiB: 0, drops: 0, scannedPages: 0 };
  }
}

/** CPU used by other processes right now (% of all cores), measured over `ms` while we are idle. */
export async function backgroundLoad(ms: number): Promise<number> {
  const meter = CpuMeter.start();
  await sleep(ms);
  return meter.stop().busyPct;
}

function readCpuLine(): { steal: number; busy: number; total: number } {
  try {
    const line = readFileSync("/proc/stat", "utf8").split("\n")[0] ?? "";
    // cpu user nice system idle iowait irq softirq steal guest guest_nice (guest is inside user)
    const v = line.trim().split(/\s+/).slice(1, 9).map(Number);
    const at = (i: number) => v[i] ?? 0;
    return { steal: at(7), busy: at(0) + at(1) + at(2) + at(5) + at(6), total: v.reduce((a, b) => a + b, 0) };
  } catch {
    return { steal: 0, busy: 0, total: 0 };
  }
}

// --- processes that print one JSON object per line --------------------------------------------------

export interface Line {
  /** Arrival time on the bench clock (ms). */
  readonly t: number;
  readonly data: Record<string, unknown>;
}

export class ProcError extends Error {
  override name = "ProcError";
}

/**
 * A child process (node running a script of ours or the fmq CLI) whose stdout lines are parsed as JSON
 * and stamped with their arrival time. Waiters fail at once if the process exits.
 */
export class Proc {
  readonly lines: Line[] = [];
  readonly stderr: string[] = [];
  readonly child: ChildProcess;
  readonly spawnedAt: number;
  exited: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  readonly #listeners = new Set<(line: Line | undefined) => void>();
  readonly #exit: Promise<void>;

  constructor(
    readonly name: string,
    command: string,
    args: readonly string[],
    env: NodeJS.ProcessEnv = process.env,
  ) {
    this.spawnedAt = now();
    this.child = track(spawn(command, args, { stdio: ["ignore", "pipe", "pipe"], env }));
    readline.createInterface({ input: this.child.stdout! }).on("line", (text) => {
      let data: Record<string, unknown>;
      try {
        data = JSON.parse(text) as Record<string, unknown>;
      } catch {
        data = { event: "(text)", text };
      }
      const line = { t: now(), data };
      this.lines.push(line);
      for (const listener of [...this.#listeners]) listener(line);
    });
    readline.createInterface({ input: this.child.stderr! }).on("line", (text) => {
      if (this.stderr.length < 200) this.stderr.push(text);
    });
    this.#exit = new Promise((resolve) => {
      this.child.on("exit", (code, signal) => {
        this.exited = { code, signal };
        for (const listener of [...this.#listeners]) listener(undefined);
        resolve();
      });
      this.child.on("error", (error) => {
        this.stderr.push(String(error));
      });
    });
  }

  /**
   * node <script> args..., with the allocator settings the `fmq` command (cli/fmq) runs with: fmq as
   * users run it, and the raw pipe on the same footing (the ceiling of our stack, allocator included).
   */
  static node(name: string, script: string, args: readonly string[], nodeFlags: readonly string[] = []): Proc {
    const tunables = [FMQ_MALLOC_TUNABLES, process.env.GLIBC_TUNABLES].filter(Boolean).join(":");
    return new Proc(name, process.execPath, [...nodeFlags, script, ...args], { ...process.env, GLIBC_TUNABLES: tunables });
  }

  get pid(): number | undefined {
    return this.child.pid;
  }

  /** Called for every line as it arrives (and with undefined when the process exits). */
  onLine(listener: (line: Line | undefined) => void): () => void {
    this.#listeners.add(listener);
    return () => this.#listeners.delete(listener);
  }

  /** The `n`-th line (1-based, counting from the start) for which `test` holds. */
  waitFor(test: (data: Record<string, unknown>) => boolean, timeoutMs: number, what: string, n = 1): Promise<Line> {
    return new Promise((resolve, reject) => {
      let seen = 0;
      for (const line of this.lines) {
        if (test(line.data) && ++seen === n) return resolve(line);
      }
      const timer = setTimeout(() => {
        stop();
        reject(new ProcError(`${this.name}: no ${what} after ${(timeoutMs / 1000).toFixed(0)} s (saw ${seen})${this.#tail()}`));
      }, timeoutMs);
      const stop = this.onLine((line) => {
        if (line === undefined) {
          stop();
          clearTimeout(timer);
          reject(new ProcError(`${this.name} exited (${this.exited?.code ?? this.exited?.signal}) before ${what}${this.#tail()}`));
        } else if (test(line.data) && ++seen === n) {
          stop();
          clearTimeout(timer);
          resolve(line);
        }
      });
      if (this.exited) {
        stop();
        clearTimeout(timer);
        reject(new ProcError(`${this.name} exited (${this.exited.code ?? this.exited.signal}) before ${what}${this.#tail()}`));
      }
    });
  }

  /** Lines reporting an error (fmq's {"event":"error"}). */
  errors(): string[] {
    return this.lines.filter((l) => l.data.event === "error").map((l) => String(l.data.message));
  }

  sample(): ProcSample | undefined {
    return sampleProcess(this.pid);
  }

  /** Freeze it (SIGSTOP): it holds its sockets and reads nothing, like a hung machine. */
  pause(): this {
    if (!this.exited) this.child.kill("SIGSTOP");
    return this;
  }

  /** Let a paused process run again (SIGCONT). */
  resume(): this {
    if (!this.exited) this.child.kill("SIGCONT");
    return this;
  }

  /** Read its peak RSS and CPU, then SIGTERM it and wait for it to go (SIGKILL after 3 s). */
  async stop(): Promise<ProcSample | undefined> {
    const last = this.sample();
    if (!this.exited) {
      this.child.kill("SIGTERM");
      const killer = setTimeout(() => this.child.kill("SIGKILL"), 3000);
      await this.#exit;
      clearTimeout(killer);
    }
    return last;
  }

  #tail(): string {
    const err = this.stderr.slice(-3).join(" | ");
    return err ? `; stderr: ${err}` : "";
  }
}

// --- plain commands (cp, rsync) -------------------------------------------------------------------

/** Run commands concurrently; resolves with the seconds from start to each one's exit. */
export async function timeCommands(commands: readonly (readonly string[])[], timeoutMs: number): Promise<number[]> {
  const start = now();
  return Promise.all(
    commands.map(
      ([command, ...args]) =>
        new Promise<number>((resolve, reject) => {
          const child = track(spawn(command!, args, { stdio: ["ignore", "ignore", "pipe"] }));
          let stderr = "";
          child.stderr!.on("data", (d: Buffer) => {
            stderr = (stderr + d.toString()).slice(-2000);
          });
          const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
          child.on("error", (error) => reject(error));
          child.on("exit", (code, signal) => {
            clearTimeout(timer);
            if (code === 0) resolve((now() - start) / 1000);
            else reject(new Error(`${command} ${args.join(" ")}: exit ${code ?? signal}: ${stderr.trim().split("\n").slice(-2).join(" | ")}`));
          });
        }),
    ),
  );
}

/** Is `command` on PATH? */
export function installed(command: string, versionFlag = "--version"): string | undefined {
  const out = spawnSync(command, [versionFlag], { encoding: "utf8" });
  if (out.error || out.status !== 0) return undefined;
  return (out.stdout || out.stderr).split("\n")[0]?.trim();
}

/**
 * Flush dirty pages so one contender's writeback does not land in the next one's timing, then measure
 * for a moment what everything else on the machine is using: returns that CPU use, % of all cores.
 */
export async function settle(): Promise<number> {
  spawnSync("sync");
  await sleep(50);
  return backgroundLoad(300);
}

// --- ports ----------------------------------------------------------------------------------------------

export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.unref();
    server.on("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      const port = typeof address === "object" && address ? address.port : 0;
      server.close(() => resolve(port));
    });
  });
}

/** Resolves once something accepts TCP connections on 127.0.0.1:port. */
export async function waitForPort(port: number, timeoutMs: number): Promise<void> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const ok = await new Promise<boolean>((resolve) => {
      const socket = net.connect(port, "127.0.0.1");
      socket.once("connect", () => {
        socket.destroy();
        resolve(true);
      });
      socket.once("error", () => resolve(false));
    });
    if (ok) return;
    if (now() > deadline) throw new Error(`nothing listening on 127.0.0.1:${port} after ${timeoutMs} ms`);
    await sleep(50);
  }
}

// --- statistics ---------------------------------------------------------------------------------------

export function median(values: readonly number[]): number {
  return percentile(values, 50);
}

/** Nearest-rank percentile (p in 0..100); NaN for no values. */
export function percentile(values: readonly number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  if (p === 50 && sorted.length % 2 === 0) {
    return ((sorted[sorted.length / 2 - 1] ?? NaN) + (sorted[sorted.length / 2] ?? NaN)) / 2;
  }
  const rank = Math.max(1, Math.ceil((p / 100) * sorted.length));
  return sorted[rank - 1] ?? NaN;
}

/** MB/s with MB = 10^6 bytes, as the baselines document uses. */
export function mbps(bytes: number, seconds: number): number {
  return seconds > 0 ? bytes / 1e6 / seconds : NaN;
}
