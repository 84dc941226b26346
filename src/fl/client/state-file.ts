// A gradient method's resumable local state as safetensors bytes: trained tensors and optimizer slots as tensors,
// the counters in __metadata__, so it persists in a Durable Object between invocations.
import { decodeTensorFile, encodeTensorFile } from "../tensor-file.ts";
import type { TensorMap } from "../tensors.ts";
import type { LocalState } from "./local-update.ts";

export function encodeLocalState(s: LocalState): Uint8Array {
  const tensors: TensorMap = new Map();
  for (const [k, v] of s.params) tensors.set(`param/${k}`, v);
  for (const [k, v] of s.optimizer.slots) tensors.set(`slot/${k}`, v);
  const counters = { step: s.step, optimizerStep: s.optimizer.step, order: s.order, pass: s.pass, lossSum: s.lossSum };
  return encodeTensorFile(tensors, new Map(), { format: "pt", state: JSON.stringify(counters) });
}

export function decodeLocalState(bytes: Uint8Array): LocalState {
  const file = decodeTensorFile(bytes, "client state");
  const c = JSON.parse(file.metadata.state ?? "{}") as {
    step: number;
    optimizerStep: number;
    order: number[];
    pass: number;
    lossSum: number;
  };
  const params: TensorMap = new Map();
  const slots: TensorMap = new Map();
  for (const [k, v] of file.tensors) (k.startsWith("param/") ? params : slots).set(k.slice(k.indexOf("/") + 1), v);
  return {
    step: c.step,
    params,
    optimizer: { kind: "adamw", step: c.optimizerStep, slots },
    order: c.order,
    pass: c.pass,
    lossSum: c.lossSum,
  };
}
