// One clear line on stderr and a distinct exit code for every failure; a stack trace only
// with MPC_DEBUG=1.
import type { Command } from 'commander';
import { InputError } from '../onnx/import.js';
import { GpuUnavailableError } from '../runtime/device.js';

export const EXIT_USAGE = 2;
export const EXIT_INTERNAL = 1;

export function reportError(e: unknown): number {
  const err = e instanceof Error ? e : new Error(String(e));
  const user = err instanceof InputError || err instanceof GpuUnavailableError;
  const line = err.message.split('\n')[0];
  process.stderr.write(user ? `mpc: ${line}\n` : `mpc: internal error: ${line} (MPC_DEBUG=1 shows details)\n`);
  if (process.env.MPC_DEBUG) process.stderr.write(`${err.stack ?? ''}\n${err.message}\n`);
  return user ? EXIT_USAGE : EXIT_INTERNAL;
}

/**
 * Makes commander report a usage error (bad option value, unknown option, missing argument)
 * as one line, `mpc: <message> (see '<usage>')`: commander's own "(Did you mean ...?)"
 * suggestion is joined onto that line and no help text follows.
 */
export function oneLineUsageErrors(cmd: Command, helpHint: string): Command {
  return cmd.showHelpAfterError(false).configureOutput({
    outputError: (s, write) => write(`mpc: ${s.replace(/^error: /, '').trim().replace(/\s*\n\s*/g, ' ')} (see '${helpHint}')\n`),
  });
}
