// One clear line on stderr and a distinct exit code for every failure; a stack trace only
// with MPC_DEBUG=1.
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
