// Where a worker's module is: beside the caller when it runs compiled, the build's copy when it runs from
// the TypeScript sources (tests), even under a directory that is itself called src.

import { describe, expect, it } from "vitest";
import { workerUrl } from "../../src/worker-url.js";

describe("worker url", () => {
  it("worker url - compiled: beside the caller; from the sources: the build's copy, the last src/ on the path ours", () => {
    expect(workerUrl("file:///opt/fmq/dist/src/client/placer-thread.js", "placer-worker").href).toBe("file:///opt/fmq/dist/src/client/placer-worker.js");
    expect(workerUrl("file:///home/me/src/fmq/src/digest/fingerprint-thread.ts", "fingerprint-worker").href).toBe("file:///home/me/src/fmq/dist/src/digest/fingerprint-worker.js");
  });
});
