// Transposes folded into the batched products that read or write them.
//
// Attention moves its heads around with Transposes: Q, K and V from [N, T, H, d] to
// [N, H, T, d] (K further to [N, H, d, T]) before the two batched products, and the weighted
// sum back from [N, H, T, d] to [N, T, H, d] after them; the backward pass transposes the
// gradients the other way. Each Transpose is a kernel that copies the whole tensor. A GEMM
// can read an operand, and write its result, through strides instead (BLAS's leading
// dimensions, here per axis), so this pass deletes such a Transpose and records its
// permutation on the MatMul (mpc's attributes permA, permB, permY; see ops/gemm.ts):
//  - a Transpose read only as operands of MatMuls: each of them reads its input in place;
//  - a Transpose that is the only reader of a MatMul's result: the MatMul writes its result
//    transposed, where the result's rows stay contiguous (permY keeps the product's last axis
//    last) and N is a multiple of 4 (a packed f16 or fp8 store writes whole words); where the
//    Transpose swaps the product's last two axes, the MatMul computes the transposed product
//    (operands swapped, trans flags toggled) and writes that.
// The numbers are the same: each product element sums the same terms in the same order.
// It runs after autodiff (the gradient rules see plain MatMuls) and before quantize-fp8 (an
// operand's fp8 copy is made of the tensor as stored).
//
// Post-condition: no Transpose that could be folded is left.
import { consumers, type Graph, type Node } from '../ir/graph.js';
import { attrInt, attrInts } from '../ops/types.js';
import type { Pass } from './pass.js';

function permOf(n: Node, rank: number): number[] {
  return n.attrs.perm === undefined ? [...Array(rank).keys()].reverse() : attrInts(n, 'perm');
}

const identity = (r: number): number[] => [...Array(r).keys()];

/** Values that must stay as they are: graph outputs and the next values of state. */
function pinned(g: Graph): Set<string> {
  return new Set([...g.outputs, ...g.updates.map((u) => u.next)]);
}

/** Whether every reader of the Transpose's output reads it as operand A or B of a MatMul. */
function foldsIntoOperands(t: Node, readers: Map<string, Node[]>, keep: Set<string>): boolean {
  const y = t.outputs[0];
  const rs = readers.get(y) ?? [];
  return t.op === 'Transpose' && !keep.has(y) && rs.length > 0 && rs.every((r) => r.op === 'MatMul' && r.inputs.every((v, k) => v !== y || k < 2));
}

/**
 * How a MatMul writes the result of the Transpose that is its only reader, or undefined
 * where it cannot: its rows must stay contiguous (the product's last axis last) and N a
 * multiple of 4. Where the Transpose puts the product's last two axes the other way round,
 * the MatMul computes the transposed product instead (Zᵀ = op(B)ᵀ op(A)ᵀ: operands swapped,
 * each with its trans flag toggled).
 */
function foldsIntoResult(g: Graph, m: Node, readers: Map<string, Node[]>, keep: Set<string>): { t: Node; swap: boolean; permY: number[] } | undefined {
  if (m.op !== 'MatMul' || keep.has(m.outputs[0]) || m.inputs.length > 2) return undefined;
  const rs = readers.get(m.outputs[0]) ?? [];
  const t = rs[0];
  if (rs.length !== 1 || t.op !== 'Transpose') return undefined;
  const shape = g.values.get(m.outputs[0])!.shape as number[];
  const r = shape.length;
  const composed = composedPermY(m, permOf(t, r), r);
  // The product's axis j is the output's axis prior.indexOf(j).
  const prior = m.attrs.permY === undefined ? identity(r) : attrInts(m, 'permY');
  const [M, N] = [shape[prior.indexOf(r - 2)], shape[prior.indexOf(r - 1)]];
  if (composed[r - 1] === r - 1) return N % 4 === 0 ? { t, swap: false, permY: composed } : undefined;
  if (composed[r - 1] === r - 2 && M % 4 === 0) return { t, swap: true, permY: composed.map((a) => (a === r - 1 ? r - 2 : a === r - 2 ? r - 1 : a)) };
  return undefined;
}

/** The MatMul computing the transposed product: operands swapped, their trans flags toggled. */
function swapOperands(m: Node): void {
  const a = { ...m.attrs } as Record<string, unknown>;
  const tA = attrInt(m, 'transA', 0) === 1;
  const tB = attrInt(m, 'transB', 0) === 1;
  const [pA, pB] = [a.permA, a.permB];
  for (const k of ['transA', 'transB', 'permA', 'permB']) delete a[k];
  if (pB !== undefined) a.permA = pB;
  if (pA !== undefined) a.permB = pA;
  if (!tB) a.transA = 1;
  if (!tA) a.transB = 1;
  m.attrs = a as Node['attrs'];
  m.inputs = [m.inputs[1], m.inputs[0]];
}

/** permY after Transpose(perm) of a result already transposed by the MatMul's permY. */
function composedPermY(m: Node, perm: number[], r: number): number[] {
  const prior = m.attrs.permY === undefined ? identity(r) : attrInts(m, 'permY');
  return perm.map((p) => prior[p]);
}

/**
 * permA/permB of operand k after folding Transpose(perm) into it: the operand was
 * swap?(Transpose(Transpose(x, perm), prior)); the trans swap goes into the permutation.
 */
function composedOperandPerm(m: Node, k: 0 | 1, perm: number[]): number[] {
  const r = perm.length;
  const key = k === 0 ? 'permA' : 'permB';
  const prior = m.attrs[key] === undefined ? identity(r) : attrInts(m, key);
  const q = prior.map((p) => perm[p]);
  if (attrInt(m, k === 0 ? 'transA' : 'transB', 0) === 1) [q[r - 2], q[r - 1]] = [q[r - 1], q[r - 2]];
  return q;
}

export const foldTransposes: Pass = {
  name: 'fold-transposes',
  doc: 'batched products read and write transposed tensors in place (strides) instead of through Transpose copies',
  run(g) {
    const keep = pinned(g);
    const dropped = new Set<Node>();
    let readers = consumers(g);
    // Results first: a Transpose between two products goes into the one that writes it.
    for (const m of g.nodes) {
      const f = foldsIntoResult(g, m, readers, keep);
      if (!f) continue;
      const { t } = f;
      if (f.swap) swapOperands(m);
      m.attrs = { ...m.attrs, permY: f.permY };
      g.values.delete(m.outputs[0]);
      m.outputs = [t.outputs[0]];
      dropped.add(t);
    }
    g.nodes = g.nodes.filter((n) => !dropped.has(n));
    readers = consumers(g);
    for (const t of g.nodes) {
      if (!foldsIntoOperands(t, readers, keep)) continue;
      const [x] = t.inputs;
      const y = t.outputs[0];
      const perm = permOf(t, (g.values.get(x)!.shape as number[]).length);
      for (const m of readers.get(y)!) {
        for (const k of [0, 1] as const) {
          if (m.inputs[k] !== y) continue;
          const key = k === 0 ? 'permA' : 'permB';
          const attrs: Record<string, unknown> = { ...m.attrs, [key]: composedOperandPerm(m, k, perm) };
          delete attrs[k === 0 ? 'transA' : 'transB'];
          m.attrs = attrs as Node['attrs'];
          m.inputs[k] = x;
        }
      }
      g.values.delete(y);
      dropped.add(t);
    }
    g.nodes = g.nodes.filter((n) => !dropped.has(n));
    return g;
  },
  check: (g) => {
    const keep = pinned(g);
    const readers = consumers(g);
    const errs: string[] = [];
    for (const n of g.nodes) {
      if (foldsIntoOperands(n, readers, keep)) errs.push(`Transpose '${n.name}' is read only by MatMul operands`);
      if (foldsIntoResult(g, n, readers, keep)) errs.push(`MatMul '${n.name}' is read only by a Transpose it could write`);
    }
    return errs;
  },
};
