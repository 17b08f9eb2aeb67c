// What the CLI prints of a name from the wire or the disk: one line, nothing a terminal acts on.

import { describe, expect, it } from "vitest";
import { jsonLine, printable } from "../../cli/output.js";

describe("printable", () => {
  it("printable - control characters and bidirectional controls are escaped; the rest, Unicode included, is kept", () => {
    expect(printable("a\nb\rc\td")).toBe("a\\nb\\rc\\td");
    expect(printable("\u001b[31mred")).toBe("\\x1b[31mred");
    expect(printable("\u009bx")).toBe("\\x9bx");
    // (Found by black-box testing: shown raw, "invoice\u202etxt.exe" read "invoiceexe.txt".)
    expect(printable("invoice\u202etxt.exe")).toBe("invoice\\u202etxt.exe");
    for (const c of ["\u061c", "\u200e", "\u200f", "\u2028", "\u2029", "\u202a", "\u202b", "\u202c", "\u202d", "\u2066", "\u2067", "\u2068", "\u2069"]) {
      expect(printable(`x${c}y`)).toBe(`x\\u${c.charCodeAt(0).toString(16).padStart(4, "0")}y`);
    }
    expect(printable("café 日本 😀 ‏")).toBe("café 日本 😀 \\u200f");
  });

  it("jsonLine - what JSON leaves raw that a terminal acts on (bidi overrides, C1 controls, DEL) or a reader takes for a line's end (U+2028, U+2029) is escaped, and reads back as the same name", () => {
    const name = "bidi\u202etxt.exe \u009b31m \u007f \u2066 \u2028 \u2029 café 😀\n";
    const line = jsonLine({ event: "delivered", path: name });
    expect(line.endsWith("\n")).toBe(true);
    expect(line.slice(0, -1)).not.toMatch(/[\u0000-\u001f\u007f-\u009f\u2028\u2029\u202a-\u202e\u2066-\u2069]/);
    expect(line).toContain("bidi\\u202etxt.exe \\u009b31m \\u007f \\u2066 \\u2028 \\u2029 café 😀\\n");
    expect(JSON.parse(line)).toEqual({ event: "delivered", path: name });
  });
});
