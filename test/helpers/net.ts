// Endpoints for tests: random free ports on 127.0.0.1.
import { createServer } from "node:net";

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => {
      const address = server.address();
      server.close(() => resolve(typeof address === "object" && address ? address.port : 0));
    });
  });
}

export async function tcpEndpoint(): Promise<string> {
  return `tcp://127.0.0.1:${await freePort()}`;
}
