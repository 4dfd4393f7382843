// Elementwise math beyond + - * /: transcendental functions (Exp, Log, Tanh, Sigmoid, Erf,
// Gelu, Softplus, Pow...), comparisons and logic with bool outputs, and Where.
//
// Three parts:
//  1. f64 references the interpreter uses where JS has no function (erf, erfc);
//  2. a small WGSL math library (mpc_exp, mpc_log, mpc_erf...). WGSL's own exp/log/tanh/pow are
//     only specified to a loose, argument-dependent accuracy (exp: 3 + 2|x| ulp; log: an
//     absolute 2^-21 near 1; tanh is undefined where exp overflows on some drivers), so the
//     kernels use these instead: Cody-Waite range reduction plus polynomials, about 1 ulp on
//     every driver. The polynomial constants are derived here, at load time, from the f64
//     references (Chebyshev interpolation), not copied in as magic numbers;
//  3. the rows, built by `mapRow` (numpy broadcasting over any number of inputs).
import { f32Bits, f32FromBits, floatInfo, isFloat, type DType } from '../ir/dtypes.js';
import type { Node, PrecisionClass } from '../ir/graph.js';
import { broadcastShapes } from '../ir/tensor.js';
import { f32Lit, type KernelWriter } from '../codegen/storage.js';
import { broadcastKernel, broadcastMap, sumTo } from './elementwise.js';
import { attrFloat, attrString, type GradCtx, type OpRow, type ValueType } from './types.js';

// ---------------------------------------------------------------------------------------------
// 1. f64 references.

const SQRT_PI = Math.sqrt(Math.PI);

/** erfc(x) for x >= 2.5 by its continued fraction (40 terms: ~3e-16 relative there). */
function erfcTail(x: number): number {
  let t = x;
  for (let k = 40; k >= 1; k--) t = x + k / 2 / t;
  return Math.exp(-x * x) / (SQRT_PI * t);
}

/** erf(x) in f64, within a few ulp: a series of positive terms below 2.5, 1 - erfc above. */
export function erf64(x: number): number {
  if (Number.isNaN(x)) return NaN;
  const a = Math.abs(x);
  let r: number;
  if (a >= 6) r = 1; // erfc(6) < 2^-54
  else if (a >= 2.5) r = 1 - erfcTail(a);
  else {
    // erf(a) = 2/sqrt(pi) exp(-a^2) sum_n 2^n a^(2n+1) / (1*3*...*(2n+1)): no cancellation.
    let term = a;
    let sum = a;
    for (let n = 1; term > 1e-17 * sum; n++) {
      term *= (2 * a * a) / (2 * n + 1);
      sum += term;
    }
    r = (2 / SQRT_PI) * Math.exp(-a * a) * sum;
  }
  return x < 0 ? -r : x === 0 ? x : r;
}

/** erfc(x) = 1 - erf(x) in f64, accurate relative to its own (tiny) size in the tail. */
export function erfc64(x: number): number {
  if (Number.isNaN(x)) return NaN;
  if (x < 0) return 2 - erfc64(-x);
  if (x < 2.5) return 1 - erf64(x);
  return x > 27 ? 0 : erfcTail(x);
}

/** Standard normal density and distribution function. */
const phi64 = (x: number) => Math.exp(-0.5 * x * x) / Math.sqrt(2 * Math.PI);
const Phi64 = (x: number) => 0.5 * erfc64(-x / Math.SQRT2);

/** Gelu's tanh form 0.5x(1 + tanh(z)) written as x * sigmoid(2z): no cancellation for x < 0. */
const GELU_K = Math.sqrt(2 / Math.PI);
const GELU_C = 0.044715;
const geluTanh64 = (x: number) => x / (1 + Math.exp(-2 * GELU_K * (x + GELU_C * x * x * x)));

function geluGrad64(x: number, approx: string): number {
  if (approx === 'none') return Phi64(x) + x * phi64(x);
  const z = GELU_K * (x + GELU_C * x * x * x);
  const s = 1 / (1 + Math.exp(-2 * z)); // sigmoid(2z)
  const sm = 1 / (1 + Math.exp(2 * z)); // 1 - sigmoid(2z), without cancellation
  return s + 2 * x * s * sm * GELU_K * (1 + 3 * GELU_C * x * x);
}

const sigmoid64 = (x: number) => (x >= 0 ? 1 / (1 + Math.exp(-x)) : Math.exp(x) / (1 + Math.exp(x)));

// ---------------------------------------------------------------------------------------------
// 2. The WGSL math library.

/** Chebyshev coefficients of f on [lo, hi], interpolating at n + 1 Chebyshev nodes. */
export function chebFit(f: (x: number) => number, lo: number, hi: number, n: number): number[] {
  const N = n + 1;
  const nodes = Array.from({ length: N }, (_, k) => Math.cos((Math.PI * (k + 0.5)) / N));
  const fx = nodes.map((u) => f((hi + lo) / 2 + ((hi - lo) / 2) * u));
  return Array.from({ length: N }, (_, j) => {
    let s = 0;
    for (let k = 0; k < N; k++) s += fx[k] * Math.cos((Math.PI * j * (k + 0.5)) / N);
    return ((j === 0 ? 1 : 2) / N) * s;
  });
}

/** A WGSL function `name(x)` evaluating a Chebyshev fit on [lo, hi] by Clenshaw's recurrence. */
export function chebFn(name: string, what: string, c: number[], lo: number, hi: number): string {
  const lines = [`// ${what}: Chebyshev fit of degree ${c.length - 1} on [${lo}, ${hi}] (Clenshaw).`, `fn ${name}(x: f32) -> f32 {`];
  lines.push(`  let u = (x - ${f32Lit((hi + lo) / 2)}) * ${f32Lit(2 / (hi - lo))};`, '  let u2 = 2.0 * u;', '  var b1 = 0.0;', '  var b2 = 0.0;');
  for (let j = c.length - 1; j >= 1; j--) lines.push(`  { let b0 = ${f32Lit(c[j])} + u2 * b1 - b2; b2 = b1; b1 = b0; }`);
  lines.push(`  return ${f32Lit(c[0])} + u * b1 - b2;`, '}', '');
  return lines.join('\n');
}

/** ln 2 split so that k * LN2_HI is exact for |k| < 2^12 (Cody-Waite). */
const LN2_HI = f32FromBits(f32Bits(Math.LN2) & 0xfffff000);
const LN2_LO = Math.fround(Math.LN2 - LN2_HI);
const F32 = floatInfo('f32');
/** Largest x with exp(x) finite in f32, and the x below which exp(x) rounds to 0. */
const EXP_MAX = (() => {
  let x = Math.fround(Math.log(F32.maxFinite));
  while (Math.exp(x) > F32.maxFinite * (1 + 2 ** -(F32.mantBits + 2))) x = f32FromBits(f32Bits(x) - 1);
  return x;
})();
const EXP_MIN = Math.fround(Math.log(F32.minSubnormal / 2));

/** A polynomial as nested WGSL: c0 + r * (c1 + r * (...)). */
function horner(coef: number[], r: string): string {
  return coef.reduceRight((acc, c, i) => (i === coef.length - 1 ? f32Lit(c) : `${f32Lit(c)} + ${r} * (${acc})`), '');
}
const factorial = (n: number): number => (n <= 1 ? 1 : n * factorial(n - 1));

/** Where erf switches from its small-argument polynomial to 1 - erfc, and the erfc fit's range. */
const ERF_SPLIT = 1;
const ERFCX_LO = 0.5;
const ERFCX_HI = 4;
const TANH_SPLIT = 0.625;
/** tanh(x) rounds to 1 in f32 from atanh(1 - 2^-25) = 9.0109 on. */
const TANH_ONE = 9.1;

interface WgslFn {
  deps: string[];
  code: () => string;
}

const LIB: Record<string, WgslFn> = {
  // inf and NaN through a var: a constant one is a shader-creation error (const evaluation).
  // NaN is tested on the bits: WGSL lets a compiler assume x != x is false.
  mpc_inf: {
    deps: [],
    code: () => `fn mpc_inf() -> f32 { var b = 0x7f800000u; return bitcast<f32>(b); }
fn mpc_nan() -> f32 { var b = 0x7fc00000u; return bitcast<f32>(b); }
fn mpc_isnan(x: f32) -> bool { return (bitcast<u32>(x) & 0x7fffffffu) > 0x7f800000u; }
`,
  },
  mpc_exp: {
    deps: ['mpc_inf'],
    code: () => `// exp(x) to about 1 ulp: x = k ln2 + r exactly (Cody-Waite), |r| <= ln2/2, degree-7 Taylor for exp(r).
fn mpc_exp(x: f32) -> f32 {
  if (mpc_isnan(x)) { return x; }
  if (x > ${f32Lit(EXP_MAX)}) { return mpc_inf(); }
  if (x < ${f32Lit(EXP_MIN)}) { return 0.0; }
  let k = round(x * ${f32Lit(Math.LOG2E)});
  let r = (x - k * ${f32Lit(LN2_HI)}) - k * ${f32Lit(LN2_LO)};
  let p = ${horner(Array.from({ length: 8 }, (_, i) => 1 / factorial(i)), 'r')};
  let ki = i32(k);
  let h = ki / 2;
  return ldexp(ldexp(p, h), ki - h);
}
`,
  },
  mpc_log: {
    deps: ['mpc_inf'],
    code: () => `// log(x) to about 1 ulp: x = m 2^e with m in [sqrt(1/2), sqrt(2)), log(m) = 2 atanh(f / (2 + f)), f = m - 1.
fn mpc_log(x: f32) -> f32 {
  if (mpc_isnan(x)) { return x; }
  if (x < 0.0) { return mpc_nan(); }
  if (x == 0.0) { return -mpc_inf(); }
  if (x > ${f32Lit(F32.maxFinite)}) { return x; }
  let fe = frexp(x);
  var m = fe.fract;
  var e = f32(fe.exp);
  if (m < ${f32Lit(Math.SQRT1_2)}) { m = m * 2.0; e = e - 1.0; }
  let f = m - 1.0;
  let s = f / (2.0 + f);
  let z = s * s;
  let rr = z * (${horner([2 / 3, 2 / 5, 2 / 7, 2 / 9], 'z')});
  let hfsq = 0.5 * f * f;
  return e * ${f32Lit(LN2_HI)} - ((hfsq - (s * (hfsq + rr) + e * ${f32Lit(LN2_LO)})) - f);
}
`,
  },
  mpc_log1p: {
    deps: [],
    code: () => `// log(1 + u) for u in [0, 1]: 2 atanh(s) with s = u / (2 + u) <= 1/3, by its series (no
// cancellation, so u's relative precision is kept when u is tiny; Kahan's (1 + u) - 1 trick is
// not safe here: GPU compilers may fold it to u).
fn mpc_log1p(u: f32) -> f32 {
  let s = u / (2.0 + u);
  let z = s * s;
  return 2.0 * s + 2.0 * s * z * (${horner(Array.from({ length: 9 }, (_, k) => 1 / (2 * k + 3)), 'z')});
}
`,
  },
  mpc_exp_neg_sq: {
    deps: ['mpc_exp'],
    code: () => `// exp(-c a^2) for c a power of two, with a^2 split so that the argument is exact:
// a = hi + lo, hi has 12 significant bits, so c hi^2 is exact and c lo (a + hi) is small.
fn mpc_exp_neg_sq(a: f32, c: f32) -> f32 {
  let hi = bitcast<f32>(bitcast<u32>(a) & 0xfffff000u);
  let lo = a - hi;
  return mpc_exp(-c * hi * hi) * mpc_exp(-c * lo * (a + hi));
}
`,
  },
  mpc_erfcx_fit: {
    deps: [],
    code: () => chebFn('mpc_erfcx_fit', 'erfc(x) exp(x^2)', chebFit((x) => erfc64(x) * Math.exp(x * x), ERFCX_LO, ERFCX_HI, 14), ERFCX_LO, ERFCX_HI),
  },
  mpc_erfcx: {
    deps: ['mpc_erfcx_fit'],
    code: () => `// erfc(z) exp(z^2) for z >= ${ERFCX_LO}: the fit below ${ERFCX_HI}, the continued fraction above.
fn mpc_erfcx(z: f32) -> f32 {
  if (z < ${f32Lit(ERFCX_HI)}) { return mpc_erfcx_fit(z); }
  var t = z;
  for (var k = 10.0; k >= 1.0; k -= 1.0) { t = z + 0.5 * k / t; }
  return ${f32Lit(1 / SQRT_PI)} / t;
}
`,
  },
  mpc_erf_small: {
    deps: [],
    code: () =>
      chebFn('mpc_erf_small', 'erf(sqrt(s)) / sqrt(s) - 1', chebFit((s) => (s === 0 ? 2 / SQRT_PI - 1 : erf64(Math.sqrt(s)) / Math.sqrt(s) - 1), 0, ERF_SPLIT ** 2, 8), 0, ERF_SPLIT ** 2),
  },
  mpc_copysign: {
    deps: [],
    code: () => '// |r| with the sign bit of x (r >= 0).\nfn mpc_copysign(r: f32, x: f32) -> f32 { return bitcast<f32>(bitcast<u32>(r) | (bitcast<u32>(x) & 0x80000000u)); }\n',
  },
  mpc_erf: {
    deps: ['mpc_inf', 'mpc_erf_small', 'mpc_erfcx', 'mpc_exp_neg_sq', 'mpc_copysign'],
    code: () => `// erf(x): a + a p(a^2) below ${ERF_SPLIT}, 1 - exp(-a^2) erfcx(a) up to ${ERFCX_HI}, 1 beyond (erfc(${ERFCX_HI}) < 2^-26).
fn mpc_erf(x: f32) -> f32 {
  if (mpc_isnan(x)) { return x; }
  let a = abs(x);
  var r = 1.0;
  if (a < ${f32Lit(ERF_SPLIT)}) { r = a + a * mpc_erf_small(a * a); }
  else if (a < ${f32Lit(ERFCX_HI)}) { r = 1.0 - mpc_exp_neg_sq(a, 1.0) * mpc_erfcx(a); }
  return mpc_copysign(r, x);
}
`,
  },
  mpc_phi_cdf: {
    deps: ['mpc_erf', 'mpc_erfcx', 'mpc_exp_neg_sq'],
    code: () => `// Standard normal distribution function: 0.5 (1 + erf(x/sqrt2)), or in the lower tail
// 0.5 exp(-x^2/2) erfcx(-x/sqrt2), which keeps its relative precision.
fn mpc_phi_cdf(x: f32) -> f32 {
  let z = -x * ${f32Lit(Math.SQRT1_2)};
  if (z < ${f32Lit(ERFCX_LO)}) { return 0.5 * (1.0 + mpc_erf(x * ${f32Lit(Math.SQRT1_2)})); }
  return 0.5 * mpc_exp_neg_sq(x, 0.5) * mpc_erfcx(z);
}
`,
  },
  mpc_tanh_small: {
    deps: [],
    code: () =>
      chebFn('mpc_tanh_small', 'tanh(sqrt(s)) / sqrt(s) - 1', chebFit((s) => (s === 0 ? 0 : Math.tanh(Math.sqrt(s)) / Math.sqrt(s) - 1), 0, TANH_SPLIT ** 2, 8), 0, TANH_SPLIT ** 2),
  },
  mpc_tanh: {
    deps: ['mpc_inf', 'mpc_tanh_small', 'mpc_exp', 'mpc_copysign'],
    code: () => `// tanh(x): a + a p(a^2) below ${TANH_SPLIT}, 1 - 2 / (exp(2a) + 1) above, 1 beyond ${TANH_ONE} (never inf/inf).
fn mpc_tanh(x: f32) -> f32 {
  if (mpc_isnan(x)) { return x; }
  let a = abs(x);
  var r = 1.0;
  if (a < ${f32Lit(TANH_SPLIT)}) { r = a + a * mpc_tanh_small(a * a); }
  else if (a < ${f32Lit(TANH_ONE)}) { r = 1.0 - 2.0 / (mpc_exp(2.0 * a) + 1.0); }
  return mpc_copysign(r, x);
}
`,
  },
  mpc_sigmoid: {
    deps: ['mpc_exp'],
    code: () => 'fn mpc_sigmoid(x: f32) -> f32 { return 1.0 / (1.0 + mpc_exp(-x)); }\n',
  },
  mpc_pow: {
    deps: ['mpc_exp', 'mpc_log'],
    code: () => `// pow(a, b) with numpy's semantics: exact squares and square roots, negative bases for
// integer exponents (WGSL's pow is undefined for a < 0), otherwise exp(b log|a|), whose
// error grows with the size of b log|a| (about 1 + |b log a| ulp).
fn mpc_pow(a: f32, b: f32) -> f32 {
  if (b == 0.0) { return 1.0; }
  if (b == 1.0) { return a; }
  if (b == 2.0) { return a * a; }
  if (b == 3.0) { return a * a * a; }
  if (b == 0.5 && a > 0.0) { return sqrt(a); }
  if (b == -1.0) { return 1.0 / a; }
  let r = mpc_exp(b * mpc_log(abs(a)));
  if (a < 0.0) {
    if (floor(b) != b) { return mpc_nan(); }
    return select(r, -r, floor(b * 0.5) != b * 0.5);
  }
  return r;
}
`,
  },
};

const generated = new Map<string, string>();

/** Defines library function `name` (and what it calls) in the kernel; returns its name. */
export function wgslMath(w: KernelWriter, name: string): string {
  const fn = LIB[name];
  if (!fn) throw new Error(`no WGSL math function ${name}`);
  for (const d of fn.deps) wgslMath(w, d);
  let code = generated.get(name);
  if (code === undefined) generated.set(name, (code = fn.code()));
  w.define(code);
  return name;
}

// ---------------------------------------------------------------------------------------------
// 3. Rows.

/** numpy-broadcast map over any number of inputs, in f64, into the output's array type. */

interface MapSpec {
  op: string;
  domain?: '' | 'mpc';
  opsets?: [number, number];
  precision: PrecisionClass;
  dataInputs?: number[];
  arity: number;
  /** Output dtype from the input types; throws for types the op does not take. */
  out: (n: Node, ins: ValueType[]) => DType;
  /** Scalar math in f64 (the interpreter rounds the result to the output dtype). */
  f: (n: Node) => (...xs: number[]) => number;
  /** WGSL expression of the loaded operands (f32 for floats, i32 for integers and bool). */
  wgsl: (n: Node, w: KernelWriter) => (...xs: string[]) => string;
  grad?: (ctx: GradCtx, dy: string) => (string | undefined)[];
}

/** An elementwise row with numpy broadcasting over all of its inputs. */
function mapRow(s: MapSpec): OpRow {
  return {
    op: s.op,
    domain: s.domain ?? (s.op.startsWith('mpc.') ? 'mpc' : ''),
    opsets: s.opsets,
    precision: s.precision,
    kind: 'elementwise',
    expr: s.wgsl,
    dataInputs: s.dataInputs,
    arity: [s.arity, s.arity],
    outputs: 1,
    infer: (n, ins) => [{ dtype: s.out(n, ins), shape: ins.map((t) => t.shape).reduce((a, b) => broadcastShapes(a, b)) }],
    interp: (n, ins, ctx) => [{ ...ctx.outTypes[0], data: broadcastMap(ins, ctx.outTypes[0].shape, s.f(n), ctx.outTypes[0].dtype) }],
    grad: s.grad
      ? (ctx) => {
          const dy = ctx.dy[0];
          return dy ? s.grad!(ctx, dy) : ctx.node.inputs.map(() => undefined);
        }
      : undefined,
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const expr = s.wgsl(n, w);
      return [
        broadcastKernel(
          w,
          n.inputs.map((name) => ({ name, type: ctx.type(name) })),
          { name: n.outputs[0], type: ctx.type(n.outputs[0]) },
          (vals) => expr(...vals),
        ),
      ];
    },
  };
}

// Output-type rules.
function floatIn(n: Node, ins: ValueType[]): DType {
  if (!isFloat(ins[0].dtype)) throw new Error(`${n.op} '${n.name}': needs a floating-point input, got ${ins[0].dtype}`);
  return ins[0].dtype;
}
/** Float operands of one dtype (gradient ops: dy and a forward value). */
function sameFloat(n: Node, ins: ValueType[]): DType {
  for (const t of ins)
    if (t.dtype !== ins[0].dtype || !isFloat(t.dtype))
      throw new Error(`${n.op} '${n.name}': operands must share one float dtype, got ${ins.map((x) => x.dtype).join(', ')}; a cast is missing`);
  return ins[0].dtype;
}
/** Comparisons read floats of any widths (each is exact in f32) or integers, never a mix. */
function compared(n: Node, ins: ValueType[]): DType {
  if (ins.some((t) => isFloat(t.dtype)) && !ins.every((t) => isFloat(t.dtype)))
    throw new Error(`${n.op} '${n.name}': cannot compare ${ins[0].dtype} with ${ins[1].dtype}`);
  return 'bool';
}

const fixed =
  <T extends unknown[]>(g: (...xs: T) => number) =>
  () =>
    g;
const c = f32Lit;

interface UnaryMath {
  op: string;
  opsets: [number, number];
  precision: PrecisionClass;
  f: (n: Node) => (x: number) => number;
  wgsl: (n: Node, w: KernelWriter) => (x: string) => string;
  grad?: (ctx: GradCtx, dy: string, x: string, y: string) => string;
}

function unaryMath(u: UnaryMath): OpRow {
  return mapRow({
    op: u.op,
    opsets: u.opsets,
    precision: u.precision,
    arity: 1,
    out: floatIn,
    f: u.f,
    wgsl: u.wgsl,
    grad: u.grad ? (ctx, dy) => [u.grad!(ctx, dy, ctx.node.inputs[0], ctx.node.outputs[0])] : undefined,
  });
}

/** A gradient op f(dy, v) of one dtype; `v` is the forward op's input or output. */
function gradRow(op: string, precision: PrecisionClass, f: (n: Node) => (dy: number, v: number) => number, wgsl: MapSpec['wgsl']): OpRow {
  return mapRow({ op, precision, arity: 2, out: sameFloat, f, wgsl });
}

const alphaOf = (n: Node) => Math.fround(attrFloat(n, 'alpha', 0.01));
function approxOf(n: Node): 'none' | 'tanh' {
  const a = attrString(n, 'approximate', 'none');
  if (a !== 'none' && a !== 'tanh') throw new Error(`Gelu '${n.name}': approximate must be 'none' or 'tanh', got '${a}'`);
  return a;
}

const pow64 = (a: number, b: number) => Math.pow(a, b);

/**
 * Pow. Output dtype = the base's. Float base: f32 math (mpc_pow). Integer base (ONNX, as
 * numpy): integer exponent by repeated squaring with i32 wrap-around (a negative exponent
 * gives the truncated quotient: 1, ±1 for a = -1, else 0); float exponent in f32, truncated
 * toward zero. The interpreter computes Math.pow in f64 and rounds into the integer dtype.
 */
function powRow(): OpRow {
  const row = mapRow({
    op: 'Pow',
    opsets: [7, 22],
    precision: 'deny',
    arity: 2,
    out: (n, [a, b]) => {
      if (a.dtype === 'bool') throw new Error(`Pow '${n.name}': the base cannot be bool`);
      if (b.dtype === 'bool') throw new Error(`Pow '${n.name}': the exponent cannot be bool`);
      return a.dtype;
    },
    f: fixed(pow64),
    wgsl: (_n, w) => (a, b) => `${wgslMath(w, 'mpc_pow')}(${a}, f32(${b}))`,
    grad: (ctx, dy) => {
      const [a, b] = ctx.node.inputs;
      if (!isFloat(ctx.type(a).dtype)) return [undefined, undefined];
      const da = sumTo(ctx, ctx.emit('mpc.PowGradBase', [dy, a, b])[0], ctx.type(a).shape);
      const db = isFloat(ctx.type(b).dtype) ? sumTo(ctx, ctx.emit('mpc.PowGradExponent', [dy, a, b])[0], ctx.type(b).shape) : undefined;
      return [da, db];
    },
  });
  const floatWgsl = row.wgsl!;
  row.wgsl = (n, ctx) => {
    const at = ctx.type(n.inputs[0]);
    const bt = ctx.type(n.inputs[1]);
    if (isFloat(at.dtype)) return floatWgsl(n, ctx);
    const w = ctx.writer();
    let expr: (a: string, b: string) => string;
    if (isFloat(bt.dtype)) expr = (a, b) => `i32(${wgslMath(w, 'mpc_pow')}(f32(${a}), ${b}))`;
    else {
      w.define(`fn mpc_ipow(a: i32, b: i32) -> i32 {
  if (b < 0) {
    if (a == 1) { return 1; }
    if (a == -1) { return select(1, -1, (b & 1) != 0); }
    return 0;
  }
  var r = 1;
  var base = a;
  var e = b;
  while (e > 0) {
    if ((e & 1) != 0) { r = r * base; }
    base = base * base;
    e = e >> 1u;
  }
  return r;
}
`);
      expr = (a, b) => `mpc_ipow(${a}, ${b})`;
    }
    return [
      broadcastKernel(
        w,
        n.inputs.map((name) => ({ name, type: ctx.type(name) })),
        { name: n.outputs[0], type: ctx.type(n.outputs[0]) },
        ([a, b]) => expr(a, b),
      ),
    ];
  };
  return row;
}
function powGradBase64(dy: number, a: number, b: number): number {
  return b === 0 ? 0 : dy * b * Math.pow(a, b - 1);
}
function powGradExp64(dy: number, a: number, b: number): number {
  return a === 0 && b >= 0 ? 0 : dy * Math.pow(a, b) * Math.log(a);
}

/** Gradient ops of Pow: dy * b a^(b-1) and dy * a^b ln a (PyTorch's conventions at 0). */
function powGradRow(op: string, f: (dy: number, a: number, b: number) => number, wgsl: (w: KernelWriter, dy: string, a: string, b: string) => string): OpRow {
  return mapRow({
    op,
    precision: 'deny',
    arity: 3,
    out: (n, ins) => {
      if (!isFloat(ins[0].dtype) || !isFloat(ins[1].dtype)) throw new Error(`${op} '${n.name}': dy and the base must be floats`);
      return isFloat(ins[2].dtype) && op === 'mpc.PowGradExponent' ? ins[2].dtype : ins[0].dtype;
    },
    f: fixed(f),
    wgsl: (_n, w) => (dy, a, b) => wgsl(w, dy, a, `f32(${b})`),
  });
}

export const mathOps: OpRow[] = [
  unaryMath({
    op: 'Exp',
    opsets: [6, 22],
    precision: 'deny',
    f: fixed(Math.exp),
    wgsl: (_n, w) => (x) => `${wgslMath(w, 'mpc_exp')}(${x})`,
    grad: (ctx, dy, _x, y) => ctx.emit('Mul', [dy, y])[0],
  }),
  unaryMath({
    op: 'Log',
    opsets: [6, 22],
    precision: 'deny',
    f: fixed(Math.log),
    wgsl: (_n, w) => (x) => `${wgslMath(w, 'mpc_log')}(${x})`,
    grad: (ctx, dy, x) => ctx.emit('Div', [dy, x])[0],
  }),
  unaryMath({
    op: 'Sqrt',
    opsets: [6, 22],
    precision: 'follow',
    f: fixed(Math.sqrt),
    wgsl: () => (x) => `sqrt(${x})`,
    grad: (ctx, dy, _x, y) => ctx.emit('mpc.SqrtGrad', [dy, y])[0],
  }),
  gradRow('mpc.SqrtGrad', 'follow', fixed((dy, y) => (0.5 * dy) / y), () => (dy, y) => `(0.5 * ${dy}) / ${y}`),
  unaryMath({
    op: 'Reciprocal',
    opsets: [6, 22],
    precision: 'deny',
    f: fixed((x) => 1 / x),
    wgsl: () => (x) => `1.0 / ${x}`,
    grad: (ctx, dy, _x, y) => ctx.emit('mpc.ReciprocalGrad', [dy, y])[0],
  }),
  gradRow('mpc.ReciprocalGrad', 'deny', fixed((dy, y) => -dy * y * y), () => (dy, y) => `-(${dy} * ${y}) * ${y}`),
  unaryMath({
    op: 'Tanh',
    opsets: [6, 22],
    precision: 'follow',
    f: fixed(Math.tanh),
    wgsl: (_n, w) => (x) => `${wgslMath(w, 'mpc_tanh')}(${x})`,
    grad: (ctx, dy, _x, y) => ctx.emit('mpc.TanhGrad', [dy, y])[0],
  }),
  // (1 - y)(1 + y) rather than 1 - y^2: exact in f32 where y is near ±1.
  gradRow('mpc.TanhGrad', 'follow', fixed((dy, y) => dy * (1 - y) * (1 + y)), () => (dy, y) => `${dy} * ((1.0 - ${y}) * (1.0 + ${y}))`),
  unaryMath({
    op: 'Sigmoid',
    opsets: [6, 22],
    precision: 'follow',
    f: fixed(sigmoid64),
    wgsl: (_n, w) => (x) => `${wgslMath(w, 'mpc_sigmoid')}(${x})`,
    grad: (ctx, dy, _x, y) => ctx.emit('mpc.SigmoidGrad', [dy, y])[0],
  }),
  gradRow('mpc.SigmoidGrad', 'follow', fixed((dy, y) => dy * y * (1 - y)), () => (dy, y) => `${dy} * (${y} * (1.0 - ${y}))`),
  unaryMath({
    op: 'Erf',
    opsets: [9, 22],
    precision: 'deny',
    f: fixed(erf64),
    wgsl: (_n, w) => (x) => `${wgslMath(w, 'mpc_erf')}(${x})`,
    grad: (ctx, dy, x) => ctx.emit('mpc.ErfGrad', [dy, x])[0],
  }),
  gradRow(
    'mpc.ErfGrad',
    'deny',
    fixed((dy, x) => dy * (2 / SQRT_PI) * Math.exp(-x * x)),
    (_n, w) => (dy, x) => `${dy} * (${c(2 / SQRT_PI)} * ${wgslMath(w, 'mpc_exp_neg_sq')}(${x}, 1.0))`,
  ),
  unaryMath({
    op: 'LeakyRelu',
    opsets: [6, 22],
    precision: 'follow',
    f: (n) => {
      const alpha = alphaOf(n);
      return (x) => (x >= 0 ? x : alpha * x);
    },
    wgsl: (n) => (x) => `select(${c(alphaOf(n))} * ${x}, ${x}, ${x} >= 0.0)`,
    grad: (ctx, dy, x) => ctx.emit('mpc.LeakyReluGrad', [dy, x], { alpha: alphaOf(ctx.node) })[0],
  }),
  // d/dx at 0 is taken as alpha (PyTorch's leaky_relu_backward: x > 0 ? dy : alpha dy).
  gradRow(
    'mpc.LeakyReluGrad',
    'follow',
    (n) => {
      const alpha = alphaOf(n);
      return (dy, x) => (x > 0 ? dy : alpha * dy);
    },
    (n) => (dy, x) => `select(${c(alphaOf(n))} * ${dy}, ${dy}, ${x} > 0.0)`,
  ),
  unaryMath({
    op: 'Softplus',
    opsets: [1, 22],
    precision: 'deny',
    // max(x, 0) + log1p(exp(-|x|)): no overflow, full precision for large |x|.
    f: fixed((x) => Math.max(x, 0) + Math.log1p(Math.exp(-Math.abs(x)))),
    wgsl: (_n, w) => (x) => `max(${x}, 0.0) + ${wgslMath(w, 'mpc_log1p')}(${wgslMath(w, 'mpc_exp')}(-abs(${x})))`,
    grad: (ctx, dy, x) => ctx.emit('mpc.SoftplusGrad', [dy, x])[0],
  }),
  gradRow('mpc.SoftplusGrad', 'deny', fixed((dy, x) => dy * sigmoid64(x)), (_n, w) => (dy, x) => `${dy} * ${wgslMath(w, 'mpc_sigmoid')}(${x})`),
  unaryMath({
    op: 'Gelu',
    opsets: [20, 22],
    precision: 'deny',
    f: (n) => (approxOf(n) === 'none' ? (x) => x * Phi64(x) : geluTanh64),
    wgsl: (n, w) => (x) => {
      if (approxOf(n) === 'none') return `${x} * ${wgslMath(w, 'mpc_phi_cdf')}(${x})`;
      const z = `${c(GELU_K)} * (${x} + ${c(GELU_C)} * ${x} * ${x} * ${x})`;
      return `${x} / (1.0 + ${wgslMath(w, 'mpc_exp')}(-2.0 * (${z})))`;
    },
    grad: (ctx, dy, x) => ctx.emit('mpc.GeluGrad', [dy, x], { approximate: approxOf(ctx.node) })[0],
  }),
  gradRow(
    'mpc.GeluGrad',
    'deny',
    (n) => {
      const a = approxOf(n);
      return (dy, x) => dy * geluGrad64(x, a);
    },
    (n, w) => (dy, x) => {
      if (approxOf(n) === 'none') {
        const pdf = `${c(1 / Math.sqrt(2 * Math.PI))} * ${wgslMath(w, 'mpc_exp_neg_sq')}(${x}, 0.5)`;
        return `${dy} * (${wgslMath(w, 'mpc_phi_cdf')}(${x}) + ${x} * (${pdf}))`;
      }
      w.define(`fn mpc_gelu_tanh_grad(x: f32) -> f32 {
  let z2 = 2.0 * ${c(GELU_K)} * (x + ${c(GELU_C)} * x * x * x);
  let s = 1.0 / (1.0 + ${wgslMath(w, 'mpc_exp')}(-z2));
  let sm = 1.0 / (1.0 + mpc_exp(z2));
  return s + 2.0 * x * s * sm * ${c(GELU_K)} * (1.0 + ${c(3 * GELU_C)} * x * x);
}
`);
      return `${dy} * mpc_gelu_tanh_grad(${x})`;
    },
  ),
  powRow(),
  powGradRow('mpc.PowGradBase', powGradBase64, (w, dy, a, b) => `select(${dy} * ${b} * ${wgslMath(w, 'mpc_pow')}(${a}, ${b} - 1.0), 0.0, ${b} == 0.0)`),
  powGradRow(
    'mpc.PowGradExponent',
    powGradExp64,
    (w, dy, a, b) => `select(${dy} * ${wgslMath(w, 'mpc_pow')}(${a}, ${b}) * ${wgslMath(w, 'mpc_log')}(${a}), 0.0, ${a} == 0.0 && ${b} >= 0.0)`,
  ),
  // Comparisons and logic: bool results (i32 0/1 in memory), no precision class of their own.
  ...(
    [
      ['Equal', [7, 22], (a: number, b: number) => a === b, '=='],
      ['Less', [7, 22], (a: number, b: number) => a < b, '<'],
      ['Greater', [7, 22], (a: number, b: number) => a > b, '>'],
      ['LessOrEqual', [12, 22], (a: number, b: number) => a <= b, '<='],
      ['GreaterOrEqual', [12, 22], (a: number, b: number) => a >= b, '>='],
    ] as [string, [number, number], (a: number, b: number) => boolean, string][]
  ).map(([op, opsets, f, sym]) =>
    mapRow({ op, opsets, precision: 'none', arity: 2, out: compared, f: fixed((a, b) => (f(a, b) ? 1 : 0)), wgsl: () => (a, b) => `select(0, 1, ${a} ${sym} ${b})` }),
  ),
  mapRow({
    op: 'Not',
    opsets: [1, 22],
    precision: 'none',
    arity: 1,
    out: (n, [x]) => {
      if (x.dtype !== 'bool') throw new Error(`Not '${n.name}': needs a bool input, got ${x.dtype}`);
      return 'bool';
    },
    f: fixed((x) => (x ? 0 : 1)),
    wgsl: () => (x) => `select(0, 1, ${x} == 0)`,
  }),
  mapRow({
    op: 'Where',
    opsets: [9, 22],
    precision: 'follow',
    dataInputs: [1, 2],
    arity: 3,
    out: (n, [cond, x, y]) => {
      if (cond.dtype !== 'bool') throw new Error(`Where '${n.name}': the condition must be bool, got ${cond.dtype}`);
      if (x.dtype !== y.dtype) throw new Error(`Where '${n.name}': X and Y have different dtypes (${x.dtype}, ${y.dtype}); a cast is missing`);
      return x.dtype;
    },
    f: fixed((cond, x, y) => (cond ? x : y)),
    wgsl: () => (cond, x, y) => `select(${y}, ${x}, ${cond} != 0)`,
    grad: (ctx, dy) => {
      const [cond, x, y] = ctx.node.inputs;
      const zero = ctx.constant({ dtype: ctx.type(dy).dtype, shape: [], data: new Float32Array(1) });
      return [
        undefined,
        isFloat(ctx.type(x).dtype) ? sumTo(ctx, ctx.emit('Where', [cond, dy, zero])[0], ctx.type(x).shape) : undefined,
        isFloat(ctx.type(y).dtype) ? sumTo(ctx, ctx.emit('Where', [cond, zero, dy])[0], ctx.type(y).shape) : undefined,
      ];
    },
  }),
];
