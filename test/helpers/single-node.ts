// Helpers for op-level tests (test/kernels.test.ts, test/grad-check.test.ts): a seeded random
// source and a graph holding one node of an op, with its inputs as graph inputs (or constants).
import { isFloat, type DType } from '../../src/ir/dtypes.js';
import { addConst, addNode } from '../../src/ir/build.js';
import { emptyGraph, type Attrs, type Graph } from '../../src/ir/graph.js';
import { sizeOf, type Tensor } from '../../src/ir/tensor.js';

/** mulberry32: a small deterministic PRNG, uniform in [0, 1). */
export function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** A string hash, to give every case its own seed that does not move when cases are added. */
export function seedOf(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export function tensorOf(dtype: DType, shape: number[], values: ArrayLike<number>): Tensor {
  if (values.length !== sizeOf(shape)) throw new Error(`[${shape}] needs ${sizeOf(shape)} values, got ${values.length}`);
  return { dtype, shape: [...shape], data: isFloat(dtype) ? Float32Array.from(values) : Int32Array.from(values) };
}

export interface NodeInput {
  /** Contents; `kind: 'const'` makes it a constant value of the graph (Reshape's shape). */
  tensor: Tensor;
  kind?: 'input' | 'const';
  /** Reads the same value as operand `sameAs` (x·x, X·Xᵀ); `tensor` is then ignored. */
  sameAs?: number;
}

/**
 * A graph with one node `op` whose operands are graph inputs named in0, in1... (or constants);
 * `undefined` marks an omitted optional input (''). Returns the graph, the node's input names
 * and the feeds for runGraph.
 */
export function singleNodeGraph(
  op: string,
  inputs: (NodeInput | undefined)[],
  attrs: Attrs = {},
  /** Number of outputs (default: the row's), e.g. 1 for BatchNormalization's inference form. */
  outputs?: number,
): { g: Graph; names: string[]; feeds: Record<string, Tensor> } {
  const g = emptyGraph(op);
  const feeds: Record<string, Tensor> = {};
  const names: string[] = [];
  inputs.forEach((inp, k) => names.push(nameOf(inp, k)));
  function nameOf(inp: NodeInput | undefined, k: number): string {
    if (!inp) return '';
    if (inp.sameAs !== undefined) return names[inp.sameAs];
    if (inp.kind === 'const') return addConst(g, `c${k}`, inp.tensor);
    const name = `in${k}`;
    g.values.set(name, { name, dtype: inp.tensor.dtype, shape: [...inp.tensor.shape], role: 'input' });
    g.inputs.push(name);
    feeds[name] = inp.tensor;
    return name;
  }
  const outs = addNode(g, op, names, { attrs: { ...attrs }, name: 'node', outputs });
  g.outputs.push(...outs);
  return { g, names, feeds };
}
