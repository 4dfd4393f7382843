// LayerNormalization (opset 17): Y = (X - mean) * invstd * Scale + B over the dims from `axis`
// on, with optional outputs Mean and InvStdDev (X's shape with those dims set to 1). Deny class:
// statistics in f32 (stash_type 1), Scale and B never cast (dataInputs [0]): a bf16/f16 X under
// a policy override still meets f32 parameters, and every kernel reads each operand in its own
// dtype. Gradients: mpc.LayerNormStats (when the model did not ask for Mean/InvStdDev),
// mpc.LayerNormGrad for X, mpc.LayerNormParamGrad for Scale and B.
import { isFloat, type DType } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { broadcastShapes, broadcastStrides, sizeOf, type Tensor } from '../ir/tensor.js';
import { f32Lit, mapKernel, operandLoader, rowKernel, type KernelWriter } from '../codegen/storage.js';
import { broadcastIndex } from '../codegen/index-math.js';
import { attrFloat, attrInt, attrString, type EmitCtx, type OpRow, type ValueType } from './types.js';

interface LnDims {
  /** Number of normalized rows, and elements per row. */
  rows: number;
  D: number;
  /** The normalized dims (X.shape[axis:]) and the shape of Mean/InvStdDev. */
  normShape: number[];
  statShape: number[];
}

function lnDims(n: Node, shape: number[]): LnDims {
  const r = shape.length;
  let axis = attrInt(n, 'axis', -1);
  if (axis < -r || axis >= r) throw new Error(`${n.op} '${n.name}': axis ${axis} is out of range for rank ${r}`);
  if (axis < 0) axis += r;
  const normShape = shape.slice(axis);
  return { rows: sizeOf(shape.slice(0, axis)), D: sizeOf(normShape), normShape, statShape: shape.map((d, k) => (k < axis ? d : 1)) };
}

const epsOf = (n: Node) => Math.fround(attrFloat(n, 'epsilon', 1e-5));

function stashType(n: Node): DType {
  const t = attrInt(n, 'stash_type', 1);
  if (t !== 1) throw new Error(`${n.op} '${n.name}': stash_type ${t} is not supported (only 1, float)`);
  return 'f32';
}

/** Checks that a Scale/B shape broadcasts to the normalized shape (never the other way). */
function checkParam(n: Node, what: string, p: ValueType, d: LnDims): void {
  if (!isFloat(p.dtype)) throw new Error(`${n.op} '${n.name}': ${what} must be floating point, got ${p.dtype}`);
  let ok = p.shape.length <= d.normShape.length;
  try {
    ok &&= broadcastShapes(d.normShape, p.shape).join() === d.normShape.join();
  } catch {
    ok = false;
  }
  if (!ok) throw new Error(`${n.op} '${n.name}': ${what} of shape [${p.shape}] does not broadcast to the normalized shape [${d.normShape}]`);
}

/** Index into a broadcast parameter for each position of a normalized row. */
function paramIndex(d: LnDims, pShape: number[]): Int32Array {
  const st = broadcastStrides(pShape, d.normShape);
  const idx = new Int32Array(d.D);
  for (let p = 0; p < d.D; p++) {
    let r = p;
    let off = 0;
    for (let k = d.normShape.length - 1; k >= 0; k--) {
      off += (r % d.normShape[k]) * st[k];
      r = Math.floor(r / d.normShape[k]);
    }
    idx[p] = off;
  }
  return idx;
}

/** Per-row mean and 1/sqrt(var + eps) in f64 (two passes). */
function stats(x: Tensor, d: LnDims, eps: number): { mean: Float64Array; inv: Float64Array } {
  const mean = new Float64Array(d.rows);
  const inv = new Float64Array(d.rows);
  for (let r = 0; r < d.rows; r++) {
    let s = 0;
    for (let p = 0; p < d.D; p++) s += x.data[r * d.D + p];
    const m = s / d.D;
    let v = 0;
    for (let p = 0; p < d.D; p++) v += (x.data[r * d.D + p] - m) ** 2;
    mean[r] = m;
    inv[r] = 1 / Math.sqrt(v / d.D + eps);
  }
  return { mean, inv };
}

/** Defines `ln_stats(row) -> vec2(mean, invstd)` over buffer `x` (f32, two passes). */
function wgslStats(w: KernelWriter, x: string, d: LnDims, eps: number): string {
  w.define(`fn ln_stats(row: u32) -> vec2<f32> {
  let off = row * ${d.D}u;
  var s = 0.0;
  for (var k = 0u; k < ${d.D}u; k++) { s += ${w.load(x, 'off + k')}; }
  let mean = s / ${f32Lit(d.D)};
  var v = 0.0;
  for (var k = 0u; k < ${d.D}u; k++) { let t = ${w.load(x, 'off + k')} - mean; v += t * t; }
  return vec2<f32>(mean, 1.0 / sqrt(v / ${f32Lit(d.D)} + ${f32Lit(eps)}));
}
`);
  return 'ln_stats';
}

const floatOf = (n: Node, t: ValueType, what: string) => {
  if (!isFloat(t.dtype)) throw new Error(`${n.op} '${n.name}': ${what} must be floating point, got ${t.dtype}`);
};

export const layerNormOps: OpRow[] = [
  {
    op: 'LayerNormalization',
    domain: '',
    opsets: [17, 22],
    precision: 'deny',
    dataInputs: [0],
    arity: [2, 3],
    outputs: 3,
    // Its backward pass keeps the input anyway: the output is recomputed from it, not kept.
    recompute: () => true,
    infer: (n, [x, scale, bias]) => {
      floatOf(n, x, 'X');
      const d = lnDims(n, x.shape);
      checkParam(n, 'Scale', scale, d);
      if (bias) checkParam(n, 'B', bias, d);
      const stash = stashType(n);
      return [
        { dtype: x.dtype, shape: [...x.shape] },
        { dtype: stash, shape: d.statShape },
        { dtype: stash, shape: d.statShape },
      ];
    },
    interp: (n, [x, scale, bias]) => {
      const d = lnDims(n, x.shape);
      const { mean, inv } = stats(x, d, epsOf(n));
      const si = paramIndex(d, scale.shape);
      const bi = bias ? paramIndex(d, bias.shape) : undefined;
      const y = new Float32Array(x.data.length);
      for (let r = 0; r < d.rows; r++)
        for (let p = 0; p < d.D; p++) {
          const j = r * d.D + p;
          y[j] = (x.data[j] - mean[r]) * inv[r] * scale.data[si[p]] + (bias && bi ? bias.data[bi[p]] : 0);
        }
      const stash = stashType(n);
      return [
        { dtype: x.dtype, shape: [...x.shape], data: y },
        { dtype: stash, shape: d.statShape, data: Float32Array.from(mean) },
        { dtype: stash, shape: d.statShape, data: Float32Array.from(inv) },
      ];
    },
    grad: (ctx) => {
      const n = ctx.node;
      const [dy, dMean, dInv] = ctx.dy;
      if (dMean || dInv) throw new Error(`LayerNormalization '${n.name}': gradients through the Mean/InvStdDev outputs are not supported`);
      if (!dy) return [undefined, undefined, undefined];
      const [x, scale, bias] = n.inputs;
      const axis = attrInt(n, 'axis', -1);
      const [mean, inv] = n.outputs[1] && n.outputs[2] ? n.outputs.slice(1, 3) : ctx.emit('mpc.LayerNormStats', [x], { axis, epsilon: epsOf(n) }, 2);
      const dx = ctx.emit('mpc.LayerNormGrad', [dy, x, scale, mean, inv], { axis })[0];
      const dScale = ctx.emit('mpc.LayerNormParamGrad', [dy, x, mean, inv, scale], { axis, param: 'scale' })[0];
      const dBias = bias ? ctx.emit('mpc.LayerNormParamGrad', [dy, x, mean, inv, bias], { axis, param: 'bias' })[0] : undefined;
      return [dx, dScale, dBias];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const d = lnDims(n, xt.shape);
      const eps = epsOf(n);
      const kernels = [];
      const [y, mean, inv] = n.outputs;
      if (y) {
        const w = ctx.writer('y');
        const x = w.bind(n.inputs[0], xt.dtype, 'read');
        const param = (k: number, c: string) => {
          const name = n.inputs[k];
          if (!name) return '0.0';
          const t = ctx.type(name);
          return w.load(w.bind(name, t.dtype, 'read'), broadcastIndex(d.normShape, t.shape, c));
        };
        const st = wgslStats(w, x, d, eps);
        const element = (c: string) => `(${w.load(x, `base + ${c}`)} - st.x) * st.y * ${param(1, c)} + ${param(2, c)}`;
        kernels.push(rowKernel(w, { out: y, outDtype: ctx.type(y).dtype, rows: { outer: d.rows, len: d.D, inner: 1 }, prologue: `let st = ${st}(row);`, element }));
      }
      for (const [out, comp, suffix] of [[mean, 'x', 'mean'], [inv, 'y', 'invstd']] as const)
        if (out) kernels.push(statKernel(ctx, n.inputs[0], out, d, eps, comp, suffix));
      return kernels;
    },
  },
  {
    // (X) -> (Mean, InvStdDev): the statistics a LayerNormalization without those outputs
    // needs for its gradient. Attributes axis and epsilon.
    op: 'mpc.LayerNormStats',
    domain: 'mpc',
    precision: 'deny',
    arity: [1, 1],
    outputs: 2,
    infer: (n, [x]) => {
      floatOf(n, x, 'X');
      const d = lnDims(n, x.shape);
      return [
        { dtype: 'f32', shape: d.statShape },
        { dtype: 'f32', shape: d.statShape },
      ];
    },
    interp: (n, [x]) => {
      const d = lnDims(n, x.shape);
      const { mean, inv } = stats(x, d, epsOf(n));
      return [
        { dtype: 'f32', shape: d.statShape, data: Float32Array.from(mean) },
        { dtype: 'f32', shape: d.statShape, data: Float32Array.from(inv) },
      ];
    },
    wgsl: (n, ctx) => {
      const d = lnDims(n, ctx.type(n.inputs[0]).shape);
      return [statKernel(ctx, n.inputs[0], n.outputs[0], d, epsOf(n), 'x', 'mean'), statKernel(ctx, n.inputs[0], n.outputs[1], d, epsOf(n), 'y', 'invstd')];
    },
  },
  {
    // (dY, X, Scale, Mean, InvStdDev) -> dX, with xhat = (x - mean) invstd and g = dY Scale:
    //   dX = invstd (g - mean(g) - xhat mean(g xhat)), means over the normalized row.
    op: 'mpc.LayerNormGrad',
    domain: 'mpc',
    precision: 'deny',
    arity: [5, 5],
    outputs: 1,
    prologue: [0],
    // A row kernel: fused consumers (the residual stream's gradient sum, a cast) go into its store.
    epilogue: true,
    infer: (n, [dy, x, scale]) => {
      floatOf(n, dy, 'dY');
      checkParam(n, 'Scale', scale, lnDims(n, x.shape));
      return [{ dtype: dy.dtype, shape: [...x.shape] }];
    },
    interp: (n, [dy, x, scale, mean, inv], ctx) => {
      const d = lnDims(n, x.shape);
      const si = paramIndex(d, scale.shape);
      const out = new Float32Array(x.data.length);
      const xh = new Float64Array(d.D);
      const g = new Float64Array(d.D);
      for (let r = 0; r < d.rows; r++) {
        let sg = 0;
        let sgx = 0;
        for (let p = 0; p < d.D; p++) {
          xh[p] = (x.data[r * d.D + p] - mean.data[r]) * inv.data[r];
          g[p] = dy.data[r * d.D + p] * scale.data[si[p]];
          sg += g[p];
          sgx += g[p] * xh[p];
        }
        for (let p = 0; p < d.D; p++) out[r * d.D + p] = inv.data[r] * (g[p] - sg / d.D - (xh[p] * sgx) / d.D);
      }
      return [{ ...ctx.outTypes[0], data: out }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[1]);
      const st = ctx.type(n.inputs[2]);
      const d = lnDims(n, xt.shape);
      // dY may come through a prologue (a widening cast of a GEMM's result, read narrow).
      const dy = operandLoader(w, n, ctx, 0);
      const [x, scale, mean, inv] = n.inputs.slice(1).map((v) => w.bind(v, ctx.type(v).dtype, 'read'));
      const sIdx = (p: string) => broadcastIndex(d.normShape, st.shape, p);
      const prologue = `let m = ${w.load(mean, 'row')};
let inv_s = ${w.load(inv, 'row')};
var sg = 0.0;
var sgx = 0.0;
for (var p = 0u; p < ${d.D}u; p++) {
  let g = ${dy('base + p')} * ${w.load(scale, sIdx('p'))};
  sg += g;
  sgx += g * ((${w.load(x, 'base + p')} - m) * inv_s);
}`;
      // inv_s (g - sg/D - xhat sgx/D), with xhat = (x - m) inv_s and g = dy scale at c.
      const element = (c: string) =>
        `inv_s * (${dy(`base + ${c}`)} * ${w.load(scale, sIdx(c))} - sg / ${f32Lit(d.D)} - ((${w.load(x, `base + ${c}`)} - m) * inv_s) * sgx / ${f32Lit(d.D)})`;
      return [rowKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, rows: { outer: d.rows, len: d.D, inner: 1 }, prologue, element })];
    },
  },
  {
    // (dY, X, Mean, InvStdDev, P) -> dP for P = Scale (sum of dY xhat) or B (sum of dY), summed
    // over the rows and over the positions a broadcast P covers. dP has P's dtype and shape
    // (f32 master weights get f32 gradients whatever X's dtype).
    op: 'mpc.LayerNormParamGrad',
    domain: 'mpc',
    precision: 'deny',
    arity: [5, 5],
    outputs: 1,
    prologue: [0],
    infer: (n, [dy, x, , , p]) => {
      floatOf(n, dy, 'dY');
      checkParam(n, 'the parameter', p, lnDims(n, x.shape));
      paramKind(n);
      return [{ dtype: p.dtype, shape: [...p.shape] }];
    },
    interp: (n, [dy, x, mean, inv, p], ctx) => {
      const d = lnDims(n, x.shape);
      const pi = paramIndex(d, p.shape);
      const scale = paramKind(n) === 'scale';
      const acc = new Float64Array(p.data.length);
      for (let r = 0; r < d.rows; r++)
        for (let q = 0; q < d.D; q++) {
          const j = r * d.D + q;
          acc[pi[q]] += dy.data[j] * (scale ? (x.data[j] - mean.data[r]) * inv.data[r] : 1);
        }
      return [{ ...ctx.outTypes[0], data: Float32Array.from(acc) }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[1]);
      const pt = ctx.type(n.inputs[4]);
      const d = lnDims(n, xt.shape);
      const scale = paramKind(n) === 'scale';
      const dy = operandLoader(w, n, ctx, 0);
      const term = (j: string) => {
        if (!scale) return dy(j);
        const [x, mean, inv] = n.inputs.slice(1, 4).map((v) => w.bind(v, ctx.type(v).dtype, 'read'));
        return `${dy(j)} * ((${w.load(x, j)} - ${w.load(mean, 'r')}) * ${w.load(inv, 'r')})`;
      };
      // Unbroadcast parameter: position q of every row. Broadcast: every position mapping to q.
      const direct = sizeOf(pt.shape) === d.D;
      const body = direct
        ? `acc += ${term(`r * ${d.D}u + i`)};`
        : `for (var q = 0u; q < ${d.D}u; q++) { if (${broadcastIndex(d.normShape, pt.shape, 'q')} == i) { acc += ${term(`r * ${d.D}u + q`)}; } }`;
      const compute = `var acc = 0.0;\nfor (var r = 0u; r < ${d.rows}u; r++) {\n  ${body}\n}\nreturn acc;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: pt.dtype, count: sizeOf(pt.shape), compute })];
    },
  },
];

function paramKind(n: Node): 'scale' | 'bias' {
  const k = attrString(n, 'param');
  if (k !== 'scale' && k !== 'bias') throw new Error(`${n.op} '${n.name}': param must be 'scale' or 'bias', got '${k}'`);
  return k;
}

/** A kernel writing one of the row statistics (component x: mean, y: invstd) per row. */
function statKernel(ctx: EmitCtx, xName: string, out: string, d: LnDims, eps: number, comp: 'x' | 'y', suffix: string) {
  const w = ctx.writer(suffix);
  const x = w.bind(xName, ctx.type(xName).dtype, 'read');
  const st = wgslStats(w, x, d, eps);
  return mapKernel(w, { out, outDtype: ctx.type(out).dtype, count: d.rows, compute: `return ${st}(i).${comp};` });
}
