// Robust federations in workerd (issue 19): the aggregator keeps a round's updates in storage rows, applies
// the federation's rule at the close a block at a time, names what it did in the round's result and drops
// the updates; the version equals the rule computed here in float64 on the same uploads.
import { describe, expect, it } from "vitest";
import { toHfConfig } from "../../src/engine/config.ts";
import { federationConfig } from "../fixtures/federation.ts";
import { tinyConfig } from "../fixtures/tiny-llama.ts";
import { api, signed } from "./coordinator-api.ts";
import { firstRound, honestDelta, keptRows, uploadBody, version } from "./federation-rounds.ts";

const CLIENTS = ["c0", "c1", "c2", "c3", "c4", "c5", "c6"];
const ATTACKERS = new Set(["c5", "c6"]);
const error = async (res: Response) => ((await res.json()) as { error: { code: string; message: string } }).error;

async function create(id: string, overrides: Record<string, unknown>): Promise<Response> {
  return api("/federations", {
    method: "POST",
    body: JSON.stringify(
      federationConfig(id, { clients: CLIENTS, clientsPerRound: 7, minClients: 7, maxExamplesPerClient: 1_000_000_000, ...overrides }),
    ),
  });
}

/** Round 1 with the attackers sending `attack` of their honest delta and claiming a billion examples. */
async function attacked(id: string, attack: (x: number) => number, attackers = ATTACKERS) {
  const global = await version(id, 0);
  const deltas = CLIENTS.map((c, i) => {
    const d = honestDelta(global, i);
    return attackers.has(c) ? new Map([...d].map(([k, t]) => [k, t.map(attack)])) : d;
  });
  const bodies = new Map(CLIENTS.map((c, i) => [c, uploadBody(global, deltas[i]!, attackers.has(c) ? 1e9 : 10 * (i + 1))]));
  return { global, deltas, ...(await firstRound(id, bodies)) };
}

describe("a robust federation in workerd", () => {
  it("median: the version is the global plus each coordinate's median of the uploads, whatever two attackers send", async () => {
    const created = await create("rob-median", { robust: { rule: { name: "median" } } });
    expect(created.status, await created.clone().text()).toBe(201);
    const { global, deltas, robust, after } = await attacked("rob-median", (x) => 100 * x);
    expect(robust).toEqual({ rule: "median", updates: 7 });
    for (const [name, t] of global.tensors) {
      // Seven float32 values: the median is one of them, so the version is exact.
      const want = t.map((x, k) => x + deltas.map((d) => d.get(name)![k]!).sort((a, b) => a - b)[3]!);
      expect(after.tensors.get(name)).toEqual(want);
    }
    expect(await keptRows("rob-median")).toBe(0);
    // A round that fails drops the updates it kept: round 2 gets two uploads, then the operator fails it.
    expect((await api("/federations/rob-median/rounds", { method: "POST" })).status).toBe(201);
    const v1 = await version("rob-median", 1);
    for (const c of ["c0", "c1"]) {
      const res = await signed(`/federations/rob-median/rounds/2/updates/${c}`, c, {
        method: "PUT",
        body: uploadBody(v1, honestDelta(v1, 0), 10),
        headers: { "idempotency-key": `${c}-2` },
      });
      expect(res.status, await res.clone().text()).toBe(200);
    }
    expect(await keptRows("rob-median")).toBeGreaterThan(0);
    const failed = await api("/federations/rob-median/rounds/2/fail", { method: "POST", body: JSON.stringify({ reason: "test" }) });
    expect(failed.status, await failed.clone().text()).toBe(200);
    expect(await keptRows("rob-median")).toBe(0);
  });

  it("Multi-Krum after norm bounding at the median norm: keeps the honest clients, and the version is their unweighted mean", async () => {
    const robust = { rule: { name: "multi-krum", byzantine: 2 }, normBound: { bound: "median" } };
    expect((await create("rob-krum", { robust })).status).toBe(201);
    const { global, deltas, robust: summary, after } = await attacked("rob-krum", (x) => -10 * x);
    const names = [...global.tensors.keys()];
    const norms = deltas.map((d) => Math.sqrt(names.reduce((s, n) => s + d.get(n)!.reduce((a, x) => a + x * x, 0), 0)));
    const bound = [...norms].sort((a, b) => a - b)[3]!;
    expect(summary.normBound!.bound).toBeCloseTo(bound, 6);
    expect(summary.normBound!.clippedClients.sort()).toEqual(CLIENTS.filter((_, i) => norms[i]! > bound).sort());
    expect(summary.selected!.count).toBe(5);
    expect(summary.selected!.clients.sort()).toEqual(CLIENTS.filter((c) => !ATTACKERS.has(c)));
    for (const [name, t] of global.tensors) {
      const kept = summary.selected!.clients.map((c) => CLIENTS.indexOf(c));
      const mean = t.map((_, k) => kept.reduce((s, i) => s + deltas[i]!.get(name)![k]! * Math.min(1, bound / norms[i]!), 0) / kept.length);
      const got = after.tensors.get(name)!;
      t.forEach((x, k) => expect(Math.abs(got[k]! - x - mean[k]!)).toBeLessThan(1e-6));
    }
    expect(await keptRows("rob-krum")).toBe(0);
  });

  it("Bulyan f 1 among seven: picks five honest updates, each coordinate the mean of the three nearest its median", async () => {
    expect((await create("rob-bulyan", { robust: { rule: { name: "bulyan", byzantine: 1 } } })).status).toBe(201);
    // One attacker, the f it tolerates (two colluders close to each other win its last pick).
    const { global, deltas, robust: summary, after } = await attacked("rob-bulyan", (x) => 20 * x, new Set(["c6"]));
    expect(summary).toMatchObject({ rule: "bulyan", updates: 7, selected: { count: 5 } });
    const picked = summary.selected!.clients;
    expect(picked).not.toContain("c6");
    for (const [name, t] of global.tensors) {
      const got = after.tensors.get(name)!;
      t.forEach((x, k) => {
        const column = picked.map((c) => deltas[CLIENTS.indexOf(c)]!.get(name)![k]!).sort((a, b) => a - b);
        const median = column[2]!;
        const near = [...column].sort((a, b) => Math.abs(a - median) - Math.abs(b - median)).slice(0, 3);
        expect(Math.abs(got[k]! - x - near.reduce((a, b) => a + b, 0) / 3)).toBeLessThan(1e-6);
      });
    }
    expect(await keptRows("rob-bulyan")).toBe(0);
  });

  it("the geometric median with uniform weights: near the honest updates' mean, not the attackers' billion examples", async () => {
    const robust = { rule: { name: "geometric-median" }, weights: "uniform" };
    expect((await create("rob-gm", { robust })).status).toBe(201);
    const { global, deltas, robust: summary, after } = await attacked("rob-gm", (x) => 50 * x + 0.5);
    expect(summary.geometricMedian!.iterations).toBeGreaterThanOrEqual(1);
    // The change is within the honest clients' own noise of their mean (the attackers sit 0.5 away per
    // value; the plain mean, with their billion examples, would be theirs).
    let worst = 0;
    for (const [name, t] of global.tensors) {
      const got = after.tensors.get(name)!;
      const honest = deltas.filter((_, i) => !ATTACKERS.has(CLIENTS[i]!)).map((d) => d.get(name)!);
      t.forEach((x, k) => {
        worst = Math.max(worst, Math.abs(got[k]! - x - honest.reduce((s, d) => s + d[k]!, 0) / honest.length));
      });
    }
    expect(worst).toBeLessThan(0.01);
  });

  it("is refused at creation with secure aggregation or DP, with Krum or Bulyan outnumbered, and past the object's storage", async () => {
    const big = toHfConfig(tinyConfig({ hidden: 2048, intermediate: 64, layers: 16, heads: 4, kvHeads: 2 }));
    const many = Array.from({ length: 200 }, (_, i) => `m${i}`);
    for (const [overrides, message] of [
      [{ robust: { rule: { name: "median" } }, secureAggregation: {} }, /robust: its rules need each update in the clear/],
      [{ robust: { rule: { name: "median" } }, privacy: { clip: 1, noiseMultiplier: 1 } }, /robust: DP's noise is calibrated/],
      [
        { robust: { rule: { name: "krum", byzantine: 3 } } },
        /krum tolerates 3 attackers only among more than 8 updates; raise minClients \(7\) or lower byzantine to 2/,
      ],
      [
        { robust: { rule: { name: "bulyan", byzantine: 2 } } },
        /bulyan tolerates 2 attackers only among at least 11 updates; raise minClients \(7\) or lower byzantine to 1/,
      ],
      [
        { robust: { rule: { name: "multi-krum", byzantine: 1, select: 8 } }, clients: [...CLIENTS, "c7"], clientsPerRound: 8 },
        /selects 8 updates/,
      ],
      [{ robust: { rule: { name: "trimmed-mean", trim: 0.5 } } }, /field "robust.rule.trim"/],
      [{ robust: { rule: { name: "trimmed-mean", trim: 0.1 } } }, /with trim 0.1, a round closing with minClients \(7\) cuts none/],
      [{ robust: { rule: { name: "geometric-median" } } }, /geometric-median weighs each update by the examples its client declares/],
      [{ robust: { rule: { name: "mean" }, normBound: { bound: 1 } } }, /mean weighs each update .*: set weights/],
      [
        {
          robust: { rule: { name: "krum", byzantine: 1 } },
          clients: Array.from({ length: 2000 }, (_, i) => `k${i}`),
          clientsPerRound: 2000,
        },
        /krum keeps a distance per pair of updates: 2000 a round/,
      ],
      [
        {
          robust: { rule: { name: "median" } },
          model: { name: "big", config: big },
          method: { type: "lora", r: 64, alpha: 8, targetModules: ["q_proj", "v_proj"] },
          clients: many,
          clientsPerRound: 200,
        },
        /a round keeps every update until it closes: 200 × \d+ bytes/,
      ],
    ] as const) {
      const res = await create("rob-bad", overrides);
      expect([res.status, (await error(res)).message]).toEqual([422, expect.stringMatching(message)]);
    }
  });
});
