// The shapes every workload produces and the report consumes.

import type { Disturbance } from "./measure.js";
import type { CpuSplit } from "./cpu-split.js";

/** What one process cost: peak RSS over its life, CPU seconds during the timed part. */
export interface ProcessCost {
  readonly peakRssMiB: number;
  readonly cpuSeconds: number;
}

/** One timed run of one contender. */
export interface Run {
  readonly contender: string;
  readonly rep: number;
  /** Completed and every delivered byte verified by sha256. */
  ok: boolean;
  error?: string;
  /** The timed part (for fmq: first "subscribed" to last "delivered"), seconds. */
  readonly seconds: number;
  /** From spawning the receiving process(es) to the end, Node startup included, seconds. */
  readonly wallSeconds: number;
  /** Payload bytes delivered, all receivers together. */
  readonly bytes: number;
  /** Files delivered, all receivers together. */
  readonly files: number;
  /** Hypervisor steal during the run, % of all CPU time (from /proc/stat). */
  readonly stealPct: number;
  /** CPU used by other processes just before the run (% of all cores, measured while we were idle). */
  loadPct?: number;
  /** Disk reads, page-cache drops and memory reclaim during the run (sources are meant to stay in the page cache). */
  readonly disturbance?: Disturbance;
  readonly server?: ProcessCost;
  readonly clients?: readonly ProcessCost[];
  /** Anything workload-specific (per-subscriber times, startup times...). */
  readonly extra?: Record<string, unknown>;
  /** This repetition was run again: the first attempt took this long (seconds), over OUTLIER_FACTOR × the contender's fastest. */
  rerunOf?: number;
  /** With --perf: where the machine's CPU went during the timed part (cpu-split.ts). */
  readonly cpuSplit?: CpuSplit;
}

export interface LatencySummary {
  readonly contender: string;
  readonly n: number;
  /** Milliseconds. */
  readonly p50: number;
  readonly p90: number;
  readonly p99: number;
  readonly max: number;
  readonly min: number;
  /** write → publisher's "sent" line (stability wait + send), p50 ms. */
  readonly toSentP50: number;
  /** publisher's "sent" → subscriber's "delivered" line, p50 ms. */
  readonly sentToDeliveredP50: number;
  readonly samplesMs: readonly number[];
  readonly ok: boolean;
  readonly error?: string;
}

/**
 * Workload 5: one contender's figures in one case (5a, 5b...) and one repetition. What the clock spans is
 * the case's `timed` (fmq) or the whole command (rsync).
 */
export interface ResyncSample {
  readonly case: string;
  readonly contender: string;
  readonly rep: number;
  /** Completed, and every file checked by sha256 against the source. */
  ok: boolean;
  error?: string;
  /** The timed part, seconds. */
  readonly seconds: number;
  /** A second clock on the same run (fmq: from the subscriber's "subscribed" line, or write → "sent"). */
  readonly alt?: { readonly label: string; readonly seconds: number };
  /** File payload bytes sent: fmq = sum of the publisher's "sent" sizes; rsync = "Literal data". */
  readonly payloadBytes?: number;
  /** rsync: "Total bytes sent" (file list, checksums, literal data and protocol). */
  readonly wireBytes?: number;
  /** fmq: sum of the subscriber's "delivered" `received` (bytes that crossed the wire for its files). */
  readonly receivedBytes?: number;
  /** 5c: bytes the subscriber lacked when it (or its publisher) came back: size − partial file size. */
  readonly missingBytes?: number;
  /** Files delivered (fmq "delivered" lines) or transferred (rsync "Number of regular files transferred"). */
  readonly files?: number;
  readonly stealPct: number;
  /** CPU used by other processes just before the run (% of all cores). */
  loadPct?: number;
  readonly extra?: Record<string, unknown>;
}

/** Workload 5: one case (a scenario), its contenders' rows come from the samples. */
export interface ResyncCase {
  readonly id: string;
  readonly title: string;
  /** What fmq's clock spans. */
  readonly timed: string;
  /** Baseline contenders (in this case) that fmq's time is compared with, and their short labels. */
  readonly baselines: readonly { readonly contender: string; readonly label: string }[];
}

export interface WorkloadResult {
  readonly id: string;
  readonly title: string;
  readonly params: Record<string, unknown>;
  /** Set when the workload did not run, with the reason. */
  readonly skipped?: string;
  readonly runs: Run[];
  readonly latency?: LatencySummary[];
  /** Workload 5: its cases and every sample. */
  readonly resync?: { readonly cases: readonly ResyncCase[]; readonly samples: ResyncSample[] };
  readonly notes: string[];
}

/** The workloads' shared settings, from the command line. */
export interface BenchConfig {
  readonly size: number;
  readonly files: number;
  readonly fileSize: number;
  readonly latencyFiles: number;
  readonly latencyStableMs: readonly number[];
  readonly fanout: readonly number[];
  readonly fanoutSize: number;
  readonly reps: number;
  readonly chunkSize: number;
  readonly window: number;
  readonly stableMs: number;
  readonly smoke: boolean;
  /** The fmq CLI that is measured (default: this repository's dist/cli/fmq.js). */
  readonly fmqCli: string;
  /** Temp root for this bench run (removed at the end). */
  readonly tmp: string;
}

/** Contender names, used for rows and ratios. */
export const RAW = "raw zeromq.js pipe";
export const FMQ = "fmq";
/** fmq from a publisher that has sent the file before (it knows the file's fingerprint). */
export const FMQ_WARM = "fmq, publisher warm";
/** fmq from a publisher that does not fingerprint files at publish: the transfer hashes what it sends. */
export const FMQ_NO_AHEAD = "fmq, --no-hash-ahead";
/** fmq fan-out with one more subscriber, frozen (SIGSTOP) early in its transfer: do the others slow down? */
export const FMQ_STALLED = "fmq, + 1 stalled subscriber";
export const CP = "cp";
export const RSYNC = "rsync daemon";
