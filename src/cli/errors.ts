// One clear line on stderr and a distinct exit code for every failure; a stack trace only
// with MPC_DEBUG=1. An InputError (and a missing GPU) is the user's to fix: exit 2 and its
// message. Anything else (a TypeError, RangeError or plain Error thrown inside mpc) is a bug
// in mpc, whatever it says: exit 1 with a line that says so, asks for a report and names the
// op types of the model being processed, so that the report can be reproduced.
import type { Command } from 'commander';
import { InputError, lastImportedOps } from '../onnx/import.js';
import { GpuUnavailableError } from '../runtime/device.js';

export const EXIT_USAGE = 2;
export const EXIT_INTERNAL = 1;

export function reportError(e: unknown): number {
  const err = e instanceof Error ? e : new Error(String(e));
  const user = err instanceof InputError || err instanceof GpuUnavailableError;
  const line = err.message.split('\n')[0];
  process.stderr.write(user ? `mpc: ${line}\n` : `mpc: ${internalLine(err, line)}\n`);
  if (process.env.MPC_DEBUG) process.stderr.write(`${err.stack ?? ''}\n${err.message}\n`);
  return user ? EXIT_USAGE : EXIT_INTERNAL;
}

/** The one line of an internal error: what failed, that it is mpc's bug, and the model's ops. */
export function internalLine(err: Error, line: string): string {
  const ops = lastImportedOps();
  const model = ops.length ? `; model ops: ${ops.slice(0, 12).join(', ')}${ops.length > 12 ? `, +${ops.length - 12} more` : ''}` : '';
  return `internal error (a bug in mpc, please report it${model}): ${err.name && err.name !== 'Error' ? `${err.name}: ` : ''}${line} (MPC_DEBUG=1 shows details)`;
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
