import type { GradRule } from "../rule.ts";

/** y = softmax(x): dx = y (g - sum(g y)) along the axis. */
export const softmax: GradRule = {
  opType: "Softmax",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    const y = c.output(0);
    const axes = c.g.ints(c.attr("axis", -1));
    return [c.g.op("Mul", [y, c.g.op("Sub", [g, c.g.op("ReduceSum", [c.g.op("Mul", [g, y]), axes], { keepdims: 1 })])])];
  },
};

/** y = log softmax(x): dx = g - exp(y) sum(g) along the axis. */
export const logSoftmax: GradRule = {
  opType: "LogSoftmax",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    const axes = c.g.ints(c.attr("axis", -1));
    return [c.g.op("Sub", [g, c.g.op("Mul", [c.g.op("Exp", [c.output(0)]), c.g.op("ReduceSum", [g, axes], { keepdims: 1 })])])];
  },
};
