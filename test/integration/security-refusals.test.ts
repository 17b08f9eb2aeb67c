// Handshakes the ZAP handler refuses are said in the server's log, but not one line each: anyone who
// reaches the port can make them as fast as they are refused (a review: 200 DEALERs with made-up PLAIN
// users, 347 lines in 3 s). Real sockets on 127.0.0.1: a ROUTER with the server's security options, and
// DEALERs that log in wrongly and try again every 20 ms.

import { afterEach, describe, expect, it } from "vitest";
import { Dealer, Router } from "zeromq";
import { ServerSecurity } from "../../src/security/server-security.js";
import { freePort } from "../helpers/net.js";
import { waitFor } from "../helpers/wait.js";

const cleanups: (() => Promise<void> | void)[] = [];
afterEach(async () => {
  for (const cleanup of cleanups.splice(0).reverse()) await cleanup();
});

describe("refused handshakes in the log", () => {
  it("security - 500 refused PLAIN logins from 127.0.0.1 (wrong passwords, made-up users) make a line per kind, then counts that add up", async () => {
    const lines: string[] = [];
    const security = new ServerSecurity(
      {
        policy: { mechanism: "plain", accounts: [{ user: "alice", password: "wonderland" }], anonymous: false },
        // (Short, so that the counts come within the test; the real interval is a minute.)
        refusalLogMs: 4_000,
      },
      (line) => lines.push(line),
    );
    cleanups.push(() => security.stop());
    await security.start();
    const router = new Router({ linger: 0, ...security.socketOptions() });
    cleanups.push(() => router.close());
    let refusals = 0;
    router.events.on("handshake:error:auth", () => refusals++);
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    await router.bind(endpoint);
    const started = Date.now();
    // (libzmq does not try again after a refusal: new DEALERs, 50 at a time.)
    for (let batch = 0; batch < 10; batch++) {
      const dealers: Dealer[] = [];
      for (let j = 0; j < 50; j++) {
        const i = batch * 50 + j;
        // Half guess alice's password, half are users that do not exist, each another name.
        const credentials = i % 2 === 0 ? { plainUsername: "alice", plainPassword: `guess-${i}` } : { plainUsername: `made-up-${i}`, plainPassword: "x" };
        const dealer = new Dealer({ linger: 0, ...credentials });
        dealers.push(dealer);
        dealer.connect(endpoint);
      }
      await waitFor(() => refusals >= (batch + 1) * 50, `${(batch + 1) * 50} refused handshakes`, 15_000);
      for (const dealer of dealers) dealer.close();
    }
    const elapsed = Date.now() - started;
    const during = lines.length;
    // Within the interval: a line for each kind only (a count may have come if the flood was slow, and a
    // refusal just after an interval's end, before its timer ran late, is said with its count: two lines).
    const kinds = ['refused PLAIN handshake from 127.0.0.1: wrong password for "alice"', 'refused PLAIN handshake from 127.0.0.1: unknown user "made-up-'];
    expect(during).toBeLessThanOrEqual(4 * (1 + Math.floor(elapsed / 4_000)));
    for (const line of lines) expect(kinds.some((kind) => line.startsWith(kind))).toBe(true);
    // Every refusal is told: said alone, or in a count.
    const told = () => lines.reduce((sum, line) => sum + Number(/ \(and (\d+) more like it in the last \d+ s\)$/.exec(line)?.[1] ?? 1), 0);
    await waitFor(() => told() === refusals, `the counts adding up to ${refusals} refusals`, 15_000);
    expect(lines.some((line) => / \(and \d+ more like it in the last \d+ s\)$/.test(line))).toBe(true);
  });
});
