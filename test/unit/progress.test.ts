// The --json progress events, driven by a fake client: one event per second at most while bytes move,
// none while nothing moves and nothing is being received.

import { afterEach, describe, expect, it, onTestFinished, vi } from "vitest";
import { ProgressDisplay, duration } from "../../cli/progress.js";
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

  it("progress - --json: a transfer that stalls mid-file prints nothing while it is stalled; a delta says so", async () => {
    const lines = capture();
    let bytes = 0;
    let moving = true;
    let ticks = 0;
    const display = new ProgressDisplay(() => {
      ticks++;
      return { current: { path: "img.bin", bytes, size: 4_000_000_000, delta: true }, delivered: 0, deleted: 0, bytes };
    }, new Output(true));
    display.start();
    const mover = setInterval(() => moving && (bytes += 1_000_000), 50);
    try {
      await waitFor(() => lines.length >= 1, "a progress event", 5000);
      expect(lines[0]).toMatchObject({ event: "progress", path: "img.bin", delta: true });
      moving = false;
      // (The bytes of the last moment are reported once, within a second.)
      const settled = ticks;
      await waitFor(() => ticks >= settled + 6, "1.5 s of ticks after the last bytes", 5000);
      const before = lines.length;
      await waitFor(() => ticks >= settled + 16, "2.5 s more of ticks with nothing moving", 10_000);
      expect(lines.length).toBe(before);
    } finally {
      clearInterval(mover);
      display.stop();
    }
  });

  it("progress - durations as people read them", () => {
    expect([0.2, 42, 185, 7620, 3 * 86_400 + 4 * 3600 + 5, 1e12, Infinity, NaN].map(duration)).toEqual(["1s", "42s", "3m05s", "2h07m", "3d04h", "?", "?", "?"]);
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

  it("progress - a delivered line redraws the bar with the figures of now (the file done, the new count), and the bar stays from one file to the next", async () => {
    const written = terminal();
    // What the client says, changed by the test as the client would change it.
    let state: ClientProgress = { current: { path: "big.bin", bytes: 99_000_000, size: 100_000_000 }, delivered: 0, deleted: 0, bytes: 99_000_000 };
    const output = new Output(false);
    const display = new ProgressDisplay(() => state, output);
    display.start();
    /** Print a file's delivered line, as the client does once the file is in; what is drawn after it. */
    const deliveredLine = (name: string): string => {
      const from = written.stderr.length;
      output.event({ event: "delivered" }, `delivered ${name}`);
      const after = written.stderr.slice(from).join("");
      expect(after).toContain(`delivered ${name}`);
      return after.slice(after.indexOf(`delivered ${name}`));
    };
    try {
      await waitFor(() => written.stderr.join("").includes("big.bin |"), "the bar", 5000);
      expect(written.stderr.join("")).toContain("99%");
      // The file is in: nothing arriving, the count up; its line is printed at once, before the next tick.
      state = { last: { path: "big.bin", size: 100_000_000 }, delivered: 1, deleted: 0, bytes: 100_000_000 };
      const from = written.stderr.length;
      const drawn = deliveredLine("big.bin");
      expect(drawn).toContain("big.bin |");
      expect(drawn).toContain("100%");
      expect(drawn).toContain("| 1 file, ");
      expect(drawn).not.toContain("99%");
      expect(drawn).not.toContain("| 0 files");
      // The next file comes before a tick finds nothing arriving: the same bar shows it, never taken
      // away in between (the cursor cli-progress hides is shown again only when a bar stops).
      state = { ...state, current: { path: "next.bin", bytes: 1000, size: 2000 }, bytes: 100_001_000 };
      await waitFor(() => written.stderr.slice(from).join("").includes("next.bin |"), "the next file on the bar", 5000);
      // A file that came and went between two ticks is shown done with its own name and size.
      state = { last: { path: "quick.bin", size: 3000 }, delivered: 3, deleted: 0, bytes: 100_005_000 };
      const quick = deliveredLine("quick.bin");
      expect(quick).toContain("quick.bin |");
      expect(quick).toContain("100% 3 kB/3 kB");
      expect(quick).toContain("| 3 files, ");
      expect(written.stderr.slice(from).join("")).not.toContain("\u001b[?25h");
      // Nothing arriving at a tick: the bar goes.
      await waitFor(() => written.stderr.slice(from).join("").includes("\u001b[?25h"), "the bar to go once idle", 5000);
    } finally {
      display.stop();
    }
  });

  it("progress - a transfer that stalls mid-file says so (rate 0, no ETA growing without end); changed blocks have no ETA", async () => {
    const written = terminal();
    let bytes = 0;
    let moving = true;
    const delta = { value: false };
    const display = new ProgressDisplay(() => ({ current: { path: "big.bin", bytes, size: 4_000_000_000, ...(delta.value ? { delta: true as const } : {}) }, delivered: 0, deleted: 0, bytes }), new Output(false));
    display.start();
    const mover = setInterval(() => moving && (bytes += 1_000_000), 50);
    try {
      await waitFor(() => / ETA \d+m\d\ds/.test(written.stderr.join("")), "the bar with an ETA in minutes", 10_000);
      moving = false;
      await waitFor(() => written.stderr.join("").includes(" stalled"), "the bar to say stalled", 10_000);
      const stalled = written.stderr.find((text) => text.includes(" stalled"))!;
      expect(stalled).toContain(" 0 B/s stalled");
      expect(stalled).not.toContain("ETA");
      // (cli-progress writes a line again only when it changes: what follows, if anything, has no ETA either.)
      const from = written.stderr.length;
      await waitFor(() => written.stderr.length >= from + 5, "more redraws", 5000);
      expect(written.stderr.slice(from).join("")).not.toContain("ETA");
      // Changed blocks: the bar is how far through the file; the rate is of the wire: no ETA from them.
      delta.value = true;
      moving = true;
      await waitFor(() => written.stderr.join("").includes("big.bin (changed blocks)"), "the delta's bar", 5000);
      const deltaFrom = written.stderr.length;
      await waitFor(() => written.stderr.length >= deltaFrom + 5, "more redraws", 5000);
      expect(written.stderr.slice(deltaFrom).join("")).not.toContain("ETA");
    } finally {
      clearInterval(mover);
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
