// Spatial ops beyond Conv and pooling: ConvTranspose (1-D to 3-D) with its gradient ops,
// Resize / Upsample (nearest, linear, cubic) with their gradient, and the per-instance
// normalisations (InstanceNormalization, GroupNormalization, LRN, MeanVarianceNormalization,
// GlobalMaxPool). The rows live in spatial-resize.ts and spatial-norm.ts; this module gathers
// them with the ConvTranspose rows.
//
// ConvTranspose runs in the policy's low type (allow class, like Conv) and accumulates in f32.
// Its kernels are direct and gather-style, one output element per invocation, no atomics:
//   forward  Y[n, m, o] = B[m] + sum over c of its group and taps k with o = i s - pb + k d
//            (i a whole input position) of X[n, c, i] W[c, m % Mg, k];
//   dX       a plain convolution of dY with W (same strides, pads, dilations, group);
//   dW       the correlation of X with dY.
import { sizeOf } from '../ir/tensor.js';
import type { Node } from '../ir/graph.js';
import { mapKernel, type KernelWriter } from '../codegen/storage.js';
import { attrInt, attrInts, attrString, type EmitCtx, type OpRow, type ValueType } from './types.js';
import { resizeOps } from './spatial-resize.js';
import { spatialNormOps } from './spatial-norm.js';

const u = (v: number) => `${v}u`;

/** Geometry of a ConvTranspose over X [N, C, in...] and W [C, M/group, k...]. */
export interface CtGeom {
  /** Spatial rank. */
  r: number;
  N: number;
  C: number;
  M: number;
  G: number;
  /** Input channels per group (C / G) and output channels per group (W.shape[1]). */
  Cg: number;
  Mg: number;
  ins: number[];
  outs: number[];
  k: number[];
  s: number[];
  d: number[];
  /** Padding at the beginning of each spatial axis (the output is cropped by it). */
  pb: number[];
}

function listOf(n: Node, key: string, len: number, dflt: number): number[] {
  const v = attrInts(n, key, new Array<number>(len).fill(dflt));
  if (v.length !== len) throw new Error(`${n.op} '${n.name}': attribute ${key} must have ${len} values, got [${v}]`);
  return v;
}

/**
 * Resolves pads and output size (ONNX ConvTranspose):
 *   natural size  s (in - 1) + output_padding + (k - 1) d + 1 - pb - pe;
 *   output_shape  given: the total padding s (in - 1) + output_padding + eff - out (at least 0)
 *                 is split with the odd one at the beginning, except SAME_UPPER (at the end);
 *                 positions past the natural size receive no tap (bias only);
 *   SAME_UPPER / SAME_LOWER without output_shape: out = in s, split the same way;
 *   VALID: no padding.
 */
export function ctGeom(n: Node, x: readonly number[], w: readonly number[]): CtGeom {
  const r = x.length - 2;
  if (r < 1 || r > 3) throw new Error(`${n.op} '${n.name}': only 1-D, 2-D and 3-D inputs are supported, got [${x}]`);
  if (w.length !== x.length) throw new Error(`${n.op} '${n.name}': weight [${w}] and input [${x}] differ in rank`);
  const G = attrInt(n, 'group', 1);
  const C = x[1];
  if (G < 1 || C % G !== 0 || w[0] !== C) throw new Error(`${n.op} '${n.name}': input channels ${C}, weight [${w}] and group ${G} do not match (need W.shape[0] = C, C divisible by group)`);
  const k = w.slice(2);
  const ks = n.attrs.kernel_shape as number[] | undefined;
  if (ks && ks.join() !== k.join()) throw new Error(`${n.op} '${n.name}': kernel_shape [${ks}] differs from the weight's [${k}]`);
  const s = listOf(n, 'strides', r, 1);
  const d = listOf(n, 'dilations', r, 1);
  const op = listOf(n, 'output_padding', r, 0);
  const autoPad = attrString(n, 'auto_pad', 'NOTSET');
  const pads = listOf(n, 'pads', 2 * r, 0);
  const osAttr = n.attrs.output_shape as number[] | undefined;
  const ins = x.slice(2);
  const outs: number[] = [];
  const pb: number[] = [];
  for (let a = 0; a < r; a++) {
    if (k[a] < 1 || s[a] < 1 || d[a] < 1) throw new Error(`${n.op} '${n.name}': kernel, strides and dilations must be positive`);
    const full = s[a] * (ins[a] - 1) + op[a] + (k[a] - 1) * d[a] + 1;
    const split = (total: number) => (autoPad === 'SAME_UPPER' ? Math.floor(total / 2) : total - Math.floor(total / 2));
    if (osAttr) {
      const o = osAttr[osAttr.length - r + a];
      outs.push(o);
      pb.push(split(Math.max(0, full - o)));
    } else if (autoPad === 'SAME_UPPER' || autoPad === 'SAME_LOWER') {
      const o = ins[a] * s[a];
      outs.push(o);
      pb.push(split(Math.max(0, full - o)));
    } else if (autoPad === 'VALID') {
      outs.push(full);
      pb.push(0);
    } else if (autoPad === 'NOTSET') {
      const [b, e] = [pads[a], pads[a + r]];
      if (b < 0 || e < 0) throw new Error(`${n.op} '${n.name}': negative pads [${pads}]`);
      outs.push(full - b - e);
      pb.push(b);
    } else throw new Error(`${n.op} '${n.name}': unknown auto_pad '${autoPad}'`);
    if (outs[a] < 1) throw new Error(`${n.op} '${n.name}': empty output along spatial axis ${a}`);
  }
  return { r, N: x[0], C, M: w[1] * G, G, Cg: C / G, Mg: w[1], ins, outs, k, s, d, pb };
}

export const ctOutShape = (g: CtGeom) => [g.N, g.M, ...g.outs];
const ctXShape = (g: CtGeom) => [g.N, g.C, ...g.ins];
const ctWShape = (g: CtGeom) => [g.C, g.Mg, ...g.k];

/**
 * Every multiply of a ConvTranspose: f(x index, w index, y index) for each input position,
 * output channel of its group and tap whose output position lies inside Y.
 */
function forEachCtTap(g: CtGeom, f: (xi: number, wi: number, yi: number) => void): void {
  const inPlane = sizeOf(g.ins);
  const outPlane = sizeOf(g.outs);
  const kPlane = sizeOf(g.k);
  const ip = new Array<number>(g.r).fill(0);
  const kp = new Array<number>(g.r).fill(0);
  for (let nn = 0; nn < g.N; nn++)
    for (let c = 0; c < g.C; c++) {
      const grp = Math.floor(c / g.Cg);
      for (let p = 0; p < inPlane; p++) {
        let rem = p;
        for (let a = g.r - 1; a >= 0; a--) {
          ip[a] = rem % g.ins[a];
          rem = Math.floor(rem / g.ins[a]);
        }
        const xi = (nn * g.C + c) * inPlane + p;
        for (let q = 0; q < kPlane; q++) {
          let rq = q;
          for (let a = g.r - 1; a >= 0; a--) {
            kp[a] = rq % g.k[a];
            rq = Math.floor(rq / g.k[a]);
          }
          let yo = 0;
          let inside = true;
          for (let a = 0; a < g.r; a++) {
            const o = ip[a] * g.s[a] - g.pb[a] + kp[a] * g.d[a];
            if (o < 0 || o >= g.outs[a]) inside = false;
            yo = yo * g.outs[a] + o;
          }
          if (!inside) continue;
          for (let mg = 0; mg < g.Mg; mg++) f(xi, (c * g.Mg + mg) * kPlane + q, (nn * g.M + grp * g.Mg + mg) * outPlane + yo);
        }
      }
    }
}

/** ConvTranspose forward in f64 (bias optional). */
export function convTransposeRef(g: CtGeom, x: ArrayLike<number>, w: ArrayLike<number>, b?: ArrayLike<number>): Float64Array {
  const y = new Float64Array(sizeOf(ctOutShape(g)));
  forEachCtTap(g, (xi, wi, yi) => (y[yi] += x[xi] * w[wi]));
  const plane = sizeOf(g.outs);
  if (b) for (let i = 0; i < y.length; i++) y[i] += b[Math.floor(i / plane) % g.M];
  return y;
}

export function convTransposeGradInputRef(g: CtGeom, dy: ArrayLike<number>, w: ArrayLike<number>): Float64Array {
  const dx = new Float64Array(sizeOf(ctXShape(g)));
  forEachCtTap(g, (xi, wi, yi) => (dx[xi] += dy[yi] * w[wi]));
  return dx;
}

export function convTransposeGradWeightRef(g: CtGeom, dy: ArrayLike<number>, x: ArrayLike<number>): Float64Array {
  const dw = new Float64Array(sizeOf(ctWShape(g)));
  forEachCtTap(g, (xi, wi, yi) => (dw[wi] += dy[yi] * x[xi]));
  return dw;
}

// ---------------------------------------------------------------------------------------------
// WGSL.

/** `let` lines splitting flat index `idx` of a tensor of shape `dims` into the named coordinates. */
export function splitIndex(names: string[], dims: readonly number[], idx = 'i'): string {
  const lines: string[] = [];
  let stride = 1;
  for (let a = dims.length - 1; a >= 0; a--) {
    lines.push(a === 0 ? `let ${names[a]} = ${idx} / ${u(stride)};` : `let ${names[a]} = (${idx} / ${u(stride)}) % ${u(dims[a])};`);
    stride *= dims[a];
  }
  return lines.reverse().join('\n');
}

/** Flat index expression (u32) of coordinates `names` in a row-major block of shape `dims`. */
function linear(names: string[], dims: readonly number[]): string {
  let e = names[0];
  for (let a = 1; a < dims.length; a++) e = `(${e}) * ${u(dims[a])} + ${names[a]}`;
  return e;
}

/**
 * Nested loops over the taps k of every spatial axis whose input position
 * i = (o + pb - k d) / s is whole and inside X; `body` sees i0.., k0...
 * With dilation 1 the loop visits only the taps of the right residue (step s).
 */
function tapsFromOutput(g: CtGeom, body: string): string {
  let code = body;
  for (let a = g.r - 1; a >= 0; a--) {
    const head =
      g.d[a] === 1 && g.s[a] > 1
        ? `for (var k${a} = (o${a} + ${u(g.pb[a])}) % ${u(g.s[a])}; k${a} < ${u(g.k[a])}; k${a} += ${u(g.s[a])}) {
  let t${a} = i32(o${a}) + ${g.pb[a]} - i32(k${a});
  if (t${a} < 0) { break; }
  let i${a} = u32(t${a}) / ${u(g.s[a])};
  if (i${a} >= ${u(g.ins[a])}) { continue; }`
        : `for (var k${a} = 0u; k${a} < ${u(g.k[a])}; k${a}++) {
  let t${a} = i32(o${a}) + ${g.pb[a]} - i32(k${a} * ${u(g.d[a])});
  if (t${a} < 0) { break; }
  if (t${a} % ${g.s[a]} != 0 || t${a} / ${g.s[a]} >= ${g.ins[a]}) { continue; }
  let i${a} = u32(t${a} / ${g.s[a]});`;
    code = `${head}\n${code.replace(/^/gm, '  ')}\n}`;
  }
  return code;
}

/** Nested loops over taps k whose output position o = i s - pb + k d is inside Y; body sees o0.., k0... */
function tapsFromInput(g: CtGeom, body: string, kFixed: boolean): string {
  let code = body;
  for (let a = g.r - 1; a >= 0; a--) {
    const pos = `let q${a} = i32(i${a} * ${u(g.s[a])} + k${a} * ${u(g.d[a])}) - ${g.pb[a]};
if (q${a} < 0 || q${a} >= ${g.outs[a]}) { continue; }
let o${a} = u32(q${a});`;
    code = kFixed
      ? `for (var i${a} = 0u; i${a} < ${u(g.ins[a])}; i${a}++) {\n${pos.replace(/^/gm, '  ')}\n${code.replace(/^/gm, '  ')}\n}`
      : `for (var k${a} = 0u; k${a} < ${u(g.k[a])}; k${a}++) {\n${pos.replace(/^/gm, '  ')}\n${code.replace(/^/gm, '  ')}\n}`;
  }
  return code;
}

const names = (p: string, r: number) => Array.from({ length: r }, (_, a) => `${p}${a}`);

function sameDtype(n: Node, ins: (ValueType | undefined)[]): void {
  const ds = ins.filter((t): t is ValueType => !!t).map((t) => t.dtype);
  if (ds.some((d) => d !== ds[0])) throw new Error(`${n.op} '${n.name}': operands have different dtypes (${ds.join(', ')}); a cast is missing`);
}

function checkShape(n: Node, what: string, got: readonly number[], want: readonly number[]): void {
  if (got.join() !== want.join()) throw new Error(`${n.op} '${n.name}': ${what} must be [${want}], got [${got}]`);
}

/** The gradient ops carry the forward node's attributes plus X's and W's shapes. */
function gradGeom(n: Node): CtGeom {
  return ctGeom(n, attrInts(n, 'x_shape'), attrInts(n, 'w_shape'));
}

function ctForwardKernel(n: Node, ctx: EmitCtx): ReturnType<typeof mapKernel> {
  const [xn, wn, bn] = n.inputs;
  const g = ctGeom(n, ctx.type(xn).shape, ctx.type(wn).shape);
  const w = ctx.writer();
  const x = w.bind(xn, ctx.type(xn).dtype, 'read');
  const wt = w.bind(wn, ctx.type(wn).dtype, 'read');
  const bias = bn ? w.load(w.bind(bn, ctx.type(bn).dtype, 'read'), 'm') : '';
  const yt = ctx.type(n.outputs[0]);
  const body = `s += ${w.load(x, `xc + ${linear(names('i', g.r), g.ins)}`)} * ${w.load(wt, `wc + ${linear(names('k', g.r), g.k)}`)};`;
  const compute = `${splitIndex(['nn', 'm', ...names('o', g.r)], yt.shape)}
let grp = m / ${u(g.Mg)};
let mg = m % ${u(g.Mg)};
var s = 0.0;
for (var cc = 0u; cc < ${u(g.Cg)}; cc++) {
  let c = grp * ${u(g.Cg)} + cc;
  let xc = (nn * ${u(g.C)} + c) * ${u(sizeOf(g.ins))};
  let wc = (c * ${u(g.Mg)} + mg) * ${u(sizeOf(g.k))};
${tapsFromOutput(g, body).replace(/^/gm, '  ')}
}
return ${bias ? `s + ${bias}` : 's'};`;
  return mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute });
}

function loadBoth(w: KernelWriter, a: string, ai: string, b: string, bi: string): string {
  return `${w.load(a, ai)} * ${w.load(b, bi)}`;
}

const ctRows: OpRow[] = [
  {
    op: 'ConvTranspose',
    domain: '',
    opsets: [1, 22],
    precision: 'allow',
    arity: [2, 3],
    outputs: 1,
    // One map kernel over the output: consumers (Relu, a cast) fuse into its store.
    epilogue: true,
    infer: (n, [x, w, b]) => {
      sameDtype(n, [x, w, b]);
      const g = ctGeom(n, x.shape, w.shape);
      if (b) checkShape(n, 'bias', b.shape, [g.M]);
      return [{ dtype: x.dtype, shape: ctOutShape(g) }];
    },
    interp: (n, [x, w, b], ctx) => {
      const g = ctGeom(n, x.shape, w.shape);
      return [{ dtype: ctx.outTypes[0].dtype, shape: ctOutShape(g), data: Float32Array.from(convTransposeRef(g, x.data, w.data, b?.data)) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined, undefined];
      const n = ctx.node;
      const [x, w, b] = n.inputs;
      const attrs = { ...n.attrs, x_shape: ctx.type(x).shape, w_shape: ctx.type(w).shape };
      const dx = ctx.emit('mpc.ConvTransposeGradInput', [dy, w], attrs)[0];
      const dw = ctx.emit('mpc.ConvTransposeGradWeight', [dy, x], attrs)[0];
      let db: string | undefined;
      if (b) {
        const keep = ctx.type(dy).shape.map((d, i) => (i === 1 ? d : 1));
        db = ctx.emit('mpc.View', [ctx.emit('mpc.SumTo', [dy], { shape: keep })[0]], { shape: ctx.type(b).shape })[0];
      }
      return [dx, dw, db];
    },
    wgsl: (n, ctx) => [ctForwardKernel(n, ctx)],
  },
  {
    // dX of ConvTranspose: a convolution of dY with W. inputs: dY, W; the forward's attributes
    // plus x_shape and w_shape.
    op: 'mpc.ConvTransposeGradInput',
    domain: 'mpc',
    precision: 'allow',
    arity: [2, 2],
    outputs: 1,
    infer: (n, [dy, w]) => {
      sameDtype(n, [dy, w]);
      const g = gradGeom(n);
      checkShape(n, 'W', w.shape, ctWShape(g));
      checkShape(n, 'dY', dy.shape, ctOutShape(g));
      return [{ dtype: dy.dtype, shape: ctXShape(g) }];
    },
    interp: (n, [dy, w], ctx) => {
      const g = gradGeom(n);
      return [{ dtype: ctx.outTypes[0].dtype, shape: ctXShape(g), data: Float32Array.from(convTransposeGradInputRef(g, dy.data, w.data)) }];
    },
    wgsl: (n, ctx) => {
      const [dyn, wn] = n.inputs;
      const g = gradGeom(n);
      const w = ctx.writer();
      const dy = w.bind(dyn, ctx.type(dyn).dtype, 'read');
      const wt = w.bind(wn, ctx.type(wn).dtype, 'read');
      const body = `s += ${loadBoth(w, dy, `yc + ${linear(names('o', g.r), g.outs)}`, wt, `wc + ${linear(names('k', g.r), g.k)}`)};`;
      const compute = `${splitIndex(['nn', 'c', ...names('i', g.r)], ctXShape(g))}
let grp = c / ${u(g.Cg)};
var s = 0.0;
for (var mg = 0u; mg < ${u(g.Mg)}; mg++) {
  let yc = (nn * ${u(g.M)} + grp * ${u(g.Mg)} + mg) * ${u(sizeOf(g.outs))};
  let wc = (c * ${u(g.Mg)} + mg) * ${u(sizeOf(g.k))};
${tapsFromInput(g, body, false).replace(/^/gm, '  ')}
}
return s;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(ctXShape(g)), compute })];
    },
  },
  {
    // dW of ConvTranspose: the correlation of X with dY. inputs: dY, X; attributes as above.
    op: 'mpc.ConvTransposeGradWeight',
    domain: 'mpc',
    precision: 'allow',
    arity: [2, 2],
    outputs: 1,
    infer: (n, [dy, x]) => {
      sameDtype(n, [dy, x]);
      const g = gradGeom(n);
      checkShape(n, 'X', x.shape, ctXShape(g));
      checkShape(n, 'dY', dy.shape, ctOutShape(g));
      return [{ dtype: dy.dtype, shape: ctWShape(g) }];
    },
    interp: (n, [dy, x], ctx) => {
      const g = gradGeom(n);
      return [{ dtype: ctx.outTypes[0].dtype, shape: ctWShape(g), data: Float32Array.from(convTransposeGradWeightRef(g, dy.data, x.data)) }];
    },
    wgsl: (n, ctx) => {
      const [dyn, xn] = n.inputs;
      const g = gradGeom(n);
      const w = ctx.writer();
      const dy = w.bind(dyn, ctx.type(dyn).dtype, 'read');
      const x = w.bind(xn, ctx.type(xn).dtype, 'read');
      const body = `s += ${loadBoth(w, x, `xc + ${linear(names('i', g.r), g.ins)}`, dy, `yc + ${linear(names('o', g.r), g.outs)}`)};`;
      const compute = `${splitIndex(['c', 'mg', ...names('k', g.r)], ctWShape(g))}
let m = (c / ${u(g.Cg)}) * ${u(g.Mg)} + mg;
var s = 0.0;
for (var nn = 0u; nn < ${u(g.N)}; nn++) {
  let xc = (nn * ${u(g.C)} + c) * ${u(sizeOf(g.ins))};
  let yc = (nn * ${u(g.M)} + m) * ${u(sizeOf(g.outs))};
${tapsFromInput(g, body, true).replace(/^/gm, '  ')}
}
return s;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(ctWShape(g)), compute })];
    },
  },
];

export const spatialOps: OpRow[] = [...ctRows, ...resizeOps, ...spatialNormOps];
