// The mpc command line.
import { Command, InvalidArgumentError, Option } from 'commander';
import { compileModel, lowerModel, writeCompiled } from '../compile/compile.js';
import type { CompileOptions } from '../compile/options.js';
import type { Manifest } from '../compile/manifest.js';
import { DEFAULT_BATCH, passCtx } from '../compile/options.js';
import { parseOverride, POLICY_PRESETS, type ClassOverride } from '../ir/policy.js';
import { printGraph } from '../ir/print.js';
import { formatSummary, summarize, toDot } from '../ir/summary.js';
import { graphToJson } from '../ir/serialize.js';
import { importOnnxFile, InputError } from '../onnx/import.js';
import { readNpy } from '../data/npy.js';
import type { Tensor } from '../ir/tensor.js';
import { EVAL_PIPELINE, TRAIN_PIPELINE } from '../passes/pipeline.js';
import { spawnSync } from 'node:child_process';
import { checkOutputPath } from '../runtime/output-path.js';
import { EXIT_USAGE, oneLineUsageErrors, reportError } from './errors.js';
import { gradCommand, runCommand } from './run-grad.js';
import { addTrainOptions, positiveFloat, positiveInt, trainAction, type TrainCliOpts } from './train-command.js';
import { addProfileOptions, profileAction, type ProfileCliOpts } from './profile-command.js';
import { addExportOptions, exportAction, type ExportCliOpts } from './export-command.js';

interface CompileCliOpts {
  policy: string;
  loss: 'cross_entropy' | 'mse' | 'none';
  batch: number;
  dim: Record<string, number>;
  class: ClassOverride[];
  optimizer: 'sgd' | 'adam' | 'adamw';
  lr?: number;
  momentum?: number;
  weightDecay?: number;
  lossScale?: string;
  growthInterval?: number;
  f16Storage: 'native' | 'packed';
  fp8Scaling: 'delayed' | 'current';
  fp8Amax: 'max' | 'most_recent';
  fp8History: number;
  fp8Margin: number;
  fp8High: 'bf16' | 'fp16';
  subgroupSize: string;
  train: string[];
  freeze: string[];
  const: Record<string, string>;
  weights?: string;
}

function addCompileOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--policy <name>', 'precision policy').choices(Object.keys(POLICY_PRESETS)).default('fp32'))
    .addOption(new Option('--loss <kind>', 'training loss on the first output').choices(['cross_entropy', 'mse', 'none']).default('cross_entropy'))
    .option('--batch <n>', 'batch size (binds the dynamic batch dimension)', positiveInt, DEFAULT_BATCH)
    .option('--dim <name=n>', 'value of another symbolic dimension (repeatable)', (v: string, acc: Record<string, number>) => {
      const [k, n] = v.split('=');
      if (!k || !n || !(Number(n) > 0)) throw new InvalidArgumentError('expected NAME=N');
      return { ...acc, [k]: Number(n) };
    }, {})
    .option('--class <op=class>', 'move an op type (Softmax=allow) or nodes (node:GLOB=deny) to another precision class (repeatable)', (v: string, acc: ClassOverride[]) => {
      try {
        return [...acc, parseOverride(v)];
      } catch (e) {
        throw new InvalidArgumentError((e as Error).message);
      }
    }, [])
    .addOption(new Option('--optimizer <name>', 'optimizer').choices(['sgd', 'adam', 'adamw']).default('adam'))
    .option('--lr <x>', 'learning rate (default: sgd 0.05, adam/adamw 1e-3)', positiveFloat)
    .option('--momentum <x>', 'SGD momentum, in [0, 1) (default 0.9)', (v: string) => {
      const n = Number(v);
      if (v.trim() === '' || !(n >= 0 && n < 1)) throw new InvalidArgumentError('expected a number in [0, 1)');
      return n;
    })
    .option('--weight-decay <x>', 'weight decay, >= 0 (default 0; adamw 0.01)', (v: string) => {
      const n = Number(v);
      if (v.trim() === '' || !(n >= 0 && Number.isFinite(n))) throw new InvalidArgumentError('expected a non-negative number');
      return n;
    })
    .option('--loss-scale <mode>', 'dynamic | static:N | none (default: dynamic for fp16, none otherwise)')
    .option('--growth-interval <n>', 'finite steps before the dynamic loss scale doubles (default 2000)', positiveInt)
    .addOption(new Option('--f16-storage <mode>', 'store f16 as WGSL f16 (needs shader-f16) or packed in u32').choices(['native', 'packed']).default('native'))
    .addOption(new Option('--fp8-scaling <recipe>', 'fp8: scale from the amax history of earlier steps, or of the tensor itself').choices(['delayed', 'current']).default('delayed'))
    .addOption(new Option('--fp8-amax <how>', 'fp8 delayed scaling: amax of the history').choices(['max', 'most_recent']).default('max'))
    .option('--fp8-history <n>', 'fp8 amax history length', positiveInt, 16)
    .option('--fp8-margin <n>', 'fp8 scale = (fp8_max / amax) / 2^margin', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
      return n;
    }, 0)
    .option('--subgroup-size <n>', "use subgroup operations for this fixed subgroup size: 'auto' (the local adapter's, if any), 'off', or N", 'auto')
    .option('--train <glob>', 'train only the parameters matching GLOB (* and ?; repeatable); the others stay fixed', (v: string, acc: string[]) => [...acc, v], [])
    .option('--freeze <glob>', 'keep the parameters matching GLOB fixed (repeatable)', (v: string, acc: string[]) => [...acc, v], [])
    .option('--const <name=file>', 'bind a model input to fixed contents from a .npy file (repeatable), e.g. an attention mask or a shape input', (v: string, acc: Record<string, string>) => {
      const i = v.indexOf('=');
      if (i <= 0 || i === v.length - 1) throw new InvalidArgumentError('expected NAME=FILE.npy');
      return { ...acc, [v.slice(0, i)]: v.slice(i + 1) };
    }, {})
    .option('--weights <file.safetensors>', 'start from these weights (keyed by ONNX initializer name, e.g. trained.safetensors of mpc train) instead of the model\'s own')
    .addOption(new Option('--fp8-high <type>', 'fp8 policy: type of everything that is not an fp8 GEMM operand').choices(['bf16', 'fp16']).default('bf16'));
}

function compileOptions(o: CompileCliOpts): CompileOptions {
  return {
    policy: o.policy,
    overrides: o.class,
    batch: o.batch,
    dims: o.dim,
    loss: o.loss,
    optimizer: { kind: o.optimizer, lr: o.lr, momentum: o.momentum, weightDecay: o.weightDecay },
    lossScale: o.lossScale,
    growthInterval: o.growthInterval,
    target: { f16: o.f16Storage === 'native' },
    fp8: { scaling: o.fp8Scaling, amax: o.fp8Amax, history: o.fp8History, margin: o.fp8Margin },
    fp8High: o.fp8High === 'fp16' ? 'f16' : undefined,
    train: o.train,
    freeze: o.freeze,
    consts: readConsts(o.const ?? {}),
    weights: o.weights,
  };
}

/** --const NAME=FILE.npy: the arrays as tensors (dtype checked against the input on import). */
function readConsts(files: Record<string, string>): Record<string, Tensor> {
  const out: Record<string, Tensor> = {};
  for (const [name, file] of Object.entries(files)) {
    let a;
    try {
      a = readNpy(file);
    } catch (e) {
      throw new InputError(`--const ${name}: ${(e as Error).message}`);
    }
    const dtype = a.dtype === 'b1' ? 'bool' : a.dtype.startsWith('f') ? 'f32' : 'i32';
    out[name] = { dtype, shape: a.shape, data: dtype === 'f32' ? Float32Array.from(a.data) : Int32Array.from(a.data) };
  }
  return out;
}

/** --subgroup-size: 'off', a number, or 'auto' = the local adapter's fixed size (if any). */
async function subgroupSize(v: string): Promise<number | undefined> {
  if (v === 'off') return undefined;
  if (v !== 'auto') {
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1 || (n & (n - 1)) !== 0) throw new InputError(`--subgroup-size must be auto, off or a power of two, got '${v}'`);
    return n;
  }
  return probeSubgroupSize();
}

/**
 * Asks the local adapter for its fixed subgroup size in a child process: opening a Dawn
 * adapter prints driver warnings on stderr, which must not reach a command's own output.
 */
function probeSubgroupSize(): number | undefined {
  const device = new URL('../runtime/device.js', import.meta.url).href;
  const code = `const { getGpu } = await import(${JSON.stringify(device)}); try { const g = await getGpu(); console.log(g.subgroupSize ?? ''); } catch { console.log(''); } process.exit(0);`;
  const r = spawnSync(process.execPath, ['--input-type=module', '-e', code], { encoding: 'utf8', timeout: 60_000 });
  const n = Number(r.stdout?.trim());
  return r.status === 0 && Number.isInteger(n) && n > 0 ? n : undefined;
}

/** The trained/frozen/state initializers, for the compile summary (names listed when few). */
function paramLines(p: Manifest['params']): string[] {
  const list = (names: string[]) => (names.length <= 12 ? names.join(', ') : `${names.slice(0, 12).join(', ')}, +${names.length - 12} more`);
  const lines = [`  trained parameters: ${p.trained.length}${p.trained.length ? ` (${list(p.trained)})` : ''}`];
  if (p.frozen.length) lines.push(`  frozen: ${p.frozen.map((f) => `${f.name} (${f.reason})`).slice(0, 12).join(', ')}${p.frozen.length > 12 ? `, +${p.frozen.length - 12} more` : ''}`);
  if (p.state.length) lines.push(`  running statistics (updated as state): ${list(p.state)}`);
  return lines;
}

function kib(n: number): string {
  return n >= 1 << 20 ? `${(n / (1 << 20)).toFixed(2)} MiB` : `${(n / 1024).toFixed(1)} KiB`;
}

/** Wraps an action: one line and exit code 2 for bad input, never a stack trace. */
function run<A extends unknown[]>(fn: (...a: A) => Promise<void> | void): (...a: A) => Promise<void> {
  return async (...a: A) => {
    try {
      await fn(...a);
    } catch (e) {
      process.exitCode = reportError(e);
    }
  };
}

// User-facing errors from options (unknown policy...) are input errors.
function asInput<T>(f: () => T): T {
  try {
    return f();
  } catch (e) {
    throw e instanceof InputError ? e : new InputError((e as Error).message);
  }
}

export function buildCli(): Command {
  // Usage errors are one line (no help text after them) with exit code 2; subcommands
  // inherit this and get their own help hint.
  const program = oneLineUsageErrors(
    new Command('mpc')
      .description('Mixed-precision training compiler: ONNX model + precision policy -> WGSL kernels and a WebGPU training program')
      .version('0.1.0'),
    'mpc --help',
  ).exitOverride((e) => process.exit(e.exitCode === 0 ? 0 : EXIT_USAGE));
  const sub = (name: string) => oneLineUsageErrors(program.command(name), `mpc ${name} --help`);

  addCompileOptions(
    sub('compile')
      .description('lower a model and write kernels/, program.json, manifest.json, init.safetensors and train.mjs')
      .argument('<model.onnx>', 'ONNX model')
      .requiredOption('-o, --out <dir>', 'output folder (created; replaced if it holds an earlier mpc output)'),
  )
    .option('--quiet', 'print nothing on success')
    .option('--web-data <n>', 'also write data.safetensors for index.html: the first N Fashion-MNIST training images and a test split', positiveInt)
    .action(
      run(async (model: string, o: CompileCliOpts & { out: string; quiet?: boolean; webData?: number }) => {
        const t0 = performance.now();
        checkOutputPath(o.out, '-o', 'folder'); // before any work
        const opts = compileOptions(o);
        opts.target = { ...opts.target, subgroupSize: await subgroupSize(o.subgroupSize) };
        asInput(() => passCtx(opts));
        const c = compileModel(model, opts);
        writeCompiled(o.out, c, { webData: o.webData });
        for (const rule of (c.train.meta.unmatchedOverrides as string[] | undefined) ?? [])
          process.stderr.write(`mpc: warning: --class ${rule} matches no op type or node of the model\n`);
        if (o.quiet) return;
        const m = c.manifest.memory;
        const casts = c.manifest.casts.filter((x) => x.graph === 'train').length;
        const lines = [
          `compiled ${model} with policy ${c.program.policy} (batch ${c.program.batch}, ${c.program.optimizer.kind}, loss scale ${c.program.lossScale.kind}) in ${((performance.now() - t0) / 1000).toFixed(2)} s`,
          `  ${c.program.kernels.length} kernel dispatches (${c.code.files.size} distinct kernels), ${c.program.buffers.length} buffers in ${c.program.allocations.length} allocations, ${casts} casts in the training step`,
          `  device memory: ${Object.entries(m.byRole).map(([r, b]) => `${r} ${kib(b)}`).join(', ')}`,
          `  activations: ${kib(m.plan.activation.planned)} planned (${kib(m.plan.activation.unplanned)} with a buffer per value)`,
          ...(m.plan.train
            ? [`  training step: ${kib(m.plan.train.saved)} saved for backward; peak ${kib(m.plan.train.peak)} live (${kib(m.plan.train.peakWithoutGradients)} without the ${kib(m.plan.train.gradients)} of parameter gradients)`]
            : []),
          `  GEMM operands: ${kib(m.gemmOperands.bytes)} (${((100 * m.gemmOperands.bytes) / m.gemmOperands.f32Bytes).toFixed(0)}% of fp32)`,
          ...paramLines(c.manifest.params),
          ...(c.weights ? [`  --weights: ${c.weights.applied.length} initializers from ${o.weights}${c.weights.kept.length ? `; the model's own values kept for ${c.weights.kept.join(', ')}` : ''}`] : []),
          `  -> ${o.out}`,
        ];
        process.stdout.write(lines.join('\n') + '\n');
      }),
    );

  addCompileOptions(
    sub('inspect')
      .description('print the lowered IR after a pass (default: after the last one)')
      .argument('[model.onnx]', 'ONNX model')
      .option('--after <pass>', 'stop after this pass')
      .addOption(new Option('--graph <which>', 'the training step or the inference graph').choices(['train', 'eval']).default('train'))
      .option('--list-passes', 'list the passes in order and exit')
      .addOption(new Option('--format <format>', 'text (a summary, then the graph), json, or dot (Graphviz)').choices(['text', 'json', 'dot']).default('text')),
  ).action(
    run(async (model: string | undefined, o: CompileCliOpts & { after?: string; graph: 'train' | 'eval'; listPasses?: boolean; format: 'text' | 'json' | 'dot' }) => {
      const passes = o.graph === 'eval' ? EVAL_PIPELINE : TRAIN_PIPELINE;
      if (o.listPasses) {
        process.stdout.write(passes.map((p) => `${p.name.padEnd(18)} ${p.doc}`).join('\n') + '\n');
        return;
      }
      if (!model) throw new InputError('inspect needs a model (or --list-passes)');
      if (o.after && !passes.some((p) => p.name === o.after))
        throw new InputError(`unknown pass '${o.after}' for the ${o.graph} graph (passes: ${passes.map((p) => p.name).join(', ')})`);
      const opts = compileOptions(o);
      // The inference graph depends on the subgroup size (weight-layout), as `mpc compile` sees it.
      if (o.graph === 'eval') opts.target = { ...opts.target, subgroupSize: await subgroupSize(o.subgroupSize) };
      const ctx = asInput(() => passCtx(opts));
      const g = lowerModel(importOnnxFile(model, { consts: opts.consts }), ctx, passes, model, { after: o.after });
      const after = o.after ?? passes[passes.length - 1].name;
      if (o.format === 'json') process.stdout.write(JSON.stringify({ graph: o.graph, after, policy: ctx.policy.name, summary: summarize(g), ir: graphToJson(g) }) + '\n');
      else if (o.format === 'dot') process.stdout.write(toDot(g));
      else process.stdout.write(`# ${o.graph} graph after ${after}, policy ${ctx.policy.name}\n${formatSummary(summarize(g))}${printGraph(g)}`);
    }),
  );

  addTrainOptions(sub('train').description('run a compiled training program').argument('<dir>', 'output folder of mpc compile')).action(
    run((dir: string, o: TrainCliOpts) => trainAction(dir, o)),
  );

  addProfileOptions(sub('profile').description('time every kernel of a compiled program on the WebGPU device').argument('<dir>', 'output folder of mpc compile')).action(
    run((dir: string, o: ProfileCliOpts) => profileAction(dir, o)),
  );

  addExportOptions(sub('export').description('write a compiled (and trained) model as ONNX: the fp32 original with its trained weights, or the mixed-precision inference graph').argument('<dir>', 'output folder of mpc compile')).action(
    run((dir: string, o: ExportCliOpts) => exportAction(dir, o)),
  );

  const backend = () => new Option('--backend <name>', 'where to run').choices(['webgpu', 'cpu']).default('webgpu');
  // --batch defaults to the input's first dimension for run and grad.
  const batchGiven = (cmd: Command) => cmd.getOptionValueSource('batch') === 'cli';

  const runCmd = addCompileOptions(
    sub('run')
      .description('inference on given inputs: the model\'s outputs for an NPY input')
      .argument('<model.onnx>', 'ONNX model')
      .requiredOption('--input <x.npy>', 'the model input (its first dimension is the batch)')
      .requiredOption('--output <y.npy|y.npz>', 'the first output as .npy, or every output as .npz')
      .addOption(backend()),
  );
  runCmd.action(
    run(async (model: string, o: CompileCliOpts & { input: string; output: string; backend: 'webgpu' | 'cpu' }) => {
      const opts = compileOptions(o);
      opts.target = { ...opts.target, subgroupSize: await subgroupSize(o.subgroupSize) };
      await runCommand(model, { ...o, batchGiven: batchGiven(runCmd) }, opts);
    }),
  );

  const gradCmd = addCompileOptions(
    sub('grad')
      .description('the loss and every parameter gradient (keyed by ONNX initializer name) for one batch, as NPZ')
      .argument('<model.onnx>', 'ONNX model')
      .requiredOption('--input <x.npy>', 'the model input (its first dimension is the batch)')
      .requiredOption('--labels <y.npy>', 'class labels (cross_entropy) or targets (mse)')
      .requiredOption('-o, --out <grads.npz>', 'output NPZ: loss and one array per parameter')
      .addOption(backend()),
  );
  gradCmd.action(
    run(async (model: string, o: CompileCliOpts & { input: string; labels: string; out: string; backend: 'webgpu' | 'cpu' }) => {
      const opts = compileOptions(o);
      opts.target = { ...opts.target, subgroupSize: await subgroupSize(o.subgroupSize) };
      await gradCommand(model, { ...o, batchGiven: batchGiven(gradCmd) }, opts);
    }),
  );
  return program;
}

export async function main(argv: string[]): Promise<void> {
  if (argv.length <= 2) {
    // commander would print the whole help on stderr; a usage error is one line.
    process.stderr.write(`mpc: no command given (compile, inspect, train, profile, export, run or grad); see 'mpc --help'\n`);
    process.exitCode = EXIT_USAGE;
    return;
  }
  await buildCli().parseAsync(argv);
}
