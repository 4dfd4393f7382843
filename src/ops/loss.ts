// Losses (always f32: deny class) and their gradient ops.
import type { Node } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { f32Lit, mapKernel } from '../codegen/storage.js';
import { attrInt, attrString, type OpRow, type ValueType } from './types.js';

function sceDims(n: Node, scores: ValueType, labels: ValueType): { N: number; C: number } {
  if (scores.shape.length !== 2) throw new Error(`${n.op} '${n.name}': scores must be [N, C], got [${scores.shape}]`);
  const [N, C] = scores.shape;
  if (labels.shape.length !== 1 || labels.shape[0] !== N) throw new Error(`${n.op} '${n.name}': labels must be [${N}], got [${labels.shape}]`);
  if (labels.dtype !== 'i64' && labels.dtype !== 'i32') throw new Error(`${n.op} '${n.name}': labels must be integers`);
  return { N, C };
}

function reduction(n: Node): 'mean' | 'sum' {
  const r = attrString(n, 'reduction', 'mean');
  if (r !== 'mean' && r !== 'sum') throw new Error(`${n.op} '${n.name}': reduction '${r}' is not supported yet (mean, sum)`);
  return r;
}

/** Row-wise log-sum-exp with the max subtracted, in f64. */
function rowLse(x: ArrayLike<number>, off: number, C: number): number {
  let m = -Infinity;
  for (let c = 0; c < C; c++) m = Math.max(m, x[off + c]);
  let s = 0;
  for (let c = 0; c < C; c++) s += Math.exp(x[off + c] - m);
  return m + Math.log(s);
}

const wgslRowLse = (x: string, C: number, load: (idx: string) => string) => `
fn row_lse(row: u32) -> f32 {
  let off = row * ${C}u;
  var m = ${load('off')};
  for (var c = 1u; c < ${C}u; c++) { m = max(m, ${load('off + c')}); }
  var s = 0.0;
  for (var c = 0u; c < ${C}u; c++) { s += exp(${load('off + c')} - m); }
  return m + log(s);
}
`.replace(/\bx\b/g, x);

export const lossOps: OpRow[] = [
  {
    op: 'SoftmaxCrossEntropyLoss',
    domain: '',
    opsets: [12, 22],
    precision: 'deny',
    dataInputs: [0],
    arity: [2, 2],
    outputs: 1,
    infer: (n, [s, l]) => {
      sceDims(n, s, l);
      reduction(n);
      return [{ dtype: s.dtype, shape: [] }];
    },
    interp: (n, [s, l]) => {
      const { N, C } = sceDims(n, s, l);
      const ignore = attrInt(n, 'ignore_index', -1e9);
      let total = 0;
      let count = 0;
      for (let i = 0; i < N; i++) {
        const y = l.data[i];
        if (y === ignore || y < 0 || y >= C) continue;
        total += rowLse(s.data, i * C, C) - s.data[i * C + y];
        count++;
      }
      const v = reduction(n) === 'mean' ? total / Math.max(count, 1) : total;
      return [{ dtype: s.dtype, shape: [], data: new Float32Array([v]) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined];
      const [s, l] = ctx.node.inputs;
      return [ctx.emit('mpc.SoftmaxCrossEntropyGrad', [dy, s, l], { ...ctx.node.attrs })[0], undefined];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const st = ctx.type(n.inputs[0]);
      const { N, C } = sceDims(n, st, ctx.type(n.inputs[1]));
      const s = w.bind(n.inputs[0], st.dtype, 'read');
      const l = w.bind(n.inputs[1], ctx.type(n.inputs[1]).dtype, 'read');
      w.define(wgslRowLse(s, C, (i) => w.load(s, i)));
      const ignore = attrInt(n, 'ignore_index', -1e9);
      const mean = reduction(n) === 'mean';
      return [
        mapKernel(w, {
          out: n.outputs[0],
          outDtype: ctx.type(n.outputs[0]).dtype,
          count: 1,
          compute: `var total = 0.0;
var count = 0u;
for (var r = 0u; r < ${N}u; r++) {
  let y = ${w.load(l, 'r')};
  if (y == ${ignore | 0} || y < 0 || y >= ${C}) { continue; }
  total += row_lse(r) - ${w.load(s, `r * ${C}u + u32(y)`)};
  count++;
}
${mean ? 'return total / f32(max(count, 1u));' : 'return total;'}`,
        }),
      ];
    },
  },
  {
    op: 'mpc.SoftmaxCrossEntropyGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1],
    arity: [3, 3],
    outputs: 1,
    infer: (n, [, s, l]) => {
      sceDims(n, s, l);
      return [{ dtype: s.dtype, shape: [...s.shape] }];
    },
    interp: (n, [dy, s, l]) => {
      const { N, C } = sceDims(n, s, l);
      const ignore = attrInt(n, 'ignore_index', -1e9);
      let count = 0;
      for (let i = 0; i < N; i++) if (!(l.data[i] === ignore || l.data[i] < 0 || l.data[i] >= C)) count++;
      const scale = dy.data[0] / (reduction(n) === 'mean' ? Math.max(count, 1) : 1);
      const out = new Float32Array(N * C);
      for (let i = 0; i < N; i++) {
        const y = l.data[i];
        if (y === ignore || y < 0 || y >= C) continue;
        const lse = rowLse(s.data, i * C, C);
        for (let c = 0; c < C; c++) out[i * C + c] = (Math.exp(s.data[i * C + c] - lse) - (c === y ? 1 : 0)) * scale;
      }
      return [{ dtype: s.dtype, shape: [N, C], data: out }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const st = ctx.type(n.inputs[1]);
      const { N, C } = sceDims(n, st, ctx.type(n.inputs[2]));
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      const s = w.bind(n.inputs[1], st.dtype, 'read');
      const l = w.bind(n.inputs[2], ctx.type(n.inputs[2]).dtype, 'read');
      w.define(wgslRowLse(s, C, (i) => w.load(s, i)));
      const ignore = attrInt(n, 'ignore_index', -1e9);
      const valid = (y: string) => `!(${y} == ${ignore | 0} || ${y} < 0 || ${y} >= ${C})`;
      const countExpr =
        reduction(n) === 'mean'
          ? `var count = 0u;\nfor (var r = 0u; r < ${N}u; r++) { let yy = ${w.load(l, 'r')}; if (${valid('yy')}) { count++; } }\nlet scale = ${w.load(dy, '0u')} / f32(max(count, 1u));`
          : `let scale = ${w.load(dy, '0u')};`;
      return [
        mapKernel(w, {
          out: n.outputs[0],
          outDtype: ctx.type(n.outputs[0]).dtype,
          count: N * C,
          compute: `let row = i / ${C}u;
let c = i % ${C}u;
let y = ${w.load(l, 'row')};
if (!(${valid('y')})) { return 0.0; }
${countExpr}
let p = exp(${w.load(s, 'i')} - row_lse(row));
return (p - select(0.0, 1.0, u32(y) == c)) * scale;`,
        }),
      ];
    },
  },
  {
    // Mean squared error over all elements: mean((pred - target)^2).
    op: 'mpc.MeanSquaredError',
    domain: 'mpc',
    precision: 'deny',
    arity: [2, 2],
    outputs: 1,
    infer: (n, [p, t]) => {
      if (p.shape.join() !== t.shape.join()) throw new Error(`mse '${n.name}': prediction [${p.shape}] and target [${t.shape}] differ in shape`);
      return [{ dtype: p.dtype, shape: [] }];
    },
    interp: (_n, [p, t]) => {
      let s = 0;
      for (let i = 0; i < p.data.length; i++) s += (p.data[i] - t.data[i]) ** 2;
      return [{ dtype: p.dtype, shape: [], data: new Float32Array([s / p.data.length]) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined];
      const [p, t] = ctx.node.inputs;
      return [ctx.emit('mpc.MeanSquaredErrorGrad', [dy, p, t])[0], undefined];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const pt = ctx.type(n.inputs[0]);
      const count = sizeOf(pt.shape);
      const p = w.bind(n.inputs[0], pt.dtype, 'read');
      const t = w.bind(n.inputs[1], ctx.type(n.inputs[1]).dtype, 'read');
      return [
        mapKernel(w, {
          out: n.outputs[0],
          outDtype: ctx.type(n.outputs[0]).dtype,
          count: 1,
          compute: `var s = 0.0;\nfor (var k = 0u; k < ${count}u; k++) { let d = ${w.load(p, 'k')} - ${w.load(t, 'k')}; s += d * d; }\nreturn s / ${f32Lit(count)};`,
        }),
      ];
    },
  },
  {
    op: 'mpc.MeanSquaredErrorGrad',
    domain: 'mpc',
    precision: 'deny',
    arity: [3, 3],
    outputs: 1,
    infer: (_n, [, p]) => [{ dtype: p.dtype, shape: [...p.shape] }],
    interp: (_n, [dy, p, t]) => {
      const k = (2 * dy.data[0]) / p.data.length;
      return [{ dtype: p.dtype, shape: [...p.shape], data: Float32Array.from(p.data, (v, i) => k * (v - t.data[i])) }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const pt = ctx.type(n.inputs[1]);
      const count = sizeOf(pt.shape);
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      const p = w.bind(n.inputs[1], pt.dtype, 'read');
      const t = w.bind(n.inputs[2], ctx.type(n.inputs[2]).dtype, 'read');
      return [
        mapKernel(w, {
          out: n.outputs[0],
          outDtype: pt.dtype,
          count,
          compute: `return (2.0 * ${w.load(dy, '0u')} / ${f32Lit(count)}) * (${w.load(p, 'i')} - ${w.load(t, 'i')});`,
        }),
      ];
    },
  },
];
