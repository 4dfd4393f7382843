// `mpc profile <dir>`: the time of every kernel of a compiled program's schedule on the
// WebGPU device, by op type and slowest first, against the time of the whole step.
import { Command, InvalidArgumentError, Option } from 'commander';
import { formatProfile, profileDir, type ScheduleName } from '../runtime/profile.js';
import { positiveInt } from './train-command.js';

export interface ProfileCliOpts {
  schedule: ScheduleName;
  reps: number;
  warmup: number;
  top: number;
  wallClock?: boolean;
  json?: boolean;
}

export function addProfileOptions(cmd: Command): Command {
  return cmd
    .addOption(new Option('--schedule <name>', 'the training step or the inference graph').choices(['train', 'eval']).default('train'))
    .option('--reps <n>', 'measured repetitions (each kernel: their median; with quantized timestamps the mean of the readings near it)', positiveInt, 10)
    .option('--warmup <n>', 'unmeasured repetitions first (lavapipe compiles a pipeline on its first dispatch)', (v: string) => {
      const n = Number(v);
      if (!Number.isInteger(n) || n < 0) throw new InvalidArgumentError('expected a non-negative integer');
      return n;
    }, 2)
    .option('--top <n>', 'how many of the slowest kernels to list', positiveInt, 10)
    .option('--wall-clock', 'time each kernel by one submit and a wait, even where the device has timestamp queries')
    .option('--json', 'print one JSON object instead of the tables');
}

export async function profileAction(dir: string, o: ProfileCliOpts): Promise<void> {
  const pr = await profileDir(dir, { schedule: o.schedule, reps: o.reps, warmup: o.warmup, method: o.wallClock ? 'wall-clock' : 'auto' });
  process.stdout.write(o.json ? JSON.stringify(pr) + '\n' : formatProfile(pr, { top: o.top }));
}
