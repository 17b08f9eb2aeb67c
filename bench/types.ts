// The shapes every workload produces and the report consumes.

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
  readonly server?: ProcessCost;
  readonly clients?: readonly ProcessCost[];
  /** Anything workload-specific (per-subscriber times, startup times...). */
  readonly extra?: Record<string, unknown>;
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

export interface WorkloadResult {
  readonly id: string;
  readonly title: string;
  readonly params: Record<string, unknown>;
  /** Set when the workload did not run, with the reason. */
  readonly skipped?: string;
  readonly runs: Run[];
  readonly latency?: LatencySummary[];
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
export const CP = "cp";
export const RSYNC = "rsync daemon";
