// What the CLI prints: one human line per event by default, or one JSON object per line with --json
// (every object has an "event" field). Warnings and errors go to stderr in human mode, and also to
// stdout as {"event":"error"} objects in JSON mode so a script sees everything on one stream.

import { UNPRINTABLE } from "../src/paths.js";
import { showStrayBytes } from "../src/raw-names.js";

/** Flush what is batched for stdout at once past this size. */
const BATCH_BYTES = 64 * 1024;

export class Output {
  /** While a progress bar owns the terminal, human lines are handed to it to print above the bar. */
  #through: ((line: string) => void) | undefined;
  /**
   * Lines for stdout not yet written. A write to a pipe is a synchronous system call in Node: one per
   * line was a tenth of a subscriber's time when 10,000 small files arrive. Lines printed in one turn of
   * the event loop go out in one write, at the end of that turn (and at exit).
   */
  #batch = "";
  #scheduled = false;

  /** The command's output (one per process): where a failure is said, in the command's format too. */
  static current: Output | undefined;

  constructor(readonly json: boolean) {
    Output.current = this;
    process.on("exit", () => this.flush());
  }

  /** Write out what is batched. */
  flush(): void {
    this.#scheduled = false;
    if (this.#batch.length === 0) return;
    const text = this.#batch;
    this.#batch = "";
    process.stdout.write(text);
  }

  through(print: ((line: string) => void) | undefined): void {
    this.#through = print;
  }

  /** A JSON object, or its human line (an empty human line means: JSON only). */
  event(data: { event: string } & Record<string, unknown>, human: string): void {
    if (this.json) this.#stdout(jsonLine(data));
    else if (human) this.#human(process.stdout, human);
  }

  error(message: string): void {
    if (this.json) this.#stdout(jsonLine({ event: "error", message }));
    else this.#human(process.stderr, `error: ${message}`);
  }

  /**
   * Why the command ends now (exit status 1), said as every failure is: one "fmq: ..." line on stderr, after
   * what stdout has batched, and on a terminal above the progress bar, not over it.
   */
  fatal(message: string): void {
    if (this.json) {
      this.flush();
      process.stderr.write(`fmq: ${printable(message)}\n`);
    } else this.#human(process.stderr, `fmq: ${message}`);
  }

  warning(message: string): void {
    if (this.json) this.#stdout(jsonLine({ event: "warning", message }));
    else this.#human(process.stderr, `warning: ${message}`);
  }

  #human(stream: NodeJS.WriteStream, text: string): void {
    const line = printable(text);
    if (this.#through && stream.isTTY) this.#through(line);
    else if (stream === process.stdout) this.#stdout(line + "\n");
    else {
      // stderr after what stdout has batched, so a terminal shows both in order.
      this.flush();
      stream.write(line + "\n");
    }
  }

  #stdout(text: string): void {
    this.#batch += text;
    if (this.#batch.length >= BATCH_BYTES) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => this.flush());
    }
  }
}

/**
 * A file name may hold any byte but "/" and NUL: one with a newline must not print as two lines (a name
 * could fake a whole event), nor one with an escape sequence drive the terminal. Control characters are
 * shown escaped, as JSON would (--json output is escaped by JSON itself).
 */
export function printable(line: string): string {
  // (A byte of a name that is not UTF-8 as \xNN too: written as it is carried, it would show as U+FFFD.
  // Unambiguous in a file's name, where a backslash is refused.)
  return showStrayBytes(line).replace(UNPRINTABLE, (c) => ESCAPES[c] ?? (c.charCodeAt(0) > 0xff ? `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}` : `\\x${c.charCodeAt(0).toString(16).padStart(2, "0")}`));
}

const ESCAPES: Record<string, string> = { "\n": "\\n", "\r": "\\r", "\t": "\\t" };

/**
 * One JSON object and its newline, with every character a terminal may act on escaped: JSON escapes only
 * U+0000-001F, and a name's bidi override (U+202E) or 8-bit CSI (U+009B) went out raw to whoever `cat`s
 * the log (a review). Still the same JSON: "\u202e" reads back as the character.
 */
export function jsonLine(data: object): string {
  return JSON.stringify(data).replace(UNPRINTABLE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}`) + "\n";
}
