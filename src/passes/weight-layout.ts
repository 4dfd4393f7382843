// Weight layout for inference: a GEMM reads a transposed copy of its weight where the stored
// layout would make it slow.
//
// A linear layer's weight is stored [N, K] (PyTorch's layout) and read by a GEMM with transB.
// The subgroup GEMM (the variant chosen where the target has a fixed subgroup size) gives each
// lane of a subgroup its own output columns, so one step of k reads one element from each of
// S·TN rows of the weight, K elements apart. When a row takes a power of two of at least
// 2 KiB, those reads fall into the same few sets of a CPU adapter's cache and evict each
// other: on lavapipe a 512×256×K f32 GEMM takes 1.3-1.6x as long with transB as with the
// weight stored [K, N] at K = 512, 1024, 2048; at K = 256, 768, 784 and 1536 transB is as fast
// or faster. In the inference program this pass transposes such a weight once
// per run into an [K, N] copy (a movement kernel over the weight, ~2 ms for 256×1024 f32)
// and the GEMM reads that without transB. The training program keeps transB: there each
// such copy would add a transpose of its gradient and a recomputation as well.
//
// Post-condition: no GEMM with transB reads a parameter whose rows are such a stride apart,
// where the target has a subgroup size.
import { addNode } from '../ir/build.js';
import type { Graph, Node } from '../ir/graph.js';
import { attrInt } from '../ops/types.js';
import type { Pass, PassCtx } from './pass.js';

/** Smallest row stride (bytes, f32; powers of two) at which transB reads alias in a CPU cache. */
const ALIASING_STRIDE = 2048;

function aliased(g: Graph, n: Node, ctx: PassCtx): boolean {
  if (!ctx.target.subgroupSize || n.op !== 'Gemm' || attrInt(n, 'transB', 0) !== 1 || attrInt(n, 'transA', 0) === 1) return false;
  const w = g.values.get(n.inputs[1]);
  if (!w || w.role !== 'param' || w.shape.length !== 2 || typeof w.shape[1] !== 'number') return false;
  const row = w.shape[1] * 4;
  return row >= ALIASING_STRIDE && (row & (row - 1)) === 0;
}

export const weightLayout: Pass = {
  name: 'weight-layout',
  doc: 'inference: a GEMM reads an [K, N] copy of a weight whose [N, K] rows are a power of two >= 2 KiB apart (transB reads alias in a CPU cache)',
  run(g, ctx) {
    const copies = new Map<string, string>(); // weight -> its transposed copy (shared by GEMMs reading it)
    for (let i = 0; i < g.nodes.length; i++) {
      const n = g.nodes[i];
      if (!aliased(g, n, ctx)) continue;
      const w = n.inputs[1];
      let t = copies.get(w);
      if (!t) {
        const at = g.nodes.indexOf(n);
        t = addNode(g, 'Transpose', [w], { name: `${w}.kn`, attrs: { perm: [1, 0] }, at })[0];
        copies.set(w, t);
        i++;
      }
      n.inputs[1] = t;
      n.attrs = { ...n.attrs, transB: 0 };
    }
    return g;
  },
  check: (g, ctx) => g.nodes.filter((n) => aliased(g, n, ctx)).map((n) => `Gemm '${n.name}' reads weight '${n.inputs[1]}' with transB at an aliasing row stride`),
};
