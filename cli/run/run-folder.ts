// A run's folder (runs/<id>/ by default): config.json, master.key, metrics.jsonl (a RoundRecord a line,
// appended as rounds end), state/ (workerd's storage), plot.svg and adapter/. Everything --resume needs
// to continue a run is in it.
import { appendFileSync, existsSync, mkdirSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { parseRunConfig, type RunConfig } from "../run-config.ts";
import { UsageError } from "../usage.ts";
import type { RoundRecord } from "./report.ts";

/** A new run's folder: runs/ and the time it starts, to the second. */
export function newRunDir(now = new Date()): string {
  return join("runs", now.toISOString().replace(/[-:]/g, "").replace(/\..*/, "").replace("T", "-"));
}

/** The run config in `file` (validated), or the default run's without one. */
export function readRunConfig(file: string | undefined): RunConfig {
  return parseRunConfig(file ? jsonOf(readFileSync(file, "utf8"), file) : {}, file ?? "the default config");
}

/** `text` parsed, or a usage error naming `where`. */
function jsonOf(text: string, where: string): unknown {
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new UsageError(`${where} is not valid JSON: ${(e as Error).message}`);
  }
}

/** The config of the run in `dir`, to resume it. */
export function resumedConfig(dir: string): RunConfig {
  const file = join(dir, "config.json");
  if (!existsSync(file)) throw new UsageError(`${dir} has no config.json: is it a run folder?`);
  return readRunConfig(file);
}

export class RunFolder {
  readonly dir: string;
  readonly config: RunConfig;
  /** The local coordinator's master key, kept so a resumed run's clients keep their secrets. */
  readonly masterKey: string;
  /** The rounds recorded so far (round 0 first: the starting version). */
  readonly records: RoundRecord[];

  private constructor(dir: string, config: RunConfig, masterKey: string, records: RoundRecord[]) {
    this.dir = dir;
    this.config = config;
    this.masterKey = masterKey;
    this.records = records;
  }

  /**
   * Opens `dir` for a run of `config`, creating it, or finding what an interrupted run of it left; a folder
   * holding another config's run is refused, not mixed into.
   */
  static open(dir: string, config: RunConfig): RunFolder {
    mkdirSync(dir, { recursive: true });
    const file = join(dir, "config.json");
    const text = `${JSON.stringify(config, null, 2)}\n`;
    if (existsSync(file) && readFileSync(file, "utf8") !== text)
      throw new UsageError(`${dir} holds a run of another config: continue it with --resume ${dir}, or give a new --out`);
    writeFileSync(file, text);
    const keyFile = join(dir, "master.key");
    if (!existsSync(keyFile)) writeFileSync(keyFile, crypto.randomUUID());
    const metrics = join(dir, "metrics.jsonl");
    const records = existsSync(metrics)
      ? readFileSync(metrics, "utf8")
          .trim()
          .split("\n")
          .map((l, i) => (l ? (jsonOf(l, `${metrics}:${i + 1}`) as RoundRecord) : null))
          .filter((r) => r !== null)
      : [];
    return new RunFolder(dir, config, readFileSync(keyFile, "utf8"), records);
  }

  get stateDir(): string {
    return join(this.dir, "state");
  }

  get adapterDir(): string {
    return join(this.dir, "adapter");
  }

  /** The last round recorded. */
  last(): RoundRecord {
    const r = this.records.at(-1);
    if (!r) throw new Error(`${this.dir}: no round recorded yet`);
    return r;
  }

  /** Records a round, in memory and in metrics.jsonl. */
  append(record: RoundRecord): void {
    this.records.push(record);
    appendFileSync(join(this.dir, "metrics.jsonl"), `${JSON.stringify(record)}\n`);
  }

  write(name: string, content: string): void {
    writeFileSync(join(this.dir, name), content);
  }
}
