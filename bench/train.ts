// Benchmarks of the whole compiler on the bundled MLP: compile time per policy, the training
// step per policy (ratios against fp32 measured in the same run), and inference at batch 256
// against onnxruntime's WebGPU execution provider (the peer) on the same device.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { gpuEngine, loadProgramDir, type Engine } from '../src/runtime/engine.js';
import { getGpu } from '../src/runtime/device.js';
import { registerSection, type SectionContext } from './registry.js';
import { timeRoundRobin } from './timing.js';

const MODEL = 'models/mlp.onnx';
const POLICIES = ['fp32', 'fp16', 'bf16', 'fp8'];
const fmt = (x: number, d = 2) => x.toFixed(d);

async function compileSection(ctx: SectionContext): Promise<void> {
  for (const policy of POLICIES) {
    const times: number[] = [];
    for (let i = 0; i < 7; i++) {
      const t0 = performance.now();
      compileModel(MODEL, { policy, batch: 128 });
      times.push(performance.now() - t0);
    }
    times.sort((a, b) => a - b);
    ctx.report(policy, { 'median ms': fmt(times[3], 1), 'min ms': fmt(times[0], 1) });
  }
  ctx.note('import + all passes + WGSL generation, in memory (no files written); 7 runs each.');
}

async function engineFor(policy: string, batch: number): Promise<Engine> {
  const dir = join(mkdtempSync(join(tmpdir(), 'mpc-bench-')), policy);
  // As `mpc compile` does by default: kernels for the local adapter's subgroup size.
  const subgroupSize = (await getGpu()).subgroupSize;
  writeCompiled(dir, compileModel(MODEL, { policy, batch, target: { f16: true, subgroupSize } }));
  return gpuEngine(loadProgramDir(dir));
}

async function trainStepSection(ctx: SectionContext): Promise<void> {
  const batch = 128;
  const x = Float32Array.from({ length: batch * 784 }, (_, i) => ((i * 7919) % 256) / 255);
  const y = Int32Array.from({ length: batch }, (_, i) => i % 10);
  const contenders = [];
  for (const policy of POLICIES) {
    const e = await engineFor(policy, batch);
    contenders.push({
      name: policy,
      run: async () => {
        for (let i = 0; i < 5; i++) e.trainStep(x, y);
        await e.loss();
      },
    });
  }
  const t = await timeRoundRobin(contenders, { warmup: 1, minRounds: 3, maxRounds: 8, budgetMs: 40_000 });
  const base = t.find((r) => r.name === 'fp32')!.medianMs;
  for (const r of t)
    ctx.report(r.name, { 'ms/step': fmt(r.medianMs / 5), 'steps/s': fmt(5000 / r.medianMs, 1), 'x fp32': `${fmt(base / r.medianMs)}x` });
  ctx.note(`MLP 784-256-10, batch ${batch}, Adam: forward, loss, backward, optimizer (and loss scaling / fp8 scaling); 5 steps per sample, one read-back.`);
}

async function inferenceSection(ctx: SectionContext): Promise<void> {
  const batch = 256;
  const x = Float32Array.from({ length: batch * 784 }, (_, i) => ((i * 7919) % 256) / 255);
  const contenders = [];
  for (const policy of ['fp32', 'fp16']) {
    const e = await engineFor(policy, batch);
    contenders.push({ name: `mpc ${policy}`, run: async () => void (await e.predict(x)) });
  }
  let note = '';
  try {
    const ort = await import('onnxruntime-node');
    await getGpu();
    const s = await ort.InferenceSession.create(readFileSync(MODEL), { executionProviders: ['webgpu'] });
    const feed = new ort.Tensor('float32', x, [batch, 1, 28, 28]);
    contenders.push({ name: 'onnxruntime webgpu fp32', run: async () => void (await s.run({ input: feed })) });
  } catch (e) {
    note = `onnxruntime webgpu: n/a: ${(e as Error).message.split('\n')[0]}`;
  }
  const t = await timeRoundRobin(contenders, { warmup: 2, minRounds: 5, maxRounds: 20, budgetMs: 20_000 });
  const peer = t.find((r) => r.name.startsWith('onnxruntime'))?.medianMs;
  for (const r of t) ctx.report(r.name, { 'median ms': fmt(r.medianMs), 'x ort': peer ? `${fmt(peer / r.medianMs)}x` : 'n/a' });
  ctx.note(`MLP forward at batch ${batch}, input upload and logits read-back included on both sides.`);
  if (note) ctx.note(note);
}

registerSection('compile', compileSection, 'compile time of the MLP per policy');
registerSection('train-step', trainStepSection, 'MLP training step time per policy on the WebGPU device');
registerSection('inference', inferenceSection, 'MLP forward (batch 256) vs onnxruntime WebGPU');
