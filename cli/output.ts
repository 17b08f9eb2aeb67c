// What the CLI prints: one human line per event by default, or one JSON object per line with --json
// (every object has an "event" field). Warnings and errors go to stderr in human mode, and also to
// stdout as {"event":"error"} objects in JSON mode so a script sees everything on one stream.

export class Output {
  /** While a progress bar owns the terminal, human lines are handed to it to print above the bar. */
  #through: ((line: string) => void) | undefined;

  constructor(readonly json: boolean) {}

  through(print: ((line: string) => void) | undefined): void {
    this.#through = print;
  }

  /** A JSON object, or its human line (an empty human line means: JSON only). */
  event(data: { event: string } & Record<string, unknown>, human: string): void {
    if (this.json) process.stdout.write(JSON.stringify(data) + "\n");
    else if (human) this.#human(process.stdout, human);
  }

  error(message: string): void {
    if (this.json) process.stdout.write(JSON.stringify({ event: "error", message }) + "\n");
    else this.#human(process.stderr, `error: ${message}`);
  }

  warning(message: string): void {
    if (this.json) process.stdout.write(JSON.stringify({ event: "warning", message }) + "\n");
    else this.#human(process.stderr, `warning: ${message}`);
  }

  #human(stream: NodeJS.WriteStream, line: string): void {
    if (this.#through && stream.isTTY) this.#through(line);
    else stream.write(line + "\n");
  }
}
