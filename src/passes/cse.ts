// Common-subexpression elimination over the imported graph: two nodes with the same op,
// the same inputs and the same attributes compute the same values, so the later one is
// dropped and its readers read the earlier one's outputs. Exporters repeat work per block
// (PyTorch casts one attention mask once per layer); without this, precision assignment would
// see several Casts of one value to one type and decide for each separately.
//
// Nodes whose results are not a function of their inputs alone (random ops) are never merged,
// nor a node whose output is a graph output (its name is the user's contract).
import type { Attrs, AttrValue } from '../ir/graph.js';
import type { Pass } from './pass.js';

/** Ops that draw random numbers: two of them with equal inputs are still different values. */
const RANDOM = new Set(['Dropout', 'RandomNormal', 'RandomNormalLike', 'RandomUniform', 'RandomUniformLike', 'Bernoulli', 'Multinomial']);

/** Constants up to this many elements are compared by contents. */
const SMALL_CONST = 64;

function attrKey(v: AttrValue): string {
  if (typeof v === 'object' && !Array.isArray(v)) return `T${v.dtype}[${v.shape.join(',')}]:${Array.from(v.data).join(',')}`;
  return JSON.stringify(v);
}

function nodeKey(op: string, inputs: string[], attrs: Attrs): string {
  const a = Object.keys(attrs)
    .sort()
    .map((k) => `${k}=${attrKey(attrs[k])}`)
    .join(';');
  return `${op}(${inputs.join(',')}){${a}}`;
}

export const cse: Pass = {
  name: 'cse',
  doc: 'merge identical nodes (same op, inputs and attributes) and equal small constants, e.g. the per-layer Casts of one mask',
  run(g) {
    const seen = new Map<string, string[]>();
    const subst = new Map<string, string>();
    // Small constants with equal contents are one value (exporters emit a Constant node per
    // use: every block's Slice gets its own copy of the same starts and ends).
    const outputs = new Set(g.outputs);
    const byContents = new Map<string, string>();
    for (const v of g.values.values()) {
      if (v.role !== 'const' || !v.init || v.init.data.length > SMALL_CONST) continue;
      const key = attrKey(v.init);
      const first = byContents.get(key);
      if (first === undefined) byContents.set(key, v.name);
      else if (!outputs.has(v.name)) subst.set(v.name, first);
    }
    const kept = [];
    for (const n of g.nodes) {
      n.inputs = n.inputs.map((x) => subst.get(x) ?? x);
      if (RANDOM.has(n.op) || n.outputs.some((o) => outputs.has(o))) {
        kept.push(n);
        continue;
      }
      const key = nodeKey(n.op, n.inputs, n.attrs);
      const prev = seen.get(key);
      if (!prev || prev.length !== n.outputs.length) {
        seen.set(key, n.outputs);
        kept.push(n);
        continue;
      }
      // `prev` is the kept node's own outputs array: an output it left unnamed takes this
      // node's name.
      n.outputs.forEach((o, k) => {
        if (!o) return;
        if (!prev[k]) prev[k] = o;
        else {
          subst.set(o, prev[k]);
          g.values.delete(o);
        }
      });
    }
    g.nodes = kept;
    const read = new Set(kept.flatMap((n) => n.inputs));
    for (const [from] of subst) if (!read.has(from) && g.values.get(from)?.role === 'const') g.values.delete(from);
    g.updates = g.updates.map((u) => ({ state: u.state, next: subst.get(u.next) ?? u.next }));
    return g;
  },
  check: (g) => {
    const errs: string[] = [];
    const seen = new Set<string>();
    const outputs = new Set(g.outputs);
    for (const n of g.nodes) {
      if (RANDOM.has(n.op) || n.outputs.some((o) => outputs.has(o))) continue;
      const key = nodeKey(n.op, n.inputs, n.attrs);
      if (seen.has(key)) errs.push(`'${n.name}' (${n.op}) duplicates an earlier node`);
      seen.add(key);
    }
    return errs;
  },
};
