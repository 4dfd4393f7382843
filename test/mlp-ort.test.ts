// Forward pass of the bundled MLP against onnxruntime (CPU): the interpreter and WebGPU.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import * as ort from 'onnxruntime-node';
import { importOnnxFile } from '../src/onnx/import.js';
import { EVAL_PIPELINE, runPipeline } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import { decodeArray, loadFixture, maxRelErr } from './helpers/fixtures.js';
import { runOnGpu } from './helpers/gpu.js';

const fx = loadFixture('mlp-torch.json');
const x = decodeArray(fx.batch.x);

async function ortLogits(): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(readFileSync('models/mlp.onnx'));
  const out = await s.run({ input: new ort.Tensor('float32', x.data as Float32Array, x.shape) });
  return out.logits.data as Float32Array;
}

describe('MLP forward vs onnxruntime', () => {
  it('fp32 logits within 1e-5 (interpreter and WebGPU)', async () => {
    const want = await ortLogits();
    const g = runPipeline(importOnnxFile('models/mlp.onnx'), passCtx({ policy: 'fp32', batch: 8 }), EVAL_PIPELINE);
    const cpu = runGraph(g, { input: x }).get('logits')!.data;
    const gpu = (await runOnGpu(g, { input: x })).get('logits')!.data;
    const maxAbs = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
    expect(maxRelErr(cpu, want, maxAbs * 1e-2)).toBeLessThan(1e-5);
    expect(maxRelErr(gpu, want, maxAbs * 1e-2)).toBeLessThan(1e-5);
  });

  it('fp16 and bf16 logits stay close to fp32 (within the formats\' precision)', async () => {
    const want = await ortLogits();
    for (const [policy, tol] of [['fp16', 5e-3], ['bf16', 4e-2]] as const) {
      const g = runPipeline(importOnnxFile('models/mlp.onnx'), passCtx({ policy, batch: 8 }), EVAL_PIPELINE);
      const gpu = (await runOnGpu(g, { input: x })).get('logits')!.data;
      const maxAbs = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxRelErr(gpu, want, maxAbs), policy).toBeLessThan(tol);
    }
  });
});
