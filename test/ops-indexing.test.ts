// The indexing ops of src/ops/indexing.ts (ArgMax, TopK, CumSum, Trilu, Tile, the gathers and
// scatters, OneHot, DepthToSpace...), checked three ways:
//   1. against onnxruntime: a one-node ONNX model per case (index, k, depth, repeats and
//      condition inputs as Constant nodes), imported and run on the interpreter;
//   2. WebGPU against the interpreter with the float operands in f32, f16 (both storage layouts)
//      and bf16: bit for bit (the sign of zero included) for data movement and the in-order
//      scatter-adds; CumSum's sums within TOL;
//   3. gradient rules against central finite differences of the interpreter.
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../src/interp/interpreter.js';
import { addConst, addNode, typeOf } from '../src/ir/build.js';
import { isFloat, toOnnx, type DType, type FloatDType } from '../src/ir/dtypes.js';
import { emptyGraph, type Attrs, type Graph } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { importOnnx } from '../src/onnx/import.js';
import { indexingOps } from '../src/ops/indexing.js';
import { passCtx } from '../src/compile/options.js';
import { bindDims } from '../src/passes/bind-dims.js';
import { foldConstants } from '../src/passes/fold-constants.js';
import { inferTypes } from '../src/passes/infer-types.js';
import { runPipeline } from '../src/passes/pipeline.js';
import type { Target } from '../src/codegen/kernel.js';
import { runNodeOnGpu } from './helpers/gpu.js';
import { dyObjective, ORT_TYPE, ortNumbers, rawBytes, withGradients } from './helpers/op-harness.js';
import { rng, seedOf, tensorOf } from './helpers/single-node.js';

const P = onnx.onnx;
const A = { FLOAT: 1, INT: 2, STRING: 3, TENSOR: 4, INTS: 7 };

type Gen = (r: () => number, i: number) => number;
const signed: Gen = (r) => Math.round((r() * 4 - 2) * 1024) / 1024;
/** Values with zeros of both signs, so that moves are checked to keep the sign of zero. */
const withZeros: Gen = (r, i) => (i % 7 === 3 ? -0 : i % 5 === 1 ? 0 : signed(r, i));
/** Distinct values, at least 1/16 apart (orders do not change under the gradient check's steps). */
const distinct: Gen = (r, i) => (((i * 7919) % 101) - 50) / 16 + 0.001 * r();
/** Few distinct values: ties for ArgMax, TopK, Hardmax. */
const coarse: Gen = (r) => Math.round(r() * 6 - 3) / 2 + 0;

interface In {
  shape: number[];
  dtype?: DType | 'T';
  gen?: Gen | number[];
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
  types?: FloatDType[];
  /** Run the finite-difference gradient check (on every float graph input). */
  grad?: boolean;
  /** Outputs whose cotangent is left out in the gradient check. */
  noGrad?: number[];
  /** The rule gives no gradient (zero almost everywhere): checked against finite differences too. */
  zeroGrad?: boolean;
  /** Relative tolerance of float results (default 0: bit for bit). */
  tol?: number;
}

const T = 'T' as const;
const f = (...shape: number[]): In => ({ shape, dtype: T, gen: withZeros });
const fg = (gen: Gen, ...shape: number[]): In => ({ shape, dtype: T, gen });
/**
 * Cotangents of the scatter-add gradient ops: no -0 (whether 0 + -0 keeps its sign in a sum
 * that starts at 0 is up to the shader compiler, and a gradient's zero sign carries nothing).
 */
const dyIn = (...shape: number[]): In => fg((r, i) => signed(r, i) + 0, ...shape);
const i64 = (shape: number[], v: number[], c = false): In => ({ shape, dtype: 'i64', gen: v, c });
const ci64 = (...v: number[]): In => ({ shape: [v.length], dtype: 'i64', gen: v, c: true });
const s64 = (v: number): In => ({ shape: [], dtype: 'i64', gen: [v], c: true });

const CASES: Case[] = [
  // ArgMax / ArgMin.
  { op: 'ArgMax', what: '[3,4] axis 1 with ties', ins: [fg(coarse, 3, 4)], attrs: { axis: 1 } },
  { op: 'ArgMax', what: '[2,3,4] axis 0 keepdims 0, last index', ins: [fg(coarse, 2, 3, 4)], attrs: { axis: 0, keepdims: 0, select_last_index: 1 } },
  { op: 'ArgMin', what: '[2,3,4] axis -2 with ties', ins: [fg(coarse, 2, 3, 4)], attrs: { axis: -2 } },
  { op: 'ArgMin', what: '[5] last index', ins: [{ shape: [5], dtype: T, gen: [1, -1, 2, -1, 0] }], attrs: { select_last_index: 1 } },
  { op: 'ArgMax', what: 'i32 [2,3]', ins: [{ shape: [2, 3], dtype: 'i32', gen: [4, -2, 9, 9, 1, 0] }], attrs: { axis: 1 } },
  // TopK.
  { op: 'TopK', what: '[3,6] k 3 largest', ins: [fg(distinct, 3, 6), ci64(3)], outputs: 2, grad: true, noGrad: [1] },
  { op: 'TopK', what: '[4,3,2] axis 1 k 2 smallest', ins: [fg(distinct, 4, 3, 2), ci64(2)], attrs: { axis: 1, largest: 0 }, outputs: 2, grad: true, noGrad: [1] },
  { op: 'TopK', what: '[2,7] ties (lower index first)', ins: [fg(coarse, 2, 7), ci64(4)], outputs: 2 },
  { op: 'TopK', what: 'opset 9 attribute k', ins: [fg(distinct, 2, 5)], attrs: { k: 2 }, outputs: 2, opset: 9 },
  // Hardmax.
  { op: 'Hardmax', what: '[3,5] default axis, ties', ins: [fg(coarse, 3, 5)] },
  { op: 'Hardmax', what: '[2,4,3] axis 1', ins: [fg(distinct, 2, 4, 3)], attrs: { axis: 1 }, zeroGrad: true },
  // CumSum.
  { op: 'CumSum', what: '[3,5] axis 1', ins: [f(3, 5), { shape: [], dtype: 'i32', gen: [1], c: true }], grad: true, tol: 1e-6 },
  { op: 'CumSum', what: '[4,3] axis 0 exclusive', ins: [f(4, 3), s64(0)], attrs: { exclusive: 1 }, grad: true, tol: 1e-6 },
  { op: 'CumSum', what: '[2,3,4] axis -1 reverse', ins: [f(2, 3, 4), s64(-1)], attrs: { reverse: 1 }, grad: true, tol: 1e-6 },
  { op: 'CumSum', what: '[6] reverse exclusive', ins: [f(6), s64(0)], attrs: { reverse: 1, exclusive: 1 }, grad: true, tol: 1e-6 },
  { op: 'CumSum', what: 'i32 [5]', ins: [{ shape: [5], dtype: 'i32', gen: [3, -1, 4, 1, -5] }, s64(0)] },
  // Trilu.
  { op: 'Trilu', what: '[4,5] upper', ins: [f(4, 5)], opset: 14, grad: true },
  { op: 'Trilu', what: '[2,3,4] lower k -1', ins: [f(2, 3, 4), s64(-1)], attrs: { upper: 0 }, opset: 14, grad: true },
  { op: 'Trilu', what: '[3,3] upper k 2', ins: [f(3, 3), s64(2)], opset: 14 },
  { op: 'Trilu', what: 'i64 [3,4] lower k 1', ins: [i64([3, 4], [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12]), s64(1)], attrs: { upper: 0 }, opset: 14 },
  // Tile.
  { op: 'Tile', what: '[2,3] x [2,3]', ins: [f(2, 3), ci64(2, 3)], grad: true },
  { op: 'Tile', what: '[3,1,2] x [1,4,2]', ins: [f(3, 1, 2), ci64(1, 4, 2)], grad: true },
  { op: 'Tile', what: 'i64 [3] x [2]', ins: [i64([3], [7, -1, 2]), ci64(2)] },
  // GatherElements.
  { op: 'GatherElements', what: '[3,4] axis 1, repeats and negatives', ins: [f(3, 4), i64([3, 5], [0, 3, -1, 2, 2, 1, 1, 1, -4, 0, 3, 2, 0, 0, 1])], attrs: { axis: 1 }, grad: true },
  { op: 'GatherElements', what: '[4,3] axis 0, smaller indices', ins: [f(4, 3), i64([2, 2], [3, 0, -1, 3])], grad: true },
  { op: 'GatherElements', what: 'i32 indices, [2,3,2] axis -1', ins: [f(2, 3, 2), { shape: [2, 3, 2], dtype: 'i32', gen: [1, 0, 0, 0, 1, 1, 0, 1, 1, 1, 0, 0] }], attrs: { axis: -1 } },
  // ScatterElements / Scatter.
  { op: 'ScatterElements', what: '[3,4] axis 1 none', ins: [f(3, 4), i64([3, 2], [0, 3, -1, 1, 2, 0]), f(3, 2)], attrs: { axis: 1 }, grad: true },
  { op: 'ScatterElements', what: '[4,3] axis 0 add, duplicates', ins: [f(4, 3), i64([3, 3], [1, 0, 3, 1, 2, 3, -3, 0, 0]), f(3, 3)], attrs: { reduction: 'add' }, opset: 16, grad: true },
  { op: 'ScatterElements', what: 'mul, duplicates', ins: [f(2, 4), i64([2, 3], [1, 1, 3, 0, 2, 0]), f(2, 3)], attrs: { axis: 1, reduction: 'mul' }, opset: 16 },
  { op: 'ScatterElements', what: 'max, duplicates', ins: [fg(distinct, 2, 4), i64([2, 3], [1, 1, 3, 0, 2, 0]), fg(distinct, 2, 3)], attrs: { axis: 1, reduction: 'max' }, opset: 18 },
  { op: 'ScatterElements', what: 'min, duplicates', ins: [fg(distinct, 2, 4), i64([2, 3], [1, 1, 3, 0, 2, 0]), fg(distinct, 2, 3)], attrs: { axis: 1, reduction: 'min' }, opset: 18 },
  { op: 'ScatterElements', what: 'i64 data', ins: [i64([5], [1, 2, 3, 4, 5]), i64([2], [4, 0]), i64([2], [-7, 9])] },
  { op: 'Scatter', what: 'opset 10 [3,3] axis 0', ins: [f(3, 3), i64([2, 3], [1, 0, 2, 0, 2, 1]), f(2, 3)], opset: 10, grad: true },
  // GatherND / ScatterND.
  { op: 'GatherND', what: '[2,3,4] tuples of 2', ins: [f(2, 3, 4), i64([3, 2], [1, 2, 0, -1, 1, 2])], grad: true },
  { op: 'GatherND', what: '[3,4] full tuples, [2,2,2] indices', ins: [f(3, 4), i64([2, 2, 2], [0, 0, 2, 3, -1, 1, 0, 0])], grad: true },
  { op: 'GatherND', what: 'batch_dims 1', ins: [f(2, 3, 2), i64([2, 2, 1], [2, 0, 1, 1])], attrs: { batch_dims: 1 }, grad: true },
  { op: 'ScatterND', what: '[4,3] rows', ins: [f(4, 3), i64([2, 1], [3, 0]), f(2, 3)], grad: true },
  { op: 'ScatterND', what: '[2,3,2] elements add, duplicates', ins: [f(2, 3, 2), i64([3, 3], [1, 2, 0, 0, 0, 1, 1, 2, 0]), f(3)], attrs: { reduction: 'add' }, opset: 16, grad: true },
  { op: 'ScatterND', what: 'mul', ins: [f(3, 2), i64([2, 1], [1, 1]), f(2, 2)], attrs: { reduction: 'mul' }, opset: 16 },
  { op: 'ScatterND', what: 'max', ins: [fg(distinct, 3, 2), i64([2, 1], [2, 2]), fg(distinct, 2, 2)], attrs: { reduction: 'max' }, opset: 18 },
  { op: 'ScatterND', what: 'min', ins: [fg(distinct, 3, 2), i64([2, 1], [0, 2]), fg(distinct, 2, 2)], attrs: { reduction: 'min' }, opset: 18 },
  // OneHot.
  { op: 'OneHot', what: 'i64 [2,3] depth 4, negative and out of range', ins: [i64([2, 3], [0, 3, -1, 5, -4, 2]), s64(4), { shape: [2], dtype: T, gen: [-0.5, 2] }] },
  { op: 'OneHot', what: 'float indices, axis 0', ins: [{ shape: [3], dtype: 'f32', gen: [1, 0, 2] }, { shape: [], dtype: 'f32', gen: [3], c: true }, { shape: [2], dtype: T, gen: [0, 1] }], attrs: { axis: 0 } },
  { op: 'OneHot', what: 'i64 values, axis 1', ins: [i64([2], [1, 0]), s64(2), i64([2], [5, 7])], attrs: { axis: 1 } },
  // DepthToSpace / SpaceToDepth.
  { op: 'DepthToSpace', what: 'DCR [1,8,2,3] b 2', ins: [f(1, 8, 2, 3)], attrs: { blocksize: 2 }, grad: true },
  { op: 'DepthToSpace', what: 'CRD [2,4,2,2] b 2', ins: [f(2, 4, 2, 2)], attrs: { blocksize: 2, mode: 'CRD' }, grad: true },
  { op: 'DepthToSpace', what: 'DCR [1,18,1,2] b 3', ins: [f(1, 18, 1, 2)], attrs: { blocksize: 3 } },
  { op: 'SpaceToDepth', what: '[2,2,4,6] b 2', ins: [f(2, 2, 4, 6)], attrs: { blocksize: 2 }, grad: true },
  { op: 'SpaceToDepth', what: 'CRD (mpc extension) [1,2,4,2] b 2', ins: [f(1, 2, 4, 2)], attrs: { blocksize: 2, mode: 'CRD' }, ort: false, grad: true },
  // Size, EyeLike.
  { op: 'Size', what: '[3,4,5]', ins: [f(3, 4, 5)] },
  { op: 'EyeLike', what: 'f32 [4,5] k 1', ins: [f(4, 5)], attrs: { k: 1 }, zeroGrad: true },
  { op: 'EyeLike', what: 'i32 [3,3] -> f32 k -2', ins: [{ shape: [3, 3], dtype: 'i32', gen: [0, 0, 0, 0, 0, 0, 0, 0, 0] }], attrs: { dtype: 1, k: -2 } },
  // Compress.
  { op: 'Compress', what: '[3,4] axis 1', ins: [f(3, 4), { shape: [4], dtype: 'bool', gen: [1, 0, 1, 1], c: true }], attrs: { axis: 1 }, grad: true },
  { op: 'Compress', what: '[3,2] flattened, short condition', ins: [f(3, 2), { shape: [4], dtype: 'bool', gen: [0, 1, 1, 0], c: true }], grad: true },
  { op: 'Compress', what: '[4,2] axis -2, none kept', ins: [f(4, 2), { shape: [4], dtype: 'bool', gen: [0, 0, 0, 0], c: true }], attrs: { axis: -2 }, opset: 11 },
  // Internal gradient ops, on their own.
  { op: 'mpc.GatherElementsGrad', what: '[3,4] axis 1 from [3,5]', ins: [dyIn(3, 5), i64([3, 5], [0, 3, -1, 2, 2, 1, 1, 1, -4, 0, 3, 2, 0, 0, 1])], attrs: { axis: 1, shape: [3, 4] }, ort: false },
  { op: 'mpc.GatherElementsGrad', what: '[4,3] axis 0 from [2,2]', ins: [dyIn(2, 2), i64([2, 2], [3, 0, 3, 3])], attrs: { axis: 0, shape: [4, 3] }, ort: false },
  { op: 'mpc.GatherNDGrad', what: '[3,4] from full tuples, repeats', ins: [dyIn(2, 2), i64([2, 2, 2], [0, 0, 2, 3, 0, 0, 0, 0])], attrs: { batch_dims: 0, shape: [3, 4] }, ort: false },
  { op: 'mpc.GatherNDGrad', what: 'batch_dims 1', ins: [dyIn(2, 2, 2), i64([2, 2, 1], [2, 0, 1, 1])], attrs: { batch_dims: 1, shape: [2, 3, 2] }, ort: false },
  { op: 'mpc.CompressGrad', what: '[3,4] axis 1', ins: [f(3, 3), { shape: [4], dtype: 'bool', gen: [1, 0, 1, 1] }], attrs: { axis: 1, shape: [3, 4] }, ort: false },
];

// ---------------------------------------------------------------------------------------------
// Building a case.

function values(spec: In, r: () => number): number[] {
  const gen = spec.gen ?? withZeros;
  return Array.isArray(gen) ? gen : Array.from({ length: sizeOf(spec.shape) }, (_, i) => gen(r, i));
}

const dtypeOf = (spec: In, t: FloatDType): DType => (!spec.dtype || spec.dtype === T ? t : spec.dtype);

function irCase(c: Case, t: FloatDType): { g: Graph; feeds: Record<string, Tensor> } {
  const g = emptyGraph(c.op);
  const r = rng(seedOf(`${c.op} ${c.what}`));
  const feeds: Record<string, Tensor> = {};
  const names = c.ins.map((spec, k) => {
    if (!spec) return '';
    const tensor = tensorOf(dtypeOf(spec, t), spec.shape, values(spec, r));
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
  if (typeof v === 'number') return Number.isInteger(v) ? { name, type: A.INT, i: v } : { name, type: A.FLOAT, f: v };
  if (typeof v === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: A.INTS, ints: v as number[] };
  throw new Error(`attribute ${name}`);
}

function onnxCase(c: Case): { bytes: Uint8Array; feeds: Record<string, ort.Tensor>; outputs: string[] } {
  const r = rng(seedOf(`${c.op} ${c.what}`));
  const nodes: object[] = [];
  const inputs: object[] = [];
  const feeds: Record<string, ort.Tensor> = {};
  const names = c.ins.map((spec, k) => {
    if (!spec) return '';
    const dtype = dtypeOf(spec, 'f32');
    const vals = values(spec, r);
    const name = spec.c ? `c${k}` : `in${k}`;
    if (spec.c) nodes.push({ opType: 'Constant', input: [], output: [name], attribute: [{ name: 'value', type: A.TENSOR, t: { dims: spec.shape, dataType: toOnnx(dtype), rawData: rawBytes(dtype, vals) } }] });
    else {
      inputs.push({ name, type: { tensorType: { elemType: toOnnx(dtype), shape: { dim: spec.shape.map((d) => ({ dimValue: d })) } } } });
      const data = dtype === 'i64' ? BigInt64Array.from(vals.map((v) => BigInt(v))) : dtype === 'f32' ? Float32Array.from(vals) : dtype === 'bool' ? Uint8Array.from(vals) : Int32Array.from(vals);
      feeds[name] = new ort.Tensor(ORT_TYPE[dtype], data, spec.shape);
    }
    return name;
  });
  const outputs = Array.from({ length: c.outputs ?? 1 }, (_, k) => `out${k}`);
  nodes.push({ opType: c.op, input: names, output: outputs, attribute: Object.entries(c.attrs ?? {}).map(([k, v]) => attrProto(k, v)) });
  const { g } = irCase(c, 'f32');
  const output = outputs.map((o, k) => ({ name: o, type: { tensorType: { elemType: toOnnx(g.values.get(g.nodes[0].outputs[k])!.dtype) } } }));
  const opset = c.opset ?? 13;
  const bytes = P.ModelProto.encode({ irVersion: opset >= 18 ? 9 : 8, opsetImport: [{ domain: '', version: opset }], graph: { name: c.op, node: nodes, input: inputs, output } }).finish();
  return { bytes, feeds, outputs };
}

/** First difference, floats compared by bits (sign of zero included) unless `tol` (relative to the largest value) is given. */
function firstDiff(got: ArrayLike<number>, want: ArrayLike<number>, tol = 0): string | undefined {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  let scale = 0;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) scale = Math.max(scale, Math.abs(want[i]));
  for (let i = 0; i < want.length; i++) {
    const [g, w] = [got[i], want[i]];
    if (Object.is(g, w) || (Number.isNaN(g) && Number.isNaN(w))) continue;
    if (tol && Math.abs(g - w) <= tol * scale) continue;
    return `[${i}]: got ${Object.is(g, -0) ? '-0' : g}, want ${Object.is(w, -0) ? '-0' : w}`;
  }
  return undefined;
}

/** Tolerance of a float result in dtype `t`: the case's (f32 sums), or one unit of the narrower format. */
function tolOf(c: Case, t: DType): number {
  if (!c.tol) return 0;
  return t === 'f16' ? 2 ** -10 : t === 'bf16' ? 2 ** -7 : c.tol;
}

const hasT = (c: Case) => c.ins.some((i) => i && (!i.dtype || i.dtype === T));

// ---------------------------------------------------------------------------------------------
// Coverage: test/kernels.test.ts and test/grad-check.test.ts leave these rows to this file.

describe('coverage', () => {
  it('every row of indexing.ts has a case (kernels run on the GPU for every case)', () => {
    expect(indexingOps.filter((r) => !CASES.some((c) => c.op === r.op)).map((r) => r.op)).toEqual([]);
    for (const r of indexingOps) expect(r.wgsl, r.op).toBeDefined();
  });
  it('every gradient rule has a finite-difference case', () => {
    expect(indexingOps.filter((r) => r.grad && !CASES.some((c) => c.op === r.op && (c.grad || c.zeroGrad))).map((r) => r.op)).toEqual([]);
  });
  it('every ONNX op has an onnxruntime case', () => {
    expect(indexingOps.filter((r) => r.domain === '' && !CASES.some((c) => c.op === r.op && c.ort !== false)).map((r) => r.op)).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------
// 1. onnxruntime.

describe('indexing ops vs onnxruntime (import, interpreter)', () => {
  for (const c of CASES.filter((c) => c.ort !== false && !c.op.startsWith('mpc.')))
    it(`${c.op} ${c.what}`, async () => {
      const { bytes, feeds, outputs } = onnxCase(c);
      const s = await ort.InferenceSession.create(bytes, { graphOptimizationLevel: 'disabled' });
      const want = await s.run(feeds);
      const g = runPipeline(importOnnx(bytes), passCtx({ policy: 'fp32', batch: 1 }), [bindDims, foldConstants, inferTypes]);
      const mpcFeeds: Record<string, Tensor> = {};
      for (const [k, v] of Object.entries(feeds)) mpcFeeds[k] = tensorOf(g.values.get(k)!.dtype, [...v.dims], ortNumbers(v));
      const env = runGraph(g, mpcFeeds);
      for (const o of outputs) {
        const got = env.get(o)!;
        expect(got.shape, `${o} shape`).toEqual([...want[o].dims]);
        expect(firstDiff(got.data, ortNumbers(want[o]), c.tol), o).toBeUndefined();
      }
    });
});

// ---------------------------------------------------------------------------------------------
// 2. WebGPU vs the interpreter, per float type and f16 storage layout.

/**
 * The first case of each op with a swept float operand runs in every float type and f16
 * layout; the others in f32 only (lavapipe compiles each kernel slowly, and the packed
 * layouts are written by the shared map-kernel code whatever the op).
 */
const SWEPT = new Set(CASES.filter((c, k) => hasT(c) && CASES.findIndex((d) => d.op === c.op && hasT(d)) === k));

function runsOf(c: Case): { t: FloatDType; target: Target }[] {
  const types = c.types ?? (SWEPT.has(c) ? (['f32', 'f16', 'bf16'] as FloatDType[]) : (['f32'] as FloatDType[]));
  return types.flatMap((t) => (t === 'f16' ? [{ t, target: { f16: true } }, { t, target: { f16: false } }] : [{ t, target: { f16: true } }]));
}

describe('WGSL kernels vs the interpreter', () => {
  for (const c of CASES)
    for (const run of runsOf(c))
      it(`${c.op} ${c.what} | ${run.t}${run.t === 'f16' ? (run.target.f16 ? ' native' : ' packed') : ''}`, async () => {
        const { g, feeds } = irCase(c, run.t);
        const env = runGraph(g, feeds);
        const n = g.nodes[0];
        const outs = await runNodeOnGpu(g, 0, env, run.target);
        n.outputs.forEach((o, k) => {
          const want = env.get(o)!;
          expect(firstDiff(outs[k].data, want.data, tolOf(c, want.dtype)), `output ${k} ${want.dtype}[${want.shape}]`).toBeUndefined();
        });
      });
});

// ---------------------------------------------------------------------------------------------
// 3. Gradients vs central finite differences (steps of 1/64: the orders of TopK's distinct
// inputs do not change; the other ops are linear in their float inputs).

describe('gradient rules vs finite differences', () => {
  for (const c of CASES.filter((c) => c.grad || c.zeroGrad))
    it(`${c.op} ${c.what}`, async () => {
      const { g, feeds } = irCase(c, 'f32');
      const node = g.nodes[0];
      const { bg, dx, dys } = withGradients(g, feeds, `dy ${c.op} ${c.what}`, (r) => signed(r, 0), c.noGrad);
      const benv = runGraph(bg, feeds);
      // Every emitted gradient node also runs on the GPU (f32), against the interpreter.
      for (let k = 1; k < bg.nodes.length; k++) {
        const outs = await runNodeOnGpu(bg, k, benv);
        bg.nodes[k].outputs.forEach((o, j) => o && expect(firstDiff(outs[j].data, benv.get(o)!.data, c.tol), `${bg.nodes[k].op} on the GPU`).toBeUndefined());
      }
      const h = 1 / 64;
      node.inputs.forEach((name, k) => {
        const spec = c.ins[k];
        if (!spec || spec.c || !isFloat(typeOf(g, name).dtype)) {
          expect(dx[k], `input ${k} has no gradient`).toBeUndefined();
          return;
        }
        const x = feeds[name];
        const analytic = c.zeroGrad ? undefined : benv.get(dx[k]!)!.data;
        if (c.zeroGrad) expect(dx[k]).toBeUndefined();
        for (let j = 0; j < x.data.length; j++) {
          const plus = Float32Array.from(x.data);
          const minus = Float32Array.from(x.data);
          plus[j] += h;
          minus[j] -= h;
          const fd = (dyObjective(g, { ...feeds, [name]: { ...x, data: plus } }, dys) - dyObjective(g, { ...feeds, [name]: { ...x, data: minus } }, dys)) / (2 * h);
          const a = analytic ? analytic[j] : 0;
          expect(Math.abs(a - fd), `d input ${k} [${j}]: rule ${a}, finite difference ${fd}`).toBeLessThan(1e-4 * (1 + Math.abs(fd)));
        }
      });
    });
});
