// libzmq reads a connection in batches of ZMQ_IN_BATCH_SIZE bytes, 8 KiB by default. A message bigger than
// that is read straight into its own buffer, but a flood of small ones (a batch of small files is one
// frame of about 4 KiB per file) costs one recv() and one wake-up of libzmq's I/O thread per 8 KiB.
// Measured here, 10,000 files of 4 KiB, 4 alternating pairs: the subscriber's I/O thread used 0.34-0.50
// CPU-s with 8 KiB reads and 0.24-0.27 with 256 KiB, and its peak RSS was 140-152 MiB instead of 158-185,
// on two cores that both ends share. Big messages are read straight into their buffers either way.
// (A libzmq draft option: see ../zmq-draft.ts.)

import type { Socket } from "zeromq";
import { DraftOption, draftOption, setDraftOption } from "../zmq-draft.js";

/** What we ask libzmq to read from a connection at a time. */
export const RECEIVE_BATCH_BYTES = 256 * 1024;

/** Set the socket's receive batch (before it connects); false if this libzmq does not have the option. */
export function setReceiveBatch(socket: Socket, bytes = RECEIVE_BATCH_BYTES): boolean {
  return setDraftOption(socket, DraftOption.IN_BATCH_SIZE, bytes);
}

/** The socket's receive batch as libzmq has it (for tests); undefined without the option. */
export function receiveBatch(socket: Socket): number | undefined {
  return draftOption(socket, DraftOption.IN_BATCH_SIZE);
}
