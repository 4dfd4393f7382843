// Per-instance normalisations and GlobalMaxPool, with their gradient ops. All deny class
// (statistics in f32) except GlobalMaxPool (follow, it only selects); scale and bias keep
// their dtype (dataInputs [0]).
//
// InstanceNormalization and GroupNormalization share one geometry: X [N, C, spatial...] split
// into N x G contiguous rows of (C / G) x spatial elements (InstanceNormalization: G = C).
// Scale and B hold one value per channel ([C]; GroupNormalization opset 21) or per group ([G];
// GroupNormalization opset 18). Their kernels are row kernels: the statistics of a row are
// computed once (two passes, f32) and every element of the row written from them.
//   xhat = (x - mean) invstd,  Y = xhat scale + B,
//   dX = invstd (g - mean(g) - xhat mean(g xhat)),  g = dY scale  (means over the row),
//   dScale = sum of dY xhat, dB = sum of dY over the elements of that channel (or group).
import { isFloat } from '../ir/dtypes.js';
import { sizeOf } from '../ir/tensor.js';
import type { Node } from '../ir/graph.js';
import { f32Lit, mapKernel, rowKernel, type KernelWriter } from '../codegen/storage.js';
import { attrFloat, attrInt, attrInts, attrString, type GradCtx, type OpRow, type ValueType } from './types.js';

const u = (v: number) => `${v}u`;

// ---------------------------------------------------------------------------------------------
// Instance / group normalisation.

export interface GnDims {
  N: number;
  C: number;
  G: number;
  /** Spatial size, channels per group, row length. */
  S: number;
  Cg: number;
  len: number;
  rows: number;
  /** Parameters per group (length G) rather than per channel. */
  perGroup: boolean;
}

export function gnDims(n: Node, x: readonly number[], G: number, paramLen: number): GnDims {
  if (x.length < 3) throw new Error(`${n.op} '${n.name}': input must be (N, C, spatial...), got [${x}]`);
  const C = x[1];
  if (G < 1 || C % G !== 0) throw new Error(`${n.op} '${n.name}': ${C} channels cannot form ${G} groups`);
  if (paramLen !== C && paramLen !== G) throw new Error(`${n.op} '${n.name}': scale and bias must hold ${C} (per channel) or ${G} (per group) values, got ${paramLen}`);
  const S = sizeOf(x.slice(2));
  return { N: x[0], C, G, S, Cg: C / G, len: (C / G) * S, rows: x[0] * G, perGroup: paramLen !== C };
}

const groupsOf = (n: Node, x: readonly number[]) => (n.op === 'InstanceNormalization' ? x[1] : attrInt(n, 'num_groups'));
const epsOf = (n: Node) => Math.fround(attrFloat(n, 'epsilon', 1e-5));

/** Parameter index of position p (0 <= p < len) of row `row`. */
const paramOf = (d: GnDims, row: number, p: number) => (d.perGroup ? row % d.G : (row % d.G) * d.Cg + Math.floor(p / d.S));

function gnStats(d: GnDims, x: ArrayLike<number>, eps: number): { mean: Float64Array; inv: Float64Array } {
  const mean = new Float64Array(d.rows);
  const inv = new Float64Array(d.rows);
  for (let r = 0; r < d.rows; r++) {
    let s = 0;
    for (let p = 0; p < d.len; p++) s += x[r * d.len + p];
    const m = s / d.len;
    let v = 0;
    for (let p = 0; p < d.len; p++) v += (x[r * d.len + p] - m) ** 2;
    mean[r] = m;
    inv[r] = 1 / Math.sqrt(v / d.len + eps);
  }
  return { mean, inv };
}

export function groupNormRef(d: GnDims, x: ArrayLike<number>, scale: ArrayLike<number>, bias: ArrayLike<number>, eps: number): Float64Array {
  const { mean, inv } = gnStats(d, x, eps);
  const y = new Float64Array(d.rows * d.len);
  for (let r = 0; r < d.rows; r++)
    for (let p = 0; p < d.len; p++) {
      const j = r * d.len + p;
      const q = paramOf(d, r, p);
      y[j] = (x[j] - mean[r]) * inv[r] * scale[q] + bias[q];
    }
  return y;
}

/** Defines `fn row_stats(row: u32) -> vec2<f32>` (mean, invstd) over contiguous rows of `x`. */
function defineRowStats(w: KernelWriter, x: string, len: number, eps: number): void {
  w.define(`fn row_stats(row: u32) -> vec2<f32> {
  let off = row * ${u(len)};
  var s = 0.0;
  for (var k = 0u; k < ${u(len)}; k++) { s += ${w.load(x, 'off + k')}; }
  let mean = s / ${f32Lit(len)};
  var v = 0.0;
  for (var k = 0u; k < ${u(len)}; k++) { let t = ${w.load(x, 'off + k')} - mean; v += t * t; }
  return vec2<f32>(mean, 1.0 / sqrt(v / ${f32Lit(len)} + ${f32Lit(eps)}));
}
`);
}

/** WGSL parameter index of position `p` of row `row`. */
const wgslParam = (d: GnDims, p: string) => (d.perGroup ? `(row % ${u(d.G)})` : `((row % ${u(d.G)}) * ${u(d.Cg)} + (${p}) / ${u(d.S)})`);

function floatOf(n: Node, t: ValueType, what: string): void {
  if (!isFloat(t.dtype)) throw new Error(`${n.op} '${n.name}': ${what} must be floating point, got ${t.dtype}`);
}

function vec(n: Node, what: string, t: ValueType | undefined): number {
  if (!t) throw new Error(`${n.op} '${n.name}': missing ${what}`);
  floatOf(n, t, what);
  if (t.shape.length !== 1) throw new Error(`${n.op} '${n.name}': ${what} must be 1-D, got [${t.shape}]`);
  return t.shape[0];
}

function gnRow(op: 'InstanceNormalization' | 'GroupNormalization', opsets: [number, number]): OpRow {
  return {
    op,
    domain: '',
    opsets,
    precision: 'deny',
    dataInputs: [0],
    arity: [3, 3],
    outputs: 1,
    infer: (n, [x, scale, bias]) => {
      floatOf(n, x, 'X');
      const len = vec(n, 'scale', scale);
      if (vec(n, 'B', bias) !== len) throw new Error(`${n.op} '${n.name}': scale [${scale.shape}] and B [${bias.shape}] differ`);
      if (attrInt(n, 'stash_type', 1) !== 1) throw new Error(`${n.op} '${n.name}': only stash_type 1 (float) is supported`);
      gnDims(n, x.shape, groupsOf(n, x.shape), len);
      return [{ dtype: x.dtype, shape: [...x.shape] }];
    },
    interp: (n, [x, scale, bias], ctx) => {
      const d = gnDims(n, x.shape, groupsOf(n, x.shape), scale.shape[0]);
      return [{ ...ctx.outTypes[0], data: Float32Array.from(groupNormRef(d, x.data, scale.data, bias.data, epsOf(n))) }];
    },
    grad: (ctx: GradCtx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined, undefined];
      const n = ctx.node;
      const [x, scale, bias] = n.inputs;
      const attrs = { groups: groupsOf(n, ctx.type(x).shape), epsilon: epsOf(n) };
      return [
        ctx.emit('mpc.GroupNormGrad', [dy, x, scale], attrs)[0],
        ctx.emit('mpc.GroupNormParamGrad', [dy, x, scale], { ...attrs, param: 'scale' })[0],
        ctx.emit('mpc.GroupNormParamGrad', [dy, x, bias], { ...attrs, param: 'bias' })[0],
      ];
    },
    wgsl: (n, ctx) => {
      const [xn, sn, bn] = n.inputs;
      const xt = ctx.type(xn);
      const d = gnDims(n, xt.shape, groupsOf(n, xt.shape), ctx.type(sn).shape[0]);
      const w = ctx.writer();
      const x = w.bind(xn, xt.dtype, 'read');
      const s = w.bind(sn, ctx.type(sn).dtype, 'read');
      const b = w.bind(bn, ctx.type(bn).dtype, 'read');
      defineRowStats(w, x, d.len, epsOf(n));
      const element = (c: string) => `(${w.load(x, `base + ${c}`)} - st.x) * st.y * ${w.load(s, wgslParam(d, c))} + ${w.load(b, wgslParam(d, c))}`;
      return [rowKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, rows: { outer: d.rows, len: d.len, inner: 1 }, prologue: 'let st = row_stats(row);', element })];
    },
  };
}

const gnGradDims = (n: Node, x: readonly number[], p: ValueType) => gnDims(n, x, attrInt(n, 'groups'), p.shape[0]);

/** The gradient of a one-input op: the node `op` on (dY, X) with the forward's attributes. */
const gradByNode =
  (op: string) =>
  (ctx: GradCtx): (string | undefined)[] => {
    const dy = ctx.dy[0];
    return [dy ? ctx.emit(op, [dy, ctx.node.inputs[0]], { ...ctx.node.attrs })[0] : undefined];
  };

/** Type of a dX node on (dY, X): dY's dtype, X's shape. */
const inferDxLikeX: OpRow['infer'] = (_n, [dy, x]) => [{ dtype: dy.dtype, shape: [...x.shape] }];

const gnOps: OpRow[] = [
  gnRow('InstanceNormalization', [6, 22]),
  gnRow('GroupNormalization', [18, 22]),
  {
    // dX of Instance/GroupNormalization. inputs: dY, X, scale; attributes groups, epsilon.
    op: 'mpc.GroupNormGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1],
    arity: [3, 3],
    outputs: 1,
    infer: (n, [dy, x, scale]) => {
      floatOf(n, dy, 'dY');
      gnGradDims(n, x.shape, scale);
      return [{ dtype: dy.dtype, shape: [...x.shape] }];
    },
    interp: (n, [dy, x, scale], ctx) => {
      const d = gnGradDims(n, x.shape, scale);
      const { mean, inv } = gnStats(d, x.data, epsOf(n));
      const out = new Float32Array(x.data.length);
      const xh = new Float64Array(d.len);
      const g = new Float64Array(d.len);
      for (let r = 0; r < d.rows; r++) {
        let sg = 0;
        let sgx = 0;
        for (let p = 0; p < d.len; p++) {
          xh[p] = (x.data[r * d.len + p] - mean[r]) * inv[r];
          g[p] = dy.data[r * d.len + p] * scale.data[paramOf(d, r, p)];
          sg += g[p];
          sgx += g[p] * xh[p];
        }
        for (let p = 0; p < d.len; p++) out[r * d.len + p] = inv[r] * (g[p] - sg / d.len - (xh[p] * sgx) / d.len);
      }
      return [{ ...ctx.outTypes[0], data: out }];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[1]);
      const d = gnGradDims(n, xt.shape, ctx.type(n.inputs[2]));
      const w = ctx.writer();
      const [dy, x, scale] = n.inputs.map((v) => w.bind(v, ctx.type(v).dtype, 'read'));
      defineRowStats(w, x, d.len, epsOf(n));
      const prologue = `let st = row_stats(row);
var sg = 0.0;
var sgx = 0.0;
for (var p = 0u; p < ${u(d.len)}; p++) {
  let g = ${w.load(dy, 'base + p')} * ${w.load(scale, wgslParam(d, 'p'))};
  sg += g;
  sgx += g * ((${w.load(x, 'base + p')} - st.x) * st.y);
}`;
      const element = (c: string) =>
        `st.y * (${w.load(dy, `base + ${c}`)} * ${w.load(scale, wgslParam(d, c))} - sg / ${f32Lit(d.len)} - ((${w.load(x, `base + ${c}`)} - st.x) * st.y) * sgx / ${f32Lit(d.len)})`;
      return [rowKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, rows: { outer: d.rows, len: d.len, inner: 1 }, prologue, element })];
    },
  },
  {
    // dScale (sum of dY xhat) or dB (sum of dY) of Instance/GroupNormalization, per channel or
    // group. inputs: dY, X, P (the parameter, for its shape and dtype); attributes groups,
    // epsilon, param ('scale' or 'bias').
    op: 'mpc.GroupNormParamGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1],
    arity: [3, 3],
    outputs: 1,
    infer: (n, [dy, x, p]) => {
      floatOf(n, dy, 'dY');
      gnGradDims(n, x.shape, p);
      paramKind(n);
      return [{ dtype: p.dtype, shape: [...p.shape] }];
    },
    interp: (n, [dy, x, p], ctx) => {
      const d = gnGradDims(n, x.shape, p);
      const { mean, inv } = gnStats(d, x.data, epsOf(n));
      const isScale = paramKind(n) === 'scale';
      const acc = new Float64Array(p.data.length);
      for (let r = 0; r < d.rows; r++)
        for (let q = 0; q < d.len; q++) {
          const j = r * d.len + q;
          acc[paramOf(d, r, q)] += dy.data[j] * (isScale ? (x.data[j] - mean[r]) * inv[r] : 1);
        }
      return [{ ...ctx.outTypes[0], data: Float32Array.from(acc) }];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[1]);
      const pt = ctx.type(n.inputs[2]);
      const d = gnGradDims(n, xt.shape, pt);
      const w = ctx.writer();
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      const isScale = paramKind(n) === 'scale';
      // Only dScale reads X (a binding the kernel does not use would not be in its layout).
      const x = isScale ? w.bind(n.inputs[1], xt.dtype, 'read') : '';
      if (isScale) defineRowStats(w, x, d.len, epsOf(n));
      // Parameter i covers, in every row of its group, positions [first, first + count).
      const [grp, first, count] = d.perGroup ? ['i', '0u', u(d.len)] : [`i / ${u(d.Cg)}`, `(i % ${u(d.Cg)}) * ${u(d.S)}`, u(d.S)];
      const term = isScale ? `${w.load(dy, 'base + p')} * ((${w.load(x, 'base + p')} - st.x) * st.y)` : w.load(dy, 'base + p');
      const compute = `var acc = 0.0;
for (var nn = 0u; nn < ${u(d.N)}; nn++) {
  let row = nn * ${u(d.G)} + ${grp};
  let base = row * ${u(d.len)};
  ${isScale ? 'let st = row_stats(row);' : ''}
  for (var p = ${first}; p < ${first} + ${count}; p++) { acc += ${term}; }
}
return acc;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: pt.dtype, count: sizeOf(pt.shape), compute })];
    },
  },
];

function paramKind(n: Node): 'scale' | 'bias' {
  const k = attrString(n, 'param');
  if (k !== 'scale' && k !== 'bias') throw new Error(`${n.op} '${n.name}': param must be 'scale' or 'bias', got '${k}'`);
  return k;
}

// ---------------------------------------------------------------------------------------------
// LRN: y = x / (bias + alpha / size * sum of x^2 over the channel window) ^ beta, the window
// [c - floor((size - 1) / 2), c + ceil((size - 1) / 2)] clipped to the channels.
//   dX[c] = dY[c] D[c]^-beta - (2 alpha beta / size) x[c] sum over c' whose window holds c of
//           dY[c'] x[c'] D[c']^(-beta - 1).

interface LrnP {
  size: number;
  alpha: number;
  beta: number;
  bias: number;
  lo: number;
  hi: number;
}

function lrnP(n: Node): LrnP {
  const size = attrInt(n, 'size');
  if (size < 1) throw new Error(`${n.op} '${n.name}': size must be positive`);
  return { size, alpha: attrFloat(n, 'alpha', 1e-4), beta: attrFloat(n, 'beta', 0.75), bias: attrFloat(n, 'bias', 1), lo: Math.floor((size - 1) / 2), hi: Math.ceil((size - 1) / 2) };
}

function lrnDen(p: LrnP, x: ArrayLike<number>, C: number, S: number, nn: number, c: number, s: number): number {
  let q = 0;
  for (let k = Math.max(0, c - p.lo); k <= Math.min(C - 1, c + p.hi); k++) q += x[(nn * C + k) * S + s] ** 2;
  return Math.fround(p.bias) + (Math.fround(p.alpha) / p.size) * q;
}

export function lrnRef(n: Node, xs: readonly number[], x: ArrayLike<number>): Float64Array {
  const p = lrnP(n);
  const [N, C] = xs;
  const S = sizeOf(xs.slice(2));
  const y = new Float64Array(x.length);
  for (let nn = 0; nn < N; nn++) for (let c = 0; c < C; c++) for (let s = 0; s < S; s++) y[(nn * C + c) * S + s] = x[(nn * C + c) * S + s] / lrnDen(p, x, C, S, nn, c, s) ** Math.fround(p.beta);
  return y;
}

function defineLrnDen(w: KernelWriter, p: LrnP, x: string, C: number, S: number): void {
  w.define(`fn lrn_den(nn: u32, c: i32, s: u32) -> f32 {
  var q = 0.0;
  for (var k = max(0, c - ${p.lo}); k <= min(${C - 1}, c + ${p.hi}); k++) {
    let v = ${w.load(x, `(nn * ${u(C)} + u32(k)) * ${u(S)} + s`)};
    q += v * v;
  }
  return ${f32Lit(p.bias)} + ${f32Lit(Math.fround(p.alpha) / p.size)} * q;
}
`);
}

const lrnCoords = (C: number, S: number) => `let s = i % ${u(S)};\nlet c = i32((i / ${u(S)}) % ${u(C)});\nlet nn = i / ${u(C * S)};`;

const lrnOps: OpRow[] = [
  {
    op: 'LRN',
    domain: '',
    opsets: [1, 22],
    precision: 'deny',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => {
      floatOf(n, x, 'X');
      if (x.shape.length < 3) throw new Error(`LRN '${n.name}': input must be (N, C, spatial...), got [${x.shape}]`);
      lrnP(n);
      return [{ dtype: x.dtype, shape: [...x.shape] }];
    },
    interp: (n, [x], ctx) => [{ ...ctx.outTypes[0], data: Float32Array.from(lrnRef(n, x.shape, x.data)) }],
    grad: gradByNode('mpc.LRNGrad'),
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const p = lrnP(n);
      const [C, S] = [xt.shape[1], sizeOf(xt.shape.slice(2))];
      const w = ctx.writer();
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      defineLrnDen(w, p, x, C, S);
      const compute = `${lrnCoords(C, S)}\nreturn ${w.load(x, 'i')} / pow(lrn_den(nn, c, s), ${f32Lit(p.beta)});`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
  {
    // dX of LRN. inputs: dY, X; LRN's attributes.
    op: 'mpc.LRNGrad',
    domain: 'mpc',
    precision: 'deny',
    arity: [2, 2],
    outputs: 1,
    infer: inferDxLikeX,
    interp: (n, [dy, x], ctx) => {
      const p = lrnP(n);
      const [N, C] = x.shape;
      const S = sizeOf(x.shape.slice(2));
      const beta = Math.fround(p.beta);
      const k = (2 * Math.fround(p.alpha) * beta) / p.size;
      const out = new Float64Array(x.data.length);
      for (let nn = 0; nn < N; nn++)
        for (let c = 0; c < C; c++)
          for (let s = 0; s < S; s++) {
            const j = (nn * C + c) * S + s;
            let acc = 0;
            for (let c2 = Math.max(0, c - p.hi); c2 <= Math.min(C - 1, c + p.lo); c2++) {
              const j2 = (nn * C + c2) * S + s;
              acc += dy.data[j2] * x.data[j2] * lrnDen(p, x.data, C, S, nn, c2, s) ** (-beta - 1);
            }
            out[j] = dy.data[j] * lrnDen(p, x.data, C, S, nn, c, s) ** -beta - k * x.data[j] * acc;
          }
      return [{ ...ctx.outTypes[0], data: Float32Array.from(out) }];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[1]);
      const p = lrnP(n);
      const [C, S] = [xt.shape[1], sizeOf(xt.shape.slice(2))];
      const w = ctx.writer();
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      const x = w.bind(n.inputs[1], xt.dtype, 'read');
      defineLrnDen(w, p, x, C, S);
      const beta = Math.fround(p.beta);
      const compute = `${lrnCoords(C, S)}
var acc = 0.0;
for (var c2 = max(0, c - ${p.hi}); c2 <= min(${C - 1}, c + ${p.lo}); c2++) {
  let j2 = (nn * ${u(C)} + u32(c2)) * ${u(S)} + s;
  acc += ${w.load(dy, 'j2')} * ${w.load(x, 'j2')} * pow(lrn_den(nn, c2, s), ${f32Lit(-beta - 1)});
}
return ${w.load(dy, 'i')} * pow(lrn_den(nn, c, s), ${f32Lit(-beta)}) - ${f32Lit((2 * Math.fround(p.alpha) * beta) / p.size)} * ${w.load(x, 'i')} * acc;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
];

// ---------------------------------------------------------------------------------------------
// GlobalMaxPool: the maximum of each (n, c) plane; its gradient goes to the plane's first
// maximum (as MaxPool's).

function planeArgmax(x: ArrayLike<number>, off: number, S: number): number {
  let best = 0;
  for (let k = 1; k < S; k++) if (x[off + k] > x[off + best]) best = k;
  return best;
}

const gmpOps: OpRow[] = [
  {
    op: 'GlobalMaxPool',
    domain: '',
    opsets: [1, 22],
    precision: 'follow',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => {
      floatOf(n, x, 'X');
      if (x.shape.length < 3) throw new Error(`GlobalMaxPool '${n.name}': input must be (N, C, spatial...), got [${x.shape}]`);
      return [{ dtype: x.dtype, shape: [x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)] }];
    },
    interp: (_n, [x], ctx) => {
      const S = sizeOf(x.shape.slice(2));
      return [{ ...ctx.outTypes[0], data: Float32Array.from({ length: x.shape[0] * x.shape[1] }, (_, p) => x.data[p * S + planeArgmax(x.data, p * S, S)]) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      return [dy ? ctx.emit('mpc.GlobalMaxPoolGrad', [dy, ctx.node.inputs[0]])[0] : undefined];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const S = sizeOf(xt.shape.slice(2));
      const w = ctx.writer();
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const compute = `var m = ${w.load(x, `i * ${u(S)}`)};
for (var k = 1u; k < ${u(S)}; k++) { let v = ${w.load(x, `i * ${u(S)} + k`)}; if (v > m) { m = v; } }
return m;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: xt.shape[0] * xt.shape[1], compute })];
    },
  },
  {
    // dX of GlobalMaxPool. inputs: dY, X.
    op: 'mpc.GlobalMaxPoolGrad',
    domain: 'mpc',
    precision: 'follow',
    arity: [2, 2],
    outputs: 1,
    infer: inferDxLikeX,
    interp: (_n, [dy, x], ctx) => {
      const S = sizeOf(x.shape.slice(2));
      const dx = new Float32Array(x.data.length);
      for (let p = 0; p < x.shape[0] * x.shape[1]; p++) dx[p * S + planeArgmax(x.data, p * S, S)] = dy.data[p];
      return [{ ...ctx.outTypes[0], data: dx }];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[1]);
      const S = sizeOf(xt.shape.slice(2));
      const w = ctx.writer();
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      const x = w.bind(n.inputs[1], xt.dtype, 'read');
      const prologue = `var best = 0u;
for (var k = 1u; k < ${u(S)}; k++) { if (${w.load(x, 'base + k')} > ${w.load(x, 'base + best')}) { best = k; } }
let g = ${w.load(dy, 'row')};`;
      return [rowKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, rows: { outer: xt.shape[0] * xt.shape[1], len: S, inner: 1 }, prologue, element: (c) => `select(0.0, g, ${c} == best)` })];
    },
  },
];

// ---------------------------------------------------------------------------------------------
// MeanVarianceNormalization: y = (x - mean) / (sqrt(mean(x^2) - mean^2) + 1e-9) over `axes`
// (default [0, 2, 3]). The statistics are taken over elements that need not be contiguous:
// each kernel invocation recomputes its group's statistics (O(group) per element; the op is
// rare and its groups small).
//   dX = (g - mean(g)) / D - d sum(g d) / (M sigma D^2),  d = x - mean, sigma = sqrt(var), D = sigma + 1e-9.

const MVN_EPS = 1e-9;

interface MvnDims {
  shape: number[];
  /** Reduced axes and their strides; members per group. */
  axes: number[];
  M: number;
}

function mvnDims(n: Node, shape: readonly number[]): MvnDims {
  const r = shape.length;
  const axes = attrInts(n, 'axes', [0, 2, 3]).map((a) => (a < 0 ? a + r : a));
  if (axes.some((a) => a < 0 || a >= r) || new Set(axes).size !== axes.length) throw new Error(`${n.op} '${n.name}': invalid axes [${attrInts(n, 'axes', [0, 2, 3])}] for rank ${r}`);
  axes.sort((a, b) => a - b);
  return { shape: [...shape], axes, M: sizeOf(axes.map((a) => shape[a])) };
}

const stridesOf = (s: readonly number[]) => s.map((_, a) => sizeOf(s.slice(a + 1)));

/** Flat indices of the members of the group of element i (JS). */
function mvnMembers(d: MvnDims, i: number): number[] {
  const st = stridesOf(d.shape);
  let base = i;
  for (const a of d.axes) base -= (Math.floor(i / st[a]) % d.shape[a]) * st[a];
  const out: number[] = [];
  for (let m = 0; m < d.M; m++) {
    let rem = m;
    let off = base;
    for (let k = d.axes.length - 1; k >= 0; k--) {
      const a = d.axes[k];
      off += (rem % d.shape[a]) * st[a];
      rem = Math.floor(rem / d.shape[a]);
    }
    out.push(off);
  }
  return out;
}

export function mvnRef(n: Node, shape: readonly number[], x: ArrayLike<number>): Float64Array {
  const d = mvnDims(n, shape);
  const y = new Float64Array(x.length);
  for (let i = 0; i < x.length; i++) {
    const mem = mvnMembers(d, i);
    const mean = mem.reduce((s, j) => s + x[j], 0) / d.M;
    const sq = mem.reduce((s, j) => s + x[j] * x[j], 0) / d.M;
    y[i] = (x[i] - mean) / (Math.sqrt(Math.max(0, sq - mean * mean)) + MVN_EPS);
  }
  return y;
}

/** Defines `fn group_base(i: u32) -> u32` and `fn member(base: u32, m: u32) -> u32`. */
function defineMvnIndex(w: KernelWriter, d: MvnDims): void {
  const st = stridesOf(d.shape);
  w.define(`fn group_base(i: u32) -> u32 {
  return i${d.axes.map((a) => ` - ((i / ${u(st[a])}) % ${u(d.shape[a])}) * ${u(st[a])}`).join('')};
}
fn member(base: u32, m: u32) -> u32 {
  var off = base;
  var rem = m;
${[...d.axes].reverse().map((a) => `  off += (rem % ${u(d.shape[a])}) * ${u(st[a])};\n  rem = rem / ${u(d.shape[a])};`).join('\n')}
  return off;
}
`);
}

/** WGSL lines computing `mean`, `sigma` and `den` of element i's group from buffer x (two passes). */
function mvnStatsWgsl(w: KernelWriter, x: string, d: MvnDims): string {
  return `let gb = group_base(i);
var s = 0.0;
for (var m = 0u; m < ${u(d.M)}; m++) { s += ${w.load(x, 'member(gb, m)')}; }
let mean = s / ${f32Lit(d.M)};
var v = 0.0;
for (var m = 0u; m < ${u(d.M)}; m++) { let t = ${w.load(x, 'member(gb, m)')} - mean; v += t * t; }
let sigma = sqrt(v / ${f32Lit(d.M)});
let den = sigma + ${f32Lit(MVN_EPS)};`;
}

const mvnOps: OpRow[] = [
  {
    op: 'MeanVarianceNormalization',
    domain: '',
    opsets: [9, 22],
    precision: 'deny',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => {
      floatOf(n, x, 'X');
      mvnDims(n, x.shape);
      return [{ dtype: x.dtype, shape: [...x.shape] }];
    },
    interp: (n, [x], ctx) => [{ ...ctx.outTypes[0], data: Float32Array.from(mvnRef(n, x.shape, x.data)) }],
    grad: gradByNode('mpc.MeanVarianceNormalizationGrad'),
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const d = mvnDims(n, xt.shape);
      const w = ctx.writer();
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      defineMvnIndex(w, d);
      const compute = `${mvnStatsWgsl(w, x, d)}\nreturn (${w.load(x, 'i')} - mean) / den;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
  {
    // dX of MeanVarianceNormalization. inputs: dY, X; the forward's attributes.
    op: 'mpc.MeanVarianceNormalizationGrad',
    domain: 'mpc',
    precision: 'deny',
    arity: [2, 2],
    outputs: 1,
    infer: inferDxLikeX,
    interp: (n, [dy, x], ctx) => {
      const d = mvnDims(n, x.shape);
      const out = new Float64Array(x.data.length);
      for (let i = 0; i < out.length; i++) {
        const mem = mvnMembers(d, i);
        const mean = mem.reduce((s, j) => s + x.data[j], 0) / d.M;
        const sigma = Math.sqrt(mem.reduce((s, j) => s + (x.data[j] - mean) ** 2, 0) / d.M);
        const D = sigma + MVN_EPS;
        const mg = mem.reduce((s, j) => s + dy.data[j], 0) / d.M;
        const sgd = mem.reduce((s, j) => s + dy.data[j] * (x.data[j] - mean), 0);
        out[i] = (dy.data[i] - mg) / D - ((x.data[i] - mean) * sgd) / (d.M * sigma * D * D);
      }
      return [{ ...ctx.outTypes[0], data: Float32Array.from(out) }];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[1]);
      const d = mvnDims(n, xt.shape);
      const w = ctx.writer();
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      const x = w.bind(n.inputs[1], xt.dtype, 'read');
      defineMvnIndex(w, d);
      const compute = `${mvnStatsWgsl(w, x, d)}
var sg = 0.0;
var sgd = 0.0;
for (var m = 0u; m < ${u(d.M)}; m++) {
  let j = member(gb, m);
  let g = ${w.load(dy, 'j')};
  sg += g;
  sgd += g * (${w.load(x, 'j')} - mean);
}
return (${w.load(dy, 'i')} - sg / ${f32Lit(d.M)}) / den - (${w.load(x, 'i')} - mean) * sgd / (${f32Lit(d.M)} * sigma * den * den);`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
];

export const spatialNormOps: OpRow[] = [...gnOps, ...lrnOps, ...gmpOps, ...mvnOps];

