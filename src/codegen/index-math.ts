// WGSL index arithmetic for static shapes. All shapes are known at codegen time, so strides
// are baked in as constants and trivial cases collapse to plain expressions.
import { sizeOf, stridesOf, broadcastStrides } from '../ir/tensor.js';

/**
 * Expression for the flat index into an input of shape `from` that is broadcast to `to`,
 * at flat output index `idx` (a u32 expression).
 */
export function broadcastIndex(to: readonly number[], from: readonly number[], idx: string): string {
  const nFrom = sizeOf(from);
  if (nFrom === 1) return '0u';
  if (nFrom === sizeOf(to)) return idx;
  // `from` equals a suffix of `to` (bias over the last dims): a modulo is enough.
  const k = from.length;
  const suffixEq = k <= to.length && from.every((d, i) => d === to[to.length - k + i]);
  if (suffixEq) return `(${idx}) % ${nFrom}u`;
  const outStrides = stridesOf(to);
  const inStrides = broadcastStrides(from, to);
  const terms: string[] = [];
  for (let d = 0; d < to.length; d++) {
    if (inStrides[d] === 0 || to[d] === 1) continue;
    const coord = d === 0 ? `(${idx}) / ${outStrides[d]}u` : `((${idx}) / ${outStrides[d]}u) % ${to[d]}u`;
    terms.push(inStrides[d] === 1 ? `(${coord})` : `(${coord}) * ${inStrides[d]}u`);
  }
  return terms.length ? terms.join(' + ') : '0u';
}

/**
 * Flat index into a tensor of shape `shape` read through a permutation: output coordinate d
 * is input coordinate perm[d] (ONNX Transpose).
 */
export function transposeIndex(inShape: readonly number[], perm: readonly number[], idx: string): string {
  const outShape = perm.map((p) => inShape[p]);
  const outStrides = stridesOf(outShape);
  const inStrides = stridesOf(inShape);
  const terms: string[] = [];
  for (let d = 0; d < outShape.length; d++) {
    if (outShape[d] === 1) continue;
    const coord = d === 0 ? `(${idx}) / ${outStrides[d]}u` : `((${idx}) / ${outStrides[d]}u) % ${outShape[d]}u`;
    const s = inStrides[perm[d]];
    terms.push(s === 1 ? `(${coord})` : `(${coord}) * ${s}u`);
  }
  return terms.length ? terms.join(' + ') : '0u';
}
