// Ops that move data without computing: their gradients move it back.
import type { GradRule } from "../rule.ts";

const reshapeBack: GradRule["grad"] = (c) => [c.g.op("Reshape", [c.gradOutput(0)!, c.shape(c.input(0))]), null];

export const reshape: GradRule = { opType: "Reshape", grad: reshapeBack };
export const unsqueeze: GradRule = { opType: "Unsqueeze", grad: reshapeBack };
export const squeeze: GradRule = { opType: "Squeeze", grad: reshapeBack };

export const transpose: GradRule = {
  opType: "Transpose",
  grad: (c) => {
    const perm = c.attr<readonly number[]>("perm", [...Array(c.rank(c.input(0))).keys()].reverse());
    const inverse = perm.map((_, i) => perm.indexOf(i));
    return [c.g.op("Transpose", [c.gradOutput(0)!], { perm: inverse })];
  },
};

export const expand: GradRule = { opType: "Expand", grad: (c) => [c.unbroadcast(c.gradOutput(0)!, 0), null] };

/** The gradient is split along the axis in the sizes of the inputs. */
export const concat: GradRule = {
  opType: "Concat",
  grad: (c) => {
    const axis = c.attr("axis", 0);
    const n = c.node.inputs.length;
    const sizes = c.g.op(
      "Concat",
      c.node.inputs.map((x) => c.g.op("Gather", [c.shape(x), c.g.ints(axis)], { axis: 0 })),
      { axis: 0 },
    );
    return c.g.opN("Split", [c.gradOutput(0)!, sizes], { axis }, { outputs: n });
  },
};

/** The pieces' gradients concatenated; a piece that does not reach the loss contributes zeros. */
export const split: GradRule = {
  opType: "Split",
  grad: (c) => {
    const parts = c.node.outputs.map((o, i) => c.gradOutput(i) ?? c.g.zeros(c.shape(o)));
    return [c.g.op("Concat", parts, { axis: c.attr("axis", 0) }), null];
  },
};
