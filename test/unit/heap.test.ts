// A publishing process bounds V8's heap growth (cli/heap.ts), unless Node was started with a growth of
// its own. Its effect on memory is measured, not tested here (a figure in cli/heap.ts and README).

import { describe, expect, it } from "vitest";
import { HEAP_GROWING_PERCENT, heapGrowthFlag } from "../../cli/heap.js";

describe("heap growth of a publishing process", () => {
  it("is bounded by default", () => {
    expect(heapGrowthFlag([])).toBe(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    expect(heapGrowthFlag(["--enable-source-maps", "--max-old-space-size=4096"])).toBe(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
    expect(HEAP_GROWING_PERCENT).toBeGreaterThan(0);
  });

  it("leaves a growth given to node alone, in either spelling", () => {
    expect(heapGrowthFlag(["--heap-growing-percent=0"])).toBeUndefined();
    expect(heapGrowthFlag(["--heap_growing_percent=200"])).toBeUndefined();
    expect(heapGrowthFlag(["--cpu-prof", "--heap-growing-percent", "30"])).toBeUndefined();
  });

  it("is not fooled by a flag that only starts alike", () => {
    expect(heapGrowthFlag(["--heap-growing-percentage=10"])).toBe(`--heap-growing-percent=${HEAP_GROWING_PERCENT}`);
  });
});
