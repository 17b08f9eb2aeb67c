// libzmq DRAFT socket options. zeromq.js builds libzmq with its draft API but names only the stable
// options; the drafts we use are set through the socket's generic integer setter. A libzmq built without
// one refuses it (EINVAL): the setter then returns false and the socket keeps libzmq's default.

import type { Context, Socket } from "zeromq";

export const DraftOption = {
  /** ROUTER: deliver an empty message from a peer whose connection closed (ZMQ_NOTIFY_DISCONNECT = 2). */
  ROUTER_NOTIFY: 97,
  /** Bytes libzmq reads from a connection per recv() (8 KiB by default). */
  IN_BATCH_SIZE: 101,
} as const;

/** libzmq DRAFT context options: they apply to the sockets a context makes after they are set. */
export const DraftContextOption = {
  /** 1 (the default): a message that arrives whole within a receive batch points into the batch. */
  ZERO_COPY_RECV: 10,
} as const;

interface IntegerOptions {
  setInt32Option(option: number, value: number): void;
  getInt32Option(option: number): number;
}

/**
 * Set a draft option of a socket (before it binds or connects: DraftOption) or of a context (before it
 * makes the sockets it is for: DraftContextOption); false if this libzmq does not have it.
 */
export function setDraftOption(target: Socket | Context, option: number, value: number): boolean {
  try {
    (target as unknown as IntegerOptions).setInt32Option(option, value);
    return true;
  } catch {
    return false;
  }
}

/** A draft option's value as libzmq has it (for tests); undefined without the option. */
export function draftOption(target: Socket | Context, option: number): number | undefined {
  try {
    return (target as unknown as IntegerOptions).getInt32Option(option);
  } catch {
    return undefined;
  }
}
