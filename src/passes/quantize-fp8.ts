// fp8 policy (Transformer Engine's HYBRID recipe): the operands of GEMM-like ops (rows with
// an `fp8` entry) are quantized to fp8 with per-tensor scaling — E4M3 for activations and
// weights, E5M2 for gradients (values produced by the backward pass) — and the GEMM gets
// their inverse scales, accumulates in f32 and writes the policy's high-precision type.
// One quantization per (value, format): a weight quantized for the forward GEMM is reused,
// transposed by the GEMM's flags, by the backward GEMM that needs it. Weights are quantized
// from their f32 master, and graph inputs as fed, not from their bf16 copies.
//
// Every fp8 tensor has scaling state: `scale` (f32[1]) and an amax history (f32[H]).
// Fp8Stats measures the tensor each step (amax; saturated and flushed fractions) and, with
// current scaling, derives the scale from it; UpdateFp8Scale, after the step, shifts the
// amax into the history and computes the next delayed scale. Inference graphs read the
// state but never update it.
import { toOnnx, type DType } from '../ir/dtypes.js';
import { addNode, addState, inferNode } from '../ir/build.js';
import { producers } from '../ir/graph.js';
import { zeros, fromArray } from '../ir/tensor.js';
import { opRow } from '../ops/table.js';
import type { Pass } from './pass.js';

export interface Fp8Tensor {
  value: string;
  format: DType;
  recipe: 'delayed' | 'current';
  amax: 'max' | 'most_recent';
  history: number;
  margin: number;
  /** State and per-step values. */
  scale: string;
  amaxHistory: string;
  stats: string;
  quantized: string;
  scaleInv: string;
  producer: string;
  consumers: string[];
}

export const quantizeFp8: Pass = {
  name: 'quantize-fp8',
  doc: 'fp8 policy: quantize GEMM operands (E4M3 forward, E5M2 gradients) with per-tensor scaling state',
  run(g, ctx) {
    if (!ctx.policy.fp8) return g;
    const cfg = ctx.fp8;
    const training = g.meta.grads !== undefined;
    const prod = producers(g);
    const made = new Map<string, Fp8Tensor>();
    const order: Fp8Tensor[] = [];
    // A master weight's low-precision copy is quantized from the f32 master itself, and a
    // graph input's (the images a first layer reads) from the input as fed: one rounding
    // (f32 -> fp8), not two (f32 -> bf16 -> fp8). The copy then usually has no reader left
    // and its Cast goes.
    const bypassed = new Set<string>();
    // The role of what a value views (a Flatten or Reshape of the images is the images).
    const rootRole = (v: string): string | undefined => {
      const p = prod.get(v);
      return p && opRow(p.op).alias?.view ? rootRole(p.inputs[0]) : g.values.get(v)?.role;
    };
    const source = (v: string): string => {
      const p = prod.get(v);
      if (p?.op !== 'Cast') return v;
      const role = rootRole(p.inputs[0]);
      if (role !== 'param' && role !== 'input') return v;
      bypassed.add(v);
      return p.inputs[0];
    };
    for (let i = 0; i < g.nodes.length; i++) {
      const n = g.nodes[i];
      const spec = opRow(n.op).fp8;
      if (!spec || n.prec?.cls !== 'allow') continue;
      const outDtype = g.values.get(n.outputs[0])!.dtype;
      spec.operands.forEach((k, j) => {
        const v = n.inputs[k];
        const format: DType = prod.get(v)?.phase === 'backward' ? 'f8e5m2' : 'f8e4m3fn';
        const from = source(v);
        const key = `${from}|${format}`;
        let t = made.get(key);
        if (!t) {
          const base = `${from}.${format}`;
          const scale = addState(g, `${base}.scale`, fromArray('f32', [1], [1]));
          const amaxHistory = addState(g, `${base}.amax_history`, zeros('f32', [cfg.history]));
          const attrs = { to: toOnnx(format), current: cfg.scaling === 'current' ? 1 : 0, margin: cfg.margin };
          const stats = addNode(g, 'mpc.Fp8Stats', [from, scale], { name: `${base}.stats`, outputNames: [`${base}.stats`], attrs, at: i++ })[0];
          const [quantized, scaleInv] = addNode(g, 'mpc.QuantizeFp8', [from, stats], {
            name: `${base}.quantize`,
            outputNames: [`${base}.q`, `${base}.scale_inv`],
            attrs: { to: toOnnx(format) },
            at: i++,
          });
          t = { value: from, format, recipe: cfg.scaling, amax: cfg.amax, history: cfg.history, margin: cfg.margin, scale, amaxHistory, stats, quantized, scaleInv, producer: prod.get(from)?.name ?? from, consumers: [] };
          made.set(key, t);
          order.push(t);
        }
        t.consumers.push(n.name);
        n.inputs[k] = t.quantized;
        while (n.inputs.length <= spec.scaleInputs[j]) n.inputs.push('');
        n.inputs[spec.scaleInputs[j]] = t.scaleInv;
      });
      n.attrs.to = toOnnx(outDtype);
      inferNode(g, n);
    }
    const read = new Set([...g.outputs, ...g.nodes.flatMap((n) => n.inputs)]);
    const dead = new Set([...bypassed].filter((v) => !read.has(v)));
    if (dead.size) {
      g.nodes = g.nodes.filter((n) => !(n.op === 'Cast' && dead.has(n.outputs[0])));
      for (const v of dead) g.values.delete(v);
    }
    if (training)
      for (const t of order) {
        const [h, s] = addNode(g, 'mpc.UpdateFp8Scale', [t.amaxHistory, t.scale, t.stats], {
          name: `${t.value}.${t.format}.update_scale`,
          attrs: { to: toOnnx(t.format), amax: t.amax, margin: t.margin, current: t.recipe === 'current' ? 1 : 0 },
        });
        g.updates.push({ state: t.amaxHistory, next: h }, { state: t.scale, next: s });
      }
    g.meta.fp8 = order;
    return g;
  },
  check: (g, ctx) => {
    if (!ctx.policy.fp8) return [];
    const errs: string[] = [];
    for (const n of g.nodes) {
      const spec = opRow(n.op).fp8;
      if (!spec || n.prec?.cls !== 'allow') continue;
      spec.operands.forEach((k, j) => {
        const d = g.values.get(n.inputs[k])!.dtype;
        if (d !== 'f8e4m3fn' && d !== 'f8e5m2') errs.push(`GEMM '${n.name}' operand ${k} is ${d}, not fp8`);
        if (!n.inputs[spec.scaleInputs[j]]) errs.push(`GEMM '${n.name}' has no inverse scale for operand ${k}`);
      });
    }
    return errs;
  },
};
