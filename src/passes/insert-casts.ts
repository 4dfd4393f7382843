// Makes the precision decisions real: every data operand gets its consumer's compute dtype
// through a Cast, one Cast per (value, dtype) shared by all consumers, placed before the
// first of them. Graph outputs keep their declared dtype (a final Cast when needed). A
// constant operand is converted here, at compile time, into a constant of the new type (the
// same round-to-nearest-even the Cast would apply): no kernel, nothing to recompute.
import { isFloat, roundArray, type DType } from '../ir/dtypes.js';
import { addConst, addNode, inferNode, renameValue } from '../ir/build.js';
import { freshName } from '../ir/graph.js';
import { castAttrs, castTarget } from '../ops/cast.js';
import { dataInputs } from '../ops/table.js';
import type { Pass } from './pass.js';

export const insertCasts: Pass = {
  name: 'insert-casts',
  doc: 'insert one Cast per (value, dtype) where an operand\'s dtype differs from its consumer\'s',
  run(g) {
    const made = new Map<string, string>(); // `${value}|${dtype}` -> cast output
    const subst = new Map<string, string>(); // a model's own Cast made redundant -> the earlier one
    const outputs = new Set(g.outputs);
    for (let i = 0; i < g.nodes.length; i++) {
      const n = g.nodes[i];
      n.inputs = n.inputs.map((x) => subst.get(x) ?? x);
      if (n.op === 'Cast' && !outputs.has(n.outputs[0])) {
        // A Cast of the model itself: the one Cast of its (value, dtype), unless one was
        // inserted (or met) before it, which its readers then read instead.
        const key = `${n.inputs[0]}|${castTarget(n)}`;
        const c = made.get(key);
        if (c) {
          subst.set(n.outputs[0], c);
          g.values.delete(n.outputs[0]);
          g.nodes.splice(i--, 1);
          continue;
        }
        made.set(key, n.outputs[0]);
      }
      if (n.prec && n.prec.cls !== 'cast' && n.prec.cls !== 'none') {
        for (const k of dataInputs(n)) {
          const v = n.inputs[k];
          if (!v) continue;
          const dt = g.values.get(v)!.dtype;
          if (!isFloat(dt) || dt === n.prec.compute) continue;
          const key = `${v}|${n.prec.compute}`;
          let c = made.get(key);
          const init = g.values.get(v)!.role === 'const' ? g.values.get(v)!.init : undefined;
          if (!c && init) {
            const t = { dtype: n.prec.compute, shape: [...init.shape], data: roundArray(n.prec.compute, init.data) };
            c = addConst(g, `${v}.${n.prec.compute}`, t);
            made.set(key, c);
          }
          if (!c) {
            c = addNode(g, 'Cast', [v], {
              name: freshName(g, `${v}.${n.prec.compute}`),
              outputNames: [freshName(g, `${v}.${n.prec.compute}`)],
              attrs: castAttrs(n.prec.compute),
              prec: { cls: 'cast', compute: n.prec.compute, reason: 'insert-casts' },
              at: i,
            })[0];
            made.set(key, c);
            i++;
          }
          n.inputs[k] = c;
        }
      }
      inferNode(g, n);
    }
    g.updates = g.updates.map((u) => ({ state: u.state, next: subst.get(u.next) ?? u.next }));
    // A constant read only in its converted form is gone.
    const read = new Set([...g.outputs, ...g.nodes.flatMap((n) => n.inputs)]);
    for (const key of made.keys()) {
      const v = key.slice(0, key.lastIndexOf('|'));
      if (g.values.get(v)?.role === 'const' && !read.has(v)) g.values.delete(v);
    }
    // Graph outputs keep their declared dtype: the producer's result gets another name and
    // the output name goes to a Cast (reusing one made above for another consumer).
    for (const o of [...g.outputs]) {
      const want = g.meta[`declared:${o}`] as DType | undefined;
      const v = g.values.get(o)!;
      if (!want || v.dtype === want || !isFloat(v.dtype)) continue;
      const inner = freshName(g, `${o}.${v.dtype}`);
      const existing = made.get(`${o}|${want}`);
      g.outputs = g.outputs.map((x) => (x === o ? `\0${o}` : x)); // keep the output slot while renaming
      renameValue(g, o, inner);
      if (existing) renameValue(g, existing, o);
      else addNode(g, 'Cast', [inner], { name: `${o}.cast`, outputNames: [o], attrs: castAttrs(want), prec: { cls: 'cast', compute: want, reason: 'keep output type' } });
      g.outputs = g.outputs.map((x) => (x === `\0${o}` ? o : x));
    }
    return g;
  },
  // Over the whole graph: the model's own Casts and the inserted ones together.
  check: (g) => {
    const errs: string[] = [];
    const seen = new Set<string>();
    const outputs = new Set(g.outputs);
    for (const n of g.nodes) {
      if (n.op === 'Cast' && !outputs.has(n.outputs[0])) {
        const key = `${n.inputs[0]}|${castTarget(n)}`;
        if (seen.has(key)) errs.push(`more than one Cast of '${n.inputs[0]}' to ${castTarget(n)}`);
        seen.add(key);
      }
      if (!n.prec || n.prec.cls === 'cast' || n.prec.cls === 'none') continue;
      for (const k of dataInputs(n)) {
        const v = n.inputs[k];
        const dt = v ? g.values.get(v)!.dtype : undefined;
        if (v && dt && isFloat(dt) && dt !== n.prec.compute) errs.push(`'${n.name}' reads '${v}' as ${dt}, computes in ${n.prec.compute}`);
      }
    }
    return errs;
  },
};
