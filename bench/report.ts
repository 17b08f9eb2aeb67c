// Turning runs into what a reader sees: summaries per contender with ratios to the baselines measured
// in the same bench run (paired by repetition), a markdown report, and an SVG bar chart of throughput.

import { mbps, median, type Disturbance } from "./measure.js";
import { OUTLIER_FACTOR, disturbance } from "./workloads/common.js";
import { CP, FMQ, FMQ_NO_AHEAD, FMQ_STALLED, FMQ_WARM, RAW, RSYNC, type ResyncSample, type Run, type WorkloadResult } from "./types.js";
import type { CpuSplit } from "./cpu-split.js";

const BASELINES = [RAW, CP, RSYNC] as const;
const ORDER = [RAW, FMQ, FMQ_WARM, FMQ_NO_AHEAD, FMQ_STALLED, CP, RSYNC];

export interface Summary {
  readonly contender: string;
  readonly n: number;
  readonly failed: number;
  readonly seconds: { median: number; min: number; max: number };
  readonly mbps: number;
  readonly filesPerSecond: number;
  readonly wallSeconds: number;
  /** baseline's time / this contender's time, per repetition, median: > 1 = faster than the baseline. */
  readonly speedVs: Partial<Record<(typeof BASELINES)[number], number>>;
  readonly peakRssMiB?: { server: number; client: number };
  readonly cpuSeconds?: { server: number; clients: number };
  readonly stealPct: number;
  readonly loadPct: number;
  /** Fan-out: receivers' end times after the first start (median over reps of min and max), start spread. */
  readonly fastestS?: number;
  readonly slowestS?: number;
  readonly slowestOwnMBps?: number;
  readonly startSpreadS?: number;
  /**
   * Fan-out fairness, two ways, each per repetition then the median: the first receiver's end ÷ the last
   * one's (both after the first start: a receiver that starts first has the server to itself while the
   * others start, so this counts start-up too), and the slowest receiver's own MB/s ÷ the fastest one's
   * (each from its own start to its own end: what each was given once it was there).
   */
  readonly endRatio?: number;
  readonly ownRatio?: number;
  /**
   * "fmq, + 1 stalled subscriber" only: plain fmq's time ÷ this time, paired by repetition (> 1: the
   * timed subscribers finished sooner with the stalled one there). Whether one stuck subscriber slows the
   * rest is a difference of a few per cent on a noisy machine: a spread of paired ratios shows it, two
   * medians side by side do not.
   */
  readonly vsAlone?: Spread & { readonly n: number };
}

export function summarise(workload: WorkloadResult): Summary[] {
  const names = [...new Set(workload.runs.map((r) => r.contender))].sort((a, b) => rank(a) - rank(b));
  return names.map((name) => {
    const all = workload.runs.filter((r) => r.contender === name);
    const ok = all.filter((r) => r.ok);
    const seconds = ok.map((r) => r.seconds);
    const bytes = ok[0]?.bytes ?? 0;
    const files = ok[0]?.files ?? 0;
    const speedVs: Summary["speedVs"] = {};
    for (const baseline of BASELINES) {
      const ratios = pairedRatios(workload, baseline, ok);
      if (ratios.length) speedVs[baseline] = median(ratios);
    }
    const alone = name === FMQ_STALLED ? pairedRatios(workload, FMQ, ok) : [];
    const withProcs = ok.filter((r) => r.server && r.clients?.length);
    const ext = (key: string) => ok.map((r) => r.extra?.[key]).filter((v): v is number[] => Array.isArray(v));
    const ends = ext("endedAfterS");
    const starts = ext("startedAfterS");
    const own = ext("ownSeconds");
    const perReceiver = ok[0] && ends[0] ? ok[0].bytes / ends[0].length : 0;
    return {
      contender: name,
      n: ok.length,
      failed: all.length - ok.length,
      seconds: { median: median(seconds), min: Math.min(...seconds), max: Math.max(...seconds) },
      mbps: mbps(bytes, median(seconds)),
      filesPerSecond: files / median(seconds),
      wallSeconds: median(ok.map((r) => r.wallSeconds)),
      speedVs,
      ...(withProcs.length
        ? {
            peakRssMiB: {
              server: Math.max(...withProcs.map((r) => r.server!.peakRssMiB)),
              client: Math.max(...withProcs.flatMap((r) => r.clients!.map((c) => c.peakRssMiB))),
            },
            cpuSeconds: {
              server: median(withProcs.map((r) => r.server!.cpuSeconds)),
              clients: median(withProcs.map((r) => r.clients!.reduce((sum, c) => sum + c.cpuSeconds, 0))),
            },
          }
        : {}),
      stealPct: median(ok.map((r) => r.stealPct)),
      loadPct: median(ok.flatMap((r) => (r.loadPct === undefined ? [] : [r.loadPct]))),
      ...(ends.length
        ? {
            fastestS: median(ends.map((e) => Math.min(...e))),
            slowestS: median(ends.map((e) => Math.max(...e))),
            slowestOwnMBps: median(own.map((o) => mbps(perReceiver, Math.max(...o)))),
            startSpreadS: starts.length ? median(starts.map((s) => Math.max(...s))) : 0,
            endRatio: median(ends.map((e) => Math.min(...e) / Math.max(...e))),
            ...(own.length ? { ownRatio: median(own.map((o) => Math.min(...o) / Math.max(...o))) } : {}),
          }
        : {}),
      ...(alone.length ? { vsAlone: { ...spread(alone)!, n: alone.length } } : {}),
    };
  });
}

/** `baseline`'s time ÷ each run's time, for the repetitions where both went right. */
function pairedRatios(workload: WorkloadResult, baseline: string, runs: readonly Run[]): number[] {
  return runs.flatMap((r) => {
    const b = workload.runs.find((x) => x.contender === baseline && x.rep === r.rep && x.ok);
    return b ? [b.seconds / r.seconds] : [];
  });
}

// --- workload 5: resync cases -------------------------------------------------------------------------------

/** median [min–max] of one figure over a contender's good samples. */
export interface Spread {
  readonly median: number;
  readonly min: number;
  readonly max: number;
}

export interface ResyncSummary {
  readonly case: string;
  readonly contender: string;
  readonly n: number;
  readonly failed: number;
  readonly seconds: Spread;
  readonly alt?: { readonly label: string; readonly seconds: Spread };
  readonly payloadBytes?: Spread;
  readonly wireBytes?: Spread;
  readonly receivedBytes?: Spread;
  readonly missingBytes?: Spread;
  /** 5c: received − missing, per sample. */
  readonly resentBytes?: Spread;
  readonly files?: Spread;
  /** Per baseline label: baseline's time ÷ this time, paired by repetition, median (> 1: faster). */
  readonly speedVs: Record<string, number>;
  readonly stealPct: number;
  readonly loadPct: number;
}

function spread(values: readonly number[]): Spread | undefined {
  const finite = values.filter((v) => Number.isFinite(v));
  if (!finite.length) return undefined;
  return { median: median(finite), min: Math.min(...finite), max: Math.max(...finite) };
}

export function summariseResync(workload: WorkloadResult): ResyncSummary[] {
  const resync = workload.resync;
  if (!resync) return [];
  const out: ResyncSummary[] = [];
  for (const c of resync.cases) {
    const mine = resync.samples.filter((s) => s.case === c.id);
    const names = [...new Set(mine.map((s) => s.contender))].sort((a, b) => (a === FMQ ? -1 : b === FMQ ? 1 : 0));
    for (const name of names) {
      const all = mine.filter((s) => s.contender === name);
      const ok = all.filter((s) => s.ok);
      const figure = (get: (s: ResyncSample) => number | undefined) => {
        const values = ok.flatMap((s) => {
          const v = get(s);
          return v === undefined ? [] : [v];
        });
        return values.length ? spread(values) : undefined;
      };
      const speedVs: Record<string, number> = {};
      if (name === FMQ) {
        for (const b of c.baselines) {
          const ratios = ok.flatMap((s) => {
            const base = mine.find((x) => x.contender === b.contender && x.rep === s.rep && x.ok);
            return base ? [base.seconds / s.seconds] : [];
          });
          if (ratios.length) speedVs[b.label] = median(ratios);
        }
      }
      const alt = ok.find((s) => s.alt)?.alt;
      const optional = <K extends string>(key: K, value: Spread | undefined) => (value ? ({ [key]: value } as Record<K, Spread>) : {});
      out.push({
        case: c.id,
        contender: name,
        n: ok.length,
        failed: all.length - ok.length,
        seconds: spread(ok.map((s) => s.seconds)) ?? { median: NaN, min: NaN, max: NaN },
        ...(alt ? { alt: { label: alt.label, seconds: figure((s) => s.alt?.seconds) ?? { median: NaN, min: NaN, max: NaN } } } : {}),
        ...optional("payloadBytes", figure((s) => s.payloadBytes)),
        ...optional("wireBytes", figure((s) => s.wireBytes)),
        ...optional("receivedBytes", figure((s) => s.receivedBytes)),
        ...optional("missingBytes", figure((s) => s.missingBytes)),
        ...optional("resentBytes", figure((s) => (s.missingBytes === undefined || s.receivedBytes === undefined ? undefined : s.receivedBytes - s.missingBytes))),
        ...optional("files", figure((s) => s.files)),
        speedVs,
        stealPct: median(ok.map((s) => s.stealPct)),
        loadPct: median(ok.flatMap((s) => (s.loadPct === undefined ? [] : [s.loadPct]))),
      });
    }
  }
  return out;
}

/** 0, 512 B, 3.5 KiB, 2.01 MiB, 1 GiB. */
export function bytesText(bytes: number): string {
  if (!Number.isFinite(bytes)) return "–";
  if (bytes === 0) return "0";
  const sign = bytes < 0 ? "−" : "";
  const b = Math.abs(bytes);
  if (b >= 1024 ** 3) return `${sign}${+(b / 1024 ** 3).toFixed(2)} GiB`;
  if (b >= 1024 ** 2) return `${sign}${+(b / 1024 ** 2).toFixed(2)} MiB`;
  if (b >= 1024) return `${sign}${+(b / 1024).toFixed(1)} KiB`;
  return `${sign}${b} B`;
}

function rank(name: string): number {
  const i = ORDER.indexOf(name);
  return i < 0 ? ORDER.length : i;
}

// --- markdown ---------------------------------------------------------------------------------------------

export interface ReportInput {
  readonly startedAt: string;
  readonly durationS: number;
  readonly command: string;
  readonly machine: Record<string, string | number>;
  readonly stealPct: number;
  readonly loadAtStartPct: number;
  /** Over the whole bench (writing new files reads some metadata from disk). */
  readonly disturbance: Disturbance;
  readonly workloads: readonly WorkloadResult[];
  readonly notes: readonly string[];
  readonly failures: readonly string[];
}

const f = (value: number | undefined, digits = 0): string => (value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(digits));
const ratio = (value: number | undefined): string => (value === undefined || !Number.isFinite(value) ? "–" : value.toFixed(2));

export function markdown(input: ReportInput, rsyncMissing: string | undefined): string {
  const out: string[] = [];
  out.push(`# fmq benchmark`, "");
  out.push(`${input.startedAt}, ${input.durationS.toFixed(0)} s in all: \`${input.command}\``, "");
  out.push(
    `Machine: ${Object.entries(input.machine)
      .map(([k, v]) => `${k} ${v}`)
      .join("; ")}. Hypervisor steal over the whole bench ${input.stealPct.toFixed(1)} %; other processes' CPU use at the start ${input.loadAtStartPct.toFixed(0)} % of all cores; read from disk ${input.disturbance.diskReadMiB.toFixed(0)} MiB; page cache dropped ${input.disturbance.cacheDrops} times; memory reclaimed by the kernel ${input.disturbance.reclaimMiB.toFixed(0)} MiB.`,
    "",
  );

  const throughput = input.workloads.filter((w) => !w.skipped && w.runs.length);
  if (throughput.length) {
    out.push("## Throughput", "");
    out.push(
      "Time = the timed part: fmq from the subscriber's `subscribed` line to its last `delivered` line (the publisher is already up); " +
        "raw pipe from the client's first request to its last write; cp and rsync the whole command. " +
        "Wall = from spawning the receiving process(es), Node start-up included. " +
        "*speed vs X* = X's time ÷ this time, paired by repetition, median (> 1: faster than X). " +
        "Peak RSS = VmHWM, max over runs; CPU = user+sys seconds during the timed part, median (clients summed). MB = 10^6 bytes.",
      "",
    );
    out.push("| workload | contender | time s, median [min–max] (n) | MB/s | files/s | wall s | speed vs raw pipe | vs cp | vs rsync | peak RSS MiB server / client | CPU s server / clients | steal % / other load % |");
    out.push("|---|---|---|---|---|---|---|---|---|---|---|---|");
    for (const w of throughput) {
      for (const s of summarise(w)) {
        const time = s.n ? `${f(s.seconds.median, 3)} [${f(s.seconds.min, 3)}–${f(s.seconds.max, 3)}] (${s.n})` : "–";
        const failed = s.failed ? ` **${s.failed} failed**` : "";
        out.push(
          `| ${w.id} ${w.title} | ${s.contender} | ${time}${failed} | ${f(s.mbps)} | ${w.id === "2" ? f(s.filesPerSecond) : "–"} | ${f(s.wallSeconds, 2)} | ${ratio(s.speedVs[RAW])} | ${ratio(s.speedVs[CP])} | ${rsyncMissing ? "n/a" : ratio(s.speedVs[RSYNC])} | ${s.peakRssMiB ? `${f(s.peakRssMiB.server)} / ${f(s.peakRssMiB.client)}` : "–"} | ${s.cpuSeconds ? `${f(s.cpuSeconds.server, 2)} / ${f(s.cpuSeconds.clients, 2)}` : "–"} | ${f(s.stealPct, 1)} / ${f(s.loadPct)} |`,
        );
      }
    }
    out.push("");
  }

  const fanout = throughput.filter((w) => w.id.startsWith("4"));
  if (fanout.length) {
    out.push("## Fan-out detail", "");
    out.push(
      "Aggregate = K × size ÷ (last receiver done − first receiver started). Fastest / slowest = when the first and the last receiver finished, after the first one started. " +
        "Start spread = how long after the first receiver the last one started (K processes starting at once on 2 cores). Slowest own MB/s = size ÷ the slowest receiver's own start → done. " +
        "First ÷ last end = fastest s ÷ slowest s, and slowest ÷ fastest own = the slowest receiver's own MB/s ÷ the fastest one's, each per repetition, median (the target is ≥ 0.8). " +
        "Vs fmq alone (the stalled row) = fmq's time without the stalled subscriber ÷ the time with it, paired by repetition: median [min–max] (pairs); ≥ 1: it did not slow the others.",
      "",
    );
    out.push("| receivers | contender | aggregate MB/s | fastest s | slowest s | slowest own MB/s | first ÷ last end | slowest ÷ fastest own | start spread s | peak RSS MiB server / max client | vs fmq alone |");
    out.push("|---|---|---|---|---|---|---|---|---|---|---|");
    for (const w of fanout) {
      for (const s of summarise(w)) {
        out.push(
          `| ${String(w.params.receivers)} | ${s.contender} | ${f(s.mbps)} | ${f(s.fastestS, 3)} | ${f(s.slowestS, 3)} | ${f(s.slowestOwnMBps)} | ${f(s.endRatio, 2)} | ${f(s.ownRatio, 2)} | ${f(s.startSpreadS, 3)} | ${s.peakRssMiB ? `${f(s.peakRssMiB.server)} / ${f(s.peakRssMiB.client)}` : "–"} | ${s.vsAlone ? `${f(s.vsAlone.median, 2)} [${f(s.vsAlone.min, 2)}–${f(s.vsAlone.max, 2)}] (${s.vsAlone.n})` : "–"} |`,
        );
      }
    }
    out.push("");
  }

  const latency = input.workloads.filter((w) => w.latency?.length);
  for (const w of latency) {
    out.push(`## ${w.id} ${w.title}`, "");
    out.push("| contender | n | p50 ms | p90 ms | p99 ms | max ms | write → sent p50 ms | sent → delivered p50 ms |");
    out.push("|---|---|---|---|---|---|---|---|");
    for (const l of w.latency ?? []) {
      const failed = l.ok ? "" : ` **failed: ${l.error ?? "?"}**`;
      // (Below 100 samples the 99th percentile is the largest: said, not passed off as a p99.)
      const p99 = l.n < 100 ? `${f(l.p99, 1)} (the max: n < 100)` : f(l.p99, 1);
      out.push(`| ${l.contender}${failed} | ${l.n} | ${f(l.p50, 1)} | ${f(l.p90, 1)} | ${p99} | ${f(l.max, 1)} | ${f(l.toSentP50, 1)} | ${f(l.sentToDeliveredP50, 1)} |`);
    }
    out.push("");
  }

  for (const w of input.workloads.filter((w) => w.resync)) out.push(...resyncMarkdown(w));
  for (const w of input.workloads) out.push(...cpuSplitMarkdown(w));

  const notes = [...input.notes, ...input.workloads.flatMap((w) => (w.skipped ? [`Workload ${w.id} (${w.title}): skipped, ${w.skipped}.`] : w.notes.map((n) => `Workload ${w.id}: ${n}`)))];
  const disturbed = input.workloads.flatMap((w) => w.runs.filter((r) => r.ok && disturbance(r)).map((r) => `${w.id} rep ${r.rep} ${r.contender}${disturbance(r)}`));
  if (disturbed.length)
    notes.push(`Runs that read from disk, saw the page cache dropped or the kernel reclaiming memory (not the quiet, warm-cache run they were meant to be; discount them): ${disturbed.join("; ")}.`);
  const rerun = input.workloads.flatMap((w) => w.runs.filter((r) => r.rerunOf !== undefined).map((r) => `${w.id} rep ${r.rep} ${r.contender} (${r.rerunOf!.toFixed(3)} s, then ${r.seconds.toFixed(3)} s)`));
  if (rerun.length)
    notes.push(`Repetitions run again because they took more than ${OUTLIER_FACTOR}× the same contender's fastest in the workload (the second attempt is in the figures; the same rule for every contender): ${rerun.join("; ")}.`);
  if (rsyncMissing) notes.unshift(rsyncMissing);
  if (notes.length) out.push("## Notes", "", ...notes.map((n) => `- ${n}`), "");
  if (input.failures.length) out.push("## FAILURES", "", ...input.failures.map((n) => `- ${n}`), "");
  return out.join("\n");
}

/** Rows of the CPU split table: the largest this many (by the largest cell), the rest summed. */
const SPLIT_ROWS = 24;

/**
 * With --perf: where the machine's CPU went during each contender's timed part, CPU-seconds, mean over
 * its repetitions: by role (server, clients, anyone else, idle), then by thread and activity.
 */
export function cpuSplitMarkdown(w: WorkloadResult): string[] {
  const runs = w.runs.filter((r) => r.ok && r.cpuSplit);
  if (runs.length === 0) return [];
  const contenders = [...new Set(runs.map((r) => r.contender))].sort((a, b) => rank(a) - rank(b));
  const mean = (name: string, value: (r: Run) => number) => {
    const mine = runs.filter((r) => r.contender === name);
    return mine.reduce((sum, r) => sum + value(r), 0) / mine.length;
  };
  const keyOf = (row: CpuSplit["rows"][number]) => `${row.role} · ${row.thread} · ${row.activity}`;
  const keys = new Set(runs.flatMap((r) => r.cpuSplit!.rows.map(keyOf)));
  const cell = (name: string, key: string) => mean(name, (r) => r.cpuSplit!.rows.filter((row) => keyOf(row) === key).reduce((sum, row) => sum + row.seconds, 0));
  const largest = [...keys]
    .map((key) => ({ key, top: Math.max(...contenders.map((name) => cell(name, key))) }))
    .sort((a, b) => b.top - a.top);
  const shown = largest.slice(0, SPLIT_ROWS);
  const rest = largest.slice(SPLIT_ROWS).map((x) => x.key);
  const roles = [...new Set(runs.flatMap((r) => Object.keys(r.cpuSplit!.byRole)))].sort();
  const out = [`## ${w.id} ${w.title}: where the CPU went (perf)`, ""];
  out.push(
    `\`perf record -a\` over each timed part (${runs.length} runs; files: ${runs.map((r) => r.cpuSplit!.file).join(", ")}), CPU-seconds on all cores, mean over repetitions. ` +
      "Role: server (publisher, pipe server, rsync daemon), client (subscribers, pipe clients, the commands), others, idle. " +
      "Profiled processes run with --perf-basic-prof: times of a --perf run are a little slower than the table's.",
    "",
  );
  out.push(`| | ${contenders.join(" | ")} |`, `|---|${contenders.map(() => "---").join("|")}|`);
  out.push(`| timed part, s | ${contenders.map((name) => f(mean(name, (r) => r.cpuSplit!.windowS), 3)).join(" | ")} |`);
  for (const role of roles) out.push(`| **${role}** | ${contenders.map((name) => f(mean(name, (r) => r.cpuSplit!.byRole[role] ?? 0), 3)).join(" | ")} |`);
  for (const { key } of shown) out.push(`| ${key} | ${contenders.map((name) => f(cell(name, key), 3)).join(" | ")} |`);
  if (rest.length) out.push(`| (${rest.length} more rows) | ${contenders.map((name) => f(rest.reduce((sum, key) => sum + cell(name, key), 0), 3)).join(" | ")} |`);
  out.push("");
  return out;
}

function resyncMarkdown(w: WorkloadResult): string[] {
  const cases = w.resync?.cases ?? [];
  const out: string[] = [`## ${w.id} ${w.title}`, ""];
  out.push(
    "Time = fmq: as listed below the table, per case; rsync: the whole command (a push to the daemon on 127.0.0.1). " +
      "*File bytes sent* = fmq: the publisher's `sent` sizes for that subscriber; rsync: `Literal data`. *Total sent* = rsync's `Total bytes sent` (file list, checksums, data). " +
      "*Received* = the subscriber's `delivered` `received`. *Missing* (5c) = size − the partial file after the kill; *re-sent* = received − missing. " +
      "*speed vs* = the baseline's time ÷ fmq's, paired by repetition, median (> 1: fmq faster). Figures are medians; [min–max] when they vary.",
    "",
  );
  out.push("| case | contender | time s, median [min–max] (n) | other clock s | file bytes sent | total sent | received | missing → re-sent | files | speed vs rsync | steal % / other load % |");
  out.push("|---|---|---|---|---|---|---|---|---|---|---|");
  const bytes = (s: Spread | undefined) =>
    s ? (bytesText(s.min) === bytesText(s.max) ? bytesText(s.median) : `${bytesText(s.median)} [${bytesText(s.min)}–${bytesText(s.max)}]`) : "–";
  const num = (s: Spread | undefined) => (s ? (s.min === s.max ? f(s.median) : `${f(s.median)} [${f(s.min)}–${f(s.max)}]`) : "–");
  let previous = "";
  for (const s of summariseResync(w)) {
    const c = cases.find((x) => x.id === s.case);
    // The case's title on its first row only.
    const title = s.case === previous ? "" : ` ${c?.title ?? ""}`;
    previous = s.case;
    const time = s.n ? `${f(s.seconds.median, 3)} [${f(s.seconds.min, 3)}–${f(s.seconds.max, 3)}] (${s.n})` : "–";
    const failed = s.failed ? ` **${s.failed} failed**` : "";
    const alt = s.alt ? `${f(s.alt.seconds.median, 3)} ${s.alt.label}` : "–";
    const speed = Object.entries(s.speedVs)
      .map(([label, value]) => `${ratio(value)} (${label})`)
      .join(", ");
    const resend = s.missingBytes ? `${bytes(s.missingBytes)} → ${bytes(s.resentBytes)}` : "–";
    out.push(
      `| ${s.case}${title} | ${s.contender} | ${time}${failed} | ${alt} | ${bytes(s.payloadBytes)} | ${bytes(s.wireBytes)} | ${bytes(s.receivedBytes)} | ${resend} | ${num(s.files)} | ${s.contender === FMQ ? speed || "–" : ""} | ${f(s.stealPct, 1)} / ${f(s.loadPct)} |`,
    );
  }
  out.push("", "fmq's clock, per case:", "");
  for (const c of cases) out.push(`- ${c.id}: ${c.timed}.`);
  out.push("");
  return out;
}

// --- SVG ---------------------------------------------------------------------------------------------------

interface Bar {
  readonly label: string;
  readonly value: number;
  readonly lo: number;
  readonly hi: number;
}

/** Horizontal bars of MB/s (median, with the min–max range as a whisker), one group per workload. */
export function svgChart(workloads: readonly WorkloadResult[]): string | undefined {
  const groups = workloads
    .filter((w) => !w.skipped && w.runs.length && (w.id === "1" || w.id.startsWith("4")))
    .map((w) => ({
      title: w.id === "1" ? `1 · one ${mib(Number(w.params.size))} file` : `4 · fan-out to ${String(w.params.receivers)}, ${mib(Number(w.params.size))} each (aggregate)`,
      bars: summarise(w)
        .filter((s) => s.n > 0)
        .map((s): Bar => {
          const bytes = w.runs.find((r) => r.contender === s.contender && r.ok)?.bytes ?? 0;
          return { label: s.contender, value: s.mbps, lo: mbps(bytes, s.seconds.max), hi: mbps(bytes, s.seconds.min) };
        }),
    }))
    .filter((g) => g.bars.length);
  if (!groups.length) return undefined;
  const width = 760;
  const left = 170;
  const right = 90;
  const barH = 18;
  const gap = 6;
  const max = Math.max(...groups.flatMap((g) => g.bars.map((b) => b.hi)), 1);
  const scale = (v: number) => ((width - left - right) * v) / max;
  const colour: Record<string, string> = { [FMQ]: "#d9480f", [FMQ_WARM]: "#f08c00", [FMQ_NO_AHEAD]: "#ae3ec9", [FMQ_STALLED]: "#e64980", [RAW]: "#495057", [CP]: "#1c7ed6", [RSYNC]: "#2f9e44" };
  const parts: string[] = [];
  let y = 40;
  for (const g of groups) {
    parts.push(`<text x="10" y="${y}" font-weight="bold">${esc(g.title)}</text>`);
    y += 10;
    for (const b of g.bars) {
      const w = Math.max(1, scale(b.value));
      parts.push(`<text x="${left - 8}" y="${y + barH - 5}" text-anchor="end">${esc(b.label)}</text>`);
      parts.push(`<rect x="${left}" y="${y}" width="${w.toFixed(1)}" height="${barH}" fill="${colour[b.label] ?? "#868e96"}"/>`);
      if (b.hi > b.lo) {
        const mid = y + barH / 2;
        parts.push(`<line x1="${(left + scale(b.lo)).toFixed(1)}" y1="${mid}" x2="${(left + scale(b.hi)).toFixed(1)}" y2="${mid}" stroke="#000" stroke-width="1.5"/>`);
      }
      parts.push(`<text x="${(left + Math.max(w, scale(b.hi)) + 6).toFixed(1)}" y="${y + barH - 5}">${b.value.toFixed(0)} MB/s</text>`);
      y += barH + gap;
    }
    y += 22;
  }
  const height = y;
  return [
    `<svg xmlns="http://www.w3.org/2000/svg" width="${width}" height="${height}" font-family="sans-serif" font-size="12">`,
    `<rect width="100%" height="100%" fill="#fff"/>`,
    `<text x="10" y="20" font-size="14">Throughput, MB/s (median; line = min–max over repetitions; higher is better)</text>`,
    ...parts,
    `</svg>`,
    "",
  ].join("\n");
}

function mib(bytes: number): string {
  return bytes >= 1024 ** 3 ? `${+(bytes / 1024 ** 3).toFixed(2)} GiB` : `${+(bytes / 1024 ** 2).toFixed(1)} MiB`;
}

function esc(text: string): string {
  return text.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;");
}
