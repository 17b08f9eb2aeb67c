// A server that ignores credit, as the C reference can (see CREDIT_HEDGE): run as its own process so that
// it floods a client as fast as libzmq takes messages, whatever the client's process is doing.
// Usage: node flood-server.mjs <files>. Prints {"endpoint": ...} once bound; answers one client's OHAI
// and ICANHAZ, then sends file i (floodContent(i), at /flood/d<i % 20>/f<i>.bin) as the reference does:
// a data chunk, then an empty chunk with eof=1, no headers. Then stays until killed.

import { createHash } from "node:crypto";
import { pathToFileURL } from "node:url";
import { Router } from "zeromq";
import { decodeFrames, encode } from "../../dist/src/protocol/codec.js";

/** The content of file i (the test computes the same). */
export function floodContent(i) {
  const seed = createHash("sha256").update(String(i)).digest();
  return Buffer.concat(Array.from({ length: 4 }, () => seed)).subarray(0, 64 + (i % 50));
}

export const floodName = (i) => `/flood/d${i % 20}/f${i}.bin`;

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const files = Number(process.argv[2]);
  const router = new Router({ linger: 0, sendHighWaterMark: 100_000 });
  await router.bind("tcp://127.0.0.1:*");
  process.stdout.write(`${JSON.stringify({ endpoint: router.lastEndpoint })}\n`);
  let sequence = 0n;
  const cheezburger = (filename, offset, eof, chunk) =>
    encode({ id: "CHEEZBURGER", sequence: sequence++, operation: 1, filename, offset: BigInt(offset), eof, headers: new Map(), chunk });
  for await (const [rid, ...frames] of router) {
    const result = decodeFrames(frames);
    if (!result.ok) continue;
    if (result.message.id === "OHAI") await router.send([rid, encode({ id: "OHAI_OK" })]);
    if (result.message.id === "HUGZ") await router.send([rid, encode({ id: "HUGZ_OK" })]);
    if (result.message.id === "ICANHAZ") {
      await router.send([rid, encode({ id: "ICANHAZ_OK" })]);
      for (let i = 0; i < files; i++) {
        const data = floodContent(i);
        await router.send([rid, cheezburger(floodName(i), 0, 0, data)]);
        await router.send([rid, cheezburger(floodName(i), data.length, 1, Buffer.alloc(0))]);
      }
      process.stdout.write(`${JSON.stringify({ sent: files })}\n`);
    }
  }
}
