// Benchmark results as JSON under bench/results/, with the machine they were measured on: numbers from
// different machines (or different runs on a noisy one) are not comparable without it.
import { mkdir, writeFile } from "node:fs/promises";
import os from "node:os";

export interface MachineInfo {
  cpu: string;
  cores: number;
  memoryGiB: number;
  platform: string;
  arch: string;
  node: string;
  date: string;
}

export function machineInfo(): MachineInfo {
  return {
    cpu: os.cpus()[0]?.model ?? "unknown",
    cores: os.cpus().length,
    memoryGiB: Math.round((os.totalmem() / 2 ** 30) * 10) / 10,
    platform: os.platform(),
    arch: os.arch(),
    node: process.version,
    date: new Date().toISOString(),
  };
}

/** Writes bench/results/<name>.json as { machine, ...data }; returns the path. */
export async function writeResults(name: string, data: Record<string, unknown>): Promise<string> {
  const dir = new URL("../results/", import.meta.url);
  await mkdir(dir, { recursive: true });
  const file = new URL(`${name}.json`, dir);
  await writeFile(file, `${JSON.stringify({ machine: machineInfo(), ...data }, null, 2)}\n`);
  return file.pathname;
}
