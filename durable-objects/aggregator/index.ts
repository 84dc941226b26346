// The aggregator Durable Object: owns a federation's state in its SQLite storage. For now it only
// migrates that storage and reports the schema version; the federation and round logic come later.
import { DurableObject } from "cloudflare:workers";
import { migrate } from "./schema.ts";

export class Aggregator extends DurableObject<Cloudflare.Env> {
  private readonly schemaVersion: number;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    // SQL calls are synchronous and no request is delivered before the constructor returns,
    // so the schema is current before any handler runs.
    this.schemaVersion = migrate(ctx.storage);
  }

  override async fetch(request: Request): Promise<Response> {
    const { pathname } = new URL(request.url);
    if (request.method === "GET" && pathname === "/schema") return Response.json({ version: this.schemaVersion });
    return Response.json({ error: { code: "not_found", message: `no route ${request.method} ${pathname}` } }, { status: 404 });
  }
}
