// Reductions: the gradient is spread back over the reduced axes (and divided by their size for a mean).
import type { GradContext, GradRule } from "../rule.ts";

/** GO(0) with the reduced axes restored as size-1 dims, expanded to the input's shape. */
function spread(c: GradContext): string {
  let g = c.gradOutput(0)!;
  // Without an axes input every axis was reduced: the scalar gradient expands as it is.
  if (c.attr<number>("keepdims", 1) === 0 && c.node.inputs[1]) g = c.g.op("Unsqueeze", [g, c.input(1)]);
  return c.g.op("Expand", [g, c.shape(c.input(0))]);
}

export const reduceSum: GradRule = { opType: "ReduceSum", grad: (c) => [spread(c), null] };

export const reduceMean: GradRule = {
  opType: "ReduceMean",
  grad: (c) => {
    // Each input element's share is 1 / (elements averaged) = size(output) / size(input).
    const size = (v: string) => c.g.op("Cast", [c.g.op("Size", [v])], { to: c.g.floatType });
    return [c.g.op("Mul", [spread(c), c.g.op("Div", [size(c.output(0)), size(c.input(0))])]), null];
  },
};
