// K of an mpc MatMul from its attributes (ops/gemm.ts: permA, then transA) and A's stored
// shape, for FLOP counts; dependency-free, so the profiler need not load the op table.
export function matmulK(attrs: Record<string, unknown>, a: readonly number[]): number {
  const perm = Array.isArray(attrs.permA) ? (attrs.permA as number[]) : a.map((_, i) => i);
  const v = perm.map((p) => a[p]);
  return attrs.transA === 1 ? v[v.length - 2] : v[v.length - 1];
}
