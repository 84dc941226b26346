// SecAgg+ (src/secagg/) end to end in WebCrypto: clients and a server exchanging the four phases'
// messages in memory, with clients dropping out at each phase. The server's result must equal the sum of
// the surviving clients' encoded inputs in Z_2^32 exactly, decoding to their float sum within the
// rounding; below the threshold the round fails with its reason, and no request gets both of a peer's shares.
import { describe, expect, it } from "vitest";
import { seededUniform } from "../../src/engine/sampling.ts";
import { decodeSum, encode, fixedPointFor } from "../../src/secagg/fixed-point.ts";
import { defaultDegree, degreeForDropouts, neighbourGraph } from "../../src/secagg/graph.ts";
import { agree, type Bytes, expandMask, keyPair, openShare, sealShare } from "../../src/secagg/keys.ts";
import {
  advertise,
  inboxFor,
  maskCount,
  maskInput,
  type RecoveredSecrets,
  rosterFor,
  secAggRound,
  shareKeys,
  unmask,
} from "../../src/secagg/protocol.ts";
import { roundOf } from "../../src/secagg/client.ts";
import type { SecAggView } from "../../src/protocol/secure-aggregation.ts";
import { simulate } from "../fixtures/secagg.ts";

describe("SecAgg+", () => {
  it("encodes by unbiased stochastic rounding: the decoded sum is within the rounding, zero in mean", () => {
    const fp = fixedPointFor(2, 100);
    expect(fp.bits).toBe(25);
    const u = seededUniform(1);
    const x = 0.123456789;
    const trials = 20_000;
    const sum = new Uint32Array(1);
    let mean = 0;
    for (let t = 0; t < trials; t++) {
      const e = encode([x], fp, u);
      mean += decodeSum(e, fp, 1)[0]! / trials;
      if (t < 100) sum[0] = sum[0]! + e[0]!;
    }
    const step = (2 * fp.range) / (2 ** fp.bits - 1);
    expect(Math.abs(mean - x)).toBeLessThan((5 * step) / Math.sqrt(trials));
    expect(Math.abs(decodeSum(sum, fp, 100)[0]! - 100 * x)).toBeLessThan(100 * step);
    // Clamped to the range; the 32-bit ring holds 100 values of 25 bits, not 200.
    expect(decodeSum(encode([5, -5], fp, u), fp, 1)).toEqual(Float64Array.from([2, -2]));
    expect(() => decodeSum(sum, fp, 200)).toThrow(/overflow the 32-bit ring/);
  });

  it("builds a symmetric sparse graph of the degree asked, the complete graph for small rounds, the same from the seed", () => {
    const ids = Array.from({ length: 100 }, (_, i) => `c${i}`);
    const k = defaultDegree(100);
    expect(k).toBe(14);
    const g = neighbourGraph(ids, k, 5);
    for (const [id, ns] of g) {
      expect(ns).toHaveLength(k);
      for (const j of ns) expect(g.get(j)).toContain(id);
    }
    expect(neighbourGraph(ids, k, 5)).toEqual(g);
    expect(neighbourGraph(ids, k, 6)).not.toEqual(g);
    expect(neighbourGraph(["a", "b", "c"], 4, 1).get("a")).toEqual(["b", "c"]);
    expect(() => neighbourGraph(ids, 3, 1)).toThrow(/even whole number/);
  });

  it("derives the degree from a dropout rate: the sparsest graph whose clients all keep their threshold w.p. 0.999", () => {
    // P[Bin(k, p) < t] by the recursion over trials (no binomial coefficients), as a reference.
    const below = (k: number, p: number, t: number) => {
      let dist = [1];
      for (let i = 0; i < k; i++) dist = [...dist, 0].map((_, j) => (dist[j] ?? 0) * (1 - p) + (j > 0 ? dist[j - 1]! * p : 0));
      return dist.slice(0, t).reduce((a, b) => a + b, 0);
    };
    const failing = (n: number, k: number, d: number) => n * below(k, 1 - d, Math.floor(k / 2) + 1);
    for (const [n, d, k] of [
      [500, 0.3, 128],
      [1000, 0.3, 134],
      [500, 0.1, 24],
      [100, 0.1, 20],
    ] as const) {
      expect(degreeForDropouts(n, d)).toBe(k);
      expect(failing(n, k, d)).toBeLessThanOrEqual(1e-3);
      expect(failing(n, k - 2, d)).toBeGreaterThan(1e-3);
    }
    // No dropouts: the default; where no sparse graph is enough, the complete one.
    expect(degreeForDropouts(500, 0)).toBe(defaultDegree(500));
    expect(degreeForDropouts(50, 0.3)).toBe(50);
    expect(
      neighbourGraph(
        Array.from({ length: 50 }, (_, i) => `c${i}`),
        50,
        1,
      ).get("c0"),
    ).toHaveLength(49);
    expect(() => degreeForDropouts(50, 1)).toThrow(/dropout rate/);
  });

  it("masks that cancel: the pair mask agrees from both sides, and a full 256-bit key stream repeats only for its key", async () => {
    const [a, b] = await Promise.all([keyPair(), keyPair()]);
    const pub = async (k: CryptoKeyPair) => new Uint8Array(await crypto.subtle.exportKey("raw", k.publicKey));
    const ab = await agree(a.privateKey, await pub(b));
    const ba = await agree(b.privateKey, await pub(a));
    expect(ab).toEqual(ba);
    expect(ab).toHaveLength(32);
    const m1 = await expandMask(ab, "fed/1", "pair a b", 1000);
    expect(await expandMask(ba, "fed/1", "pair a b", 1000)).toEqual(m1);
    expect(await expandMask(ab, "fed/2", "pair a b", 1000)).not.toEqual(m1);
    // A segment regenerated on its own is that stretch of the whole stream (how a large mask is removed piecewise).
    expect(await expandMask(ab, "fed/1", "pair a b", 100, 600)).toEqual(m1.subarray(600, 700));
    await expect(expandMask(ab, "fed/1", "pair a b", 10, 6)).rejects.toMatchObject({ code: "secagg_invalid" });
    // Words spread over the whole 32-bit range (a 32-bit seed would not change this, the key size does; see keys.ts).
    expect(Math.max(...m1)).toBeGreaterThan(2 ** 31);
    const sealed = await sealShare(ab, "fed/1", "a", "b", Uint8Array.of(1, 2, 3));
    expect(await openShare(ba, "fed/1", "a", "b", sealed)).toEqual(Uint8Array.of(1, 2, 3));
    await expect(openShare(ba, "fed/1", "b", "a", sealed)).rejects.toMatchObject({ code: "decrypt_failed" });
    await expect(openShare(ba, "fed/2", "a", "b", sealed)).rejects.toMatchObject({ code: "decrypt_failed" });
  });

  it("counts the masks an unmasking removes per word, which sizes the aggregator's slices", () => {
    // a–b, a–c, b–c, c–d; a and b survive, c and d dropped after sharing.
    const graph = new Map([
      ["a", ["b", "c"]],
      ["b", ["a", "c"]],
      ["c", ["a", "b", "d"]],
      ["d", ["c"]],
    ]);
    const round = { context: "r", graph, threshold: 1, length: 4 };
    const recovered = {
      seeds: new Map([
        ["a", new Uint8Array(32)],
        ["b", new Uint8Array(32)],
      ]),
      keys: new Map([
        ["c", {}],
        ["d", {}],
      ]),
    } as unknown as RecoveredSecrets;
    // Two self masks, c's pair masks with a and b, none of d's (its one neighbour dropped too).
    expect(maskCount(round, new Set(["a", "b"]), recovered)).toBe(4);
  });

  it("sums 8 clients on the complete graph exactly, a masked input alone looking nothing like its input", async () => {
    const r = await simulate(8, { degree: 8, threshold: 4 });
    expect(r.survivors.size).toBe(8);
    expect(r.sum).toEqual(r.want);
    const step = (2 * r.fp.range) / (2 ** r.fp.bits - 1);
    r.decoded.forEach((x, k) => expect(Math.abs(x - r.floatSum[k]!)).toBeLessThan(8 * step));
    expect(r.maskedSum).not.toEqual(r.want);
  });

  it("sums 30 clients on a sparse graph (degree 10) with dropouts at every phase", async () => {
    const r = await simulate(30, {
      degree: 10,
      threshold: 6,
      drops: {
        beforeShare: ["client-003"],
        beforeInput: ["client-010", "client-020", "client-021"],
        beforeUnmask: ["client-005", "client-029"],
      },
    });
    expect(r.survivors.size).toBe(26);
    expect(r.survivors.has("client-010")).toBe(false);
    expect(r.sum).toEqual(r.want);
    // Each client masks with its 10 neighbours, not with the 29 others.
    expect(r.round.graph.get("client-000")).toHaveLength(10);
  });

  it("leaves out one wrong share, fails two instead of summing garbage, skips a low-order key, answers each phase once", async () => {
    // `count` responders' shares of one peer changed in bytes 1 and 2 (X25519 clamps bits of byte 0, so a
    // change there can rebuild an equivalent key): a secret rebuilt with them misses what its owner advertised.
    // The k-th changed share gets 1 and k + 1: two shares changed alike in one byte would cancel in the
    // interpolation whenever their Lagrange coefficients are equal (about one set of shares in 255), and a
    // rebuild from both would pass; changed unalike in two bytes, they cannot cancel in both.
    const flip = (kind: "seed" | "key", count: number) => (responses: Map<string, Map<string, { kind: string; share: Uint8Array }>>) => {
      const peer = [...responses.values()].flatMap((m) => [...m].filter(([, s]) => s.kind === kind).map(([p]) => p))[0];
      let changed = 0;
      for (const shares of responses.values()) {
        const s = shares.get(peer!);
        if (!s || changed >= count) continue;
        s.share[1]! ^= 1;
        s.share[2]! ^= changed + 1;
        changed++;
      }
    };
    const one = await simulate(8, { degree: 8, threshold: 4, tamper: flip("seed", 1) });
    expect(one.sum).toEqual(one.want);
    const oneKey = await simulate(8, { degree: 8, threshold: 4, drops: { beforeInput: ["client-002"] }, tamper: flip("key", 1) });
    expect(oneKey.sum).toEqual(oneKey.want);
    await expect(simulate(8, { degree: 8, threshold: 4, tamper: flip("seed", 2) })).rejects.toMatchObject({
      code: "protocol_violation",
      message: expect.stringMatching(/self-mask seed do not rebuild the one it advertised/),
    });
    await expect(
      simulate(8, { degree: 8, threshold: 4, drops: { beforeInput: ["client-002"] }, tamper: flip("key", 2) }),
    ).rejects.toMatchObject({
      code: "protocol_violation",
      message: expect.stringMatching(/"client-002"'s masking key do not rebuild/),
    });
    // A neighbour advertising the all-zero point is left out; the others still sum exactly.
    const r = await simulate(8, { degree: 8, threshold: 4, lowOrder: "client-005" });
    expect(r.survivors.has("client-005")).toBe(false);
    expect(r.sum).toEqual(r.want);
    // A second masked input (the same masks over another input) or a second unmask answer is refused.
    const ids = ["a", "b", "c"];
    const round = secAggRound("fed/1", ids, { degree: 2, threshold: 2, seed: 1, length: 4 });
    const parties = await Promise.all(ids.map((id) => advertise(id)));
    const adverts = new Map(parties.map((p, i) => [ids[i]!, p.advert]));
    const shared = new Map<string, Map<string, Bytes>>();
    for (const [i, p] of parties.entries()) shared.set(ids[i]!, await shareKeys(round, p.secrets, rosterFor(round, adverts, ids[i]!)));
    const view = { secrets: parties[0]!.secrets, roster: rosterFor(round, adverts, "a"), inbox: inboxFor(shared, "a") };
    await maskInput(round, view, new Uint32Array(4));
    await expect(maskInput(round, view, Uint32Array.of(1, 2, 3, 4))).rejects.toMatchObject({ code: "protocol_violation" });
    await unmask(round, view, { survivors: new Set(ids), dropped: new Set<string>() });
    await expect(unmask(round, view, { survivors: new Set(["a", "b"]), dropped: new Set(["c"]) })).rejects.toMatchObject({
      code: "protocol_violation",
      message: expect.stringMatching(/already answered the unmask phase/),
    });
    expect(() => encode([Number.NaN], fixedPointFor(1, 2), Math.random)).toThrow(/value 0 is NaN/);
  });

  it("fails below the threshold with its reason, and refuses to reveal both shares of one peer", async () => {
    await expect(
      simulate(8, { degree: 8, threshold: 6, drops: { beforeInput: ["client-000", "client-001", "client-002"] } }),
    ).rejects.toMatchObject({
      code: "below_threshold",
    });
    await expect(
      simulate(8, {
        degree: 8,
        threshold: 4,
        drops: { beforeUnmask: ["client-000", "client-001", "client-002", "client-003", "client-004"] },
      }),
    ).rejects.toMatchObject({
      code: "below_threshold",
      message: expect.stringMatching(/shares of "client-\d+" came back, below the threshold 4/),
    });
    const ids = ["a", "b", "c", "d"];
    const round = secAggRound("fed/1", ids, { degree: 4, threshold: 2, seed: 1, length: 4 });
    const parties = await Promise.all(ids.map((id) => advertise(id)));
    const adverts = new Map(parties.map((p, i) => [ids[i]!, p.advert]));
    const shared = new Map<string, Map<string, Bytes>>();
    for (const [i, p] of parties.entries()) shared.set(ids[i]!, await shareKeys(round, p.secrets, rosterFor(round, adverts, ids[i]!)));
    const both = { survivors: new Set(["b", "c"]), dropped: new Set(["b"]) };
    const view = { secrets: parties[0]!.secrets, roster: rosterFor(round, adverts, "a"), inbox: inboxFor(shared, "a") };
    await expect(unmask(round, view, both)).rejects.toMatchObject({
      code: "protocol_violation",
    });
    expect(() => secAggRound("fed/1", ids, { degree: 4, threshold: 4, seed: 1, length: 4 })).toThrow(
      /threshold is a whole number in \[2, 3\]/,
    );
    // Half of the neighbours is not enough: two disjoint halves could rebuild both of a client's secrets.
    const eight = Array.from({ length: 8 }, (_, i) => `c${i}`);
    expect(() => secAggRound("fed/1", eight, { degree: 8, threshold: 3, seed: 1, length: 4 })).toThrow(
      /in \[4, 7\] \(over half the neighbours/,
    );
    // A client checks the threshold its view gives against its own neighbours before it shares anything.
    const clientSide = (threshold: number) =>
      roundOf({ context: "fed/1", threshold, length: 4, neighbours: ["c1", "c2", "c3", "c4"] } as SecAggView, "c0");
    expect(clientSide(3).threshold).toBe(3);
    for (const low of [1, 2]) expect(() => clientSide(low)).toThrow(/threshold is a whole number in \[3, 4\].*got \d/);
    expect(() => clientSide(5)).toThrow(/in \[3, 4\]/);
  });
});
