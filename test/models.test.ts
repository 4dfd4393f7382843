// The bundled CNN and GPT block (opset 17 and 13): forward vs onnxruntime, loss and every
// parameter gradient vs PyTorch (fixtures from models/make_model_fixtures.py), fp32, on the
// interpreter and on WebGPU.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { importOnnxFile } from '../src/onnx/import.js';
import { EVAL_PIPELINE, runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import type { GradMeta } from '../src/passes/autodiff.js';
import type { Tensor } from '../src/ir/tensor.js';
import { decodeArray, loadFixture, maxRelErr } from './helpers/fixtures.js';
import { runOnGpu } from './helpers/gpu.js';

const MODELS = [
  { name: 'cnn', file: 'models/cnn.onnx', fixture: 'cnn-torch.json', input: 'input' },
  { name: 'gpt-block', file: 'models/gpt-block.onnx', fixture: 'gpt-torch.json', input: 'tokens' },
  { name: 'gpt-block-op13', file: 'models/gpt-block-op13.onnx', fixture: 'gpt-op13-torch.json', input: 'tokens' },
];

const maxAbs = (a: ArrayLike<number>) => Array.prototype.reduce.call(a, (m: number, v: number) => Math.max(m, Math.abs(v)), 0) as number;

for (const m of MODELS) {
  describe(m.name, () => {
    const fx = loadFixture(m.fixture);
    const xf = decodeArray(fx.batch.x);
    const x: Tensor = m.input === 'tokens' ? { dtype: 'i64', shape: xf.shape, data: xf.data } : { ...xf, dtype: 'f32' };
    const y = decodeArray(fx.batch.y);
    const batch = x.shape[0];

    it('forward equals onnxruntime within 1e-4 (interpreter and WebGPU)', async () => {
      const s = await ort.InferenceSession.create(readFileSync(m.file));
      const feed =
        x.dtype === 'i64'
          ? new ort.Tensor('int64', BigInt64Array.from(Array.from(x.data, (v) => BigInt(v))), x.shape)
          : new ort.Tensor('float32', x.data as Float32Array, x.shape);
      const want = (await s.run({ [m.input]: feed })).logits.data as Float32Array;
      const g = runPipeline(importOnnxFile(m.file), passCtx({ policy: 'fp32', batch }), EVAL_PIPELINE);
      const cpu = runGraph(g, { [m.input]: x }).get('logits')!.data;
      const gpu = (await runOnGpu(g, { [m.input]: x })).get('logits')!.data;
      expect(maxRelErr(cpu, want, maxAbs(want) * 1e-2)).toBeLessThan(1e-4);
      expect(maxRelErr(gpu, want, maxAbs(want) * 1e-2)).toBeLessThan(1e-4);
    });

    it('loss and every parameter gradient equal PyTorch within 1e-4 (interpreter and WebGPU)', async () => {
      const g = runPipeline(importOnnxFile(m.file), passCtx({ policy: 'fp32', batch, optimizer: { kind: 'sgd' } }), TRAIN_PIPELINE);
      const feeds = { [m.input]: x, labels: { ...y, dtype: 'i64' as const } };
      const cpu = runGraph(g, feeds);
      const gpu = await runOnGpu(g, feeds);
      const grads = (g.meta.grads as GradMeta).params;
      expect(Object.keys(grads).sort()).toEqual(Object.keys(fx.grads).sort());
      // Each gradient relative to its own largest magnitude, but never below 1e-3 of the
      // model's largest: some gradients vanish analytically (softmax ignores a constant added
      // to a row of scores, so the key bias gets ~1e-19 in PyTorch, f32 rounding noise here).
      const global = Math.max(...Object.keys(grads).map((p) => maxAbs(decodeArray(fx.grads[p]).data)));
      for (const env of [cpu, gpu]) {
        expect(Math.abs(env.get('loss')!.data[0] - fx.loss) / fx.loss).toBeLessThan(1e-4);
        for (const [p, d] of Object.entries(grads)) {
          const want = decodeArray(fx.grads[p]).data;
          expect(maxRelErr(env.get(d)!.data, want, Math.max(maxAbs(want), 1e-3 * global)), p).toBeLessThan(1e-4);
        }
      }
    });
  });
}
