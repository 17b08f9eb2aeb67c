// The --json progress events, driven by a fake client: one event per second at most while bytes move,
// none while nothing moves and nothing is being received.

import { afterEach, describe, expect, it, vi } from "vitest";
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
