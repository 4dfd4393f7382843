// Benchmarks of the whole compiler on the bundled MLP: compile time per policy, the training
// step per policy (ratios against fp32 measured in the same run), and inference of the MLP,
// CNN and GPT block against onnxruntime's WebGPU execution provider (the peer) on the same
// device.
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

async function engineFor(policy: string, batch: number, model = MODEL): Promise<Engine> {
  const dir = join(mkdtempSync(join(tmpdir(), 'mpc-bench-')), policy);
  // As `mpc compile` does by default: kernels for the local adapter's subgroup size.
  const subgroupSize = (await getGpu()).subgroupSize;
  writeCompiled(dir, compileModel(model, { policy, batch, target: { f16: true, subgroupSize } }));
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

/** The bundled models' forward pass, each against onnxruntime's WebGPU EP on the same input. */
const INFER_MODELS = [
  { label: 'mlp', file: 'models/mlp.onnx', batch: 256, policies: ['fp32', 'fp16'] },
  { label: 'cnn', file: 'models/cnn.onnx', batch: 256, policies: ['fp32'] },
  { label: 'gpt-block', file: 'models/gpt-block.onnx', batch: 64, policies: ['fp32'] },
];

/** Model input: images in [0, 1] (MLP, CNN) or token ids (GPT block), as onnxruntime's feed too. */
function inferInput(label: string, batch: number): { x: Float32Array | Int32Array; feed: (ort: typeof import('onnxruntime-node')) => Record<string, unknown> } {
  if (label === 'gpt-block') {
    const [T, V] = [16, 128];
    const x = Int32Array.from({ length: batch * T }, (_, i) => (i * 7919) % V);
    return { x, feed: (ort) => ({ tokens: new ort.Tensor('int64', BigInt64Array.from(x, (v) => BigInt(v)), [batch, T]) }) };
  }
  const x = Float32Array.from({ length: batch * 784 }, (_, i) => ((i * 7919) % 256) / 255);
  return { x, feed: (ort) => ({ input: new ort.Tensor('float32', x, [batch, 1, 28, 28]) }) };
}

async function inferenceSection(ctx: SectionContext): Promise<void> {
  let ort: typeof import('onnxruntime-node') | undefined;
  try {
    ort = await import('onnxruntime-node');
    await getGpu();
  } catch (e) {
    ctx.note(`onnxruntime webgpu: n/a: ${(e as Error).message.split('\n')[0]}`);
  }
  for (const m of INFER_MODELS) {
    const { x, feed } = inferInput(m.label, m.batch);
    const contenders = [];
    const outs = new Map<string, Float32Array>();
    for (const policy of m.policies) {
      const e = await engineFor(policy, m.batch, m.file);
      contenders.push({ name: `${m.label} mpc ${policy}`, run: async () => void outs.set(policy, await e.predict(x)) });
    }
    if (ort) {
      const s = await ort.InferenceSession.create(readFileSync(m.file), { executionProviders: ['webgpu'] });
      const f = feed(ort) as Record<string, import('onnxruntime-node').Tensor>;
      contenders.push({ name: `${m.label} onnxruntime webgpu fp32`, run: async () => void outs.set('ort', (await s.run(f)).logits.data as Float32Array) });
    }
    const t = await timeRoundRobin(contenders, { warmup: 2, minRounds: 5, maxRounds: 60, budgetMs: 20_000 });
    const peer = t.find((r) => r.name.includes('onnxruntime'))?.medianMs;
    for (const r of t) {
      const fp32 = r.name.endsWith('mpc fp32');
      const x = peer ? peer / r.medianMs : NaN;
      ctx.report(r.name, {
        'median ms': fmt(r.medianMs),
        'min ms': fmt(r.minMs),
        'x ort': peer ? `${fmt(x)}x` : 'n/a',
        target: fp32 ? '>= 1.5x ort' : '',
        met: fp32 ? (peer ? (x >= 1.5 ? 'yes' : 'NO') : 'n/a') : '',
      });
    }
    // Both sides compute the same logits (fp32): the comparison is of equal work.
    const ours = outs.get('fp32');
    const theirs = outs.get('ort');
    if (ours && theirs) {
      let worst = 0;
      for (let i = 0; i < ours.length; i++) worst = Math.max(worst, Math.abs(ours[i] - theirs[i]));
      ctx.note(`${m.label}: batch ${m.batch}; max |mpc fp32 - ort| ${worst.toExponential(2)} over ${ours.length} logits.`);
    }
  }
  ctx.note('forward pass (eval program), input upload and logits read-back included on both sides; same ONNX file; round-robin medians.');
  ctx.note('target: mpc fp32 >= 1.5x onnxruntime WebGPU (x ort = ort time / mpc time); GPT12: section gpt-infer.');
}

registerSection('compile', compileSection, 'compile time of the MLP per policy');
registerSection('train-step', trainStepSection, 'MLP training step time per policy on the WebGPU device');
registerSection('inference', inferenceSection, 'MLP, CNN and GPT block forward vs onnxruntime WebGPU');
