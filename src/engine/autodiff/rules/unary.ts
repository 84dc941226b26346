// Unary elementwise ops, written with their output where that saves recomputation.
import type { GradRule } from "../rule.ts";

export const neg: GradRule = { opType: "Neg", grad: (c) => [c.g.op("Neg", [c.gradOutput(0)!])] };

export const identity: GradRule = { opType: "Identity", grad: (c) => [c.gradOutput(0)] };

/** Only float-to-float casts carry a gradient; casts from integers have no differentiable input. */
export const cast: GradRule = { opType: "Cast", grad: (c) => [c.gradOutput(0)] };

/** d sqrt(x) = g / (2 y). */
export const sqrt: GradRule = {
  opType: "Sqrt",
  grad: (c) => [c.g.op("Div", [c.g.op("Mul", [c.gradOutput(0)!, c.g.scalar(0.5)]), c.output(0)])],
};

/** d (1/x) = -g y^2. */
export const reciprocal: GradRule = {
  opType: "Reciprocal",
  grad: (c) => [c.g.op("Neg", [c.g.op("Mul", [c.gradOutput(0)!, c.g.op("Mul", [c.output(0), c.output(0)])])])],
};

/** d sigmoid(x) = g y (1 - y). */
export const sigmoid: GradRule = {
  opType: "Sigmoid",
  grad: (c) => [c.g.op("Mul", [c.gradOutput(0)!, c.g.op("Mul", [c.output(0), c.g.op("Sub", [c.g.scalar(1), c.output(0)])])])],
};

export const exp: GradRule = { opType: "Exp", grad: (c) => [c.g.op("Mul", [c.gradOutput(0)!, c.output(0)])] };

export const sin: GradRule = { opType: "Sin", grad: (c) => [c.g.op("Mul", [c.gradOutput(0)!, c.g.op("Cos", [c.input(0)])])] };

export const cos: GradRule = {
  opType: "Cos",
  grad: (c) => [c.g.op("Neg", [c.g.op("Mul", [c.gradOutput(0)!, c.g.op("Sin", [c.input(0)])])])],
};
