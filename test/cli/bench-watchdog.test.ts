// The bench starts processes, fills a temporary directory and changes two kernel settings for its run
// (free page reporting held back). Killed outright with SIGKILL, which no exit hook survives, its
// watchdog must still stop what it started, remove the directory and put the settings back (files in a
// temporary directory stand in for the sysfs ones). A real process sets it all up and is killed.

import { spawn, type ChildProcess } from "node:child_process";
import { existsSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const dist = (file: string) => fileURLToPath(new URL(`../../dist/bench/${file}`, import.meta.url));

const children: ChildProcess[] = [];
const strays: number[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  for (const pid of strays.splice(0)) if (alive(pid)) process.kill(pid, "SIGKILL");
});

/** Running (a zombie no one has reaped yet, its parent killed, counts as gone). */
function alive(pid: number): boolean {
  try {
    return readFileSync(`/proc/${pid}/stat`, "utf8").split(") ")[1]![0] !== "Z";
  } catch {
    return false;
  }
}

/** Watchdogs told of this temporary directory (it is in their environment, not their command line). */
function watchdogs(tmp: string): number[] {
  const found: number[] = [];
  for (const entry of readdirSync("/proc")) {
    if (!/^\d+$/.test(entry)) continue;
    try {
      if (!readFileSync(`/proc/${entry}/cmdline`, "utf8").includes("fmq-bench-watchdog")) continue;
      if (readFileSync(`/proc/${entry}/environ`, "utf8").split("\0").includes(`FMQ_BENCH_TMP=${tmp}`) && alive(Number(entry))) found.push(Number(entry));
    } catch {
      // gone meanwhile, or not ours to read
    }
  }
  return found;
}

/**
 * A bench in miniature: holds the settings in `parameters` (a directory), starts its watchdog over `tmp`,
 * and starts a child whose command line names `tmp` (as every child of the bench does). Then exits at
 * once, or stays.
 */
async function miniBench(tmp: string, parameters: string, then: "exit" | "stay"): Promise<{ bench: ChildProcess; state: string; child: number }> {
  const script = `
    const { holdFreePageReporting } = await import(${JSON.stringify(dist("page-reporting.js"))});
    const { watchOver } = await import(${JSON.stringify(dist("watchdog.js"))});
    const { spawn } = await import("node:child_process");
    const tmp = ${JSON.stringify(tmp)};
    const reporting = holdFreePageReporting(false, ${JSON.stringify(parameters)});
    watchOver({ tmp, settings: reporting.putBack });
    const child = spawn(process.execPath, ["-e", "setInterval(() => undefined, 1000)", tmp + "/source"], { stdio: "ignore" });
    process.stdout.write(reporting.state + " " + child.pid + "\\n");
    if (${JSON.stringify(then)} === "exit") process.exit(0);
    setInterval(() => undefined, 1000);`;
  const bench = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(bench);
  let out = "";
  bench.stdout!.on("data", (data: Buffer) => (out += data.toString()));
  const line = await waitFor(() => out.includes("\n") && out.trim(), "the mini bench's report");
  const [state, pid] = line.split(" ");
  strays.push(Number(pid));
  return { bench, state: state!, child: Number(pid) };
}

const read = (file: string) => readFileSync(file, "utf8").trim();

/** A stand-in for /sys/module/page_reporting/parameters with these values (a missing one: no file). */
async function parameters(values: { min_free_ms?: string; max_waiting_mib?: string }): Promise<{ dir: string; minFree: string; waiting: string }> {
  const dir = path.join(await tempDir(), "parameters");
  await mkdir(dir);
  for (const [name, value] of Object.entries(values)) writeFileSync(path.join(dir, name), value + "\n");
  return { dir, minFree: path.join(dir, "min_free_ms"), waiting: path.join(dir, "max_waiting_mib") };
}

describe("bench watchdog", () => {
  it("after a SIGKILL of the bench: its children are stopped, its temporary directory removed, the settings put back", async () => {
    const dir = await tempDir();
    const tmp = path.join(dir, "fmq-bench-x");
    await mkdir(tmp);
    writeFileSync(path.join(tmp, "data.bin"), "x");
    const settings = await parameters({ min_free_ms: "0", max_waiting_mib: "1024" });
    const { bench, state, child } = await miniBench(tmp, settings.dir, "stay");
    expect(state).toBe("held");
    expect(read(settings.minFree)).toBe("60000");
    expect(read(settings.waiting)).toBe("8192");
    expect(alive(child)).toBe(true);
    await waitFor(() => watchdogs(tmp).length === 1, "the watchdog");

    bench.kill("SIGKILL");
    // The watchdog learns it at once (its stdin's end); it ends when done, about a second later.
    await waitFor(() => watchdogs(tmp).length === 0, "the watchdog to finish", 10_000, 50);
    expect(read(settings.minFree)).toBe("0");
    expect(read(settings.waiting)).toBe("1024");
    expect(alive(child)).toBe(false);
    expect(existsSync(tmp)).toBe(false);
  });

  it("after a normal end it ends too, leaving nothing running; after a SIGKILL, a setting someone else changed meanwhile is left alone", async () => {
    const dir = await tempDir();
    const settings = await parameters({ min_free_ms: "0", max_waiting_mib: "1024" });
    const tmp = path.join(dir, "fmq-bench-y");
    await mkdir(tmp);
    const first = await miniBench(tmp, settings.dir, "exit");
    expect(first.state).toBe("held");
    await waitFor(() => first.bench.exitCode !== null, "the mini bench's exit");
    // Its exit hook put the settings back; the child it left running (no exit hook of its own stops it
    // here) is stopped by the watchdog, which then ends.
    expect([read(settings.minFree), read(settings.waiting)]).toEqual(["0", "1024"]);
    await waitFor(() => watchdogs(tmp).length === 0, "the watchdog to end", 10_000, 50);
    expect([read(settings.minFree), read(settings.waiting)]).toEqual(["0", "1024"]);
    expect(alive(first.child)).toBe(false);
    expect(existsSync(tmp)).toBe(false);

    const other = await parameters({ min_free_ms: "0", max_waiting_mib: "1024" });
    const tmp2 = path.join(dir, "fmq-bench-z");
    await mkdir(tmp2);
    const second = await miniBench(tmp2, other.dir, "stay");
    writeFileSync(other.minFree, "5000\n");
    second.bench.kill("SIGKILL");
    await waitFor(() => watchdogs(tmp2).length === 0, "the second watchdog to finish", 10_000, 50);
    expect(read(other.minFree)).toBe("5000");
    expect(read(other.waiting)).toBe("1024");
    expect(alive(second.child)).toBe(false);
  });

  it("holds only what there is to hold: a kernel without the cap, a cap already high enough", async () => {
    const dir = await tempDir();
    // (No max_waiting_mib: min_free_ms alone is held and put back.)
    const old = await parameters({ min_free_ms: "0" });
    const tmp = path.join(dir, "fmq-bench-old");
    await mkdir(tmp);
    const first = await miniBench(tmp, old.dir, "stay");
    expect(first.state).toBe("held");
    expect(read(old.minFree)).toBe("60000");
    expect(existsSync(old.waiting)).toBe(false);
    first.bench.kill("SIGKILL");
    await waitFor(() => watchdogs(tmp).length === 0, "the watchdog to finish", 10_000, 50);
    expect(read(old.minFree)).toBe("0");
    expect(existsSync(old.waiting)).toBe(false);

    // (A cap someone set higher than ours stays as it is, during the run and after.)
    const high = await parameters({ min_free_ms: "0", max_waiting_mib: "16000" });
    const tmp2 = path.join(dir, "fmq-bench-high");
    await mkdir(tmp2);
    const second = await miniBench(tmp2, high.dir, "stay");
    expect([read(high.minFree), read(high.waiting)]).toEqual(["60000", "16000"]);
    second.bench.kill("SIGKILL");
    await waitFor(() => watchdogs(tmp2).length === 0, "the second watchdog to finish", 10_000, 50);
    expect([read(high.minFree), read(high.waiting)]).toEqual(["0", "16000"]);
  });
});
