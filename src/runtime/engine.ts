// A loaded output folder and the two ways to run it: on a WebGPU device (the generated WGSL)
// or on the CPU reference interpreter (the lowered IR), behind one interface.
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import type { ProgramFile } from '../compile/compile.js';
import { PROGRAM_FORMAT, PROGRAM_VERSION } from '../compile/compile.js';
import { decodeTensors } from '../data/tensor-files.js';
import { graphFromJson } from '../ir/serialize.js';
import type { Tensor } from '../ir/tensor.js';
import { isFloat } from '../ir/dtypes.js';
import { InterpSession, runGraph } from '../interp/interpreter.js';
import { InputError } from '../onnx/import.js';
import type { Graph } from '../ir/graph.js';
import { getGpu } from './device.js';
import { GpuProgram } from './gpu-program.js';

export interface LoadedProgram {
  dir: string;
  program: ProgramFile;
  files: Map<string, string>;
  init: Map<string, Tensor>;
}

export function loadProgramDir(dir: string): LoadedProgram {
  const pj = join(dir, 'program.json');
  if (!existsSync(pj)) throw new InputError(`${dir}: not an mpc output folder (no program.json); run 'mpc compile' first`);
  let program: ProgramFile;
  try {
    program = JSON.parse(readFileSync(pj, 'utf8')) as ProgramFile;
  } catch (e) {
    throw new InputError(`${pj}: unreadable (${(e as Error).message})`);
  }
  if (program.format !== PROGRAM_FORMAT || program.version !== PROGRAM_VERSION)
    throw new InputError(`${pj}: not an mpc program of version ${PROGRAM_VERSION}; recompile it`);
  const files = new Map<string, string>();
  const kdir = join(dir, 'kernels');
  const present = new Set(existsSync(kdir) ? readdirSync(kdir) : []);
  for (const k of program.kernels) {
    if (files.has(k.file)) continue;
    if (!present.has(k.file)) throw new InputError(`${dir}: kernel file kernels/${k.file} is missing`);
    files.set(k.file, readFileSync(join(kdir, k.file), 'utf8'));
  }
  const dtypes = new Map(program.buffers.map((b) => [b.name, b.dtype]));
  const init = decodeTensors(readFileSync(join(dir, program.files.init)), join(dir, program.files.init), dtypes).tensors;
  // Tensors compile left out of the file because they are all zeros.
  for (const name of program.zeros ?? []) {
    const b = program.buffers.find((x) => x.name === name);
    if (!b) throw new InputError(`${pj}: zero-initialised '${name}' has no buffer; recompile it`);
    const count = b.shape.reduce((a, d) => a * d, 1);
    init.set(name, { dtype: b.dtype, shape: [...b.shape], data: isFloat(b.dtype) ? new Float32Array(count) : new Int32Array(count) });
  }
  return { dir, program, files, init };
}

export interface Engine {
  backend: 'webgpu' | 'cpu';
  adapter: string;
  /** Overwrites the optimizer hyperparameters (lr...). */
  setHparams(values: number[]): void;
  trainStep(x: Float32Array | Int32Array, y: Int32Array): void;
  /** Loss of the last step (waits for it). */
  loss(): Promise<number>;
  /** Prediction output of the inference graph for one batch. */
  predict(x: Float32Array | Int32Array): Promise<Float32Array>;
  /** Contents of named state buffers (params, moments, loss scale...). */
  read(names: string[]): Promise<Map<string, Tensor>>;
  /** Restores state buffers. */
  write(values: Map<string, Tensor>): void;
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
  const gpu = await getGpu({ f16: p.program.target.f16 });
  const want = p.program.target.subgroupSize;
  if (want !== undefined && gpu.subgroupSize !== want)
    throw new InputError(`${p.dir}: compiled for subgroups of ${want}, but ${gpu.adapterName} has ${gpu.subgroupSize ?? 'no fixed subgroup size'}; recompile (--subgroup-size auto or off)`);
  const prog = await GpuProgram.create(gpu, { ...p.program, files: p.files });
  // New device buffers hold zeros (WebGPU clears them), and persistent buffers never share
  // an allocation: the all-zero tensors need no upload.
  const zeros = new Set(p.program.zeros ?? []);
  for (const [name, t] of p.init) if (!zeros.has(name)) prog.write(prog.bufferIndex(name), t.data);
  return prog;
}

export async function gpuEngine(p: LoadedProgram): Promise<Engine> {
  const prog = await openProgram(p);
  const gpu = prog.gpu;
  const s = p.program.schedules;
  const xTrain = s.train.inputs[p.program.io.input];
  const yTrain = s.train.inputs[p.program.io.labels];
  const xEval = s.eval.inputs[p.program.io.input];
  const out = s.eval.outputs[p.program.io.prediction];
  return {
    backend: 'webgpu',
    adapter: gpu.adapterName,
    setHparams: (v) => p.program.state.hparams !== undefined && prog.write(p.program.state.hparams, v),
    trainStep(x, y) {
      prog.write(xTrain, x);
      prog.write(yTrain, y);
      prog.run('train');
    },
    loss: async () => (await prog.read([p.program.state.loss]))[0].data[0],
    async predict(x) {
      prog.write(xEval, x);
      prog.run('eval');
      return (await prog.read([out]))[0].data as Float32Array;
    },
    async read(names) {
      const ts = await prog.read(names.map((n) => prog.bufferIndex(n)));
      return new Map(names.map((n, i) => [n, ts[i]]));
    },
    write(values) {
      for (const [n, t] of values) prog.write(prog.bufferIndex(n), t.data);
    },
  };
}

export function cpuEngine(p: LoadedProgram): Engine {
  const load = (file: string): Graph => graphFromJson(JSON.parse(readFileSync(join(p.dir, file), 'utf8')), p.init);
  const train = load(p.program.files.trainGraph);
  const evalG = load(p.program.files.evalGraph);
  const session = new InterpSession(train);
  const { input, labels, prediction } = p.program.io;
  const inType = train.values.get(input)!;
  const lossName = (train.meta.loss as { value: string }).value;
  const labelsType = train.values.get(labels)!;
  // The interpreter holds integers in Int32Array and floats in Float32Array.
  const feed = (x: Float32Array | Int32Array) => ({
    dtype: inType.dtype,
    shape: inType.shape as number[],
    data: isFloat(inType.dtype) ? (x instanceof Float32Array ? x : Float32Array.from(x)) : x instanceof Int32Array ? x : Int32Array.from(x),
  });
  let last: Map<string, Tensor> | undefined;
  const hp = 'optim.hparams';
  return {
    backend: 'cpu',
    adapter: 'reference interpreter',
    setHparams: (v) => session.state.has(hp) && session.state.set(hp, { dtype: 'f32', shape: [v.length], data: Float32Array.from(v) }),
    trainStep(x, y) {
      last = session.step({ [input]: feed(x), [labels]: { dtype: labelsType.dtype, shape: labelsType.shape as number[], data: y } });
    },
    loss: async () => last?.get(lossName)?.data[0] ?? NaN,
    async predict(x) {
      const env = runGraph(evalG, { [input]: feed(x) }, session.state);
      return env.get(prediction)!.data as Float32Array;
    },
    async read(names) {
      return new Map(names.map((n) => [n, session.state.get(n) ?? last?.get(n) ?? p.init.get(n)!]));
    },
    write(values) {
      for (const [n, t] of values) session.state.set(n, t);
    },
  };
}
