// What the bench leaves behind if it is killed outright.
//
// Exit hooks and signal handlers (measure.ts) stop the bench's child processes, remove its temporary
// directory and put back the kernel settings it changed (page-reporting.ts), however it ends, except by
// SIGKILL (kill -9, the OOM killer), which nothing in the process survives. Then an `fmq publish` would
// run on for ever, an rsync daemon would keep its port, gigabytes of test data would stay in the
// temporary directory, and free page reporting would stay held back. So the bench starts a small shell
// process of its own that waits for it to be gone and then does the same: it puts each setting back if
// it still holds what the bench wrote, stops every process whose command line names the bench's temporary
// directory (the contenders all do: sources, inboxes, the daemon's config; a few short-lived helpers,
// such as sync and the memory probe, do not and end by themselves), and removes the directory.
//
// It learns that the bench is gone from the pipe on its stdin, which only the bench holds (libuv opens
// pipes close-on-exec, so the bench's children do not): end of file comes the moment the bench dies,
// zombie or not, and a pid used again by another process changes nothing. After a normal end it finds
// nothing left to do. What it is told comes through its environment, not its command line, so that it
// never matches itself. It needs pkill (procps).

import { spawn } from "node:child_process";
import path from "node:path";
import type { HeldSetting } from "./page-reporting.js";

export interface Leftovers {
  /** The bench's own temporary directory (a fresh mkdtemp: its path names nothing else). */
  readonly tmp: string;
  /**
   * Settings to put back, in the order they were set (put back last first): `before` is written to
   * `file` if it still reads `held`.
   */
  readonly settings?: readonly HeldSetting[];
}

const SCRIPT = `
cat > /dev/null
printf '%s\\n' "$FMQ_BENCH_SETTINGS" | while IFS='\t' read -r file held before; do
  if [ -n "$file" ] && [ "$(cat "$file" 2>/dev/null)" = "$held" ]; then
    printf %s "$before" > "$file"
  fi
done
[ -n "$FMQ_BENCH_TMP" ] || exit 0
if pkill -TERM -f -- "$FMQ_BENCH_PATTERN"; then
  sleep 1
  pkill -KILL -f -- "$FMQ_BENCH_PATTERN"
fi
rm -rf -- "$FMQ_BENCH_TMP"
`;

/** Start the watchdog for this process (see above). It outlives us by design: detached, not waited for. */
export function watchOver(leftovers: Leftovers): void {
  // (Only a directory of the bench's own making: every process naming it is stopped, and it removed.)
  if (!path.isAbsolute(leftovers.tmp) || !/^fmq-bench-[^/]+$/.test(path.basename(leftovers.tmp))) throw new Error(`watchOver: not a bench directory: ${leftovers.tmp}`);
  const watchdog = spawn("sh", ["-c", SCRIPT, "fmq-bench-watchdog"], {
    detached: true,
    stdio: ["pipe", "ignore", "ignore"],
    env: {
      PATH: process.env.PATH ?? "/usr/bin:/bin",
      FMQ_BENCH_TMP: leftovers.tmp,
      // pkill takes a regular expression: the path as written, and then nothing or a path below it.
      FMQ_BENCH_PATTERN: `${leftovers.tmp.replace(/[.*+?^${}()|[\]\\]/g, "\\$&")}(/| |$)`,
      // One setting a line, its file, held and before values separated by tabs (sysfs paths have none).
      FMQ_BENCH_SETTINGS: [...(leftovers.settings ?? [])].reverse().map((s) => `${s.file}\t${s.held}\t${s.before}`).join("\n"),
    },
  });
  // (No sh, or it failed to start: the bench runs as before, without this safety net.)
  watchdog.on("error", () => undefined);
  watchdog.stdin?.on("error", () => undefined);
  // (Neither it nor its pipe keeps us running.)
  (watchdog.stdin as unknown as { unref?: () => void } | null)?.unref?.();
  watchdog.unref();
}
