// Bindings of the coordinator worker (wrangler.toml), typed for workers code and for `cloudflare:test`.
import type { Aggregator } from "../durable-objects/aggregator/index.ts";

declare global {
  namespace Cloudflare {
    interface Env {
      AGGREGATOR: DurableObjectNamespace<Aggregator>;
    }
  }
}
