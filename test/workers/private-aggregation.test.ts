// A private federation's aggregator in workerd (central DP-FedAvg, src/privacy/): each update clipped to
// the norm S and weighing 1, the mean over the expected clients noised with N(0, (z S / m)²), ε after
// each round as the accountant computes it, and the budget refusing the round that would pass it.
import { env } from "cloudflare:test";
import { describe, expect, it } from "vitest";
import { normalSamples } from "../../src/engine/llama/init.ts";
import { seededUniform } from "../../src/engine/sampling.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { privacySpent } from "../../src/privacy/rdp.ts";
import { bodyDigest } from "../../src/protocol/signature.ts";
import { federationConfig } from "../fixtures/federation.ts";

type Aggregator = ReturnType<typeof env.AGGREGATOR.getByName>;
const CLIENTS = ["c1", "c2", "c3", "c4", "c5", "c6", "c7", "c8"];
// Little noise (z 0.1), so the mean it is added to is told apart from any other: ε is large, as it must be.
const privacy = { clip: 0.05, noiseMultiplier: 0.1, delta: 1e-5 };
/** ε after k rounds sampling 4 of the 8 clients. */
const epsilonAt = (k: number) => privacySpent({ sampleRate: 0.5, noiseMultiplier: 0.1, steps: k }, 1e-5).epsilon;

let nonce = 0;
async function upload(
  stub: Aggregator,
  fed: string,
  round: number,
  clientId: string,
  delta: TensorMap,
  shapes: Map<string, number[]>,
  n: number,
) {
  const body = encodeTensorFile(delta, shapes, { format: "pt", num_examples: String(n), metrics: '{"train_loss":1}' });
  return stub.upload({
    federationId: fed,
    round,
    clientId,
    idempotencyKey: `${clientId}-${round}`,
    bodySha256: await bodyDigest(body),
    nonce: (++nonce).toString(16).padStart(16, "0"),
    body,
  });
}

const norm = (t: TensorMap) => Math.sqrt([...t.values()].reduce((s, x) => s + x.reduce((a, v) => a + v * v, 0), 0));

describe("aggregator: a private federation (central DP)", () => {
  it("clips each update, weighs it 1 and noises the mean by z S / m; reports ε; refuses the round past the budget", async () => {
    const name = "private";
    const stub: Aggregator = env.AGGREGATOR.getByName(name);
    const budget = (epsilonAt(2) + epsilonAt(3)) / 2;
    const config = federationConfig(name, { clients: CLIENTS, privacy: { ...privacy, epsilonBudget: budget } });
    const created = await stub.createFederation(config);
    expect(created).toMatchObject({ ok: true, value: { privacy: { epsilon: 0, rounds: 0, delta: 1e-5 } } });
    const v0 = await stub.getVersion(name, 0);
    const global = decodeTensorFile(v0.ok ? v0.value : new Uint8Array(), "v0");
    for (const round of [1, 2]) {
      const opened = await stub.openRound(name);
      const sampled = opened.ok ? opened.value.sampled : [];
      expect(sampled).toHaveLength(4);
      // Norms about 0.4, 0.04, 0.2 and 0.01 against S = 0.05: two are clipped; the weights differ by 100x.
      const scales = [0.01, 0.001, 0.005, 0.00025];
      const deltas = scales.map(
        (s, i) => new Map([...global.tensors].map(([k, t]) => [k, normalSamples(seededUniform(10 * round + i), t.length, s)])),
      );
      for (let i = 0; i < 4; i++) {
        const r = await upload(stub, name, round, sampled[i]!, deltas[i]!, global.shapes, [1, 100, 10, 50][i]!);
        expect(r.ok, JSON.stringify(r)).toBe(true);
      }
      const closed = await stub.getRound(name, round);
      expect(closed.ok && closed.value.status).toBe("closed");
      const result = (closed.ok ? closed.value.result : null) as { privacy: { epsilon: number; delta: number; rounds: number } };
      expect(result.privacy.epsilon).toBeCloseTo(epsilonAt(round), 10);
      expect(result.privacy).toMatchObject({ delta: 1e-5, rounds: round });
      // The noise is what is left of the new version after the unweighted mean of the clipped updates.
      const before = decodeTensorFile(((await stub.getVersion(name, round - 1)) as { value: Uint8Array }).value, "before").tensors;
      const after = decodeTensorFile(((await stub.getVersion(name, round)) as { value: Uint8Array }).value, "after").tensors;
      const clipped = deltas.map((d) => Math.min(1, privacy.clip / norm(d)));
      expect(clipped.filter((c) => c < 1)).toHaveLength(2);
      const noise: number[] = [];
      const signal: number[] = [];
      for (const [k, t] of before)
        t.forEach((x, j) => {
          signal.push(deltas.reduce((s, d, i) => s + clipped[i]! * d.get(k)![j]!, 0) / 4);
          noise.push(after.get(k)![j]! - x - signal.at(-1)!);
        });
      const mean = noise.reduce((a, b) => a + b, 0) / noise.length;
      const std = Math.sqrt(noise.reduce((a, b) => a + (b - mean) ** 2, 0) / (noise.length - 1));
      const want = (privacy.noiseMultiplier * privacy.clip) / 4;
      expect(noise.length).toBeGreaterThan(1000);
      // The sample std of n normals is within 5 standard errors (1 / sqrt(2n)) of the truth.
      expect(Math.abs(std / want - 1)).toBeLessThan(5 / Math.sqrt(2 * noise.length));
      expect(Math.abs(mean)).toBeLessThan((5 * want) / Math.sqrt(noise.length));
      // Nothing of the mean is left in the noise (another weighting or denominator would leave a multiple of it).
      const along = noise.reduce((s, x, i) => s + x * signal[i]!, 0) / signal.reduce((s, x) => s + x * x, 0);
      expect(Math.abs(along)).toBeLessThan((5 * want) / Math.sqrt(signal.reduce((s, x) => s + x * x, 0)));
      expect((5 * want) / Math.sqrt(signal.reduce((s, x) => s + x * x, 0))).toBeLessThan(0.5);
    }
    const view = await stub.getFederation(name);
    expect(view).toMatchObject({ ok: true, value: { privacy: { epsilon: expect.closeTo(epsilonAt(2), 10), rounds: 2 } } });
    // A third round would spend epsilonAt(3) > budget: refused, nothing opened.
    const third = await stub.openRound(name);
    expect(third).toMatchObject({ ok: false, error: { status: 409, code: "privacy_budget_spent" } });
    expect(!third.ok && third.error.message).toMatch(/one more round would reach ε = \d+\.\d{3}/);
    expect(await stub.getFederation(name)).toMatchObject({ ok: true, value: { roundsDone: 2, openRound: null } });
  });

  it("samples a private federation's clients from the CSPRNG, a plain one's from its seed", async () => {
    const samples = async (kind: string, overrides: Record<string, unknown>) => {
      const out: string[] = [];
      for (let k = 0; k < 5; k++) {
        const stub: Aggregator = env.AGGREGATOR.getByName(`sample-${kind}-${k}`);
        expect((await stub.createFederation(federationConfig(`sample-${kind}-${k}`, { clients: CLIENTS, seed: 3, ...overrides }))).ok).toBe(
          true,
        );
        const opened = await stub.openRound(`sample-${kind}-${k}`);
        out.push(JSON.stringify(opened.ok ? opened.value.sampled : null));
      }
      return new Set(out);
    };
    // Four of eight: 70 samples, so five equal private ones would be a 1 in 70^4 chance.
    expect((await samples("plain", {})).size).toBe(1);
    expect((await samples("private", { privacy })).size).toBeGreaterThan(1);
  });

  it("moves an adaptive clip after each round: up when every update exceeds it, down when every one fits", async () => {
    const name = "private-adaptive";
    const stub: Aggregator = env.AGGREGATOR.getByName(name);
    // A count noise of 0.01 on 4 clients moves b̄ by 0.0025 a standard deviation: the steps are e^±0.1 within 1%.
    const adaptive = { clip: 0.05, noiseMultiplier: 0.01, adaptiveClip: { targetQuantile: 0.5, learningRate: 0.2, bitNoise: 0.01 } };
    const created = await stub.createFederation(federationConfig(name, { privacy: adaptive }));
    expect(created).toMatchObject({ ok: true, value: { privacy: { clip: 0.05 } } });
    const v0 = await stub.getVersion(name, 0);
    const global = decodeTensorFile(v0.ok ? v0.value : new Uint8Array(), "v0");
    const clips: number[] = [];
    // Round 1: norms near 0.4 against 0.05, all over; round 2: norms near 0.0004, all within.
    for (const [round, scale] of [
      [1, 0.01],
      [2, 0.00001],
    ] as const) {
      const opened = await stub.openRound(name);
      const sampled = opened.ok ? opened.value.sampled : [];
      for (const [i, id] of sampled.entries()) {
        const delta = new Map([...global.tensors].map(([k, t]) => [k, normalSamples(seededUniform(100 * round + i), t.length, scale)]));
        expect((await upload(stub, name, round, id, delta, global.shapes, 10)).ok).toBe(true);
      }
      const closed = await stub.getRound(name, round);
      const result = (closed.ok ? closed.value.result : null) as { privacy: { clip: number; nextClip: number } };
      clips.push(result.privacy.clip, result.privacy.nextClip);
    }
    expect(clips[0]).toBe(0.05);
    expect(clips[1]! / clips[0]!).toBeCloseTo(Math.exp(0.1), 2);
    expect(clips[2]).toBe(clips[1]);
    expect(clips[3]! / clips[2]!).toBeCloseTo(Math.exp(-0.1), 2);
    expect(await stub.getFederation(name)).toMatchObject({ ok: true, value: { privacy: { clip: clips[3] } } });
    // z must stay below 2 σ_b: refused at creation, naming the field.
    const refused = await env.AGGREGATOR.getByName("private-adaptive-2").createFederation(
      federationConfig("private-adaptive-2", { privacy: { ...adaptive, noiseMultiplier: 1 } }),
    );
    expect(refused).toMatchObject({
      ok: false,
      error: { status: 422, code: "config_invalid", message: expect.stringMatching(/^privacy: adaptive clipping needs/) },
    });
  });

  it("refuses at creation a budget that one round already passes, and noise of 0", async () => {
    const stub: Aggregator = env.AGGREGATOR.getByName("private-refused");
    const tight = await stub.createFederation(
      federationConfig("private-refused", { clients: CLIENTS, privacy: { ...privacy, epsilonBudget: epsilonAt(1) / 2 } }),
    );
    expect(tight).toMatchObject({ ok: false, error: { status: 422, code: "config_invalid" } });
    expect(!tight.ok && tight.error.message).toMatch(/already spends ε = .* past epsilonBudget .*npx fedflare privacy --target-epsilon/);
    const silent = await stub.createFederation(
      federationConfig("private-refused", { clients: CLIENTS, privacy: { ...privacy, noiseMultiplier: 0 } }),
    );
    expect(silent).toMatchObject({ ok: false, error: { status: 422, code: "config_invalid" } });
    expect(!silent.ok && silent.error.message).toMatch(/privacy\.noiseMultiplier/);
  });
});
