// Where received files land. Every file is written into a partial file beside its final name and renamed
// into place only when complete, so no reader ever sees a partial file at the final path, and a shorter
// new version fully replaces the old one. Nothing is written, deleted or followed outside the inbox:
// every name is checked (paths.ts), and every directory on the way is checked not to be a symlink.

import { createHash } from "node:crypto";
import { constants } from "node:fs";
import { lstat, mkdir, open, realpath, rename, unlink, type FileHandle } from "node:fs/promises";
import path from "node:path";
import { PARTIAL_SUFFIX, unsafeRelativeReason } from "../paths.js";

export class InboxError extends Error {
  override name = "InboxError";
  constructor(
    message: string,
    /** The relative name involved, if any. */
    readonly relative?: string,
  ) {
    super(message);
  }
}

/** A file being received. */
export class IncomingFile {
  /** Payload bytes written so far; the next chunk must start here. */
  received = 0;

  constructor(
    readonly relative: string,
    readonly finalPath: string,
    readonly partialPath: string,
    private readonly handle: FileHandle,
  ) {}

  async write(chunk: Uint8Array, offset: number): Promise<void> {
    if (offset !== this.received) throw new InboxError(`chunk at offset ${offset}, expected ${this.received}`, this.relative);
    let done = 0;
    while (done < chunk.length) {
      const { bytesWritten } = await this.handle.write(chunk, done, chunk.length - done, offset + done);
      done += bytesWritten;
    }
    this.received += chunk.length;
  }

  /** Complete: close and rename into place (atomically replacing any older version). */
  async finish(): Promise<void> {
    await this.handle.close();
    await rename(this.partialPath, this.finalPath);
  }

  /** Incomplete and not coming back: close and remove the partial file. */
  async abandon(): Promise<void> {
    await this.handle.close().catch(() => undefined);
    await unlink(this.partialPath).catch(() => undefined);
  }
}

export class Inbox {
  private constructor(readonly root: string) {}

  /** Create the inbox if needed and fix its real path. */
  static async open(directory: string): Promise<Inbox> {
    await mkdir(directory, { recursive: true });
    return new Inbox(await realpath(directory));
  }

  /** Start receiving `relative` (a name from the wire, already stripped of the subscription path). */
  async create(relative: string): Promise<IncomingFile> {
    const finalPath = await this.#resolve(relative);
    const existing = await lstat(finalPath).catch(() => undefined);
    if (existing?.isDirectory()) throw new InboxError(`${relative}: a directory has that name`, relative);
    const partialPath = path.join(path.dirname(finalPath), partialName(path.basename(finalPath)));
    const partial = await lstat(partialPath).catch(() => undefined);
    if (partial && !partial.isFile()) throw new InboxError(`${relative}: partial file is not a regular file`, relative);
    // "w": a fresh, empty partial file; O_NOFOLLOW refuses a symlink planted at the partial name.
    const handle = await open(partialPath, constants.O_WRONLY | constants.O_CREAT | constants.O_TRUNC | constants.O_NOFOLLOW, 0o644);
    return new IncomingFile(relative, finalPath, partialPath, handle);
  }

  /** Apply a delete. Returns false if there was nothing to delete. Only regular files are removed. */
  async remove(relative: string): Promise<boolean> {
    const finalPath = await this.#resolve(relative, { create: false });
    const existing = await lstat(finalPath).catch(() => undefined);
    if (!existing) return false;
    if (!existing.isFile()) throw new InboxError(`${relative}: not a regular file, not deleted`, relative);
    await unlink(finalPath);
    return true;
  }

  /** The absolute path for `relative`, after checking the name and every directory on the way. */
  async #resolve(relative: string, opts: { create?: boolean } = {}): Promise<string> {
    const reason = unsafeRelativeReason(relative);
    if (reason) throw new InboxError(`refused "${printable(relative)}": ${reason}`, relative);
    const segments = relative.split("/");
    let dir = this.root;
    for (const segment of segments.slice(0, -1)) {
      dir = path.join(dir, segment);
      // Checked for every file, never cached: a directory checked a moment ago may be a symlink now.
      const stats = await lstat(dir).catch(() => undefined);
      if (!stats) {
        if (opts.create === false) return path.join(this.root, relative);
        await mkdir(dir).catch((error: NodeJS.ErrnoException) => {
          if (error.code !== "EEXIST") throw error;
        });
        const made = await lstat(dir);
        if (!made.isDirectory()) throw new InboxError(`refused "${printable(relative)}": ${segment} is not a directory`, relative);
      } else if (stats.isSymbolicLink()) {
        throw new InboxError(`refused "${printable(relative)}": leads through a symlink`, relative);
      } else if (!stats.isDirectory()) {
        throw new InboxError(`refused "${printable(relative)}": ${segment} is a file, not a directory`, relative);
      }
    }
    return path.join(dir, segments[segments.length - 1]!);
  }
}

/** The partial file's name: hidden, with our suffix, short enough for NAME_MAX even for a 255-byte name. */
export function partialName(base: string): string {
  const name = `.${base}${PARTIAL_SUFFIX}`;
  if (Buffer.byteLength(name) <= 255) return name;
  return `.${createHash("sha1").update(base).digest("hex")}${PARTIAL_SUFFIX}`;
}

function printable(name: string): string {
  // eslint-disable-next-line no-control-regex
  return name.replace(/[\x00-\x1f\x7f]/g, "?").slice(0, 200);
}
