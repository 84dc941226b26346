import { cloudflareTest } from "@cloudflare/vitest-plugin";
import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    // A worker per core: vitest's default leaves one idle, and many tests wait on child processes (the
    // CLI, workerd) while the other core could run the next file (on 2 cores, 255 s instead of 370 s).
    maxWorkers: "100%",
    projects: [
      {
        test: {
          name: "node",
          environment: "node",
          include: ["test/**/*.test.ts"],
          exclude: ["test/workers/**"],
          testTimeout: 60_000,
        },
      },
      {
        // Tests that run inside workerd, with the coordinator worker of wrangler.toml as `main`.
        plugins: [
          cloudflareTest({
            wrangler: { configPath: "./wrangler.toml" },
            miniflare: {
              bindings: {
                FEDFLARE_MASTER_KEY: "test-master-key-0123456789",
                FEDFLARE_OPERATOR_TOKEN: "test-operator-token-0123456789",
                FEDFLARE_VIEWER_TOKEN: "test-viewer-token-0123456789",
              },
            },
          }),
        ],
        test: {
          name: "workers",
          include: ["test/workers/**/*.test.ts"],
          globalSetup: ["test/fixtures/parity-logits.setup.ts"],
          testTimeout: 60_000,
        },
      },
    ],
  },
});
