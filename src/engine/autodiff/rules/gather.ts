// Indexing: the gradient is scattered back to the indexed positions, adding where an index repeats.
import type { GradRule } from "../rule.ts";

export const gather: GradRule = {
  opType: "Gather",
  grad: (c) => {
    if (c.attr("axis", 0) !== 0) throw new Error(`Gather ${c.node.name}: gradients are implemented for axis 0 only`);
    const zeros = c.g.zeros(c.shape(c.input(0)));
    const indices = c.g.op("Unsqueeze", [c.input(1), c.g.ints(-1)]);
    return [c.g.op("ScatterND", [zeros, indices, c.gradOutput(0)!], { reduction: "add" }), null];
  },
};

export const gatherElements: GradRule = {
  opType: "GatherElements",
  grad: (c) => {
    const zeros = c.g.zeros(c.shape(c.input(0)));
    return [c.g.op("ScatterElements", [zeros, c.input(1), c.gradOutput(0)!], { axis: c.attr("axis", 0), reduction: "add" }), null];
  },
};
