// Reverse-mode differentiation from the loss, with the gradient rules of the op table.
//
// Gradients run in the precision of the forward op they come from (as under autocast): a
// GEMM in f16 has f16 gradient GEMMs accumulating in f32, and the Cast that made a master
// weight's f16 copy turns the weight gradient back into f32. The seed dLoss/dLoss = 1 is a
// constant that the loss-scaling pass may replace with the loss scale.
import { isFloat } from '../ir/dtypes.js';
import { addConst, addNode, typeOf } from '../ir/build.js';
import { liveNodes, type Graph, type Node, type Precision } from '../ir/graph.js';
import { opRow } from '../ops/table.js';
import type { GradCtx } from '../ops/types.js';
import type { Pass } from './pass.js';
import { InputError } from '../runtime/errors.js';

export interface GradMeta {
  seed: string;
  /** Parameter name -> its gradient value (same shape; f32, or after the optimizer pass f16/bf16 where the f32 gradient would only widen it). */
  params: Record<string, string>;
}

export const autodiff: Pass = {
  name: 'autodiff',
  doc: 'build the backward pass from the loss with the op table\'s gradient rules',
  run(g, ctx) {
    if (ctx.loss === 'none') return g;
    const loss = (g.meta.loss as { value: string }).value;
    const params = [...g.values.values()].filter((v) => v.role === 'param' && isFloat(v.dtype)).map((v) => v.name);

    // Values whose gradient is needed: those that depend on a parameter.
    const needs = new Set<string>(params);
    for (const n of g.nodes) if (n.inputs.some((i) => needs.has(i))) n.outputs.forEach((o) => o && isFloat(g.values.get(o)!.dtype) && needs.add(o));
    // The model's prediction computed from no trained weight: nothing to train (the model's or the options' fault).
    if (!needs.has(loss)) throw new InputError(`the loss does not depend on any trained parameter (${params.length} parameters; output '${(g.meta.loss as { prediction?: string }).prediction ?? g.outputs[0]}')`);

    const contributions = new Map<string, string[]>();
    const lt = typeOf(g, loss);
    const seed = addConst(g, 'loss.grad_seed', { dtype: lt.dtype, shape: [...lt.shape], data: new Float32Array([1]) });
    contributions.set(loss, [seed]);

    const forward = [...g.nodes];
    /** Sums the contributions to a value's gradient (one Add per extra contribution). */
    const total = (v: string, prec: Precision | undefined): string | undefined => {
      const list = contributions.get(v);
      if (!list || list.length === 0) return undefined;
      let acc = list[0];
      for (const c of list.slice(1)) {
        acc = addNode(g, 'Add', [acc, c], { name: `${v}.grad_sum`, prec })[0];
        g.nodes[g.nodes.length - 1].phase = 'backward';
      }
      contributions.set(v, [acc]);
      return acc;
    };

    for (let idx = forward.length - 1; idx >= 0; idx--) {
      const n = forward[idx];
      if (!n.inputs.some((i) => i && needs.has(i))) continue;
      const dy = n.outputs.map((o) => (o ? total(o, n.prec) : undefined));
      if (dy.every((d) => d === undefined)) continue;
      const row = opRow(n.op);
      if (!row.grad) throw new Error(`no gradient rule for ${n.op} (node '${n.name}')`);
      const gctx: GradCtx = {
        node: n,
        dy,
        type: (v) => typeOf(g, v),
        emit: (op, inputs, attrs, nOutputs) => {
          const outs = addNode(g, op, inputs, { attrs, outputs: nOutputs, name: `${n.name}.grad` });
          const made = g.nodes[g.nodes.length - 1];
          made.prec = gradPrecision(made, n, g);
          made.phase = 'backward';
          return outs;
        },
        constant: (t) => addConst(g, `${n.name}.grad_const`, t),
      };
      const dx = row.grad(gctx);
      n.inputs.forEach((i, k) => {
        const d = dx[k];
        if (!i || !d || !needs.has(i)) return;
        contributions.set(i, [...(contributions.get(i) ?? []), d]);
      });
    }

    const out: Record<string, string> = {};
    for (const p of params) {
      let d = total(p, undefined);
      if (!d) continue; // a parameter the loss does not use
      if (g.values.get(d)!.dtype !== g.values.get(p)!.dtype) throw new Error(`gradient of '${p}' is ${g.values.get(d)!.dtype}, expected ${g.values.get(p)!.dtype}`);
      out[p] = d;
    }
    // Drop gradient work nothing needs (e.g. the gradient of the model input).
    const live = liveNodes(g, [...g.outputs, ...Object.values(out)]);
    const fwd = new Set(forward);
    g.nodes = g.nodes.filter((n) => fwd.has(n) || live.has(n));
    const produced = new Set(g.nodes.flatMap((n) => n.outputs));
    for (const [name, v] of [...g.values]) if (v.role === 'activation' && !produced.has(name)) g.values.delete(name);
    const meta: GradMeta = { seed, params: out };
    g.meta.grads = meta;
    return g;
  },
  check: (g, ctx) => {
    if (ctx.loss === 'none') return [];
    const meta = g.meta.grads as GradMeta | undefined;
    if (!meta) return ['no gradients recorded'];
    const errs: string[] = [];
    for (const [p, d] of Object.entries(meta.params)) {
      const pv = g.values.get(p)!;
      const dv = g.values.get(d);
      if (!dv) errs.push(`gradient '${d}' of '${p}' is not defined`);
      else if (dv.dtype !== pv.dtype || dv.shape.join() !== pv.shape.join()) errs.push(`gradient of '${p}' is ${dv.dtype}[${dv.shape}], parameter is ${pv.dtype}[${pv.shape}]`);
    }
    return errs;
  },
};

/** Gradient nodes compute like their forward node; casts compute in their target type. */
function gradPrecision(made: Node, fwd: Node, g: Graph): Precision | undefined {
  const cls = opRow(made.op).precision;
  if (cls === 'cast') return { cls, compute: g.values.get(made.outputs[0])!.dtype, reason: `gradient of ${fwd.name}` };
  if (!fwd.prec || cls === 'none') return undefined;
  return { ...fwd.prec, reason: `gradient of ${fwd.name}` };
}
