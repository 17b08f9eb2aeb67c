// A signal before a long-running command has said how it stops (while Node loads its code, it reads its
// keys or config, opens its inbox): kept, and acted on once it has (takeSignals), so that `fmq subscribe`
// told to stop at once stops as it would a moment later, cleanly and with the same status (0; 128 + the
// signal for `track --once`), not killed mid-start. A second signal, or a command not up within a second
// (a key file that is a FIFO nobody writes), kills it with the signal, as without this.
// (Other commands are short, and keep the default: `passwd` has its own handlers for the terminal.)
//
// A module of its own, importing only two of Node's own (loaded with Node already), loaded first by
// fmq.ts: installed before zeromq's native addon and the rest of the command line load (108-177 ms of a
// loaded machine, a review), not after.

import { writeSync } from "node:fs";
import { isatty } from "node:tty";

/**
 * The signals that stop a long-running command cleanly. SIGHUP too: the terminal it ran on has gone (an
 * ssh session dropped), and without a handler it died there, leaving no KTHXBAI and its manifest unsaved.
 */
const STOP_SIGNALS: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

let earlySignal: { name: NodeJS.Signals; timer: NodeJS.Timeout } | undefined;

/**
 * Die of the signal, as without a handler. (Not process.exit: it waits for the thread pool, and a thread
 * blocked reading a FIFO would hold the process for as long as nobody writes to it.)
 */
export function dieOf(name: NodeJS.Signals): void {
  // (Every handler of it off, ours and the progress bar's, so that the signal we send ourselves kills.)
  process.removeAllListeners(name);
  // The progress bar hides the terminal's cursor and turns its line wrapping off, and puts both back when
  // it stops, at exit: a process killed by a signal never exits, and left the user's shell without a
  // cursor, and with every long line cut at the screen's edge until `reset` (two reviews). Put back here,
  // written at once (process.stderr may queue it, and the signal does not wait).
  if (isatty(2)) {
    try {
      writeSync(2, "\x1b[?25h\x1b[?7h");
    } catch {
      // (The terminal has gone: nobody to show a cursor to.)
    }
  }
  process.kill(process.pid, name);
}

function beforeStart(name: NodeJS.Signals): void {
  if (earlySignal) return dieOf(name);
  earlySignal = { name, timer: setTimeout(() => dieOf(name), 1000) };
}

/** SIGQUIT (Ctrl-\\) quits at once, as without a handler, but with the terminal put back first. */
function quitNow(): void {
  dieOf("SIGQUIT");
}

if (["publish", "subscribe", "track"].includes(process.argv[2] ?? "")) {
  for (const name of STOP_SIGNALS) process.on(name, beforeStart);
  process.on("SIGQUIT", quitNow);
}

/** The command is up: `handler` takes SIGINT, SIGTERM and SIGHUP from now on. The signal that came meanwhile, if one did. */
export function takeSignals(handler: (name: NodeJS.Signals) => void): NodeJS.Signals | undefined {
  for (const name of STOP_SIGNALS) {
    process.off(name, beforeStart);
    process.on(name, handler);
  }
  if (!earlySignal) return undefined;
  clearTimeout(earlySignal.timer);
  const { name } = earlySignal;
  earlySignal = undefined;
  return name;
}
