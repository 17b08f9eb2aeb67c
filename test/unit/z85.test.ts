// Z85 (RFC 32) against the RFC's vectors and against libzmq's own keys; key files and their modes.

import { stat, writeFile, chmod, readFile, mkdir } from "node:fs/promises";
import path from "node:path";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { curveKeyPair } from "zeromq";
import { Z85Error, isZ85Key, z85Decode, z85Encode } from "../../src/security/z85.js";
import { KeyError, publicKeyOf, readAllowList, readPublicKey, readPublicKeys, readSecretKeyFile, writeKeyFiles } from "../../src/security/keys.js";
import { tempDir } from "../helpers/tmp.js";

describe("z85", () => {
  it("z85 - RFC 32 test vector: 86 4F D2 6F B5 59 F7 5B <-> HelloWorld", () => {
    const bytes = Buffer.from([0x86, 0x4f, 0xd2, 0x6f, 0xb5, 0x59, 0xf7, 0x5b]);
    expect(z85Encode(bytes)).toBe("HelloWorld");
    expect(z85Decode("HelloWorld")).toEqual(bytes);
  });

  it("z85 - RFC 32 reference test: a 32-byte key", () => {
    const key = Buffer.from("8E0BDD697628B91D8F245587EE95C5B04D48963F79259877B49CD9063AEAD3B7", "hex");
    const text = "JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6";
    expect(z85Encode(key)).toBe(text);
    expect(z85Decode(text)).toEqual(key);
  });

  it("z85 - edges: empty, all zeros, all ones", () => {
    expect(z85Encode(new Uint8Array(0))).toBe("");
    expect(z85Decode("")).toEqual(Buffer.alloc(0));
    expect(z85Encode(Buffer.alloc(4))).toBe("00000");
    expect(z85Encode(Buffer.alloc(4, 0xff))).toBe("%nSc0");
    expect(z85Decode("%nSc0")).toEqual(Buffer.alloc(4, 0xff));
  });

  it("z85 - round trip for any bytes (a multiple of 4)", () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 64 }), (raw) => {
        const bytes = raw.subarray(0, raw.length - (raw.length % 4));
        const text = z85Encode(bytes);
        expect(text.length).toBe((bytes.length / 4) * 5);
        expect(z85Decode(text)).toEqual(Buffer.from(bytes));
      }),
    );
  });

  it("z85 - rejects bad lengths, characters outside the alphabet and groups above 2^32-1", () => {
    expect(() => z85Encode(new Uint8Array(3))).toThrow(Z85Error);
    expect(() => z85Decode("Hello!")).toThrow(/multiple of 5/);
    expect(() => z85Decode("Hell\"")).toThrow(/invalid Z85 character/);
    expect(() => z85Decode("Hell~")).toThrow(/invalid Z85 character/);
    expect(() => z85Decode("Hellé")).toThrow(/invalid Z85 character/);
    expect(() => z85Decode("%nSc1")).toThrow(/exceeds 32 bits/);
    expect(() => z85Decode("#####")).toThrow(/exceeds 32 bits/);
    expect(isZ85Key("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh6")).toBe(true);
    expect(isZ85Key("JTKVSB%%)wK0E.X)V>+}o?pNmC{O&4W4b!Ni{Lh")).toBe(false);
  });

  it("z85 - agrees with libzmq: the public key derived from a decoded secret key is libzmq's", () => {
    for (let i = 0; i < 20; i++) {
      const pair = curveKeyPair();
      expect(z85Decode(pair.publicKey)).toHaveLength(32);
      expect(publicKeyOf(pair.secretKey)).toBe(pair.publicKey);
    }
  });
});

describe("key files", () => {
  it("keys - writeKeyFiles: .pub is the key and a newline (0644), .key holds both keys (0600), and reads back", async () => {
    const dir = await tempDir();
    const pair = curveKeyPair();
    const { publicFile, secretFile } = await writeKeyFiles(path.join(dir, "server"), pair);
    expect(await readFile(publicFile, "utf8")).toBe(pair.publicKey + "\n");
    expect((await stat(secretFile)).mode & 0o777).toBe(0o600);
    expect((await stat(publicFile)).mode & 0o777).toBe(0o644);
    expect(await readSecretKeyFile(secretFile)).toEqual(pair);
    expect(await readPublicKey(publicFile)).toBe(pair.publicKey);
    await expect(writeKeyFiles(path.join(dir, "server"), curveKeyPair())).rejects.toThrow(/exists; use --force/);
    await writeKeyFiles(path.join(dir, "server"), curveKeyPair(), true);
  });

  it("keys - a secret key file readable by others, malformed, or mismatched is a clear error", async () => {
    const dir = await tempDir();
    const pair = curveKeyPair();
    const { secretFile } = await writeKeyFiles(path.join(dir, "k"), pair);
    await chmod(secretFile, 0o644);
    await expect(readSecretKeyFile(secretFile)).rejects.toThrow(`${secretFile} is accessible by others (mode 0644); run: chmod 600 ${secretFile}`);
    const write = async (name: string, text: string) => {
      const file = path.join(dir, name);
      await writeFile(file, text, { mode: 0o600 });
      return file;
    };
    const bad = await write("bad.key", 'secret-key = "tooshort"\n');
    await expect(readSecretKeyFile(bad)).rejects.toThrow(`${bad}:1: secret-key is not a CURVE key (40 Z85 characters)`);
    const other = curveKeyPair();
    const mismatched = await write("mix.key", `public-key = "${other.publicKey}"\nsecret-key = "${pair.secretKey}"\n`);
    await expect(readSecretKeyFile(mismatched)).rejects.toThrow("its public-key does not belong to its secret-key");
    const pubOnly = await write("pub.key", `${pair.publicKey}\n`);
    await expect(readSecretKeyFile(pubOnly)).rejects.toThrow(KeyError);
    await expect(readSecretKeyFile(path.join(dir, "missing.key"))).rejects.toThrow("no such file");
    // The secret key alone is enough: the public key is derived.
    const secretOnly = await write("only.key", `secret-key = "${pair.secretKey}"\n`);
    expect(await readSecretKeyFile(secretOnly)).toEqual(pair);
  });

  it("keys - allow-lists: one file, a file of several keys, a directory of .pub files, CZMQ zcert public files", async () => {
    const dir = await tempDir();
    const [a, b, c] = [curveKeyPair(), curveKeyPair(), curveKeyPair()];
    const clients = path.join(dir, "clients");
    await mkdir(clients);
    await writeKeyFiles(path.join(clients, "a"), a);
    await writeKeyFiles(path.join(clients, "b"), b);
    expect(await readAllowList(clients)).toEqual([a.publicKey, b.publicKey]);
    const several = path.join(dir, "several.pub");
    await writeFile(several, `# our clients\n${a.publicKey}\n\n${c.publicKey}\n`);
    expect(await readPublicKeys(several)).toEqual([a.publicKey, c.publicKey]);
    await expect(readPublicKey(several)).rejects.toThrow("holds 2 keys, expected one");
    const zcert = path.join(dir, "zcert.pub");
    await writeFile(zcert, `#   ZeroMQ CURVE Public Certificate\nmetadata\n    name = "x"\ncurve\n    public-key = "${c.publicKey}"\n`);
    expect(await readAllowList(zcert)).toEqual([c.publicKey]);
    const garbage = path.join(dir, "garbage.pub");
    await writeFile(garbage, "not a key at all\n");
    await expect(readAllowList(garbage)).rejects.toThrow(`${garbage}:1: not a CURVE public key`);
    await expect(readAllowList(path.join(dir, "nope"))).rejects.toThrow("cannot read allow-list");
    const empty = path.join(dir, "empty");
    await mkdir(empty);
    await expect(readAllowList(empty)).rejects.toThrow("no .pub files in it");
  });
});
