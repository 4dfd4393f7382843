// A compiled output folder loaded from disk and opened on the process's WebGPU device (Dawn):
// the Node side of the runtime, without the CPU interpreter (cpu-engine.ts), so that the
// runtime copied next to a compiled program stays small.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { InputError } from './errors.js';
import { getGpu } from './device.js';
import { gpuEngineOf, openProgramOn, parseProgramFile, programInit, type Engine, type LoadedProgram } from './core.js';
import type { GpuProgram } from './gpu-program.js';

export function loadProgramDir(dir: string): LoadedProgram {
  const pj = join(dir, 'program.json');
  if (!existsSync(pj)) throw new InputError(`${dir}: not an mpc output folder (no program.json); run 'mpc compile' first`);
  const program = parseProgramFile(readFileSync(pj, 'utf8'), pj);
  const files = new Map<string, string>();
  const kdir = join(dir, 'kernels');
  const present = new Set(existsSync(kdir) ? readdirSync(kdir) : []);
  for (const k of program.kernels) {
    if (files.has(k.file)) continue;
    if (!present.has(k.file)) throw new InputError(`${dir}: kernel file kernels/${k.file} is missing`);
    files.set(k.file, readFileSync(join(kdir, k.file), 'utf8'));
  }
  const init = programInit(program, readFileSync(join(dir, program.files.init)), join(dir, program.files.init));
  return { dir, program, files, init };
}

/** loadProgramDir, with a damaged folder (a file missing or cut short) as an input error. */
export function loadProgram(dir: string): LoadedProgram {
  try {
    return loadProgramDir(dir);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`${dir}: damaged mpc output folder (${(e as Error).message.split('\n')[0]}); compile it again`);
  }
}

/** The program on the process's WebGPU device with its initial contents. */
export async function openProgram(p: LoadedProgram): Promise<GpuProgram> {
  return openProgramOn(await getGpu({ f16: p.program.target.f16 }), p);
}

export async function gpuEngine(p: LoadedProgram): Promise<Engine> {
  return gpuEngineOf(await openProgram(p), p);
}
