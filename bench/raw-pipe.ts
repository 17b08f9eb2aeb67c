// The ceiling of our stack: a bare zeromq.js credit pipe, file → file, with nothing of fmq in it (no
// codec, no state machines, no watcher). Same shape as fmq: one ROUTER server (mandatory, one send loop
// because zeromq.js allows one send in flight), DEALER clients, credit in bytes, a window, chunks read
// ahead into fresh Buffers and written by the client at their offset before their credit goes back.
//
//   node dist/bench/raw-pipe.js server --file <src> --bind tcp://127.0.0.1:<port> [--chunk 1048576] [--read-ahead 2]
//   node dist/bench/raw-pipe.js client --connect tcp://127.0.0.1:<port> --out <dst> [--window 16777216]
//
// Both print JSON lines like the fmq CLI: server {"event":"ready"}; client {"event":"open"} just before its
// first request and {"event":"done","bytes":n,"ms":t} once the last chunk is written and the file closed.
// Both then stay up until SIGTERM, so the bench can read their peak RSS and CPU from /proc first.
//
// Wire: client → server  ["OPEN"], ["CREDIT", u64 bytes], ["BYE"]
//       server → client  ["D", u64 offset, data], ["E", u64 size]

import { open, stat, type FileHandle } from "node:fs/promises";
import { parseArgs } from "node:util";
import { performance } from "node:perf_hooks";
import { Dealer, Router, context } from "zeromq";

context.blocky = false;

const emit = (data: Record<string, unknown>): void => {
  process.stdout.write(JSON.stringify(data) + "\n");
};

const u64 = (n: number): Buffer => {
  const b = Buffer.alloc(8);
  b.writeBigUInt64BE(BigInt(n));
  return b;
};

function stayUntilSignalled(close: () => void): void {
  const keepAlive = setInterval(() => undefined, 1 << 30);
  const stop = () => {
    clearInterval(keepAlive);
    close();
    process.exit(0);
  };
  process.on("SIGTERM", stop);
  process.on("SIGINT", stop);
}

// --- server ---------------------------------------------------------------------------------------------

interface Read {
  readonly offset: number;
  readonly buffer: Buffer;
  readonly read: Promise<number>;
}

interface Peer {
  readonly id: Buffer;
  readonly handle: FileHandle;
  credit: number;
  /** Next byte to send. */
  offset: number;
  /** Where reads (read-ahead included) have got to. */
  readOffset: number;
  readonly ahead: Read[];
  ended: boolean;
}

async function server(file: string, bind: string, chunk: number, readAhead: number): Promise<void> {
  const size = (await stat(file)).size;
  const router = new Router({ mandatory: true, sendTimeout: 5000, linger: 0 });
  await router.bind(bind);
  const peers = new Map<string, Peer>();
  let wake: (() => void) | undefined;
  let closed = false;
  stayUntilSignalled(() => {
    closed = true;
    router.close();
  });
  emit({ event: "ready", endpoint: bind, size });

  const fill = (peer: Peer) => {
    while (peer.readOffset < size && peer.ahead.length < 1 + readAhead) {
      const offset = peer.readOffset;
      const want = Math.min(chunk, size - offset);
      const buffer = Buffer.allocUnsafe(want);
      const read = peer.handle.read(buffer, 0, want, offset).then((r) => r.bytesRead);
      read.catch(() => undefined);
      peer.ahead.push({ offset, buffer, read });
      peer.readOffset += want;
    }
  };

  const ready = (peer: Peer) => !peer.ended && (peer.offset >= size || peer.credit >= Math.min(chunk, size - peer.offset));

  // The one send loop: round robin over peers that have credit for their next chunk.
  const sending = (async () => {
    let turn = 0;
    while (!closed) {
      const list = [...peers.values()];
      let peer: Peer | undefined;
      for (let i = 0; i < list.length && !peer; i++) {
        const candidate = list[(turn + i) % list.length]!;
        if (ready(candidate)) peer = candidate;
      }
      turn++;
      if (!peer) {
        await new Promise<void>((resolve) => (wake = resolve));
        wake = undefined;
        continue;
      }
      if (peer.offset >= size) {
        peer.ended = true;
        await router.send([peer.id, "E", u64(size)]);
        continue;
      }
      fill(peer);
      const head = peer.ahead.shift()!;
      const got = await head.read;
      if (got !== head.buffer.length) throw new Error(`short read at ${head.offset}: ${got}`);
      peer.credit -= got;
      peer.offset += got;
      fill(peer);
      await router.send([peer.id, "D", u64(head.offset), head.buffer]);
    }
  })();
  sending.catch((error: unknown) => {
    if (!closed) emit({ event: "error", message: String(error) });
  });

  for await (const [id, type, arg] of router) {
    if (!id || !type) continue;
    const key = id.toString("hex");
    const command = type.toString();
    if (command === "OPEN") {
      const handle = await open(file, "r");
      peers.set(key, { id, handle, credit: 0, offset: 0, readOffset: 0, ahead: [], ended: false });
    } else if (command === "CREDIT" && arg) {
      const peer = peers.get(key);
      if (peer) peer.credit += Number(arg.readBigUInt64BE(0));
    } else if (command === "BYE") {
      const peer = peers.get(key);
      peers.delete(key);
      if (peer) {
        await Promise.allSettled(peer.ahead.map((r) => r.read));
        await peer.handle.close();
      }
    }
    wake?.();
  }
}

// --- client ---------------------------------------------------------------------------------------------

async function client(connect: string, out: string, window: number): Promise<void> {
  const dealer = new Dealer({ linger: 0 });
  stayUntilSignalled(() => dealer.close());
  dealer.connect(connect);
  const handle = await open(out, "w");
  const started = performance.now();
  emit({ event: "open" });
  await dealer.send(["OPEN"]);
  await dealer.send(["CREDIT", u64(window)]);
  let bytes = 0;
  for await (const [type, offsetFrame, data] of dealer) {
    const command = type?.toString();
    if (command === "D" && offsetFrame && data) {
      const offset = Number(offsetFrame.readBigUInt64BE(0));
      for (let done = 0; done < data.length; ) {
        const { bytesWritten } = await handle.write(data, done, data.length - done, offset + done);
        done += bytesWritten;
      }
      bytes += data.length;
      await dealer.send(["CREDIT", u64(data.length)]);
    } else if (command === "E") {
      await handle.close();
      emit({ event: "done", bytes, ms: performance.now() - started });
      await dealer.send(["BYE"]);
      break;
    }
  }
}

// --- main -----------------------------------------------------------------------------------------------

const [mode, ...rest] = process.argv.slice(2);
const { values } = parseArgs({
  args: rest,
  options: {
    file: { type: "string" },
    bind: { type: "string" },
    chunk: { type: "string", default: String(1024 * 1024) },
    "read-ahead": { type: "string", default: "2" },
    connect: { type: "string" },
    out: { type: "string" },
    window: { type: "string", default: String(16 * 1024 * 1024) },
  },
});

const main =
  mode === "server" && values.file && values.bind
    ? server(values.file, values.bind, Number(values.chunk), Number(values["read-ahead"]))
    : mode === "client" && values.connect && values.out
      ? client(values.connect, values.out, Number(values.window))
      : Promise.reject(new Error("usage: raw-pipe.js server --file F --bind EP | client --connect EP --out F"));

main.catch((error: unknown) => {
  emit({ event: "error", message: error instanceof Error ? error.message : String(error) });
  process.exit(1);
});
