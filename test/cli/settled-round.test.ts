// `fedflare run` ends a round whose sampled clients have all uploaded or failed (cli/run/driver.ts
// endSettledRound): closed with what it has, failed when the aggregator says it is short, left alone otherwise.
import { describe, expect, it } from "vitest";
import { endSettledRound } from "../../cli/run/driver.ts";

/** A coordinator that answers the close with `close` and records every request. */
function coordinator(close: Response) {
  const calls: { path: string; body: unknown }[] = [];
  return {
    calls,
    fed: {
      coordinator: async (path: string, init?: { body?: string | Uint8Array }) => {
        calls.push({ path, body: init?.body ? JSON.parse(String(init.body)) : null });
        return path.endsWith("/close") ? close : new Response("{}");
      },
    },
  };
}

const short = (uploads: number) =>
  new Response(JSON.stringify({ error: { code: "round_short", message: `round 3 has ${uploads} of the 2 uploads it needs` } }), {
    status: 409,
  });

describe("a settled round", () => {
  it("closes with the uploads it has", async () => {
    const { calls, fed } = coordinator(new Response("{}"));
    await endSettledRound(fed, 3, 2);
    expect(calls).toEqual([{ path: "/federations/local/rounds/3/close", body: null }]);
  });

  it("fails, saying why, when the aggregator finds it short of its minimum", async () => {
    const { calls, fed } = coordinator(short(1));
    await endSettledRound(fed, 3, 1);
    expect(calls.map((c) => c.path)).toEqual(["/federations/local/rounds/3/close", "/federations/local/rounds/3/fail"]);
    expect(calls[1]!.body).toEqual({ reason: "every sampled client uploaded or failed, with 1 upload: fewer than the round needs" });
  });

  it("leaves a round that ended meanwhile as it ended", async () => {
    const { calls, fed } = coordinator(
      new Response(JSON.stringify({ error: { code: "round_not_open", message: "round 3 is closed" } }), { status: 409 }),
    );
    await endSettledRound(fed, 3, 0);
    expect(calls).toHaveLength(1);
  });
});
