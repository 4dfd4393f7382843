// Dynamic loss scaling on the device (GradScaler semantics), through the compiled program.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { cpuEngine, gpuEngine, loadProgramDir, type Engine } from '../src/runtime/engine.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';

const fx = loadFixture('mlp-torch.json');
const x = decodeArray(fx.batch.x).data as Float32Array;
const y = decodeArray(fx.batch.y).data as Int32Array;

function compileTo(opts: Parameters<typeof compileModel>[1]) {
  const dir = join(mkdtempSync(join(tmpdir(), 'mpc-ls-')), 'out');
  writeCompiled(dir, compileModel('models/mlp.onnx', opts));
  return loadProgramDir(dir);
}

const STATE = ['1.weight', '1.bias', '3.weight', '3.bias', '1.weight.m', '1.weight.v', 'optim.step'];

async function snapshot(e: Engine) {
  return e.read([...STATE, 'loss_scale', 'skipped_steps', 'loss_scale.growth', 'found_inf']);
}

for (const backend of ['webgpu', 'cpu'] as const) {
  describe(`loss scaling on ${backend}`, () => {
    const p = compileTo({ policy: 'fp16', batch: 8, lossScale: 'dynamic', growthInterval: 3, optimizer: { kind: 'adam' } });
    const engine = () => (backend === 'cpu' ? Promise.resolve(cpuEngine(p)) : gpuEngine(p));

    it('an inf gradient skips the step: weights and moments bitwise unchanged, scale halved', async () => {
      const e = await engine();
      e.trainStep(x, y); // one finite step first, so the moments are not all zero
      const before = await snapshot(e);
      expect(before.get('loss_scale')!.data[0]).toBe(2 ** 16);
      const bad = x.map((v, i) => (i === 5 ? 1e30 : v)); // becomes inf in f16 -> NaN loss -> non-finite grads
      e.trainStep(bad, y);
      const after = await snapshot(e);
      for (const k of STATE) expect(Buffer.from(after.get(k)!.data.buffer).equals(Buffer.from(before.get(k)!.data.buffer)), k).toBe(true);
      expect(after.get('loss_scale')!.data[0]).toBe(2 ** 15);
      expect(after.get('skipped_steps')!.data[0]).toBe(1);
      expect(after.get('loss_scale.growth')!.data[0]).toBe(0);
      expect(after.get('found_inf')!.data[0]).toBe(0); // cleared for the next step
    });

    it('N finite steps double the scale (growth interval 3)', async () => {
      const e = await engine();
      const scales: number[] = [];
      for (let i = 0; i < 7; i++) {
        e.trainStep(x, y);
        scales.push((await e.read(['loss_scale'])).get('loss_scale')!.data[0]);
      }
      expect(scales).toEqual([2 ** 16, 2 ** 16, 2 ** 17, 2 ** 17, 2 ** 17, 2 ** 18, 2 ** 18]);
      expect((await e.read(['skipped_steps'])).get('skipped_steps')!.data[0]).toBe(0);
      expect((await e.read(['optim.step'])).get('optim.step')!.data[0]).toBe(7);
    });
  });
}
