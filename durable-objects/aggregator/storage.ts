// A federation's rows and blobs in the aggregator's SQLite storage: where each thing lives (keys), the
// federation row, and the versions (immutable once written), read whole, by header, by stream or as tensors.
import { type FlatSource, flatLayout } from "../../src/fl/flat-tensors.ts";
import { serverMethods } from "../../src/fl/methods/server.ts";
import type { MethodConfig, ServerMethod } from "../../src/fl/methods/method.ts";
import { decodeTensorFile, type TensorFile } from "../../src/fl/tensor-file.ts";
import { federationEpsilon } from "../../src/privacy/federation-privacy.ts";

/** A private federation's ε so far and the clip in force; null without privacy. */
function privacyView(config: FederationConfig, roundsDone: number, clip: number | null): PrivacyView | null {
  const spent = federationEpsilon(config, roundsDone);
  return spent && { ...spent, clip: clip ?? config.privacy!.clip };
}
import type { FederationConfig } from "../../src/protocol/federation.ts";
import { readSafetensorsHeader, type SafetensorsHeader } from "../../src/protocol/safetensors.ts";
import { readBlob, readBlobRange } from "../shared/blobs.ts";
import { guardedSql } from "../shared/guarded-sql.ts";
import { AggregatorError, refusing } from "./errors.ts";
import type { FederationView, PrivacyView, RoundRow } from "./types.ts";
import { roundDetailKept } from "./storage-budget.ts";

export const keys = {
  version: (fed: string, v: number) => `version/${fed}/${v}`,
  sum: (fed: string, round: number) => `sum/${fed}/${round}`,
  /** A robust round's updates, each under its index, and the geometric median's estimate (buffered-updates.ts). */
  updates: (fed: string, round: number) => `updates/${fed}/${round}`,
  /** A secure round's sum once its masks are removed, written a segment at a time before it closes. */
  unmasked: (fed: string, round: number) => `unmasked/${fed}/${round}`,
  /** A strategy's slot (momentum, moments): a flat float32 vector in the versions' data order. */
  state: (fed: string, slot: string) => `state/${fed}/${slot}`,
  /** What the versions hold (adapter_config.json). */
  description: (fed: string) => `adapter-config/${fed}`,
};

/** Rows of each detail table one round's end drops at most: over twice the 10,000 clients a round may sample. */
const DETAIL_ROWS_DROPPED = 25_000;

export class FederationStore {
  readonly storage: DurableObjectStorage;
  readonly sql: SqlStorage;
  /** Parsed configs by federation, with the creation time they belong to (config). */
  private readonly configs = new Map<string, { createdAt: number; config: FederationConfig }>();

  constructor(storage: DurableObjectStorage) {
    this.storage = storage;
    this.sql = guardedSql(storage.sql);
  }

  exists(id: string): boolean {
    return this.sql.exec("SELECT 1 FROM federations WHERE id = ?", id).toArray().length > 0;
  }

  get(id: string): FederationView {
    const r = this.sql
      .exec<{ version: number; created_at: number; clip: number | null }>(
        "SELECT version, created_at, clip FROM federations WHERE id = ?",
        id,
      )
      .toArray()[0];
    if (!r) throw new AggregatorError("federation_not_found", `no federation "${id}"`);
    const roundsDone = this.sql
      .exec<{ n: number }>("SELECT COUNT(*) AS n FROM rounds WHERE federation_id = ? AND status = 'closed'", id)
      .one().n;
    const open = this.sql.exec<{ round: number }>("SELECT round FROM rounds WHERE federation_id = ? AND status = 'open'", id).toArray()[0];
    const latest = this.sql.exec<{ n: number | null }>("SELECT MAX(round) AS n FROM rounds WHERE federation_id = ?", id).one().n;
    const config = this.config(id, r.created_at);
    return {
      id,
      config,
      version: r.version,
      createdAt: r.created_at,
      roundsDone,
      openRound: open?.round ?? null,
      latestRound: latest,
      privacy: privacyView(config, roundsDone, r.clip),
    };
  }

  /**
   * A federation's config, parsed once per object: it never changes while the federation lives (its
   * creation time names it), and with thousands of clients its JSON is large enough that parsing it at
   * every upload made an upload's cost grow with the federation (bench/load.ts). Callers must not change it.
   */
  private config(id: string, createdAt: number): FederationConfig {
    const kept = this.configs.get(id);
    if (kept?.createdAt === createdAt) return kept.config;
    const text = this.sql.exec<{ config: string }>("SELECT config FROM federations WHERE id = ?", id).one().config;
    const config = JSON.parse(text) as FederationConfig;
    if (this.configs.size >= 16) this.configs.delete(this.configs.keys().next().value!);
    this.configs.set(id, { createdAt, config });
    return config;
  }

  /** Forgets a federation's parsed config (it was deleted: a new one of its id may follow). */
  forget(id: string): void {
    this.configs.delete(id);
  }

  /** The federation, for a reader: a client (when given) must be one of its members. */
  readBy(id: string, client?: string): FederationView {
    const fed = this.get(id);
    if (client !== undefined && !fed.config.clients.includes(client))
      throw new AggregatorError("client_unknown", `client "${client}" is not a member of "${id}"`);
    return fed;
  }

  /** The federation's method (server side) and its config, validated when the federation was created. */
  method(fed: FederationView): { side: ServerMethod<MethodConfig>; config: MethodConfig } {
    return refusing("method", () => ({ side: serverMethods.get(fed.config.method.type), config: fed.config.method }));
  }

  roundRow(id: string, round: number): RoundRow {
    const r = this.sql.exec<RoundRow>("SELECT * FROM rounds WHERE federation_id = ? AND round = ?", id, round).toArray()[0];
    if (!r) throw new AggregatorError("round_not_found", `"${id}" has no round ${round}`);
    return r;
  }

  /** The clients a round sampled, in order. */
  sampled(id: string, round: number): string[] {
    return this.sql
      .exec<{ client_id: string }>(
        "SELECT client_id FROM round_clients WHERE federation_id = ? AND round = ? ORDER BY client_id",
        id,
        round,
      )
      .toArray()
      .map((r) => r.client_id);
  }

  /**
   * Drops the per-client detail (receipts, samples) of the rounds up to `through`, keeping their rows and results,
   * so that storage does not grow with rounds × clients (storage-budget.ts): at most DETAIL_ROWS_DROPPED rows of
   * each table a call, so a federation of many rounds from before the limit catches up over its next closes,
   * twice a round's clients or more each, instead of in one close's CPU.
   */
  dropRoundDetail(id: string, through: number): void {
    for (const table of ["receipts", "round_clients"])
      this.sql.exec(
        `DELETE FROM ${table} WHERE rowid IN (SELECT rowid FROM ${table} WHERE federation_id = ? AND round <= ? LIMIT ?)`,
        id,
        through,
        DETAIL_ROWS_DROPPED,
      );
  }

  /**
   * Whether a round's per-client detail was dropped: it ended at least keepRoundDetail rounds before the newest that
   * ended (the latest round, or the one before it while the latest is open: only the newest round can be).
   */
  detailDropped(fed: FederationView, round: number): boolean {
    if (fed.latestRound === null) return false;
    const newest = fed.openRound === fed.latestRound ? fed.latestRound - 1 : fed.latestRound;
    return round <= newest - roundDetailKept(fed.config);
  }

  /** Whether a round sampled `client`: one lookup by the table's key. */
  isSampled(id: string, round: number, client: string): boolean {
    return (
      this.sql.exec("SELECT 1 FROM round_clients WHERE federation_id = ? AND round = ? AND client_id = ?", id, round, client).toArray()
        .length > 0
    );
  }

  /** How many clients a round sampled. */
  sampleSize(id: string, round: number): number {
    return this.sql.exec<{ n: number }>("SELECT count(*) AS n FROM round_clients WHERE federation_id = ? AND round = ?", id, round).one().n;
  }

  /** Records a round's sample, 30 clients a statement (90 bindings, inside SQLite's 100). */
  recordSample(id: string, round: number, clients: readonly string[]): void {
    for (let i = 0; i < clients.length; i += 30) {
      const part = clients.slice(i, i + 30);
      this.sql.exec(
        `INSERT INTO round_clients (federation_id, round, client_id) VALUES ${part.map(() => "(?, ?, ?)").join(", ")}`,
        ...part.flatMap((c) => [id, round, c]),
      );
    }
  }

  hasVersion(id: string, version: number): boolean {
    return this.sql.exec("SELECT 1 FROM blobs WHERE key = ? AND chunk = 0", keys.version(id, version)).toArray().length > 0;
  }

  /** The global adapter's safetensors bytes at a version (PEFT key names, or the offsite adapter's full-model names). */
  version(id: string, version: number): Uint8Array {
    const bytes = readBlob(this.sql, keys.version(id, version));
    if (!bytes) throw new AggregatorError("version_not_found", `"${id}" has no adapter version ${version}`);
    return bytes;
  }

  versionTensors(id: string, version: number): TensorFile {
    return decodeTensorFile(this.version(id, version), `version ${version}`);
  }

  /** A version's values as a flat source, read from its rows by range (versions are stored as float32). */
  versionSource(id: string, version: number, header: SafetensorsHeader): FlatSource {
    const key = keys.version(id, version);
    return {
      total: flatLayout(header).total,
      read: (start, out) => out.set(new Float32Array(readBlobRange(this.sql, key, header.dataStart + start * 4, out.length * 4).buffer)),
    };
  }

  /** A version's safetensors header, read from its first chunks without its values. */
  versionHeader(id: string, version: number): SafetensorsHeader {
    const key = keys.version(id, version);
    const n = Number(new DataView(readBlobRange(this.sql, key, 0, 8).buffer).getBigUint64(0, true));
    return readSafetensorsHeader(readBlobRange(this.sql, key, 0, 8 + n));
  }

  /**
   * A version as a stream of its storage chunks, read one at a time as the reader pulls: what the
   * coordinator serves, holding one chunk however large the version (a stream is not bound by the RPC
   * limit on a serialized value). Versions are immutable; one pruned mid-stream ends it with an error.
   */
  versionStream(id: string, version: number): { bytes: number; stream: ReadableStream<Uint8Array> } {
    const key = keys.version(id, version);
    const { chunks, bytes } = this.sql
      .exec<{ chunks: number; bytes: number | null }>("SELECT COUNT(*) AS chunks, SUM(LENGTH(data)) AS bytes FROM blobs WHERE key = ?", key)
      .one();
    if (chunks === 0) throw new AggregatorError("version_not_found", `"${id}" has no adapter version ${version}`);
    let chunk = 0;
    const stream = new ReadableStream<Uint8Array>({
      pull: (controller) => {
        const row = this.sql.exec<{ data: ArrayBuffer }>("SELECT data FROM blobs WHERE key = ? AND chunk = ?", key, chunk++).toArray()[0];
        if (!row) return controller.error(new Error(`version ${version} of "${id}" was pruned while it was read`));
        controller.enqueue(new Uint8Array(row.data));
        if (chunk === chunks) controller.close();
      },
    });
    return { bytes: bytes ?? 0, stream };
  }

  description(id: string): string {
    return new TextDecoder().decode(readBlob(this.sql, keys.description(id))!);
  }
}
