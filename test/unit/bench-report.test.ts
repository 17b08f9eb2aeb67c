// The bench's summaries: ratios are paired by repetition, and the stalled-subscriber row says how the
// timed subscribers fared beside one stuck subscriber, pair by pair.

import { describe, expect, it } from "vitest";
import { markdown, summarise } from "../../bench/report.js";
import { orderFor, repeat, type Contender } from "../../bench/workloads/common.js";
import type { BenchConfig } from "../../bench/types.js";
import { tempDir } from "../helpers/tmp.js";
import { FMQ, FMQ_STALLED, RAW, type Run, type WorkloadResult } from "../../bench/types.js";

function run(contender: string, rep: number, seconds: number, ok = true): Run {
  return { contender, rep, ok, seconds, wallSeconds: seconds, bytes: 4 * 2 ** 20, files: 4, stealPct: 0 };
}

function fanout(runs: Run[]): WorkloadResult {
  return { id: "4/4", title: "fan-out 4 × 1 MiB", params: { receivers: 4 }, runs, notes: [] };
}

describe("bench report", () => {
  it("pairs the stalled row with plain fmq by repetition, and only that row", () => {
    const workload = fanout([
      run(RAW, 1, 1.0),
      run(FMQ, 1, 2.0),
      run(FMQ_STALLED, 1, 2.5), // slowed: 0.8
      run(RAW, 2, 1.0),
      run(FMQ, 2, 3.0),
      run(FMQ_STALLED, 2, 2.0), // faster: 1.5
      run(RAW, 3, 1.0),
      run(FMQ, 3, 2.2),
      run(FMQ_STALLED, 3, 2.0), // 1.1
      run(FMQ, 4, 9.0, false), // a failed run pairs with nothing
      run(FMQ_STALLED, 4, 1.0),
    ]);
    const rows = summarise(workload);
    const stalled = rows.find((s) => s.contender === FMQ_STALLED)!;
    // Paired medians differ from the ratio of medians (2.2 / 2.0 = 1.1 here by chance; the pairs are what count).
    expect(stalled.vsAlone).toEqual({ median: 1.1, min: 0.8, max: 1.5, n: 3 });
    expect(rows.find((s) => s.contender === FMQ)!.vsAlone).toBeUndefined();
    expect(stalled.speedVs[RAW]).toBeCloseTo(1 / 2.0, 6); // rep 4 has no raw pipe run: pairs 1-3 only

    const report = markdown(
      {
        startedAt: "now",
        durationS: 1,
        command: "bench",
        machine: {},
        stealPct: 0,
        loadAtStartPct: 0,
        disturbance: { diskReadMiB: 0, cacheDrops: 0, reclaimMiB: 0 },
        workloads: [workload],
        notes: [],
        failures: [],
      },
      undefined,
    );
    const line = report.split("\n").find((l) => l.startsWith(`| 4 | ${FMQ_STALLED} |`));
    expect(line).toMatch(/\| 1\.10 \[0\.80–1\.50\] \(3\) \|$/);
    const plain = report.split("\n").find((l) => l.startsWith(`| 4 | ${FMQ} |`));
    expect(plain).toMatch(/\| – \|$/);
  });
  it("bench - fan-out fairness per repetition: first ÷ last end (start-up counted) and slowest ÷ fastest own MB/s", () => {
    const timed = (rep: number, ends: number[], own: number[]): Run => ({ ...run(FMQ, rep, Math.max(...ends)), extra: { endedAfterS: ends, startedAfterS: ends.map((e, i) => e - own[i]!), ownSeconds: own } });
    const workload = fanout([
      // Rep 1: the first receiver started 1 s before the rest and ended first: 3 ÷ 4 by ends, 3 ÷ 3 by own times.
      timed(1, [3, 4, 4, 4], [3, 3, 3, 3]),
      // Rep 2: all started together, one got half the others' rate.
      timed(2, [2, 2, 2, 4], [2, 2, 2, 4]),
      timed(3, [5, 5, 5, 5], [5, 5, 5, 5]),
    ]);
    const row = summarise(workload)[0]!;
    expect(row.endRatio).toBe(0.75); // median of 0.75, 0.5, 1
    expect(row.ownRatio).toBe(1); // median of 1, 0.5, 1
    const report = markdown({ startedAt: "now", durationS: 1, command: "bench", machine: {}, stealPct: 0, loadAtStartPct: 0, disturbance: { diskReadMiB: 0, cacheDrops: 0, reclaimMiB: 0 }, workloads: [workload], notes: [], failures: [] }, undefined);
    expect(report.split("\n").find((l) => l.startsWith(`| 4 | ${FMQ} |`))).toMatch(/\| 0\.75 \| 1\.00 \| 0\.000 \|/);
  });

  it("bench - the order changes each repetition so that no contender always follows the same one", () => {
    for (const count of [3, 4, 6, 8]) {
      for (const reps of [3, 5, 7]) {
        const names = Array.from({ length: count }, (_, i) => `c${i}`);
        const predecessors = new Map<string, string[]>(names.map((n) => [n, []]));
        for (let rep = 1; rep <= reps; rep++) {
          const order = orderFor(names, rep);
          expect([...order].sort()).toEqual([...names].sort());
          for (let i = 1; i < order.length; i++) predecessors.get(order[i]!)!.push(order[i - 1]!);
        }
        // (Cyclic rotation alone failed this: each followed the same one whenever it was not first.)
        for (const [name, before] of predecessors) if (before.length >= 2) expect(new Set(before).size, `${name} of ${count}, ${reps} reps`).toBeGreaterThanOrEqual(2);
      }
    }
  });
  it("a repetition over twice the same contender's fastest is run once more and replaced, said in the notes; a contender slow every time is not", async () => {
    const times: Record<string, number[]> = { steady: [3, 3.1, 2.9], spiky: [1, 3.5, 1.1, 1.05] };
    const contender = (name: string): Contender => {
      let k = 0;
      return { name, dsts: [], verify: async () => undefined, run: async (rep) => run(name, rep, times[name]![k++]!) };
    };
    const lines: string[] = [];
    const config = { reps: 3, tmp: await tempDir() } as unknown as BenchConfig;
    const runs = await repeat("t", [contender("steady"), contender("spiky")], { config, rsync: undefined, log: (line) => lines.push(line) });
    expect(runs.filter((r) => r.contender === "steady").map((r) => r.seconds)).toEqual([3, 3.1, 2.9]);
    const spiky = runs.filter((r) => r.contender === "spiky").sort((a, b) => a.rep - b.rep);
    expect(spiky.map((r) => [r.rep, r.seconds, r.rerunOf])).toEqual([
      [1, 1, undefined],
      [2, 1.05, 3.5],
      [3, 1.1, undefined],
    ]);
    expect(lines.at(-1)).toMatch(/run again: the first took 3\.500 s, over 2× its fastest, 1\.000 s/);
    const workload: WorkloadResult = { id: "2", title: "t", params: {}, runs, notes: [] };
    const text = markdown({ startedAt: "now", durationS: 1, command: "bench", machine: {}, stealPct: 0, loadAtStartPct: 0, disturbance: { diskReadMiB: 0, cacheDrops: 0, reclaimMiB: 0 }, workloads: [workload], notes: [], failures: [] }, undefined);
    expect(text).toContain("Repetitions run again because they took more than 2× the same contender's fastest in the workload");
    expect(text).toContain("2 rep 2 spiky (3.500 s, then 1.050 s)");
  });
});
