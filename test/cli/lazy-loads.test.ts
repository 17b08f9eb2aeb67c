// What a subscriber loads at start that it may never use: the progress bar's width tables (string-width)
// and ICU's grapheme segmenter are made at the first bar drawn, not when cli/progress.js loads. Every
// subscriber loads that module; most never draw a bar (--json, a pipe, a service), and the two took
// 20-25 ms of each start. Run on the built CLI modules, in a process of their own (this one has loaded
// string-width already).

import { execFileSync } from "node:child_process";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const PROGRESS = fileURLToPath(new URL("../../dist/cli/progress.js", import.meta.url));
const OUTPUT = fileURLToPath(new URL("../../dist/cli/output.js", import.meta.url));
const BAR_LINE = fileURLToPath(new URL("../../dist/cli/bar-line.js", import.meta.url));

/** In a new Node process: load the progress display, run it as --json does, then maybe draw one line. */
function loadsIn(drawALine: boolean): { segmentersBefore: number; widthBefore: boolean; segmentersAfter: number; widthAfter: boolean; columns: number } {
  const script = `
    import { createRequire } from "node:module";
    let segmenters = 0;
    const Real = Intl.Segmenter;
    Intl.Segmenter = class extends Real { constructor(...args) { super(...args); segmenters++; } };
    const loaded = () => Object.keys(createRequire(import.meta.url).cache).some((name) => name.includes("string-width"));
    const { ProgressDisplay } = await import(${JSON.stringify(PROGRESS)});
    const { Output } = await import(${JSON.stringify(OUTPUT)});
    const display = new ProgressDisplay(() => ({ delivered: 0, deleted: 0, bytes: 0 }), new Output(true));
    display.start();
    display.stop();
    const segmentersBefore = segmenters, widthBefore = loaded();
    let columns = -1;
    if (${drawALine}) columns = (await import(${JSON.stringify(BAR_LINE)})).columnsOf("日本🥲x");
    process.stdout.write(JSON.stringify({ segmentersBefore, widthBefore, segmentersAfter: segmenters, widthAfter: loaded(), columns }));
  `;
  return JSON.parse(execFileSync(process.execPath, ["--input-type=module", "-e", script], { encoding: "utf8", timeout: 20_000 }));
}

describe("lazy loads", () => {
  it("lazy loads - a subscriber that draws no bar loads neither string-width nor a grapheme segmenter", () => {
    const seen = loadsIn(false);
    expect(seen.segmentersBefore).toBe(0);
    expect(seen.widthBefore).toBe(false);
  });

  it("lazy loads - the first line drawn loads them, and measures as before", () => {
    const seen = loadsIn(true);
    expect(seen.segmentersBefore).toBe(0);
    expect(seen.widthBefore).toBe(false);
    expect(seen.segmentersAfter).toBe(1);
    expect(seen.widthAfter).toBe(true);
    // 日 and 本 two columns each, the emoji two (whatever string-width 4 says), x one.
    expect(seen.columns).toBe(7);
  });
});
