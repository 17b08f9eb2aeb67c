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

import { readFileSync, writeFileSync } from "node:fs";
import { onExit } from "./measure.js";

const MIN_FREE_MS = "/sys/module/page_reporting/parameters/min_free_ms";

/** How long freed memory is kept from the host during the run (ms). */
export const HOLD_MS = 60_000;

/** What was done, in words for the machine line and the notes. */
export interface PageReporting {
  readonly state: "held" | "absent" | "unchanged" | "left";
  readonly text: string;
  /** What to put back if the bench dies without its exit hooks (watchdog.ts): set when we changed it. */
  readonly putBack?: { readonly file: string; readonly held: string; readonly before: string };
}

/** Hold back free page reporting until the bench exits (unless `leave`). `setting`: the file (tests). */
export function holdFreePageReporting(leave: boolean, setting = MIN_FREE_MS): PageReporting {
  let before: string;
  try {
    before = readFileSync(setting, "utf8").trim();
  } catch {
    return { state: "absent", text: "no free page reporting here" };
  }
  if (leave) return { state: "left", text: `free page reporting left as it is (min_free_ms ${before})` };
  if (Number(before) >= HOLD_MS) return { state: "held", text: `free page reporting already held back (min_free_ms ${before})` };
  try {
    writeFileSync(setting, String(HOLD_MS));
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code ?? String(error);
    return {
      state: "unchanged",
      text: `free page reporting could not be held back (${code} writing ${setting}; min_free_ms ${before}): 1 GiB figures vary with which memory each run gets; run as root, or set it to ${HOLD_MS} by hand`,
    };
  }
  onExit(() => writeFileSync(setting, before));
  return {
    state: "held",
    text: `free page reporting held back during the run (min_free_ms ${before} -> ${HOLD_MS}, put back at the end)`,
    putBack: { file: setting, held: String(HOLD_MS), before },
  };
}
