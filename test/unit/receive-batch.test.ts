// The client asks libzmq to read 256 KiB per recv() (ZMQ_IN_BATCH_SIZE, a draft option zeromq.js does not
// name). This checks that the zeromq.js build we depend on has the option and takes the value: without it
// setReceiveBatch would quietly do nothing and small files would cost libzmq's I/O thread more again.
// Likewise for the copy of each small message out of its batch (ZMQ_ZERO_COPY_RECV, a draft context
// option): without it a 4 KiB frame not yet collected holds the whole 256 KiB batch.

import { Context, Dealer, context as defaultContext } from "zeromq";
import { describe, expect, it } from "vitest";
import { Client } from "../../src/index.js";
import { RECEIVE_BATCH_BYTES, copiesOutOfBatches, copyOutOfBatches, receiveBatch, setReceiveBatch } from "../../src/client/receive-batch.js";
import { tcpEndpoint } from "../helpers/net.js";
import { tempDir } from "../helpers/tmp.js";

describe("receive batch", () => {
  it("receive batch - libzmq starts at 8 KiB and takes 256 KiB from setReceiveBatch", () => {
    const socket = new Dealer();
    try {
      expect(receiveBatch(socket)).toBe(8192);
      expect(setReceiveBatch(socket)).toBe(true);
      expect(receiveBatch(socket)).toBe(RECEIVE_BATCH_BYTES);
    } finally {
      socket.close();
    }
  });

  it("receive batch - a closed socket is refused without throwing", () => {
    const socket = new Dealer();
    socket.close();
    expect(setReceiveBatch(socket)).toBe(false);
    expect(receiveBatch(socket)).toBeUndefined();
  });

  it("receive batch - a context makes sockets that point into their batches until copyOutOfBatches, then copy", () => {
    const context = new Context();
    expect(copiesOutOfBatches(context)).toBe(false);
    expect(copyOutOfBatches(context)).toBe(true);
    expect(copiesOutOfBatches(context)).toBe(true);
  });

  it("receive batch - a client copies out of batches from its first connection (the context its socket is made in)", async () => {
    // (Each test file runs in a process of its own: nothing before this test has made a client here.)
    expect(copiesOutOfBatches(defaultContext)).toBe(false);
    const client = new Client({ endpoint: await tcpEndpoint(), inbox: await tempDir() });
    try {
      client.connect();
      await client.subscribe("/");
      expect(copiesOutOfBatches(defaultContext)).toBe(true);
    } finally {
      await client.close();
    }
  });
});
