// CURVE key files. `<name>.pub` holds the public key: one line, 40 Z85 characters (a CZMQ zcert
// `public-key = "..."` line is read too). `<name>.key` holds both keys, mode 0600:
//
//     # fmq CURVE secret key: keep it private
//     public-key = "<40 Z85 characters>"
//     secret-key = "<40 Z85 characters>"
//
// The public key is stored beside the secret one for people and tools (zeromq.js cannot derive it); we
// check that the two belong together (X25519, node:crypto), so a hand-edited file cannot pair a secret
// key with someone else's public key.

import { createPrivateKey, createPublicKey, randomBytes } from "node:crypto";
import { chmod, lstat, mkdir, open, readFile, readdir, rename, stat, unlink, writeFile } from "node:fs/promises";
import path from "node:path";
import { curveKeyPair } from "zeromq";
import { isZ85Key, z85Decode, z85Encode } from "./z85.js";

export interface KeyPair {
  /** Z85, 40 characters. */
  readonly publicKey: string;
  /** Z85, 40 characters. */
  readonly secretKey: string;
}

export class KeyError extends Error {
  override name = "KeyError";
}

/**
 * A file that holds a secret (a secret key, a password) must be its owner's alone, as ssh asks of its
 * keys: its mode (e.g. "0644") if group or others may read or write it, else undefined.
 */
export function othersMayAccess(info: { readonly mode: number }): string | undefined {
  if (process.platform === "win32" || (info.mode & 0o077) === 0) return undefined;
  return (info.mode & 0o777).toString(8).padStart(4, "0");
}

/**
 * How someone other than us (or root) may change a file or directory that says who may connect, as ssh's
 * StrictModes asks of authorized_keys: it may be written by group or others (`mode`), or it is another
 * user's (`uid`); undefined if neither. In a sticky directory (/tmp) others cannot replace what is not
 * theirs, which is enough with `stickyIsEnough`.
 */
export function othersMayChange(info: { readonly mode: number; readonly uid: number }, stickyIsEnough = false): { mode: string } | { uid: number } | undefined {
  if (process.platform === "win32") return undefined;
  const me = process.geteuid?.();
  if (me !== undefined && info.uid !== me && info.uid !== 0) return { uid: info.uid };
  if ((info.mode & 0o022) !== 0 && !(stickyIsEnough && (info.mode & 0o1000) !== 0)) return { mode: (info.mode & 0o777).toString(8).padStart(4, "0") };
  return undefined;
}

/** A new CURVE key pair (libzmq's generator). */
export function generateKeyPair(): KeyPair {
  return curveKeyPair();
}

/** The public key that belongs to a Z85 secret key (Curve25519 scalar multiplication of the base point). */
export function publicKeyOf(secretKey: string): string {
  const secret = z85Decode(secretKey);
  // A PKCS#8 wrapper around the 32 raw bytes of an X25519 private key.
  const der = Buffer.concat([Buffer.from("302e020100300506032b656e04220420", "hex"), secret]);
  const jwk = createPublicKey(createPrivateKey({ key: der, format: "der", type: "pkcs8" })).export({ format: "jwk" });
  return z85Encode(Buffer.from(jwk.x ?? "", "base64url"));
}

/**
 * Write `<basename>.pub` (mode 0644) and `<basename>.key` (mode 0600). Refuses to replace existing files
 * unless `overwrite`. Returns the two paths.
 */
export async function writeKeyFiles(basename: string, pair: KeyPair, overwrite = false): Promise<{ publicFile: string; secretFile: string }> {
  // ("" or "dir/" would write hidden ".pub" and ".key" files, easily missed.)
  if (basename === "" || basename.endsWith("/")) throw new KeyError(`--out needs a file name to put .pub and .key after, e.g. keys/server (got "${basename}")`);
  const publicFile = `${basename}.pub`;
  const secretFile = `${basename}.key`;
  const exists = (error: unknown, file: string): never => {
    if ((error as NodeJS.ErrnoException).code === "EEXIST") throw new KeyError(`${file} exists; use --force to replace it`);
    throw new KeyError(`cannot write ${file}: ${(error as Error).message}`);
  };
  const secretText =
    "# fmq CURVE secret key: keep it private (mode 0600). Give the .pub file to the other side.\n" +
    `public-key = "${pair.publicKey}"\n` +
    `secret-key = "${pair.secretKey}"\n`;
  // The directory they go in is made (mode 0700: it holds a secret), as an inbox's is.
  const dir = path.dirname(path.resolve(secretFile));
  await mkdir(dir, { recursive: true, mode: 0o700 }).catch((e: unknown) => {
    throw new KeyError(`cannot make directory ${dir}: ${(e as NodeJS.ErrnoException).code ?? (e as Error).message}`);
  });
  // Secret first, created with mode 0600 from the start (never briefly readable by others).
  if (!overwrite) {
    // (Neither may be there: a refusal leaves the pair as it was, not a new secret beside an old public key.)
    for (const file of [secretFile, publicFile]) {
      if (await lstat(file).then(() => true, () => false)) throw new KeyError(`${file} exists; use --force to replace it`);
    }
    await writeFile(secretFile, secretText, { mode: 0o600, flag: "wx" }).catch((e: unknown) => exists(e, secretFile));
    await chmod(secretFile, 0o600);
    await writeFile(publicFile, pair.publicKey + "\n", { mode: 0o644, flag: "wx" }).catch(async (e: unknown) => {
      // (Made meanwhile: the secret just written goes, or it would not match it.)
      await unlink(secretFile).catch(() => undefined);
      return exists(e, publicFile);
    });
  } else {
    // Replaced by a new file renamed over the old: never written into what is there (a file someone else
    // owns would then hold our secret, and stay theirs; a symlink would lead the key anywhere).
    // (Neither a directory, say, which only the second rename would find: the new secret would then
    // stand beside the old public key.)
    for (const file of [secretFile, publicFile]) {
      const there = await lstat(file).catch(() => undefined);
      if (there && !there.isFile() && !there.isSymbolicLink()) throw new KeyError(`cannot replace ${file}: not a file`);
    }
    await replaceFile(secretFile, secretText, 0o600).catch((e: unknown) => exists(e, secretFile));
    await replaceFile(publicFile, pair.publicKey + "\n", 0o644).catch((e: unknown) => exists(e, publicFile));
  }
  return { publicFile, secretFile };
}

/**
 * Write `text` to a new file beside `file` (O_EXCL: ours, fresh), set `mode` on our descriptor (not by
 * name: the name could be swapped for a symlink meanwhile), then rename it over `file`.
 */
async function replaceFile(file: string, text: string, mode: number): Promise<void> {
  const temp = `${file}.${process.pid}.${randomBytes(6).toString("hex")}.tmp`;
  const handle = await open(temp, "wx", mode);
  try {
    try {
      await handle.chmod(mode);
      await handle.writeFile(text);
    } finally {
      await handle.close();
    }
    await rename(temp, file);
  } catch (error) {
    await unlink(temp).catch(() => undefined);
    throw error;
  }
}

/** Read a `.pub` file: its public key(s). A file may list several, one per line ("#" starts a comment). */
export async function readPublicKeys(file: string): Promise<string[]> {
  const text = await readFile(file, "utf8").catch((error: unknown) => {
    throw new KeyError(`cannot read public key file ${file}: ${describe(error)}`);
  });
  const keys: string[] = [];
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    if (isZ85Key(line)) {
      keys.push(line);
      continue;
    }
    const assigned = /^([\w-]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    // CZMQ zcert files: section names ("metadata", "curve") and other properties are skipped.
    if ((!assigned && /^(metadata|curve)$/.test(line)) || (assigned && assigned[1] !== "public-key")) continue;
    const key = assigned ? assigned[2]!.trim() : line;
    if (!isZ85Key(key)) throw new KeyError(`${file}:${index + 1}: not a CURVE public key (40 Z85 characters)`);
    keys.push(key);
  }
  if (keys.length === 0) throw new KeyError(`${file}: no public key in it`);
  return keys;
}

/** Read the one public key of a `.pub` file (e.g. the server's key, for a client). */
export async function readPublicKey(file: string): Promise<string> {
  const keys = await readPublicKeys(file);
  if (keys.length > 1) throw new KeyError(`${file}: holds ${keys.length} keys, expected one`);
  return keys[0]!;
}

/**
 * Read a `.key` file: the secret key and its public key. The file must not be readable or writable by
 * group or others (like ssh), must hold a valid secret key, and its public key (if present) must match.
 */
export async function readSecretKeyFile(file: string): Promise<KeyPair> {
  const info = await stat(file).catch((error: unknown) => {
    throw new KeyError(`cannot read secret key file ${file}: ${describe(error)}`);
  });
  if (!info.isFile()) throw new KeyError(`${file} is not a file`);
  const text = await readFile(file, "utf8");
  // (A .pub given by mistake: said as such, not as a file to chmod, which would only lead to this.)
  const first = text.split(/\r?\n/).map((line) => line.trim()).find((line) => line !== "" && !line.startsWith("#"));
  if (first !== undefined && isZ85Key(first)) throw new KeyError(`${file} holds a public key only: give the secret key file (.key, from fmq keygen)`);
  const open = othersMayAccess(info);
  if (open) throw new KeyError(`${file} is accessible by others (mode ${open}); run: chmod 600 ${file}`);
  let secretKey: string | undefined;
  let publicKey: string | undefined;
  for (const [index, raw] of text.split(/\r?\n/).entries()) {
    const line = raw.trim();
    if (line === "" || line.startsWith("#")) continue;
    const assigned = /^([\w-]+)\s*=\s*"?([^"]*)"?$/.exec(line);
    if (!assigned) {
      if (/^(metadata|curve)$/.test(line)) continue; // a CZMQ zcert section name ("metadata", "curve")
      throw new KeyError(`${file}:${index + 1}: expected public-key = "..." or secret-key = "..."`);
    }
    const [, name, value] = assigned as unknown as [string, string, string];
    if (name !== "public-key" && name !== "secret-key") continue;
    if (!isZ85Key(value.trim())) throw new KeyError(`${file}:${index + 1}: ${name} is not a CURVE key (40 Z85 characters)`);
    if (name === "secret-key") secretKey = value.trim();
    else publicKey = value.trim();
  }
  if (secretKey === undefined) {
    const hint = publicKey !== undefined ? " (is this a .pub file?)" : "";
    throw new KeyError(`${file}: no secret-key in it${hint}`);
  }
  const derived = publicKeyOf(secretKey);
  if (publicKey !== undefined && publicKey !== derived) throw new KeyError(`${file}: its public-key does not belong to its secret-key`);
  return { publicKey: derived, secretKey };
}

/**
 * The public keys of an allow-list: a `.pub` file (one or more keys), or a directory whose `*.pub` files
 * are read (not recursively). Returns the keys and the files they came from.
 */
export async function readAllowList(location: string): Promise<string[]> {
  const info = await stat(location).catch((error: unknown) => {
    throw new KeyError(`cannot read allow-list ${location}: ${describe(error)}`);
  });
  if (!info.isDirectory()) {
    // (Its directory too: whoever may write there may put another file in its place.)
    checkAllowListEntry(path.dirname(location), await stat(path.dirname(location)), true);
    checkAllowListEntry(location, info);
    return readPublicKeys(location);
  }
  checkAllowListEntry(location, info);
  const names = (await readdir(location)).filter((name) => name.endsWith(".pub") && !name.startsWith(".")).sort();
  const keys: string[] = [];
  for (const name of names) {
    const file = path.join(location, name);
    checkAllowListEntry(
      file,
      await stat(file).catch((error: unknown) => {
        throw new KeyError(`cannot read public key file ${file}: ${describe(error)}`);
      }),
    );
    keys.push(...(await readPublicKeys(file)));
  }
  if (keys.length === 0) throw new KeyError(`allow-list ${location}: no .pub files in it`);
  return keys;
}

/**
 * An allow-list decides who may read everything, so, as ssh's StrictModes asks of authorized_keys, its
 * files and directory must be writable by their owner only, and that owner the server's user or root
 * (a review: a 0777 directory holding a 0666 intruder.pub was taken). Others may read them: public keys.
 * `parent`: the directory of an allow-list given as one file, where the sticky bit (/tmp) is enough, since
 * others cannot then replace a file they do not own.
 */
function checkAllowListEntry(file: string, info: { readonly mode: number; readonly uid: number }, parent = false): void {
  const problem = othersMayChange(info, parent);
  if (problem && "uid" in problem) throw new KeyError(`allow-list ${file} is owned by another user (uid ${problem.uid}); run: chown ${process.geteuid?.() ?? 0} ${file} (or copy it to a place of your own)`);
  if (problem) throw new KeyError(`allow-list ${file} may be written by group or others (mode ${problem.mode}); run: chmod go-w ${file}`);
}

/** Why a file could not be read, in a few words (Node's own message for the rare cases). */
export function describe(error: unknown): string {
  const code = (error as NodeJS.ErrnoException).code;
  if (code === "ENOENT") return "no such file";
  if (code === "EACCES") return "permission denied";
  if (code === "EISDIR") return "is a directory";
  return (error as Error).message;
}
