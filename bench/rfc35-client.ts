// A FILEMQ client as RFC 35 describes one that returns to files it holds: its ICANHAZ asks for RESYNC and
// lists, in `cache`, the SHA-1 of every file it holds (filename -> 40 hex digits, CZMQ's zfile_digest).
// No fmq client code in it, only our codec: it stands for any other implementation (the C reference's
// client sends its cache empty), so the bench can time how fast the publisher settles such a cache.
//
//   node dist/bench/rfc35-client.js --connect tcp://127.0.0.1:<port> --dir <the tree it holds> [--credit <bytes>]
//
// It hashes the whole tree first (not part of anything timed), then prints {"event":"icanhaz","files":n}
// just before it sends the ICANHAZ. Every CHEEZBURGER is counted, and its chunk bytes; they are printed as
// {"event":"received","messages":m,"bytes":b} on SIGTERM, before it leaves. (It writes nothing to disk:
// a file sent to it is one the publisher did not recognise, which is what the bench counts.)

import { createHash } from "node:crypto";
import { readFile, readdir } from "node:fs/promises";
import path from "node:path";
import { parseArgs } from "node:util";
import { Dealer, context } from "zeromq";
import { decode, encode } from "../src/protocol/codec.js";

context.blocky = false;

const emit = (data: Record<string, unknown>): void => {
  process.stdout.write(JSON.stringify(data) + "\n");
};

/** Every regular file under `dir`, as a path relative to it with "/" separators, and its SHA-1 in capitals. */
async function sha1Tree(dir: string): Promise<Map<string, string>> {
  const cache = new Map<string, string>();
  for (const entry of await readdir(dir, { recursive: true, withFileTypes: true })) {
    if (!entry.isFile()) continue;
    const absolute = path.join(entry.parentPath, entry.name);
    const digest = createHash("sha1").update(await readFile(absolute)).digest("hex").toUpperCase();
    cache.set(path.relative(dir, absolute).split(path.sep).join("/"), digest);
  }
  return cache;
}

async function main(): Promise<void> {
  const { values } = parseArgs({
    options: { connect: { type: "string" }, dir: { type: "string" }, credit: { type: "string", default: String(16 * 1024 * 1024) } },
  });
  if (!values.connect || !values.dir) throw new Error("usage: rfc35-client.js --connect EP --dir DIR [--credit BYTES]");
  const cache = await sha1Tree(values.dir);
  const dealer = new Dealer({ linger: 0 });
  let messages = 0;
  let bytes = 0;
  const leave = () => {
    emit({ event: "received", messages, bytes });
    dealer.close();
    process.exit(0);
  };
  process.on("SIGTERM", leave);
  process.on("SIGINT", leave);
  dealer.connect(values.connect);
  await dealer.send(encode({ id: "OHAI", protocol: "FILEMQ", version: 2 }));
  emit({ event: "icanhaz", files: cache.size });
  await dealer.send(encode({ id: "ICANHAZ", path: "/", options: new Map([["RESYNC", "1"]]), cache }));
  await dealer.send(encode({ id: "NOM", credit: BigInt(values.credit), sequence: 0n }));
  for await (const frames of dealer) {
    for (const frame of frames) {
      const result = decode(frame);
      if (!result.ok) continue;
      const message = result.message;
      if (message.id === "CHEEZBURGER") {
        messages++;
        bytes += message.chunk.length;
      } else if (message.id === "HUGZ") {
        await dealer.send(encode({ id: "HUGZ_OK" }));
      }
    }
  }
}

main().catch((error: unknown) => {
  emit({ event: "error", message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
