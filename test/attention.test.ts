// Attention as one kernel (codegen/kernels/attention.ts): the scores' GEMM with its epilogue,
// Softmax with its epilogue and the product with V run as one dispatch that gives exactly the
// bits as the unfused program (one kernel per node), in every storage format and GEMM
// variant, with scores and probabilities never in memory; patterns it cannot take stay as
// they were.
import { describe, expect, it } from 'vitest';
import { generate, type CodegenResult } from '../src/codegen/program.js';
import type { Target } from '../src/codegen/kernel.js';
import { planFusion } from '../src/codegen/fuse.js';
import { addConst, addNode } from '../src/ir/build.js';
import type { FloatDType } from '../src/ir/dtypes.js';
import { round } from '../src/ir/dtypes.js';
import { emptyGraph, type Graph } from '../src/ir/graph.js';
import type { Tensor } from '../src/ir/tensor.js';
import { runGraph } from '../src/interp/interpreter.js';
import { compileModel } from '../src/compile/compile.js';
import { getGpu } from '../src/runtime/device.js';
import { runOnce } from '../src/runtime/run-once.js';
import { maxUlpF32, ulpMismatch } from './helpers/op-harness.js';

interface Dims {
  B: number;
  H: number;
  T: number;
  D: number;
  /** Width of V's rows (the output's). */
  N: number;
}

/** Deterministic values in [-1, 1). */
function values(n: number, seed: number): Float32Array {
  let x = seed;
  return Float32Array.from({ length: n }, () => {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    return (x / 2 ** 30) - 1;
  });
}

/**
 * PyTorch's attention as exported: q [B,H,T,D]; k [B,H,T,D] read transposed (permB); scores
 * scaled and masked (a causal mask of -1e4); Softmax; times v [B,H,T,N], the result written
 * as [B,T,H,N] (permY; `permY: false`, as [B,H,T,N]). `alsoP`: the probabilities are an
 * output too.
 */
function attentionGraph(d: Dims, dtype: FloatDType, opts: { alsoP?: boolean; permY?: boolean } = {}): { g: Graph; feeds: Record<string, Tensor> } {
  const { B, H, T, D, N } = d;
  const g = emptyGraph('attention');
  const feeds: Record<string, Tensor> = {};
  const input = (name: string, shape: number[], seed: number) => {
    g.values.set(name, { name, dtype, shape, role: 'input' });
    g.inputs.push(name);
    feeds[name] = { dtype, shape, data: Float32Array.from(values(shape.reduce((a, b) => a * b, 1), seed), (v) => round(dtype, 2 * v)) };
  };
  input('q', [B, H, T, D], 1);
  input('k', [B, H, T, D], 2);
  input('v', [B, H, T, N], 3);
  const scores = addNode(g, 'MatMul', ['q', 'k'], { attrs: { permB: [0, 1, 3, 2] } })[0];
  const scale = addConst(g, 'scale', { dtype, shape: [], data: new Float32Array([round(dtype, 1 / Math.sqrt(D))]) });
  const scaled = addNode(g, 'Mul', [scores, scale])[0];
  const mask = addConst(g, 'mask', { dtype, shape: [T, T], data: Float32Array.from({ length: T * T }, (_, i) => (i % T > Math.floor(i / T) ? -1e4 : 0)) });
  const masked = addNode(g, 'Add', [scaled, mask])[0];
  const p = addNode(g, 'Softmax', [masked], { attrs: { axis: -1 } })[0];
  const out = addNode(g, 'MatMul', [p, 'v'], { attrs: opts.permY === false ? {} : { permY: [0, 2, 1, 3] } })[0];
  g.outputs = opts.alsoP ? [out, p] : [out];
  return { g, feeds };
}

/** The program generated for `target` and its outputs, computed on the GPU. */
async function run(g: Graph, feeds: Record<string, Tensor>, target: Target, fuse: boolean): Promise<{ code: CodegenResult; out: Tensor[] }> {
  const code = generate({ main: g }, target, { fuse, keep: { main: g.outputs } });
  const got = await runOnce(g, feeds, g.outputs, 'webgpu', target, { fuse });
  return { code, out: g.outputs.map((o) => got.get(o)!) };
}

const attentionKernels = (code: CodegenResult) => code.kernels.filter((k) => k.name.endsWith('.attention'));

describe('attention as one kernel', () => {
  // Odd sizes: K of 3 and 5 run past the unfused GEMM's k blocks, 5 rows per batch matrix
  // take single-row invocations; packed f16 and bf16 store words of two.
  const CASES: { dtype: FloatDType; target: Target; d: Dims }[] = [
    { dtype: 'f32', target: { f16: true }, d: { B: 2, H: 3, T: 5, D: 3, N: 6 } },
    { dtype: 'f32', target: { f16: true }, d: { B: 1, H: 2, T: 16, D: 8, N: 8 } },
    { dtype: 'f16', target: { f16: true }, d: { B: 2, H: 3, T: 5, D: 3, N: 6 } },
    { dtype: 'f16', target: { f16: false }, d: { B: 2, H: 3, T: 5, D: 3, N: 6 } },
    { dtype: 'bf16', target: { f16: true }, d: { B: 2, H: 2, T: 12, D: 5, N: 4 } },
  ];
  for (const { dtype, target, d } of CASES)
    it(`${dtype}${dtype === 'f16' ? (target.f16 ? ' native' : ' packed') : ''} [B ${d.B}, H ${d.H}, T ${d.T}, D ${d.D}, N ${d.N}]: one dispatch, the unfused kernels' bits, the interpreter's values`, async () => {
      const { g, feeds } = attentionGraph(d, dtype);
      const fused = await run(g, feeds, target, true);
      const plain = await run(g, feeds, target, false);
      expect(fused.code.kernels.length).toBe(1);
      expect(attentionKernels(fused.code).length).toBe(1);
      expect(fused.code.kernels[0].fused).toEqual(['matmul', 'mul', 'add', 'softmax', 'matmul_1']);
      expect(plain.code.kernels.length).toBe(5); // unfused: one kernel per node
      // Neither the scores nor the probabilities have a buffer.
      const bound = new Set(fused.code.kernels.flatMap((k) => k.bindings.map((b) => fused.code.buffers[b.buffer].name)));
      expect([...bound].sort()).toEqual(['k', 'mask', 'matmul_1', 'q', 'v']);
      expect(Array.from(fused.out[0].data)).toEqual(Array.from(plain.out[0].data));
      // The oracle: the interpreter (f64 exp, so a few units in the last place apart).
      const want = runGraph(g, feeds).get(g.outputs[0])!;
      if (dtype === 'f32') expect(maxUlpF32(fused.out[0].data, want.data, 1e-6).ulp).toBeLessThanOrEqual(64);
      else expect(ulpMismatch(dtype, fused.out[0].data, want.data, 2)).toBeUndefined();
    });

  it('the adapter\'s subgroup GEMM variant: the same bits as its three kernels', async () => {
    const gpu = await getGpu({ f16: true });
    expect(gpu.subgroupSize, 'lavapipe has a fixed subgroup size').toBeDefined();
    const target: Target = { f16: true, subgroupSize: gpu.subgroupSize };
    for (const d of [{ B: 2, H: 2, T: 16, D: 8, N: 8 }, { B: 1, H: 2, T: 12, D: 5, N: 6 }]) {
      const { g, feeds } = attentionGraph(d, 'f32');
      const fused = await run(g, feeds, target, true);
      const plain = await run(g, feeds, target, false);
      expect(attentionKernels(fused.code).length).toBe(1);
      expect(Array.from(fused.out[0].data)).toEqual(Array.from(plain.out[0].data));
    }
  });

  it('stays three kernels where it cannot be one: probabilities the host reads, a packed output of odd width', async () => {
    const read = attentionGraph({ B: 1, H: 2, T: 5, D: 3, N: 6 }, 'f32', { alsoP: true });
    expect(planFusion(read.g, new Set(read.g.outputs), { f16: true }).attention.size).toBe(0);
    const odd = attentionGraph({ B: 1, H: 2, T: 6, D: 4, N: 5 }, 'f16', { permY: false });
    expect(planFusion(odd.g, new Set(odd.g.outputs), { f16: false }).attention.size).toBe(0);
    expect(planFusion(odd.g, new Set(odd.g.outputs), { f16: true }).attention.size).toBe(1);
    // Without a target (layouts unknown), nothing is planned.
    expect(planFusion(odd.g, new Set(odd.g.outputs), undefined).attention.size).toBe(0);
    const got = await run(odd.g, odd.feeds, { f16: false }, true);
    expect(attentionKernels(got.code).length).toBe(0);
    expect(ulpMismatch('f16', got.out[0].data, runGraph(odd.g, odd.feeds).get(odd.g.outputs[0])!.data, 2)).toBeUndefined();
  });

  it('the GPT block: inference and the training step\'s forward pass run attention as one kernel (fp8: its quantizers stand between the three); the backward pass recomputes it unfused', () => {
    for (const policy of ['fp32', 'fp16', 'bf16', 'fp8']) {
      const c = compileModel('models/gpt-block.onnx', { policy, batch: 2 });
      const { kernels, schedules, buffers } = c.code;
      for (const s of ['eval', 'train']) {
        const att = schedules[s].kernels.filter((k) => kernels[k].name.endsWith('.attention'));
        expect(att.length, `${policy} ${s}`).toBe(policy === 'fp8' ? 0 : 1);
        if (!att.length) continue;
        const ops = kernels[att[0]].fused!;
        expect(ops[0], policy).toBe('/attn/MatMul');
        expect(ops.at(-1), policy).toBe('/attn/MatMul_1');
        expect(ops, policy).toContain('/attn/Softmax');
      }
      if (policy === 'fp8') continue;
      // Inference holds neither the scores nor the probabilities.
      const evalBuffers = new Set(schedules.eval.kernels.flatMap((k) => kernels[k].bindings.map((b) => buffers[b.buffer].name)));
      for (const v of evalBuffers) expect(v, policy).not.toMatch(/^\/attn\/(Add|Softmax)_output_0/);
      // The backward pass recomputes the probabilities for SoftmaxGrad and dV: its own kernels.
      const names = schedules.train.kernels.map((k) => kernels[k].name);
      expect(names.some((n) => n.includes('/attn/Softmax.remat')), policy).toBe(true);
    }
  });
});
