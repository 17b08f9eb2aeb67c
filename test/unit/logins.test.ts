// The routing id -> user table the ZAP handler fills (src/security/logins.ts): what a client names is only
// its word until its connection speaks; the table is bounded without ever pushing a live login out.
// (End to end, with real sockets: "logins that name routing ids nobody connects with" in
// test/integration/security.test.ts.) Times are given, not waited for.

import { describe, expect, it } from "vitest";
import { Logins } from "../../src/security/logins.js";

describe("logins", () => {
  it("logins - unconfirmed records go after their time, confirmed ones stay until their connection closes", () => {
    const logins = new Logins({ unconfirmedMs: 1_000 });
    expect(logins.bind("a", "alice", 0)).toBe("bound");
    expect(logins.bind("g", "mallory", 0)).toBe("bound");
    logins.confirm("a");
    expect(logins.userOf("a", 5_000)).toBe("alice");
    expect(logins.userOf("g", 999)).toBe("mallory");
    expect(logins.userOf("g", 1_000)).toBeUndefined();
    expect(logins.size).toBe(1);
    // Too late to confirm: the record is gone.
    logins.confirm("g");
    expect(logins.userOf("g", 1_001)).toBeUndefined();
    logins.remove("a");
    expect(logins.userOf("a", 1_001)).toBeUndefined();
    expect(logins.size).toBe(0);
  });

  it("logins - full: a new login is refused for now, nothing is pushed out; room again once unconfirmed records expire", () => {
    const logins = new Logins({ maxLogins: 3, unconfirmedMs: 1_000 });
    logins.bind("a", "alice", 0);
    logins.confirm("a");
    expect(logins.bind("g1", "mallory", 0)).toBe("bound");
    expect(logins.bind("g2", "mallory", 10)).toBe("bound");
    expect(logins.bind("g3", "mallory", 20)).toBe("full");
    expect(logins.bind("b", "bob", 20)).toBe("full");
    expect(logins.userOf("a", 20)).toBe("alice");
    // g1 expires first (oldest): one place.
    expect(logins.bind("b", "bob", 1_005)).toBe("bound");
    expect(logins.bind("g3", "mallory", 1_005)).toBe("full");
    expect(logins.userOf("a", 1_005)).toBe("alice");
  });

  it("logins - a routing id bound to one user is refused to another, confirmed or not; the same user again is fine", () => {
    const logins = new Logins();
    expect(logins.bind("k", "alice", 0)).toBe("bound");
    expect(logins.bind("k", "mallory", 0)).toBe("taken");
    logins.confirm("k");
    expect(logins.bind("k", "mallory", 0)).toBe("taken");
    expect(logins.bind("k", "alice", 0)).toBe("bound");
    expect(logins.userOf("k", 0)).toBe("alice");
  });

  it("logins - unconfirmed records per user are capped, so one account cannot fill the table; others still get in", () => {
    const logins = new Logins({ maxLogins: 100, unconfirmedPerUser: 4, unconfirmedMs: 1_000 });
    for (let i = 0; i < 4; i++) expect(logins.bind(`g${i}`, "mallory", 0)).toBe("bound");
    expect(logins.bind("g4", "mallory", 0)).toBe("too many unconfirmed");
    expect(logins.bind("a", "alice", 0)).toBe("bound");
    // A confirmed one no longer counts against the cap.
    logins.confirm("g0");
    expect(logins.bind("g4", "mallory", 0)).toBe("bound");
    expect(logins.bind("g5", "mallory", 0)).toBe("too many unconfirmed");
    // Nor an expired one.
    expect(logins.bind("g5", "mallory", 1_000)).toBe("bound");
  });
});
