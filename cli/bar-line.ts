// The progress bar's line, fitted to the terminal. Line wrapping is off while the bar is shown (so that
// a line wider than the screen is cut, not drawn twice), so whatever does not fit is lost: with a fixed
// 24-column bar and a name of up to 40, an 80-column terminal lost the totals, a long name the rate and
// the ETA too, and a narrow one everything but the name (a review). So the figures come first, and the
// rest gives way in turn: the bar shrinks, the totals go, the name is shortened, the bar goes.
// Widths are terminal columns (string-width: an emoji or a CJK character takes two), and a name is cut
// between whole characters (grapheme clusters: cut by code units, an emoji showed as U+FFFD). string-width
// 4 (cli-progress's) knows the emoji of Unicode 11: a newer one (🥲, 🫠) it counts as one column, which a
// terminal draws as two, and twenty of them in a name pushed the figures off the line (a review); so a
// character with emoji presentation is counted as two whatever it says (too many is only a shorter line).

import { createRequire } from "node:module";

/** What cli-progress hands a format function (the parts of it we use). */
export interface BarOptions {
  readonly barCompleteString?: string;
  readonly barIncompleteString?: string;
}
export interface BarParams {
  /** 0..1 */
  readonly progress: number;
  /** The terminal's width in columns. */
  readonly maxWidth?: number;
}
export interface BarPayload {
  /** The file's name, printable already, whole. */
  readonly file: string;
  /** "12.3 MB/2.15 GB 240 MB/s ETA 9s": what must show first. */
  readonly figures: string;
  /** "3 files, 68.2 MB". */
  readonly totals: string;
}

const BAR_MAX = 24;
const BAR_MIN = 8;
/** A name is not shortened below this many columns (the ellipsis included) while anything else can go. */
const NAME_MIN = 12;

// (Both made at the first line drawn, not when the module loads: every subscriber loads it, and most never
// draw a bar (--json, a pipe, a service). string-width's load and ICU's grapheme segmenter took 20-25 ms
// of each start, about 5 % of a subscriber's return to an unchanged tree of 10,000 files.)
let widthOf: ((text: string) => number) | undefined;
let segmenter: Intl.Segmenter | undefined;
const stringWidth = (text: string): number => (widthOf ??= createRequire(import.meta.url)("string-width") as (text: string) => number)(text);
const graphemes = {
  segment: (text: string) => (segmenter ??= new Intl.Segmenter(undefined, { granularity: "grapheme" })).segment(text),
};
const EMOJI = /\p{Emoji_Presentation}|\uFE0F/u;

/** Columns one character (grapheme cluster) takes on a terminal. */
function characterWidth(character: string): number {
  const width = stringWidth(character);
  return EMOJI.test(character) ? Math.max(width, 2) : width;
}

/** Columns `text` takes on a terminal. */
export function columnsOf(text: string): number {
  let width = 0;
  for (const { segment } of graphemes.segment(text)) width += characterWidth(segment);
  return width;
}

/** `name` in at most `columns` columns: whole, or "…" and as much of its end as fits, whole characters only. */
export function fitName(name: string, columns: number): string {
  if (columnsOf(name) <= columns) return name;
  if (columns <= 0) return "";
  const parts = Array.from(graphemes.segment(name), (part) => part.segment);
  let tail = "";
  let width = 1; // the ellipsis
  for (let i = parts.length - 1; i >= 0; i--) {
    const w = characterWidth(parts[i]!);
    if (width + w > columns) break;
    tail = parts[i] + tail;
    width += w;
  }
  return "…" + tail;
}

/** The bar's line for cli-progress (its `format` function), at most the terminal's width less one column. */
export function barLine(options: BarOptions, params: BarParams, payload: BarPayload): string {
  const columns = Math.max(1, (params.maxWidth ?? 80) - 1);
  const progress = Math.min(1, Math.max(0, params.progress));
  const percentage = `${Math.floor(progress * 100)}%`.padStart(4);
  const figures = `${percentage} ${payload.figures}`;
  const totals = ` | ${payload.totals}`;
  const bar = (size: number) => {
    const done = Math.round(progress * size);
    return ` |${(options.barCompleteString ?? "#").repeat(size).slice(0, done)}${(options.barIncompleteString ?? "-").repeat(size).slice(0, size - done)}| `;
  };
  const name = columnsOf(payload.file);
  const fixed = columnsOf(figures);
  // Room left for the bar (its two borders and spaces are 4 columns) with the name whole, with and without the totals.
  for (const tail of [totals, ""]) {
    const room = columns - name - fixed - columnsOf(tail) - 4;
    if (room >= BAR_MIN) return payload.file + bar(Math.min(BAR_MAX, room)) + figures + tail;
  }
  // The name shortened, the smallest bar kept; then no bar; then the figures alone, cut.
  const withBar = columns - fixed - 4 - BAR_MIN;
  if (withBar >= NAME_MIN) return fitName(payload.file, withBar) + bar(BAR_MIN) + figures;
  const withoutBar = columns - fixed - 1;
  if (withoutBar >= NAME_MIN) return `${fitName(payload.file, withoutBar)} ${figures}`;
  return fitStart(figures, columns);
}

/** The beginning of `text` in at most `columns` columns, whole characters only. */
function fitStart(text: string, columns: number): string {
  let kept = "";
  let width = 0;
  for (const { segment } of graphemes.segment(text)) {
    const w = characterWidth(segment);
    if (width + w > columns) break;
    kept += segment;
    width += w;
  }
  return kept;
}
