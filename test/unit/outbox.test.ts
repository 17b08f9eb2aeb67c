// The server's single writer against a stand-in socket whose pipes can be made full (EAGAIN, as a
// ROUTER with ROUTER_MANDATORY and a zero send timeout reports it).

import { describe, expect, it } from "vitest";
import type { Router } from "zeromq";
import { Outbox } from "../../src/server/outbox.js";
import { waitFor } from "../helpers/wait.js";

class FakeRouter {
  closed = false;
  /** Peers whose pipe is full. */
  readonly full = new Set<string>();
  /** Every send attempted, with when. */
  readonly attempts: { peer: string; at: number }[] = [];
  readonly delivered: string[] = [];

  async send(frames: Buffer[]): Promise<void> {
    const peer = frames[0]!.toString();
    this.attempts.push({ peer, at: performance.now() });
    if (this.full.has(peer)) throw Object.assign(new Error("Resource temporarily unavailable"), { code: "EAGAIN" });
    this.delivered.push(peer);
  }

  times(peer: string, from = 0): number[] {
    return this.attempts.slice(from).filter((a) => a.peer === peer).map((a) => a.at);
  }

  gaps(peer: string, from = 0): number[] {
    const times = this.times(peer, from);
    return times.slice(1).map((t, i) => t - times[i]!);
  }
}

describe("outbox", () => {
  it("outbox - a peer whose pipe stays full is retried every 2 ms, after 100 ms full every 50 ms; the others are served meanwhile; it resumes once it reads", async () => {
    const socket = new FakeRouter();
    const outbox = new Outbox(socket as unknown as Router, () => undefined);
    try {
      socket.full.add("stuck");
      for (let i = 0; i < 5; i++) outbox.send("stuck", Buffer.from("stuck"), Buffer.from(`s${i}`));
      for (let i = 0; i < 200; i++) outbox.send("busy", Buffer.from("busy"), Buffer.from(`b${i}`));

      // Everything for the other peer goes while the stuck one stays full.
      await waitFor(() => socket.delivered.filter((p) => p === "busy").length === 200, "the busy peer's 200 messages");
      // The stuck peer is retried every 2 ms for its first 100 ms of being full (a slow reader gets its
      // pipe topped up at once), then every 50 ms (with a fixed 2 ms retry, a peer that never reads
      // burns 500 failed sends a second). Timers never fire early; a gap of 45 ms or more before the
      // switch is a pause of this process (a loaded machine), and the checks allow one.
      await waitFor(() => socket.gaps("stuck").length >= 3 && socket.gaps("stuck").slice(-3).every((g) => g >= 45), "3 slow retries of the stuck peer in a row", 5000);
      const times = socket.times("stuck");
      const gaps = socket.gaps("stuck");
      // The slow retries: the run of long gaps at the end. It starts after the last short gap.
      let firstSlow = gaps.length;
      while (firstSlow > 0 && gaps[firstSlow - 1]! >= 45) firstSlow--;
      expect(gaps.slice(0, firstSlow).filter((g) => g < 45).length).toBeGreaterThan(5);
      // Fast retries until 100 ms full: the first slow retry comes after that, even if a pause cut the
      // fast ones short (an attempt before 100 ms would have been followed by a fast one)...
      expect(times[firstSlow + 1]! - times[0]!).toBeGreaterThanOrEqual(95);
      // ... and no fast retry comes long after it.
      expect(times[firstSlow]! - times[0]!).toBeLessThan(200);
      expect(socket.delivered).not.toContain("stuck");

      // It reads again: its queue drains in order, and a new block starts again from a short retry.
      socket.full.delete("stuck");
      await waitFor(() => socket.delivered.filter((p) => p === "stuck").length === 5, "the stuck peer's 5 messages", 5000);
      expect(outbox.queued("stuck")).toBe(0);
      socket.full.add("stuck");
      const before = socket.attempts.length;
      outbox.send("stuck", Buffer.from("stuck"), Buffer.from("again"));
      // (Four attempts: one pause of this process may make one gap long, not all three.)
      await waitFor(() => socket.attempts.length >= before + 4, "four attempts of the new message", 5000);
      expect(Math.min(...socket.gaps("stuck", before))).toBeLessThan(45);
    } finally {
      await outbox.close();
    }
  });
  it("outbox - a producer may queue `limit` messages for a peer that reads, but none more behind a full pipe: it waits until that peer's queue is empty", async () => {
    const socket = new FakeRouter();
    const outbox = new Outbox(socket as unknown as Router, () => undefined);
    try {
      const waited = async (key: string, limit: number): Promise<boolean> => {
        let done = false;
        void outbox.below(key, limit).then(() => (done = true));
        await new Promise((resolve) => setImmediate(resolve));
        return !done;
      };
      // A peer whose pipe takes everything: below(4) resolves at once.
      expect(await waited("reader", 4)).toBe(false);
      // A peer whose pipe is full: one message queued (and found blocked) is already too many for below(4).
      socket.full.add("stuck");
      outbox.send("stuck", Buffer.from("stuck"), Buffer.from("s0"));
      await waitFor(() => outbox.fullSince("stuck") > 0, "the stuck peer's pipe found full");
      let released = false;
      const waiting = outbox.below("stuck", 4).then(() => (released = true));
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(released).toBe(false);
      // It reads again: its queue empties, and the producer goes on.
      socket.full.delete("stuck");
      await waiting;
      expect(socket.delivered).toContain("stuck");
      expect(outbox.queued("stuck")).toBe(0);
    } finally {
      await outbox.close();
    }
  });
});
