// FedKSeed's aggregator side (Qin et al. 2024): a version is the cumulative scalar per seed of the pool
// [k]; an upload is the client's sparse per-seed sums, read as the dense change of that vector; a view
// serves the sparse change between two versions, so a client downloads only the rounds it missed.
import { expectedTensors } from "../../../engine/llama/names.ts";
import { arraySource, type FlatLayout } from "../../flat-tensors.ts";
import { decodeTensorFile } from "../../tensor-file.ts";
import { MethodError } from "../errors.ts";
import type { ServerMethod } from "../method.ts";
import { describe, tensorVersion, wholeModel } from "../shared/versions.ts";
import { FedKSeedConfig } from "./config.ts";
import { decodeSeedSums, denseSeedSums, encodeSeedSums, SEED_SUMS, seedDiff } from "./seed-sums.ts";

export const fedkseedServer: ServerMethod<FedKSeedConfig> = {
  // Forward passes of the perturbed model on its own weights; none at an endpoint.
  footprints: (_m, model) => ({ local: wholeModel(model, false) }),
  planRows: (model) => [{ label: "local", footprint: wholeModel(model, false) }],
  type: "fedkseed",
  config: FedKSeedConfig,
  strategies: { names: ["fedavg"], why: "FedKSeed averages the clients' per-seed scalars" },
  versionFloats(m, model) {
    if (m.trains.type === "full") {
      const known = expectedTensors(model);
      for (const name of m.trains.tensors)
        if (!known.has(name)) throw new MethodError("method_invalid", `method.trains.tensors: "${name}" is not a tensor of this model`);
    }
    return m.k;
  },
  // No seed has moved yet: w0 is PEFT's initialisation or the base tensors, made by each client.
  initial: (m, f) => ({
    tensors: tensorVersion([[SEED_SUMS, new Float32Array(m.k), [m.k]]]),
    description: describe({
      method: m.type,
      base_model: f.model.name,
      k: m.k,
      epsilon: m.epsilon,
      lr: f.local.lr,
      direction: m.direction,
      pro: m.pro,
      trains: m.trains,
      seed: f.seed,
    }),
  }),
  decode(m, body, layout: FlatLayout) {
    const { sums, metadata } = decodeSeedSums(body, m.k, "upload");
    return { layout, source: arraySource(denseSeedSums(sums, m.k)), metadata };
  },
  views: {
    /** The per-seed change from version `since` to this one, sparse: what a client that holds `since` needs. */
    seeds: {
      params: ["since"],
      read(_m, versions, version, { since = 0 }) {
        if (since > version) throw new MethodError("view_invalid", `since (${since}) must not be after the version (${version})`);
        const sums = (v: number) => versions.tensors(v).get(SEED_SUMS)!;
        return encodeSeedSums(seedDiff(sums(since), sums(version)), { format: "pt", since: String(since), version: String(version) });
      },
    },
  },
};

/** The cumulative per-seed scalars of a version's bytes. */
export const seedSumsOf = (version: Uint8Array): Float32Array => decodeTensorFile(version, "FedKSeed version").tensors.get(SEED_SUMS)!;
