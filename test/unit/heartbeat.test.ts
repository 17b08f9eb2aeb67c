// The client's heartbeat on its own: it measures silence on a monotonic clock, not the wall clock.

import { afterEach, describe, it, vi } from "vitest";
import { Heartbeat } from "../../src/client/heartbeat.js";
import { waitFor } from "../helpers/wait.js";

afterEach(() => {
  vi.restoreAllMocks();
});

describe("heartbeat", () => {
  it("heartbeat - the wall clock stepped back an hour (NTP, a VM resumed) does not make silence negative: the server is still given up", async () => {
    // (A review: with Date.now, silence measured across the step was negative, and a client never gave up
    // on a dead server, nor said HUGZ, for the hour.)
    const real = Date.now.bind(Date);
    let stepped = 0;
    vi.spyOn(Date, "now").mockImplementation(() => real() - stepped);
    let lost = 0;
    const heartbeat = new Heartbeat({ intervalMs: 50, timeoutMs: 200 }, () => undefined, () => lost++);
    heartbeat.start();
    try {
      stepped = 3_600_000;
      await waitFor(() => lost > 0, "the server given up", 3_000);
    } finally {
      heartbeat.stop();
    }
  });
});
