// Test data: fresh random files and trees, their sha256, and the check that a destination holds exactly
// the same bytes.

import { createHash, randomBytes } from "node:crypto";
import { readdirSync, statSync } from "node:fs";
import { mkdir, open, readdir, readFile, stat, writeFile } from "node:fs/promises";
import path from "node:path";
import { setTimeout as sleep } from "node:timers/promises";
import { now, type Proc } from "./measure.js";

const MiB = 1024 * 1024;

/** relative path ("/" separators) → sha256 hex. */
export type TreeHashes = Map<string, string>;

/** Write `size` random bytes (generated in 1 MiB pieces) to `file`; returns its sha256. */
export async function writeRandomFile(file: string, size: number): Promise<string> {
  await mkdir(path.dirname(file), { recursive: true });
  const hash = createHash("sha256");
  const handle = await open(file, "w");
  try {
    for (let done = 0; done < size; ) {
      const piece = randomBytes(Math.min(MiB, size - done));
      hash.update(piece);
      await handle.write(piece, 0, piece.length, done);
      done += piece.length;
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

/** `count` random files of `size` bytes, 100 per directory (d000/f00000.bin); returns their hashes. */
export async function writeRandomTree(root: string, count: number, size: number): Promise<TreeHashes> {
  const hashes: TreeHashes = new Map();
  const perDir = 100;
  for (let i = 0; i < count; i++) {
    const relative = `d${String(Math.floor(i / perDir)).padStart(3, "0")}/f${String(i).padStart(5, "0")}.bin`;
    if (i % perDir === 0) await mkdir(path.join(root, path.dirname(relative)), { recursive: true });
    const data = randomBytes(size);
    await writeFile(path.join(root, relative), data);
    hashes.set(relative, sha256(data));
  }
  return hashes;
}

export function sha256(data: Uint8Array): string {
  return createHash("sha256").update(data).digest("hex");
}

/** sha256 of a file, read in 1 MiB pieces (this read also warms the page cache). */
export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  const handle = await open(file, "r");
  try {
    const buffer = Buffer.allocUnsafe(MiB);
    for (let offset = 0; ; ) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, offset);
      if (bytesRead === 0) break;
      hash.update(buffer.subarray(0, bytesRead));
      offset += bytesRead;
    }
  } finally {
    await handle.close();
  }
  return hash.digest("hex");
}

/** Paths (relative, "/" separators) that a check leaves out, with everything below them. */
export type Skip = (relative: string) => boolean;

/** fmq's own state in an inbox (`<inbox>/.fmq/`: manifest, partial files), not delivered content. */
export const FMQ_STATE: Skip = (relative) => relative === ".fmq";

/** Every regular file under `root` (relative, "/" separators), hidden files included, except `skip`ped paths. */
export async function listFiles(root: string, skip: Skip = () => false): Promise<string[]> {
  const out: string[] = [];
  const walk = async (dir: string, prefix: string): Promise<void> => {
    for (const entry of await readdir(dir, { withFileTypes: true })) {
      const relative = prefix ? `${prefix}/${entry.name}` : entry.name;
      if (skip(relative)) continue;
      if (entry.isDirectory()) await walk(path.join(dir, entry.name), relative);
      else out.push(relative);
    }
  };
  await walk(root, "");
  return out.sort();
}

/** Hashes of every file under `root` (small files read whole, big ones streamed). */
export async function hashTree(root: string, skip?: Skip): Promise<TreeHashes> {
  const hashes: TreeHashes = new Map();
  for (const relative of await listFiles(root, skip)) {
    const file = path.join(root, relative);
    const { size } = await stat(file);
    hashes.set(relative, size <= 4 * MiB ? sha256(await readFile(file)) : await sha256File(file));
  }
  return hashes;
}

/**
 * Does `root` hold exactly the expected files with the expected bytes (apart from `skip`ped paths)?
 * Returns undefined if so, else a short description of what differs.
 */
export async function verifyTree(root: string, expected: TreeHashes, skip?: Skip): Promise<string | undefined> {
  let actual: TreeHashes;
  try {
    actual = await hashTree(root, skip);
  } catch (error) {
    return `cannot read ${root}: ${(error as Error).message}`;
  }
  const missing = [...expected.keys()].filter((k) => !actual.has(k));
  const extra = [...actual.keys()].filter((k) => !expected.has(k));
  const wrong = [...expected].filter(([k, h]) => actual.has(k) && actual.get(k) !== h).map(([k]) => k);
  if (missing.length + extra.length + wrong.length === 0) return undefined;
  const show = (what: string, list: string[]) => (list.length ? `${list.length} ${what} (${list.slice(0, 3).join(", ")})` : "");
  return [show("missing", missing), show("unexpected", extra), show("with a wrong sha256", wrong)].filter(Boolean).join("; ") + ` in ${root}`;
}

/** Size of the partial file of `file` (a name below the subscription) in an fmq `partialDir` (or of the
 *  one *.fmq-part there), if any. The name is partialName() of src/client/inbox.ts. */
export function partialSize(partialDir: string, file: string): number | undefined {
  const stats = statSync(path.join(partialDir, createHash("sha1").update(file).digest("hex") + ".fmq-part"), { throwIfNoEntry: false });
  if (stats) return stats.size;
  let names: string[];
  try {
    names = readdirSync(partialDir).filter((n) => n.endsWith(".fmq-part"));
  } catch {
    return undefined;
  }
  return names.length === 1 ? statSync(path.join(partialDir, names[0]!), { throwIfNoEntry: false })?.size : undefined;
}

/** Poll the partial file's size every ms until it reaches `bytes`; returns the size seen. */
export async function waitForPartial(sub: Proc, partialDir: string, file: string, bytes: number, timeoutMs: number): Promise<number> {
  const deadline = now() + timeoutMs;
  for (;;) {
    const size = partialSize(partialDir, file);
    if (size !== undefined && size >= bytes) return size;
    if (sub.exited) throw new Error(`${sub.name} exited before its partial file reached ${bytes} bytes`);
    if (sub.lines.some((l) => l.data.event === "delivered")) throw new Error(`the file was delivered before its partial file was seen at ${bytes} bytes`);
    if (now() > deadline) throw new Error(`partial file below ${bytes} bytes after ${timeoutMs / 1000} s (${size ?? "none"})`);
    await sleep(1);
  }
}
