// A bare DEALER that speaks FILEMQ frame by frame (for security and fuzz tests), and a TCP proxy on
// 127.0.0.1 that records every byte it forwards (to check what crosses the wire).

import { createServer, connect, type Server as NetServer, type Socket } from "node:net";
import { Dealer, type Context } from "zeromq";
import { decodeFrames, encode } from "../../src/protocol/codec.js";
import type { Message, MessageName } from "../../src/protocol/messages.js";
import { Arrivals } from "./arrivals.js";

type MessageOf<N extends MessageName> = Extract<Message, { id: N }>;

export class RawPeer {
  readonly socket: Dealer;
  readonly #arrivals = new Arrivals<Message>();
  /** Replies that did not decode (a server must never send one). */
  undecodable = 0;
  /** Messages received, kept or not. */
  count = 0;
  readonly #loop: Promise<void>;

  constructor(
    endpoint: string,
    options: ConstructorParameters<typeof Dealer>[0] & { context?: Context } = {},
    /** Keep no message (for idle peers that only need to stay connected). */
    private readonly discard = false,
  ) {
    this.socket = new Dealer({ linger: 0, ...options });
    this.socket.connect(endpoint);
    this.#loop = this.#read();
  }

  async #read(): Promise<void> {
    try {
      for await (const frames of this.socket) {
        this.count++;
        const result = decodeFrames(frames);
        if (!result.ok) this.undecodable++;
        if (this.discard) continue;
        if (result.ok) {
          const m = result.message;
          this.#arrivals.push(m.id === "CHEEZBURGER" ? { ...m, chunk: Uint8Array.from(m.chunk) } : m);
        }
      }
    } catch {
      // closed
    }
  }

  send(message: Message): Promise<void> {
    return this.socket.send(encode(message));
  }

  sendRaw(frames: Buffer | Buffer[]): Promise<void> {
    return this.socket.send(frames);
  }

  /** The first received message (consumed) matching `id`, skipping nothing: anything else first is an error. */
  async expect<N extends MessageName>(id: N, timeoutMs = 10_000): Promise<MessageOf<N>> {
    const m = await this.#arrivals.next(timeoutMs);
    if (m === undefined) throw new Error(`expected ${id}, nothing arrived within ${timeoutMs} ms`);
    if (m.id !== id) throw new Error(`expected ${id}, got ${m.id}${"reason" in m ? ` (${m.reason})` : ""}`);
    return m as MessageOf<N>;
  }

  /** Wait until a message `id` has arrived (others are skipped and dropped). */
  async waitFor<N extends MessageName>(id: N, timeoutMs = 10_000): Promise<MessageOf<N>> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      try {
        return await this.expect(id, Math.max(1, deadline - Date.now()));
      } catch (error) {
        if (Date.now() >= deadline) throw error;
      }
    }
  }

  async close(): Promise<void> {
    this.socket.close();
    this.#arrivals.interrupt();
    await this.#loop;
  }
}

/** A TCP proxy from 127.0.0.1:<port> to `target` that keeps every byte forwarded, both ways. */
export class RecordingProxy {
  /** Bytes from client to server, and from server to client, each in order. */
  readonly toServer: Buffer[] = [];
  readonly toClient: Buffer[] = [];
  readonly #server: NetServer;
  readonly #sockets = new Set<Socket>();

  private constructor(server: NetServer) {
    this.#server = server;
  }

  static async start(targetPort: number): Promise<{ proxy: RecordingProxy; endpoint: string }> {
    let proxy!: RecordingProxy;
    const server = createServer((inbound) => {
      const outbound = connect(targetPort, "127.0.0.1");
      for (const s of [inbound, outbound]) {
        proxy.#sockets.add(s);
        s.on("error", () => undefined);
        s.on("close", () => {
          proxy.#sockets.delete(s);
          inbound.destroy();
          outbound.destroy();
        });
      }
      inbound.on("data", (data: Buffer) => {
        proxy.toServer.push(Buffer.from(data));
        outbound.write(data);
      });
      outbound.on("data", (data: Buffer) => {
        proxy.toClient.push(Buffer.from(data));
        inbound.write(data);
      });
    });
    proxy = new RecordingProxy(server);
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const address = server.address();
    const port = typeof address === "object" && address ? address.port : 0;
    return { proxy, endpoint: `tcp://127.0.0.1:${port}` };
  }

  /** Does `needle` appear in either direction's byte stream? */
  saw(needle: Buffer): boolean {
    return Buffer.concat(this.toServer).includes(needle) || Buffer.concat(this.toClient).includes(needle);
  }

  /** Bytes forwarded so far, both directions. */
  get total(): number {
    return [...this.toServer, ...this.toClient].reduce((n, b) => n + b.length, 0);
  }

  async close(): Promise<void> {
    for (const s of this.#sockets) s.destroy();
    await new Promise<void>((resolve) => this.#server.close(() => resolve()));
  }
}
