// Model-poisoning attacks, for tests and benchmarks of the robust rules (src/fl/robust/): what a malicious
// client uploads in place of its honest update. Nothing applies them unless a client is configured to
// attack (workers/client's ATTACK binding, `fedflare run`'s attack field).
// - sign flip: −s · Δ; scaling (model replacement, Bagdasaryan et al. 2020): γ · Δ; Gaussian: N(0, σ² I)
//   in place of Δ (Blanchard et al. 2017); each may also claim `examples` examples (inflated counts, which
//   the weighted mean follows).
// - "A little is enough" (Baruch, Baruch, Goldberg 2019): colluders send μ − z σ, μ and σ the coordinate-wise
//   mean and std of their own honest updates, z from the paper's z_max, so each value stays inside the
//   honest spread and coordinate-wise rules and Krum let it through.
import quantile from "@stdlib/stats-base-dists-normal-quantile";
import * as v from "valibot";
import { normalSamples } from "../../engine/llama/init.ts";
import { FlError } from "../errors.ts";
import { decodeTensorFile, encodeTensorFile } from "../tensor-file.ts";
import type { TensorMap } from "../tensors.ts";

const positive = v.pipe(v.number(), v.gtValue(0), v.maxValue(1e9));
/** The example count the attacker claims instead of its own. */
const examples = v.optional(v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(9_999_999_999)));

export const ModelAttack = v.variant("type", [
  v.strictObject({ type: v.literal("sign-flip"), scale: v.optional(positive, 1), examples }),
  v.strictObject({ type: v.literal("scale"), factor: positive, examples }),
  v.strictObject({ type: v.literal("gaussian"), std: positive, examples }),
]);
export type ModelAttack = v.InferOutput<typeof ModelAttack>;

/** "A little is enough" among `colluders` clients, each sending μ − z σ of the colluders' honest updates. */
export const AlieAttack = v.strictObject({
  type: v.literal("alie"),
  colluders: v.pipe(v.number(), v.integer(), v.minValue(1), v.maxValue(1000)),
  z: v.pipe(v.number(), v.minValue(0), v.maxValue(100)),
});
/** What a client worker's ATTACK binding holds. */
export const ClientAttack = v.variant("type", [...ModelAttack.options, AlieAttack]);
export type ClientAttack = v.InferOutput<typeof ClientAttack>;

/** The attack's tensors in place of the honest `tensors` (Gaussian draws from `uniform`). */
export function poisonTensors(attack: ModelAttack, tensors: TensorMap, uniform: () => number): TensorMap {
  const map = (f: (t: Float32Array) => Float32Array) => new Map([...tensors].map(([k, t]) => [k, f(t)]));
  switch (attack.type) {
    case "sign-flip":
      return map((t) => t.map((x) => -attack.scale * x));
    case "scale":
      return map((t) => t.map((x) => attack.factor * x));
    case "gaussian":
      return map((t) => normalSamples(uniform, t.length, attack.std));
  }
}

/** An upload's safetensors body as the attack sends it: its tensors poisoned, its example count the claimed one. */
export function poisonUpload(attack: ModelAttack, body: Uint8Array, uniform: () => number): Uint8Array {
  const file = decodeTensorFile(body, "the honest upload");
  const metadata = attack.examples === undefined ? file.metadata : { ...file.metadata, num_examples: String(attack.examples) };
  return encodeTensorFile(poisonTensors(attack, file.tensors, uniform), file.shapes, metadata);
}

/** Baruch et al. 2019's z_max for n clients of which f collude: Φ⁻¹((n − s) / n), s = ⌊n/2 + 1⌋ − f. */
export function alieZ(n: number, f: number): number {
  if (!(Number.isInteger(n) && Number.isInteger(f) && f >= 1 && f < n))
    throw new FlError("robust_invalid", `alie: colluders f is a whole number in [1, n), got f = ${f} of n = ${n}`);
  const s = Math.floor(n / 2 + 1) - f;
  if (s < 1) throw new FlError("robust_invalid", `alie: the formula needs f ≤ ⌊n/2⌋ colluders, got f = ${f} of n = ${n}`);
  return quantile((n - s) / n, 0, 1);
}

/** What the colluders send: μ − z σ of their own honest updates, coordinate by coordinate (σ the population std). */
export function alieTensors(honest: readonly TensorMap[], z: number): TensorMap {
  if (honest.length === 0) throw new FlError("robust_invalid", "alie: the colluders need at least one honest update to estimate from");
  return new Map(
    [...honest[0]!].map(([k, t]) => {
      const out = new Float32Array(t.length);
      for (let j = 0; j < t.length; j++) {
        let sum = 0;
        let squares = 0;
        for (const h of honest) {
          const x = h.get(k)![j]!;
          sum += x;
          squares += x * x;
        }
        const mean = sum / honest.length;
        out[j] = mean - z * Math.sqrt(Math.max(0, squares / honest.length - mean * mean));
      }
      return [k, out];
    }),
  );
}
