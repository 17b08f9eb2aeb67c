// What every throughput workload does with its contenders: repeat, change the order each repetition (so
// no contender always runs first or last, nor always after the same one), flush the disk before each run, verify every delivered byte
// by sha256 after it, then remove the copy (or set a tree of many files aside, see setAside).

import { mkdir, rename, rm } from "node:fs/promises";
import path from "node:path";
import { DISK_READ_NOTE_MIB, RECLAIM_NOTE_MIB, cacheDrops, mbps, settle } from "../measure.js";
import type { RsyncDaemon } from "../contenders.js";
import type { Profiler } from "../cpu-split.js";
import type { BenchConfig, Run } from "../types.js";

export interface Contender {
  readonly name: string;
  readonly run: (rep: number) => Promise<Run>;
  /** The destination trees to check after a run: undefined if identical, else what differs. */
  readonly verify: () => Promise<string | undefined>;
  /** Destinations to remove after verifying. */
  readonly dsts: readonly string[];
  /** The destinations are trees of many files: set them aside (setAside) instead of deleting them. */
  readonly manyFiles?: boolean;
}

/** What a workload gets besides the config. */
export interface Context {
  readonly config: BenchConfig;
  /** undefined when rsync is not installed. */
  readonly rsync: RsyncDaemon | undefined;
  readonly log: (line: string) => void;
  /** With --perf: timed runs of workloads 1, 2 and 4 are recorded with perf (cpu-split.ts). */
  readonly profiler?: Profiler;
}

/**
 * The order of repetition `rep` (from 1): rotated by one more each time, and reversed every other time.
 * Rotation alone keeps every contender behind the same neighbour (what that one leaves behind: memory
 * just freed, a warm-up's output deleted) in all but one repetition; reversal puts it behind the other.
 */
export function orderFor<T>(contenders: readonly T[], rep: number): T[] {
  const rotated = contenders.map((_, i) => contenders[(i + rep - 1) % contenders.length]!);
  return rep % 2 === 0 ? rotated.reverse() : rotated;
}

/**
 * Run every contender `reps` times. `warm` reads the sources into the page cache again; it is called
 * before a run if the page cache was dropped since the sources were last read (see CpuMeter), so that
 * every contender still starts from a warm cache.
 */
export async function repeat(label: string, contenders: readonly Contender[], ctx: Context, warm?: () => Promise<void>): Promise<Run[]> {
  const runs: Run[] = [];
  const reps = ctx.config.reps;
  let drops = cacheDrops();
  const once = async (contender: Contender, rep: number): Promise<Run> => {
    if (warm && cacheDrops() !== drops) {
      ctx.log(`[${label}] the page cache was dropped: reading the sources again`);
      await warm();
      drops = cacheDrops();
    }
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
    for (const dst of contender.dsts) await (contender.manyFiles ? setAside(dst, ctx) : rm(dst, { recursive: true, force: true }));
    return run;
  };
  for (let rep = 1; rep <= reps; rep++) {
    for (const contender of orderFor(contenders, rep)) {
      const run = await once(contender, rep);
      runs.push(run);
      ctx.log(describe(label, reps, run));
    }
  }
  // A repetition more than OUTLIER_FACTOR times the same contender's fastest is run once more, and the
  // new run takes its place (the first attempt's time is kept in the run and said in the report). Such
  // repetitions came from the machine, not the contender: two of rsync's three took 3.2-3.5 s against
  // 0.88 s, its daemon's CPU 3.2-3.5 s against 0.8 (the kernel creating files slowly after deletes),
  // while the contenders between them ran as usual; with two of three, the median was the outlier's. The
  // same rule for every contender; a contender slow every time is not re-run (its fastest is slow too).
  for (const contender of contenders) {
    const mine = runs.filter((run) => run.contender === contender.name && run.ok);
    const fastest = Math.min(...mine.map((run) => run.seconds));
    for (const slow of mine.filter((run) => run.seconds > OUTLIER_FACTOR * fastest)) {
      const again = await once(contender, slow.rep);
      again.rerunOf = slow.seconds;
      runs[runs.indexOf(slow)] = again;
      ctx.log(`${describe(label, reps, again)} (run again: the first took ${slow.seconds.toFixed(3)} s, over ${OUTLIER_FACTOR}× its fastest, ${fastest.toFixed(3)} s)`);
    }
  }
  return runs;
}

/** See repeat: a repetition this many times slower than the same contender's fastest is run again. */
export const OUTLIER_FACTOR = 2;

let asideCount = 0;

/**
 * Move a tree of many files out of the way, into the bench's temporary directory (removed when the bench
 * ends), instead of deleting it. On ext4, creating files is slow for minutes after many files were
 * deleted (the inode allocator skips inodes deleted in the last 60-300 s, reading each one's inode
 * table block: recently_deleted() in ext4_create took 50 % of a profile here, and 10,000 creates went
 * from 0.2 s to 4-6 s). Deleting one run's tree would slow down whichever contender runs next.
 */
export async function setAside(dir: string, ctx: Context): Promise<void> {
  const aside = path.join(ctx.config.tmp, "aside");
  await mkdir(aside, { recursive: true });
  try {
    await rename(dir, path.join(aside, String(++asideCount)));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    if (code === "ENOENT") return;
    // Another filesystem (an rsync module elsewhere): delete after all.
    await rm(dir, { recursive: true, force: true });
  }
}

function describe(label: string, reps: number, run: Run): string {
  const head = `[${label}] rep ${run.rep}/${reps} ${run.contender}:`;
  if (!run.ok) return `${head} FAILED: ${run.error ?? "?"}`;
  const rate = `${mbps(run.bytes, run.seconds).toFixed(0)} MB/s`;
  const files = run.files > 1 && label === "2" ? `, ${(run.files / run.seconds).toFixed(0)} files/s` : "";
  return `${head} ${run.seconds.toFixed(3)} s, ${rate}${files} (wall ${run.wallSeconds.toFixed(2)} s, steal ${run.stealPct.toFixed(1)} %, others' load before ${loadPct(run)}${disturbance(run)}) verified`;
}

/** ", read 40 MiB from disk, page cache dropped, ..." when the run was not the quiet, warm-cache run it meant to be. */
export function disturbance(run: Run): string {
  const d = run.disturbance;
  if (!d) return "";
  const parts: string[] = [];
  if (d.diskReadMiB >= DISK_READ_NOTE_MIB) parts.push(`read ${d.diskReadMiB.toFixed(0)} MiB from disk`);
  if (d.cacheDrops > 0) parts.push("page cache dropped");
  if (d.reclaimMiB >= RECLAIM_NOTE_MIB) parts.push(`kernel reclaimed ${d.reclaimMiB.toFixed(0)} MiB (memory full)`);
  return parts.map((p) => `, ${p}`).join("");
}

function loadPct(run: Run): string {
  return run.loadPct === undefined ? "?" : `${run.loadPct.toFixed(0)} %`;
}

/** Generous time limit for moving `bytes` in `files` files: a stall fails the run rather than hangs it. */
export function timeoutFor(bytes: number, files: number): number {
  return 60_000 + bytes / 5e3 + files * 20;
}
