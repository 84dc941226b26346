// `fedflare run`: a whole federation on this machine. Starts the coordinator, the aggregator Durable
// Object and one client worker per partition in workerd (Miniflare) — and, for split LoRA, the inference
// endpoint serving the frozen trunk — drives the rounds over HTTP, scores each global version on held-out
// data, and writes runs/<id>/: config.json, metrics.jsonl, plot.svg and the final adapter folder.
// --resume continues an interrupted run from its persisted storage.
import { existsSync, mkdirSync, readdirSync, readFileSync, writeFileSync, appendFileSync } from "node:fs";
import { basename, join } from "node:path";
import { parseArgs } from "node:util";
import { tokenizeExample } from "../../src/data/examples.ts";
import { ForwardModel } from "../../src/engine/forward.ts";
import { loraPairs, loraScaling } from "../../src/engine/lora/peft.ts";
import { loadModel } from "../../src/engine/model-files.ts";
import { ortNodeRuntime } from "../../src/engine/runtimes/ort-node.ts";
import { SOFT_PROMPT } from "../../src/engine/llama/graph.ts";
import { beforeCompletion, heldOutLoss, labelAccuracy, labeledPrompts } from "../../src/engine/train/evaluate.ts";
import { balancedAccuracy } from "../../src/data/metrics.ts";
import { offsiteLayout, plugIn } from "../../src/fl/offsite/emulator.ts";
import { emulate } from "../../src/fl/offsite/files.ts";
import { zoGlobal, zoInitial } from "../../src/fl/client/zo-update.ts";
import { bbtGlobalOf, softPromptLayout, softPromptOf } from "../../src/fl/bbt/fedbpt.ts";
import { initialAdapterRequest } from "../../src/fl/offsite/supply.ts";
import {
  bestPrompt,
  discreteItems,
  distributionsOf,
  localRowScorer,
  promptAccuracy,
  promptTokens,
} from "../../src/fl/prompt/discrete-round.ts";
import { decodeTensorFile } from "../../src/fl/tensor-file.ts";
import { SEED_SUMS } from "../../src/fl/version-tensors.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";
import { linePlotSvg } from "../../src/report/line-plot.ts";
import { formatTable } from "../../src/report/table.ts";
import { modelFingerprint, startEndpoint } from "../../workers/inference-endpoint/server.ts";
import { labelWordsOf } from "../../src/protocol/federation.ts";
import { LocalFederation, randomToken } from "../local-federation.ts";
import { descendantCpuSeconds } from "../process-cpu.ts";
import { dirSource, tokenizerFiles } from "../model-dir.ts";
import { parseRunConfig, type RunConfig } from "../run-config.ts";
import { runData } from "../run-data.ts";
import { UsageError } from "../usage.ts";
import { writeFiles } from "../write-files.ts";

export const runUsage = `fedflare run [--config FILE] [--out DIR] | fedflare run --resume DIR
  Runs a local federation (coordinator, aggregator Durable Object and client workers in workerd) and
  writes DIR (default runs/<id>/): config.json, metrics.jsonl, plot.svg and adapter/ (a PEFT folder, or
  for offsite-tuning the adapter layers). Split LoRA (method.fromLayer > 0) starts an inference endpoint
  for the trunk unless "trunk": "local". Without --config, the built-in default run (the default model,
  g2p over 4 clients, LoRA above layer 1 with the trunk at the endpoint).`;

const FED = "local";

interface RoundRecord {
  round: number;
  status: string;
  version: number;
  uploads: number;
  train_loss: number | null;
  heldout_loss: number;
  /** Classification tasks: the share of held-out examples whose label words are the most probable. */
  heldout_accuracy?: number | null;
  /** The same, as the mean per-label recall: a constant answer scores 1 / labels however skewed the data. */
  heldout_balanced_accuracy?: number | null;
  seconds: number;
  /** What a sampled client spent in the round (means over the clients that uploaded). */
  clients?: ClientCost;
}

interface ClientCost {
  /** The update's body, as uploaded. */
  upload_bytes: number;
  /** The version (or FedKSeed's per-seed changes) fetched to start the round. */
  download_bytes: number;
  /** Discrete prompts: rows scored at the completions API, and the requests they took. */
  api_rows?: number;
  api_requests?: number;
  /** CPU seconds of the workerd process (client workers and the aggregator's folds) per sampled client; null without /proc. */
  cpu_seconds: number | null;
}

type Scored = { loss: number; accuracy: number | null; balanced: number | null };

const scoreFields = (s: Scored) => ({ heldout_loss: s.loss, heldout_accuracy: s.accuracy, heldout_balanced_accuracy: s.balanced });

/** A round that failed leaves the model as it was: its scores are the last round's. */
const previous = (r: RoundRecord): Scored => ({
  loss: r.heldout_loss,
  accuracy: r.heldout_accuracy ?? null,
  balanced: r.heldout_balanced_accuracy ?? null,
});

/** The clients' costs of a round, from their job views: each upload's size and the metrics it declared. */
function clientCost(
  uploads: readonly { bytes: number; metrics: Record<string, number> }[],
  cpuSeconds: number | null,
  sampled: number,
): ClientCost | undefined {
  if (uploads.length === 0) return undefined;
  const metrics = uploads.map((u) => u.metrics);
  const mean = (f: (i: number) => number) => uploads.reduce((s, _, i) => s + f(i), 0) / uploads.length;
  const api =
    metrics[0]!.api_rows === undefined
      ? {}
      : { api_rows: mean((i) => metrics[i]!.api_rows ?? 0), api_requests: mean((i) => metrics[i]!.api_requests ?? 0) };
  return {
    upload_bytes: mean((i) => uploads[i]!.bytes),
    download_bytes: mean((i) => metrics[i]!.download_bytes ?? 0),
    ...api,
    cpu_seconds: cpuSeconds === null ? null : cpuSeconds / sampled,
  };
}

export async function run(args: string[]): Promise<void> {
  const { values } = parseArgs({
    args,
    options: { config: { type: "string" }, out: { type: "string" }, resume: { type: "string" } },
    strict: true,
  });
  if (values.resume && (values.config || values.out))
    throw new UsageError("--resume DIR takes the run's own config; do not combine it with --config or --out");
  const dir =
    values.resume ?? values.out ?? join("runs", new Date().toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-"));
  const configPath = values.resume ? join(dir, "config.json") : values.config;
  if (values.resume && !existsSync(configPath!)) throw new UsageError(`${dir} has no config.json: is it a run folder?`);
  const config: RunConfig = parseRunConfig(
    configPath ? JSON.parse(readFileSync(configPath, "utf8")) : {},
    configPath ?? "the default config",
  );
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, "config.json"), `${JSON.stringify(config, null, 2)}\n`);
  const keyFile = join(dir, "master.key");
  if (!existsSync(keyFile)) writeFileSync(keyFile, crypto.randomUUID());
  const masterKey = readFileSync(keyFile, "utf8");
  const log = (s: string) => process.stderr.write(`${s}\n`);
  const started = Date.now();

  const model = await loadModel(dirSource(config.model));
  const data = runData(config);
  const clients = data.partitions.map((partition, i) => ({ id: `c${i + 1}`, partition }));
  log(
    `${config.task}: ${clients.map((c) => `${c.id} ${c.partition.length}${data.keys[clients.indexOf(c)]!.length ? ` (${data.keys[clients.indexOf(c)]!.join("")})` : ""}`).join(", ")} examples; ${data.heldOut.length} held out`,
  );
  const modelFiles = new Map(
    readdirSync(config.model)
      .filter((f) => /\.(json|safetensors)$/.test(f))
      .map((f) => [f, new Uint8Array(readFileSync(join(config.model, f)))] as const),
  );
  const method = config.method;
  // Offsite-tuning: the clients get the emulator, and the federation starts from the owner's adapter.
  const emulated =
    method.type === "offsite" ? emulate(model.config, model.weights, method, basename(config.model), tokenizerFiles(config.model)) : null;
  if (emulated)
    log(
      `offsite-tuning: adapter layers ${JSON.stringify(emulated.description.adapter_layers)}, clients run the emulator's layers ${JSON.stringify(emulated.description.emulator_layers)}`,
    );
  if (method.type === "discrete" && !data.labels)
    throw new UsageError(`the discrete-prompt method scores label words: use a classification task (spam), not ${config.task}`);
  // The endpoint serves split LoRA's trunk, or the completions API discrete-prompt clients query, to
  // this run's clients only: they get its token.
  const endpointToken = randomToken();
  const endpoint =
    (method.type === "lora" && method.fromLayer > 0 && config.trunk === "endpoint") || method.type === "discrete"
      ? await startEndpoint({
          model,
          fingerprint: await modelFingerprint(async (f) => modelFiles.get(f) ?? null, [...modelFiles.keys()]),
          name: basename(config.model),
          port: 0,
          token: endpointToken,
        })
      : null;
  if (endpoint && method.type === "lora")
    log(`inference endpoint at ${endpoint.url} (${endpoint.provider}) serves the trunk: clients hold only layers ${method.fromLayer}+`);
  if (endpoint && method.type === "discrete")
    log(`inference endpoint at ${endpoint.url} (${endpoint.provider}) serves /v1/completions: clients hold only the tokenizer`);
  const endpointBindings = !endpoint
    ? {}
    : method.type === "discrete"
      ? { completionsUrl: `${endpoint.url}/v1` }
      : { trunkUrl: endpoint.url };
  log("starting the coordinator, the aggregator and the client workers in workerd");
  const fed = await LocalFederation.start({
    stateDir: join(dir, "state"),
    masterKey,
    clients,
    modelFiles: emulated?.emulator ?? modelFiles,
    federations: [FED],
    ...endpointBindings,
    ...(endpoint ? { endpointToken } : {}),
  }).catch(async (e: unknown) => {
    await endpoint?.close();
    throw e;
  });
  log(`dashboard: ${fed.url.href} (sign in with the viewer token ${fed.viewerToken})`);
  // Ctrl-C stops workerd cleanly; everything acknowledged is in the run's storage for --resume.
  // Prepended: Miniflare's own exit hook (registered first) exits at once.
  const interrupt = () => {
    log(`\ninterrupted: continue with  npx fedflare run --resume ${dir}`);
    void Promise.all([fed.dispose(), endpoint?.close()]).finally(() => process.exit(130));
  };
  process.prependOnceListener("SIGINT", interrupt);
  process.prependOnceListener("SIGTERM", interrupt);
  try {
    const api = async <T>(path: string, method = "GET", body?: unknown): Promise<T> => {
      const res = await fed.coordinator(path, body === undefined ? { method } : { method, body: JSON.stringify(body) });
      if (!res.ok) throw new Error(`${method} ${path}: ${res.status} ${await res.text()}`);
      return (await res.json()) as T;
    };
    const perRound = config.clientsPerRound ?? config.clients;
    const existing = await fed.coordinator(`/federations/${FED}`);
    if (existing.status === 404)
      await api("/federations", "POST", {
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
        minClients: Math.max(1, Math.ceil(perRound / 2)),
        local: config.local,
        deadlineSeconds: config.deadlineSeconds,
        seed: config.seed,
      });
    if (emulated && (await fed.coordinator(`/federations/${FED}/versions/0`)).status === 404) {
      const supply = await initialAdapterRequest(FED, fed.operatorToken, emulated.adapter.get("adapter_model.safetensors") as Uint8Array);
      const res = await fed.coordinator(supply.path, supply);
      if (!res.ok) throw new Error(`supplying the initial adapter: ${res.status} ${await res.text()}`);
    }

    const eos = model.config.eosTokenIds[0] ?? 0;
    const maxTokens = config.local.maxTokens ?? 64;
    const heldOut = data.heldOut.map((e) => tokenizeExample(e, model.tokenizer, eos, maxTokens));
    const labeled = data.labels ? labeledPrompts(data.heldOut) : [];
    // The held-out accuracy scores the method's label words, where it has them, for the task's labels.
    const verbalizer = "labelWords" in method && method.labelWords ? method : null;
    const words =
      verbalizer &&
      data.labels?.map((l) => {
        const i = verbalizer.labels!.indexOf(l);
        if (i < 0) throw new UsageError(`method.labels ${JSON.stringify(verbalizer.labels)} lack the task's label "${l}"`);
        return verbalizer.labelWords![i]!;
      });
    /** The global model at a version: the base with the LoRA adapter, or with the offsite adapter plugged in. */
    const globalModel = (adapter: TensorMap) => {
      const opts = { kind: "forward", quant: config.quant, nll: true } as const;
      if (method.type === "offsite")
        return ForwardModel.create(
          ortNodeRuntime(2),
          model.config,
          plugIn(model.config, model.weights, adapter, offsiteLayout(model.config.numLayers, method)),
          opts,
        );
      if (method.type === "fedbpt" || method.type === "discrete")
        throw new Error(`a ${method.type} version is a prompt: promptModel or the discrete scorer scores it`);
      if (method.type === "fedkseed") {
        // The version is the cumulative scalar per seed: the model is w0 - lr * sum_j c_j z_j.
        const cumulative = new Map([...adapter.get(SEED_SUMS)!.entries()].filter(([, c]) => c !== 0));
        const params = zoGlobal(
          zoInitial(model.config, model.weights, method, config.seed),
          { method, federationSeed: config.seed, local: config.local },
          cumulative,
        );
        const t = method.trains;
        if (t.type === "full") return ForwardModel.create(ortNodeRuntime(2), model.config, new Map([...model.weights, ...params]), opts);
        return ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, {
          ...opts,
          lora: loraPairs(params, t.r, loraScaling({ r: t.r, alpha: t.alpha, useRslora: t.rslora })),
        });
      }
      const lora = loraPairs(adapter, method.r, loraScaling({ r: method.r, alpha: method.alpha, useRslora: method.rslora }));
      return ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, { ...opts, lora });
    };
    /** FedBPT: the base model with the version's soft prompt p0 + A z as an input. */
    const promptModel = async (adapter: TensorMap) => {
      if (method.type !== "fedbpt") return null;
      const space = { promptTokens: method.promptTokens, dimension: method.dimension, seed: config.seed };
      const prompt = softPromptOf(model.config, model.weights, space)(bbtGlobalOf(adapter).mean);
      const { inputs, after } = softPromptLayout(model.config, method.promptTokens, method.placement);
      const forward = await ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, {
        kind: "forward",
        quant: config.quant,
        nll: true,
        inputs,
      });
      return { forward, params: new Map([[SOFT_PROMPT, prompt]]), after };
    };
    /** Discrete prompts: the version's most probable prompt before each held-out example; the loss is the label words' NLL per token. */
    const scoreDiscrete = async (adapter: TensorMap) => {
      if (method.type !== "discrete") return null;
      const forward = await ForwardModel.create(ortNodeRuntime(2), model.config, model.weights, {
        kind: "forward",
        quant: config.quant,
        nll: true,
      });
      const t = promptTokens(model.tokenizer, method.phrases, labelWordsOf(method), method.placement);
      const r = await promptAccuracy(
        localRowScorer(forward),
        t,
        bestPrompt(distributionsOf(adapter, method)),
        discreteItems(model.tokenizer, labeled, method.labels),
        maxTokens,
      );
      await forward.release();
      return {
        loss: r.labelNll,
        accuracy: r.accuracy,
        balanced: balancedAccuracy(
          r.predicted.map((k) => method.labels[k]!),
          labeled.map((x) => x.label),
        ),
      };
    };
    const evaluate = async (version: number): Promise<Scored> => {
      const adapter: TensorMap = decodeTensorFile(
        new Uint8Array(await (await fed.coordinator(`/federations/${FED}/versions/${version}`)).arrayBuffer()),
        `version ${version}`,
      ).tensors;
      const discrete = await scoreDiscrete(adapter);
      if (discrete) return discrete;
      const { forward, params, after } = (await promptModel(adapter)) ?? {
        forward: await globalModel(adapter),
        params: undefined,
        after: [],
      };
      const { loss } = await heldOutLoss(
        forward,
        heldOut.map((e) => beforeCompletion(e, after)),
        8,
        undefined,
        params,
      );
      const scored = data.labels
        ? await labelAccuracy(forward, model.tokenizer, labeled, data.labels, {
            maxTokens,
            after,
            ...(params ? { params } : {}),
            ...(words ? { words } : {}),
          })
        : null;
      await forward.release();
      return {
        loss,
        accuracy: scored?.accuracy ?? null,
        balanced: scored
          ? balancedAccuracy(
              scored.predicted,
              labeled.map((x) => x.label),
            )
          : null,
      };
    };

    const metricsFile = join(dir, "metrics.jsonl");
    const records: RoundRecord[] = existsSync(metricsFile)
      ? readFileSync(metricsFile, "utf8")
          .trim()
          .split("\n")
          .filter(Boolean)
          .map((l) => JSON.parse(l) as RoundRecord)
      : [];
    if (records.length === 0) {
      // Round 0: the base model (version 0 is PEFT's initialisation, B = 0, or the owner's own adapter).
      const zero = await evaluate(0);
      const base: RoundRecord = { round: 0, status: "base", version: 0, uploads: 0, train_loss: null, ...scoreFields(zero), seconds: 0 };
      records.push(base);
      appendFileSync(metricsFile, `${JSON.stringify(base)}\n`);
    }
    log(`held-out loss of the base model: ${records[0]!.heldout_loss.toFixed(4)}`);
    // Rounds that ended while the runner was not watching (an interrupted run): record them now.
    type Summary = {
      round: number;
      status: string;
      uploads: number;
      openedAt: number;
      closedAt: number | null;
      result: { version?: number; metrics?: Record<string, number> } | null;
    };
    for (const s of await api<Summary[]>(`/federations/${FED}/metrics`)) {
      if (s.status === "open" || records.some((r) => r.round === s.round)) continue;
      const version = s.result?.version ?? records.at(-1)!.version;
      const scored = s.status === "closed" ? await evaluate(version) : previous(records.at(-1)!);
      const record: RoundRecord = {
        round: s.round,
        status: s.status,
        version,
        uploads: s.uploads,
        train_loss: s.result?.metrics?.train_loss ?? null,
        ...scoreFields(scored),
        seconds: ((s.closedAt ?? s.openedAt) - s.openedAt) / 1000,
      };
      records.push(record);
      appendFileSync(metricsFile, `${JSON.stringify(record)}\n`);
    }
    let state = await api<{ roundsDone: number; openRound: number | null; version: number }>(`/federations/${FED}`);
    while (state.roundsDone < config.rounds || state.openRound !== null) {
      const roundStart = Date.now();
      const cpuStart = descendantCpuSeconds("workerd");
      const round = state.openRound ?? (await api<{ round: number }>(`/federations/${FED}/rounds`, "POST")).round;
      const info = await api<{ sampled: string[] }>(`/federations/${FED}/rounds/${round}`);
      for (const id of info.sampled) await fed.client(id, "/tasks", { method: "POST", body: JSON.stringify({ federationId: FED, round }) });
      let shown = "";
      let r: { status: string; uploads: number; result: { version?: number; metrics?: Record<string, number>; reason?: string } | null };
      for (;;) {
        r = await api(`/federations/${FED}/rounds/${round}`);
        const jobs = await Promise.all(
          info.sampled.map(async (id) => ({
            id,
            job: (await (await fed.client(id, `/tasks/${FED}/${round}`)).json()) as { status: string; stepsDone: number },
          })),
        );
        const line = `round ${round}/${config.rounds}  ${jobs.map(({ id, job }) => `${id} ${job.status === "training" ? `${job.stepsDone}/${config.local.steps}` : job.status}`).join("  ")}  uploads ${r.uploads}/${info.sampled.length}`;
        if (line !== shown) {
          shown = line;
          log(line);
        }
        if (r.status !== "open") break;
        await new Promise((res) => setTimeout(res, 500));
      }
      const cpuEnd = descendantCpuSeconds("workerd");
      // The clients' job views give each upload's size and declared metrics (no route hands out an upload).
      type Job = { status: string; uploadBytes: number | null; uploadMetrics: Record<string, number> | null };
      const views = await Promise.all(
        info.sampled.map(async (id) => (await (await fed.client(id, `/tasks/${FED}/${round}`)).json()) as Job),
      );
      const uploaded = views
        .filter((j) => j.status === "uploaded" && j.uploadBytes !== null)
        .map((j) => ({ bytes: j.uploadBytes!, metrics: j.uploadMetrics ?? {} }));
      const cost = clientCost(uploaded, cpuStart === null || cpuEnd === null ? null : cpuEnd - cpuStart, info.sampled.length);
      state = await api(`/federations/${FED}`);
      const scored = r.status === "closed" ? await evaluate(state.version) : previous(records.at(-1)!);
      const record: RoundRecord = {
        round,
        status: r.status,
        version: state.version,
        uploads: r.uploads,
        train_loss: r.result?.metrics?.train_loss ?? null,
        ...scoreFields(scored),
        seconds: (Date.now() - roundStart) / 1000,
        ...(cost ? { clients: cost } : {}),
      };
      records.push(record);
      appendFileSync(metricsFile, `${JSON.stringify(record)}\n`);
      log(
        `round ${round} ${r.status}: train loss ${record.train_loss?.toFixed(4) ?? "-"}, held-out loss ${scored.loss.toFixed(4)}${scored.accuracy === null ? "" : `, accuracy ${(100 * scored.accuracy).toFixed(1)} %`} (${record.seconds.toFixed(1)} s)`,
      );
    }

    const adapterDir = join(dir, "adapter");
    const final = new Uint8Array(await (await fed.coordinator(`/federations/${FED}/versions/${state.version}`)).arrayBuffer());
    writeFiles(adapterDir, [
      ["adapter_config.json", await (await fed.coordinator(`/federations/${FED}/versions/${state.version}/adapter_config.json`)).text()],
      ["adapter_model.safetensors", final],
    ]);
    const points = (f: (r: RoundRecord) => number | null) => records.filter((r) => f(r) !== null).map((r) => [r.round, f(r)!] as const);
    writeFileSync(
      join(dir, "plot.svg"),
      linePlotSvg(
        [
          { name: "held-out loss", points: points((r) => r.heldout_loss), color: "#d62728" },
          { name: "clients' train loss (weighted)", points: points((r) => r.train_loss), color: "#1f77b4" },
        ],
        {
          title: `fedflare run: ${config.task}, ${config.clients} clients, ${config.strategy.name}`,
          xLabel: "round",
          yLabel: "loss (nats per token)",
          integerX: true,
        },
      ),
    );
    const withAccuracy = data.labels !== undefined;
    const table = formatTable(
      ["round", "status", "uploads", "train loss", "held-out loss", ...(withAccuracy ? ["held-out accuracy %"] : []), "seconds"],
      records.map((r) => [
        r.round,
        r.status,
        r.uploads,
        r.train_loss?.toFixed(4) ?? "-",
        r.heldout_loss.toFixed(4),
        ...(withAccuracy ? [r.heldout_accuracy == null ? "-" : (100 * r.heldout_accuracy).toFixed(1)] : []),
        r.seconds.toFixed(1),
      ]),
    );
    const use =
      method.type === "lora"
        ? `npx fedflare score --model ${config.model} --adapter ${adapterDir} --text "..."`
        : method.type === "offsite"
          ? `npx fedflare offsite plug-in --model ${config.model} --adapter ${adapterDir} --out DIR`
          : method.type === "fedkseed"
            ? "the cumulative scalar per seed; the model is w0 - lr * sum_j c_j z_j (src/fl/client/zo-update.ts zoGlobal)"
            : method.type === "fedbpt"
              ? "the mean z and squared step size; the soft prompt is p0 + A z (src/fl/bbt/fedbpt.ts)"
              : `the slots' distributions over the phrases; the most probable prompt: "${bestPrompt(
                  distributionsOf(decodeTensorFile(final, "adapter").tensors, method),
                )
                  .map((k) => method.phrases[k])
                  .join(" ")}"`;
    process.stdout.write(
      [table, "", `run folder: ${dir} (${((Date.now() - started) / 1000).toFixed(0)} s)`, `adapter:    ${adapterDir}  (${use})`, ""].join(
        "\n",
      ),
    );
  } finally {
    process.off("SIGINT", interrupt);
    process.off("SIGTERM", interrupt);
    await fed.dispose();
    await endpoint?.close();
  }
}
