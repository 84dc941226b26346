// Numeric command-line values, checked with messages that name the option.
import { availableParallelism } from "node:os";
import { UsageError } from "./usage.ts";

export function number(name: string, raw: string, min: number, max = Infinity, integer = false): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"} in [${min}, ${max}], got "${raw}"`);
  return n;
}

export const positiveInt = (name: string, raw: string, min = 1) => number(name, raw, min, Infinity, true);
export const positiveNumber = (name: string, raw: string) => number(name, raw, Number.MIN_VALUE);

/** Two threads, or one on a one-core machine. */
export const DEFAULT_THREADS = String(Math.min(2, availableParallelism()));

/** Threads for onnxruntime: at most this machine's cores (more only contend). */
export const threads = (raw: string) => number("threads", raw, 1, availableParallelism(), true);

/** A TCP port to listen on (0: any free one). */
export const port = (raw: string) => number("port", raw, 0, 65535, true);
