// End to end: the bundled MLP trained one epoch on Fashion-MNIST (batch 128, Adam 1e-3) on
// WebGPU in every policy. PyTorch, same model and recipe: 81.6%; bf16 autocast within 0.1 pp.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { train, type TrainSummary } from '../src/runtime/train.js';

const quiet = { start() {}, update() {}, stop() {}, log() {} };
const results: Record<string, TrainSummary> = {};

describe('MLP on Fashion-MNIST, 1 epoch, batch 128, WebGPU', () => {
  for (const policy of ['fp32', 'fp16', 'bf16']) {
    it(`${policy} reaches >= 80.5% test accuracy`, async () => {
      const dir = join(mkdtempSync(join(tmpdir(), 'mpc-acc-')), policy);
      writeCompiled(dir, compileModel('models/mlp.onnx', { policy, batch: 128 }));
      const s = await train({ dir, data: 'fashion-mnist', epochs: 1, backend: 'webgpu', seed: 0, logEvery: 50 }, quiet);
      results[policy] = s;
      console.log(`${policy}: ${(s.test_accuracy * 100).toFixed(2)}% in ${s.seconds} s, loss scale ${s.final_loss_scale}, skipped ${s.skipped_steps}`);
      expect(s.steps).toBe(468);
      expect(s.test_accuracy).toBeGreaterThanOrEqual(0.805);
    }, 900_000);
  }
  it('the policies are within 1 percentage point of each other', () => {
    const acc = Object.values(results).map((s) => s.test_accuracy);
    expect(acc.length).toBe(3);
    expect(Math.max(...acc) - Math.min(...acc)).toBeLessThanOrEqual(0.01);
  });
});
