// The client asks libzmq to read 256 KiB per recv() (ZMQ_IN_BATCH_SIZE, a draft option zeromq.js does not
// name). This checks that the zeromq.js build we depend on has the option and takes the value: without it
// setReceiveBatch would quietly do nothing and small files would cost libzmq's I/O thread more again.

import { Dealer } from "zeromq";
import { describe, expect, it } from "vitest";
import { RECEIVE_BATCH_BYTES, receiveBatch, setReceiveBatch } from "../../src/client/receive-batch.js";

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
});
