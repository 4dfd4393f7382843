// The compiled program in a browser: index.html (written by `mpc compile` beside program.json)
// loads this module, which fetches program.json, the kernels, the initial weights and the
// data (data.safetensors, written by `mpc compile --web-data N`), trains on the page's WebGPU
// device (navigator.gpu), draws the loss as it goes and evaluates on the test split.
// URL parameters: steps (default: one epoch), seed (0), lr (the compiled one), log-every (10);
// the first `exact` (20) steps log every loss. The state is also in `window.mpc`, for scripts.
import { evaluate, gatherBatch, gpuEngineOf, mulberry32, openProgramOn, parseProgramFile, programInit, shuffleInPlace, type LoadedProgram, type Samples } from '../runtime/core.js';
import { openDevice } from '../runtime/gpu.js';
import { hparamValues, RNG_STEP, rngStart } from '../runtime/hparams.js';
import { decodeSafetensors } from '../data/safetensors.js';
import { sizeOf } from '../ir/tensor.js';

export interface PageState {
  status: 'loading' | 'training' | 'evaluating' | 'done' | 'error';
  model?: string;
  policy?: string;
  adapter?: string;
  batch?: number;
  steps?: number;
  step: number;
  /** Losses read back during training: every step for the first `exact` steps, then every log-every steps. */
  losses: { step: number; loss: number }[];
  /** Test accuracy (fraction) and mean cross-entropy, when done. */
  accuracy?: number;
  testLoss?: number;
  testSamples?: number;
  seconds?: number;
  stepsPerSecond?: number;
  error?: string;
}

const state: PageState = { status: 'loading', step: 0, losses: [] };
(globalThis as unknown as { mpc: PageState }).mpc = state;

const $ = (id: string) => document.getElementById(id)!;

function show(): void {
  $('status').textContent =
    state.status === 'error'
      ? `error: ${state.error}`
      : state.status === 'done'
        ? `done: ${state.steps} steps in ${state.seconds?.toFixed(1)} s (${state.stepsPerSecond?.toFixed(1)} step/s)`
        : `${state.status}${state.steps ? ` - step ${state.step}/${state.steps}` : ''}`;
  const last = state.losses.at(-1);
  $('loss').textContent = last ? last.loss.toFixed(4) : '-';
  $('accuracy').textContent = state.accuracy !== undefined ? `${(state.accuracy * 100).toFixed(2)}% (${state.testSamples} samples, test loss ${state.testLoss!.toFixed(4)})` : '-';
  $('info').textContent = [state.model, state.policy && `policy ${state.policy}`, state.batch && `batch ${state.batch}`, state.adapter && `on ${state.adapter}`].filter(Boolean).join(', ');
  document.title = `mpc: ${state.status}${last ? ` loss ${last.loss.toFixed(3)}` : ''}`;
  drawChart();
}

function drawChart(): void {
  const canvas = $('chart') as HTMLCanvasElement;
  const g = canvas.getContext('2d');
  if (!g) return;
  const { width: w, height: h } = canvas;
  g.clearRect(0, 0, w, h);
  g.strokeStyle = '#ccc';
  g.strokeRect(0.5, 0.5, w - 1, h - 1);
  const pts = state.losses;
  if (pts.length < 2) return;
  const maxStep = state.steps ?? pts.at(-1)!.step;
  const maxLoss = Math.max(...pts.map((p) => p.loss));
  g.fillStyle = '#666';
  g.font = '12px sans-serif';
  g.fillText(maxLoss.toFixed(2), 4, 14);
  g.fillText('0', 4, h - 4);
  g.strokeStyle = '#1565c0';
  g.lineWidth = 2;
  g.beginPath();
  pts.forEach((p, i) => {
    const x = 30 + ((w - 40) * p.step) / maxStep;
    const y = h - 10 - ((h - 20) * p.loss) / maxLoss;
    if (i) g.lineTo(x, y);
    else g.moveTo(x, y);
  });
  g.stroke();
}

async function fetchOk(url: string): Promise<Response> {
  let r: Response;
  try {
    r = await fetch(url);
  } catch (e) {
    const hint = location.protocol === 'file:' ? ' (serve this folder over http, e.g. python3 -m http.server: pages opened from file:// cannot fetch files)' : '';
    throw new Error(`cannot fetch ${url}: ${(e as Error).message}${hint}`);
  }
  if (!r.ok) throw new Error(`cannot fetch ${url}: HTTP ${r.status}${url === 'data.safetensors' ? " (compile with 'mpc compile --web-data N' to write the data file)" : ''}`);
  return r;
}

/** data.safetensors: 8-bit images (scaled to [0, 1] as the Node loaders do) and labels. */
function samples(tensors: ReturnType<typeof decodeSafetensors>['tensors'], split: 'train' | 'test'): Samples & { shape: number[] } {
  const x = tensors[`x_${split}`];
  const y = tensors[`y_${split}`];
  if (!x || !y) throw new Error(`data.safetensors has no x_${split}/y_${split}`);
  const xs = new Float32Array(x.data.length);
  for (let i = 0; i < xs.length; i++) xs[i] = x.data[i] / 255;
  return { x: xs, y: Int32Array.from(y.data), n: x.shape[0], shape: x.shape.slice(1) };
}

async function run(): Promise<void> {
  const params = new URLSearchParams(location.search);
  const intParam = (name: string, dflt: number): number => {
    const v = params.get(name);
    if (v === null) return dflt;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 0) throw new Error(`URL parameter ${name}=${v}: expected a non-negative integer`);
    return n;
  };
  if (!('gpu' in navigator) || !navigator.gpu) throw new Error('this browser has no WebGPU (navigator.gpu); use a browser with WebGPU enabled');
  const program = parseProgramFile(await (await fetchOk('program.json')).text(), 'program.json');
  state.model = program.model;
  state.policy = program.policy;
  show();
  const files = new Map<string, string>();
  for (const k of program.kernels) if (!files.has(k.file)) files.set(k.file, await (await fetchOk(`kernels/${k.file}`)).text());
  const init = programInit(program, new Uint8Array(await (await fetchOk(program.files.init)).arrayBuffer()), program.files.init);
  const data = decodeSafetensors(new Uint8Array(await (await fetchOk('data.safetensors')).arrayBuffer()), 'data.safetensors');
  const train = samples(data.tensors, 'train');
  const test = samples(data.tensors, 'test');
  const p: LoadedProgram = { dir: location.href, program, files, init };

  const gpu = await openDevice(navigator.gpu, program.target.f16, 'navigator.gpu.requestAdapter() found no WebGPU adapter');
  state.adapter = gpu.adapterName;
  const engine = gpuEngineOf(await openProgramOn(gpu, p), p);
  const inBuf = program.buffers[program.schedules.train.inputs[program.io.input]];
  const [batch, ...sample] = inBuf.shape;
  const per = sizeOf(sample);
  if (per !== sizeOf(train.shape)) throw new Error(`the program's input takes samples of [${sample}], data.safetensors has [${train.shape}]`);
  const out = program.buffers[program.schedules.eval.outputs[program.io.prediction]];
  const classes = out.shape.at(-1)!;
  const lr = params.get('lr');
  engine.setHparams(hparamValues({ ...program.optimizer, ...(lr !== null ? { lr: Number(lr) } : {}) }));
  const seed = intParam('seed', 0);
  if (program.buffers.some((b) => b.name === RNG_STEP)) engine.write(new Map([[RNG_STEP, { dtype: 'i32', shape: [], data: Int32Array.of(rngStart(seed)) }]]));

  const perEpoch = Math.floor(train.n / batch);
  const total = intParam('steps', perEpoch);
  const every = Math.max(1, intParam('log-every', 10));
  const exact = intParam('exact', 20);
  state.batch = batch;
  state.steps = total;
  state.status = 'training';
  show();
  const rand = mulberry32(seed);
  const order = Int32Array.from({ length: train.n }, (_, i) => i);
  const x = new Float32Array(batch * per);
  const y = new Int32Array(batch);
  const t0 = performance.now();
  for (let done = 0; done < total; ) {
    if (done % perEpoch === 0) shuffleInPlace(order, rand);
    gatherBatch(train, order, (done % perEpoch) * batch, batch, per, 1, x, y);
    engine.trainStep(x, y);
    done++;
    state.step = done;
    if (done <= exact || done % every === 0 || done === total) {
      state.losses.push({ step: done, loss: await engine.loss() });
      show();
    }
  }
  const seconds = (performance.now() - t0) / 1000;
  state.status = 'evaluating';
  show();
  const r = await evaluate(engine, test, batch, per, 1, classes);
  Object.assign(state, { status: 'done', accuracy: r.accuracy, testLoss: r.loss, testSamples: test.n, seconds, stepsPerSecond: total / seconds });
  show();
}

run().catch((e: unknown) => {
  state.status = 'error';
  state.error = e instanceof Error ? e.message.split('\n')[0] : String(e);
  show();
  console.error(e);
});
