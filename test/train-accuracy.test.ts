// End to end: the bundled MLP trained one epoch on Fashion-MNIST (batch 128, Adam 1e-3) on
// WebGPU in every policy. PyTorch, same model and recipe: 81.6%; bf16 autocast within 0.1 pp.
// fp8 (delayed and current scaling) must stay within 1 pp of bf16.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import type { CompileOptions } from '../src/compile/options.js';
import { train, type TrainSummary } from '../src/runtime/train.js';
import { getGpu } from '../src/runtime/device.js';

const quiet = { start() {}, update() {}, stop() {}, log() {} };
const results: Record<string, TrainSummary> = {};

const VARIANTS: { name: string; policy: string; fp8?: CompileOptions['fp8'] }[] = [
  { name: 'fp32', policy: 'fp32' },
  { name: 'fp16', policy: 'fp16' },
  { name: 'bf16', policy: 'bf16' },
  { name: 'fp8-delayed', policy: 'fp8', fp8: { scaling: 'delayed' } },
  { name: 'fp8-current', policy: 'fp8', fp8: { scaling: 'current' } },
];

describe('MLP on Fashion-MNIST, 1 epoch, batch 128, WebGPU', () => {
  for (const v of VARIANTS) {
    it(`${v.name} reaches >= 80.5% test accuracy`, async () => {
      const dir = join(mkdtempSync(join(tmpdir(), 'mpc-acc-')), v.name);
      // As `mpc compile` does by default: the local adapter's subgroup size for the fast GEMM.
      const subgroupSize = (await getGpu()).subgroupSize;
      writeCompiled(dir, compileModel('models/mlp.onnx', { policy: v.policy, fp8: v.fp8, batch: 128, target: { f16: true, subgroupSize } }));
      const s = await train({ dir, data: 'fashion-mnist', epochs: 1, backend: 'webgpu', seed: 0, logEvery: 50 }, quiet);
      results[v.name] = s;
      console.log(`${v.name}: ${(s.test_accuracy * 100).toFixed(2)}% in ${s.seconds} s, loss scale ${s.final_loss_scale}, skipped ${s.skipped_steps}`);
      expect(s.steps).toBe(468);
      expect(s.test_accuracy).toBeGreaterThanOrEqual(0.805);
    }, 1_200_000);
  }
  it('fp32, fp16 and bf16 are within 1 percentage point of each other', () => {
    const acc = ['fp32', 'fp16', 'bf16'].map((k) => results[k].test_accuracy);
    expect(Math.max(...acc) - Math.min(...acc)).toBeLessThanOrEqual(0.01);
  });
  it('fp8 with delayed and with current scaling is within 1 pp of bf16', () => {
    expect(Math.abs(results['fp8-delayed'].test_accuracy - results.bf16.test_accuracy)).toBeLessThanOrEqual(0.01);
    expect(Math.abs(results['fp8-current'].test_accuracy - results.bf16.test_accuracy)).toBeLessThanOrEqual(0.01);
  });
});
