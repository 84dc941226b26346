// Reverse-mode differentiation over an ONNX graph under construction: walks the nodes backwards from a
// scalar loss, sums the gradients of values used more than once, skips what needs no gradient, and
// emits each op's gradient with its rule. Broadcast gradients are summed back (numpy rules) in one
// place, here, as tinygrad does.
import type { GraphBuilder } from "../onnx/builder.ts";
import type { AttributeValue } from "../onnx/proto.ts";
import { inferRanks } from "../onnx/ranks.ts";
import { NON_DIFFERENTIABLE, RULE_BY_OP } from "./registry.ts";
import type { GradContext } from "./rule.ts";

export class MissingGradientError extends Error {
  override readonly name = "MissingGradientError";
}

/** Adds nodes computing d loss / d w for each w in `wrt`; returns the gradient value names. */
export function addGradients(g: GraphBuilder, loss: string, wrt: readonly string[]): Map<string, string> {
  const { rank } = inferRanks(g.graph());
  if (rank.get(loss) !== 0) throw new Error(`the loss "${loss}" must be a scalar (rank 0), not rank ${rank.get(loss)}`);
  return addGradientsFrom(g, new Map([[loss, g.scalar(1)]]), wrt);
}

/**
 * The same from given gradients of intermediate values (`seeds`: value -> its gradient), for losses
 * whose gradient is cheaper written directly than differentiated (e.g. softmax cross-entropy).
 */
export function addGradientsFrom(g: GraphBuilder, seeds: ReadonlyMap<string, string>, wrt: readonly string[]): Map<string, string> {
  const { rank } = inferRanks(g.graph());
  const forward = [...g.nodes];

  // Values that depend on a trainable tensor.
  const needs = new Set<string>(wrt);
  for (const n of forward)
    if (!NON_DIFFERENTIABLE.has(n.opType) && n.inputs.some((i) => needs.has(i))) for (const o of n.outputs) needs.add(o);
  for (const v of seeds.keys()) if (!needs.has(v)) throw new Error(`"${v}" does not depend on any of ${JSON.stringify(wrt)}`);

  const contributions = new Map<string, string[]>([...seeds].map(([v, grad]) => [v, [grad]]));
  const shapes = new Map<string, string>();
  const shapeOf = (v: string) => {
    let s = shapes.get(v);
    if (!s) {
      s = g.op("Shape", [v]);
      shapes.set(v, s);
    }
    return s;
  };
  // Gradients used more than once are summed once, when first read.
  const total = (v: string): string | null => {
    const parts = contributions.get(v);
    if (!parts) return null;
    if (parts.length > 1) contributions.set(v, [g.op("Sum", parts)]);
    return contributions.get(v)![0]!;
  };

  for (const node of forward.toReversed()) {
    const gradOutputs = node.outputs.map(total);
    const inputNeeds = node.inputs.map((i) => needs.has(i));
    if (!inputNeeds.some(Boolean) || gradOutputs.every((x) => x === null) || NON_DIFFERENTIABLE.has(node.opType)) continue;
    const rule = RULE_BY_OP.get(node.opType);
    if (!rule)
      throw new MissingGradientError(
        `no gradient rule for op ${node.opType} (node ${node.name}); add one under src/engine/autodiff/rules/ or keep its inputs frozen`,
      );
    const ctx: GradContext = {
      g,
      node,
      input: (i) => node.inputs[i]!,
      output: (i) => node.outputs[i]!,
      gradOutput: (i) => gradOutputs[i] ?? null,
      needsGrad: (i) => inputNeeds[i] ?? false,
      attr: <T extends AttributeValue>(name: string, fallback: T) =>
        (node.attributes.find(([k]) => k === name)?.[1] as T | undefined) ?? fallback,
      rank: (v) => {
        const r = rank.get(v);
        if (r === undefined) throw new Error(`rank of "${v}" is unknown`);
        return r;
      },
      shape: shapeOf,
      unbroadcast: (grad, i) => {
        const x = node.inputs[i]!;
        const extra = rank.get(node.outputs[0]!)! - rank.get(x)!;
        let out = grad;
        if (extra > 0) out = g.op("ReduceSum", [out, g.ints(...Array.from({ length: extra }, (_, k) => k))], { keepdims: 0 });
        // Axes where the input has size 1 (found at run time: dims may be symbolic) are summed, keeping them.
        const ones = g.op("Reshape", [g.op("NonZero", [g.op("Equal", [shapeOf(x), g.ints(...Array(rank.get(x)!).fill(1))])]), g.ints(-1)]);
        return g.op("ReduceSum", [out, ones], { keepdims: 1, noop_with_empty_axes: 1 });
      },
    };
    const grads = rule.grad(ctx);
    grads.forEach((gi, i) => {
      if (gi === null || !inputNeeds[i]) return;
      const input = node.inputs[i]!;
      contributions.set(input, [...(contributions.get(input) ?? []), gi]);
    });
  }
  return new Map(wrt.map((w) => [w, total(w) ?? g.zeros(shapeOf(w))]));
}
