// What `mpc inspect --policy fp16` promises on the GPT block (both exports): Softmax,
// LayerNormalization (or its ReduceMean/Pow/Sqrt form), Erf and the loss in f32, every
// MatMul/Gemm in f16 accumulating in f32, and exactly one cast per (value, dtype).
import { describe, expect, it } from 'vitest';
import { importOnnxFile } from '../src/onnx/import.js';
import { runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import { insertCasts } from '../src/passes/insert-casts.js';
import { passCtx } from '../src/compile/options.js';
import { printGraph } from '../src/ir/print.js';

const DENY = ['Softmax', 'LayerNormalization', 'ReduceMean', 'Pow', 'Sqrt', 'Erf', 'SoftmaxCrossEntropyLoss'];

for (const model of ['gpt-block', 'gpt-block-op13']) {
  describe(`${model}, fp16`, () => {
    const ctx = passCtx({ policy: 'fp16', batch: 2 });
    const g = runPipeline(importOnnxFile(`models/${model}.onnx`), ctx, TRAIN_PIPELINE, { after: 'insert-casts' });
    const text = printGraph(g);

    it('deny ops and the loss compute in f32', () => {
      const seen = new Set<string>();
      for (const n of g.nodes)
        if (DENY.includes(n.op)) {
          seen.add(n.op);
          expect(n.prec?.compute, `${n.op} '${n.name}'`).toBe('f32');
          for (const o of n.outputs) if (o) expect(g.values.get(o)!.dtype, o).toBe('f32');
        }
      expect(seen.has('Softmax') && seen.has('Erf') && seen.has('SoftmaxCrossEntropyLoss')).toBe(true);
      expect(seen.has('LayerNormalization') || (seen.has('ReduceMean') && seen.has('Pow') && seen.has('Sqrt'))).toBe(true);
    });

    it('MatMul and Gemm compute in f16 with f32 accumulation', () => {
      const gemms = g.nodes.filter((n) => n.op === 'MatMul' || n.op === 'Gemm');
      expect(gemms.length).toBeGreaterThan(5);
      for (const n of gemms) {
        expect(n.prec, n.name).toMatchObject({ cls: 'allow', compute: 'f16', accum: 'f32' });
        for (const i of n.inputs.slice(0, 2)) expect(g.values.get(i)!.dtype, `${n.name} reads ${i}`).toBe('f16');
      }
      expect(text).toMatch(/= MatMul\(.*# allow f16 acc=f32/);
    });

    it('exactly one cast per (value, dtype), and every operand has its consumer\'s dtype', () => {
      expect(insertCasts.check!(g, ctx)).toEqual([]);
      const casts = g.nodes.filter((n) => n.op === 'Cast').map((n) => `${n.inputs[0]}|${g.values.get(n.outputs[0])!.dtype}`);
      expect(new Set(casts).size).toBe(casts.length);
      expect(casts.length).toBeGreaterThan(0);
    });
  });
}
