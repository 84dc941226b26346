// A FedKSeed client's resumable state: its point's tensors with the counters in __metadata__, or, when
// its model lives at an endpoint, the seed terms and counters as JSON.
import { decodeTensorFile, encodeTensorFile } from "../../tensor-file.ts";
import type { SeedTerms } from "./seed-pool.ts";
import type { ZoState } from "./zo-update.ts";

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
