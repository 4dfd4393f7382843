// The losses (src/ops/loss.ts): SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss with
// N-d inputs, class weights, ignore_index, every reduction and SCE's log_prob output, and their
// gradient ops. Checked four ways:
//
//  1. interpreter vs onnxruntime: one-node ONNX models built here with onnx-proto (opsets 12, 13
//     and 21), imported through the real importer and the eval pipeline (fp32). Results within
//     1e-5 relative with a floor of 1e-6 of the tensor's largest magnitude (onnxruntime sums
//     and takes its logs in f32); NaN (mean over no weight) must match NaN;
//  2. WebGPU vs interpreter: every kernel (forward, both gradient ops, the weight gradient) on
//     exactly the interpreter's inputs in f32, at the same tolerance; a few cases also in f16
//     (native and packed) and bf16, within 1 ulp of the format (GPU f32 math vs the f64
//     reference can round the other way at a tie of the narrow format);
//  3. gradient rules vs central finite differences of the interpreter's forward pass, the
//     differences taken in f64 over the f32 outputs, with respect to the scores/log-probs and
//     the class weights, and with a cotangent on SCE's log_prob output too;
//  4. in a model: the training pipeline's cross-entropy on sequence logits [B, T, C] (viewed as
//     [B*T, C], reduction mean), gradients vs finite differences and the loss kernels on WebGPU.
//
// Labels outside [0, C) that are not ignore_index are undefined in ONNX (onnxruntime fails);
// mpc counts them as ignored, which only cases 2 and 3 check.
import { describe, expect, it } from 'vitest';
import { emitGradient } from './helpers/op-harness.js';
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { importOnnx } from '../src/onnx/import.js';
import { EVAL_PIPELINE, TRAIN_PIPELINE, runPipeline } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import { encode, floatInfo, type FloatDType } from '../src/ir/dtypes.js';
import type { Attrs } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { lossOps } from '../src/ops/loss.js';
import type { Target } from '../src/codegen/kernel.js';
import { runNodeOnGpu } from './helpers/gpu.js';
import { rng, seedOf, singleNodeGraph, tensorOf, type NodeInput } from './helpers/single-node.js';

const O = onnx.onnx;

// ---------------------------------------------------------------------------------------------
// The configurations every check runs through.

interface Config {
  what: string;
  /** Scores (SCE) / log-probabilities (NLL): [N, C, d1..dk]. */
  x: number[];
  reduction?: 'none' | 'sum' | 'mean';
  ignore?: number;
  /** Which positions get the ignore_index label (default: every third). */
  ignoreEvery?: number;
  weights?: boolean;
  /** SCE also produces log_prob. */
  logProb?: boolean;
  /** Labels as given (otherwise random in [0, C), ignore_index at every `ignoreEvery`-th position). */
  labels?: number[];
  /** onnxruntime opset (default 13); 0: not run on onnxruntime (labels out of range). */
  opset?: number;
}

const CONFIGS: Config[] = [
  { what: '[4,5] mean', x: [4, 5], opset: 12 },
  { what: '[4,5] sum, log_prob', x: [4, 5], reduction: 'sum', logProb: true },
  { what: '[4,5] none', x: [4, 5], reduction: 'none', opset: 21 },
  { what: '[4,5] mean, weights, log_prob', x: [4, 5], weights: true, logProb: true, opset: 21 },
  { what: '[5,4] mean, ignore_index 2', x: [5, 4], ignore: 2 },
  { what: '[3,4,2] mean, weights, ignore_index -1', x: [3, 4, 2], weights: true, ignore: -1 },
  { what: '[2,3,2,2] none, weights, ignore_index 1, log_prob', x: [2, 3, 2, 2], reduction: 'none', weights: true, ignore: 1, logProb: true, opset: 12 },
  { what: '[2,3,3] sum, weights, ignore_index 7 (above C)', x: [2, 3, 3], reduction: 'sum', weights: true, ignore: 7, ignoreEvery: 2 },
  { what: '[2,4,3] mean, no weights, ignore_index 0', x: [2, 4, 3], ignore: 0, logProb: true },
  { what: '[3,4] mean, every position ignored (NaN)', x: [3, 4], ignore: 3, labels: [3, 3, 3] },
  { what: '[3,4] mean, weights, every position ignored (NaN)', x: [3, 4], ignore: 3, weights: true, labels: [3, 3, 3], opset: 21 },
  { what: '[4,3] mean, weights, labels out of range count as ignored', x: [4, 3], weights: true, labels: [5, 0, -2, 2], opset: 0 },
];

type Gen = (r: () => number, i: number) => number;
const uniform = (lo: number, hi: number): Gen => (r) => lo + (hi - lo) * r();

interface Data {
  x: Tensor;
  labels: Tensor;
  weights?: Tensor;
}

/** Random scores (SCE) or negative log-probability-like values (NLL), labels and weights. */
function dataOf(c: Config, kind: 'sce' | 'nll', seed: string): Data {
  const r = rng(seedOf(seed));
  const [N, C, ...rest] = c.x;
  const P = N * sizeOf(rest);
  const gen = kind === 'sce' ? uniform(-3, 3) : uniform(-4, 0);
  const x = tensorOf('f32', c.x, Array.from({ length: sizeOf(c.x) }, (_, i) => gen(r, i)));
  const every = c.ignoreEvery ?? 3;
  const lab = c.labels ?? Array.from({ length: P }, (_, p) => (c.ignore !== undefined && p % every === 0 ? c.ignore : Math.floor(r() * C)));
  const labels = tensorOf('i64', [N, ...rest], lab);
  const weights = c.weights ? tensorOf('f32', [C], Array.from({ length: C }, (_, i) => uniform(0.5, 2)(r, i))) : undefined;
  return { x, labels, weights };
}

function attrsOf(c: Config): Attrs {
  const a: Attrs = {};
  if (c.reduction) a.reduction = c.reduction;
  if (c.ignore !== undefined) a.ignore_index = c.ignore;
  return a;
}

const OPS = [
  { op: 'SoftmaxCrossEntropyLoss', kind: 'sce' as const, grad: 'mpc.SoftmaxCrossEntropyGrad' },
  { op: 'NegativeLogLikelihoodLoss', kind: 'nll' as const, grad: 'mpc.NegativeLogLikelihoodGrad' },
];
const outputsOf = (op: string, c: Config) => (op === 'SoftmaxCrossEntropyLoss' && c.logProb ? 2 : 1);
const lossShape = (c: Config) => (c.reduction === 'none' ? [c.x[0], ...c.x.slice(2)] : []);

// ---------------------------------------------------------------------------------------------
// Comparison.

/** Worst |got - want| / (1e-5 |want| + 1e-6 max|want|), NaN matching NaN: at most 1 passes. */
function relErr(got: ArrayLike<number>, want: ArrayLike<number>): { err: number; at: number } {
  let maxAbs = 0;
  for (let i = 0; i < want.length; i++) if (Number.isFinite(want[i])) maxAbs = Math.max(maxAbs, Math.abs(want[i]));
  let err = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    let e: number;
    if (Number.isNaN(want[i]) || Number.isNaN(got[i])) e = Number.isNaN(want[i]) === Number.isNaN(got[i]) ? 0 : Infinity;
    else e = Math.abs(got[i] - want[i]) / (1e-5 * Math.abs(want[i]) + 1e-6 * maxAbs + 1e-30);
    if (!(e <= err)) [err, at] = [e, i];
  }
  return { err, at };
}

function ordinal(dtype: FloatDType, x: number): number {
  const fi = floatInfo(dtype);
  const code = encode(dtype, x);
  const sign = 2 ** (fi.bits - 1);
  return code >= sign ? -(code - sign) : code;
}

function compare(dtype: string, got: ArrayLike<number>, want: ArrayLike<number>): string | undefined {
  if (got.length !== want.length) return `${got.length} values, expected ${want.length}`;
  if (dtype === 'f32') {
    const { err, at } = relErr(got, want);
    return err <= 1 ? undefined : `${err.toFixed(2)}x the tolerance at [${at}]: got ${got[at]}, want ${want[at]}`;
  }
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]) && Number.isNaN(got[i])) continue;
    const d = Math.abs(ordinal(dtype as FloatDType, got[i]) - ordinal(dtype as FloatDType, want[i]));
    if (!(d <= 1)) return `${d} ulp of ${dtype} at [${i}]: got ${got[i]}, want ${want[i]}`;
  }
  return undefined;
}

// ---------------------------------------------------------------------------------------------
// 1. Interpreter vs onnxruntime.

function valueInfo(name: string, elemType: number, shape: number[]) {
  return { name, type: { tensorType: { elemType, shape: { dim: shape.map((d) => ({ dimValue: d })) } } } };
}

function oneNodeModel(op: string, c: Config, d: Data, nOut: number, opset: number): Uint8Array {
  const A = O.AttributeProto.AttributeType;
  const attribute = [];
  if (c.reduction) attribute.push({ name: 'reduction', type: A.STRING, s: new TextEncoder().encode(c.reduction) });
  if (c.ignore !== undefined) attribute.push({ name: 'ignore_index', type: A.INT, i: c.ignore });
  const input = [valueInfo('x', 1, d.x.shape), valueInfo('labels', 7, d.labels.shape)];
  if (d.weights) input.push(valueInfo('weights', 1, d.weights.shape));
  const outs = ['loss', 'log_prob'].slice(0, nOut);
  const model = O.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: opset }],
    graph: {
      name: 'g',
      node: [{ opType: op, name: 'n', input: input.map((i) => i.name), output: outs, attribute }],
      input,
      output: [valueInfo('loss', 1, lossShape(c)), valueInfo('log_prob', 1, c.x)].slice(0, nOut),
    },
  });
  return O.ModelProto.encode(model).finish();
}

const ortTensor = (t: Tensor) =>
  t.dtype === 'f32' ? new ort.Tensor('float32', t.data as Float32Array, t.shape) : new ort.Tensor('int64', BigInt64Array.from(Array.from(t.data, BigInt)), t.shape);

describe('interpreter vs onnxruntime', () => {
  for (const { op, kind } of OPS)
    for (const c of CONFIGS.filter((c) => c.opset !== 0)) {
      const opset = c.opset ?? 13;
      it(`${op} ${c.what} (opset ${opset})`, async () => {
        const d = dataOf(c, kind, `ort ${op} ${c.what}`);
        const nOut = outputsOf(op, c);
        const bytes = oneNodeModel(op, c, d, nOut, opset);
        const feeds: Record<string, Tensor> = { x: d.x, labels: d.labels, ...(d.weights ? { weights: d.weights } : {}) };
        const session = await ort.InferenceSession.create(bytes);
        const want = await session.run(Object.fromEntries(Object.entries(feeds).map(([k, t]) => [k, ortTensor(t)])));
        const g = runPipeline(importOnnx(bytes), passCtx({ policy: 'fp32' }), EVAL_PIPELINE);
        const env = runGraph(g, feeds);
        for (const name of ['loss', 'log_prob'].slice(0, nOut)) {
          const got = env.get(name)!;
          expect(got.shape, `${name} shape`).toEqual(want[name].dims.map(Number));
          expect(compare('f32', got.data, want[name].data as Float32Array), name).toBeUndefined();
        }
      });
    }
});

// ---------------------------------------------------------------------------------------------
// 2. WebGPU vs interpreter.

interface GpuCase {
  op: string;
  what: string;
  ins: (Tensor | undefined)[];
  attrs: Attrs;
  outputs?: number;
}

function gpuCases(): GpuCase[] {
  const cases: GpuCase[] = [];
  for (const { op, kind, grad } of OPS)
    for (const c of CONFIGS) {
      const d = dataOf(c, kind, `gpu ${op} ${c.what}`);
      const r = rng(seedOf(`gpu dy ${op} ${c.what}`));
      const shape = lossShape(c);
      const dy = tensorOf('f32', shape, Array.from({ length: sizeOf(shape) }, (_, i) => uniform(-2, 2)(r, i)));
      const attrs = attrsOf(c);
      cases.push({ op, what: c.what, ins: [d.x, d.labels, d.weights], attrs, outputs: outputsOf(op, c) });
      cases.push({ op: grad, what: c.what, ins: [dy, d.x, d.labels, d.weights], attrs });
      if (d.weights) cases.push({ op: 'mpc.LossWeightGrad', what: `${kind} ${c.what}`, ins: [dy, d.x, d.labels, d.weights], attrs: { ...attrs, loss: kind } });
    }
  return cases;
}
const GPU_CASES = gpuCases();

/** Low-precision runs (T = the float type of x, weights and dy) of a few configurations. */
const LOW: { t: FloatDType; target: Target }[] = [
  { t: 'f16', target: { f16: true } },
  { t: 'f16', target: { f16: false } },
  { t: 'bf16', target: { f16: true } },
];
const LOW_CONFIGS = new Set(['[2,3,2,2] none, weights, ignore_index 1, log_prob', '[4,5] mean, weights, log_prob']);

function asType(t: Tensor | undefined, dtype: FloatDType): NodeInput | undefined {
  if (!t) return undefined;
  return { tensor: t.dtype === 'f32' ? tensorOf(dtype, t.shape, t.data) : t };
}

describe('WebGPU kernels vs the interpreter', () => {
  for (const c of GPU_CASES) {
    const runs = [{ t: 'f32' as FloatDType, target: { f16: true } }, ...(LOW_CONFIGS.has(c.what.replace(/^(sce|nll) /, '')) ? LOW : [])];
    for (const run of runs)
      it(`${c.op} ${c.what} | T=${run.t}${run.t === 'f16' ? (run.target.f16 ? ' native' : ' packed') : ''}`, async () => {
        const { g, feeds } = singleNodeGraph(c.op, c.ins.map((t) => asType(t, run.t)), c.attrs, c.outputs);
        const env = runGraph(g, feeds);
        const outs = await runNodeOnGpu(g, 0, env, run.target);
        const bad: string[] = [];
        g.nodes[0].outputs.forEach((o, k) => {
          const want = env.get(o)!;
          const msg = compare(want.dtype, outs[k].data, want.data);
          if (msg) bad.push(`output ${k} (${want.dtype}[${want.shape}]): ${msg}`);
        });
        expect(bad).toEqual([]);
      });
  }
});

// ---------------------------------------------------------------------------------------------
// 3. Gradients vs finite differences.

describe('gradients vs central finite differences', () => {
  for (const { op, kind } of OPS)
    for (const c of CONFIGS.filter((c) => !c.what.includes('NaN')))
      it(`${op} ${c.what}`, () => {
        const d = dataOf(c, kind, `grad ${op} ${c.what}`);
        const r = rng(seedOf(`grad dy ${op} ${c.what}`));
        const nOut = outputsOf(op, c);
        const ins: (NodeInput | undefined)[] = [{ tensor: d.x }, { tensor: d.labels }, d.weights ? { tensor: d.weights } : undefined];
        const build = () => singleNodeGraph(op, ins, attrsOf(c), nOut);
        const fwd = build();
        const outNames = fwd.g.nodes[0].outputs;
        const forward = (feeds: Record<string, Tensor>) => {
          const env = runGraph(fwd.g, feeds);
          return outNames.map((o) => env.get(o)!);
        };
        // Cotangents for every output (SCE's log_prob included).
        const w = forward(fwd.feeds).map((t) => Float64Array.from(t.data, () => uniform(-1, 1)(r, 0)));
        const objective = (outs: Tensor[]) => outs.reduce((s, t, k) => s + t.data.reduce((a, v, i) => a + w[k][i] * v, 0), 0);

        const { g, feeds } = build();
        const n = g.nodes[0];
        const dy = n.outputs.map((o, k) => {
          const name = `dy${k}`;
          const v = g.values.get(o)!;
          g.values.set(name, { name, dtype: 'f32', shape: [...v.shape], role: 'input' });
          g.inputs.push(name);
          feeds[name] = { dtype: 'f32', shape: v.shape as number[], data: Float32Array.from(w[k]) };
          return name;
        });
        const dx = emitGradient(g, n, dy);
        expect(dx[1], 'labels get no gradient').toBeUndefined();
        const genv = runGraph(g, feeds);
        const wrt = d.weights ? [0, 2] : [0];
        if (!d.weights) expect(dx[2]).toBeUndefined();
        const bad: string[] = [];
        for (const k of wrt) {
          expect(dx[k], `gradient of input ${k}`).toBeDefined();
          const an = genv.get(dx[k]!)!;
          const x = ins[k]!.tensor;
          expect(an.shape).toEqual(x.shape);
          const scale = Math.max(1, ...Array.from(an.data, Math.abs));
          for (let i = 0; i < x.data.length; i++) {
            const at = (delta: number) => {
              const data = Float32Array.from(x.data);
              data[i] = x.data[i] + delta;
              return { v: objective(forward({ ...fwd.feeds, [fwd.names[k]]: { ...x, data } })), x: data[i] };
            };
            const h = 1e-2 * Math.max(1, Math.abs(x.data[i]));
            const [p, m] = [at(h), at(-h)];
            const fd = (p.v - m.v) / (p.x - m.x);
            if (!(Math.abs(fd - an.data[i]) <= 2e-3 * scale)) bad.push(`input ${k}[${i}]: rule ${an.data[i]}, finite differences ${fd}`);
          }
        }
        expect(bad).toEqual([]);
      });

  it('no cotangent: the rule emits nothing', () => {
    for (const { op, kind } of OPS) {
      const c = CONFIGS[3];
      const d = dataOf(c, kind, 'no cotangent');
      const { g } = singleNodeGraph(op, [{ tensor: d.x }, { tensor: d.labels }, { tensor: d.weights! }], attrsOf(c), outputsOf(op, c));
      const before = g.nodes.length;
      const dx = emitGradient(g, g.nodes[0], g.nodes[0].outputs.map(() => undefined));
      expect(dx.every((v) => v === undefined)).toBe(true);
      expect(g.nodes.length).toBe(before);
    }
  });
});

// ---------------------------------------------------------------------------------------------
// 4. In a model: the training pipeline's cross-entropy on sequence logits.

/** x [2,3,4] -> MatMul W [4,5] -> logits [2,3,5]: cross-entropy over 6 positions. */
function seqModel(): Uint8Array {
  const r = rng(seedOf('seq model'));
  const model = O.ModelProto.create({
    irVersion: 8,
    opsetImport: [{ domain: '', version: 17 }],
    graph: {
      name: 'seq',
      initializer: [{ name: 'W', dataType: 1, dims: [4, 5], floatData: Array.from({ length: 20 }, () => uniform(-1, 1)(r, 0)) }],
      input: [valueInfo('x', 1, [2, 3, 4])],
      output: [valueInfo('logits', 1, [2, 3, 5])],
      node: [{ opType: 'MatMul', name: 'mm', input: ['x', 'W'], output: ['logits'] }],
    },
  });
  return O.ModelProto.encode(model).finish();
}

describe('in the training pipeline: cross-entropy on [B, T, C] logits', () => {
  const r = rng(seedOf('seq data'));
  const x = tensorOf('f32', [2, 3, 4], Array.from({ length: 24 }, () => uniform(-2, 2)(r, 0)));
  const labels = tensorOf('i64', [2, 3], [0, 4, 2, 1, 3, 3]);
  const g = runPipeline(importOnnx(seqModel()), passCtx({ policy: 'fp32', batch: 2, optimizer: { kind: 'sgd', lr: 0 } }), TRAIN_PIPELINE);

  it('SoftmaxCrossEntropyLoss (mean over [6,5]) and its gradient: W gradient equals finite differences', () => {
    const loss = g.nodes.find((n) => n.op === 'SoftmaxCrossEntropyLoss')!;
    expect(g.values.get(loss.inputs[0])!.shape).toEqual([6, 5]);
    expect(g.nodes.some((n) => n.op === 'mpc.SoftmaxCrossEntropyGrad')).toBe(true);
    const gW = (g.meta.grads as { params: Record<string, string> }).params.W;
    const env = runGraph(g, { x, labels });
    const an = env.get(gW)!.data;
    const init = g.values.get('W')!.init!;
    const bad: string[] = [];
    for (let i = 0; i < init.data.length; i++) {
      const at = (delta: number) => {
        const d = Float32Array.from(init.data);
        d[i] += delta;
        return { v: runGraph(g, { x, labels }, new Map([['W', { ...init, data: d }]])).get('loss')!.data[0], x: d[i] };
      };
      const [p, m] = [at(1e-2), at(-1e-2)];
      const fd = (p.v - m.v) / (p.x - m.x);
      if (!(Math.abs(fd - an[i]) <= 2e-3 * Math.max(1e-2, ...Array.from(an, Math.abs)))) bad.push(`W[${i}]: autodiff ${an[i]}, finite differences ${fd}`);
    }
    expect(bad).toEqual([]);
  });

  it('the loss kernels of the training step match the interpreter on WebGPU', async () => {
    const env = runGraph(g, { x, labels });
    const bad: string[] = [];
    let checked = 0;
    for (const [idx, n] of g.nodes.entries()) {
      if (!lossOps.some((row) => row.op === n.op)) continue;
      checked++;
      const outs = await runNodeOnGpu(g, idx, env);
      n.outputs.forEach((o, k) => {
        const msg = compare('f32', outs[k].data, env.get(o)!.data);
        if (msg) bad.push(`${n.op} -> ${o}: ${msg}`);
      });
    }
    expect(checked).toBe(2);
    expect(bad).toEqual([]);
  });
});

// ---------------------------------------------------------------------------------------------

describe('coverage', () => {
  it('every loss row has its checks: ONNX rows on onnxruntime, every kernel on WebGPU, every gradient rule', () => {
    const ortOps = new Set(OPS.map((o) => o.op));
    const gpuOps = new Set(GPU_CASES.map((c) => c.op));
    for (const row of lossOps) {
      if (row.op.startsWith('mpc.MeanSquaredError')) continue; // test/kernels.test.ts, test/grad-check.test.ts
      if (row.domain === '') expect(ortOps.has(row.op), row.op).toBe(true);
      if (row.wgsl) expect(gpuOps.has(row.op), row.op).toBe(true);
      if (row.grad) expect(ortOps.has(row.op), row.op).toBe(true);
    }
  });
});
