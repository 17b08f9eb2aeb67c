// libzmq reads a connection in batches of ZMQ_IN_BATCH_SIZE bytes, 8 KiB by default. A message bigger than
// that is read straight into its own buffer, but a flood of small ones (a batch of small files is one
// frame of about 4 KiB per file) costs one recv() and one wake-up of libzmq's I/O thread per 8 KiB.
// Measured here, 10,000 files of 4 KiB, 4 alternating pairs: the subscriber's I/O thread used 0.34-0.50
// CPU-s with 8 KiB reads and 0.24-0.27 with 256 KiB, and its peak RSS was 140-152 MiB instead of 158-185,
// on two cores that both ends share. Big messages are read straight into their buffers either way.
// (A libzmq draft option: see ../zmq-draft.ts.)
//
// A message that arrives whole within a batch is, by libzmq's default, not copied: it points into the
// batch, and the batch is freed when the last of its messages is. zeromq.js hands each message over as a
// Buffer that frees it when V8 collects the Buffer, and V8 counts only the message's own bytes towards
// its next collection. So each 4 KiB file frame still held by an uncollected Buffer held a whole batch
// (about 580 KB of malloc with libzmq's counters): heaptrack put the subscriber's peak malloc at 162 MB
// for 20,000 files, 156 MB of it batches. Copying each such message out of its batch (ZMQ_ZERO_COPY_RECV
// off) costs a 4 KiB copy per file and lets the batch be reused at once. Measured (scratch driver, one
// publisher, fresh subscribers; peak RSS of the subscriber process): 10,000 files 103-108 MiB -> 87-92,
// 20,000 136-142 -> 103-114, 100,000 222 -> 153; no difference in speed beyond the noise (10,000 and
// 20,000 files, 2 alternating pairs each; 1 GiB, 2 pairs of 3 rounds).
//
// A big message is not read straight into its own buffer whole: libzmq does that only while more than a
// batch of it is left to read. What comes with the read of its header (up to a batch of its start) and
// its last part under a batch are read into the batch and copied out, with 256 KiB batches up to about
// half of a 1 MiB chunk. Measured later (perf, 1 GiB): that copy was 4 % of the subscriber's samples; with
// 64 KiB batches, libzmq's I/O thread used about 0.03 CPU-s less per GiB (user time, 2 alternating pairs
// of bench runs), a difference the bench's times do not show, and small files the same. Left at 256 KiB.

import { context as defaultContext, type Context, type Socket } from "zeromq";
import { DraftContextOption, DraftOption, draftOption, setDraftOption } from "../zmq-draft.js";

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

/**
 * Make the sockets `context` creates from now on copy each message out of its receive batch. A context
 * option, so it applies to every socket the context makes afterwards, not only the client's (any other
 * socket in the process then copies its small messages too: a cost of a copy, no change of meaning).
 * False if this libzmq does not have the option.
 */
export function copyOutOfBatches(context: Context = defaultContext): boolean {
  return setDraftOption(context, DraftContextOption.ZERO_COPY_RECV, 0);
}

/** Whether `context` makes sockets that copy messages out of their batches (for tests); undefined without the option. */
export function copiesOutOfBatches(context: Context = defaultContext): boolean | undefined {
  const zeroCopy = draftOption(context, DraftContextOption.ZERO_COPY_RECV);
  return zeroCopy === undefined ? undefined : zeroCopy === 0;
}
