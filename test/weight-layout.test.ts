// The inference program reads a transposed copy of a weight whose rows are a power of two of
// at least 2 KiB apart (passes/weight-layout.ts): the GEMM then runs without transB. Same numbers: the
// interpreter and the device compute the same products in the same order either way.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { runGraph } from '../src/interp/interpreter.js';
import { gptOnnx } from '../src/models/gpt.js';
import { getGpu } from '../src/runtime/device.js';
import { gpuEngine, loadProgramDir } from '../src/runtime/engine.js';

// d 128: the MLP projection's weight is [128, 512], rows of 512 f32 = 2 KiB.
const CONFIG = { layers: 1, width: 128, heads: 4, context: 8, vocab: 32 };
const BATCH = 2;

describe('weight layout (inference)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'mpc-layout-'));
  const file = join(dir, 'gpt.onnx');
  writeFileSync(file, gptOnnx(CONFIG));
  const tokens = Int32Array.from({ length: BATCH * CONFIG.context }, (_, i) => (i * 7) % CONFIG.vocab);

  it('with a subgroup size: the aliased weight is transposed once and read without transB; others keep transB', () => {
    const c = compileModel(file, { policy: 'fp32', batch: BATCH, target: { subgroupSize: 8 } });
    const g = c.eval;
    const gemms = g.nodes.filter((n) => n.op === 'Gemm');
    const proj = gemms.find((n) => n.name.includes('mlp/proj'))!;
    expect(proj.attrs.transB).toBe(0);
    const t = g.nodes.find((n) => n.outputs[0] === proj.inputs[1])!;
    expect(t.op).toBe('Transpose');
    expect(g.values.get(t.inputs[0])!.role).toBe('param');
    expect(g.values.get(t.inputs[0])!.shape).toEqual([128, 512]);
    // The fc weight [512, 128] has rows of 512 bytes: read in place.
    const fc = gemms.find((n) => n.name.includes('mlp/fc'))!;
    expect(fc.attrs.transB).toBe(1);
    // The training step keeps the stored layout.
    expect(c.train.nodes.find((n) => n.op === 'Gemm' && n.name.includes('mlp/proj') && n.phase !== 'backward')!.attrs.transB).toBe(1);
    // Without a subgroup size (the blocked GEMM), nothing changes.
    const plain = compileModel(file, { policy: 'fp32', batch: BATCH, target: {} });
    expect(plain.eval.nodes.filter((n) => n.op === 'Transpose' && plain.eval.values.get(n.inputs[0])?.role === 'param')).toEqual([]);
  });

  it('the interpreter gives bit-identical logits with and without the copy', () => {
    const a = compileModel(file, { policy: 'fp32', batch: BATCH, target: { subgroupSize: 8 } }).eval;
    const b = compileModel(file, { policy: 'fp32', batch: BATCH, target: {} }).eval;
    const feeds = { [a.inputs[0]]: { dtype: 'i32' as const, shape: [BATCH, CONFIG.context], data: tokens } };
    const ya = runGraph(a, feeds).get(a.outputs[0])!;
    const yb = runGraph(b, feeds).get(b.outputs[0])!;
    expect(Array.from(ya.data)).toEqual(Array.from(yb.data));
  });

  it('on the device: the GEMM on the copy gives the logits of the interpreter', async () => {
    const subgroupSize = (await getGpu()).subgroupSize;
    const c = compileModel(file, { policy: 'fp32', batch: BATCH, target: { subgroupSize } });
    expect(c.eval.nodes.some((n) => n.op === 'Transpose' && c.eval.values.get(n.inputs[0])?.role === 'param')).toBe(subgroupSize !== undefined);
    const out = join(dir, 'program');
    writeCompiled(out, c);
    const y = await (await gpuEngine(loadProgramDir(out))).predict(tokens);
    const ref = runGraph(c.eval, { [c.eval.inputs[0]]: { dtype: 'i32', shape: [BATCH, CONFIG.context], data: tokens } }).get(c.eval.outputs[0])!;
    expect(y.length).toBe(ref.data.length);
    for (let i = 0; i < y.length; i++) expect(Math.abs(y[i] - ref.data[i]), `logit ${i}`).toBeLessThan(1e-4);
  });
});
