// BatchNormalization (inference and training mode) and the internal ops of its gradient.
// Always f32 (deny class); scale, bias, mean and variance keep their own dtype (f32) even
// when the data input is low precision (dataInputs = [0]).
//
// Training mode (training_mode=1, opset 14+) normalises with the batch statistics (population
// variance, as the ONNX spec) and returns the running statistics
//   running = input * momentum + batch * (1 - momentum).
// The gradient treats the statistics as functions of X (the usual batch-norm backward):
//   xhat = (x - mean) * invstd,  dScale = sum(dY xhat),  dB = sum(dY),
//   dX   = scale * invstd * (dY - dB / M - xhat * dScale / M)      (training, M = N x spatial)
//   dX   = scale * invstd * dY                                     (inference)
// mean and invstd come from mpc.BatchNormStats, recomputed in the backward pass.
import { sizeOf } from '../ir/tensor.js';
import type { Node } from '../ir/graph.js';
import { isFloat } from '../ir/dtypes.js';
import { dispatch1d } from '../codegen/kernel.js';
import { f32Lit, mapKernel, MAP_WORKGROUP, type KernelWriter } from '../codegen/storage.js';
import { castAttrs, castTarget } from './cast.js';
import { attrFloat, attrInt, type EmitCtx, type OpRow, type ValueType } from './types.js';

const u = (v: number) => `${v}u`;

/** Channels, batch, elements per (n, c) plane, and elements per channel. */
interface BnDims {
  N: number;
  C: number;
  inner: number;
  M: number;
}

function bnDims(n: Node, x: readonly number[]): BnDims {
  if (x.length < 2) throw new Error(`${n.op} '${n.name}': input must be (N, C, ...), got [${x}]`);
  const inner = sizeOf(x.slice(2));
  return { N: x[0], C: x[1], inner, M: x[0] * inner };
}

function channelVector(n: Node, what: string, t: ValueType | undefined, C: number): void {
  if (!t) throw new Error(`${n.op} '${n.name}': missing ${what}`);
  if (!isFloat(t.dtype)) throw new Error(`${n.op} '${n.name}': ${what} must be floating point, got ${t.dtype}`);
  if (t.shape.length !== 1 || t.shape[0] !== C) throw new Error(`${n.op} '${n.name}': ${what} must be [${C}], got [${t.shape}]`);
}

const training = (n: Node) => attrInt(n, 'training_mode', 0) === 1;
const epsilon = (n: Node) => attrFloat(n, 'epsilon', 1e-5);
/**
 * The factor from the batch's population variance to the variance blended into the running
 * one: 1 (ONNX), or M / (M - 1) (unbiased, as PyTorch; set by the importer for its exports).
 */
const runningVarFactor = (n: Node, d: BnDims) => (attrInt(n, 'running_var_unbiased', 0) === 1 && d.M > 1 ? d.M / (d.M - 1) : 1);

// ---------------------------------------------------------------------------------------------
// f64 reference math (exported for the finite-difference tests).

/** Per-channel batch mean and population variance (two passes). */
export function batchStatsRef(d: BnDims, x: ArrayLike<number>): { mean: Float64Array; variance: Float64Array } {
  const mean = new Float64Array(d.C);
  const variance = new Float64Array(d.C);
  for (let c = 0; c < d.C; c++) {
    let s = 0;
    for (let n = 0; n < d.N; n++) for (let k = 0; k < d.inner; k++) s += x[(n * d.C + c) * d.inner + k];
    const m = s / d.M;
    let v = 0;
    for (let n = 0; n < d.N; n++) for (let k = 0; k < d.inner; k++) v += (x[(n * d.C + c) * d.inner + k] - m) ** 2;
    mean[c] = m;
    variance[c] = v / d.M;
  }
  return { mean, variance };
}

export function batchNormRef(
  d: BnDims,
  x: ArrayLike<number>,
  scale: ArrayLike<number>,
  bias: ArrayLike<number>,
  mean: ArrayLike<number>,
  variance: ArrayLike<number>,
  eps: number,
): Float64Array {
  const y = new Float64Array(d.N * d.C * d.inner);
  for (let i = 0; i < y.length; i++) {
    const c = Math.floor(i / d.inner) % d.C;
    y[i] = ((x[i] - mean[c]) / Math.sqrt(variance[c] + eps)) * scale[c] + bias[c];
  }
  return y;
}

export { bnDims as batchNormDims };

// ---------------------------------------------------------------------------------------------
// WGSL helpers: per-channel sums over N and the spatial axes.

/** `fn channel_mean(c: u32) -> f32` and `fn channel_var(c: u32, mean: f32) -> f32` over binding `x`. */
function defineChannelStats(w: KernelWriter, d: BnDims, x: string): void {
  // Two-level sums: each (n, c) plane is summed on its own, then the planes. A channel of a
  // convolution has N x H x W elements (10^5 for a batch of 128 28x28 images), where one
  // running f32 sum loses about 1e-3 of a small mean; this keeps the error at the planes'.
  const loop = (term: string) => `var s = 0.0;
  for (var nn = 0u; nn < ${u(d.N)}; nn++) {
    let base = (nn * ${u(d.C)} + c) * ${u(d.inner)};
    var p = 0.0;
    for (var k = 0u; k < ${u(d.inner)}; k++) { ${term} }
    s += p;
  }`;
  w.define(`fn channel_mean(c: u32) -> f32 {
  ${loop(`p += ${w.load(x, 'base + k')};`)}
  return s / ${f32Lit(d.M)};
}
`);
  w.define(`fn channel_var(c: u32, mean: f32) -> f32 {
  ${loop(`let e = ${w.load(x, 'base + k')} - mean; p += e * e;`)}
  return s / ${f32Lit(d.M)};
}
`);
}

/** A kernel with one invocation per channel (unpacked f32 outputs only). */
function perChannel(w: KernelWriter, C: number, body: string) {
  return w.finish({
    body: `if (flat >= ${u(C)}) { return; }\nlet c = flat;\n${body}`,
    workgroupSize: [MAP_WORKGROUP, 1, 1],
    dispatch: dispatch1d(Math.ceil(C / MAP_WORKGROUP)),
  });
}

function bnTrainingKernels(n: Node, ctx: EmitCtx) {
  const [xn, sn, bn, mn, vn] = n.inputs;
  const [yn, rmn, rvn] = n.outputs;
  const xt = ctx.type(xn);
  const d = bnDims(n, xt.shape);
  const eps = f32Lit(epsilon(n));
  const mom = attrFloat(n, 'momentum', 0.9);
  const yt = ctx.type(yn);
  const normalise = (w: KernelWriter, mean: string, variance: string) =>
    `(${w.load(w.bind(xn, xt.dtype, 'read'), 'i')} - ${mean}) / sqrt(${variance} + ${eps}) * ${w.load(w.bind(sn, ctx.type(sn).dtype, 'read'), 'c')} + ${w.load(w.bind(bn, ctx.type(bn).dtype, 'read'), 'c')}`;
  const running = (w: KernelWriter, input: string, batch: string, k = 1) =>
    `${w.load(w.bind(input, ctx.type(input).dtype, 'read'), 'c')} * ${f32Lit(mom)} + ${batch} * ${f32Lit(k * (1 - mom))}`;
  const kVar = runningVarFactor(n, d);

  if (rmn && rvn && ctx.type(rmn).dtype === 'f32' && ctx.type(rvn).dtype === 'f32') {
    // The running-statistics outputs hold the batch statistics first: one pass computes
    // them per channel, the normalisation reads them, and a last pass blends in the inputs.
    const ws = ctx.writer('stats');
    const rm = ws.bind(rmn, 'f32', 'read_write');
    const rv = ws.bind(rvn, 'f32', 'read_write');
    defineChannelStats(ws, d, ws.bind(xn, xt.dtype, 'read'));
    const stats = perChannel(ws, d.C, `let m = channel_mean(c);\n${ws.store(rm, 'c', 'm')}\n${ws.store(rv, 'c', 'channel_var(c, m)')}`);
    const wy = ctx.writer('y');
    const [bm, bv] = [wy.load(wy.bind(rmn, 'f32', 'read'), 'c'), wy.load(wy.bind(rvn, 'f32', 'read'), 'c')];
    const y = mapKernel(wy, {
      out: yn,
      outDtype: yt.dtype,
      count: sizeOf(yt.shape),
      compute: `let c = (i / ${u(d.inner)}) % ${u(d.C)};\nreturn ${normalise(wy, bm, bv)};`,
    });
    const wr = ctx.writer('running');
    const rm2 = wr.bind(rmn, 'f32', 'read_write');
    const rv2 = wr.bind(rvn, 'f32', 'read_write');
    const blend = perChannel(
      wr,
      d.C,
      `${wr.store(rm2, 'c', running(wr, mn, wr.load(rm2, 'c')))}\n${wr.store(rv2, 'c', running(wr, vn, wr.load(rv2, 'c'), kVar))}`,
    );
    return [stats, y, blend];
  }
  // Otherwise every invocation computes its channel's statistics itself: correct, but
  // O(N x spatial) per element. Exporters emit both running outputs, so this is rare.
  const wy = ctx.writer('y');
  defineChannelStats(wy, d, wy.bind(xn, xt.dtype, 'read'));
  const kernels = [
    mapKernel(wy, {
      out: yn,
      outDtype: yt.dtype,
      count: sizeOf(yt.shape),
      compute: `let c = (i / ${u(d.inner)}) % ${u(d.C)};\nlet m = channel_mean(c);\nreturn ${normalise(wy, 'm', 'channel_var(c, m)')};`,
    }),
  ];
  for (const [out, input, variance] of [
    [rmn, mn, false],
    [rvn, vn, true],
  ] as [string | undefined, string, boolean][]) {
    if (!out) continue;
    const w = ctx.writer(variance ? 'running_var' : 'running_mean');
    defineChannelStats(w, d, w.bind(xn, xt.dtype, 'read'));
    const batch = variance ? 'channel_var(c, channel_mean(c))' : 'channel_mean(c)';
    kernels.push(mapKernel(w, { out, outDtype: ctx.type(out).dtype, count: d.C, compute: `let c = i;\nreturn ${running(w, input, batch, variance ? kVar : 1)};` }));
  }
  return kernels;
}

// ---------------------------------------------------------------------------------------------
// Rows.

export const normOps: OpRow[] = [
  {
    // inputs: X, scale, B, input_mean, input_var. outputs: Y (inference) or Y, running_mean,
    // running_var (training_mode=1).
    op: 'BatchNormalization',
    domain: '',
    opsets: [9, 22],
    precision: 'deny',
    dataInputs: [0],
    arity: [5, 5],
    outputs: 3,
    infer: (n, [x, s, b, m, v]) => {
      const d = bnDims(n, x.shape);
      if (!isFloat(x.dtype)) throw new Error(`${n.op} '${n.name}': X must be floating point, got ${x.dtype}`);
      channelVector(n, 'scale', s, d.C);
      channelVector(n, 'B', b, d.C);
      channelVector(n, 'input_mean', m, d.C);
      channelVector(n, 'input_var', v, d.C);
      if (!training(n) && n.outputs.slice(1).some(Boolean))
        throw new Error(
          `${n.op} '${n.name}': the running-statistics outputs exist in training mode only (training_mode=1, or 5 outputs at opsets 9-13)`,
        );
      return [
        { dtype: x.dtype, shape: [...x.shape] },
        { dtype: m.dtype, shape: [d.C] },
        { dtype: v.dtype, shape: [d.C] },
      ];
    },
    interp: (n, [x, s, b, m, v]) => {
      const d = bnDims(n, x.shape);
      const eps = epsilon(n);
      if (!training(n)) return [{ dtype: x.dtype, shape: [...x.shape], data: Float32Array.from(batchNormRef(d, x.data, s.data, b.data, m.data, v.data, eps)) }];
      const mom = attrFloat(n, 'momentum', 0.9);
      const st = batchStatsRef(d, x.data);
      const blend = (input: ArrayLike<number>, batch: Float64Array, k: number) => Float32Array.from(batch, (bv, c) => input[c] * mom + bv * k * (1 - mom));
      return [
        { dtype: x.dtype, shape: [...x.shape], data: Float32Array.from(batchNormRef(d, x.data, s.data, b.data, st.mean, st.variance, eps)) },
        { dtype: m.dtype, shape: [d.C], data: blend(m.data, st.mean, 1) },
        { dtype: v.dtype, shape: [d.C], data: blend(v.data, st.variance, runningVarFactor(n, d)) },
      ];
    },
    grad: (ctx) => {
      const n = ctx.node;
      const dy = ctx.dy[0];
      if (ctx.dy[1] || ctx.dy[2]) throw new Error(`${n.op} '${n.name}': gradients through the running statistics are not supported`);
      if (!dy) return [undefined, undefined, undefined, undefined, undefined];
      const [x, s, b, m, v] = n.inputs;
      const mode = training(n) ? 1 : 0;
      const [mean, invstd] = ctx.emit('mpc.BatchNormStats', [x, m, v], { epsilon: epsilon(n), training_mode: mode }, 2);
      const dScale = ctx.emit('mpc.BatchNormParamGrad', [dy, x, mean, invstd], { bias: 0, ...castAttrs(ctx.type(s).dtype) })[0];
      const dBias = ctx.emit('mpc.BatchNormParamGrad', [dy], { bias: 1, ...castAttrs(ctx.type(b).dtype) })[0];
      const dx = ctx.emit('mpc.BatchNormInputGrad', mode ? [dy, x, s, mean, invstd, dScale, dBias] : [dy, x, s, mean, invstd], { training_mode: mode })[0];
      if (mode) return [dx, dScale, dBias, undefined, undefined];
      // Inference mode: Y depends on the given statistics too.
      //   dMean = -scale invstd dB,   dVar = -1/2 scale invstd^2 dScale
      const mul = (a: string, b: string) => ctx.emit('Mul', [a, b])[0];
      const k = mul(s, invstd);
      const half = ctx.constant({ dtype: ctx.type(v).dtype, shape: [], data: new Float32Array([-0.5]) });
      const dMean = ctx.emit('Neg', [mul(k, dBias)])[0];
      const dVar = mul(mul(k, invstd), mul(dScale, half));
      return [dx, dScale, dBias, dMean, dVar];
    },
    wgsl: (n, ctx) => {
      if (training(n)) return bnTrainingKernels(n, ctx);
      const [xn, sn, bn, mn, vn] = n.inputs;
      const xt = ctx.type(xn);
      const d = bnDims(n, xt.shape);
      const w = ctx.writer();
      const ch = (v: string) => w.load(w.bind(v, ctx.type(v).dtype, 'read'), 'c');
      const x = w.bind(xn, xt.dtype, 'read');
      const yt = ctx.type(n.outputs[0]);
      const compute = `let c = (i / ${u(d.inner)}) % ${u(d.C)};
return (${w.load(x, 'i')} - ${ch(mn)}) / sqrt(${ch(vn)} + ${f32Lit(epsilon(n))}) * ${ch(sn)} + ${ch(bn)};`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
    },
  },
  {
    // Per-channel mean and 1/sqrt(var + epsilon), f32: of the batch (training_mode=1) or of
    // the given statistics. inputs: X, input_mean, input_var. outputs: mean, invstd.
    op: 'mpc.BatchNormStats',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0],
    arity: [3, 3],
    outputs: 2,
    infer: (n, [x, m, v]) => {
      const d = bnDims(n, x.shape);
      channelVector(n, 'input_mean', m, d.C);
      channelVector(n, 'input_var', v, d.C);
      return [
        { dtype: 'f32', shape: [d.C] },
        { dtype: 'f32', shape: [d.C] },
      ];
    },
    interp: (n, [x, m, v]) => {
      const d = bnDims(n, x.shape);
      const st = training(n) ? batchStatsRef(d, x.data) : { mean: m.data, variance: v.data };
      const eps = epsilon(n);
      return [
        { dtype: 'f32', shape: [d.C], data: Float32Array.from(st.mean) },
        { dtype: 'f32', shape: [d.C], data: Float32Array.from(st.variance, (vv) => 1 / Math.sqrt(vv + eps)) },
      ];
    },
    wgsl: (n, ctx) => {
      const [xn, mn, vn] = n.inputs;
      const [meanOut, invOut] = n.outputs;
      const xt = ctx.type(xn);
      const d = bnDims(n, xt.shape);
      const eps = f32Lit(epsilon(n));
      const kernels = [];
      if (meanOut) {
        const w = ctx.writer('mean');
        let expr: string;
        if (training(n)) {
          defineChannelStats(w, d, w.bind(xn, xt.dtype, 'read'));
          expr = 'channel_mean(i)';
        } else expr = w.load(w.bind(mn, ctx.type(mn).dtype, 'read'), 'i');
        kernels.push(mapKernel(w, { out: meanOut, outDtype: 'f32', count: d.C, compute: `return ${expr};` }));
      }
      if (invOut) {
        const w = ctx.writer('invstd');
        let expr: string;
        if (training(n)) {
          defineChannelStats(w, d, w.bind(xn, xt.dtype, 'read'));
          expr = 'channel_var(i, channel_mean(i))';
        } else expr = w.load(w.bind(vn, ctx.type(vn).dtype, 'read'), 'i');
        kernels.push(mapKernel(w, { out: invOut, outDtype: 'f32', count: d.C, compute: `return 1.0 / sqrt(${expr} + ${eps});` }));
      }
      return kernels;
    },
  },
  {
    // dScale (bias=0: sum(dY (x - mean) invstd); inputs dY, X, mean, invstd) or dB (bias=1:
    // sum(dY); input dY) per channel, in dtype `to`.
    op: 'mpc.BatchNormParamGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1],
    arity: [1, 4],
    outputs: 1,
    infer: (n, [dy, x, m, s]) => {
      const d = bnDims(n, dy.shape);
      if (attrInt(n, 'bias') === 0) {
        if (!x || x.shape.join() !== dy.shape.join()) throw new Error(`${n.op} '${n.name}': X must have dY's shape [${dy.shape}]`);
        channelVector(n, 'mean', m, d.C);
        channelVector(n, 'invstd', s, d.C);
      }
      return [{ dtype: castTarget(n), shape: [d.C] }];
    },
    interp: (n, [dy, x, m, s]) => {
      const d = bnDims(n, dy.shape);
      const bias = attrInt(n, 'bias') === 1;
      const out = new Float64Array(d.C);
      for (let i = 0; i < dy.data.length; i++) {
        const c = Math.floor(i / d.inner) % d.C;
        out[c] += bias ? dy.data[i] : dy.data[i] * (x.data[i] - m.data[c]) * s.data[c];
      }
      return [{ dtype: castTarget(n), shape: [d.C], data: Float32Array.from(out) }];
    },
    wgsl: (n, ctx) => {
      const [dyn, xn, mn, sn] = n.inputs;
      const dyt = ctx.type(dyn);
      const d = bnDims(n, dyt.shape);
      const w = ctx.writer();
      const dy = w.bind(dyn, dyt.dtype, 'read');
      let term = w.load(dy, 'base + k');
      let pre = '';
      if (attrInt(n, 'bias') === 0) {
        const x = w.bind(xn, ctx.type(xn).dtype, 'read');
        pre = `let mean = ${w.load(w.bind(mn, ctx.type(mn).dtype, 'read'), 'c')};\nlet invstd = ${w.load(w.bind(sn, ctx.type(sn).dtype, 'read'), 'c')};\n`;
        term = `${term} * ((${w.load(x, 'base + k')} - mean) * invstd)`;
      }
      const compute = `let c = i;
${pre}var s = 0.0;
for (var nn = 0u; nn < ${u(d.N)}; nn++) {
  let base = (nn * ${u(d.C)} + c) * ${u(d.inner)};
  for (var k = 0u; k < ${u(d.inner)}; k++) { s += ${term}; }
}
return s;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: d.C, compute })];
    },
  },
  {
    // dX. inputs: dY, X, scale, mean, invstd, and in training mode dScale, dB.
    op: 'mpc.BatchNormInputGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1],
    arity: [5, 7],
    outputs: 1,
    infer: (n, [dy, x, s, m, is, ds, db]) => {
      const d = bnDims(n, x.shape);
      if (dy.shape.join() !== x.shape.join()) throw new Error(`${n.op} '${n.name}': dY [${dy.shape}] and X [${x.shape}] differ`);
      channelVector(n, 'scale', s, d.C);
      channelVector(n, 'mean', m, d.C);
      channelVector(n, 'invstd', is, d.C);
      if (training(n)) {
        channelVector(n, 'dScale', ds, d.C);
        channelVector(n, 'dB', db, d.C);
      }
      return [{ dtype: dy.dtype, shape: [...x.shape] }];
    },
    interp: (n, [dy, x, s, m, is, ds, db]) => {
      const d = bnDims(n, x.shape);
      const train = training(n);
      const out = new Float32Array(dy.data.length);
      for (let i = 0; i < out.length; i++) {
        const c = Math.floor(i / d.inner) % d.C;
        const k = s.data[c] * is.data[c];
        if (!train) out[i] = k * dy.data[i];
        else {
          const xhat = (x.data[i] - m.data[c]) * is.data[c];
          out[i] = k * (dy.data[i] - db.data[c] / d.M - (xhat * ds.data[c]) / d.M);
        }
      }
      return [{ dtype: dy.dtype, shape: [...x.shape], data: out }];
    },
    wgsl: (n, ctx) => {
      const [dyn, xn, sn, mn, isn, dsn, dbn] = n.inputs;
      const xt = ctx.type(xn);
      const d = bnDims(n, xt.shape);
      const w = ctx.writer();
      const ch = (v: string) => w.load(w.bind(v, ctx.type(v).dtype, 'read'), 'c');
      const dy = w.load(w.bind(dyn, ctx.type(dyn).dtype, 'read'), 'i');
      let body: string;
      if (!training(n)) body = `return ${ch(sn)} * ${ch(isn)} * ${dy};`;
      else {
        const x = w.load(w.bind(xn, xt.dtype, 'read'), 'i');
        body = `let invstd = ${ch(isn)};
let xhat = (${x} - ${ch(mn)}) * invstd;
return ${ch(sn)} * invstd * (${dy} - ${ch(dbn)} / ${f32Lit(d.M)} - xhat * ${ch(dsn)} / ${f32Lit(d.M)});`;
      }
      const compute = `let c = (i / ${u(d.inner)}) % ${u(d.C)};\n${body}`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
];
