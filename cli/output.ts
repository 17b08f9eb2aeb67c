// What the CLI prints: one human line per event by default, or one JSON object per line with --json
// (every object has an "event" field). Warnings and errors go to stderr in human mode, and also to
// stdout as {"event":"error"} objects in JSON mode so a script sees everything on one stream.

export class Output {
  constructor(readonly json: boolean) {}

  event(data: { event: string } & Record<string, unknown>, human: string): void {
    if (this.json) process.stdout.write(JSON.stringify(data) + "\n");
    else process.stdout.write(human + "\n");
  }

  error(message: string): void {
    if (this.json) process.stdout.write(JSON.stringify({ event: "error", message }) + "\n");
    else process.stderr.write(`error: ${message}\n`);
  }

  warning(message: string): void {
    if (this.json) process.stdout.write(JSON.stringify({ event: "warning", message }) + "\n");
    else process.stderr.write(`warning: ${message}\n`);
  }
}
