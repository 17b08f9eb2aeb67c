import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    environment: "node",
    include: ["test/**/*.test.ts"],
    testTimeout: 60_000,
    hookTimeout: 30_000,
    teardownTimeout: 10_000,
    // zeromq's native addon must stay on the main thread of each worker (zeromq.js #411).
    pool: "forks",
  },
});
