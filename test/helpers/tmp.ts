// A fresh temp directory per test, removed afterwards.
import { mkdtemp, rm } from "node:fs/promises";
import { tmpdir } from "node:os";
import path from "node:path";
import { afterEach } from "vitest";

const made: string[] = [];
const beforeRemoving: (() => Promise<void>)[] = [];

/**
 * Run `stop` after each test before its temp directories are removed: a process still running there
 * (a subscriber makes its inbox again if it goes) must be stopped first, whatever order hooks run in.
 */
export function beforeTempCleanup(stop: () => Promise<void>): void {
  beforeRemoving.push(stop);
}

afterEach(async () => {
  for (const stop of beforeRemoving) await stop();
  for (const dir of made.splice(0)) await rm(dir, { recursive: true, force: true, maxRetries: 3 });
});

export async function tempDir(prefix = "fmq-test-"): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), prefix));
  made.push(dir);
  return dir;
}
