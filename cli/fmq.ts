#!/usr/bin/env node
// The fmq command line. It only parses flags, builds options and wires events to output; everything
// else lives in src/. Commands and flags are a contract: scripts rely on them.

import { Command, InvalidArgumentError, Option } from "commander";
import { context } from "zeromq";
import { Client, Server, serverDefaults, clientDefaults, type DeliveredEvent } from "../src/index.js";
import { Output } from "./output.js";
import { ProgressDisplay } from "./progress.js";

// A CLI must never hang on exit waiting for queued messages (zeromq.js' default).
context.blocky = false;

const program = new Command()
  .name("fmq")
  .description("FileMQ: publish directories, subscribe to them, over ZeroMQ (35/FILEMQ v2)")
  .version(process.env.npm_package_version ?? "0.1.0")
  .configureOutput({ outputError: (text, write) => write(text.split("\n")[0] + "\n") });

program
  .command("publish")
  .description("publish a directory to subscribers")
  .argument("<dir>", "directory to publish")
  .option("--bind <endpoint>", "endpoint to bind", "tcp://*:5670")
  .option("--alias <vpath>", "virtual path the directory is published under", "/")
  .addOption(sizeOption("--chunk-size <bytes>", "payload bytes per chunk (e.g. 256k, 1M)", serverDefaults.chunkSize))
  .addOption(msOption("--stable-ms <ms>", "ship a file once unchanged for this long", serverDefaults.stableMs))
  .option("--json", "one JSON object per line on stdout")
  .option("--trace", "print every state machine step on stderr")
  .action(async (dir: string, opts: { bind: string; alias: string; chunkSize: number; stableMs: number; json?: boolean; trace?: boolean }) => {
    const out = new Output(opts.json === true);
    const server = new Server({ chunkSize: opts.chunkSize, stableMs: opts.stableMs, ...traceOption(opts.trace) });
    onSignal(() => server.close());
    try {
      const mount = await server.publish(dir, opts.alias);
      const endpoint = await server.bind(opts.bind);
      out.event({ event: "ready", endpoint, directory: mount.root, alias: mount.alias }, `publishing ${mount.root} as ${mount.alias} on ${endpoint}`);
    } catch (error) {
      await server.close();
      fail(error);
    }
    server.on("connected", (client) => out.event({ event: "connected", client }, `client ${client} connected`));
    server.on("disconnected", (client) => out.event({ event: "disconnected", client }, `client ${client} gone`));
    server.on("sent", (e) =>
      out.event(
        { event: e.operation === "create" ? "sent" : "deleted", client: e.client, path: e.path, ...(e.operation === "create" ? { size: e.size } : {}) },
        e.operation === "create" ? `sent ${e.path} (${e.size} bytes) to ${e.client}` : `sent delete of ${e.path} to ${e.client}`,
      ),
    );
    server.on("published", (file) => {
      if (out.json) out.event({ event: "published", path: file.vpath, size: file.size }, "");
    });
    server.on("caught-up", (client) => {
      if (out.json) out.event({ event: "caught-up", client }, "");
    });
    server.on("warning", (message) => out.warning(message));
  });

program
  .command("subscribe")
  .description("receive every file under a virtual path, and every change")
  .argument("<path>", "virtual path to subscribe to, e.g. / or /logs")
  .option("--connect <endpoint>", "server endpoint", "tcp://127.0.0.1:5670")
  .option("--inbox <dir>", "directory files land in", "./inbox")
  .addOption(sizeOption("--window <bytes>", "credit window: most bytes in flight", clientDefaults.window))
  .addOption(msOption("--heartbeat-ms <ms>", "HUGZ after this much silence", clientDefaults.heartbeatMs))
  .option("--fsync", "fsync each file and its directory before reporting it delivered")
  .option("--json", "one JSON object per line on stdout")
  .option("--trace", "print every state machine step on stderr")
  .action(async (path: string, opts: { connect: string; inbox: string; window: number; heartbeatMs: number; fsync?: boolean; json?: boolean; trace?: boolean }) => {
    const out = new Output(opts.json === true);
    const client = new Client({
      endpoint: opts.connect,
      inbox: opts.inbox,
      window: opts.window,
      heartbeatMs: opts.heartbeatMs,
      fsync: opts.fsync === true,
      ...traceOption(opts.trace),
    });
    wireClient(client, out);
    onSignal(() => client.close());
    try {
      await client.subscribe(path);
    } catch (error) {
      await client.close();
      fail(error);
    }
    client.connect();
    out.event({ event: "connecting", endpoint: opts.connect, inbox: opts.inbox }, `connecting to ${opts.connect}, inbox ${opts.inbox}`);
  });

program
  .command("track")
  .description("keep <dst> a copy of <src>: publisher and subscriber in one process")
  .argument("<src>", "directory to publish")
  .argument("<dst>", "directory to mirror it into")
  .addOption(msOption("--stable-ms <ms>", "ship a file once unchanged for this long", serverDefaults.stableMs))
  .option("--once", "exit once every file present at start has been delivered")
  .option("--json", "one JSON object per line on stdout")
  .option("--trace", "print every state machine step on stderr")
  .action(async (src: string, dst: string, opts: { stableMs: number; once?: boolean; json?: boolean; trace?: boolean }) => {
    const out = new Output(opts.json === true);
    const server = new Server({ stableMs: opts.stableMs, ...traceOption(opts.trace) });
    const client = new Client({ endpoint: `inproc://fmq-track-${process.pid}`, inbox: dst, ...traceOption(opts.trace) });
    const stop = async () => {
      await client.close();
      await server.close();
    };
    onSignal(stop);
    server.on("warning", (message) => out.warning(message));
    try {
      const mount = await server.publish(src, "/");
      await server.bind(client.options.endpoint);
      out.event({ event: "ready", directory: mount.root, inbox: dst }, `tracking ${mount.root} into ${dst}`);
      wireClient(client, out);
      await client.subscribe("/");
      client.connect();
      if (opts.once) {
        const started = Date.now();
        let bytes = 0;
        const delivered = new Set<string>();
        client.on("delivered", (e: DeliveredEvent) => {
          delivered.add(e.vpath);
          bytes += e.size;
        });
        // Done when the mount has no file left to settle and every published file has arrived.
        const timer = setInterval(() => {
          if (mount.unstable > 0 || delivered.size < mount.files.size) return;
          for (const vpath of mount.files.keys()) if (!delivered.has(vpath)) return;
          clearInterval(timer);
          const seconds = (Date.now() - started) / 1000;
          out.event(
            { event: "synced", files: delivered.size, bytes, seconds },
            `synced ${delivered.size} files, ${bytes} bytes in ${seconds.toFixed(2)} s`,
          );
          void stop().then(() => process.exit(0));
        }, 20);
      }
    } catch (error) {
      await stop();
      fail(error);
    }
  });

await program.parseAsync().catch(fail);

// --- helpers -------------------------------------------------------------------------------------

function wireClient(client: Client, out: Output): void {
  const progress = new ProgressDisplay(() => client.progress, out);
  client.once("connected", () => progress.start());
  process.once("exit", () => progress.stop());
  client.on("connected", () => out.event({ event: "connected" }, "connected"));
  client.on("subscribed", (path) => out.event({ event: "subscribed", path }, `subscribed to ${path}`));
  client.on("delivered", (e) =>
    out.event(
      { event: "delivered", path: e.path, size: e.size, received: e.received },
      `delivered ${e.path} (${e.size} bytes${e.received !== e.size ? `, ${e.received} received` : ""})`,
    ),
  );
  client.on("deleted", (e) => out.event({ event: "deleted", path: e.path }, `deleted ${e.path}`));
  client.on("disconnected", (reason) => out.event({ event: "disconnected", reason }, `disconnected: ${reason}; reconnecting`));
  client.on("error", (error) => out.error(error.message));
}

function onSignal(close: () => Promise<void>): void {
  let stopping = false;
  const handler = () => {
    if (stopping) process.exit(1);
    stopping = true;
    // Clean exit within a second, whatever is queued.
    setTimeout(() => process.exit(0), 900).unref();
    void close().finally(() => process.exit(0));
  };
  process.on("SIGINT", handler);
  process.on("SIGTERM", handler);
}

function fail(error: unknown): never {
  const message = error instanceof Error ? error.message : String(error);
  process.stderr.write(`fmq: ${message.split("\n")[0]}\n`);
  process.exit(1);
}

function traceOption(on: boolean | undefined): { trace?: (line: string) => void } {
  return on ? { trace: (line: string) => process.stderr.write(line + "\n") } : {};
}

/** "1048576", "256k", "1M", "1MiB", "2G": binary multiples. */
function parseSize(text: string): number {
  const match = /^(\d+)\s*([kmg]?)(i?b)?$/i.exec(text.trim());
  if (!match) throw new InvalidArgumentError(`not a size: "${text}" (e.g. 262144, 256k, 1M)`);
  const unit = { "": 1, k: 1024, m: 1024 ** 2, g: 1024 ** 3 }[match[2]!.toLowerCase() as "" | "k" | "m" | "g"];
  const value = Number(match[1]) * unit;
  if (!Number.isSafeInteger(value) || value <= 0) throw new InvalidArgumentError(`not a positive size: "${text}"`);
  return value;
}

function sizeOption(flags: string, description: string, fallback: number): Option {
  return new Option(flags, description).argParser(parseSize).default(fallback);
}

function msOption(flags: string, description: string, fallback: number): Option {
  return new Option(flags, description)
    .argParser((text: string) => {
      const value = Number(text);
      if (!Number.isInteger(value) || value < 0) throw new InvalidArgumentError(`not a number of milliseconds: "${text}"`);
      return value;
    })
    .default(fallback);
}
