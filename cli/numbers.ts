// Numeric command-line values, checked with messages that name the option.
import { UsageError } from "./usage.ts";

export function number(name: string, raw: string, min: number, max = Infinity, integer = false): number {
  const n = Number(raw);
  if (raw.trim() === "" || !Number.isFinite(n) || n < min || n > max || (integer && !Number.isInteger(n)))
    throw new UsageError(`--${name} must be ${integer ? "an integer" : "a number"} in [${min}, ${max}], got "${raw}"`);
  return n;
}

export const positiveInt = (name: string, raw: string, min = 1) => number(name, raw, min, Infinity, true);
export const positiveNumber = (name: string, raw: string) => number(name, raw, Number.MIN_VALUE);
