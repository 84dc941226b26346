// The coordinator's dashboard in headless Chromium (Debian's, driven by playwright-core), checked
// against the API after a real round in workerd, after signing in with the viewer token (a wrong token
// is refused, and the token never appears in a URL); the screenshot stays in test-output/dashboard.png.
import { existsSync, mkdirSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LocalFederation } from "../../cli/local-federation.ts";
import { decodeTensorFile, encodeTensorFile } from "../../src/fl/tensor-file.ts";
import { deriveClientSecret, signRequest } from "../../src/protocol/signature.ts";
import { federationConfig } from "../fixtures/federation.ts";

const CHROMIUM = "/usr/bin/chromium";
const MASTER = "dashboard-master-key";
const OUTPUT = join(process.cwd(), "test-output");
let root: string;
let fed: LocalFederation;
let browser: Browser;
/** The open round's sampled clients; the first has sent a heartbeat. */
let openSampled: string[];

beforeAll(async () => {
  root = mkdtempSync(join(tmpdir(), "fedflare-dash-"));
  fed = await LocalFederation.start({ stateDir: join(root, "state"), masterKey: MASTER, clients: [], modelFiles: new Map() });
  // A federation with one closed round (two signed uploads) and a second one open; a private one with a closed round.
  await closedRound("dash");
  openSampled = ((await (await fed.coordinator("/federations/dash/rounds", { method: "POST" })).json()) as { sampled: string[] }).sampled;
  // The first sampled client of the open round reports 5 of its 12 steps.
  const beat = new TextEncoder().encode(JSON.stringify({ stepsDone: 5, steps: 12 }));
  const beatPath = `/federations/dash/rounds/2/progress/${openSampled[0]}`;
  const beatHeaders = await signRequest(await deriveClientSecret(MASTER, openSampled[0]!), openSampled[0]!, "PUT", beatPath, beat);
  expect((await fed.coordinator(beatPath, { method: "PUT", headers: { ...beatHeaders }, body: beat })).status).toBe(200);
  // Version 1 evaluated by two clients: loss (10 · 2 + 30 · 1) / 40 = 1.25; accuracy 0.5 from carol alone.
  expect((await fed.coordinator("/federations/dash/versions/1/evaluate", { method: "POST" })).status).toBe(201);
  for (const [client, report] of [
    ["alice", { numExamples: 10, metrics: { loss: 2 } }],
    ["carol", { numExamples: 30, metrics: { loss: 1, accuracy: 0.5 } }],
  ] as const) {
    const body = new TextEncoder().encode(JSON.stringify(report));
    const path = `/federations/dash/versions/1/evaluations/${client}`;
    const headers = await signRequest(await deriveClientSecret(MASTER, client), client, "PUT", path, body);
    expect((await fed.coordinator(path, { method: "PUT", headers: { ...headers }, body })).status).toBe(200);
  }
  await closedRound("dash-dp", { privacy: { clip: 1, noiseMultiplier: 1.5, epsilonBudget: 8 } });
  browser = await chromium.launch({
    executablePath: CHROMIUM,
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
}, 120_000);

/** Creates federation `id` and closes its first round with two signed uploads. */
async function closedRound(id: string, overrides: Record<string, unknown> = {}): Promise<void> {
  const config = federationConfig(id, { clients: ["alice", "bob", "carol"], clientsPerRound: 2, minClients: 1, rounds: 3, ...overrides });
  expect((await fed.coordinator("/federations", { method: "POST", body: JSON.stringify(config) })).status).toBe(201);
  const opened = (await (await fed.coordinator(`/federations/${id}/rounds`, { method: "POST" })).json()) as { sampled: string[] };
  const global = decodeTensorFile(new Uint8Array(await (await fed.coordinator(`/federations/${id}/versions/0`)).arrayBuffer()), "v0");
  for (const [i, client] of opened.sampled.entries()) {
    const body = encodeTensorFile(new Map([...global.tensors].map(([k, t]) => [k, t.map(() => 0.01)])), global.shapes, {
      format: "pt",
      num_examples: String(10 * (i + 1)),
      metrics: JSON.stringify({ train_loss: 2 + i }),
    });
    const path = `/federations/${id}/rounds/1/updates/${client}`;
    const headers = {
      ...(await signRequest(await deriveClientSecret(MASTER, client), client, "PUT", path, body)),
      "idempotency-key": `k-${client}`,
    };
    expect((await fed.coordinator(path, { method: "PUT", headers, body })).status).toBe(200);
  }
}

afterAll(async () => {
  await browser?.close();
  await fed?.dispose();
  rmSync(root, { recursive: true, force: true });
});

describe.skipIf(!existsSync(CHROMIUM))("the dashboard in Chromium", () => {
  it("shows the federations, rounds, clients and the metric curve the API reports", async () => {
    const page = await browser.newPage({ viewport: { width: 1100, height: 1000 } });
    const urls: string[] = [];
    page.on("request", (r) => urls.push(r.url()));
    await page.goto(new URL("/?federation=dash", fed.url).href);
    await page.fill('[data-testid="token"]', "not-the-token-0123456789");
    await page.click('[data-testid="sign-in"] button');
    await page.waitForSelector('[data-testid="sign-in"] >> text=not valid');
    expect(await page.locator('[data-testid="round-row"]').count()).toBe(0);
    await page.fill('[data-testid="token"]', fed.viewerToken);
    await page.click('[data-testid="sign-in"] button');
    await page.waitForSelector('[data-testid="round-row"] >> nth=1');
    expect(urls.filter((u) => u.includes(fed.viewerToken))).toEqual([]);
    const api = async <T>(path: string) => (await (await fed.coordinator(path)).json()) as T;
    const view = await api<{
      roundsDone: number;
      version: number;
      openRound: number;
      config: { rounds: number; strategy: { name: string } };
    }>("/federations/dash");

    const fedRow = await page.locator('[data-testid="federation-row"]').first().locator("td").allInnerTexts();
    expect(fedRow).toEqual([
      "dash",
      "tiny",
      view.config.strategy.name,
      `${view.roundsDone} / ${view.config.rounds}`,
      String(view.version),
      String(view.openRound),
      "-",
    ]);

    const rounds = await page
      .locator('[data-testid="round-row"]')
      .evaluateAll((rows) => rows.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent)));
    const r1 = await api<{
      uploads: number;
      sampled: string[];
      totalWeight: number;
      receipts: { numExamples: number }[];
      result: { version: number; metrics: { train_loss: number } };
    }>("/federations/dash/rounds/1");
    expect(rounds[0]!.slice(0, 6)).toEqual([
      "1",
      "closed",
      `${r1.uploads} / ${r1.sampled.length}`,
      String(r1.receipts.reduce((n, x) => n + x.numExamples, 0)),
      r1.result.metrics.train_loss.toFixed(4),
      String(r1.result.version),
    ]);
    expect(rounds[1]!.slice(0, 3)).toEqual(["2", "open", "0 / 2"]);
    // The bytes the round moved: its uploads' sum and its base version's size, as the API reports them.
    const moved = await api<{ result: { bytes: { up: number; version: number } }; receipts: { bytes: number }[] }>(
      "/federations/dash/rounds/1",
    );
    expect(moved.result.bytes.up).toBe(moved.receipts.reduce((n, x) => n + x.bytes, 0));
    expect(moved.result.bytes.up).toBeGreaterThan(0);
    const kib = (n: number) => `${(n / 1024).toFixed(1)} KiB`;
    expect(rounds[0]!.slice(9)).toEqual([kib(moved.result.bytes.up), kib(moved.result.bytes.version)]);
    expect(rounds[1]!.slice(9)).toEqual(["-", "-"]);
    // Example-weighted train loss: (10 * 2 + 20 * 3) / 30.
    expect(r1.result.metrics.train_loss).toBeCloseTo(80 / 30, 6);

    const clients = await page.locator('[data-testid="client-row"]').evaluateAll((rows) =>
      rows.map((r) =>
        Array.from(r.querySelectorAll("td"))
          .slice(0, 3)
          .map((td) => td.textContent),
      ),
    );
    expect(clients.map((c) => c[0])).toEqual(["alice", "bob", "carol"]);
    const uploaded = new Set(r1.sampled);
    for (const [id, , uploads] of clients) expect(uploads).toBe(uploaded.has(id!) ? "1" : "0");

    // The method, and the open round's clients as their heartbeats say.
    expect(await page.locator('[data-testid="method"]').textContent()).toBe(
      'method: lora (r 4, alpha 8, targetModules ["q_proj","v_proj"], dropout 0, rslora false, fromLayer 0)',
    );
    const progress = await page.locator('[data-testid="progress-row"]').evaluateAll((rows) =>
      rows.map((r) =>
        Array.from(r.querySelectorAll("td"))
          .slice(0, 2)
          .map((td) => td.textContent),
      ),
    );
    expect(progress).toEqual([
      [openSampled[0], "5 / 12"],
      [openSampled[1], "waiting"],
    ]);

    const evaluations = await page
      .locator('[data-testid="evaluation-row"]')
      .evaluateAll((rows) => rows.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent)));
    expect(evaluations).toEqual([["1", "2", "40", "0.5000", "1.2500"]]);

    // The loss curve and a curve per evaluation metric (its title the metric), read once every image has
    // loaded: each refresh renders new images, which load afresh.
    const plots = await page.waitForFunction(() => {
      const imgs = Array.from(document.querySelectorAll<HTMLImageElement>("img[data-testid]"));
      if (!imgs.every((i) => i.complete && i.naturalWidth > 0)) return null;
      return imgs.map((i) => [i.dataset.testid, i.alt]);
    });
    expect(await plots.jsonValue()).toEqual([
      ["plot", "train loss by round"],
      ["evaluation-plot", "accuracy by version"],
      ["evaluation-plot", "loss by version"],
    ]);
    mkdirSync(OUTPUT, { recursive: true });
    await page.screenshot({ path: join(OUTPUT, "dashboard.png"), fullPage: true });

    // The private federation: ε spent and its budget in the list, each round's ε in its rounds.
    const dp = await api<{ privacy: { epsilon: number } }>("/federations/dash-dp");
    const dpRound = await api<{ result: { privacy: { epsilon: number } } }>("/federations/dash-dp/rounds/1");
    expect(dp.privacy.epsilon).toBeGreaterThan(0);
    expect(dpRound.result.privacy.epsilon).toBe(dp.privacy.epsilon);
    const rows = await page
      .locator('[data-testid="federation-row"]')
      .evaluateAll((rs) => rs.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent)));
    expect(rows.find((r) => r[0] === "dash-dp")!.at(-1)).toBe(`${dp.privacy.epsilon.toFixed(3)} (8)`);
    await page.goto(new URL("/?federation=dash-dp", fed.url).href);
    await page.waitForSelector("h2 >> text=dash-dp");
    const dpRows = await page
      .locator('[data-testid="round-row"]')
      .evaluateAll((rs) => rs.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent)));
    expect(dpRows[0]![6]).toBe(dpRound.result.privacy.epsilon.toFixed(3));
    await page.screenshot({ path: join(OUTPUT, "dashboard-private.png"), fullPage: true });

    // ?rounds=1: only the latest round is read and listed, however many the federation has had.
    urls.length = 0;
    await page.goto(new URL("/?federation=dash&rounds=1", fed.url).href);
    await page.waitForSelector('[data-testid="rounds-heading"] >> text=Rounds (the latest 1 of 2)');
    const latest = await page
      .locator('[data-testid="round-row"]')
      .evaluateAll((rs) => rs.map((r) => Array.from(r.querySelectorAll("td")).map((td) => td.textContent)));
    expect(latest.map((r) => r.slice(0, 2))).toEqual([["2", "open"]]);
    const read = urls.map((u) => new URL(u).pathname).filter((p) => p.includes("/rounds/"));
    expect(read.length).toBeGreaterThan(0);
    expect(new Set(read)).toEqual(new Set(["/federations/dash/rounds/2"]));
  }, 60_000);
});
