// Compiles a bundled model with given options, trains a few steps of its fixture batch on
// WebGPU and reads back what tests compare between two compilations of the same model: the
// losses, the trained parameters, the fp8 statistics and scales (fp8 policy) and the
// inference logits.
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { compileModel, writeCompiled } from '../../src/compile/compile.js';
import type { CompileOptions } from '../../src/compile/options.js';
import { gpuEngine, loadProgramDir } from '../../src/runtime/engine.js';
import type { Fp8Tensor } from '../../src/passes/quantize-fp8.js';
import { decodeArray, loadFixture } from './fixtures.js';

export interface TrainedProgram {
  losses: number[];
  params: number[][];
  /** Every fp8 tensor's statistics and scale after the last step, by value (fp8 policy). */
  fp8: Record<string, { stats: number[]; scale: number[] }>;
  logits: number[];
  dispatches: number;
  allocations: number;
}

/** `model` names models/<model>.onnx; batch: the fixture's first `maxBatch` samples. */
export async function trainProgram(model: string, opts: Omit<CompileOptions, 'batch'>, steps: number, maxBatch = Infinity): Promise<TrainedProgram> {
  const fx = loadFixture(`${model.startsWith('gpt') ? 'gpt' : model}-torch.json`);
  const xa = decodeArray(fx.batch.x);
  const ya = decodeArray(fx.batch.y);
  const batch = Math.min(maxBatch, xa.shape[0]);
  const x = xa.data.slice(0, (batch * xa.data.length) / xa.shape[0]) as Float32Array | Int32Array;
  const y = ya.data.slice(0, (batch * ya.data.length) / ya.shape[0]) as Int32Array;
  const dir = join(mkdtempSync(join(tmpdir(), 'mpc-train-')), 'out');
  const c = compileModel(`models/${model}.onnx`, { ...opts, batch });
  writeCompiled(dir, c);
  const e = await gpuEngine(loadProgramDir(dir));
  const losses = [];
  for (let i = 0; i < steps; i++) {
    e.trainStep(x, y);
    losses.push(await e.loss());
  }
  const params = await e.read(Object.keys(c.program.params));
  const fp8 = (c.train.meta.fp8 ?? []) as Fp8Tensor[];
  const st = await e.read(fp8.flatMap((t) => [t.stats, t.scale]));
  const data = (v: string) => Array.from(st.get(v)!.data);
  return {
    losses,
    params: [...params.values()].map((t) => Array.from(t.data)),
    fp8: Object.fromEntries(fp8.map((t) => [`${t.value}|${t.format}`, { stats: data(t.stats), scale: data(t.scale) }])),
    logits: Array.from(await e.predict(x)),
    dispatches: c.program.kernels.length,
    allocations: c.program.allocations.length,
  };
}
