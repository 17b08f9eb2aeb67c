// Workload 3: write → delivered latency of single small files, one at a time, through a publisher and a
// subscriber that are already running. Latency = from writeFile() resolving in the bench to the
// subscriber's "delivered" line arriving in the bench. It includes the publisher's quiet period
// (--stable-ms), so it runs once per --latency-stable-ms value: the default shows what a user sees,
// 0 shows fmq's own overhead. The publisher's "sent" line splits it into before and after the network.

import { randomBytes } from "node:crypto";
import { mkdir, readFile, rm, writeFile } from "node:fs/promises";
import path from "node:path";
import { sha256 } from "../data.js";
import { Proc, freePort, now, percentile, sleep } from "../measure.js";
import { FMQ, type LatencySummary, type WorkloadResult } from "../types.js";
import type { Context } from "./common.js";

export async function latency(ctx: Context): Promise<WorkloadResult> {
  const { config } = ctx;
  const summaries: LatencySummary[] = [];
  for (const stableMs of config.latencyStableMs) {
    summaries.push(await measure(ctx, stableMs));
  }
  return {
    id: "3",
    title: `write → delivered latency, ${config.fileSize} B files`,
    params: { files: config.latencyFiles, fileSize: config.fileSize, stableMs: config.latencyStableMs },
    runs: [],
    latency: summaries,
    notes: [
      "Latency runs from writeFile() resolving to the subscriber's delivered line reaching the bench (all on this machine), one file at a time with a 20–70 ms random gap; one unmeasured file first.",
      "It includes the publisher's quiet period (--stable-ms, default 150 ms): a file is shipped only once its size and mtime have not changed for that long.",
    ],
  };
}

async function measure(ctx: Context, stableMs: number): Promise<LatencySummary> {
  const { config } = ctx;
  const contender = `${FMQ} (--stable-ms ${stableMs})`;
  const dir = path.join(config.tmp, `w3-${stableMs}`);
  const src = path.join(dir, "src");
  const inbox = path.join(dir, "inbox");
  await mkdir(src, { recursive: true });
  const endpoint = `tcp://127.0.0.1:${await freePort()}`;
  const procs: Proc[] = [];
  const samples: number[] = [];
  const toSent: number[] = [];
  const sentToDelivered: number[] = [];
  try {
    const pub = Proc.node("fmq publish", config.fmqCli, ["publish", src, "--bind", endpoint, "--json", "--stable-ms", String(stableMs)]);
    procs.push(pub);
    await pub.waitFor((d) => d.event === "ready", 60_000, '"ready"');
    const sub = Proc.node("fmq subscribe", config.fmqCli, ["subscribe", "/", "--connect", endpoint, "--inbox", inbox, "--json"]);
    procs.push(sub);
    await sub.waitFor((d) => d.event === "subscribed", 60_000, '"subscribed"');
    for (let i = -1; i < config.latencyFiles; i++) {
      const name = i < 0 ? "warm-up.bin" : `lat-${String(i).padStart(4, "0")}.bin`;
      const data = randomBytes(config.fileSize);
      // The whole file: with --stable-ms 0 the publisher may ship what it saw the moment the file was
      // created (empty, or part of it), and the whole file right after; that first delivery is not the
      // one a reader waits for (it failed the check in 1 of 50 files once).
      const delivered = sub.waitFor((d) => d.event === "delivered" && d.path === name && d.size === data.length, 30_000, `delivered ${name}`);
      const sent = pub.waitFor((d) => d.event === "sent" && d.path === `/${name}` && d.size === data.length, 30_000, `sent /${name}`);
      await writeFile(path.join(src, name), data);
      const written = now();
      const [d, s] = await Promise.all([delivered, sent]);
      const got = await readFile(path.join(inbox, name));
      if (sha256(got) !== sha256(data)) throw new Error(`${name}: delivered bytes differ (sha256)`);
      if (i >= 0) {
        samples.push(d.t - written);
        toSent.push(s.t - written);
        sentToDelivered.push(d.t - s.t);
      }
      await sleep(20 + Math.random() * 50);
    }
    const errors = procs.flatMap((p) => p.errors());
    if (errors.length) throw new Error(errors.slice(0, 3).join("; "));
    const summary = summarise(contender, samples, toSent, sentToDelivered, true);
    ctx.log(
      `[3] ${contender}: p50 ${summary.p50.toFixed(1)} ms, p90 ${summary.p90.toFixed(1)}, p99 ${summary.p99.toFixed(1)}, max ${summary.max.toFixed(1)} (n=${summary.n}) verified`,
    );
    return summary;
  } catch (error) {
    const message = error instanceof Error ? error.message : String(error);
    ctx.log(`[3] ${contender}: FAILED: ${message}`);
    return { ...summarise(contender, samples, toSent, sentToDelivered, false), error: message };
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await rm(dir, { recursive: true, force: true });
  }
}

function summarise(contender: string, samples: number[], toSent: number[], sentToDelivered: number[], ok: boolean): LatencySummary {
  return {
    contender,
    n: samples.length,
    p50: percentile(samples, 50),
    p90: percentile(samples, 90),
    p99: percentile(samples, 99),
    max: Math.max(...samples),
    min: Math.min(...samples),
    toSentP50: percentile(toSent, 50),
    sentToDeliveredP50: percentile(sentToDelivered, 50),
    samplesMs: samples.map((s) => Math.round(s * 100) / 100),
    ok,
  };
}
