// Shared pieces of the per-family op tests (test/ops-*.test.ts): float comparisons in ulp and
// relative error, the WebGPU-vs-interpreter loop over a graph's nodes and the swept float runs,
// gradient graphs and finite-difference checks, and onnxruntime models, feeds and tensors.
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { runGraph } from '../../src/interp/interpreter.js';
import { addConst, addNode, typeOf } from '../../src/ir/build.js';
import { encode, floatInfo, isFloat, type DType, type FloatDType } from '../../src/ir/dtypes.js';
import { cloneGraph, type Attrs, type Graph, type Node } from '../../src/ir/graph.js';
import { sizeOf, type Tensor } from '../../src/ir/tensor.js';
import { opRow } from '../../src/ops/table.js';
import type { GradCtx } from '../../src/ops/types.js';
import type { Target } from '../../src/codegen/kernel.js';
import { runNodeOnGpu } from './gpu.js';
import { rng, seedOf, tensorOf } from './single-node.js';

// ---------------------------------------------------------------------------------------------
// Float comparisons.

/** Position of a value in its format's order (sign-magnitude code to a signed integer). */
export function ordinal(dtype: FloatDType, v: number): number {
  const fi = floatInfo(dtype);
  const code = dtype === 'f32' ? new Uint32Array(Float32Array.of(v).buffer)[0] : encode(dtype, v);
  const sign = 2 ** (fi.bits - 1);
  return code >= sign ? -(code - sign) : code;
}

/** f32: max error in units of (1e-5 |want| + 1e-6 max|want| + atol). */
export function f32Err(got: ArrayLike<number>, want: ArrayLike<number>, atol = 0): { worst: number; at: number } {
  let maxAbs = 0;
  for (let i = 0; i < want.length; i++) maxAbs = Math.max(maxAbs, Math.abs(want[i]));
  let worst = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    const e = Math.abs(got[i] - want[i]) / (1e-5 * Math.abs(want[i]) + 1e-6 * maxAbs + atol + 1e-30);
    if (!(e <= worst)) [worst, at] = [e, i];
  }
  return { worst, at };
}

/** The f32 check of f32Err as a message: undefined when within the tolerance. */
export function f32Mismatch(got: ArrayLike<number>, want: ArrayLike<number>, atol = 0): string | undefined {
  const { worst, at } = f32Err(got, want, atol);
  return worst <= 1 ? undefined : `f32 ${worst.toFixed(2)}x the tolerance at [${at}]: got ${got[at]}, want ${want[at]}`;
}

/** The first element more than `allowed` ulp of `dtype` away from its reference, as a message. */
export function ulpMismatch(dtype: FloatDType, got: ArrayLike<number>, want: ArrayLike<number>, allowed: number): string | undefined {
  for (let i = 0; i < want.length; i++) {
    const d = Math.abs(ordinal(dtype, got[i]) - ordinal(dtype, want[i]));
    if (d > allowed) return `${dtype}: ${d} ulp (allowed ${allowed}) at [${i}]: got ${got[i]}, want ${want[i]}`;
  }
  return undefined;
}

/** Largest difference in f32 ulp (NaN matches NaN; ±0 are equal), ignoring those within `abs`. */
export function maxUlpF32(got: ArrayLike<number>, want: ArrayLike<number>, abs = 0): { ulp: number; at: number } {
  let ulp = 0;
  let at = -1;
  for (let i = 0; i < want.length; i++) {
    if ((Number.isNaN(want[i]) && Number.isNaN(got[i])) || Math.abs(got[i] - want[i]) <= abs) continue;
    const e = got[i] === want[i] ? 0 : Math.abs(ordinal('f32', got[i]) - ordinal('f32', want[i]));
    if (!(e <= ulp)) [ulp, at] = [Number.isNaN(e) ? Infinity : e, i];
  }
  return { ulp, at };
}

/**
 * A kernel's output against the interpreter's, the parts that must match exactly: every
 * element of an integer output, and the NaN and ±Inf positions of a float one.
 */
export function exactPartMismatch(dtype: DType, got: ArrayLike<number>, want: ArrayLike<number>): string | undefined {
  const at = (i: number) => `[${i}]: got ${got[i]}, want ${want[i]}`;
  if (!isFloat(dtype)) {
    for (let i = 0; i < want.length; i++) if (got[i] !== want[i]) return `differs at ${at(i)}`;
    return undefined;
  }
  for (let i = 0; i < want.length; i++)
    if (Number.isNaN(want[i]) !== Number.isNaN(got[i]) || (!Number.isFinite(want[i]) && !Number.isNaN(want[i]) && got[i] !== want[i])) return `non-finite mismatch at ${at(i)}`;
  return undefined;
}

/**
 * The largest distance in ulp of `dtype` (a zero of the other sign counts 1) over the elements
 * whose reference is not NaN and whose absolute difference is not `near`, as a message when it
 * is over `allowed`.
 */
export function worstUlpMismatch(dtype: FloatDType, got: ArrayLike<number>, want: ArrayLike<number>, allowed: number, near: (absDiff: number) => boolean): string | undefined {
  let worst = 0;
  let wi = 0;
  for (let i = 0; i < want.length; i++) {
    if (Number.isNaN(want[i]) || near(Math.abs(got[i] - want[i]))) continue;
    const d = Math.abs(ordinal(dtype, got[i]) - ordinal(dtype, want[i]));
    const e = d === 0 && !Object.is(got[i], want[i]) ? 1 : d; // bit-exact includes the sign of zero
    if (e > worst) [worst, wi] = [e, i];
  }
  return worst <= allowed ? undefined : `${worst} ulp of ${dtype} (allowed ${allowed}) at [${wi}]: got ${got[wi]}, want ${want[wi]}`;
}

// ---------------------------------------------------------------------------------------------
// WebGPU against the interpreter.

/** The float types and f16 storage layouts a kernel is swept over. */
export const RUNS: { t: FloatDType; target: Target }[] = [
  { t: 'f32', target: { f16: true } },
  { t: 'f16', target: { f16: true } },
  { t: 'f16', target: { f16: false } },
  { t: 'bf16', target: { f16: true } },
];
export const runName = (r: (typeof RUNS)[number]) => `T=${r.t}${r.t === 'f16' ? (r.target.f16 ? ' native' : ' packed') : ''}`;

export type Compare = (op: string, dtype: DType, got: ArrayLike<number>, want: ArrayLike<number>, atol?: number) => string | undefined;

/** Runs nodes [from, ...) of g on the GPU, each on the interpreter's inputs, and lists mismatches. */
export async function gpuVsInterp(compare: Compare, g: Graph, feeds: Record<string, Tensor>, target: Target, from: number, atol = 0): Promise<string[]> {
  const env = runGraph(g, feeds);
  const bad: string[] = [];
  for (let idx = from; idx < g.nodes.length; idx++) {
    const n = g.nodes[idx];
    if (opRow(n.op).alias?.view) continue;
    const outs = await runNodeOnGpu(g, idx, env, target);
    n.outputs.forEach((o, k) => {
      if (!o) return;
      const want = env.get(o)!;
      const msg = compare(n.op, want.dtype, outs[k].data, want.data, atol);
      if (msg) bad.push(`${n.op} '${n.name}' output ${k} (${want.dtype}[${want.shape}]): ${msg}`);
    });
  }
  return bad;
}

// ---------------------------------------------------------------------------------------------
// Finite differences.

/** Σ dY·Y over the outputs named in `dys`, run on the interpreter. */
export function dyObjective(g: Graph, feeds: Record<string, Tensor>, dys: Map<string, Tensor>): number {
  const env = runGraph(g, feeds);
  let s = 0;
  for (const [o, dy] of dys) {
    const y = env.get(o)!.data;
    for (let i = 0; i < y.length; i++) s += dy.data[i] * y[i];
  }
  return s;
}

/**
 * A copy of the one-node graph `b.g` with the node's gradient rule applied to a cotangent `dy`
 * (a graph input) on output 0, its values drawn by `dyValue` from the seed `seed`.
 */
export function withGradient<B extends { g: Graph; feeds: Record<string, Tensor> }>(b: B, seed: string, dyValue: (r: () => number) => number) {
  const g = cloneGraph(b.g);
  const node = g.nodes[0];
  const yt = typeOf(g, node.outputs[0]);
  const r = rng(seedOf(seed));
  const dy = tensorOf(yt.dtype, yt.shape, Array.from({ length: sizeOf(yt.shape) }, () => dyValue(r)));
  g.values.set('dy', { name: 'dy', dtype: yt.dtype, shape: [...yt.shape], role: 'input' });
  g.inputs.push('dy');
  const ctx: GradCtx = {
    node,
    dy: node.outputs.map((_, k) => (k === 0 ? 'dy' : undefined)),
    type: (v) => typeOf(g, v),
    emit: (op, ins, attrs, nOutputs) => addNode(g, op, ins, { attrs, outputs: nOutputs, name: `${node.name}.grad` }),
    constant: (tt) => addConst(g, `${node.name}.grad_const`, tt),
  };
  const dx = opRow(node.op).grad!(ctx);
  return { ...b, g, node, dx, dy, feeds: { ...b.feeds, dy } };
}

/**
 * A copy of the one-node graph `g` with the node's gradient rule applied to cotangents dy0,
 * dy1... (graph inputs, added to `feeds`) on its float outputs not listed in `skip`, drawn by
 * `dyValue` from the seed `seed`. Returns the copy, the rule's dX names and the cotangents by
 * output name.
 */
export function withGradients(g: Graph, feeds: Record<string, Tensor>, seed: string, dyValue: (r: () => number) => number, skip?: number[]) {
  const node = g.nodes[0];
  const bg = cloneGraph(g);
  const r = rng(seedOf(seed));
  const dys = new Map<string, Tensor>();
  const dyNames = node.outputs.map((o, k) => {
    const t = typeOf(g, o);
    if (!isFloat(t.dtype) || skip?.includes(k)) return undefined;
    const name = `dy${k}`;
    const dy = tensorOf(t.dtype, t.shape, Array.from({ length: sizeOf(t.shape) }, () => dyValue(r)));
    bg.values.set(name, { name, dtype: t.dtype, shape: [...t.shape], role: 'input' });
    bg.inputs.push(name);
    feeds[name] = dy;
    dys.set(o, dy);
    return name;
  });
  const ctx: GradCtx = {
    node: bg.nodes[0],
    dy: dyNames,
    type: (v) => typeOf(bg, v),
    emit: (op, ins, attrs, nOutputs) => addNode(bg, op, ins, { attrs, outputs: nOutputs, name: 'node.grad' }),
    constant: (t) => addConst(bg, 'node.grad_const', t),
  };
  const dx = opRow(node.op).grad!(ctx);
  return { bg, dx, dys };
}

/**
 * Applies the gradient rule of `n` (a node of `g`) to the cotangents `dy`, adding the nodes it
 * emits to `g` (named 'grad', its constants 'grad_const'); returns the dX names.
 */
export function emitGradient(g: Graph, n: Node, dy: (string | undefined)[]): (string | undefined)[] {
  const gctx: GradCtx = {
    node: n,
    dy,
    type: (v) => ({ dtype: g.values.get(v)!.dtype, shape: g.values.get(v)!.shape as number[] }),
    emit: (op, inputs, attrs, nOutputs) => addNode(g, op, inputs, { attrs, outputs: nOutputs, name: 'grad' }),
    constant: (t) => addConst(g, 'grad_const', t),
  };
  return opRow(n.op).grad!(gctx);
}

/**
 * Central differences (step h) of the f64 objective `loss` at every element of each operand in
 * `base` (undefined: not differentiated), against the rule's gradients `dx` as computed in
 * `env`; lists the first mismatch of each operand.
 */
export function fdVsRule(
  base: (Float64Array | undefined)[],
  dx: (string | undefined)[],
  env: Map<string, Tensor>,
  h: number,
  loss: (ins: (Float64Array | undefined)[]) => number,
): string[] {
  const bad: string[] = [];
  base.forEach((v, k) => {
    if (!v) return;
    const fd = new Float64Array(v.length);
    for (let j = 0; j < v.length; j++) {
      const at = (delta: number) => {
        const ins = base.map((b) => b && Float64Array.from(b));
        ins[k]![j] += delta;
        return loss(ins);
      };
      fd[j] = (at(h) - at(-h)) / (2 * h);
    }
    const d = dx[k];
    const got = d ? env.get(d)!.data : new Float32Array(v.length);
    const maxAbs = fd.reduce((m, e) => Math.max(m, Math.abs(e)), 0);
    for (let j = 0; j < v.length; j++)
      if (!(Math.abs(got[j] - fd[j]) <= 1e-4 * Math.abs(fd[j]) + 1e-4 * maxAbs + 1e-6)) {
        bad.push(`input ${k}${d ? '' : ' (no gradient from the rule)'} [${j}]: rule ${got[j]}, finite difference ${fd[j]}`);
        break;
      }
  });
  return bad;
}

// ---------------------------------------------------------------------------------------------
// onnxruntime data.

export const ORT_TYPE: Record<string, ort.Tensor.Type> = { f32: 'float32', i64: 'int64', i32: 'int32', bool: 'bool' };

/** Little-endian contents of an ONNX TensorProto's raw_data. */
export function rawBytes(dtype: DType, vals: (number | bigint)[]): Uint8Array {
  let a: ArrayBufferView;
  if (dtype === 'f32') a = Float32Array.from(vals as number[]);
  else if (dtype === 'i64') a = BigInt64Array.from(vals.map((v) => BigInt(v)));
  else if (dtype === 'i32') a = Int32Array.from(vals as number[]);
  else if (dtype === 'bool') a = Uint8Array.from(vals as number[]);
  else throw new Error(`no raw bytes for ${dtype}`);
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** An onnxruntime tensor's contents as numbers (int64 and bool included). */
export function ortNumbers(t: ort.Tensor): number[] {
  return Array.from(t.data as ArrayLike<number | bigint | boolean>, (v) => (typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? (v ? 1 : 0) : v));
}

/** An mpc tensor (f32, bool or i64) as an onnxruntime feed. */
export function ortTensor(t: Tensor): ort.Tensor {
  if (t.dtype === 'f32') return new ort.Tensor('float32', t.data as Float32Array, t.shape);
  if (t.dtype === 'bool') return new ort.Tensor('bool', Uint8Array.from(t.data), t.shape);
  return new ort.Tensor('int64', BigInt64Array.from(Array.from(t.data, BigInt)), t.shape);
}

/** An IR attribute as an ONNX AttributeProto; numbers named in `floatNames` are FLOAT, other numbers INT. */
export function onnxAttr(name: string, v: Attrs[string], floatNames: ReadonlySet<string>) {
  const T = onnx.onnx.AttributeProto.AttributeType;
  if (typeof v === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(v) };
  if (Array.isArray(v)) return { name, type: T.INTS, ints: v as number[] };
  if (floatNames.has(name)) return { name, type: T.FLOAT, f: v as number };
  return { name, type: T.INT, i: v as number };
}

/**
 * The feeds x0, x1... of a one-node model, for onnxruntime and for mpc: every operand present
 * and not a constant (`isConst(k)`).
 */
export function splitFeeds(ins: (Tensor | null)[], isConst: (k: number) => boolean): { ortFeeds: Record<string, ort.Tensor>; ourFeeds: Record<string, Tensor> } {
  const ortFeeds: Record<string, ort.Tensor> = {};
  const ourFeeds: Record<string, Tensor> = {};
  ins.forEach((t, k) => {
    if (!t || isConst(k)) return;
    ortFeeds[`x${k}`] = ortTensor(t);
    ourFeeds[`x${k}`] = t;
  });
  return { ortFeeds, ourFeeds };
}
