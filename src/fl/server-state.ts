import { FlError } from "./errors.ts";
import type { ServerState } from "./strategy.ts";
import { assertFinite, assertSameTensors, type TensorMap } from "./tensors.ts";

/** The state before the first round. */
export function initialServerState(): ServerState {
  return { round: 0, slots: new Map() };
}

/** The key of optimizer slot `slot` (e.g. "m", "v", "momentum") of tensor `tensor` in `ServerState.slots`. */
export function slotKey(slot: string, tensor: string): string {
  return `${slot}/${tensor}`;
}

/**
 * Checks the inputs of aggregate-train: `meanDelta` has the tensors of `global` and is finite, and the
 * state's round is an integer >= 0. Throws `tensor_mismatch`, `non_finite` or `state_invalid`.
 */
export function assertAggregateInputs(global: TensorMap, meanDelta: TensorMap, state: ServerState): void {
  assertSameTensors(global, meanDelta, "mean delta vs global");
  assertFinite(meanDelta, "mean delta");
  if (!Number.isInteger(state.round) || state.round < 0)
    throw new FlError("state_invalid", `server state: round must be an integer >= 0, got ${state.round}`);
}

/**
 * The slots `slots` of every tensor of `global`, read from the state: null when the state holds no slots
 * (before the first round; the strategy starts them at zero), else one TensorMap per slot. All or
 * nothing: a missing, resized, non-finite or unexpected slot is answered with `state_invalid` naming it.
 */
export function readSlots(state: ServerState, global: TensorMap, slots: readonly string[]): Map<string, TensorMap> | null {
  if (state.slots.size === 0) return null;
  const out = new Map<string, TensorMap>();
  const expectedKeys = new Set<string>();
  for (const slot of slots) {
    const map: TensorMap = new Map();
    for (const [name, t] of global) {
      const key = slotKey(slot, name);
      expectedKeys.add(key);
      const s = state.slots.get(key);
      if (s === undefined) throw new FlError("state_invalid", `server state: slot "${key}" is missing`);
      if (s.length !== t.length)
        throw new FlError("state_invalid", `server state: slot "${key}" has ${s.length} elements, expected ${t.length}`);
      for (let i = 0; i < s.length; i++)
        if (!Number.isFinite(s[i]!)) throw new FlError("state_invalid", `server state: slot "${key}" holds ${s[i]} at index ${i}`);
      map.set(name, s);
    }
    out.set(slot, map);
  }
  for (const key of state.slots.keys())
    if (!expectedKeys.has(key)) throw new FlError("state_invalid", `server state: unexpected slot "${key}"`);
  return out;
}

/** Slots as stored in the state: `${slot}/${tensor}` for each slot map, in the order given. */
export function writeSlots(slots: ReadonlyMap<string, TensorMap>): TensorMap {
  const out: TensorMap = new Map();
  for (const [slot, map] of slots) for (const [name, t] of map) out.set(slotKey(slot, name), t);
  return out;
}
