// The file-system calls the inbox makes, on paths that may hold a name that is not UTF-8 (raw-names.ts):
// each path is given to the kernel as the bytes it stands for, and names read from a directory come back
// the same way. The inbox imports these instead of node:fs's own, so no call can forget to.

import * as fs from "node:fs";
import * as fsp from "node:fs/promises";
import { decodeName, fsPath } from "../raw-names.js";

export { closeSync, constants, writevSync } from "node:fs";
export type { FileHandle } from "node:fs/promises";

export const accessSync = (file: string, mode?: number): void => fs.accessSync(fsPath(file), mode);
export const existsSync = (file: string): boolean => fs.existsSync(fsPath(file));
export const lstatSync = (file: string, options: { throwIfNoEntry: false }): fs.Stats | undefined => fs.lstatSync(fsPath(file), options);
export const mkdirSync = (dir: string): void => void fs.mkdirSync(fsPath(dir));
export const openSync = (file: string, flags: number, mode?: number): number => fs.openSync(fsPath(file), flags, mode);
export const renameSync = (from: string, to: string): void => fs.renameSync(fsPath(from), fsPath(to));
export const rmdirSync = (dir: string): void => fs.rmdirSync(fsPath(dir));
export const unlinkSync = (file: string): void => fs.unlinkSync(fsPath(file));

/** A directory's entries, each name as raw-names.ts carries it (not with U+FFFD for a byte that is not UTF-8). */
export function readdirSync(dir: string): { readonly name: string; isDirectory(): boolean }[] {
  return fs.readdirSync(fsPath(dir), { withFileTypes: true, encoding: "buffer" }).map((entry) => ({
    name: decodeName(entry.name),
    isDirectory: () => entry.isDirectory(),
  }));
}

export const copyFile = (from: string, to: string, mode: number): Promise<void> => fsp.copyFile(fsPath(from), fsPath(to), mode);
export const lstat = (file: string): Promise<fs.Stats> => fsp.lstat(fsPath(file));
export const mkdir = (dir: string): Promise<void> => fsp.mkdir(fsPath(dir)).then(() => undefined);
export const open = (file: string, flags: number | string, mode?: number): Promise<fsp.FileHandle> => fsp.open(fsPath(file), flags, mode);
export const stat = (file: string): Promise<fs.Stats> => fsp.stat(fsPath(file));
export const unlink = (file: string): Promise<void> => fsp.unlink(fsPath(file));
