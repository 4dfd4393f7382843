// Elementwise activations and unary math: Clip, the hard/exponential linear units, PRelu,
// Softsign, Shrink, rounding, and the trigonometric and hyperbolic functions, with their
// gradient ops.
//
// Every row is built by `ewRow`: numpy broadcasting over its inputs, a scalar reference in f64
// for the interpreter and one WGSL expression that the row's kernel and fused kernels render.
// Semantics at the edges, shared by the reference and the kernels:
//  - NaN propagates through every float op except the thresholding ones (ThresholdedRelu,
//    Shrink), which map it to 0 like Relu; comparisons are written as `select`s so that the
//    kernels never rely on WGSL's min/max/clamp/sign (undefined for NaN);
//  - Floor, Ceil, Round and Sign have a zero gradient: their rows' rules return no gradient
//    (undefined), so nothing flows back through them, as for the comparison rows;
//  - kinks take PyTorch's conventions: Clip passes dy where min <= x <= max (ties included, as
//    clamp's backward), HardSigmoid where 0 < alpha x + beta < 1, Elu/Selu/Celu take the
//    negative branch at 0, PRelu takes the slope at 0 (as LeakyRelu), Abs has gradient 0 at 0.
import { f32Bits, f32FromBits, floatInfo, isFloat, type DType } from '../ir/dtypes.js';
import type { Node, PrecisionClass } from '../ir/graph.js';
import { broadcastShapes, sizeOf } from '../ir/tensor.js';
import { f32Lit, type KernelWriter } from '../codegen/storage.js';
import { broadcastKernel, broadcastMap, sumTo } from './elementwise.js';
import { chebFit, chebFn, wgslMath } from './math.js';
import { attrFloat, type GradCtx, type OpRow, type ValueType } from './types.js';

// ---------------------------------------------------------------------------------------------
// The row builder (also used by logic.ts).

export interface EwSpec {
  op: string;
  opsets?: [number, number];
  precision: PrecisionClass;
  dataInputs?: number[];
  /** Minimum and maximum number of inputs; optional ones may be '' (then `undefined` below). */
  arity: [number, number];
  /** Output dtype from the input types; throws for types the op does not take. */
  out: (n: Node, ins: (ValueType | undefined)[]) => DType;
  /** Output shape (default: the broadcast of every present input). */
  shape?: (n: Node, ins: (ValueType | undefined)[]) => number[];
  /** Scalar reference in f64 (NaN for an absent input); the interpreter rounds the result. */
  f: (n: Node, ins: (ValueType | undefined)[]) => (...xs: number[]) => number;
  /**
   * WGSL expression of the loaded operands: f32 expressions for floats, i32 for integers and
   * bool, '' for an absent input.
   */
  wgsl: (n: Node, w: KernelWriter, ins: (ValueType | undefined)[], out: ValueType) => (...xs: string[]) => string;
  grad?: (ctx: GradCtx, dy: string) => (string | undefined)[];
}

/** An elementwise row: numpy broadcasting over its present inputs, one expression per element. */
export function ewRow(s: EwSpec): OpRow {
  const shapeOf = (n: Node, ins: (ValueType | undefined)[]) =>
    s.shape ? s.shape(n, ins) : ins.filter((t): t is ValueType => !!t).map((t) => t.shape).reduce((a, b) => broadcastShapes(a, b));
  return {
    op: s.op,
    domain: s.op.startsWith('mpc.') ? 'mpc' : '',
    opsets: s.opsets,
    precision: s.precision,
    kind: 'elementwise',
    expr: s.wgsl,
    dataInputs: s.dataInputs,
    arity: s.arity,
    outputs: 1,
    infer: (n, ins) => [{ dtype: s.out(n, ins), shape: shapeOf(n, ins) }],
    interp: (n, ins, ctx) => {
      const types = ins.map((t) => (t ? { dtype: t.dtype, shape: t.shape } : undefined));
      const f = s.f(n, types);
      const present = ins.flatMap((t, k) => (t ? [k] : []));
      const args = ins.map(() => NaN);
      const out = ctx.outTypes[0];
      const data = broadcastMap(
        present.map((k) => ins[k]),
        out.shape,
        (...vs) => {
          present.forEach((k, j) => (args[k] = vs[j]));
          return f(...args);
        },
        out.dtype,
      );
      return [{ ...out, data }];
    },
    grad: s.grad
      ? (ctx) => {
          const dy = ctx.dy[0];
          return dy ? s.grad!(ctx, dy) : ctx.node.inputs.map(() => undefined);
        }
      : undefined,
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const types = n.inputs.map((v) => (v ? ctx.type(v) : undefined));
      const out = ctx.type(n.outputs[0]);
      const expr = s.wgsl(n, w, types, out);
      const present = n.inputs.flatMap((v, k) => (v ? [k] : []));
      return [
        broadcastKernel(
          w,
          present.map((k) => ({ name: n.inputs[k], type: types[k]! })),
          { name: n.outputs[0], type: out },
          (vals) => expr(...n.inputs.map((v, k) => (v ? vals[present.indexOf(k)] : ''))),
        ),
      ];
    },
  };
}

// Output-type rules.
export function floatOnly(n: Node, ins: (ValueType | undefined)[]): DType {
  const t = ins[0]!;
  if (!isFloat(t.dtype)) throw new Error(`${n.op} '${n.name}': needs a floating-point input, got ${t.dtype}`);
  for (const u of ins) if (u && u.dtype !== t.dtype) throw new Error(`${n.op} '${n.name}': operands have different dtypes (${ins.map((x) => x?.dtype ?? '-').join(', ')}); a cast is missing`);
  return t.dtype;
}
/** Numbers of one dtype, float or integer (not bool). */
export function numeric(n: Node, ins: (ValueType | undefined)[]): DType {
  const t = ins.find((u) => u)!;
  if (t.dtype === 'bool') throw new Error(`${n.op} '${n.name}': does not take bool`);
  for (const u of ins) if (u && u.dtype !== t.dtype) throw new Error(`${n.op} '${n.name}': operands have different dtypes (${ins.map((x) => x?.dtype ?? '-').join(', ')}); a cast is missing`);
  return t.dtype;
}

const c = f32Lit;
const isNum = (t: ValueType | undefined) => !!t && isFloat(t.dtype);

/** A unary float row of fixed semantics. */
function unary(
  op: string,
  opsets: [number, number],
  precision: PrecisionClass,
  f: (n: Node) => (x: number) => number,
  wgsl: (n: Node, w: KernelWriter) => (x: string) => string,
  grad?: (ctx: GradCtx, dy: string, x: string, y: string) => string | undefined,
  out: EwSpec['out'] = floatOnly,
): OpRow {
  return ewRow({
    op,
    opsets,
    precision,
    arity: [1, 1],
    out,
    f: (n) => f(n),
    wgsl: (n, w) => wgsl(n, w),
    grad: grad ? (ctx, dy) => [grad(ctx, dy, ctx.node.inputs[0], ctx.node.outputs[0])] : undefined,
  });
}

/** A gradient op f(dy, v, ...) of one float dtype. */
function gradRow(op: string, precision: PrecisionClass, arity: number, f: (n: Node) => (...xs: number[]) => number, wgsl: (n: Node, w: KernelWriter) => (...xs: string[]) => string): OpRow {
  return ewRow({ op, precision, arity: [arity, arity], out: floatOnly, f: (n) => f(n), wgsl: (n, w) => wgsl(n, w) });
}

const attr = (key: string, dflt: number) => (n: Node) => Math.fround(attrFloat(n, key, dflt));

// ---------------------------------------------------------------------------------------------
// WGSL helpers of this file.

/** expm1 to about 1 ulp: Taylor below |x| = 1 (no cancellation), exp(x) - 1 beyond. */
function expm1Fn(w: KernelWriter): string {
  wgslMath(w, 'mpc_exp');
  const coef = Array.from({ length: 12 }, (_, k) => 1 / factorial(k + 2)); // x^2/2! ... x^13/13!
  const poly = coef.reduceRight((acc, k, i) => (i === coef.length - 1 ? c(k) : `${c(k)} + x * (${acc})`), '');
  w.define(`// exp(x) - 1: x + x^2 p(x) (Taylor, to x^13) for |x| < 1, where exp(x) - 1 would cancel.
fn mpc_expm1(x: f32) -> f32 {
  if (abs(x) < 1.0) { return x + x * x * (${poly}); }
  return mpc_exp(x) - 1.0;
}
`);
  return 'mpc_expm1';
}
const factorial = (n: number): number => (n <= 1 ? 1 : n * factorial(n - 1));

// ---------------------------------------------------------------------------------------------
// Clip.

/** Clip's bounds: attributes before opset 11, optional scalar inputs 1 and 2 after. */
function clipBounds(n: Node): { lo?: number; hi?: number } {
  return { lo: n.attrs.min === undefined ? undefined : Math.fround(attrFloat(n, 'min')), hi: n.attrs.max === undefined ? undefined : Math.fround(attrFloat(n, 'max')) };
}

/** min(max(x, lo), hi) with NaN x kept; lo/hi NaN = absent. */
function clip64(x: number, lo: number, hi: number): number {
  let y = x;
  if (y < lo) y = lo;
  if (y > hi) y = hi;
  return y;
}

const clipRow = ewRow({
  op: 'Clip',
  opsets: [6, 22],
  precision: 'follow',
  arity: [1, 3],
  out: (n, ins) => {
    for (const k of [1, 2]) if (ins[k] && sizeOf(ins[k]!.shape) !== 1) throw new Error(`Clip '${n.name}': ${k === 1 ? 'min' : 'max'} must be a scalar, got [${ins[k]!.shape}]`);
    return numeric(n, ins);
  },
  shape: (_n, ins) => [...ins[0]!.shape],
  f: (n) => {
    const { lo, hi } = clipBounds(n);
    return (x, l, h) => clip64(x, lo ?? l, hi ?? h);
  },
  wgsl: (n, _w, ins) => {
    const { lo, hi } = clipBounds(n);
    const int = !isNum(ins[0]);
    const lit = (v: number) => (int ? `${Math.trunc(v)}` : c(v));
    return (x, l, h) => {
      const L = lo !== undefined ? lit(lo) : l;
      const H = hi !== undefined ? lit(hi) : h;
      let e = x;
      if (L) e = `select(${e}, ${L}, ${e} < ${L})`;
      if (H) e = `select(${e}, ${H}, ${e} > ${H})`;
      return e;
    };
  },
  grad: (ctx, dy) => {
    if (!isFloat(ctx.type(ctx.node.inputs[0]).dtype)) return ctx.node.inputs.map(() => undefined);
    return [ctx.emit('mpc.ClipGrad', [dy, ctx.node.inputs[0], ctx.node.outputs[0]])[0]];
  },
});

// ---------------------------------------------------------------------------------------------
// Exponential linear units: y = scale * (x > 0 ? x : alpha * expm1(x / divisor)).

interface EluParams {
  alpha: number;
  scale: number;
  divisor: number;
}
const SELU_ALPHA = 1.67326319217681884765625;
const SELU_GAMMA = 1.05070102214813232421875;
function eluParams(n: Node): EluParams {
  if (n.op === 'Selu') return { alpha: attr('alpha', SELU_ALPHA)(n), scale: attr('gamma', SELU_GAMMA)(n), divisor: 1 };
  if (n.op === 'Celu') {
    const alpha = attr('alpha', 1)(n);
    return { alpha, scale: 1, divisor: alpha };
  }
  if (n.op === 'mpc.EluGrad') return { alpha: attr('alpha', 1)(n), scale: attr('scale', 1)(n), divisor: attr('divisor', 1)(n) };
  return { alpha: attr('alpha', 1)(n), scale: 1, divisor: 1 };
}

function eluRow(op: string, opsets: [number, number]): OpRow {
  return unary(
    op,
    opsets,
    'follow',
    (n) => {
      const { alpha, scale, divisor } = eluParams(n);
      return (x) => (x > 0 ? scale * x : scale * alpha * Math.expm1(x / divisor));
    },
    (n, w) => {
      const { alpha, scale, divisor } = eluParams(n);
      const e = expm1Fn(w);
      const arg = (x: string) => (divisor === 1 ? x : `${x} / ${c(divisor)}`);
      const neg = (x: string) => (scale === 1 ? `${c(alpha)} * ${e}(${arg(x)})` : `${c(scale * alpha)} * ${e}(${arg(x)})`);
      return (x) => `select(${neg(x)}, ${scale === 1 ? x : `${c(scale)} * ${x}`}, ${x} > 0.0)`;
    },
    (ctx, dy, x) => {
      const p = eluParams(ctx.node);
      return ctx.emit('mpc.EluGrad', [dy, x], { alpha: p.alpha, scale: p.scale, divisor: p.divisor })[0];
    },
  );
}

// ---------------------------------------------------------------------------------------------
// Trigonometric and hyperbolic functions.
//
// WGSL only bounds sin/cos by an absolute 2^-11 on [-pi, pi] and derives the inverse and
// hyperbolic functions from exp/log/sqrt formulas (measured on lavapipe: asin 3800 ulp, atanh
// 400, sinh 140 near 0), so the kernels use the functions below, about 1-3 ulp each:
//  - sin/cos/tan: x = k pi/2 + r with pi/2 in four parts of 8, 8, 8 and 24 bits, so that k times
//    each of the first three is exact for |k| < 2^16 (|x| < ~1e5; beyond that the reduction
//    loses accuracy progressively), then Taylor polynomials on |r| <= pi/4;
//  - atan, asin, asinh, atanh, sinh near 0: a + a p(a^2), p a Chebyshev fit of f(a)/a - 1 in a^2
//    (derived at load time from JS's f64 functions), with the classic argument reductions
//    (atan(a) = pi/2 - atan(1/a), asin(a) = pi/2 - 2 asin(sqrt((1 - a)/2)));
//  - elsewhere formulas without cancellation on mpc_exp/mpc_log/mpc_log1p.

/** Keeps the top `bits` significant bits of an f32 (a part of a Cody-Waite constant). */
function truncBits(x: number, bits: number): number {
  return f32FromBits(f32Bits(x) & ~((1 << (24 - bits)) - 1));
}
const PIO2_PARTS = (() => {
  const parts: number[] = [];
  let rem = Math.PI / 2;
  for (let k = 0; k < 3; k++) {
    parts.push(truncBits(rem, 8));
    rem -= parts[k];
  }
  parts.push(Math.fround(rem));
  return parts;
})();
const PIO2_HI = Math.fround(Math.PI / 2);
const PIO2_LO = Math.fround(Math.PI / 2 - PIO2_HI);
const PI_HI = Math.fround(Math.PI);
const PI_LO = Math.fround(Math.PI - PI_HI);
/** Above this, 1/a^2 is below f32 precision: asinh(a) = acosh(a) = log(2a). */
const BIG = 2 ** 12;

/** Nested Horner form of sum c[k] z^k. */
const hornerOf = (coef: number[], z: string) => coef.reduceRight((acc, k, i) => (i === coef.length - 1 ? c(k) : `${c(k)} + ${z} * (${acc})`), '');
/** a + a p(a^2): the fit of f(a)/a - 1 in s = a^2 on [0, hi] as WGSL function `name`. */
const oddFit = (name: string, f: (a: number) => number, hi: number, degree: number) =>
  chebFn(name, `${name.slice(4, -4)}(sqrt(s)) / sqrt(s) - 1`, chebFit((s) => (s === 0 ? 0 : f(Math.sqrt(s)) / Math.sqrt(s) - 1), 0, hi, degree), 0, hi);

const TRIG_LIB: Record<string, { deps: string[]; code: () => string }> = {
  mpc_sincos: {
    deps: ['mpc_inf'],
    code: () => `// sin (which = 0), cos (1) or tan (2) of x: x = k pi/2 + r, |r| <= pi/4.
fn mpc_sincos(x: f32, which: u32) -> f32 {
  if (mpc_isnan(x) || abs(x) > ${c(F32_MAX)}) { return mpc_nan(); }
  let k = round(x * ${c(2 / Math.PI)});
  let r = (((x - k * ${c(PIO2_PARTS[0])}) - k * ${c(PIO2_PARTS[1])}) - k * ${c(PIO2_PARTS[2])}) - k * ${c(PIO2_PARTS[3])};
  let z = r * r;
  let s = r + r * z * (${hornerOf([-1 / 6, 1 / 120, -1 / 5040, 1 / 362880, -1 / 39916800, 1 / 6227020800], 'z')});
  let co = 1.0 - 0.5 * z + z * z * (${hornerOf([1 / 24, -1 / 720, 1 / 40320, -1 / 3628800, 1 / 479001600, -1 / 87178291200], 'z')});
  let q = u32(i32(k - 4.0 * floor(k * 0.25)));
  if (which == 2u) { return select(s / co, -co / s, (q & 1u) == 1u); }
  let m = (q + which) & 3u;
  let v = select(s, co, (m & 1u) == 1u);
  return select(v, -v, m >= 2u);
}
`,
  },
  mpc_atan_fit: { deps: [], code: () => oddFit('mpc_atan_fit', Math.atan, 1, 10) },
  mpc_atan: {
    deps: ['mpc_inf', 'mpc_atan_fit', 'mpc_copysign'],
    code: () => `fn mpc_atan(x: f32) -> f32 {
  if (mpc_isnan(x)) { return x; }
  let a = abs(x);
  var r: f32;
  if (a <= 1.0) { r = a + a * mpc_atan_fit(a * a); }
  else { let t = 1.0 / a; r = (${c(PIO2_HI)} - (t + t * mpc_atan_fit(t * t))) + ${c(PIO2_LO)}; }
  return mpc_copysign(r, x);
}
`,
  },
  mpc_asin_fit: { deps: [], code: () => oddFit('mpc_asin_fit', Math.asin, 0.25, 7) },
  mpc_asin: {
    deps: ['mpc_inf', 'mpc_asin_fit', 'mpc_copysign'],
    code: () => `// asin(|x|) for |x| <= 1/2, else pi/2 - 2 asin(sqrt((1 - |x|) / 2)) (1 - |x| exact); with acos's parts.
fn mpc_asin_abs(a: f32) -> f32 {
  if (a <= 0.5) { return a + a * mpc_asin_fit(a * a); }
  let h = sqrt((1.0 - a) * 0.5);
  return (${c(PIO2_HI)} - 2.0 * (h + h * mpc_asin_fit(h * h))) + ${c(PIO2_LO)};
}
fn mpc_asin(x: f32) -> f32 {
  if (mpc_isnan(x) || abs(x) > 1.0) { return mpc_nan(); }
  return mpc_copysign(mpc_asin_abs(abs(x)), x);
}
fn mpc_acos(x: f32) -> f32 {
  if (mpc_isnan(x) || abs(x) > 1.0) { return mpc_nan(); }
  let a = abs(x);
  if (a <= 0.5) { return (${c(PIO2_HI)} - mpc_copysign(a + a * mpc_asin_fit(a * a), x)) + ${c(PIO2_LO)}; }
  let h = sqrt((1.0 - a) * 0.5);
  let t = 2.0 * (h + h * mpc_asin_fit(h * h));
  return select(t, (${c(PI_HI)} - t) + ${c(PI_LO)}, x < 0.0);
}
`,
  },
  mpc_sinh_fit: { deps: [], code: () => oddFit('mpc_sinh_fit', Math.sinh, 1, 6) },
  mpc_sinh: {
    deps: ['mpc_exp', 'mpc_sinh_fit', 'mpc_copysign'],
    code: () => `// sinh/cosh: a + a p(a^2) below 1 (sinh), (e^a -+ e^-a) / 2 up to 88, (e^(a/2) / 2) e^(a/2) beyond (e^a overflows first).
fn mpc_sinh(x: f32) -> f32 {
  if (mpc_isnan(x)) { return x; }
  let a = abs(x);
  var r: f32;
  if (a < 1.0) { r = a + a * mpc_sinh_fit(a * a); }
  else if (a < 88.0) { let e = mpc_exp(a); r = 0.5 * e - 0.5 / e; }
  else { let h = mpc_exp(0.5 * a); r = (0.5 * h) * h; }
  return mpc_copysign(r, x);
}
fn mpc_cosh(x: f32) -> f32 {
  let a = abs(x);
  if (a < 88.0) { let e = mpc_exp(a); return 0.5 * e + 0.5 / e; }
  let h = mpc_exp(0.5 * a);
  return (0.5 * h) * h;
}
`,
  },
  mpc_asinh_fit: { deps: [], code: () => oddFit('mpc_asinh_fit', Math.asinh, 0.25, 7) },
  mpc_asinh: {
    deps: ['mpc_log', 'mpc_log1p', 'mpc_asinh_fit', 'mpc_copysign'],
    code: () => `// asinh: a + a p(a^2) below 1/2, log(a + sqrt(a^2 + 1)), log(a) + ln 2 above ${BIG}.
// acosh: log1p(t + sqrt(t (2 + t))) with t = x - 1 (exact) below 2, log(x + sqrt(x^2 - 1)), log(x) + ln 2.
fn mpc_asinh(x: f32) -> f32 {
  if (mpc_isnan(x)) { return x; }
  let a = abs(x);
  var r: f32;
  if (a < 0.5) { r = a + a * mpc_asinh_fit(a * a); }
  else if (a < ${c(BIG)}) { r = mpc_log(a + sqrt(a * a + 1.0)); }
  else { r = mpc_log(a) + ${c(Math.LN2)}; }
  return mpc_copysign(r, x);
}
fn mpc_acosh(x: f32) -> f32 {
  if (mpc_isnan(x) || x < 1.0) { return mpc_nan(); }
  if (x < 2.0) {
    let t = x - 1.0;
    let u = t + sqrt(t * (2.0 + t));
    return select(mpc_log(1.0 + u), mpc_log1p(u), u <= 1.0);
  }
  if (x < ${c(BIG)}) { return mpc_log(x + sqrt(x * x - 1.0)); }
  return mpc_log(x) + ${c(Math.LN2)};
}
`,
  },
  mpc_atanh_fit: { deps: [], code: () => oddFit('mpc_atanh_fit', Math.atanh, 0.25, 7) },
  mpc_atanh: {
    deps: ['mpc_log', 'mpc_atanh_fit', 'mpc_copysign'],
    code: () => `// atanh: a + a p(a^2) below 1/2, log((1 + a) / (1 - a)) / 2 above (1 - a exact); inf at 1, NaN beyond.
fn mpc_atanh(x: f32) -> f32 {
  if (mpc_isnan(x) || abs(x) > 1.0) { return mpc_nan(); }
  let a = abs(x);
  var r: f32;
  if (a < 0.5) { r = a + a * mpc_atanh_fit(a * a); }
  else if (a < 1.0) { r = 0.5 * mpc_log((1.0 + a) / (1.0 - a)); }
  else { r = mpc_inf(); }
  return mpc_copysign(r, x);
}
`,
  },
};
const F32_MAX = floatInfo('f32').maxFinite;

/** Defines trig library function `name` (and what it needs) in the kernel; returns its name. */
function trigLib(w: KernelWriter, name: string): string {
  const fn = TRIG_LIB[name];
  for (const d of fn.deps) {
    if (TRIG_LIB[d]) trigLib(w, d);
    else wgslMath(w, d);
  }
  w.define(fn.code());
  return name;
}

interface TrigDef {
  op: string;
  opsets: [number, number];
  f: (x: number) => number;
  wgsl: (w: KernelWriter, x: string) => string;
  grad: (ctx: GradCtx, dy: string, x: string, y: string) => string;
}

/** Gradient ops of the form dy * g(v) (v: the forward input, or output where stated). */
const TRIG_GRADS: [string, (dy: number, v: number) => number, (dy: string, v: string) => string][] = [
  ['mpc.TanGrad', (dy, y) => dy * (1 + y * y), (dy, y) => `${dy} * (1.0 + ${y} * ${y})`],
  ['mpc.AsinGrad', (dy, x) => dy / Math.sqrt((1 - x) * (1 + x)), (dy, x) => `${dy} / sqrt((1.0 - ${x}) * (1.0 + ${x}))`],
  ['mpc.AcosGrad', (dy, x) => -dy / Math.sqrt((1 - x) * (1 + x)), (dy, x) => `-${dy} / sqrt((1.0 - ${x}) * (1.0 + ${x}))`],
  ['mpc.AtanGrad', (dy, x) => dy / (1 + x * x), (dy, x) => `${dy} / (1.0 + ${x} * ${x})`],
  ['mpc.AsinhGrad', (dy, x) => dy / Math.sqrt(x * x + 1), (dy, x) => `${dy} / sqrt(${x} * ${x} + 1.0)`],
  ['mpc.AcoshGrad', (dy, x) => dy / Math.sqrt((x - 1) * (x + 1)), (dy, x) => `${dy} / sqrt((${x} - 1.0) * (${x} + 1.0))`],
  ['mpc.AtanhGrad', (dy, x) => dy / ((1 - x) * (1 + x)), (dy, x) => `${dy} / ((1.0 - ${x}) * (1.0 + ${x}))`],
];
const via = (op: string) => (ctx: GradCtx, dy: string, x: string) => ctx.emit(op, [dy, x])[0];
/** Calls `fn` of the trig library, defined in the kernel with `within` (the function that holds it). */
const lib = (fn: string, within = fn) => (w: KernelWriter, x: string) => {
  trigLib(w, within);
  return `${fn}(${x})`;
};

const TRIG: TrigDef[] = [
  { op: 'Sin', opsets: [7, 22], f: Math.sin, wgsl: (w, x) => `${trigLib(w, 'mpc_sincos')}(${x}, 0u)`, grad: (ctx, dy, x) => ctx.emit('Mul', [dy, ctx.emit('Cos', [x])[0]])[0] },
  { op: 'Cos', opsets: [7, 22], f: Math.cos, wgsl: (w, x) => `${trigLib(w, 'mpc_sincos')}(${x}, 1u)`, grad: (ctx, dy, x) => ctx.emit('Neg', [ctx.emit('Mul', [dy, ctx.emit('Sin', [x])[0]])[0]])[0] },
  { op: 'Tan', opsets: [7, 22], f: Math.tan, wgsl: (w, x) => `${trigLib(w, 'mpc_sincos')}(${x}, 2u)`, grad: (ctx, dy, _x, y) => ctx.emit('mpc.TanGrad', [dy, y])[0] },
  { op: 'Asin', opsets: [7, 22], f: Math.asin, wgsl: lib('mpc_asin'), grad: via('mpc.AsinGrad') },
  { op: 'Acos', opsets: [7, 22], f: Math.acos, wgsl: lib('mpc_acos', 'mpc_asin'), grad: via('mpc.AcosGrad') },
  { op: 'Atan', opsets: [7, 22], f: Math.atan, wgsl: lib('mpc_atan'), grad: via('mpc.AtanGrad') },
  { op: 'Sinh', opsets: [9, 22], f: Math.sinh, wgsl: lib('mpc_sinh'), grad: (ctx, dy, x) => ctx.emit('Mul', [dy, ctx.emit('Cosh', [x])[0]])[0] },
  { op: 'Cosh', opsets: [9, 22], f: Math.cosh, wgsl: lib('mpc_cosh', 'mpc_sinh'), grad: (ctx, dy, x) => ctx.emit('Mul', [dy, ctx.emit('Sinh', [x])[0]])[0] },
  { op: 'Asinh', opsets: [9, 22], f: Math.asinh, wgsl: lib('mpc_asinh'), grad: via('mpc.AsinhGrad') },
  { op: 'Acosh', opsets: [9, 22], f: Math.acosh, wgsl: lib('mpc_acosh', 'mpc_asinh'), grad: via('mpc.AcoshGrad') },
  { op: 'Atanh', opsets: [9, 22], f: Math.atanh, wgsl: lib('mpc_atanh'), grad: via('mpc.AtanhGrad') },
];

// ---------------------------------------------------------------------------------------------
// Rounding.

/** Round half to even (numpy's rint). */
function roundEven(x: number): number {
  return Math.abs(x % 1) === 0.5 ? 2 * Math.round(x / 2) : Math.round(x);
}

/** No gradient: the function is piecewise constant (its derivative is 0 almost everywhere). */
const zeroGrad = () => undefined;

// ---------------------------------------------------------------------------------------------
// The rows.

export const activationOps: OpRow[] = [
  clipRow,
  // dy where min <= x <= max, i.e. where clipping left x as it was (y == x); a NaN x passes none.
  gradRow('mpc.ClipGrad', 'follow', 3, () => (dy, x, y) => (x === y ? dy : 0), () => (dy, x, y) => `select(0.0, ${dy}, ${x} == ${y})`),
  unary(
    'HardSigmoid',
    [6, 22],
    'follow',
    (n) => {
      const [a, b] = [attr('alpha', 0.2)(n), attr('beta', 0.5)(n)];
      return (x) => clip64(a * x + b, 0, 1);
    },
    (n, w) => {
      clamps(w);
      return (x) => `mpc_clamp(${c(attr('alpha', 0.2)(n))} * ${x} + ${c(attr('beta', 0.5)(n))}, 0.0, 1.0)`;
    },
    (ctx, dy, x) => ctx.emit('mpc.HardSigmoidGrad', [dy, x], { alpha: attr('alpha', 0.2)(ctx.node), beta: attr('beta', 0.5)(ctx.node) })[0],
  ),
  gradRow(
    'mpc.HardSigmoidGrad',
    'follow',
    2,
    (n) => {
      const [a, b] = [attr('alpha', 0.2)(n), attr('beta', 0.5)(n)];
      return (dy, x) => {
        const t = Math.fround(Math.fround(a * x) + b);
        return t > 0 && t < 1 ? a * dy : 0;
      };
    },
    (n) => (dy, x) => {
      const t = `(${c(attr('alpha', 0.2)(n))} * ${x} + ${c(attr('beta', 0.5)(n))})`;
      return `select(0.0, ${c(attr('alpha', 0.2)(n))} * ${dy}, ${t} > 0.0 && ${t} < 1.0)`;
    },
  ),
  // x * relu6(x + 3) / 6: x + 3 is exact near the kink at -3, so no cancellation there.
  unary(
    'HardSwish',
    [14, 22],
    'follow',
    () => (x) => (x * clip64(x + 3, 0, 6)) / 6,
    (_n, w) => {
      clamps(w);
      return (x) => `(${x} * mpc_clamp(${x} + 3.0, 0.0, 6.0)) / 6.0`;
    },
    (ctx, dy, x) => ctx.emit('mpc.HardSwishGrad', [dy, x])[0],
  ),
  gradRow(
    'mpc.HardSwishGrad',
    'follow',
    2,
    () => (dy, x) => (x < -3 ? 0 : x <= 3 ? dy * (x / 3 + 0.5) : dy),
    // (2x + 3) / 6 = x/3 + 1/2: 2x + 3 is exact near its root -1.5, so no cancellation there.
    () => (dy, x) => `select(select(${dy}, (${dy} * (2.0 * ${x} + 3.0)) / 6.0, ${x} <= 3.0), 0.0, ${x} < -3.0)`,
  ),
  eluRow('Elu', [6, 22]),
  eluRow('Selu', [6, 22]),
  eluRow('Celu', [12, 22]),
  // scale * (x > 0 ? 1 : alpha / divisor * exp(x / divisor)).
  gradRow(
    'mpc.EluGrad',
    'follow',
    2,
    (n) => {
      const { alpha, scale, divisor } = eluParams(n);
      return (dy, x) => (x > 0 ? scale * dy : dy * ((scale * alpha) / divisor) * Math.exp(x / divisor));
    },
    (n, w) => {
      const { alpha, scale, divisor } = eluParams(n);
      const e = wgslMath(w, 'mpc_exp');
      return (dy, x) => `select(${dy} * (${c((scale * alpha) / divisor)} * ${e}(${divisor === 1 ? x : `${x} / ${c(divisor)}`})), ${scale === 1 ? dy : `${c(scale)} * ${dy}`}, ${x} > 0.0)`;
    },
  ),
  ewRow({
    op: 'PRelu',
    opsets: [7, 22],
    precision: 'allow',
    arity: [2, 2],
    out: (n, ins) => {
      broadcastShapes(ins[0]!.shape, ins[1]!.shape);
      if (broadcastShapes(ins[0]!.shape, ins[1]!.shape).join() !== ins[0]!.shape.join())
        throw new Error(`PRelu '${n.name}': slope [${ins[1]!.shape}] does not broadcast to X [${ins[0]!.shape}]`);
      return numeric(n, ins);
    },
    shape: (_n, ins) => [...ins[0]!.shape],
    f: () => (x, s) => (x < 0 ? s * x : x),
    wgsl: (_n, _w, ins) => (x, s) => `select(${x}, ${s} * ${x}, ${x} < ${isNum(ins[0]) ? '0.0' : '0'})`,
    grad: (ctx, dy) => {
      const [x, s] = ctx.node.inputs;
      if (!isFloat(ctx.type(x).dtype)) return [undefined, undefined];
      return [ctx.emit('mpc.PReluGrad', [dy, x, s])[0], sumTo(ctx, ctx.emit('mpc.PReluSlopeGrad', [dy, x])[0], ctx.type(s).shape)];
    },
  }),
  // d/dx: 1 for x > 0, the slope otherwise (at 0 too, as LeakyRelu); d/dslope: x for x <= 0.
  ewRow({
    op: 'mpc.PReluGrad',
    precision: 'allow',
    arity: [3, 3],
    out: floatOnly,
    f: () => (dy, x, s) => (x > 0 ? dy : s * dy),
    wgsl: () => (dy, x, s) => `select(${s} * ${dy}, ${dy}, ${x} > 0.0)`,
  }),
  gradRow('mpc.PReluSlopeGrad', 'allow', 2, () => (dy, x) => (x > 0 ? 0 : x * dy), () => (dy, x) => `select(${x} * ${dy}, 0.0, ${x} > 0.0)`),
  unary(
    'Softsign',
    [1, 22],
    'follow',
    () => (x) => x / (1 + Math.abs(x)),
    () => (x) => `${x} / (1.0 + abs(${x}))`,
    (ctx, dy, x) => ctx.emit('mpc.SoftsignGrad', [dy, x])[0],
  ),
  gradRow('mpc.SoftsignGrad', 'follow', 2, () => (dy, x) => dy / ((1 + Math.abs(x)) * (1 + Math.abs(x))), () => (dy, x) => `${dy} / ((1.0 + abs(${x})) * (1.0 + abs(${x})))`),
  unary(
    'ThresholdedRelu',
    [10, 22],
    'follow',
    (n) => {
      const a = attr('alpha', 1)(n);
      return (x) => (x > a ? x : 0);
    },
    (n) => (x) => `select(0.0, ${x}, ${x} > ${c(attr('alpha', 1)(n))})`,
    (ctx, dy, x) => ctx.emit('mpc.ThresholdGrad', [dy, x], { lo: attr('alpha', 1)(ctx.node) })[0],
  ),
  unary(
    'Shrink',
    [9, 22],
    'follow',
    (n) => {
      const [l, b] = [attr('lambd', 0.5)(n), attr('bias', 0)(n)];
      return (x) => (x < -l ? x + b : x > l ? x - b : 0);
    },
    (n) => {
      const [l, b] = [attr('lambd', 0.5)(n), attr('bias', 0)(n)];
      return (x) => `select(select(0.0, ${x} - ${c(b)}, ${x} > ${c(l)}), ${x} + ${c(b)}, ${x} < ${c(-l)})`;
    },
    (ctx, dy, x) => {
      const l = attr('lambd', 0.5)(ctx.node);
      return ctx.emit('mpc.ThresholdGrad', [dy, x], { lo: l, hi: -l })[0];
    },
  ),
  // dy where x > lo, or also where x < hi when attribute hi is given (Shrink: hi = -lambd).
  gradRow(
    'mpc.ThresholdGrad',
    'follow',
    2,
    (n) => {
      const [lo, hi] = [attrFloat(n, 'lo'), attrFloat(n, 'hi', -Infinity)];
      return (dy, x) => (x > lo || x < hi ? dy : 0);
    },
    (n) => {
      const lo = attrFloat(n, 'lo');
      const below = (x: string) => (n.attrs.hi === undefined ? '' : ` || ${x} < ${c(attrFloat(n, 'hi'))}`);
      return (dy, x) => `select(0.0, ${dy}, ${x} > ${c(lo)}${below(x)})`;
    },
  ),
  unary(
    'Abs',
    [6, 22],
    'follow',
    () => Math.abs,
    () => (x) => `abs(${x})`,
    (ctx, dy, x) => (isFloat(ctx.type(x).dtype) ? ctx.emit('mpc.AbsGrad', [dy, x])[0] : undefined),
    numeric,
  ),
  gradRow('mpc.AbsGrad', 'follow', 2, () => (dy, x) => (x > 0 ? dy : x < 0 ? -dy : 0), () => (dy, x) => `select(select(0.0, -${dy}, ${x} < 0.0), ${dy}, ${x} > 0.0)`),
  ewRow({
    op: 'Sign',
    opsets: [9, 22],
    precision: 'follow',
    arity: [1, 1],
    out: numeric,
    // ±0 and NaN are their own sign.
    f: () => (x) => (x > 0 ? 1 : x < 0 ? -1 : x),
    wgsl: (_n, _w, ins) => (x) => (isNum(ins[0]) ? `select(select(${x}, -1.0, ${x} < 0.0), 1.0, ${x} > 0.0)` : `sign(${x})`),
    grad: () => [zeroGrad()],
  }),
  unary('Floor', [6, 22], 'follow', () => Math.floor, () => (x) => `floor(${x})`, zeroGrad),
  unary('Ceil', [6, 22], 'follow', () => Math.ceil, () => (x) => `ceil(${x})`, zeroGrad),
  // WGSL's round() rounds half to even.
  unary('Round', [11, 22], 'follow', () => roundEven, () => (x) => `round(${x})`, zeroGrad),
  ...TRIG.map((t) => unary(t.op, t.opsets, 'deny', () => t.f, (_n, w) => (x) => t.wgsl(w, x), t.grad)),
  ...TRIG_GRADS.map(([op, f, wgsl]) => gradRow(op, 'deny', 2, () => f, () => wgsl)),
];

// Clamps shared by rows of this file (NaN kept, as the references).
function clamps(w: KernelWriter): void {
  w.define(`fn mpc_clamp(x: f32, lo: f32, hi: f32) -> f32 { return select(select(x, lo, x < lo), hi, x > hi); }
`);
}
