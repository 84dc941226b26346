import { describe, expect, it } from "vitest";
import { serverMethods } from "../../src/fl/methods/server.ts";
import { parseUploadMetadata } from "../../src/protocol/federation.ts";

/** A federation config as the aggregator parses it: its fields, then its method by the method's own schema. */
const parseFederationConfig = (json: unknown) => serverMethods.parseFederation(json).config;
import { federationConfig } from "../fixtures/federation.ts";

// biome-ignore lint/suspicious/noExplicitAny: the cases below set fields at every depth of a config
const good = federationConfig("fed-1", { local: { steps: 10, batchSize: 4, lr: 1e-3 } }) as Record<string, any>;

describe("federation config", () => {
  it("fills defaults", () => {
    expect(parseFederationConfig(good)).toMatchObject({
      model: { quant: "int8" },
      method: { dropout: 0, rslora: false },
      local: { maxTokens: 128 },
      seed: 0,
    });
  });
  it.each([
    ["an id with a slash", { ...good, id: "a/b" }, /"id"/],
    ["an unknown field", { ...good, colour: "red" }, /colour/],
    ["rank 0", { ...good, method: { ...good.method, r: 0 } }, /method\.r/],
    ["an unknown module", { ...good, method: { ...good.method, targetModules: ["qkv"] } }, /targetModules/],
    ["duplicate clients", { ...good, clients: ["a", "a", "b", "c"] }, /unique/],
    ["more per round than clients", { ...good, clientsPerRound: 5 }, /cannot exceed the number of clients/],
    ["minClients above clientsPerRound", { ...good, minClients: 5 }, /minClients cannot exceed/],
    ["a quorum below minClients", { ...good, quorum: 1 }, /quorum/],
    ["a negative learning rate", { ...good, local: { ...good.local, lr: -1 } }, /local\.lr/],
    ["a string round count", { ...good, rounds: "3" }, /rounds/],
  ])("refuses %s naming the field", (_, json, message) => {
    expect(() => parseFederationConfig(json)).toThrow(
      expect.objectContaining({ code: "config_invalid", message: expect.stringMatching(message) }),
    );
  });
});

describe("upload metadata", () => {
  it("reads the example count and metrics", () => {
    expect(parseUploadMetadata({ format: "pt", num_examples: "12", metrics: '{"train_loss":1.5}' })).toEqual({
      numExamples: 12,
      metrics: { train_loss: 1.5 },
    });
  });
  it.each([
    [{ num_examples: "0" }, /num_examples/],
    [{ num_examples: "1.5" }, /num_examples/],
    [{ num_examples: "3", metrics: "{" }, /not valid JSON/],
    [{ num_examples: "3", metrics: '{"loss":"high"}' }, /metrics/],
    [{ num_examples: "3", extra: "x" }, /extra/],
  ])("refuses %j", (meta, message) => {
    expect(() => parseUploadMetadata(meta as Record<string, string>)).toThrow(
      expect.objectContaining({ code: "metadata_invalid", message: expect.stringMatching(message) }),
    );
  });
});
