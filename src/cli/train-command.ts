// The `train` options and action, shared by `mpc train` and the generated train.mjs.
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Command, InvalidArgumentError, Option } from 'commander';
import { DEFAULT_MAX_SKIPPED, train } from '../runtime/train.js';
import { formatProfile, profileDir } from '../runtime/profile.js';
import { InputError } from '../onnx/import.js';
import { createProgress } from './progress.js';

export function positiveInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError('expected a positive integer');
  return n;
}

export function nonNegativeInt(v: string): number {
  const n = Number(v);
  if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
  return n;
}

export function positiveFloat(v: string): number {
  const n = Number(v);
  if (!Number.isFinite(n) || n <= 0) throw new InvalidArgumentError('expected a positive number');
  return n;
}

export function addTrainOptions(cmd: Command): Command {
  return cmd
    .requiredOption('--data <spec>', 'training data: fashion-mnist, idx:IMAGES,LABELS or npy:X,Y')
    .option('--test-data <spec>', 'test data (same forms); default: the data set\'s test split, or the last sixth of --data')
    .option('--epochs <n>', 'passes over the training data', positiveInt, 1)
    .option('--steps <n>', 'train this many steps, crossing epochs as needed (takes the place of --epochs)', positiveInt)
    .option('--batch <n>', 'not a training option: the batch size is fixed when the program is compiled (mpc compile --batch N)')
    .option('--log <file>', 'write the losses read at log steps (every --log-every) as CSV, or JSON lines for a .jsonl name')
    .option('--lr <x>', 'learning rate (default: the one compiled in)', positiveFloat)
    .addOption(new Option('--backend <name>', 'where to run').choices(['webgpu', 'cpu']).default('webgpu'))
    .option('--seed <n>', 'shuffling and Dropout seed (a non-negative integer)', (v: string) => {
      const n = Number(v);
      if (v.trim() === '' || !Number.isInteger(n) || n < 0 || n > 0xffffffff) throw new InvalidArgumentError('expected a non-negative integer');
      return n;
    }, 0)
    .option('--save <file>', 'trained weights (safetensors keyed by ONNX initializer name); default <dir>/trained.safetensors')
    .option('--log-every <n>', 'read the loss back every N steps', positiveInt, 10)
    .option('--fp8-stats', 'each fp8 tensor\'s amax, scale, saturated and flushed fractions: in --json at every log step, else a table of the last one')
    .option('--checkpoint <file>', 'write parameters and all training state (optimizer, loss scale, fp8 scaling) at the end')
    .option('--resume <file>', 'start from a checkpoint written by --checkpoint')
    .option('--allow-nonfinite', 'train on data holding NaN/inf values (rejected by default, naming the sample); steps with non-finite gradients are skipped')
    .option('--max-skipped <n>', `stop with an error once more than N steps in a row were skipped for non-finite gradients (checked every --log-every steps; the weights of the last good step are saved)`, nonNegativeInt, DEFAULT_MAX_SKIPPED)
    .option('--profile', 'after training, time every kernel of the train schedule on a fresh copy of the program (as mpc profile <dir>; with --json the table goes to stderr and the JSON gets "profile")')
    .option('--json', 'print a JSON summary as the last line of stdout')
    .option('--quiet', 'no progress display');
}

export interface TrainCliOpts {
  data: string;
  testData?: string;
  epochs: number;
  steps?: number;
  lr?: number;
  backend: 'webgpu' | 'cpu';
  seed: number;
  save?: string;
  fp8Stats?: boolean;
  checkpoint?: string;
  resume?: string;
  allowNonfinite?: boolean;
  maxSkipped?: number;
  logEvery: number;
  json?: boolean;
  quiet?: boolean;
  profile?: boolean;
  batch?: string;
  log?: string;
}

export async function trainAction(dir: string, o: TrainCliOpts): Promise<void> {
  if (o.batch !== undefined) {
    let compiled = '';
    try {
      compiled = ` (this program's is ${JSON.parse(readFileSync(join(dir, 'program.json'), 'utf8')).batch})`;
    } catch {
      // no readable program: the generic message
    }
    throw new InputError(`--batch: the batch size is fixed when the program is compiled${compiled}; recompile with mpc compile MODEL --batch ${o.batch} -o ${dir}`);
  }
  if (o.profile && o.backend !== 'webgpu') throw new InputError('--profile times WebGPU kernels: it needs --backend webgpu');
  const progress = createProgress({ quiet: o.quiet });
  const s = await train({ dir, data: o.data, testData: o.testData, epochs: o.epochs, steps: o.steps, lr: o.lr, backend: o.backend, seed: o.seed, save: o.save, logEvery: o.logEvery, fp8Stats: o.fp8Stats, checkpoint: o.checkpoint, resume: o.resume, allowNonFinite: o.allowNonfinite, maxSkipped: o.maxSkipped, log: o.log }, progress);
  const lines = [
    `policy ${s.policy} on ${s.backend} (${s.adapter}): ${s.steps} steps in ${s.seconds} s (${s.steps_per_second} step/s)`,
    `train loss ${s.train_loss.toFixed(4)}  test loss ${s.test_loss.toFixed(4)}` +
      (s.unigram_entropy !== undefined ? ` (unigram entropy ${s.unigram_entropy.toFixed(2)})` : '') +
      `  test accuracy ${(s.test_accuracy * 100).toFixed(2)}% (${s.test_samples} samples)` +
      (s.final_loss_scale !== null ? `  loss scale ${s.final_loss_scale}, ${s.skipped_steps} skipped steps` : ''),
    `weights: ${s.weights}` + (s.checkpoint ? `  checkpoint: ${s.checkpoint}` : '') + (s.log ? `  log: ${s.log}` : ''),
  ];
  const last = s.fp8_stats?.at(-1);
  if (last && !o.json) lines.push('', fp8Table(last));
  // Skipped steps are a warning on their own line (stderr), whatever the policy.
  if (s.skipped_steps > 0)
    process.stderr.write(`mpc: warning: ${s.skipped_steps} of ${s.steps} steps were skipped for non-finite (inf/NaN) gradients; their updates were not applied\n`);
  const profile = o.profile ? await profileDir(dir, { schedule: 'train' }) : undefined;
  if (profile) lines.push('', formatProfile(profile).trimEnd());
  if (o.json) {
    process.stderr.write(lines.join('\n') + '\n');
    process.stdout.write(JSON.stringify(profile ? { ...s, profile } : s) + '\n');
  } else process.stdout.write(lines.join('\n') + '\n');
}

/** The fp8 statistics of one log step as a table (mpc train --fp8-stats without --json). */
export function fp8Table(st: { step: number; tensors: Record<string, { format: string; amax: number; scale: number; saturated: number; flushed: number }> }): string {
  const rows = Object.entries(st.tensors);
  const w = Math.max(6, ...rows.map(([name]) => name.length));
  const head = `fp8 tensors at step ${st.step}:\n  ${'tensor'.padEnd(w)}  format     amax         scale        saturated  flushed`;
  const pct = (f: number) => `${(100 * f).toFixed(2)}%`.padStart(9);
  return [
    head,
    ...rows.map(([name, t]) => `  ${name.padEnd(w)}  ${t.format.padEnd(9)}  ${t.amax.toExponential(3).padEnd(11)}  ${t.scale.toExponential(3).padEnd(11)}  ${pct(t.saturated)}  ${pct(t.flushed)}`),
  ].join('\n');
}
