// Every gradient rule, by op type, and the ops that carry no gradient at all.
import type { GradRule } from "./rule.ts";
import { dropout } from "./rules/dropout.ts";
import { add, div, mul, sub, where } from "./rules/elementwise.ts";
import { gather, gatherElements } from "./rules/gather.ts";
import { gemm, matMul } from "./rules/matmul.ts";
import { reduceMean, reduceSum } from "./rules/reduce.ts";
import { concat, expand, reshape, split, squeeze, transpose, unsqueeze } from "./rules/shape-ops.ts";
import { logSoftmax, softmax } from "./rules/softmax.ts";
import { cast, cos, exp, identity, neg, reciprocal, sigmoid, sin, sqrt } from "./rules/unary.ts";

export const RULES: readonly GradRule[] = [
  add,
  sub,
  mul,
  div,
  where,
  neg,
  identity,
  cast,
  sqrt,
  reciprocal,
  sigmoid,
  exp,
  sin,
  cos,
  softmax,
  logSoftmax,
  reduceSum,
  reduceMean,
  matMul,
  gemm,
  reshape,
  unsqueeze,
  squeeze,
  transpose,
  expand,
  concat,
  split,
  gather,
  gatherElements,
  dropout,
];

/**
 * Ops whose outputs are not differentiable functions of their inputs (shapes, comparisons, integer
 * results) or whose inputs are frozen by construction (dequantized weights): gradients stop here.
 */
export const NON_DIFFERENTIABLE: ReadonlySet<string> = new Set([
  "Shape",
  "Size",
  "Equal",
  "Greater",
  "Less",
  "NonZero",
  "ConstantOfShape",
  "DequantizeLinear",
  "Range",
  "ArgMax",
]);

export const RULE_BY_OP: ReadonlyMap<string, GradRule> = new Map(RULES.map((r) => [r.opType, r]));
