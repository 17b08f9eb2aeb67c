// Memory for outgoing frames. A frame over 4 KiB from Buffer.allocUnsafe is its own ArrayBuffer: a
// malloc, an external-memory record and a GC finalizer each, which is most of what a flood of small
// files costs the sender after the syscalls. Small frames are therefore cut from a shared slab instead.
//
// A slab region is handed out once and never written again by us: zeromq.js sends Buffers over 128
// bytes without copying and holds them until libzmq is done, so a frame must not be reused after send.
// The slab's memory is freed when the last frame cut from it is collected.

/** Frames up to this size come from the slab; bigger ones (file chunks) get their own buffer. */
export const SLAB_FRAME_MAX = 64 * 1024;
const SLAB_SIZE = 1024 * 1024;

let slab: Buffer = Buffer.allocUnsafe(0);
let used = 0;

/** An uninitialised buffer of `size` bytes that nobody else will ever write. */
export function allocFrame(size: number): Buffer {
  if (size > SLAB_FRAME_MAX) return Buffer.allocUnsafe(size);
  if (used + size > slab.length) {
    slab = Buffer.allocUnsafe(SLAB_SIZE);
    used = 0;
  }
  const frame = slab.subarray(used, used + size);
  // Keep frames 8-byte aligned (cheap, and friendly to whoever reads them).
  used += (size + 7) & ~7;
  return frame;
}
