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
    // Two files at a time, not vitest's default of one per CPU but one (1 on these 2-core machines): most
    // tests wait on timers, sockets and real processes, not the CPU. 493 s -> 249 s for the whole suite.
    maxWorkers: 2,
  },
});
