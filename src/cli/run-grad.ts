// `mpc run` (inference on given inputs) and `mpc grad` (the loss and every parameter's
// gradient for one batch — what a user reaches for when a mixed-precision run diverges).
import { existsSync, renameSync, rmSync } from 'node:fs';
import { basename, dirname, join } from 'node:path';
import { isFloat } from '../ir/dtypes.js';
import type { Tensor } from '../ir/tensor.js';
import type { Graph } from '../ir/graph.js';
import type { PassCtx } from '../passes/pass.js';
import { readNpy, saveNpy, writeNpz, type NpyArray } from '../data/npy.js';
import { importOnnxFile, InputError } from '../onnx/import.js';
import { applyWeights, readWeightsFile } from '../onnx/weights.js';
import { lowerModel } from '../compile/compile.js';
import { passCtx, type CompileOptions } from '../compile/options.js';
import { EVAL_PIPELINE, TRAIN_PIPELINE } from '../passes/pipeline.js';
import type { GradMeta } from '../passes/autodiff.js';
import { runOnce } from '../runtime/run-once.js';
import { checkOutputPath, fsReason } from '../runtime/output-path.js';

function readInput(path: string, dtype: Tensor['dtype'], what: string): Tensor {
  if (!existsSync(path)) throw new InputError(`${what} ${path}: no such file`);
  let a: NpyArray;
  try {
    a = readNpy(path);
  } catch (e) {
    throw new InputError(`${what}: ${(e as Error).message.split('\n')[0]}`);
  }
  const data = isFloat(dtype) ? Float32Array.from(a.data) : Int32Array.from(a.data);
  return { dtype, shape: [...a.shape], data };
}

function toNpy(t: Tensor): NpyArray {
  return isFloat(t.dtype)
    ? { dtype: 'f4', shape: t.shape, data: t.data instanceof Float32Array ? t.data : Float32Array.from(t.data) }
    : { dtype: 'i8', shape: t.shape, data: t.data as Int32Array };
}

/** Writes to a temporary name and renames, so a failure leaves no partial file. */
function writeAtomically(path: string, write: (tmp: string) => void): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}${path.endsWith('.npz') ? '.npz' : '.npy'}`);
  try {
    write(tmp);
    renameSync(tmp, path);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      /* nothing was created */
    }
    throw new InputError(`${path}: cannot write (${fsReason(e)})`);
  }
}

function withBatch(opts: CompileOptions, x: Tensor, explicitBatch: boolean): CompileOptions {
  return explicitBatch ? opts : { ...opts, batch: x.shape[0] };
}

/**
 * Inference: the model's outputs for one input (read by `input` once the input's dtype is
 * known), under a precision policy, on WebGPU or the CPU interpreter. The batch is the
 * input's first dimension unless `batchGiven`. `mpc run` and the library's run() call this.
 */
export async function runModel(
  model: string,
  input: (dtype: Tensor['dtype']) => Tensor,
  opts: CompileOptions,
  o: { backend: 'webgpu' | 'cpu'; batchGiven?: boolean; inputLabel?: string },
): Promise<{ g: Graph; out: Map<string, Tensor>; ctx: PassCtx }> {
  const g0 = importOnnxFile(model, { consts: opts.consts });
  if (opts.weights) applyWeights(g0, readWeightsFile(opts.weights), `--weights ${opts.weights}`);
  if (g0.inputs.length !== 1) throw new InputError(`${model}: mpc run feeds one input; the model has ${g0.inputs.length}`);
  const inName = g0.inputs[0];
  const x = input(g0.values.get(inName)!.dtype);
  const ctx = passCtx(withBatch({ ...opts, loss: 'none' }, x, o.batchGiven === true));
  const g = lowerModel(g0, ctx, EVAL_PIPELINE, model);
  const shape = g.values.get(inName)!.shape.join(',');
  if (shape !== x.shape.join(',')) throw new InputError(`${o.inputLabel ?? 'the input'}: shape [${x.shape}], the model's '${inName}' takes [${shape}]`);
  const out = await runOnce(g, { [inName]: x }, g.outputs, o.backend, ctx.target);
  return { g, out, ctx };
}

export async function runCommand(model: string, o: { input: string; output: string; backend: 'webgpu' | 'cpu'; batchGiven: boolean }, opts: CompileOptions): Promise<void> {
  checkOutputPath(o.output, '--output', 'file'); // before any work
  const { g, out, ctx } = await runModel(model, (dtype) => readInput(o.input, dtype, '--input'), opts, { backend: o.backend, batchGiven: o.batchGiven, inputLabel: `--input ${o.input}` });
  if (o.output.endsWith('.npz')) writeAtomically(o.output, (tmp) => writeNpz(tmp, Object.fromEntries(g.outputs.map((n) => [n, toNpy(out.get(n)!)]))));
  else writeAtomically(o.output, (tmp) => saveNpy(tmp, toNpy(out.get(g.outputs[0])!)));
  process.stderr.write(`${g.outputs[0]} [${out.get(g.outputs[0])!.shape}] (${ctx.policy.name}, ${o.backend}) -> ${o.output}\n`);
}

export async function gradCommand(
  model: string,
  o: { input: string; labels: string; out: string; backend: 'webgpu' | 'cpu'; batchGiven: boolean },
  opts: CompileOptions,
): Promise<void> {
  checkOutputPath(o.out, '-o', 'file'); // before any work
  const g0 = importOnnxFile(model, { consts: opts.consts });
  if (opts.weights) applyWeights(g0, readWeightsFile(opts.weights), `--weights ${opts.weights}`);
  if (g0.inputs.length !== 1) throw new InputError(`${model}: mpc grad feeds one input; the model has ${g0.inputs.length}`);
  const inName = g0.inputs[0];
  const x = readInput(o.input, g0.values.get(inName)!.dtype, '--input');
  const ctx = passCtx(withBatch(opts, x, o.batchGiven));
  if (ctx.loss === 'none') throw new InputError('mpc grad needs a loss (--loss cross_entropy or mse)');
  const g = lowerModel(g0, ctx, TRAIN_PIPELINE, model);
  const labelsName = (g.meta.loss as { labels: string }).labels;
  const lv = g.values.get(labelsName)!;
  const y = readInput(o.labels, lv.dtype, '--labels');
  if (y.shape.join(',') !== lv.shape.join(',')) throw new InputError(`--labels ${o.labels}: shape [${y.shape}], the loss takes [${lv.shape}]`);
  const shape = g.values.get(inName)!.shape.join(',');
  if (shape !== x.shape.join(',')) throw new InputError(`--input ${o.input}: shape [${x.shape}], the model's '${inName}' takes [${shape}]`);
  const grads = (g.meta.grads as GradMeta).params;
  const lossName = (g.meta.loss as { value: string }).value;
  const got = await runOnce(g, { [inName]: x, [labelsName]: y }, [lossName, ...Object.values(grads)], o.backend, ctx.target);
  // Under loss scaling the step's gradients carry the scale (as the optimizer sees them
  // before unscaling): report the true gradients, as the optimizer uses them.
  const scale = ctx.lossScale.kind === 'none' ? 1 : ctx.lossScale.kind === 'static' ? ctx.lossScale.scale : ctx.lossScale.init;
  const arrays: Record<string, NpyArray> = { loss: toNpy(got.get(lossName)!) };
  for (const [p, d] of Object.entries(grads)) {
    const t = got.get(d)!;
    arrays[p] = toNpy(scale === 1 ? t : { ...t, data: Float32Array.from(t.data, (v) => v / scale) });
  }
  writeAtomically(o.out, (tmp) => writeNpz(tmp, arrays));
  process.stderr.write(`loss ${got.get(lossName)!.data[0]} and ${Object.keys(grads).length} gradients (${ctx.policy.name}, ${o.backend}) -> ${o.out}\n`);
}
