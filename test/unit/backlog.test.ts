import { describe, expect, it } from "vitest";
import { Backlog } from "../../src/flow/backlog.js";

/** Whether `promise` has settled once pending callbacks have run. */
async function settled(promise: Promise<unknown>): Promise<boolean> {
  let done = false;
  void promise.then(() => (done = true));
  await new Promise((resolve) => setImmediate(resolve));
  return done;
}

describe("backlog", () => {
  it("backlog - room at once while at or under the limit", async () => {
    const backlog = new Backlog(100);
    backlog.change(100);
    expect(backlog.full).toBe(false);
    expect(await settled(backlog.room())).toBe(true);
  });

  it("backlog - over the limit, room comes only once what waits has fallen to half of it", async () => {
    const backlog = new Backlog(100);
    backlog.change(60);
    backlog.change(61);
    expect(backlog.full).toBe(true);
    const room = backlog.room();
    expect(await settled(room)).toBe(false);
    backlog.change(-61); // 60: under the limit, not yet half of it
    expect(backlog.full).toBe(false);
    expect(await settled(room)).toBe(false);
    backlog.change(-10); // 50
    expect(await settled(room)).toBe(true);
    expect(backlog.bytes).toBe(50);
  });

  it("backlog - release lets a waiter go however much waits (closing)", async () => {
    const backlog = new Backlog(10);
    backlog.change(1000);
    const room = backlog.room();
    expect(await settled(room)).toBe(false);
    backlog.release();
    expect(await settled(room)).toBe(true);
  });
});
