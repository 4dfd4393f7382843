// `mpc export` against onnxruntime (CPU EP): for the MLP, the CNN and the GPT block, the fp32
// export (original graph, given weights) must give `mpc run`'s outputs for the same weights
// and input to 1e-5, and the --as-policy exports (bf16, fp16, fp8) `mpc run --policy P`'s
// within the policy's own rounding. Also the --weights option of compile/run/export and their
// errors. Runs the built CLI (bin/mpc.js) as a child process; beforeAll builds it.
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import onnxProto from 'onnx-proto';
import ort from 'onnxruntime-node';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readNpy, saveNpy } from '../src/data/npy.js';
import { decodeTensors, encodeTensors } from '../src/data/tensor-files.js';
import type { Tensor } from '../src/ir/tensor.js';

const onnx = onnxProto.onnx;
const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BIN = join(ROOT, 'bin', 'mpc.js');
const TMP = mkdtempSync(join(tmpdir(), 'mpc-export-'));

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function mpc(...args: string[]): Promise<Run> {
  const env = { ...process.env };
  delete env.MPC_DEBUG;
  return new Promise((done, fail) => {
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 300_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') fail(err);
      else done({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

async function ok(...args: string[]): Promise<Run> {
  const r = await mpc(...args);
  expect(r.code, `mpc ${args.join(' ')}\n${r.stderr}`).toBe(0);
  return r;
}

/** Exit 2 and one `mpc: ` line matching `message`. */
function usageError(r: Run, message: RegExp): void {
  const show = `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  expect(r.code, show).toBe(2);
  expect(r.stderr, show).toMatch(/^mpc: [^\n]+\n$/);
  expect(r.stderr, show).toMatch(message);
}

beforeAll(() => {
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (!/tsc/.test(r.stdout)) throw new Error(`build failed: ${r.stdout}${r.stderr}`);
}, 180_000);

afterAll(() => rmSync(TMP, { recursive: true, force: true }));

const BATCH = 4;
const MODELS = [
  { name: 'mlp', file: 'models/mlp.onnx', tokens: false },
  { name: 'cnn', file: 'models/cnn.onnx', tokens: false },
  { name: 'gpt', file: 'models/gpt-block.onnx', tokens: true },
];

/** Deterministic input: pixels in [0, 1) or token ids below 128. */
function input(tokens: boolean): { npy: Parameters<typeof saveNpy>[1]; ort: ort.Tensor } {
  if (tokens) {
    const ids = Int32Array.from({ length: BATCH * 16 }, (_, i) => (i * 37 + 11) % 128);
    return { npy: { dtype: 'i8', shape: [BATCH, 16], data: ids }, ort: new ort.Tensor('int64', BigInt64Array.from(ids, BigInt), [BATCH, 16]) };
  }
  const x = Float32Array.from({ length: BATCH * 784 }, (_, i) => Math.abs((Math.sin(i * 12.9898) * 43758.5453) % 1));
  return { npy: { dtype: 'f4', shape: [BATCH, 1, 28, 28], data: x }, ort: new ort.Tensor('float32', x, [BATCH, 1, 28, 28]) };
}

async function ortRun(file: string, x: ort.Tensor): Promise<Float32Array> {
  const s = await ort.InferenceSession.create(file);
  const r = await s.run({ [s.inputNames[0]]: x });
  return Float32Array.from(r[s.outputNames[0]].data as Float32Array);
}

/** max |a - b| / max |b|. */
function relDiff(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  let d = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(b[i]));
    d = Math.max(d, Math.abs(a[i] - b[i]));
  }
  return d / m;
}

/** The model's initial weights moved away from themselves (as training would), keyed by initializer name. */
function perturbed(dir: string): string {
  const program = JSON.parse(readFileSync(join(dir, 'program.json'), 'utf8'));
  const init = decodeTensors(readFileSync(join(dir, 'init.safetensors')), 'init').tensors;
  const out = new Map<string, Tensor>();
  let k = 1;
  for (const name of Object.keys(program.params)) {
    const t = init.get(name);
    if (!t) continue; // an all-zero bias: stays zero
    const data = Float32Array.from(t.data, (v, i) => v * (1 + 0.3 * Math.sin(i * 0.7 + k)) + 0.01 * Math.cos(i * 1.3 + k));
    out.set(name, { ...t, data });
    k++;
  }
  const file = join(dir, '..', 'weights.safetensors');
  writeFileSync(file, encodeTensors(out));
  return file;
}

// The policy's rounding of the logits: a few units in the last place of its type at the
// logits' scale (the export and mpc accumulate in different orders, and one flipped rounding
// early in the graph propagates), fp8 a few of its 3 mantissa bits.
const TOLERANCE: Record<string, number> = { fp32: 1e-5, fp16: 2 ** -8, bf16: 2 ** -5, fp8: 2 ** -2 };

describe.each(MODELS)('$name: export vs mpc run', ({ name, file, tokens }) => {
  const dir = join(TMP, name);
  let weights = '';
  const x = input(tokens);

  beforeAll(async () => {
    await ok('compile', file, '-o', join(dir, 'fp32'), '--batch', String(BATCH), '--subgroup-size', 'off', '--quiet');
    weights = perturbed(join(dir, 'fp32'));
    saveNpy(join(dir, 'x.npy'), x.npy);
  }, 300_000);

  for (const policy of ['fp32', 'bf16', 'fp16', 'fp8']) {
    it(`${policy}${policy === 'fp32' ? '' : ' --as-policy'}: onnxruntime gives mpc run's outputs (${TOLERANCE[policy]})`, async () => {
      const out = join(dir, policy);
      if (policy !== 'fp32') await ok('compile', file, '-o', out, '--policy', policy, '--batch', String(BATCH), '--subgroup-size', 'off', '--quiet');
      const onnxFile = join(dir, `${policy}.onnx`);
      const extra = policy === 'fp32' ? [] : ['--as-policy', ...(policy === 'fp16' ? [] : ['--bf16-compute', 'f32'])];
      const [r] = await Promise.all([
        ok('export', out, '-o', onnxFile, '--weights', weights, ...extra),
        ok('run', file, '--policy', policy, '--weights', weights, '--input', join(dir, 'x.npy'), '--output', join(dir, `${policy}.npy`), '--backend', 'cpu'),
      ]);
      expect(r.stdout).toMatch(new RegExp(`weights from ${weights}`));
      const want = readNpy(join(dir, `${policy}.npy`)).data;
      const got = await ortRun(onnxFile, x.ort);
      const d = relDiff(got, want);
      console.log(`${name} ${policy}: max |ort - mpc run| / max |mpc run| = ${d.toExponential(2)}`);
      expect(d).toBeLessThanOrEqual(TOLERANCE[policy]);
      const m = onnx.ModelProto.decode(readFileSync(onnxFile));
      const types = new Set(m.graph!.initializer!.map((t) => t.dataType));
      const T = onnx.TensorProto.DataType;
      // The graph's IO types are the original's.
      expect(m.graph!.input![0].type!.tensorType!.elemType).toBe(tokens ? T.INT64 : T.FLOAT);
      expect(m.graph!.output![0].type!.tensorType!.elemType).toBe(T.FLOAT);
      if (policy === 'fp32') {
        // The original graph: its nodes, with the given weights as initializers.
        const orig = onnx.ModelProto.decode(readFileSync(file));
        expect(m.graph!.node!.map((n) => n.opType)).toEqual(orig.graph!.node!.map((n) => n.opType));
      } else if (policy === 'fp16') expect(types.has(T.FLOAT16)).toBe(true);
      else if (policy === 'bf16') expect(types.has(T.BFLOAT16)).toBe(true);
      else {
        expect(types.has(17)).toBe(true); // FLOAT8E4M3FN (onnx-proto's enum predates it)
        expect(Number(m.opsetImport!.find((o) => !o.domain)!.version)).toBe(19);
        expect(m.graph!.node!.some((n) => n.opType === 'DequantizeLinear')).toBe(true);
        expect(m.graph!.node!.some((n) => n.opType === 'QuantizeLinear')).toBe(true);
      }
    }, 300_000);
  }

  it('the fp32 export is not the initial model: the weights made a difference', async () => {
    const initial = join(dir, 'initial.onnx');
    await ok('export', join(dir, 'fp32'), '-o', initial);
    const a = await ortRun(initial, x.ort);
    const b = await ortRun(join(dir, 'fp32.onnx'), x.ort);
    expect(relDiff(a, b)).toBeGreaterThan(1e-2);
    // Without trained.safetensors in the folder: the initial weights, the same as the original model.
    expect(relDiff(a, await ortRun(file, x.ort))).toBeLessThanOrEqual(1e-6);
  }, 120_000);
});

// BatchNorm in its inference form: the running statistics in the weights file are the ones used.
describe.skipIf(!existsSync(join(ROOT, 'models', 'bn-cnn-op13.onnx')))('BatchNorm CNN (training-mode export): fp32 export with running statistics', () => {
  it('onnxruntime gives mpc run\'s outputs (1e-5)', async () => {
    const file = 'models/bn-cnn-op13.onnx';
    const dir = join(TMP, 'bn');
    await ok('compile', file, '-o', join(dir, 'fp32'), '--batch', String(BATCH), '--subgroup-size', 'off', '--quiet');
    const init = decodeTensors(readFileSync(join(dir, 'fp32', 'init.safetensors')), 'init').tensors;
    const w = new Map<string, Tensor>();
    for (const [name, t] of init)
      if (/running_(mean|var)$/.test(name)) w.set(name, { ...t, data: Float32Array.from(t.data, (_, i) => (name.endsWith('var') ? 0.5 + 0.4 * Math.sin(i) ** 2 : 0.2 * Math.cos(i))) });
    expect(w.size).toBe(4);
    const weights = join(dir, 'stats.safetensors');
    writeFileSync(weights, encodeTensors(w));
    const x = input(false);
    saveNpy(join(dir, 'x.npy'), x.npy);
    await ok('export', join(dir, 'fp32'), '-o', join(dir, 'bn.onnx'), '--weights', weights);
    await ok('run', file, '--weights', weights, '--input', join(dir, 'x.npy'), '--output', join(dir, 'y.npy'), '--backend', 'cpu');
    const m = onnx.ModelProto.decode(readFileSync(join(dir, 'bn.onnx')));
    for (const n of m.graph!.node!.filter((n) => n.opType === 'BatchNormalization')) expect(n.output!.length).toBe(1);
    const want = readNpy(join(dir, 'y.npy')).data;
    expect(relDiff(await ortRun(join(dir, 'bn.onnx'), x.ort), want)).toBeLessThanOrEqual(1e-5);
    // The statistics matter: with the model's own, the outputs differ.
    await ok('export', join(dir, 'fp32'), '-o', join(dir, 'bn-initial.onnx'));
    expect(relDiff(await ortRun(join(dir, 'bn-initial.onnx'), x.ort), want)).toBeGreaterThan(1e-2);
  }, 300_000);
});

describe('bf16 --as-policy without --bf16-compute f32', () => {
  it('keeps bf16 nodes (onnxruntime CPU has no bf16 kernels for them)', async () => {
    const onnxFile = join(TMP, 'mlp-bf16-native.onnx');
    await ok('export', join(TMP, 'mlp', 'bf16'), '-o', onnxFile, '--as-policy', '--quiet');
    const m = onnx.ModelProto.decode(readFileSync(onnxFile));
    const ir = JSON.parse(readFileSync(join(TMP, 'mlp', 'bf16', 'ir.eval.json'), 'utf8'));
    // Every Gemm of the inference graph reads bf16 initializers; the activations' Casts stay.
    const bf16 = new Set(m.graph!.initializer!.filter((t) => t.dataType === onnx.TensorProto.DataType.BFLOAT16).map((t) => t.name));
    for (const n of m.graph!.node!.filter((n) => n.opType === 'Gemm')) expect(bf16.has(n.input![1])).toBe(true);
    const irActivationCasts = ir.nodes.filter((n: { op: string; inputs: string[] }) => n.op === 'Cast' && !/weight|bias/.test(n.inputs[0])).length;
    expect(m.graph!.node!.filter((n) => n.opType === 'Cast').length).toBe(irActivationCasts);
    await expect(ort.InferenceSession.create(onnxFile)).rejects.toThrow(/implementation|Unsupported data type/);
  }, 120_000);
});

describe('--weights and export errors (exit 2, one line)', () => {
  it('compile --weights: given values are the initial weights; missing ones are listed as kept', async () => {
    const dir = join(TMP, 'mlp');
    const part = join(TMP, 'partial.safetensors');
    const w = decodeTensors(readFileSync(join(TMP, 'mlp', 'weights.safetensors')), 'w').tensors;
    writeFileSync(part, encodeTensors(new Map([...w].filter(([n]) => n === '1.weight'))));
    const r = await ok('compile', 'models/mlp.onnx', '-o', join(dir, 'ft'), '--weights', part, '--batch', String(BATCH), '--subgroup-size', 'off');
    expect(r.stdout).toMatch(/--weights: 1 initializers from .*; the model's own values kept for 1\.bias, 3\.weight, 3\.bias/);
    const init = decodeTensors(readFileSync(join(dir, 'ft', 'init.safetensors')), 'init').tensors;
    expect(Array.from(init.get('1.weight')!.data)).toEqual(Array.from(w.get('1.weight')!.data));
  }, 120_000);

  it('a shape mismatch, an unknown name, a missing file', async () => {
    const bad = join(TMP, 'bad.safetensors');
    writeFileSync(bad, encodeTensors(new Map([['1.weight', { dtype: 'f32', shape: [3, 3], data: new Float32Array(9) }]])));
    usageError(await mpc('compile', 'models/mlp.onnx', '-o', join(TMP, 'never'), '--weights', bad), /shapes differ.*1\.weight \[3,3\] where the model has \[256,784\]/);
    const unknown = join(TMP, 'unknown.safetensors');
    writeFileSync(unknown, encodeTensors(new Map([['fc9.weight', { dtype: 'f32', shape: [2], data: new Float32Array(2) }]])));
    usageError(await mpc('compile', 'models/mlp.onnx', '-o', join(TMP, 'never'), '--weights', unknown), /name no initializer of the model: fc9\.weight/);
    usageError(await mpc('run', 'models/mlp.onnx', '--weights', unknown, '--input', join(TMP, 'mlp', 'x.npy'), '--output', join(TMP, 'o.npy')), /fc9\.weight/);
    usageError(await mpc('grad', 'models/mlp.onnx', '--weights', join(TMP, 'nope.safetensors'), '--input', join(TMP, 'mlp', 'x.npy'), '--labels', join(TMP, 'mlp', 'x.npy'), '-o', join(TMP, 'g.npz')), /nope\.safetensors: no such file/);
    usageError(await mpc('export', join(TMP, 'mlp', 'fp32'), '-o', join(TMP, 'x.onnx'), '--weights', unknown), /fc9\.weight/);
  }, 120_000);

  it('export of a folder that is not an mpc output, and --bf16-compute without --as-policy', async () => {
    usageError(await mpc('export', TMP, '-o', join(TMP, 'x.onnx')), /not an mpc output folder/);
    usageError(await mpc('export', join(TMP, 'mlp', 'fp32'), '-o', join(TMP, 'x.onnx'), '--bf16-compute', 'f32'), /--as-policy/);
  }, 60_000);
});
