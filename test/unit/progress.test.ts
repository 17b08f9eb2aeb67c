// The --json progress events, driven by a fake client: one event per second at most while bytes move,
// none while nothing moves and nothing is being received.

import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { ProgressDisplay } from "../../cli/progress.js";
import { Output } from "../../cli/output.js";
import { waitFor } from "../helpers/wait.js";
import type { ClientProgress } from "../../src/index.js";

afterEach(() => vi.restoreAllMocks());

function capture(): Record<string, unknown>[] {
  const lines: Record<string, unknown>[] = [];
  vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
    lines.push(JSON.parse(String(chunk)) as Record<string, unknown>);
    return true;
  });
  return lines;
}

describe("progress", () => {
  it("progress - --json prints progress events while bytes move, with the file, totals and a rate", async () => {
    const lines = capture();
    let bytes = 0;
    const state = (): ClientProgress => ({ current: { path: "big.bin", bytes, size: 100_000_000 }, delivered: 2, deleted: 1, bytes: bytes + 10 });
    const display = new ProgressDisplay(state, new Output(true));
    display.start();
    const mover = setInterval(() => (bytes += 1_000_000), 50);
    try {
      await waitFor(() => lines.length >= 2, "two progress events", 5000);
    } finally {
      clearInterval(mover);
      display.stop();
    }
    expect(lines[0]).toMatchObject({ event: "progress", path: "big.bin", fileSize: 100_000_000, delivered: 2, deleted: 1 });
    expect(lines[1]!.bytes as number).toBeGreaterThan(lines[0]!.bytes as number);
    expect(lines[1]!.rate as number).toBeGreaterThan(0);
  });

  it("progress - nothing is printed while idle", async () => {
    const lines = capture();
    let ticks = 0;
    const display = new ProgressDisplay(() => {
      ticks++;
      return { delivered: 0, deleted: 0, bytes: 0 };
    }, new Output(true));
    display.start();
    await waitFor(() => ticks >= 6, "six ticks", 5000);
    display.stop();
    expect(lines).toEqual([]);
  });
});

describe("progress on a terminal", () => {
  /** stderr as a terminal; what is written to it and to stdout, as text. */
  function terminal(): { stderr: string[]; stdout: string[] } {
    const written = { stderr: [] as string[], stdout: [] as string[] };
    for (const stream of [process.stderr, process.stdout]) {
      const was = stream.isTTY;
      stream.isTTY = true;
      onTestFinished(() => {
        stream.isTTY = was;
      });
    }
    vi.spyOn(process.stderr, "write").mockImplementation((chunk: string | Uint8Array) => {
      written.stderr.push(String(chunk));
      return true;
    });
    vi.spyOn(process.stdout, "write").mockImplementation((chunk: string | Uint8Array) => {
      written.stdout.push(String(chunk));
      return true;
    });
    return written;
  }

  it("progress - the delivered line of the last file takes the bar away at once, never drawn again at the last tick's figures", async () => {
    const written = terminal();
    let bytes = 99_000_000;
    let current: ClientProgress["current"] = { path: "big.bin", bytes: 0, size: 100_000_000 };
    let delivered = 0;
    const output = new Output(false);
    const display = new ProgressDisplay(() => ({ ...(current ? { current: { ...current, bytes } } : {}), delivered, deleted: 0, bytes }), output);
    display.start();
    try {
      await waitFor(() => written.stderr.join("").includes("big.bin |"), "the bar", 5000);
      expect(written.stderr.join("")).toContain("99%");
      // The file is in (the client has counted it), and its line is printed at once, before the next tick.
      bytes = 100_000_000;
      current = undefined;
      delivered = 1;
      const from = written.stderr.length;
      output.event({ event: "delivered" }, "delivered big.bin (100000000 bytes)");
      const after = written.stderr.slice(from).join("");
      expect(after).toContain("delivered big.bin (100000000 bytes)");
      const drawnAfter = after.slice(after.indexOf("delivered big.bin"));
      expect(drawnAfter).not.toContain("99%");
      expect(drawnAfter).not.toContain("| 0 files");
      // Gone with the line, not a tick later (the cursor cli-progress hid is shown again when it stops).
      expect(drawnAfter).toContain("\u001b[?25h");
    } finally {
      display.stop();
    }
  });

  it("progress - a bar while a file arrives, lines above it, and nothing written once idle", async () => {
    const written = terminal();
    let bytes = 0;
    let current: ClientProgress["current"] = { path: "big.bin", bytes: 0, size: 100_000_000 };
    let ticks = 0;
    const output = new Output(false);
    const display = new ProgressDisplay(() => {
      ticks++;
      return { ...(current ? { current: { ...current, bytes } } : {}), delivered: 0, deleted: 0, bytes };
    }, output);
    display.start();
    const mover = setInterval(() => (bytes += 1_000_000), 50);
    try {
      await waitFor(() => written.stderr.join("").includes("big.bin |"), "the bar", 5000);
      output.event({ event: "delivered" }, "delivered small.txt (3 bytes)");
      await waitFor(() => written.stderr.join("").includes("delivered small.txt (3 bytes)"), "the line, above the bar", 5000);
      // The file is in: no file arriving now.
      current = undefined;
      const at = ticks;
      await waitFor(() => ticks >= at + 2, "the bar to go", 5000);
      const afterHidden = written.stderr.length;
      const idleFrom = ticks;
      await waitFor(() => ticks >= idleFrom + 6, "six idle ticks", 5000);
      expect(written.stderr.slice(afterHidden)).toEqual([]);
      // With no bar, a line goes straight to stdout.
      output.event({ event: "delivered" }, "delivered other.txt (3 bytes)");
      output.flush();
      expect(written.stdout.join("")).toContain("delivered other.txt (3 bytes)\n");
    } finally {
      clearInterval(mover);
      display.stop();
    }
  });
});
