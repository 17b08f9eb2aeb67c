// The bench changes a kernel setting for its run (free page reporting held back) and must put it back
// however it ends: on a normal exit, and when it is killed outright with SIGKILL, which no exit hook
// survives. A real process holds the setting (a file standing in for the sysfs one) and is killed.

import { spawn, spawnSync, type ChildProcess } from "node:child_process";
import { readFileSync, writeFileSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { afterEach, describe, expect, it } from "vitest";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

const MODULE = fileURLToPath(new URL("../../dist/bench/page-reporting.js", import.meta.url));

const children: ChildProcess[] = [];
afterEach(() => {
  for (const child of children.splice(0)) if (child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
});

/** A process that holds the setting in `file`, says what it did, then exits at once or stays. */
async function holder(file: string, then: "exit" | "stay"): Promise<{ child: ChildProcess; state: string }> {
  const script = `
    const { holdFreePageReporting } = await import(${JSON.stringify(MODULE)});
    const { state } = holdFreePageReporting(false, ${JSON.stringify(file)});
    process.stdout.write(state + "\\n");
    if (${JSON.stringify(then)} === "exit") process.exit(0);
    setInterval(() => undefined, 1000);`;
  const child = spawn(process.execPath, ["--input-type=module", "-e", script], { stdio: ["ignore", "pipe", "inherit"] });
  children.push(child);
  let out = "";
  child.stdout!.on("data", (data: Buffer) => (out += data.toString()));
  const state = await waitFor(() => out.includes("\n") && out.trim(), "the holder's report");
  return { child, state };
}

const read = (file: string) => readFileSync(file, "utf8").trim();

/** Is a watchdog for this setting file still running (its command line names the file)? */
const watching = (file: string) => spawnSync("pgrep", ["-f", "--", `fmq-bench-page-reporting [0-9]+ ${file}`]).status === 0;

describe("bench: free page reporting", () => {
  it("is put back when the bench is killed with SIGKILL", async () => {
    const file = path.join(await tempDir(), "min_free_ms");
    writeFileSync(file, "0\n");
    const { child, state } = await holder(file, "stay");
    expect(state).toBe("held");
    expect(read(file)).toBe("60000");
    expect(watching(file)).toBe(true);
    child.kill("SIGKILL");
    // The watchdog looks once a second, puts it back and ends.
    await waitFor(() => read(file) === "0", "the setting put back after SIGKILL", 10_000, 50);
    await waitFor(() => !watching(file), "the watchdog to end", 10_000, 50);
  });

  it("is put back on a normal exit, and a setting someone changed meanwhile is left alone", async () => {
    const dir = await tempDir();
    const file = path.join(dir, "min_free_ms");
    writeFileSync(file, "0\n");
    const { child, state } = await holder(file, "exit");
    expect(state).toBe("held");
    await waitFor(() => child.exitCode !== null, "the holder's exit");
    expect(read(file)).toBe("0");
    // Its watchdog finds nothing to do and ends: nothing is left running.
    await waitFor(() => !watching(file), "the watchdog to end", 10_000, 50);
    expect(read(file)).toBe("0");

    // Held again, then changed by someone else before the holder is killed: theirs stands.
    const other = path.join(dir, "other");
    writeFileSync(other, "0\n");
    const second = await holder(other, "stay");
    writeFileSync(other, "5000\n");
    second.child.kill("SIGKILL");
    await waitFor(() => !watching(other), "the second watchdog to end", 10_000, 50);
    expect(read(other)).toBe("5000");
  });
});
