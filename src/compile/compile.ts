// `mpc compile`: ONNX model → lowered training and inference graphs → kernels, program.json,
// manifest.json, init.safetensors, ir.*.json and train.mjs in an output folder. The folder
// is written under a temporary name and renamed at the end: a failure leaves no half-written
// output behind.
import { copyFileSync, mkdirSync, readdirSync, readFileSync, renameSync, rmSync, statSync, writeFileSync, type Stats } from 'node:fs';
import { basename, dirname, join, resolve } from 'node:path';
import type { Graph } from '../ir/graph.js';
import { staticShape } from '../ir/graph.js';
import { isAllZero, type Tensor } from '../ir/tensor.js';
import { graphToJson } from '../ir/serialize.js';
import { importOnnxFile, InputError } from '../onnx/import.js';
import { applyWeights, readWeightsFile, type AppliedWeights } from '../onnx/weights.js';
import { checkShapes, INTERNALS, problemLine } from '../onnx/validate.js';
import { EVAL_PIPELINE, runPipeline, TRAIN_PIPELINE, type PipelineOpts } from '../passes/pipeline.js';
import type { Pass, PassCtx } from '../passes/pass.js';
import type { GradMeta } from '../passes/autodiff.js';
import { HPARAMS, STEP } from '../passes/optimizer.js';
import { SCALE, SKIPPED } from '../passes/loss-scaling.js';
import { generate, type CodegenResult } from '../codegen/program.js';
import { writeTensorsFile } from '../data/tensor-files.js';
import type { Fp8Tensor } from '../passes/quantize-fp8.js';
import { STANDALONE_FILES, writeStandalone, type StandaloneOptions } from '../runtime/bundle.js';
import { buildManifest, type Manifest } from './manifest.js';
import { makeFolders } from '../runtime/output-path.js';
import { passCtx, type CompileOptions } from './options.js';

// program.json's format lives with the runtime that reads it (runtime/program-file.ts, which
// has no compiler dependencies, so the runtime copied next to a program stays small).
import { PROGRAM_FORMAT, PROGRAM_VERSION, type ProgramFile } from '../runtime/program-file.js';
export { PROGRAM_FORMAT, PROGRAM_VERSION, type ProgramFile };

export interface Compiled {
  train: Graph;
  eval: Graph;
  code: CodegenResult;
  program: ProgramFile;
  manifest: Manifest;
  init: Map<string, Tensor>;
  /** The model file, copied into the output folder as `model.onnx` (for mpc export). */
  source?: string;
  /** What --weights replaced (and which initializers kept the model's values). */
  weights?: AppliedWeights;
}

export function compileModel(modelPath: string, opts: CompileOptions, onPass?: (graph: string, pass: string) => void): Compiled {
  const imported = importOnnxFile(modelPath, { consts: opts.consts });
  const weights = opts.weights ? applyWeights(imported, readWeightsFile(opts.weights), `--weights ${opts.weights}`) : undefined;
  if (imported.inputs.length !== 1 || imported.outputs.length < 1)
    throw new InputError(`${modelPath}: mpc trains models with one data input and at least one output (found ${imported.inputs.length} inputs)`);
  const ctx = passCtx(opts);
  const train = lowerModel(imported, ctx, TRAIN_PIPELINE, modelPath, { onPass: (p) => onPass?.('train', p.name) });
  const evalG = lowerModel(imported, ctx, EVAL_PIPELINE, modelPath, { onPass: (p) => onPass?.('eval', p.name) });
  const grads = (train.meta.grads as GradMeta | undefined)?.params ?? {};
  const loss = (train.meta.loss as { value: string; labels: string; prediction: string } | undefined) ?? undefined;
  if (!loss) throw new InputError('compile needs a loss to build a training program (--loss cross_entropy or mse)');
  const fp8 = (train.meta.fp8 as Fp8Tensor[] | undefined) ?? [];
  // What the host reads after a step besides the graphs' inputs and outputs: the loss, and
  // the fp8 statistics (--fp8-stats).
  const keep = { train: [loss.value, ...fp8.map((t) => t.stats)] };
  const code = generate({ train, eval: evalG }, ctx.target, { keep, share: opts.planMemory, fuse: opts.fuse, gradients: Object.values(grads) });
  const tb = code.bufferOf.train;
  const program: ProgramFile = {
    format: PROGRAM_FORMAT,
    version: PROGRAM_VERSION,
    model: basename(modelPath),
    policy: ctx.policy.name,
    target: ctx.target,
    batch: staticShape(train.values.get(imported.inputs[0])!)[0],
    loss: ctx.loss,
    optimizer: ctx.optimizer,
    lossScale: ctx.lossScale,
    buffers: code.buffers,
    allocations: code.allocations,
    kernels: code.kernels,
    schedules: code.schedules as ProgramFile['schedules'],
    io: { input: imported.inputs[0], labels: loss.labels, prediction: imported.outputs[0], ...indexRangeOf(evalG, imported.inputs[0]) },
    params: Object.fromEntries(Object.keys(grads).map((p) => [p, tb[p]])),
    state: {
      hparams: tb[HPARAMS],
      step: tb[STEP],
      lossScale: tb[SCALE],
      skipped: tb[SKIPPED],
      loss: tb[loss.value],
    },
    files: { init: 'init.safetensors', trainGraph: 'ir.train.json', evalGraph: 'ir.eval.json', model: 'model.onnx' },
    fp8,
  };
  const init = new Map<string, Tensor>();
  for (const g of [train, evalG]) for (const v of g.values.values()) if (v.init && !init.has(v.name)) init.set(v.name, v.init);
  program.zeros = [...init].filter(([, t]) => isAllZero(t)).map(([name]) => name);
  return { train, eval: evalG, code, program, manifest: buildManifest(train, evalG, code, ctx), init, source: resolve(modelPath), weights };
}

/**
 * The number of rows an integer input may index: the smallest axis it is a Gather index into
 * (an embedding table), so that data can be checked on load.
 */
function indexRangeOf(g: Graph, input: string): { indexRange?: number } {
  let range: number | undefined;
  for (const n of g.nodes)
    if (n.op === 'Gather' && n.inputs[1] === input) {
      const shape = staticShape(g.values.get(n.inputs[0])!);
      const axis = Number(n.attrs.axis ?? 0);
      const dim = shape[axis < 0 ? axis + shape.length : axis];
      range = range === undefined ? dim : Math.min(range, dim);
    }
  return range === undefined ? {} : { indexRange: range };
}

/** Passes whose failures are the model's fault (a dimension left open, inconsistent shapes). */
const MODEL_PASSES = new Set(['bind-dims', 'infer-types']);

/**
 * runPipeline on an imported model. A failure while binding dimensions or inferring shapes
 * comes from the model (Gemm operands that do not fit, a Reshape to a computed shape...), so
 * it is an input error, reported as one line that names the model; a failure in a later
 * pass stays an internal error (an mpc bug).
 */
export function lowerModel(g: Graph, ctx: PassCtx, passes: readonly Pass[], label: string, opts: PipelineOpts = {}): Graph {
  let done = 0;
  try {
    return runPipeline(g, ctx, passes, {
      ...opts,
      onPass: (p, cur) => {
        done++;
        // Shapes as inferred from the model: every dimension an integer in range, every tensor within a device buffer.
        if (p.name === 'infer-types') {
          const bad = checkShapes(cur);
          if (bad.length) throw new InputError(`${label}: ${problemLine(bad)}`);
        }
        opts.onPass?.(p, cur);
      },
    });
  } catch (e) {
    const failing = passes[done]?.name;
    // A JavaScript error (TypeError, RangeError...) is mpc's bug even inside a model pass.
    // A message that shows mpc's internals (an unset value, NaN) is a bug in a shape function too.
    if (!(e instanceof InputError) && (!MODEL_PASSES.has(failing) || !(e instanceof Error) || e.constructor !== Error || INTERNALS.test(e.message))) throw e;
    throw new InputError(`${label}: ${(e as Error).message.trim().replace(/\s*\n\s*/g, ' ')}`);
  }
}

/** Why a file-system call on the output failed, in words. */
function fsReason(e: unknown): string {
  const code = (e as NodeJS.ErrnoException).code;
  const words: Record<string, string> = {
    EACCES: 'permission denied',
    EPERM: 'permission denied',
    EROFS: 'read-only file system',
    ENOTDIR: 'a part of the path is a file, not a folder',
    EEXIST: 'a part of the path is a file, not a folder',
    ENOSPC: 'no space left on the device',
    EDQUOT: 'disk quota exceeded',
  };
  return code ? `${words[code] ? `${words[code]}, ` : ''}${code}` : (e as Error).message;
}

/** The earlier program in `dir` (an output of mpc compile), or undefined when there is none. */
function earlierProgram(dir: string): Partial<ProgramFile> | undefined {
  try {
    const p = JSON.parse(readFileSync(join(dir, 'program.json'), 'utf8')) as Partial<ProgramFile>;
    return p.format === PROGRAM_FORMAT ? p : undefined;
  } catch {
    return undefined;
  }
}

/** Files `mpc train` writes into an output folder (trained weights, checkpoints, training logs). */
const TRAIN_OUTPUT = /^[^.][^/]*\.(safetensors|csv|jsonl)$/;

/** What writeCompiled puts in the output folder (beside the names in program.files). */
const COMPILE_FILES = ['kernels', 'program.json', 'manifest.json', ...STANDALONE_FILES];

/**
 * Writes the compiled program into `outDir`, atomically: into a temporary folder beside it,
 * then renamed into place. An earlier mpc output there is replaced (moved aside until the new
 * one is in place, so a failure leaves it intact); any other non-empty folder or a file is
 * refused untouched.
 */
export function writeCompiled(outDir: string, c: Compiled, opts: StandaloneOptions = {}): void {
  const out = resolve(outDir);
  let st: Stats | undefined;
  try {
    st = statSync(out);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw new InputError(`${outDir}: cannot use as the output folder (${fsReason(e)})`);
  }
  if (st && !st.isDirectory()) throw new InputError(`${outDir}: exists and is not a folder; choose another -o`);
  const entries = st ? readdirSync(out) : [];
  // Weights and checkpoints that `mpc train` wrote into an earlier output are keyed by ONNX
  // initializer name, so they stay valid for the new program: they are carried over.
  let carried: string[] = [];
  if (entries.length) {
    // Replace an earlier output only when everything else in it is compile's own: a model
    // or notes put there since would be lost.
    const earlier = earlierProgram(out);
    if (!earlier) throw new InputError(`${outDir}: exists and is not an mpc output folder; choose another -o or empty it`);
    const own = new Set([...COMPILE_FILES, ...Object.values(earlier.files ?? {})]);
    carried = entries.filter((e) => !own.has(e) && TRAIN_OUTPUT.test(e));
    const foreign = entries.filter((e) => !own.has(e) && !TRAIN_OUTPUT.test(e));
    if (foreign.length)
      throw new InputError(
        `${outDir}: holds an earlier mpc output plus files that compile did not write (${foreign.slice(0, 3).join(', ')}${foreign.length > 3 ? `, +${foreign.length - 3} more` : ''}); move them away or choose another -o`,
      );
  }
  const parent = dirname(out);
  try {
    makeFolders(parent);
  } catch (e) {
    throw new InputError(`${outDir}: cannot create the parent folder (${fsReason(e)})`);
  }
  const tmp = join(parent, `.${basename(out)}.tmp-${process.pid}`);
  const old = join(parent, `.${basename(out)}.old-${process.pid}`);
  try {
    rmSync(tmp, { recursive: true, force: true });
    mkdirSync(tmp);
    mkdirSync(join(tmp, 'kernels'));
    for (const [file, wgsl] of c.code.files) writeFileSync(join(tmp, 'kernels', file), wgsl);
    writeFileSync(join(tmp, 'program.json'), JSON.stringify(c.program, null, 1) + '\n');
    writeFileSync(join(tmp, 'manifest.json'), JSON.stringify(c.manifest, null, 1) + '\n');
    writeFileSync(join(tmp, c.program.files.trainGraph), JSON.stringify(graphToJson(c.train)) + '\n');
    writeFileSync(join(tmp, c.program.files.evalGraph), JSON.stringify(graphToJson(c.eval)) + '\n');
    const zeros = new Set(c.program.zeros ?? []);
    writeTensorsFile(join(tmp, c.program.files.init), new Map([...c.init].filter(([name]) => !zeros.has(name))), { format: 'mpc-init' });
    // train.mjs with its own copy of the runtime, index.html (and data.safetensors with --web-data).
    writeStandalone(tmp, c.program, opts);
    // A file-system copy: the model's bytes (often the largest file) never pass through JS.
    if (c.source && c.program.files.model) copyFileSync(c.source, join(tmp, c.program.files.model));
    for (const f of carried) copyFileSync(join(out, f), join(tmp, f));
    if (st) {
      rmSync(old, { recursive: true, force: true });
      renameSync(out, old);
      try {
        renameSync(tmp, out);
      } catch (e) {
        renameSync(old, out);
        throw e;
      }
    } else renameSync(tmp, out);
  } catch (e) {
    rmSync(tmp, { recursive: true, force: true });
    if ((e as NodeJS.ErrnoException).code) throw new InputError(`${outDir}: cannot write the output folder (${fsReason(e)})`);
    throw e;
  }
  // The new output is in place; the earlier one is only removed now (a leftover is harmless).
  try {
    rmSync(old, { recursive: true, force: true });
  } catch {
    /* ignore */
  }
}
