import type { GradRule } from "../rule.ts";

/**
 * y = x * mask / (1 - ratio): the gradient takes the same mask and scale. Needs the node's mask output
 * (Dropout's second output), which the forward must request.
 */
export const dropout: GradRule = {
  opType: "Dropout",
  grad: (c) => {
    if (c.node.outputs.length < 2) throw new Error(`Dropout ${c.node.name}: request its mask output (2 outputs) to differentiate it`);
    const g = c.gradOutput(0)!;
    const ratio = c.node.inputs[1] ? c.input(1) : c.g.scalar(0.5);
    const scale = c.g.op("Div", [c.g.scalar(1), c.g.op("Sub", [c.g.scalar(1), ratio])]);
    const kept = c.g.op("Cast", [c.output(1)], { to: c.g.floatType });
    // In inference mode the mask is all ones and the output is the input: the gradient passes through.
    const training = c.node.inputs[2] ? c.g.op("Cast", [c.input(2)], { to: c.g.floatType }) : c.g.scalar(0);
    const factor = c.g.op("Add", [c.g.op("Mul", [training, scale]), c.g.op("Sub", [c.g.scalar(1), training])]);
    return [c.g.op("Mul", [g, c.g.op("Mul", [kept, factor])]), null, null];
  },
};
