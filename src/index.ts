// The mpc library: `import { compile, loadProgram, train, run } from 'mpc'`. Thin, typed
// wrappers over what the CLI runs (compileModel/writeCompiled, the runtime's loaders and
// engines, the training loop, inference); the options mirror the CLI's flags.
import { compileModel, writeCompiled, type Compiled } from './compile/compile.js';
import { passCtx, type CompileOptions } from './compile/options.js';
import { runModel } from './cli/run-grad.js';
import { InputError } from './runtime/errors.js';
import { loadProgram as loadProgramFolder } from './runtime/load.js';
import { train as trainLoop, type Progress, type TrainOptions, type TrainSummary } from './runtime/train.js';
import type { LoadedProgram } from './runtime/core.js';
import type { Tensor } from './ir/tensor.js';

export type { Compiled, ProgramFile } from './compile/compile.js';
export type { CompileOptions } from './compile/options.js';
export type { Engine, LoadedProgram, Samples } from './runtime/core.js';
export type { Progress, TrainOptions, TrainSummary } from './runtime/train.js';
export type { Tensor } from './ir/tensor.js';
export type { DType } from './ir/dtypes.js';
export { InputError, GpuUnavailableError } from './runtime/errors.js';
export { cpuEngine, gpuEngine, evaluate } from './runtime/engine.js';
export { POLICY_PRESETS } from './ir/policy.js';

/** compile()'s options: `mpc compile`'s flags as fields (policy fp32 by default). */
export interface CompileApiOptions extends Partial<Omit<CompileOptions, 'policy' | 'target'>> {
  /** Precision policy: fp32 (default), fp16, bf16 or fp8 (`--policy`). */
  policy?: string;
  /** Store f16 natively (needs the shader-f16 feature) or packed two per u32 (`--f16-storage`, default native). */
  f16Storage?: 'native' | 'packed';
  /** Specialise kernels for this fixed subgroup size (`--subgroup-size N`); default off. */
  subgroupSize?: number;
  /** Write the output folder here (as `mpc compile -o`): program.json, kernels, train.mjs, runtime/, index.html. */
  out?: string;
  /** With `out`: also write data.safetensors for index.html, the first N Fashion-MNIST training images (`--web-data N`). */
  webData?: number;
}

function compileOptions(o: CompileApiOptions): CompileOptions {
  const { f16Storage, subgroupSize, out: _out, webData: _webData, policy, ...rest } = o;
  return { ...rest, policy: policy ?? 'fp32', target: { f16: (f16Storage ?? 'native') === 'native', subgroupSize } };
}

/** Options the user got wrong (an unknown policy...) are input errors, as on the command line. */
function checked<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw e instanceof InputError ? e : new InputError((e as Error).message);
  }
}

/**
 * Lowers an ONNX model into a training program (`mpc compile`): the training and inference
 * graphs, the kernels and program.json. With `out`, writes the output folder too.
 */
export async function compile(model: string, opts: CompileApiOptions = {}): Promise<Compiled> {
  const o = compileOptions(opts);
  checked(() => passCtx(o));
  const c = compileModel(model, o);
  if (opts.out !== undefined) writeCompiled(opts.out, c, { webData: opts.webData });
  else if (opts.webData !== undefined) throw new InputError('webData needs out (the folder to write data.safetensors into)');
  return c;
}

/** A compiled output folder (program.json, kernels, initial weights), as the runtime loads it. */
export function loadProgram(dir: string): LoadedProgram {
  return loadProgramFolder(dir);
}

/** train()'s options: `mpc train`'s flags as fields; `data` is required. */
export type TrainApiOptions = Omit<TrainOptions, 'dir' | 'epochs' | 'backend' | 'seed' | 'logEvery'> &
  Partial<Pick<TrainOptions, 'epochs' | 'backend' | 'seed' | 'logEvery'>> & {
    /** Called as training goes (start, loss updates, stop); default silent. */
    progress?: Progress;
  };

const SILENT: Progress = { start() {}, update() {}, stop() {}, log() {} };

/** Trains the program in a compiled output folder (`mpc train <dir>`); writes the trained weights. */
export async function train(dir: string, opts: TrainApiOptions): Promise<TrainSummary> {
  const { progress, ...rest } = opts;
  return trainLoop({ epochs: 1, backend: 'webgpu', seed: 0, logEvery: 10, ...rest, dir }, progress ?? SILENT);
}

/** run()'s options: `mpc run`'s flags as fields. */
export interface RunApiOptions extends CompileApiOptions {
  /** Where to run: WebGPU (default) or the CPU reference interpreter. */
  backend?: 'webgpu' | 'cpu';
}

/**
 * Inference (`mpc run`): the model's outputs, by output name, for one input whose first
 * dimension is the batch (unless `batch` is given), under the options' precision policy.
 */
export async function run(model: string, input: Tensor, opts: RunApiOptions = {}): Promise<Map<string, Tensor>> {
  const { backend, ...rest } = opts;
  const o = compileOptions(rest);
  checked(() => passCtx(o));
  const { out } = await runModel(model, (dtype) => ({ ...input, dtype }), o, { backend: backend ?? 'webgpu', batchGiven: opts.batch !== undefined });
  return out;
}
