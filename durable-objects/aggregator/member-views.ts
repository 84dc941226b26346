// What a member client reads of its federation: what it needs to train (the open round, the round's
// task, whether it was sampled, the version to start from), not the other clients' example counts or the
// round's aggregated metrics, from which two clients' reports give away a third's (the viewer reads those).
import type { FederationView, RoundView } from "./federation.ts";

export type MemberFederationView = Pick<FederationView, "id" | "version" | "roundsDone" | "openRound"> & {
  /** The versions this client is asked to evaluate and has not reported, newest first (evaluations.ts). */
  evaluate?: number[];
  /**
   * What scoring them takes, when there are some: the method, the model's quantization, the examples' length,
   * and when the federation was created (the round task's createdAt).
   */
  evaluation?: { method: FederationView["config"]["method"]; quant: string; maxTokens: number; createdAt: number };
};

export type MemberRoundView = Pick<
  RoundView,
  "federationId" | "round" | "status" | "phase" | "baseVersion" | "openedAt" | "deadline" | "task"
> & {
  /** This client, if the round sampled it; no other client's id. */
  sampled: string[];
};

export function memberFederationView(f: FederationView, evaluate: number[]): MemberFederationView {
  return {
    id: f.id,
    version: f.version,
    roundsDone: f.roundsDone,
    openRound: f.openRound,
    evaluate,
    ...(evaluate.length
      ? {
          evaluation: { method: f.config.method, quant: f.config.model.quant, maxTokens: f.config.local.maxTokens, createdAt: f.createdAt },
        }
      : {}),
  };
}

export function memberRoundView(r: RoundView, client: string): MemberRoundView {
  const { federationId, round, status, phase, baseVersion, openedAt, deadline, task } = r;
  return { federationId, round, status, phase, baseVersion, openedAt, deadline, task, sampled: r.sampled.includes(client) ? [client] : [] };
}
