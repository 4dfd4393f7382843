// fp8 per-tensor scaling through the compiled MLP (fp8 policy): a tensor whose magnitude
// jumps x1000, a tensor of zeros, and the finiteness of every scale — delayed and current.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { cpuEngine, gpuEngine, loadProgramDir, type Engine } from '../src/runtime/engine.js';
import { encode, floatInfo, round, toOnnx, type DType, type FloatDType } from '../src/ir/dtypes.js';
import { addNode } from '../src/ir/build.js';
import { emptyGraph, type Graph } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { runOnce } from '../src/runtime/run-once.js';
import { getGpu } from '../src/runtime/device.js';
import { generate } from '../src/codegen/program.js';
import { runGraph } from '../src/interp/interpreter.js';
import { runOnGpu } from './helpers/gpu.js';
import { rng, seedOf, tensorOf } from './helpers/single-node.js';
import type { Fp8Tensor } from '../src/passes/quantize-fp8.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';

const fx = loadFixture('mlp-torch.json');
const x = decodeArray(fx.batch.x).data as Float32Array;
const y = decodeArray(fx.batch.y).data as Int32Array;
const E4M3_MAX = floatInfo('f8e4m3fn').maxFinite;
const HISTORY = 4;

function compileTo(scaling: 'delayed' | 'current') {
  const dir = join(mkdtempSync(join(tmpdir(), 'mpc-fp8-')), 'out');
  const c = compileModel('models/mlp.onnx', { policy: 'fp8', batch: 8, fp8: { scaling, history: HISTORY }, optimizer: { kind: 'adam' } });
  writeCompiled(dir, c);
  // The input image's fp8 tensor (the first GEMM's activation operand).
  const t = (c.train.meta.fp8 as Fp8Tensor[]).find((f) => f.value.startsWith('/0/Flatten_output_0'))!;
  return { p: loadProgramDir(dir), t, all: c.train.meta.fp8 as Fp8Tensor[] };
}

async function stats(e: Engine, t: Fp8Tensor) {
  const m = await e.read([t.stats, t.scale]);
  const s = m.get(t.stats)!.data;
  return { amax: s[0], saturated: s[1], flushed: s[2], used: s[3], scale: m.get(t.scale)!.data[0] };
}

async function allScalesFinite(e: Engine, all: Fp8Tensor[]) {
  const m = await e.read(all.map((t) => t.scale));
  return all.every((t) => Number.isFinite(m.get(t.scale)!.data[0]) && m.get(t.scale)!.data[0] > 0);
}

for (const backend of ['cpu', 'webgpu'] as const) {
  describe(`fp8 scaling on ${backend}`, () => {
    const make = async (p: ReturnType<typeof loadProgramDir>) => (backend === 'cpu' ? cpuEngine(p) : gpuEngine(p));

    it('delayed: a x1000 jump saturates once, is reported, and the scale recovers within the history', async () => {
      const { p, t, all } = compileTo('delayed');
      const e = await make(p);
      for (let i = 0; i < 3; i++) e.trainStep(x, y);
      const calm = await stats(e, t);
      expect(calm.saturated).toBe(0);
      expect(calm.scale).toBeCloseTo(E4M3_MAX / 1, 0); // pixels in [0,1]: amax 1
      const big = x.map((v) => v * 1000);
      e.trainStep(big, y);
      const jump = await stats(e, t);
      expect(jump.amax).toBeCloseTo(1000, 0);
      expect(jump.used).toBe(calm.scale); // delayed: quantized with the old scale...
      expect(jump.saturated).toBeGreaterThan(0.05); // ...so most non-zero pixels saturate, and it is reported
      expect(jump.scale).toBeCloseTo(E4M3_MAX / 1000, 3); // the history's max already has the new amax
      e.trainStep(big, y);
      const after = await stats(e, t);
      expect(after.saturated).toBe(0);
      expect(await allScalesFinite(e, all)).toBe(true);
    });

    it('current: the same jump never saturates', async () => {
      const { p, t, all } = compileTo('current');
      const e = await make(p);
      for (let i = 0; i < 3; i++) e.trainStep(x, y);
      e.trainStep(x.map((v) => v * 1000), y);
      const s = await stats(e, t);
      expect(s.saturated).toBe(0);
      expect(s.used).toBeCloseTo(E4M3_MAX / 1000, 3);
      expect(await allScalesFinite(e, all)).toBe(true);
    });

    it('a tensor of zeros leaves its scale unchanged; no scale is ever inf or NaN', async () => {
      for (const scaling of ['delayed', 'current'] as const) {
        const { p, t, all } = compileTo(scaling);
        const e = await make(p);
        e.trainStep(x, y);
        const before = await stats(e, t);
        e.trainStep(new Float32Array(x.length), y);
        const z = await stats(e, t);
        expect(z.amax).toBe(0);
        expect(z.scale).toBe(before.scale);
        expect(await allScalesFinite(e, all)).toBe(true);
      }
    });
  });
}

describe('fp8 weights and inputs', () => {
  const images = x.slice(0, 8 * 784);
  const step = async () => {
    const { runGraph } = await import('../src/interp/interpreter.js');
    const c = compileModel('models/mlp.onnx', { policy: 'fp8', batch: 8 });
    const env = runGraph(c.train, { input: { dtype: 'f32', shape: [8, 1, 28, 28], data: images }, labels: { dtype: 'i64', shape: [8], data: y.slice(0, 8) } });
    return { c, env, tensor: (value: string) => (c.train.meta.fp8 as Fp8Tensor[]).find((t) => t.value === value)! };
  };
  /** Every element of `t` is `source` rounded once to E4M3 at its scale; rounding through bf16 first would change some. */
  const roundedOnce = async (env: Map<string, { data: ArrayLike<number> }>, t: Fp8Tensor, source: ArrayLike<number>) => {
    const { round } = await import('../src/ir/dtypes.js');
    const got = env.get(t.quantized)!.data;
    const scale = env.get(t.stats)!.data[3];
    let doubly = 0;
    for (let i = 0; i < source.length; i++) {
      const once = round('f8e4m3fn', source[i] * scale);
      expect(got[i]).toBe(once);
      if (round('f8e4m3fn', round('bf16', source[i]) * scale) !== once) doubly++;
    }
    expect(doubly).toBeGreaterThan(0);
  };

  it('weights are quantized from the f32 master in one rounding (no bf16 copy in between)', async () => {
    const { c, env, tensor } = await step();
    const w = tensor('1.weight');
    expect(w).toBeDefined();
    expect(c.train.nodes.find((n) => n.outputs.includes(w.quantized))!.inputs[0]).toBe('1.weight');
    // No bf16 copy of the weight is left in the step.
    expect(c.train.values.has('1.weight.bf16')).toBe(false);
    await roundedOnce(env, w, c.train.values.get('1.weight')!.init!.data);
  });

  it('the images a first layer reads are quantized as fed, in one rounding (no bf16 copy)', async () => {
    const { c, env, tensor } = await step();
    // The Flatten of the input, f32, quantized itself.
    const t = tensor('/0/Flatten_output_0');
    expect(t).toBeDefined();
    expect(c.train.values.get(t.value)!.dtype).toBe('f32');
    expect(c.train.nodes.some((n) => n.op === 'Cast' && n.inputs[0] === t.value)).toBe(false);
    await roundedOnce(env, t, images);
  });
});

describe('fp8 activations in the backward pass', () => {
  // HYBRID recipe: E4M3 for what the forward pass computes, E5M2 for gradients only. The
  // gradients of attention's batched products (dQ = dS·K, dK = dSᵀ·Q, dV = Pᵀ·dO, dP = dO·Vᵀ)
  // read forward activations; they must read the E4M3 copy the forward product read, not a
  // transposed copy quantized again as if it were a gradient.
  it('the GPT block quantizes each forward activation once, as E4M3, and its backward GEMMs read that copy', () => {
    const c = compileModel('models/gpt-block.onnx', { policy: 'fp8', batch: 2 });
    const g = c.train;
    const phase = new Map<string, string | undefined>();
    for (const n of g.nodes) for (const o of n.outputs) phase.set(o, n.phase);
    const tensors = g.meta.fp8 as Fp8Tensor[];
    const quantizedBy = new Map(tensors.map((t) => [t.quantized, t]));
    // Follow a value back through data movement to what computed it.
    const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
    const MOVES = new Set(['Transpose', 'Reshape', 'mpc.View', 'Identity']);
    const root = (v: string): string => {
      const p = producer.get(v);
      return p && MOVES.has(p.op) ? root(p.inputs[0]) : v;
    };
    let forwardReadInBackward = 0;
    for (const t of tensors) {
      const computedIn = phase.get(root(t.value)) === 'backward' ? 'backward' : 'forward';
      expect(`${t.value}: ${t.format}`).toBe(`${t.value}: ${computedIn === 'backward' ? 'f8e5m2' : 'f8e4m3fn'}`);
    }
    for (const n of g.nodes) {
      if (n.phase !== 'backward' || (n.op !== 'MatMul' && n.op !== 'Gemm')) continue;
      for (const v of n.inputs.slice(0, 2)) {
        const t = quantizedBy.get(v.replace(/\.remat(_\d+)?$/, ''));
        expect(t, `${n.name} reads ${v}`).toBeDefined();
        if (t!.format === 'f8e4m3fn') forwardReadInBackward++;
      }
    }
    // Each attention product's two gradients read one forward operand each (4), every weight
    // GEMM's two gradients read the weight and the input (2 each).
    expect(forwardReadInBackward).toBeGreaterThanOrEqual(4);
    // One quantization per forward value and format.
    const keys = tensors.map((t) => `${t.value}|${t.format}`);
    expect(new Set(keys).size).toBe(keys.length);
    const roots = tensors.filter((t) => t.format === 'f8e4m3fn').map((t) => root(t.value));
    expect(new Set(roots).size).toBe(roots.length);
  });
});

describe('fp8 statistics of large tensors, step after step', () => {
  it('on the GPU equal the interpreter every step, a jump and the calm step after it included (their words are cleared when a step starts)', async () => {
    // Batch 128: the images' E4M3 copy is 25088 words, measured by many workgroups adding
    // into the statistics' words with atomics.
    const dir = join(mkdtempSync(join(tmpdir(), 'mpc-fp8-')), 'out');
    const c = compileModel('models/mlp.onnx', { policy: 'fp8', batch: 128, fp8: { scaling: 'delayed', history: HISTORY }, optimizer: { kind: 'adam' } });
    writeCompiled(dir, c);
    expect(c.program.schedules.train.clear?.length, 'statistics cleared by the runtime').toBeGreaterThan(0);
    const all = c.train.meta.fp8 as Fp8Tensor[];
    const images = all.find((f) => f.value.startsWith('/0/Flatten_output_0'))!;
    const p = loadProgramDir(dir);
    const [cpu, gpu] = [cpuEngine(p), await gpuEngine(p)];
    const xs = new Float32Array(128 * 784).map((_, i) => x[i % x.length]);
    const ys = new Int32Array(128).map((_, i) => y[i % y.length]);
    const steps = [xs, xs.map((v) => v * 1000), xs, xs];
    for (const [k, batch] of steps.entries()) {
      cpu.trainStep(batch, ys);
      gpu.trainStep(batch, ys);
      const [a, b] = [await cpu.read(all.map((t) => t.stats)), await gpu.read(all.map((t) => t.stats))];
      for (const t of all) expect([...b.get(t.stats)!.data], `step ${k}: ${t.value}`).toEqual([...a.get(t.stats)!.data]);
      const s = b.get(images.stats)!.data;
      if (k === 1) expect(s[1], 'the jump saturates').toBeGreaterThan(0.05);
      if (k === 2) {
        expect(s[0], 'the calm step after the jump measures its own amax').toBeCloseTo(1, 5);
        expect(s[1], '... and counts no saturation of the step before').toBe(0);
      }
    }
  });
});

describe('the statistics-and-quantize kernel (delayed scaling)', () => {
  // Magnitudes over 1e-7..3e4 at scale 4: flushed, subnormal, normal and saturated in fp8.
  const spread = (r: () => number) => (r() < 0.5 ? -1 : 1) * 10 ** (-7 + 11.5 * r());
  const cases: { what: string; dtype: DType; f16: boolean; count: number; fmt: FloatDType; runs: boolean; special?: number }[] = [
    { what: 'f32, whole words (read as pairs), one workgroup', dtype: 'f32', f16: true, count: 4100, fmt: 'f8e4m3fn', runs: true },
    { what: 'bf16, whole words, many workgroups', dtype: 'bf16', f16: true, count: 70000, fmt: 'f8e4m3fn', runs: true },
    { what: 'f16 native, whole words, many workgroups, an inf', dtype: 'f16', f16: true, count: 70000, fmt: 'f8e5m2', runs: true, special: Infinity },
    { what: 'f16 packed, whole words, a NaN', dtype: 'f16', f16: false, count: 4100, fmt: 'f8e4m3fn', runs: true, special: NaN },
    { what: 'bf16, a partial last word, one workgroup', dtype: 'bf16', f16: true, count: 4099, fmt: 'f8e5m2', runs: false },
    { what: 'f32, a partial last word, many workgroups', dtype: 'f32', f16: true, count: 70001, fmt: 'f8e4m3fn', runs: false },
  ];
  for (const c of cases)
    it(`${c.what}: the same fp8 codes and statistics as the interpreter`, async () => {
      const r = rng(seedOf(c.what));
      const g = emptyGraph('q');
      g.values.set('x', { name: 'x', dtype: c.dtype, shape: [c.count], role: 'input' });
      g.values.set('scale', { name: 'scale', dtype: 'f32', shape: [1], role: 'input' });
      g.inputs.push('x', 'scale');
      const to = toOnnx(c.fmt);
      const [stats] = addNode(g, 'mpc.Fp8Stats', ['x', 'scale'], { name: 'stats', attrs: { to, current: 0, margin: 0 } });
      const [q, inv] = addNode(g, 'mpc.QuantizeFp8', ['x', stats], { name: 'quantize', attrs: { to } });
      g.outputs.push(q, stats, inv);
      const values = Array.from({ length: c.count }, () => round(c.dtype, spread(r)));
      if (c.special !== undefined) values[c.count >> 1] = c.special;
      const feeds = { x: tensorOf(c.dtype, [c.count], values), scale: tensorOf('f32', [1], [4]) };
      const target = { f16: c.f16 };
      // The kernel reads the whole words where the tensor fills them, element by element otherwise.
      const code = generate({ main: g }, target, { keep: { main: [q, stats, inv] } });
      const wgsl = [...code.files.values()].join('\n');
      expect(wgsl.includes('let run = '), 'reads in runs').toBe(c.runs);
      const want = runGraph(g, feeds);
      const got = await runOnGpu(g, feeds, target);
      const codes = (t: { data: ArrayLike<number> }) => Array.from(t.data, (v) => encode(c.fmt, v));
      expect(codes(got.get(q)!)).toEqual(codes(want.get(q)!));
      expect([...got.get(stats)!.data]).toEqual([...want.get(stats)!.data]);
      expect([...got.get(inv)!.data]).toEqual([...want.get(inv)!.data]);
      if (c.special !== undefined) expect(got.get(stats)!.data[0]).toBeNaN();
      else expect(got.get(stats)!.data[1], 'some values saturate').toBeGreaterThan(0);
      expect(got.get(stats)!.data[2], 'some values flush to zero').toBeGreaterThan(0);
    });
});

describe('the quantizer in the store of the kernel producing its input', () => {
  // x is made by a kernel and read by nothing but its statistics and quantizer: that kernel
  // stores the fp8 copy (and adds up the statistics) instead of x, which never reaches memory
  // (but after a GEMM).
  const spread = (r: () => number) => (r() < 0.5 ? -1 : 1) * 10 ** (-7 + 11.5 * r());
  type Make = (g: Graph, r: () => number, feeds: Record<string, Tensor>) => string;
  const input = (g: Graph, feeds: Record<string, Tensor>, name: string, dtype: DType, shape: number[], values: number[]) => {
    g.values.set(name, { name, dtype, shape, role: 'input' });
    g.inputs.push(name);
    feeds[name] = tensorOf(dtype, shape, values.map((v) => round(dtype, v)));
    return name;
  };
  const producers: { what: string; make: Make }[] = [
    { what: 'a cast (one elementwise node)', make: (g, r, f) => addNode(g, 'Cast', [input(g, f, 'a', 'f32', [2, 1030], Array.from({ length: 2060 }, () => spread(r)))], { name: 'cast', attrs: { to: toOnnx('bf16') } })[0] },
    { what: 'a cast of a tensor holding an inf', make: (g, r, f) => addNode(g, 'Cast', [input(g, f, 'a', 'f32', [999], Array.from({ length: 999 }, (_, i) => (i === 500 ? -Infinity : spread(r))))], { name: 'cast', attrs: { to: toOnnx('bf16') } })[0] },
    {
      what: 'an elementwise chain',
      make: (g, r, f) => {
        const [m] = addNode(g, 'Mul', [input(g, f, 'a', 'f32', [4, 777], Array.from({ length: 3108 }, () => spread(r))), input(g, f, 'b', 'f32', [777], Array.from({ length: 777 }, () => 1 + r()))], { name: 'mul' });
        return addNode(g, 'Cast', [m], { name: 'cast', attrs: { to: toOnnx('f16') } })[0];
      },
    },
    {
      what: 'a GEMM',
      make: (g, r, f) => {
        // Rows of falling magnitude: the products reach from saturation down to flushed values.
        const a = input(g, f, 'a', 'bf16', [33, 40], Array.from({ length: 1320 }, (_, i) => (r() - 0.5) * 10 ** (3 - Math.floor(i / 40) / 3)));
        const b = input(g, f, 'b', 'bf16', [40, 64], Array.from({ length: 2560 }, () => (r() - 0.5) * 4));
        return addNode(g, 'MatMul', [a, b], { name: 'matmul' })[0];
      },
    },
    { what: 'a Softmax (a row kernel)', make: (g, r, f) => addNode(g, 'Softmax', [input(g, f, 'a', 'f32', [12, 48], Array.from({ length: 576 }, () => (r() - 0.5) * 60))], { name: 'softmax', attrs: { axis: -1 } })[0] },
  ];
  for (const { what, make } of producers)
    for (const [recipe, fmt] of [['with its statistics (delayed scaling)', 'f8e4m3fn'], ['recomputed from given statistics', 'f8e5m2']] as const)
      it(`${what}, ${recipe}: the same fp8 codes, statistics and inverse scale as its own quantize kernel and the interpreter`, async () => {
        const r = rng(seedOf(what + recipe));
        const g = emptyGraph('q');
        const feeds: Record<string, Tensor> = {};
        const x = make(g, r, feeds);
        const to = toOnnx(fmt);
        let stats: string;
        if (recipe.startsWith('with')) {
          const scale = input(g, feeds, 'scale', 'f32', [1], [fmt === 'f8e4m3fn' ? 64 : 3]);
          stats = addNode(g, 'mpc.Fp8Stats', [x, scale], { name: 'stats', attrs: { to, current: 0, margin: 0 } })[0];
        } else stats = input(g, feeds, 'given', 'f32', [4], [1, 0, 0, 1e4]);
        const [q, inv] = addNode(g, 'mpc.QuantizeFp8', [x, stats], { name: 'quantize', attrs: { to } });
        g.outputs.push(q, inv, ...(recipe.startsWith('with') ? [stats] : []));
        const target = { f16: true };
        const code = generate({ main: g }, target, { keep: { main: g.outputs } });
        const producer = g.nodes[g.nodes.findIndex((n) => n.outputs[0] === x)];
        const own = code.kernels.filter((k) => k.fused?.includes('quantize'));
        // After a GEMM the quantizer keeps a kernel of its own (its fp8-output tile is slower).
        const tail = !/GEMM/.test(what);
        expect(own.some((k) => k.fused!.includes(producer.name)), 'the producer\'s kernel computes the quantizer').toBe(tail);
        expect(code.buffers[code.bufferOf.main[x]].alloc === -1, 'x never reaches memory').toBe(tail);
        const got = await runOnce(g, feeds, g.outputs, 'webgpu', target);
        // Oracles: the unfused program (its own quantize kernel) on the same device, and the
        // interpreter where the producer is exact (Softmax's exp is not, in the last f32 bit).
        const oracles = [await runOnce(g, feeds, g.outputs, 'webgpu', target, { fuse: false }), ...(/Softmax/.test(what) ? [] : [runGraph(g, feeds)])];
        const codes = (t: { data: ArrayLike<number> }) => Array.from(t.data, (v) => encode(fmt, v));
        for (const want of oracles) {
          expect(codes(got.get(q)!)).toEqual(codes(want.get(q)!));
          expect([...got.get(inv)!.data]).toEqual([...want.get(inv)!.data]);
          if (recipe.startsWith('with')) expect([...got.get(stats)!.data]).toEqual([...want.get(stats)!.data]);
        }
        if (recipe.startsWith('with')) {
          // The data reaches both ends of the format (Softmax's flush only).
          const s = got.get(stats)!.data;
          if (/inf/.test(what)) expect(s[0], 'amax of a tensor holding an inf').toBeNaN();
          expect(s[2], 'some values flush to zero').toBeGreaterThan(0);
          if (!/Softmax/.test(what)) expect(s[1], 'some values saturate').toBeGreaterThan(0);
        }
      });
});

describe('the quantizer in the loads of the GEMMs that read its copy', () => {
  // A quantizer with given statistics (the backward pass's copy of a step input or a weight),
  // whose fp8 copy and inverse scale only GEMMs read: each GEMM quantizes the elements it
  // loads and computes the inverse scale; the copy is never stored.
  const spread = (r: () => number) => (r() < 0.5 ? -1 : 1) * 10 ** (-6 + 9 * r());
  const cases = [
    { what: 'both operands, B stored [K, N]', M: 24, K: 40, N: 64, transA: 0, transB: 0, special: false },
    { what: 'both operands, A stored [K, M], B stored [N, K], an inf and a NaN among the values', M: 32, K: 48, N: 40, transA: 1, transB: 1, special: true },
  ];
  for (const c of cases)
    it(`${c.what}: the same product as the unfused program and the interpreter`, async () => {
      const r = rng(seedOf(c.what));
      const g = emptyGraph('qp');
      const feeds: Record<string, Tensor> = {};
      const input = (name: string, dtype: DType, shape: number[], values: number[]) => {
        g.values.set(name, { name, dtype, shape, role: 'input' });
        g.inputs.push(name);
        feeds[name] = tensorOf(dtype, shape, values.map((v) => round(dtype, v)));
        return name;
      };
      const aShape = c.transA ? [c.K, c.M] : [c.M, c.K];
      const bShape = c.transB ? [c.N, c.K] : [c.K, c.N];
      const av = Array.from({ length: c.M * c.K }, () => spread(r));
      if (c.special) [av[5], av[77]] = [Infinity, NaN];
      const a = input('a', 'f32', aShape, av);
      const b = input('b', 'f32', bShape, Array.from({ length: c.K * c.N }, () => spread(r)));
      // Scales that saturate the largest values and flush the smallest.
      const sa = input('stats_a', 'f32', [4], [1, 0, 0, 0.5]);
      const sb = input('stats_b', 'f32', [4], [1, 0, 0, 3]);
      const [qa, ia] = addNode(g, 'mpc.QuantizeFp8', [a, sa], { name: 'quantize_a', attrs: { to: toOnnx('f8e4m3fn') } });
      const [qb, ib] = addNode(g, 'mpc.QuantizeFp8', [b, sb], { name: 'quantize_b', attrs: { to: toOnnx('f8e5m2') } });
      const [y] = addNode(g, 'Gemm', [qa, qb, '', ia, ib], { name: 'gemm', attrs: { transA: c.transA, transB: c.transB, to: toOnnx('bf16') } });
      g.outputs.push(y);
      const ref = runGraph(g, feeds).get(y)!;
      if (c.special) expect(Array.from(ref.data).some(Number.isNaN), 'a NaN operand reaches the product').toBe(true);
      // The blocked GEMM, and the adapter's subgroup GEMM (B read in runs of two or four).
      const subgroupSize = (await getGpu({ f16: true })).subgroupSize;
      expect(subgroupSize, 'lavapipe has a fixed subgroup size').toBeDefined();
      for (const target of [{ f16: true }, { f16: true, subgroupSize }]) {
        const code = generate({ main: g }, target, { keep: { main: g.outputs } });
        expect(code.kernels.map((k) => k.fused ?? [k.node])).toEqual([['quantize_a', 'quantize_b', 'gemm']]);
        for (const q of [qa, qb, ia, ib]) expect(code.buffers[code.bufferOf.main[q]].alloc, `${q} never reaches memory`).toBe(-1);
        if (target.subgroupSize) expect([...code.files.values()].join('\n')).toMatch(/round_f8e5m2\(\(b[wq]\d/);
        const got = (await runOnce(g, feeds, [y], 'webgpu', target)).get(y)!;
        const unfused = (await runOnce(g, feeds, [y], 'webgpu', target, { fuse: false })).get(y)!;
        expect(Array.from(got.data)).toEqual(Array.from(unfused.data));
        expect(Array.from(got.data)).toEqual(Array.from(ref.data));
      }
    });

  it('not where the GEMM would quantize each element many times, nor where the quantized tensor is made by a kernel that can store the fp8 copy', () => {
    const g = emptyGraph('qp');
    const value = (name: string, shape: number[]) => {
      g.values.set(name, { name, dtype: 'f32', shape, role: 'input' });
      g.inputs.push(name);
      return name;
    };
    const stats = value('stats', [4]);
    // B loaded once per 4 rows of A: 1024 rows, 256 loads of each element.
    const [qa, ia] = addNode(g, 'mpc.QuantizeFp8', [value('a', [1024, 16]), stats], { name: 'quantize_a', attrs: { to: toOnnx('f8e4m3fn') } });
    const [qb, ib] = addNode(g, 'mpc.QuantizeFp8', [value('b', [16, 8]), stats], { name: 'quantize_b', attrs: { to: toOnnx('f8e4m3fn') } });
    // x made by a cast that nothing else reads: its kernel stores the fp8 copy instead.
    const [cx] = addNode(g, 'Cast', [value('c', [8, 16])], { name: 'cast', attrs: { to: toOnnx('bf16') } });
    const [qc, ic] = addNode(g, 'mpc.QuantizeFp8', [cx, stats], { name: 'quantize_c', attrs: { to: toOnnx('f8e4m3fn') } });
    const [y] = addNode(g, 'Gemm', [qa, qb, '', ia, ib], { name: 'gemm', attrs: { to: toOnnx('bf16') } });
    const [z] = addNode(g, 'Gemm', [qc, qb, '', ic, ib], { name: 'gemm2', attrs: { to: toOnnx('bf16') } });
    g.outputs.push(y, z);
    const code = generate({ main: g }, { f16: true }, { keep: { main: g.outputs } });
    const fused = code.kernels.map((k) => k.fused ?? [k.node]);
    // A is loaded twice per element (8 columns): quantized in the loads; B is read by both GEMMs,
    // and one would quantize it 256 times: its own kernel.
    expect(fused).toContainEqual(['quantize_a', 'gemm']);
    expect(fused).toContainEqual(['quantize_b']);
    expect(fused).toContainEqual(['cast', 'quantize_c']);
    expect(fused).toContainEqual(['gemm2']);
    expect(code.buffers[code.bufferOf.main[qb]].alloc).toBeGreaterThanOrEqual(0);
  });
});
