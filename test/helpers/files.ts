// Real files with known content, and hashes of whole trees to compare byte for byte.
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import { closeSync, constants, createReadStream, openSync, readdirSync, readlinkSync } from "node:fs";
import { mkdir, open, readdir, writeFile } from "node:fs/promises";
import path from "node:path";

export async function sha256File(file: string): Promise<string> {
  const hash = createHash("sha256");
  for await (const chunk of createReadStream(file)) hash.update(chunk as Buffer);
  return hash.digest("hex");
}

/**
 * relative path -> sha256 of every regular file under `root` (hidden files included, so leftovers show),
 * except the client's own state directory at the top (<inbox>/.fmq: manifest and partial files).
 */
export async function treeHashes(root: string): Promise<Map<string, string>> {
  const out = new Map<string, string>();
  // The tree may change while we walk it (a subscriber deleting files, or replacing a directory by a
  // file of its name, or the other way round): what vanishes, or turns into the other kind, is absent.
  const gone = (error: NodeJS.ErrnoException) => {
    if (error.code === "ENOENT" || error.code === "ENOTDIR" || error.code === "EISDIR") return undefined;
    throw error;
  };
  const walk = async (dir: string): Promise<void> => {
    for (const entry of (await readdir(dir, { withFileTypes: true }).catch(gone)) ?? []) {
      const full = path.join(dir, entry.name);
      if (dir === root && entry.name === ".fmq" && entry.isDirectory()) continue;
      if (entry.isDirectory()) await walk(full);
      else if (entry.isFile()) {
        const hash = await sha256File(full).catch(gone);
        if (hash !== undefined) out.set(path.relative(root, full).split(path.sep).join("/"), hash);
      }
    }
  };
  await walk(root);
  return new Map([...out].sort(([a], [b]) => (a < b ? -1 : 1)));
}

export async function writeTree(root: string, files: Record<string, string | Buffer>): Promise<void> {
  for (const [relative, content] of Object.entries(files)) {
    const full = path.join(root, relative);
    await mkdir(path.dirname(full), { recursive: true });
    await writeFile(full, content);
  }
}

/** A file of `size` random bytes, written in 1 MiB pieces (no giant buffer). */
export async function writeRandomFile(file: string, size: number): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const handle = await open(file, "w");
  try {
    for (let done = 0; done < size; ) {
      const n = Math.min(1024 * 1024, size - done);
      await handle.write(randomBytes(n), 0, n, done);
      done += n;
    }
  } finally {
    await handle.close();
  }
}

/** A FIFO at `file` (what a hostile writer may swap in for a file), and how to let go a reader stuck opening it. */
export function makeFifo(file: string): { release: () => void } {
  execFileSync("mkfifo", [file]);
  return { release: () => closeSync(openSync(file, constants.O_WRONLY | constants.O_NONBLOCK)) };
}

/** How many descriptors of this process (any thread: a worker's too) are open on `file` (by its real path). */
export function openHere(file: string): number {
  return readdirSync("/proc/self/fd").filter((fd) => {
    try {
      return readlinkSync(`/proc/self/fd/${fd}`) === file;
    } catch {
      return false; // (closed meanwhile)
    }
  }).length;
}
