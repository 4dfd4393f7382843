// The runtime's portable core: a compiled program assembled from its files' contents, run
// on a WebGPU device, and evaluated. No Node modules: Node (engine.ts, over Dawn) and the
// browser page (web/page.ts, over navigator.gpu) both build on it.
import type { ProgramFile } from './program-file.js';
import { PROGRAM_FORMAT, PROGRAM_VERSION } from './program-file.js';
import { decodeTensors } from '../data/tensor-files.js';
import type { Tensor } from '../ir/tensor.js';
import { isFloat } from '../ir/dtypes.js';
import { InputError } from './errors.js';
import type { Gpu } from './gpu.js';
import { GpuProgram } from './gpu-program.js';

export interface LoadedProgram {
  dir: string;
  program: ProgramFile;
  files: Map<string, string>;
  init: Map<string, Tensor>;
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

/** program.json's text as a program, or an input error naming `label`. */
export function parseProgramFile(text: string, label: string): ProgramFile {
  let program: ProgramFile;
  try {
    program = JSON.parse(text) as ProgramFile;
  } catch (e) {
    throw new InputError(`${label}: unreadable (${(e as Error).message})`);
  }
  if (program.format !== PROGRAM_FORMAT || program.version !== PROGRAM_VERSION)
    throw new InputError(`${label}: not an mpc program of version ${PROGRAM_VERSION}; recompile it`);
  return program;
}

/** The initial tensors: the init file's, plus those compile left out because they are all zeros. */
export function programInit(program: ProgramFile, initBytes: Uint8Array, label: string): Map<string, Tensor> {
  const dtypes = new Map(program.buffers.map((b) => [b.name, b.dtype]));
  const init = decodeTensors(initBytes, label, dtypes).tensors;
  for (const name of program.zeros ?? []) {
    const b = program.buffers.find((x) => x.name === name);
    if (!b) throw new InputError(`${label}: zero-initialised '${name}' has no buffer; recompile it`);
    const count = b.shape.reduce((a, d) => a * d, 1);
    init.set(name, { dtype: b.dtype, shape: [...b.shape], data: isFloat(b.dtype) ? new Float32Array(count) : new Int32Array(count) });
  }
  return init;
}

/** The program on `gpu` with its initial contents. */
export async function openProgramOn(gpu: Gpu, p: LoadedProgram): Promise<GpuProgram> {
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

/** The Engine interface over a program opened on a WebGPU device. */
export function gpuEngineOf(prog: GpuProgram, p: LoadedProgram): Engine {
  const s = p.program.schedules;
  const xTrain = s.train.inputs[p.program.io.input];
  const yTrain = s.train.inputs[p.program.io.labels];
  const xEval = s.eval.inputs[p.program.io.input];
  const out = s.eval.outputs[p.program.io.prediction];
  return {
    backend: 'webgpu',
    adapter: prog.gpu.adapterName,
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

/** Samples (images or token windows) and their labels (one per sample, or one per position). */
export interface Samples {
  x: Float32Array | Int32Array;
  y: Int32Array;
  n: number;
}

/** Test-set accuracy and mean cross-entropy, from the inference schedule's logits. */
export async function evaluate(engine: Engine, test: Samples, batch: number, per: number, labelsPer: number, classes: number): Promise<{ accuracy: number; loss: number }> {
  let correct = 0;
  let loss = 0;
  const x = test.x instanceof Int32Array ? new Int32Array(batch * per) : new Float32Array(batch * per);
  for (let start = 0; start < test.n; start += batch) {
    const n = Math.min(batch, test.n - start);
    x.fill(0);
    x.set(test.x.subarray(start * per, (start + n) * per));
    const logits = await engine.predict(x);
    for (let r = 0; r < n * labelsPer; r++) {
      const off = r * classes;
      let best = 0;
      let m = -Infinity;
      for (let c = 0; c < classes; c++) {
        if (logits[off + c] > logits[off + best]) best = c;
        m = Math.max(m, logits[off + c]);
      }
      let z = 0;
      for (let c = 0; c < classes; c++) z += Math.exp(logits[off + c] - m);
      const label = test.y[start * labelsPer + r];
      loss += m + Math.log(z) - logits[off + label];
      if (best === label) correct++;
    }
  }
  return { accuracy: correct / (test.n * labelsPer), loss: loss / (test.n * labelsPer) };
}

/** Small deterministic PRNG (for shuffling): the sequence `mpc train --seed` uses. */
export function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Fisher-Yates shuffle of `order` in place, drawing from `rand` (one epoch's sample order, as `mpc train` draws it). */
export function shuffleInPlace(order: Int32Array, rand: () => number): void {
  for (let i = order.length - 1; i > 0; i--) {
    const j = Math.floor(rand() * (i + 1));
    [order[i], order[j]] = [order[j], order[i]];
  }
}

/** Copies the samples `order[first .. first + batch)` into the batch buffers x and y. */
export function gatherBatch(data: Samples, order: Int32Array, first: number, batch: number, per: number, labelsPer: number, x: Float32Array | Int32Array, y: Int32Array): void {
  for (let b = 0; b < batch; b++) {
    const k = order[first + b];
    x.set(data.x.subarray(k * per, (k + 1) * per), b * per);
    y.set(data.y.subarray(k * labelsPer, (k + 1) * labelsPer), b * labelsPer);
  }
}
