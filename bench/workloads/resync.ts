// Workload 5 (later, per the issue): resubscribe with an unchanged 10,000-file tree (should cost next to
// nothing), and 1 MiB changed inside a 1 GiB file (should move about 1 MiB, not 1 GiB): what fmq's RESYNC
// cache and delta transfer are for (README, "Protocol" extensions).
//
// This is the place: build the tree with writeRandomTree (data.ts), mirror it once with runFmq
// (contenders.ts), stop the subscriber, then time a second `fmq subscribe` on the same inbox (its .fmq/
// manifest is the cache) from "subscribed" until the publisher has nothing left to send for it. The CLI
// needs an event for "nothing left to send" (today there is only "sent" per file; for the unchanged tree
// nothing is sent at all). For the 1 MiB change, count the payload bytes that moved (a "sent" size of the
// delta, or the server's bytes) besides the time. Baselines: rsync no-op (baselines doc: 0.175 s for 10k
// files) and rsync --whole-file / --no-whole-file for the 1 MiB change (1.50 s / 1.96 s for 1 GiB).

import type { WorkloadResult } from "../types.js";
import type { Context } from "./common.js";

export function resync(ctx: Context): Promise<WorkloadResult> {
  const reason = "not written yet (later, per the issue); its place is bench/workloads/resync.ts";
  ctx.log(`[5] skipped: ${reason}`);
  return Promise.resolve({ id: "5", title: "resubscribe unchanged 10k tree; 1 MiB changed in 1 GiB", params: {}, skipped: reason, runs: [], notes: [] });
}
