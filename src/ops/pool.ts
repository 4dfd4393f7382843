// Pooling (MaxPool, AveragePool, GlobalAveragePool; NCHW or NCDHW, 1-D, 2-D or 3-D windows) and Pad
// (constant mode), with their gradient ops.
//
// MaxPool's gradient routes dY to the first maximum of each window (row-major window order,
// as PyTorch); windows that hold no input element (possible only with odd dilations and
// large pads) give 0. NaN is not propagated as PyTorch does: it wins a window only as its
// first tap (the comparisons skip it otherwise).
import { isFloat } from '../ir/dtypes.js';
import { sizeOf, stridesOf, type Tensor } from '../ir/tensor.js';
import type { Attrs, Node } from '../ir/graph.js';
import { f32Lit, mapKernel, type KernelWriter } from '../codegen/storage.js';
import { checkShape, coords, windowGeom, windowOutShape, type Geom } from './conv.js';
import { attrInt, attrInts, attrString, type EmitCtx, type OpRow } from './types.js';

const u = (v: number) => `${v}u`;

/**
 * Pooling geometry: the 2-D window geometry of conv.ts plus a leading depth axis D (3-D
 * pooling, NCDHW); 1-D and 2-D pools have is3 false, D = oD = kD = sD = dD = 1, no depth pads.
 */
export interface PoolGeom extends Geom {
  is3: boolean;
  D: number;
  kD: number;
  sD: number;
  dD: number;
  /** Depth padding at the front (begin) and back (end). */
  pF: number;
  pK: number;
  oD: number;
}

export function poolGeom(n: Node, x: readonly number[]): PoolGeom {
  if (n.attrs.storage_order !== undefined && attrInt(n, 'storage_order') !== 0 && attrInt(n, 'storage_order') !== 1)
    throw new Error(`${n.op} '${n.name}': storage_order must be 0 or 1, got ${attrInt(n, 'storage_order')}`);
  const kernel = attrInts(n, 'kernel_shape');
  const ceil = attrInt(n, 'ceil_mode', 0) === 1;
  if (x.length !== 5) return { ...windowGeom(n, x, kernel, ceil), is3: false, D: 1, kD: 1, sD: 1, dD: 1, pF: 0, pK: 0, oD: 1 };
  if (kernel.length !== 3) throw new Error(`${n.op} '${n.name}': kernel [${kernel}] does not match the 3-D input [${x}]`);
  const list = (key: string, len: number) => {
    const v = n.attrs[key];
    if (v === undefined) return undefined;
    const a = attrInts(n, key);
    if (a.length !== len) throw new Error(`${n.op} '${n.name}': attribute ${key} must have ${len} values, got [${a}]`);
    return a;
  };
  const strides = list('strides', 3);
  const dil = list('dilations', 3);
  const pads = list('pads', 6);
  // Split into a 1-D (depth) and a 2-D (height, width) window; the axes are independent.
  const sub = (axes: number[]): Node => {
    const attrs: Attrs = { ...n.attrs, kernel_shape: axes.map((a) => kernel[a]) };
    if (strides) attrs.strides = axes.map((a) => strides[a]);
    if (dil) attrs.dilations = axes.map((a) => dil[a]);
    if (pads) attrs.pads = [...axes.map((a) => pads[a]), ...axes.map((a) => pads[a + 3])];
    return { ...n, attrs };
  };
  const gd = windowGeom(sub([0]), [x[0], x[1], x[2]], [kernel[0]], ceil);
  const g = windowGeom(sub([1, 2]), [x[0], x[1], x[3], x[4]], kernel.slice(1), ceil);
  return { ...g, is3: true, D: gd.W, kD: gd.kW, sD: gd.sW, dD: gd.dW, pF: gd.pL, pK: gd.pR, oD: gd.oW };
}

export function poolOutShape(g: PoolGeom, channels: number): number[] {
  return g.is3 ? [g.N, channels, g.oD, g.oH, g.oW] : windowOutShape(g, channels);
}

/** Spatial index ((id * H + ih) * W + iw) of tap (kd, kh, kw) of window (od, oh, ow), or -1 when it lies in the padding. */
function tap(g: PoolGeom, od: number, oh: number, ow: number, kd: number, kh: number, kw: number): number {
  const id = od * g.sD - g.pF + kd * g.dD;
  const ih = oh * g.sH - g.pT + kh * g.dH;
  const iw = ow * g.sW - g.pL + kw * g.dW;
  return id < 0 || id >= g.D || ih < 0 || ih >= g.H || iw < 0 || iw >= g.W ? -1 : (id * g.H + ih) * g.W + iw;
}

/** Spatial index of the first maximum of window (od, oh, ow) of plane `x`, or -1. */
function argmaxRef(g: PoolGeom, x: ArrayLike<number>, base: number, od: number, oh: number, ow: number): number {
  let best = -1;
  let bv = 0;
  for (let kd = 0; kd < g.kD; kd++)
    for (let kh = 0; kh < g.kH; kh++)
      for (let kw = 0; kw < g.kW; kw++) {
        const t = tap(g, od, oh, ow, kd, kh, kw);
        if (t < 0) continue;
        const v = x[base + t];
        if (best < 0 || v > bv) [best, bv] = [t, v];
      }
  return best;
}

/** Number of taps of window (od, oh, ow) counted by AveragePool's divisor. */
function avgCount(g: PoolGeom, od: number, oh: number, ow: number, includePad: boolean): number {
  // count_include_pad counts taps inside the padded extent [-pb, in + pe) (PyTorch, ORT):
  // the part of a ceil_mode window past the end padding never counts.
  const axis = (o: number, s: number, p: number, k: number, d: number, len: number, pe: number) => {
    const [lo, hi] = includePad ? [-p, len + pe] : [0, len];
    let c = 0;
    for (let t = 0; t < k; t++) {
      const pos = o * s - p + t * d;
      if (pos >= lo && pos < hi) c++;
    }
    return c;
  };
  return axis(od, g.sD, g.pF, g.kD, g.dD, g.D, g.pK) * axis(oh, g.sH, g.pT, g.kH, g.dH, g.H, g.pB) * axis(ow, g.sW, g.pL, g.kW, g.dW, g.W, g.pR);
}

/** Calls f(plane, od, oh, ow, o) for every output position, o its flat index. */
function forEachWindow(g: PoolGeom, f: (p: number, od: number, oh: number, ow: number, o: number) => void): void {
  let o = 0;
  for (let p = 0; p < g.N * g.C; p++)
    for (let od = 0; od < g.oD; od++)
      for (let oh = 0; oh < g.oH; oh++) for (let ow = 0; ow < g.oW; ow++) f(p, od, oh, ow, o++);
}

const planeIn = (g: PoolGeom) => g.D * g.H * g.W;
const outSize = (g: PoolGeom) => g.N * g.C * g.oD * g.oH * g.oW;

export function maxPoolRef(g: PoolGeom, x: ArrayLike<number>): Float64Array {
  const y = new Float64Array(outSize(g));
  const P = planeIn(g);
  forEachWindow(g, (p, od, oh, ow, o) => {
    const t = argmaxRef(g, x, p * P, od, oh, ow);
    y[o] = t < 0 ? 0 : x[p * P + t];
  });
  return y;
}

/**
 * MaxPool's Indices: flat index into X of each window's first maximum, -1 for an empty
 * window; the spatial part is row-major (storage_order 0, (id * H + ih) * W + iw) or
 * column-major (storage_order 1, id + ih * D + iw * D * H), as ONNX Runtime.
 */
export function maxPoolIndicesRef(g: PoolGeom, x: ArrayLike<number>, colMajor: boolean): Int32Array {
  const idx = new Int32Array(outSize(g));
  const P = planeIn(g);
  forEachWindow(g, (p, od, oh, ow, o) => {
    const t = argmaxRef(g, x, p * P, od, oh, ow);
    const cm = () => Math.floor(t / (g.W * g.H)) + (Math.floor(t / g.W) % g.H) * g.D + (t % g.W) * g.D * g.H;
    idx[o] = t < 0 ? -1 : p * P + (colMajor ? cm() : t);
  });
  return idx;
}

export function maxPoolGradRef(g: PoolGeom, dy: ArrayLike<number>, x: ArrayLike<number>): Float64Array {
  const P = planeIn(g);
  const dx = new Float64Array(g.N * g.C * P);
  forEachWindow(g, (p, od, oh, ow, o) => {
    const t = argmaxRef(g, x, p * P, od, oh, ow);
    if (t >= 0) dx[p * P + t] += dy[o];
  });
  return dx;
}

export function avgPoolRef(g: PoolGeom, x: ArrayLike<number>, includePad: boolean): Float64Array {
  const y = new Float64Array(outSize(g));
  const P = planeIn(g);
  forEachWindow(g, (p, od, oh, ow, o) => {
    let s = 0;
    for (let kd = 0; kd < g.kD; kd++)
      for (let kh = 0; kh < g.kH; kh++)
        for (let kw = 0; kw < g.kW; kw++) {
          const t = tap(g, od, oh, ow, kd, kh, kw);
          if (t >= 0) s += x[p * P + t];
        }
    const cnt = avgCount(g, od, oh, ow, includePad);
    y[o] = cnt ? s / cnt : 0;
  });
  return y;
}

export function avgPoolGradRef(g: PoolGeom, dy: ArrayLike<number>, includePad: boolean): Float64Array {
  const P = planeIn(g);
  const dx = new Float64Array(g.N * g.C * P);
  forEachWindow(g, (p, od, oh, ow, o) => {
    const cnt = avgCount(g, od, oh, ow, includePad);
    if (!cnt) return;
    for (let kd = 0; kd < g.kD; kd++)
      for (let kh = 0; kh < g.kH; kh++)
        for (let kw = 0; kw < g.kW; kw++) {
          const t = tap(g, od, oh, ow, kd, kh, kw);
          if (t >= 0) dx[p * P + t] += dy[o] / cnt;
        }
  });
  return dx;
}

// ---------------------------------------------------------------------------------------------
// WGSL pieces shared by the pooling kernels.

/** `fn window_argmax(plane: u32, oh: u32, ow: u32) -> i32`: as argmaxRef. */
function defineArgmax(w: KernelWriter, g: PoolGeom, x: string): void {
  if (g.is3) {
    w.define(`fn window_argmax(plane: u32, od: u32, oh: u32, ow: u32) -> i32 {
  let base = plane * ${u(g.D * g.H * g.W)};
  var best = -1;
  var bv = 0.0;
  for (var kd = 0u; kd < ${u(g.kD)}; kd++) {
    let idd = i32(od * ${u(g.sD)} + kd * ${u(g.dD)}) - ${g.pF};
    if (idd < 0 || idd >= ${g.D}) { continue; }
    for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
      let ih = i32(oh * ${u(g.sH)} + kh * ${u(g.dH)}) - ${g.pT};
      if (ih < 0 || ih >= ${g.H}) { continue; }
      for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
        let iw = i32(ow * ${u(g.sW)} + kw * ${u(g.dW)}) - ${g.pL};
        if (iw < 0 || iw >= ${g.W}) { continue; }
        let t = (idd * ${g.H} + ih) * ${g.W} + iw;
        let v = ${w.load(x, 'base + u32(t)')};
        if (best < 0 || v > bv) { best = t; bv = v; }
      }
    }
  }
  return best;
}
`);
    return;
  }
  w.define(`fn window_argmax(plane: u32, oh: u32, ow: u32) -> i32 {
  let base = plane * ${u(g.H * g.W)};
  var best = -1;
  var bv = 0.0;
  for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
    let ih = i32(oh * ${u(g.sH)} + kh * ${u(g.dH)}) - ${g.pT};
    if (ih < 0 || ih >= ${g.H}) { continue; }
    for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
      let iw = i32(ow * ${u(g.sW)} + kw * ${u(g.dW)}) - ${g.pL};
      if (iw < 0 || iw >= ${g.W}) { continue; }
      let t = ih * ${g.W} + iw;
      let v = ${w.load(x, 'base + u32(t)')};
      if (best < 0 || v > bv) { best = t; bv = v; }
    }
  }
  return best;
}
`);
}

/** `fn avg_count(oh: u32, ow: u32) -> f32`: as avgCount. */
function defineAvgCount(w: KernelWriter, g: PoolGeom, includePad: boolean): void {
  const axis = (name: string, s: number, p: number, k: number, d: number, len: number, pe: number) => {
    const [lo, hi] = includePad ? [-p, len + pe] : [0, len];
    return `fn count_${name}(o: u32) -> u32 {
  var c = 0u;
  for (var t = 0u; t < ${u(k)}; t++) {
    let pos = i32(o * ${u(s)} + t * ${u(d)}) - ${p};
    if (pos >= ${lo} && pos < ${hi}) { c++; }
  }
  return c;
}
`;
  };
  if (g.is3) w.define(axis('d', g.sD, g.pF, g.kD, g.dD, g.D, g.pK));
  w.define(axis('h', g.sH, g.pT, g.kH, g.dH, g.H, g.pB));
  w.define(axis('w', g.sW, g.pL, g.kW, g.dW, g.W, g.pR));
  if (g.is3) w.define(`fn avg_count(od: u32, oh: u32, ow: u32) -> f32 { return f32(count_d(od) * count_h(oh) * count_w(ow)); }\n`);
  else w.define(`fn avg_count(oh: u32, ow: u32) -> f32 { return f32(count_h(oh) * count_w(ow)); }\n`);
}

/**
 * WGSL loop over the windows (oh, ow) that tap input element (ih, iw) of `plane`: `body`
 * runs with `oh`, `ow` and `o` (the flat dY index) defined.
 */
function windowsOfInput(g: PoolGeom, body: string): string {
  if (g.is3)
    return `for (var kd = 0u; kd < ${u(g.kD)}; kd++) {
  let td = i32(idd) + ${g.pF} - i32(kd * ${u(g.dD)});
  if (td < 0 || td % ${g.sD} != 0 || td / ${g.sD} >= ${g.oD}) { continue; }
  let od = u32(td / ${g.sD});
  for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
    let th = i32(ih) + ${g.pT} - i32(kh * ${u(g.dH)});
    if (th < 0 || th % ${g.sH} != 0 || th / ${g.sH} >= ${g.oH}) { continue; }
    let oh = u32(th / ${g.sH});
    for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
      let tw = i32(iw) + ${g.pL} - i32(kw * ${u(g.dW)});
      if (tw < 0 || tw % ${g.sW} != 0 || tw / ${g.sW} >= ${g.oW}) { continue; }
      let ow = u32(tw / ${g.sW});
      let o = ((plane * ${u(g.oD)} + od) * ${u(g.oH)} + oh) * ${u(g.oW)} + ow;
${body.replace(/^/gm, '      ')}
    }
  }
}`;
  return `for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
  let th = i32(ih) + ${g.pT} - i32(kh * ${u(g.dH)});
  if (th < 0 || th % ${g.sH} != 0 || th / ${g.sH} >= ${g.oH}) { continue; }
  let oh = u32(th / ${g.sH});
  for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
    let tw = i32(iw) + ${g.pL} - i32(kw * ${u(g.dW)});
    if (tw < 0 || tw % ${g.sW} != 0 || tw / ${g.sW} >= ${g.oW}) { continue; }
    let ow = u32(tw / ${g.sW});
    let o = (plane * ${u(g.oH)} + oh) * ${u(g.oW)} + ow;
${body.replace(/^/gm, '    ')}
  }
}`;
}

function geom4(g: Geom, out: boolean): [number, number, number, number] {
  return [g.N, g.C, out ? g.oH : g.H, out ? g.oW : g.W];
}

/** Plane size (D * H * W) of the input, as a WGSL u32 literal. */
const planeU = (g: PoolGeom) => u(g.D * g.H * g.W);

/** Window coordinates as WGSL arguments: `od, oh, ow` (3-D) or `oh, ow`. */
const wargs = (g: PoolGeom) => (g.is3 ? 'od, oh, ow' : 'oh, ow');

const planeCoords = (g: PoolGeom, out: boolean) =>
  g.is3
    ? `${coords(['nn', 'cc', out ? 'od' : 'idd', 'sp'], [g.N, g.C, out ? g.oD : g.D, out ? g.oH * g.oW : g.H * g.W])}
let ${out ? 'oh' : 'ih'} = sp / ${u(out ? g.oW : g.W)};
let ${out ? 'ow' : 'iw'} = sp % ${u(out ? g.oW : g.W)};
let plane = nn * ${u(g.C)} + cc;`
    : `${coords(['nn', 'cc', out ? 'oh' : 'ih', out ? 'ow' : 'iw'], geom4(g, out))}\nlet plane = nn * ${u(g.C)} + cc;`;

// ---------------------------------------------------------------------------------------------
// Pad (modes constant, edge, reflect, wrap).

/**
 * Full-rank pads [b0, b1, ..., e0, e1, ...] of a Pad node from its `pads` input and the
 * optional `axes` input (opset 18).
 */
export function resolvePads(n: Node, rank: number, pads: Tensor | undefined, axes: Tensor | undefined): number[] {
  if (!pads) throw new Error(`${n.op} '${n.name}': the pads input must be a constant (pass --batch to fix dynamic dimensions)`);
  const raw = Array.from(pads.data);
  let ax = [...Array(rank).keys()];
  if (axes) ax = Array.from(axes.data, (a) => (a < 0 ? a + rank : a));
  if (ax.some((a) => a < 0 || a >= rank) || new Set(ax).size !== ax.length) throw new Error(`${n.op} '${n.name}': invalid axes [${axes ? Array.from(axes.data) : ''}] for rank ${rank}`);
  if (raw.length !== 2 * ax.length) throw new Error(`${n.op} '${n.name}': pads must have ${2 * ax.length} values, got [${raw}]`);
  const out = new Array<number>(2 * rank).fill(0);
  ax.forEach((a, k) => {
    out[a] = raw[k];
    out[a + rank] = raw[k + ax.length];
  });
  return out;
}

/**
 * `fn pad_begin(d: i32) -> i32`: the padding before dimension d, read from the pads input
 * (and axes input) buffers at run time. The code generator sees shapes, not constant contents;
 * the shapes (static) already fix how much is padded in all.
 */
function definePadBegin(w: KernelWriter, ctx: EmitCtx, rank: number, padsName: string, axesName: string | undefined): void {
  const pads = w.bind(padsName, ctx.type(padsName).dtype, 'read');
  let body = `return ${w.load(pads, 'u32(d)')};`;
  if (axesName) {
    const axes = w.bind(axesName, ctx.type(axesName).dtype, 'read');
    const count = sizeOf(ctx.type(axesName).shape);
    body = `for (var k = 0u; k < ${u(count)}; k++) {
    var a = ${w.load(axes, 'k')};
    if (a < 0) { a += ${rank}; }
    if (a == d) { return ${w.load(pads, 'k')}; }
  }
  return 0;`;
  }
  w.define(`fn pad_begin(d: i32) -> i32 {\n  ${body}\n}\n`);
}

/**
 * WGSL lines of a map kernel over shape `outShape` that compute `src`, the flat index into a
 * tensor of shape `fromShape`: output coordinate c reads c - pad_begin(d) (sign 1, Pad) or
 * c + pad_begin(d) (sign -1, its gradient); out of range, the kernel returns `outside`.
 */
function padLines(outShape: readonly number[], fromShape: readonly number[], sign: 1 | -1, outside: string, mode: PadMode = 'constant'): string[] {
  const ost = stridesOf(outShape);
  const fst = stridesOf(fromShape);
  const lines = ['var src = 0u;'];
  for (let d = 0; d < outShape.length; d++) {
    const n = fromShape[d];
    lines.push(`var j${d} = i32((i / ${u(ost[d])}) % ${u(outShape[d])}) ${sign > 0 ? '-' : '+'} pad_begin(${d});`);
    if (mode === 'constant') lines.push(`if (j${d} < 0 || j${d} >= ${n}) { return ${outside}; }`);
    else if (mode === 'edge') lines.push(`j${d} = clamp(j${d}, 0, ${n - 1});`);
    else if (mode === 'wrap') lines.push(`j${d} = ((j${d} % ${n}) + ${n}) % ${n};`);
    else if (n === 1) lines.push(`j${d} = 0;`);
    else {
      const p = 2 * (n - 1);
      lines.push(`j${d} = ((j${d} % ${p}) + ${p}) % ${p};`, `if (j${d} >= ${n}) { j${d} = ${p} - j${d}; }`);
    }
    lines.push(`src += u32(j${d}) * ${u(fst[d])};`);
  }
  return lines;
}

type PadMode = 'constant' | 'edge' | 'reflect' | 'wrap';

/** Source index along one axis of length n for coordinate j (may lie outside [0, n)); -1: outside (constant). */
function padIndex(j: number, n: number, mode: PadMode): number {
  if (j >= 0 && j < n) return j;
  if (mode === 'constant') return -1;
  if (mode === 'edge') return Math.min(Math.max(j, 0), n - 1);
  if (mode === 'wrap') return ((j % n) + n) % n;
  if (n === 1) return 0;
  const p = 2 * (n - 1);
  const k = ((j % p) + p) % p;
  return k >= n ? p - k : k;
}

function padShape(n: Node, x: readonly number[], pads: number[]): number[] {
  const r = x.length;
  const shape = x.map((d, i) => d + pads[i] + pads[i + r]);
  if (shape.some((d) => d < 0)) throw new Error(`Pad '${n.name}': pads [${pads}] remove more than [${x}] holds`);
  return shape;
}

export function padRef(x: ArrayLike<number>, xs: readonly number[], pads: number[], value: number, mode: PadMode = 'constant'): Float64Array {
  const r = xs.length;
  const os = xs.map((d, i) => d + pads[i] + pads[i + r]);
  const ost = stridesOf(os);
  const ist = stridesOf(xs);
  const y = new Float64Array(sizeOf(os));
  for (let i = 0; i < y.length; i++) {
    let rem = i;
    let src = 0;
    let inside = true;
    for (let d = 0; d < r; d++) {
      const c = Math.floor(rem / ost[d]);
      rem -= c * ost[d];
      const j = padIndex(c - pads[d], xs[d], mode);
      if (j < 0) inside = false;
      else src += j * ist[d];
    }
    y[i] = inside ? x[src] : value;
  }
  return y;
}

function padMode(n: Node): PadMode {
  const mode = attrString(n, 'mode', 'constant');
  if (mode !== 'constant' && mode !== 'edge' && mode !== 'reflect' && mode !== 'wrap') throw new Error(`Pad '${n.name}': unknown mode '${mode}' (constant, edge, reflect, wrap)`);
  return mode;
}

// ---------------------------------------------------------------------------------------------
// Rows.

function poolWgsl(n: Node, ctx: EmitCtx, compute: (w: KernelWriter, g: PoolGeom, x: string) => string) {
  const xt = ctx.type(n.inputs[0]);
  const g = poolGeom(n, xt.shape);
  const w = ctx.writer();
  const x = w.bind(n.inputs[0], xt.dtype, 'read');
  const yt = ctx.type(n.outputs[0]);
  return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: compute(w, g, x) })];
}

const colMajor = (n: Node) => attrInt(n, 'storage_order', 0) === 1;

const includePad = (n: Node) => attrInt(n, 'count_include_pad', 0) === 1;

export const poolOps: OpRow[] = [
  {
    // outputs: Y, Indices (optional; i64, flat index into X, storage_order 0). Indices has no gradient.
    op: 'MaxPool',
    domain: '',
    opsets: [10, 22],
    precision: 'follow',
    arity: [1, 1],
    outputs: 2,
    infer: (n, [x]) => {
      const shape = poolOutShape(poolGeom(n, x.shape), x.shape[1]);
      return [
        { dtype: x.dtype, shape },
        { dtype: 'i64', shape: [...shape] },
      ];
    },
    interp: (n, [x], ctx) => {
      const g = poolGeom(n, x.shape);
      const shape = ctx.outTypes[0].shape;
      const out = [{ dtype: x.dtype, shape, data: Float32Array.from(maxPoolRef(g, x.data)) }];
      return n.outputs[1] ? [...out, { dtype: 'i64' as const, shape: [...shape], data: maxPoolIndicesRef(g, x.data, colMajor(n)) }] : out;
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      const x = ctx.node.inputs[0];
      return [dy ? ctx.emit('mpc.MaxPoolGrad', [dy, x], { ...ctx.node.attrs })[0] : undefined];
    },
    wgsl: (n, ctx) => {
      const [y, indices] = n.outputs;
      const kernels = [];
      if (y)
        kernels.push(
          ...poolWgsl(n, ctx, (w, g, x) => {
            defineArgmax(w, g, x);
            return `${planeCoords(g, true)}
let t = window_argmax(plane, ${wargs(g)});
if (t < 0) { return 0.0; }
return ${w.load(x, `plane * ${planeU(g)} + u32(t)`)};`;
          }),
        );
      if (indices) {
        const xt = ctx.type(n.inputs[0]);
        const g = poolGeom(n, xt.shape);
        const w = ctx.writer('indices');
        const x = w.bind(n.inputs[0], xt.dtype, 'read');
        defineArgmax(w, g, x);
        const it = ctx.type(indices);
        const compute = `${planeCoords(g, true)}
let t = window_argmax(plane, ${wargs(g)});
if (t < 0) { return -1; }
return i32(plane * ${planeU(g)}) + ${colMajor(n) ? (g.is3 ? `t / ${g.W * g.H} + ((t / ${g.W}) % ${g.H}) * ${g.D} + (t % ${g.W}) * ${g.D * g.H}` : `t / ${g.W} + (t % ${g.W}) * ${g.H}`) : 't'};`;
        kernels.push(mapKernel(w, { out: indices, outDtype: it.dtype, count: sizeOf(it.shape), compute }));
      }
      return kernels;
    },
  },
  {
    // dX of MaxPool: dY routed to each window's first maximum. inputs: dY, X; MaxPool's attributes.
    op: 'mpc.MaxPoolGrad',
    domain: 'mpc',
    precision: 'follow',
    arity: [2, 2],
    outputs: 1,
    // One map kernel over dX: the gradient of the op before it (ReluGrad) fuses into its store.
    epilogue: true,
    infer: (n, [dy, x]) => {
      checkShape(n, 'dY', dy.shape, poolOutShape(poolGeom(n, x.shape), x.shape[1]));
      return [{ dtype: dy.dtype, shape: [...x.shape] }];
    },
    interp: (n, [dy, x]) => [{ dtype: dy.dtype, shape: [...x.shape], data: Float32Array.from(maxPoolGradRef(poolGeom(n, x.shape), dy.data, x.data)) }],
    wgsl: (n, ctx) => {
      const [dyn, xn] = n.inputs;
      const xt = ctx.type(xn);
      const g = poolGeom(n, xt.shape);
      const w = ctx.writer();
      const dy = w.bind(dyn, ctx.type(dyn).dtype, 'read');
      const x = w.bind(xn, xt.dtype, 'read');
      defineArgmax(w, g, x);
      const compute = `${planeCoords(g, false)}
let me = i32(${g.is3 ? `(idd * ${u(g.H)} + ih)` : 'ih'} * ${u(g.W)} + iw);
var s = 0.0;
${windowsOfInput(g, `if (window_argmax(plane, ${wargs(g)}) == me) { s += ${w.load(dy, 'o')}; }`)}
return s;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
  {
    op: 'AveragePool',
    domain: '',
    opsets: [11, 22],
    precision: 'follow',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => [{ dtype: x.dtype, shape: poolOutShape(poolGeom(n, x.shape), x.shape[1]) }],
    interp: (n, [x], ctx) => [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: Float32Array.from(avgPoolRef(poolGeom(n, x.shape), x.data, includePad(n))) }],
    grad: (ctx) => {
      const dy = ctx.dy[0];
      return [dy ? ctx.emit('mpc.AveragePoolGrad', [dy], { ...ctx.node.attrs, shape: ctx.type(ctx.node.inputs[0]).shape })[0] : undefined];
    },
    wgsl: (n, ctx) =>
      poolWgsl(n, ctx, (w, g, x) => {
        defineAvgCount(w, g, includePad(n));
        if (g.is3)
          return `${planeCoords(g, true)}
let base = plane * ${planeU(g)};
var s = 0.0;
for (var kd = 0u; kd < ${u(g.kD)}; kd++) {
  let idd = i32(od * ${u(g.sD)} + kd * ${u(g.dD)}) - ${g.pF};
  if (idd < 0 || idd >= ${g.D}) { continue; }
  for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
    let ih = i32(oh * ${u(g.sH)} + kh * ${u(g.dH)}) - ${g.pT};
    if (ih < 0 || ih >= ${g.H}) { continue; }
    for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
      let iw = i32(ow * ${u(g.sW)} + kw * ${u(g.dW)}) - ${g.pL};
      if (iw < 0 || iw >= ${g.W}) { continue; }
      s += ${w.load(x, `base + u32((idd * ${g.H} + ih) * ${g.W} + iw)`)};
    }
  }
}
let cnt = avg_count(od, oh, ow);
return select(0.0, s / cnt, cnt > 0.0);`;
        return `${planeCoords(g, true)}
let base = plane * ${u(g.H * g.W)};
var s = 0.0;
for (var kh = 0u; kh < ${u(g.kH)}; kh++) {
  let ih = i32(oh * ${u(g.sH)} + kh * ${u(g.dH)}) - ${g.pT};
  if (ih < 0 || ih >= ${g.H}) { continue; }
  for (var kw = 0u; kw < ${u(g.kW)}; kw++) {
    let iw = i32(ow * ${u(g.sW)} + kw * ${u(g.dW)}) - ${g.pL};
    if (iw < 0 || iw >= ${g.W}) { continue; }
    s += ${w.load(x, `base + u32(ih * ${g.W} + iw)`)};
  }
}
let cnt = avg_count(oh, ow);
return select(0.0, s / cnt, cnt > 0.0);`;
      }),
  },
  {
    // dX of AveragePool. inputs: dY; AveragePool's attributes plus `shape` (X's shape).
    op: 'mpc.AveragePoolGrad',
    domain: 'mpc',
    precision: 'follow',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [dy]) => {
      const xs = attrInts(n, 'shape');
      checkShape(n, 'dY', dy.shape, poolOutShape(poolGeom(n, xs), xs[1]));
      return [{ dtype: dy.dtype, shape: [...xs] }];
    },
    interp: (n, [dy]) => {
      const xs = attrInts(n, 'shape');
      return [{ dtype: dy.dtype, shape: [...xs], data: Float32Array.from(avgPoolGradRef(poolGeom(n, xs), dy.data, includePad(n))) }];
    },
    wgsl: (n, ctx) => {
      const xs = attrInts(n, 'shape');
      const g = poolGeom(n, xs);
      const w = ctx.writer();
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      defineAvgCount(w, g, includePad(n));
      // Taps are only ever inside the input here, so every window reached has cnt >= 1.
      const compute = `${planeCoords(g, false)}
var s = 0.0;
${windowsOfInput(g, `s += ${w.load(dy, 'o')} / avg_count(${wargs(g)});`)}
return s;`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xs), compute })];
    },
  },
  {
    op: 'GlobalAveragePool',
    domain: '',
    opsets: [1, 22],
    precision: 'deny',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => {
      if (x.shape.length < 3) throw new Error(`GlobalAveragePool '${n.name}': input must be (N, C, spatial...), got [${x.shape}]`);
      return [{ dtype: x.dtype, shape: [x.shape[0], x.shape[1], ...x.shape.slice(2).map(() => 1)] }];
    },
    interp: (_n, [x], ctx) => {
      const hw = sizeOf(x.shape.slice(2));
      const y = new Float32Array(x.shape[0] * x.shape[1]);
      for (let p = 0; p < y.length; p++) {
        let s = 0;
        for (let k = 0; k < hw; k++) s += x.data[p * hw + k];
        y[p] = s / hw;
      }
      return [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: y }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      return [dy ? ctx.emit('mpc.GlobalAveragePoolGrad', [dy], { shape: ctx.type(ctx.node.inputs[0]).shape })[0] : undefined];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const hw = sizeOf(xt.shape.slice(2));
      const w = ctx.writer();
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const compute = `var s = 0.0;
for (var k = 0u; k < ${u(hw)}; k++) { s += ${w.load(x, `i * ${u(hw)} + k`)}; }
return s / ${f32Lit(hw)};`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: xt.shape[0] * xt.shape[1], compute })];
    },
  },
  {
    // dX of GlobalAveragePool: dY / (spatial size), broadcast. inputs: dY; attribute `shape` (X's).
    op: 'mpc.GlobalAveragePoolGrad',
    domain: 'mpc',
    precision: 'deny',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [dy]) => {
      const xs = attrInts(n, 'shape');
      checkShape(n, 'dY', dy.shape, [xs[0], xs[1], ...xs.slice(2).map(() => 1)]);
      return [{ dtype: dy.dtype, shape: [...xs] }];
    },
    interp: (n, [dy]) => {
      const xs = attrInts(n, 'shape');
      const hw = sizeOf(xs.slice(2));
      return [{ dtype: dy.dtype, shape: [...xs], data: Float32Array.from({ length: sizeOf(xs) }, (_, i) => dy.data[Math.floor(i / hw)] / hw) }];
    },
    wgsl: (n, ctx) => {
      const xs = attrInts(n, 'shape');
      const hw = sizeOf(xs.slice(2));
      const w = ctx.writer();
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xs), compute: `return ${w.load(dy, `i / ${u(hw)}`)} / ${f32Lit(hw)};` })];
    },
  },
  {
    // ONNX Pad, modes constant / edge / reflect / wrap (gradient: constant only). inputs: data, pads (a constant), [constant_value], [axes (opset 18)].
    op: 'Pad',
    domain: '',
    opsets: [11, 22],
    precision: 'follow',
    dataInputs: [0, 2],
    arity: [2, 4],
    outputs: 1,
    infer: (n, [x, , cv], consts) => {
      const mode = padMode(n);
      if (n.inputs[3] && !consts[3]) throw new Error(`Pad '${n.name}': the axes input must be a constant`);
      const pads = resolvePads(n, x.shape.length, consts[1], consts[3]);
      const r = x.shape.length;
      if (mode !== 'constant')
        x.shape.forEach((d, i) => {
          const widest = Math.max(pads[i], pads[i + r]);
          if (widest > 0 && d === 0) throw new Error(`Pad '${n.name}': mode '${mode}' cannot pad an empty axis ${i}`);
          if (mode === 'reflect' && widest > 0 && d > 1 && widest >= d) throw new Error(`Pad '${n.name}': mode 'reflect' needs pads < the axis size (axis ${i}: ${d}, pads [${pads}])`);
        });
      if (cv && sizeOf(cv.shape) !== 1) throw new Error(`Pad '${n.name}': constant_value must hold one value, got [${cv.shape}]`);
      if (cv && isFloat(cv.dtype) !== isFloat(x.dtype)) throw new Error(`Pad '${n.name}': constant_value is ${cv.dtype}, data is ${x.dtype}`);
      return [{ dtype: x.dtype, shape: padShape(n, x.shape, pads) }];
    },
    interp: (n, [x, pads, cv, axes], ctx) => {
      const y = padRef(x.data, x.shape, resolvePads(n, x.shape.length, pads, axes), cv ? cv.data[0] : 0, padMode(n));
      return [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: isFloat(x.dtype) ? Float32Array.from(y) : Int32Array.from(y) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined];
      const mode = padMode(ctx.node);
      if (mode !== 'constant') throw new Error(`Pad '${ctx.node.name}': no gradient for Pad mode=${mode} yet`);
      const [x, pads, cv, axes] = ctx.node.inputs;
      // The adjoint of padding is cropping.
      const dx = ctx.emit('mpc.PadGrad', axes ? [dy, pads, axes] : [dy, pads], { shape: ctx.type(x).shape })[0];
      // constant_value fills every position that does not come from X: sum(dY) - sum(dX).
      let dcv: string | undefined;
      if (cv && isFloat(ctx.type(cv).dtype)) {
        const total = (v: string) => ctx.emit('mpc.SumTo', [v], { shape: ctx.type(cv).shape })[0];
        dcv = ctx.emit('Sub', [total(dy), total(dx)])[0];
      }
      return [dx, undefined, dcv, undefined];
    },
    wgsl: (n, ctx) => {
      const [xn, padsName, cvName, axesName] = n.inputs;
      const xt = ctx.type(xn);
      const yt = ctx.type(n.outputs[0]);
      const w = ctx.writer();
      const x = w.bind(xn, xt.dtype, 'read');
      definePadBegin(w, ctx, xt.shape.length, padsName, axesName || undefined);
      const value = cvName ? w.load(w.bind(cvName, ctx.type(cvName).dtype, 'read'), '0u') : isFloat(xt.dtype) ? '0.0' : '0';
      const lines = [...padLines(yt.shape, xt.shape, 1, value, padMode(n)), `return ${w.load(x, 'src')};`];
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: lines.join('\n') })];
    },
  },
  {
    // dX of Pad: dY cropped back to X (positions of X that a negative pad removed get 0).
    // inputs: dY, pads, [axes] (the Pad's); attribute `shape` (X's shape).
    op: 'mpc.PadGrad',
    domain: 'mpc',
    precision: 'follow',
    dataInputs: [0],
    arity: [2, 3],
    outputs: 1,
    infer: (n, [dy], consts) => {
      const xs = attrInts(n, 'shape');
      if (consts[1]) checkShape(n, 'dY', dy.shape, padShape(n, xs, resolvePads(n, xs.length, consts[1], consts[2])));
      return [{ dtype: dy.dtype, shape: [...xs] }];
    },
    interp: (n, [dy, pads, axes]) => {
      const xs = attrInts(n, 'shape');
      const p = resolvePads(n, xs.length, pads, axes).map((v) => -v);
      return [{ dtype: dy.dtype, shape: [...xs], data: Float32Array.from(padRef(dy.data, dy.shape, p, 0)) }];
    },
    wgsl: (n, ctx) => {
      const [dyn, padsName, axesName] = n.inputs;
      const dyt = ctx.type(dyn);
      const xs = attrInts(n, 'shape');
      const w = ctx.writer();
      const dy = w.bind(dyn, dyt.dtype, 'read');
      definePadBegin(w, ctx, xs.length, padsName, axesName || undefined);
      const lines = [...padLines(xs, dyt.shape, -1, '0.0'), `return ${w.load(dy, 'src')};`];
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xs), compute: lines.join('\n') })];
    },
  },
];
