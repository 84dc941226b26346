// Bindings and exports of the coordinator worker (wrangler.toml), typed for workers code and tests.
import type { Aggregator } from "../durable-objects/aggregator/index.ts";

declare global {
  namespace Cloudflare {
    interface Env {
      AGGREGATOR: DurableObjectNamespace<Aggregator>;
      /** The operator's master key; each client's signing secret is derived from it (src/protocol/signature.ts). */
      FEDFLARE_MASTER_KEY: string;
    }
    interface GlobalProps {
      mainModule: typeof import("./coordinator/index.ts");
      durableNamespaces: "Aggregator";
    }
  }
}
