// bench --perf: perf's samples put under who, which thread and what, in the run's window; and the whole
// path for real (perf record of a Node process hashing with xxhash-wasm) where perf can record here.

import { spawn, spawnSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it, onTestFinished } from "vitest";
import { PerfScriptReader, Profiler, activity, monoSeconds, splitSamples, threadKind, type Sample } from "../../bench/cpu-split.js";
import { cpuSplitMarkdown } from "../../bench/report.js";
import { now } from "../../bench/measure.js";
import type { Run } from "../../bench/types.js";
import { tempDir } from "../helpers/tmp.js";

// What `perf script --show-task-events -F comm,pid,tid,time,ip,sym,dso` prints (trimmed stacks).
const SCRIPT = `
            node   100/100   10.000000: PERF_RECORD_FORK(200:200):(100:100)
            node   200/200   10.100000: 
	    7f0000000001 wasm-function[5]-5-turbofan (/tmp/perf-200.map)
	    7f0000000002 JS:*h64Raw file:///x/node_modules/xxhash-wasm/esm/xxhash-wasm.js:1:10994 (/tmp/perf-200.map)
	    55555555 node::Start (/usr/bin/node)

            node   200/203   10.200000: 
	    ffffffff81000001 copy_folio_from_iter_atomic ([kernel.kallsyms])
	    ffffffff81000002 ext4_buffered_write_iter ([kernel.kallsyms])
	    ffffffff81000003 vfs_write ([kernel.kallsyms])
	    ffffffff81000004 __x64_sys_pwrite64 ([kernel.kallsyms])
	    ffffffff81000005 do_syscall_64 ([kernel.kallsyms])
	    7f0000000010 __libc_pwrite64 (/usr/lib/x86_64-linux-gnu/libc.so.6)
	    5555555a uv__fs_work (/usr/bin/node)
	    5555555b worker (/usr/bin/node)

      ZMQbg/IO/0   200/205   10.300000: 
	    ffffffff81000010 tcp_recvmsg_locked ([kernel.kallsyms])
	    ffffffff81000011 sock_recvmsg ([kernel.kallsyms])
	    ffffffff81000012 __sys_recvfrom ([kernel.kallsyms])

            node   200/204   10.400000: 
	    5555556a v8::internal::Scavenger::ScavengePage (/usr/bin/node)
	    5555556b v8::internal::ScavengerCollector::JobTask::Run (/usr/bin/node)
	    5555556c node::(anonymous namespace)::PlatformWorkerThread (/usr/bin/node)

         swapper     0/0     10.450000: 
	    ffffffff8224215b pv_native_safe_halt ([kernel.kallsyms])

            node   300/300   10.500000: 
	    5555557a JS:*sendSmallFiles file:///x/dist/src/server/connection.js:870:26 (/tmp/perf-300.map)

            node   200/200   12.000000: 
	    7f0000000001 wasm-function[5]-5-turbofan (/tmp/perf-200.map)
`;

function read(text: string): { reader: PerfScriptReader; samples: Sample[] } {
  const reader = new PerfScriptReader();
  const samples: Sample[] = [];
  for (const line of text.split("\n")) {
    const sample = reader.line(line);
    if (sample) samples.push(sample);
  }
  const last = reader.flush();
  if (last) samples.push(last);
  return { reader, samples };
}

describe("bench --perf: where the CPU went", () => {
  it("reads samples with their frames, and the process tree from fork records", () => {
    const { reader, samples } = read(SCRIPT);
    expect(samples.map((s) => [s.comm, s.pid, s.tid])).toEqual([
      ["node", 200, 200],
      ["node", 200, 203],
      ["ZMQbg/IO/0", 200, 205],
      ["node", 200, 204],
      ["swapper", 0, 0],
      ["node", 300, 300],
      ["node", 200, 200],
    ]);
    expect(samples[0]!.frames[1]).toMatch(/^JS:\*h64Raw /);
    expect(reader.parents.get(200)).toBe(100);
    // A descendant takes its ancestor's role unless it has one of its own.
    expect(reader.roleOf(200, new Map([[100, "server"]]))).toBe("server");
    expect(reader.roleOf(200, new Map([[100, "server"], [200, "client"]]))).toBe("client");
    expect(reader.roleOf(300, new Map([[100, "server"]]))).toBeUndefined();
  });

  it("tells the thread and the activity from the call chain", () => {
    const { samples } = read(SCRIPT);
    const [hash, write, socket, gc] = samples;
    expect([threadKind(hash!), activity(hash!)]).toEqual(["main", "hash (xxhash)"]);
    expect([threadKind(write!), activity(write!)]).toEqual(["libuv pool", "kernel: write"]);
    expect([threadKind(socket!), activity(socket!)]).toEqual(["libzmq I/O", "kernel: socket"]);
    expect([threadKind(gc!), activity(gc!)]).toEqual(["V8 helpers", "garbage collection"]);
    expect(activity(samples[5]!)).toBe("JavaScript");
  });

  it("counts only the samples inside the window, by role (idle and others apart), in CPU-seconds", () => {
    const { reader, samples } = read(SCRIPT);
    const split = splitSamples(samples, reader, 10.05, 11, { pids: new Map([[200, "client"]]) }, 10, "f.data");
    // The sample at 12.0 s is outside; pid 300 has no role: "others".
    expect(split.byRole).toEqual({ client: 0.4, idle: 0.1, others: 0.1 });
    expect(split.windowS).toBeCloseTo(0.95, 9);
    expect(split.rows.find((r) => r.activity === "hash (xxhash)")).toEqual({ role: "client", thread: "main", activity: "hash (xxhash)", seconds: 0.1 });
    // A command we do not number is claimed by its name.
    const named = splitSamples(samples, reader, 10.45, 10.55, { pids: new Map(), comms: new Map([["node", "client"]]) }, 10, "f.data");
    expect(named.byRole).toEqual({ idle: 0.1, client: 0.1 });
  });

  it("renders a table per workload: contenders as columns, means over repetitions", () => {
    const split = (seconds: number) => ({ file: "x.data", windowS: 1, byRole: { client: seconds }, rows: [{ role: "client", thread: "main" as const, activity: "hash (xxhash)", seconds }] });
    const runs: Run[] = [1, 3].map((seconds, i) => ({ contender: "fmq", rep: i + 1, ok: true, seconds: 1, wallSeconds: 1, bytes: 1, files: 1, stealPct: 0, cpuSplit: split(seconds) }));
    const lines = cpuSplitMarkdown({ id: "1", title: "one file", params: {}, runs, notes: [] });
    expect(lines[0]).toBe("## 1 one file: where the CPU went (perf)");
    expect(lines).toContain("| **client** | 2.000 |");
    expect(lines).toContain("| client · main · hash (xxhash) | 2.000 |");
    expect(cpuSplitMarkdown({ id: "1", title: "one file", params: {}, runs: runs.map(({ cpuSplit: _, ...r }) => r), notes: [] })).toEqual([]);
  });

  // The whole path: perf turned on through its control FIFO, a Node process that only hashes, the window
  // on the bench's clock. Where perf is missing or may not record the machine, said and skipped.
  const perfWorks = spawnSync("perf", ["record", "-a", "-o", "/dev/null", "--", "true"], { stdio: "ignore" }).status === 0;
  it.skipIf(!perfWorks)("records a real process: a Node process hashing with xxhash-wasm is mostly 'client · main · hash'", async () => {
    // (The bench's child tracking stops its children on a signal, then exits: not in this test worker.)
    const signals = ["SIGINT", "SIGTERM", "SIGHUP"] as const;
    const before = new Map(signals.map((signal) => [signal, process.listeners(signal)]));
    onTestFinished(() => {
      for (const signal of signals) for (const listener of process.listeners(signal)) if (!before.get(signal)!.includes(listener)) process.off(signal, listener);
    });
    const dir = await tempDir("cpu-split-");
    const profiler = Profiler.create(dir, dir);
    if (typeof profiler === "string") throw new Error(profiler);
    const recording = await profiler.start("hashing");
    const script = `
      import xxhash from "xxhash-wasm";
      const xx = await xxhash();
      const data = new Uint8Array(1 << 20).fill(7);
      const before = process.cpuUsage();
      console.log("start");
      for (let i = 0; i < 3000; i++) xx.h64Raw(data);
      const used = process.cpuUsage(before);
      console.log("end", (used.user + used.system) / 1e6);`;
    const spawnedAt = now();
    const child = spawn(process.execPath, [...profiler.nodeFlags, "--input-type=module", "-e", script], {
      cwd: fileURLToPath(new URL("../../", import.meta.url)),
      stdio: ["ignore", "pipe", "inherit"],
    });
    let from = NaN;
    let to = NaN;
    let out = "";
    child.stdout!.on("data", (d: Buffer) => {
      out += d.toString();
      if (Number.isNaN(from) && out.includes("start")) from = now();
      if (Number.isNaN(to) && out.includes("end")) to = now();
    });
    await new Promise((resolve) => child.on("exit", resolve));
    // (3 GiB hashed: about 0.5 CPU-s alone; its own count of what it used, however the machine is shared.)
    const used = Number(/end ([\d.]+)/.exec(out)?.[1]);
    expect(used).toBeGreaterThan(0.2);
    const split = await recording.split(from, to, { pids: new Map([[child.pid!, "client"]]) });
    // One busy thread at 499 Hz: about 250 samples, nearly all hashing, as much CPU as it says it used.
    const client = split.byRole.client ?? 0;
    expect(client).toBeGreaterThan(0.8 * used);
    const hashing = split.rows.filter((r) => r.role === "client" && r.thread === "main" && r.activity === "hash (xxhash)").reduce((sum, r) => sum + r.seconds, 0);
    expect(hashing / client).toBeGreaterThan(0.7);
    // Recording was on before start() returned: Node's own start-up, which keeps a CPU busy from the
    // spawn, is in the file from its first milliseconds (perf's first version started recording
    // only after listing the machine's processes, up to 0.2 s later).
    const times = spawnSync("perf", ["script", "-i", split.file, "-F", "pid,time"], { encoding: "utf8", maxBuffer: 64 * 2 ** 20 })
      .stdout.split("\n")
      .map((line) => /^\s*(\d+)\s+([\d.]+):/.exec(line))
      .filter((m) => m !== null && Number(m[1]) === child.pid)
      .map((m) => Number(m![2]));
    expect(Math.min(...times) - monoSeconds(spawnedAt)).toBeLessThan(0.03);
  }, 60_000);
});
