// Workload 2: a fresh tree of many small files (default 10,000 × 4 KiB, 100 per directory), mirrored
// once. The raw pipe moves one file only, so it has no row here: cp -r and rsync are the baselines.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { runCp, runFmq, type FmqSettings, type Transfer } from "../contenders.js";
import { FMQ_STATE, verifyTree, writeRandomTree } from "../data.js";
import { CP, FMQ, FMQ_WARM, RSYNC, type WorkloadResult } from "../types.js";
import { repeat, setAside, timeoutFor, type Contender, type Context } from "./common.js";

export async function manyFiles(ctx: Context): Promise<WorkloadResult> {
  const { config } = ctx;
  const { files, fileSize } = config;
  const dir = path.join(config.tmp, "w2");
  const src = path.join(dir, "src");
  ctx.log(`[2] writing ${files} random files of ${fileSize} bytes`);
  const expected = await writeRandomTree(src, files, fileSize);
  // Read it once: a warm cache for everyone, and a check of what we wrote.
  const wrongSource = await verifyTree(src, expected);
  if (wrongSource) throw new Error(`source tree: ${wrongSource}`);

  const transfer = (to: string): Transfer => ({ src, dsts: [to], files, bytes: files * fileSize, timeoutMs: timeoutFor(files * fileSize, files), ...(ctx.profiler ? { profiler: ctx.profiler } : {}) });
  const out = path.join(dir, "out");
  await mkdir(out, { recursive: true });
  const contenders: Contender[] = [];

  /** An fmq contender into out/<who>: the plain one, or one with an extra setting (see FmqSettings). */
  const fmqContender = (name: string, who: string, extra: Partial<FmqSettings> = {}): Contender => {
    const to = path.join(out, who);
    const settings: FmqSettings = { cli: config.fmqCli, chunkSize: config.chunkSize, window: config.window, stableMs: config.stableMs, ...extra };
    return { name, dsts: [to], manyFiles: true, verify: () => verifyTree(to, expected, FMQ_STATE), run: (rep) => runFmq(name, rep, transfer(to), settings) };
  };
  contenders.push(fmqContender(FMQ, "fmq"));
  // The same tree from a publisher that has already sent it once (to an untimed subscriber): its code
  // is compiled and its files' fingerprints known, as for every subscriber after a server's first.
  contenders.push(fmqContender(FMQ_WARM, "fmq-warm", { warmUpInbox: path.join(dir, "warm-up"), discardWarmUp: (inbox) => setAside(inbox, ctx) }));
  const cp = path.join(out, "cp");
  contenders.push({ name: CP, dsts: [cp], manyFiles: true, verify: () => verifyTree(cp, expected), run: (rep) => runCp(CP, rep, transfer(cp), true) });
  const rsync = ctx.rsync;
  if (rsync) {
    const to = rsync.local("w2");
    contenders.push({ name: RSYNC, dsts: [to], manyFiles: true, verify: () => verifyTree(to, expected), run: (rep) => rsync.run(RSYNC, rep, transfer(to), true) });
  }

  const runs = await repeat("2", contenders, ctx, async () => void (await verifyTree(src, expected)));
  await setAside(dir, ctx);
  return {
    id: "2",
    title: `${files} × ${fileSize} B files`,
    params: { files, fileSize, perDirectory: 100 },
    runs,
    notes: [
      `fmq is timed from "subscribed", once the publisher has reported every file "published" (its scan and start-up are not timed; see publisherStartupS and publisherSettledS in the JSON).`,
      `"${FMQ_WARM}": an untimed subscriber received the whole tree from the same publisher first (its inbox set aside before the timed run); the timed subscriber is a new process either way.`,
      "The raw zeromq.js pipe moves one file; it has no figure here.",
    ],
  };
}
