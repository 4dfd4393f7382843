// The GEMM kernel on a real WebGPU device (lavapipe here) against an f64 CPU reference.
import { beforeAll, describe, expect, it } from 'vitest';
import { emitGemm, chooseVariant, type GemmOptions, type GemmVariant } from '../src/codegen/kernels/gemm.js';
import { bufferBytes, layoutOf } from '../src/codegen/storage.js';
import { encode, floatInfo, round, roundArray, type FloatDType } from '../src/ir/dtypes.js';
import { getGpu, runCompute, type Gpu } from '../src/runtime/device.js';
import { packValues, unpackValues } from '../src/runtime/layout-io.js';

let gpu: Gpu;
beforeAll(async () => {
  gpu = await getGpu();
});

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

type Fill = 'signed' | 'positive' | 'grid';

/**
 * Test data, already rounded to `dtype`. 'grid': multiples of 1/8 in [-1, 1], so every
 * product is a multiple of 1/64 and every f32 partial sum is exact (no summation-order
 * effects at all). 'positive': uniform in [0.25, 1], no cancellation, so f32 accumulation
 * stays within a few f32 ulps of the exact sum.
 */
function makeData(n: number, dtype: FloatDType, fill: Fill, seed: number): Float32Array {
  const r = rng(seed);
  const v = new Float32Array(n);
  for (let i = 0; i < n; i++) {
    if (fill === 'grid') v[i] = Math.round(r() * 16 - 8) / 8;
    else if (fill === 'positive') v[i] = 0.25 + 0.75 * r();
    else v[i] = r() * 2 - 1;
  }
  return roundArray(dtype, v);
}

interface Case extends Omit<GemmOptions, 'name' | 'a' | 'b' | 'c' | 'out' | 'target' | 'scales'> {
  a?: Partial<GemmOptions['a']>;
  b?: Partial<GemmOptions['b']>;
  c?: Partial<NonNullable<GemmOptions['c']>> & { rows: number; cols: number };
  dtypes?: { a?: FloatDType; b?: FloatDType; c?: FloatDType; out?: FloatDType };
  fill?: Fill;
  f16Storage?: boolean;
  /** Run-time factors of the product (GemmOptions.scales), stored as f32. */
  scales?: number[];
}

interface Ran {
  got: Float32Array;
  exact: Float64Array;
  /** Σ|alpha·a·b| + |beta·c| per output: the scale of f32 accumulation error. */
  magnitude: Float64Array;
  variant: GemmVariant;
  wgsl: string;
}

function batchDims(c: Case): number[] {
  return typeof c.batch === 'number' ? [c.batch] : [...(c.batch ?? [1])];
}

/** Element offset of batch `bz` for an operand (same meaning as GemmOperand.batchStride). */
function refOffset(dims: number[], stride: number | readonly number[] | undefined, contiguous: number, bz: number): number {
  if (stride === undefined) return bz * contiguous;
  if (typeof stride === 'number') return bz * stride;
  let off = 0;
  let rest = bz;
  for (let d = dims.length - 1; d >= 0; d--) {
    off += (rest % dims[d]) * stride[d];
    rest = Math.floor(rest / dims[d]);
  }
  return off;
}

/** Number of elements an operand's buffer needs: its largest offset plus one matrix. */
function operandSize(dims: number[], stride: number | readonly number[] | undefined, contiguous: number, matrix: number): number {
  let maxOff = 0;
  const nb = dims.reduce((x, y) => x * y, 1);
  for (let bz = 0; bz < nb; bz++) maxOff = Math.max(maxOff, refOffset(dims, stride, contiguous, bz));
  return maxOff + matrix;
}

async function runCase(c: Case, variant?: GemmVariant, seed = 1): Promise<Ran> {
  const { M, N, K } = c;
  const dt = { a: 'f32', b: 'f32', c: 'f32', out: 'f32', ...c.dtypes } as Required<NonNullable<Case['dtypes']>>;
  const fill = c.fill ?? 'signed';
  const dims = batchDims(c);
  const nb = dims.reduce((x, y) => x * y, 1);
  // The kernel forms alpha · s0 · s1 ... in f32, left to right.
  const alpha = (c.scales ?? []).reduce((x, v) => Math.fround(x * v), Math.fround(c.alpha ?? 1));
  const beta = c.beta ?? 1;
  const target = { f16: c.f16Storage ?? gpu.hasF16, ...(gpu.subgroupSize ? { subgroupSize: gpu.subgroupSize } : {}) };

  const aData = makeData(operandSize(dims, c.a?.batchStride, M * K, M * K), dt.a, fill, seed * 7 + 1);
  const bData = makeData(operandSize(dims, c.b?.batchStride, K * N, K * N), dt.b, fill, seed * 7 + 2);
  const cc = c.c;
  const cMatrix = cc ? (cc.rows - 1) * cc.rowStride! + (cc.cols - 1) * cc.colStride! + 1 : 0;
  const cData = cc ? makeData(operandSize(dims, cc.batchStride ?? 0, 0, cMatrix), dt.c, fill, seed * 7 + 3) : undefined;

  const opts: GemmOptions = {
    name: 'gemm_test',
    M,
    N,
    K,
    batch: c.batch,
    transA: c.transA,
    transB: c.transB,
    alpha: c.alpha,
    beta: c.beta,
    a: { buffer: 'A', dtype: dt.a, ...c.a },
    b: { buffer: 'B', dtype: dt.b, ...c.b },
    c: cc ? { buffer: 'C', dtype: dt.c, rowStride: cc.rowStride!, colStride: cc.colStride!, batchStride: cc.batchStride } : undefined,
    scales: c.scales?.map((_, i) => ({ buffer: `S${i}`, dtype: 'f32' as const })),
    out: { buffer: 'Y', dtype: dt.out },
    target,
    variant,
  };
  const kernel = emitGemm(opts);

  const host: Record<string, { dtype: FloatDType; values: Float32Array }> = {
    A: { dtype: dt.a, values: aData },
    B: { dtype: dt.b, values: bData },
    ...(cData ? { C: { dtype: dt.c, values: cData } } : {}),
    ...Object.fromEntries((c.scales ?? []).map((v, i) => [`S${i}`, { dtype: 'f32' as const, values: new Float32Array([v]) }])),
  };
  const outCount = nb * M * N;
  const outLayout = layoutOf(dt.out, target);
  const buffers = kernel.bindings.map((bnd) => {
    if (bnd.access === 'read_write') return { bytes: bufferBytes(outLayout, outCount), access: 'read_write' as const };
    const h = host[bnd.name];
    const layout = layoutOf(h.dtype, target);
    return { data: packValues(h.dtype, layout, h.values, bufferBytes(layout, h.values.length)), access: 'read' as const };
  });
  const [outBytes] = await runCompute(gpu, { wgsl: kernel.wgsl, workgroups: kernel.dispatch, buffers });
  const got = unpackValues(dt.out, outLayout, new Uint8Array(outBytes), outCount) as Float32Array;

  const exact = new Float64Array(outCount);
  const magnitude = new Float64Array(outCount);
  for (let bz = 0; bz < nb; bz++) {
    const oa = refOffset(dims, c.a?.batchStride, M * K, bz);
    const ob = refOffset(dims, c.b?.batchStride, K * N, bz);
    const oc = cc ? refOffset(dims, cc.batchStride ?? 0, 0, bz) : 0;
    for (let m = 0; m < M; m++)
      for (let n = 0; n < N; n++) {
        let s = 0;
        let mag = 0;
        for (let k = 0; k < K; k++) {
          const av = aData[oa + (c.transA ? k * M + m : m * K + k)];
          const bv = bData[ob + (c.transB ? n * K + k : k * N + n)];
          s += av * bv;
          mag += Math.abs(av * bv);
        }
        let v = alpha * s;
        mag = Math.abs(alpha) * mag;
        if (cData && cc && beta !== 0) {
          const cv = cData[oc + m * cc.rowStride! + n * cc.colStride!];
          v += beta * cv;
          mag += Math.abs(beta * cv);
        }
        exact[bz * M * N + m * N + n] = v;
        magnitude[bz * M * N + m * N + n] = mag;
      }
  }
  return { got, exact, magnitude, variant: variant ?? chooseVariant(opts, outLayout.perWord), wgsl: kernel.wgsl };
}

/** f32 outputs: within 1e-5 of the sum of |products| of the exact result. */
function expectF32Close(r: Ran, label: string): void {
  let worst = 0;
  let at = -1;
  for (let i = 0; i < r.got.length; i++) {
    const err = Math.abs(r.got[i] - r.exact[i]) / Math.max(r.magnitude[i], 1e-30);
    if (!(err <= worst)) {
      worst = err;
      at = i;
    }
  }
  expect(worst, `${label} (${r.variant}): worst relative error at ${at}: got ${r.got[at]}, want ${r.exact[at]}`).toBeLessThanOrEqual(1e-5);
}

/** Position of a value on the format's number line (adjacent values differ by 1). */
function ordinal(d: FloatDType, x: number): number {
  const bits = encode(d, x);
  const sign = 2 ** (floatInfo(d).bits - 1);
  return bits >= sign ? -(bits - sign) : bits;
}

/**
 * Low-precision outputs: equal to the exact result rounded to f32 and then to the format,
 * give or take `ulps` steps of the format (summation order in f32).
 */
function expectRounded(r: Ran, d: FloatDType, ulps: number, label: string): void {
  for (let i = 0; i < r.got.length; i++) {
    const want = round(d, Math.fround(r.exact[i]));
    if (r.got[i] === want) continue;
    const dist = Math.abs(ordinal(d, r.got[i]) - ordinal(d, want));
    expect(dist, `${label} (${r.variant}) element ${i}: got ${r.got[i]}, want ${want} (exact ${r.exact[i]})`).toBeLessThanOrEqual(ulps);
  }
}

function variants(): GemmVariant[] {
  return gpu.subgroupSize ? ['subgroup', 'blocked', 'naive'] : ['blocked', 'naive'];
}

describe('gemm kernel, f32', () => {
  it('finds a device', () => {
    expect(gpu.adapterName.length).toBeGreaterThan(0);
  });

  it('matches the f64 reference for odd and tiny sizes, every variant', async () => {
    // Every size of {1, 3, 10, 17, 64, 129} in every position, K both below and past
    // whole blocks of the subgroup (8) and the unrolled loop (4).
    const shapes: [number, number, number][] = [
      [1, 1, 1], [1, 3, 10], [3, 10, 17], [10, 17, 64], [17, 64, 129], [64, 129, 1], [129, 1, 3], [64, 64, 64],
    ];
    for (const variant of variants())
      for (const [M, N, K] of shapes) expectF32Close(await runCase({ M, N, K }, variant), `M=${M} N=${N} K=${K}`);
  });

  it('handles every transA / transB combination', async () => {
    for (const variant of variants())
      for (const transA of [false, true])
        for (const transB of [false, true]) {
          const r = await runCase({ M: 19, N: 13, K: 21, transA, transB }, variant, 3);
          expectF32Close(r, `transA=${transA} transB=${transB}`);
        }
  });

  it('reads f32 operands in aligned runs as vec2<f32> pairs (B by columns or along k, A stored [K, M]) and matches the reference', async () => {
    for (const [transA, transB] of [[false, false], [false, true], [true, false], [true, true]])
      for (const batch of [1, 2]) {
        const r = await runCase({ M: 12, N: 16, K: 24, batch, transA, transB }, undefined, 11);
        if (gpu.subgroupSize) expect(r.wgsl, `transA=${transA} transB=${transB}`).toContain('array<vec2<f32>>');
        expectF32Close(r, `pairs transA=${transA} transB=${transB} batch ${batch}`);
      }
  });

  it('applies alpha, beta and a broadcast C', async () => {
    const M = 11;
    const N = 18;
    const cs = [
      { label: 'bias [N]', rows: 1, cols: N, rowStride: 0, colStride: 1 },
      { label: 'column [M,1]', rows: M, cols: 1, rowStride: 1, colStride: 0 },
      { label: 'full [M,N]', rows: M, cols: N, rowStride: N, colStride: 1 },
      { label: 'scalar', rows: 1, cols: 1, rowStride: 0, colStride: 0 },
    ];
    for (const variant of variants())
      for (const { label, ...c } of cs) expectF32Close(await runCase({ M, N, K: 9, alpha: 0.5, beta: -2, c }, variant, 5), label);
    expectF32Close(await runCase({ M, N, K: 9, c: cs[0] }, undefined, 6), 'bias, alpha = beta = 1');
  });

  it('does not bind C when beta is 0', () => {
    const M = 11;
    const N = 18;
    const k = emitGemm({
      name: 'g',
      M,
      N,
      K: 4,
      beta: 0,
      a: { buffer: 'A', dtype: 'f32' },
      b: { buffer: 'B', dtype: 'f32' },
      c: { buffer: 'C', dtype: 'f32', rowStride: 0, colStride: 1 },
      out: { buffer: 'Y', dtype: 'f32' },
      target: { f16: true },
    });
    expect(k.bindings.map((b) => b.name)).toEqual(['A', 'B', 'Y']);
  });

  it('runs batches, with stride-0 broadcast and per-dimension strides', async () => {
    const M = 9;
    const N = 12;
    const K = 7;
    for (const variant of variants()) {
      expectF32Close(await runCase({ M, N, K, batch: 3 }, variant, 8), 'batch 3, contiguous');
      expectF32Close(await runCase({ M, N, K, batch: 3, a: { batchStride: 0 } }, variant, 9), 'batch 3, A broadcast');
      expectF32Close(await runCase({ M, N, K, batch: 4, b: { batchStride: 0 }, transB: true }, variant, 10), 'batch 4, B broadcast');
      // A [2,1,M,K] x B [1,3,K,N] -> [2,3,M,N], with a C per batch row.
      const r = await runCase(
        {
          M,
          N,
          K,
          batch: [2, 3],
          a: { batchStride: [M * K, 0] },
          b: { batchStride: [0, K * N] },
          c: { rows: 1, cols: N, rowStride: 0, colStride: 1, batchStride: [N, 0] },
        },
        variant,
        11,
      );
      expectF32Close(r, 'batch [2,3] with broadcast');
    }
  });

  it('emits no shared memory and no barriers', () => {
    for (const variant of ['subgroup', 'blocked', 'naive'] as const) {
      const { wgsl } = emitGemm({
        name: 'g',
        M: 30,
        N: 40,
        K: 50,
        a: { buffer: 'A', dtype: 'bf16' },
        b: { buffer: 'B', dtype: 'bf16' },
        out: { buffer: 'Y', dtype: 'bf16' },
        target: { f16: true, subgroupSize: 8 },
        variant,
      });
      expect(wgsl).not.toMatch(/workgroupBarrier|var<workgroup>/);
    }
  });
});

describe('gemm kernel, low-precision formats', () => {
  const combos: { label: string; dtypes: Case['dtypes']; f16Storage?: boolean }[] = [
    { label: 'bf16 in, bf16 out', dtypes: { a: 'bf16', b: 'bf16', out: 'bf16' } },
    { label: 'f16 in, f16 out (native)', dtypes: { a: 'f16', b: 'f16', out: 'f16' } },
    { label: 'f16 in, f16 out (packed)', dtypes: { a: 'f16', b: 'f16', out: 'f16' }, f16Storage: false },
    { label: 'bf16 in, f32 out', dtypes: { a: 'bf16', b: 'bf16', out: 'f32' } },
    { label: 'f16 in with a bf16 bias, bf16 out', dtypes: { a: 'f16', b: 'f16', c: 'bf16', out: 'bf16' } },
    { label: 'e4m3 x e5m2, bf16 out', dtypes: { a: 'f8e4m3fn', b: 'f8e5m2', out: 'bf16' } },
    { label: 'e4m3 in, e4m3 out', dtypes: { a: 'f8e4m3fn', b: 'f8e4m3fn', out: 'f8e4m3fn' } },
  ];
  // The fast variant on two shapes, the others on one: the format handling (loads, rounding,
  // packing) is shared, the variants differ in tiling and in how they write words.
  const runs = (): [GemmVariant | undefined, number, number, number][] => [
    [undefined, 17, 8, 33],
    [undefined, 5, 12, 129],
    ['blocked', 10, 16, 7],
    ['naive', 3, 8, 10],
  ];

  for (const { label, dtypes, f16Storage } of combos) {
    it(label, async () => {
      for (const [variant, M, N, K] of runs()) {
        const c = dtypes!.c ? { rows: 1, cols: N, rowStride: 0, colStride: 1 } : undefined;
        const where = `${label} M=${M} N=${N} K=${K}`;
        const out = dtypes!.out!;
        // One kernel, two data sets. Grid data: every f32 partial sum is exact, so the
        // result is exactly the reference rounded.
        const g = await runCase({ M, N, K, dtypes, f16Storage, fill: 'grid', c, alpha: 0.75 }, variant, M + N + K);
        if (out === 'f32') expectF32Close(g, where);
        else expectRounded(g, out, 0, `${where} grid`);
        // Random positive data: rounding of the f32 sum may land one step off.
        const p = await runCase({ M, N, K, dtypes, f16Storage, fill: 'positive', c, alpha: 0.75 }, variant, M * N + K);
        if (out === 'f32') expectF32Close(p, where);
        else expectRounded(p, out, 1, `${where} random`);
      }
    });
  }

  it('fp8 B decoded a word at a time (transB with whole k-blocks, batched) matches the reference', async () => {
    for (const dtypes of [{ a: 'f8e4m3fn', b: 'f8e4m3fn', out: 'bf16' }, { a: 'f8e5m2', b: 'f8e5m2', out: 'f8e4m3fn' }] as const)
      for (const batch of [1, 3]) {
        const where = `${dtypes.b} transB batch ${batch}`;
        const g = await runCase({ M: 11, N: 12, K: 64, batch, dtypes, fill: 'grid', transB: true }, undefined, 5);
        expectRounded(g, dtypes.out, 0, `${where} grid`);
        const p = await runCase({ M: 11, N: 12, K: 64, batch, dtypes, fill: 'positive', transB: true }, undefined, 6);
        expectRounded(p, dtypes.out, 1, `${where} random`);
      }
  });

  it('16-bit B decoded a pair per load (bf16, f16 native and packed; k-runs of transB and column pairs, batched) matches the reference', async () => {
    for (const d of ['bf16', 'f16'] as const)
      for (const f16Storage of d === 'f16' ? [true, false] : [undefined])
        for (const transB of [false, true])
          for (const batch of [1, 3]) {
            const dtypes = { a: d, b: d, out: d };
            const where = `${d}${f16Storage === false ? ' packed' : ''} transB=${transB} batch ${batch}`;
            const g = await runCase({ M: 11, N: 12, K: 64, batch, dtypes, f16Storage, fill: 'grid', transB }, undefined, 5);
            // The fast variant reads B through the pair decoder (declared as words where f16 is native).
            if (gpu.subgroupSize) expect(g.wgsl, where).toContain(`unpack2_${d}(`);
            expectRounded(g, d, 0, `${where} grid`);
            const p = await runCase({ M: 11, N: 12, K: 64, batch, dtypes, f16Storage, fill: 'positive', transB }, undefined, 6);
            expectRounded(p, d, 1, `${where} random`);
          }
  });

  it('A stored [K, M] (transA) read four rows per run (bf16, f16 native and packed, e5m2 x e4m3; a last tile past M, batched) matches the reference', async () => {
    const cases = [
      { dtypes: { a: 'bf16', b: 'bf16', out: 'bf16' } },
      { dtypes: { a: 'f16', b: 'f16', out: 'f16' } },
      { dtypes: { a: 'f16', b: 'f16', out: 'f16' }, f16Storage: false },
      { dtypes: { a: 'f8e5m2', b: 'f8e4m3fn', out: 'bf16' } },
    ] as const;
    for (const { dtypes, ...rest } of cases)
      for (const batch of [1, 2]) {
        const f16Storage = 'f16Storage' in rest ? rest.f16Storage : undefined;
        const out = dtypes.out;
        // M = 12: a second tile of 8 rows of which 4 lie past M.
        const where = `${dtypes.a}${f16Storage === false ? ' packed' : ''} transA batch ${batch}`;
        const g = await runCase({ M: 12, N: 16, K: 21, batch, dtypes, f16Storage, fill: 'grid', transA: true }, undefined, 7);
        if (gpu.subgroupSize) expect(g.wgsl, where).toMatch(/let aq1 = /);
        expectRounded(g, out, 0, `${where} grid`);
        const p = await runCase({ M: 12, N: 16, K: 21, batch, dtypes, f16Storage, fill: 'positive', transA: true }, undefined, 8);
        expectRounded(p, out, 1, `${where} random`);
      }
  });

  it('A read a row per lane (its k steps adjacent, K a multiple of the subgroup; f32, bf16, f16 native and packed, e4m3, e5m2 x e4m3; rows past M, batched) matches the reference', async () => {
    const cases = [
      { dtypes: { a: 'f32', b: 'f32', out: 'f32' } },
      { dtypes: { a: 'bf16', b: 'bf16', out: 'bf16' } },
      { dtypes: { a: 'f16', b: 'f16', out: 'f16' } },
      { dtypes: { a: 'f16', b: 'f16', out: 'f16' }, f16Storage: false },
      { dtypes: { a: 'f8e4m3fn', b: 'f8e4m3fn', out: 'bf16' } },
      { dtypes: { a: 'f8e5m2', b: 'f8e4m3fn', out: 'bf16' } },
    ] as const;
    for (const { dtypes, ...rest } of cases)
      for (const [batch, transB] of [[1, false], [2, true]] as const) {
        const f16Storage = 'f16Storage' in rest ? rest.f16Storage : undefined;
        const where = `${dtypes.a}${f16Storage === false ? ' packed' : ''} batch ${batch} transB=${transB}`;
        // M = 13: the second tile of 8 rows has 5 past M; K = 32: four blocks of 8.
        const g = await runCase({ M: 13, N: 16, K: 32, batch, transB, dtypes, f16Storage, fill: 'grid' }, undefined, 9);
        if (gpu.subgroupSize === 8) expect(g.wgsl, where).toMatch(/subgroupBroadcast\(ar7, 0u\)/);
        if (dtypes.out === 'f32') expectF32Close(g, where);
        else expectRounded(g, dtypes.out, 0, `${where} grid`);
        const p = await runCase({ M: 13, N: 16, K: 32, batch, transB, dtypes, f16Storage, fill: 'positive' }, undefined, 10);
        if (dtypes.out === 'f32') expectF32Close(p, where);
        else expectRounded(p, dtypes.out, 1, `${where} random`);
      }
  });

  it('multiplies run-time scales (fp8 inverse scales) into alpha', async () => {
    const dtypes = { a: 'f8e4m3fn', b: 'f8e5m2', c: 'bf16', out: 'bf16' } as const;
    for (const variant of variants()) {
      const c = { rows: 1, cols: 16, rowStride: 0, colStride: 1 };
      const r = await runCase({ M: 9, N: 16, K: 19, dtypes, c, alpha: 0.5, scales: [1 / 64, 3 / 1024], fill: 'grid' }, variant, 13);
      expectRounded(r, 'bf16', 0, `scales (${variant})`);
    }
  });

  it('falls back to whole-word stores for a packed output with odd N', async () => {
    const target = { f16: true, subgroupSize: 8 };
    expect(chooseVariant({ N: 7, target }, 2)).toBe('naive');
    expect(chooseVariant({ N: 8, target }, 2)).toBe('subgroup');
    expect(chooseVariant({ N: 7, target }, 1)).toBe('subgroup');
    expect(chooseVariant({ N: 8, target: { f16: true } }, 2)).toBe('blocked');
    expect(chooseVariant({ N: 6, target }, 4)).toBe('naive');
    const base = { name: 'g', M: 3, N: 7, K: 2, a: { buffer: 'A', dtype: 'bf16' as const }, b: { buffer: 'B', dtype: 'bf16' as const } };
    expect(() => emitGemm({ ...base, out: { buffer: 'Y', dtype: 'bf16' }, target, variant: 'blocked' })).toThrow(/multiple of 2/);
    // Odd N across batches: words straddle rows and batch matrices.
    for (const dtypes of [{ a: 'bf16', b: 'bf16', out: 'bf16' }, { a: 'f8e4m3fn', b: 'f8e4m3fn', out: 'f8e4m3fn' }] as const) {
      const r = await runCase({ M: 3, N: 7, K: 5, batch: 3, dtypes, fill: 'grid' }, undefined, 12);
      expect(r.variant).toBe('naive');
      expectRounded(r, dtypes.out, 0, `odd N ${dtypes.out}`);
    }
  });
});
