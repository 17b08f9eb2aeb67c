// Workload 5: what fmq's RESYNC cache, delta transfer and resume are for (README, "Protocol" extensions),
// each beside rsync doing the same job in the same run.
//
//  5a  A subscriber returns to an unchanged tree (--files × --file-size): after a full sync (not timed)
//      and a clean stop, a second `fmq subscribe` on the same inbox sends its manifest in ICANHAZ and should
//      get nothing. Timed from spawning it to the publisher's `caught-up` for it (and from its `subscribed`
//      line); the file bytes sent to it (publisher `sent` sizes) and its `delivered` lines are counted.
//      Baselines: a second `rsync -a` of the tree into a module that already holds it (quick check), and
//      the same with --checksum.
//  5a' The same return, by a client as RFC 35 describes (rfc35-client.ts, standing for another
//      implementation): its ICANHAZ lists the SHA-1 of each file it holds, which the publisher must hash
//      to compare. Each repetition starts a publisher of its own (so it knows no SHA-1 yet; not timed),
//      and the client returns twice: 5a' the first time (every SHA-1 computed), 5a'' the second (the
//      publisher remembers them). Timed from the client's ICANHAZ to the publisher's `caught-up` for it;
//      the files sent to it are counted (none is right). Baseline: the same `rsync -a --checksum` runs
//      as 5a's (rsync hashes every file on both sides, every time), paired by repetition.
//  5b  1 MiB overwritten in place in the middle of a --size file (not block aligned, so it touches two
//      1 MiB blocks), with the subscriber connected: timed from the write being closed to its `delivered`.
//  5b' The same while the subscriber is away: stop it, change another 1 MiB, wait until the publisher has
//      published the new version, start it again; timed from spawning it to `delivered`.
//      Baselines for both: rsync of the same change into a module that holds the previous version, with
//      the delta algorithm (--no-whole-file) and with --whole-file; bytes from `rsync --stats`.
//  5c  kill -9 mid-file with a --size file, at ~50 % of the subscriber's partial file (polled with stat
//      every ms; the subscriber runs with --window 1M so 50 % is easy to catch): (i) of the subscriber,
//      then a new subscriber on the same inbox; (ii) of the publisher, then a new publisher on the same
//      endpoint (the subscriber keeps running). Reported: the bytes that crossed the wire for the file
//      after the restart against what was missing (size − partial file size after the kill).
//
// Every file is checked by sha256 against the source after every run.

import { randomBytes } from "node:crypto";
import { spawn } from "node:child_process";
import { open, rm } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";
import { FMQ_STATE, partialSize, sha256File, waitForPartial, verifyTree, writeRandomFile, writeRandomTree, type TreeHashes } from "../data.js";
import { CpuMeter, Proc, freePort, now, settle, sleep, track } from "../measure.js";
import { bytesText } from "../report.js";
import { FMQ, type ResyncCase, type ResyncSample, type WorkloadResult } from "../types.js";
import { setAside, timeoutFor, type Context } from "./common.js";

const MiB = 1024 * 1024;
const RFC35_CLIENT = fileURLToPath(new URL("../rfc35-client.js", import.meta.url));
/** 5a's contender list entry for 5a' (its samples are recorded as fmq's, in case 5a'). */
const FMQ_RFC35 = "fmq, RFC 35 client";
const BIG = "big.bin";
/** After caught-up, how long to keep listening for anything sent late before stopping the subscriber. */
const LINGER_MS = 300;

const RSYNC_QUICK = "rsync -a (quick check)";
const RSYNC_CHECKSUM = "rsync -a --checksum";
const RSYNC_DELTA = "rsync -a --no-whole-file (delta)";
const RSYNC_WHOLE = "rsync -a --whole-file";

export async function resync(ctx: Context): Promise<WorkloadResult> {
  const { config } = ctx;
  const { files, fileSize, size } = config;
  const dir = path.join(config.tmp, "w5");
  const rsyncBaselines = (...pairs: [string, string][]) => (ctx.rsync ? pairs.map(([contender, label]) => ({ contender, label })) : []);
  const cases: ResyncCase[] = [
    {
      id: "5a",
      title: `resubscribe, unchanged ${files} × ${bytesText(fileSize)} tree`,
      timed: "spawning the second `fmq subscribe` → the publisher's `caught-up` for it (other clock: from its `subscribed` line)",
      baselines: rsyncBaselines([RSYNC_QUICK, "quick check"], [RSYNC_CHECKSUM, "--checksum"]),
    },
    {
      id: "5a'",
      title: `the same return by an RFC 35 client to a publisher just started: its ICANHAZ lists the SHA-1 of each of the ${files} files`,
      timed: "the client's ICANHAZ → the publisher's `caught-up` for it (the client hashed its tree before; not timed)",
      baselines: rsyncBaselines([RSYNC_CHECKSUM, "--checksum"]),
    },
    {
      id: "5a''",
      title: "the RFC 35 client returns once more to the same publisher, which remembers the SHA-1s",
      timed: "as 5a'",
      baselines: rsyncBaselines([RSYNC_CHECKSUM, "--checksum"]),
    },
    {
      id: "5b",
      title: `1 MiB changed in the middle of a ${bytesText(size)} file, subscriber connected`,
      timed: "the overwrite closed → the subscriber's `delivered` (other clock: → the publisher's `sent`); includes the publisher's --stable-ms quiet period",
      baselines: rsyncBaselines([RSYNC_DELTA, "delta"], [RSYNC_WHOLE, "--whole-file"]),
    },
    {
      id: "5b'",
      title: `1 MiB changed in the middle of a ${bytesText(size)} file while the subscriber was away`,
      timed: "spawning `fmq subscribe` (the new version already published) → its `delivered` (other clock: from its `subscribed` line)",
      baselines: rsyncBaselines([RSYNC_DELTA, "delta"], [RSYNC_WHOLE, "--whole-file"]),
    },
    {
      id: "5c-i",
      title: `kill -9 of the subscriber at ~50 % of a ${bytesText(size)} file, then a new subscriber`,
      timed: "spawning the new `fmq subscribe` → its `delivered` (other clock: from its `subscribed` line)",
      baselines: [],
    },
    {
      id: "5c-ii",
      title: `kill -9 of the publisher at ~50 % of a ${bytesText(size)} file, then a new publisher`,
      timed: "spawning the new `fmq publish` → the subscriber's `delivered` (other clock: from the new publisher's `published` line)",
      baselines: [],
    },
  ];
  const samples: ResyncSample[] = [];
  const record = (sample: ResyncSample) => {
    samples.push(sample);
    ctx.log(describe(sample, config.reps));
  };
  try {
    await unchangedTree(ctx, path.join(dir, "a"), record);
    await changedBlock(ctx, path.join(dir, "b"), record);
    await killMidFile(ctx, path.join(dir, "c"), "subscriber", record);
    await killMidFile(ctx, path.join(dir, "c"), "publisher", record);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  return {
    id: "5",
    title: "resync: resubscribe, changed blocks, kill -9 resume",
    params: { files, fileSize, size, changed: MiB, window: config.window, killWindow: MiB, stableMs: config.stableMs },
    runs: [],
    resync: { cases, samples },
    notes: [
      "5a: both sides are warm and already hold the tree; the publisher (and the rsync daemon) stay up between repetitions, every `fmq subscribe` and rsync is a new process (Node start-up is in fmq's time, rsync's start-up in its). fmq counts file bytes only: its ICANHAZ cache (one entry per file) is not in the byte figures; rsync's total includes its file list.",
      `5b: the overwrite is ${bytesText(MiB)} at size/2 + 12345 (5b) and size/4 + 54321 (5b'), so it touches two 1 MiB blocks: about 2 MiB is the least a block-wise delta can send. 5b's fmq time includes --stable-ms (${config.stableMs} ms) before the publisher looks at the file and the publisher hashing the whole new version to find the changed blocks; 5b' does not: the new version is published, and hashed in the background, before the subscriber is started (rsync's time includes its checksum passes in both cases). Both include, on the subscriber, a copy of the version it holds, which the blocks are written into and which is read back whole to check the tree hash (rsync likewise builds a new file from the old one).`,
      "5c: the first subscriber runs with --window 1M; the killed side is restarted at once (ii: once the subscriber's partial file has stopped growing). *Missing* = size − the partial file's size after the kill; *re-sent* = bytes received for the file after the restart − missing (fmq resumes from the last whole 1 MiB block, so < 1 MiB is expected). 5c-ii includes the subscriber noticing the new publisher (--heartbeat-ms default 1000).",
    ],
  };
}

// --- 5a: resubscribe to an unchanged tree ------------------------------------------------------------------

async function unchangedTree(ctx: Context, dir: string, record: (s: ResyncSample) => void): Promise<void> {
  const { config } = ctx;
  const { files, fileSize } = config;
  const src = path.join(dir, "src");
  const inbox = path.join(dir, "inbox");
  const timeoutMs = timeoutFor(files * fileSize, files);
  const contenders = [FMQ, FMQ_RFC35, ...(ctx.rsync ? [RSYNC_QUICK, RSYNC_CHECKSUM] : [])];
  const procs: Proc[] = [];
  try {
    ctx.log(`[5a] writing ${files} random files of ${fileSize} bytes`);
    const expected = await writeRandomTree(src, files, fileSize);
    const wrongSource = await verifyTree(src, expected);
    if (wrongSource) throw new Error(`source tree: ${wrongSource}`);

    // The full syncs, not timed: fmq into its inbox, rsync into its module.
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const pub = await startPublisher(config.fmqCli, src, endpoint, files, config, timeoutMs);
    procs.push(pub);
    const first = startSubscriber(config.fmqCli, endpoint, inbox, config.window);
    procs.push(first);
    await first.waitFor((d) => d.event === "delivered", timeoutMs, `${files} × "delivered" (first sync)`, files);
    await first.stop();
    const wrongFirst = await verifyTree(inbox, expected, FMQ_STATE);
    if (wrongFirst) throw new Error(`first sync: ${wrongFirst}`);
    const rsyncDst = ctx.rsync?.local("w5a");
    if (ctx.rsync && rsyncDst) {
      await rsyncTimed(["-a", src + "/", ctx.rsync.url("w5a")], timeoutMs);
      const wrong = await verifyTree(rsyncDst, expected);
      if (wrong) throw new Error(`first rsync: ${wrong}`);
    }
    ctx.log(`[5a] first sync done (fmq and rsync); now the no-op returns`);

    const run: Record<string, (rep: number) => Promise<ResyncSample>> = {
      [FMQ]: (rep) => fmqResubscribe(ctx, pub, endpoint, inbox, expected, rep, timeoutMs),
      [RSYNC_QUICK]: (rep) => rsyncSample("5a", RSYNC_QUICK, rep, ["-a", "--stats", src + "/", ctx.rsync!.url("w5a")], timeoutMs, () => verifyTree(rsyncDst!, expected)),
      [FMQ_RFC35]: async (rep) => {
        const [first, again] = await rfc35Returns(ctx, src, files, rep, timeoutMs);
        record(again);
        return first;
      },
      [RSYNC_CHECKSUM]: async (rep) => {
        const sample = await rsyncSample("5a", RSYNC_CHECKSUM, rep, ["-a", "--checksum", "--stats", src + "/", ctx.rsync!.url("w5a")], timeoutMs, () =>
          verifyTree(rsyncDst!, expected),
        );
        // The same run is the baseline of 5a' and 5a'' too (one rsync run, compared with all three).
        record({ ...sample, case: "5a'" });
        record({ ...sample, case: "5a''" });
        return sample;
      },
    };
    for (let rep = 1; rep <= config.reps; rep++) {
      for (const name of rotate(contenders, rep)) record(await run[name]!(rep));
    }
  } catch (error) {
    ctx.log(`[5a] FAILED: ${message(error)}`);
    for (const name of contenders) record(failed("5a", name, 0, error));
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    if (ctx.rsync) await setAside(ctx.rsync.local("w5a"), ctx);
  }
}

async function fmqResubscribe(ctx: Context, pub: Proc, endpoint: string, inbox: string, expected: TreeHashes, rep: number, timeoutMs: number): Promise<ResyncSample> {
  const loadPct = await settle();
  const steal = CpuMeter.start();
  const errorsBefore = pub.errors().length;
  const connectedBefore = count(pub, (d) => d.event === "connected");
  const sub = startSubscriber(ctx.config.fmqCli, endpoint, inbox, ctx.config.window);
  try {
    const connected = await pub.waitFor((d) => d.event === "connected", timeoutMs, '"connected" of the returning subscriber', connectedBefore + 1);
    const client = connected.data.client;
    const caughtUp = await pub.waitFor((d) => d.event === "caught-up" && d.client === client, timeoutMs, `"caught-up" for ${String(client)}`);
    const subscribed = await sub.waitFor((d) => d.event === "subscribed", timeoutMs, '"subscribed"');
    const stealPct = steal.stop().stealPct;
    await sleep(LINGER_MS);
    await sub.stop();
    const sent = pub.lines.filter((l) => l.data.event === "sent" && l.data.client === client);
    const delivered = sub.lines.filter((l) => l.data.event === "delivered");
    const errors = [...pub.errors().slice(errorsBefore), ...sub.errors()];
    const wrong = await verifyTree(inbox, expected, FMQ_STATE);
    return {
      case: "5a",
      contender: FMQ,
      rep,
      ok: errors.length === 0 && wrong === undefined,
      ...(errors.length || wrong ? { error: [...errors.slice(0, 3), ...(wrong ? [`verification failed: ${wrong}`] : [])].join("; ") } : {}),
      seconds: (caughtUp.t - sub.spawnedAt) / 1000,
      alt: { label: "from `subscribed`", seconds: (caughtUp.t - subscribed.t) / 1000 },
      payloadBytes: sum(sent.map((l) => Number(l.data.size))),
      receivedBytes: sum(delivered.map((l) => Number(l.data.received))),
      files: delivered.length,
      stealPct,
      loadPct,
      extra: { sentFiles: sent.length, sentPaths: sent.slice(0, 5).map((l) => l.data.path), subscribedAfterSpawnS: (subscribed.t - sub.spawnedAt) / 1000 },
    };
  } catch (error) {
    await sub.stop();
    return failed("5a", FMQ, rep, error, steal.stop().stealPct);
  }
}

/** 5a' and 5a'': an RFC 35 client returns twice to a publisher of its own, which knows no SHA-1 at first. */
async function rfc35Returns(ctx: Context, src: string, files: number, rep: number, timeoutMs: number): Promise<[ResyncSample, ResyncSample]> {
  let pub: Proc | undefined;
  try {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    pub = await startPublisher(ctx.config.fmqCli, src, endpoint, files, ctx.config, timeoutMs);
    const first = await rfc35Return("5a'", pub, endpoint, src, rep, timeoutMs);
    return [first, await rfc35Return("5a''", pub, endpoint, src, rep, timeoutMs)];
  } catch (error) {
    return [failed("5a'", FMQ, rep, error), failed("5a''", FMQ, rep, error)];
  } finally {
    await pub?.stop();
  }
}

/** One return of an RFC 35 client (rfc35-client.ts) to the tree it holds, listing each file's SHA-1. */
async function rfc35Return(caseId: string, pub: Proc, endpoint: string, src: string, rep: number, timeoutMs: number): Promise<ResyncSample> {
  const loadPct = await settle();
  const errorsBefore = pub.errors().length;
  const connectedBefore = count(pub, (d) => d.event === "connected");
  const client = Proc.node("rfc35 client", RFC35_CLIENT, ["--connect", endpoint, "--dir", src]);
  let steal: CpuMeter | undefined;
  try {
    // (It hashes the tree before its ICANHAZ: not timed, nor in the steal figure.)
    const icanhaz = await client.waitFor((d) => d.event === "icanhaz", timeoutMs, '"icanhaz"');
    steal = CpuMeter.start();
    const connected = await pub.waitFor((d) => d.event === "connected", timeoutMs, '"connected" of the RFC 35 client', connectedBefore + 1);
    const key = connected.data.client;
    const caughtUp = await pub.waitFor((d) => d.event === "caught-up" && d.client === key, timeoutMs, `"caught-up" for ${String(key)}`);
    const stealPct = steal.stop().stealPct;
    await sleep(LINGER_MS);
    await client.stop();
    const received = client.lines.find((l) => l.data.event === "received");
    const sent = pub.lines.filter((l) => l.data.event === "sent" && l.data.client === key);
    const errors = [...pub.errors().slice(errorsBefore), ...client.errors()];
    // (Every file is held as listed: one sent means the SHA-1s were not compared right.)
    const problems = [
      ...errors.slice(0, 3),
      ...(received ? [] : ["the client never said what it received"]),
      ...(sent.length > 0 ? [`${sent.length} files sent to a client that holds them all`] : []),
    ];
    return {
      case: caseId,
      contender: FMQ,
      rep,
      ok: problems.length === 0,
      ...(problems.length ? { error: problems.join("; ") } : {}),
      seconds: (caughtUp.t - icanhaz.t) / 1000,
      payloadBytes: sum(sent.map((l) => Number(l.data.size))),
      receivedBytes: Number(received?.data.bytes ?? NaN),
      files: sent.length,
      stealPct,
      loadPct,
      extra: { listed: icanhaz.data.files, cheezburgers: received?.data.messages },
    };
  } catch (error) {
    await client.stop();
    return failed(caseId, FMQ, rep, error, steal?.stop().stealPct);
  }
}

// --- 5b and 5b': 1 MiB changed in a big file ---------------------------------------------------------------

async function changedBlock(ctx: Context, dir: string, record: (s: ResyncSample) => void): Promise<void> {
  const { config } = ctx;
  const { size } = config;
  const srcDir = path.join(dir, "src");
  const src = path.join(srcDir, BIG);
  const inbox = path.join(dir, "inbox");
  const timeoutMs = timeoutFor(size, 1);
  const baselines = ctx.rsync ? [RSYNC_DELTA, RSYNC_WHOLE] : [];
  const module = { [RSYNC_DELTA]: "w5b-delta", [RSYNC_WHOLE]: "w5b-whole" } as Record<string, string>;
  const flags = { [RSYNC_DELTA]: "--no-whole-file", [RSYNC_WHOLE]: "--whole-file" } as Record<string, string>;
  const procs: Proc[] = [];
  let sub: Proc | undefined;
  try {
    ctx.log(`[5b] writing ${size} random bytes`);
    let hash = await writeRandomFile(src, size);
    if ((await sha256File(src)) !== hash) throw new Error(`${src}: sha256 changed after writing`);
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const pub = await startPublisher(config.fmqCli, srcDir, endpoint, 1, config, timeoutMs);
    procs.push(pub);
    sub = startSubscriber(config.fmqCli, endpoint, inbox, config.window);
    // (Stopped with the rest whatever fails: it used to run on through the workloads after this one.)
    procs.push(sub);
    await sub.waitFor((d) => d.event === "delivered" && d.path === BIG, timeoutMs, `"delivered" ${BIG} (first sync)`);
    if ((await sha256File(path.join(inbox, BIG))) !== hash) throw new Error("first sync: delivered bytes differ (sha256)");
    // The rsync modules hold the same version (pushed whole, not timed).
    for (const name of baselines) {
      await rsyncTimed(["-a", "--whole-file", src, ctx.rsync!.url(module[name]!)], timeoutMs);
      if ((await sha256File(path.join(ctx.rsync!.local(module[name]!), BIG))) !== hash) throw new Error(`first rsync (${name}): bytes differ (sha256)`);
    }
    ctx.log(`[5b] first sync done (fmq and rsync); now the changes`);

    const rsyncRuns = async (caseId: string, rep: number) => {
      for (const name of rotate(baselines, rep)) {
        const dst = path.join(ctx.rsync!.local(module[name]!), BIG);
        const args = ["-a", flags[name]!, "--stats", src, ctx.rsync!.url(module[name]!)];
        record(await rsyncSample(caseId, name, rep, args, timeoutMs, async () => ((await sha256File(dst)) === hash ? undefined : `${dst}: wrong sha256`)));
      }
    };

    for (let rep = 1; rep <= config.reps; rep++) {
      // 5b: the subscriber is connected and holds the file.
      {
        const loadPct = await settle();
        const steal = CpuMeter.start();
        const errorsBefore = pub.errors().length + sub.errors().length;
        const deliveredBefore = count(sub, (d) => d.event === "delivered" && d.path === BIG);
        const sentBefore = count(pub, (d) => d.event === "sent" && d.path === `/${BIG}`);
        try {
          await overwrite(src, Math.floor(size / 2) + 12345, MiB);
          const written = now();
          const live = sub;
          const [delivered, sent] = await Promise.all([
            live.waitFor((d) => d.event === "delivered" && d.path === BIG, timeoutMs, `"delivered" ${BIG} after the change`, deliveredBefore + 1),
            pub.waitFor((d) => d.event === "sent" && d.path === `/${BIG}`, timeoutMs, `"sent" /${BIG} after the change`, sentBefore + 1),
          ]);
          const stealPct = steal.stop().stealPct;
          hash = await sha256File(src);
          const ok = (await sha256File(path.join(inbox, BIG))) === hash;
          const errors = [...pub.errors(), ...live.errors()].slice(errorsBefore);
          record({
            case: "5b",
            contender: FMQ,
            rep,
            ok: ok && errors.length === 0,
            ...(!ok || errors.length ? { error: [...errors.slice(0, 3), ...(ok ? [] : ["verification failed: delivered bytes differ (sha256)"])].join("; ") } : {}),
            seconds: (delivered.t - written) / 1000,
            alt: { label: "to `sent`", seconds: (sent.t - written) / 1000 },
            payloadBytes: Number(sent.data.size),
            receivedBytes: Number(delivered.data.received),
            files: 1,
            stealPct,
            loadPct,
          });
        } catch (error) {
          record(failed("5b", FMQ, rep, error, steal.stop().stealPct));
          hash = await sha256File(src);
        }
        await rsyncRuns("5b", rep);
      }

      // 5b': the subscriber leaves, the file changes, the publisher publishes it, the subscriber returns.
      {
        await sub.stop();
        const publishedBefore = count(pub, (d) => d.event === "published" && d.path === `/${BIG}`);
        await overwrite(src, Math.floor(size / 4) + 54321, MiB);
        await pub.waitFor((d) => d.event === "published" && d.path === `/${BIG}`, timeoutMs, `"published" /${BIG} after the change`, publishedBefore + 1);
        hash = await sha256File(src);
        const loadPct = await settle();
        const steal = CpuMeter.start();
        const errorsBefore = pub.errors().length;
        const connectedBefore = count(pub, (d) => d.event === "connected");
        sub = startSubscriber(config.fmqCli, endpoint, inbox, config.window);
        procs.push(sub);
        try {
          const back = sub;
          const delivered = await back.waitFor((d) => d.event === "delivered" && d.path === BIG, timeoutMs, `"delivered" ${BIG} after the return`);
          const stealPct = steal.stop().stealPct;
          const subscribed = await back.waitFor((d) => d.event === "subscribed", timeoutMs, '"subscribed"');
          const connected = await pub.waitFor((d) => d.event === "connected", timeoutMs, '"connected" of the returning subscriber', connectedBefore + 1);
          const sent = pub.lines.filter((l) => l.data.event === "sent" && l.data.client === connected.data.client);
          const ok = (await sha256File(path.join(inbox, BIG))) === hash;
          const errors = [...pub.errors().slice(errorsBefore), ...back.errors()];
          record({
            case: "5b'",
            contender: FMQ,
            rep,
            ok: ok && errors.length === 0,
            ...(!ok || errors.length ? { error: [...errors.slice(0, 3), ...(ok ? [] : ["verification failed: delivered bytes differ (sha256)"])].join("; ") } : {}),
            seconds: (delivered.t - back.spawnedAt) / 1000,
            alt: { label: "from `subscribed`", seconds: (delivered.t - subscribed.t) / 1000 },
            payloadBytes: sum(sent.map((l) => Number(l.data.size))),
            receivedBytes: Number(delivered.data.received),
            files: count(back, (d) => d.event === "delivered"),
            stealPct,
            loadPct,
            extra: { sentFiles: sent.length },
          });
        } catch (error) {
          record(failed("5b'", FMQ, rep, error, steal.stop().stealPct));
        }
        await rsyncRuns("5b'", rep);
      }
    }
  } catch (error) {
    ctx.log(`[5b] FAILED: ${message(error)}`);
    for (const name of [FMQ, ...baselines]) for (const id of ["5b", "5b'"]) record(failed(id, name, 0, error));
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    if (ctx.rsync) for (const name of baselines) await rm(ctx.rsync.local(module[name]!), { recursive: true, force: true });
    await rm(dir, { recursive: true, force: true });
  }
}

/** Overwrite `length` random bytes at `offset` in place (no truncation), and close. */
async function overwrite(file: string, offset: number, length: number): Promise<void> {
  const handle = await open(file, "r+");
  try {
    await handle.write(randomBytes(length), 0, length, offset);
  } finally {
    await handle.close();
  }
}

// --- 5c: kill -9 mid-file ---------------------------------------------------------------------------------------

async function killMidFile(ctx: Context, dir: string, victim: "subscriber" | "publisher", record: (s: ResyncSample) => void): Promise<void> {
  const { config } = ctx;
  const { size } = config;
  const caseId = victim === "subscriber" ? "5c-i" : "5c-ii";
  const srcDir = path.join(dir, "src");
  const src = path.join(srcDir, BIG);
  const timeoutMs = timeoutFor(size, 1);
  try {
    ctx.log(`[${caseId}] writing ${size} random bytes`);
    const hash = await writeRandomFile(src, size);
    if ((await sha256File(src)) !== hash) throw new Error(`${src}: sha256 changed after writing`);
    for (let rep = 1; rep <= config.reps; rep++) {
      record(await killOnce(ctx, caseId, victim, srcDir, path.join(dir, `inbox-${victim}-${rep}`), hash, rep, timeoutMs));
    }
  } catch (error) {
    ctx.log(`[${caseId}] FAILED: ${message(error)}`);
    record(failed(caseId, FMQ, 0, error));
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
}

async function killOnce(
  ctx: Context,
  caseId: string,
  victim: "subscriber" | "publisher",
  srcDir: string,
  inbox: string,
  hash: string,
  rep: number,
  timeoutMs: number,
): Promise<ResyncSample> {
  const { config } = ctx;
  const { size } = config;
  const procs: Proc[] = [];
  const steal = CpuMeter.start();
  try {
    const endpoint = `tcp://127.0.0.1:${await freePort()}`;
    const pub = await startPublisher(config.fmqCli, srcDir, endpoint, 1, config, timeoutMs);
    procs.push(pub);
    const first = startSubscriber(config.fmqCli, endpoint, inbox, MiB);
    procs.push(first);
    const partialDir = path.join(inbox, ".fmq", "partial");
    const atKill = await waitForPartial(first, partialDir, BIG, size / 2, timeoutMs);
    const killed = victim === "subscriber" ? first : pub;
    killed.child.kill("SIGKILL");
    await killed.stop();
    // The survivor may still write what was already on its way: wait for the partial file to stand still.
    const partial = victim === "subscriber" ? partialSize(partialDir, BIG) : await stillPartial(partialDir, 300, 10_000);
    if (partial === undefined) throw new Error("no partial file after the kill");
    const missing = size - partial;

    const loadPct = await settle();
    const timed = CpuMeter.start();
    let start: Proc;
    let sub: Proc;
    let server: Proc;
    if (victim === "subscriber") {
      start = sub = startSubscriber(config.fmqCli, endpoint, inbox, config.window);
      server = pub;
    } else {
      start = server = Proc.node("fmq publish (new)", config.fmqCli, publishArgs(srcDir, endpoint, config));
      sub = first;
    }
    procs.push(start);
    const connectedBefore = count(server, (d) => d.event === "connected");
    const deliveredBefore = count(sub, (d) => d.event === "delivered" && d.path === BIG);
    const delivered = await sub.waitFor((d) => d.event === "delivered" && d.path === BIG, timeoutMs, `"delivered" ${BIG} after the restart`, deliveredBefore + 1);
    const stealPct = timed.stop().stealPct;
    const other =
      victim === "subscriber"
        ? await sub.waitFor((d) => d.event === "subscribed", timeoutMs, '"subscribed"')
        : await server.waitFor((d) => d.event === "published" && d.path === `/${BIG}`, timeoutMs, `"published" /${BIG}`);
    const connected = await server.waitFor((d) => d.event === "connected", timeoutMs, '"connected" after the restart', connectedBefore + 1);
    const sent = server.lines.filter((l) => l.data.event === "sent" && l.data.client === connected.data.client && l.data.path === `/${BIG}`);
    const received = Number(delivered.data.received);
    const ok = (await sha256File(path.join(inbox, BIG))) === hash;
    const errors = [...new Set(procs)].filter((p) => p !== killed).flatMap((p) => p.errors().map((e) => `${p.name}: ${e}`));
    const sample: ResyncSample = {
      case: caseId,
      contender: FMQ,
      rep,
      ok: ok && errors.length === 0,
      ...(!ok || errors.length ? { error: [...errors.slice(0, 3), ...(ok ? [] : ["verification failed: delivered bytes differ (sha256)"])].join("; ") } : {}),
      seconds: (delivered.t - start.spawnedAt) / 1000,
      alt: { label: victim === "subscriber" ? "from `subscribed`" : "from `published`", seconds: (delivered.t - other.t) / 1000 },
      payloadBytes: sum(sent.map((l) => Number(l.data.size))),
      receivedBytes: received,
      missingBytes: missing,
      files: 1,
      stealPct,
      loadPct,
      extra: {
        partialAtKill: atKill,
        partialAfterKill: partial,
        resentBeyondMissing: received - missing,
        reconnectedAfterS: (connected.t - start.spawnedAt) / 1000,
        ...(victim === "publisher" ? { heartbeatMs: 1000 } : {}),
        sentFiles: sent.length,
      },
    };
    return sample;
  } catch (error) {
    return failed(caseId, FMQ, rep, error, steal.stop().stealPct);
  } finally {
    await Promise.all(procs.map((p) => p.stop()));
    await rm(inbox, { recursive: true, force: true });
  }
}

/** The partial file's size once it has not changed for `quietMs`. */
async function stillPartial(partialDir: string, quietMs: number, timeoutMs: number): Promise<number | undefined> {
  const deadline = now() + timeoutMs;
  let last = partialSize(partialDir, BIG);
  let since = now();
  while (now() < deadline) {
    await sleep(20);
    const size = partialSize(partialDir, BIG);
    if (size !== last) {
      last = size;
      since = now();
    } else if (now() - since >= quietMs) return size;
  }
  return last;
}

// --- processes --------------------------------------------------------------------------------------------------

function publishArgs(src: string, endpoint: string, config: Context["config"]): string[] {
  return ["publish", src, "--bind", endpoint, "--json", "--chunk-size", String(config.chunkSize), "--stable-ms", String(config.stableMs)];
}

/** `fmq publish`, once it is ready and has published `files` files. */
async function startPublisher(cli: string, src: string, endpoint: string, files: number, config: Context["config"], timeoutMs: number): Promise<Proc> {
  const pub = Proc.node("fmq publish", cli, publishArgs(src, endpoint, config));
  try {
    await pub.waitFor((d) => d.event === "ready", 120_000, '"ready"');
    await pub.waitFor((d) => d.event === "published", timeoutMs, '"published" for every file', files);
  } catch (error) {
    await pub.stop();
    throw error;
  }
  return pub;
}

function startSubscriber(cli: string, endpoint: string, inbox: string, window: number): Proc {
  return Proc.node("fmq subscribe", cli, ["subscribe", "/", "--connect", endpoint, "--inbox", inbox, "--json", "--window", String(window)]);
}

// --- rsync with --stats --------------------------------------------------------------------------------------------

interface RsyncStats {
  readonly seconds: number;
  /** "Total bytes sent". */
  readonly sent?: number;
  /** "Literal data": file bytes sent as such (not matched against the destination's version). */
  readonly literal?: number;
  /** "Number of regular files transferred". */
  readonly transferred?: number;
}

/** Run `rsync args...` and time it; with --stats, its figures. */
function rsyncTimed(args: readonly string[], timeoutMs: number): Promise<RsyncStats> {
  return new Promise((resolve, reject) => {
    const start = now();
    const child = track(spawn("rsync", args, { stdio: ["ignore", "pipe", "pipe"] }));
    let stdout = "";
    let stderr = "";
    child.stdout!.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr!.on("data", (d: Buffer) => (stderr = (stderr + d.toString()).slice(-2000)));
    const timer = setTimeout(() => child.kill("SIGKILL"), timeoutMs);
    child.on("error", reject);
    child.on("exit", (code, signal) => {
      const seconds = (now() - start) / 1000;
      clearTimeout(timer);
      if (code !== 0) return reject(new Error(`rsync ${args.join(" ")}: exit ${code ?? signal}: ${stderr.trim().split("\n").slice(-2).join(" | ")}`));
      const figure = (label: string) => {
        const match = new RegExp(`^${label}:\\s*([\\d,.]+)`, "m").exec(stdout);
        return match ? Number(match[1]!.replace(/\D/g, "")) : undefined;
      };
      resolve({ seconds, sent: figure("Total bytes sent"), literal: figure("Literal data"), transferred: figure("Number of regular files transferred") });
    });
  });
}

async function rsyncSample(
  caseId: string,
  contender: string,
  rep: number,
  args: readonly string[],
  timeoutMs: number,
  verify: () => Promise<string | undefined>,
): Promise<ResyncSample> {
  const loadPct = await settle();
  const steal = CpuMeter.start();
  try {
    const stats = await rsyncTimed(args, timeoutMs);
    const stealPct = steal.stop().stealPct;
    const wrong = await verify();
    return {
      case: caseId,
      contender,
      rep,
      ok: wrong === undefined,
      ...(wrong ? { error: `verification failed: ${wrong}` } : {}),
      seconds: stats.seconds,
      ...(stats.literal !== undefined ? { payloadBytes: stats.literal } : {}),
      ...(stats.sent !== undefined ? { wireBytes: stats.sent } : {}),
      ...(stats.transferred !== undefined ? { files: stats.transferred } : {}),
      stealPct,
      loadPct,
      extra: { command: `rsync ${args.join(" ")}` },
    };
  } catch (error) {
    return failed(caseId, contender, rep, error, steal.stop().stealPct);
  }
}

// --- small helpers ------------------------------------------------------------------------------------------------

function failed(caseId: string, contender: string, rep: number, error: unknown, stealPct = NaN): ResyncSample {
  return { case: caseId, contender, rep, ok: false, error: message(error), seconds: NaN, stealPct };
}

function message(error: unknown): string {
  return error instanceof Error ? error.message : String(error);
}

function count(proc: Proc, test: (d: Record<string, unknown>) => boolean): number {
  return proc.lines.filter((l) => test(l.data)).length;
}

function sum(values: readonly number[]): number {
  return values.reduce((a, b) => a + b, 0);
}

/** The contenders in the order of repetition `rep` (rotated, so nobody always goes first). */
function rotate<T>(items: readonly T[], rep: number): T[] {
  return items.map((_, i) => items[(i + rep - 1) % items.length]!);
}

function describe(s: ResyncSample, reps: number): string {
  const head = `[${s.case}] rep ${s.rep}/${reps} ${s.contender}:`;
  if (!s.ok) return `${head} FAILED: ${s.error ?? "?"}`;
  const parts = [`${s.seconds.toFixed(3)} s`];
  if (s.alt) parts.push(`${s.alt.label.replace(/`/g, "")} ${s.alt.seconds.toFixed(3)} s`);
  if (s.payloadBytes !== undefined) parts.push(`file bytes sent ${s.payloadBytes}`);
  if (s.wireBytes !== undefined) parts.push(`total sent ${s.wireBytes}`);
  if (s.receivedBytes !== undefined) parts.push(`received ${s.receivedBytes}`);
  if (s.missingBytes !== undefined) parts.push(`missing ${s.missingBytes}`);
  if (s.files !== undefined) parts.push(`files ${s.files}`);
  return `${head} ${parts.join(", ")} (steal ${s.stealPct.toFixed(1)} %, others' load before ${s.loadPct?.toFixed(0) ?? "?"} %) verified`;
}
