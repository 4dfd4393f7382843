// LSTM, GRU, RNN (src/ops/recurrent.ts) and Einsum (src/ops/einsum.ts), which the decompose
// pass (src/passes/decompose.ts) lowers into other rows of the table. Checked:
//
//  1. against onnxruntime on one-node ONNX models, for each op and attribute variant: both the
//     rows' own reference loops (a pipeline without decompose) and the decomposed graph (the
//     eval pipeline), on the interpreter;
//  2. the decomposed graph on WebGPU against the interpreter (a few variants);
//  3. gradients of the decomposed graph (the training pipeline's autodiff through the unrolled
//     recurrence / the contraction) against central finite differences of the rows' reference
//     loops, with the loss computed here in f64;
//  4. a small LSTM and GRU classifier, exported the way PyTorch exports nn.LSTM/nn.GRU with
//     batch_first (Transpose, the recurrent op, Squeeze or Reshape, a linear layer), through the
//     training pipeline in fp32 and bf16: one step on WebGPU against the interpreter;
//  5. errors for what is not lowered, and the pass's post-condition.
import { describe, expect, it } from 'vitest';
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { importOnnx } from '../src/onnx/import.js';
import { EVAL_PIPELINE, TRAIN_PIPELINE, runPipeline } from '../src/passes/pipeline.js';
import { bindDims } from '../src/passes/bind-dims.js';
import { inferTypes } from '../src/passes/infer-types.js';
import { decompose } from '../src/passes/decompose.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import type { Graph } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { opRow } from '../src/ops/table.js';
import { recurrentOps } from '../src/ops/recurrent.js';
import { einsumOps } from '../src/ops/einsum.js';
import { runOnGpu } from './helpers/gpu.js';
import { rng, seedOf } from './helpers/single-node.js';

const O = onnx.onnx;
const A = O.AttributeProto.AttributeType;

// ---------------------------------------------------------------------------------------------
// One-node models.

type Attr = number | string | number[] | string[] | { f: number } | { floats: number[] };

interface In {
  shape: number[];
  /** Integer contents (sequence_lens): an int32 initializer. */
  ints?: number[];
}

interface Case {
  op: 'LSTM' | 'GRU' | 'RNN' | 'Einsum';
  what: string;
  opset: number;
  /** null: an omitted optional input. */
  ins: (In | null)[];
  attrs?: Record<string, Attr>;
  /** Which outputs the node declares (false: omitted ''). Default: the first only. */
  outs?: boolean[];
  /** Input range (default [-1, 1]). */
  range?: number;
}

function attrProto(name: string, a: Attr) {
  if (typeof a === 'number') return { name, type: A.INT, i: a };
  if (typeof a === 'string') return { name, type: A.STRING, s: new TextEncoder().encode(a) };
  if (Array.isArray(a)) {
    if (a.length && typeof a[0] === 'string') return { name, type: A.STRINGS, strings: (a as string[]).map((s) => new TextEncoder().encode(s)) };
    return { name, type: A.INTS, ints: a as number[] };
  }
  if ('f' in a) return { name, type: A.FLOAT, f: a.f };
  return { name, type: A.FLOATS, floats: a.floats };
}

const valueInfo = (name: string, shape?: number[], elemType = 1) => ({
  name,
  type: { tensorType: { elemType, ...(shape ? { shape: { dim: shape.map((d) => ({ dimValue: d })) } } : {}) } },
});

/**
 * The model of a case, with random contents: float operands become graph inputs (or, with
 * `asParams`, float initializers: parameters of mpc), integer ones int64 initializers.
 */
function model(c: Case, outShapes: number[][], opts: { asParams?: boolean; given?: Record<string, Tensor> } = {}): { bytes: Uint8Array; feeds: Record<string, Tensor>; names: string[]; outs: string[] } {
  const r = rng(seedOf(`${c.op} ${c.what}`));
  const range = c.range ?? 1;
  const names = c.ins.map((s, k) => (s ? `x${k}` : ''));
  const feeds: Record<string, Tensor> = {};
  const initializer: object[] = [];
  const input: object[] = [];
  c.ins.forEach((s, k) => {
    if (!s) return;
    if (s.ints) {
      initializer.push({ name: names[k], dataType: 6, dims: s.shape, int32Data: s.ints });
      return;
    }
    const fresh = Float32Array.from({ length: sizeOf(s.shape) }, () => (2 * r() - 1) * range);
    const data = (opts.given?.[names[k]]?.data as Float32Array | undefined) ?? fresh;
    if (opts.asParams) initializer.push({ name: names[k], dataType: 1, dims: s.shape, floatData: Array.from(data) });
    else input.push(valueInfo(names[k], s.shape));
    feeds[names[k]] = { dtype: 'f32', shape: [...s.shape], data };
  });
  const declared = c.outs ?? [true];
  const outs = declared.map((on, k) => (on ? `y${k}` : ''));
  const node = { opType: c.op, name: 'node', input: names, output: outs, attribute: Object.entries(c.attrs ?? {}).map(([k, v]) => attrProto(k, v)) };
  const m = O.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: c.opset }],
    graph: {
      name: 'g',
      node: [node],
      initializer,
      input,
      output: outs.flatMap((o, k) => (o ? [valueInfo(o, outShapes[k])] : [])),
    },
  });
  return { bytes: O.ModelProto.encode(m).finish(), feeds, names, outs };
}

/** Output shapes of a case, from the row's own inference. */
function shapesOf(c: Case): number[][] {
  const n = { name: 'node', op: c.op, inputs: c.ins.map((s, k) => (s ? `x${k}` : '')), outputs: ['y0', 'y1', 'y2'], attrs: attrsOf(c) };
  const ins = c.ins.map((s) => (s ? { dtype: s.ints ? ('i32' as const) : ('f32' as const), shape: s.shape } : undefined));
  const consts = c.ins.map((s) => (s?.ints ? { dtype: 'i32' as const, shape: s.shape, data: Int32Array.from(s.ints) } : undefined));
  return opRow(c.op).infer(n, ins as never, consts).map((t) => t.shape);
}

/** The case's attributes as the importer makes them. */
function attrsOf(c: Case) {
  const out: Record<string, number | string | number[] | string[]> = {};
  for (const [k, a] of Object.entries(c.attrs ?? {}))
    out[k] = typeof a === 'number' || typeof a === 'string' || Array.isArray(a) ? a : 'f' in a ? Math.fround(a.f) : a.floats.map(Math.fround);
  return out;
}

/** Graph of a case: imported, dims bound, types inferred; decomposed when `lower`. */
function compile(bytes: Uint8Array, lower: boolean): Graph {
  return runPipeline(importOnnx(bytes), passCtx({ policy: 'fp32', loss: 'none' }), lower ? EVAL_PIPELINE : [bindDims, inferTypes]);
}

/** Worst |got - want| / (abs + rel |want|): at most 1 passes. */
function err(got: ArrayLike<number>, want: ArrayLike<number>, abs: number, rel: number): { worst: number; at: number } {
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (abs + rel * Math.abs(want[i]));
    if (!(e <= worst)) [worst, at] = [Number.isNaN(e) ? Infinity : e, i];
  }
  return { worst, at };
}

// ---------------------------------------------------------------------------------------------
// Cases. Sizes: T time steps, B batch, I input features, H hidden.

const T = 3;
const Bt = 2;
const I = 3;
const H = 4;

function rnnIns(op: 'LSTM' | 'GRU' | 'RNN', o: { D?: number; bias?: boolean; h0?: boolean; c0?: boolean; P?: boolean; layout?: number; seq?: number[]; t?: number } = {}): (In | null)[] {
  const D = o.D ?? 1;
  const G = { LSTM: 4, GRU: 3, RNN: 1 }[op];
  const t = o.t ?? T;
  const state = o.layout === 1 ? [Bt, D, H] : [D, Bt, H];
  const ins: (In | null)[] = [
    { shape: o.layout === 1 ? [Bt, t, I] : [t, Bt, I] },
    { shape: [D, G * H, I] },
    { shape: [D, G * H, H] },
    o.bias ? { shape: [D, 2 * G * H] } : null,
    o.seq ? { shape: [Bt], ints: o.seq } : null,
    o.h0 ? { shape: state } : null,
  ];
  if (op === 'LSTM') ins.push(o.c0 ? { shape: state } : null, o.P ? { shape: [D, 3 * H] } : null);
  while (ins.length && ins[ins.length - 1] === null) ins.pop();
  return ins;
}

const ALL3 = [true, true, true];
const ALL2 = [true, true];

const RNN_CASES: Case[] = [
  { op: 'LSTM', what: 'defaults, all outputs', opset: 14, ins: rnnIns('LSTM', { bias: true }), attrs: { hidden_size: H }, outs: ALL3 },
  { op: 'LSTM', what: 'no bias, Y_h only (opset 7)', opset: 7, ins: rnnIns('LSTM'), attrs: { hidden_size: H }, outs: [false, true] },
  { op: 'LSTM', what: 'reverse, initial_h/c, Y and Y_c', opset: 14, ins: rnnIns('LSTM', { bias: true, h0: true, c0: true }), attrs: { hidden_size: H, direction: 'reverse' }, outs: [true, false, true] },
  {
    op: 'LSTM',
    what: 'bidirectional, initial states, peepholes',
    opset: 14,
    ins: rnnIns('LSTM', { D: 2, bias: true, h0: true, c0: true, P: true }),
    attrs: { hidden_size: H, direction: 'bidirectional' },
    outs: ALL3,
  },
  { op: 'LSTM', what: 'layout 1, bidirectional, initial states', opset: 14, ins: rnnIns('LSTM', { D: 2, bias: true, h0: true, c0: true, layout: 1 }), attrs: { hidden_size: H, direction: 'bidirectional', layout: 1 }, outs: ALL3 },
  { op: 'LSTM', what: 'clip 0.3', opset: 14, ins: rnnIns('LSTM', { bias: true, h0: true }), attrs: { hidden_size: H, clip: { f: 0.3 } }, outs: ALL3, range: 2 },
  { op: 'LSTM', what: 'input_forget', opset: 14, ins: rnnIns('LSTM', { bias: true, h0: true, c0: true }), attrs: { hidden_size: H, input_forget: 1 }, outs: ALL3 },
  {
    op: 'LSTM',
    what: 'activations LeakyRelu, Tanh, Affine with alpha/beta lists',
    opset: 14,
    ins: rnnIns('LSTM', { bias: true }),
    attrs: { hidden_size: H, activations: ['LeakyRelu', 'Tanh', 'Affine'], activation_alpha: { floats: [0.1, 0.5] }, activation_beta: { floats: [0.25] } },
    outs: ALL3,
  },
  {
    op: 'LSTM',
    what: 'bidirectional activations Sigmoid ScaledTanh Relu | Sigmoid Softplus Tanh',
    opset: 14,
    ins: rnnIns('LSTM', { D: 2, bias: true }),
    attrs: { hidden_size: H, direction: 'bidirectional', activations: ['Sigmoid', 'ScaledTanh', 'Relu', 'Sigmoid', 'Softplus', 'Tanh'], activation_alpha: { floats: [0.7] }, activation_beta: { floats: [1.3] } },
    outs: ALL3,
  },
  {
    // Activations lowered to rows of src/ops/activations.ts.
    op: 'LSTM',
    what: 'activations HardSigmoid, Elu, Softsign (alpha/beta lists)',
    opset: 14,
    ins: rnnIns('LSTM', { bias: true, h0: true }),
    attrs: { hidden_size: H, activations: ['HardSigmoid', 'Elu', 'Softsign'], activation_alpha: { floats: [0.3, 0.9] }, activation_beta: { floats: [0.4] } },
    outs: ALL3,
    range: 2,
  },
  { op: 'LSTM', what: 'sequence_lens all full length, T = 1', opset: 14, ins: rnnIns('LSTM', { bias: true, seq: [1, 1], t: 1 }), attrs: { hidden_size: H }, outs: ALL3 },
  { op: 'GRU', what: 'defaults, Y and Y_h', opset: 14, ins: rnnIns('GRU', { bias: true }), attrs: { hidden_size: H }, outs: ALL2 },
  { op: 'GRU', what: 'no bias, Y_h only (opset 7)', opset: 7, ins: rnnIns('GRU'), attrs: { hidden_size: H }, outs: [false, true] },
  { op: 'GRU', what: 'linear_before_reset, initial_h', opset: 14, ins: rnnIns('GRU', { bias: true, h0: true }), attrs: { hidden_size: H, linear_before_reset: 1 }, outs: ALL2 },
  { op: 'GRU', what: 'linear_before_reset, no bias, reverse', opset: 14, ins: rnnIns('GRU'), attrs: { hidden_size: H, linear_before_reset: 1, direction: 'reverse' }, outs: ALL2 },
  {
    op: 'GRU',
    what: 'bidirectional, layout 1, initial_h, linear_before_reset',
    opset: 14,
    ins: rnnIns('GRU', { D: 2, bias: true, h0: true, layout: 1 }),
    attrs: { hidden_size: H, direction: 'bidirectional', layout: 1, linear_before_reset: 1 },
    outs: ALL2,
  },
  { op: 'GRU', what: 'bidirectional, initial_h, clip 0.4', opset: 14, ins: rnnIns('GRU', { D: 2, bias: true, h0: true }), attrs: { hidden_size: H, direction: 'bidirectional', clip: { f: 0.4 } }, outs: ALL2, range: 2 },
  {
    op: 'GRU',
    what: 'activations Sigmoid, ScaledTanh (alpha/beta)',
    opset: 14,
    ins: rnnIns('GRU', { bias: true, h0: true }),
    attrs: { hidden_size: H, activations: ['Sigmoid', 'ScaledTanh'], activation_alpha: { floats: [0.8] }, activation_beta: { floats: [1.5] } },
    outs: ALL2,
  },
  { op: 'RNN', what: 'defaults, Y and Y_h', opset: 14, ins: rnnIns('RNN', { bias: true }), attrs: { hidden_size: H }, outs: ALL2 },
  { op: 'RNN', what: 'no bias, Y only (opset 7)', opset: 7, ins: rnnIns('RNN'), attrs: { hidden_size: H } },
  {
    op: 'RNN',
    what: 'bidirectional Relu | Tanh, initial_h',
    opset: 14,
    ins: rnnIns('RNN', { D: 2, bias: true, h0: true }),
    attrs: { hidden_size: H, direction: 'bidirectional', activations: ['Relu', 'Tanh'] },
    outs: ALL2,
  },
  { op: 'RNN', what: 'layout 1, reverse, clip 0.5', opset: 14, ins: rnnIns('RNN', { bias: true, h0: true, layout: 1 }), attrs: { hidden_size: H, direction: 'reverse', layout: 1, clip: { f: 0.5 } }, outs: ALL2, range: 2 },
  {
    op: 'RNN',
    what: 'activation LeakyRelu alpha 0.2',
    opset: 14,
    ins: rnnIns('RNN', { bias: true }),
    attrs: { hidden_size: H, activations: ['LeakyRelu'], activation_alpha: { floats: [0.2] } },
    outs: ALL2,
  },
  {
    op: 'RNN',
    what: 'activation ThresholdedRelu alpha 0.1',
    opset: 14,
    ins: rnnIns('RNN', { bias: true }),
    attrs: { hidden_size: H, activations: ['ThresholdedRelu'], activation_alpha: { floats: [0.1] } },
    outs: ALL2,
  },
];

const e = (...shapes: number[][]): In[] => shapes.map((shape) => ({ shape }));
const EINSUM_CASES: Case[] = (
  [
    ['bij,bjk->bik', e([2, 3, 4], [2, 4, 5])],
    ['bhid,bhjd->bhij', e([2, 2, 3, 4], [2, 2, 5, 4])],
    ['bhij,bhjd->bhid', e([2, 2, 3, 5], [2, 2, 5, 4])],
    ['ij,jk->ik', e([3, 4], [4, 5])],
    ['ij,jk', e([3, 4], [4, 5])],
    ['bi,bi->b', e([3, 5], [3, 5])],
    ['i,i', e([5], [5])],
    ['ii->i', e([4, 4])],
    ['ii', e([4, 4])],
    ['...ii->...i', e([3, 4, 4])],
    ['bii->b', e([2, 3, 3])],
    ['...ij,...jk->...ik', e([2, 1, 3, 4], [1, 5, 4, 6])],
    ['...ij,jk->...ik', e([2, 3, 4], [4, 5])],
    ['i,j->ij', e([3], [4])],
    ['ij,ij->ij', e([3, 4], [3, 4])],
    ['ij->i', e([3, 4])],
    ['ij->ji', e([3, 4])],
    ['ijk->', e([2, 3, 4])],
    ['b i j , b j k -> b i k', e([2, 3, 4], [2, 4, 2])],
    ['ij,jk,kl->il', e([2, 3], [3, 4], [4, 2])],
    ['abc,cd->abd', e([2, 3, 4], [4, 5])],
  ] as [string, In[]][]
).map(([equation, ins]) => ({ op: 'Einsum', what: `'${equation}' [${ins.map((i) => i.shape).join('] x [')}]`, opset: 12, ins, attrs: { equation } }));

const CASES = [...RNN_CASES, ...EINSUM_CASES];

// ---------------------------------------------------------------------------------------------

describe('coverage', () => {
  it('every row has onnxruntime cases, gradient cases and a WebGPU case', () => {
    const rows = [...recurrentOps, ...einsumOps].map((r) => r.op);
    expect(rows.filter((op) => !CASES.some((c) => c.op === op))).toEqual([]);
    expect(rows.filter((op) => !GRAD_CASES.some((c) => c.op === op))).toEqual([]);
    expect(rows.filter((op) => !GPU_CASES.some((key) => caseOf(key).op === op))).toEqual([]);
  });
  it('the rows have no gradient rule or kernel: the decompose pass lowers them', () => {
    for (const r of [...recurrentOps, ...einsumOps]) {
      expect(r.decompose, r.op).toBeDefined();
      expect(r.wgsl, r.op).toBeUndefined();
      expect(r.grad, r.op).toBeUndefined();
    }
  });
});

/** Row-major transpose: out[i] = x[perm-permuted index]. */
function transpose(data: ArrayLike<number>, shape: number[], perm: number[]): Float32Array {
  const out = new Float32Array(data.length);
  const outShape = perm.map((p) => shape[p]);
  const strides = shape.map((_, d) => sizeOf(shape.slice(d + 1)));
  for (let i = 0; i < out.length; i++) {
    let r = i;
    let off = 0;
    for (let d = outShape.length - 1; d >= 0; d--) {
      off += (r % outShape[d]) * strides[perm[d]];
      r = Math.floor(r / outShape[d]);
    }
    out[i] = data[off];
  }
  return out;
}

/**
 * onnxruntime's results for a case. Its CPU recurrent kernels lack layout 1, so such a case runs
 * as the equivalent layout-0 model (X and the initial states transposed in, outputs back).
 */
async function ortRun(c: Case, feeds: Record<string, Tensor>, outs: string[]): Promise<Record<string, { dims: number[]; data: Float32Array }>> {
  const batchwise = c.op !== 'Einsum' && c.attrs?.layout === 1;
  const c0: Case = batchwise ? { ...c, attrs: { ...c.attrs, layout: 0 }, ins: c.ins.map((s, k) => (s && [0, 5, 6].includes(k) ? { shape: [s.shape[1], s.shape[0], s.shape[2]] } : s)) } : c;
  const given: Record<string, Tensor> = {};
  for (const [k, t] of Object.entries(feeds)) {
    const slot = Number(k.slice(1));
    given[k] = batchwise && [0, 5, 6].includes(slot) ? { ...t, shape: [t.shape[1], t.shape[0], t.shape[2]], data: transpose(t.data, t.shape, [1, 0, 2]) } : t;
  }
  const { bytes } = model(c0, shapesOf(c0), { given });
  const s = await ort.InferenceSession.create(bytes);
  const ortFeeds: Record<string, ort.Tensor> = {};
  for (const [k, t] of Object.entries(given)) ortFeeds[k] = new ort.Tensor('float32', t.data as Float32Array, t.shape);
  const got = await s.run(ortFeeds);
  const res: Record<string, { dims: number[]; data: Float32Array }> = {};
  for (const o of outs.filter(Boolean)) {
    const dims = got[o].dims.map(Number);
    const data = got[o].data as Float32Array;
    if (!batchwise) res[o] = { dims, data };
    else {
      const perm = o === 'y0' ? [2, 0, 1, 3] : [1, 0, 2];
      res[o] = { dims: perm.map((p) => dims[p]), data: transpose(data, dims, perm) };
    }
  }
  return res;
}

describe('vs onnxruntime: reference loops and decomposed graphs on the interpreter', () => {
  for (const c of CASES)
    it(`${c.op} ${c.what} (opset ${c.opset})`, async () => {
      const { bytes, feeds, outs } = model(c, shapesOf(c));
      const want = await ortRun(c, feeds, outs);
      for (const lower of [false, true]) {
        const g = compile(bytes, lower);
        expect(g.nodes.some((n) => n.op === c.op)).toBe(!lower);
        const env = runGraph(g, feeds);
        for (const o of outs.filter(Boolean)) {
          const got = env.get(o)!;
          expect(got.shape, `${o} shape`).toEqual(want[o].dims);
          // onnxruntime's recurrent kernels use approximate sigmoid/tanh (absolute error ~1e-6).
          const { worst, at } = err(got.data, want[o].data, 1e-5, 1e-4);
          expect(worst, `${lower ? 'decomposed' : 'reference'} ${o}[${at}]: ours ${got.data[at]}, onnxruntime ${want[o].data[at]}`).toBeLessThanOrEqual(1);
        }
      }
    });
});

// ---------------------------------------------------------------------------------------------
// 2. WebGPU.

const GPU_CASES = [
  'LSTM bidirectional, initial states, peepholes',
  'LSTM clip 0.3',
  'GRU bidirectional, layout 1, initial_h, linear_before_reset',
  'RNN defaults, Y and Y_h',
  "Einsum '...ij,...jk->...ik' [2,1,3,4] x [1,5,4,6]",
  "Einsum 'bhid,bhjd->bhij' [2,2,3,4] x [2,2,5,4]",
  "Einsum '...ii->...i' [3,4,4]",
  "Einsum 'ij,jk,kl->il' [2,3] x [3,4] x [4,2]",
];

const caseOf = (key: string) => {
  const c = CASES.find((x) => `${x.op} ${x.what}` === key);
  if (!c) throw new Error(`no case '${key}'`);
  return c;
};

describe('decomposed graphs on WebGPU vs the interpreter (f32)', () => {
  for (const what of GPU_CASES)
    it(what, async () => {
      const c = caseOf(what);
      const { bytes, feeds, outs } = model(c, shapesOf(c));
      const g = compile(bytes, true);
      const env = runGraph(g, feeds);
      const got = await runOnGpu(g, feeds);
      for (const o of outs.filter(Boolean)) {
        const { worst, at } = err(got.get(o)!.data, env.get(o)!.data, 1e-6, 1e-5);
        expect(worst, `${o}[${at}]`).toBeLessThanOrEqual(1);
      }
    });
});

// ---------------------------------------------------------------------------------------------
// 3. Gradients of the decomposed graph vs finite differences of the reference loops.

interface GradCase {
  op: Case['op'];
  what: string;
  case: Case;
  /** The output the loss reads. */
  out: number;
}

const gradCase = (key: string, out = 0): GradCase => {
  const c = caseOf(key);
  const what = key.slice(c.op.length + 1);
  return { op: c.op, what: `${what}, loss on output ${out}`, case: { ...c, outs: c.outs?.map((_, k) => k === out) ?? [true] }, out };
};

const GRAD_CASES: GradCase[] = [
  gradCase('LSTM bidirectional, initial states, peepholes', 0),
  gradCase('LSTM layout 1, bidirectional, initial states', 2),
  gradCase('LSTM clip 0.3', 1),
  gradCase('LSTM input_forget', 2),
  gradCase('GRU defaults, Y and Y_h', 0),
  gradCase('GRU linear_before_reset, initial_h', 1),
  gradCase('GRU bidirectional, layout 1, initial_h, linear_before_reset', 0),
  gradCase('RNN layout 1, reverse, clip 0.5', 0),
  gradCase("Einsum 'bhid,bhjd->bhij' [2,2,3,4] x [2,2,5,4]"),
  gradCase("Einsum '...ij,...jk->...ik' [2,1,3,4] x [1,5,4,6]"),
  gradCase("Einsum '...ii->...i' [3,4,4]"),
  gradCase("Einsum 'i,j->ij' [3] x [4]"),
  gradCase("Einsum 'ij,jk,kl->il' [2,3] x [3,4] x [4,2]"),
];

describe('gradients of the decomposed graph (training pipeline) vs finite differences', () => {
  for (const gc of GRAD_CASES)
    it(`${gc.op} ${gc.what}`, () => {
      const c = gc.case;
      // The output the loss reads is the node's only declared one: MSE against a zero target.
      const { bytes, feeds } = model(c, shapesOf(c), { asParams: true });
      const g = runPipeline(importOnnx(bytes), passCtx({ policy: 'fp32', loss: 'mse', optimizer: { kind: 'sgd', lr: 0 } }), TRAIN_PIPELINE);
      expect(g.nodes.some((n) => n.op === c.op)).toBe(false);
      const yShape = shapesOf(c)[gc.out];
      const target: Tensor = { dtype: 'f32', shape: yShape, data: new Float32Array(sizeOf(yShape)) };
      const env = runGraph(g, { target });
      const grads = (g.meta.grads as { params: Record<string, string> }).params;

      // The oracle: the row's reference loop, MSE in f64.
      const ref = compile(bytes, false);
      const y = `y${gc.out}`;
      const loss = (p: string, data: Float32Array) => {
        const out = runGraph(ref, {}, new Map([[p, { ...feeds[p], data }]])).get(y)!.data;
        let s = 0;
        for (const v of out) s += v * v;
        return s / out.length;
      };
      expect(env.get('loss')!.data[0]).toBeCloseTo(loss('x0', feeds.x0.data as Float32Array), 5);
      const bad: string[] = [];
      // Errors are measured against the largest gradient entry of any operand.
      const scale = Math.max(1e-3, ...Object.keys(feeds).flatMap((p) => Array.from(env.get(grads[p])!.data, Math.abs)));
      for (const p of Object.keys(feeds)) {
        const an = env.get(grads[p])!.data;
        const x = feeds[p].data as Float32Array;
        for (let i = 0; i < x.length; i++) {
          const at = (delta: number) => {
            const d = Float32Array.from(x);
            d[i] += delta;
            return { v: loss(p, d), x: d[i] };
          };
          // Three step sizes: a step across a kink of the clip (or Relu) misleads the larger ones.
          const fds = [1e-2, 2.5e-3, 1e-4].map((h) => {
            const [a, b] = [at(h), at(-h)];
            return (a.v - b.v) / (a.x - b.x);
          });
          if (!fds.some((fd) => Math.abs(fd - an[i]) <= 2e-3 * scale)) bad.push(`${p}[${i}]: autodiff ${an[i]}, finite differences ${fds.join(', ')}`);
        }
      }
      expect(bad).toEqual([]);
    });
});

// ---------------------------------------------------------------------------------------------
// 4. A classifier as PyTorch exports it, trained one step on WebGPU vs the interpreter.

/**
 * x [B, T, I] (batch_first) -> Transpose -> LSTM or GRU (bias, bidirectional for the GRU) ->
 * LSTM: Y_h [1, B, H] -> Squeeze(0); GRU: Y [T, 2, B, H] -> Transpose [B, T, 2, H] -> Reshape
 * [B, T*2*H] -> Gemm (transB) -> logits [B, 3].
 */
function classifier(cell: 'LSTM' | 'GRU'): Uint8Array {
  const r = rng(seedOf(`classifier ${cell}`));
  const D = cell === 'GRU' ? 2 : 1;
  const G = cell === 'LSTM' ? 4 : 3;
  const w = (name: string, dims: number[], s = 0.5) => ({ name, dataType: 1, dims, floatData: Array.from({ length: sizeOf(dims) }, () => (2 * r() - 1) * s) });
  const feat = cell === 'LSTM' ? H : T * 2 * H;
  const ints = (name: string, v: number[]) => ({ name, dataType: 7, dims: [v.length], int64Data: v });
  const node = (opType: string, input: string[], output: string[], attrs: Record<string, Attr> = {}) => ({
    opType,
    name: output.find(Boolean),
    input,
    output,
    attribute: Object.entries(attrs).map(([k, v]) => attrProto(k, v)),
  });
  const rnn =
    cell === 'LSTM'
      ? node('LSTM', ['xt', 'W', 'R', 'B'], ['', 'yh'], { hidden_size: H })
      : node('GRU', ['xt', 'W', 'R', 'B'], ['y', ''], { hidden_size: H, direction: 'bidirectional', linear_before_reset: 1 });
  const head =
    cell === 'LSTM'
      ? [node('Squeeze', ['yh', 'axes0'], ['feat'])]
      : [node('Transpose', ['y'], ['yb'], { perm: [2, 0, 1, 3] }), node('Reshape', ['yb', 'flat'], ['feat'])];
  const m = O.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 14 }],
    graph: {
      name: cell,
      initializer: [w('W', [D, G * H, I]), w('R', [D, G * H, H]), w('B', [D, 2 * G * H]), w('fcW', [3, feat]), w('fcB', [3]), ints('axes0', [0]), ints('flat', [Bt, feat])],
      input: [valueInfo('x', [Bt, T, I])],
      output: [valueInfo('logits', [Bt, 3])],
      node: [node('Transpose', ['x'], ['xt'], { perm: [1, 0, 2] }), rnn, ...head, node('Gemm', ['feat', 'fcW', 'fcB'], ['logits'], { transB: 1 })],
    },
  });
  return O.ModelProto.encode(m).finish();
}

describe('classifiers through the training pipeline: WebGPU vs the interpreter', () => {
  const r = rng(seedOf('classifier data'));
  const x: Tensor = { dtype: 'f32', shape: [Bt, T, I], data: Float32Array.from({ length: Bt * T * I }, () => 2 * r() - 1) };
  const labels: Tensor = { dtype: 'i64', shape: [Bt], data: Int32Array.from([2, 0]) };
  for (const cell of ['LSTM', 'GRU'] as const)
    for (const policy of ['fp32', 'bf16'])
      it(`${cell} ${policy}: loss, parameter gradients and updated parameters after one SGD step`, async () => {
        const g = runPipeline(importOnnx(classifier(cell)), passCtx({ policy, batch: Bt, optimizer: { kind: 'sgd', lr: 0.1 } }), TRAIN_PIPELINE);
        expect(g.nodes.some((n) => n.op === cell)).toBe(false);
        if (policy === 'bf16') {
          // The recurrent GEMMs run in bf16 (accumulating in f32), the gate activations follow.
          const gemms = g.nodes.filter((n) => n.op === 'Gemm' && n.phase !== 'backward');
          expect(gemms.length).toBeGreaterThan(T);
          for (const n of gemms) expect(n.prec?.compute, n.name).toBe('bf16');
          expect(g.nodes.filter((n) => n.op === 'Sigmoid').every((n) => n.prec?.compute === 'bf16')).toBe(true);
        }
        const env = runGraph(g, { x, labels });
        const gpu = await runOnGpu(g, { x, labels });
        const grads = (g.meta.grads as { params: Record<string, string> }).params;
        expect(Object.keys(grads).sort()).toEqual(['B', 'R', 'W', 'fcB', 'fcW']);
        // f32: GEMM sums in another order. bf16: a value rounded on the other side of a tie
        // carries through the recurrence, so the bound is a few bf16 ulp of the largest value.
        const tol = policy === 'fp32' ? 1e-4 : 3e-2;
        const cmp = (name: string) => {
          const want = env.get(name)!.data;
          const got = gpu.get(name)!.data;
          const maxAbs = Math.max(1e-6, ...Array.from(want, Math.abs));
          const { worst, at } = err(got, want, tol * maxAbs, 0);
          return worst <= 1 ? undefined : `${name}[${at}]: webgpu ${got[at]}, interpreter ${want[at]} (${worst.toFixed(2)}x)`;
        };
        const names = ['loss', ...Object.values(grads), ...g.updates.filter((u) => grads[u.state]).map((u) => u.next)];
        expect(names.map(cmp).filter(Boolean)).toEqual([]);
      });
});

// ---------------------------------------------------------------------------------------------
// 5. Errors and the pass.

describe('errors and the decompose pass', () => {
  const lstm = RNN_CASES[0];
  it('sequence_lens shorter than the sequence: a clear error', () => {
    const c: Case = { ...lstm, ins: rnnIns('LSTM', { bias: true, seq: [3, 2] }) };
    const { bytes } = model(c, [[T, 1, Bt, H], [1, Bt, H], [1, Bt, H]]);
    expect(() => compile(bytes, true)).toThrow(/sequence_lens \[3,2\] differs from the sequence length 3/);
  });
  it('sequence_lens that is not a constant: a clear error', () => {
    const g = compile(model(lstm, shapesOf(lstm)).bytes, false);
    const n = g.nodes[0];
    g.values.set('lens', { name: 'lens', dtype: 'i64', shape: [Bt], role: 'input' });
    g.inputs.push('lens');
    n.inputs[4] = 'lens';
    expect(() => runPipeline(g, passCtx({ policy: 'fp32', loss: 'none' }), [decompose])).toThrow(/sequence_lens must be a constant/);
  });
  it('unknown activation and wrong activation count', () => {
    const bad = (attrs: Record<string, Attr>) => compile(model({ ...lstm, attrs: { ...lstm.attrs, ...attrs } }, shapesOf(lstm)).bytes, true);
    expect(() => bad({ activations: ['Sigmoid', 'Tanh', 'Swish'] })).toThrow(/unknown activation 'Swish'/);
    expect(() => bad({ activations: ['Sigmoid', 'Tanh'] })).toThrow(/2 activations given, 3 expected/);
  });
  it('Einsum: mismatched labels, an output without the ellipsis, a missing label', () => {
    const ein = (equation: string, ...shapes: number[][]) => {
      const c: Case = { op: 'Einsum', what: equation, opset: 12, ins: e(...shapes), attrs: { equation } };
      return () => compile(model(c, [[1]]).bytes, true);
    };
    expect(ein('ij,jk->ik', [2, 3], [4, 5])).toThrow(/label 'j'/);
    expect(ein('...i,...i->i', [2, 3], [1, 3])).toThrow(/the output 'i' has no '...'/);
    expect(ein('ij->k', [2, 3])).toThrow(/output label 'k' is in no operand/);
  });
  it('post-condition: a decomposable node left over is reported', () => {
    const g = compile(model(lstm, shapesOf(lstm)).bytes, false);
    expect(decompose.check!(g, passCtx({ policy: 'fp32' }))).toEqual([`LSTM 'node' is not decomposed`]);
    expect(decompose.check!(runPipeline(g, passCtx({ policy: 'fp32' }), [decompose]), passCtx({ policy: 'fp32' }))).toEqual([]);
  });
  it('outputs keep their names; an operand passed through becomes a view under the output name', () => {
    const c: Case = { op: 'Einsum', what: 'identity', opset: 12, ins: e([2, 3]), attrs: { equation: 'ij->ij' } };
    const g = compile(model(c, [[2, 3]]).bytes, true);
    expect(g.nodes.map((n) => `${n.op} ${n.inputs.join()} -> ${n.outputs.join()}`)).toEqual(['Identity x0 -> y0']);
    const l = compile(model(lstm, shapesOf(lstm)).bytes, true);
    expect(l.outputs).toEqual(['y0', 'y1', 'y2']);
    for (const o of l.outputs) expect(l.nodes.filter((n) => n.outputs.includes(o)).length).toBe(1);
  });
});
