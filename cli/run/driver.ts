// Drives a local federation for `fedflare run`: starts what the method's run side asks for (the
// inference endpoint as a trunk or a completions API), the coordinator, the aggregator and the client
// workers in workerd; creates the federation; scores version 0; records rounds that ended while no runner
// watched; then opens, pushes and watches each round, scoring every new version on the validation split,
// and at the end the last version on the test split.
import { FedflareError } from "../../src/errors.ts";
import { readdirSync, readFileSync } from "node:fs";
import { basename, join } from "node:path";
import { tokenizeExample } from "../../src/data/examples.ts";
import type { Example } from "../../src/data/jsonl.ts";
import { loadModel, type LoadedModel } from "../../src/engine/model-files.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { labeledPrompts } from "../../src/engine/train/evaluate.ts";
import type { MethodConfig, RunMethod, ScoreContext, Scored } from "../../src/fl/methods/method.ts";
import { greedyTask } from "../../src/fl/methods/shared/held-out.ts";
import { initialAdapterRequest } from "../../src/fl/methods/offsite/supply.ts";
import { runMethods } from "../../src/fl/methods/run.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { modelFingerprint, startEndpoint, type RunningEndpoint } from "../../workers/inference-endpoint/server.ts";
import { LocalFederation, randomToken, type LocalClient } from "../local-federation.ts";
import { dirSource, tokenizerFiles } from "../model-dir.ts";
import { descendantCpuSeconds } from "../process-cpu.ts";
import type { RunConfig } from "../run-config.ts";
import { attacker, clientId, federationShape, type RunData, runData } from "../run-data.ts";
import type { Progress } from "./progress.ts";
import { alieZ, type ClientAttack } from "../../src/fl/attacks/model-poisoning.ts";
import { UsageError } from "../usage.ts";
import {
  clientCost,
  lossPlot,
  previous,
  type RoundRecord,
  roundLine,
  roundsTable,
  scoreFields,
  summary,
  testLine,
  testRecord,
  writeAdapter,
} from "./report.ts";
import type { RunFolder } from "./run-folder.ts";
import type { RobustSummary } from "../../durable-objects/aggregator/buffered-updates.ts";

const FED = "local";

type Log = (line: string) => void;

/** Runs the federation of `folder` to its last round (or resumes it), then writes the report and prints the summary. */
export async function driveRun(folder: RunFolder, progress: Progress): Promise<void> {
  const log: Log = (line) => progress.line(line);
  const { config } = folder;
  const started = Date.now();
  const side = runMethods.get(config.method.type);
  const method = config.method;
  const model = await loadModel(dirSource(config.model));
  const data = runData(config);
  const clients = data.partitions.map((partition, i) => {
    const attack = clientAttack(config);
    // federatedEvaluation: each client holds every n-th validation example, to score versions on in its worker.
    const heldOut = config.federatedEvaluation ? data.validation.filter((_, j) => j % data.partitions.length === i) : null;
    return { id: clientId(i), partition, ...(attack && attacker(config, i) ? { attack } : {}), ...(heldOut ? { heldOut } : {}) };
  });
  log(
    `${config.task}: ${clients
      .map((c, i) => `${c.id} ${c.partition.length}${data.keys[i]!.length ? ` (${data.keys[i]!.join("")})` : ""}`)
      .join(", ")} examples; ${data.validation.length} validation, ${data.test.length} test`,
  );
  const refusal = side.taskRefusal?.(method, { name: config.task, labels: data.labels ?? null });
  if (refusal) throw new UsageError(refusal);
  const modelFiles = new Map(
    readdirSync(config.model)
      .filter((f) => /\.(json|safetensors)$/.test(f))
      .map((f) => [f, new Uint8Array(readFileSync(join(config.model, f)))] as const),
  );
  const prepared = side.prepare?.(method, model, { name: basename(config.model), tokenizer: tokenizerFiles(config.model) });
  if (prepared) log(prepared.note);

  const services = await startServices(side, method, config, model, modelFiles, log);
  log("starting the coordinator, the aggregator and the client workers in workerd");
  const fed = await LocalFederation.start({
    stateDir: folder.stateDir,
    masterKey: folder.masterKey,
    clients,
    modelFiles: prepared?.modelFiles ?? modelFiles,
    federations: [FED],
    ...services.bindings,
  }).catch(async (e: unknown) => {
    await services.endpoint?.close();
    throw e;
  });
  log(`dashboard: ${fed.url.href} (sign in with the viewer token ${fed.viewerToken})`);
  // Ctrl-C stops workerd cleanly; everything acknowledged is in the run's storage for --resume.
  // Prepended: Miniflare's own exit hook (registered first) exits at once.
  const interrupt = () => {
    // The round's block ends first (cli-progress shows the cursor again), so the hint prints below it.
    progress.endRound();
    progress.warn(`\ninterrupted: continue with  npx fedflare run --resume ${folder.dir}`);
    void Promise.all([fed.dispose(), services.endpoint?.close()]).finally(() => process.exit(130));
  };
  process.prependOnceListener("SIGINT", interrupt);
  process.prependOnceListener("SIGTERM", interrupt);
  try {
    await createFederation(fed, config, clients, modelFiles, prepared?.initial ?? null);
    const ctx = scoreContext(config, model, data.validation, data.labels, null);
    const evaluate = async (version: number): Promise<Scored> => {
      const bytes = new Uint8Array(await (await fed.coordinator(`/federations/${FED}/versions/${version}`)).arrayBuffer());
      return side.score(method, decodeTensorFile(bytes, `version ${version}`).tensors, ctx);
    };
    // federatedEvaluation: the operator asks for the version's evaluation, each client scores it in its worker.
    const federated = async (version: number): Promise<{ federated_loss?: number }> =>
      config.federatedEvaluation ? federatedLoss(fed, clients, version) : {};
    if (folder.records.length === 0) {
      // Round 0: the starting version (version 0: PEFT's initialisation, B = 0, or the owner's own adapter).
      const zero = await evaluate(0);
      folder.append({
        round: 0,
        status: "base",
        version: 0,
        uploads: 0,
        train_loss: null,
        ...scoreFields(zero),
        ...(await federated(0)),
        seconds: 0,
      });
    }
    log(`validation loss of the base model: ${folder.records[0]!.validation_loss.toFixed(4)}`);
    await recordUnwatched(fed, folder, evaluate);
    let state = await api<FederationState>(fed, `/federations/${FED}`);
    const failures: string[] = [];
    while (state.roundsDone < config.rounds || state.openRound !== null) {
      // Failed rounds do not count towards config.rounds; a federation whose rounds keep failing stops here.
      if (failures.length === MAX_FAILED_IN_A_ROW)
        throw new FedflareError(
          "rounds_failing",
          `${MAX_FAILED_IN_A_ROW} rounds failed in a row (the last: ${failures.at(-1)}); the clients' errors above say why`,
        );
      const round = await driveRound(fed, config, state.openRound, progress);
      if (round.status === "failed") failures.push(round.reason ?? "no reason given");
      else failures.length = 0;
      state = await api(fed, `/federations/${FED}`);
      const scored = round.status === "closed" ? await evaluate(state.version) : previous(folder.last());
      const record: RoundRecord = {
        round: round.round,
        status: round.status,
        version: state.version,
        uploads: round.uploads,
        train_loss: round.trainLoss,
        ...scoreFields(scored),
        ...(round.status === "closed" ? await federated(state.version) : {}),
        seconds: (Date.now() - round.started) / 1000,
        ...(round.cost ? { clients: round.cost } : {}),
        ...(round.status === "closed" ? round.privacy : epsilonOf(null, folder.last())),
        ...(round.robust ? { robust: round.robust } : {}),
      };
      folder.append(record);
      log(roundLine(record));
    }

    const final = new Uint8Array(await (await fed.coordinator(`/federations/${FED}/versions/${state.version}`)).arrayBuffer());
    const description = await (await fed.coordinator(`/federations/${FED}/versions/${state.version}/adapter_config.json`)).text();
    writeAdapter(folder.adapterDir, { safetensors: final, description });
    folder.write("plot.svg", lossPlot(folder.records, config));
    const finalTensors = decodeTensorFile(final, "adapter").tensors;
    const tested = testRecord(
      state.version,
      data.test.length,
      await side.score(
        method,
        finalTensors,
        scoreContext(config, model, data.test, data.labels, data.metric === "exact_match" ? data.partitions.flat() : null),
      ),
    );
    folder.write("test.json", `${JSON.stringify(tested, null, 2)}\n`);
    const usage = side.usage(method, finalTensors, { adapterDir: folder.adapterDir, modelDir: config.model });
    process.stdout.write(
      summary(roundsTable(folder.records, data.labels !== undefined), {
        test: testLine(tested),
        dir: folder.dir,
        seconds: (Date.now() - started) / 1000,
        adapterDir: folder.adapterDir,
        usage,
      }),
    );
  } finally {
    process.off("SIGINT", interrupt);
    process.off("SIGTERM", interrupt);
    await fed.dispose();
    await services.endpoint?.close();
  }
}

/** The attack a run's attacking clients' workers make (label flipping happens in their data instead). */
function clientAttack(config: RunConfig): ClientAttack | null {
  const poison = config.attack?.poison;
  if (!poison || poison.type === "label-flip") return null;
  if (poison.type !== "alie") return poison;
  const colluders = config.attack!.attackers;
  return { type: "alie", colluders, z: poison.z ?? alieZ(federationShape(config).clientsPerRound, colluders) };
}

/**
 * The inference endpoint, when the method's run side asks for one, and the client workers' bindings to
 * it: split LoRA's trunk (TRUNK_URL) or a completions API (OPENAI_BASE_URL). It serves this run's clients
 * only: they get its token.
 */
async function startServices(
  side: RunMethod<MethodConfig>,
  method: MethodConfig,
  config: RunConfig,
  model: LoadedModel,
  modelFiles: ReadonlyMap<string, Uint8Array>,
  log: Log,
): Promise<{ endpoint: RunningEndpoint | null; bindings: { trunkUrl?: string; completionsUrl?: string; endpointToken?: string } }> {
  const service = side.service(method, { trunk: config.trunk });
  if (service === "none") return { endpoint: null, bindings: {} };
  const token = randomToken();
  const endpoint = await startEndpoint({
    model,
    fingerprint: await modelFingerprint(async (f) => modelFiles.get(f) ?? null, [...modelFiles.keys()]),
    name: basename(config.model),
    port: 0,
    token,
  });
  log(`inference endpoint at ${endpoint.url} (${endpoint.provider}) ${side.serviceNote?.(method) ?? "serves the model"}`);
  const url = service === "api" ? { completionsUrl: `${endpoint.url}/v1` } : { trunkUrl: endpoint.url };
  return { endpoint, bindings: { ...url, endpointToken: token } };
}

/** A client job's status that no upload follows this round. */
const cannotUpload = (status: string) => status === "failed" || /^(unreachable|refused)/.test(status);

/**
 * Ends an open round whose sampled clients have all uploaded or failed: closed with the uploads it has, or,
 * short of its minimum, failed. A round that ended meanwhile is left as it ended (the caller reads it again).
 */
export async function endSettledRound(fed: Pick<LocalFederation, "coordinator">, round: number, uploads: number): Promise<void> {
  const path = `/federations/${FED}/rounds/${round}`;
  const closed = await fed.coordinator(`${path}/close`, { method: "POST" });
  if (closed.ok || !(await closed.text()).includes('"round_short"')) return;
  const reason = `every sampled client uploaded or failed, with ${uploads} upload${uploads === 1 ? "" : "s"}: fewer than the round needs`;
  await fed.coordinator(`${path}/fail`, { method: "POST", body: JSON.stringify({ reason }) });
}

/** A coordinator route's JSON answer; any other status fails the run with it. */
async function api<T>(fed: LocalFederation, path: string, method = "GET", body?: unknown): Promise<T> {
  const res = await fed.coordinator(path, body === undefined ? { method } : { method, body: JSON.stringify(body) });
  if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
  return (await res.json()) as T;
}

/** Every page of the federation's round metrics, oldest first. */
async function allRounds<T extends { round: number }>(fed: LocalFederation): Promise<T[]> {
  const rounds: T[] = [];
  for (let page = await api<T[]>(fed, `/federations/${FED}/metrics`); page.length > 0; ) {
    rounds.push(...page);
    page = await api<T[]>(fed, `/federations/${FED}/metrics?from=${page.at(-1)!.round + 1}`);
  }
  return rounds;
}

/**
 * A version's federated evaluation, as a deployment runs it: asked of the clients, scored by each in its
 * worker on its held-out share, folded by the aggregator; absent when no client reported (a method whose
 * clients do not evaluate).
 */
async function federatedLoss(fed: LocalFederation, clients: readonly LocalClient[], version: number): Promise<{ federated_loss?: number }> {
  await api(fed, `/federations/${FED}/versions/${version}/evaluate`, "POST");
  for (const c of clients) {
    const res = await fed.client(c.id, "/evaluations", { method: "POST", body: JSON.stringify({ federationId: FED }) });
    if (!res.ok) throw new Error(`client ${c.id} could not evaluate version ${version}: ${res.status} ${await res.text()}`);
  }
  const view = await api<{ reports: number; metrics: Record<string, number> }>(fed, `/federations/${FED}/versions/${version}/evaluation`);
  return view.reports && view.metrics.loss !== undefined ? { federated_loss: view.metrics.loss } : {};
}

/** Creates the run's federation unless a resumed run's storage has it, and supplies a version 0 the method prepared. */
async function createFederation(
  fed: LocalFederation,
  config: RunConfig,
  clients: readonly LocalClient[],
  modelFiles: ReadonlyMap<string, Uint8Array>,
  initial: Uint8Array | null,
): Promise<void> {
  const { clientsPerRound: perRound, local } = federationShape(config);
  if ((await fed.coordinator(`/federations/${FED}`)).status === 404)
    await api(fed, "/federations", "POST", {
      id: FED,
      model: {
        name: basename(config.model),
        config: JSON.parse(new TextDecoder().decode(modelFiles.get("config.json")!)),
        quant: config.quant,
      },
      method: config.method,
      strategy: config.strategy,
      rounds: config.rounds,
      clients: clients.map((c) => c.id),
      clientsPerRound: perRound,
      // A robust rule counts its attackers among a full round (Krum needs more than 2f + 2 updates).
      minClients: config.robust ? perRound : Math.max(1, Math.ceil(perRound / 2)),
      local,
      deadlineSeconds: config.deadlineSeconds,
      seed: config.seed,
      ...(config.privacy ? { privacy: config.privacy } : {}),
      ...(config.secureAggregation ? { secureAggregation: config.secureAggregation } : {}),
      ...(config.robust ? { robust: config.robust } : {}),
      ...(config.shards ? { shards: config.shards } : {}),
      ...(config.uploadDtype ? { uploadDtype: config.uploadDtype } : {}),
      ...(config.topK !== undefined ? { topK: config.topK } : {}),
      ...(config.downloadDtype ? { downloadDtype: config.downloadDtype } : {}),
    });
  if (initial && (await fed.coordinator(`/federations/${FED}/versions/0`)).status === 404) {
    const supply = await initialAdapterRequest(FED, fed.operatorToken, initial);
    const res = await fed.coordinator(supply.path, supply);
    if (!res.ok) throw new Error(`supplying version 0: ${res.status} ${await res.text()}`);
  }
}

/**
 * What a run side scores a version with: the base model, the examples scored, a classification task's
 * labels, and (the test split of an exact-match task) the training examples that set the greedy answers' budget.
 */
function scoreContext(
  config: RunConfig,
  model: LoadedModel,
  examples: readonly Example[],
  labels: RunData["labels"],
  training: readonly Example[] | null,
): ScoreContext {
  const eos = model.config.eosTokenIds[0] ?? 0;
  const maxTokens = config.local.maxTokens;
  return {
    runtime: ortNodeRuntime(2),
    model,
    quant: config.quant,
    seed: config.seed,
    local: config.local,
    maxTokens,
    heldOut: examples.map((e) => tokenizeExample(e, model.tokenizer, eos, maxTokens)),
    task: labels ? { labels, labeled: labeledPrompts(examples) } : null,
    generation: training && greedyTask(model.tokenizer, examples, training),
  };
}

interface FederationState {
  roundsDone: number;
  openRound: number | null;
  version: number;
}

/** What a round's result says: its version, the clients' metrics, in a private federation ε after it, in a robust one what its rule did. */
interface RoundOutcome {
  version?: number;
  metrics?: Record<string, number>;
  privacy?: { epsilon: number };
  robust?: RobustSummary;
}

/** Rounds that may fail one after another before a run stops (a failed round does not count towards its rounds). */
const MAX_FAILED_IN_A_ROW = 3;

/** A record's ε field: the round's, or (a failed round spends nothing) the last record's; none without privacy. */
function epsilonOf(result: RoundOutcome | null, last?: RoundRecord): { epsilon?: number } {
  const epsilon = result?.privacy?.epsilon ?? last?.epsilon;
  return epsilon === undefined ? {} : { epsilon };
}

/** Records the rounds that ended while no runner watched (an interrupted run), scoring those that closed. */
async function recordUnwatched(fed: LocalFederation, folder: RunFolder, evaluate: (version: number) => Promise<Scored>): Promise<void> {
  type Summary = {
    round: number;
    status: string;
    uploads: number;
    openedAt: number;
    closedAt: number | null;
    result: RoundOutcome | null;
  };
  for (const s of await allRounds<Summary>(fed)) {
    if (s.status === "open" || folder.records.some((r) => r.round === s.round)) continue;
    const version = s.result?.version ?? folder.last().version;
    const scored = s.status === "closed" ? await evaluate(version) : previous(folder.last());
    folder.append({
      round: s.round,
      status: s.status,
      version,
      uploads: s.uploads,
      train_loss: s.result?.metrics?.train_loss ?? null,
      ...scoreFields(scored),
      seconds: ((s.closedAt ?? s.openedAt) - s.openedAt) / 1000,
      ...epsilonOf(s.result),
      ...(s.result?.robust ? { robust: s.result.robust } : {}),
    });
  }
}

/**
 * Opens a round (or takes the open one), pushes its task to the sampled clients, prints their progress
 * until it ends, and returns how it ended, when it started and what the clients spent.
 */
async function driveRound(fed: LocalFederation, config: RunConfig, open: number | null, progress: Progress) {
  const started = Date.now();
  const cpuStart = descendantCpuSeconds("workerd");
  const round = open ?? (await api<{ round: number }>(fed, `/federations/${FED}/rounds`, "POST")).round;
  const info = await api<{ sampled: string[] }>(fed, `/federations/${FED}/rounds/${round}`);
  // A client that refuses the task (its owner's limits) has no job: its answer is its status.
  const refused = new Map<string, { status: number; text: string }>();
  for (const id of info.sampled) {
    const res = await fed.client(id, "/tasks", { method: "POST", body: JSON.stringify({ federationId: FED, round }) });
    if (!res.ok) refused.set(id, { status: res.status, text: (await res.text()).slice(0, 300) });
  }
  type Job = {
    status: string;
    stepsDone: number;
    detail: string | null;
    uploadBytes: number | null;
    uploadMetrics: Record<string, number> | null;
  };
  const failed = new Set<string>();
  // A client that cannot answer shows as such, with its answer as the detail, rather than as a job.
  const jobs = () =>
    Promise.all(
      info.sampled.map(async (id): Promise<Job> => {
        const refusal = refused.get(id);
        if (refusal)
          return { status: `refused (${refusal.status})`, stepsDone: 0, detail: refusal.text, uploadBytes: null, uploadMetrics: null };
        const res = await fed.client(id, `/tasks/${FED}/${round}`);
        if (res.ok) return (await res.json()) as Job;
        const detail = `the client answered ${res.status}: ${(await res.text()).slice(0, 300)}`;
        return { status: `unreachable (${res.status})`, stepsDone: 0, detail, uploadBytes: null, uploadMetrics: null };
      }),
    );
  let r: { status: string; uploads: number; phase: string | null; result: RoundOutcome | null };
  const steps = federationShape(config).local.steps;
  let ending = false;
  // The block ends however the round does (an error too), so its redraw timer never keeps Node alive.
  try {
    for (;;) {
      r = await api(fed, `/federations/${FED}/rounds/${round}`);
      const views = await jobs();
      progress.round({
        round,
        rounds: config.rounds,
        clients: views.map((job, i) => ({ id: info.sampled[i]!, status: job.status, stepsDone: job.stepsDone, steps })),
        uploads: r.uploads,
        elapsedMs: Date.now() - started,
      });
      // Why a client failed, once.
      views.forEach((job, i) => {
        const id = info.sampled[i]!;
        if (!cannotUpload(job.status) || failed.has(id)) return;
        failed.add(id);
        progress.warn(`${id} ${job.status}: ${job.detail ?? "no detail"}`);
      });
      if (r.status !== "open") break;
      // Every sampled client has uploaded or cannot: the round ends now, as its deadline would end it, rather than
      // idle until then (a plain round: a secure one's later phases still need its clients).
      if (!ending && r.phase === null && views.every((job) => job.status === "uploaded" || cannotUpload(job.status))) {
        ending = true;
        await endSettledRound(fed, round, r.uploads);
      }
      await new Promise((res) => setTimeout(res, 500));
    }
  } finally {
    progress.endRound();
  }
  const cpuEnd = descendantCpuSeconds("workerd");
  // The clients' job views give each upload's size and declared metrics (no route hands out an upload).
  const uploaded = (await jobs())
    .filter((j) => j.status === "uploaded" && j.uploadBytes !== null)
    .map((j) => ({ bytes: j.uploadBytes!, metrics: j.uploadMetrics ?? {} }));
  return {
    round,
    status: r.status,
    uploads: r.uploads,
    trainLoss: r.result?.metrics?.train_loss ?? null,
    reason: r.result && "reason" in r.result ? String(r.result.reason) : null,
    privacy: epsilonOf(r.result),
    robust: r.result?.robust ?? null,
    started,
    cost: clientCost(uploaded, cpuStart === null || cpuEnd === null ? null : cpuEnd - cpuStart, info.sampled.length),
  };
}
