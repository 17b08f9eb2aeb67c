// An allow-list decides who may read everything: like ssh's authorized_keys (StrictModes), its .pub files
// and their directory must be writable by their owner alone, and owned by the server's user or root
// (a review: a 0777 directory holding a 0666 intruder.pub was taken). Real files in temp directories.

import { chmod, chown, mkdir, writeFile } from "node:fs/promises";
import path from "node:path";
import { describe, expect, it } from "vitest";
import { curveKeyPair } from "zeromq";
import { readAllowList } from "../../src/security/keys.js";
import { tempDir } from "../helpers/tmp.js";

/** A directory of `mode` holding one .pub file of `fileMode`; returns the directory, the file and its key. */
async function allowDir(mode: number, fileMode: number): Promise<{ dir: string; file: string; key: string }> {
  const dir = path.join(await tempDir("fmq-allow-"), "clients");
  await mkdir(dir);
  const key = curveKeyPair().publicKey;
  const file = path.join(dir, "alice.pub");
  await writeFile(file, `${key}\n`);
  // (chmod, not the mode of mkdir or writeFile: those go through the umask.)
  await chmod(file, fileMode);
  await chmod(dir, mode);
  return { dir, file, key };
}

const isRoot = process.getuid?.() === 0;

describe("allow-list files", () => {
  it("keys - a directory of 0755 holding a .pub of 0644 is read (others may read public keys)", async () => {
    const { dir, key } = await allowDir(0o755, 0o644);
    expect(await readAllowList(dir)).toEqual([key]);
  });

  it("keys - a directory that group or others may write (0777, 0775) is refused, naming the chmod to run", async () => {
    const open = await allowDir(0o777, 0o644);
    await expect(readAllowList(open.dir)).rejects.toThrow(`allow-list ${open.dir} may be written by group or others (mode 0777); run: chmod go-w ${open.dir}`);
    const group = await allowDir(0o775, 0o644);
    await expect(readAllowList(group.dir)).rejects.toThrow(`allow-list ${group.dir} may be written by group or others (mode 0775); run: chmod go-w ${group.dir}`);
  });

  it("keys - a .pub that others may write is refused, in a directory and given alone", async () => {
    const { dir, file } = await allowDir(0o755, 0o666);
    const message = `allow-list ${file} may be written by group or others (mode 0666); run: chmod go-w ${file}`;
    await expect(readAllowList(dir)).rejects.toThrow(message);
    await expect(readAllowList(file)).rejects.toThrow(message);
    await chmod(file, 0o644);
    expect(await readAllowList(file)).toHaveLength(1);
  });

  it("keys - a .pub given alone: a directory others may write is refused, unless sticky (as /tmp, where others cannot replace it)", async () => {
    const { dir, file, key } = await allowDir(0o777, 0o644);
    await expect(readAllowList(file)).rejects.toThrow(`allow-list ${dir} may be written by group or others (mode 0777); run: chmod go-w ${dir}`);
    await chmod(dir, 0o1777);
    expect(await readAllowList(file)).toEqual([key]);
  });

  it.skipIf(!isRoot)("keys - a .pub or directory owned by another user is refused (as root: chown to 65534)", async () => {
    const { dir, file } = await allowDir(0o755, 0o644);
    await chown(file, 65534, 65534);
    await expect(readAllowList(dir)).rejects.toThrow(`allow-list ${file} is owned by another user (uid 65534); run: chown 0 ${file} (or copy it to a place of your own)`);
    await chown(file, 0, 0);
    await chown(dir, 65534, 65534);
    await expect(readAllowList(dir)).rejects.toThrow(`allow-list ${dir} is owned by another user (uid 65534)`);
  });
});
