// Where a timed run's CPU went (`bench --perf <dir>`): `perf record -a` over the run, then every sample in
// the run's timed window put under who (the server, a client, anyone else, or nobody: idle), which thread
// (the main thread, a worker thread such as fmq's placing thread, V8's helper threads, libuv's pool,
// libzmq's I/O thread) and what it was doing (hashing, collecting garbage, compiling, the kernel's
// write/read/socket/page-fault work, JavaScript...). The issue asks for profile evidence of what limits
// each target; this makes it one command, with the same clock and the same contenders as the table.
//
// Node processes get --perf-basic-prof (see Profiler.nodeFlags) so that their JavaScript and WebAssembly
// frames have names: xxhash-wasm's frames are how hashing is told apart. Profiling costs a few per cent,
// so a --perf run's times are for the split, not for the table.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { closeSync, constants, existsSync, mkdirSync, openSync, rmSync } from "node:fs";
import { open } from "node:fs/promises";
import path from "node:path";
import { performance } from "node:perf_hooks";
import readline from "node:readline";
import { setTimeout as sleep } from "node:timers/promises";
import { installed, track } from "./measure.js";

/** Sampling rate: 499 Hz on every CPU (a prime, so as not to beat with periodic work). */
export const PERF_HZ = 499;

/** The bench's clock (performance.now(), ms) on perf's (-k mono: CLOCK_MONOTONIC, s). Both are monotonic. */
const MONO_OFFSET_MS = Number(process.hrtime.bigint()) / 1e6 - performance.now();
export const monoSeconds = (benchMs: number): number => (benchMs + MONO_OFFSET_MS) / 1000;

/** One perf sample: who was on a CPU, and its call chain (innermost frame first: "symbol (object)"). */
export interface Sample {
  readonly comm: string;
  readonly pid: number;
  readonly tid: number;
  /** CLOCK_MONOTONIC seconds. */
  readonly time: number;
  readonly frames: readonly string[];
}

export type ThreadKind = "main" | "worker thread" | "V8 helpers" | "libuv pool" | "libzmq I/O" | "other threads";

/**
 * Which thread a sample ran on, from its name and call chain. fmq and the raw pipe are Node processes:
 * V8's helpers run tasks under PlatformWorkerThread, libuv's pool under uv__fs_work and the like, a
 * worker_threads Worker under Worker::Run; libzmq names its I/O threads ZMQbg/IO/n.
 */
export function threadKind(s: Sample): ThreadKind {
  if (s.pid === s.tid) return "main";
  if (s.comm.startsWith("ZMQbg")) return "libzmq I/O";
  const chain = s.frames.join("\n");
  if (/worker::Worker::Run/.test(chain)) return "worker thread";
  if (/PlatformWorkerThread|DefaultJobWorker|WorkerThreadsTaskRunner/.test(chain)) return "V8 helpers";
  if (/uv__fs_work|uv__work_done|\bworker \(|uv_thread_start/.test(chain)) return "libuv pool";
  return "other threads";
}

/**
 * What a sample was doing, by the first rule its call chain matches (in this order: hashing inside a
 * garbage collection is hashing; a kernel write under the collector is the collector's).
 */
export function activity(s: Sample): string {
  const chain = s.frames.join("\n");
  const leaf = s.frames[0] ?? "";
  if (/wasm-function|h64Raw|xxhash/.test(chain)) return "hash (xxhash)";
  if (/Heap::|Scaveng|MarkCompact|ConcurrentMarking|Sweeper|IncrementalMarking|MinorGC|MarkingVisitor|ArrayBufferSweeper/.test(chain)) return "garbage collection";
  if (/compiler::|OptimizingCompileDispatcher|Compiler::|Parser::|CompileLazy|Maglev|maglev|baseline::/.test(chain)) return "compiling (JIT)";
  if (/asm_exc_page_fault/.test(chain)) return "kernel: page faults";
  if (/copy_file_range|do_splice|do_sendfile/.test(chain)) return "kernel: copy_file_range (cp)";
  // (This kernel calls ksys_read and ksys_write straight from do_syscall_64: no __x64_sys_read frame.)
  if (/__sys_(sendto|sendmsg|recvfrom|recvmsg)|sock_(read|write)_iter|tcp_(sendmsg|recvmsg)/.test(chain)) return "kernel: socket";
  if (/__x64_sys_(p?write|writev|pwritev)|ksys_p?write|vfs_write/.test(chain)) return "kernel: write";
  if (/__x64_sys_(p?read|readv|preadv)\b|ksys_p?read|vfs_read/.test(chain)) return "kernel: read";
  if (/__x64_sys_(openat|close|newfstat|statx|newlstat|newstat|rename|renameat2?|unlink|mkdir|readlink|getdents64)\b/.test(chain)) return "kernel: files (open, stat, rename...)";
  if (/__x64_sys_(epoll_wait|epoll_pwait|poll|ppoll|futex)/.test(chain)) return "kernel: waiting (poll, futex)";
  if (/\[kernel/.test(leaf)) return "kernel: other";
  if (/memmove|memcpy|memset/.test(leaf)) return "memory copies";
  if (/libzmq|zmq::/.test(leaf)) return "libzmq";
  if (/malloc|_int_free|\bfree\b|cfree/.test(leaf)) return "malloc";
  if (/JS:|Builtins_|Builtin:|Interpreter|\bLazyCompile/.test(chain)) return "JavaScript";
  return "native (Node, V8, libc)";
}

/** Reads `perf script` output: samples, and the process tree from its fork records. */
export class PerfScriptReader {
  /** pid → its parent's pid (processes only: a thread has its process's pid). */
  readonly parents = new Map<number, number>();
  #head: string | undefined;
  #frames: string[] = [];

  /** Feed one line; returns a sample when one is complete (at the blank line after its frames). */
  line(text: string): Sample | undefined {
    const fork = /PERF_RECORD_FORK\((\d+):\d+\):\((\d+):\d+\)/.exec(text);
    if (fork) {
      if (fork[1] !== fork[2]) this.parents.set(Number(fork[1]), Number(fork[2]));
      return undefined;
    }
    if (text.includes("PERF_RECORD_")) return undefined;
    if (text.trim() === "") return this.flush();
    if (/^\s/.test(text) && this.#head !== undefined && /^\s+[0-9a-f]+ /.test(text)) {
      this.#frames.push(text.trim().replace(/^[0-9a-f]+ /, ""));
      return undefined;
    }
    const done = this.flush();
    this.#head = text;
    return done;
  }

  flush(): Sample | undefined {
    const head = this.#head;
    const frames = this.#frames;
    this.#head = undefined;
    this.#frames = [];
    if (head === undefined) return undefined;
    const m = /^\s*(.+?)\s+(\d+)\/(\d+)\s+([\d.]+):/.exec(head);
    if (!m) return undefined;
    return { comm: m[1]!, pid: Number(m[2]), tid: Number(m[3]), time: Number(m[4]), frames };
  }

  /** The role of `pid`: its own, or its nearest ancestor's that has one. */
  roleOf(pid: number, roles: ReadonlyMap<number, string>): string | undefined {
    for (let at: number | undefined = pid, hops = 0; at !== undefined && hops < 64; at = this.parents.get(at), hops++) {
      const role = roles.get(at);
      if (role !== undefined) return role;
    }
    return undefined;
  }
}

export interface CpuSplit {
  /** The perf.data file (kept for `perf report`). */
  readonly file: string;
  /** The timed window, seconds. */
  readonly windowS: number;
  /** CPU-seconds (samples ÷ rate) per role: the roles given, "others", and "idle". */
  readonly byRole: Record<string, number>;
  /** CPU-seconds per role · thread · activity, largest first. */
  readonly rows: readonly { readonly role: string; readonly thread: ThreadKind; readonly activity: string; readonly seconds: number }[];
}

/** Who's who in a run: pids (their descendants too) and, for commands we do not spawn ourselves, names. */
export interface Roles {
  readonly pids: ReadonlyMap<number, string>;
  /** A process named so (comm) that no pid rule claims: e.g. "rsync" → "client". */
  readonly comms?: ReadonlyMap<string, string>;
}

/** Split the samples of `file` in [fromS, toS] (CLOCK_MONOTONIC seconds). */
export function splitSamples(samples: Iterable<Sample>, reader: PerfScriptReader, fromS: number, toS: number, roles: Roles, hz: number, file: string): CpuSplit {
  const byRole = new Map<string, number>();
  const rows = new Map<string, { role: string; thread: ThreadKind; activity: string; n: number }>();
  for (const s of samples) {
    if (s.time < fromS || s.time > toS) continue;
    let role: string;
    let thread: ThreadKind;
    let what: string;
    if (s.pid === 0) {
      role = "idle";
      thread = "main";
      what = "idle";
    } else {
      role = reader.roleOf(s.pid, roles.pids) ?? roles.comms?.get(s.comm) ?? "others";
      thread = threadKind(s);
      what = activity(s);
    }
    byRole.set(role, (byRole.get(role) ?? 0) + 1);
    const key = `${role}\0${thread}\0${what}`;
    const row = rows.get(key) ?? { role, thread, activity: what, n: 0 };
    row.n++;
    rows.set(key, row);
  }
  return {
    file,
    windowS: toS - fromS,
    byRole: Object.fromEntries([...byRole].map(([role, n]) => [role, n / hz])),
    rows: [...rows.values()].sort((a, b) => b.n - a.n).map(({ n, ...row }) => ({ ...row, seconds: n / hz })),
  };
}

/** Profiles the bench's timed runs, one perf.data file each, in `dir`. */
export class Profiler {
  #count = 0;

  private constructor(
    readonly dir: string,
    private readonly benchTmp: string,
    readonly hz: number,
  ) {}

  /**
   * A profiler writing into `dir`, or the reason there can be none here. `benchTmp`: the bench's own
   * temporary directory, where perf's control FIFOs go: so perf's command line names it, and the
   * watchdog (watchdog.ts) stops perf with the rest if the bench is killed outright, instead of leaving
   * it to record the machine until the disk is full.
   */
  static create(dir: string, benchTmp: string, hz = PERF_HZ): Profiler | string {
    if (!installed("perf")) return "perf is not installed (Debian/Ubuntu: apt-get install linux-perf, or linux-tools-$(uname -r))";
    // (Installed is not allowed: recording the whole machine takes root or kernel.perf_event_paranoid <= 0.)
    const tried = spawnSync("perf", ["record", "-a", "-o", "/dev/null", "--", "true"], { encoding: "utf8", timeout: 30_000 });
    if (tried.status !== 0) {
      // (perf says "Error:" on a line of its own, then why.)
      const said = (tried.stderr ?? "").split("\n").map((line) => line.trim()).filter((line) => line && line !== "Error:");
      return `perf cannot record the whole machine here (run as root, or sysctl kernel.perf_event_paranoid=0): ${said[0] ?? String(tried.error ?? tried.signal ?? tried.status)}`;
    }
    mkdirSync(dir, { recursive: true });
    return new Profiler(dir, benchTmp, hz);
  }

  /** Node flags for the processes profiled: names for JIT-compiled frames. */
  readonly nodeFlags: readonly string[] = ["--perf-basic-prof"];

  /** Start recording the whole machine for the run `label` (contender and repetition). */
  async start(label: string): Promise<Recording> {
    const file = path.join(this.dir, `${String(++this.#count).padStart(3, "0")}-${label.replace(/[^A-Za-z0-9]+/g, "-").replace(/^-|-$/g, "")}.data`);
    // perf starts with its events off (-D -1) and turns them on when told through a FIFO, answering on
    // another once it has: before it can, it lists every process and thread on the machine, which took
    // longer than a 0.1 s run of cp (its file existed long before; the first version waited for that,
    // and recorded 10 ms of cp's 96).
    const control = path.join(this.benchTmp, `perf-${this.#count}.ctl`);
    const ack = path.join(this.benchTmp, `perf-${this.#count}.ack`);
    for (const fifo of [control, ack]) {
      rmSync(fifo, { force: true });
      const made = spawnSync("mkfifo", [fifo]);
      if (made.status !== 0) throw new Error(`mkfifo ${fifo}: ${made.stderr?.toString().trim() ?? made.error}`);
    }
    const child = track(spawn("perf", ["record", "-a", "-g", "-k", "mono", "-F", String(this.hz), "-D", "-1", "--control", `fifo:${control},${ack}`, "-o", file], { stdio: ["ignore", "ignore", "pipe"] }));
    let stderr = "";
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-1000)));
    const exited = new Promise<number | null>((resolve) => child.on("exit", (code) => resolve(code)));
    const enabled = (async () => {
      const ctl = await open(control, "w");
      try {
        await ctl.write("enable\n");
      } finally {
        await ctl.close();
      }
      const answer = await open(ack, "r");
      try {
        const buffer = Buffer.alloc(16);
        const { bytesRead } = await answer.read(buffer, 0, buffer.length, null);
        if (!buffer.subarray(0, bytesRead).toString().startsWith("ack")) throw new Error(`perf answered "${buffer.subarray(0, bytesRead).toString().trim()}"`);
      } finally {
        await answer.close();
      }
    })();
    const failed = exited.then((code) => {
      throw new Error(`perf record exited (${code}) before recording: ${stderr.trim() || "no output"}`);
    });
    const timer = new AbortController();
    const limit = sleep(30_000, undefined, { signal: timer.signal }).then(() => {
      throw new Error(`perf record did not start recording within 30 s: ${stderr.trim() || "no output"}`);
    });
    try {
      await Promise.race([enabled, failed, limit]);
    } catch (error) {
      child.kill("SIGKILL");
      // (An open of a FIFO waits for its other end: opened here both ways, ours are let go.)
      for (const fifo of [control, ack]) closeSync(openSync(fifo, constants.O_RDWR));
      enabled.catch(() => undefined);
      throw error;
    } finally {
      timer.abort();
      failed.catch(() => undefined);
      limit.catch(() => undefined);
    }
    return new Recording(file, child, exited, this.hz, () => stderr, [control, ack]);
  }
}

/** One run's recording. */
export class Recording {
  constructor(
    readonly file: string,
    private readonly child: ChildProcess,
    private readonly exited: Promise<number | null>,
    private readonly hz: number,
    private readonly stderr: () => string,
    private readonly fifos: readonly string[],
  ) {}

  /** Stop recording (SIGINT: perf writes its file out) and split what it saw between `fromMs` and `toMs` (bench clock). */
  async split(fromMs: number, toMs: number, roles: Roles): Promise<CpuSplit> {
    await this.stop();
    const reader = new PerfScriptReader();
    const script = spawn("perf", ["script", "-i", this.file, "--show-task-events", "-F", "comm,pid,tid,time,ip,sym,dso"], { stdio: ["ignore", "pipe", "ignore"] });
    const samples: Sample[] = [];
    for await (const text of readline.createInterface({ input: script.stdout })) {
      const sample = reader.line(text);
      if (sample) samples.push(sample);
    }
    const last = reader.flush();
    if (last) samples.push(last);
    return splitSamples(samples, reader, monoSeconds(fromMs), monoSeconds(toMs), roles, this.hz, this.file);
  }

  async stop(): Promise<void> {
    if (this.child.exitCode === null) this.child.kill("SIGINT");
    const code = await this.exited;
    for (const fifo of this.fifos) rmSync(fifo, { force: true });
    if (code !== 0 && !existsSync(this.file)) throw new Error(`perf record failed (${code}): ${this.stderr().trim()}`);
  }
}
