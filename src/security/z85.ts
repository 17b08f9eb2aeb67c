// Z85 (ZeroMQ RFC 32): binary as printable text, 4 bytes to 5 characters. ZeroMQ writes CURVE keys this
// way (40 characters for 32 bytes). zeromq.js ships no codec, so here is one.

const ALPHABET = "0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ.-:+=^!/*?&<>()[]{}@%$#";

/** Character code -> digit value, -1 for characters outside the alphabet. */
const DIGITS = new Int8Array(128).fill(-1);
for (let i = 0; i < ALPHABET.length; i++) DIGITS[ALPHABET.charCodeAt(i)] = i;

export class Z85Error extends Error {
  override name = "Z85Error";
}

/** Encode bytes whose length is a multiple of 4. */
export function z85Encode(data: Uint8Array): string {
  if (data.length % 4 !== 0) throw new Z85Error(`Z85 encodes multiples of 4 bytes, got ${data.length}`);
  let out = "";
  for (let i = 0; i < data.length; i += 4) {
    // Big-endian 32-bit value, kept non-negative (>>> 0).
    let value = ((data[i]! << 24) | (data[i + 1]! << 16) | (data[i + 2]! << 8) | data[i + 3]!) >>> 0;
    const chunk = new Array<string>(5);
    for (let j = 4; j >= 0; j--) {
      chunk[j] = ALPHABET[value % 85]!;
      value = Math.floor(value / 85);
    }
    out += chunk.join("");
  }
  return out;
}

/** Decode text whose length is a multiple of 5. Throws Z85Error on any other character or an overflowing group. */
export function z85Decode(text: string): Buffer {
  if (text.length % 5 !== 0) throw new Z85Error(`Z85 text must be a multiple of 5 characters long, got ${text.length}`);
  const out = Buffer.alloc((text.length / 5) * 4);
  for (let i = 0, o = 0; i < text.length; i += 5, o += 4) {
    let value = 0;
    for (let j = 0; j < 5; j++) {
      const code = text.charCodeAt(i + j);
      const digit = code < 128 ? DIGITS[code]! : -1;
      if (digit < 0) throw new Z85Error(`invalid Z85 character ${JSON.stringify(text[i + j])} at position ${i + j}`);
      value = value * 85 + digit;
    }
    if (value > 0xffffffff) throw new Z85Error(`invalid Z85 group "${text.slice(i, i + 5)}" at position ${i}: exceeds 32 bits`);
    out.writeUInt32BE(value, o);
  }
  return out;
}

/** Is `text` a Z85 CURVE key (40 characters that decode to 32 bytes)? */
export function isZ85Key(text: string): boolean {
  if (text.length !== 40) return false;
  try {
    z85Decode(text);
    return true;
  } catch {
    return false;
  }
}
