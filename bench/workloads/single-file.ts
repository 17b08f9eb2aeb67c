// Workloads 1 and 4: one big file from one publisher to K receivers (K = 1: "one 1 GiB file";
// K = 1, 4, 16: fan-out). Every contender delivers the same file to K destinations at once.

import { mkdir, rm } from "node:fs/promises";
import path from "node:path";
import { runCp, runFmq, runRawPipe, type FmqSettings, type Transfer } from "../contenders.js";
import { FMQ_STATE, sha256File, verifyTree, writeRandomFile, type Skip, type TreeHashes } from "../data.js";
import { CP, FMQ, FMQ_NO_AHEAD, FMQ_STALLED, FMQ_WARM, RAW, RSYNC, type WorkloadResult } from "../types.js";
import { repeat, timeoutFor, type Contender, type Context } from "./common.js";

const NAME = "big.bin";

export async function singleFile(id: string, title: string, size: number, receivers: number, ctx: Context): Promise<WorkloadResult> {
  const { config } = ctx;
  const dir = path.join(config.tmp, `w${id.replace(/\W/g, "-")}`);
  const srcDir = path.join(dir, "src");
  const src = path.join(srcDir, NAME);
  ctx.log(`[${id}] writing ${size} random bytes`);
  const hash = await writeRandomFile(src, size);
  // The same warm page cache for every contender: read the source once (and check what we wrote).
  if ((await sha256File(src)) !== hash) throw new Error(`${src}: sha256 changed after writing`);
  const expected: TreeHashes = new Map([[NAME, hash]]);

  const dsts = (who: string, root = path.join(dir, "out")) => Array.from({ length: receivers }, (_, k) => path.join(root, who, `r${k}`));
  const transfer = (src: string, to: string[]): Transfer => ({ src, dsts: to, files: 1, bytes: size, timeoutMs: timeoutFor(size * receivers, receivers), ...(ctx.profiler ? { profiler: ctx.profiler } : {}) });
  const verifyAll = (to: string[], skip?: Skip) => async () => {
    for (const dst of to) {
      const wrong = await verifyTree(dst, expected, skip);
      if (wrong) return wrong;
    }
    return undefined;
  };

  const contenders: Contender[] = [];
  const notes: string[] = [];
  const raw = dsts("raw");
  contenders.push({ name: RAW, dsts: raw, verify: verifyAll(raw), run: (rep) => runRawPipe(RAW, rep, transfer(src, raw), config.chunkSize, config.window) });
  /** An fmq contender: the plain one, or one with an extra setting (see FmqSettings). */
  const fmqContender = (name: string, who: string, extra: Partial<FmqSettings> = {}): Contender => {
    const to = dsts(who);
    const settings: FmqSettings = { cli: config.fmqCli, chunkSize: config.chunkSize, window: config.window, stableMs: config.stableMs, ...extra };
    return { name, dsts: to, verify: verifyAll(to, FMQ_STATE), run: (rep) => runFmq(name, rep, transfer(srcDir, to), settings) };
  };
  contenders.push(fmqContender(FMQ, "fmq"));
  if (id === "1") {
    // The same transfer from a publisher that has already sent the file once (to an untimed subscriber),
    // so has its fingerprint: what every subscriber after the first gets.
    contenders.push(fmqContender(FMQ_WARM, "fmq-warm", { warmUpInbox: path.join(dir, "warm-up") }));
    // A first transfer with no background fingerprint pass: one read of the file instead of two.
    contenders.push(fmqContender(FMQ_NO_AHEAD, "fmq-no-ahead", { publishFlags: ["--no-hash-ahead"] }));
  }
  if (id.startsWith("4")) {
    // The same fan-out with one more subscriber that hangs early in its transfer: the others' figures
    // beside the plain fmq row show whether one stuck subscriber slows the rest.
    contenders.push(fmqContender(FMQ_STALLED, "fmq-stalled", { stalledInbox: path.join(dir, "stalled") }));
    notes.push(`"${FMQ_STALLED}": K timed subscribers plus one started first and frozen with SIGSTOP once it held 1 MiB (its pipe fills and stays full for the whole run: this row's publisher has peer-timeout-ms 120 s instead of 15 s, so that it does not cut the frozen one part way through); its "vs fmq alone" column (fan-out detail) compares it with "${FMQ}", pair by pair.`);
  }
  const cp = dsts("cp");
  contenders.push({ name: CP, dsts: cp, verify: verifyAll(cp), run: (rep) => runCp(CP, rep, transfer(src, cp), false) });
  const rsync = ctx.rsync;
  if (rsync) {
    const to = dsts(`w${id.replace(/\W/g, "-")}`, rsync.root);
    contenders.push({ name: RSYNC, dsts: to, verify: verifyAll(to), run: (rep) => rsync.run(RSYNC, rep, transfer(src, to), false) });
  }

  await mkdir(path.join(dir, "out"), { recursive: true });
  const runs = await repeat(id, contenders, ctx, async () => void (await sha256File(src)));
  await rm(dir, { recursive: true, force: true });
  return { id, title, params: { size, receivers, chunkSize: config.chunkSize, window: config.window }, runs, notes };
}
