// The aggregator Durable Object: a thin class over its SQLite storage. The coordinator calls its
// methods over Workers RPC; each answers a Result (errors as data: RPC keeps only an error's message).
import { DurableObject } from "cloudflare:workers";
import { attempt, attemptAsync, type Result } from "./errors.ts";
import { Federations, type FederationView, type RoundSummary, type RoundView, type UploadReceipt, type UploadRequest } from "./federation.ts";
import { migrate } from "./schema.ts";

export class Aggregator extends DurableObject<Cloudflare.Env> {
  private readonly schemaVersion: number;
  private readonly federations: Federations;

  constructor(ctx: DurableObjectState, env: Cloudflare.Env) {
    super(ctx, env);
    // SQL calls are synchronous and no request is delivered before the constructor returns,
    // so the schema is current before any handler runs.
    this.schemaVersion = migrate(ctx.storage);
    this.federations = new Federations(ctx.storage);
  }

  schema(): number {
    return this.schemaVersion;
  }

  createFederation(config: unknown): Result<FederationView> {
    return attempt(() => this.federations.create(config, Date.now()));
  }

  getFederation(id: string): Result<FederationView> {
    return attempt(() => this.federations.get(id));
  }

  async openRound(id: string): Promise<Result<RoundView>> {
    return attemptAsync(() => this.federations.openRound(id, Date.now()));
  }

  getRound(id: string, round: number): Result<RoundView> {
    return attempt(() => this.federations.round(id, round));
  }

  getMetrics(id: string): Result<RoundSummary[]> {
    return attempt(() => this.federations.metrics(id));
  }

  getVersion(id: string, version: number): Result<Uint8Array> {
    return attempt(() => this.federations.version(id, version));
  }

  getAdapterConfig(id: string): Result<string> {
    return attempt(() => this.federations.adapterConfig(id));
  }

  async upload(request: UploadRequest): Promise<Result<UploadReceipt>> {
    return attemptAsync(() => this.federations.upload(request, Date.now()));
  }

  override async alarm(): Promise<void> {
    await this.federations.closeDue(Date.now());
  }
}
