// The quiet-period tracker (src/mount/stability.ts) by itself: real files in a temp dir, its own clock.

import { mkdir } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { StabilityTracker } from "../../src/mount/stability.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

describe("stability", () => {
  it("stability - closed in the middle of a sweep, it says nothing more of what that sweep had still to look at", async () => {
    // (A review: a sweep went on through its list after close(), and said "not a file" of each, which the
    // mount turns into deletes.) 600 directories where files were seen: "not a file", every one.
    const root = await tempDir();
    const names = Array.from({ length: 600 }, (_, i) => `d${i}`);
    for (const name of names) await mkdir(path.join(root, name));
    let clock = 0;
    const said: string[] = [];
    const tracker = new StabilityTracker(
      { stableMs: 100, now: () => clock },
      () => undefined,
      (key) => path.join(root, key),
      (key) => {
        said.push(key);
        tracker.close();
      },
    );
    for (const name of names) tracker.saw(name, { size: 0, mtimeMs: 0 });
    clock = 1_000;
    await waitFor(() => said.length > 0, "the first one said", 5_000);
    // Whatever comes after the close would come within the sweep's next slices: a few turns of the loop.
    for (let i = 0; i < 10; i++) await new Promise((resolve) => setImmediate(resolve));
    expect(said).toEqual(["d0"]);
  });
});
