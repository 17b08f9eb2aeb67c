// Free page reporting, held back for the bench's run.
//
// These VMs (Firecracker, virtio-balloon with free page reporting) hand memory the guest frees back to
// the host, and whoever writes into it next pays a fault the host must serve (about 13 µs a page): a
// 1 GiB transfer took about 1.3 s or about 2.5 s depending on which memory it got (bench/README.md).
// This kernel reports a page as soon as it is free (`min_free_ms` 0). The bench writes and deletes a
// scratch file before each run so that every contender writes into memory freed a moment ago, but the
// host could take that memory back while the run was writing into it: which runs were hit depended on
// the timing, not on the contender. Measured by hand (two subscribers in a row from one publisher, a
// 1 GiB scratch file written and deleted before each; /tmp/prof/pair2.mjs in the closing note of
// issue 5): with `min_free_ms` 0 the first transfer took 2.15-3.23 s and the second 1.16-1.28 in 3 of 3
// pairs, and the other way round (1.30-1.41 against 2.69-2.89) in 3 of 3 pairs started 4 s later; the
// slow one's subscriber spent 1.6-2.4 s in the kernel against 0.7. With `min_free_ms` 30000, all twelve
// took 1.26-1.73 s, 0.73-0.89 s in the kernel.
//
// So for the run's length the bench asks the kernel to keep freed memory for a minute before reporting
// it (every contender alike), and puts the setting back when it ends, however it ends: at exit, on a
// signal, and, if the bench is killed outright (SIGKILL, the OOM killer), by its watchdog
// (watchdog.ts). Where the setting does not exist (no free page reporting: nothing to hold back) or
// cannot be written (not root), the report says so.
//
// That alone held back less than it seemed: this kernel also caps how much freed memory may wait
// unreported (`max_waiting_mib`, 1024), and past the cap it reports whatever the minute says. Fan-out 16
// frees and writes 4 GiB, so which memory its contenders got depended on how late they started: the
// slower one was slowed further (fmq and the bare pipe by 11-38 % in three pairs of runs; the figures are
// in bench/README.md). So the cap is raised too, to 8192 MiB, for the run, and put back the same way. It
// narrows, not removes: up to about 1 GiB still goes back after a 4 GiB free with both settings held.

import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { onExit } from "./measure.js";

const PARAMETERS = "/sys/module/page_reporting/parameters";

/** How long freed memory is kept from the host during the run (ms). */
export const HOLD_MS = 60_000;
/** How much freed memory may wait unreported during the run (MiB). */
export const HOLD_WAITING_MIB = 8192;

/** A kernel setting the bench changed: `before` goes back into `file` if it still reads `held`. */
export interface HeldSetting {
  readonly file: string;
  readonly held: string;
  readonly before: string;
}

/** What was done, in words for the machine line and the notes. */
export interface PageReporting {
  readonly state: "held" | "absent" | "unchanged" | "left";
  readonly text: string;
  /** What to put back if the bench dies without its exit hooks (watchdog.ts): what we changed. */
  readonly putBack: readonly HeldSetting[];
}

/**
 * Hold back free page reporting until the bench exits (unless `leave`): `min_free_ms` (required: without
 * it there is nothing to hold back) and, where this kernel has it, `max_waiting_mib`. `parameters`: the
 * directory of those files (tests).
 */
export function holdFreePageReporting(leave: boolean, parameters = PARAMETERS): PageReporting {
  const minFree = path.join(parameters, "min_free_ms");
  const waiting = path.join(parameters, "max_waiting_mib");
  const current = (file: string): string | undefined => {
    try {
      return readFileSync(file, "utf8").trim();
    } catch {
      return undefined;
    }
  };
  const minFreeBefore = current(minFree);
  if (minFreeBefore === undefined) return { state: "absent", text: "no free page reporting here", putBack: [] };
  const waitingBefore = current(waiting);
  const now = `min_free_ms ${minFreeBefore}${waitingBefore === undefined ? "" : `, max_waiting_mib ${waitingBefore}`}`;
  if (leave) return { state: "left", text: `free page reporting left as it is (${now})`, putBack: [] };

  const wanted = [
    { file: minFree, before: minFreeBefore, held: String(HOLD_MS) },
    ...(waitingBefore === undefined ? [] : [{ file: waiting, before: waitingBefore, held: String(HOLD_WAITING_MIB) }]),
  ];
  const putBack: HeldSetting[] = [];
  const changes: string[] = [];
  for (const setting of wanted) {
    // (Already at least what we want: left alone, and nothing to put back.)
    if (Number(setting.before) >= Number(setting.held)) continue;
    try {
      writeFileSync(setting.file, setting.held);
    } catch (error) {
      putBackAll(putBack);
      const code = (error as NodeJS.ErrnoException).code ?? String(error);
      return {
        state: "unchanged",
        text: `free page reporting could not be held back (${code} writing ${setting.file}; ${now}): 1 GiB and fan-out figures vary with which memory each run gets; run as root, or set min_free_ms to ${HOLD_MS} and max_waiting_mib to ${HOLD_WAITING_MIB} by hand`,
        putBack: [],
      };
    }
    putBack.push(setting);
    changes.push(`${path.basename(setting.file)} ${setting.before} -> ${setting.held}`);
  }
  if (putBack.length === 0) return { state: "held", text: `free page reporting already held back (${now})`, putBack };
  onExit(() => putBackAll(putBack));
  return { state: "held", text: `free page reporting held back during the run (${changes.join(", ")}, put back at the end)`, putBack };
}

/** Put `settings` back as they were, the last one set first. */
function putBackAll(settings: readonly HeldSetting[]): void {
  for (const setting of [...settings].reverse()) {
    try {
      writeFileSync(setting.file, setting.before);
    } catch {
      // (Gone, or no longer ours to write: the others still go back.)
    }
  }
}
