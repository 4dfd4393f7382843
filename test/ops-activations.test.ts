// The activation, unary math, variadic and logic ops (src/ops/activations.ts, src/ops/logic.ts),
// checked three ways:
//
//  1. interpreter vs onnxruntime: one-node ONNX models built here, imported through the real
//     importer and the eval pipeline (fp32), on random inputs (integer variants in int64);
//  2. WebGPU vs interpreter: every kernel (forward and gradient ops) on exactly the
//     interpreter's inputs, in f32, f16 (native and packed storage) and bf16, plus NaN/±inf/±0
//     inputs. Bounds:
//       - ops that round once (clamps, selects, one product or quotient, floor/ceil/round,
//         Max/Min, Sum/Mean added in the reference's f32 order, exact fmod, logic): bit for
//         bit, the sign of zero included;
//       - the others in f32: at most ULP_F32[op] ulp, measured on lavapipe over dense grids
//         ('accuracy on dense grids' below). The kernels use mpc's own WGSL functions (the
//         trig library of activations.ts, mpc_exp/mpc_log of math.ts), so the bounds do not
//         depend on the driver's sin/asin/sinh; HardSigmoid's alpha x + beta cancels where it
//         crosses 0, so it is bounded absolutely (2^-24, half an ulp of its range's top);
//       - f16 / bf16 results: 0 ulp for the exact ops, otherwise 1 ulp of the format;
//  3. gradient rules vs central finite differences of the interpreter's forward pass (inputs
//     kept away from kinks); Floor/Ceil/Round/Sign have no gradient (their rules return none)
//     and their finite differences are checked to be 0.
import { describe, expect, it } from 'vitest';
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { importOnnx } from '../src/onnx/import.js';
import { EVAL_PIPELINE, runPipeline } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import { addConst, addNode } from '../src/ir/build.js';
import { isFloat, type DType, type FloatDType } from '../src/ir/dtypes.js';
import { emptyGraph, type Attrs } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { activationOps } from '../src/ops/activations.js';
import { logicOps } from '../src/ops/logic.js';
import type { Target } from '../src/codegen/kernel.js';
import { generate } from '../src/codegen/program.js';
import { runOnce } from '../src/runtime/run-once.js';
import { runNodeOnGpu } from './helpers/gpu.js';
import { emitGradient, exactPartMismatch, maxUlpF32, splitFeeds, worstUlpMismatch } from './helpers/op-harness.js';
import { rng, seedOf, singleNodeGraph, tensorOf, type NodeInput } from './helpers/single-node.js';

const O = onnx.onnx;

// ---------------------------------------------------------------------------------------------
// Inputs.

type Gen = (r: () => number, i: number) => number;
const uniform = (lo: number, hi: number): Gen => (r) => lo + (hi - lo) * r();
const signed = uniform(-2, 2);
/** Uniform in [lo, hi] but at least `gap` away from each of `kinks` (for finite differences). */
const avoiding = (lo: number, hi: number, kinks: number[], gap = 0.05): Gen => (r) => {
  for (;;) {
    const x = lo + (hi - lo) * r();
    if (kinks.every((k) => Math.abs(x - k) > gap)) return x;
  }
};
/** Few distinct values, so Max/Min meet ties (no -0: which zero wins is the later operand's). */
const coarse: Gen = (r) => Math.round(r() * 6 - 3) / 2 + 0;
const bools: Gen = (r) => (r() < 0.5 ? 1 : 0);
const ints = (lo: number, hi: number): Gen => (r) => Math.floor(lo + (hi - lo + 1) * r());
/** Halves and near-halves: Round's ties to even. */
const halves: Gen = (r, i) => (i % 3 === 0 ? Math.round(r() * 12 - 6) / 2 : uniform(-4, 4)(r, i));

interface In {
  shape: number[];
  /** 'T': the swept float type of the run. */
  dtype?: DType | 'T';
  gen?: Gen | number[];
  kind?: 'const';
}
const T = 'T' as const;
const f = (shape: number[], gen: Gen | number[] = signed): In => ({ shape, dtype: T, gen });
const i64 = (shape: number[], gen: Gen | number[]): In => ({ shape, dtype: 'i64', gen });
const bool = (shape: number[]): In => ({ shape, dtype: 'bool', gen: bools });
const scalar = (v: number): In => ({ shape: [], dtype: T, gen: [v] });

function operand(spec: In, t: FloatDType, r: () => number): NodeInput {
  const dtype = !spec.dtype || spec.dtype === 'T' ? t : spec.dtype;
  const gen = spec.gen ?? signed;
  const values = Array.isArray(gen) ? gen : Array.from({ length: sizeOf(spec.shape) }, (_, i) => gen(r, i));
  return { tensor: tensorOf(dtype, spec.shape, values), kind: spec.kind };
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

// ---------------------------------------------------------------------------------------------
// 1. Interpreter vs onnxruntime.

type AttrSpec = { i: number } | { f: number };
const ONNX_TYPE: Record<string, number> = { f32: 1, i64: 7, bool: 9 };

interface OrtCase {
  op: string;
  what: string;
  opset: number;
  ins: (In | null)[];
  attrs?: Record<string, AttrSpec>;
  /** Allowed difference in f32 ulp. */
  tol: number;
  /**
   * Absolute difference also accepted: HardSigmoid (see the header); onnxruntime's Elu/Celu/Selu
   * compute exp(x) - 1 in f32, which cancels near 0 (an absolute error of about alpha 2^-24).
   */
  abs?: number;
}

function attrProto(name: string, a: AttrSpec) {
  const A = O.AttributeProto.AttributeType;
  return 'i' in a ? { name, type: A.INT, i: a.i } : { name, type: A.FLOAT, f: a.f };
}

function valueInfo(name: string, dtype: DType, shape: number[]) {
  return { name, type: { tensorType: { elemType: ONNX_TYPE[dtype], shape: { dim: shape.map((d) => ({ dimValue: d })) } } } };
}

/** A one-node ONNX model: constant inputs become initializers, the rest graph inputs. */
function oneNodeModel(c: OrtCase, ins: (Tensor | null)[], out: { dtype: DType; shape: number[] }): Uint8Array {
  const names = ins.map((t, k) => (t ? `x${k}` : ''));
  const initializer = ins.flatMap((t, k) =>
    t && c.ins[k]?.kind === 'const'
      ? [{ name: names[k], dataType: ONNX_TYPE[t.dtype], dims: t.shape, ...(t.dtype === 'f32' ? { floatData: Array.from(t.data) } : { int64Data: Array.from(t.data) }) }]
      : [],
  );
  const inputs = ins.flatMap((t, k) => (t && c.ins[k]?.kind !== 'const' ? [valueInfo(names[k], t.dtype, t.shape)] : []));
  const node = { opType: c.op, input: names, output: ['y'], name: 'n', attribute: Object.entries(c.attrs ?? {}).map(([k, v]) => attrProto(k, v)) };
  const model = O.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: c.opset }],
    graph: { name: 'g', node: [node], initializer, input: inputs, output: [valueInfo('y', out.dtype, out.shape)] },
  });
  return O.ModelProto.encode(model).finish();
}

const SPECIAL = [NaN, Infinity, -Infinity, 0, -0, 1, -1, 0.5, -0.5, 200, -200];
const x37 = (gen: Gen = signed) => [f([3, 7], gen)];

const ORT_CASES: OrtCase[] = [
  { op: 'Clip', what: 'attrs min/max (opset 6)', opset: 6, ins: x37(), attrs: { min: { f: -0.5 }, max: { f: 0.7 } }, tol: 0 },
  { op: 'Clip', what: 'min and max inputs (opset 13)', opset: 13, ins: [f([3, 7]), { ...scalar(-0.5), kind: 'const' }, { ...scalar(1.2), kind: 'const' }], tol: 0 },
  { op: 'Clip', what: 'max only (opset 13)', opset: 13, ins: [f([3, 7]), null, { ...scalar(0.3), kind: 'const' }], tol: 0 },
  { op: 'Clip', what: 'int64 (opset 13)', opset: 13, ins: [i64([9], ints(-9, 9)), { ...i64([], [-3]), kind: 'const' }, { ...i64([], [4]), kind: 'const' }], tol: 0 },
  { op: 'HardSigmoid', what: 'default', opset: 6, ins: x37(uniform(-4, 4)), tol: 1, abs: 2 ** -24 },
  { op: 'HardSigmoid', what: 'alpha 0.5 beta 0.6', opset: 6, ins: x37(uniform(-4, 4)), attrs: { alpha: { f: 0.5 }, beta: { f: 0.6 } }, tol: 1, abs: 2 ** -24 },
  { op: 'HardSwish', what: '', opset: 14, ins: x37(uniform(-5, 5)), tol: 2, abs: 1e-7 },
  { op: 'Elu', what: 'alpha 2', opset: 6, ins: x37(uniform(-6, 3)), attrs: { alpha: { f: 2 } }, tol: 3, abs: 4e-7 },
  { op: 'Selu', what: 'default', opset: 6, ins: x37(uniform(-6, 3)), tol: 3, abs: 4e-7 },
  { op: 'Celu', what: 'alpha 2', opset: 12, ins: x37(uniform(-6, 3)), attrs: { alpha: { f: 2 } }, tol: 3, abs: 4e-7 },
  { op: 'PRelu', what: 'slope [7]', opset: 16, ins: [f([3, 7]), f([7])], tol: 0 },
  { op: 'PRelu', what: 'slope [3,1]', opset: 9, ins: [f([3, 7]), f([3, 1])], tol: 0 },
  { op: 'Softsign', what: '', opset: 1, ins: x37(uniform(-10, 10)), tol: 1 },
  { op: 'ThresholdedRelu', what: 'alpha 0.5', opset: 10, ins: x37(), attrs: { alpha: { f: 0.5 } }, tol: 0 },
  { op: 'Shrink', what: 'lambd 0.7 bias 0.3', opset: 9, ins: x37(), attrs: { lambd: { f: 0.7 }, bias: { f: 0.3 } }, tol: 0 },
  { op: 'Abs', what: '', opset: 13, ins: x37(), tol: 0 },
  { op: 'Abs', what: 'int64', opset: 13, ins: [i64([7], ints(-9, 9))], tol: 0 },
  { op: 'Sign', what: 'with zeros and NaN', opset: 13, ins: [f([SPECIAL.length], SPECIAL)], tol: 0 },
  { op: 'Floor', what: '', opset: 13, ins: x37(uniform(-5, 5)), tol: 0 },
  { op: 'Ceil', what: '', opset: 13, ins: x37(uniform(-5, 5)), tol: 0 },
  { op: 'Round', what: 'halves to even', opset: 11, ins: x37(halves), tol: 0 },
  ...(
    [
      ['Sin', uniform(-20, 20), 7],
      ['Cos', uniform(-20, 20), 7],
      ['Tan', uniform(-1.5, 1.5), 7],
      ['Asin', uniform(-1, 1), 7],
      ['Acos', uniform(-1, 1), 7],
      ['Atan', uniform(-20, 20), 7],
      ['Sinh', uniform(-10, 10), 9],
      ['Cosh', uniform(-10, 10), 9],
      ['Asinh', uniform(-20, 20), 9],
      ['Acosh', uniform(1, 20), 9],
      ['Atanh', uniform(-0.99, 0.99), 9],
    ] as [string, Gen, number][]
  ).map(([op, gen, opset]): OrtCase => ({ op, what: '', opset, ins: x37(gen), tol: 4 })),
  { op: 'Max', what: 'three inputs, broadcast, ties', opset: 13, ins: [f([3, 4], coarse), f([4], coarse), f([3, 1], coarse)], tol: 0 },
  { op: 'Max', what: 'one input', opset: 8, ins: [f([5])], tol: 0 },
  { op: 'Max', what: 'int64', opset: 13, ins: [i64([6], ints(-9, 9)), i64([6], ints(-9, 9))], tol: 0 },
  { op: 'Min', what: 'two inputs, broadcast', opset: 13, ins: [f([3, 4], coarse), f([4], coarse)], tol: 0 },
  { op: 'Min', what: 'int64', opset: 13, ins: [i64([6], ints(-9, 9)), i64([1], [2])], tol: 0 },
  { op: 'Sum', what: 'three inputs, broadcast', opset: 13, ins: [f([3, 4]), f([4]), f([3, 1])], tol: 0 },
  { op: 'Sum', what: 'one input', opset: 8, ins: [f([5])], tol: 0 },
  { op: 'Mean', what: 'three inputs, broadcast', opset: 13, ins: [f([3, 4]), f([4]), f([3, 1])], tol: 1 },
  { op: 'Mod', what: 'fmod 1 float, mixed signs', opset: 13, ins: [f([3, 4], uniform(-10, 10)), f([4], [3, -2.5, 0.7, -4])], attrs: { fmod: { i: 1 } }, tol: 0 },
  { op: 'Mod', what: 'int64 Python sign', opset: 13, ins: [i64([8], [7, -7, 7, -7, 0, 9, -1, 5]), i64([8], [3, 3, -3, -3, 4, -4, 5, 5])], tol: 0 },
  { op: 'Mod', what: 'int64 fmod 1', opset: 13, ins: [i64([8], [7, -7, 7, -7, 0, 9, -1, 5]), i64([8], [3, 3, -3, -3, 4, -4, 5, 5])], attrs: { fmod: { i: 1 } }, tol: 0 },
  { op: 'And', what: 'broadcast', opset: 7, ins: [bool([3, 4]), bool([4])], tol: 0 },
  { op: 'Or', what: 'broadcast', opset: 7, ins: [bool([3, 4]), bool([3, 1])], tol: 0 },
  { op: 'Xor', what: 'broadcast', opset: 7, ins: [bool([3, 4]), bool([4])], tol: 0 },
  { op: 'IsNaN', what: 'special values', opset: 13, ins: [f([SPECIAL.length], SPECIAL)], tol: 0 },
  { op: 'IsInf', what: 'both signs', opset: 10, ins: [f([SPECIAL.length], SPECIAL)], tol: 0 },
  { op: 'IsInf', what: 'negative only', opset: 10, ins: [f([SPECIAL.length], SPECIAL)], attrs: { detect_positive: { i: 0 } }, tol: 0 },
];

describe('interpreter vs onnxruntime', () => {
  for (const c of ORT_CASES)
    it(`${c.op} ${c.what} (opset ${c.opset})`, async () => {
      const r = rng(seedOf(`ort ${c.op} ${c.what}`));
      const ins = c.ins.map((s) => (s ? operand(s, 'f32', r).tensor : null));
      const attrs: Attrs = Object.fromEntries(Object.entries(c.attrs ?? {}).map(([k, a]) => [k, 'i' in a ? a.i : Math.fround(a.f)]));
      const { g: probe } = singleNodeGraph(c.op, ins.map((t, k) => (t ? { tensor: t, kind: c.ins[k]?.kind } : undefined)), attrs);
      const o = probe.values.get(probe.nodes[0].outputs[0])!;
      const bytes = oneNodeModel(c, ins, { dtype: o.dtype, shape: o.shape as number[] });
      const session = await ort.InferenceSession.create(bytes);
      const { ortFeeds, ourFeeds } = splitFeeds(ins, (k) => c.ins[k]?.kind === 'const');
      const want = await session.run(ortFeeds);
      const g = runPipeline(importOnnx(bytes), passCtx({ policy: 'fp32' }), EVAL_PIPELINE);
      const got = runGraph(g, ourFeeds).get('y')!;
      const w = Array.from(want.y.data as ArrayLike<number | bigint | boolean>, Number);
      expect(got.shape).toEqual(want.y.dims.map(Number));
      const { ulp, at } = maxUlpF32(got.data, w, c.abs);
      expect(ulp, `y[${at}]: ours ${got.data[at]}, onnxruntime ${w[at]}`).toBeLessThanOrEqual(c.tol);
    });
});

// ---------------------------------------------------------------------------------------------
// 2. WebGPU vs interpreter.

/** f32 ulp bounds of the kernels that do not round once (measured on lavapipe; see the header). */
const ULP_F32: Record<string, number> = {
  HardSwish: 2,
  'mpc.HardSwishGrad': 2,
  Elu: 2,
  Selu: 2,
  Celu: 3,
  'mpc.EluGrad': 3,
  Softsign: 1,
  'mpc.SoftsignGrad': 2,
  Sin: 2,
  Cos: 2,
  Tan: 3,
  Asin: 2,
  Acos: 2,
  Atan: 2,
  Sinh: 2,
  Cosh: 2,
  Asinh: 2,
  Acosh: 2,
  Atanh: 2,
  'mpc.TanGrad': 2,
  'mpc.AsinGrad': 3,
  'mpc.AcosGrad': 3,
  'mpc.AtanGrad': 2,
  'mpc.AsinhGrad': 3,
  'mpc.AcoshGrad': 3,
  'mpc.AtanhGrad': 2,
};
/** Absolute f32 bounds (see the header). */
const ABS_F32: Record<string, number> = { HardSigmoid: 2 ** -24 };
const exact = (op: string) => !(op in ULP_F32) && !(op in ABS_F32);

interface GpuCase {
  op: string;
  what: string;
  ins: (In | null)[];
  attrs?: Attrs;
  /** Default f32, f16 (native and packed storage), bf16; integer/bool cases run once. */
  types?: FloatDType[];
}
/** f32 and f16 (native storage only): the special-value cases. */
const F32_F16: FloatDType[] = ['f32', 'f16'];

const ALL_T: FloatDType[] = ['f32', 'f16', 'bf16'];
const ONCE: FloatDType[] = ['f32'];
const GPU_CASES: GpuCase[] = [];
const unaryRanges: [string, Gen, Attrs?][] = [
  ['Clip', signed, { min: -0.5, max: 0.7 }],
  ['HardSigmoid', uniform(-4, 4)],
  ['HardSigmoid', uniform(-4, 4), { alpha: 0.3, beta: 0.4 }],
  ['HardSwish', uniform(-5, 5)],
  ['Elu', uniform(-6, 3)],
  ['Elu', uniform(-6, 3), { alpha: 0.5 }],
  ['Selu', uniform(-6, 3)],
  ['Celu', uniform(-6, 3), { alpha: 2 }],
  ['Softsign', uniform(-10, 10)],
  ['ThresholdedRelu', signed, { alpha: 0.4 }],
  ['Shrink', signed, { lambd: 0.6, bias: 0.2 }],
  ['Abs', signed],
  ['Sign', coarse],
  ['Floor', uniform(-5, 5)],
  ['Ceil', uniform(-5, 5)],
  ['Round', halves],
  ['Sin', uniform(-30, 30)],
  ['Cos', uniform(-30, 30)],
  ['Tan', uniform(-4, 4)],
  ['Asin', uniform(-1, 1)],
  ['Acos', uniform(-1, 1)],
  ['Atan', uniform(-30, 30)],
  ['Sinh', uniform(-12, 12)],
  ['Cosh', uniform(-12, 12)],
  ['Asinh', uniform(-30, 30)],
  ['Acosh', uniform(1, 30)],
  ['Atanh', uniform(-1, 1)],
];
for (const [op, gen, attrs] of unaryRanges) {
  GPU_CASES.push({ op, what: `[5,7]${attrs ? ` ${JSON.stringify(attrs)}` : ''}`, ins: [f([5, 7], gen)], attrs });
  // NaN, ±inf, ±0 and large arguments: the same non-finite results, NaN propagated.
  GPU_CASES.push({ op, what: `special values${attrs ? ` ${JSON.stringify(attrs)}` : ''}`, ins: [f([SPECIAL.length], SPECIAL)], attrs, types: F32_F16 });
}
GPU_CASES.push(
  { op: 'Clip', what: 'min/max inputs', ins: [f([5, 7]), scalar(-0.3), scalar(0.9)] },
  { op: 'Clip', what: 'min input only, [1]', ins: [f([5, 7]), { shape: [1], dtype: T, gen: [0.1] }] },
  { op: 'Clip', what: 'i64 with bounds', ins: [i64([9], ints(-9, 9)), i64([], [-2]), i64([], [5])], types: ONCE },
  { op: 'Clip', what: 'i64 attrs', ins: [i64([9], ints(-9, 9))], attrs: { min: -2, max: 5 }, types: ONCE },
  { op: 'PRelu', what: 'slope [7]', ins: [f([5, 7]), f([7])] },
  { op: 'PRelu', what: 'slope [5,1] with special x', ins: [f([5, 1 + 1], [NaN, -Infinity, Infinity, -0, 0, -1, 1, 2, -3, 0.5]), f([5, 1])] },
  { op: 'Abs', what: 'i64', ins: [i64([7], ints(-9, 9))], types: ONCE },
  { op: 'Sign', what: 'i64', ins: [i64([7], ints(-3, 3))], types: ONCE },
  { op: 'mpc.ClipGrad', what: 'x == y at ties', ins: [f([5, 7]), f([5, 7], coarse), f([5, 7], coarse)] },
  { op: 'mpc.HardSigmoidGrad', what: 'default', ins: [f([5, 7]), f([5, 7], uniform(-4, 4))], attrs: { alpha: 0.2, beta: 0.5 } },
  { op: 'mpc.HardSwishGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-5, 5))] },
  { op: 'mpc.EluGrad', what: 'Elu', ins: [f([5, 7]), f([5, 7], uniform(-6, 3))], attrs: { alpha: 1.5, scale: 1, divisor: 1 } },
  { op: 'mpc.EluGrad', what: 'Celu', ins: [f([5, 7]), f([5, 7], uniform(-6, 3))], attrs: { alpha: 2, scale: 1, divisor: 2 } },
  { op: 'mpc.PReluGrad', what: 'slope [7]', ins: [f([5, 7]), f([5, 7], (r, i) => (i % 6 === 0 ? 0 : signed(r, i))), f([7])] },
  { op: 'mpc.PReluSlopeGrad', what: '', ins: [f([5, 7]), f([5, 7])] },
  { op: 'mpc.SoftsignGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-10, 10))] },
  { op: 'mpc.ThresholdGrad', what: 'ThresholdedRelu', ins: [f([5, 7]), f([5, 7], coarse)], attrs: { lo: 0.5 } },
  { op: 'mpc.ThresholdGrad', what: 'Shrink', ins: [f([5, 7]), f([5, 7], coarse)], attrs: { lo: 0.5, hi: -0.5 } },
  { op: 'mpc.AbsGrad', what: 'with zeros', ins: [f([5, 7]), f([5, 7], coarse)] },
  { op: 'mpc.TanGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-10, 10))] },
  { op: 'mpc.AsinGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-0.99, 0.99))] },
  { op: 'mpc.AcosGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-0.99, 0.99))] },
  { op: 'mpc.AtanGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-10, 10))] },
  { op: 'mpc.AsinhGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-10, 10))] },
  { op: 'mpc.AcoshGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(1.01, 10))] },
  { op: 'mpc.AtanhGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-0.99, 0.99))] },
  // logic.ts
  { op: 'Max', what: 'three inputs, broadcast, ties', ins: [f([3, 4], coarse), f([4], coarse), f([3, 1], coarse)] },
  { op: 'Max', what: 'NaN and inf', ins: [f([6], [NaN, 1, -Infinity, Infinity, 2, 0]), f([6], [1, NaN, 3, 1, Infinity, -Infinity])], types: F32_F16 },
  { op: 'Max', what: 'one input', ins: [f([5])] },
  { op: 'Max', what: 'i64', ins: [i64([6], ints(-9, 9)), i64([6], ints(-9, 9))], types: ONCE },
  { op: 'Min', what: 'two inputs, broadcast, ties', ins: [f([3, 4], coarse), f([4], coarse)] },
  { op: 'Min', what: 'NaN and inf', ins: [f([6], [NaN, 1, -Infinity, Infinity, 2, 0]), f([6], [1, NaN, 3, 1, Infinity, -Infinity])], types: F32_F16 },
  { op: 'Min', what: 'i64, four inputs', ins: [i64([6], ints(-9, 9)), i64([6], ints(-9, 9)), i64([1], [0]), i64([6], ints(-9, 9))], types: ONCE },
  { op: 'Sum', what: 'three inputs, broadcast', ins: [f([3, 4]), f([4]), f([3, 1])] },
  { op: 'Sum', what: 'one input', ins: [f([5])] },
  { op: 'Sum', what: 'i64', ins: [i64([6], ints(-99, 99)), i64([6], ints(-99, 99))], types: ONCE },
  { op: 'Mean', what: 'three inputs, broadcast', ins: [f([3, 4]), f([4]), f([3, 1])] },
  { op: 'Mean', what: 'two inputs with inf', ins: [f([4], [Infinity, 1, NaN, -Infinity]), f([4], [1, -Infinity, 2, -Infinity])], types: F32_F16 },
  { op: 'mpc.ExtremumGrad', what: 'Max of three with ties', ins: [f([3, 4]), f([3, 4], [...Array(12)].map((_, i) => (i % 3) - 1)), f([3, 4], [...Array(12)].map((_, i) => (i % 3) - 1)), f([4], [-1, 0, 1, 1]), f([3, 1], [1, 0, -1])], attrs: { index: 1 } },
  { op: 'Mod', what: 'fmod 1, mixed signs', ins: [f([4, 4], uniform(-10, 10)), f([4], [3, -2.5, 0.7, -4])], attrs: { fmod: 1 } },
  { op: 'Mod', what: 'fmod 1, large quotients and specials', ins: [f([8], [1e30, -3e20, 7.5, NaN, Infinity, 5, 0, -0]), f([8], [3.3, 0.1, Infinity, 1, 2, 0, 2, 3])], attrs: { fmod: 1 }, types: ['f32'] },
  { op: 'Mod', what: 'i64 Python sign, zero divisor', ins: [i64([9], [7, -7, 7, -7, 0, 9, -1, 5, 3]), i64([9], [3, 3, -3, -3, 4, -4, 5, 5, 0])], types: ONCE },
  { op: 'Mod', what: 'i64 fmod 1', ins: [i64([8], [7, -7, 7, -7, 0, 9, -1, 5]), i64([8], [3, 3, -3, -3, 4, -4, 5, 5])], attrs: { fmod: 1 }, types: ONCE },
  { op: 'mpc.ModGrad', what: '', ins: [f([5, 7]), f([5, 7], uniform(-10, 10)), f([7], avoiding(-3, 3, [0], 0.3))] },
  { op: 'And', what: 'broadcast', ins: [bool([3, 4]), bool([4])], types: ONCE },
  { op: 'Or', what: 'broadcast', ins: [bool([3, 4]), bool([3, 1])], types: ONCE },
  { op: 'Xor', what: 'broadcast', ins: [bool([3, 4]), bool([4])], types: ONCE },
  { op: 'IsNaN', what: 'special values', ins: [f([SPECIAL.length], SPECIAL)] },
  { op: 'IsInf', what: 'both', ins: [f([SPECIAL.length], SPECIAL)] },
  { op: 'IsInf', what: 'positive only', ins: [f([SPECIAL.length], SPECIAL)], attrs: { detect_negative: 0 } },
);

function compareGpu(op: string, dtype: DType, got: ArrayLike<number>, want: ArrayLike<number>): string | undefined {
  const exactPart = exactPartMismatch(dtype, got, want);
  if (exactPart || !isFloat(dtype)) return exactPart;
  const allowed = exact(op) ? 0 : dtype === 'f32' ? (ULP_F32[op] ?? 0) : 1;
  const abs = dtype === 'f32' ? (ABS_F32[op] ?? 0) : 0;
  return worstUlpMismatch(dtype as FloatDType, got, want, allowed, (d) => d <= abs);
}

function runsOf(c: GpuCase): { t: FloatDType; target: Target }[] {
  const runs: { t: FloatDType; target: Target }[] = [];
  for (const t of c.types ?? ALL_T) {
    runs.push({ t, target: { f16: true } });
    if (t === 'f16' && !c.types) runs.push({ t, target: { f16: false } });
  }
  return runs;
}

describe('WebGPU kernels vs the interpreter', () => {
  for (const c of GPU_CASES)
    for (const run of runsOf(c))
      it(`${c.op} ${c.what} | T=${run.t}${run.t === 'f16' ? (run.target.f16 ? ' native' : ' packed') : ''}`, async () => {
        const r = rng(seedOf(`gpu ${c.op} ${c.what}`));
        const ins = c.ins.map((s) => (s ? operand(s, run.t, r) : undefined));
        const { g, feeds } = singleNodeGraph(c.op, ins, c.attrs);
        const env = runGraph(g, feeds);
        const [out] = await runNodeOnGpu(g, 0, env, run.target);
        const want = env.get(g.nodes[0].outputs[0])!;
        expect(compareGpu(c.op, want.dtype, out.data, want.data)).toBeUndefined();
      });
});

// ---------------------------------------------------------------------------------------------
// Accuracy on dense grids (the numbers behind ULP_F32).

describe('accuracy of the WGSL kernels (f32, dense grids)', () => {
  const grid = (lo: number, hi: number, n: number) => Array.from({ length: n }, (_, i) => lo + ((hi - lo) * i) / (n - 1));
  const tiny = grid(-1e-3, 1e-3, 101);
  const GRIDS: [string, number[], Attrs?][] = [
    ['Sin', [...grid(-100, 100, 6001), ...grid(-1e5, 1e5, 2001), ...tiny]],
    ['Cos', [...grid(-100, 100, 6001), ...grid(-1e5, 1e5, 2001), ...tiny]],
    ['Tan', [...grid(-10, 10, 6001), ...tiny]],
    ['Asin', [...grid(-1, 1, 6001), ...tiny]],
    ['Acos', [...grid(-1, 1, 6001), ...tiny]],
    ['Atan', [...grid(-50, 50, 6001), ...grid(-1e6, 1e6, 1001), ...tiny]],
    ['Sinh', [...grid(-89, 89, 6001), ...grid(-2, 2, 2001), ...tiny]],
    ['Cosh', [...grid(-89, 89, 6001), ...grid(-2, 2, 2001)]],
    ['Asinh', [...grid(-50, 50, 6001), ...grid(-1e30, 1e30, 1001), ...tiny]],
    ['Acosh', [...grid(1, 3, 4001), ...grid(3, 1e6, 2001), 1e30]],
    ['Atanh', [...grid(-1, 1, 6001), ...tiny]],
    ['Elu', [...grid(-20, 5, 4001), ...tiny]],
    ['Selu', [...grid(-20, 5, 4001), ...tiny]],
    ['Celu', [...grid(-20, 5, 4001), ...tiny], { alpha: 0.7 }],
    ['Softsign', grid(-1e4, 1e4, 4001)],
    ['HardSwish', grid(-5, 5, 4001)],
    ['HardSigmoid', grid(-5, 5, 4001)],
  ];
  for (const [op, xs, attrs] of GRIDS)
    it(`${op}: within ${op in ABS_F32 ? `${ABS_F32[op]} absolute` : `${ULP_F32[op]} ulp`}`, async () => {
      const { g, feeds } = singleNodeGraph(op, [{ tensor: tensorOf('f32', [xs.length], xs) }], attrs);
      const env = runGraph(g, feeds);
      const [got] = await runNodeOnGpu(g, 0, env);
      const want = env.get(g.nodes[0].outputs[0])!.data;
      const { ulp, at } = maxUlpF32(got.data, want, ABS_F32[op]);
      expect(ulp, `x = ${xs[at]}: got ${got.data[at]}, want ${want[at]}`).toBeLessThanOrEqual(ULP_F32[op] ?? 0);
    });
});

// ---------------------------------------------------------------------------------------------
// 3. Gradients vs finite differences.

interface GradCase {
  op: string;
  what: string;
  ins: (In | null)[];
  attrs?: Attrs;
  /** The rule gives no gradient (piecewise-constant ops): finite differences must be 0. */
  none?: boolean;
}

const f32 = (shape: number[], gen: Gen = signed): In => ({ shape, dtype: 'f32', gen });
const GRAD_CASES: GradCase[] = [
  { op: 'Clip', what: 'attrs', ins: [f32([2, 4], avoiding(-2, 2, [-0.5, 0.7]))], attrs: { min: -0.5, max: 0.7 } },
  { op: 'Clip', what: 'inputs', ins: [f32([2, 4], avoiding(-2, 2, [-0.5, 0.7])), { ...f32([], () => -0.5), kind: 'const' }, { ...f32([], () => 0.7), kind: 'const' }] },
  { op: 'HardSigmoid', what: 'default', ins: [f32([2, 4], avoiding(-4, 4, [-2.5, 2.5]))] },
  { op: 'HardSwish', what: '', ins: [f32([2, 4], avoiding(-5, 5, [-3, 3]))] },
  { op: 'Elu', what: 'alpha 0.5', ins: [f32([2, 4], avoiding(-3, 2, [0]))], attrs: { alpha: 0.5 } },
  { op: 'Selu', what: '', ins: [f32([2, 4], avoiding(-3, 2, [0]))] },
  { op: 'Celu', what: 'alpha 2', ins: [f32([2, 4], avoiding(-3, 2, [0]))], attrs: { alpha: 2 } },
  { op: 'PRelu', what: 'slope [3] broadcast', ins: [f32([2, 3], avoiding(-2, 2, [0])), f32([3])] },
  { op: 'PRelu', what: 'slope [2,1]', ins: [f32([2, 3], avoiding(-2, 2, [0])), f32([2, 1])] },
  { op: 'Softsign', what: '', ins: [f32([2, 4], uniform(-5, 5))] },
  { op: 'ThresholdedRelu', what: 'alpha 0.5', ins: [f32([2, 4], avoiding(-2, 2, [0.5]))], attrs: { alpha: 0.5 } },
  { op: 'Shrink', what: 'lambd 0.5 bias 0.2', ins: [f32([2, 4], avoiding(-2, 2, [-0.5, 0.5]))], attrs: { lambd: 0.5, bias: 0.2 } },
  { op: 'Abs', what: '', ins: [f32([2, 4], avoiding(-2, 2, [0]))] },
  { op: 'Sign', what: '', ins: [f32([2, 4], avoiding(-2, 2, [0]))], none: true },
  { op: 'Floor', what: '', ins: [f32([2, 4], avoiding(-3, 3, [-3, -2, -1, 0, 1, 2, 3]))], none: true },
  { op: 'Ceil', what: '', ins: [f32([2, 4], avoiding(-3, 3, [-3, -2, -1, 0, 1, 2, 3]))], none: true },
  { op: 'Round', what: '', ins: [f32([2, 4], avoiding(-3, 3, [-2.5, -1.5, -0.5, 0.5, 1.5, 2.5]))], none: true },
  { op: 'Sin', what: '', ins: [f32([2, 3], uniform(-4, 4))] },
  { op: 'Cos', what: '', ins: [f32([2, 3], uniform(-4, 4))] },
  { op: 'Tan', what: '', ins: [f32([2, 3], uniform(-1.2, 1.2))] },
  { op: 'Asin', what: '', ins: [f32([2, 3], uniform(-0.9, 0.9))] },
  { op: 'Acos', what: '', ins: [f32([2, 3], uniform(-0.9, 0.9))] },
  { op: 'Atan', what: '', ins: [f32([2, 3], uniform(-4, 4))] },
  { op: 'Sinh', what: '', ins: [f32([2, 3], uniform(-3, 3))] },
  { op: 'Cosh', what: '', ins: [f32([2, 3], uniform(-3, 3))] },
  { op: 'Asinh', what: '', ins: [f32([2, 3], uniform(-4, 4))] },
  { op: 'Acosh', what: '', ins: [f32([2, 3], uniform(1.2, 4))] },
  { op: 'Atanh', what: '', ins: [f32([2, 3], uniform(-0.9, 0.9))] },
  // Distinct values: no ties within the finite-difference step.
  { op: 'Max', what: 'three inputs, broadcast', ins: [f32([2, 3], (r, i) => i * 0.37 - 1 + 0.01 * r()), f32([3], (_r, i) => [0.2, -0.45, 0.9][i]), f32([2, 1], (_r, i) => [-0.1, 0.55][i])] },
  { op: 'Max', what: 'one input', ins: [f32([4])] },
  { op: 'Min', what: 'two inputs, broadcast', ins: [f32([2, 3], (r, i) => i * 0.37 - 1 + 0.01 * r()), f32([3], (_r, i) => [0.2, -0.45, 0.9][i])] },
  { op: 'Sum', what: 'three inputs, broadcast', ins: [f32([2, 3]), f32([3]), f32([2, 1])] },
  { op: 'Mean', what: 'three inputs, broadcast', ins: [f32([2, 3]), f32([3]), f32([2, 1])] },
  { op: 'Mod', what: 'fmod 1, both operands', ins: [f32([2, 3], (_r, i) => [5.3, -4.1, 2.2, -7.7, 0.45, 3.6][i]), f32([3], (_r, i) => [2.1, -1.7, 1.3][i])], attrs: { fmod: 1 } },
];

function weightedSum(t: Tensor, w: Float64Array): number {
  let s = 0;
  for (let i = 0; i < t.data.length; i++) s += w[i] * t.data[i];
  return s;
}

describe('gradients vs central finite differences', () => {
  for (const c of GRAD_CASES)
    it(`${c.op} ${c.what}`, () => {
      const r = rng(seedOf(`grad ${c.op} ${c.what}`));
      const ins = c.ins.map((s) => (s ? operand(s, 'f32', r) : undefined));
      const fwd = singleNodeGraph(c.op, ins, c.attrs);
      const out = fwd.g.nodes[0].outputs[0];
      const forward = (feeds: Record<string, Tensor>) => runGraph(fwd.g, feeds).get(out)!;
      const y0 = forward(fwd.feeds);
      const w = Float64Array.from(y0.data, () => uniform(-1, 1)(r, 0));

      const { g, feeds } = singleNodeGraph(c.op, ins, c.attrs);
      const n = g.nodes[0];
      const o = g.values.get(n.outputs[0])!;
      g.values.set('dy', { name: 'dy', dtype: o.dtype, shape: [...o.shape], role: 'input' });
      g.inputs.push('dy');
      feeds.dy = { dtype: 'f32', shape: o.shape as number[], data: Float32Array.from(w) };
      const dx = emitGradient(g, n, ['dy']);
      const genv = runGraph(g, feeds);

      const wrt = ins.flatMap((inp, k) => (inp && inp.kind !== 'const' && isFloat(inp.tensor.dtype) ? [k] : []));
      expect(wrt.length).toBeGreaterThan(0);
      for (const k of wrt) {
        if (c.none) expect(dx[k], `input ${k}: no gradient`).toBeUndefined();
        else expect(dx[k], `gradient of input ${k}`).toBeDefined();
        const an = c.none ? new Float32Array(sizeOf(ins[k]!.tensor.shape)) : genv.get(dx[k]!)!.data;
        const x = ins[k]!.tensor;
        if (!c.none) expect(genv.get(dx[k]!)!.shape, `gradient of input ${k}: shape`).toEqual(x.shape);
        const bad: string[] = [];
        const scale = Math.max(1, ...Array.from(an, Math.abs));
        for (let i = 0; i < x.data.length; i++) {
          const at = (delta: number) => {
            const d = Float32Array.from(x.data);
            d[i] = x.data[i] + delta;
            return { v: weightedSum(forward({ ...fwd.feeds, [fwd.names[k]]: { ...x, data: d } }), w), x: d[i] };
          };
          const h = 1e-2 * Math.max(1, Math.abs(x.data[i]));
          const [p, m] = [at(h), at(-h)];
          const fd = (p.v - m.v) / (p.x - m.x);
          if (!(Math.abs(fd - an[i]) <= 2e-3 * scale)) bad.push(`input ${k}[${i}] = ${x.data[i]}: rule ${an[i]}, finite differences ${fd}`);
        }
        expect(bad).toEqual([]);
      }
    });
});

// ---------------------------------------------------------------------------------------------
// 4. Fused: a chain of these rows (an absent optional input, variadic rows, helper functions of
//    both files) becomes one kernel whose values equal the interpreter's, as the unfused ones.

describe('fused chains', () => {
  for (const t of ['f32', 'f16'] as FloatDType[])
    it(`Clip (no min) -> Sin -> Max of 3 -> Mean -> HardSwish -> PRelu -> Mod: one kernel | T=${t}`, async () => {
      const r = rng(seedOf(`fused ${t}`));
      const g = emptyGraph('chain');
      const input = (name: string, shape: number[], gen: Gen) => {
        g.values.set(name, { name, dtype: t, shape, role: 'input' });
        g.inputs.push(name);
        return tensorOf(t, shape, Array.from({ length: sizeOf(shape) }, (_, i) => gen(r, i)));
      };
      const feeds = { x: input('x', [3, 4], uniform(-4, 4)), y: input('y', [4], signed), z: input('z', [3, 1], signed), s: input('s', [4], signed) };
      const hi = addConst(g, 'hi', tensorOf(t, [], [1.5]));
      const d = addConst(g, 'd', tensorOf(t, [], [0.75]));
      const node = (op: string, ins: string[], attrs: Attrs = {}) => addNode(g, op, ins, { attrs, name: op })[0];
      const out = node('Mod', [node('PRelu', [node('HardSwish', [node('Mean', [node('Max', [node('Sin', [node('Clip', ['x', '', hi])]), 'y', 'z']), 'y'])]), 's']), d], { fmod: 1 });
      g.outputs.push(out);
      const code = generate({ main: g }, { f16: true }, { keep: { main: [out] } });
      expect(code.kernels.map((k) => k.fused?.length ?? 1)).toEqual([7]);
      const want = runGraph(g, feeds).get(out)!;
      const got = (await runOnce(g, feeds, [out], 'webgpu', { f16: true })).get(out)!;
      // Each step as its own kernel would store it; Sin (2 ulp) moves what follows by a few ulp.
      const bad = Array.from(want.data).flatMap((v, i) => (Math.abs(got.data[i] - v) <= 1e-6 + (t === 'f16' ? 2e-3 : 1e-6) * Math.abs(v) ? [] : [`[${i}]: ${got.data[i]} vs ${v}`]));
      expect(bad).toEqual([]);
    });
});

// ---------------------------------------------------------------------------------------------

describe('coverage', () => {
  const rows = [...activationOps, ...logicOps];
  it('every row has a GPU case, an ORT case when it is an ONNX op, a gradient case when it has a rule', () => {
    for (const r of rows) {
      expect(r.wgsl, r.op).toBeDefined();
      expect(r.kind, r.op).toBe('elementwise');
      expect(r.expr, r.op).toBeDefined();
    }
    expect(rows.filter((r) => !GPU_CASES.some((c) => c.op === r.op)).map((r) => r.op)).toEqual([]);
    expect(rows.filter((r) => r.domain === '' && !ORT_CASES.some((c) => c.op === r.op)).map((r) => r.op)).toEqual([]);
    expect(rows.filter((r) => r.grad && !GRAD_CASES.some((c) => c.op === r.op)).map((r) => r.op)).toEqual([]);
  });
});
