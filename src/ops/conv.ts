// Convolution (ONNX Conv, NCHW, 1-D or 2-D) and its two gradient ops, plus the window
// geometry (pads, auto_pad, strides, dilations, ceil_mode) shared with the pooling ops.
//
// Conv runs in the policy's low type and accumulates in f32. The kernels are direct
// convolutions, one output element per invocation: simple and correct, not fast (an
// implicit-GEMM kernel is the obvious next step).
//
// 1-D ops (N, C, L) are computed as 2-D ones with H = 1 (kernel 1, stride 1, no padding on H).
import { sizeOf } from '../ir/tensor.js';
import type { Node } from '../ir/graph.js';
import { mapKernel } from '../codegen/storage.js';
import { attrInt, attrInts, attrString, type OpRow, type ValueType } from './types.js';
import { fp8Factor, fp8ResultDtype, hasFp8Operands, wgslFp8Factor } from './fp8.js';

/** Window geometry on NCHW after auto_pad is resolved: everything a kernel needs as a constant. */
export interface Geom {
  /** Spatial rank of the op (1 or 2); computed as 2-D. */
  rank: 1 | 2;
  N: number;
  C: number;
  H: number;
  W: number;
  kH: number;
  kW: number;
  sH: number;
  sW: number;
  dH: number;
  dW: number;
  /** Padding at the top/left (begin) and bottom/right (end). */
  pT: number;
  pL: number;
  pB: number;
  pR: number;
  oH: number;
  oW: number;
}

function intsOfLength(n: Node, key: string, len: number, dflt: number): number[] {
  const v = attrInts(n, key, new Array<number>(len).fill(dflt));
  if (v.length !== len) throw new Error(`${n.op} '${n.name}': attribute ${key} must have ${len} values, got [${v}]`);
  return v;
}

/**
 * Resolves the window geometry of `n` over an input of shape `x` (N, C, spatial...) with the
 * given kernel size. Output size (ONNX, PyTorch's rule for ceil_mode):
 *   explicit pads:  floor or ceil((in + pb + pe - eff) / s) + 1, where eff = (k - 1) * d + 1;
 *                   with ceil_mode a window starting in the end padding is dropped;
 *   SAME_UPPER/LOWER: ceil(in / s), padding the difference (the odd one at the end for UPPER,
 *                   at the beginning for LOWER);
 *   VALID:          floor((in - eff) / s) + 1, no padding.
 */
export function windowGeom(n: Node, x: readonly number[], kernel: readonly number[], ceil = false): Geom {
  const rank = x.length - 2;
  if (rank !== 1 && rank !== 2) throw new Error(`${n.op} '${n.name}': only 1-D and 2-D inputs (N, C, L) or (N, C, H, W) are supported, got [${x}]`);
  if (kernel.length !== rank) throw new Error(`${n.op} '${n.name}': kernel [${kernel}] does not match the ${rank}-D input [${x}]`);
  const strides = intsOfLength(n, 'strides', rank, 1);
  const dil = intsOfLength(n, 'dilations', rank, 1);
  const autoPad = attrString(n, 'auto_pad', 'NOTSET');
  const pads = intsOfLength(n, 'pads', 2 * rank, 0);
  const ins = x.slice(2);
  const begin: number[] = [];
  const end: number[] = [];
  const out: number[] = [];
  for (let d = 0; d < rank; d++) {
    const [len, k, s, dl] = [ins[d], kernel[d], strides[d], dil[d]];
    if (k < 1 || s < 1 || dl < 1) throw new Error(`${n.op} '${n.name}': kernel, strides and dilations must be positive`);
    const eff = (k - 1) * dl + 1;
    let b = 0;
    let e = 0;
    let o: number;
    if (autoPad === 'NOTSET') {
      [b, e] = [pads[d], pads[d + rank]];
      if (b < 0 || e < 0) throw new Error(`${n.op} '${n.name}': negative pads [${pads}]`);
      const span = len + b + e - eff;
      o = (ceil ? Math.ceil(span / s) : Math.floor(span / s)) + 1;
      if (ceil && (o - 1) * s >= len + b) o--;
    } else if (autoPad === 'VALID') {
      o = Math.floor((len - eff) / s) + 1;
    } else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      o = Math.ceil(len / s);
      const total = Math.max(0, (o - 1) * s + eff - len);
      b = autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : total - Math.floor(total / 2);
      e = total - b;
    } else throw new Error(`${n.op} '${n.name}': unknown auto_pad '${autoPad}'`);
    if (o < 1) throw new Error(`${n.op} '${n.name}': the window (${eff}) does not fit the padded input ([${x}], pads ${b}+${e})`);
    begin.push(b);
    end.push(e);
    out.push(o);
  }
  // Lift 1-D to 2-D with a unit H axis.
  const two = (v: number[], one: number) => (rank === 1 ? [one, v[0]] : v);
  const [H, W] = two(ins as number[], 1);
  const [kH, kW] = two([...kernel], 1);
  const [sH, sW] = two(strides, 1);
  const [dH, dW] = two(dil, 1);
  const [pT, pL] = two(begin, 0);
  const [pB, pR] = two(end, 0);
  const [oH, oW] = two(out, 1);
  return { rank, N: x[0], C: x[1], H, W, kH, kW, sH, sW, dH, dW, pT, pL, pB, pR, oH, oW };
}

/** The output shape of a window op with `channels` output channels, in the op's own rank. */
export function windowOutShape(g: Geom, channels: number): number[] {
  return g.rank === 1 ? [g.N, channels, g.oW] : [g.N, channels, g.oH, g.oW];
}

/** Checks that a gradient input has the forward output's shape. */
export function checkShape(n: Node, what: string, got: readonly number[], want: readonly number[]): void {
  if (got.join() !== want.join()) throw new Error(`${n.op} '${n.name}': ${what} must be [${want}], got [${got}]`);
}

function sameDtype(n: Node, ins: (ValueType | undefined)[]): void {
  const ds = ins.filter((t): t is ValueType => !!t).map((t) => t.dtype);
  if (ds.some((d) => d !== ds[0])) throw new Error(`${n.op} '${n.name}': operands have different dtypes (${ds.join(', ')}); a cast is missing`);
}

// ---------------------------------------------------------------------------------------------
// Conv geometry and f64 reference math (exported for the finite-difference tests).

export interface ConvGeom extends Geom {
  /** Output channels, groups, input and output channels per group. */
  M: number;
  G: number;
  Cg: number;
  Mg: number;
}

/** Geometry of a Conv (or its gradient ops) over input shape `x` and weight shape `w`. */
export function convGeom(n: Node, x: readonly number[], w: readonly number[]): ConvGeom {
  if (w.length !== x.length) throw new Error(`${n.op} '${n.name}': weight [${w}] and input [${x}] differ in rank`);
  const G = attrInt(n, 'group', 1);
  const [M, Cg] = w;
  const C = x[1];
  if (G < 1 || C % G !== 0 || M % G !== 0 || Cg * G !== C)
    throw new Error(`${n.op} '${n.name}': input channels ${C}, weight [${w}] and group ${G} do not match (need C = group x W.shape[1], M divisible by group)`);
  const kernel = w.slice(2);
  const ks = n.attrs.kernel_shape as number[] | undefined;
  if (ks && ks.join() !== kernel.join()) throw new Error(`${n.op} '${n.name}': kernel_shape [${ks}] differs from the weight's [${kernel}]`);
  return { ...windowGeom(n, x, kernel), M, G, Cg, Mg: M / G };
}

/**
 * Every multiply of a Conv: f(x index, w index, y index) for each output position, input
 * channel of its group and kernel tap that lands inside the (padded) input. The forward
 * pass and both gradients are sums over these triples.
 */
function forEachTap(g: ConvGeom, f: (xi: number, wi: number, yi: number) => void): void {
  for (let n = 0; n < g.N; n++)
    for (let m = 0; m < g.M; m++) {
      const c0 = Math.floor(m / g.Mg) * g.Cg;
      for (let oh = 0; oh < g.oH; oh++)
        for (let ow = 0; ow < g.oW; ow++) {
          const yi = ((n * g.M + m) * g.oH + oh) * g.oW + ow;
          for (let c = 0; c < g.Cg; c++)
            for (let kh = 0; kh < g.kH; kh++) {
              const ih = oh * g.sH - g.pT + kh * g.dH;
              if (ih < 0 || ih >= g.H) continue;
              for (let kw = 0; kw < g.kW; kw++) {
                const iw = ow * g.sW - g.pL + kw * g.dW;
                if (iw < 0 || iw >= g.W) continue;
                f(((n * g.C + c0 + c) * g.H + ih) * g.W + iw, ((m * g.Cg + c) * g.kH + kh) * g.kW + kw, yi);
              }
            }
        }
    }
}

/** Conv forward in f64 (bias optional). */
export function convRef(g: ConvGeom, x: ArrayLike<number>, w: ArrayLike<number>, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(g.N * g.M * g.oH * g.oW);
  forEachTap(g, (xi, wi, yi) => (y[yi] += x[xi] * w[wi]));
  if (b) for (let i = 0; i < y.length; i++) y[i] += b[Math.floor(i / (g.oH * g.oW)) % g.M];
  return y;
}

/** dX of a Conv (a transposed convolution of dY with W), in f64. */
export function convGradInputRef(g: ConvGeom, dy: ArrayLike<number>, w: ArrayLike<number>): Float64Array {
  const dx = new Float64Array(g.N * g.C * g.H * g.W);
  forEachTap(g, (xi, wi, yi) => (dx[xi] += dy[yi] * w[wi]));
  return dx;
}

/** dW of a Conv: correlation of X with dY, in f64. */
export function convGradWeightRef(g: ConvGeom, dy: ArrayLike<number>, x: ArrayLike<number>): Float64Array {
  const dw = new Float64Array(g.M * g.Cg * g.kH * g.kW);
  forEachTap(g, (xi, wi, yi) => (dw[wi] += dy[yi] * x[xi]));
  return dw;
}

// ---------------------------------------------------------------------------------------------
// WGSL: one output element per invocation, f32 accumulation.

const u = (v: number) => `${v}u`;

/**
 * `let` lines splitting flat index `i` of an [A, B, C, D] tensor into named coordinates
 * (outermost first).
 */
export function coords(names: [string, string, string, string], dims: [number, number, number, number], idx = 'i'): string {
  const [, b, c, d] = dims;
  return [
    `let ${names[3]} = ${idx} % ${u(d)};`,
    `let ${names[2]} = (${idx} / ${u(d)}) % ${u(c)};`,
    `let ${names[1]} = (${idx} / ${u(c * d)}) % ${u(b)};`,
    `let ${names[0]} = ${idx} / ${u(b * c * d)};`,
  ].join('\n');
}

/** Shape of a kernel-bearing tensor as 4-D (1-D ops lifted to H = 1). */
function as4d(shape: readonly number[]): [number, number, number, number] {
  return (shape.length === 3 ? [shape[0], shape[1], 1, shape[2]] : shape) as [number, number, number, number];
}

// ---------------------------------------------------------------------------------------------
// Rows.

/** Attributes of the gradient ops: the forward node's (so they resolve the same geometry) plus a shape. */
function gradAttrs(n: Node, shape: number[]) {
  return { ...n.attrs, shape };
}

export const convOps: OpRow[] = [
  {
    op: 'Conv',
    domain: '',
    opsets: [1, 22],
    precision: 'allow',
    // Inputs 3 and 4 (inverse scales of fp8 operands) are internal to mpc.
    arity: [2, 5],
    outputs: 1,
    // One map kernel over the output: consumers (Relu, a cast) fuse into its store.
    epilogue: true,
    fp8: { operands: [0, 1], scaleInputs: [3, 4] },
    infer: (n, ins) => {
      const [x, w, b] = ins;
      const scales = [3, 4] as const;
      if (!hasFp8Operands(n, scales)) sameDtype(n, [x, w, b]);
      const g = convGeom(n, x.shape, w.shape);
      if (b) checkShape(n, 'bias', b.shape, [g.M]);
      return [{ dtype: fp8ResultDtype(n, ins, [0, 1], scales, x.dtype), shape: windowOutShape(g, g.M) }];
    },
    interp: (n, ins, ctx) => {
      const [x, w, b] = ins;
      const g = convGeom(n, x.shape, w.shape);
      const k = fp8Factor(n, ins, [3, 4]);
      const s = convRef(g, x.data, w.data, k === 1 ? b?.data : undefined);
      // Under fp8 the sum is scaled first, then the bias added (as the kernel does).
      const data = k === 1 ? Float32Array.from(s) : Float32Array.from(s, (v, i) => Math.fround(Math.fround(v) * k) + (b ? b.data[Math.floor(i / (s.length / g.N / g.M)) % g.M] : 0));
      return [{ dtype: ctx.outTypes[0].dtype, shape: ctx.outTypes[0].shape, data }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined, undefined];
      const n = ctx.node;
      const [x, w, b] = n.inputs;
      const dx = ctx.emit('mpc.ConvGradInput', [dy, w], gradAttrs(n, ctx.type(x).shape))[0];
      const dw = ctx.emit('mpc.ConvGradWeight', [dy, x], gradAttrs(n, ctx.type(w).shape))[0];
      let db: string | undefined;
      if (b) {
        // Sum dY over N and the spatial axes: [N, M, ...] -> [1, M, 1...] -> [M].
        const keep = ctx.type(dy).shape.map((d, i) => (i === 1 ? d : 1));
        db = ctx.emit('mpc.View', [ctx.emit('mpc.SumTo', [dy], { shape: keep })[0]], { shape: ctx.type(b).shape })[0];
      }
      return [dx, dw, db];
    },
    wgsl: (n, ctx) => {
      const [xn, wn, bn] = n.inputs;
      const xt = ctx.type(xn);
      const g = convGeom(n, xt.shape, ctx.type(wn).shape);
      const w = ctx.writer();
      const x = w.bind(xn, xt.dtype, 'read');
      const wt = w.bind(wn, ctx.type(wn).dtype, 'read');
      const bias = bn ? w.load(w.bind(bn, ctx.type(bn).dtype, 'read'), 'm') : '';
      const k = wgslFp8Factor(w, n, [3, 4]);
      const yt = ctx.type(n.outputs[0]);
      const compute = `${coords(['nn', 'm', 'oh', 'ow'], [g.N, g.M, g.oH, g.oW])}
let c0 = (m / ${u(g.Mg)}) * ${u(g.Cg)};
var s = 0.0;
for (var c = 0u; c < ${u(g.Cg)}; c++) {
  let xc = (nn * ${u(g.C)} + c0 + c) * ${u(g.H * g.W)};
  let wc = (m * ${u(g.Cg)} + c) * ${u(g.kH * g.kW)};
  for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
    let ih = i32(oh * ${u(g.sH)} + kh * ${u(g.dH)}) - ${g.pT};
    if (ih < 0 || ih >= ${g.H}) { continue; }
    for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
      let iw = i32(ow * ${u(g.sW)} + kw * ${u(g.dW)}) - ${g.pL};
      if (iw < 0 || iw >= ${g.W}) { continue; }
      s += ${w.load(x, `xc + u32(ih) * ${u(g.W)} + u32(iw)`)} * ${w.load(wt, `wc + kh * ${u(g.kW)} + kw`)};
    }
  }
}
${k ? `s = s * ${k};
` : ''}return ${bias ? `s + ${bias}` : 's'};`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
    },
  },
  {
    // dX of Conv. inputs: dY, W; attributes: the Conv's plus `shape` (X's shape, which the
    // output size alone does not determine when stride > 1).
    op: 'mpc.ConvGradInput',
    domain: 'mpc',
    precision: 'allow',
    arity: [2, 4],
    outputs: 1,
    fp8: { operands: [0, 1], scaleInputs: [2, 3] },
    infer: (n, ins) => {
      const [dy, w] = ins;
      if (!hasFp8Operands(n, [2, 3])) sameDtype(n, [dy, w]);
      const xs = attrInts(n, 'shape');
      const g = convGeom(n, xs, w.shape);
      checkShape(n, 'dY', dy.shape, windowOutShape(g, g.M));
      return [{ dtype: fp8ResultDtype(n, ins, [0, 1], [2, 3], dy.dtype), shape: [...xs] }];
    },
    interp: (n, ins, ctx) => {
      const [dy, w] = ins;
      const xs = attrInts(n, 'shape');
      const g = convGeom(n, xs, w.shape);
      const k = fp8Factor(n, ins, [2, 3]);
      const data = Float32Array.from(convGradInputRef(g, dy.data, w.data), (v) => (k === 1 ? v : Math.fround(v) * k));
      return [{ dtype: ctx.outTypes[0].dtype, shape: [...xs], data }];
    },
    wgsl: (n, ctx) => {
      const [dyn, wn] = n.inputs;
      const xs = attrInts(n, 'shape');
      const g = convGeom(n, xs, ctx.type(wn).shape);
      const w = ctx.writer();
      const dy = w.bind(dyn, ctx.type(dyn).dtype, 'read');
      const wt = w.bind(wn, ctx.type(wn).dtype, 'read');
      const k = wgslFp8Factor(w, n, [2, 3]);
      // dX[n, c, ih, iw] = sum over the group's output channels m and the taps (kh, kw) whose
      // window position oh = (ih + pT - kh dH) / sH is a whole number in [0, oH).
      const compute = `${coords(['nn', 'c', 'ih', 'iw'], as4d(xs))}
let grp = c / ${u(g.Cg)};
let cg = c % ${u(g.Cg)};
var s = 0.0;
for (var mm = 0u; mm < ${u(g.Mg)}; mm++) {
  let m = grp * ${u(g.Mg)} + mm;
  let dyc = (nn * ${u(g.M)} + m) * ${u(g.oH * g.oW)};
  let wc = (m * ${u(g.Cg)} + cg) * ${u(g.kH * g.kW)};
  for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
    let th = i32(ih) + ${g.pT} - i32(kh * ${u(g.dH)});
    if (th < 0 || th % ${g.sH} != 0 || th / ${g.sH} >= ${g.oH}) { continue; }
    let oh = u32(th / ${g.sH});
    for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
      let tw = i32(iw) + ${g.pL} - i32(kw * ${u(g.dW)});
      if (tw < 0 || tw % ${g.sW} != 0 || tw / ${g.sW} >= ${g.oW}) { continue; }
      let ow = u32(tw / ${g.sW});
      s += ${w.load(dy, `dyc + oh * ${u(g.oW)} + ow`)} * ${w.load(wt, `wc + kh * ${u(g.kW)} + kw`)};
    }
  }
}
return ${k ? `s * ${k}` : "s"};`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xs), compute })];
    },
  },
  {
    // dW of Conv. inputs: dY, X; attributes: the Conv's plus `shape` (W's shape).
    op: 'mpc.ConvGradWeight',
    domain: 'mpc',
    precision: 'allow',
    arity: [2, 4],
    outputs: 1,
    fp8: { operands: [0, 1], scaleInputs: [2, 3] },
    infer: (n, ins) => {
      const [dy, x] = ins;
      if (!hasFp8Operands(n, [2, 3])) sameDtype(n, [dy, x]);
      const ws = attrInts(n, 'shape');
      const g = convGeom(n, x.shape, ws);
      checkShape(n, 'dY', dy.shape, windowOutShape(g, g.M));
      return [{ dtype: fp8ResultDtype(n, ins, [0, 1], [2, 3], dy.dtype), shape: [...ws] }];
    },
    interp: (n, ins, ctx) => {
      const [dy, x] = ins;
      const ws = attrInts(n, 'shape');
      const g = convGeom(n, x.shape, ws);
      const k = fp8Factor(n, ins, [2, 3]);
      const data = Float32Array.from(convGradWeightRef(g, dy.data, x.data), (v) => (k === 1 ? v : Math.fround(v) * k));
      return [{ dtype: ctx.outTypes[0].dtype, shape: [...ws], data }];
    },
    wgsl: (n, ctx) => {
      const [dyn, xn] = n.inputs;
      const ws = attrInts(n, 'shape');
      const g = convGeom(n, ctx.type(xn).shape, ws);
      const w = ctx.writer();
      const dy = w.bind(dyn, ctx.type(dyn).dtype, 'read');
      const x = w.bind(xn, ctx.type(xn).dtype, 'read');
      const k = wgslFp8Factor(w, n, [2, 3]);
      const compute = `${coords(['m', 'cg', 'kh', 'kw'], as4d(ws))}
let c = (m / ${u(g.Mg)}) * ${u(g.Cg)} + cg;
var s = 0.0;
for (var nn = 0u; nn < ${u(g.N)}; nn++) {
  let xc = (nn * ${u(g.C)} + c) * ${u(g.H * g.W)};
  let dyc = (nn * ${u(g.M)} + m) * ${u(g.oH * g.oW)};
  for (var oh = 0u; oh < ${u(g.oH)}; oh++) {
    let ih = i32(oh * ${u(g.sH)} + kh * ${u(g.dH)}) - ${g.pT};
    if (ih < 0 || ih >= ${g.H}) { continue; }
    for (var ow = 0u; ow < ${u(g.oW)}; ow++) {
      let iw = i32(ow * ${u(g.sW)} + kw * ${u(g.dW)}) - ${g.pL};
      if (iw < 0 || iw >= ${g.W}) { continue; }
      s += ${w.load(dy, `dyc + oh * ${u(g.oW)} + ow`)} * ${w.load(x, `xc + u32(ih) * ${u(g.W)} + u32(iw)`)};
    }
  }
}
return ${k ? `s * ${k}` : "s"};`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(ws), compute })];
    },
  },
];
