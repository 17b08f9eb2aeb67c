// An unknown user's password is checked against a hash as costly as the costliest account's, so that its
// refusal takes as long as a wrong password for any account (no timing here: the scrypt parameters used
// are recorded as node:crypto sees them).

import { describe, expect, it, vi } from "vitest";

const costs: { N?: number; r?: number; p?: number }[] = [];
/** Checks node:crypto refused to run (OpenSSL's limits). */
const failures: string[] = [];
vi.mock("node:crypto", async (importOriginal) => {
  const crypto = await importOriginal<typeof import("node:crypto")>();
  const scrypt = ((password: string, salt: Buffer, keylen: number, options: { N?: number; r?: number; p?: number }, callback: (error: Error | null, key: Buffer) => void) => {
    costs.push({ N: options.N, r: options.r, p: options.p });
    return crypto.scrypt(password, salt, keylen, options, (error, key) => {
      if (error) failures.push(error.message);
      callback(error, key);
    });
  }) as typeof crypto.scrypt;
  return { ...crypto, scrypt, default: { ...crypto, scrypt } };
});

const { Access } = await import("../../src/security/policy.js");

const plain = (user: string, password: string) => [Buffer.from(user), Buffer.from(password)];
const zeros = (n: number) => Buffer.alloc(n).toString("base64");

describe("access policy, unknown users", () => {
  it("policy - an unknown user is checked at the cost of the costliest account's hash (N = 2^15 here), not the default's", async () => {
    const access = new Access({
      mechanism: "plain",
      accounts: [
        { user: "alice", passwordHash: `scrypt$16384$8$1$${zeros(16)}$${zeros(32)}` },
        { user: "bob", passwordHash: `scrypt$32768$8$1$${zeros(16)}$${zeros(32)}` },
      ],
    });
    costs.length = 0;
    expect(await access.judge("PLAIN", plain("mallory", "x"))).toEqual({ ok: false, reason: 'unknown user "mallory"' });
    expect(costs).toEqual([{ N: 32768, r: 8, p: 1 }]);
    costs.length = 0;
    expect(await access.judge("PLAIN", plain("bob", "x"))).toEqual({ ok: false, reason: 'wrong password for "bob"' });
    expect(costs).toEqual([{ N: 32768, r: 8, p: 1 }]);
  });

  it("policy - the hash an unknown user is checked against can be computed: one OpenSSL refuses (N = 2^20, r = 1) is not taken as the costliest", async () => {
    // (A review: with such a hash the costliest, an unknown user's check failed at once, 0.3 ms against
    // 74 ms for a wrong password, telling which users exist.)
    const access = new Access({
      mechanism: "plain",
      accounts: [
        { user: "alice", passwordHash: `scrypt$16384$8$1$${zeros(16)}$${zeros(32)}` },
        { user: "bob", passwordHash: `scrypt$1048576$1$1$${zeros(16)}$${zeros(32)}` },
      ],
    });
    costs.length = 0;
    failures.length = 0;
    expect(await access.judge("PLAIN", plain("mallory", "x"))).toEqual({ ok: false, reason: 'unknown user "mallory"' });
    expect(costs).toEqual([{ N: 16384, r: 8, p: 1 }]);
    expect(failures).toEqual([]);
  });
});
