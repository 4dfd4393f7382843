// Linear layers as one GEMM. PyTorch exports `nn.Linear` on an input of rank > 2 as
//   Transpose(W) -> MatMul(X, W^T) -> Add(bias, ·)
// which costs a transpose kernel (and a transposed copy of the weight), a separate bias pass
// over the output, and their gradient kernels. This pass rewrites it as
//   View(X) [rows, K] -> Gemm(X', W, bias, transB=1) -> View [..., M, N]
// (views are free): the GEMM reads the weight in its stored [N, K] layout and adds the bias in
// its f32 epilogue, as PyTorch's own addmm does for a linear layer. The result keeps the Add's
// (or MatMul's) name, so nothing downstream changes. It runs before precision assignment, so
// both the training and the inference program get it.
//
// Post-condition: no MatMul reads a 2-D transpose that only it reads.
import { addNode, typeOf } from '../ir/build.js';
import { consumers, producers, type Graph, type Node } from '../ir/graph.js';
import { attrInts } from '../ops/types.js';
import type { Pass } from './pass.js';

interface Linear {
  matmul: Node;
  transpose: Node;
  add?: Node;
  bias?: string;
}

function isTranspose2d(g: Graph, n: Node | undefined): n is Node {
  if (!n || n.op !== 'Transpose') return false;
  const shape = g.values.get(n.inputs[0])?.shape;
  const perm = n.attrs.perm === undefined ? [1, 0] : attrInts(n, 'perm');
  return shape?.length === 2 && perm.length === 2 && perm[0] === 1 && perm[1] === 0;
}

function findLinears(g: Graph): Linear[] {
  const prod = producers(g);
  const cons = consumers(g);
  const outputs = new Set(g.outputs);
  const found: Linear[] = [];
  for (const n of g.nodes) {
    if (n.op !== 'MatMul') continue;
    const t = prod.get(n.inputs[1]);
    const x = g.values.get(n.inputs[0]);
    if (!isTranspose2d(g, t) || (cons.get(t.outputs[0]) ?? []).length !== 1 || outputs.has(t.outputs[0])) continue;
    if (!x || x.shape.length < 2) continue;
    const lin: Linear = { matmul: n, transpose: t };
    // A bias Add of the product alone: [N] (or [1, N]) broadcast over the rows.
    const users = cons.get(n.outputs[0]) ?? [];
    const add = users.length === 1 && !outputs.has(n.outputs[0]) ? users[0] : undefined;
    if (add?.op === 'Add') {
      const bias = add.inputs[0] === n.outputs[0] ? add.inputs[1] : add.inputs[0];
      const bs = g.values.get(bias)?.shape;
      const N = typeOf(g, t.outputs[0]).shape[1];
      const y = typeOf(g, add.outputs[0]).shape;
      const same = y.join() === typeOf(g, n.outputs[0]).shape.join();
      if (bias !== n.outputs[0] && same && bs && bs.length >= 1 && bs.length <= 2 && bs[bs.length - 1] === N && (bs.length === 1 || bs[0] === 1)) {
        lin.add = add;
        lin.bias = bias;
      }
    }
    found.push(lin);
  }
  return found;
}

export const linearToGemm: Pass = {
  name: 'linear-to-gemm',
  doc: 'rewrite MatMul(X, Transpose(W)) (+ bias) from linear layers as one Gemm with transB and the bias in its epilogue',
  run(g) {
    const linears = findLinears(g);
    if (!linears.length) return g;
    const drop = new Set<Node>();
    const rowViews = new Map<string, string>();
    const replace = new Map<Node, Node[]>(); // last node of a pattern -> its replacement
    for (const { matmul, transpose, add, bias } of linears) {
      const out = (add ?? matmul).outputs[0];
      const xs = typeOf(g, matmul.inputs[0]).shape;
      const ys = typeOf(g, out).shape;
      const K = xs[xs.length - 1];
      const rows = xs.slice(0, -1).reduce((a, b) => a * b, 1);
      // Built at the end of the node list, then moved into place.
      const start = g.nodes.length;
      const base = matmul.name;
      // One row view per input, shared by the layers reading it (q, k and v read one LayerNorm
      // output): its casts to a low type are then shared too.
      let x = matmul.inputs[0];
      if (xs.length !== 2) {
        const seen = rowViews.get(x);
        x = seen ?? addNode(g, 'mpc.View', [x], { name: `${x}.rows`, attrs: { shape: [rows, K] } })[0];
        rowViews.set(matmul.inputs[0], x);
      }
      const flat = ys.length === 2;
      const inputs = [x, transpose.inputs[0], ...(bias ? [bias] : [])];
      const gemmOut = addNode(g, 'Gemm', inputs, { name: `${base}.gemm`, attrs: { transB: 1 }, ...(flat ? { outputNames: [`${out}\0`] } : {}) })[0];
      if (!flat) addNode(g, 'mpc.View', [gemmOut], { name: `${base}.view`, attrs: { shape: ys }, outputNames: [`${out}\0`] });
      const made = g.nodes.splice(start);
      // The pattern's result keeps its name; the old producers go.
      g.values.delete(out);
      const last = made[made.length - 1];
      const tmp = `${out}\0`;
      g.values.set(out, { ...g.values.get(tmp)!, name: out });
      g.values.delete(tmp);
      last.outputs = last.outputs.map((o) => (o === tmp ? out : o));
      for (const n of [matmul, transpose, ...(add ? [add] : [])]) drop.add(n);
      if (add) g.values.delete(matmul.outputs[0]);
      g.values.delete(transpose.outputs[0]);
      replace.set(add ?? matmul, made);
    }
    g.nodes = g.nodes.flatMap((n) => replace.get(n) ?? (drop.has(n) ? [] : [n]));
    return g;
  },
  check: (g) => findLinears(g).map((l) => `MatMul '${l.matmul.name}' still reads the transpose '${l.transpose.outputs[0]}'`),
};
