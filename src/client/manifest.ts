// What the client has delivered into an inbox, and which partial files it can resume. Kept in
// <inbox>/.fmq/manifest.json (hidden, so never published if someone publishes the inbox). The manifest is
// what lets a returning client tell the server what it holds (so unchanged files are not sent again), learn
// about deletes it missed, and delete only files it delivered itself: a file a person put in the inbox is
// never in the manifest, so it is never touched.

import { mkdir, readFile, rename, writeFile, lstat } from "node:fs/promises";
import path from "node:path";

/** A delivered file, as the server described it. */
export interface Delivered {
  readonly vpath: string;
  readonly size: number;
  /** The server's mtime (ms), when the server sent it (our extension), else undefined. */
  readonly mtime?: number;
  /** Tree hash (16 hex). */
  readonly hash?: string;
  /** Block hashes, hex (only for files of more than one block). */
  readonly blocks?: string;
}

/** A partial file that can be resumed: the identity of the version its bytes belong to. */
export interface PartialFile {
  readonly vpath: string;
  readonly size: number;
  readonly mtime: number;
}

interface Stored {
  readonly version: 1;
  readonly files: Record<string, Delivered>;
  readonly partials: Record<string, PartialFile>;
}

/** The client's own directory inside an inbox. */
export const STATE_DIR = ".fmq";

const SAVE_DELAY_MS = 200;
const MAX_SAVE_DELAY_MS = 5000;

export class Manifest {
  readonly files: Map<string, Delivered>;
  readonly partials: Map<string, PartialFile>;
  #timer: NodeJS.Timeout | undefined;
  #saving: Promise<void> = Promise.resolve();
  #lastSaveMs = 0;

  private constructor(
    private readonly file: string,
    stored: Stored,
  ) {
    this.files = new Map(Object.entries(stored.files));
    this.partials = new Map(Object.entries(stored.partials));
  }

  /** Load (or start) the manifest of the inbox whose state directory is `stateDir`. */
  static async load(stateDir: string): Promise<Manifest> {
    const file = path.join(stateDir, "manifest.json");
    let stored: Stored = { version: 1, files: {}, partials: {} };
    try {
      const parsed = JSON.parse(await readFile(file, "utf8")) as Stored;
      if (parsed.version === 1 && typeof parsed.files === "object" && typeof parsed.partials === "object") stored = parsed;
    } catch {
      // Missing or unreadable: start empty. The worst outcome is files sent again, never files lost.
    }
    return new Manifest(file, stored);
  }

  delivered(relative: string, entry: Delivered): void {
    this.files.set(relative, entry);
    this.partials.delete(relative);
    this.saveSoon();
  }

  removed(relative: string): void {
    this.files.delete(relative);
    this.partials.delete(relative);
    this.saveSoon();
  }

  /** A resumable partial was started: saved at once, so a crash right after still finds it. */
  async partialStarted(relative: string, partial: PartialFile): Promise<void> {
    this.partials.set(relative, partial);
    await this.save();
  }

  partialDropped(relative: string): void {
    if (this.partials.delete(relative)) this.saveSoon();
  }

  saveSoon(): void {
    // A big manifest costs more to write: save less often, so a flood of small files is not slowed by it.
    this.#timer ??= setTimeout(() => {
      this.#timer = undefined;
      void this.save();
    }, Math.min(MAX_SAVE_DELAY_MS, Math.max(SAVE_DELAY_MS, 20 * this.#lastSaveMs)));
  }

  /** Write now (temp file + rename: never a torn manifest). Saves are serialised. */
  save(): Promise<void> {
    if (this.#timer) clearTimeout(this.#timer);
    this.#timer = undefined;
    const data: Stored = { version: 1, files: Object.fromEntries(this.files), partials: Object.fromEntries(this.partials) };
    this.#saving = this.#saving.then(async () => {
      const started = Date.now();
      const temp = `${this.file}.tmp`;
      await mkdir(path.dirname(this.file), { recursive: true });
      const existing = await lstat(temp).catch(() => undefined);
      if (existing && !existing.isFile()) throw new Error(`${temp} is not a regular file`);
      await writeFile(temp, JSON.stringify(data));
      await rename(temp, this.file);
      this.#lastSaveMs = Date.now() - started;
    }).catch(() => undefined);
    return this.#saving;
  }
}
