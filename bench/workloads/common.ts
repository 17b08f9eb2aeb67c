// What every throughput workload does with its contenders: repeat, rotate the order each repetition (so
// no contender always runs first or last), flush the disk before each run, verify every delivered byte
// by sha256 after it, then remove the copy.

import { rm } from "node:fs/promises";
import { mbps, settle } from "../measure.js";
import type { RsyncDaemon } from "../contenders.js";
import type { BenchConfig, Run } from "../types.js";

export interface Contender {
  readonly name: string;
  readonly run: (rep: number) => Promise<Run>;
  /** The destination trees to check after a run: undefined if identical, else what differs. */
  readonly verify: () => Promise<string | undefined>;
  /** Destinations to remove after verifying. */
  readonly dsts: readonly string[];
}

/** What a workload gets besides the config. */
export interface Context {
  readonly config: BenchConfig;
  /** undefined when rsync is not installed. */
  readonly rsync: RsyncDaemon | undefined;
  readonly log: (line: string) => void;
}

export async function repeat(label: string, contenders: readonly Contender[], ctx: Context): Promise<Run[]> {
  const runs: Run[] = [];
  const reps = ctx.config.reps;
  for (let rep = 1; rep <= reps; rep++) {
    const rotated = contenders.map((_, i) => contenders[(i + rep - 1) % contenders.length]!);
    for (const contender of rotated) {
      const loadPct = await settle();
      const run = await contender.run(rep);
      run.loadPct = loadPct;
      if (run.ok) {
        const wrong = await contender.verify();
        if (wrong) {
          run.ok = false;
          run.error = `verification failed: ${wrong}`;
        }
      }
      for (const dst of contender.dsts) await rm(dst, { recursive: true, force: true });
      runs.push(run);
      ctx.log(describe(label, reps, run));
    }
  }
  return runs;
}

function describe(label: string, reps: number, run: Run): string {
  const head = `[${label}] rep ${run.rep}/${reps} ${run.contender}:`;
  if (!run.ok) return `${head} FAILED: ${run.error ?? "?"}`;
  const rate = `${mbps(run.bytes, run.seconds).toFixed(0)} MB/s`;
  const files = run.files > 1 && label === "2" ? `, ${(run.files / run.seconds).toFixed(0)} files/s` : "";
  return `${head} ${run.seconds.toFixed(3)} s, ${rate}${files} (wall ${run.wallSeconds.toFixed(2)} s, steal ${run.stealPct.toFixed(1)} %, others' load before ${loadPct(run)}) verified`;
}

function loadPct(run: Run): string {
  return run.loadPct === undefined ? "?" : `${run.loadPct.toFixed(0)} %`;
}

/** Generous time limit for moving `bytes` in `files` files: a stall fails the run rather than hangs it. */
export function timeoutFor(bytes: number, files: number): number {
  return 60_000 + bytes / 5e3 + files * 20;
}
