// The vocabulary of a gradient rule, after ONNX Runtime's gradient builder: a rule sees its node's
// inputs I(i), outputs O(i), the gradients of its outputs GO(i) and which inputs need a gradient, and
// emits nodes computing the gradients of its inputs GI(i).
import type { AttributeValue, NodeProto } from "../onnx/proto.ts";
import type { GraphBuilder } from "../onnx/builder.ts";

export interface GradContext {
  readonly g: GraphBuilder;
  readonly node: NodeProto;
  /** I(i): the node's i-th input. */
  input(i: number): string;
  /** O(i): the node's i-th output. */
  output(i: number): string;
  /** GO(i): the gradient of output i, or null where it is zero (the output does not reach the loss). */
  gradOutput(i: number): string | null;
  /** Whether input i needs a gradient: a rule may skip the work for inputs that do not. */
  needsGrad(i: number): boolean;
  attr<T extends AttributeValue>(name: string, fallback: T): T;
  rank(value: string): number;
  /** A Shape node of `value` (one per value). */
  shape(value: string): string;
  /** Sums a gradient of the (broadcast) output back to input i's shape (numpy broadcasting rules). */
  unbroadcast(grad: string, i: number): string;
}

/** A rule returns one entry per input: its gradient, or null for none. */
export interface GradRule {
  readonly opType: string;
  grad(ctx: GradContext): (string | null)[];
}
