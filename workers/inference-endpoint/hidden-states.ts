// POST /v1/hidden-states (a fedflare extension): the frozen trunk's hidden states after a cut layer, as
// safetensors in the dtype asked for, so a client holding only the layers above the cut can train.
import { ForwardModel } from "../../src/engine/forward.ts";
import { float32ToBF16, float32ToF16 } from "../../src/protocol/dtypes.ts";
import { writeSafetensors } from "../../src/protocol/safetensors.ts";
import type { Engine } from "./completions.ts";
import type { HiddenStatesRequest } from "./schemas.ts";

export async function hiddenStates(engine: Engine, req: HiddenStatesRequest): Promise<Uint8Array<ArrayBuffer>> {
  const { config } = engine.model;
  if (req.layer > config.numLayers)
    throw new RangeError(`layer must be in [0, ${config.numLayers}] for this ${config.numLayers}-layer model, got ${req.layer}`);
  for (const row of req.input_ids)
    for (const id of row)
      if (id >= config.vocabSize) throw new RangeError(`token id ${id} is outside the vocabulary (${config.vocabSize})`);
  const lengths = req.input_ids.map((r) => r.length);
  const T = Math.max(...lengths);
  const { hidden } = await engine.sessions.use(
    `trunk/${req.layer}`,
    () => ForwardModel.create(engine.runtime, config, engine.model.weights, { kind: "hidden", after: req.layer }),
    (model) =>
      model.run({
        ids: req.input_ids.map((r) => [...r, ...Array<number>(T - r.length).fill(0)]),
        mask: req.input_ids.map((r) => [...r.map(() => 1), ...Array<number>(T - r.length).fill(0)]),
      }),
  );
  engine.served.hiddenStateRows += req.input_ids.length;
  const shape = [req.input_ids.length, T, config.hiddenSize];
  const data = req.dtype === "f16" ? float32ToF16(hidden!) : req.dtype === "bf16" ? float32ToBF16(hidden!) : hidden!;
  const dtype = req.dtype === "f16" ? "F16" : req.dtype === "bf16" ? "BF16" : "F32";
  return writeSafetensors(
    { hidden_states: { dtype, shape, data } },
    { format: "pt", model: engine.name, fingerprint: engine.fingerprint, layer: String(req.layer), lengths: JSON.stringify(lengths) },
  );
}
