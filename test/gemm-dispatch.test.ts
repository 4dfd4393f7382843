// GEMMs whose grid of tiles exceeds WebGPU's 65,535 workgroups per dispatch dimension: the
// blocked variant runs its tiles from a linear workgroup index spread over x and y. Checked
// on a real WebGPU device (lavapipe) against an f64 CPU product, with the limit lowered (many
// shapes, cheap) and once at the real limit.
import { beforeAll, describe, expect, it } from 'vitest';
import { emitGemm, type GemmOptions } from '../src/codegen/kernels/gemm.js';
import { MAX_WORKGROUPS_PER_DIM } from '../src/codegen/kernel.js';
import { getGpu, runCompute, type Gpu } from '../src/runtime/device.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

/** Small integers: every product and partial sum is exact in f32, so the result must be exact. */
function data(n: number, seed: number): Float32Array {
  const v = new Float32Array(n);
  let s = seed;
  for (let i = 0; i < n; i++) {
    s = (s * 1103515245 + 12345) % 2 ** 31;
    v[i] = (s % 7) - 3;
  }
  return v;
}

async function run(o: { M: number; N: number; K: number; batch?: number; transB?: boolean; maxWorkgroups?: number; subgroup?: boolean }) {
  const { M, N, K } = o;
  const nb = o.batch ?? 1;
  const a = data(nb * M * K, 1);
  const b = data(nb * K * N, 2);
  const opts: GemmOptions = {
    name: 'gemm_dispatch',
    M,
    N,
    K,
    batch: o.batch,
    transB: o.transB,
    a: { buffer: 'A', dtype: 'f32' },
    b: { buffer: 'B', dtype: 'f32' },
    out: { buffer: 'Y', dtype: 'f32' },
    target: { f16: false, ...(o.subgroup ? { subgroupSize: 16 } : {}) },
    maxWorkgroups: o.maxWorkgroups,
  };
  const kernel = emitGemm(opts);
  const limit = o.maxWorkgroups ?? MAX_WORKGROUPS_PER_DIM;
  expect(Math.max(...kernel.dispatch)).toBeLessThanOrEqual(limit);
  const host: Record<string, Float32Array> = { A: a, B: b };
  const buffers = kernel.bindings.map((bnd) =>
    bnd.access === 'read_write'
      ? { bytes: nb * M * N * 4, access: 'read_write' as const }
      : { data: new Uint8Array(host[bnd.name].buffer.slice(0)), access: 'read' as const },
  );
  const [out] = await runCompute(gpu, { wgsl: kernel.wgsl, workgroups: kernel.dispatch, buffers });
  const got = new Float32Array(out);
  let bad = 0;
  for (let z = 0; z < nb; z++)
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        for (let k = 0; k < K; k++) s += a[z * M * K + m * K + k] * b[z * K * N + (o.transB ? n * K + k : k * N + n)];
        if (got[z * M * N + m * N + n] !== s) bad++;
      }
  return { bad, kernel };
}

describe('gemm dispatch over the per-dimension workgroup limit', () => {
  it.each([
    { M: 100, N: 8, K: 5, maxWorkgroups: 2 }, // row tiles over the limit
    { M: 8, N: 300, K: 3, maxWorkgroups: 3 }, // column tiles over the limit
    { M: 33, N: 40, K: 9, batch: 7, maxWorkgroups: 4 }, // batch over the limit
    { M: 65, N: 70, K: 4, batch: 5, transB: true, maxWorkgroups: 4 }, // every dimension, partial tiles
  ])('%j matches the exact product', async (c) => {
    const { bad, kernel } = await run(c);
    expect(kernel.wgsl).toContain('let wg = ');
    expect(bad).toBe(0);
  });

  it('within the limit the kernel is unchanged (no folding)', async () => {
    const { bad, kernel } = await run({ M: 20, N: 20, K: 3 });
    expect(kernel.wgsl).not.toContain('let wg = ');
    expect(bad).toBe(0);
  });

  it('the subgroup variant gives way to the folded blocked one', () => {
    const k = emitGemm({
      name: 'g',
      M: 64,
      N: 64,
      K: 4,
      a: { buffer: 'A', dtype: 'f32' },
      b: { buffer: 'B', dtype: 'f32' },
      out: { buffer: 'Y', dtype: 'f32' },
      target: { f16: false, subgroupSize: 16 },
      maxWorkgroups: 3,
    });
    expect(k.wgsl).not.toContain('subgroupBroadcast');
    expect(Math.max(...k.dispatch)).toBeLessThanOrEqual(3);
  });

  it('at the real limit: 65,537 row tiles', async () => {
    const M = (MAX_WORKGROUPS_PER_DIM + 2) * 32; // 32 rows per blocked tile
    const { bad, kernel } = await run({ M, N: 1, K: 1 });
    expect(kernel.dispatch[1]).toBeGreaterThan(1);
    expect(bad).toBe(0);
  }, 60_000);
});
