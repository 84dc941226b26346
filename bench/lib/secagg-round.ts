// One SecAgg+ round simulated in one process (src/secagg/protocol.ts): every client's phases in turn,
// clients leaving before a phase, then the server's unmasking. bench/secagg times and weighs it through the
// hooks; the tests (test/fixtures/secagg.ts) check its sum, in Node and in workerd.
import { addInto } from "../../src/secagg/fixed-point.ts";
import type { Bytes } from "../../src/secagg/keys.ts";
import {
  type Advert,
  advertise,
  type ClientSecrets,
  type ClientView,
  inboxFor,
  maskInput,
  type RevealedShare,
  rosterFor,
  type SecAggRound,
  shareKeys,
  unmask,
  unmaskSum,
} from "../../src/secagg/protocol.ts";

export const PHASES = ["advertise", "share keys", "masked input", "unmask"] as const;
export type Phase = (typeof PHASES)[number];

/** Who leaves before sharing keys, before sending the masked input, before answering the unmask request. */
export interface Leaving {
  beforeShare?: ReadonlySet<string>;
  beforeInput?: ReadonlySet<string>;
  beforeUnmask?: ReadonlySet<string>;
}

/** What a client received (down) and sent (up) in a phase. */
export interface Traffic {
  down?: ReadonlyMap<string, Advert> | ReadonlyMap<string, Bytes> | readonly string[];
  up?: Advert | ReadonlyMap<string, Bytes> | Uint32Array | ReadonlyMap<string, RevealedShare>;
}

export interface RoundHooks {
  /** Runs one client's call of a phase, or the server's unmasking: the bench times it. */
  call?: <T>(phase: Phase | "server", fn: () => Promise<T>) => Promise<T>;
  /** A client's traffic in a phase. */
  traffic?: (phase: Phase, id: string, t: Traffic) => void;
  /** The advert the server relays for a client (a test's malformed key). */
  advert?: (id: string, advert: Advert) => Advert;
  /** Changes the unmask responses before the server combines them (a test's wrong share). */
  tamper?: (responses: Map<string, Map<string, RevealedShare>>) => void;
}

/** The server's sum, the survivors' encoded inputs summed in Z_2^32 (what it must equal), and the survivors. */
export async function simulateRound(
  round: SecAggRound,
  ids: readonly string[],
  input: (id: string) => Uint32Array,
  leaving: Leaving = {},
  hooks: RoundHooks = {},
): Promise<{ sum: Uint32Array; want: Uint32Array; maskedSum: Uint32Array; survivors: Set<string> }> {
  const call = hooks.call ?? (<T>(_: Phase | "server", fn: () => Promise<T>) => fn());
  const secrets = new Map<string, ClientSecrets>();
  const adverts = new Map<string, Advert>();
  for (const id of ids) {
    const a = await call("advertise", () => advertise(id));
    secrets.set(id, a.secrets);
    adverts.set(id, hooks.advert ? hooks.advert(id, a.advert) : a.advert);
    hooks.traffic?.("advertise", id, { up: a.advert });
  }
  const shared = new Map<string, Map<string, Bytes>>();
  for (const id of ids) {
    if (leaving.beforeShare?.has(id)) continue;
    const roster = rosterFor(round, adverts, id);
    const sealed = await call("share keys", () => shareKeys(round, secrets.get(id)!, roster));
    shared.set(id, sealed);
    hooks.traffic?.("share keys", id, { down: roster, up: sealed });
  }
  const view = (id: string): ClientView => ({
    secrets: secrets.get(id)!,
    roster: rosterFor(round, adverts, id),
    inbox: inboxFor(shared, id),
  });
  const maskedSum = new Uint32Array(round.length);
  const want = new Uint32Array(round.length);
  const survivors = new Set<string>();
  for (const id of shared.keys()) {
    const v = view(id);
    if (leaving.beforeInput?.has(id)) {
      hooks.traffic?.("masked input", id, { down: v.inbox });
      continue;
    }
    const x = input(id);
    const y = await call("masked input", () => maskInput(round, v, x));
    addInto(maskedSum, y);
    addInto(want, x);
    survivors.add(id);
    hooks.traffic?.("masked input", id, { down: v.inbox, up: y });
  }
  const dropped = new Set([...shared.keys()].filter((id) => !survivors.has(id)));
  const responses = new Map<string, Map<string, RevealedShare>>();
  for (const id of survivors) {
    if (leaving.beforeUnmask?.has(id)) continue;
    const revealed = await call("unmask", () => unmask(round, view(id), { survivors, dropped }));
    responses.set(id, revealed);
    hooks.traffic?.("unmask", id, { down: round.graph.get(id) ?? [], up: revealed });
  }
  hooks.tamper?.(responses);
  const sum = await call("server", () => unmaskSum(round, adverts, new Set(shared.keys()), survivors, maskedSum, responses));
  return { sum, want, maskedSum, survivors };
}
