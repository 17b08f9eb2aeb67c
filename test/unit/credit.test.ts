import { describe, it, expect } from "vitest";
import fc from "fast-check";

import { BIG_CHUNK, CREDIT_HEDGE, ReceiveWindow, SendCredit, mergedNomCredit } from "../../src/flow/credit.js";

const U64_MAX = 2n ** 64n - 1n;

describe("SendCredit", () => {
  it("credit - starts at zero and allows nothing", () => {
    const credit = new SendCredit();
    expect(credit.available).toBe(0);
    expect(credit.allow(1_000_000)).toBe(0);
  });

  it("credit - NOM grants add up", () => {
    const credit = new SendCredit();
    credit.grant(1000n);
    credit.grant(4000n);
    expect(credit.available).toBe(5000);
    credit.grant(0n);
    expect(credit.available).toBe(5000);
  });

  it("credit - a grant of 2^64-1 is clamped, and stays clamped when more is granted", () => {
    const credit = new SendCredit();
    credit.grant(U64_MAX);
    expect(credit.available).toBe(Number.MAX_SAFE_INTEGER);
    expect(Number.isSafeInteger(credit.available)).toBe(true);
    credit.grant(U64_MAX);
    credit.grant(12345n);
    expect(credit.available).toBe(Number.MAX_SAFE_INTEGER);
    credit.spend(1_000_000);
    expect(credit.available).toBe(Number.MAX_SAFE_INTEGER - 1_000_000);
    credit.grant(BigInt(Number.MAX_SAFE_INTEGER));
    expect(credit.available).toBe(Number.MAX_SAFE_INTEGER);
  });

  it("credit - the hedge our client adds to a session's first grant (against the C reference's livelock) is taken off: only the window is credit", () => {
    const credit = new SendCredit();
    credit.grant(CREDIT_HEDGE + 16_777_216n);
    expect(credit.available).toBe(16_777_216);
    credit.grant(1_048_576n);
    expect(credit.available).toBe(17_825_792);
    credit.grant(CREDIT_HEDGE + 1n);
    expect(credit.available).toBe(17_825_793);
  });

  it("credit - a NOM of exactly 2^50 (another client's round 'unlimited'; ours carries a grant on top of the hedge) is credit, not a hedge (it was taken as none, and that client waited for good)", () => {
    const credit = new SendCredit();
    credit.grant(CREDIT_HEDGE);
    expect(credit.available).toBe(Number(CREDIT_HEDGE));
  });

  it("credit - two NOMs folded into one (the server, NOMs waiting) grant what both would, hedge off each, never taken for a hedge", () => {
    expect(mergedNomCredit(CREDIT_HEDGE + 16_777_216n, 1_048_576n)).toBe(17_825_792n);
    expect(mergedNomCredit(CREDIT_HEDGE + 1n, CREDIT_HEDGE + 2n)).toBe(3n);
    // Hostile sums stay just under the hedge: credit without end, not a hedge taken off.
    const huge = mergedNomCredit(2n ** 64n - 1n, 2n ** 64n - 1n);
    expect(huge).toBe(CREDIT_HEDGE - 1n);
    const credit = new SendCredit();
    credit.grant(huge);
    expect(credit.available).toBe(Number(CREDIT_HEDGE - 1n));
  });

  it("credit - allow never exceeds the credit or the wanted size", () => {
    const credit = new SendCredit();
    credit.grant(1000n);
    expect(credit.allow(4096)).toBe(1000);
    expect(credit.allow(10)).toBe(10);
    expect(credit.allow(0)).toBe(0);
  });

  it("credit - spend lowers the credit and refuses to overspend", () => {
    const credit = new SendCredit();
    credit.grant(1000n);
    credit.spend(600);
    expect(credit.available).toBe(400);
    expect(() => credit.spend(401)).toThrow(RangeError);
    expect(credit.available).toBe(400);
    credit.spend(400);
    expect(credit.available).toBe(0);
    credit.spend(0);
    expect(() => credit.spend(1)).toThrow(RangeError);
  });

  it("credit - reset drops all credit", () => {
    const credit = new SendCredit();
    credit.grant(U64_MAX);
    credit.reset();
    expect(credit.available).toBe(0);
  });

  it("credit - a sender that only spends what allow() gives never sends more than was granted (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.record({ grant: fc.bigInt({ min: 0n, max: 10_000_000n }) }), fc.record({ want: fc.nat(3_000_000) })), {
          maxLength: 60,
        }),
        (steps) => {
          const credit = new SendCredit();
          let granted = 0;
          let sent = 0;
          for (const step of steps) {
            if ("grant" in step) {
              credit.grant(step.grant);
              granted += Number(step.grant);
            } else {
              const n = credit.allow(step.want);
              expect(n).toBeLessThanOrEqual(step.want);
              expect(n).toBeLessThanOrEqual(credit.available);
              credit.spend(n);
              sent += n;
            }
            expect(sent).toBeLessThanOrEqual(granted);
            expect(credit.available).toBe(granted - sent);
            expect(credit.available).toBeGreaterThanOrEqual(0);
          }
        },
      ),
    );
  });
});

/** A refill, and what must hold after it: whole slices, counted, and less than a slice missing from what is kept granted (nothing granted if more than that is outstanding). */
function refillChecked(w: ReceiveWindow): void {
  const before = w.outstanding;
  const grant = w.refill();
  expect(grant % w.slice).toBe(0);
  expect(w.outstanding).toBe(before + grant);
  if (before <= w.limit) expect(w.limit - w.outstanding).toBeLessThan(w.slice);
  else expect(grant).toBe(0);
}

describe("ReceiveWindow", () => {
  it("credit - window: refuses a slice of 0 or a window smaller than a slice", () => {
    expect(() => new ReceiveWindow(10, 0)).toThrow(RangeError);
    expect(() => new ReceiveWindow(10, -1)).toThrow(RangeError);
    expect(() => new ReceiveWindow(5, 10)).toThrow(RangeError);
    expect(() => new ReceiveWindow(10, 10)).not.toThrow();
  });

  it("credit - window: the first refill grants the window in whole slices", () => {
    const w = new ReceiveWindow(10, 3);
    expect(w.refill()).toBe(9);
    expect(w.outstanding).toBe(9);
    expect(w.refill()).toBe(0);
    const exact = new ReceiveWindow(16 * 1024 * 1024, 1024 * 1024);
    expect(exact.refill()).toBe(16 * 1024 * 1024);
  });

  it("credit - window: refills only once a whole slice is missing, and in whole slices", () => {
    const w = new ReceiveWindow(1000, 100);
    expect(w.refill()).toBe(1000);
    w.received(99);
    expect(w.outstanding).toBe(901);
    expect(w.refill()).toBe(0);
    w.received(1);
    expect(w.refill()).toBe(100);
    expect(w.outstanding).toBe(1000);
    w.received(350);
    expect(w.refill()).toBe(300);
    expect(w.outstanding).toBe(950);
  });

  it("credit - window: bytes beyond what was granted are ignored (outstanding never negative)", () => {
    const w = new ReceiveWindow(1000, 100);
    w.refill();
    w.received(5000);
    expect(w.outstanding).toBe(0);
    expect(w.refill()).toBe(1000);
    expect(w.outstanding).toBe(1000);
  });

  it("credit - window: reset forgets what was outstanding", () => {
    const w = new ReceiveWindow(1000, 100);
    w.refill();
    w.received(10);
    w.reset();
    expect(w.outstanding).toBe(0);
    expect(w.refill()).toBe(1000);
  });

  it("credit - window: never more than the window outstanding, grants are whole slices (property)", () => {
    fc.assert(
      fc.property(
        fc.integer({ min: 1, max: 1000 }),
        fc.integer({ min: 1, max: 20 }),
        fc.array(fc.oneof(fc.constant("refill" as const), fc.nat(3000)), { maxLength: 80 }),
        (slice, slices, steps) => {
          const window = slice * slices + (slice > 1 ? slice - 1 : 0);
          const w = new ReceiveWindow(window, slice);
          for (const step of steps) {
            if (step === "refill") {
              refillChecked(w);
            } else {
              w.received(step);
            }
            expect(w.outstanding).toBeGreaterThanOrEqual(0);
            expect(w.outstanding).toBeLessThanOrEqual(window);
          }
        },
      ),
    );
  });

  it("credit - window: keeps only `small` granted until a big chunk comes, then the whole window, and closes again after a window of small chunks", () => {
    const KiB = 1024;
    const w = new ReceiveWindow(16 * KiB * KiB, KiB * KiB, 2 * KiB * KiB);
    expect(() => new ReceiveWindow(16, 4, 2)).toThrow(RangeError);
    expect(() => new ReceiveWindow(16, 4, 32)).toThrow(RangeError);
    expect(w.refill()).toBe(2 * KiB * KiB);
    // Small files: never more than `small` outstanding.
    for (let i = 0; i < 2000; i++) {
      w.received(4 * KiB);
      w.refill();
      expect(w.outstanding).toBeLessThanOrEqual(2 * KiB * KiB);
    }
    // A big file's chunk: the whole window at once.
    w.received(BIG_CHUNK);
    expect(w.limit).toBe(16 * KiB * KiB);
    expect(w.refill()).toBe(15 * KiB * KiB);
    // Small chunks after it: the window stays open until a whole window of them came (a big file's short
    // last chunk, or a few small files between big ones, do not close it).
    let small = 0;
    while (small + 100 * KiB < 16 * KiB * KiB) {
      w.received(100 * KiB);
      small += 100 * KiB;
      expect(w.limit).toBe(16 * KiB * KiB);
      w.refill();
      expect(w.outstanding).toBeGreaterThan(15 * KiB * KiB);
    }
    w.received(100 * KiB);
    expect(w.limit).toBe(2 * KiB * KiB);
    // Nothing is granted until less than `small` is outstanding again, less a slice.
    expect(w.refill()).toBe(0);
    while (w.outstanding > KiB * KiB) w.received(100 * KiB);
    expect(w.refill()).toBeGreaterThan(0);
    expect(w.outstanding).toBeLessThanOrEqual(2 * KiB * KiB);
    // A big file in pieces smaller than BIG_CHUNK (a server with 128 KiB chunks) opens it too; a whole
    // small file in one message does not.
    w.reset();
    w.received(128 * KiB);
    expect(w.limit).toBe(2 * KiB * KiB);
    w.received(128 * KiB, true);
    expect(w.limit).toBe(16 * KiB * KiB);
    // A new session starts small again.
    w.received(BIG_CHUNK);
    w.reset();
    expect(w.limit).toBe(2 * KiB * KiB);
    expect(w.refill()).toBe(2 * KiB * KiB);
  });

  it("credit - window with a small-chunk window: never more than the window outstanding, never more than `small` while only small chunks came (property)", () => {
    fc.assert(
      fc.property(
        fc.array(fc.oneof(fc.constant("refill" as const), fc.nat(BIG_CHUNK - 1), fc.integer({ min: BIG_CHUNK, max: 3 * BIG_CHUNK })), { maxLength: 120 }),
        (steps) => {
          const slice = 64 * 1024;
          const window = 32 * slice;
          const small = 4 * slice;
          const w = new ReceiveWindow(window, slice, small);
          let bigSeen = false;
          for (const step of steps) {
            if (step === "refill") {
              refillChecked(w);
            } else {
              if (step >= BIG_CHUNK) bigSeen = true;
              w.received(step);
            }
            expect(w.outstanding).toBeGreaterThanOrEqual(0);
            expect(w.outstanding).toBeLessThanOrEqual(bigSeen ? window : small);
          }
        },
      ),
    );
  });
});
