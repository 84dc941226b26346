// A client's resumable local state as safetensors bytes: trained tensors and optimizer slots as tensors,
// the counters in __metadata__, so it persists in a Durable Object between invocations.
import { decodeTensorFile, encodeTensorFile } from "../tensor-file.ts";
import type { TensorMap } from "../tensors.ts";
import type { LocalState } from "./local-update.ts";
import type { SeedTerms } from "../methods/fedkseed/seed-pool.ts";
import type { ZoState } from "../methods/fedkseed/zo-update.ts";

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

export function encodeZoState(s: ZoState): Uint8Array {
  const counters = { step: s.step, sums: [...s.sums], order: s.order, pass: s.pass, lossSum: s.lossSum, skipped: s.skipped };
  return encodeTensorFile(s.params, new Map(), { format: "pt", state: JSON.stringify(counters) });
}

export function decodeZoState(bytes: Uint8Array): ZoState {
  const file = decodeTensorFile(bytes, "client state");
  const c = JSON.parse(file.metadata.state ?? "{}") as {
    step: number;
    sums: [number, number][];
    order: number[];
    pass: number;
    lossSum: number;
    skipped: number;
  };
  return {
    step: c.step,
    params: file.tensors,
    sums: new Map(c.sums),
    order: c.order,
    pass: c.pass,
    lossSum: c.lossSum,
    skipped: c.skipped,
  };
}

/** A FedKSeed state whose point is seed terms (the model lives at an endpoint): all plain numbers, as JSON. */
export function encodeZoTermsState(s: ZoState<SeedTerms>): Uint8Array {
  return new TextEncoder().encode(JSON.stringify({ ...s, sums: [...s.sums] }));
}

export function decodeZoTermsState(bytes: Uint8Array): ZoState<SeedTerms> {
  const s = JSON.parse(new TextDecoder().decode(bytes)) as Omit<ZoState<SeedTerms>, "sums"> & { sums: [number, number][] };
  return { ...s, sums: new Map(s.sums) };
}
