// How fast this machine writes new files right now, measured before the workloads. Two traps were seen
// on these VMs, each making every file-writing contender several times slower for a while:
//  - a freshly booted VM: the host maps guest memory on first touch, so page-cache writes into memory
//    never used since boot ran at 270 MB/s (2.8 GB/s once that memory had been touched); with free page
//    reporting, memory the guest frees later goes back to the host and is as slow again;
//  - minutes after a mass delete (a test suite, an earlier bench's cleanup), ext4 creates files slowly:
//    without a journal (as here) its inode allocator skips inodes freed in the last 60 s (300 s while
//    their table block is dirty), checking each one in turn (recently_deleted() in ialloc.c); a create
//    took 0.75-1.1 ms instead of 45 µs for about five minutes after 10,000 deletes.
// The figures go in the report so a reader can tell a slow machine from a slow contender.

import { spawnSync } from "node:child_process";
import { closeSync, mkdirSync, openSync, renameSync, unlinkSync, writeSync } from "node:fs";
import path from "node:path";
import { now } from "./measure.js";

export interface ProbeResult {
  /** Writing a new 256 MiB file into the page cache, best of 2 (MB/s). */
  readonly writeMBps: number;
  /** Creating, writing (4 KiB) and closing one new file, best of 2 rounds of 2,000 (µs). */
  readonly createUs: number;
  /** A new process writing 64 MiB of memory it has just allocated, then writing it again (MB/s); NaN if it failed. */
  readonly memoryFirstTouchMBps: number;
  readonly memorySecondTouchMBps: number;
}

/**
 * Past these, the report warns that figures are depressed (healthy here: about 3,000 MB/s and 23-28 µs).
 * Creates at 40-100 µs are the tail of ext4's slow window after a mass delete, and the small-file rows
 * are the ones it moves (2026-12-02: a full run that started at 77 µs had fmq at 0.62× rsync, a run of
 * that workload alone at 26 µs 0.79×; one run each, so not proof): those are waited out too.
 */
const SLOW_WRITE_MBPS = 1000;
const SLOW_CREATE_US = 50;

export function probeFileSystem(dir: string): ProbeResult {
  mkdirSync(dir, { recursive: true });
  const block = Buffer.alloc(1024 * 1024, 7);
  let writeMBps = 0;
  for (let round = 0; round < 2; round++) {
    const file = path.join(dir, `write-${round}.bin`);
    const start = now();
    const fd = openSync(file, "w");
    for (let i = 0; i < 256; i++) writeSync(fd, block);
    closeSync(fd);
    writeMBps = Math.max(writeMBps, (256 * 1024 * 1024) / 1e6 / ((now() - start) / 1000));
    unlinkSync(file);
  }
  const small = block.subarray(0, 4096);
  let createUs = Infinity;
  for (let round = 0; round < 2; round++) {
    const files = path.join(dir, `create-${round}`);
    mkdirSync(files);
    const start = now();
    for (let i = 0; i < 2000; i++) {
      const fd = openSync(path.join(files, `f${i}`), "w");
      writeSync(fd, small);
      closeSync(fd);
    }
    createUs = Math.min(createUs, ((now() - start) * 1000) / 2000);
    // Set aside, not deleted: deleting them now would slow the creates of the workloads that follow.
    renameSync(files, `${files}.done`);
  }
  return { writeMBps, createUs, ...probeMemory() };
}

/**
 * What fresh memory costs a new process here. Every contender that is a new process (all of ours: the
 * bench starts a publisher and subscribers per repetition) pays it for its buffers; on these VMs the
 * first write to a page was measured at about 250 MB/s against 20+ GB/s for the second (a page fault
 * the host must back), so a process that touches 50 MiB of new memory spends about 0.2 s doing so.
 * Measured in a child so that the bench's own warm heap does not hide it.
 */
function probeMemory(): Pick<ProbeResult, "memoryFirstTouchMBps" | "memorySecondTouchMBps"> {
  const script = `
    const MiB = 1024 * 1024, n = 64, blocks = [];
    let t = performance.now();
    for (let i = 0; i < n; i++) blocks.push(Buffer.allocUnsafe(MiB).fill(1));
    const first = performance.now() - t;
    t = performance.now();
    for (const b of blocks) b.fill(2);
    const second = performance.now() - t;
    console.log(JSON.stringify({ first: (n * MiB) / 1e6 / (first / 1000), second: (n * MiB) / 1e6 / (second / 1000) }));`;
  const child = spawnSync(process.execPath, ["-e", script], { encoding: "utf8", timeout: 30_000 });
  try {
    const { first, second } = JSON.parse(child.stdout) as { first: number; second: number };
    return { memoryFirstTouchMBps: first, memorySecondTouchMBps: second };
  } catch {
    return { memoryFirstTouchMBps: NaN, memorySecondTouchMBps: NaN };
  }
}

/** Between probes while file creation is slow. */
const RETRY_MS = 30_000;

/**
 * Probe; while file creation is slow, wait and probe again, for up to `waitSeconds`. The ext4 window
 * after a mass delete ends by itself within about five minutes; memory the host has taken back does
 * not come back by waiting, so slow writes alone are not waited for.
 */
export async function probeUntilHealthy(dir: string, waitSeconds: number, log: (line: string) => void): Promise<ProbeResult> {
  const deadline = now() + waitSeconds * 1000;
  for (let attempt = 1; ; attempt++) {
    const probe = probeFileSystem(path.join(dir, String(attempt)));
    if (probe.createUs <= SLOW_CREATE_US || now() + RETRY_MS > deadline) return probe;
    log(`probe: creating a file takes ${probe.createUs.toFixed(0)} µs (about 25 when healthy); probing again in ${RETRY_MS / 1000} s (--wait-healthy ${waitSeconds})`);
    await new Promise((resolve) => setTimeout(resolve, RETRY_MS));
  }
}

/** A note for the report when the probe found the machine slow, else undefined. */
export function probeWarning(probe: ProbeResult): string | undefined {
  const slow: string[] = [];
  if (probe.writeMBps < SLOW_WRITE_MBPS) slow.push(`new data reached the page cache at ${probe.writeMBps.toFixed(0)} MB/s (about 3,000 when healthy)`);
  if (probe.createUs > SLOW_CREATE_US) slow.push(`a 4 KiB file took ${probe.createUs.toFixed(0)} µs to create (about 25 when healthy)`);
  if (slow.length === 0) return undefined;
  return (
    `The machine was slow to write files when the bench started: ${slow.join("; ")}. On a freshly booted VM the host maps guest memory on first touch; ` +
    "for minutes after a mass delete ext4 creates files slowly. Every contender that writes is slowed, the one that writes most (cp) most of all: figures and ratios are not representative. Run again later."
  );
}
