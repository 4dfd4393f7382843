// Conv, MaxPool, AveragePool, GlobalAveragePool, Pad and BatchNormalization, case by case:
//   1. the interpreter against onnxruntime-node on one-node ONNX models built here (f32);
//   2. every WGSL kernel of the forward node and of its gradient nodes against the interpreter,
//      for f32 (1e-5 relative), f16 (native and packed storage) and bf16 (bit-exact where the
//      kernel only moves data, else at most 1 ulp: f32 sums in another order than f64's);
//   3. the gradient rule against central finite differences in f64, taken on the ops' f64
//      reference math (L = Σ dY · Y for a random dY on the first output).
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { describe, expect, it } from 'vitest';
import { runGraph } from '../src/interp/interpreter.js';
import { addConst, addNode, typeOf } from '../src/ir/build.js';
import { isFloat, type DType, type FloatDType } from '../src/ir/dtypes.js';
import { emptyGraph, type Attrs, type Graph, type Node } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { convGeom, convOps, convRef } from '../src/ops/conv.js';
import { avgPoolRef, maxPoolRef, padRef, poolGeom, poolOps, resolvePads } from '../src/ops/pool.js';
import { batchNormDims, batchNormRef, batchStatsRef, normOps } from '../src/ops/norm.js';
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
/** Small integers: many ties inside pooling windows. */
const tied: Gen = (r) => Math.floor(3 * r());

/** An operand: a float tensor in the swept type T ('x'), an f32 statistic ('stat'), or an i64 constant ('ints'). */
interface In {
  shape: number[];
  role?: 'x' | 'stat' | 'ints';
  gen?: Gen | number[];
}

interface Case {
  op: string;
  what: string;
  ins: (In | null)[];
  attrs?: Attrs;
  /** Number of node outputs (default 1). */
  outputs?: number;
  /** Opset of the ONNX model for onnxruntime (default 13). */
  opset?: number;
  /** Values not distinct (ties): finite differences are meaningless there. */
  noFd?: boolean;
  /** Why onnxruntime cannot check this case (it is then left out of that comparison). */
  noOrt?: string;
  /**
   * Omitted optional outputs ('') after the first `outputs`, in the ONNX model only: the
   * interpreter does not accept '' outputs yet (runGraph looks up a value named '').
   */
  emptyOutputs?: number;
}

const x = (...shape: number[]): In => ({ shape });
const stat = (c: number, gen: Gen = signed): In => ({ shape: [c], role: 'stat', gen });
const ints = (...v: number[]): In => ({ shape: [v.length], role: 'ints', gen: v });

const CASES: Case[] = [];

// Conv.
CASES.push(
  { op: 'Conv', what: '3x3 pads 1, bias', ins: [x(2, 3, 5, 6), x(4, 3, 3, 3), x(4)], attrs: { pads: [1, 1, 1, 1] } },
  { op: 'Conv', what: '3x2 strides 2, no bias', ins: [x(1, 2, 7, 6), x(3, 2, 3, 2)], attrs: { strides: [2, 2] } },
  { op: 'Conv', what: 'dilations [2,1], asymmetric pads', ins: [x(1, 2, 7, 7), x(2, 2, 3, 3), x(2)], attrs: { dilations: [2, 1], pads: [1, 0, 2, 1] } },
  { op: 'Conv', what: 'group 2, pads 1, bias', ins: [x(2, 4, 5, 5), x(6, 2, 3, 3), x(6)], attrs: { group: 2, pads: [1, 1, 1, 1] } },
  { op: 'Conv', what: 'depthwise, strides 2', ins: [x(1, 3, 5, 5), x(3, 1, 3, 3)], attrs: { group: 3, strides: [2, 2] } },
  { op: 'Conv', what: 'SAME_UPPER strides 2 (odd total pad)', ins: [x(1, 2, 6, 5), x(3, 2, 3, 3), x(3)], attrs: { auto_pad: 'SAME_UPPER', strides: [2, 2] } },
  { op: 'Conv', what: 'SAME_LOWER strides 2 (odd total pad)', ins: [x(1, 2, 6, 5), x(3, 2, 3, 3)], attrs: { auto_pad: 'SAME_LOWER', strides: [2, 2] } },
  { op: 'Conv', what: 'SAME_UPPER 1-D, kernel_shape', ins: [x(2, 2, 8), x(3, 2, 4)], attrs: { auto_pad: 'SAME_UPPER', kernel_shape: [4], strides: [3] } },
  {
    op: 'Conv',
    what: 'SAME_LOWER dilations 2',
    ins: [x(1, 2, 6, 7), x(2, 2, 3, 2)],
    attrs: { auto_pad: 'SAME_LOWER', dilations: [2, 2] },
    noOrt: 'onnxruntime rejects dilations with SAME_* auto_pad',
  },
  { op: 'Conv', what: 'VALID strides 2', ins: [x(1, 2, 7, 6), x(2, 2, 3, 3), x(2)], attrs: { auto_pad: 'VALID', strides: [2, 2] } },
  { op: 'Conv', what: '1x1, bias', ins: [x(2, 5, 3, 3), x(4, 5, 1, 1), x(4)] },
  { op: 'Conv', what: '1-D pads [1,2] strides 2, bias', ins: [x(2, 3, 9), x(4, 3, 3), x(4)], attrs: { pads: [1, 2], strides: [2] } },
);

// MaxPool.
CASES.push(
  { op: 'MaxPool', what: 'k2 s2', ins: [x(2, 3, 6, 6)], attrs: { kernel_shape: [2, 2], strides: [2, 2] } },
  { op: 'MaxPool', what: 'k3 s2 pads 1', ins: [x(1, 2, 7, 7)], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] } },
  { op: 'MaxPool', what: 'k3 s2 ceil_mode', ins: [x(1, 2, 6, 6)], attrs: { kernel_shape: [3, 3], strides: [2, 2], ceil_mode: 1 } },
  {
    op: 'MaxPool',
    what: 'k2 s2 pads 1 ceil_mode (last window dropped)',
    ins: [x(1, 1, 5, 5)],
    attrs: { kernel_shape: [2, 2], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 },
  },
  { op: 'MaxPool', what: 'k2 dilations 2', ins: [x(1, 2, 7, 7)], attrs: { kernel_shape: [2, 2], dilations: [2, 2] } },
  { op: 'MaxPool', what: 'k3 s2 SAME_UPPER', ins: [x(1, 2, 5, 6)], attrs: { kernel_shape: [3, 3], strides: [2, 2], auto_pad: 'SAME_UPPER' } },
  { op: 'MaxPool', what: 'k [2,3] s [1,2]', ins: [x(2, 2, 5, 7)], attrs: { kernel_shape: [2, 3], strides: [1, 2] } },
  { op: 'MaxPool', what: 'k3 s1 pads 1, ties', ins: [{ shape: [1, 2, 5, 5], gen: tied }], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] }, noFd: true },
  { op: 'MaxPool', what: '1-D k3 s2 pads 1', ins: [x(2, 2, 9)], attrs: { kernel_shape: [3], strides: [2], pads: [1, 1] } },
  { op: 'MaxPool', what: 'k3 s2 pads 1, Indices', ins: [x(1, 2, 7, 7)], attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1] }, outputs: 2, noOrt: 'the ORT model here declares every output float; Indices (i64) is checked by the ONNX conformance cases' },
);

// AveragePool.
CASES.push(
  { op: 'AveragePool', what: 'k2 s2', ins: [x(2, 3, 6, 6)], attrs: { kernel_shape: [2, 2], strides: [2, 2] } },
  { op: 'AveragePool', what: 'k3 pads 1, pads excluded', ins: [x(1, 2, 5, 5)], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1] } },
  { op: 'AveragePool', what: 'k3 pads 1, count_include_pad', ins: [x(1, 2, 5, 5)], attrs: { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 1 } },
  {
    op: 'AveragePool',
    what: 'k3 s2 pads 1 ceil_mode count_include_pad (window past the pad)',
    ins: [x(1, 2, 6, 6)],
    attrs: { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1, count_include_pad: 1 },
  },
  { op: 'AveragePool', what: 'k2 s2 ceil_mode', ins: [x(1, 1, 5, 5)], attrs: { kernel_shape: [2, 2], strides: [2, 2], ceil_mode: 1 } },
  { op: 'AveragePool', what: 'k2 dilations 2 pads 1 (opset 19)', ins: [x(1, 2, 7, 7)], attrs: { kernel_shape: [2, 2], dilations: [2, 2], pads: [1, 1, 1, 1] }, opset: 19 },
  { op: 'AveragePool', what: 'k3 s2 SAME_UPPER', ins: [x(1, 2, 5, 6)], attrs: { kernel_shape: [3, 3], strides: [2, 2], auto_pad: 'SAME_UPPER' } },
  { op: 'AveragePool', what: '1-D k3 s2 pads 1 count_include_pad', ins: [x(2, 2, 9)], attrs: { kernel_shape: [3], strides: [2], pads: [1, 1], count_include_pad: 1 } },
);

// GlobalAveragePool.
CASES.push(
  { op: 'GlobalAveragePool', what: '[2,3,4,5]', ins: [x(2, 3, 4, 5)] },
  { op: 'GlobalAveragePool', what: '[1,4,7,1]', ins: [x(1, 4, 7, 1)] },
  { op: 'GlobalAveragePool', what: '1-D [2,3,6]', ins: [x(2, 3, 6)] },
  { op: 'GlobalAveragePool', what: '3-D [1,2,2,3,2]', ins: [x(1, 2, 2, 3, 2)] },
);

// Pad (constant mode).
CASES.push(
  { op: 'Pad', what: '4-D pads H,W, default 0', ins: [x(1, 2, 3, 4), ints(0, 0, 1, 2, 0, 0, 2, 1)] },
  { op: 'Pad', what: '4-D constant_value input', ins: [x(2, 2, 3, 3), ints(0, 1, 1, 0, 1, 0, 0, 2), { shape: [], gen: [1.5] }] },
  { op: 'Pad', what: 'negative pads (crop) and padding', ins: [x(1, 2, 4, 5), ints(0, 1, -1, 0, 0, 0, 1, -2), { shape: [], gen: [-0.75] }] },
  { op: 'Pad', what: '2-D', ins: [x(3, 4), ints(2, 0, 1, 3)] },
  { op: 'Pad', what: 'axes [2,3] (opset 18)', ins: [x(1, 2, 3, 4), ints(1, 1, 2, 0), { shape: [], gen: [2] }, ints(2, 3)], opset: 18 },
  { op: 'Pad', what: 'axes [-1], no constant_value (opset 18)', ins: [x(2, 3, 4), ints(3, 1), null, ints(-1)], opset: 18 },
);

// BatchNormalization.
const bnIns = (shape: number[], c: number): In[] => [x(...shape), stat(c, positive), stat(c), stat(c), stat(c, positive)];
CASES.push(
  { op: 'BatchNormalization', what: 'inference [2,3,4,5]', ins: bnIns([2, 3, 4, 5], 3), opset: 15 },
  { op: 'BatchNormalization', what: 'inference [3,4] epsilon 1e-3', ins: bnIns([3, 4], 4), attrs: { epsilon: 1e-3 }, opset: 15 },
  {
    op: 'BatchNormalization',
    what: 'training [2,3,4,5] momentum 0.8',
    ins: bnIns([2, 3, 4, 5], 3),
    attrs: { training_mode: 1, momentum: 0.8 },
    outputs: 3,
    opset: 15,
  },
  { op: 'BatchNormalization', what: 'training [4,3,2] (opset 14)', ins: bnIns([4, 3, 2], 3), attrs: { training_mode: 1 }, outputs: 3, opset: 14 },
  {
    op: 'BatchNormalization',
    what: 'training, running statistics omitted',
    ins: bnIns([2, 2, 3, 3], 2),
    attrs: { training_mode: 1, epsilon: 1e-2 },
    emptyOutputs: 2,
    opset: 15,
    noOrt: 'onnxruntime-node 1.30 segfaults on training-mode BatchNormalization with omitted outputs',
  },
);

// ---------------------------------------------------------------------------------------------
// Building and running one node.

interface Built {
  g: Graph;
  feeds: Record<string, Tensor>;
  /** Input contents as generated (before rounding to T), by operand. */
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
    if (spec.role === 'ints') {
      const tensor = tensorOf('i64', spec.shape, values);
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
  const outs = addNode(g, c.op, names, { attrs: c.attrs ?? {}, name: 'node', outputs: c.outputs ?? 1 });
  g.outputs.push(...outs);
  return { g, feeds, tensors };
}

/** The forward node plus the nodes of its gradient rule (cotangent on output 0). */
const buildBackward = (c: Case, t: FloatDType) => withGradient(build(c, t), `dy ${c.op} ${c.what}`, (r) => signed(r, 0));

// ---------------------------------------------------------------------------------------------
// onnxruntime.

const FLOAT_ATTRS = new Set(['epsilon', 'momentum']);

const attrProto = (name: string, v: Attrs[string]) => onnxAttr(name, v, FLOAT_ATTRS);

function onnxModel(c: Case, b: Built, outNames: string[]): Uint8Array {
  const node = b.g.nodes[0];
  const inputs: object[] = [];
  const initializer: object[] = [];
  node.inputs.forEach((name, k) => {
    const t = b.tensors[k];
    if (!name || !t) return;
    if (!isFloat(t.dtype)) {
      const raw = new Uint8Array(BigInt64Array.from(Array.from(t.data, (v) => BigInt(v))).buffer);
      initializer.push({ name, dims: t.shape, dataType: P.TensorProto.DataType.INT64, rawData: raw });
    } else
      inputs.push({ name, type: { tensorType: { elemType: P.TensorProto.DataType.FLOAT, shape: { dim: t.shape.map((d) => ({ dimValue: d })) } } } });
  });
  const graph = {
    name: 'one',
    node: [{ opType: c.op, input: node.inputs, output: [...outNames, ...new Array<string>(c.emptyOutputs ?? 0).fill('')], attribute: Object.entries(c.attrs ?? {}).map(([k, v]) => attrProto(k, v)) }],
    input: inputs,
    initializer,
    output: outNames.map((name) => ({ name, type: { tensorType: { elemType: P.TensorProto.DataType.FLOAT } } })),
  };
  return P.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: c.opset ?? 13 }], graph }).finish();
}

async function runOrt(c: Case, b: Built): Promise<{ data: Float32Array; dims: readonly number[] }[]> {
  const outs = b.g.nodes[0].outputs;
  const s = await ort.InferenceSession.create(onnxModel(c, b, outs));
  const feeds: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(b.feeds)) feeds[k] = new ort.Tensor('float32', Float32Array.from(t.data), t.shape);
  const res = await s.run(feeds);
  return outs.map((o) => ({ data: res[o].data as Float32Array, dims: res[o].dims }));
}

// ---------------------------------------------------------------------------------------------
// Comparisons.

/** Ops whose kernels only move data: bit-exact in every format. */
const EXACT = new Set(['MaxPool', 'Pad']);

function compare(op: string, dtype: DType, got: ArrayLike<number>, want: ArrayLike<number>, atol = 0): string | undefined {
  if (got.length !== want.length) return `length ${got.length} vs ${want.length}`;
  if (!isFloat(dtype)) {
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return `[${i}]: got ${got[i]}, want ${want[i]}`;
    return undefined;
  }
  if (dtype === 'f32') {
    return f32Mismatch(got, want, atol);
  }
  return ulpMismatch(dtype as FloatDType, got, want, EXACT.has(op) ? 0 : 1);
}

// ---------------------------------------------------------------------------------------------
// f64 forward math for the finite differences (the rows' reference kernels without f32 storage).

type Ref64 = (n: Node, ins: (Float64Array | undefined)[], shapes: number[][], tensors: (Tensor | undefined)[]) => Float64Array;

const REF64: Record<string, Ref64> = {
  Conv: (n, [xx, w, b], [xs, ws]) => convRef(convGeom(n, xs, ws), xx!, w!, b),
  MaxPool: (n, [xx], [xs]) => maxPoolRef(poolGeom(n, xs), xx!),
  AveragePool: (n, [xx], [xs]) => avgPoolRef(poolGeom(n, xs), xx!, n.attrs.count_include_pad === 1),
  GlobalAveragePool: (_n, [xx], [xs]) => {
    const hw = sizeOf(xs.slice(2));
    return Float64Array.from({ length: xs[0] * xs[1] }, (_, p) => xx!.subarray(p * hw, (p + 1) * hw).reduce((a, v) => a + v, 0) / hw);
  },
  Pad: (n, [xx, , cv], [xs], t) => padRef(xx!, xs, resolvePads(n, xs.length, t[1], t[3]), cv ? cv[0] : 0),
  BatchNormalization: (n, [xx, s, b, m, v], [xs]) => {
    const d = batchNormDims(n, xs);
    const eps = (n.attrs.epsilon as number | undefined) ?? 1e-5;
    if (n.attrs.training_mode !== 1) return batchNormRef(d, xx!, s!, b!, m!, v!, eps);
    const st = batchStatsRef(d, xx!);
    return batchNormRef(d, xx!, s!, b!, st.mean, st.variance, eps);
  },
};

/** Σ dY·Y(ins) in f64. */
function objective(c: Case, n: Node, ins: (Float64Array | undefined)[], shapes: number[][], tensors: (Tensor | undefined)[], dy: ArrayLike<number>): number {
  const y = REF64[c.op](n, ins, shapes, tensors);
  let s = 0;
  for (let i = 0; i < y.length; i++) s += dy[i] * y[i];
  return s;
}

// ---------------------------------------------------------------------------------------------

const name = (c: Case) => `${c.op} ${c.what}`;

// The rows this file covers (test/helpers/covered-elsewhere.ts lets the generic op tests skip them).
describe('coverage', () => {
  const rows = [...convOps, ...poolOps, ...normOps];
  it('every kernel runs on WebGPU: a forward case or a node of a case\'s gradient', () => {
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
      const env = runGraph(b.g, b.feeds);
      const want = await runOrt(c, b);
      b.g.nodes[0].outputs.forEach((o, k) => {
        const got = env.get(o)!;
        expect([...want[k].dims], `output ${k} shape`).toEqual(got.shape);
        expect(compare(c.op, 'f32', got.data, want[k].data), `output ${k}`).toBeUndefined();
      });
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

describe('gradients vs central finite differences (f64)', () => {
  for (const c of CASES.filter((cc) => !cc.noFd))
    it(name(c), () => {
      const bwd = buildBackward(c, 'f32');
      const env = runGraph(bwd.g, bwd.feeds);
      const shapes = bwd.node.inputs.map((v) => (v ? typeOf(bwd.g, v).shape : []));
      const base = bwd.tensors.map((t) => (t && isFloat(t.dtype) ? Float64Array.from(t.data) : undefined));
      const dy = Array.from(env.get('dy')!.data);
      const h = 1e-6;
      const bad = fdVsRule(base, bwd.dx, env, h, (ins) => objective(c, bwd.node, ins, shapes, bwd.tensors, dy));
      expect(bad).toEqual([]);
    });
});

describe('details', () => {
  it('MaxPool gradient goes to the first maximum of a window (ties, as PyTorch)', () => {
    const c: Case = { op: 'MaxPool', what: 'all equal', ins: [{ shape: [1, 1, 3, 3], gen: new Array(9).fill(1) }], attrs: { kernel_shape: [2, 2] } };
    const bwd = buildBackward(c, 'f32');
    const env = runGraph(bwd.g, { ...bwd.feeds, dy: tensorOf('f32', [1, 1, 2, 2], [1, 2, 3, 4]) });
    expect(Array.from(env.get(bwd.dx[0]!)!.data)).toEqual([1, 2, 0, 3, 4, 0, 0, 0, 0]);
  });

  it('window geometry: ceil_mode drops a window that would start in the end padding', () => {
    const b = build(CASES.find((c) => c.what.includes('last window dropped'))!, 'f32');
    expect(typeOf(b.g, b.g.nodes[0].outputs[0]).shape).toEqual([1, 1, 3, 3]);
  });

  it('Pad modes edge, reflect, wrap (interpreter and WebGPU)', async () => {
    const xs = { shape: [2, 3], gen: [1, 2, 3, 4, 5, 6] };
    const want: Record<string, number[]> = {
      // pads: rows 0 before / 1 after, cols 2 before / 1 after -> [3, 6]
      edge: [1, 1, 1, 2, 3, 3, 4, 4, 4, 5, 6, 6, 4, 4, 4, 5, 6, 6],
      reflect: [3, 2, 1, 2, 3, 2, 6, 5, 4, 5, 6, 5, 3, 2, 1, 2, 3, 2],
      wrap: [2, 3, 1, 2, 3, 1, 5, 6, 4, 5, 6, 4, 2, 3, 1, 2, 3, 1],
    };
    for (const [mode, y] of Object.entries(want)) {
      const b = build({ op: 'Pad', what: mode, ins: [xs, ints(0, 2, 1, 1)], attrs: { mode } }, 'f32');
      expect(typeOf(b.g, b.g.outputs[0]).shape).toEqual([3, 6]);
      expect(Array.from(runGraph(b.g, b.feeds).get(b.g.outputs[0])!.data), mode).toEqual(y);
    }
  });

  it('clear errors for what is not supported', () => {
    const err = (c: Case) => () => build(c, 'f32');
    expect(err({ op: 'Pad', what: 'bad mode', ins: [x(2, 3), ints(1, 1, 1, 1)], attrs: { mode: 'mirror' } })).toThrow(/unknown mode 'mirror'/);
    expect(err({ op: 'Pad', what: 'reflect too wide', ins: [x(2, 3), ints(0, 3, 0, 0)], attrs: { mode: 'reflect' } })).toThrow(/pads < the axis size/);
    expect(() => buildBackward({ op: 'Pad', what: 'reflect grad', ins: [x(2, 3), ints(0, 1, 0, 1)], attrs: { mode: 'reflect' } }, 'f32')).toThrow(
      /no gradient for Pad mode=reflect yet/,
    );
    expect(err({ op: 'Pad', what: 'pads input', ins: [x(2, 3), { shape: [4], gen: [1, 1, 1, 1] }] })).toThrow(/pads input must be a constant/);
    expect(err({ op: 'Conv', what: '3-D', ins: [x(1, 1, 2, 2, 2), x(1, 1, 1, 1, 1)] })).toThrow(/only 1-D and 2-D/);
    expect(err({ op: 'Conv', what: 'bad group', ins: [x(1, 4, 3, 3), x(2, 3, 1, 1)], attrs: { group: 2 } })).toThrow(/group/);
    expect(err({ op: 'MaxPool', what: 'bad storage_order', ins: [x(1, 1, 4, 4)], attrs: { kernel_shape: [2, 2], storage_order: 2 }, outputs: 2 })).toThrow(/storage_order must be 0 or 1/);
    expect(err({ op: 'BatchNormalization', what: 'old training', ins: bnIns([2, 2, 2], 2), outputs: 3 })).toThrow(/training_mode=1/);
  });
});

// ---------------------------------------------------------------------------------------------
// Every op in one small CNN through the compiler: forward vs onnxruntime, and the whole
// training step (forward, backward, optimizer) kernel by kernel on WebGPU vs the interpreter,
// per policy: checks the precision classes (BatchNormalization's statistics stay f32), the
// casts and the dtypes of the gradient ops.

const CNN_INPUT = [2, 3, 8, 8];

/** `inference`: the first BatchNormalization in inference mode (what mpc's evaluation graph runs). */
function cnnModel(inference = false): Uint8Array {
  const r = rng(seedOf('cnn model'));
  const initializer: object[] = [];
  const param = (name: string, shape: number[], gen: Gen = uniform(-0.5, 0.5)) => {
    const data = Float32Array.from({ length: sizeOf(shape) }, (_, i) => gen(r, i));
    initializer.push({ name, dims: shape, dataType: P.TensorProto.DataType.FLOAT, rawData: new Uint8Array(data.buffer) });
    return name;
  };
  const int64 = (name: string, v: number[]) => {
    initializer.push({ name, dims: [v.length], dataType: P.TensorProto.DataType.INT64, rawData: new Uint8Array(BigInt64Array.from(v.map(BigInt)).buffer) });
    return name;
  };
  const node = (opType: string, input: string[], output: string[], attrs: Attrs = {}) => ({
    opType,
    name: output[0],
    input,
    output,
    attribute: Object.entries(attrs).map(([k, v]) => attrProto(k, v)),
  });
  const nodes = [
    node('Pad', ['input', int64('pads', [0, 0, 1, 1, 0, 0, 1, 1]), param('pad_value', [], () => 0.25)], ['padded']),
    node('Conv', ['padded', param('w1', [4, 3, 3, 3]), param('b1', [4])], ['c1']),
    node(
      'BatchNormalization',
      ['c1', param('bn_scale', [4], uniform(0.5, 1.5)), param('bn_bias', [4]), param('bn_mean', [4]), param('bn_var', [4], uniform(0.5, 1.5))],
      inference ? ['bn'] : ['bn', 'bn_running_mean', 'bn_running_var'],
      { training_mode: inference ? 0 : 1, momentum: 0.9 },
    ),
    node('Relu', ['bn'], ['r1']),
    node('MaxPool', ['r1'], ['p1'], { kernel_shape: [2, 2], strides: [2, 2] }),
    node('Conv', ['p1', param('w2', [6, 2, 3, 3]), param('b2', [6])], ['c2'], { group: 2, pads: [1, 1, 1, 1] }),
    node('AveragePool', ['c2'], ['p2'], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], count_include_pad: 1 }),
    node('BatchNormalization', ['p2', param('bn2_scale', [6], uniform(0.5, 1.5)), param('bn2_bias', [6]), param('bn2_mean', [6]), param('bn2_var', [6], uniform(0.5, 1.5))], ['bn2']),
    node('GlobalAveragePool', ['bn2'], ['g']),
    node('Flatten', ['g'], ['f']),
    node('Gemm', ['f', param('w3', [5, 6]), param('b3', [5])], ['logits'], { transB: 1 }),
  ];
  const vi = (name: string, shape: number[]) => ({ name, type: { tensorType: { elemType: P.TensorProto.DataType.FLOAT, shape: { dim: shape.map((d) => ({ dimValue: d })) } } } });
  const graph = { name: 'cnn', node: nodes, input: [vi('input', CNN_INPUT)], initializer, output: [vi('logits', [2, 5])] };
  return P.ModelProto.encode({ irVersion: 8, opsetImport: [{ domain: '', version: 15 }], graph }).finish();
}

describe('a CNN with every op, through the compiler', () => {
  const model = cnnModel();
  const r = rng(seedOf('cnn input'));
  const input = tensorOf('f32', CNN_INPUT, Array.from({ length: sizeOf(CNN_INPUT) }, () => signed(r, 0)));
  const labels = tensorOf('i64', [2], [1, 4]);

  // The evaluation graph is the model in inference: a training-mode BatchNormalization whose
  // statistics are initializers normalises with them (as onnxruntime runs the inference form).
  it('fp32 forward (interpreter) equals onnxruntime', async () => {
    const s = await ort.InferenceSession.create(cnnModel(true));
    const want = (await s.run({ input: new ort.Tensor('float32', input.data as Float32Array, CNN_INPUT) })).logits.data as Float32Array;
    const g = runPipeline(importOnnx(model), passCtx({ policy: 'fp32', batch: 2 }), EVAL_PIPELINE);
    expect(compare('cnn', 'f32', runGraph(g, { input }).get('logits')!.data, want)).toBeUndefined();
  });

  for (const policy of ['fp32', 'fp16', 'bf16'])
    it(`training step, ${policy}: every WebGPU kernel vs the interpreter`, async () => {
      const g = runPipeline(importOnnx(model), passCtx({ policy, batch: 2, optimizer: { kind: 'sgd' } }), TRAIN_PIPELINE);
      // BatchNormalization computes in f32 and reads its statistics as f32 whatever the policy.
      for (const n of g.nodes.filter((nn) => nn.op === 'BatchNormalization')) {
        expect(n.prec?.compute).toBe('f32');
        for (const v of n.inputs.slice(1)) expect(g.values.get(v)!.dtype).toBe('f32');
      }
      const conv = g.nodes.find((n) => n.op === 'Conv')!;
      expect(g.values.get(conv.outputs[0])!.dtype).toBe(policy === 'fp32' ? 'f32' : policy === 'fp16' ? 'f16' : 'bf16');
      // An absolute floor for f32 sums that cancel analytically: the conv bias before a
      // training-mode BatchNormalization has gradient 0 (the batch mean removes it), which
      // both sides compute as ~1e-9 of f32 rounding noise.
      expect(await gpuVsInterp(compare, g, { input, labels }, { f16: true }, 0, 1e-7)).toEqual([]);
    });
});
