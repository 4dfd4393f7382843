// Entry point of the generated train.mjs: trains the program in its own folder with the copy
// of the runtime that `mpc compile` put beside it (OUT/runtime/). Only Node's own modules and
// the `webgpu` package: no commander, no compiler, no CPU interpreter.
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { InputError, GpuUnavailableError } from './errors.js';
import { train, type Progress, type TrainOptions } from './train.js';

const USAGE = `usage: node train.mjs --data SPEC [options]
Trains the compiled program of this folder on WebGPU (Node with the 'webgpu' package).
  --data <spec>         training data: fashion-mnist, text:FILE, idx:IMAGES,LABELS, npy:X,Y or npz:FILE[,X,Y]
  --test-data <spec>    test data (same forms); default: the data set's test split, or the last sixth of --data
  --epochs <n>          passes over the training data (default 1)
  --steps <n>           stop after this many steps
  --lr <x>              learning rate (default: the one compiled in)
  --seed <n>            shuffling seed (default 0)
  --save <file>         trained weights (safetensors keyed by ONNX initializer name); default <dir>/trained.safetensors
  --log-every <n>       read the loss back every N steps (default 10)
  --fp8-stats           with --json: each fp8 tensor's statistics at every log step
  --checkpoint <file>   write parameters and all training state at the end
  --resume <file>       start from a checkpoint written by --checkpoint
  --json                print a JSON summary as the last line of stdout
  --quiet               no progress display
  --backend webgpu      where to run (the copied runtime runs on WebGPU only; 'mpc train --backend cpu' runs the interpreter)
`;

function int(name: string, v: string | undefined, dflt: number | undefined, min: number): number | undefined {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new InputError(`option '--${name} <n>' argument '${v}' is invalid: expected ${min > 0 ? 'a positive' : 'a non-negative'} integer`);
  return n;
}

/** Parses train.mjs's command line into training options (InputError on a bad one). */
export function parseStandaloneArgs(dir: string, argv: string[]): TrainOptions & { json?: boolean; quiet?: boolean; help?: boolean } {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        data: { type: 'string' },
        'test-data': { type: 'string' },
        epochs: { type: 'string' },
        steps: { type: 'string' },
        lr: { type: 'string' },
        seed: { type: 'string' },
        save: { type: 'string' },
        'log-every': { type: 'string' },
        'fp8-stats': { type: 'boolean' },
        checkpoint: { type: 'string' },
        resume: { type: 'string' },
        json: { type: 'boolean' },
        quiet: { type: 'boolean' },
        backend: { type: 'string' },
        help: { type: 'boolean', short: 'h' },
      },
    }));
  } catch (e) {
    throw new InputError(`${(e as Error).message.split('\n')[0]} (see 'node train.mjs --help')`);
  }
  const str = (k: string) => values[k] as string | undefined;
  if (values.help) return { dir, data: '', epochs: 1, backend: 'webgpu', seed: 0, logEvery: 10, help: true };
  if (!str('data')) throw new InputError("required option '--data <spec>' not specified (see 'node train.mjs --help')");
  const backend = str('backend') ?? 'webgpu';
  if (backend === 'cpu') throw new InputError("this folder's runtime runs on WebGPU only; 'mpc train <dir> --backend cpu' runs the CPU interpreter");
  if (backend !== 'webgpu') throw new InputError(`option '--backend <name>' argument '${backend}' is invalid: expected webgpu`);
  let lr: number | undefined;
  if (str('lr') !== undefined) {
    lr = Number(str('lr'));
    if (!Number.isFinite(lr) || lr <= 0) throw new InputError(`option '--lr <x>' argument '${str('lr')}' is invalid: expected a positive number`);
  }
  return {
    dir,
    data: str('data')!,
    testData: str('test-data'),
    epochs: int('epochs', str('epochs'), 1, 1)!,
    steps: int('steps', str('steps'), undefined, 1),
    lr,
    backend: 'webgpu',
    seed: int('seed', str('seed'), 0, 0)!,
    save: str('save'),
    logEvery: int('log-every', str('log-every'), 10, 1)!,
    fp8Stats: values['fp8-stats'] === true,
    checkpoint: str('checkpoint'),
    resume: str('resume'),
    json: values.json === true,
    quiet: values.quiet === true,
  };
}

/** A line on stderr every tenth of the run (or a live line on a terminal). */
function lineProgress(quiet: boolean): Progress {
  const err = process.stderr;
  if (quiet) return { start() {}, update() {}, stop() {}, log() {} };
  let total = 0;
  let next = 0;
  let t0 = 0;
  return {
    start(t, label) {
      total = t;
      next = 0;
      t0 = performance.now();
      err.write(`${label}: ${t} steps\n`);
    },
    update(done, info) {
      const rate = done / ((performance.now() - t0) / 1000);
      const text = `  step ${done}/${total}${info.loss !== undefined ? `  loss ${info.loss.toFixed(4)}` : ''}${info.scale !== undefined ? `  scale ${info.scale}` : ''}  ${rate.toFixed(1)} step/s`;
      if (err.isTTY) err.write(`\r${text}\x1b[K`);
      else if (done >= next || done === total) {
        next = done + Math.max(1, Math.floor(total / 10));
        err.write(`${text}\n`);
      }
    },
    stop() {
      if (err.isTTY) err.write('\n');
    },
    log: (line) => err.write(`${line}\n`),
  };
}

/** Runs train.mjs in the folder `dirUrl` with the arguments `argv`; returns the exit code. */
export async function main(dirUrl: URL, argv: string[]): Promise<number> {
  const dir = fileURLToPath(dirUrl);
  try {
    const o = parseStandaloneArgs(dir, argv);
    if (o.help) {
      process.stdout.write(USAGE);
      return 0;
    }
    const { json, quiet, help: _help, ...opts } = o;
    const s = await train(opts, lineProgress(quiet === true));
    const lines = [
      `policy ${s.policy} on ${s.backend} (${s.adapter}): ${s.steps} steps in ${s.seconds} s (${s.steps_per_second} step/s)`,
      `train loss ${s.train_loss.toFixed(4)}  test loss ${s.test_loss.toFixed(4)}  test accuracy ${(s.test_accuracy * 100).toFixed(2)}% (${s.test_samples} samples)` +
        (s.final_loss_scale !== null ? `  loss scale ${s.final_loss_scale}, ${s.skipped_steps} skipped steps` : ''),
      `weights: ${s.weights}` + (s.checkpoint ? `  checkpoint: ${s.checkpoint}` : ''),
    ];
    if (json) {
      process.stderr.write(lines.join('\n') + '\n');
      process.stdout.write(JSON.stringify(s) + '\n');
    } else process.stdout.write(lines.join('\n') + '\n');
    return 0;
  } catch (e) {
    const err = e instanceof Error ? e : new Error(String(e));
    const user = err instanceof InputError || err instanceof GpuUnavailableError;
    const line = err.message.split('\n')[0];
    process.stderr.write(user ? `mpc: ${line}\n` : `mpc: internal error: ${line} (MPC_DEBUG=1 shows details)\n`);
    if (process.env.MPC_DEBUG) process.stderr.write(`${err.stack ?? ''}\n`);
    return user ? 2 : 1;
  }
}
