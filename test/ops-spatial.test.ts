// ConvTranspose, Resize / Upsample, InstanceNormalization, GroupNormalization, LRN,
// GlobalMaxPool and MeanVarianceNormalization (src/ops/spatial*.ts), case by case:
//   1. the interpreter against onnxruntime-node on one-node ONNX models built here (f32);
//   2. every WGSL kernel of the forward node and of its gradient nodes against the interpreter,
//      for f32 (1e-5 relative, floor 1e-6 of the largest value), f16 (native and packed
//      storage) and bf16 (at most 1 ulp: f32 sums in another order than f64's);
//   3. the gradient rule against central finite differences (L = Σ dY · Y for a random dY),
//      taken on the ops' f64 reference math, or for the linear Resize on the interpreter
//      with a large step (exact for a linear map up to the f32 rounding of Y).
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../src/interp/interpreter.js';
import { addConst, addNode, typeOf } from '../src/ir/build.js';
import { isFloat, type DType, type FloatDType } from '../src/ir/dtypes.js';
import { emptyGraph, type Attrs, type Graph, type Node } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { opRow } from '../src/ops/table.js';
import { convTransposeRef, ctGeom, spatialOps } from '../src/ops/spatial.js';
import { gnDims, groupNormRef, lrnRef, mvnRef } from '../src/ops/spatial-norm.js';
import { importOnnx } from '../src/onnx/import.js';
import { EVAL_PIPELINE, runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { f32Mismatch, fdVsRule, gpuVsInterp, onnxAttr, RUNS, runName, ulpMismatch, withGradient } from './helpers/op-harness.js';
import { rng, seedOf, tensorOf } from './helpers/single-node.js';

const P = onnx.onnx;

type Gen = (r: () => number, i: number) => number;
const uniform = (lo: number, hi: number): Gen => (r) => lo + (hi - lo) * r();
const signed = uniform(-2, 2);
const positive = uniform(0.5, 2);
/** Spread-out values: no near-ties for maxima. */
const distinct: Gen = (r, i) => ((i * 7919) % 101) / 20 - 2.5 + 0.01 * r();

/** An operand: a float tensor in the swept type T ('x'), an f32 input ('stat'), an f32 constant ('floats') or an i64 constant ('ints'). */
interface In {
  shape: number[];
  role?: 'x' | 'stat' | 'floats' | 'ints';
  gen?: Gen | number[];
}

interface Case {
  op: string;
  what: string;
  ins: (In | null)[];
  attrs?: Attrs;
  /** Opset of the ONNX model for onnxruntime (default 13). */
  opset?: number;
  noFd?: boolean;
  /** Why onnxruntime cannot check this case. */
  noOrt?: string;
}

const x = (...shape: number[]): In => ({ shape });
const stat = (c: number, gen: Gen = signed): In => ({ shape: [c], role: 'stat', gen });
const ints = (...v: number[]): In => ({ shape: [v.length], role: 'ints', gen: v });
const floats = (...v: number[]): In => ({ shape: [v.length], role: 'floats', gen: v });

const CASES: Case[] = [];

// ConvTranspose.
CASES.push(
  { op: 'ConvTranspose', what: '2-D k2 s2 (UNet up-sampling), bias', ins: [x(2, 3, 3, 4), x(3, 2, 2, 2), x(2)], attrs: { strides: [2, 2] } },
  { op: 'ConvTranspose', what: '2-D k3 s2 pads 1 output_padding 1', ins: [x(1, 2, 3, 3), x(2, 3, 3, 3)], attrs: { strides: [2, 2], pads: [1, 1, 1, 1], output_padding: [1, 1] } },
  { op: 'ConvTranspose', what: '2-D group 2, dilations 2, bias', ins: [x(1, 4, 3, 3), x(4, 1, 2, 3), x(2)], attrs: { group: 2, dilations: [2, 2] } },
  { op: 'ConvTranspose', what: '2-D asymmetric pads, strides [3,2]', ins: [x(1, 2, 3, 3), x(2, 2, 3, 3)], attrs: { strides: [3, 2], pads: [1, 2, 0, 1] } },
  { op: 'ConvTranspose', what: '2-D output_shape, strides [3,2]', ins: [x(1, 1, 3, 3), x(1, 2, 3, 3)], attrs: { strides: [3, 2], output_shape: [10, 8] } },
  { op: 'ConvTranspose', what: '2-D SAME_UPPER strides 2', ins: [x(1, 2, 3, 3), x(2, 2, 3, 3), x(2)], attrs: { strides: [2, 2], auto_pad: 'SAME_UPPER' } },
  { op: 'ConvTranspose', what: '2-D SAME_LOWER strides 2', ins: [x(1, 2, 3, 3), x(2, 2, 3, 3)], attrs: { strides: [2, 2], auto_pad: 'SAME_LOWER' } },
  { op: 'ConvTranspose', what: '1-D strides 3 pads [1,0], bias', ins: [x(2, 2, 4), x(2, 3, 3), x(3)], attrs: { strides: [3], pads: [1, 0] } },
  { op: 'ConvTranspose', what: '3-D k2 s2, bias', ins: [x(1, 2, 2, 2, 3), x(2, 2, 2, 2, 2), x(2)], attrs: { strides: [2, 2, 2] } },
);

// Resize and Upsample.
const SC = (...v: number[]) => floats(...v);
CASES.push(
  { op: 'Resize', what: 'nearest x2 (default modes)', ins: [x(1, 2, 3, 3), null, SC(1, 1, 2, 2)] },
  { op: 'Resize', what: 'nearest down 0.6 asymmetric floor', ins: [x(1, 1, 5, 4), null, SC(1, 1, 0.6, 0.6)], attrs: { coordinate_transformation_mode: 'asymmetric', nearest_mode: 'floor' } },
  { op: 'Resize', what: 'nearest sizes half_pixel round_prefer_ceil', ins: [x(1, 2, 3, 2), null, null, ints(1, 2, 7, 5)], attrs: { nearest_mode: 'round_prefer_ceil' } },
  { op: 'Resize', what: 'nearest sizes align_corners ceil', ins: [x(1, 1, 4, 3), null, null, ints(1, 1, 6, 7)], attrs: { coordinate_transformation_mode: 'align_corners', nearest_mode: 'ceil' } },
  { op: 'Resize', what: 'linear x2 half_pixel', ins: [x(2, 2, 3, 4), null, SC(1, 1, 2, 2)], attrs: { mode: 'linear' } },
  { op: 'Resize', what: 'linear sizes align_corners', ins: [x(1, 2, 3, 3), null, null, ints(1, 2, 5, 4)], attrs: { mode: 'linear', coordinate_transformation_mode: 'align_corners' } },
  { op: 'Resize', what: 'linear down pytorch_half_pixel', ins: [x(1, 1, 6, 5), null, null, ints(1, 1, 3, 1)], attrs: { mode: 'linear', coordinate_transformation_mode: 'pytorch_half_pixel' } },
  { op: 'Resize', what: 'linear 3-D (trilinear) asymmetric', ins: [x(1, 1, 2, 3, 3), null, SC(1, 1, 2, 1.5, 2)], attrs: { mode: 'linear', coordinate_transformation_mode: 'asymmetric' } },
  {
    op: 'Resize',
    what: 'linear tf_crop_and_resize, extrapolation',
    ins: [x(1, 1, 4, 4), floats(0, 0, -0.2, 0.3, 1, 1, 0.9, 1.4), null, ints(1, 1, 3, 5)],
    attrs: { mode: 'linear', coordinate_transformation_mode: 'tf_crop_and_resize', extrapolation_value: 2.5 },
  },
  { op: 'Resize', what: 'cubic x2', ins: [x(1, 1, 4, 4), null, SC(1, 1, 2, 2)], attrs: { mode: 'cubic' } },
  { op: 'Resize', what: 'cubic down A=-0.5 exclude_outside', ins: [x(1, 1, 5, 5), null, SC(1, 1, 0.6, 0.8)], attrs: { mode: 'cubic', cubic_coeff_a: -0.5, exclude_outside: 1 } },
  { op: 'Resize', what: 'linear half_pixel_symmetric (opset 19)', ins: [x(1, 1, 4, 5), null, SC(1, 1, 1.7, 0.7)], attrs: { mode: 'linear', coordinate_transformation_mode: 'half_pixel_symmetric' }, opset: 19 },
  { op: 'Resize', what: 'linear axes [2,3] (opset 18)', ins: [x(1, 2, 3, 3), null, SC(2, 1.5)], attrs: { mode: 'linear', axes: [2, 3] }, opset: 18 },
  { op: 'Resize', what: 'nearest sizes not_larger (opset 18)', ins: [x(1, 1, 3, 4), null, null, ints(7, 7)], attrs: { axes: [2, 3], keep_aspect_ratio_policy: 'not_larger' }, opset: 18 },
  { op: 'Upsample', what: 'nearest [1,1,2,3] (opset 9)', ins: [x(1, 2, 2, 2), SC(1, 1, 2, 3)], opset: 9 },
  { op: 'Upsample', what: 'linear [1,1,2,2] (opset 9)', ins: [x(1, 1, 3, 2), SC(1, 1, 2, 2)], attrs: { mode: 'linear' }, opset: 9 },
);

// Normalisations and GlobalMaxPool.
CASES.push(
  { op: 'InstanceNormalization', what: '[2,3,4,5]', ins: [x(2, 3, 4, 5), stat(3, positive), stat(3)] },
  { op: 'InstanceNormalization', what: '1-D [2,2,7] epsilon 1e-2', ins: [x(2, 2, 7), stat(2, positive), stat(2)], attrs: { epsilon: 1e-2 } },
  { op: 'GroupNormalization', what: '6 channels, 3 groups, per channel (opset 21)', ins: [x(2, 6, 2, 3), stat(6, positive), stat(6)], attrs: { num_groups: 3 }, opset: 21 },
  { op: 'GroupNormalization', what: '4 channels, 2 groups, per group (opset 18)', ins: [x(2, 4, 3, 2), stat(2, positive), stat(2)], attrs: { num_groups: 2 }, opset: 18, noOrt: 'onnxruntime-node 1.30 rejects opset-18 GroupNormalization (deprecated form)' },
  { op: 'LRN', what: 'size 3', ins: [x(2, 5, 2, 3)], attrs: { size: 3, alpha: 0.02, beta: 0.75, bias: 1.5 } },
  { op: 'LRN', what: 'size 4 defaults', ins: [x(1, 6, 3, 2)], attrs: { size: 4 }, noOrt: 'onnxruntime accepts only odd sizes' },
  { op: 'GlobalMaxPool', what: '[2,3,4,5]', ins: [{ shape: [2, 3, 4, 5], gen: distinct }] },
  { op: 'GlobalMaxPool', what: '1-D [2,2,7]', ins: [{ shape: [2, 2, 7], gen: distinct }] },
  { op: 'MeanVarianceNormalization', what: 'default axes [0,2,3]', ins: [x(2, 3, 3, 2)] },
  { op: 'MeanVarianceNormalization', what: 'axes [1,3]', ins: [x(2, 3, 2, 2)], attrs: { axes: [1, 3] } },
);

// ---------------------------------------------------------------------------------------------
// Building and running one node.

interface Built {
  g: Graph;
  feeds: Record<string, Tensor>;
  tensors: (Tensor | undefined)[];
}

function build(c: Case, t: FloatDType): Built {
  const r = rng(seedOf(`${c.op} ${c.what}`));
  const g = emptyGraph(c.op);
  const feeds: Record<string, Tensor> = {};
  const tensors: (Tensor | undefined)[] = [];
  const names = c.ins.map((spec, k) => {
    if (!spec) {
      tensors.push(undefined);
      return '';
    }
    const gen = spec.gen ?? signed;
    const values = Array.isArray(gen) ? gen : Array.from({ length: sizeOf(spec.shape) }, (_, i) => gen(r, i));
    if (spec.role === 'ints' || spec.role === 'floats') {
      const tensor = tensorOf(spec.role === 'ints' ? 'i64' : 'f32', spec.shape, values);
      tensors.push(tensor);
      return addConst(g, `c${k}`, tensor);
    }
    const tensor = tensorOf(spec.role === 'stat' ? 'f32' : t, spec.shape, values);
    tensors.push(tensor);
    const name = `in${k}`;
    g.values.set(name, { name, dtype: tensor.dtype, shape: [...spec.shape], role: 'input' });
    g.inputs.push(name);
    feeds[name] = tensor;
    return name;
  });
  const outs = addNode(g, c.op, names, { attrs: c.attrs ?? {}, name: 'node', outputs: 1 });
  g.outputs.push(...outs);
  return { g, feeds, tensors };
}

const buildBackward = (c: Case, t: FloatDType) => withGradient(build(c, t), `dy ${c.op} ${c.what}`, (r) => signed(r, 0));

// ---------------------------------------------------------------------------------------------
// onnxruntime.

const FLOAT_ATTRS = new Set(['epsilon', 'alpha', 'beta', 'bias', 'cubic_coeff_a', 'extrapolation_value']);

const attrProto = (name: string, v: Attrs[string]) => onnxAttr(name, v, FLOAT_ATTRS);

function onnxModel(c: Case, b: Built): Uint8Array {
  const node = b.g.nodes[0];
  const inputs: object[] = [];
  const initializer: object[] = [];
  node.inputs.forEach((name, k) => {
    const t = b.tensors[k];
    if (!name || !t) return;
    const role = c.ins[k]?.role;
    if (role === 'ints') {
      const raw = new Uint8Array(BigInt64Array.from(Array.from(t.data, (v) => BigInt(v))).buffer);
      initializer.push({ name, dims: t.shape, dataType: P.TensorProto.DataType.INT64, rawData: raw });
    } else if (role === 'floats') {
      initializer.push({ name, dims: t.shape, dataType: P.TensorProto.DataType.FLOAT, rawData: new Uint8Array(Float32Array.from(t.data).buffer) });
    } else inputs.push({ name, type: { tensorType: { elemType: P.TensorProto.DataType.FLOAT, shape: { dim: t.shape.map((d) => ({ dimValue: d })) } } } });
  });
  const graph = {
    name: 'one',
    node: [{ opType: c.op, input: node.inputs, output: node.outputs, attribute: Object.entries(c.attrs ?? {}).map(([k, v]) => attrProto(k, v)) }],
    input: inputs,
    initializer,
    output: node.outputs.map((name) => ({ name, type: { tensorType: { elemType: P.TensorProto.DataType.FLOAT } } })),
  };
  return P.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: c.opset ?? 13 }], graph }).finish();
}

async function runOrt(c: Case, b: Built): Promise<{ data: Float32Array; dims: readonly number[] }> {
  const out = b.g.nodes[0].outputs[0];
  const s = await ort.InferenceSession.create(onnxModel(c, b));
  const feeds: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(b.feeds)) feeds[k] = new ort.Tensor('float32', Float32Array.from(t.data), t.shape);
  const res = await s.run(feeds);
  return { data: res[out].data as Float32Array, dims: res[out].dims };
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

/** Kernels that only select data: bit-exact in every format. */
const EXACT = new Set(['GlobalMaxPool', 'mpc.GlobalMaxPoolGrad']);

function compare(op: string, dtype: DType, got: ArrayLike<number>, want: ArrayLike<number>, atol = 0): string | undefined {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  if (dtype === 'f32') {
    return f32Mismatch(got, want, atol);
  }
  if (!isFloat(dtype)) {
    // Integer outputs of the training step (the non-finite flag, the skipped-step count): exact.
    const i = Array.from(want).findIndex((v, k) => v !== got[k]);
    return i < 0 ? undefined : `${dtype} at [${i}]: got ${got[i]}, want ${want[i]}`;
  }
  return ulpMismatch(dtype as FloatDType, got, want, EXACT.has(op) ? 0 : 1);
}

// ---------------------------------------------------------------------------------------------
// f64 forward math for the finite differences.

type Ref64 = (n: Node, ins: (Float64Array | undefined)[], shapes: number[][], tensors: (Tensor | undefined)[]) => ArrayLike<number>;

/** Resize is linear in X: its finite differences run on the interpreter with a large step. */
const resizeByInterp: Ref64 = (n, ins, shapes, tensors) => {
  const args = tensors.map((t, k) => (t && k === 0 ? ({ ...t, data: ins[0] } as unknown as Tensor) : t)) as Tensor[];
  const outTypes = opRow(n.op).infer(n, args.map((t) => t && { dtype: t.dtype, shape: t.shape }), args);
  return opRow(n.op).interp(n, args, { outTypes })[0].data;
};

const REF64: Record<string, Ref64> = {
  ConvTranspose: (n, [xx, w, b], [xs, ws]) => convTransposeRef(ctGeom(n, xs, ws), xx!, w!, b),
  Resize: resizeByInterp,
  Upsample: resizeByInterp,
  InstanceNormalization: (n, [xx, s, b], [xs]) => groupNormRef(gnDims(n, xs, xs[1], xs[1]), xx!, s!, b!, (n.attrs.epsilon as number | undefined) ?? 1e-5),
  GroupNormalization: (n, [xx, s, b], [xs, ss]) => groupNormRef(gnDims(n, xs, n.attrs.num_groups as number, ss[0]), xx!, s!, b!, 1e-5),
  LRN: (n, [xx], [xs]) => lrnRef(n, xs, xx!),
  GlobalMaxPool: (_n, [xx], [xs]) => {
    const S = sizeOf(xs.slice(2));
    return Float64Array.from({ length: xs[0] * xs[1] }, (_, p) => Math.max(...xx!.subarray(p * S, (p + 1) * S)));
  },
  MeanVarianceNormalization: (n, [xx], [xs]) => mvnRef(n, xs, xx!),
};
const STEP: Record<string, number> = { Resize: 0.5, Upsample: 0.5 };

function objective(c: Case, n: Node, ins: (Float64Array | undefined)[], shapes: number[][], tensors: (Tensor | undefined)[], dy: ArrayLike<number>): number {
  const y = REF64[c.op](n, ins, shapes, tensors);
  let s = 0;
  for (let i = 0; i < y.length; i++) s += dy[i] * y[i];
  return s;
}

// ---------------------------------------------------------------------------------------------

const name = (c: Case) => `${c.op} ${c.what}`;

describe('coverage', () => {
  const rows = spatialOps;
  it("every kernel runs on WebGPU: a forward case or a node of a case's gradient", () => {
    const ran = new Set<string>();
    for (const c of CASES) for (const n of buildBackward(c, 'f32').g.nodes) ran.add(n.op);
    expect(rows.filter((r) => r.wgsl && !ran.has(r.op)).map((r) => r.op)).toEqual([]);
  });
  it('every gradient rule has a finite-difference case', () => {
    expect(rows.filter((r) => r.grad && !CASES.some((c) => c.op === r.op && !c.noFd)).map((r) => r.op)).toEqual([]);
  });
  it('every ONNX op has an onnxruntime case', () => {
    expect(rows.filter((r) => r.domain === '' && !CASES.some((c) => c.op === r.op && !c.noOrt)).map((r) => r.op)).toEqual([]);
  });
});

describe('interpreter vs onnxruntime (f32)', () => {
  for (const c of CASES.filter((cc) => !cc.noOrt))
    it(name(c), async () => {
      const b = build(c, 'f32');
      const got = runGraph(b.g, b.feeds).get(b.g.outputs[0])!;
      const want = await runOrt(c, b);
      expect([...want.dims], 'shape').toEqual(got.shape);
      expect(compare(c.op, 'f32', got.data, want.data)).toBeUndefined();
    });
});

describe('WebGPU vs the interpreter: forward and gradient kernels', () => {
  for (const c of CASES)
    for (const run of RUNS)
      it(`${name(c)} | ${runName(run)}`, async () => {
        const fwd = build(c, run.t);
        const bad = await gpuVsInterp(compare, fwd.g, fwd.feeds, run.target, 0);
        const bwd = buildBackward(c, run.t);
        bad.push(...(await gpuVsInterp(compare, bwd.g, bwd.feeds, run.target, 1)));
        expect(bad).toEqual([]);
      });
});

describe('gradients vs central finite differences', () => {
  for (const c of CASES.filter((cc) => !cc.noFd))
    it(name(c), () => {
      const bwd = buildBackward(c, 'f32');
      const env = runGraph(bwd.g, bwd.feeds);
      const shapes = bwd.node.inputs.map((v) => (v ? typeOf(bwd.g, v).shape : []));
      const base = bwd.tensors.map((t, k) => (t && isFloat(t.dtype) && c.ins[k]?.role !== 'floats' ? Float64Array.from(t.data) : undefined));
      const dy = Array.from(env.get('dy')!.data);
      const h = STEP[c.op] ?? 1e-6;
      const bad = fdVsRule(base, bwd.dx, env, h, (ins) => objective(c, bwd.node, ins, shapes, bwd.tensors, dy));
      expect(bad).toEqual([]);
    });
});

describe('details', () => {
  it('clear errors for what is not supported', () => {
    const err = (c: Case) => () => build(c, 'f32');
    expect(err({ op: 'Resize', what: 'antialias', ins: [x(1, 1, 4, 4), null, SC(1, 1, 0.5, 0.5)], attrs: { mode: 'linear', antialias: 1 } })).toThrow(/antialias=1 is not supported/);
    expect(err({ op: 'Resize', what: 'dynamic scales', ins: [x(1, 1, 4, 4), null, x(4)] })).toThrow(/must be a constant/);
    expect(err({ op: 'ConvTranspose', what: 'bad group', ins: [x(1, 4, 3, 3), x(3, 1, 2, 2)], attrs: { group: 2 } })).toThrow(/group/);
    expect(err({ op: 'GroupNormalization', what: 'bad groups', ins: [x(1, 4, 3), stat(4), stat(4)], attrs: { num_groups: 3 } })).toThrow(/groups/);
  });

  it('ConvTranspose 2x2 stride 2 scatters each input pixel to its own 2x2 block', () => {
    const c: Case = { op: 'ConvTranspose', what: 'blocks', ins: [{ shape: [1, 1, 2, 2], gen: [1, 2, 3, 4] }, { shape: [1, 1, 2, 2], gen: [1, 10, 100, 1000] }], attrs: { strides: [2, 2] } };
    const b = build(c, 'f32');
    const y = Array.from(runGraph(b.g, b.feeds).get(b.g.outputs[0])!.data);
    expect(y).toEqual([1, 10, 2, 20, 100, 1000, 200, 2000, 3, 30, 4, 40, 300, 3000, 400, 4000]);
  });
});

// ---------------------------------------------------------------------------------------------
// A small decoder-like model through the compiler: the whole training step (forward, backward,
// optimizer) kernel by kernel on WebGPU vs the interpreter, per policy; checks the precision
// classes (ConvTranspose low precision, the normalisations f32) and the casts around them.

const NET_INPUT = [2, 3, 3, 3];

function netModel(): Uint8Array {
  const r = rng(seedOf('spatial net'));
  const initializer: object[] = [];
  const param = (nm: string, shape: number[], gen: Gen = uniform(-0.5, 0.5)) => {
    const data = Float32Array.from({ length: sizeOf(shape) }, (_, i) => gen(r, i));
    initializer.push({ name: nm, dims: shape, dataType: P.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer) });
    return nm;
  };
  const node = (opType: string, input: string[], output: string[], attrs: Attrs = {}) => ({ opType, name: output[0], input, output, attribute: Object.entries(attrs).map(([k, v]) => attrProto(k, v)) });
  const nodes = [
    node('ConvTranspose', ['input', param('w1', [3, 4, 2, 2]), param('b1', [4])], ['up'], { strides: [2, 2] }),
    node('InstanceNormalization', ['up', param('in_scale', [4], uniform(0.5, 1.5)), param('in_bias', [4])], ['inorm']),
    // The scales are a Constant node, not an initializer (which training would make a parameter).
    {
      opType: 'Constant',
      name: 'scales',
      input: [],
      output: ['scales'],
      attribute: [{ name: 'value', type: P.AttributeProto.AttributeType.TENSOR, t: { dims: [4], dataType: P.TensorProto.DataType.FLOAT, rawData: new Uint8Array(Float32Array.of(1, 1, 1.5, 1.5).buffer) } }],
    },
    node('Resize', ['inorm', '', 'scales'], ['rs'], { mode: 'linear' }),
    node('LRN', ['rs'], ['lrn'], { size: 3 }),
    node('GlobalMaxPool', ['lrn'], ['g']),
    node('Flatten', ['g'], ['f']),
    node('Gemm', ['f', param('w3', [5, 4]), param('b3', [5])], ['logits'], { transB: 1 }),
  ];
  const vi = (nm: string, shape: number[]) => ({ name: nm, type: { tensorType: { elemType: P.TensorProto.DataType.FLOAT, shape: { dim: shape.map((d) => ({ dimValue: d })) } } } });
  const graph = { name: 'net', node: nodes, input: [vi('input', NET_INPUT)], initializer, output: [vi('logits', [2, 5])] };
  return P.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 13 }], graph }).finish();
}

describe('a decoder-like model through the compiler', () => {
  const model = netModel();
  const r = rng(seedOf('spatial net input'));
  const input = tensorOf('f32', NET_INPUT, Array.from({ length: sizeOf(NET_INPUT) }, () => signed(r, 0)));
  const labels = tensorOf('i64', [2], [1, 4]);

  it('fp32 forward (interpreter) equals onnxruntime', async () => {
    const s = await ort.InferenceSession.create(model);
    const want = (await s.run({ input: new ort.Tensor('float32', input.data as Float32Array, NET_INPUT) })).logits.data as Float32Array;
    const g = runPipeline(importOnnx(model), passCtx({ policy: 'fp32', batch: 2 }), EVAL_PIPELINE);
    expect(compare('net', 'f32', runGraph(g, { input }).get('logits')!.data, want)).toBeUndefined();
  });

  // One policy (bf16: casts around every class) keeps the file fast on lavapipe.
  for (const policy of ['bf16'])
    it(`training step, ${policy}: every WebGPU kernel vs the interpreter`, async () => {
      const g = runPipeline(importOnnx(model), passCtx({ policy, batch: 2, optimizer: { kind: 'sgd' } }), TRAIN_PIPELINE);
      const ct = g.nodes.find((n) => n.op === 'ConvTranspose')!;
      expect(g.values.get(ct.outputs[0])!.dtype).toBe(policy === 'fp32' ? 'f32' : 'bf16');
      for (const n of g.nodes.filter((nn) => nn.op === 'InstanceNormalization')) expect(n.prec?.compute).toBe('f32');
      // An absolute floor for f32 sums that cancel analytically: the ConvTranspose bias before
      // InstanceNormalization has gradient 0, which both sides compute as f32 rounding noise.
      expect(await gpuVsInterp(compare, g, { input, labels }, { f16: true }, 0, 1e-7)).toEqual([]);
    });
});
