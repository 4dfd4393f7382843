// The shape and data-movement ops of src/ops/shape.ts and src/ops/gather.ts:
//   1. against onnxruntime: a one-node ONNX model per case (shape/axes/index inputs as Constant
//      nodes), imported and run on the interpreter, compared exactly (they move data);
//   2. WebGPU against the interpreter, with the float operands in f32, f16 (both storage
//      layouts) and bf16: bit for bit, the sign of zero included;
//   3. gradient rules against central finite differences;
//   4. a small model using them all through the training pipeline, on the interpreter and
//      WebGPU, in fp32, fp16 and bf16.
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../src/interp/interpreter.js';
import { addConst, addNode, typeOf } from '../src/ir/build.js';
import { isFloat, toOnnx, type DType, type FloatDType } from '../src/ir/dtypes.js';
import { emptyGraph, type Attrs, type Graph } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { importOnnx } from '../src/onnx/import.js';
import { opRow } from '../src/ops/table.js';
import { dropoutBits, gatherOps } from '../src/ops/gather.js';
import { shapeOps } from '../src/ops/shape.js';
import { passCtx } from '../src/compile/options.js';
import { bindDims } from '../src/passes/bind-dims.js';
import { foldConstants } from '../src/passes/fold-constants.js';
import { inferTypes } from '../src/passes/infer-types.js';
import { runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import type { Target } from '../src/codegen/kernel.js';
import { runNodeOnGpu, runOnGpu } from './helpers/gpu.js';
import { dyObjective, ORT_TYPE, ortNumbers, rawBytes, withGradients } from './helpers/op-harness.js';
import { rng, seedOf, tensorOf } from './helpers/single-node.js';

const P = onnx.onnx;
const A = { FLOAT: 1, INT: 2, TENSOR: 4, INTS: 7 };
const INT64_MAX = 9223372036854775807n;
const INT64_MIN = -9223372036854775808n;

type Gen = (r: () => number, i: number) => number;
const signed: Gen = (r) => Math.round((r() * 4 - 2) * 1024) / 1024;
/** Values with zeros of both signs, so that moves are checked to keep the sign of zero. */
const withZeros: Gen = (r, i) => (i % 7 === 3 ? -0 : i % 5 === 1 ? 0 : signed(r, i));

/** An operand. dtype T: the swept float type (f32 for onnxruntime). `c`: a Constant node / graph constant. */
interface In {
  shape: number[];
  dtype?: DType | 'T';
  gen?: Gen | (number | bigint)[];
  c?: boolean;
}

interface Case {
  op: string;
  what: string;
  ins: (In | null)[];
  attrs?: Attrs;
  outputs?: number;
  opset?: number;
  /** Compare with onnxruntime (default true). */
  ort?: boolean;
  /** Float types for the GPU sweep (default f32/f16/bf16 when an input is T; else one run). */
  types?: FloatDType[];
  /** Outputs whose cotangent is left out in the gradient check (they do not reach the loss). */
  noGrad?: number[];
  /** Run the finite-difference gradient check. */
  grad?: boolean;
}

const T = 'T' as const;
const f = (...shape: number[]): In => ({ shape, dtype: T, gen: withZeros });
const i64 = (...v: (number | bigint)[]): In => ({ shape: [v.length], dtype: 'i64', gen: v, c: true });
const s64 = (v: number): In => ({ shape: [], dtype: 'i64', gen: [v], c: true });

const CASES: Case[] = [
  // Concat.
  { op: 'Concat', what: '[2,3]+[2,4] axis 1', ins: [f(2, 3), f(2, 4)], attrs: { axis: 1 }, grad: true },
  { op: 'Concat', what: '[2,3]+[1,3]+[3,3] axis 0', ins: [f(2, 3), f(1, 3), f(3, 3)], attrs: { axis: 0 }, grad: true },
  { op: 'Concat', what: '[2,1,3]+[2,4,3] axis -2', ins: [f(2, 1, 3), f(2, 4, 3)], attrs: { axis: -2 } },
  { op: 'Concat', what: '9 inputs (two kernels) axis 1, odd sizes', ins: [1, 2, 1, 3, 1, 1, 2, 1, 3].map((k) => f(3, k)), attrs: { axis: 1 }, grad: true },
  // (The empty operand is a constant: the importer reads a dim_value of 0 as a dynamic dimension.)
  { op: 'Concat', what: '[2,0]+[2,3] (empty input)', ins: [{ ...f(2, 0), c: true }, f(2, 3)], attrs: { axis: 1 } },
  { op: 'Concat', what: 'i64 shapes [1]+[1]+[2]', ins: [1, 1, 2].map((k) => ({ shape: [k], dtype: 'i64' as DType, gen: [3, -1, 7, 0].slice(0, k) })), attrs: { axis: 0 } },
  // Split.
  { op: 'Split', what: '[6,4] split [1,2,3] axis 0', ins: [f(6, 4), i64(1, 2, 3)], outputs: 3, grad: true },
  { op: 'Split', what: '[2,6] equal, 3 outputs, axis 1', ins: [f(2, 6)], attrs: { axis: 1 }, outputs: 3, grad: true },
  { op: 'Split', what: '[2,7] num_outputs 3 (opset 18, last smaller)', ins: [f(2, 7)], attrs: { axis: -1, num_outputs: 3 }, outputs: 3, opset: 18 },
  { op: 'Split', what: 'opset 11 attribute split [2,4] axis 0', ins: [f(6, 3)], attrs: { split: [2, 4] }, outputs: 2, opset: 11 },
  { op: 'Split', what: '[5] split [0,5] (empty output)', ins: [f(5), i64(0, 5)], outputs: 2 },
  { op: 'Split', what: '[4,3] output 1 unused in the gradient', ins: [f(4, 3), i64(1, 3)], outputs: 2, grad: true, noGrad: [1], ort: false },
  // Slice.
  { op: 'Slice', what: '[4,5] [1:3, 0:5]', ins: [f(4, 5), i64(1, 0), i64(3, 5)], grad: true },
  { op: 'Slice', what: '[6] negative start/end [-4:-1]', ins: [f(6), i64(-4), i64(-1)] },
  { op: 'Slice', what: '[3,5] axis 1 [1:INT64_MAX]', ins: [f(3, 5), i64(1), i64(INT64_MAX), i64(1)] },
  { op: 'Slice', what: '[7] reversed [-1:INT64_MIN:-1]', ins: [f(7), i64(-1), i64(INT64_MIN), i64(0), i64(-1)], grad: true },
  { op: 'Slice', what: '[3,8] axes [1,0] steps [2,-2]', ins: [f(3, 8), i64(1, 2), i64(7, -100), i64(1, 0), i64(2, -2)], grad: true },
  { op: 'Slice', what: '[2,3,4] axis -1 step 3 [0:100]', ins: [f(2, 3, 4), i64(0), i64(100), i64(-1), i64(3)], grad: true },
  { op: 'Slice', what: '[4] start out of range (empty)', ins: [f(4), i64(10), i64(20)] },
  { op: 'Slice', what: 'opset 9 attributes', ins: [f(4, 6)], attrs: { starts: [1, -3], ends: [1000, -1], axes: [0, 1] }, opset: 9, grad: true },
  { op: 'Slice', what: 'i64 [5] [1:4]', ins: [{ shape: [5], dtype: 'i64', gen: [5, 6, 7, 8, 9] }, i64(1), i64(4)] },
  // Shape.
  { op: 'Shape', what: '[2,3,4]', ins: [f(2, 3, 4)], opset: 13 },
  { op: 'Shape', what: 'start 1 (opset 15)', ins: [f(2, 3, 4)], attrs: { start: 1 }, opset: 15 },
  { op: 'Shape', what: 'end -1 (opset 15)', ins: [f(2, 3, 4)], attrs: { end: -1 }, opset: 15 },
  { op: 'Shape', what: 'start -2 end 10 (clamped)', ins: [f(2, 3, 4)], attrs: { start: -2, end: 10 }, opset: 15 },
  // Unsqueeze / Squeeze.
  { op: 'Unsqueeze', what: '[2,3] axes [0,3]', ins: [f(2, 3), i64(0, 3)], grad: true },
  { op: 'Unsqueeze', what: '[2,3] axes [-1]', ins: [f(2, 3), i64(-1)] },
  { op: 'Unsqueeze', what: 'opset 11 attribute axes [1]', ins: [f(2, 3)], attrs: { axes: [1] }, opset: 11 },
  { op: 'Unsqueeze', what: 'scalar i64 -> [1]', ins: [{ shape: [], dtype: 'i64', gen: [4] }, i64(0)] },
  { op: 'Squeeze', what: '[1,3,1,2] axes [0,2]', ins: [f(1, 3, 1, 2), i64(0, 2)], grad: true },
  { op: 'Squeeze', what: '[1,3,1,2] all ones', ins: [f(1, 3, 1, 2)] },
  { op: 'Squeeze', what: 'opset 11 attribute axes [-2]', ins: [f(1, 3, 1, 2)], attrs: { axes: [-2] }, opset: 11 },
  // Expand.
  { op: 'Expand', what: '[3,1] to [2,3,4]', ins: [f(3, 1), i64(2, 3, 4)], grad: true },
  { op: 'Expand', what: '[1,4] with shape [3,1]', ins: [f(1, 4), i64(3, 1)], grad: true },
  { op: 'Expand', what: '[] to [2,2]', ins: [f(), i64(2, 2)], grad: true },
  { op: 'Expand', what: '[2,3] with shape [3] (unchanged)', ins: [f(2, 3), i64(3)] },
  // Range.
  { op: 'Range', what: 'i64 0..10 step 3', ins: [s64(0), s64(10), s64(3)] },
  { op: 'Range', what: 'i64 10..4 step -2', ins: [s64(10), s64(4), s64(-2)] },
  { op: 'Range', what: 'i32 5..-5 step -3', ins: [5, -5, -3].map((v) => ({ shape: [], dtype: 'i32' as DType, gen: [v], c: true })) },
  { op: 'Range', what: 'f32 1.5..4 step 0.5', ins: [1.5, 4, 0.5].map((v) => ({ shape: [], dtype: 'f32' as DType, gen: [v], c: true })) },
  { op: 'Range', what: 'empty (limit < start)', ins: [s64(3), s64(1), s64(1)] },
  // ConstantOfShape.
  { op: 'ConstantOfShape', what: '[2,3] default (f32 0)', ins: [i64(2, 3)] },
  { op: 'ConstantOfShape', what: '[4] i64 7', ins: [i64(4)], attrs: { value: { dtype: 'i64', shape: [1], data: Int32Array.of(7) } } },
  { op: 'ConstantOfShape', what: '[3,1] f32 -2.5', ins: [i64(3, 1)], attrs: { value: { dtype: 'f32', shape: [1], data: Float32Array.of(-2.5) } } },
  { op: 'ConstantOfShape', what: '[2,2] f32 -inf (attention masks)', ins: [i64(2, 2)], attrs: { value: { dtype: 'f32', shape: [1], data: Float32Array.of(-Infinity) } } },
  // Gather.
  { op: 'Gather', what: 'embedding [5,3] indices [2,4] (repeats, negative)', ins: [f(5, 3), { shape: [2, 4], dtype: 'i64', gen: [0, 4, 2, 2, -1, 0, 3, 2] }], grad: true },
  { op: 'Gather', what: '[2,5,3] axis 1 indices [3]', ins: [f(2, 5, 3), { shape: [3], dtype: 'i64', gen: [4, 0, 4] }], attrs: { axis: 1 }, grad: true },
  { op: 'Gather', what: '[2,5] axis -1 scalar index', ins: [f(2, 5), { shape: [], dtype: 'i64', gen: [3] }], attrs: { axis: -1 }, grad: true },
  { op: 'Gather', what: 'i32 indices [3]', ins: [f(4, 2), { shape: [3], dtype: 'i32', gen: [3, 1, 3] }] },
  { op: 'Gather', what: 'shape element: i64 [4] at 0', ins: [{ shape: [4], dtype: 'i64', gen: [8, 3, 4, 4] }, s64(0)] },
  // Dropout: inference forms are compared with onnxruntime; training mode (random) is not.
  { op: 'Dropout', what: 'training_mode false, ratio 0.3, mask', ins: [f(3, 5), { shape: [], dtype: 'f32', gen: [0.3], c: true }, { shape: [], dtype: 'bool', gen: [0], c: true }], outputs: 2 },
  { op: 'Dropout', what: 'no training_mode (inference)', ins: [f(3, 5), { shape: [], dtype: 'f32', gen: [0.5], c: true }], outputs: 2 },
  { op: 'Dropout', what: 'training, ratio 0 (identity)', ins: [f(3, 5), { shape: [], dtype: 'f32', gen: [0], c: true }, { shape: [], dtype: 'bool', gen: [1], c: true }], outputs: 2 },
  // Opsets 7-11: onnxruntime writes an all-false mask (IdentityOp<true>), mpc all-true as opset 12+ specifies; only the output is compared.
  { op: 'Dropout', what: 'opset 10 (ratio attribute, inference)', ins: [f(3, 5)], attrs: { ratio: 0.2 }, outputs: 1, opset: 10 },
  {
    op: 'Dropout',
    what: 'training, ratio 0.5, seed 7',
    ins: [f(7, 9), { shape: [], dtype: 'f32', gen: [0.5], c: true }, { shape: [], dtype: 'bool', gen: [1], c: true }],
    attrs: { seed: 7 },
    outputs: 2,
    ort: false,
    grad: true,
  },
  {
    op: 'Dropout',
    what: 'training, ratio 0.75, step input 3',
    ins: [f(5, 8), { shape: [], dtype: 'f32', gen: [0.75], c: true }, { shape: [], dtype: 'bool', gen: [1], c: true }, { shape: [], dtype: 'i32', gen: [3], c: true }],
    outputs: 2,
    ort: false,
    grad: true,
  },
  // Internal gradient ops, on their own.
  { op: 'mpc.SliceGrad', what: '[3,8] axes [1,0] steps [2,-2]', ins: [f(2, 3), i64(1, 2), i64(7, -100), i64(1, 0), i64(2, -2)], attrs: { shape: [3, 8] }, ort: false },
  { op: 'mpc.SliceGrad', what: 'attributes (Slice-1)', ins: [f(3, 2)], attrs: { starts: [1, -3], ends: [1000, -1], axes: [0, 1], shape: [4, 6] }, ort: false },
  { op: 'mpc.GatherGrad', what: '[5,3] from [2,4] (repeats, negative)', ins: [f(2, 4, 3), { shape: [2, 4], dtype: 'i64', gen: [0, 4, 2, 2, -1, 0, 3, 2] }], attrs: { axis: 0, shape: [5, 3] }, ort: false },
  { op: 'mpc.GatherGrad', what: '[2,5,3] axis 1', ins: [f(2, 3, 3), { shape: [3], dtype: 'i64', gen: [4, 0, 4] }], attrs: { axis: 1, shape: [2, 5, 3] }, ort: false },
];

// ---------------------------------------------------------------------------------------------
// Building a case.

function values(spec: In, dtype: DType, r: () => number): (number | bigint)[] {
  const n = sizeOf(spec.shape);
  const gen = spec.gen ?? withZeros;
  return Array.isArray(gen) ? gen : Array.from({ length: n }, (_, i) => gen(r, i));
}

/** Numbers as mpc holds them: i64 saturated to i32 as the importer does. */
function tensorFor(dtype: DType, shape: number[], vals: (number | bigint)[]): Tensor {
  const nums = vals.map((v) => (typeof v === 'bigint' ? (v > 2147483647n ? 2147483647 : v < -2147483648n ? -2147483648 : Number(v)) : v));
  return tensorOf(dtype, shape, nums);
}

function dtypeOf(spec: In, t: FloatDType): DType {
  return !spec.dtype || spec.dtype === T ? t : spec.dtype;
}

/** The case as an IR graph of one node: operands as graph inputs (or constants). */
function irCase(c: Case, t: FloatDType): { g: Graph; feeds: Record<string, Tensor> } {
  const g = emptyGraph(c.op);
  const r = rng(seedOf(`${c.op} ${c.what}`));
  const feeds: Record<string, Tensor> = {};
  const names = c.ins.map((spec, k) => {
    if (!spec) return '';
    const tensor = tensorFor(dtypeOf(spec, t), spec.shape, values(spec, dtypeOf(spec, t), r));
    if (spec.c) return addConst(g, `c${k}`, tensor);
    const name = `in${k}`;
    g.values.set(name, { name, dtype: tensor.dtype, shape: [...tensor.shape], role: 'input' });
    g.inputs.push(name);
    feeds[name] = tensor;
    return name;
  });
  const outs = addNode(g, c.op, names, { attrs: c.attrs, name: 'node', outputs: c.outputs ?? 1 });
  g.outputs.push(...outs);
  g.meta.typed = true;
  return { g, feeds };
}

function attrProto(name: string, v: Attrs[string]) {
  if (typeof v === 'number') return Number.isInteger(v) && name !== 'ratio' ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
  if (Array.isArray(v)) return { name, type: A.INTS, ints: v as number[] };
  if (typeof v === 'object') {
    const t = v as Tensor;
    return { name, type: A.TENSOR, t: { dims: t.shape, dataType: toOnnx(t.dtype), rawData: rawBytes(t.dtype, Array.from(t.data)) } };
  }
  throw new Error(`attribute ${name}`);
}

/** The case as a one-node ONNX model (f32 data); returns it with onnxruntime's feeds. */
function onnxCase(c: Case): { bytes: Uint8Array; feeds: Record<string, ort.Tensor>; outputs: string[] } {
  const r = rng(seedOf(`${c.op} ${c.what}`));
  const nodes: object[] = [];
  const inputs: object[] = [];
  const feeds: Record<string, ort.Tensor> = {};
  const names = c.ins.map((spec, k) => {
    if (!spec) return '';
    const dtype = dtypeOf(spec, 'f32');
    const vals = values(spec, dtype, r);
    const name = spec.c ? `c${k}` : `in${k}`;
    if (spec.c) nodes.push({ opType: 'Constant', input: [], output: [name], attribute: [{ name: 'value', type: A.TENSOR, t: { dims: spec.shape, dataType: toOnnx(dtype), rawData: rawBytes(dtype, vals) } }] });
    else {
      inputs.push({ name, type: { tensorType: { elemType: toOnnx(dtype), shape: { dim: spec.shape.map((d) => ({ dimValue: d })) } } } });
      const data = dtype === 'i64' ? BigInt64Array.from(vals.map((v) => BigInt(v))) : dtype === 'f32' ? Float32Array.from(vals as number[]) : Int32Array.from(vals as number[]);
      feeds[name] = new ort.Tensor(ORT_TYPE[dtype], data, spec.shape);
    }
    return name;
  });
  const outputs = Array.from({ length: c.outputs ?? 1 }, (_, k) => `out${k}`);
  nodes.push({ opType: c.op, input: names, output: outputs, attribute: Object.entries(c.attrs ?? {}).map(([k, v]) => attrProto(k, v)) });
  // Output types: whatever mpc infers (onnxruntime does not need them to run).
  const { g } = irCase(c, 'f32');
  const output = outputs.map((o, k) => ({ name: o, type: { tensorType: { elemType: toOnnx(g.values.get(g.nodes[0].outputs[k])!.dtype) } } }));
  const graph = { name: c.op, node: nodes, input: inputs, output };
  const bytes = P.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: c.opset ?? 13 }], graph }).finish();
  return { bytes, feeds, outputs };
}

/** First difference between two number lists, comparing floats by their bits (sign of zero included). */
function firstDiff(got: ArrayLike<number>, want: ArrayLike<number>, ulps = 0): string | undefined {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (Object.is(g, w) || (Number.isNaN(g) && Number.isNaN(w))) continue;
    if (ulps && Math.abs(g - w) <= ulps * Math.abs(w) * 2 ** -23) continue;
    return `[${i}]: got ${Object.is(g, -0) ? '-0' : g}, want ${Object.is(w, -0) ? '-0' : w}`;
  }
  return undefined;
}

const hasT = (c: Case) => c.ins.some((i) => i && (!i.dtype || i.dtype === T));

// ---------------------------------------------------------------------------------------------
// Coverage: test/kernels.test.ts and test/grad-check.test.ts leave these rows to this file.

describe('coverage', () => {
  const rows = [...shapeOps, ...gatherOps];
  it('every row of shape.ts and gather.ts has a case (kernels run on the GPU for every case)', () => {
    expect(rows.filter((r) => !CASES.some((c) => c.op === r.op)).map((r) => r.op)).toEqual([]);
  });
  it('every gradient rule has a finite-difference case', () => {
    expect(rows.filter((r) => r.grad && !CASES.some((c) => c.op === r.op && c.grad)).map((r) => r.op)).toEqual([]);
  });
  it('every ONNX op has an onnxruntime case', () => {
    expect(rows.filter((r) => r.domain === '' && !CASES.some((c) => c.op === r.op && c.ort !== false)).map((r) => r.op)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// 1. onnxruntime.

describe('shape ops vs onnxruntime (import, interpreter, WebGPU f32)', () => {
  for (const c of CASES.filter((c) => c.ort !== false && !c.op.startsWith('mpc.')))
    it(`${c.op} ${c.what}`, async () => {
      const { bytes, feeds, outputs } = onnxCase(c);
      const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
      const want = await s.run(feeds);
      const g = runPipeline(importOnnx(bytes), passCtx({ policy: 'fp32', batch: 1 }), [bindDims, foldConstants, inferTypes]);
      const mpcFeeds: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) mpcFeeds[k] = tensorFor(g.values.get(k)!.dtype, [...v.dims], ortNumbers(v));
      const env = runGraph(g, mpcFeeds);
      for (const o of outputs) {
        const got = env.get(o)!;
        expect(got.shape, `${o} shape`).toEqual([...want[o].dims]);
        expect(firstDiff(got.data, ortNumbers(want[o]), c.op === 'Range' ? 1 : 0), o).toBeUndefined();
      }
      // Every node left (shape ops are folded away) on the GPU, on the interpreter's inputs.
      for (let k = 0; k < g.nodes.length; k++) {
        const outs = await runNodeOnGpu(g, k, env);
        g.nodes[k].outputs.forEach((o, j) => o && expect(firstDiff(outs[j].data, env.get(o)!.data), `${o} on the GPU`).toBeUndefined());
      }
    });
});

// ---------------------------------------------------------------------------------------------
// 2. WebGPU vs the interpreter, per float type and f16 storage layout.

interface Run {
  t: FloatDType;
  target: Target;
}

function runsOf(c: Case): Run[] {
  const types = c.types ?? (hasT(c) ? (['f32', 'f16', 'bf16'] as FloatDType[]) : (['f32'] as FloatDType[]));
  return types.flatMap((t) => (t === 'f16' ? [{ t, target: { f16: true } }, { t, target: { f16: false } }] : [{ t, target: { f16: true } }]));
}

describe('WGSL kernels vs the interpreter (bit-exact)', () => {
  for (const c of CASES)
    for (const run of runsOf(c))
      it(`${c.op} ${c.what} | ${run.t}${run.t === 'f16' ? (run.target.f16 ? ' native' : ' packed') : ''}`, async () => {
        const { g, feeds } = irCase(c, run.t);
        const env = runGraph(g, feeds);
        const n = g.nodes[0];
        const row = opRow(n.op);
        if (!row.wgsl && !row.alias?.view) {
          // Compile-time only (Shape): fold-constants always replaces it.
          expect(n.op).toBe('Shape');
          return;
        }
        const outs = await runNodeOnGpu(g, 0, env, run.target);
        n.outputs.forEach((o, k) => {
          if (!o) return;
          const want = env.get(o)!;
          const ulps = c.op === 'Range' && run.t === 'f32' ? 1 : 0;
          expect(firstDiff(outs[k].data, want.data, ulps), `output ${k} ${want.dtype}[${want.shape}]`).toBeUndefined();
        });
      });
});

// ---------------------------------------------------------------------------------------------
// 3. Gradients vs central finite differences. Every op here is linear in its float input (for
// Dropout: given the mask), so a step of 1 is exact up to rounding of the sums.

describe('gradient rules vs finite differences', () => {
  for (const c of CASES.filter((c) => c.grad))
    it(`${c.op} ${c.what}`, () => {
      const { g, feeds } = irCase(c, 'f32');
      const node = g.nodes[0];
      const { bg, dx, dys } = withGradients(g, feeds, `dy ${c.op} ${c.what}`, (r) => signed(r, 0), c.noGrad);
      const benv = runGraph(bg, feeds);
      // Also run every emitted gradient node on the GPU (f32).
      const checks: Promise<void>[] = [];
      for (let k = 1; k < bg.nodes.length; k++)
        checks.push(
          runNodeOnGpu(bg, k, benv).then((outs) =>
            bg.nodes[k].outputs.forEach((o, j) => o && expect(firstDiff(outs[j].data, benv.get(o)!.data), `${bg.nodes[k].op} on the GPU`).toBeUndefined()),
          ),
        );
      node.inputs.forEach((name, k) => {
        const spec = c.ins[k];
        if (!spec || spec.c || !isFloat(typeOf(g, name).dtype)) {
          expect(dx[k], `input ${k} has no gradient`).toBeUndefined();
          return;
        }
        const x = feeds[name];
        const analytic = benv.get(dx[k]!)!.data;
        for (let j = 0; j < x.data.length; j++) {
          const plus = Float32Array.from(x.data);
          const minus = Float32Array.from(x.data);
          plus[j] += 1;
          minus[j] -= 1;
          const fd = (dyObjective(g, { ...feeds, [name]: { ...x, data: plus } }, dys) - dyObjective(g, { ...feeds, [name]: { ...x, data: minus } }, dys)) / 2;
          expect(Math.abs(analytic[j] - fd), `d input ${k} [${j}]: rule ${analytic[j]}, finite difference ${fd}`).toBeLessThan(1e-5 * (1 + Math.abs(fd)));
        }
      });
      return Promise.all(checks);
    });
});

// ---------------------------------------------------------------------------------------------
// Dropout's random mask.

describe('Dropout in training mode', () => {
  const build = (ratio: number, seed: number, step?: number) =>
    irCase(
      {
        op: 'Dropout',
        what: 'stats',
        ins: [
          { shape: [64, 64], dtype: 'f32', gen: () => 1 },
          { shape: [], dtype: 'f32', gen: [ratio], c: true },
          { shape: [], dtype: 'bool', gen: [1], c: true },
          ...(step === undefined ? [] : [{ shape: [], dtype: 'i32' as DType, gen: [step], c: true }]),
        ],
        attrs: { seed },
        outputs: 2,
      },
      'f32',
    );
  it('drops about `ratio` of the elements and scales the rest by 1/(1-ratio)', () => {
    for (const ratio of [0.1, 0.5, 0.9]) {
      const { g, feeds } = build(ratio, 1);
      const env = runGraph(g, feeds);
      const y = env.get(g.nodes[0].outputs[0])!.data;
      const mask = env.get(g.nodes[0].outputs[1])!.data;
      const dropped = Array.from(mask).filter((m) => m === 0).length / mask.length;
      expect(Math.abs(dropped - ratio), `ratio ${ratio}: dropped ${dropped}`).toBeLessThan(0.03);
      for (let i = 0; i < y.length; i++) expect(y[i]).toBe(mask[i] ? Math.fround(1 / Math.fround(1 - Math.fround(ratio))) : 0);
    }
  });
  it('the mask depends on the seed and the step, and is reproducible', () => {
    const maskOf = (seed: number, step?: number) => {
      const { g, feeds } = build(0.5, seed, step);
      return Array.from(runGraph(g, feeds).get(g.nodes[0].outputs[1])!.data);
    };
    expect(maskOf(1)).toEqual(maskOf(1));
    expect(maskOf(1, 0)).toEqual(maskOf(1));
    expect(maskOf(1)).not.toEqual(maskOf(2));
    expect(maskOf(1, 1)).not.toEqual(maskOf(1, 2));
    // Neighbouring elements and steps are not correlated (about half agree).
    const a = maskOf(1, 1);
    const b = maskOf(1, 2);
    const agree = a.filter((v, i) => v === b[i]).length / a.length;
    expect(Math.abs(agree - 0.5)).toBeLessThan(0.03);
    expect(dropoutBits(1, 1, 0)).not.toBe(dropoutBits(1, 1, 1));
  });
});

// ---------------------------------------------------------------------------------------------
// 4. A model with these ops through the training pipeline.

/** tokens [N,4] -> embedding [10,6] -> MatMul -> Split/Concat/Slice/Unsqueeze/Squeeze/Expand/Dropout -> Flatten -> Gemm -> [N,5]. */
function trainModel(): Uint8Array {
  const r = rng(seedOf('train model'));
  const init = (name: string, dims: number[]) => ({ name, dims, dataType: 1, rawData: rawBytes('f32', Array.from({ length: sizeOf(dims) }, () => (r() - 0.5) * 0.8)) });
  const cst = (name: string, dtype: DType, dims: number[], vals: (number | bigint)[]) => ({
    opType: 'Constant',
    input: [],
    output: [name],
    attribute: [{ name: 'value', type: A.TENSOR, t: { dims, dataType: toOnnx(dtype), rawData: rawBytes(dtype, vals) } }],
  });
  const node = (opType: string, input: string[], output: string[], attrs: Attrs = {}) => ({ opType, input, output, attribute: Object.entries(attrs).map(([k, v]) => attrProto(k, v)) });
  const graph = {
    name: 'shape-ops',
    node: [
      node('Gather', ['emb', 'tokens'], ['e']), // [N,4,6]
      node('MatMul', ['e', 'm'], ['em']), // allow: the ops below then follow the policy's low type
      cst('split', 'i64', [2], [1, 3]),
      node('Split', ['em', 'split'], ['e0', 'e1'], { axis: 1 }),
      node('Concat', ['e1', 'e0'], ['c'], { axis: 1 }), // rotated along the sequence
      cst('s0', 'i64', [1], [-1]),
      cst('s1', 'i64', [1], [INT64_MIN]),
      cst('ax', 'i64', [1], [2]),
      cst('st', 'i64', [1], [-1]),
      node('Slice', ['c', 's0', 's1', 'ax', 'st'], ['rev']), // reversed features
      cst('a0', 'i64', [1], [0]),
      node('Unsqueeze', ['rev', 'a0'], ['u']),
      node('Squeeze', ['u', 'a0'], ['sq']),
      node('Shape', ['sq'], ['shp']),
      node('Expand', ['pos', 'shp'], ['pe']), // pos [4,1] broadcast over batch and features
      node('Add', ['sq', 'pe'], ['h']),
      cst('ratio', 'f32', [], [0.25]),
      cst('train', 'bool', [], [1]),
      node('Dropout', ['h', 'ratio', 'train'], ['d'], { seed: 5 }),
      node('Flatten', ['d'], ['flat']),
      node('Gemm', ['flat', 'w', 'b'], ['logits'], { transB: 1 }),
    ],
    input: [{ name: 'tokens', type: { tensorType: { elemType: 7, shape: { dim: [{ dimParam: 'N' }, { dimValue: 4 }] } } } }],
    output: [{ name: 'logits', type: { tensorType: { elemType: 1, shape: { dim: [{ dimParam: 'N' }, { dimValue: 5 }] } } } }],
    initializer: [init('emb', [10, 6]), init('m', [6, 6]), init('pos', [4, 1]), init('w', [5, 24]), init('b', [5])],
  };
  return P.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph }).finish();
}

describe('a model with shape ops through the training pipeline', () => {
  const tokens = tensorOf('i64', [3, 4], [1, 2, 2, 9, 0, 0, 5, 1, 7, 3, 3, 3]);
  const labels = tensorOf('i64', [3], [4, 0, 2]);
  for (const policy of ['fp32', 'fp16', 'bf16'])
    it(`${policy}: compiles, and WebGPU matches the interpreter (loss and gradients)`, async () => {
      const g = runPipeline(importOnnx(trainModel()), passCtx({ policy, batch: 3, optimizer: { kind: 'sgd' } }), TRAIN_PIPELINE);
      expect(g.nodes.filter((n) => n.op === 'Shape')).toEqual([]);
      const grads = (g.meta.grads as { params: Record<string, string> }).params;
      expect(Object.keys(grads).sort()).toEqual(['b', 'emb', 'm', 'pos', 'w']);
      // Under fp16/bf16 the data movement after the MatMul runs in the low type.
      const low = policy === 'fp32' ? 'f32' : policy === 'fp16' ? 'f16' : 'bf16';
      for (const op of ['Split', 'Concat', 'Slice', 'mpc.SliceGrad']) expect(g.nodes.filter((n) => n.op === op).map((n) => n.prec?.compute), op).toContain(low);
      const env = runGraph(g, { tokens, labels });
      const gpu = await runOnGpu(g, { tokens, labels });
      const tol = policy === 'fp32' ? 1e-5 : policy === 'fp16' ? 2e-3 : 2e-2;
      for (const v of ['loss', ...Object.values(grads)]) {
        const want = env.get(v)!.data;
        const got = gpu.get(v)!.data;
        const scale = Math.max(1e-3, ...Array.from(want, Math.abs));
        for (let i = 0; i < want.length; i++) expect(Math.abs(got[i] - want[i]), `${v}[${i}]`).toBeLessThan(tol * scale);
      }
      // The embedding gradient is non-zero only for the rows the tokens use.
      const demb = env.get(grads.emb)!.data;
      const used = new Set(Array.from(tokens.data));
      for (let row = 0; row < 10; row++) {
        const nz = Array.from(demb.slice(row * 6, row * 6 + 6)).some((v) => v !== 0);
        expect(nz, `row ${row}`).toBe(used.has(row));
      }
    });
});


