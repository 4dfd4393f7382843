// Resize (opsets 10 to 22) and Upsample (opsets 7 and 9), with their gradient mpc.ResizeGrad.
//
// Every resized axis is independent: output coordinate o maps to a source coordinate x (the
// coordinate_transformation_mode) and x to a few taps (input index, weight): one for nearest,
// two for linear, four for cubic. An output element is the sum over the product of its
// axes' taps. The taps are computed in f32, operation by operation, identically by the
// interpreter (Math.fround after each step) and by the kernels, so both pick the same nearest
// pixel at ties; the weighted sums are f64 in the interpreter, f32 in the kernels.
//
// The gradient is a gather, not a scatter: each dX element loops over the output positions
// whose taps reach it. Taps move monotonically with o, so along each axis those positions are
// one run, found by a binary search over o; no atomics.
//
// Scales (and roi, and sizes under keep_aspect_ratio_policy) are read from their constant
// buffers at run time: the code generator sees shapes, not constant contents.
import { isFloat } from '../ir/dtypes.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import type { Node } from '../ir/graph.js';
import { f32Lit, mapKernel, type KernelWriter } from '../codegen/storage.js';
import { attrFloat, attrInt, attrInts, attrString, type EmitCtx, type OpRow, type ValueType } from './types.js';

const u = (v: number) => `${v}u`;
const fr = Math.fround;

/** How the node's inputs are laid out: Resize 11+ (X, roi, scales, sizes), Resize 10 and Upsample 9 (X, scales), Upsample 7 (scales attribute). */
type Form = 'resize' | 'resize10' | 'upsample';

interface Cfg {
  form: Form;
  mode: 'nearest' | 'linear' | 'cubic';
  nearest: 'round_prefer_floor' | 'round_prefer_ceil' | 'floor' | 'ceil' | 'simple';
  coord: string;
  cubicA: number;
  exclude: boolean;
  extrap: number;
  policy: 'stretch' | 'not_larger' | 'not_smaller';
  /** The axes that scales/sizes/roi list, in their order. */
  axes: number[];
  /** Input slots (in the node's inputs) of roi, scales and sizes; -1 when absent. */
  roi: number;
  scales: number;
  sizes: number;
}

const COORDS = ['half_pixel', 'half_pixel_symmetric', 'pytorch_half_pixel', 'align_corners', 'asymmetric', 'tf_half_pixel_for_nn', 'tf_crop_and_resize'];

function formOf(n: Node): Form {
  if (n.op === 'mpc.ResizeGrad') return attrString(n, 'form') as Form;
  if (n.op === 'Upsample') return 'upsample';
  return n.inputs.length === 2 ? 'resize10' : 'resize';
}

function cfgOf(n: Node, rank: number): Cfg {
  const form = formOf(n);
  const bad = (what: string) => new Error(`${n.op} '${n.name}': ${what}`);
  let mode = attrString(n, 'mode', 'nearest');
  if (mode === 'bilinear' && form === 'upsample') mode = 'linear';
  if (mode !== 'nearest' && mode !== 'linear' && mode !== 'cubic') throw bad(`unknown mode '${mode}'`);
  if (mode === 'cubic' && form !== 'resize') throw bad(`mode cubic needs Resize opset 11 or later`);
  if (attrInt(n, 'antialias', 0) !== 0) throw bad('antialias=1 is not supported yet');
  const old = form !== 'resize';
  const nearest = old ? 'simple' : attrString(n, 'nearest_mode', 'round_prefer_floor');
  if (!['round_prefer_floor', 'round_prefer_ceil', 'floor', 'ceil', 'simple'].includes(nearest)) throw bad(`unknown nearest_mode '${nearest}'`);
  const coord = old ? 'asymmetric' : attrString(n, 'coordinate_transformation_mode', 'half_pixel');
  if (!COORDS.includes(coord)) throw bad(`unknown coordinate_transformation_mode '${coord}'`);
  const policy = attrString(n, 'keep_aspect_ratio_policy', 'stretch');
  if (policy !== 'stretch' && policy !== 'not_larger' && policy !== 'not_smaller') throw bad(`unknown keep_aspect_ratio_policy '${policy}'`);
  const axes = n.attrs.axes !== undefined ? attrInts(n, 'axes').map((a) => (a < 0 ? a + rank : a)) : [...Array(rank).keys()];
  if (axes.some((a) => a < 0 || a >= rank) || new Set(axes).size !== axes.length) throw bad(`invalid axes [${attrInts(n, 'axes')}] for rank ${rank}`);
  const present = (k: number) => (k < n.inputs.length && n.inputs[k] ? k : -1);
  return {
    form,
    mode,
    nearest: nearest as Cfg['nearest'],
    coord,
    cubicA: fr(attrFloat(n, 'cubic_coeff_a', -0.75)),
    exclude: attrInt(n, 'exclude_outside', 0) === 1,
    extrap: fr(attrFloat(n, 'extrapolation_value', 0)),
    policy,
    axes,
    roi: form === 'resize' ? present(1) : -1,
    scales: form === 'resize' ? present(2) : present(1),
    sizes: form === 'resize' ? present(3) : -1,
  };
}

/** Which input gives the output size: a non-empty sizes input wins over scales. */
function usesSizes(c: Cfg, types: (ValueType | undefined)[]): boolean {
  return c.sizes >= 0 && !!types[c.sizes] && sizeOf(types[c.sizes]!.shape) > 0;
}

/** Output shape from the constant scales/sizes (infer). */
function outShapeOf(n: Node, c: Cfg, xs: readonly number[], types: (ValueType | undefined)[], consts: (Tensor | undefined)[]): number[] {
  const r = xs.length;
  const out = [...xs];
  if (c.form === 'upsample' && c.scales < 0) {
    const sc = attrInts(n, 'scales');
    if (sc.length !== r) throw new Error(`${n.op} '${n.name}': scales must have ${r} values, got [${sc}]`);
    return xs.map((d, a) => Math.floor(d * fr(sc[a])));
  }
  if (usesSizes(c, types)) {
    const t = consts[c.sizes];
    if (!t) throw new Error(`${n.op} '${n.name}': the sizes input must be a constant (pass --batch to fix dynamic dimensions)`);
    if (t.data.length !== c.axes.length) throw new Error(`${n.op} '${n.name}': sizes must have ${c.axes.length} values, got ${t.data.length}`);
    if (c.policy === 'stretch') c.axes.forEach((a, k) => (out[a] = t.data[k]));
    else {
      const ratios = c.axes.map((a, k) => t.data[k] / xs[a]);
      const s = c.policy === 'not_larger' ? Math.min(...ratios) : Math.max(...ratios);
      c.axes.forEach((a) => (out[a] = Math.floor(s * xs[a] + 0.5)));
    }
    return out;
  }
  const t = c.scales >= 0 ? consts[c.scales] : undefined;
  if (!t) throw new Error(`${n.op} '${n.name}': the scales (or sizes) input must be a constant`);
  if (t.data.length !== c.axes.length) throw new Error(`${n.op} '${n.name}': scales must have ${c.axes.length} values, got ${t.data.length}`);
  c.axes.forEach((a, k) => {
    if (!(t.data[k] > 0)) throw new Error(`${n.op} '${n.name}': scales must be positive, got [${Array.from(t.data)}]`);
    out[a] = Math.floor(xs[a] * t.data[k]);
  });
  return out;
}

// ---------------------------------------------------------------------------------------------
// Taps in f32 (interpreter side). Each step mirrors one WGSL operation of tapsFn below.

interface Taps {
  i: number[];
  w: number[];
  /** tf_crop_and_resize: the source coordinate lies outside the input. */
  out: boolean;
}

/** Per-axis values the taps need: input and output lengths, scale, outF (= scale * in), roi. */
interface AxisVals {
  len: number;
  olen: number;
  sc: number;
  outF: number;
  st: number;
  en: number;
}

function axisValues(c: Cfg, xs: readonly number[], ys: readonly number[], ins: (Tensor | undefined)[], n: Node): AxisVals[] {
  const sizesMode = c.sizes >= 0 && !!ins[c.sizes] && ins[c.sizes]!.data.length > 0;
  let policyScale = 0;
  if (sizesMode && c.policy !== 'stretch') {
    const ratios = c.axes.map((a, k) => fr(ins[c.sizes]!.data[k] / xs[a]));
    policyScale = c.policy === 'not_larger' ? Math.min(...ratios) : Math.max(...ratios);
  }
  return xs.map((len, a) => {
    const k = c.axes.indexOf(a);
    let sc = 1;
    let outF = ys[a];
    if (k >= 0) {
      if (c.form === 'upsample' && c.scales < 0) sc = fr(attrInts(n, 'scales')[a]);
      else if (sizesMode) sc = c.policy === 'stretch' ? fr(ys[a] / len) : policyScale;
      else sc = fr(ins[c.scales]!.data[k]);
      if (!(sizesMode && c.policy === 'stretch')) outF = fr(sc * len);
    }
    const roi = c.roi >= 0 ? ins[c.roi] : undefined;
    const st = roi && roi.data.length && k >= 0 ? fr(roi.data[k]) : 0;
    const en = roi && roi.data.length && k >= 0 ? fr(roi.data[k + c.axes.length]) : 1;
    return { len, olen: ys[a], sc, outF, st, en };
  });
}

const identityOk = (c: Cfg) => c.coord !== 'tf_crop_and_resize' && c.coord !== 'tf_half_pixel_for_nn';

function srcCoord(c: Cfg, v: AxisVals, o: number): number {
  const { len, sc, outF, st, en } = v;
  switch (c.coord) {
    case 'half_pixel':
      return fr(fr(fr(o + 0.5) / sc) - 0.5);
    case 'pytorch_half_pixel':
      return outF === 1 ? -0.5 : fr(fr(fr(o + 0.5) / sc) - 0.5);
    case 'half_pixel_symmetric': {
      const offset = fr(fr(len / 2) * fr(1 - fr(v.olen / outF)));
      return fr(fr(offset + fr(fr(o + 0.5) / sc)) - 0.5);
    }
    case 'align_corners':
      return outF === 1 ? 0 : fr(fr(o * (len - 1)) / fr(outF - 1));
    case 'asymmetric':
      return fr(o / sc);
    case 'tf_half_pixel_for_nn':
      return fr(fr(o + 0.5) / sc);
    default: {
      // tf_crop_and_resize
      const base = fr(st * (len - 1));
      if (outF === 1) return fr(fr(fr(fr(en - st) * (len - 1)) / 2) + base);
      return fr(fr(fr(fr(o * fr(en - st)) * (len - 1)) / fr(outF - 1)) + base);
    }
  }
}

function cubicWeight(A: number, t: number): number {
  // Keys' cubic kernel at distance t in [0, 2], f32 step by step.
  if (t <= 1) return fr(fr(fr(fr(fr(fr(A + 2) * t) - fr(A + 3)) * t) * t) + 1);
  return fr(fr(fr(fr(fr(fr(fr(A * t) - fr(5 * A)) * t) + fr(8 * A)) * t)) - fr(4 * A));
}

function axisTaps(c: Cfg, v: AxisVals, o: number): Taps {
  if (v.sc === 1 && v.len === v.olen && identityOk(c)) return { i: [o], w: [1], out: false };
  const x = srcCoord(c, v, o);
  const last = v.len - 1;
  const clamp = (j: number) => Math.min(Math.max(j, 0), last);
  if (c.coord === 'tf_crop_and_resize' && (x < 0 || x > last)) return { i: [x > 0 ? last : 0], w: [0], out: true };
  const fl = Math.floor(x);
  const r = fr(x - fl);
  if (c.mode === 'nearest') {
    let j: number;
    switch (c.nearest) {
      case 'round_prefer_floor':
        j = r <= 0.5 ? fl : fl + 1;
        break;
      case 'round_prefer_ceil':
        j = r < 0.5 ? fl : fl + 1;
        break;
      case 'floor':
        j = fl;
        break;
      case 'ceil':
        j = Math.ceil(x);
        break;
      default:
        j = v.sc < 1 ? Math.ceil(x) : Math.trunc(x);
    }
    return { i: [clamp(j)], w: [1], out: false };
  }
  if (c.mode === 'linear') return { i: [clamp(fl), clamp(fl + 1)], w: [fr(1 - r), r], out: false };
  const A = c.cubicA;
  const i = [fl - 1, fl, fl + 1, fl + 2];
  const w = [cubicWeight(A, fr(r + 1)), cubicWeight(A, r), cubicWeight(A, fr(1 - r)), cubicWeight(A, fr(2 - r))];
  if (c.exclude) {
    let sum = 0;
    for (let q = 0; q < 4; q++) {
      if (i[q] < 0 || i[q] > last) w[q] = 0;
      sum = fr(sum + w[q]);
    }
    for (let q = 0; q < 4; q++) w[q] = fr(w[q] / sum);
    // Excluded taps keep weight 0 at a valid index.
    return { i: i.map(clamp), w, out: false };
  }
  return { i: i.map(clamp), w, out: false };
}

/** Calls f(output flat index, input flat index, weight) for every tap of every output element; extrapolated outputs call g. */
function forEachResizeTap(c: Cfg, vals: AxisVals[], xs: readonly number[], ys: readonly number[], f: (yi: number, xi: number, w: number) => void, g: (yi: number) => void): void {
  const r = xs.length;
  const taps: Taps[][] = vals.map((v) => Array.from({ length: v.olen }, (_, o) => axisTaps(c, v, o)));
  const total = sizeOf(ys);
  const oc = new Array<number>(r).fill(0);
  for (let yi = 0; yi < total; yi++) {
    let rem = yi;
    for (let a = r - 1; a >= 0; a--) {
      oc[a] = rem % ys[a];
      rem = Math.floor(rem / ys[a]);
    }
    const ts = oc.map((o, a) => taps[a][o]);
    if (ts.some((t) => t.out)) {
      g(yi);
      continue;
    }
    const rec = (a: number, xi: number, w: number) => {
      if (a === r) return f(yi, xi, w);
      const t = ts[a];
      for (let q = 0; q < t.i.length; q++) rec(a + 1, xi * xs[a] + t.i[q], w * t.w[q]);
    };
    rec(0, 0, 1);
  }
}

// ---------------------------------------------------------------------------------------------
// WGSL.

/** Count of taps per axis for the mode. */
const tapCount = (c: Cfg) => (c.mode === 'nearest' ? 1 : c.mode === 'linear' ? 2 : 4);

/**
 * Defines `fn taps_<a>(o: u32) -> Taps` for every axis (and the Taps struct), reading
 * runtime scale / roi / sizes values from their buffers. Returns nothing: callers use taps_a.
 */
function defineTaps(w: KernelWriter, ctx: EmitCtx, n: Node, c: Cfg, xs: readonly number[], ys: readonly number[]): void {
  const K = tapCount(c);
  w.define(`struct Taps {\n  i: array<i32, ${K}>,\n  w: array<f32, ${K}>,\n  n: u32,\n  out: bool,\n}\n`);
  const types = n.inputs.map((v) => (v ? ctx.type(v) : undefined));
  const sizesMode = usesSizes(c, types);
  const buf = (k: number) => w.bind(n.inputs[k], types[k]!.dtype, 'read');
  let policy = '';
  if (sizesMode && c.policy !== 'stretch') {
    const sz = buf(c.sizes);
    const ratios = c.axes.map((a, k) => `f32(${w.load(sz, u(k))}) / ${f32Lit(xs[a])}`);
    const fn = c.policy === 'not_larger' ? 'min' : 'max';
    policy = ratios.reduce((acc, e) => `${fn}(${acc}, ${e})`);
  }
  const A = c.cubicA;
  if (c.mode === 'cubic')
    w.define(`fn cubic_w(t: f32) -> f32 {
  if (t <= 1.0) { return (((${f32Lit(A + 2)} * t) - ${f32Lit(A + 3)}) * t) * t + 1.0; }
  return (((${f32Lit(A)} * t - ${f32Lit(5 * A)}) * t) + ${f32Lit(8 * A)}) * t - ${f32Lit(4 * A)};
}
`);
  xs.forEach((len, a) => {
    const k = c.axes.indexOf(a);
    const olen = ys[a];
    let sc = '1.0';
    let outF = f32Lit(olen);
    if (k >= 0) {
      if (c.form === 'upsample' && c.scales < 0) sc = f32Lit(attrInts(n, 'scales')[a]);
      else if (sizesMode) sc = c.policy === 'stretch' ? f32Lit(olen / len) : policy;
      else sc = w.load(buf(c.scales), u(k));
      if (!(sizesMode && c.policy === 'stretch')) outF = `(sc * ${f32Lit(len)})`;
    }
    const roiOf = (j: number, dflt: string) => (c.roi >= 0 && types[c.roi] && sizeOf(types[c.roi]!.shape) > 0 && k >= 0 ? w.load(buf(c.roi), u(j)) : dflt);
    const st = roiOf(k, '0.0');
    const en = roiOf(k + c.axes.length, '1.0');
    const L1 = f32Lit(len - 1);
    let x: string;
    switch (c.coord) {
      case 'half_pixel':
        x = `(f32(o) + 0.5) / sc - 0.5`;
        break;
      case 'pytorch_half_pixel':
        x = `select((f32(o) + 0.5) / sc - 0.5, -0.5, outF == 1.0)`;
        break;
      case 'half_pixel_symmetric':
        x = `(${f32Lit(len / 2)} * (1.0 - ${f32Lit(olen)} / outF) + (f32(o) + 0.5) / sc) - 0.5`;
        break;
      case 'align_corners':
        x = `select((f32(o) * ${L1}) / (outF - 1.0), 0.0, outF == 1.0)`;
        break;
      case 'asymmetric':
        x = `f32(o) / sc`;
        break;
      case 'tf_half_pixel_for_nn':
        x = `(f32(o) + 0.5) / sc`;
        break;
      default:
        x = `select(((f32(o) * (en - st)) * ${L1}) / (outF - 1.0), ((en - st) * ${L1}) / 2.0, outF == 1.0) + st * ${L1}`;
    }
    const clamp = (e: string) => `clamp(${e}, 0, ${len - 1})`;
    let taps: string;
    if (c.mode === 'nearest') {
      const pick: Record<string, string> = {
        round_prefer_floor: `select(fl + 1, fl, r <= 0.5)`,
        round_prefer_ceil: `select(fl + 1, fl, r < 0.5)`,
        floor: `fl`,
        ceil: `i32(ceil(x))`,
        simple: `select(i32(trunc(x)), i32(ceil(x)), sc < 1.0)`,
      };
      taps = `t.i[0] = ${clamp(pick[c.nearest])};\nt.w[0] = 1.0;`;
    } else if (c.mode === 'linear') {
      taps = `t.i[0] = ${clamp('fl')};\nt.i[1] = ${clamp('fl + 1')};\nt.w[0] = 1.0 - r;\nt.w[1] = r;`;
    } else {
      taps = `t.w[0] = cubic_w(r + 1.0);\nt.w[1] = cubic_w(r);\nt.w[2] = cubic_w(1.0 - r);\nt.w[3] = cubic_w(2.0 - r);\n`;
      taps += c.exclude
        ? `var sum = 0.0;
for (var q = 0u; q < 4u; q++) {
  t.i[q] = fl - 1 + i32(q);
  if (t.i[q] < 0 || t.i[q] > ${len - 1}) { t.w[q] = 0.0; }
  sum += t.w[q];
}
for (var q = 0u; q < 4u; q++) { t.w[q] = t.w[q] / sum; t.i[q] = ${clamp('t.i[q]')}; }`
        : `for (var q = 0u; q < 4u; q++) { t.i[q] = ${clamp('fl - 1 + i32(q)')}; }`;
    }
    const ident = identityOk(c) && len === olen ? `if (sc == 1.0) { t.i[0] = i32(o); t.w[0] = 1.0; t.n = 1u; return t; }\n` : '';
    const outside = c.coord === 'tf_crop_and_resize' ? `if (x < 0.0 || x > ${L1}) { t.out = true; t.n = 1u; t.i[0] = select(0, ${len - 1}, x > 0.0); return t; }\n` : '';
    w.define(`fn taps_${a}(o: u32) -> Taps {
  var t: Taps;
  t.n = ${u(K)};
  t.out = false;
  let sc = ${sc};
  let outF = ${outF};
  let st = ${st};
  let en = ${en};
${ident.replace(/^/gm, '  ')}  let x = ${x};
${outside.replace(/^/gm, '  ')}  let fl = i32(floor(x));
  let r = x - floor(x);
${taps.replace(/^/gm, '  ')}
  return t;
}
`);
  });
}

function resizeForward(n: Node, ctx: EmitCtx) {
  const xt = ctx.type(n.inputs[0]);
  const yt = ctx.type(n.outputs[0]);
  const c = cfgOf(n, xt.shape.length);
  const w = ctx.writer();
  const x = w.bind(n.inputs[0], xt.dtype, 'read');
  defineTaps(w, ctx, n, c, xt.shape, yt.shape);
  const r = xt.shape.length;
  const os = Array.from({ length: r }, (_, a) => `o${a}`);
  let body = `s += w${r - 1} * ${w.load(x, `u32(xi${r - 1})`)};`;
  for (let a = r - 1; a >= 0; a--)
    body = `for (var q${a} = 0u; q${a} < t${a}.n; q${a}++) {
  let xi${a} = ${a === 0 ? '' : `xi${a - 1} * ${xt.shape[a]} + `}t${a}.i[q${a}];
  let w${a} = ${a === 0 ? '' : `w${a - 1} * `}t${a}.w[q${a}];
${body.replace(/^/gm, '  ')}
}`;
  const compute = `${splitIdx(os, yt.shape)}
${os.map((o, a) => `let t${a} = taps_${a}(${o});`).join('\n')}
if (${os.map((_, a) => `t${a}.out`).join(' || ')}) { return ${f32Lit(c.extrap)}; }
var s = 0.0;
${body}
return s;`;
  return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
}

function splitIdx(names: string[], dims: readonly number[], idx = 'i'): string {
  const lines: string[] = [];
  let stride = 1;
  for (let a = dims.length - 1; a >= 0; a--) {
    lines.push(a === 0 ? `let ${names[a]} = ${idx} / ${u(stride)};` : `let ${names[a]} = (${idx} / ${u(stride)}) % ${u(dims[a])};`);
    stride *= dims[a];
  }
  return lines.reverse().join('\n');
}

function resizeGradKernel(n: Node, ctx: EmitCtx) {
  const dyt = ctx.type(n.inputs[0]);
  const xs = attrInts(n, 'shape');
  const c = cfgOf(n, xs.length);
  const w = ctx.writer();
  const dy = w.bind(n.inputs[0], dyt.dtype, 'read');
  const ys = dyt.shape;
  defineTaps(w, ctx, n, c, xs, ys);
  const r = xs.length;
  // The first output position along axis a whose last tap reaches input index j.
  for (let a = 0; a < r; a++)
    w.define(`fn first_${a}(j: i32) -> u32 {
  var lo = 0u;
  var hi = ${u(ys[a])};
  loop {
    if (lo >= hi) { break; }
    let mid = (lo + hi) / 2u;
    let t = taps_${a}(mid);
    if (t.i[t.n - 1u] >= j) { hi = mid; } else { lo = mid + 1u; }
  }
  return lo;
}
`);
  const js = Array.from({ length: r }, (_, a) => `j${a}`);
  let body = `s += w${r - 1} * ${w.load(dy, `yi${r - 1}`)};`;
  for (let a = r - 1; a >= 0; a--)
    body = `for (var o${a} = first_${a}(j${a}); o${a} < ${u(ys[a])}; o${a}++) {
  let t${a} = taps_${a}(o${a});
  if (t${a}.i[0] > j${a}) { break; }
  if (t${a}.out) { continue; }
  var v${a} = 0.0;
  for (var q = 0u; q < t${a}.n; q++) { if (t${a}.i[q] == j${a}) { v${a} += t${a}.w[q]; } }
  if (v${a} == 0.0) { continue; }
  let w${a} = ${a === 0 ? '' : `w${a - 1} * `}v${a};
  let yi${a} = ${a === 0 ? '' : `yi${a - 1} * ${u(ys[a])} + `}o${a};
${body.replace(/^/gm, '  ')}
}`;
  const compute = `${splitIdx(js.map((j) => `${j}u`), xs)}
${js.map((j) => `let ${j} = i32(${j}u);`).join('\n')}
var s = 0.0;
${body}
return s;`;
  return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xs), compute })];
}

// ---------------------------------------------------------------------------------------------
// Rows.

function floatX(n: Node, x: ValueType): void {
  if (!isFloat(x.dtype)) throw new Error(`${n.op} '${n.name}': X must be floating point, got ${x.dtype}`);
}

function resizeInterp(n: Node, ins: Tensor[], ys: number[]): Float32Array {
  const x = ins[0];
  const c = cfgOf(n, x.shape.length);
  const vals = axisValues(c, x.shape, ys, ins, n);
  const y = new Float64Array(sizeOf(ys));
  forEachResizeTap(c, vals, x.shape, ys, (yi, xi, wt) => (y[yi] += wt * x.data[xi]), (yi) => (y[yi] = c.extrap));
  return Float32Array.from(y);
}

function resizeGrad(ctx: Parameters<NonNullable<OpRow['grad']>>[0]) {
  const dy = ctx.dy[0];
  const n = ctx.node;
  const none = n.inputs.map(() => undefined);
  if (!dy) return none;
  const xs = ctx.type(n.inputs[0]).shape;
  const dx = ctx.emit('mpc.ResizeGrad', [dy, ...n.inputs.slice(1)], { ...n.attrs, form: formOf(n), shape: xs })[0];
  return [dx, ...none.slice(1)];
}

/** Resize's and Upsample's output type: X's dtype, the configured output shape. */
const resizeInfer: OpRow['infer'] = (n, ins, consts) => {
  floatX(n, ins[0]);
  const c = cfgOf(n, ins[0].shape.length);
  return [{ dtype: ins[0].dtype, shape: outShapeOf(n, c, ins[0].shape, ins, consts) }];
};
const resizeRowInterp: OpRow['interp'] = (n, ins, ctx) => [{ ...ctx.outTypes[0], data: resizeInterp(n, ins, ctx.outTypes[0].shape) }];

export const resizeOps: OpRow[] = [
  {
    // inputs: X, roi, scales, sizes (opset 11+) or X, scales (opset 10); constants except X.
    op: 'Resize',
    domain: '',
    opsets: [10, 22],
    precision: 'follow',
    dataInputs: [0],
    arity: [2, 4],
    outputs: 1,
    infer: resizeInfer,
    interp: resizeRowInterp,
    grad: resizeGrad,
    wgsl: resizeForward,
  },
  {
    // Opset 7: scales attribute; opset 9: scales input. Nearest picks floor(o / scale).
    op: 'Upsample',
    domain: '',
    opsets: [7, 9],
    precision: 'follow',
    dataInputs: [0],
    arity: [1, 2],
    outputs: 1,
    infer: resizeInfer,
    interp: resizeRowInterp,
    grad: resizeGrad,
    wgsl: resizeForward,
  },
  {
    // dX of Resize / Upsample: inputs dY and the forward's inputs after X (roi, scales,
    // sizes); attributes: the forward's plus `form` and `shape` (X's shape).
    op: 'mpc.ResizeGrad',
    domain: 'mpc',
    precision: 'follow',
    dataInputs: [0],
    arity: [1, 4],
    outputs: 1,
    infer: (n, [dy]) => [{ dtype: dy.dtype, shape: [...attrInts(n, 'shape')] }],
    interp: (n, ins, ctx) => {
      const dy = ins[0];
      const xs = attrInts(n, 'shape');
      const c = cfgOf(n, xs.length);
      const vals = axisValues(c, xs, dy.shape, ins, n);
      const dx = new Float64Array(sizeOf(xs));
      forEachResizeTap(c, vals, xs, dy.shape, (yi, xi, wt) => (dx[xi] += wt * dy.data[yi]), () => {});
      return [{ ...ctx.outTypes[0], data: Float32Array.from(dx) }];
    },
    wgsl: resizeGradKernel,
  },
];
