// Bindings and exports of the coordinator worker (wrangler.toml), typed for workers code and tests.
import type { Aggregator } from "../durable-objects/aggregator/index.ts";

declare global {
  namespace Cloudflare {
    interface Env {
      AGGREGATOR: DurableObjectNamespace<Aggregator>;
    }
    interface GlobalProps {
      mainModule: typeof import("./coordinator/index.ts");
      durableNamespaces: "Aggregator";
    }
  }
}
