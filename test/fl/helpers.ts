import { expect } from "vitest";
import { FlError, type FlErrorCode } from "../../src/fl/errors.ts";
import type { TensorMap } from "../../src/fl/tensors.ts";

/** A TensorMap from plain arrays, in the order given. */
export function tm(values: Record<string, number[]>): TensorMap {
  return new Map(Object.entries(values).map(([name, xs]) => [name, new Float32Array(xs)]));
}

/** Plain arrays from a TensorMap, for toEqual on exactly representable values. */
export function plain(tensors: TensorMap): Record<string, number[]> {
  return Object.fromEntries([...tensors].map(([name, t]) => [name, [...t]]));
}

/** Same names in the same order, every element within `tol` (absolute) of the expected double. */
export function expectTensors(actual: TensorMap, expected: Record<string, number[]>, tol = 1e-6): void {
  expect([...actual.keys()]).toEqual(Object.keys(expected));
  for (const [name, xs] of Object.entries(expected)) {
    const t = actual.get(name)!;
    expect(t.length, name).toBe(xs.length);
    xs.forEach((x, i) => {
      const got = t[i]!;
      if (!(Math.abs(got - x) <= tol)) expect.fail(`${name}[${i}] = ${got}, expected ${x} (±${tol})`);
    });
  }
}

/** Runs `fn`, expecting an FlError with `code` whose message contains every part of `parts`. */
export function expectFlError(fn: () => unknown, code: FlErrorCode, ...parts: string[]): FlError {
  let caught: unknown;
  try {
    fn();
  } catch (e) {
    caught = e;
  }
  expect(caught, "expected an FlError to be thrown").toBeInstanceOf(FlError);
  const err = caught as FlError;
  expect(err.code).toBe(code);
  for (const part of parts) expect(err.message).toContain(part);
  return err;
}

/** "accepted" when `run` returns, else the message it threw: for tables of refusals. */
export function refusalOf(run: () => unknown): string {
  try {
    run();
    return "accepted";
  } catch (e) {
    return (e as Error).message;
  }
}
