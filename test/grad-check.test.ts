// Every gradient rule of the op table against central finite differences.
//
// For each row with a `grad` rule the CASES table gives one or more nodes (shapes, attributes).
// A case builds the node on f32 inputs, draws a random cotangent dY for each output, and asks
// the row's rule for the input gradients through a GradCtx that emits into the graph (as the
// autodiff pass does); the interpreter runs the emitted nodes. That is compared with
//     dL/dx[j] ≈ (L(x + h e_j) - L(x - h e_j)) / 2h,   L(x) = Σ_k Σ dY_k · Y_k(x)  (in f64),
// where Y(x) comes from the row's reference kernel through the interpreter. The reference
// kernels write f32, so h is 1e-2 on inputs of magnitude ~1 (away from kinks) and the
// tolerance is 1e-2 relative with a small absolute floor. Integer inputs (labels) and constant
// inputs (Reshape's shape) have no gradient and are skipped; a float input whose gradient the
// rule leaves out must have a zero finite difference.
// A row with a gradient rule and no case fails the coverage test: a new op adds its case here,
// unless its module has a test file of its own that checks its gradients the same way
// (helpers/covered-elsewhere.ts).
import { describe, expect, it } from 'vitest';
import { runGraph } from '../src/interp/interpreter.js';
import { addConst, addNode, typeOf } from '../src/ir/build.js';
import { isFloat, type DType } from '../src/ir/dtypes.js';
import { cloneGraph, type Attrs } from '../src/ir/graph.js';
import { sizeOf, type Tensor } from '../src/ir/tensor.js';
import { castAttrs } from '../src/ops/cast.js';
import { allOps, opRow } from '../src/ops/table.js';
import type { GradCtx } from '../src/ops/types.js';
import { coveredElsewhere } from './helpers/covered-elsewhere.js';
import { rng, seedOf, singleNodeGraph, tensorOf, type NodeInput } from './helpers/single-node.js';

type Gen = (r: () => number, i: number) => number;

interface In {
  shape: number[];
  /** Default f32. Integer inputs get no gradient. */
  dtype?: DType;
  gen?: Gen | number[];
  /** A graph constant (Reshape's shape): no gradient. */
  constant?: boolean;
  /** The same value as operand `sameAs` (x·x): its gradient is the sum of both rules' parts. */
  sameAs?: number;
}

interface GradCase {
  op: string;
  what: string;
  ins: In[];
  attrs?: Attrs;
  /** Number of outputs of the node (default: the row's). */
  outputs?: number;
  /** Outputs that get a cotangent (default: every float output). */
  cotangents?: number[];
}

const H = 1e-2;
const RTOL = 1e-2;

const uniform = (lo: number, hi: number): Gen => (r) => lo + (hi - lo) * r();
const signed = uniform(-2, 2);
/** |x| in [0.5, 2]: denominators, and values a step h away from Relu's kink. */
const nonZero: Gen = (r) => (r() < 0.5 ? -1 : 1) * (0.5 + 1.5 * r());
const x = (...shape: number[]): In => ({ shape });

const CASES: GradCase[] = [];

for (const op of ['Add', 'Sub', 'Mul', 'Div'])
  for (const [a, b] of [
    [[3, 5], [3, 5]],
    [[3, 5], [5]],
    [[2, 1, 3], [1, 5, 1]],
    [[5, 1], [1, 3]],
    [[3, 5], []],
    [[], [2, 3]],
  ])
    CASES.push({ op, what: `[${a}] ${op} [${b}]`, ins: [x(...a), { shape: b, gen: op === 'Div' ? nonZero : signed }] });
CASES.push(
  { op: 'Mul', what: 'x * x', ins: [x(3, 5), { shape: [3, 5], sameAs: 0 }] },
  { op: 'Div', what: 'x / x', ins: [{ shape: [3, 5], gen: nonZero }, { shape: [3, 5], sameAs: 0 }] },
  { op: 'Sub', what: 'x - x', ins: [x(3, 5), { shape: [3, 5], sameAs: 0 }] },
  { op: 'Neg', what: '[3,5]', ins: [x(3, 5)] },
  { op: 'Relu', what: '[3,5]', ins: [{ shape: [3, 5], gen: nonZero }] },
  { op: 'Identity', what: '[3,5]', ins: [x(3, 5)] },
  { op: 'Flatten', what: '[2,3,4] axis 1 (default)', ins: [x(2, 3, 4)] },
  { op: 'Flatten', what: '[2,3,4] axis -1', ins: [x(2, 3, 4)], attrs: { axis: -1 } },
  { op: 'Flatten', what: '[2,3,4] axis 0', ins: [x(2, 3, 4)], attrs: { axis: 0 } },
  { op: 'Reshape', what: '[2,3,4] -> [4,-1]', ins: [x(2, 3, 4), { shape: [2], dtype: 'i64', gen: [4, -1], constant: true }] },
  { op: 'Reshape', what: '[2,3,4] -> [0,12]', ins: [x(2, 3, 4), { shape: [2], dtype: 'i64', gen: [0, 12], constant: true }] },
  { op: 'mpc.View', what: '[2,3,4] -> [6,4]', ins: [x(2, 3, 4)], attrs: { shape: [6, 4] } },
  { op: 'Transpose', what: '[3,5] default perm', ins: [x(3, 5)] },
  { op: 'Transpose', what: '[2,3,4] perm 1,2,0', ins: [x(2, 3, 4)], attrs: { perm: [1, 2, 0] } },
  { op: 'Cast', what: 'f32 -> f32', ins: [x(3, 5)], attrs: castAttrs('f32') },
  { op: 'CastLike', what: 'f32 like f32', ins: [x(3, 5), x(1)] },
  { op: 'mpc.SumTo', what: '[2,3,5] -> [3,1]', ins: [x(2, 3, 5)], attrs: { shape: [3, 1] } },
  { op: 'mpc.SumTo', what: '[3,5] -> [5]', ins: [x(3, 5)], attrs: { shape: [5] } },
  { op: 'mpc.SumTo', what: '[3,5] -> []', ins: [x(3, 5)], attrs: { shape: [] } },
  { op: 'mpc.Expand', what: '[3,1] -> [2,3,5]', ins: [x(3, 1)], attrs: { shape: [2, 3, 5] } },
  { op: 'mpc.Expand', what: '[5] -> [3,5]', ins: [x(5)], attrs: { shape: [3, 5] } },
);

for (const g of [
  { tA: 0, tB: 0 },
  { tA: 1, tB: 0 },
  { tA: 0, tB: 1 },
  { tA: 1, tB: 1, alpha: 0.5 },
  { tA: 0, tB: 0, bias: [5], beta: 2 },
  { tA: 1, tB: 1, bias: [4, 5], alpha: -1.5, beta: 0.25 },
  { tA: 0, tB: 1, bias: [4, 1], beta: 1 },
  { tA: 1, tB: 0, bias: [1, 5], beta: 3 },
  { tA: 0, tB: 0, bias: [], beta: -2 },
]) {
  const [M, K, N] = [4, 3, 5];
  const attrs: Attrs = { transA: g.tA, transB: g.tB };
  if (g.alpha !== undefined) attrs.alpha = g.alpha;
  if (g.beta !== undefined) attrs.beta = g.beta;
  const ins = [x(...(g.tA ? [K, M] : [M, K])), x(...(g.tB ? [N, K] : [K, N]))];
  if (g.bias) ins.push(x(...g.bias));
  CASES.push({ op: 'Gemm', what: `transA=${g.tA} transB=${g.tB} alpha=${g.alpha ?? 1} ${g.bias ? `bias [${g.bias}] beta=${g.beta}` : 'no bias'}`, ins, attrs });
}
for (const [a, b] of [
  [[4, 3], [3, 5]],
  [[2, 4, 3], [2, 3, 5]],
  [[2, 4, 3], [3, 5]],
  [[4, 3], [2, 3, 5]],
  [[2, 1, 4, 3], [3, 3, 2]],
])
  CASES.push({ op: 'MatMul', what: `[${a}] x [${b}]`, ins: [x(...a), x(...b)] });
// mpc's own transA / transB on MatMul (the backward pass of a batched product sets them): the
// operand's last two axes are stored swapped.
for (const [a, b, attrs] of [
  [[2, 3, 4], [2, 3, 5], { transA: 1 }],
  [[2, 4, 3], [2, 5, 3], { transB: 1 }],
  [[2, 1, 3, 4], [3, 5, 3], { transA: 1, transB: 1 }],
  [[3, 4], [2, 5, 4], { transB: 1 }],
] as [number[], number[], Attrs][])
  CASES.push({ op: 'MatMul', what: `[${a}] x [${b}] ${Object.keys(attrs).join(' ')}`, ins: [x(...a), x(...b)], attrs });
CASES.push(
  { op: 'Gemm', what: 'X·Xᵀ', ins: [x(4, 3), { shape: [4, 3], sameAs: 0 }], attrs: { transB: 1 } },
  { op: 'Gemm', what: 'Xᵀ·X + C, alpha beta', ins: [x(4, 3), { shape: [4, 3], sameAs: 0 }, x(3, 3)], attrs: { transA: 1, alpha: 0.5, beta: 2 } },
  { op: 'MatMul', what: 'X·X', ins: [x(3, 3), { shape: [3, 3], sameAs: 0 }] },
);

// Convolution, pooling, Pad and BatchNormalization.
for (const [what, xs, ws, bias, attrs] of [
  ['3x3 pads 1 + bias', [1, 2, 4, 4], [3, 2, 3, 3], true, { pads: [1, 1, 1, 1] }],
  ['strides 2 dilations 2 asymmetric pads', [1, 2, 5, 5], [2, 2, 2, 2], false, { strides: [2, 2], dilations: [2, 2], pads: [0, 1, 1, 0] }],
  ['group 2 + bias', [1, 4, 3, 3], [4, 2, 2, 2], true, { group: 2 }],
  ['SAME_LOWER stride 2', [1, 1, 5, 4], [2, 1, 3, 2], false, { auto_pad: 'SAME_LOWER', strides: [2, 2] }],
  ['1-D stride 2 pads 1 + bias', [2, 2, 7], [3, 2, 3], true, { strides: [2], pads: [1, 1] }],
] as [string, number[], number[], boolean, Attrs][])
  CASES.push({ op: 'Conv', what: `${what} [${xs}] * [${ws}]`, ins: [x(...xs), x(...ws), ...(bias ? [x(ws[0])] : [])], attrs });
/** Distinct values at least 0.05 apart (a step h never reorders a window): MaxPool. */
const distinct: Gen = (r, i) => ((i * 37) % 53) / 10 - 2.6 + 0.02 * r();
for (const [what, xs, attrs] of [
  ['2x2 stride 2', [1, 2, 4, 4], { kernel_shape: [2, 2], strides: [2, 2] }],
  ['3x3 stride 2 pads 1 ceil_mode', [1, 1, 5, 6], { kernel_shape: [3, 3], strides: [2, 2], pads: [1, 1, 1, 1], ceil_mode: 1 }],
  ['3x3 pads 1 count_include_pad', [1, 2, 3, 4], { kernel_shape: [3, 3], pads: [1, 1, 1, 1], count_include_pad: 1 }],
  ['1-D 3 stride 2 pads 1', [2, 2, 7], { kernel_shape: [3], strides: [2], pads: [1, 1] }],
] as [string, number[], Attrs][]) {
  CASES.push({ op: 'MaxPool', what: `${what} [${xs}]`, ins: [{ shape: xs, gen: distinct }], attrs });
  CASES.push({ op: 'AveragePool', what: `${what} [${xs}]`, ins: [x(...xs)], attrs });
}
CASES.push(
  { op: 'GlobalAveragePool', what: '[2,3,2,3]', ins: [x(2, 3, 2, 3)] },
  { op: 'GlobalAveragePool', what: '[2,2,5]', ins: [x(2, 2, 5)] },
);
const pads = (...p: number[]): In => ({ shape: [p.length], dtype: 'i64', gen: p, constant: true });
CASES.push(
  { op: 'Pad', what: '[3,4] pads 1,2,0,1', ins: [x(3, 4), pads(1, 2, 0, 1)] },
  { op: 'Pad', what: '[3,4] constant_value input', ins: [x(3, 4), pads(0, 1, 2, 0), x()] },
  { op: 'Pad', what: '[4,5] negative pads (crop) and constant_value', ins: [x(4, 5), pads(-1, 0, 1, -2), x()] },
  { op: 'Pad', what: '[3,4] axes [1]', ins: [x(3, 4), pads(2, 1), { shape: [], gen: [0.5] }, { shape: [1], dtype: 'i64', gen: [1], constant: true }] },
);
const bnVar: In = { shape: [3], gen: uniform(0.5, 2) };
CASES.push(
  { op: 'BatchNormalization', what: 'inference [2,3,2,2]', ins: [x(2, 3, 2, 2), x(3), x(3), x(3), bnVar], outputs: 1 },
  { op: 'BatchNormalization', what: 'inference [4,3] epsilon 0.1', ins: [x(4, 3), x(3), x(3), x(3), bnVar], attrs: { epsilon: 0.1 }, outputs: 1 },
  { op: 'BatchNormalization', what: 'training [2,3,2,2] (dY on Y only)', ins: [x(2, 3, 2, 2), x(3), x(3), x(3), bnVar], attrs: { training_mode: 1 }, cotangents: [0] },
);

const labels = (v: number[]): In => ({ shape: [v.length], dtype: 'i64', gen: v });
CASES.push(
  { op: 'SoftmaxCrossEntropyLoss', what: 'mean', ins: [x(4, 5), labels([1, 0, 4, 2])] },
  { op: 'SoftmaxCrossEntropyLoss', what: 'sum', ins: [x(4, 5), labels([1, 0, 4, 2])], attrs: { reduction: 'sum' } },
  { op: 'SoftmaxCrossEntropyLoss', what: 'mean, ignore_index 2', ins: [x(4, 5), labels([2, 0, 4, 2])], attrs: { ignore_index: 2 } },
  { op: 'mpc.MeanSquaredError', what: '[3,5]', ins: [x(3, 5), x(3, 5)] },
  { op: 'mpc.MeanSquaredError', what: '[7]', ins: [x(7), x(7)] },
);

// ---------------------------------------------------------------------------------------------

function inputsOf(c: GradCase): NodeInput[] {
  const r = rng(seedOf(`${c.op} ${c.what}`));
  return c.ins.map((spec) => {
    const gen = spec.gen ?? signed;
    const n = sizeOf(spec.shape);
    const values = Array.isArray(gen) ? gen : Array.from({ length: n }, (_, i) => gen(r, i));
    return { tensor: tensorOf(spec.dtype ?? 'f32', spec.shape, values), kind: spec.constant ? 'const' : 'input', sameAs: spec.sameAs };
  });
}

/** Σ_k Σ dY_k · Y_k in f64 for the forward graph with `feeds`. */
function objective(run: () => Map<string, Tensor>, outputs: string[], dys: (Tensor | undefined)[]): number {
  const env = run();
  let s = 0;
  outputs.forEach((o, k) => {
    const dy = dys[k];
    if (!dy) return;
    const y = env.get(o)!.data;
    for (let i = 0; i < y.length; i++) s += dy.data[i] * y[i];
  });
  return s;
}

/** Mismatches between the rule and finite differences, one line per input. */
function check(c: GradCase): string[] {
  const row = opRow(c.op);
  const inputs = inputsOf(c);
  const { g, names, feeds } = singleNodeGraph(c.op, inputs, c.attrs, c.outputs);
  const node = g.nodes[0];
  const r = rng(seedOf(`dy ${c.op} ${c.what}`));

  // The backward graph: the forward node, the cotangents as inputs, the rule's nodes.
  const bg = cloneGraph(g);
  const bnode = bg.nodes[0];
  const dyFeeds: Record<string, Tensor> = {};
  const dys: (Tensor | undefined)[] = [];
  const dyNames = node.outputs.map((o, k) => {
    const t = typeOf(g, o);
    if (!isFloat(t.dtype) || (c.cotangents && !c.cotangents.includes(k))) {
      dys.push(undefined);
      return undefined;
    }
    const name = `dy${k}`;
    const dy = tensorOf(t.dtype, t.shape, Array.from({ length: sizeOf(t.shape) }, () => signed(r, 0)));
    bg.values.set(name, { name, dtype: t.dtype, shape: [...t.shape], role: 'input' });
    bg.inputs.push(name);
    dyFeeds[name] = dy;
    dys.push(dy);
    return name;
  });
  const ctx: GradCtx = {
    node: bnode,
    dy: dyNames,
    type: (v) => typeOf(bg, v),
    emit: (op, ins, attrs, nOutputs) => addNode(bg, op, ins, { attrs, outputs: nOutputs, name: `${bnode.name}.grad` }),
    constant: (t) => addConst(bg, `${bnode.name}.grad_const`, t),
  };
  const dx = row.grad!(ctx);
  const benv = runGraph(bg, { ...feeds, ...dyFeeds });

  const errors: string[] = [];
  // Missing trailing entries mean "no gradient" (checked below); extra ones must be empty.
  if (dx.slice(names.length).some((d) => d !== undefined)) errors.push(`rule returned ${dx.length} gradients for ${names.length} inputs`);
  const forward = (over: Record<string, Tensor>) => () => runGraph(g, { ...feeds, ...over });
  names.forEach((name, k) => {
    const spec = c.ins[k];
    const xt = inputs[k].tensor;
    // A value read by several operand slots is checked once, at its first slot.
    if (spec.constant || spec.sameAs !== undefined || !isFloat(xt.dtype)) return;
    const analytic = new Float64Array(xt.data.length);
    let given = false;
    for (const [slot, n] of names.entries()) {
      const d = dx[slot];
      if (n !== name || d === undefined) continue;
      const dt = typeOf(bg, d);
      if (dt.dtype !== xt.dtype || dt.shape.join() !== xt.shape.join()) {
        errors.push(`input ${slot}: gradient is ${dt.dtype}[${dt.shape}], input is ${xt.dtype}[${xt.shape}]`);
        return;
      }
      benv.get(d)!.data.forEach((v, j) => (analytic[j] += v));
      given = true;
    }
    // Central differences, element by element, with the steps as actually fed (f32).
    const fd = new Float64Array(xt.data.length);
    for (let j = 0; j < xt.data.length; j++) {
      const plus = Float32Array.from(xt.data);
      const minus = Float32Array.from(xt.data);
      plus[j] = Math.fround(xt.data[j] + H);
      minus[j] = Math.fround(xt.data[j] - H);
      const lp = objective(forward({ [name]: { ...xt, data: plus } }), node.outputs, dys);
      const lm = objective(forward({ [name]: { ...xt, data: minus } }), node.outputs, dys);
      fd[j] = (lp - lm) / (plus[j] - minus[j]);
    }
    const scale = Math.max(1e-3, ...Array.from(fd, Math.abs));
    let worst = 0;
    let wj = 0;
    for (let j = 0; j < fd.length; j++) {
      const e = Math.abs(analytic[j] - fd[j]) / (RTOL * Math.abs(fd[j]) + 2e-3 * scale);
      if (e > worst) [worst, wj] = [e, j];
    }
    if (!(worst <= 1))
      errors.push(
        `input ${k} [${xt.shape}]${given ? '' : ' (the rule gives no gradient)'}: ${worst.toFixed(2)}x the tolerance at [${wj}]: rule ${analytic[wj]}, finite difference ${fd[wj]}`,
      );
  });
  return errors;
}

describe('coverage', () => {
  it('every op with a gradient rule has a finite-difference case (here or in its own op test file)', () => {
    const missing = allOps()
      .filter((r) => r.grad && !CASES.some((c) => c.op === r.op) && !coveredElsewhere(r.op))
      .map((r) => r.op);
    expect(missing).toEqual([]);
  });
});

describe('gradient rules vs finite differences', () => {
  for (const c of CASES)
    it(`${c.op} ${c.what}`, () => {
      expect(check(c)).toEqual([]);
    });
});

describe('gradient rules without an output gradient', () => {
  // A rule called with no cotangent (the output does not reach the loss) emits nothing.
  const firstCase = new Map<string, GradCase>();
  for (const c of CASES) if (!firstCase.has(c.op)) firstCase.set(c.op, c);
  for (const [op, c] of firstCase)
    it(op, () => {
      const { g } = singleNodeGraph(c.op, inputsOf(c), c.attrs, c.outputs);
      const before = g.nodes.length;
      const ctx: GradCtx = {
        node: g.nodes[0],
        dy: g.nodes[0].outputs.map(() => undefined),
        type: (v) => typeOf(g, v),
        emit: (o, ins, attrs, n) => addNode(g, o, ins, { attrs, outputs: n }),
        constant: (t) => addConst(g, 'k', t),
      };
      const dx = opRow(op).grad!(ctx);
      expect(dx.every((d) => d === undefined)).toBe(true);
      expect(g.nodes.length).toBe(before);
    });
});

describe('gradient dtypes', () => {
  // Finite differences need f32 inputs; the rules must also hand back gradients in each
  // input's own (low-precision) type, as autodiff requires.
  for (const [from, to] of [
    ['f16', 'f32'],
    ['f32', 'bf16'],
    ['bf16', 'f16'],
  ] as [DType, DType][])
    it(`Cast ${from} -> ${to}: the gradient is ${from}`, () => {
      const { g } = singleNodeGraph('Cast', [{ tensor: tensorOf(from, [3], [1, 2, 3]) }], castAttrs(to));
      const dy = 'dy';
      g.values.set(dy, { name: dy, dtype: to, shape: [3], role: 'input' });
      const ctx: GradCtx = {
        node: g.nodes[0],
        dy: [dy],
        type: (v) => typeOf(g, v),
        emit: (o, ins, attrs, n) => addNode(g, o, ins, { attrs, outputs: n }),
        constant: (t) => addConst(g, 'k', t),
      };
      const [dx] = opRow('Cast').grad!(ctx);
      expect(typeOf(g, dx!)).toEqual({ dtype: from, shape: [3] });
    });
});
