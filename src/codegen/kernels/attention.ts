// Attention as one kernel: scores = op(Q)·op(K) (a GEMM, with its epilogue: scale, mask,
// cast), a row-wise op over each row of scores (Softmax, with its epilogue: a cast), then
// out = P·op(V) (a GEMM, with its epilogue), where P is the row op's result. Each invocation
// takes TM rows of scores and holds them, in function-scope arrays, from the first product to
// the second: neither the scores nor P reach memory, and three dispatches become one. Both
// products are register-blocked as in emitGemm's blocked variant (TM rows by up to 4 columns
// of sums; no shared memory, no barriers: on lavapipe, loads are what costs).
//
// Same numbers as the three kernels: each sum is the same fma chain in k order as emitGemm's,
// each value is rounded to the dtype its buffer had, and the row op's WGSL is its own kernel's.
import { sizeOf } from '../../ir/tensor.js';
import { dispatch1d, type Kernel } from '../kernel.js';
import { layoutOf, type KernelWriter } from '../storage.js';
import type { DType } from '../../ir/dtypes.js';
import type { Epilogue } from '../../ops/types.js';
import { gemmParts, type GemmOptions } from './gemm.js';

/** Longest score row, and widest operand row, a kernel keeps in registers. */
export const ATTENTION_MAX_ROW = 256;

export interface AttentionOptions {
  /** The first product, never stored: its options give the value its buffer held (`out.dtype`, epilogue). */
  scores: GemmOptions;
  /** The row-wise op along the scores' last axis, its output dtype and fused consumers. */
  row: {
    body: (w: KernelWriter, len: number, at: (c: string) => string) => { prologue: string; element: (c: string) => string };
    dtype: DType;
    epilogue?: Epilogue;
  };
  /** The second product: operand A is the row op's result (never bound), contiguous [batch, M, K]. */
  out: GemmOptions;
}

/** Why the three cannot be one kernel of this shape, or undefined when they can. */
export function attentionUnfit(o: AttentionOptions): string | undefined {
  const { scores: s, out: p } = o;
  const batch = (x: GemmOptions) => sizeOf(typeof x.batch === 'number' ? [x.batch] : [...(x.batch ?? [1])]);
  if (s.c || p.c || s.scales?.length || p.scales?.length) return 'an addend or fp8 scales';
  if (s.out.strides || s.out.batchStride !== undefined) return 'strided scores';
  if (p.transA || (p.a.strides && (p.a.strides[0] !== p.K || p.a.strides[1] !== 1))) return 'the second product reads its A through a view';
  const dims = typeof p.batch === 'number' ? [p.batch] : [...(p.batch ?? [1])];
  const contiguous = (() => {
    const st = p.a.batchStride;
    if (st === undefined || batch(p) === 1) return true;
    if (typeof st === 'number') return st === p.M * p.K;
    let inner = p.M * p.K;
    for (let d = dims.length - 1; d >= 0; d--) {
      if (dims[d] !== 1 && st[d] !== inner) return false;
      inner *= dims[d];
    }
    return true;
  })();
  if (!contiguous) return 'the second product reads A with other batch strides';
  if (batch(s) !== batch(p) || s.M !== p.M || s.N !== p.K) return 'the products do not chain';
  if (s.N > ATTENTION_MAX_ROW || s.K > ATTENTION_MAX_ROW || p.N > ATTENTION_MAX_ROW) return 'rows too long for registers';
  const pw = layoutOf(p.out.dtype, p.target).perWord;
  if (p.N % pw !== 0 || (p.out.strides && p.out.strides[0] % pw !== 0)) return 'a packed output whose rows are not whole words';
  const bs = p.out.batchStride;
  if (bs !== undefined && (typeof bs === 'number' ? [bs] : bs).some((x) => x % pw !== 0)) return 'a packed output whose batches are not whole words';
  return undefined;
}

/**
 * Rows of scores per invocation (the largest dividing M whose scores take at most 512 f32):
 * each K and V element loaded serves them all. Invocations per workgroup: 32. Measured on lavapipe, GPT12 inference (B 8, 8 heads,
 * T 64, D 32; the three unfused kernels took 122 ms per inference): 1 row per invocation 430 ms,
 * 4 rows 155, 8 rows 122 with 64 invocations per workgroup, 110 with 16, 92-104 with 32.
 */
const ROWS_PER_INVOCATION = [8, 4, 2, 1];
const WORKGROUP = 32;

export function emitAttention(w: KernelWriter, o: AttentionOptions): Kernel {
  const why = attentionUnfit(o);
  if (why) throw new Error(`attention '${w.name}': cannot be one kernel (${why})`);
  const s = gemmParts(o.scores, w, { a: true, out: false });
  const p = gemmParts(o.out, w, { a: false, out: true });
  const { M, N: T, K: D } = o.scores;
  const N = o.out.N;
  const TM = ROWS_PER_INVOCATION.find((t) => M % t === 0 && t * T <= 512) ?? 1;
  const rows = o.scores.M * sizeOf(typeof o.scores.batch === 'number' ? [o.scores.batch] : [...(o.scores.batch ?? [1])]);
  const pw = layoutOf(o.out.out.dtype, o.out.target).perWord;
  // Loop bounds the shader compiler cannot see as constants (no full unrolling, as in emitGemm).
  const opaque = (n: number) => `select(${n}u, 0u, arrayLength(&${p.out}) == 0u)`;
  const rowValue = (v: string, idx: string) => {
    const r = w.round(o.row.dtype, v);
    const e = o.row.epilogue;
    return e ? w.round(e.out.dtype, e.apply(w, r, idx)) : r;
  };
  const outRow = o.out.out.strides?.[0] ?? N;
  // Columns per register block: the sums of TM rows by TN columns are registers, and each
  // step of k loads TM + TN values for TM·TN fma (TN dividing the scores' row, T, and the
  // output's, N, in whole words).
  const T1 = [4, 2, 1].find((t) => T % t === 0)!;
  const T2 = [4, 2, 1].find((t) => N % t === 0 && t % pw === 0) ?? pw;
  const I = Array.from({ length: TM }, (_, i) => i);
  const cols = (tn: number) => Array.from({ length: tn }, (_, j) => j);
  const m = (i: number) => (i ? `(qm + ${i}u)` : 'qm');
  const col = (j: number) => (j ? `(j0 + ${j}u)` : 'j0');
  const stored = (i: number, j: number) => p.value(`acc${i}_${j}`, m(i), col(j), `offOut + ${m(i)} * ${outRow}u + ${col(j)}`);
  const stores = (i: number) =>
    Array.from({ length: T2 / pw }, (_, q) =>
      pw === 1
        ? w.store(p.out, `offOut + ${m(i)} * ${outRow}u + ${col(q)}`, stored(i, q))
        : w.storeWord(p.out, `(offOut + ${m(i)} * ${outRow}u + ${col(q * pw)}) / ${pw}u`, Array.from({ length: pw }, (_, e) => stored(i, q * pw + e))),
    );
  // One register block: TM×tn sums over k < kEnd of a(i, k)·b(k, j).
  const block = (tn: number, kEnd: string, a: (i: number) => string, b: (j: number) => string) => [
    `    ${I.map((i) => cols(tn).map((j) => `var acc${i}_${j} = 0.0;`).join(' ')).join(' ')}`,
    `    for (var k = 0u; k < ${kEnd}; k++) {`,
    `      ${I.map((i) => `let a${i} = ${a(i)};`).join(' ')}`,
    `      ${cols(tn).map((j) => `let b${j} = ${b(j)};`).join(' ')}`,
    ...I.map((i) => `      ${cols(tn).map((j) => `acc${i}_${j} = fma(a${i}, b${j}, acc${i}_${j});`).join(' ')}`),
    `    }`,
  ];
  const rowOp = o.row.body(w, T, (c) => `sc[i * ${T}u + ${c}]`);
  const body = [
    `if (flat >= ${rows / TM}u) { return; }`,
    `let qb = (flat * ${TM}u) / ${M}u;`,
    `let qm = (flat * ${TM}u) % ${M}u;`,
    `let nD = ${opaque(D)};`,
    `let nT = ${opaque(T)};`,
    `var sc: array<f32, ${TM * T}>;`,
    `var pr: array<f32, ${TM * T}>;`,
    `{`,
    ...s.lets('qb').map((l) => `  ${l}`),
    `  for (var j0 = 0u; j0 < nT; j0 += ${T1}u) {`,
    ...block(T1, 'nD', (i) => s.a(m(i), 'k'), (j) => s.b('k', col(j))),
    ...I.flatMap((i) => cols(T1).map((j) => `    sc[${i * T}u + ${col(j)}] = ${w.round(o.scores.out.dtype, s.value(`acc${i}_${j}`, m(i), col(j), `offOut + ${m(i)} * ${T}u + ${col(j)}`))};`)),
    `  }`,
    `}`,
    // The row op, one row at a time (one copy of its code, not TM).
    `for (var i = 0u; i < ${TM}u; i++) {`,
    `  let base = (flat * ${TM}u + i) * ${T}u;`,
    ...rowOp.prologue.split('\n').map((l) => `  ${l}`),
    `  for (var c = 0u; c < nT; c++) { pr[i * ${T}u + c] = ${p.mapA(rowValue(rowOp.element('c'), 'base + c'))}; }`,
    `}`,
    `{`,
    ...p.lets('qb').map((l) => `  ${l}`),
    `  for (var j0 = 0u; j0 < ${opaque(N)}; j0 += ${T2}u) {`,
    ...block(T2, 'nT', (i) => `pr[${i * T}u + k]`, (j) => p.b('k', col(j))),
    ...I.flatMap((i) => stores(i).map((l) => `    ${l}`)),
    `  }`,
    `}`,
  ];
  return w.finish({ body: body.join('\n'), workgroupSize: [WORKGROUP, 1, 1], dispatch: dispatch1d(Math.ceil(rows / TM / WORKGROUP)) });
}
