// GEMM-like ops: ONNX Gemm and MatMul (with batch broadcasting). Both run in the policy's
// low-precision type and accumulate in f32; both lower to the one GEMM kernel emitter.
import { broadcastShapes, sizeOf, stridesOf, type Tensor } from '../ir/tensor.js';
import { fromOnnx, type DType } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { emitGemm, operandReloads, type GemmOperand, type GemmOptions, type GemmScale } from '../codegen/kernels/gemm.js';
import { layoutOf } from '../codegen/storage.js';
import type { Target } from '../codegen/kernel.js';
import { sumTo } from './elementwise.js';
import { attrFloat, attrInt, attrInts, type EmitCtx, type GradCtx, type OpRow, type ValueType } from './types.js';

interface GemmDims {
  M: number;
  N: number;
  K: number;
}

function gemmDims(n: Node, a: number[], b: number[]): GemmDims {
  if (a.length !== 2 || b.length !== 2) throw new Error(`Gemm '${n.name}': A and B must be 2-D, got [${a}] and [${b}]`);
  const tA = attrInt(n, 'transA', 0) === 1;
  const tB = attrInt(n, 'transB', 0) === 1;
  const [M, K] = tA ? [a[1], a[0]] : a;
  const [K2, N] = tB ? [b[1], b[0]] : b;
  if (K !== K2) throw new Error(`Gemm '${n.name}': inner dimensions differ (${K} vs ${K2})`);
  return { M, N, K };
}

/** f64 reference: out[m,n] = alpha * sum_k A[m,k] B[k,n] (+ beta * C broadcast). */
function gemmRef(a: Tensor, b: Tensor, c: Tensor | undefined, d: GemmDims, tA: boolean, tB: boolean, alpha: number, beta: number): Float32Array {
  const { M, N, K } = d;
  const out = new Float32Array(M * N);
  const A = a.data;
  const B = b.data;
  const cStr = c ? broadcast2d(c.shape, M, N) : undefined;
  for (let m = 0; m < M; m++)
    for (let n = 0; n < N; n++) {
      let s = 0;
      for (let k = 0; k < K; k++) s += A[tA ? k * M + m : m * K + k] * B[tB ? n * K + k : k * N + n];
      let v = alpha * s;
      if (c && cStr) v += beta * c.data[m * cStr[0] + n * cStr[1]];
      out[m * N + n] = v;
    }
  return out;
}

/** Row/column strides of C (shape broadcastable to [M, N]). */
export function broadcast2d(shape: number[], M: number, N: number): [number, number] {
  const s = [...Array(2 - Math.min(2, shape.length)).fill(1), ...shape.slice(-2)];
  if ((s[0] !== 1 && s[0] !== M) || (s[1] !== 1 && s[1] !== N)) throw new Error(`bias of shape [${shape}] does not broadcast to [${M},${N}]`);
  return [s[0] === 1 ? 0 : s[1], s[1] === 1 ? 0 : 1];
}

/** A tensor read in place through a transposed view: its shape and the element strides of its axes. */
interface View {
  shape: number[];
  strides: number[];
}

interface MatMulShape {
  batch: number[];
  M: number;
  N: number;
  K: number;
  /** The node's output: the product [...batch, M, N], transposed by permY where set. */
  out: number[];
  /** The operands as the product reads them. */
  a: View;
  b: View;
}

/**
 * MatMul's own attributes in mpc, beyond ONNX's (whose MatMul has none). Each is a Transpose
 * folded into the product, so that it reads and writes tensors in place instead of through
 * transposed copies:
 *  - `transA` / `transB` (the backward pass of a batched product sets them): the operand's
 *    last two axes swapped;
 *  - `permA` / `permB` (pass fold-transposes): the operand is Transpose(input, perm), before
 *    any trans swap;
 *  - `permY` (fold-transposes): the output is Transpose(product, permY).
 */
const PERM_ATTRS = ['permA', 'permB', 'permY'] as const;

function hasPerms(n: Node): boolean {
  return PERM_ATTRS.some((k) => n.attrs[k] !== undefined);
}

function permAttr(n: Node, key: (typeof PERM_ATTRS)[number], rank: number): number[] | undefined {
  if (n.attrs[key] === undefined) return undefined;
  const p = attrInts(n, key);
  if (p.length !== rank || [...p].sort((x, y) => x - y).some((v, i) => v !== i)) throw new Error(`MatMul '${n.name}': ${key} [${p}] is not a permutation of ${rank} axes`);
  return p;
}

/** Operand k (0: A, 1: B) as the product reads it: permuted by permA/permB, then its last two axes swapped under transA/transB. */
function operandView(n: Node, k: 0 | 1, shape: number[]): View {
  const base = stridesOf(shape);
  const perm = permAttr(n, k === 0 ? 'permA' : 'permB', shape.length) ?? shape.map((_, i) => i);
  const v = { shape: perm.map((p) => shape[p]), strides: perm.map((p) => base[p]) };
  if (attrInt(n, k === 0 ? 'transA' : 'transB', 0) === 1) {
    const r = shape.length;
    [v.shape[r - 2], v.shape[r - 1]] = [v.shape[r - 1], v.shape[r - 2]];
    [v.strides[r - 2], v.strides[r - 1]] = [v.strides[r - 1], v.strides[r - 2]];
  }
  return v;
}

function matmulShape(n: Node, a: number[], b: number[]): MatMulShape {
  if (a.length < 2 || b.length < 2) throw new Error(`MatMul '${n.name}': 1-D operands are not supported yet ([${a}] x [${b}])`);
  const av = operandView(n, 0, a);
  const bv = operandView(n, 1, b);
  const [M, K] = av.shape.slice(-2);
  const [K2, N] = bv.shape.slice(-2);
  if (K !== K2) throw new Error(`MatMul '${n.name}': inner dimensions differ (${K} vs ${K2})`);
  const batch = broadcastShapes(av.shape.slice(0, -2), bv.shape.slice(0, -2));
  const product = [...batch, M, N];
  const py = permAttr(n, 'permY', product.length);
  return { batch, M, N, K, out: py ? py.map((p) => product[p]) : product, a: av, b: bv };
}

/** Offset, through `strides`, of the element at flat index i of a row-major array whose strides are `rowMajor`. */
function stridedOffset(i: number, rowMajor: number[], strides: number[]): number {
  let r = i;
  let off = 0;
  for (let d = 0; d < rowMajor.length; d++) {
    const c = Math.floor(r / rowMajor[d]);
    r -= c * rowMajor[d];
    off += c * strides[d];
  }
  return off;
}

/** The elements of a view, contiguous. */
function gather(data: ArrayLike<number>, v: View): Float32Array {
  const out = new Float32Array(sizeOf(v.shape));
  const os = stridesOf(v.shape);
  for (let i = 0; i < out.length; i++) out[i] = data[stridedOffset(i, os, v.strides)];
  return out;
}

/** Strides of the product's axes within the node's output (the product, transposed by permY). */
function productStrides(n: Node, s: MatMulShape): number[] {
  const product = [...s.batch, s.M, s.N];
  const py = permAttr(n, 'permY', product.length) ?? product.map((_, i) => i);
  const ys = stridesOf(s.out);
  const zs = new Array<number>(product.length);
  py.forEach((p, k) => (zs[p] = ys[k]));
  return zs;
}

/** Per batch dimension of the product: the view's stride, 0 where it broadcasts. */
function viewBatchStrides(v: View, batch: number[]): number[] {
  const pad = batch.length - (v.shape.length - 2);
  return batch.map((_, d) => (d < pad || v.shape[d - pad] === 1 ? 0 : v.strides[d - pad]));
}

/** Per-batch element offsets of an operand with batch dims `own` broadcast to `batch`. */
/** Per batch dimension: elements between consecutive matrices of an operand, 0 where it broadcasts. */
function batchStrides(own: number[], batch: number[], matSize: number): number[] {
  const pad = [...Array(batch.length - own.length).fill(1), ...own];
  const os = stridesOf(pad);
  return batch.map((_, d) => (pad[d] === 1 ? 0 : os[d] * matSize));
}

function batchOffsets(own: number[], batch: number[], matSize: number): number[] {
  const nb = sizeOf(batch);
  const bs = stridesOf(batch);
  const pad = [...Array(batch.length - own.length).fill(1), ...own];
  const os = stridesOf(pad);
  const offs: number[] = [];
  for (let i = 0; i < nb; i++) {
    let r = i;
    let off = 0;
    for (let d = 0; d < batch.length; d++) {
      const c = Math.floor(r / bs[d]);
      r -= c * bs[d];
      if (pad[d] !== 1) off += c * os[d];
    }
    offs.push(off * matSize);
  }
  return offs;
}

function gemmGradRule(ctx: GradCtx): (string | undefined)[] {
  const n = ctx.node;
  const dy = ctx.dy[0];
  if (!dy) return [undefined, undefined, undefined];
  const [a, b, c] = n.inputs;
  const tA = attrInt(n, 'transA', 0) === 1;
  const tB = attrInt(n, 'transB', 0) === 1;
  const alpha = attrFloat(n, 'alpha', 1);
  const beta = attrFloat(n, 'beta', 1);
  const g = (x: string, y: string, ta: boolean, tb: boolean) =>
    ctx.emit('Gemm', [x, y], { transA: ta ? 1 : 0, transB: tb ? 1 : 0, alpha })[0];
  // Y = alpha op(A) op(B): dop(A) = alpha dY op(B)^T, dop(B) = alpha op(A)^T dY.
  // C's gradient (a bias's: dY summed, a small result) first, so that the products are dY's
  // last readers: under fp8, dY's wide copy then dies at its quantizer, before the products'
  // results are allocated.
  let dc: string | undefined;
  if (c) {
    dc = sumTo(ctx, dy, ctx.type(c).shape);
    if (beta !== 1) dc = ctx.emit('Mul', [dc, ctx.constant({ dtype: ctx.type(c).dtype, shape: [], data: new Float32Array([beta]) })])[0];
  }
  // B's gradient next: in a linear layer it is the last reader of the activations A, which
  // then die before A's gradient is allocated (B, the weight, outlives the step anyway).
  const db = tB ? (tA ? g(dy, a, true, true) : g(dy, a, true, false)) : tA ? g(a, dy, false, false) : g(a, dy, true, false);
  const da = tA ? (tB ? g(b, dy, true, true) : g(b, dy, false, true)) : tB ? g(dy, b, false, false) : g(dy, b, false, true);
  return [da, db, dc];
}

/** The GEMM's store: its own output, or the fused consumers' (after rounding to its own dtype). */
function output(n: Node, ctx: EmitCtx): Pick<GemmOptions, 'out' | 'epilogue'> {
  const dtype = ctx.type(n.outputs[0]).dtype;
  const epi = ctx.epilogue;
  if (!epi) return { out: { buffer: n.outputs[0], dtype } };
  return { out: epi.out, epilogue: (w, v, idx) => epi.apply(w, w.round(dtype, v), idx) };
}

/** Operand k as the GEMM reads it: its own buffer, or a fused producer's input mapped on load. */
function operand(n: Node, ctx: EmitCtx, k: number): Pick<GemmOperand, 'buffer' | 'dtype' | 'map'> {
  const pro = ctx.prologue?.[k];
  if (pro) return { buffer: pro.buffer, dtype: pro.dtype, map: pro.apply };
  return { buffer: n.inputs[k], dtype: ctx.type(n.inputs[k]).dtype };
}

/** Gemm's GEMM (ONNX semantics: alpha, beta, transposes, a broadcast bias C). */
function gemmNodeOptions(n: Node, ctx: EmitCtx): GemmOptions {
  const [a, b, c] = n.inputs;
  const at = ctx.type(a);
  const bt = ctx.type(b);
  const d = gemmDims(n, at.shape, bt.shape);
  const cStr = c ? broadcast2d(ctx.type(c).shape, d.M, d.N) : undefined;
  return {
    name: ctx.writer().name,
    ...d,
    transA: attrInt(n, 'transA', 0) === 1,
    transB: attrInt(n, 'transB', 0) === 1,
    alpha: attrFloat(n, 'alpha', 1),
    beta: attrFloat(n, 'beta', 1),
    a: operand(n, ctx, 0),
    b: operand(n, ctx, 1),
    c: c && cStr ? { ...operand(n, ctx, 2), rowStride: cStr[0], colStride: cStr[1] } : undefined,
    scales: fp8Scales(n, ctx),
    ...output(n, ctx),
    target: ctx.target,
  };
}

function sameDtype(n: Node, ins: ValueType[]): void {
  const ds = ins.filter(Boolean).map((t) => t.dtype);
  if (ds.some((d) => d !== ds[0])) throw new Error(`${n.op} '${n.name}': operands have different dtypes (${ds.join(', ')}); a cast is missing`);
}

const FP8_SPEC = { operands: [0, 1] as [number, number], scaleInputs: [3, 4] as [number, number] };

/** fp8 operands come with their inverse scales (inputs 3, 4); the output type is attribute `to`. */
function isFp8(n: Node): boolean {
  return Boolean(n.inputs[3] && n.inputs[4]);
}

/** Output dtype; checks operand dtypes (fp8 operands may differ: E4M3 x E5M2). */
function gemmOutDtype(n: Node, ins: ValueType[]): DType {
  if (!isFp8(n)) {
    sameDtype(n, ins.slice(0, 3));
    return ins[0].dtype;
  }
  for (const k of [0, 1])
    if (ins[k].dtype !== 'f8e4m3fn' && ins[k].dtype !== 'f8e5m2') throw new Error(`${n.op} '${n.name}': operand ${k} must be fp8 when inverse scales are given`);
  return fromOnnx(attrInt(n, 'to'));
}

/** The inverse scales of fp8 operands, multiplied into the f32 sum by the kernel (computed by the quantizer in an operand's loads, where there is one). */
function fp8Scales(n: Node, ctx: EmitCtx): GemmScale[] | undefined {
  if (!isFp8(n)) return undefined;
  return [0, 1].map((k) => {
    const scale = ctx.prologue?.[k]?.scale;
    return scale ? { expr: scale } : { buffer: n.inputs[3 + k], dtype: 'f32' };
  });
}

/** Factor applied to the f32 sum: alpha, times the operands' inverse scales under fp8. */
function sumScale(n: Node, ins: (Tensor | undefined)[]): number {
  const alpha = attrFloat(n, 'alpha', 1);
  return isFp8(n) ? Math.fround(Math.fround(alpha * ins[3]!.data[0]) * ins[4]!.data[0]) : alpha;
}

/**
 * Longest reduction for which a batched product of two activations (both operands with batch
 * dimensions: attention's scores, K = head width, and weighted sum, K = context) is recomputed
 * in the backward pass rather than kept: 2·K FLOPs per output element against its bytes held
 * through the backward pass. A layer's products with its weights (Gemm, or a MatMul with a
 * 2-D operand) are never recomputed.
 */
const RECOMPUTE_MAX_K = 64;

/**
 * Most loads of each operand element for which its cast is done in the GEMM's loads (a
 * prologue) rather than by a kernel of its own. Per element, the prologue rounds once per load
 * and the cast kernel once, plus a store and a load. Measured on lavapipe (f16, round-robin
 * medians): at 512x1024x256, where each operand element is loaded 64 times, rounding A in the
 * loads added 8 ms and B 13 ms to a 33 ms GEMM, against 1.1 and 1.8 ms for the cast kernels;
 * at 16 to 32 loads (the MLP's GEMMs) the two were within the machine's noise. The addend C (a
 * bias) is loaded once per output element, so its cast always goes into the loads.
 */
const PROLOGUE_MAX_RELOADS = 32;

function prologuePays(M: number, N: number, k: number, out: ValueType, target: Target): boolean {
  if (k === 2) return true;
  const r = operandReloads({ M, N, target }, layoutOf(out.dtype, target).perWord);
  return (k === 0 ? r.a : r.b) <= PROLOGUE_MAX_RELOADS;
}

/** MatMul with folded transposes, on the CPU: the views gathered, multiplied, the product transposed into place. */
function matmulThroughViews(n: Node, ins: Tensor[], dtype: DType): Tensor[] {
  const [a, b] = ins;
  const s = matmulShape(n, a.shape, b.shape);
  const A = gather(a.data, s.a);
  const B = gather(b.data, s.b);
  const offA = batchOffsets(s.a.shape.slice(0, -2), s.batch, s.M * s.K);
  const offB = batchOffsets(s.b.shape.slice(0, -2), s.batch, s.K * s.N);
  const product = new Float32Array(sizeOf(s.batch) * s.M * s.N);
  for (let i = 0; i < offA.length; i++)
    product.set(
      gemmRef(
        { dtype: a.dtype, shape: [s.M, s.K], data: A.subarray(offA[i], offA[i] + s.M * s.K) },
        { dtype: b.dtype, shape: [s.K, s.N], data: B.subarray(offB[i], offB[i] + s.K * s.N) },
        undefined,
        s,
        false,
        false,
        sumScale(n, ins),
        0,
      ),
      i * s.M * s.N,
    );
  // Each product element to its place in the output (the product transposed by permY).
  const zs = productStrides(n, s);
  const out = new Float32Array(product.length);
  const zStr = stridesOf([...s.batch, s.M, s.N]);
  for (let i = 0; i < product.length; i++) out[stridedOffset(i, zStr, zs)] = product[i];
  return [{ dtype, shape: s.out, data: out }];
}

export const gemmOps: OpRow[] = [
  {
    op: 'Gemm',
    domain: '',
    opsets: [7, 22],
    precision: 'allow',
    // Inputs 3 and 4 (inverse scales of fp8 operands) are internal to mpc.
    arity: [2, 5],
    outputs: 1,
    fp8: FP8_SPEC,
    epilogue: true,
    prologue: [0, 1, 2],
    prologueWorth: (n, k, ins, out, target) => {
      const d = gemmDims(n, ins[0].shape, ins[1].shape);
      return prologuePays(d.M, d.N, k, out, target);
    },
    infer: (n, ins) => {
      const dtype = gemmOutDtype(n, ins);
      const d = gemmDims(n, ins[0].shape, ins[1].shape);
      if (ins[2]) broadcast2d(ins[2].shape, d.M, d.N);
      return [{ dtype, shape: [d.M, d.N] }];
    },
    interp: (n, ins, ctx) => {
      const [a, b, c] = ins;
      const d = gemmDims(n, a.shape, b.shape);
      const data = gemmRef(a, b, c, d, attrInt(n, 'transA', 0) === 1, attrInt(n, 'transB', 0) === 1, sumScale(n, ins), attrFloat(n, 'beta', 1));
      return [{ dtype: ctx.outTypes[0].dtype, shape: [d.M, d.N], data }];
    },
    grad: gemmGradRule,
    gemm: gemmNodeOptions,
    wgsl: (n, ctx) => [emitGemm(gemmNodeOptions(n, ctx))],
  },
  {
    op: 'MatMul',
    domain: '',
    opsets: [1, 22],
    precision: 'allow',
    // Inputs 3 and 4 (inverse scales of fp8 operands) are internal to mpc; input 2 stays empty.
    arity: [2, 5],
    outputs: 1,
    fp8: FP8_SPEC,
    epilogue: true,
    prologue: [0, 1],
    prologueWorth: (n, k, ins, out, target) => {
      const d = matmulShape(n, ins[0].shape, ins[1].shape);
      return prologuePays(d.M, d.N, k, out, target);
    },
    recompute: (n, ins) => ins[0].shape.length > 2 && ins[1].shape.length > 2 && matmulShape(n, ins[0].shape, ins[1].shape).K <= RECOMPUTE_MAX_K,
    infer: (n, ins) => [{ dtype: gemmOutDtype(n, ins), shape: matmulShape(n, ins[0].shape, ins[1].shape).out }],
    interp: (n, ins, ctx) => {
      if (hasPerms(n)) return matmulThroughViews(n, ins, ctx.outTypes[0].dtype);
      const [a, b] = ins;
      const alpha = sumScale(n, ins);
      const s = matmulShape(n, a.shape, b.shape);
      const { M, N, K } = s;
      const offA = batchOffsets(a.shape.slice(0, -2), s.batch, M * K);
      const offB = batchOffsets(b.shape.slice(0, -2), s.batch, K * N);
      const out = new Float32Array(sizeOf(s.out));
      for (let i = 0; i < offA.length; i++) {
        const sub = gemmRef(
          { dtype: a.dtype, shape: [M, K], data: a.data.subarray(offA[i], offA[i] + M * K) },
          { dtype: b.dtype, shape: [K, N], data: b.data.subarray(offB[i], offB[i] + K * N) },
          undefined,
          s,
          attrInt(n, 'transA', 0) === 1,
          attrInt(n, 'transB', 0) === 1,
          alpha,
          0,
        );
        out.set(sub, i * M * N);
      }
      return [{ dtype: ctx.outTypes[0].dtype, shape: s.out, data: out }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined];
      if (hasPerms(ctx.node)) throw new Error(`MatMul '${ctx.node.name}': a product with folded transposes (permA/permB/permY) has no gradient rule; fold-transposes runs after autodiff`);
      const [a, b] = ctx.node.inputs;
      const as = ctx.type(a).shape;
      const bs = ctx.type(b).shape;
      const tA = attrInt(ctx.node, 'transA', 0) === 1;
      const tB = attrInt(ctx.node, 'transB', 0) === 1;
      if (!tA && !tB && as.length === 2 && bs.length === 2) {
        return [
          ctx.emit('Gemm', [dy, b], { transB: 1 })[0],
          ctx.emit('Gemm', [a, dy], { transA: 1 })[0],
        ];
      }
      if (!tA && !tB && bs.length === 2) {
        // A [..., M, K] x W [K, N] (a linear layer on a batch of sequences): fold the batch
        // into the rows, so both gradients are single GEMMs (no per-batch products to sum).
        const rows = sizeOf(as.slice(0, -1));
        const view = (x: string, shape: number[]) => ctx.emit('mpc.View', [x], { shape })[0];
        const a2 = view(a, [rows, as[as.length - 1]]);
        const dy2 = view(dy, [rows, bs[1]]);
        return [view(ctx.emit('Gemm', [dy2, b], { transB: 1 })[0], as), ctx.emit('Gemm', [a2, dy2], { transA: 1 })[0]];
      }
      // Batched: dA = dY Bᵀ, dB = Aᵀ dY, the transposes read by the GEMM's loads (transA/B),
      // so under fp8 the forward operands keep the one E4M3 copy the forward product read.
      const mm = (x: string, y: string, ta: boolean, tb: boolean) => ctx.emit('MatMul', [x, y], { ...(ta ? { transA: 1 } : {}), ...(tb ? { transB: 1 } : {}) })[0];
      // Y = op(A) op(B): dop(A) = dY op(B)ᵀ, dop(B) = op(A)ᵀ dY (as for Gemm).
      const da = tA ? (tB ? mm(b, dy, true, true) : mm(b, dy, false, true)) : tB ? mm(dy, b, false, false) : mm(dy, b, false, true);
      const db = tB ? (tA ? mm(dy, a, true, true) : mm(dy, a, true, false)) : tA ? mm(a, dy, false, false) : mm(a, dy, true, false);
      return [sumTo(ctx, da, as), sumTo(ctx, db, bs)];
    },
    gemm: matmulOptions,
    wgsl: (n, ctx) => [emitGemm(matmulOptions(n, ctx))],
  },
];

/** MatMul's GEMM: operands and output read in place through folded transposes, batches by strides. */
function matmulOptions(n: Node, ctx: EmitCtx): GemmOptions {
  const [a, b] = n.inputs;
  const at = ctx.type(a);
  const bt = ctx.type(b);
  const s = matmulShape(n, at.shape, bt.shape);
  const o = output(n, ctx);
  let layout: Pick<GemmOptions, 'batch' | 'a' | 'b' | 'transA' | 'transB' | 'out'>;
  if (hasPerms(n)) {
    // Operands and output in place, through their strides.
    const batched = s.batch.length > 0;
    const mat = (v: View): [number, number] => [v.strides[v.strides.length - 2], v.strides[v.strides.length - 1]];
    const zs = productStrides(n, s);
    // A row-major result (no permY) is stored as any other (a packed one of odd N too).
    const rowMajor = zs.join() === stridesOf([...s.batch, s.M, s.N]).join();
    layout = {
      batch: batched ? s.batch : 1,
      a: { ...operand(n, ctx, 0), strides: mat(s.a), batchStride: batched ? viewBatchStrides(s.a, s.batch) : undefined },
      b: { ...operand(n, ctx, 1), strides: mat(s.b), batchStride: batched ? viewBatchStrides(s.b, s.batch) : undefined },
      out: rowMajor ? o.out : { ...o.out, strides: [zs[zs.length - 2], zs[zs.length - 1]], batchStride: batched ? zs.slice(0, -2) : undefined },
    };
  } else {
    const uniform = (offs: number[]) => (offs.length < 2 ? 0 : offs[1] - offs[0]);
    const offA = batchOffsets(at.shape.slice(0, -2), s.batch, s.M * s.K);
    const offB = batchOffsets(bt.shape.slice(0, -2), s.batch, s.K * s.N);
    const regular = (offs: number[]) => offs.every((x, i) => x === i * uniform(offs));
    // One stride over the flat batch index where it is regular; otherwise (both operands
    // broadcast, [2,1,M,K] x [1,5,K,N]) one stride per batch dimension, 0 where broadcast.
    const flat = regular(offA) && regular(offB);
    layout = {
      transA: attrInt(n, 'transA', 0) === 1,
      transB: attrInt(n, 'transB', 0) === 1,
      batch: flat ? sizeOf(s.batch) : s.batch,
      a: { ...operand(n, ctx, 0), batchStride: flat ? uniform(offA) : batchStrides(at.shape.slice(0, -2), s.batch, s.M * s.K) },
      b: { ...operand(n, ctx, 1), batchStride: flat ? uniform(offB) : batchStrides(bt.shape.slice(0, -2), s.batch, s.K * s.N) },
      out: o.out,
    };
  }
  return { name: ctx.writer().name, M: s.M, N: s.N, K: s.K, scales: fp8Scales(n, ctx), ...o, ...layout, target: ctx.target };
}
