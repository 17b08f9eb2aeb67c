// Run the built `fmq` CLI as a real process.
import { spawn, type ChildProcess } from "node:child_process";
import { afterEach } from "vitest";
import { fileURLToPath } from "node:url";
import readline from "node:readline";
import { readdir, readFile } from "node:fs/promises";
import { beforeTempCleanup } from "./tmp.js";
import { waitFor } from "./wait.js";

/** The built CLI (dist/cli/fmq.js). */
export const FMQ = fileURLToPath(new URL("../../dist/cli/fmq.js", import.meta.url));
/** The `fmq` command as installed (package.json "bin"): a shell script that sets allocator tunables and execs Node on FMQ. */
export const FMQ_COMMAND = fileURLToPath(new URL("../../cli/fmq", import.meta.url));

export interface Running {
  readonly child: ChildProcess;
  /** Every JSON line printed so far on stdout. */
  readonly events: Record<string, unknown>[];
  readonly stderr: string[];
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
}

export function fmq(args: string[], cwd?: string, env: Record<string, string> = {}, command = FMQ_COMMAND): Running {
  // Through the `fmq` command, as users run it (it execs Node: the PID, signals and exit status are Node's).
  const child = spawn(command, args, { cwd, env: { ...process.env, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  const events: Record<string, unknown>[] = [];
  const stderr: string[] = [];
  readline.createInterface({ input: child.stdout! }).on("line", (line) => {
    try {
      events.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      events.push({ event: "(text)", line });
    }
  });
  readline.createInterface({ input: child.stderr! }).on("line", (line) => stderr.push(line));
  // ("close", not "exit": once its output is read to the end too, so that a test may look at its last lines.)
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.on("close", (code, signal) => resolve({ code, signal })),
  );
  return { child, events, stderr, exited };
}

const running: Running[] = [];

async function killAll(): Promise<void> {
  for (const r of running.splice(0)) {
    if (r.child.exitCode === null && r.child.signalCode === null) {
      r.child.kill("SIGKILL");
      await r.exited;
    }
  }
}
afterEach(killAll);
// Before the test's temp directories go (a live subscriber would make its inbox again).
beforeTempCleanup(killAll);

/** Start `fmq` with these arguments; whatever is still running when the test ends is killed (SIGKILL). */
export function startFmq(args: string[], env: Record<string, string> = {}, command = FMQ_COMMAND): Running {
  const r = fmq(args, undefined, env, command);
  running.push(r);
  return r;
}

/** Is every thread of the process stopped (state T in /proc)? */
async function allThreadsStopped(pid: number): Promise<boolean> {
  const tasks = await readdir(`/proc/${pid}/task`);
  const states = await Promise.all(tasks.map(async (t) => (await readFile(`/proc/${pid}/task/${t}/stat`, "utf8")).split(") ")[1]![0]));
  return states.every((state) => state === "T");
}

/** Stop the process (SIGSTOP) and wait until every thread of it is stopped: the signal lands a moment later. */
export async function stopProcess(pid: number): Promise<void> {
  process.kill(pid, "SIGSTOP");
  await waitFor(() => allThreadsStopped(pid), "the process stopped", 5_000, 5);
}
