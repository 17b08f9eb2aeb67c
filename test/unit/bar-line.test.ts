// The progress bar's line fits the terminal: the figures first, then the rest as room allows, and a name
// cut between whole characters.

import { describe, expect, it } from "vitest";
import stringWidth from "string-width";
import { barLine, columnsOf, fitName } from "../../cli/bar-line.js";

const options = { barCompleteString: "█".repeat(40), barIncompleteString: "░".repeat(40) };
const figures = "24.1 MB/2.15 GB 242 MB/s ETA 9s";
const totals = "1 file, 68.2 MB";
const names = ["🥲".repeat(30) + ".bin", "sparse.bin", "a_very_long_file_name_that_goes_on_and_on_and_on_and_on_and_on_and_on_and_on_and_on.dat", "😀".repeat(45) + ".bin", "日本語のとても長いファイル名".repeat(4) + ".txt", "👨‍👩‍👧‍👦".repeat(20)];

describe("bar line", () => {
  it("bar line - never wider than the terminal (less a column), whatever the name: 20 to 200 columns", () => {
    for (const columns of [10, 20, 40, 60, 80, 100, 120, 200]) {
      for (const file of names) {
        const line = barLine(options, { progress: 0.37, maxWidth: columns }, { file, figures, totals });
        expect(columnsOf(line), `${columns} columns, ${file}`).toBeLessThanOrEqual(columns - 1);
        // Whole characters: no half of a surrogate pair, no replacement character.
        expect(line).not.toMatch(/\p{Cs}|\ufffd/u);
        // From 50 columns on, every figure shows, whatever the name.
        if (columns >= 50) expect(line).toContain(`37% ${figures}`);
      }
    }
  });

  it("bar line - on an 80-column terminal a short name keeps the totals and a bar; a long one is shortened before the figures or totals go", () => {
    const short = barLine(options, { progress: 0.5, maxWidth: 80 }, { file: "sparse.bin", figures, totals });
    expect(short).toMatch(/^sparse\.bin \|█+░+\|  50% 24\.1 MB\/2\.15 GB 242 MB\/s ETA 9s \| 1 file, 68\.2 MB$/);
    const long = barLine(options, { progress: 0.5, maxWidth: 80 }, { file: names[2]!, figures, totals });
    expect(long.startsWith("…")).toBe(true);
    expect(long).toContain(`50% ${figures}`);
    expect(long.endsWith("on_and_on.dat |████░░░░|  50% 24.1 MB/2.15 GB 242 MB/s ETA 9s")).toBe(true);
    // A wide terminal: the whole name, the whole bar (24), the totals.
    const wide = barLine(options, { progress: 0.5, maxWidth: 300 }, { file: names[2]!, figures, totals });
    expect(wide).toBe(`${names[2]} |${"█".repeat(12)}${"░".repeat(12)}|  50% ${figures} | ${totals}`);
  });

  it("bar line - an emoji newer than string-width's tables (🥲, two columns on a terminal) is counted as two: the figures stay on the line", () => {
    // (A review: counted as one, twenty of them made a line 20 columns wider than the terminal.)
    for (const columns of [40, 80, 120]) {
      const line = barLine(options, { progress: 0.5, maxWidth: columns }, { file: "🥲".repeat(20) + ".bin", figures, totals });
      const emoji = [...line].filter((c) => c === "🥲").length;
      expect(emoji * 2 + stringWidth(line.replaceAll("🥲", "")), `${columns} columns`).toBeLessThanOrEqual(columns - 1);
      expect(line).toContain(`50% ${figures}`);
    }
    // As counted: twenty of them are forty columns; a © in text presentation stays one.
    expect(columnsOf("🥲".repeat(20))).toBe(40);
    expect(columnsOf("©")).toBe(1);
  });

  it("bar line - a name is cut between whole characters, counted in columns", () => {
    const emoji = fitName("😀".repeat(45) + ".bin", 11);
    expect(emoji).toBe("…" + "😀".repeat(3) + ".bin");
    expect(stringWidth(emoji)).toBeLessThanOrEqual(11);
    // A family is one character of several code points: whole or not at all.
    const family = fitName("x" + "👨‍👩‍👧‍👦".repeat(3), 6);
    expect(family).toBe("…" + "👨‍👩‍👧‍👦".repeat(2));
    expect(fitName("short", 10)).toBe("short");
  });
});
