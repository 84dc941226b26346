// What a member client reads of the coordinator (its round and its federation), parsed before the client acts
// on it: the coordinator is the operator's, and a client trains only a task its schema and its owner's limits
// (workers/client/policy.ts) admit. Fields a client does not know are dropped from the round, its task and the
// federation view, so a coordinator may add some there; the task's local settings are as strict as the
// federation schema's. The round's task names the federation's creation (createdAt): deploy the coordinator
// before clients that read it.
import * as v from "valibot";
import { firstIssue } from "../errors.ts";
import { ProtocolError } from "./errors.ts";
import { DownloadDType, FederationSeed, LocalConfig, MethodField, type MethodJson, ModelQuant, TopK, UPLOAD_DTYPES } from "./federation.ts";

const count = v.pipe(v.number(), v.integer(), v.minValue(0), v.maxValue(Number.MAX_SAFE_INTEGER));
const name = v.pipe(v.string(), v.maxLength(256));

/** A round as its member reads it (GET /federations/{id}/rounds/{n}): its state, whether it was sampled, the task. */
export const MemberRound = v.object({
  status: v.picklist(["open", "closed", "failed"]),
  /** A secure round's phase (SecAgg+); null for a plain round. */
  phase: v.nullable(name),
  baseVersion: count,
  sampled: v.pipe(v.array(name), v.maxLength(10_000)),
  task: v.object({
    proximalMu: v.pipe(v.number(), v.finite(), v.minValue(0)),
    local: LocalConfig,
    method: MethodField,
    model: v.object({ name: v.pipe(name, v.minLength(1)), quant: ModelQuant }),
    seed: FederationSeed,
    /** When the federation was created: with its id, it names this federation (workers/client/federation-store.ts). */
    createdAt: count,
    uploadDtype: v.optional(v.picklist(UPLOAD_DTYPES)),
    topK: v.optional(TopK),
    downloadDtype: v.optional(DownloadDType),
  }),
});
export type MemberRound = Omit<v.InferOutput<typeof MemberRound>, "task"> & {
  task: Omit<v.InferOutput<typeof MemberRound>["task"], "method"> & { method: MethodJson };
};

/** What scoring a federation's versions takes (its member view's evaluation). */
export const EvaluationTask = v.object({
  method: MethodField,
  quant: ModelQuant,
  maxTokens: v.pipe(count, v.minValue(2)),
  /** When the federation was created (its store is this federation's). */
  createdAt: count,
});
export type EvaluationTask = Omit<v.InferOutput<typeof EvaluationTask>, "method"> & { method: MethodJson };

/** A federation as its member reads it (GET /federations/{id}): the open round, the versions asked of it to evaluate. */
export const MemberFederation = v.object({
  openRound: v.nullable(v.pipe(count, v.minValue(1))),
  evaluate: v.optional(v.pipe(v.array(count), v.maxLength(10_000))),
  evaluation: v.optional(EvaluationTask),
});
export type MemberFederation = Omit<v.InferOutput<typeof MemberFederation>, "evaluation"> & { evaluation?: EvaluationTask };

export class CoordinatorAnswerError extends ProtocolError<"coordinator_answer_invalid"> {}

/** A coordinator's JSON answer checked by `schema`; refused naming `what` and the field that does not parse. */
function parseAnswer<S extends v.GenericSchema>(schema: S, json: unknown, what: string): v.InferOutput<S> {
  const r = v.safeParse(schema, json);
  if (!r.success) throw new CoordinatorAnswerError("coordinator_answer_invalid", firstIssue(r.issues, `the coordinator's ${what}`));
  return r.output;
}

// A parsed JSON answer holds JSON values only; the method's own schema checks its config where it runs.
export const parseMemberRound = (json: unknown, what: string) => parseAnswer(MemberRound, json, what) as MemberRound;
export const parseMemberFederation = (json: unknown, what: string) => parseAnswer(MemberFederation, json, what) as MemberFederation;
