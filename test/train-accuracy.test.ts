// End to end: the bundled MLP trained one epoch on Fashion-MNIST (batch 128, Adam 1e-3) on
// WebGPU in every policy. PyTorch, same model and recipe: 81.6%; bf16 autocast within 0.1 pp.
// fp8 (delayed and current scaling) must stay within 1 pp of bf16.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import type { CompileOptions } from '../src/compile/options.js';
import { train, type TrainSummary } from '../src/runtime/train.js';
import { getGpu } from '../src/runtime/device.js';
import { gpuEngine, loadProgramDir } from '../src/runtime/engine.js';
import { loadFashionMnist } from '../src/data/datasets.js';
import { decodeArray } from './helpers/fixtures.js';

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

// A CNN with BatchNorm exported in training mode at opset 13 (BatchNormalization with 5
// outputs; models/export_bn_cnn.py): its running statistics follow PyTorch's step for step,
// and one epoch (batch 128, Adam 1e-3) reaches PyTorch's accuracy for the same recipe
// (test/fixtures/bn-cnn-torch.json: 3 shuffling seeds, evaluated with the running statistics).
describe('BatchNorm CNN (opset 13 export) on Fashion-MNIST, WebGPU', () => {
  const fx = JSON.parse(readFileSync(new URL('./fixtures/bn-cnn-torch.json', import.meta.url), 'utf8'));

  // 1e-5 relative to the tensor's max, or twice PyTorch's own float32 error where that is
  // larger (bn1's running mean: PyTorch float32 vs float64 differ by 1.3e-5 after 3 steps).
  it('running statistics equal PyTorch\'s after 3 SGD steps (1e-5, or 2x PyTorch\'s own f32 error)', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'mpc-bn-')), 'out');
    writeCompiled(dir, compileModel('models/bn-cnn-op13.onnx', { policy: 'fp32', batch: 128, optimizer: { kind: 'sgd', lr: 0.1, momentum: 0 } }));
    const e = await gpuEngine(loadProgramDir(dir));
    const d = loadFashionMnist();
    const per = 28 * 28;
    for (let s = 0; s < 3; s++) {
      e.trainStep(d.train.x.subarray(s * 128 * per, (s + 1) * 128 * per) as Float32Array, d.train.y.subarray(s * 128, (s + 1) * 128));
      expect(Math.abs((await e.loss()) - fx.running.losses[s]) / fx.running.losses[s]).toBeLessThan(1e-4);
    }
    const names = Object.keys(fx.running.state);
    const got = await e.read(names);
    for (const k of names) {
      const want = decodeArray(fx.running.state[k]).data;
      const have = got.get(k)!.data;
      let m = 0;
      let diff = 0;
      for (let i = 0; i < want.length; i++) {
        m = Math.max(m, Math.abs(want[i]));
        diff = Math.max(diff, Math.abs(have[i] - want[i]));
      }
      expect(diff / m, k).toBeLessThan(Math.max(1e-5, 2 * fx.running.f32_err[k]));
    }
  });

  it('1 epoch: test accuracy within 1 pp of PyTorch\'s (same recipe)', async () => {
    const dir = join(mkdtempSync(join(tmpdir(), 'mpc-bn-')), 'out');
    writeCompiled(dir, compileModel('models/bn-cnn-op13.onnx', { policy: 'fp32', batch: 128 }));
    const s = await train({ dir, data: 'fashion-mnist', epochs: 1, backend: 'webgpu', seed: 0, logEvery: 50 }, quiet);
    const torch: number[] = fx.epoch.test_accuracy;
    console.log(`bn-cnn fp32: ${(s.test_accuracy * 100).toFixed(2)}% in ${s.seconds} s (PyTorch ${torch.map((a) => (a * 100).toFixed(2)).join(', ')})`);
    expect(s.steps).toBe(fx.epoch.steps);
    expect(s.test_accuracy).toBeGreaterThanOrEqual(Math.min(...torch) - 0.01);
    expect(s.test_accuracy).toBeLessThanOrEqual(Math.max(...torch) + 0.01);
  }, 1_800_000);
});
