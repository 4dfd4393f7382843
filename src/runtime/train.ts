// The training loop shared by `mpc train` and the generated train.mjs: data, epochs,
// progress, evaluation and the trained weights.
import { existsSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, basename, join, resolve } from 'node:path';
import { loadFashionMnist, loadIdxPair, loadNpyPair, type Split } from '../data/datasets.js';
import { encodeTensors } from '../data/tensor-files.js';
import { InputError } from '../onnx/import.js';
import { sizeOf } from '../ir/tensor.js';
import { hparamValues } from '../passes/optimizer.js';
import { cpuEngine, gpuEngine, loadProgramDir, type Engine, type LoadedProgram } from './engine.js';

export interface TrainOptions {
  dir: string;
  data: string;
  testData?: string;
  epochs: number;
  /** Stop after this many steps (all epochs together). */
  steps?: number;
  lr?: number;
  backend: 'webgpu' | 'cpu';
  seed: number;
  /** Where to write the trained weights (default: <dir>/trained.safetensors). */
  save?: string;
  /** Read the loss back every this many steps (the only device→host traffic while training). */
  logEvery: number;
}

export interface TrainSummary {
  policy: string;
  backend: string;
  adapter: string;
  model: string;
  optimizer: string;
  lr: number;
  batch: number;
  epochs: number;
  steps: number;
  skipped_steps: number;
  final_loss_scale: number | null;
  train_loss: number;
  test_accuracy: number;
  test_samples: number;
  seconds: number;
  steps_per_second: number;
  weights: string;
}

export interface Progress {
  start(total: number, label: string): void;
  update(done: number, info: { loss?: number; scale?: number }): void;
  stop(): void;
  log(line: string): void;
}

interface Data {
  train: Split;
  test: Split;
  sample: number[];
  classes: number;
}

function loadPair(spec: string, option: string): Split & { shape: number[] } {
  const m = /^(idx|npy):([^,]+),(.+)$/.exec(spec);
  if (!m) throw new InputError(`${option} '${spec}': expected fashion-mnist, idx:IMAGES,LABELS or npy:X,Y`);
  for (const f of [m[2], m[3]]) if (!existsSync(f)) throw new InputError(`${option} '${spec}': ${f}: no such file`);
  try {
    return m[1] === 'idx' ? loadIdxPair(m[2], m[3]) : loadNpyPair(m[2], m[3]);
  } catch (e) {
    throw new InputError(`${option}: ${(e as Error).message.split('\n')[0]}`);
  }
}

/** The largest label (not Math.max(...y): that overflows the stack beyond ~120k samples). */
function maxLabel(...ys: Int32Array[]): number {
  let m = -1;
  for (const y of ys) for (let i = 0; i < y.length; i++) if (y[i] > m) m = y[i];
  return m;
}

export function loadData(spec: string, testSpec?: string): Data {
  if (spec === 'fashion-mnist') {
    try {
      const d = loadFashionMnist();
      return { train: d.train, test: d.test, sample: d.shape, classes: d.classes };
    } catch (e) {
      throw new InputError((e as Error).message);
    }
  }
  const train = loadPair(spec, '--data');
  if (testSpec) {
    const test = loadPair(testSpec, '--test-data');
    if (sizeOf(test.shape) !== sizeOf(train.shape))
      throw new InputError(`--test-data samples have shape [${test.shape}], the --data samples [${train.shape}]`);
    return { train, test, sample: train.shape, classes: maxLabel(train.y, test.y) + 1 };
  }
  // No test set given: hold out the last sixth of the training data.
  const per = sizeOf(train.shape);
  const nTest = Math.max(1, Math.floor(train.n / 6));
  const nTrain = train.n - nTest;
  return {
    train: { x: train.x.subarray(0, nTrain * per), y: train.y.subarray(0, nTrain), n: nTrain },
    test: { x: train.x.subarray(nTrain * per), y: train.y.subarray(nTrain), n: nTest },
    sample: train.shape,
    classes: maxLabel(train.y) + 1,
  };
}

/** Small deterministic PRNG (for shuffling). */
function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function checkData(p: LoadedProgram, d: Data): { batch: number; per: number } {
  const inBuf = p.program.buffers[p.program.schedules.train.inputs[p.program.io.input]];
  const [batch, ...sample] = inBuf.shape;
  const per = sizeOf(sample);
  if (per !== sizeOf(d.sample))
    throw new InputError(`the program's input '${p.program.io.input}' takes samples of [${sample}], the data has [${d.sample}]`);
  const outBuf = p.program.buffers[p.program.schedules.eval.outputs[p.program.io.prediction]];
  const classes = outBuf.shape[outBuf.shape.length - 1];
  if (d.classes > classes) throw new InputError(`the data has ${d.classes} classes, the model predicts ${classes}`);
  if (d.train.n < batch) throw new InputError(`the training data has ${d.train.n} samples, fewer than one batch of ${batch}`);
  return { batch, per };
}

export async function evaluate(engine: Engine, test: Split, batch: number, per: number, classes: number): Promise<number> {
  let correct = 0;
  const x = new Float32Array(batch * per);
  for (let start = 0; start < test.n; start += batch) {
    const n = Math.min(batch, test.n - start);
    x.fill(0);
    x.set(test.x.subarray(start * per, (start + n) * per));
    const logits = await engine.predict(x);
    for (let i = 0; i < n; i++) {
      let best = 0;
      for (let c = 1; c < classes; c++) if (logits[i * classes + c] > logits[i * classes + best]) best = c;
      if (best === test.y[start + i]) correct++;
    }
  }
  return correct / test.n;
}

/** loadProgramDir, with a damaged folder (a file missing or cut short) as an input error. */
function loadProgram(dir: string): LoadedProgram {
  try {
    return loadProgramDir(dir);
  } catch (e) {
    if (e instanceof InputError) throw e;
    throw new InputError(`${dir}: damaged mpc output folder (${(e as Error).message.split('\n')[0]}); compile it again`);
  }
}

export async function train(opts: TrainOptions, progress: Progress): Promise<TrainSummary> {
  const t0 = performance.now();
  const p = loadProgram(opts.dir);
  const data = loadData(opts.data, opts.testData);
  const { batch, per } = checkData(p, data);
  const engine = opts.backend === 'cpu' ? cpuEngine(p) : await gpuEngine(p);
  const optimizer = { ...p.program.optimizer, ...(opts.lr !== undefined ? { lr: opts.lr } : {}) };
  engine.setHparams(hparamValues(optimizer));

  const stepsPerEpoch = Math.floor(data.train.n / batch);
  const total = Math.min(opts.steps ?? Infinity, stepsPerEpoch * opts.epochs);
  const rand = mulberry32(opts.seed);
  const order = Int32Array.from({ length: data.train.n }, (_, i) => i);
  const x = new Float32Array(batch * per);
  const y = new Int32Array(batch);
  const scaleName = p.program.state.lossScale !== undefined ? p.program.buffers[p.program.state.lossScale].name : undefined;
  const skippedName = p.program.state.skipped !== undefined ? p.program.buffers[p.program.state.skipped].name : undefined;
  let step = 0;
  let recent: number[] = [];
  progress.start(total, `training ${p.program.model} (${p.program.policy}, ${engine.backend})`);
  for (let epoch = 0; epoch < opts.epochs && step < total; epoch++) {
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    recent = [];
    for (let s = 0; s < stepsPerEpoch && step < total; s++) {
      for (let b = 0; b < batch; b++) {
        const k = order[s * batch + b];
        x.set(data.train.x.subarray(k * per, (k + 1) * per), b * per);
        y[b] = data.train.y[k];
      }
      engine.trainStep(x, y);
      step++;
      if (step % opts.logEvery === 0 || step === total) {
        const loss = await engine.loss();
        recent.push(loss);
        const scale = scaleName ? (await engine.read([scaleName])).get(scaleName)!.data[0] : undefined;
        progress.update(step, { loss, scale });
      }
    }
  }
  progress.stop();
  const accuracy = await evaluate(engine, data.test, batch, per, p.program.buffers[p.program.schedules.eval.outputs[p.program.io.prediction]].shape.at(-1)!);
  const state = await engine.read([...Object.keys(p.program.params), ...(scaleName ? [scaleName] : []), ...(skippedName ? [skippedName] : [])]);
  const weights = resolve(opts.save ?? join(opts.dir, 'trained.safetensors'));
  const params = new Map(Object.keys(p.program.params).map((n) => [n, state.get(n)!]));
  const tmp = join(dirname(weights), `.${basename(weights)}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, encodeTensors(params, { format: 'mpc-trained', policy: p.program.policy, steps: String(step) }));
    renameSync(tmp, weights);
  } catch (e) {
    rmSync(tmp, { force: true });
    throw new InputError(`${weights}: cannot write the trained weights (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
  }
  const seconds = (performance.now() - t0) / 1000;
  const tail = recent.slice(-Math.max(1, Math.ceil(recent.length / 4)));
  return {
    policy: p.program.policy,
    backend: engine.backend,
    adapter: engine.adapter,
    model: p.program.model,
    optimizer: optimizer.kind,
    lr: optimizer.lr,
    batch,
    epochs: opts.epochs,
    steps: step,
    skipped_steps: skippedName ? state.get(skippedName)!.data[0] : 0,
    final_loss_scale: scaleName ? state.get(scaleName)!.data[0] : null,
    train_loss: tail.reduce((a, b) => a + b, 0) / tail.length,
    test_accuracy: accuracy,
    test_samples: data.test.n,
    seconds: Math.round(seconds * 100) / 100,
    steps_per_second: Math.round((step / seconds) * 10) / 10,
    weights,
  };
}
