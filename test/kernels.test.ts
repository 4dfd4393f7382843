// Every WGSL kernel of the op table against the CPU reference interpreter, per dtype and per
// f16 storage target (native array<f16> and packed two per u32).
//
// For each row with a `wgsl` emitter the CASES table below gives one or more tiny graphs of
// one node (shapes, attributes, inputs). Each case runs with its floating-point operands in
// f32, f16 and bf16 (the type `T` of the case), the f16 runs on both storage targets. The
// interpreter's feed rounds the random inputs to T, runNodeOnGpu gives the kernel exactly the
// interpreter's inputs, and every output is compared:
//   - integers: equal;
//   - f32: within 1e-5 relative, with a floor of 1e-6 of the tensor's largest magnitude
//     (sums that cancel to ~0 have no meaningful relative error);
//   - f16, bf16, fp8: bit for bit the interpreter's rounding, except the ops in ONE_ULP, whose
//     f32 math on the GPU legitimately differs from the reference (then 1 ulp of the format).
// Parameters and optimizer state are f32 by design (master weights), so SGD/Adam outputs are
// compared at the f32 tolerance whatever T (T is their gradient's type there).
// A row with a kernel and no case fails the coverage test: a new op adds its case here, unless
// its module has a test file of its own that checks every kernel the same way
// (helpers/covered-elsewhere.ts).
//
// Each case compiles its kernel on lavapipe (a GEMM pipeline takes seconds), so the slow
// kernels run their full dtype sweep on a few cases only.
import { describe, expect, it } from 'vitest';
import { runGraph } from '../src/interp/interpreter.js';
import { encode, floatInfo, isFloat, type DType, type FloatDType } from '../src/ir/dtypes.js';
import type { Attrs } from '../src/ir/graph.js';
import { sizeOf } from '../src/ir/tensor.js';
import { castAttrs } from '../src/ops/cast.js';
import { allOps } from '../src/ops/table.js';
import { HPARAM, HPARAM_COUNT } from '../src/ops/training.js';
import type { Target } from '../src/codegen/kernel.js';
import { runNodeOnGpu } from './helpers/gpu.js';
import { coveredElsewhere } from './helpers/covered-elsewhere.js';
import { rng, seedOf, singleNodeGraph, tensorOf } from './helpers/single-node.js';

/**
 * Ops whose low-precision results may differ by 1 ulp of the format from the interpreter,
 * because the f32 math on the GPU is not the reference's: the reference rounds an exact (f64)
 * result once, the GPU rounds f32 intermediates on the way, so a value lying near a rounding
 * boundary of f16/bf16 can round the other way. Every other op must be bit-exact.
 */
const ONE_ULP: Record<string, string> = {
  Gemm: 'f32 accumulation (in the kernel\'s order) vs an f64 sum',
  MatMul: 'f32 accumulation (in the kernel\'s order) vs an f64 sum',
  SoftmaxCrossEntropyLoss: 'GPU exp/log and f32 sums vs f64 Math.exp/Math.log',
  'mpc.SoftmaxCrossEntropyGrad': 'GPU exp/log and f32 sums vs f64 Math.exp/Math.log',
};

type Gen = (r: () => number, i: number) => number;

/** An operand: its shape, its dtype (T: the swept float type of the run) and how to fill it. */
interface In {
  shape: number[];
  dtype?: DType | 'T';
  gen?: Gen | number[];
  /** The same value as operand `sameAs` (x·x, X·Xᵀ). */
  sameAs?: number;
  /** A constant of the graph (a shape or pads input, which inference reads). */
  constant?: boolean;
}

interface KernelCase {
  op: string;
  /** Shown in the test name after the op. */
  what: string;
  /** Operands in order; null: an omitted optional input (''). */
  ins: (In | null)[];
  /** Attributes, or a function of T (e.g. an output type `to`). */
  attrs?: Attrs | ((t: FloatDType) => Attrs);
  /** The values of T to run (default f32, f16, bf16). */
  types?: FloatDType[];
  /** Number of outputs of the node (default: the row's). */
  outputs?: number;
}

const ALL_T: FloatDType[] = ['f32', 'f16', 'bf16'];

// Input generators.
const uniform = (lo: number, hi: number): Gen => (r) => lo + (hi - lo) * r();
const signed = uniform(-2, 2);
/** Magnitude in [0.5, 2] with a random sign: denominators. */
const nonZero: Gen = (r) => (r() < 0.5 ? -1 : 1) * (0.5 + 1.5 * r());
/** Mostly signed values with exact zeros (and a -0) sprinkled in: Relu's and ReluGrad's kinks. */
const withZeros: Gen = (r, i) => (i % 5 === 0 ? 0 : i % 7 === 3 ? -0 : signed(r, i));
const ints = (lo: number, hi: number): Gen => (r) => lo + Math.floor((hi - lo + 1) * r());
const fill = (v: number): Gen => () => v;

const T = 'T' as const;
const f = (...shape: number[]): In => ({ shape, dtype: T });

// ---------------------------------------------------------------------------------------------
// The cases.

const CASES: KernelCase[] = [];

/** Broadcast shapes for the binary elementwise ops; the first set runs for Add. */
const BROADCASTS: [number[], number[], string][] = [
  [[3, 5], [3, 5], 'same shape (15, odd)'],
  [[3, 4], [4], 'bias [4]'],
  [[3, 5], [5], 'bias [5] (odd)'],
  [[2, 1, 3], [1, 5, 1], 'both broadcast'],
  [[5, 1], [1, 3], 'outer (odd)'],
  [[3, 5], [], 'scalar right'],
  [[], [3, 5], 'scalar left'],
  [[2, 3, 5], [3, 1], 'middle dim'],
  [[7], [1], '[7] + [1]'],
];
for (const [a, b, what] of BROADCASTS) CASES.push({ op: 'Add', what: `[${a}] + [${b}] ${what}`, ins: [f(...a), f(...b)] });
for (const op of ['Sub', 'Mul', 'Div'])
  for (const [a, b, what] of [BROADCASTS[0], BROADCASTS[3], BROADCASTS[5], BROADCASTS[6]])
    CASES.push({ op, what: `[${a}] ${op} [${b}] ${what}`, ins: [f(...a), { ...f(...b), gen: op === 'Div' ? nonZero : signed }] });
CASES.push(
  { op: 'Mul', what: 'x * x (one buffer bound once)', ins: [f(3, 5), { ...f(3, 5), sameAs: 0 }] },
  { op: 'Neg', what: '[3,5]', ins: [{ ...f(3, 5), gen: withZeros }] },
  { op: 'Relu', what: '[3,5] with zeros', ins: [{ ...f(3, 5), gen: withZeros }] },
  { op: 'Relu', what: '[2,4]', ins: [f(2, 4)] },
  { op: 'mpc.ReluGrad', what: '[3,5] with zeros', ins: [f(3, 5), { ...f(3, 5), gen: withZeros }] },
  { op: 'mpc.ReluGrad', what: '[2,3] dy broadcast over x', ins: [f(3), { ...f(2, 3), gen: withZeros }] },
);

// Movement.
CASES.push(
  { op: 'Transpose', what: '[3,5] default perm', ins: [f(3, 5)] },
  { op: 'Transpose', what: '[2,3,5] perm 2,0,1', ins: [f(2, 3, 5)], attrs: { perm: [2, 0, 1] } },
  { op: 'Transpose', what: '[2,3,1,5] perm 0,3,2,1', ins: [f(2, 3, 1, 5)], attrs: { perm: [0, 3, 2, 1] } },
  { op: 'Transpose', what: 'i64 [3,5]', ins: [{ shape: [3, 5], dtype: 'i64', gen: ints(-1000, 1000) }], types: ['f32'] },
);

// SumTo (gradient of broadcasting).
for (const [from, to] of [
  [[3, 5], [5]],
  [[3, 5], [3, 1]],
  [[2, 3, 5], [3, 1]],
  [[2, 3, 5], [2, 1, 5]],
  [[4, 3, 5], [1, 3, 1]],
  [[2, 3, 5], []],
  [[3, 5], [3, 5]],
])
  CASES.push({ op: 'mpc.SumTo', what: `[${from}] -> [${to}]`, ins: [f(...from)], attrs: { shape: to } });

// Gemm: [M,K]x[K,N] (+C), with transposes, alpha, beta, every bias shape. Every case runs in
// f32; the low-precision runs (`lowp`) are limited to a few because each GEMM pipeline takes
// seconds to compile on lavapipe. They cover both the naive kernel (packed output, odd N) and
// the blocked one (even N), every operand format and both f16 storage targets.
for (const g of [
  { M: 5, K: 9, N: 7, what: 'plain (odd sizes)' },
  { M: 5, K: 9, N: 7, tA: 1, what: 'transA' },
  { M: 5, K: 9, N: 7, tB: 1, what: 'transB' },
  { M: 5, K: 9, N: 7, tA: 1, tB: 1, alpha: 0.5, what: 'transA transB alpha', lowp: true },
  { M: 5, K: 9, N: 7, bias: [7], beta: 2, what: 'bias [N] beta 2' },
  { M: 5, K: 9, N: 7, bias: [5, 7], alpha: -1.5, beta: 0.25, what: 'bias [M,N] alpha beta', lowp: true },
  { M: 5, K: 9, N: 7, bias: [5, 1], what: 'bias [M,1]' },
  { M: 5, K: 9, N: 7, bias: [1, 7], tB: 1, what: 'bias [1,N] transB' },
  { M: 5, K: 9, N: 7, bias: [], what: 'bias scalar' },
  { M: 4, K: 6, N: 8, bias: [8], what: 'even N (whole packed words per row)', lowp: true },
  { M: 17, K: 33, N: 19, bias: [19], tA: 1, what: 'several tiles' },
  { M: 16, K: 12, N: 24, tB: 1, what: 'several tiles, even N', lowp: true },
  { M: 1, K: 1, N: 1, bias: [1], what: 'all ones' },
  { M: 3, K: 1, N: 5, tA: 1, bias: [5], what: 'K = 1' },
]) {
  const attrs: Attrs = {};
  if (g.tA) attrs.transA = 1;
  if (g.tB) attrs.transB = 1;
  if (g.alpha !== undefined) attrs.alpha = g.alpha;
  if (g.beta !== undefined) attrs.beta = g.beta;
  const ins = [f(...(g.tA ? [g.K, g.M] : [g.M, g.K])), f(...(g.tB ? [g.N, g.K] : [g.K, g.N]))];
  if (g.bias) ins.push(f(...g.bias));
  CASES.push({ op: 'Gemm', what: `${g.M}x${g.K}x${g.N} ${g.what}`, ins, attrs, types: g.lowp ? ALL_T : ['f32'] });
}
CASES.push({ op: 'Gemm', what: 'X·Xᵀ (one buffer as A and B) [6,9]', ins: [f(6, 9), { ...f(6, 9), sameAs: 0 }], attrs: { transB: 1 } });
for (const [a, b, what, lowp] of [
  [[5, 9], [9, 7], '2-D (odd)', false],
  [[3, 5, 4], [3, 4, 6], 'batched', true],
  [[2, 3, 5, 3], [2, 3, 3, 7], 'batch [2,3] (odd)', true],
  [[3, 5, 4], [4, 6], 'B broadcast over the batch', false],
  [[5, 4], [3, 4, 6], 'A broadcast over the batch', false],
  [[1, 5, 4], [3, 4, 5], 'A batch dim 1', false],
  [[2, 1, 3, 4], [1, 5, 4, 6], 'both sides broadcast', true],
  [[2, 1, 3, 4], [5, 4, 6], 'both sides broadcast, B of lower rank', false],
] as [number[], number[], string, boolean][])
  CASES.push({ op: 'MatMul', what: `[${a}] x [${b}] ${what}`, ins: [f(...a), f(...b)], types: lowp ? ALL_T : ['f32'] });
// mpc's transA / transB on MatMul (set by the backward pass of a batched product).
for (const [a, b, attrs, what] of [
  [[3, 4, 5], [3, 4, 6], { transA: 1 }, 'transA batched'],
  [[3, 5, 4], [3, 6, 4], { transB: 1 }, 'transB batched'],
  [[2, 1, 4, 3], [5, 6, 4], { transA: 1, transB: 1 }, 'transA transB, both sides broadcast'],
] as [number[], number[], Attrs, string][])
  CASES.push({ op: 'MatMul', what: `[${a}] x [${b}] ${what}`, ins: [f(...a), f(...b)], attrs, types: ALL_T });
// permA / permB / permY (fold-transposes): operands read and the result written through strides.
for (const [a, b, attrs, what] of [
  [[2, 5, 3, 4], [2, 4, 3, 8], { permA: [0, 2, 1, 3], permB: [0, 2, 1, 3], permY: [0, 2, 1, 3] }, 'heads in place (Q·V-like, result transposed back)'],
  [[2, 5, 3, 4], [2, 6, 3, 4], { permA: [0, 2, 1, 3], permB: [0, 2, 3, 1] }, 'scores Q·Kᵀ from [N,T,H,d]'],
  [[2, 3, 4, 5], [2, 4, 3, 8], { transA: 1, permB: [0, 2, 1, 3], permY: [0, 2, 1, 3] }, 'transA with permB and permY'],
  [[3, 4, 5], [5, 8], { permA: [1, 0, 2], permY: [1, 0, 2] }, 'B broadcast over a permuted batch'],
] as [number[], number[], Attrs, string][])
  CASES.push({ op: 'MatMul', what: `[${a}] x [${b}] ${what}`, ins: [f(...a), f(...b)], attrs, types: ALL_T });

// Cast: between float formats (incl. fp8), to and from integers and bool.
const castValues: number[] = [
  ...[0, -0, 1, -1, 0.1, -2.5, 3.75, 1 / 3, 1e-6, -6e-8, 1e-3, 65504, 65520, 70000, -1e5, 448, 500, 57344, 6e4, 1e-40, 3e38],
  ...[Infinity, -Infinity, NaN, 0.5 + 2 ** -12, 1 + 2 ** -8, 1 + 3 * 2 ** -9, -1 - 2 ** -11, 2 ** -15, 2 ** -24, 2 ** -25, 2 ** -26],
];
const FLOATS: FloatDType[] = ['f32', 'f16', 'bf16', 'f8e4m3fn', 'f8e5m2'];
for (const from of FLOATS)
  for (const to of FLOATS)
    CASES.push({ op: 'Cast', what: `${from} -> ${to}`, ins: [{ shape: [castValues.length], dtype: from, gen: castValues }], attrs: castAttrs(to), types: ['f32'] });
/** Finite values in i32 range with fractions of both signs (Cast to integers truncates). */
const toIntValues = [0, -0, 0.5, -0.5, 1.5, -1.75, 2.99, -3.01, 7, 100.25, -1234.5, 2047, 30000, 1e-3, -65504];
for (const [from, to] of [
  ['f32', 'i32'],
  ['f16', 'i32'],
  ['bf16', 'i64'],
  ['f32', 'bool'],
  ['f16', 'bool'],
  ['bf16', 'bool'],
] as [FloatDType, DType][])
  CASES.push({ op: 'Cast', what: `${from} -> ${to}`, ins: [{ shape: [toIntValues.length], dtype: from, gen: toIntValues }], attrs: castAttrs(to), types: ['f32'] });
const intValues = [0, 1, -1, 2, -7, 255, 256, 257, -513, 2049, 4097, -30001, 65519, 65520, 1e5 + 7];
for (const [from, to] of [
  ['i32', 'f32'],
  ['i32', 'f16'],
  ['i64', 'bf16'],
  ['i32', 'f8e4m3fn'],
  ['i64', 'i32'],
  ['i32', 'bool'],
  ['bool', 'f32'],
  ['bool', 'f16'],
  ['bool', 'i64'],
] as [DType, DType][])
  CASES.push({
    op: 'Cast',
    what: `${from} -> ${to}`,
    ins: [{ shape: [intValues.length], dtype: from, gen: from === 'bool' ? intValues.map((v) => (v & 1 ? 1 : 0)) : intValues }],
    attrs: castAttrs(to),
    types: ['f32'],
  });

// CastLike: the target type is input 1's.
for (const [from, like] of [
  ['f32', 'bf16'],
  ['f16', 'f8e5m2'],
  ['bf16', 'i32'],
] as [FloatDType, DType][]) {
  const vals = like === 'i32' ? toIntValues : castValues;
  CASES.push({ op: 'CastLike', what: `${from} like ${like}`, ins: [{ shape: [vals.length], dtype: from, gen: vals }, { shape: [1], dtype: like, gen: [0] }], types: ['f32'] });
}

// Losses.
const labels = (n: number, c: number, extra?: number[]): In => ({ shape: [n], dtype: 'i64', gen: extra ?? ints(0, c - 1) });
const scores: Gen = uniform(-6, 6);
for (const [what, attrs, lab] of [
  ['mean', {}, labels(5, 7)],
  ['sum', { reduction: 'sum' }, labels(5, 7)],
  ['mean ignore_index 2', { ignore_index: 2 }, labels(5, 7, [2, 0, 6, 2, 3])],
  ['mean, out-of-range labels skipped', {}, labels(5, 7, [-1, 0, 7, 6, 3])],
  ['mean, every row ignored', { ignore_index: 1 }, labels(3, 7, [1, 1, 1])],
] as [string, Attrs, In][]) {
  const n = lab.shape[0];
  CASES.push({ op: 'SoftmaxCrossEntropyLoss', what: `[${n},7] ${what}`, ins: [{ ...f(n, 7), gen: scores }, lab], attrs });
  CASES.push({ op: 'mpc.SoftmaxCrossEntropyGrad', what: `[${n},7] ${what}`, ins: [f(), { ...f(n, 7), gen: scores }, lab], attrs });
}
CASES.push(
  { op: 'mpc.MeanSquaredError', what: '[3,5]', ins: [f(3, 5), f(3, 5)] },
  { op: 'mpc.MeanSquaredError', what: '[37]', ins: [f(37), f(37)] },
  { op: 'mpc.MeanSquaredErrorGrad', what: '[3,5]', ins: [f(), f(3, 5), f(3, 5)] },
  { op: 'mpc.MeanSquaredErrorGrad', what: '[37] dy=4', ins: [{ ...f(), gen: [4] }, f(37), f(37)] },
);

// Training-state updates. Parameters and optimizer state are f32 by design (master weights);
// the gradient takes the swept type T, so the kernels' loads of every format are covered.
const P = 37;
const hparams = (sgd: boolean): In => {
  const hp = new Array<number>(HPARAM_COUNT).fill(0);
  hp[HPARAM.lr] = sgd ? 0.1 : 0.01;
  hp[HPARAM.weightDecay] = 0.01;
  if (sgd) hp[HPARAM.momentum] = 0.9;
  else {
    hp[HPARAM.beta1] = 0.9;
    hp[HPARAM.beta2] = 0.999;
    hp[HPARAM.eps] = 1e-8;
  }
  return { shape: [HPARAM_COUNT], dtype: 'f32', gen: hp };
};
const f32s = (gen: Gen = signed): In => ({ shape: [P], dtype: 'f32', gen });
const scaleIn: In = { shape: [], dtype: 'f32', gen: [1024] };
const flagIn = (v: number): In => ({ shape: [], dtype: 'i32', gen: [v] });
for (const [what, scaler] of [
  ['no scaler', []],
  ['scale', [scaleIn]],
  ['scale, flag 0', [scaleIn, flagIn(0)]],
  ['scale, flag 1 (skipped)', [scaleIn, flagIn(1)]],
  ['flag only 0', [null, flagIn(0)]],
  ['flag only 1 (skipped)', [null, flagIn(1)]],
] as [string, (In | null)[]][]) {
  CASES.push({ op: 'mpc.SGD', what: `[${P}] ${what}`, ins: [f32s(), { shape: [P], dtype: T }, f32s(), hparams(true), ...scaler] });
  for (const decoupled of [0, 1])
    for (const t of scaler.length === 0 ? [1, 7] : [3])
      CASES.push({
        op: 'mpc.Adam',
        what: `[${P}] ${decoupled ? 'AdamW' : 'Adam'} t=${t} ${what}`,
        ins: [f32s(), { shape: [P], dtype: T }, f32s(), f32s(uniform(0, 2)), { shape: [], dtype: 'i32', gen: [t] }, hparams(false), ...scaler],
        attrs: { decoupled },
      });
}
const special = (v: number, at: number): Gen => (r, i) => (i === at ? v : signed(r, i));
for (const [what, flag, gen] of [
  ['finite', 0, signed],
  ['finite, flag already set', 1, signed],
  ['+inf', 0, special(Infinity, 36)],
  ['-inf', 0, special(-Infinity, 0)],
  ['NaN', 0, special(NaN, 17)],
  ['1e5 (inf in f16 only)', 0, special(1e5, 5)],
  ['65504 (f16 max, finite)', 0, special(65504, 5)],
] as [string, number, Gen][])
  CASES.push({ op: 'mpc.CheckFinite', what: `[${P}] ${what}`, ins: [flagIn(flag), { shape: [P], dtype: T, gen }] });
// Several gradients in one kernel, laid end to end: the non-finite value in the last element
// of the last one, in the first element of a middle one, or nowhere.
for (const [what, at] of [
  ['seven gradients, NaN at the end of the last', 6],
  ['seven gradients, -inf at the start of the fourth', 3],
  ['seven gradients, all finite', -1],
] as [string, number][])
  CASES.push({
    op: 'mpc.CheckFinite',
    what,
    ins: [
      flagIn(0),
      ...Array.from({ length: 7 }, (_, k): In => {
        const n = [P, 5, 300, 1, 64, 2, 999][k];
        return { shape: [n], dtype: T, gen: k !== at ? signed : special(k === 6 ? NaN : -Infinity, k === 6 ? n - 1 : 0) };
      }),
    ],
  });
const lossScaleState = (scale: number, growth: number, found: number, skipped: number): In[] => [
  { shape: [], dtype: 'f32', gen: [scale] },
  { shape: [], dtype: 'i32', gen: [growth] },
  { shape: [], dtype: 'i32', gen: [found] },
  { shape: [], dtype: 'i32', gen: [skipped] },
];
for (const [what, state, attrs] of [
  ['dynamic, finite', lossScaleState(65536, 5, 0, 2), { dynamic: 1, growth_interval: 2000, growth_factor: 2, backoff_factor: 0.5 }],
  ['dynamic, grows', lossScaleState(65536, 1999, 0, 2), { dynamic: 1, growth_interval: 2000, growth_factor: 2, backoff_factor: 0.5 }],
  ['dynamic, overflow', lossScaleState(65536, 1999, 1, 2), { dynamic: 1, growth_interval: 2000, growth_factor: 2, backoff_factor: 0.5 }],
  ['dynamic, custom factors, grows', lossScaleState(3, 2, 0, 0), { dynamic: 1, growth_interval: 3, growth_factor: 4, backoff_factor: 0.25 }],
  ['dynamic, custom factors, overflow', lossScaleState(3, 2, 1, 0), { dynamic: 1, growth_interval: 3, growth_factor: 4, backoff_factor: 0.25 }],
  ['default attributes, overflow', lossScaleState(1024, 0, 1, 7), {}],
  ['static, overflow', lossScaleState(128, 0, 1, 7), { dynamic: 0 }],
  ['static, finite', lossScaleState(128, 0, 0, 7), { dynamic: 0 }],
] as [string, In[], Attrs][])
  CASES.push({ op: 'mpc.UpdateLossScale', what, ins: state, attrs, types: ['f32'] });
CASES.push(
  { op: 'mpc.StepCount', what: 'no flag', ins: [{ shape: [], dtype: 'i32', gen: [4] }], types: ['f32'] },
  { op: 'mpc.StepCount', what: 'flag 0', ins: [{ shape: [], dtype: 'i32', gen: [4] }, flagIn(0)], types: ['f32'] },
  { op: 'mpc.StepCount', what: 'flag 1 (skipped)', ins: [{ shape: [], dtype: 'i32', gen: [4] }, flagIn(1)], types: ['f32'] },
  { op: 'mpc.CountSkipped', what: 'finite', ins: [flagIn(0), { shape: [], dtype: 'i32', gen: [7] }], types: ['f32'] },
  { op: 'mpc.CountSkipped', what: 'found inf', ins: [flagIn(1), { shape: [], dtype: 'i32', gen: [7] }], types: ['f32'] },
);

// fp8 with per-tensor scaling: statistics, quantization, the scale update, fp8 GEMM operands.
/** Magnitudes spread over 1e-7..3e4 (flushed, subnormal, normal and saturated in fp8), both signs. */
const logSpread: Gen = (r) => (r() < 0.5 ? -1 : 1) * 10 ** (-7 + 11.5 * r());
const fp8To = (fmt: FloatDType) => castAttrs(fmt).to;
const s1 = (v: number): In => ({ shape: [1], dtype: 'f32', gen: [v] });
// Fp8Stats reduces in one workgroup of 256 with barriers, slow on lavapipe: one case runs
// for every T, the others in f32.
for (const [what, fmt, attrs, x, scale, types] of [
  ['delayed, scale 1', 'f8e4m3fn', { current: 0 }, { ...f(37), gen: logSpread }, 1, ALL_T],
  ['delayed, scale 4', 'f8e5m2', { current: 0 }, { ...f(37), gen: logSpread }, 4, ['f32']],
  ['delayed, 601 values (one pass, several per invocation)', 'f8e4m3fn', { current: 0 }, { ...f(601), gen: logSpread }, 8, ['f32']],
  ['delayed, inf in x (amax NaN, counted as saturated)', 'f8e5m2', { current: 0 }, { ...f(37), gen: special(Infinity, 3) }, 2, ['f32']],
  ['current, margin 2, 601 values (several per invocation)', 'f8e5m2', { current: 1, margin: 2 }, { ...f(601), gen: logSpread }, 1, ['f32']],
  ['current, inf in x (amax NaN, previous scale)', 'f8e4m3fn', { current: 1 }, { ...f(37), gen: special(Infinity, 3) }, 0.5, ['f32']],
  ['current, all zeros (previous scale)', 'f8e4m3fn', { current: 1 }, { ...f(37), gen: fill(0) }, 0.5, ['f32']],
] as [string, FloatDType, Attrs, In, number, FloatDType[]][])
  CASES.push({ op: 'mpc.Fp8Stats', what: `${fmt} ${what}`, ins: [x, s1(scale)], attrs: { to: fp8To(fmt), ...attrs }, types });
for (const [what, fmt, x, scale] of [
  ['[37] scale 2.5', 'f8e4m3fn', { ...f(37), gen: uniform(-200, 200) }, 2.5],
  ['[37] scale 1000 (saturates)', 'f8e5m2', { ...f(37), gen: uniform(-200, 200) }, 1000],
  ['[6,5] scale 0.0625 (subnormals)', 'f8e4m3fn', { ...f(6, 5), gen: uniform(-1, 1) }, 0.0625],
  ['[3] scale 3', 'f8e5m2', { ...f(3), gen: signed }, 3],
] as [string, FloatDType, In, number][])
  CASES.push({ op: 'mpc.QuantizeFp8', what: `${fmt} ${what}`, ins: [x, { shape: [4], dtype: 'f32', gen: [100, 0, 0, scale] }], attrs: { to: fp8To(fmt) } });
const stats = (amax: number, scale: number): In => ({ shape: [4], dtype: 'f32', gen: [amax, 0.01, 0.02, scale] });
const history = (...v: number[]): In => ({ shape: [v.length], dtype: 'f32', gen: v });
for (const [what, fmt, attrs, h, st] of [
  ['delayed max', 'f8e4m3fn', { amax: 'max', margin: 0 }, history(3, 9, 2, 1), stats(5, 1)],
  ['delayed max, margin 1', 'f8e5m2', { amax: 'max', margin: 1 }, history(3, 9, 2, 100), stats(5, 1)],
  ['delayed most_recent', 'f8e4m3fn', { amax: 'most_recent', margin: 0 }, history(3, 9, 2, 1), stats(0.7, 1)],
  ['delayed max, NaN amax (scale kept)', 'f8e4m3fn', { amax: 'max' }, history(3, 9, 2, 1), stats(NaN, 1)],
  ['delayed most_recent, inf amax (scale kept)', 'f8e5m2', { amax: 'most_recent' }, history(3, 9), stats(Infinity, 1)],
  ['delayed max, zero amax (scale kept)', 'f8e4m3fn', { amax: 'max' }, history(0, 0, 0), stats(0, 1)],
  ['history of 1', 'f8e4m3fn', { amax: 'max' }, history(7), stats(3, 1)],
  ['current', 'f8e4m3fn', { current: 1 }, history(3, 9, 2, 1), stats(5, 89.6)],
] as [string, FloatDType, Attrs, In, In][])
  CASES.push({ op: 'mpc.UpdateFp8Scale', what: `${fmt} ${what}`, ins: [h, s1(0.5), st], attrs: { to: fp8To(fmt), ...attrs }, types: ['f32'] });
// fp8 operands with their inverse scales (inputs 3, 4); the output type is attribute `to` (T).
CASES.push(
  {
    op: 'Gemm',
    what: 'fp8 E4M3 x E5M2 + bias, inverse scales',
    ins: [{ shape: [5, 9], dtype: 'f8e4m3fn' }, { shape: [7, 9], dtype: 'f8e5m2' }, f(7), s1(0.3), s1(1.7)],
    attrs: (t) => ({ transB: 1, to: castAttrs(t).to }),
  },
  {
    op: 'MatMul',
    what: 'fp8 E4M3 x E4M3 batched, inverse scales',
    ins: [{ shape: [3, 5, 4], dtype: 'f8e4m3fn' }, { shape: [4, 6], dtype: 'f8e4m3fn' }, null, s1(0.3), s1(1.7)],
    attrs: (t) => ({ to: castAttrs(t).to }),
  },
);

// ---------------------------------------------------------------------------------------------
// Running and comparing.

function operand(spec: In, t: FloatDType, r: () => number) {
  const dtype = !spec.dtype || spec.dtype === 'T' ? t : spec.dtype;
  const n = sizeOf(spec.shape);
  const gen = spec.gen ?? signed;
  const values = Array.isArray(gen) ? gen : Array.from({ length: n }, (_, i) => gen(r, i));
  return { tensor: tensorOf(dtype, spec.shape, values), sameAs: spec.sameAs, kind: spec.constant ? ('const' as const) : ('input' as const) };
}

/** Position of a code in the format's value order (sign-magnitude to a signed integer). */
function ordinal(dtype: FloatDType, x: number): number {
  const fi = floatInfo(dtype);
  const code = dtype === 'f32' ? new Uint32Array(Float32Array.of(x).buffer)[0] : encode(dtype, x);
  const sign = 2 ** (fi.bits - 1);
  return code >= sign ? -(code - sign) : code;
}

/** Describes the worst mismatch of one output, or undefined when it is within tolerance. */
function compare(op: string, dtype: DType, got: ArrayLike<number>, want: ArrayLike<number>): string | undefined {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  const at = (i: number) => `[${i}]: got ${got[i]}, want ${want[i]}`;
  if (!isFloat(dtype)) {
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return `integers differ at ${at(i)}`;
    return undefined;
  }
  // Non-finite values must match exactly (any NaN matches any NaN).
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (Number.isNaN(w) !== Number.isNaN(g) || (!Number.isFinite(w) && !Number.isNaN(w) && g !== w)) return `non-finite mismatch at ${at(i)}`;
  }
  if (dtype === 'f32') {
    let maxAbs = 0;
    for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) maxAbs = Math.max(maxAbs, Math.abs(want[i]));
    let worst = 0;
    let wi = 0;
    for (let i = 0; i < want.length; i++) {
      if (!Number.isFinite(want[i])) continue;
      const e = Math.abs(got[i] - want[i]) / (1e-5 * Math.abs(want[i]) + 1e-6 * maxAbs + 1e-38);
      if (e > worst) [worst, wi] = [e, i];
    }
    return worst <= 1 ? undefined : `f32 ${worst.toFixed(2)}x the tolerance at ${at(wi)}`;
  }
  const allowed = op in ONE_ULP ? 1 : 0;
  let worst = 0;
  let wi = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i])) continue;
    const d = Math.abs(ordinal(dtype, got[i]) - ordinal(dtype, want[i]));
    // Bit-exact also means the sign of a zero.
    const e = d === 0 && !Object.is(got[i], want[i]) ? 1 : d;
    if (e > worst) [worst, wi] = [e, i];
  }
  return worst <= allowed ? undefined : `${dtype}: ${worst} ulp (allowed ${allowed}) at ${at(wi)}`;
}

interface Run {
  t: FloatDType;
  target: Target;
}

function runsOf(c: KernelCase): Run[] {
  const runs: Run[] = [];
  for (const t of c.types ?? ALL_T) {
    const dtypes = c.ins.map((i) => (i && i.dtype && i.dtype !== 'T' ? i.dtype : t));
    if (c.op === 'Cast') dtypes.push(castTargetOf(c));
    // f16 has two storage layouts; every other format has one.
    const targets: Target[] = dtypes.includes('f16') ? [{ f16: true }, { f16: false }] : [{ f16: true }];
    for (const target of targets) runs.push({ t, target });
  }
  return runs;
}

function attrsOf(c: KernelCase, t: FloatDType): Attrs {
  return typeof c.attrs === 'function' ? c.attrs(t) : (c.attrs ?? {});
}

function castTargetOf(c: KernelCase): DType {
  const to = (attrsOf(c, 'f32').to as number) ?? 1;
  return (['f32', 'f16', 'bf16', 'f8e4m3fn', 'f8e5m2', 'i32', 'i64', 'bool'] as DType[]).find((d) => castAttrs(d).to === to)!;
}

const runName = (c: KernelCase, r: Run) => `${c.types && c.types.length === 1 && c.types[0] === 'f32' && r.t === 'f32' ? '' : `T=${r.t} `}${r.target.f16 ? 'f16 native' : 'f16 packed'}`;

describe('coverage', () => {
  it('every op with a WGSL emitter has a kernel case (here or in its own op test file)', () => {
    const missing = allOps()
      .filter((r) => r.wgsl && !CASES.some((c) => c.op === r.op) && !coveredElsewhere(r.op))
      .map((r) => r.op);
    expect(missing).toEqual([]);
  });
  it('every op in ONE_ULP has a kernel', () => {
    const rows = new Set(allOps().filter((r) => r.wgsl).map((r) => r.op));
    expect(Object.keys(ONE_ULP).filter((op) => !rows.has(op))).toEqual([]);
  });
});

describe('WGSL kernels vs the interpreter', () => {
  for (const c of CASES)
    for (const run of runsOf(c))
      it(`${c.op} ${c.what} | ${runName(c, run)}`, async () => {
        const r = rng(seedOf(`${c.op} ${c.what}`));
        const { g, feeds } = singleNodeGraph(
          c.op,
          c.ins.map((spec) => (spec ? operand(spec, run.t, r) : undefined)),
          attrsOf(c, run.t),
          c.outputs,
        );
        const env = runGraph(g, feeds);
        const outs = await runNodeOnGpu(g, 0, env, run.target);
        const bad: string[] = [];
        g.nodes[0].outputs.forEach((o, k) => {
          const want = env.get(o)!;
          const msg = compare(c.op, want.dtype, outs[k].data, want.data);
          if (msg) bad.push(`output ${k} (${want.dtype}[${want.shape}]): ${msg}`);
        });
        expect(bad).toEqual([]);
      });
});
