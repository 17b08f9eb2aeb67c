// The fmq benchmark: real `fmq` processes against the baselines measured in the same run (a bare
// zeromq.js credit pipe, cp, and rsync to a daemon on 127.0.0.1), every delivered byte checked by sha256.
//
//   npm run bench                        # everything, full sizes, median of 3 (by hand: minutes)
//   npm run bench -- --smoke             # tiny sizes, 1 repetition: proves the bench runs (< 1 minute)
//   npm run bench -- --only 1 --reps 5   # one workload
//
// Prints a markdown table on stdout (progress on stderr) and writes results.json, results.md and
// throughput.svg to --out. See bench/README.md.

import { Command, InvalidArgumentError, Option } from "commander";
import { existsSync, readFileSync, rmSync } from "node:fs";
import { mkdir, mkdtemp, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { spawnSync } from "node:child_process";
import { FMQ_CLI, RAW_PIPE, RsyncDaemon } from "./contenders.js";
import { Profiler } from "./cpu-split.js";
import { CpuMeter, backgroundLoad, installed, now, onExit } from "./measure.js";
import { holdFreePageReporting } from "./page-reporting.js";
import { watchOver } from "./watchdog.js";
import { probeUntilHealthy, probeWarning } from "./probe.js";
import { markdown, summarise, summariseResync, svgChart } from "./report.js";
import type { BenchConfig, WorkloadResult } from "./types.js";
import type { Context } from "./workloads/common.js";
import { latency } from "./workloads/latency.js";
import { manyFiles } from "./workloads/many-files.js";
import { resync } from "./workloads/resync.js";
import { singleFile } from "./workloads/single-file.js";

const WORKLOADS = ["1", "2", "3", "4", "5"] as const;
/** Run order: the metadata-heavy many-files workload before any GiB-sized delete (ext4 + discard makes
 *  metadata work slow for seconds after one; see performance-baselines.md §2). */
const RUN_ORDER = ["2", "3", "1", "4", "5"] as const;

const SMOKE = { size: "64M", files: "500", fileSize: "4k", latencyFiles: "10", fanout: "1,2", fanoutSize: "16M", reps: "1", waitHealthy: "0" };

const program = new Command()
  .name("bench")
  .description("fmq benchmark: real fmq processes against a raw zeromq.js pipe, cp and rsync, verified by sha256")
  .addOption(new Option("--size <bytes>", "workload 1: size of the one big file").default("1G"))
  .addOption(new Option("--files <n>", "workload 2: number of small files").default("10000"))
  .addOption(new Option("--file-size <bytes>", "workloads 2 and 3: size of each small file").default("4k"))
  .addOption(new Option("--latency-files <n>", "workload 3: files measured (p99 is the largest below 100)").default("200"))
  .addOption(new Option("--latency-stable-ms <list>", "workload 3: publisher --stable-ms values to measure").default("150,0"))
  .addOption(new Option("--fanout <list>", "workload 4: numbers of subscribers").default("1,4,16"))
  .addOption(new Option("--fanout-size <bytes>", "workload 4: size of the file").default("256M"))
  .addOption(new Option("--reps <n>", "repetitions per contender (the table shows the median)").default("3"))
  .option("--smoke", `tiny sizes, one repetition (${Object.entries(SMOKE).map(([k, v]) => `${k} ${v}`).join(", ")}); explicit flags still win`)
  .addOption(new Option("--only <list>", "workloads to run, e.g. 1,4").default(WORKLOADS.join(",")))
  .addOption(new Option("--out <dir>", "where results.json, results.md and throughput.svg go").default(fileURLToPath(new URL("../../bench/results/", import.meta.url))))
  .addOption(new Option("--chunk-size <bytes>", "fmq --chunk-size and the raw pipe's chunk").default("1M"))
  .addOption(new Option("--window <bytes>", "fmq --window and the raw pipe's window").default("16M"))
  .addOption(new Option("--stable-ms <ms>", "fmq publish --stable-ms for the throughput workloads").default("150"))
  .addOption(new Option("--fmq <cli.js>", "the fmq CLI to measure (e.g. another checkout's build)").default(FMQ_CLI))
  .addOption(new Option("--tmp <dir>", "where test data goes (removed at the end)").default(os.tmpdir()))
  .addOption(new Option("--perf <dir>", "record each timed run of workloads 1, 2 and 4 with perf (files in <dir>) and report where the CPU went: who, which thread, doing what (bench/cpu-split.ts)"))
  .option("--leave-page-reporting", "do not hold back the VM's free page reporting during the run (see bench/page-reporting.ts; --smoke never touches it)")
  .addOption(new Option("--wait-healthy <s>", "when the probe finds file creation slow (ext4's window after mass deletes), probe again every 30 s for up to this long before starting").default("330"));

program.parse();
const opts = program.opts<Record<string, string | boolean | undefined>>();

/** A flag's value: the smoke default unless given explicitly. */
/** "latencyFiles" -> "--latency-files", as the user typed it. */
const flagName = (name: string) => "--" + name.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase());

function flag(name: string): string {
  const smoke = (SMOKE as Record<string, string>)[name];
  if (opts.smoke && smoke !== undefined && program.getOptionValueSource(name) === "default") return smoke;
  return String(opts[name]);
}

/** A size in bytes, binary multiples ("4k", "256M", "1G", "1GiB"); "1GB" and "1MB" are refused (MB is 10^6 in the report). */
function size(name: string): number {
  const text = flag(name);
  const match = /^(\d+)\s*([kmg]?)(ib)?$/i.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`${flagName(name)}: not a size: "${text}" (e.g. 4k, 256M, 1G, 1GiB)`);
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  const value = Number(match[1]) * unit;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`${flagName(name)}: not a positive size: "${text}"`);
  return value;
}

/** A whole number, at least `least`. */
function count(name: string, least = 1): number {
  const text = flag(name);
  const value = /^\d+$/.test(text.trim()) ? Number(text) : NaN;
  if (!Number.isSafeInteger(value) || value < least) throw new InvalidArgumentError(`${flagName(name)}: not a whole number of at least ${least}: "${text}"`);
  return value;
}

/** Distinct whole numbers of at least `least`. */
function list(name: string, least: number): number[] {
  const values = flag(name)
    .split(",")
    .map((s) => s.trim())
    .filter(Boolean)
    .map((s) => {
      const value = /^\d+$/.test(s) ? Number(s) : NaN;
      if (!Number.isSafeInteger(value) || value < least) throw new InvalidArgumentError(`${flagName(name)}: not a list of whole numbers of at least ${least}: "${flag(name)}"`);
      return value;
    });
  if (values.length === 0) throw new InvalidArgumentError(`${flagName(name)}: empty`);
  if (new Set(values).size !== values.length) throw new InvalidArgumentError(`${flagName(name)}: a value given twice: "${flag(name)}"`);
  return values;
}

async function main(): Promise<number> {
  const started = now();
  const startedAt = new Date().toISOString();
  const cpu = CpuMeter.start();
  const only = new Set(String(opts.only).split(",").map((s) => s.trim()));
  for (const id of only) if (!(WORKLOADS as readonly string[]).includes(id)) throw new InvalidArgumentError(`--only: no workload "${id}" (have ${WORKLOADS.join(", ")})`);
  const fmqCli = path.resolve(String(opts.fmq));
  for (const file of [fmqCli, RAW_PIPE]) if (!existsSync(file)) throw new Error(`${file} is missing: run "npm run build" first`);

  const tmp = await mkdtemp(path.join(String(opts.tmp), "fmq-bench-"));
  onExit(() => rmSync(tmp, { recursive: true, force: true }));
  const profiler = opts.perf === undefined ? undefined : Profiler.create(path.resolve(String(opts.perf)), tmp);
  if (typeof profiler === "string") throw new InvalidArgumentError(`--perf: ${profiler}`);
  const config: BenchConfig = {
    size: size("size"),
    files: count("files"),
    fileSize: size("fileSize"),
    latencyFiles: count("latencyFiles"),
    latencyStableMs: list("latencyStableMs", 0),
    fanout: list("fanout", 1),
    fanoutSize: size("fanoutSize"),
    reps: count("reps"),
    chunkSize: size("chunkSize"),
    window: size("window"),
    stableMs: count("stableMs", 0),
    smoke: opts.smoke === true,
    fmqCli,
    tmp,
  };
  // (A window below one chunk: the raw pipe never sends; a file under 4 MiB: workload 5's change "in the
  // middle" would grow it instead.)
  if (config.window < config.chunkSize) throw new InvalidArgumentError(`--window (${config.window}) must be at least --chunk-size (${config.chunkSize})`);
  if (only.has("5") && config.size < 4 * 1024 ** 2) throw new InvalidArgumentError(`--size must be at least 4M when workload 5 runs (it changes 1 MiB inside the file)`);
  const log = (line: string) => process.stderr.write(line + "\n");

  const rsyncVersion = installed("rsync");
  const rsyncMissing = rsyncVersion ? undefined : "rsync: not installed (apt-get install rsync); its column is empty.";
  if (rsyncMissing) log(rsyncMissing);
  // (Before the probe: its figures too are taken with freed memory kept.)
  const reporting = holdFreePageReporting(opts.leavePageReporting === true || opts.smoke === true);
  log(reporting.text);
  // If we are killed outright, what we start, our temporary directory and the setting still go.
  watchOver({ tmp, settings: reporting.putBack });
  const rsync = rsyncVersion ? await RsyncDaemon.start(path.join(tmp, "rsync")) : undefined;
  const ctx: Context = { config, rsync, log, ...(profiler ? { profiler } : {}) };
  const probe = await probeUntilHealthy(path.join(tmp, "probe"), count("waitHealthy", 0), log);
  const slowMachine = probeWarning(probe);
  if (slowMachine) log(`warning: ${slowMachine}`);
  const machine = {
    ...machineFacts(rsyncVersion, tmp),
    fmq: fmqVersion(fmqCli),
    "new-file write MB/s": Math.round(probe.writeMBps),
    "4 KiB file create µs": Math.round(probe.createUs),
    "new process memory first / second write MB/s": `${Math.round(probe.memoryFirstTouchMBps)} / ${Math.round(probe.memorySecondTouchMBps)}`,
    "free page reporting": reporting.state,
  };
  log(`machine: ${Object.entries(machine).map(([k, v]) => `${k} ${v}`).join("; ")}`);
  log(`config: ${JSON.stringify({ ...config, tmp: undefined })}`);
  const loadAtStart = await backgroundLoad(1000);
  const busy =
    loadAtStart > 10
      ? `Other processes were using ${loadAtStart.toFixed(0)} % of the CPUs when the bench started: absolute figures are low; compare the ratios, which are paired per repetition.`
      : undefined;
  if (busy) log(`warning: ${busy}`);

  const workloads: WorkloadResult[] = [];
  const failures: string[] = [];
  for (const id of RUN_ORDER) {
    if (!only.has(id)) continue;
    try {
      if (id === "1") workloads.push(await singleFile("1", `one ${human(config.size)} file`, config.size, 1, ctx));
      if (id === "2") workloads.push(await manyFiles(ctx));
      if (id === "3") workloads.push(await latency(ctx));
      if (id === "4") {
        for (const k of config.fanout) {
          workloads.push(await singleFile(`4/${k}`, `fan-out ${k} × ${human(config.fanoutSize)}`, config.fanoutSize, k, ctx));
        }
      }
      if (id === "5") workloads.push(await resync(ctx));
    } catch (error) {
      const message = `workload ${id}: ${error instanceof Error ? error.message : String(error)}`;
      log(`FAILED ${message}`);
      failures.push(message);
    }
  }
  await rsync?.stop();

  for (const w of workloads) {
    for (const r of w.runs) if (!r.ok) failures.push(`workload ${w.id} rep ${r.rep} ${r.contender}: ${r.error ?? "failed"}`);
    for (const l of w.latency ?? []) if (!l.ok) failures.push(`workload ${w.id} ${l.contender}: ${l.error ?? "failed"}`);
    for (const s of w.resync?.samples ?? []) if (!s.ok) failures.push(`workload ${s.case} rep ${s.rep} ${s.contender}: ${s.error ?? "failed"}`);
  }
  // Sort for the report: 1, 2, 3, 4/..., 5.
  workloads.sort((a, b) => a.id.localeCompare(b.id, "en", { numeric: true }));

  const cpuShare = cpu.stop();
  const input = {
    startedAt,
    durationS: (now() - started) / 1000,
    command: `node dist/bench/bench.js ${process.argv.slice(2).join(" ")}`.trim(),
    machine,
    stealPct: cpuShare.stealPct,
    loadAtStartPct: loadAtStart,
    disturbance: cpuShare.disturbance,
    workloads,
    notes: [
      ...(slowMachine ? [slowMachine] : []),
      ...(busy ? [busy] : []),
      ...(profiler ? [`Profiled (--perf): every timed run of workloads 1, 2 and 4 was recorded with perf record -a at ${profiler.hz} Hz, and Node processes ran with --perf-basic-prof; that costs a few per cent, so take this run's times as the split's context, not as the table's figures.`] : []),
      ...(reporting.state === "absent" ? [] : [`This VM hands memory it frees back to its host (free page reporting), and writing into such memory again is slow: ${reporting.text}.`]),
      "Every delivered file was checked by sha256 against its source; a run that failed the check counts as failed, not in the figures.",
      "Sources are written fresh with random bytes and read once before timing (warm page cache for everyone); the disk is synced before each run; destinations are new each run (no fsync by anyone). Right before each run of workloads 1, 2 and 4 the bench writes as many bytes as the run will write into a scratch file and deletes it, so that every contender writes into memory freed a moment ago (see bench/README.md: on these VMs older free memory may have gone back to the host and is slow to write).",
      "Contenders run in a different order each repetition (rotated by one, and reversed every other time, so that none always follows the same one). Steal = hypervisor steal (/proc/stat) during the run; other load = CPU used by other processes in the 0.3 s before the run, % of all cores. Figures taken under either are slower: compare ratios rather than MB/s.",
    ],
    failures,
  };
  const md = markdown(input, rsyncMissing);
  const out = String(opts.out);
  await mkdir(out, { recursive: true });
  const json = { ...input, config: { ...config, tmp: undefined }, summaries: Object.fromEntries(workloads.map((w) => [w.id, w.resync ? summariseResync(w) : summarise(w)])) };
  await writeFile(path.join(out, "results.json"), JSON.stringify(json, (_, v: unknown) => (typeof v === "number" && !Number.isFinite(v) ? null : v), 2) + "\n");
  await writeFile(path.join(out, "results.md"), md);
  const svg = svgChart(workloads);
  if (svg) await writeFile(path.join(out, "throughput.svg"), svg);
  process.stdout.write(md + "\n");
  log(`wrote ${path.join(out, "results.json")}, results.md${svg ? ", throughput.svg" : ""}; ${input.durationS.toFixed(0)} s in all`);
  if (failures.length) log(`${failures.length} FAILED: exit 1`);
  return failures.length ? 1 : 0;
}

function machineFacts(rsyncVersion: string | undefined, tmp: string): Record<string, string | number> {
  const cpuinfo = safeRead("/proc/cpuinfo");
  const model = /^model name\s*:\s*(.+)$/m.exec(cpuinfo)?.[1] ?? os.cpus()[0]?.model ?? "?";
  const zmqPackage = fileURLToPath(new URL("../../node_modules/zeromq/package.json", import.meta.url));
  const zmq = (JSON.parse(safeRead(zmqPackage) || "{}") as { version?: string }).version ?? "?";
  const df = spawnSync("df", ["-T", tmp], { encoding: "utf8" }).stdout?.split("\n")[1]?.split(/\s+/);
  return {
    cpus: os.availableParallelism(),
    cpu: model.replace(/\s+/g, " "),
    memory: `${(os.totalmem() / 1024 ** 3).toFixed(0)} GiB`,
    kernel: os.release(),
    node: process.version,
    "zeromq.js": zmq,
    cp: installed("cp") ?? "?",
    rsync: rsyncVersion ?? "not installed",
    tmp: `${tmp} (${df?.[1] ?? "?"} on ${df?.[0] ?? "?"})`,
  };
}

/** Which fmq is measured: its path, and the commit of the checkout it was built in (if any). */
function fmqVersion(cli: string): string {
  const root = path.resolve(path.dirname(cli), "../..");
  const git = spawnSync("git", ["-C", root, "describe", "--always", "--dirty"], { encoding: "utf8" });
  return git.status === 0 ? `${cli} (${git.stdout.trim()})` : cli;
}

function safeRead(file: string): string {
  try {
    return readFileSync(file, "utf8");
  } catch {
    return "";
  }
}

function human(bytes: number): string {
  if (bytes >= 1024 ** 3 && bytes % 1024 ** 3 === 0) return `${bytes / 1024 ** 3} GiB`;
  if (bytes >= 1024 ** 2 && bytes % 1024 ** 2 === 0) return `${bytes / 1024 ** 2} MiB`;
  if (bytes >= 1024 && bytes % 1024 === 0) return `${bytes / 1024} KiB`;
  return `${bytes} B`;
}

main().then(
  (code) => process.exit(code),
  (error: unknown) => {
    process.stderr.write(`bench: ${error instanceof Error ? error.message : String(error)}\n`);
    process.exit(1);
  },
);
