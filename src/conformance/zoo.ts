// The model zoo: real PyTorch/torchvision exports (models/zoo/, written by
// models/zoo/export_zoo.py) checked against PyTorch's own numbers (test/fixtures/zoo/).
//
//   npm run zoo [-- [--filter REGEX] [--no-gpu] [--no-train] [--primary] [--first] [--json FILE]]
//
// Each variant (a model at one opset, exported in training or eval mode) goes through
// these stages; each stage needs the import, and the later ones the training graph:
//   import   importOnnxFile
//   forward  EVAL pipeline, fp32: the output on the interpreter and on WebGPU equals the
//            float64 PyTorch output of the module in eval mode (inference: BatchNorm on
//            running statistics) within 1e-4 of its largest magnitude (or 10x PyTorch's
//            own float32-vs-float64 error, when larger)
//   grads    TRAIN pipeline, fp32, cross-entropy, no loss scaling: the output (of the module
//            in the export's mode), the loss and the gradient of every initializer that
//            holds a PyTorch parameter, likewise; for BatchNorm models exported in training
//            mode also the running mean/variance after the step
//   params   the initializers mpc trains are those that hold PyTorch's named_parameters,
//            and none that holds a buffer
//   train    compiled (compileModel) under fp32, fp16, bf16 and fp8: 10 training steps on
//            WebGPU with finite losses and finite weights.
// Building the WebGPU pipelines (a few hundred per program) is what costs time on a software
// GPU, so the WebGPU parts can be limited to each model's primary variant (its training-mode
// export at the lower opset): the test does that by default, the report runs everything.
// The report (`npm run zoo`) runs every stage it can; the test (test/zoo.test.ts) stops at
// the first failure.
import { createHash } from 'node:crypto';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { deflateRawSync, inflateRawSync } from 'node:zlib';
import { compileModel, writeCompiled } from '../compile/compile.js';
import { passCtx } from '../compile/options.js';
import type { Graph } from '../ir/graph.js';
import type { Tensor } from '../ir/tensor.js';
import { runGraph } from '../interp/interpreter.js';
import { importOnnxFile } from '../onnx/import.js';
import type { GradMeta } from '../passes/autodiff.js';
import { EVAL_PIPELINE, runPipeline, TRAIN_PIPELINE } from '../passes/pipeline.js';
import { gpuEngine, loadProgramDir } from '../runtime/engine.js';
import { getGpu } from '../runtime/device.js';
import { runOnce } from '../runtime/run-once.js';

export const STAGES = ['import', 'forward', 'grads', 'params', 'train'] as const;
export type Stage = (typeof STAGES)[number];

export interface ZooVariant {
  id: string;
  model: string;
  file: string;
  opset: number;
  mode: 'train' | 'eval';
  fixture: string;
  inputs: string[];
  output: string;
  batch: number;
  /** The model's first variant (training mode, lowest opset): the one `train` always covers. */
  primary: boolean;
}

export interface FixtureArray {
  dtype: 'f32' | 'i32';
  shape: number[];
  deflate_b64: string;
}

export type Origin = { param?: string; buffer?: string; transpose?: boolean; derived?: boolean };

export interface ZooFixture {
  format: 'mpc-zoo-fixture/1';
  model: string;
  mode: 'train' | 'eval';
  inputs: Record<string, FixtureArray>;
  labels: FixtureArray;
  output: { f64: FixtureArray; f32: FixtureArray };
  output_f32_err: number;
  output_eval: { f64: FixtureArray; f32: FixtureArray };
  output_eval_f32_err: number;
  loss: { f64: number; f32: number };
  grads: Record<string, FixtureArray>;
  grads_f32: Record<string, FixtureArray>;
  grads_f32_err: Record<string, number>;
  running?: Record<string, FixtureArray>;
  running_f32_err?: Record<string, number>;
  parameters: string[];
  buffers: string[];
  variants: Record<string, { sha256: string; initializers: Record<string, Origin> }>;
}

export interface StageResult {
  status: 'pass' | 'fail' | 'skip';
  detail?: string;
  ms: number;
}

export interface VariantResult {
  id: string;
  stages: Record<Stage, StageResult>;
  /** The first failing stage and its error, or undefined when every stage that ran passed. */
  error?: { stage: Stage; message: string };
  ms: number;
}

export interface ZooOptions {
  /** Which variants also run forward and grads on WebGPU (the interpreter runs them on all). */
  gpu: Coverage;
  /** Which variants run the train stage (on WebGPU). */
  train: Coverage;
  /** Stop at the first failing stage (the test); otherwise run every stage that can run. */
  stopAtFirst: boolean;
  /** Training steps per policy. */
  steps?: number;
  policies?: string[];
}

/** Every variant, each model's primary variant only, or none. */
export type Coverage = 'all' | 'primary' | 'none';

export const covers = (c: Coverage, v: ZooVariant): boolean => c === 'all' || (c === 'primary' && v.primary);

export const TRAIN_POLICIES = ['fp32', 'fp16', 'bf16', 'fp8'];

/** The repository root: the folder above this file that holds models/zoo/zoo.json. */
export function zooRoot(): string {
  let d = dirname(fileURLToPath(import.meta.url));
  for (let i = 0; i < 5; i++) {
    if (existsSync(join(d, 'models', 'zoo', 'zoo.json'))) return d;
    d = dirname(d);
  }
  throw new Error('models/zoo/zoo.json not found above ' + fileURLToPath(import.meta.url));
}

export function loadZoo(root = zooRoot()): ZooVariant[] {
  const m = JSON.parse(readFileSync(join(root, 'models', 'zoo', 'zoo.json'), 'utf8')) as { format: string; variants: ZooVariant[] };
  if (m.format !== 'mpc-zoo/1') throw new Error(`models/zoo/zoo.json: unknown format ${m.format}`);
  const seen = new Set<string>();
  return m.variants.map((v) => {
    const primary = !seen.has(v.model);
    seen.add(v.model);
    return { ...v, primary };
  });
}

const fixtureCache = new Map<string, ZooFixture>();
export function loadZooFixture(v: ZooVariant, root = zooRoot()): ZooFixture {
  const path = join(root, 'test', 'fixtures', v.fixture);
  let fx = fixtureCache.get(path);
  if (!fx) {
    fx = JSON.parse(readFileSync(path, 'utf8')) as ZooFixture;
    if (fx.format !== 'mpc-zoo-fixture/1') throw new Error(`${path}: unknown format ${fx.format}`);
    fixtureCache.set(path, fx);
  }
  return fx;
}

/** A fixture array: f32 as f32, i32 as the interpreter's i64 (held in an Int32Array). */
export function decode(a: FixtureArray): Tensor {
  const raw = inflateRawSync(Buffer.from(a.deflate_b64, 'base64'));
  const buf = new Uint8Array(raw.length);
  buf.set(raw);
  return a.dtype === 'f32'
    ? { dtype: 'f32', shape: a.shape, data: new Float32Array(buf.buffer) }
    : { dtype: 'i64', shape: a.shape, data: new Int32Array(buf.buffer) };
}

/** The inverse of decode (for tests that alter a fixture). */
export function encode(t: Tensor): FixtureArray {
  const f32 = t.data instanceof Float32Array;
  const bytes = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
  return { dtype: f32 ? 'f32' : 'i32', shape: [...t.shape], deflate_b64: deflateRawSync(bytes).toString('base64') };
}

function maxAbs(a: ArrayLike<number>): number {
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i]));
  return m;
}

/** [rows, cols] -> [cols, rows] */
function transpose2d(t: Tensor): Tensor {
  const [r, c] = t.shape;
  const out = new Float32Array(r * c);
  for (let i = 0; i < r; i++) for (let j = 0; j < c; j++) out[j * r + i] = t.data[i * c + j];
  return { dtype: 'f32', shape: [c, r], data: out };
}

/**
 * Compares `got` with PyTorch's float64 `want`: the largest |got - want| relative to `scale`
 * (the largest |want| unless given) must be below 1e-4, or below 10x PyTorch's own float32
 * error (`f32err`, absolute) relative to the same scale when that is larger. Returns an error
 * message or undefined.
 */
/** Tensors compared so far (the report says how many each stage checked). */
let compared = 0;

export function compare(what: string, got: Tensor | undefined, want: Tensor, f32err: number, scale?: number): string | undefined {
  compared++;
  if (!got) return `${what}: no value`;
  const n = want.data.length;
  if (got.data.length !== n) return `${what}: ${got.data.length} elements [${got.shape}], PyTorch has ${n} [${want.shape}]`;
  const s = scale ?? Math.max(maxAbs(want.data), 1e-30);
  let worst = 0;
  let at = 0;
  for (let i = 0; i < n; i++) {
    const d = Math.abs(got.data[i] - want.data[i]);
    if (!(d <= worst)) {
      worst = Number.isNaN(d) ? Infinity : d;
      at = i;
      if (worst === Infinity) break;
    }
  }
  const tol = Math.max(1e-4, (10 * f32err) / s);
  const rel = worst / s;
  if (rel <= tol) return undefined;
  return `${what}: max error ${rel.toExponential(2)} of its scale ${s.toExponential(2)} (tolerance ${tol.toExponential(2)}) at [${at}]: got ${got.data[at]}, PyTorch ${want.data[at]}`;
}

/** The ONNX input feeds and the labels of a fixture. */
function feedsOf(v: ZooVariant, fx: ZooFixture): { feeds: Record<string, Tensor>; labels: Tensor } {
  const feeds: Record<string, Tensor> = {};
  for (const name of v.inputs) feeds[name] = decode(fx.inputs[name]);
  return { feeds, labels: decode(fx.labels) };
}

/** Expected gradient of each initializer that holds a PyTorch parameter (one initializer per parameter). */
function expectedGrads(v: ZooVariant, fx: ZooFixture): Map<string, { want: Tensor; err: number; param: string }> {
  const inits = fx.variants[v.file].initializers;
  const holders = new Map<string, number>();
  for (const o of Object.values(inits)) if (o.param) holders.set(o.param, (holders.get(o.param) ?? 0) + 1);
  const out = new Map<string, { want: Tensor; err: number; param: string }>();
  for (const [name, o] of Object.entries(inits)) {
    // A parameter held by two initializers (a tied weight and its folded transpose) gets
    // its gradient split between them: only PyTorch's sum is known.
    if (!o.param || holders.get(o.param)! > 1) continue;
    const g = decode(fx.grads[o.param]);
    out.set(name, { want: o.transpose ? transpose2d(g) : g, err: fx.grads_f32_err[o.param], param: o.param });
  }
  return out;
}

function firstError(errs: (string | undefined)[]): string | undefined {
  const e = errs.filter(Boolean) as string[];
  return e.length ? e.slice(0, 3).join('; ') + (e.length > 3 ? `; +${e.length - 3} more` : '') : undefined;
}

function oneLine(e: unknown): string {
  return ((e as Error)?.message ?? String(e)).trim().replace(/\s*\n\s*/g, ' ').slice(0, 400);
}

async function forwardStage(v: ZooVariant, fx: ZooFixture, imported: Graph, opts: { gpu: boolean }): Promise<string | undefined> {
  const { feeds } = feedsOf(v, fx);
  const g = runPipeline(imported, passCtx({ policy: 'fp32', batch: v.batch }), EVAL_PIPELINE);
  const want = decode(fx.output_eval.f64);
  const cpu = runGraph(g, feeds).get(v.output);
  const errs = [compare('interpreter output', cpu, want, fx.output_eval_f32_err)];
  if (opts.gpu) {
    const gpu = (await runOnce(g, feeds, [v.output], 'webgpu', { f16: true })).get(v.output);
    errs.push(compare('WebGPU output', gpu, want, fx.output_eval_f32_err));
  }
  return firstError(errs);
}

function trainGraph(v: ZooVariant, imported: Graph): Graph {
  return runPipeline(imported, passCtx({ policy: 'fp32', batch: v.batch, optimizer: { kind: 'sgd' }, lossScale: 'none' }), TRAIN_PIPELINE);
}

async function gradsStage(v: ZooVariant, fx: ZooFixture, g: Graph, opts: { gpu: boolean }): Promise<string | undefined> {
  const { feeds, labels } = feedsOf(v, fx);
  const loss = (g.meta.loss as { value: string; labels: string }).value;
  const allFeeds = { ...feeds, [(g.meta.loss as { labels: string }).labels]: labels };
  const grads = (g.meta.grads as GradMeta | undefined)?.params ?? {};
  const expected = expectedGrads(v, fx);
  const missing = [...expected.keys()].filter((p) => !grads[p]);
  if (missing.length) return `no gradient for ${missing.length} parameter(s): ${missing.slice(0, 4).join(', ')}`;
  // Each gradient relative to its own largest magnitude, but never below 1e-3 of the
  // model's largest: a gradient that vanishes analytically is f32 rounding noise here.
  const global = Math.max(...[...expected.values()].map((e) => maxAbs(e.want.data)));
  const running = Object.entries(fx.running ?? {});
  const updates = new Map(g.updates.map((u) => [u.state, u.next]));
  const notUpdated = running.map(([n]) => n).filter((n) => !updates.has(n));
  const want = [loss, v.output, ...[...expected.keys()].map((p) => grads[p])];
  for (const [n] of running) if (updates.has(n)) want.push(updates.get(n)!);
  const envs: [string, Map<string, Tensor>][] = [['interpreter', runGraph(g, allFeeds)]];
  if (opts.gpu) envs.push(['WebGPU', await runOnce(g, allFeeds, want, 'webgpu', { f16: true })]);
  const errs: (string | undefined)[] = [];
  for (const [backend, env] of envs) {
    const l = env.get(loss)?.data[0] ?? NaN;
    const lossTol = Math.max(1e-4, (10 * Math.abs(fx.loss.f32 - fx.loss.f64)) / Math.abs(fx.loss.f64));
    if (!(Math.abs(l - fx.loss.f64) / Math.abs(fx.loss.f64) <= lossTol)) errs.push(`${backend} loss ${l}, PyTorch ${fx.loss.f64}`);
    errs.push(compare(`${backend} training-step output`, env.get(v.output), decode(fx.output.f64), fx.output_f32_err));
    for (const [p, e] of expected) errs.push(compare(`${backend} d loss/d ${p}`, env.get(grads[p]), e.want, e.err, Math.max(maxAbs(e.want.data), 1e-3 * global)));
    for (const [n, a] of running)
      if (updates.has(n)) errs.push(compare(`${backend} ${n} after the step`, env.get(updates.get(n)!), decode(a), fx.running_f32_err![n]));
  }
  if (notUpdated.length) errs.push(`running statistics not updated by the step: ${notUpdated.slice(0, 3).join(', ')}${notUpdated.length > 3 ? ` (+${notUpdated.length - 3})` : ''}`);
  return firstError(errs);
}

function paramsStage(v: ZooVariant, fx: ZooFixture, g: Graph): string | undefined {
  const trained = new Set(Object.keys((g.meta.grads as GradMeta | undefined)?.params ?? {}));
  const inits = fx.variants[v.file].initializers;
  const params = Object.keys(inits).filter((n) => inits[n].param);
  const buffers = Object.keys(inits).filter((n) => inits[n].buffer);
  const untrained = params.filter((n) => !trained.has(n));
  const bufTrained = buffers.filter((n) => trained.has(n));
  const extra = [...trained].filter((n) => !inits[n] || (!inits[n].param && !inits[n].derived));
  const list = (xs: string[]) => `${xs.slice(0, 4).join(', ')}${xs.length > 4 ? ` (+${xs.length - 4})` : ''}`;
  return firstError([
    bufTrained.length ? `trains ${bufTrained.length} buffer(s) as parameters: ${list(bufTrained)}` : undefined,
    untrained.length ? `does not train ${untrained.length} parameter(s): ${list(untrained)}` : undefined,
    extra.length ? `trains ${extra.length} value(s) that are no PyTorch parameter: ${list(extra)}` : undefined,
  ]);
}

async function trainStage(v: ZooVariant, fx: ZooFixture, root: string, opts: ZooOptions): Promise<string | undefined> {
  const { feeds, labels } = feedsOf(v, fx);
  const x = feeds[v.inputs[0]].data;
  const y = labels.data as Int32Array;
  const steps = opts.steps ?? 10;
  const errs: string[] = [];
  for (const policy of opts.policies ?? TRAIN_POLICIES) {
    const dir = join(mkdtempSync(join(tmpdir(), 'mpc-zoo-')), 'out');
    try {
      // A training program feeds one data input: further inputs (BERT's attention mask) are
      // bound to the fixture's contents, as `mpc compile --const NAME=FILE` does.
      const consts = Object.fromEntries(v.inputs.slice(1).map((name) => [name, feeds[name]]));
      const c = compileModel(join(root, v.file), { policy, batch: v.batch, consts });
      writeCompiled(dir, c);
      const e = await gpuEngine(loadProgramDir(dir));
      const losses: number[] = [];
      for (let i = 0; i < steps; i++) {
        e.trainStep(x, y);
        losses.push(await e.loss());
      }
      const bad = losses.findIndex((l) => !Number.isFinite(l));
      if (bad >= 0) {
        errs.push(`${policy}: loss ${losses[bad]} at step ${bad + 1} (losses ${losses.map((l) => l.toPrecision(4)).join(' ')})`);
        continue;
      }
      const params = await e.read(Object.keys(c.program.params));
      const nonFinite = [...params].filter(([, t]) => !t.data.every(Number.isFinite)).map(([n]) => n);
      if (nonFinite.length) errs.push(`${policy}: non-finite weights after ${steps} steps in ${nonFinite.slice(0, 3).join(', ')}`);
    } catch (err) {
      errs.push(`${policy}: ${oneLine(err)}`);
    } finally {
      rmSync(dirname(dir), { recursive: true, force: true });
    }
  }
  return firstError(errs);
}

/** Runs the stages of one variant; `fixture` replaces its fixture (tests of the checks themselves). */
export async function runVariant(v: ZooVariant, opts: ZooOptions, root = zooRoot(), fixture?: ZooFixture): Promise<VariantResult> {
  const t0 = performance.now();
  const stages = Object.fromEntries(STAGES.map((s) => [s, { status: 'skip', ms: 0 }])) as Record<Stage, StageResult>;
  const res: VariantResult = { id: v.id, stages, ms: 0 };
  const stop = () => opts.stopAtFirst && res.error !== undefined;
  const stage = async <T>(s: Stage, f: () => Promise<T> | T, check: (r: T) => string | undefined = () => undefined): Promise<T | undefined> => {
    if (stop()) return undefined;
    const t = performance.now();
    const c0 = compared;
    let out: T | undefined;
    let msg: string | undefined;
    try {
      out = await f();
      msg = check(out);
    } catch (e) {
      msg = oneLine(e);
      out = undefined;
    }
    stages[s] = { status: msg ? 'fail' : 'pass', detail: msg ?? (compared > c0 ? `${compared - c0} tensors compared` : undefined), ms: performance.now() - t };
    if (msg && !res.error) res.error = { stage: s, message: msg };
    return msg ? undefined : out;
  };
  const fx = fixture ?? loadZooFixture(v, root);
  const imported = await stage('import', () => {
    const bytes = readFileSync(join(root, v.file));
    const sha = createHash('sha256').update(bytes).digest('hex');
    if (sha !== fx.variants[v.file]?.sha256) throw new Error(`${v.file} is not the file ${v.fixture} was made from (run models/zoo/export_zoo.py)`);
    return importOnnxFile(join(root, v.file));
  });
  if (imported) {
    const gpu = covers(opts.gpu, v);
    await stage('forward', () => forwardStage(v, fx, imported, { gpu }), (r) => r);
    let g: Graph | undefined;
    await stage('grads', async () => {
      g = trainGraph(v, imported);
      return gradsStage(v, fx, g, { gpu });
    }, (r) => r);
    if (g) await stage('params', () => paramsStage(v, fx, g!), (r) => r);
    if (covers(opts.train, v)) await stage('train', () => trainStage(v, fx, root, opts), (r) => r);
  }
  res.ms = performance.now() - t0;
  return res;
}

export function formatZooReport(results: VariantResult[]): string {
  const w = Math.max(...results.map((r) => r.id.length), 8);
  const lines = [`${'variant'.padEnd(w)}  ${STAGES.map((s) => s.padEnd(7)).join(' ')}  time    first error`];
  for (const r of results) {
    const cells = STAGES.map((s) => r.stages[s].status.padEnd(7)).join(' ');
    const err = r.error ? `${r.error.stage}: ${r.error.message}` : '';
    lines.push(`${r.id.padEnd(w)}  ${cells}  ${(r.ms / 1000).toFixed(1).padStart(5)} s  ${err}`);
  }
  const ok = results.filter((r) => !r.error).length;
  lines.push(`\n${ok} of ${results.length} variants pass every stage that ran`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  const argv = process.argv.slice(2);
  const opts: ZooOptions = { gpu: 'all', train: 'all', stopAtFirst: false };
  let filter: RegExp | undefined;
  let json: string | undefined;
  for (let i = 0; i < argv.length; i++) {
    const k = argv[i];
    if (k === '--filter') filter = new RegExp(argv[++i]);
    else if (k === '--no-gpu') opts.gpu = opts.train = 'none';
    else if (k === '--no-train') opts.train = 'none';
    else if (k === '--primary') opts.gpu = opts.train = 'primary';
    else if (k === '--first') opts.stopAtFirst = true;
    else if (k === '--json') json = argv[++i];
    else if (k === '--help' || k === '-h') {
      console.log('usage: node dist/src/conformance/zoo.js [--filter REGEX] [--no-gpu] [--no-train] [--primary] [--first] [--json FILE]');
      return 0;
    } else throw new Error(`unknown argument '${k}'`);
  }
  const root = zooRoot();
  if (opts.gpu !== 'none' || opts.train !== 'none') {
    const gpu = await getGpu();
    console.log(`WebGPU: ${gpu.adapterName}`);
  }
  const results: VariantResult[] = [];
  for (const v of loadZoo(root).filter((x) => !filter || filter.test(x.id))) {
    const r = await runVariant(v, opts, root);
    results.push(r);
    console.log(`${r.id}: ${r.error ? `${r.error.stage}: ${r.error.message}` : 'pass'} (${(r.ms / 1000).toFixed(1)} s)`);
  }
  console.log('\n' + formatZooReport(results));
  if (json) writeFileSync(json, JSON.stringify(results, null, 1) + '\n');
  return results.some((r) => r.error) ? 1 : 0;
}

if (process.argv[1] && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  main().then(
    (code) => process.exit(code),
    (e) => {
      console.error(e);
      process.exit(2);
    },
  );
}
