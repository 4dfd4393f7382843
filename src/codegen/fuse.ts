// Elementwise fusion: chains of elementwise nodes become one kernel.
//
// A node joins the kernel of a consumer when its row has an `expr` (op rows declare it; this
// file names no op), its result is floating point, has the consumer's shape and is read by
// nothing else — not by another node, the host or the next step. The fused kernel computes the
// whole chain per output element in registers and writes only the last value, so the values
// in between never reach device memory (and need no buffer).
//
// Same numbers as unfused: every value in between is rounded to its own dtype exactly where
// the unfused program stored it (`KernelWriter.round`), and arithmetic is f32 in both.
import { isFloat } from '../ir/dtypes.js';
import { staticShape, type Graph, type Node } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { opRow } from '../ops/table.js';
import type { ValueType } from '../ops/types.js';
import { broadcastIndex } from './index-math.js';
import type { Kernel, Target } from './kernel.js';
import { KernelWriter, mapKernel } from './storage.js';

/** Storage buffers a fused kernel may bind (WebGPU's guaranteed minimum per shader stage). */
const MAX_BINDINGS = 8;

export interface FusionPlan {
  /** Last node of each fused chain -> the chain's nodes in execution order (two or more). */
  groups: Map<Node, Node[]>;
  /** Nodes computed inside another node's kernel. */
  absorbed: Set<Node>;
}

/**
 * Finds the chains. `pinned`: values that must reach memory (graph outputs, values the host
 * reads, state updates' sources).
 */
export function planFusion(g: Graph, pinned: Set<string>): FusionPlan {
  const uses = new Map<string, number>();
  for (const n of g.nodes) for (const i of n.inputs) if (i) uses.set(i, (uses.get(i) ?? 0) + 1);
  const index = new Map(g.nodes.map((n, i) => [n, i]));
  // In-place updates (optimizer) overwrite their inputs: a chain may not move a read past one.
  const inPlaceBefore: number[] = [];
  let count = 0;
  for (const n of g.nodes) {
    inPlaceBefore.push(count);
    const alias = opRow(n.op).alias;
    if (alias && !alias.view) count++;
  }
  const type = (v: string): ValueType => {
    const val = g.values.get(v)!;
    return { dtype: val.dtype, shape: staticShape(val) };
  };
  const fusable = (n: Node) => opRow(n.op).expr !== undefined && n.outputs.length === 1 && isFloat(g.values.get(n.outputs[0])!.dtype);
  const producer = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) producer.set(o, n);

  const chainOf = new Map<Node, Node[]>();
  for (const n of g.nodes) {
    if (!fusable(n)) continue;
    const shape = type(n.outputs[0]).shape.join();
    let chain: Node[] = [];
    for (const v of n.inputs) {
      const p = v ? producer.get(v) : undefined;
      const pc = p && chainOf.get(p);
      if (!p || !pc || pinned.has(v) || uses.get(v) !== 1) continue;
      if (type(v).shape.join() !== shape || p.phase !== n.phase) continue;
      if (inPlaceBefore[index.get(n)!] !== inPlaceBefore[index.get(pc[0])!]) continue;
      const merged = [...chain, ...pc];
      if (externals(merged.concat(n)) + 1 > MAX_BINDINGS) continue;
      chain = merged;
      chainOf.delete(p);
    }
    chain.push(n);
    chain.sort((a, b) => index.get(a)! - index.get(b)!);
    chainOf.set(n, chain);
  }
  const groups = new Map<Node, Node[]>();
  const absorbed = new Set<Node>();
  for (const [last, chain] of chainOf)
    if (chain.length > 1) {
      groups.set(last, chain);
      for (const m of chain) if (m !== last) absorbed.add(m);
    }
  return { groups, absorbed };
}

/** Distinct values a chain reads from memory. */
function externals(chain: Node[]): number {
  const inside = new Set(chain.flatMap((n) => n.outputs));
  return new Set(chain.flatMap((n) => n.inputs.filter((i) => i && !inside.has(i)))).size;
}

/** The kernel of one chain: every value of it per output element, the last one stored. */
export function fusedKernel(g: Graph, chain: Node[], name: string, target: Target): Kernel {
  const type = (v: string): ValueType => {
    const val = g.values.get(v)!;
    return { dtype: val.dtype, shape: staticShape(val) };
  };
  const last = chain[chain.length - 1];
  const out = type(last.outputs[0]);
  const w = new KernelWriter(name, target);
  const local = new Map<string, string>();
  const lines: string[] = [];
  chain.forEach((n, k) => {
    const args = n.inputs.map((v) => {
      if (!v) return '';
      let id = local.get(v);
      if (id === undefined) {
        id = `x${local.size}`;
        const t = type(v);
        lines.push(`let ${id} = ${w.load(w.bind(v, t.dtype, 'read'), broadcastIndex(out.shape, t.shape, 'i'))};`);
        local.set(v, id);
      }
      return id;
    });
    const t = type(n.outputs[0]);
    const e = opRow(n.op).expr!(n, w, n.inputs.map((v) => (v ? type(v) : (undefined as unknown as ValueType))), t)(...args);
    if (n === last) lines.push(`return ${e};`);
    else {
      // Rounded to its dtype exactly where the unfused program stored it.
      const id = `t${k}`;
      lines.push(`let ${id} = ${w.round(t.dtype, e)};`);
      local.set(n.outputs[0], id);
    }
  });
  return mapKernel(w, { out: last.outputs[0], outDtype: out.dtype, count: sizeOf(out.shape), compute: lines.join('\n') });
}
