// `mpc run` and `mpc grad` end to end (NPY in, NPY/NPZ out) against the PyTorch fixtures.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { gradCommand, runCommand } from '../src/cli/run-grad.js';
import { readNpy, readNpz, saveNpy } from '../src/data/npy.js';
import { decodeArray, loadFixture, maxRelErr } from './helpers/fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'mpc-run-grad-'));
const maxAbs = (a: ArrayLike<number>) => Array.prototype.reduce.call(a, (m: number, v: number) => Math.max(m, Math.abs(v)), 0) as number;

describe('mpc run', () => {
  it('CNN logits for an NPY batch equal PyTorch within 1e-4 (both backends)', async () => {
    const fx = loadFixture('cnn-torch.json');
    const x = decodeArray(fx.batch.x);
    const xin = join(dir, 'cnn-x.npy');
    saveNpy(xin, { dtype: 'f4', shape: x.shape, data: x.data as Float32Array });
    const want = decodeArray(fx.logits).data;
    for (const backend of ['cpu', 'webgpu'] as const) {
      const out = join(dir, `cnn-y-${backend}.npy`);
      await runCommand('models/cnn.onnx', { input: xin, output: out, backend, batchGiven: false }, { policy: 'fp32' });
      const y = readNpy(out);
      expect(y.shape).toEqual([8, 10]);
      expect(maxRelErr(y.data, want, maxAbs(want) * 1e-2), backend).toBeLessThan(1e-4);
    }
  });
});

describe('mpc grad', () => {
  const fx = loadFixture('gpt-torch.json');
  const x = decodeArray(fx.batch.x);
  const y = decodeArray(fx.batch.y);
  const xin = join(dir, 'tokens.npy');
  const yin = join(dir, 'next.npy');
  saveNpy(xin, { dtype: 'i8', shape: x.shape, data: x.data as Int32Array });
  saveNpy(yin, { dtype: 'i8', shape: y.shape, data: y.data as Int32Array });
  const names = Object.keys(fx.grads);
  const global = Math.max(...names.map((p) => maxAbs(decodeArray(fx.grads[p]).data)));

  it('GPT: loss and every gradient, keyed by ONNX initializer name, equal PyTorch (fp32, both backends)', async () => {
    for (const backend of ['cpu', 'webgpu'] as const) {
      const out = join(dir, `grads-${backend}.npz`);
      await gradCommand('models/gpt-block.onnx', { input: xin, labels: yin, out, backend, batchGiven: false }, { policy: 'fp32' });
      const z = readNpz(out);
      expect(Object.keys(z).sort()).toEqual(['loss', ...names].sort());
      expect(Math.abs(z.loss.data[0] - fx.loss) / fx.loss).toBeLessThan(1e-4);
      for (const p of names) {
        const want = decodeArray(fx.grads[p]).data;
        expect(maxRelErr(z[p].data, want, Math.max(maxAbs(want), 1e-3 * global)), `${backend} ${p}`).toBeLessThan(1e-4);
      }
    }
  });

  it('fp16 gradients come back unscaled (loss scale divided out), close to fp32', async () => {
    const out = join(dir, 'grads-fp16.npz');
    await gradCommand('models/gpt-block.onnx', { input: xin, labels: yin, out, backend: 'webgpu', batchGiven: false }, { policy: 'fp16' });
    const z = readNpz(out);
    for (const p of ['head.weight', 'attn.q.weight', 'tok_emb.weight']) {
      const want = decodeArray(fx.grads[p]).data;
      expect(maxRelErr(z[p].data, want, maxAbs(want)), p).toBeLessThan(2e-2);
    }
  });
});
