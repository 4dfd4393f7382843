// Keeps low-precision values low-precision while they wait for the backward pass.
//
// When a deny op (Erf, Softmax, the loss...) reads an f16/bf16 value, insert-casts gives it an
// f32 copy, and autodiff's gradient rules then read that copy too: the f32 twin stays alive
// from the forward pass to the backward pass, at twice the bytes of the value it copies. A
// widening cast is exact, so the backward pass may as well widen the low-precision value again
// where it needs it: this pass gives the gradient nodes their own Cast (one per value, before
// the first gradient node that reads it), and the forward copy dies with its last forward use.
// The results are bit-identical; the memory planner sees the shorter lifetimes.
import { info, isFloat, type DType } from '../ir/dtypes.js';
import { producers, type Graph, type Node } from '../ir/graph.js';
import type { Pass } from './pass.js';

/** A Cast whose every input value is exactly representable in its output type. */
function isExactWidening(g: Graph, n: Node): boolean {
  if (n.op !== 'Cast') return false;
  const from = g.values.get(n.inputs[0])!.dtype;
  const to = g.values.get(n.outputs[0])!.dtype;
  if (from === to || !isFloat(from) || !isFloat(to)) return false;
  const a = info(from as DType);
  const b = info(to as DType);
  return a.kind === 'float' && b.kind === 'float' && b.expBits >= a.expBits && b.mantBits >= a.mantBits;
}

/** Forward widening casts whose outputs gradient nodes read: `reader: value` pairs. */
function savedWidenings(g: Graph): { reader: Node; value: string; cast: Node }[] {
  const prod = producers(g);
  const found: { reader: Node; value: string; cast: Node }[] = [];
  for (const n of g.nodes) {
    if (n.phase !== 'backward') continue;
    for (const v of n.inputs) {
      const c = v ? prod.get(v) : undefined;
      if (c && c.phase !== 'backward' && isExactWidening(g, c)) found.push({ reader: n, value: v, cast: c });
    }
  }
  return found;
}

export const recomputeCasts: Pass = {
  name: 'recompute-casts',
  doc: 'gradient nodes widen saved low-precision values themselves instead of keeping their exact f32 copies alive',
  run(g) {
    const found = savedWidenings(g);
    if (!found.length) return g;
    const names = new Set(g.nodes.map((n) => n.name));
    const fresh = (base: string, taken: (s: string) => boolean) => {
      let s = base;
      for (let i = 1; taken(s); i++) s = `${base}_${i}`;
      return s;
    };
    const recast = new Map<string, string>(); // forward copy -> backward copy
    const before = new Map<Node, Node[]>(); // reader -> casts to insert before it
    for (const { reader, value, cast } of found) {
      let r = recast.get(value);
      if (!r) {
        r = fresh(`${value}.bwd`, (s) => g.values.has(s));
        g.values.set(r, { ...g.values.get(value)!, name: r });
        const name = fresh(`${cast.name}.bwd`, (s) => names.has(s));
        names.add(name);
        const node: Node = { ...cast, name, inputs: [...cast.inputs], outputs: [r], attrs: { ...cast.attrs }, phase: 'backward', prec: cast.prec && { ...cast.prec, reason: 'recomputed for the backward pass (exact)' } };
        const l = before.get(reader);
        if (l) l.push(node);
        else before.set(reader, [node]);
        recast.set(value, r);
      }
      reader.inputs = reader.inputs.map((x) => (x === value ? r! : x));
    }
    g.nodes = g.nodes.flatMap((n) => [...(before.get(n) ?? []), n]);
    return g;
  },
  check: (g) => savedWidenings(g).map(({ reader, value }) => `gradient node '${reader.name}' reads '${value}', a forward widening cast`),
};
