// The training loop shared by `mpc train` and the generated train.mjs: data, epochs,
// progress, evaluation and the trained weights.
import { hparamValues, INDEX_FLAG, RNG_STEP, rngStart } from './hparams.js';
import { existsSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { dirname, basename, join, resolve } from 'node:path';
import { loadFashionMnist, loadIdxPair, loadNpyPair, loadNpz, type LabelledData, type LoadOptions } from '../data/datasets.js';
import { decodeTensors, encodeTensors } from '../data/tensor-files.js';
import { loadTextCorpus } from '../data/text.js';
import type { Fp8Tensor } from '../passes/quantize-fp8.js';
import { InputError } from './errors.js';
import { sizeOf } from '../ir/tensor.js';
// load.js, not engine.js: the CPU interpreter is loaded only for --backend cpu, so the runtime
// copied next to a compiled program (WebGPU only) does without it.
import { gpuEngine, loadProgram } from './load.js';
import { evaluate, type Engine, type LoadedProgram, type Samples } from './core.js';
import { checkOutputPath, fsReason } from './output-path.js';

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
  /** Record each fp8 tensor's amax, scale, saturated and flushed fractions at every log step. */
  fp8Stats?: boolean;
  /** Write every parameter and all training state (optimizer, loss scale, fp8 scaling) here at the end. */
  checkpoint?: string;
  /** Start from a checkpoint written by --checkpoint. */
  resume?: string;
  /** Train on samples that hold NaN/inf (rejected by default). */
  allowNonFinite?: boolean;
  /**
   * Stop with an error once more than this many steps in a row were skipped for non-finite
   * gradients (checked at every log step; default DEFAULT_MAX_SKIPPED).
   */
  maxSkipped?: number;
  /** Write the losses read at log steps here: CSV, or JSON lines for a `.jsonl` name. */
  log?: string;
}

/** --max-skipped by default: a run of this many skipped steps is not a transient spike. */
export const DEFAULT_MAX_SKIPPED = 100;

export interface Fp8StepStats {
  step: number;
  tensors: Record<string, { format: string; amax: number; scale: number; saturated: number; flushed: number }>;
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
  /** Mean cross-entropy of the test set (per position for sequence models). */
  test_loss: number;
  /** Fraction of test samples (or positions) whose arg-max is the label. */
  test_accuracy: number;
  test_samples: number;
  /** Text data: the entropy of its byte frequencies (the loss of a context-free predictor). */
  unigram_entropy?: number;
  fp8_stats?: Fp8StepStats[];
  checkpoint?: string;
  seconds: number;
  steps_per_second: number;
  weights: string;
  /** The training log (--log). */
  log?: string;
}

export interface Progress {
  start(total: number, label: string): void;
  update(done: number, info: { loss?: number; scale?: number }): void;
  stop(): void;
  log(line: string): void;
}

export { evaluate, type Samples };

interface Data {
  train: Samples;
  test: Samples;
  sample: number[];
  /** Labels per sample: 1 for classification, the sequence length for language models. */
  labelsPer: number;
  classes: number;
  unigramEntropy?: number;
}

function loadPair(spec: string, option: string, opts: LoadOptions): LabelledData {
  const npz = /^npz:([^,]+)(?:,([^,]+),([^,]+))?$/.exec(spec);
  const m = /^(idx|npy):([^,]+),(.+)$/.exec(spec);
  if (!m && !npz) throw new InputError(`${option} '${spec}': expected fashion-mnist, text:FILE, idx:IMAGES,LABELS, npy:X,Y or npz:FILE[,XNAME,YNAME]`);
  const files = npz ? [npz[1]] : [m![2], m![3]];
  for (const f of files) if (!existsSync(f)) throw new InputError(`${option} '${spec}': ${f}: no such file`);
  try {
    if (npz) return loadNpz(npz[1], npz[2], npz[3], opts);
    return m![1] === 'idx' ? loadIdxPair(m![2], m![3], opts) : loadNpyPair(m![2], m![3], opts);
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

/**
 * `seq`: the program's sequence length, for text data; `tokens`: the model takes integer ids;
 * `allowNonFinite`: keep float samples holding NaN/inf (rejected by default, naming the sample).
 */
export function loadData(spec: string, testSpec: string | undefined, seq: number, tokens = false, allowNonFinite = false): Data {
  if (spec === 'fashion-mnist') {
    try {
      const d = loadFashionMnist();
      return { train: d.train, test: d.test, sample: d.shape, labelsPer: 1, classes: d.classes };
    } catch (e) {
      throw new InputError((e as Error).message);
    }
  }
  if (spec.startsWith('text:')) {
    const path = spec.slice(5);
    if (!existsSync(path)) throw new InputError(`--data '${spec}': ${path}: no such file`);
    try {
      const c = loadTextCorpus(path, { seq });
      return { train: c.train, test: c.test, sample: [seq], labelsPer: seq, classes: c.distinct, unigramEntropy: c.unigramEntropy };
    } catch (e) {
      throw new InputError(`--data: ${(e as Error).message.split('\n')[0]}`);
    }
  }
  const train = loadPair(spec, '--data', { tokens, allowNonFinite });
  if (testSpec) {
    const test = loadPair(testSpec, '--test-data', { tokens, allowNonFinite });
    if (sizeOf(test.shape) !== sizeOf(train.shape))
      throw new InputError(`--test-data samples have shape [${test.shape}], the --data samples [${train.shape}]`);
    if (test.labelsPer !== train.labelsPer) throw new InputError(`--test-data has ${test.labelsPer} label(s) per sample, --data ${train.labelsPer}`);
    return { train, test, sample: train.shape, labelsPer: train.labelsPer, classes: maxLabel(train.y, test.y) + 1 };
  }
  // No test set given: hold out the last sixth of the training data.
  const per = sizeOf(train.shape);
  const nTest = Math.max(1, Math.floor(train.n / 6));
  const nTrain = train.n - nTest;
  return {
    train: { x: train.x.subarray(0, nTrain * per), y: train.y.subarray(0, nTrain * train.labelsPer), n: nTrain },
    test: { x: train.x.subarray(nTrain * per), y: train.y.subarray(nTrain * train.labelsPer), n: nTest },
    sample: train.shape,
    labelsPer: train.labelsPer,
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
  const labels = p.program.buffers[p.program.schedules.train.inputs[p.program.io.labels]];
  const labelsPer = sizeOf(labels.shape) / batch;
  if (labelsPer !== d.labelsPer)
    throw new InputError(`the program takes ${labelsPer} label(s) per sample, the data has ${d.labelsPer} (a sequence model needs text: data, a classifier images)`);
  const outBuf = p.program.buffers[p.program.schedules.eval.outputs[p.program.io.prediction]];
  const classes = outBuf.shape[outBuf.shape.length - 1];
  if (d.classes > classes) throw new InputError(`the data has ${d.classes} classes, the model predicts ${classes}`);
  if (d.train.n < batch) throw new InputError(`the training data has ${d.train.n} samples, fewer than one batch of ${batch}`);
  const range = p.program.io.indexRange;
  if (range !== undefined)
    for (const [what, split] of [['--data', d.train], ['--test-data', d.test]] as const) {
      const bad = split.x.findIndex((v) => !(v >= 0 && v < range));
      if (bad >= 0)
        throw new InputError(
          `${what}: token id ${split.x[bad]} (sample ${Math.floor(bad / per)}, position ${bad % per}) is outside the embedding table of ${range} rows that '${p.program.io.input}' indexes`,
        );
    }
  return { batch, per };
}

export async function train(opts: TrainOptions, progress: Progress): Promise<TrainSummary> {
  const t0 = performance.now();
  const p = loadProgram(opts.dir);
  // Output paths fail now, not after the run (their stale temporary files go too).
  checkOutputPath(opts.save ?? join(opts.dir, 'trained.safetensors'), opts.save ? '--save' : 'the trained weights', 'file');
  if (opts.checkpoint) checkOutputPath(opts.checkpoint, '--checkpoint', 'file');
  if (opts.log) checkOutputPath(opts.log, '--log', 'file');
  const inShape = p.program.buffers[p.program.schedules.train.inputs[p.program.io.input]].shape;
  const inBuf = p.program.buffers[p.program.schedules.train.inputs[p.program.io.input]];
  const data = loadData(opts.data, opts.testData, inShape[1] ?? 1, inBuf.dtype === 'i32' || inBuf.dtype === 'i64', opts.allowNonFinite);
  const { batch, per } = checkData(p, data);
  const engine = opts.backend === 'cpu' ? (await import('./cpu-engine.js')).cpuEngine(p) : await gpuEngine(p);
  const optimizer = { ...p.program.optimizer, ...(opts.lr !== undefined ? { lr: opts.lr } : {}) };
  let step = 0;
  if (opts.resume) step = await loadCheckpoint(engine, p, opts.resume);
  else if (p.program.buffers.some((b) => b.name === RNG_STEP))
    // Dropout masks: a stream of its own per training seed (a checkpoint carries the counter).
    engine.write(new Map([[RNG_STEP, { dtype: 'i32', shape: [], data: Int32Array.of(rngStart(opts.seed)) }]]));
  engine.setHparams(hparamValues(optimizer));

  const stepsPerEpoch = Math.floor(data.train.n / batch);
  // --steps is a number of steps, crossing epochs as needed; otherwise whole epochs.
  const total = opts.steps ?? stepsPerEpoch * opts.epochs;
  const log = opts.log ? { path: resolve(opts.log), rows: [] as string[] } : undefined;
  const csv = log !== undefined && !log.path.endsWith('.jsonl');
  if (log && csv) log.rows.push('step,epoch,loss,loss_scale,skipped_steps');
  const rand = mulberry32(opts.seed);
  const order = Int32Array.from({ length: data.train.n }, (_, i) => i);
  const x = data.train.x instanceof Int32Array ? new Int32Array(batch * per) : new Float32Array(batch * per);
  const L = data.labelsPer;
  const y = new Int32Array(batch * L);
  const scaleName = p.program.state.lossScale !== undefined ? p.program.buffers[p.program.state.lossScale].name : undefined;
  const skippedName = p.program.state.skipped !== undefined ? p.program.buffers[p.program.state.skipped].name : undefined;
  const fp8 = p.program.fp8 ?? [];
  const fp8Stats: Fp8StepStats[] = [];
  let done = 0;
  let recent: number[] = [];
  // Skipped steps (non-finite gradients): the count at the last log step and the run of
  // consecutive skipped steps seen at log steps.
  const maxSkipped = opts.maxSkipped ?? DEFAULT_MAX_SKIPPED;
  let skippedSeen = 0;
  let seenAt = 0;
  let skippedRun = 0;
  let stopped: string | undefined;
  progress.start(total, `training ${p.program.model} (${p.program.policy}, ${engine.backend})`);
  let epochs = 0;
  let trainSeconds = 0;
  for (let epoch = 0; done < total && !stopped; epoch++) {
    epochs = epoch + 1;
    const te = performance.now();
    for (let i = order.length - 1; i > 0; i--) {
      const j = Math.floor(rand() * (i + 1));
      [order[i], order[j]] = [order[j], order[i]];
    }
    recent = [];
    for (let s = 0; s < stepsPerEpoch && done < total && !stopped; s++) {
      for (let b = 0; b < batch; b++) {
        const k = order[s * batch + b];
        x.set(data.train.x.subarray(k * per, (k + 1) * per), b * per);
        y.set(data.train.y.subarray(k * L, (k + 1) * L), b * L);
      }
      engine.trainStep(x, y);
      step++;
      done++;
      if (done % opts.logEvery === 0 || done === total) {
        const loss = await engine.loss();
        recent.push(loss);
        const scale = scaleName ? (await engine.read([scaleName])).get(scaleName)!.data[0] : undefined;
        if (opts.fp8Stats && fp8.length) fp8Stats.push(await readFp8Stats(engine, fp8, step));
        progress.update(done, { loss, scale });
        let skipped: number | undefined;
        if (skippedName) {
          skipped = (await engine.read([skippedName])).get(skippedName)!.data[0];
          // Every step since the last look skipped: the run goes on; else it starts over.
          skippedRun = skipped - skippedSeen === done - seenAt ? skippedRun + done - seenAt : 0;
          [skippedSeen, seenAt] = [skipped, done];
          if (skippedRun > maxSkipped)
            stopped = `training stopped at step ${step}: the last ${skippedRun} steps were all skipped for non-finite (inf/NaN) gradients (--max-skipped ${maxSkipped})`;
        }
        if (log)
          log.rows.push(
            csv
              ? `${step},${epoch + 1},${loss},${scale ?? ''},${skipped ?? ''}`
              : JSON.stringify({ step, epoch: epoch + 1, loss, ...(scale !== undefined ? { loss_scale: scale } : {}), ...(skipped !== undefined ? { skipped_steps: skipped } : {}) }),
          );
      }
    }
    trainSeconds += (performance.now() - te) / 1000;
  }
  progress.stop();
  if (log) writeAtomically(log.path, new TextEncoder().encode(log.rows.join('\n') + '\n'), 'the training log');
  progress.log(`evaluating on ${data.test.n} test samples`);
  const classes = p.program.buffers[p.program.schedules.eval.outputs[p.program.io.prediction]].shape.at(-1)!;
  const test = await evaluate(engine, data.test, batch, per, L, classes);
  // The trained weights: the parameters and the model's running statistics (BatchNorm),
  // keyed by ONNX initializer name, all that inference needs besides the model.
  const saved = [...Object.keys(p.program.params), ...runningStatistics(p)];
  const state = await engine.read([...saved, ...(scaleName ? [scaleName] : []), ...(skippedName ? [skippedName] : [])]);
  const weights = resolve(opts.save ?? join(opts.dir, 'trained.safetensors'));
  const params = new Map(saved.map((n) => [n, state.get(n)!]));
  writeAtomically(weights, encodeTensors(params, { format: 'mpc-trained', policy: p.program.policy, steps: String(step) }), 'the trained weights');
  // Skipped steps never write their update: the weights are those of the last good step.
  if (stopped) throw new InputError(`${stopped}; the weights of the last good step were written to ${weights}`);
  if (p.program.buffers.some((b) => b.name === INDEX_FLAG) && (await engine.read([INDEX_FLAG])).get(INDEX_FLAG)!.data[0] !== 0)
    throw new InputError(
      `an index into an embedding table ('${p.program.io.input}') was out of range during training and read as zeros; the weights were written to ${weights}, but check the data`,
    );
  let checkpoint: string | undefined;
  if (opts.checkpoint) {
    checkpoint = resolve(opts.checkpoint);
    const names = checkpointNames(p);
    writeAtomically(checkpoint, encodeTensors(await engine.read(names), { format: CHECKPOINT_FORMAT, policy: p.program.policy, steps: String(step) }), 'the checkpoint');
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
    epochs,
    steps: step,
    skipped_steps: skippedName ? state.get(skippedName)!.data[0] : 0,
    final_loss_scale: scaleName ? state.get(scaleName)!.data[0] : null,
    train_loss: tail.reduce((a, b) => a + b, 0) / tail.length,
    test_loss: test.loss,
    test_accuracy: test.accuracy,
    test_samples: data.test.n,
    ...(data.unigramEntropy !== undefined ? { unigram_entropy: data.unigramEntropy } : {}),
    ...(opts.fp8Stats ? { fp8_stats: fp8Stats } : {}),
    ...(checkpoint ? { checkpoint } : {}),
    seconds: Math.round(seconds * 100) / 100,
    // Training throughput: the steps over the time spent in them (not loading or evaluating).
    steps_per_second: Math.round((done / Math.max(trainSeconds, 1e-9)) * 10) / 10,
    ...(log ? { log: log.path } : {}),
    weights,
  };
}

const CHECKPOINT_FORMAT = 'mpc-checkpoint';

/** Initializers of the model that training updates as state (manifest.json's params.state). */
function runningStatistics(p: LoadedProgram): string[] {
  try {
    const m = JSON.parse(readFileSync(join(p.dir, 'manifest.json'), 'utf8')) as { params?: { state?: string[] } };
    const names = new Set(p.program.buffers.filter((b) => b.role === 'state').map((b) => b.name));
    return (m.params?.state ?? []).filter((n) => names.has(n));
  } catch {
    return [];
  }
}

/** Everything a step reads and updates: parameters and training state (by buffer name). */
function checkpointNames(p: LoadedProgram): string[] {
  return p.program.buffers.filter((b) => b.role === 'param' || b.role === 'state').map((b) => b.name);
}

/** Loads a checkpoint written by --checkpoint into an engine; returns its step count. */
export async function loadCheckpoint(engine: Engine, p: LoadedProgram, file: string): Promise<number> {
  if (!existsSync(file)) throw new InputError(`--resume ${file}: no such file`);
  let decoded: ReturnType<typeof decodeTensors>;
  try {
    const dtypes = new Map(p.program.buffers.map((b) => [b.name, b.dtype]));
    decoded = decodeTensors(readFileSync(file), file, dtypes);
  } catch (e) {
    throw new InputError(`--resume: ${(e as Error).message.split('\n')[0]}`);
  }
  if (decoded.metadata.format !== CHECKPOINT_FORMAT) throw new InputError(`--resume ${file}: not an mpc checkpoint`);
  const want = checkpointNames(p);
  const missing = want.filter((n) => !decoded.tensors.has(n));
  if (missing.length) throw new InputError(`--resume ${file}: does not match this program (no '${missing[0]}'${missing.length > 1 ? `, +${missing.length - 1} more` : ''})`);
  for (const n of want) {
    const b = p.program.buffers.find((x) => x.name === n)!;
    if (decoded.tensors.get(n)!.shape.join() !== b.shape.join()) throw new InputError(`--resume ${file}: '${n}' has shape [${decoded.tensors.get(n)!.shape}], the program [${b.shape}]`);
  }
  engine.write(new Map(want.map((n) => [n, decoded.tensors.get(n)!])));
  return Number(decoded.metadata.steps ?? 0);
}

async function readFp8Stats(engine: Engine, fp8: Fp8Tensor[], step: number): Promise<Fp8StepStats> {
  const m = await engine.read(fp8.map((t) => t.stats));
  const tensors: Fp8StepStats['tensors'] = {};
  for (const t of fp8) {
    const s = m.get(t.stats)!.data;
    tensors[`${t.value}:${t.format}`] = { format: t.format, amax: s[0], scale: s[3], saturated: s[1], flushed: s[2] };
  }
  return { step, tensors };
}

function writeAtomically(path: string, bytes: Uint8Array, what: string): void {
  const tmp = join(dirname(path), `.${basename(path)}.tmp-${process.pid}`);
  try {
    writeFileSync(tmp, bytes);
    renameSync(tmp, path);
  } catch (e) {
    try {
      rmSync(tmp, { force: true });
    } catch {
      /* nothing was created */
    }
    throw new InputError(`${path}: cannot write ${what} (${fsReason(e)})`);
  }
}
