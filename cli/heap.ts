// A publisher's memory for a big tree. Its start scan (chokidar's read of every directory, an lstat and a
// watch per file) makes garbage as fast as it can, and V8 then lets its old generation grow to up to four
// times what was live at the last full collection before it collects again. The peak stays as RSS for as
// long as the publisher runs (V8 gives it back only once it has been idle for a while: about 40 s after
// a scan of 100,000 files). Growing by half at most costs more full collections during the scan; while it
// sends, `--trace-gc` counted the same collections as before (10,000 small files; 1 GiB; 256 MiB to 16
// subscribers at once).
// Measured on 2026-12-06, `fmq publish` of 100,000 files of 4 KiB (1,000 directories), four runs each (two
// with the flag on node's command line, two as set here): peak RSS 863-874 MiB, every file published
// after 12.9-14.0 s; growing by half: 593-599 MiB, 14.3-16.7 s (by 30 %: 556-566 MiB, 15.1-17.4 s).
// 50,000 files of 1 KiB: 545-581 MiB against 400-406; 10,000 of 4 KiB: 192-199 against 172-174.

import { setFlagsFromString } from "node:v8";

/** How much V8's old generation may grow, in per cent of what was live, between full collections. */
export const HEAP_GROWING_PERCENT = 50;

/**
 * The V8 flag a server process takes at start, or undefined when Node was started with a growth of its
 * own (`node --heap-growing-percent=N dist/cli/fmq.js publish ...`: that one stands).
 */
export function heapGrowthFlag(execArgv: readonly string[]): string | undefined {
  if (execArgv.some((arg) => /^--heap[-_]growing[-_]percent(=|$)/.test(arg))) return undefined;
  return `--heap-growing-percent=${HEAP_GROWING_PERCENT}`;
}

/** For a process that publishes (publish, track): see the top of this file. */
export function boundHeapGrowth(execArgv: readonly string[] = process.execArgv): void {
  const flag = heapGrowthFlag(execArgv);
  if (flag !== undefined) setFlagsFromString(flag);
}
