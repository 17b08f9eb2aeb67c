// Progress while data flows. On a terminal: a cli-progress bar for the file being received (bytes, rate,
// ETA for big files) with the totals beside it, and the usual one line per delivered file printed above
// it; no bar, and nothing written, while nothing arrives. With --json: a {"event":"progress"} line every
// second while anything moves. Otherwise (a pipe, a log file): nothing more than the one line per file.

import { createRequire } from "node:module";
import type { MultiBar, SingleBar } from "cli-progress";
import prettyBytes from "pretty-bytes";
import type { ClientProgress } from "../src/index.js";
import { printable, type Output } from "./output.js";
import { barLine } from "./bar-line.js";

/** cli-progress, loaded only when a bar is shown (a terminal): --json and pipes never need it. */
const loadBars = () => createRequire(import.meta.url)("cli-progress") as typeof import("cli-progress");

const TICK_MS = 250;
const JSON_EVERY_MS = 1000;
/** ETA only for files this big: for small ones it flickers and means nothing. */
const ETA_MIN_SIZE = 8 * 1024 * 1024;
/**
 * Nothing received for this long (a publisher gone or frozen mid-file): the rate is 0 and the bar says
 * "stalled", rather than a rate decaying towards 0 and an ETA growing without end.
 */
const STALLED_MS = 2000;

export class ProgressDisplay {
  #timer: NodeJS.Timeout | undefined;
  #bars: MultiBar | undefined;
  #bar: SingleBar | undefined;
  #lastBytes = 0;
  #lastAt = Date.now();
  #lastJson = 0;
  /** Bytes received when the last JSON line went out. */
  #lastJsonBytes = 0;
  /** When bytes last arrived. */
  #lastMovedAt = Date.now();
  /** Bytes per second, smoothed. */
  #rate = 0;
  /** Files delivered when the bar last showed one arriving. */
  #shownDelivered = 0;

  constructor(
    private readonly read: () => ClientProgress,
    private readonly out: Output,
  ) {}

  start(): void {
    const tty = !this.out.json && process.stderr.isTTY === true;
    if (!tty && !this.out.json) return;
    this.#timer = setInterval(() => this.#tick(), TICK_MS);
    this.#timer.unref();
  }

  stop(): void {
    if (this.#timer) clearInterval(this.#timer);
    this.#timer = undefined;
    this.#hideBar();
  }

  /**
   * The bar appears when a file starts to arrive and goes when nothing is arriving: cli-progress redraws
   * ten times a second while it is shown, and an idle subscriber left on a terminal for days should
   * write nothing to it (over ssh, or in a tmux window watched for activity).
   */
  #showBar(): MultiBar {
    if (this.#bars) return this.#bars;
    const cliProgress = loadBars();
    const bars = new cliProgress.MultiBar(
      {
        // (Fitted to the terminal's width: see bar-line.ts.)
        format: barLine,
        hideCursor: true,
        clearOnComplete: true,
        stopOnComplete: false,
        autopadding: true,
        stream: process.stderr,
        // Our own signal handling (signals.ts) stops everything; the bar must not exit the process first.
        gracefulExit: false,
      },
      cliProgress.Presets.shades_classic,
    );
    this.#bars = bars;
    // Human lines (delivered, deleted...) go above the bar instead of through it. The bar is drawn again
    // with them from the figures of now: a "delivered" line comes the moment its file is in, and the last
    // tick's figures showed that file at 99 % with the count before it. Between two files the bar stays
    // (at the end of the last one) until a tick finds nothing arriving: no flicker from file to file.
    this.out.through((line) => {
      // With the terminal's line wrapping on for the line, off again for the bar (which cli-progress
      // keeps off while it is shown, so that a bar wider than the screen is cut, not drawn twice): a
      // delivered line longer than the screen lost its end, the name or the size (a review).
      bars.log(`\x1b[?7h${line}\n\x1b[?7l`);
      try {
        this.#draw(this.read(), false);
      } catch {
        // (The display must never fail the delivery whose line it prints.)
      } finally {
        this.#bars?.update();
      }
    });
    return bars;
  }

  #hideBar(): void {
    if (!this.#bars) return;
    // (Lines logged since its last redraw are printed first; clearOnComplete then erases the bar.)
    this.#bars.update();
    this.#bars.stop();
    this.#bars = undefined;
    this.#bar = undefined;
    this.out.through(undefined);
  }

  #tick(): void {
    const now = Date.now();
    const progress = this.read();
    const moved = progress.bytes - this.#lastBytes;
    const seconds = Math.max(0.001, (now - this.#lastAt) / 1000);
    if (moved > 0) this.#lastMovedAt = now;
    if (this.#stalled) this.#rate = 0;
    else this.#rate = this.#rate === 0 ? moved / seconds : 0.7 * this.#rate + 0.3 * (moved / seconds);
    this.#lastBytes = progress.bytes;
    this.#lastAt = now;
    if (this.out.json) this.#json(progress, now);
    else this.#draw(progress);
  }

  /** Whether nothing has arrived for STALLED_MS. */
  get #stalled(): boolean {
    return Date.now() - this.#lastMovedAt >= STALLED_MS;
  }

  /** A line a second while bytes arrive; none while nothing does (a stall, or idle between files). */
  #json(progress: ClientProgress, now: number): void {
    if (now - this.#lastJson < JSON_EVERY_MS || progress.bytes === this.#lastJsonBytes) return;
    this.#lastJson = now;
    this.#lastJsonBytes = progress.bytes;
    this.out.event(
      {
        event: "progress",
        ...(progress.current
          ? {
              path: progress.current.path,
              fileBytes: progress.current.bytes,
              ...(progress.current.size !== undefined ? { fileSize: progress.current.size } : {}),
              ...(progress.current.delta ? { delta: true } : {}),
            }
          : {}),
        delivered: progress.delivered,
        deleted: progress.deleted,
        bytes: progress.bytes,
        rate: Math.round(this.#rate),
      },
      "",
    );
  }

  /** The bar from `progress`; with nothing arriving, it goes (unless `hideIfIdle` is false). */
  #draw(progress: ClientProgress, hideIfIdle = true): void {
    const current = progress.current;
    if (!current) {
      // The totals of now; and a file delivered since the bar last showed one arriving is shown done,
      // whichever it was (one may come and go between two ticks). A file that failed or was cut off
      // keeps the figure it got to.
      const totals = `${filesCount(progress.delivered)}, ${prettyBytes(progress.bytes)}`;
      const last = progress.delivered > this.#shownDelivered ? progress.last : undefined;
      if (this.#bar && last) {
        this.#bar.setTotal(Math.max(last.size, 1));
        this.#bar.update(Math.max(last.size, 1), { file: printable(last.path), figures: `${prettyBytes(last.size)}/${prettyBytes(last.size)}`, totals });
      } else this.#bar?.update({ totals });
      if (hideIfIdle) this.#hideBar();
      return;
    }
    const size = current.size ?? Math.max(current.bytes, 1);
    // (No ETA for changed blocks: the rate is of what crosses the wire, the bar of how far through the file.)
    const remaining = this.#stalled
      ? " stalled"
      : current.size !== undefined && current.size >= ETA_MIN_SIZE && !current.delta && this.#rate >= 1
        ? ` ETA ${duration((current.size - current.bytes) / this.#rate)}`
        : "";
    const payload = {
      file: printable(current.path) + (current.delta ? " (changed blocks)" : ""),
      figures: `${prettyBytes(current.bytes)}/${current.size !== undefined ? prettyBytes(current.size) : "?"} ${prettyBytes(Math.max(0, Math.round(this.#rate)))}/s${remaining}`,
      totals: `${filesCount(progress.delivered)}, ${prettyBytes(progress.bytes)}`,
    };
    this.#shownDelivered = progress.delivered;
    if (!this.#bar) this.#bar = this.#showBar().create(size, current.bytes, payload);
    else {
      this.#bar.setTotal(size);
      this.#bar.update(current.bytes, payload);
    }
  }
}

/** Seconds as people read them: 42s, 3m05s, 2h07m, 3d04h (and "?" beyond 99 days: a guess, not a time). */
export function duration(seconds: number): string {
  const s = Math.ceil(seconds);
  if (!Number.isFinite(s) || s < 0 || s > 99 * 86_400) return "?";
  if (s < 60) return `${s}s`;
  const pad = (n: number) => String(n).padStart(2, "0");
  if (s < 3600) return `${Math.floor(s / 60)}m${pad(s % 60)}s`;
  if (s < 86_400) return `${Math.floor(s / 3600)}h${pad(Math.floor(s / 60) % 60)}m`;
  return `${Math.floor(s / 86_400)}d${pad(Math.floor(s / 3600) % 24)}h`;
}

function filesCount(n: number): string {
  return `${n} file${n === 1 ? "" : "s"}`;
}

