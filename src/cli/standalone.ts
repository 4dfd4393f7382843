// Entry point of the generated train.mjs: trains the program in its own folder.
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { addTrainOptions, trainAction, type TrainCliOpts } from './train-command.js';
import { EXIT_USAGE, oneLineUsageErrors, reportError } from './errors.js';

export async function main(dirUrl: URL, argv: string[]): Promise<number> {
  const dir = fileURLToPath(dirUrl);
  const cmd = oneLineUsageErrors(addTrainOptions(new Command('train.mjs').description(`train the program in ${dir}`)), 'node train.mjs --help').exitOverride();
  try {
    cmd.parse(argv, { from: 'user' });
  } catch (e) {
    return (e as { exitCode?: number }).exitCode === 0 ? 0 : EXIT_USAGE;
  }
  try {
    await trainAction(dir, cmd.opts<TrainCliOpts>());
    return 0;
  } catch (e) {
    return reportError(e);
  }
}
