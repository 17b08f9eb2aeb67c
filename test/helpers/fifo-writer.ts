// A detector of open(): a process blocked opening a FIFO to write, which the kernel lets go the moment
// anyone opens that FIFO to read (even with O_NONBLOCK, even if they close it at once). So "was this
// file opened?" can be answered from outside the code under test.

import { spawn, type ChildProcess } from "node:child_process";
import { readFileSync } from "node:fs";
import { waitFor } from "./wait.js";

export interface FifoWriter {
  /** The writer's open() returned: someone opened the FIFO to read. */
  readonly released: () => boolean;
  /** Resolves true once released, or false if it is not within `ms`. */
  readonly releasedWithin: (ms: number) => Promise<boolean>;
  readonly stop: () => void;
}

/** Starts a writer blocked in open() on the FIFO at `fifo`; resolves once it is blocked there. */
export async function blockedFifoWriter(fifo: string): Promise<FifoWriter> {
  const child: ChildProcess = spawn(process.execPath, ["-e", 'require("fs").openSync(process.argv[1], "w"); process.stdout.write("opened\\n"); setInterval(() => {}, 1000)', fifo], { stdio: ["ignore", "pipe", "inherit"] });
  let released = false;
  child.stdout!.on("data", () => (released = true));
  // (Its main thread waiting in the kernel for a reader: "wait_for_partner".)
  await waitFor(() => {
    try {
      return readFileSync(`/proc/${child.pid}/wchan`, "utf8") === "wait_for_partner";
    } catch {
      return false;
    }
  }, "the FIFO writer to block in open()");
  return {
    released: () => released,
    releasedWithin: (ms) => waitFor(() => released, "the FIFO writer's release", ms).then(() => true, () => false),
    stop: () => void child.kill("SIGKILL"),
  };
}
