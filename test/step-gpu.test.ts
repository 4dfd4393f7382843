// A whole training step on WebGPU against the interpreter, kernel by kernel (each kernel
// gets exactly the interpreter's inputs): the MLP in every policy, the CNN under fp8.
import { describe, expect, it } from 'vitest';
import { importOnnxFile } from '../src/onnx/import.js';
import { runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import { floatInfo, isFloat } from '../src/ir/dtypes.js';
import { opRow } from '../src/ops/table.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';
import { runNodeOnGpu } from './helpers/gpu.js';

const CASES = [
  ...['fp32', 'fp16', 'bf16', 'fp8'].map((policy) => ({ model: 'mlp', policy })),
  { model: 'cnn', policy: 'fp8' },
];

/** Allowed error in units of the value's own precision: exact rounding up to 1 ulp. */
function ulpErr(got: number, want: number, dtype: 'f32' | 'f16' | 'bf16' | 'f8e4m3fn' | 'f8e5m2'): number {
  if (Object.is(got, want) || got === want) return 0;
  const eps = 2 ** -floatInfo(dtype).mantBits;
  const tiny = floatInfo(dtype).minNormal;
  return Math.abs(got - want) / (Math.max(Math.abs(want), tiny) * eps);
}

describe('training step: every WebGPU kernel vs the interpreter', () => {
  for (const { model, policy } of CASES) {
    it(`${model} ${policy}`, async () => {
      const fx = loadFixture(`${model}-torch.json`);
      const x = decodeArray(fx.batch.x);
      const y = decodeArray(fx.batch.y);
      const g = runPipeline(importOnnxFile(`models/${model}.onnx`), passCtx({ policy, batch: 8, optimizer: { kind: 'adam' } }), TRAIN_PIPELINE);
      const env = runGraph(g, { input: x, labels: y });
      const bad: string[] = [];
      for (const [idx, n] of g.nodes.entries()) {
        if (opRow(n.op).alias?.view) continue;
        const outs = await runNodeOnGpu(g, idx, env);
        n.outputs.forEach((o, k) => {
          const want = env.get(o)!;
          const got = outs[k];
          if (!isFloat(want.dtype)) {
            if (got.data.join() !== want.data.join()) bad.push(`${n.op} '${n.name}' -> ${o}: integers differ`);
            return;
          }
          // f32 kernels: 1e-5 relative (GEMM sums in another order; exp/log differ); low
          // precision: at most 1 ulp of the format (the f32 result rounds across a tie).
          const dtype = want.dtype as 'f32' | 'f16' | 'bf16' | 'f8e4m3fn' | 'f8e5m2';
          if (dtype === 'f32') {
            // Relative to each value, with a floor of 1e-6 of the tensor's largest magnitude
            // (sums that cancel to ~0 have no meaningful relative error).
            const maxAbs = want.data.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
            let worst = 0;
            for (let i = 0; i < want.data.length; i++)
              worst = Math.max(worst, Math.abs(got.data[i] - want.data[i]) / (1e-5 * Math.abs(want.data[i]) + 1e-6 * maxAbs + 1e-30));
            if (!(worst <= 1)) bad.push(`${n.op} '${n.name}' -> ${o} (f32): ${worst.toFixed(2)}x the tolerance`);
            return;
          }
          let worst = 0;
          for (let i = 0; i < want.data.length; i++) worst = Math.max(worst, ulpErr(got.data[i], want.data[i], dtype));
          if (!(worst <= 1)) bad.push(`${n.op} '${n.name}' -> ${o} (${dtype}): ${worst.toFixed(1)} ulp`);
        });
      }
      expect(bad).toEqual([]);
    });
  }
});
