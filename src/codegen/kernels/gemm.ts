// The GEMM kernel: out = alpha · op(A) · op(B) + beta · C, batched, for any float storage
// format of A, B, C and out. Products are accumulated in f32 whatever the operand formats
// (the design: a low-precision GEMM accumulates in f32); the result is rounded once, to
// the output format, with round-to-nearest-even by the storage helpers.
//
// Three variants, all register-blocked and free of shared memory and barriers (on lavapipe
// every barrier is a coroutine switch on a CPU, and shared-memory tiling loses to plain
// register blocking):
//
// - 'subgroup' (the fast path, needs a fixed subgroup size S): a workgroup is one subgroup
//   and computes a TM × (S·TN) tile. Per block of S steps of k, each lane loads *one*
//   A value per row (A[m, k0 + lane]) and the lanes hand them to each other with
//   subgroupBroadcast. On lavapipe a lane is a SIMD slot and every memory load with a
//   per-lane address is a gather, so trading S-1 of every S A-gathers for in-register
//   broadcasts is what pays. Fewer gathers pay again: operands are read in runs of whole
//   words where their layout allows (two bf16, f16 or f32 values per load, two or four fp8),
//   and where A's rows run along k and TM = S, lane l loads row l's S values of the block as
//   such runs and broadcasts value s at step s.
// - 'blocked': 8×8 invocations, each computing a TM×TN block, loading its operands itself.
// - 'naive': one invocation per output word, a plain dot product per element. It is the
//   fallback for packed outputs whose rows do not start on a word boundary (N not a
//   multiple of the values per word), where no blocked tiling can give every invocation
//   whole words.
//
// In the blocked variants an invocation owns TN *adjacent* columns, TN a multiple of the
// output's values per word, so a packed output is always written a whole word at a time by
// its one owner. Out-of-range rows and columns are clamped for loading (every load stays in
// bounds, no branch in the inner loop) and skipped when storing; K runs in whole blocks,
// the steps past K adding exact zeros.
import type { DType } from '../../ir/dtypes.js';
import { isFloat } from '../../ir/dtypes.js';
import { sizeOf } from '../../ir/tensor.js';
import { MAX_WORKGROUPS_PER_DIM, type Kernel, type Target } from '../kernel.js';
import { KernelWriter, f32Lit, layoutOf, mapKernel } from '../storage.js';

export interface GemmOperand {
  buffer: string;
  dtype: DType;
  /**
   * Elements between consecutive batch matrices. A number applies to the flat batch index;
   * an array gives one stride per dimension of `batch` (given as an array), 0 = broadcast.
   * Default: the operand is contiguous (A: M·K, B: K·N per matrix).
   */
  batchStride?: number | readonly number[];
  /**
   * Element strides of op(X)'s two axes (A: rows m, then k; B: k, then columns n), for an
   * operand read through a transposed view (a Transpose folded into the product). Overrides
   * transA / transB. Default: contiguous.
   */
  strides?: readonly [number, number];
  /** A fused prologue: the f32 value used for each element loaded (a cast's rounding). */
  map?: (w: KernelWriter, v: string) => string;
}

/** The output: contiguous [batch..., M, N] unless strides say where each element goes. */
export interface GemmOutput {
  buffer: string;
  dtype: DType;
  /** Element strides of rows and columns (a Transpose of the result folded in); columns must be 1 apart. */
  strides?: readonly [number, number];
  /** As for the operands; default M·N per matrix. */
  batchStride?: number | readonly number[];
}

/** The addend C, broadcast to [M, N] by its strides (Gemm's bias [N]: rowStride 0, colStride 1). */
export interface GemmAddend extends GemmOperand {
  rowStride: number;
  colStride: number;
  /** As for A and B, but the default is 0: one C for every batch. */
  batchStride?: number | readonly number[];
}

export type GemmScale = { buffer: string; dtype: DType } | { expr: (w: KernelWriter) => string };

/** The f32 expressions of the run-time factors, their buffers bound in `w`. */
function scaleValues(o: GemmOptions, w: KernelWriter): string[] {
  return (o.scales ?? []).map((sc) => ('expr' in sc ? sc.expr(w) : w.load(w.bind(sc.buffer, sc.dtype, 'read'), '0u')));
}

export type GemmVariant = 'subgroup' | 'blocked' | 'naive';

export interface GemmOptions {
  name: string;
  M: number;
  N: number;
  K: number;
  /** Batch count, or batch dimensions (for per-dimension broadcast strides). Default 1. */
  batch?: number | readonly number[];
  /** A is stored [K, M] (else [M, K]). */
  transA?: boolean;
  /** B is stored [N, K] (else [K, N]). */
  transB?: boolean;
  alpha?: number;
  beta?: number;
  a: GemmOperand;
  b: GemmOperand;
  c?: GemmAddend;
  /**
   * Run-time factors of the product (fp8 inverse scales): one-element buffers whose values
   * multiply alpha, in order, in f32: out = ((alpha · s0) · s1) · Σ + beta · C. A factor may
   * instead be computed (`expr`, an f32 expression binding what it reads): the inverse scale
   * of an operand quantized in the loads (a prologue).
   */
  scales?: GemmScale[];
  /** The output, contiguous [batch..., M, N] unless it has strides. */
  out: GemmOutput;
  /**
   * Fused consumers: the value stored at flat output index `idx` is `epilogue(w, v, idx)`, `v`
   * being the GEMM's f32 result there (after alpha, scales and C).
   */
  epilogue?: (w: KernelWriter, v: string, idx: string) => string;
  /** `subgroupSize` (a fixed size, with the `subgroups` feature) selects the subgroup variant. */
  target: Target;
  /** Force a variant (tests, benchmarks); default: the fastest one that applies. */
  variant?: GemmVariant;
  /**
   * Workgroups per dispatch dimension (default MAX_WORKGROUPS_PER_DIM, WebGPU's limit; tests
   * lower it). A blocked GEMM whose grid of tiles exceeds it runs its tiles from a linear
   * workgroup index spread over x and y; the subgroup variant then gives way to the blocked one.
   */
  maxWorkgroups?: number;
}

/** Tile shapes. TN is raised to the output's values per word where that is larger. */
const SUBGROUP_TILE = { TM: 8, TN: 2 };
const SUBGROUP_TILE_FP8_OUT = { TM: 4, TN: 4 };
const BLOCKED_TILE = { TM: 4, TN: 4, WX: 8, WY: 8, unroll: 4 };
/** Subgroup sizes the subgroup variant accepts (its k-block of S steps is unrolled). */
const SUBGROUP_SIZES = [4, 8, 16, 32];

export function emitGemm(o: GemmOptions): Kernel {
  validate(o);
  const w = new KernelWriter(o.name, o.target);
  const outPerWord = layoutOf(o.out.dtype, o.target).perWord;
  // Binding order: A, B, C, scales, out (the writer merges a buffer bound twice, e.g. X·Xᵀ).
  const g: Gen = {
    o,
    w,
    // An operand read in runs (rowA, vectorA, vectorB) is declared as words where it is native
    // f16 and as vec2<f32> pairs where it is f32: one load per two values.
    A: w.bind(o.a.buffer, o.a.dtype, 'read', {
      words: variantOf(o, outPerWord) === 'subgroup' && (rowAFits(o, subgroupTile(outPerWord).TM, o.target.subgroupSize!) || vectorAFits(o, subgroupTile(outPerWord).TM)),
    }),
    B: w.bind(o.b.buffer, o.b.dtype, 'read', { words: variantOf(o, outPerWord) === 'subgroup' && vectorBFits(o, o.target.subgroupSize!, subgroupTN(outPerWord)) }),
    C: o.c && (o.beta ?? 1) !== 0 ? w.bind(o.c.buffer, o.c.dtype, 'read') : undefined,
    scales: scaleValues(o, w),
    out: w.bind(o.out.buffer, o.out.dtype, 'read_write'),
    batchDims: typeof o.batch === 'number' ? [o.batch] : [...(o.batch ?? [1])],
  };
  const perWord = w.layout(g.out).perWord;
  const variant = variantOf(o, perWord);
  if (o.out.strides) {
    const bs = o.out.batchStride;
    const steps = [o.out.strides[0], ...(bs === undefined ? [] : typeof bs === 'number' ? [bs] : bs)];
    if (variant === 'naive' || steps.some((x) => x % perWord !== 0))
      throw new Error(`gemm '${o.name}': a strided ${o.out.dtype} output needs N and its row and batch strides to be multiples of ${perWord}`);
  }
  if (variant !== 'naive' && o.N % perWord !== 0)
    throw new Error(`gemm '${o.name}': the ${variant} variant needs N (${o.N}) to be a multiple of ${perWord} for a packed ${o.out.dtype} output`);
  if (variant === 'subgroup') return subgroupKernel(g, perWord);
  if (variant === 'blocked') return blockedKernel(g, perWord);
  return naiveKernel(g);
}

/**
 * One GEMM's loads and result, for a kernel that computes the product inside a larger
 * computation (fused attention) with a plain k loop: `lets(bz)` defines the batch offsets
 * (`offA`, `offB`, `offOut`; put them in a block of their own), `a`/`b` load operand elements
 * (prologues applied), `value` is the stored value from the f32 sum (alpha, scales, C, then
 * the epilogue at output index `idx`). A sum equal to emitGemm's: the same fma chain from +0
 * in k order (emitGemm's steps past K, where it runs K in blocks, add +0 to a sum that cannot
 * be -0: a sum from +0 never is). `bind`: whether A and the output are bound (an
 * operand held in registers, a product never stored, leave theirs out); `mapA` applies A's
 * prologue to a value held so.
 */
export function gemmParts(o: GemmOptions, w: KernelWriter, bind: { a: boolean; out: boolean }) {
  validate(o);
  const g: Gen = {
    o,
    w,
    A: bind.a ? w.bind(o.a.buffer, o.a.dtype, 'read') : '',
    B: w.bind(o.b.buffer, o.b.dtype, 'read'),
    C: o.c && (o.beta ?? 1) !== 0 ? w.bind(o.c.buffer, o.c.dtype, 'read') : undefined,
    scales: scaleValues(o, w),
    out: bind.out ? w.bind(o.out.buffer, o.out.dtype, 'read_write') : '',
    batchDims: typeof o.batch === 'number' ? [o.batch] : [...(o.batch ?? [1])],
  };
  return {
    out: g.out,
    lets: (bz: string) => offsetLets(g, bz),
    a: (row: string, k: string) => loadA(g, row, k),
    mapA: (v: string) => mapA(g, v),
    b: (k: string, col: string) => loadB(g, k, col),
    value: (acc: string, m: string, n: string, idx: string) => epilogue(g, finalValue(g, acc, m, n), idx),
  };
}

/** The variant emitGemm runs for `o`. */
function variantOf(o: GemmOptions, perWord: number): GemmVariant {
  const variant = o.variant ?? chooseVariant(o, perWord);
  return variant === 'subgroup' && !o.variant && gridExceeds(o, subgroupGrid(o, perWord)) ? 'blocked' : variant;
}

/**
 * How many times the kernel loads each element of A and of B: once per tile of the other
 * dimension (register blocking without shared memory reloads an operand for every tile that
 * needs it). A prologue applied in the loads (a cast's rounding) runs that many times per
 * element, where a kernel of its own would run once.
 */
export function operandReloads(o: Pick<GemmOptions, 'M' | 'N' | 'target'>, outPerWord: number): { a: number; b: number } {
  const variant = chooseVariant(o, outPerWord);
  if (variant === 'naive') return { a: o.N, b: o.M };
  if (variant === 'blocked') return { a: Math.ceil(o.N / Math.max(BLOCKED_TILE.TN, outPerWord)), b: Math.ceil(o.M / BLOCKED_TILE.TM) };
  const tile = outPerWord === 4 ? SUBGROUP_TILE_FP8_OUT : SUBGROUP_TILE;
  return { a: Math.ceil(o.N / (o.target.subgroupSize! * Math.max(tile.TN, outPerWord))), b: Math.ceil(o.M / tile.TM) };
}

/** The variant `emitGemm` picks when none is forced. */
export function chooseVariant(o: Pick<GemmOptions, 'N' | 'target'>, outPerWord: number): GemmVariant {
  if (o.N % outPerWord !== 0) return 'naive';
  const s = o.target.subgroupSize;
  if (s !== undefined && SUBGROUP_SIZES.includes(s)) return 'subgroup';
  return 'blocked';
}

function validate(o: GemmOptions): void {
  const where = `gemm '${o.name}'`;
  for (const [k, v] of Object.entries({ M: o.M, N: o.N, K: o.K }))
    if (!Number.isInteger(v) || v < 1) throw new Error(`${where}: ${k} must be a positive integer, got ${v}`);
  const operands: [string, { dtype: DType } | undefined][] = [['a', o.a], ['b', o.b], ['c', o.c], ['out', o.out]];
  (o.scales ?? []).forEach((sc, i) => 'dtype' in sc && operands.push([`scales[${i}]`, sc]));
  for (const [k, op] of operands)
    if (op && !isFloat(op.dtype)) throw new Error(`${where}: operand ${k} has non-float dtype ${op.dtype}`);
  const dims = typeof o.batch === 'number' ? [o.batch] : [...(o.batch ?? [1])];
  if (dims.some((d) => !Number.isInteger(d) || d < 1)) throw new Error(`${where}: bad batch [${dims}]`);
  if (sizeOf(dims) >= 2 ** 32) throw new Error(`${where}: batch ${sizeOf(dims)} exceeds the u32 index range`);
  for (const [k, op] of Object.entries({ a: o.a, b: o.b, c: o.c, out: o.out })) {
    const s = op?.batchStride;
    if (Array.isArray(s) && s.length !== dims.length)
      throw new Error(`${where}: operand ${k} has ${s.length} batch strides for ${dims.length} batch dims`);
  }
  if (o.out.strides && o.out.strides[1] !== 1) throw new Error(`${where}: the output's columns must be adjacent (column stride ${o.out.strides[1]})`);
  if (o.out.strides && o.variant === 'naive') throw new Error(`${where}: the naive variant writes a contiguous output only`);
  if (o.variant === 'subgroup' && !SUBGROUP_SIZES.includes(o.target.subgroupSize ?? 0))
    throw new Error(`${where}: the subgroup variant needs a fixed subgroup size in {${SUBGROUP_SIZES}} (target has ${o.target.subgroupSize})`);
}

/** Everything the three variants share. */
interface Gen {
  o: GemmOptions;
  w: KernelWriter;
  A: string;
  B: string;
  C: string | undefined;
  /** The run-time factors' f32 expressions. */
  scales: string[];
  out: string;
  batchDims: number[];
}

function u(n: number): string {
  return `${n}u`;
}

/** `x * stride` as a WGSL term, folded for strides 0 and 1. */
function scaled(x: string, stride: number): string {
  if (stride === 0) return '0u';
  if (stride === 1) return x;
  return /^[\w.]+$/.test(x) ? `${x} * ${u(stride)}` : `(${x}) * ${u(stride)}`;
}

function sum(terms: string[]): string {
  const t = terms.filter((x) => x !== '0u');
  return t.length ? t.join(' + ') : '0u';
}

/** Element offset of batch matrix `bz` (a u32 expression) of an operand. */
function batchOffset(g: Gen, stride: number | readonly number[] | undefined, contiguous: number, bz: string): string {
  const dims = g.batchDims;
  if (sizeOf(dims) === 1) return '0u';
  if (stride === undefined) return scaled(bz, contiguous);
  if (typeof stride === 'number') return scaled(bz, stride);
  const terms: string[] = [];
  let inner = 1;
  for (let d = dims.length - 1; d >= 0; d--) {
    if (stride[d] !== 0 && dims[d] !== 1) {
      const q = inner === 1 ? bz : `(${bz} / ${u(inner)})`;
      const coord = d === 0 ? q : `(${q} % ${u(dims[d])})`;
      terms.push(scaled(coord, stride[d]));
    }
    inner *= dims[d];
  }
  return sum(terms);
}

/** `let` lines for the batch offsets of A, B, C and out (batch index `bz`) and the run-time scale. */
function offsetLets(g: Gen, bz: string): string[] {
  const { o } = g;
  const lines = [
    `let offA = ${batchOffset(g, o.a.batchStride, o.M * o.K, bz)};`,
    `let offB = ${batchOffset(g, o.b.batchStride, o.K * o.N, bz)};`,
    `let offOut = ${o.out.batchStride === undefined ? scaled(bz, sizeOf(g.batchDims) === 1 ? 0 : o.M * o.N) : batchOffset(g, o.out.batchStride, o.M * o.N, bz)};`,
  ];
  if (g.C) lines.push(`let offC = ${batchOffset(g, o.c!.batchStride ?? 0, 0, bz)};`);
  if (g.scales.length) lines.push(`let sumScale = ${[f32Lit(o.alpha ?? 1), ...g.scales].join(' * ')};`);
  return lines;
}

/** f32 expression of op(A)[row, k]; `row` and `k` are u32 expressions. */
function loadA(g: Gen, row: string, k: string): string {
  const { M, K } = g.o;
  const st = g.o.a.strides;
  return mapA(g, g.w.load(g.A, st ? sum(['offA', scaled(row, st[0]), scaled(k, st[1])]) : g.o.transA ? `offA + ${scaled(k, M)} + ${row}` : `offA + ${scaled(row, K)} + ${k}`));
}

/** A's prologue (a cast folded into its loads) applied to a loaded value. */
function mapA(g: Gen, v: string): string {
  return g.o.a.map ? g.o.a.map(g.w, v) : v;
}

/** f32 expression of op(B)[k, col]. */
function loadB(g: Gen, k: string, col: string): string {
  const { N, K } = g.o;
  const st = g.o.b.strides;
  const v = g.w.load(g.B, st ? sum(['offB', scaled(k, st[0]), scaled(col, st[1])]) : g.o.transB ? `offB + ${scaled(col, K)} + ${k}` : `offB + ${scaled(k, N)} + ${col}`);
  return mapB(g, v);
}

function mapB(g: Gen, v: string): string {
  return g.o.b.map ? g.o.b.map(g.w, v) : v;
}

/** f32 expression of the final value at [m, n] from the f32 accumulator `acc`. */
function finalValue(g: Gen, acc: string, m: string, n: string): string {
  const alpha = g.o.alpha ?? 1;
  const beta = g.o.beta ?? 1;
  let v = g.scales.length ? `sumScale * ${acc}` : alpha === 1 ? acc : `${f32Lit(alpha)} * ${acc}`;
  if (g.C) {
    const c = g.o.c!;
    const raw = g.w.load(g.C, sum(['offC', scaled(m, c.rowStride), scaled(n, c.colStride)]));
    const cv = c.map ? c.map(g.w, raw) : raw;
    v = `${v} + ${beta === 1 ? cv : `${f32Lit(beta)} * ${cv}`}`;
  }
  return v;
}

/** The stored value: the result itself, or the fused consumers' value at flat index `idx`. */
function epilogue(g: Gen, v: string, idx: string): string {
  return g.o.epilogue ? g.o.epilogue(g.w, v, idx) : v;
}

/**
 * Clamped row/column indices and zeroed accumulators of a TM×TN block whose first row is
 * `m0` and first column `n0` (u32 lets already in scope).
 */
function blockPrologue(g: Gen, TM: number, TN: number): string[] {
  const { M, N } = g.o;
  const lines: string[] = [];
  for (let i = 0; i < TM; i++) lines.push(`let row${i} = min(m0 + ${u(i)}, ${u(M - 1)});`);
  for (let j = 0; j < TN; j++) lines.push(`let col${j} = min(n0 + ${u(j)}, ${u(N - 1)});`);
  for (let i = 0; i < TM; i++) lines.push(Array.from({ length: TN }, (_, j) => `var acc${i}_${j} = 0.0;`).join(' '));
  return lines;
}

/** Stores of a TM×TN block (rows m0.., columns n0..), whole words for packed outputs. */
function blockEpilogue(g: Gen, TM: number, TN: number, perWord: number): string[] {
  const { M, N } = g.o;
  const lines: string[] = [];
  for (let i = 0; i < TM; i++) {
    const m = `(m0 + ${u(i)})`;
    lines.push(`if (${m} < ${u(M)}) {`);
    for (let q = 0; q < TN; q += perWord) {
      const idx = `offOut + ${scaled(m, g.o.out.strides?.[0] ?? N)} + n0 + ${u(q)}`;
      const vals = Array.from({ length: perWord }, (_, e) => epilogue(g, finalValue(g, `acc${i}_${q + e}`, m, `(n0 + ${u(q + e)})`), e ? `${idx} + ${u(e)}` : idx));
      const store = perWord === 1 ? g.w.store(g.out, idx, vals[0]) : g.w.storeWord(g.out, `(${idx}) / ${u(perWord)}`, vals);
      lines.push(`  if (n0 + ${u(q)} < ${u(N)}) { ${store} }`);
    }
    lines.push('}');
  }
  return lines;
}

/**
 * A loop bound equal to `n` that the shader compiler cannot see as a constant. With a
 * constant trip count, LLVM (lavapipe) fully unrolls every loop it can, which for small K
 * multiplies the pipeline compile time (seconds per kernel) for no run-time gain. No
 * binding is ever empty, so the select always yields `n`.
 */
function opaqueBound(g: Gen, n: number): string {
  return `select(${u(n)}, 0u, arrayLength(&${g.out}) == 0u)`;
}

function maxGroups(o: GemmOptions): number {
  return o.maxWorkgroups ?? MAX_WORKGROUPS_PER_DIM;
}

function gridExceeds(o: GemmOptions, grid: [number, number, number]): boolean {
  return grid.some((d) => d > maxGroups(o));
}

/** The subgroup variant's grid of workgroups: column tiles, row tiles, batch. */
function subgroupGrid(o: GemmOptions, perWord: number): [number, number, number] {
  const S = o.target.subgroupSize ?? 1;
  const tile = perWord === 4 ? SUBGROUP_TILE_FP8_OUT : SUBGROUP_TILE;
  const TN = Math.max(tile.TN, perWord);
  const batch = sizeOf(typeof o.batch === 'number' ? [o.batch] : [...(o.batch ?? [1])]);
  return [Math.ceil(o.N / (S * TN)), Math.ceil(o.M / tile.TM), batch];
}

function checkDispatch(g: Gen, dispatch: [number, number, number]): [number, number, number] {
  if (gridExceeds(g.o, dispatch))
    throw new Error(`gemm '${g.o.name}': dispatch [${dispatch}] exceeds ${maxGroups(g.o)} workgroups per dimension`);
  return dispatch;
}

/**
 * A grid of workgroups over the per-dimension limit, run as a linear workgroup index spread
 * over x, y and z: returns the dispatch and the lines that define `tid`, the global id the
 * body would have seen under the unlimited grid (workgroups past the grid return at once).
 */
function foldedGrid(g: Gen, grid: [number, number, number], wsize: [number, number]): { dispatch: [number, number, number]; lets: string[] } {
  const limit = maxGroups(g.o);
  const total = grid[0] * grid[1] * grid[2];
  if (total >= 2 ** 32) throw new Error(`gemm '${g.o.name}': ${total} workgroups exceed the u32 index range`);
  const dz = Math.ceil(total / (limit * limit));
  const rest = Math.ceil(total / dz);
  const dy = Math.ceil(rest / limit);
  const dx = Math.ceil(rest / dy);
  if (dz > limit) throw new Error(`gemm '${g.o.name}': ${total} workgroups exceed ${limit}^3`);
  const [X, Y] = grid;
  return {
    dispatch: [dx, dy, dz],
    lets: [
      `let wg = gid.x / ${u(wsize[0])} + (gid.y / ${u(wsize[1])}) * ${u(dx)} + gid.z * ${u(dx * dy)};`,
      `if (wg >= ${u(total)}) { return; }`,
      `let tid = vec3<u32>((wg % ${u(X)}) * ${u(wsize[0])} + lid.x, ((wg / ${u(X)}) % ${u(Y)}) * ${u(wsize[1])} + lid.y, wg / ${u(X * Y)});`,
    ],
  };
}

/**
 * Index and guard for step `k` (a u32 expression) of a K loop run in whole blocks of
 * `block` steps. When K is not a multiple of the block, the steps past K load a clamped
 * element and zero it, so they add exactly 0 (zeroing both operands keeps an inf or NaN
 * at row K-1 from turning into a NaN through 0 · inf).
 */
function kStep(g: Gen, block: number): { index: (k: string) => string; guard: (value: string, k: string) => string } {
  const K = g.o.K;
  if (K % block === 0) return { index: (k) => k, guard: (v) => v };
  return { index: (k) => `min(${k}, ${u(K - 1)})`, guard: (v, k) => `select(0.0, ${v}, ${k} < ${u(K)})` };
}

const indent = (lines: string[]): string[] => lines.map((l) => `  ${l}`);

function subgroupKernel(g: Gen, perWord: number): Kernel {
  const { M, N, K } = g.o;
  const S = g.o.target.subgroupSize!;
  const tile = perWord === 4 ? SUBGROUP_TILE_FP8_OUT : SUBGROUP_TILE;
  const TM = tile.TM;
  const TN = Math.max(tile.TN, perWord);
  const ks = kStep(g, S);

  // One block of S k-steps from k0: lane l holds A[row_i, k0 + l] in av_i and hands it to
  // the others at step l. Where A's rows run along k and TM = S, lane l holds row l's S
  // values of the block instead (a run of whole words) and hands value s to the others at
  // step s: the same values, a fraction of the loads and decodes.
  const block: string[] = [];
  const arow = rowA(g, TM, S);
  const avec = arow ? undefined : vectorA(g, TM);
  if (arow) block.push(...arow.lets);
  else {
    if (avec) block.push(...avec.lets(ks.index('k0 + lane')));
    for (let i = 0; i < TM; i++) block.push(`let av${i} = ${ks.guard(avec ? avec.value(i) : loadA(g, `row${i}`, ks.index('k0 + lane')), 'k0 + lane')};`);
  }
  const bvec = vectorB(g, S, TN);
  if (bvec) block.push(...bvec.lets);
  for (let s = 0; s < S; s++) {
    const k = `k0 + ${u(s)}`;
    for (let j = 0; j < TN; j++) block.push(`let bv${s}_${j} = ${bvec ? bvec.value(s, j) : ks.guard(loadB(g, ks.index(k), `col${j}`), k)};`);
    for (let i = 0; i < TM; i++) {
      block.push(`{ let x = ${arow ? `subgroupBroadcast(ar${s}, ${u(i)})` : `subgroupBroadcast(av${i}, ${u(s)})`};`);
      block.push(`  ${Array.from({ length: TN }, (_, j) => `acc${i}_${j} = fma(x, bv${s}_${j}, acc${i}_${j});`).join(' ')}`);
      block.push('}');
    }
  }

  const body = [
    `let lane = sg_lane;`,
    `let bz = gid.z;`,
    `let m0 = gid.y * ${u(TM)};`,
    `let n0 = (gid.x / ${u(S)}) * ${u(S * TN)} + lane * ${u(TN)};`,
    ...offsetLets(g, 'bz'),
    ...blockPrologue(g, TM, TN),
    `let kEnd = ${opaqueBound(g, Math.ceil(K / S) * S)};`,
    `for (var k0 = 0u; k0 < kEnd; k0 = k0 + ${u(S)}) {`,
    ...indent(block),
    '}',
    ...blockEpilogue(g, TM, TN, perWord),
  ];
  return g.w.finish({
    body: body.join('\n'),
    workgroupSize: [S, 1, 1],
    dispatch: checkDispatch(g, [Math.ceil(N / (S * TN)), Math.ceil(M / TM), sizeOf(g.batchDims)]),
    subgroupLane: 'sg_lane',
  });
}

/**
 * B operands packed several per word (fp8, bf16) decoded a run at a time instead of element
 * by element (loadVec), each value then mapped by B's prologue: with transB, the S steps of one column's k-block are runs of 4; without,
 * the TN adjacent columns of one k step share a word (or two). Only where every run is aligned
 * to its words; otherwise undefined (element loads).
 */
function vectorB(g: Gen, S: number, TN: number): { lets: string[]; value: (s: number, j: number) => string } | undefined {
  const { K, N } = g.o;
  if (!g.w.vectorLoads(g.B) || !vectorBFits(g.o, S, TN)) return undefined;
  const ks = kStep(g, S);
  if (g.o.transB) {
    const lets: string[] = [];
    for (let j = 0; j < TN; j++)
      for (let q = 0; q < S / 4; q++) lets.push(`let bq${j}_${q} = ${g.w.loadVec(g.B, `offB + ${scaled(`col${j}`, K)} + k0 + ${u(4 * q)}`, 4)};`);
    return { lets, value: (s, j) => mapB(g, `bq${j}_${s >> 2}[${s & 3}]`) };
  }
  // The run starts at n0, or inside the last whole run for a tile past N (never stored).
  const lets = [`let bn0 = min(n0, ${u(N - TN)});`];
  for (let s = 0; s < S; s++) lets.push(`let bw${s} = ${g.w.loadVec(g.B, `offB + ${scaled(ks.index(`k0 + ${u(s)}`), N)} + bn0`, TN as 2 | 4)};`);
  return { lets, value: (s, j) => ks.guard(mapB(g, `bw${s}[${j}]`), `k0 + ${u(s)}`) };
}

/**
 * A operands whose rows are adjacent in memory (transA: A stored [K, M]) read like B's runs:
 * the TM rows of one k step are TM/4 runs of 4, decoded from whole words of a packed layout.
 * Rows past M are never stored, so a run past M starts inside the last whole run instead.
 */
function vectorA(g: Gen, TM: number): { lets: (k: string) => string[]; value: (i: number) => string } | undefined {
  if (!g.w.vectorLoads(g.A) || !vectorAFits(g.o, TM)) return undefined;
  const { M } = g.o;
  const kStride = aStrides(g.o)[1];
  return {
    lets: (k) => Array.from({ length: TM / 4 }, (_, q) => `let aq${q} = ${g.w.loadVec(g.A, `offA + ${scaled(k, kStride)} + min(m0 + ${u(4 * q)}, ${u(M - 4)})`, 4)};`),
    value: (i) => mapA(g, `aq${i >> 2}[${i & 3}]`),
  };
}

/**
 * A read a row per lane (see subgroupKernel): lane l loads row m0 + l's S values of the block,
 * k0 .. k0 + S - 1, in runs of 4 (whole words of a packed layout, pairs of f32); `ar<s>` is its
 * value at step s. Needs TM = S, A's k steps adjacent and K a multiple of S (no step past K);
 * rows past M are clamped (never stored).
 */
function rowA(g: Gen, TM: number, S: number): { lets: string[] } | undefined {
  if (!rowAFits(g.o, TM, S)) return undefined;
  const { M } = g.o;
  const rowStride = aStrides(g.o)[0];
  const lets = [`let arow = min(m0 + lane, ${u(M - 1)});`];
  for (let q = 0; q < S / 4; q++) lets.push(`let aq${q} = ${g.w.loadVec(g.A, `offA + ${scaled('arow', rowStride)} + k0 + ${u(4 * q)}`, 4)};`);
  for (let s = 0; s < S; s++) lets.push(`let ar${s} = ${mapA(g, `aq${s >> 2}[${s & 3}]`)};`);
  return { lets };
}

function rowAFits(o: GemmOptions, TM: number, S: number): boolean {
  const [rowStride, kStride] = aStrides(o);
  return TM === S && S % 4 === 0 && kStride === 1 && o.K % S === 0 && rowStride % 4 === 0 && batchAligned(o, o.a.batchStride, o.M * o.K, 4);
}

/** Whether every batch offset of an operand (batch strides; default `contiguous` per matrix) is a multiple of `n`. */
function batchAligned(o: GemmOptions, stride: number | readonly number[] | undefined, contiguous: number, n: number): boolean {
  const dims = typeof o.batch === 'number' ? [o.batch] : [...(o.batch ?? [1])];
  if (sizeOf(dims) === 1) return true;
  const strides = stride === undefined ? [contiguous] : typeof stride === 'number' ? [stride] : [...stride];
  return strides.every((x) => x % n === 0);
}

/** Element strides of op(A)'s rows and k steps. */
function aStrides(o: GemmOptions): readonly [number, number] {
  return o.a.strides ?? (o.transA ? [1, o.M] : [o.K, 1]);
}

/** Whether A's rows are adjacent and its runs of 4 rows start on word boundaries (see vectorA). */
function vectorAFits(o: GemmOptions, TM: number): boolean {
  const [rowStride, kStride] = aStrides(o);
  return TM % 4 === 0 && rowStride === 1 && kStride % 4 === 0 && o.M % 4 === 0 && batchAligned(o, o.a.batchStride, o.M * o.K, 4);
}

/** Whether B's runs (see vectorB) start on word boundaries of a packed layout. */
function vectorBFits(o: GemmOptions, S: number, TN: number): boolean {
  const { K, N } = o;
  if (o.b.strides) return false;
  const aligned = (n: number) => batchAligned(o, o.b.batchStride, K * N, n);
  if (o.transB) return K % S === 0 && S % 4 === 0 && K % 4 === 0 && aligned(4);
  return (TN === 2 || TN === 4) && N % TN === 0 && aligned(TN);
}

/** The subgroup variant's tile for an output with `perWord` values per word. */
function subgroupTile(perWord: number): { TM: number; TN: number } {
  return perWord === 4 ? SUBGROUP_TILE_FP8_OUT : SUBGROUP_TILE;
}

/** The subgroup variant's columns per lane for an output with `perWord` values per word. */
function subgroupTN(perWord: number): number {
  return Math.max(subgroupTile(perWord).TN, perWord);
}

function blockedKernel(g: Gen, perWord: number): Kernel {
  const { M, N, K } = g.o;
  const { TM, WX, WY, unroll } = BLOCKED_TILE;
  const TN = Math.max(BLOCKED_TILE.TN, perWord);
  const ks = kStep(g, unroll);

  const body = [
    `let bz = gid.z;`,
    `let m0 = gid.y * ${u(TM)};`,
    `let n0 = gid.x * ${u(TN)};`,
    ...offsetLets(g, 'bz'),
    ...blockPrologue(g, TM, TN),
    `let kEnd = ${opaqueBound(g, Math.ceil(K / unroll) * unroll)};`,
    `for (var k0 = 0u; k0 < kEnd; k0 = k0 + ${u(unroll)}) {`,
  ];
  for (let s = 0; s < unroll; s++) {
    const k = `k0 + ${u(s)}`;
    const step: string[] = [];
    for (let i = 0; i < TM; i++) step.push(`let av${i} = ${ks.guard(loadA(g, `row${i}`, ks.index(k)), k)};`);
    for (let j = 0; j < TN; j++) step.push(`let bv${j} = ${ks.guard(loadB(g, ks.index(k), `col${j}`), k)};`);
    for (let i = 0; i < TM; i++)
      step.push(Array.from({ length: TN }, (_, j) => `acc${i}_${j} = fma(av${i}, bv${j}, acc${i}_${j});`).join(' '));
    body.push(...indent(['{', ...indent(step), '}']));
  }
  body.push('}', ...blockEpilogue(g, TM, TN, perWord));

  const grid: [number, number, number] = [Math.ceil(N / (WX * TN)), Math.ceil(M / (WY * TM)), sizeOf(g.batchDims)];
  if (gridExceeds(g.o, grid)) {
    // Over the per-dimension limit: the same body, its global id rebuilt from a linear workgroup index.
    const f = foldedGrid(g, grid, [WX, WY]);
    return g.w.finish({ body: [...f.lets, ...body.map((l) => l.replace(/\bgid\./g, 'tid.'))].join('\n'), workgroupSize: [WX, WY, 1], dispatch: f.dispatch });
  }
  return g.w.finish({
    body: body.join('\n'),
    workgroupSize: [WX, WY, 1],
    dispatch: grid,
  });
}

function naiveKernel(g: Gen): Kernel {
  const { M, N, K } = g.o;
  const MN = M * N;
  const compute = [
    `let bz = i / ${u(MN)};`,
    `let m = (i % ${u(MN)}) / ${u(N)};`,
    `let n = i % ${u(N)};`,
    ...offsetLets(g, 'bz'),
    `var acc = 0.0;`,
    `let kEnd = ${opaqueBound(g, K)};`,
    `for (var k = 0u; k < kEnd; k = k + 1u) {`,
    `  acc = fma(${loadA(g, 'm', 'k')}, ${loadB(g, 'k', 'n')}, acc);`,
    `}`,
    `return ${epilogue(g, finalValue(g, 'acc', 'm', 'n'), 'i')};`,
  ];
  return mapKernel(g.w, { out: g.o.out.buffer, outDtype: g.o.out.dtype, count: sizeOf(g.batchDims) * MN, compute: compute.join('\n') });
}
