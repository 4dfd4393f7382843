// Softmax and LogSoftmax along one axis (opset 13 semantics; opsets 1-12 flattened the input
// to 2-D at `axis`, which these rows do not implement) and their gradient ops. Deny class.
// Numerically stable: the row maximum is subtracted before exp.
//
// Kernel shape: a row kernel (codegen/storage.ts rowKernel): the row's max and sum once, then
// every element of the row.
import { isFloat } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { sizeOf } from '../ir/tensor.js';
import { operandLoader, rowKernel, type KernelWriter, type RowShape } from '../codegen/storage.js';
import { wgslMath } from './math.js';
import { attrInt, type EmitCtx, type OpRow, type ValueType } from './types.js';

/** Elements before the axis, along it, and after it (the stride along the axis). */
type Rows = RowShape;

function rowsOf(n: Node, shape: number[]): Rows {
  const r = shape.length;
  let axis = attrInt(n, 'axis', -1);
  if (axis < -r || axis >= r) throw new Error(`${n.op} '${n.name}': axis ${axis} is out of range for rank ${r}`);
  if (axis < 0) axis += r;
  return { outer: sizeOf(shape.slice(0, axis)), len: shape[axis], inner: sizeOf(shape.slice(axis + 1)) };
}

/** Calls f(idx) for every row, idx holding the flat offsets of the row's elements. */
function forRows(rows: Rows, f: (idx: number[]) => void): void {
  const { outer, len, inner } = rows;
  const idx = new Array<number>(len);
  for (let o = 0; o < outer; o++)
    for (let i = 0; i < inner; i++) {
      for (let c = 0; c < len; c++) idx[c] = o * len * inner + c * inner + i;
      f(idx);
    }
}

/** Row max and sum of exp(x - max), in f64. */
function rowStats(x: ArrayLike<number>, idx: number[]): { m: number; s: number } {
  let m = -Infinity;
  for (const j of idx) m = Math.max(m, x[j]);
  let s = 0;
  for (const j of idx) s += Math.exp(x[j] - m);
  return { m, s };
}

/** WGSL: `base` of element i's row; the row's elements are base + c * inner. */

function sameShapeFloat(n: Node, ins: ValueType[]): void {
  for (const t of ins) {
    if (!isFloat(t.dtype)) throw new Error(`${n.op} '${n.name}': needs floating-point inputs, got ${t.dtype}`);
    if (t.shape.join() !== ins[0].shape.join()) throw new Error(`${n.op} '${n.name}': inputs differ in shape ([${ins.map((i) => i.shape).join('], [')}])`);
  }
}

/** Longest row whose exponentials a Softmax kernel keeps rather than computing twice (attention's rows: the context). */
const SOFTMAX_KEEP_MAX = 256;

function softmaxRow(op: 'Softmax' | 'LogSoftmax'): OpRow {
  const log = op === 'LogSoftmax';
  const row: OpRow = {
    op,
    domain: '',
    opsets: [13, 22],
    precision: 'deny',
    arity: [1, 1],
    outputs: 1,
    // A row kernel: fused consumers (the cast of attention's probabilities) go into its store.
    epilogue: true,
    // One pass over each row: recomputed in the backward pass rather than kept (attention's
    // probabilities are the largest activation of a transformer at moderate context).
    recompute: () => true,
    infer: (n, [x]) => {
      sameShapeFloat(n, [x]);
      rowsOf(n, x.shape);
      return [{ dtype: x.dtype, shape: [...x.shape] }];
    },
    interp: (n, [x], ctx) => {
      const out = new Float32Array(x.data.length);
      forRows(rowsOf(n, x.shape), (idx) => {
        const { m, s } = rowStats(x.data, idx);
        for (const j of idx) out[j] = log ? x.data[j] - m - Math.log(s) : Math.exp(x.data[j] - m) / s;
      });
      return [{ ...ctx.outTypes[0], data: out }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      return [dy ? ctx.emit(`mpc.${op}Grad`, [dy, ctx.node.outputs[0]], { axis: attrInt(ctx.node, 'axis', -1) })[0] : undefined];
    },
    rows: {
      lastAxis: (n, shape) => rowsOf(n, shape).inner === 1,
      body: (_n, w, len, at) => rowBody(w, len, at),
    },
    wgsl: (n, ctx: EmitCtx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[0]);
      const r = rowsOf(n, xt.shape);
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const { prologue, element } = rowBody(w, r.len, (c: string) => w.load(x, `base + ${c} * ${r.inner}u`));
      return [rowKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, rows: r, prologue, element })];
    },
  };
  return row;

  /** One row of `len` elements, element c read by `at(c)`. */
  function rowBody(w: KernelWriter, len: number, at: (c: string) => string): { prologue: string; element: (c: string) => string } {
    const exp = wgslMath(w, 'mpc_exp');
    // A short row keeps its exponentials in registers: each computed once, for the sum and
    // for its element (the same values the recomputation gave).
    const keep = !log && len <= SOFTMAX_KEEP_MAX;
    const prologue = `var m = ${at('0u')};
for (var k = 1u; k < ${len}u; k++) { m = max(m, ${at('k')}); }
var s = 0.0;${keep ? `\nvar e: array<f32, ${len}>;` : ''}
for (var k = 0u; k < ${len}u; k++) { ${keep ? `e[k] = ${exp}(${at('k')} - m); s += e[k];` : `s += ${exp}(${at('k')} - m);`} }${log ? `\nlet log_s = ${wgslMath(w, 'mpc_log')}(s);` : ''}`;
    const element = (c: string) => (log ? `(${at(c)} - m) - log_s` : keep ? `e[${c}] / s` : `${exp}(${at(c)} - m) / s`);
    return { prologue, element };
  }
}

/**
 * Gradient ops (dY, Y) -> dX along `axis`:
 *   Softmax:    dX = Y (dY - sum(dY Y))
 *   LogSoftmax: dX = dY - exp(Y) sum(dY)
 */
function softmaxGradRow(op: 'Softmax' | 'LogSoftmax'): OpRow {
  const log = op === 'LogSoftmax';
  return {
    op: `mpc.${op}Grad`,
    domain: 'mpc',
    precision: 'deny',
    arity: [2, 2],
    outputs: 1,
    epilogue: true,
    prologue: [0],
    infer: (n, [dy, y]) => {
      sameShapeFloat(n, [dy, y]);
      return [{ dtype: dy.dtype, shape: [...y.shape] }];
    },
    interp: (n, [dy, y], ctx) => {
      const out = new Float32Array(y.data.length);
      forRows(rowsOf(n, y.shape), (idx) => {
        let s = 0;
        for (const j of idx) s += log ? dy.data[j] : dy.data[j] * y.data[j];
        for (const j of idx) out[j] = log ? dy.data[j] - Math.exp(y.data[j]) * s : y.data[j] * (dy.data[j] - s);
      });
      return [{ ...ctx.outTypes[0], data: out }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const yt = ctx.type(n.inputs[1]);
      const r = rowsOf(n, yt.shape);
      // dY may come through a prologue (a widening cast: a GEMM's f16 result read as f32).
      const dyAt = operandLoader(w, n, ctx, 0);
      const yAt = operandLoader(w, n, ctx, 1);
      const dy = (c: string) => dyAt(`base + ${c} * ${r.inner}u`);
      const y = (c: string) => yAt(`base + ${c} * ${r.inner}u`);
      const term = log ? dy('k') : `${dy('k')} * ${y('k')}`;
      const prologue = `var s = 0.0;\nfor (var k = 0u; k < ${r.len}u; k++) { s += ${term}; }`;
      const element = (c: string) => (log ? `${dy(c)} - ${wgslMath(w, 'mpc_exp')}(${y(c)}) * s` : `${y(c)} * (${dy(c)} - s)`);
      return [rowKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, rows: r, prologue, element })];
    },
  };
}

export const softmaxOps: OpRow[] = [softmaxRow('Softmax'), softmaxRow('LogSoftmax'), softmaxGradRow('Softmax'), softmaxGradRow('LogSoftmax')];
