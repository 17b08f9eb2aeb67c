import { describe, expect, it } from "vitest";
import path from "node:path";
import { UnreadableDirectories } from "../../src/mount/unreadable.js";
import { tempDir } from "../helpers/tmp.js";
import { waitFor } from "../helpers/wait.js";

describe("unreadable directories", () => {
  it("unreadable - one removed while unreadable is handed back as gone (not looked at for ever), one readable as readable again; each once", async () => {
    const readable: string[] = [];
    const gone: string[] = [];
    const dirs = new UnreadableDirectories(
      (dir) => readable.push(dir),
      (dir) => gone.push(dir),
      20,
    );
    try {
      const here = await tempDir("fmq-unreadable-");
      const removed = path.join(here, "removed-meanwhile");
      dirs.add(removed);
      dirs.add(here);
      await waitFor(() => gone.length === 1 && readable.length === 1, "both handed back", 3000);
      expect(gone).toEqual([removed]);
      expect(readable).toEqual([here]);
      expect(dirs.has(removed)).toBe(false);
      await new Promise((resolve) => setTimeout(resolve, 100));
      expect([gone.length, readable.length]).toEqual([1, 1]);
    } finally {
      dirs.close();
    }
  });
});
