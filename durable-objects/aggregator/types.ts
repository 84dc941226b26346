// What the aggregator answers over RPC and what an upload request carries.
import type { Spent } from "../../src/privacy/federation-privacy.ts";
import type { FederationConfig } from "../../src/protocol/federation.ts";
import type { MemberRound } from "../../src/protocol/member-views.ts";
import type { SecurePhase } from "../../src/protocol/secure-aggregation.ts";
import type { RuleResult } from "./buffered-updates.ts";
import type { ClientProgress } from "./round-progress.ts";

export interface FederationView {
  id: string;
  config: FederationConfig;
  version: number;
  createdAt: number;
  roundsDone: number;
  /** The round clients should train now, if one is open. */
  openRound: number | null;
  /** The newest round's number, open, closed or failed (failed rounds count too); null before the first. */
  latestRound: number | null;
  /** A private federation's ε spent by its closed rounds (src/privacy/federation-privacy.ts); null without privacy. */
  privacy: PrivacyView | null;
}

/** ε spent so far, and the clip the next updates are held to (adaptive clipping moves it). */
export type PrivacyView = Spent & { clip: number };

export interface RoundResult extends RuleResult {
  version: number;
  uploads: number;
  totalWeight: number;
  metrics: Record<string, number>;
  /** A private federation's ε after this round, the clip its updates were held to and the next round's. */
  privacy?: Spent & { clip: number; nextClip: number };
  /** Bytes the round moved: its accepted uploads', and its base version's (what each client reading it downloads). */
  bytes?: { up: number; version: number };
}

export interface RoundView {
  federationId: string;
  round: number;
  status: "open" | "closed" | "failed";
  baseVersion: number;
  sampled: string[];
  openedAt: number;
  deadline: number;
  /** A secure round's phase while it is open, or the one it ended in; null for a plain round. */
  phase: SecurePhase | null;
  uploads: number;
  totalWeight: number;
  closedAt: number | null;
  result: RoundResult | { reason: string } | null;
  /**
   * Whether the round's per-client detail (`sampled`, `receipts`) is still kept, or was dropped past keepRoundDetail
   * rounds (its counts and result stay).
   */
  detail: "kept" | "dropped";
  /** Accepted uploads, in order: who, when, how many examples, the object's time on it (admission to receipt), its bytes. */
  receipts: { clientId: string; receivedAt: number; numExamples: number; foldMs: number; bytes: number }[];
  /** The open round's latest heartbeat of each sampled client that sent one (round-progress.ts); kept in memory only. */
  progress?: Record<string, ClientProgress>;
  /**
   * What every sampled client trains with this round; `seed`: the federation's (LoRA's initialisation, FedKSeed's
   * seed pool). Typed by the schema its clients parse it with, so the two cannot drift.
   */
  task: MemberRound["task"];
}

export interface RoundSummary {
  round: number;
  status: RoundView["status"];
  openedAt: number;
  closedAt: number | null;
  uploads: number;
  totalWeight: number;
  result: RoundView["result"];
}

export interface UploadRequest {
  federationId: string;
  round: number;
  clientId: string;
  idempotencyKey: string;
  /** Hex SHA-256 of the body (computed by the caller, which already hashed it for the signature). */
  bodySha256: string;
  nonce: string;
  body: Uint8Array;
  /** The shard object the coordinator routed the upload to (src/fl/shards.ts); absent for a federation of one object. */
  shard?: number;
}

export interface UploadReceipt {
  federationId: string;
  round: number;
  clientId: string;
  numExamples: number;
  receivedAt: number;
  /** True when this answer repeats the one given to an earlier identical upload. */
  replayed: boolean;
  roundStatus: RoundView["status"];
}

export type RoundRow = {
  round: number;
  status: RoundView["status"];
  base_version: number;
  opened_at: number;
  deadline: number;
  uploads: number;
  total_weight: number;
  within_clip: number;
  /** A secure round's phase (secure-rounds.ts); null for a plain round. */
  phase: SecurePhase | null;
  closed_at: number | null;
  result: string | null;
};
