// The rank of every value of a graph, from its inputs' declared shapes and each op's definition;
// 1-D integer values that serve as shapes also get their (static) length, which fixes Reshape's rank.
// The gradient driver needs ranks to sum broadcast gradients back to their input's shape.
import type { GraphProto, NodeProto, TensorProto } from "./proto.ts";

export interface RankInfo {
  rank: Map<string, number>;
  /** Static element count of 1-D values whose count is known (shape tensors). */
  length: Map<string, number>;
}

function attr(node: NodeProto, name: string): unknown {
  return node.attributes.find(([k]) => k === name)?.[1];
}

function constInts(t: TensorProto): number[] {
  const v = new BigInt64Array(t.raw.buffer.slice(t.raw.byteOffset, t.raw.byteOffset + t.raw.byteLength));
  return Array.from(v, Number);
}

export function inferRanks(graph: GraphProto): RankInfo {
  const rank = new Map<string, number>();
  const length = new Map<string, number>();
  const values = new Map<string, number[]>();
  for (const i of graph.inputs) if (i.shape) rank.set(i.name, i.shape.length);
  for (const t of graph.initializers) {
    rank.set(t.name, t.dims.length);
    if (t.dims.length === 1) length.set(t.name, t.dims[0]!);
    if (t.elemType === 7 && t.dims.length <= 1) values.set(t.name, constInts(t));
  }
  const r = (n: string): number => {
    const v = rank.get(n);
    if (v === undefined) throw new Error(`rank of "${n}" is unknown`);
    return v;
  };
  for (const node of graph.nodes) {
    const ins = node.inputs;
    const out = node.outputs;
    const set = (i: number, v: number) => rank.set(out[i]!, v);
    switch (node.opType) {
      case "Shape":
        set(0, 1);
        length.set(out[0]!, r(ins[0]!));
        break;
      case "Concat": {
        set(0, r(ins[0]!));
        if (r(ins[0]!) === 1 && ins.every((i) => length.has(i)))
          length.set(
            out[0]!,
            ins.reduce((s, i) => s + length.get(i)!, 0),
          );
        break;
      }
      case "Reshape": {
        const n = length.get(ins[1]!);
        if (n === undefined) throw new Error(`Reshape ${node.name}: the length of its shape input "${ins[1]}" is not static`);
        set(0, n);
        break;
      }
      case "Unsqueeze":
        set(0, r(ins[0]!) + (values.get(ins[1]!)?.length ?? 1));
        break;
      case "Squeeze":
        set(0, r(ins[0]!) - (values.get(ins[1]!)?.length ?? 1));
        break;
      case "ReduceMean":
      case "ReduceSum":
      case "ReduceMax": {
        const keep = (attr(node, "keepdims") ?? 1) === 1;
        // No axes input: every axis is reduced.
        const axes = ins[1] ? values.get(ins[1]) : Array(r(ins[0]!)).fill(0);
        if (!keep && !axes) throw new Error(`${node.opType} ${node.name}: keepdims=0 needs constant axes`);
        set(0, keep ? r(ins[0]!) : r(ins[0]!) - axes!.length);
        break;
      }
      case "Gather":
        set(0, r(ins[0]!) - 1 + r(ins[1]!));
        // Picking entries of a shape keeps the count of the (1-D) indices.
        if (r(ins[0]!) === 1 && length.has(ins[1]!)) length.set(out[0]!, length.get(ins[1]!)!);
        break;
      case "Gemm":
        set(0, 2);
        break;
      case "MatMul":
        set(0, Math.max(r(ins[0]!), r(ins[1]!)));
        break;
      case "Expand":
        set(0, Math.max(r(ins[0]!), length.get(ins[1]!) ?? r(ins[0]!)));
        break;
      case "ConstantOfShape":
        set(0, length.get(ins[0]!) ?? 0);
        break;
      case "NonZero":
        set(0, 2);
        break;
      case "Split":
      case "Dropout":
        for (let i = 0; i < out.length; i++) set(i, r(ins[0]!));
        break;
      case "Add":
      case "Sub":
      case "Mul":
      case "Div":
      case "Pow":
      case "Equal":
      case "Where":
        set(0, Math.max(...ins.map(r)));
        break;
      default:
        // Unary ops and ops whose output has their first input's rank (Softmax, Transpose, Cast,
        // DequantizeLinear, GatherElements, ScatterElements, ScatterND, ...).
        set(0, r(ins[0]!));
    }
  }
  return { rank, length };
}
