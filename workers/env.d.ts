// Bindings and exports of the coordinator worker (wrangler.toml), typed for workers code and tests.
import type { Aggregator } from "../durable-objects/aggregator/index.ts";

declare global {
  namespace Cloudflare {
    interface Env {
      AGGREGATOR: DurableObjectNamespace<Aggregator>;
      /** The operator's master key; each client's signing secret is derived from it (src/protocol/signature.ts). */
      FEDFLARE_MASTER_KEY?: string;
      /** The operator's bearer token: create, open, close or fail rounds, supply version 0, delete. */
      FEDFLARE_OPERATOR_TOKEN?: string;
      /** The read-only viewer's bearer token: the dashboard, the list, metrics, rounds, plots and versions. */
      FEDFLARE_VIEWER_TOKEN?: string;
      /**
       * Where versions are kept once read (workers/coordinator/version-store.ts), so later reads do not ask
       * the aggregator; without it every read does.
       */
      VERSIONS?: R2Bucket;
    }
    interface GlobalProps {
      mainModule: typeof import("./coordinator/index.ts");
      durableNamespaces: "Aggregator";
    }
  }
}
