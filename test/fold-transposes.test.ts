// Transposes folded into batched products (passes/fold-transposes.ts): attention's head
// transposes disappear from both programs, the products read and write the tensors in place,
// and every number of the step stays what it was.
import { describe, expect, it } from 'vitest';
import { compileModel } from '../src/compile/compile.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import { importOnnxFile } from '../src/onnx/import.js';
import { foldTransposes } from '../src/passes/fold-transposes.js';
import { EVAL_PIPELINE, runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';

const fx = loadFixture('gpt-torch.json');
const x = decodeArray(fx.batch.x);
const y = decodeArray(fx.batch.y);
const feeds = { tokens: { ...x, shape: [4, 16], data: x.data.slice(0, 64) }, labels: { ...y, shape: [4, 16], data: y.data.slice(0, 64) } };
const ctxFor = (policy: string) => passCtx({ policy, batch: 4, optimizer: { kind: 'adam' } });
const without = (passes: typeof TRAIN_PIPELINE) => passes.filter((p) => p.name !== 'fold-transposes');

describe('fold-transposes', () => {
  for (const policy of ['fp32', 'bf16', 'fp8'])
    it(`GPT block ${policy}: no Transpose of activations is left; the products carry the permutations`, () => {
      const c = compileModel('models/gpt-block.onnx', { policy, batch: 4 });
      for (const g of [c.train, c.eval]) {
        const moved = g.nodes.filter((n) => n.op === 'Transpose' && g.values.get(n.inputs[0])?.role !== 'param');
        expect(moved.map((n) => n.name)).toEqual([]);
        expect(foldTransposes.check!(g, ctxFor(policy))).toEqual([]);
        const products = g.nodes.filter((n) => n.op === 'MatMul');
        expect(products.length).toBeGreaterThanOrEqual(2);
        // Scores read Q and K from [N, T, H, d]; the weighted sum writes [N, T, H, d].
        expect(products.some((n) => n.attrs.permA !== undefined && n.attrs.permB !== undefined)).toBe(true);
        expect(products.some((n) => n.attrs.permY !== undefined)).toBe(true);
      }
      // The unfolded step had them: 4 in the forward pass, more in the backward pass.
      const plain = runPipeline(importOnnxFile('models/gpt-block.onnx'), ctxFor(policy), without(TRAIN_PIPELINE));
      expect(plain.nodes.filter((n) => n.op === 'Transpose' && plain.values.get(n.inputs[0])?.role !== 'param').length).toBeGreaterThanOrEqual(8);
    });

  for (const policy of ['fp32', 'bf16', 'fp8'])
    it(`GPT block ${policy}: the training step and the inference pass are bit-identical with and without the pass`, () => {
      const folded = runPipeline(importOnnxFile('models/gpt-block.onnx'), ctxFor(policy), TRAIN_PIPELINE);
      const plain = runPipeline(importOnnxFile('models/gpt-block.onnx'), ctxFor(policy), without(TRAIN_PIPELINE));
      const a = runGraph(folded, feeds);
      const b = runGraph(plain, feeds);
      // The loss, the gradients, the updated weights and moments (fp8 scaling state is named
      // after the tensor quantized, which the pass changes from the transposed copy to the
      // tensor itself: same elements, so the same amax).
      const shared = [...b.keys()].filter((v) => a.has(v));
      for (const u of plain.updates) if (!/\.f8e(4m3fn|5m2)\./.test(u.state)) expect(shared).toContain(u.next);
      expect(folded.updates.length).toBe(plain.updates.length);
      for (const v of shared) expect(Array.from(a.get(v)!.data), v).toEqual(Array.from(b.get(v)!.data));
      const fe = runPipeline(importOnnxFile('models/gpt-block.onnx'), ctxFor(policy), EVAL_PIPELINE);
      const pe = runPipeline(importOnnxFile('models/gpt-block.onnx'), ctxFor(policy), without(EVAL_PIPELINE));
      const ev = { tokens: feeds.tokens };
      expect(Array.from(runGraph(fe, ev).get(fe.outputs[0])!.data)).toEqual(Array.from(runGraph(pe, ev).get(pe.outputs[0])!.data));
    });

  it('a Transpose read by anything but a product stays', () => {
    // The weight-layout copy (a Transpose of a parameter read by a Gemm) is not a MatMul operand.
    const g = runPipeline(importOnnxFile('models/gpt-block.onnx'), ctxFor('fp32'), TRAIN_PIPELINE);
    for (const n of g.nodes.filter((m) => m.op === 'Transpose'))
      for (const r of g.nodes.filter((m) => m.inputs.includes(n.outputs[0]))) expect(r.op).not.toBe('MatMul');
  });
});
