// What a client reads of the coordinator is parsed before it acts on it: a round's task out of the
// federation schema's bounds, or missing what names the federation, or a secure round's parameters out of
// shape, are refused naming the field.
import { describe, expect, it } from "vitest";
import { parseMemberFederation, parseMemberRound } from "../../src/protocol/member-views.ts";
import { parseSecAggView } from "../../src/protocol/secure-aggregation.ts";

const round = () => ({
  federationId: "f",
  round: 3,
  status: "open",
  phase: null,
  baseVersion: 2,
  openedAt: 1_700_000_000_000,
  deadline: 1_700_000_600_000,
  sampled: ["c1"],
  task: {
    proximalMu: 0,
    local: { steps: 8, batchSize: 4, lr: 0.01, maxTokens: 64 },
    method: { type: "lora", r: 8, alpha: 16 },
    model: { name: "tiny", quant: "int8" },
    seed: 7,
    createdAt: 1_699_999_000_000,
    topK: 0.1,
  },
});

type Json = Record<string, unknown>;
/** `round()` with `path` (dot-separated) set to `value`, or removed when value is undefined. */
function withField(path: string, value: unknown): Json {
  const r = round() as Json;
  const keys = path.split(".");
  const parent = keys.slice(0, -1).reduce((o, k) => o[k] as Json, r);
  if (value === undefined) delete parent[keys.at(-1)!];
  else parent[keys.at(-1)!] = value;
  return r;
}

describe("a member's view of its round", () => {
  it("parses what the coordinator answers, keeping the method's own fields and dropping fields it does not know", () => {
    const parsed = parseMemberRound({ ...round(), receipts: [], later: { field: 1 } }, "round 3");
    expect(parsed.task.method).toEqual({ type: "lora", r: 8, alpha: 16 });
    expect(parsed.task.local).toEqual({ steps: 8, batchSize: 4, lr: 0.01, maxTokens: 64 });
    expect(parsed.task.createdAt).toBe(1_699_999_000_000);
    expect(parsed).not.toHaveProperty("later");
  });

  it.each([
    ["task.local.steps", 0],
    ["task.local.batchSize", 2.5],
    ["task.local.lr", JSON.parse("1e400")],
    ["task.local.lr", 11],
    ["task.createdAt", undefined],
    ["task.seed", -1],
    ["task.topK", 2],
    ["task.uploadDtype", "F64"],
    ["task.model.quant", "int3"],
    ["task.method.type", ""],
    ["task.proximalMu", -0.1],
    ["status", "paused"],
    ["sampled", "c1"],
    ["baseVersion", -1],
  ])("refuses %s = %s, naming the field", (path, value) => {
    expect(() => parseMemberRound(withField(path, value), 'round 3 of "f"')).toThrow(
      new RegExp(`^the coordinator's round 3 of "f": field "${path.replaceAll(".", "\\.")}"`),
    );
  });
});

describe("a member's view of its federation", () => {
  const evaluation = { method: { type: "lora" }, quant: "f32", maxTokens: 48, createdAt: 5 };
  it("parses the open round and the versions asked of it with what scoring them takes", () => {
    expect(parseMemberFederation({ id: "f", version: 4, openRound: 5, evaluate: [4, 2], evaluation }, "f")).toEqual({
      openRound: 5,
      evaluate: [4, 2],
      evaluation,
    });
    expect(parseMemberFederation({ openRound: null }, "f")).toEqual({ openRound: null });
  });

  it.each([
    [{ openRound: 0 }, "openRound"],
    [{ openRound: null, evaluate: [-1] }, "evaluate.0"],
    [{ openRound: null, evaluate: [1], evaluation: { ...evaluation, createdAt: undefined } }, "evaluation.createdAt"],
    [{ openRound: null, evaluate: [1], evaluation: { ...evaluation, maxTokens: 1 } }, "evaluation.maxTokens"],
  ])("refuses %j, naming %s", (json, field) => {
    expect(() => parseMemberFederation(json, 'federation "f"')).toThrow(`the coordinator's federation "f": field "${field}"`);
  });
});

describe("a member's view of its secure round", () => {
  const advert = { encryptionKey: "a".repeat(64), maskingKey: "b".repeat(64), seedDigest: "c".repeat(64) };
  const view = () => ({
    federationId: "f",
    round: 1,
    phase: "share",
    deadline: 1_700_000_000_000,
    context: "f/1",
    threshold: 3,
    length: 1000,
    range: 1,
    bits: 28,
    maxWeight: 100_000,
    neighbours: ["c1", "c2", "c3", "c4"],
    roster: { c1: advert, c2: advert },
  });
  it("parses the round's parameters and what its phase gives", () => {
    expect(parseSecAggView({ ...view(), extra: 1 })).toEqual(view());
  });
  it.each([
    [{ threshold: 1 }, "threshold"],
    [{ bits: 40 }, "bits"],
    [{ length: 0 }, "length"],
    [{ phase: "done" }, "phase"],
    [{ neighbours: "c1" }, "neighbours"],
    [{ roster: { c1: { ...advert, maskingKey: "zz" } } }, "roster.c1.maskingKey"],
    [{ inbox: { c1: "00" } }, "inbox.c1"],
    [{ noise: { clip: 0, std: 1 } }, "noise.clip"],
    [{ request: { survivors: ["c1"], dropped: [3] } }, "request.dropped.0"],
  ])("refuses %j, naming %s", (change, field) => {
    expect(() => parseSecAggView({ ...view(), ...change })).toThrow(`the coordinator's secure round view: field "${field}"`);
  });
});
