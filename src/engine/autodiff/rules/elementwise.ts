// Binary elementwise ops with numpy broadcasting: each gradient is summed back to its input's shape.
import type { GradRule } from "../rule.ts";

export const add: GradRule = {
  opType: "Add",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    return [c.needsGrad(0) ? c.unbroadcast(g, 0) : null, c.needsGrad(1) ? c.unbroadcast(g, 1) : null];
  },
};

export const sub: GradRule = {
  opType: "Sub",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    return [c.needsGrad(0) ? c.unbroadcast(g, 0) : null, c.needsGrad(1) ? c.unbroadcast(c.g.op("Neg", [g]), 1) : null];
  },
};

export const mul: GradRule = {
  opType: "Mul",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    return [
      c.needsGrad(0) ? c.unbroadcast(c.g.op("Mul", [g, c.input(1)]), 0) : null,
      c.needsGrad(1) ? c.unbroadcast(c.g.op("Mul", [g, c.input(0)]), 1) : null,
    ];
  },
};

/** y = a / b: da = g / b, db = -g y / b. */
export const div: GradRule = {
  opType: "Div",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    const b = c.input(1);
    return [
      c.needsGrad(0) ? c.unbroadcast(c.g.op("Div", [g, b]), 0) : null,
      c.needsGrad(1) ? c.unbroadcast(c.g.op("Neg", [c.g.op("Div", [c.g.op("Mul", [g, c.output(0)]), b])]), 1) : null,
    ];
  },
};

/** Where(cond, a, b): the gradient goes to whichever side was chosen. */
export const where: GradRule = {
  opType: "Where",
  grad: (c) => {
    const g = c.gradOutput(0)!;
    const zero = c.g.scalar(0);
    return [
      null,
      c.needsGrad(1) ? c.unbroadcast(c.g.op("Where", [c.input(0), g, zero]), 1) : null,
      c.needsGrad(2) ? c.unbroadcast(c.g.op("Where", [c.input(0), zero, g]), 2) : null,
    ];
  },
};
