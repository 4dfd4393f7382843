// Import semantics of real PyTorch exports (models/export_import_cases.py, torch 1.13):
//   - the graph's own repeated work (a mask compared and cast once per block) is merged by
//     the cse pass, so precision assignment sees one Cast per (value, type);
//   - BatchNormalization in training mode with 5 outputs (opset 13) and 3 (opset 15): the
//     running statistics are training state updated with the exported momentum, and equal
//     PyTorch's after the same SGD steps; evaluation reads them in inference mode;
//   - the trained initializers are exactly PyTorch's named_parameters: buffers (masks,
//     running statistics) are never trained; --freeze / --train choose among parameters.
// The oracle is PyTorch in float64 (test/fixtures/import/reference.json).
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { compileModel, writeCompiled, type Compiled } from '../src/compile/compile.js';
import type { CompileOptions } from '../src/compile/options.js';
import { passCtx } from '../src/compile/options.js';
import { runGraph } from '../src/interp/interpreter.js';
import { importOnnxFile, InputError } from '../src/onnx/import.js';
import { runPipeline, TRAIN_PIPELINE, EVAL_PIPELINE } from '../src/passes/pipeline.js';
import { cpuEngine, gpuEngine, loadProgramDir, type Engine } from '../src/runtime/engine.js';
import type { ParamSelection } from '../src/passes/select-params.js';
import type { Graph } from '../src/ir/graph.js';
import { decodeArray, type FixtureArray } from './helpers/fixtures.js';
import { readFileSync } from 'node:fs';

interface Ref {
  model: string;
  opset: number;
  x: FixtureArray;
  y: FixtureArray;
  logits: FixtureArray;
  loss: number;
  grads: Record<string, FixtureArray>;
  parameters: string[];
  buffers: string[];
  initializers: string[];
  sgd?: { lr: number; steps: number; losses: number[]; state: Record<string, FixtureArray> };
}

const REF = JSON.parse(readFileSync(new URL('./fixtures/import/reference.json', import.meta.url), 'utf8')) as Record<string, Ref>;
const file = (m: string) => new URL(`./fixtures/import/${m}.onnx`, import.meta.url).pathname;

/** max |a - b| relative to max |b| (the tensor's scale). */
function relToMax(a: ArrayLike<number>, b: ArrayLike<number>): number {
  expect(a.length).toBe(b.length);
  let m = 0;
  let d = 0;
  for (let i = 0; i < b.length; i++) {
    m = Math.max(m, Math.abs(b[i]));
    d = Math.max(d, Math.abs(a[i] - b[i]));
  }
  return d / Math.max(m, 1e-30);
}

function compile(model: string, opts: Partial<CompileOptions> = {}): Compiled {
  const r = REF[model];
  return compileModel(file(model), { policy: 'fp32', batch: decodeArray(r.x).shape[0], loss: 'cross_entropy', optimizer: { kind: 'sgd', lr: r.sgd?.lr ?? 0.1, momentum: 0 }, ...opts });
}

function engineOf(c: Compiled, gpu: boolean): Promise<Engine> | Engine {
  const dir = join(mkdtempSync(join(tmpdir(), 'mpc-import-')), 'out');
  writeCompiled(dir, c);
  return gpu ? gpuEngine(loadProgramDir(dir)) : cpuEngine(loadProgramDir(dir));
}

const trained = (c: Compiled) => Object.keys(c.program.params).sort();

describe('cse: the graph\'s own repeated Casts', () => {
  it('masked_decoder: the export casts one mask once per block; cse leaves one Cast, and every policy compiles', () => {
    const g = importOnnxFile(file('masked_decoder'));
    const ctx = passCtx({ policy: 'fp16', batch: 3 });
    const castsOfMask = (x: Graph) => x.nodes.filter((n) => n.op === 'Cast' && n.inputs[0] === '/Equal_output_0').length;
    // The export really has the duplicate work (the oracle for what cse removes).
    expect(castsOfMask(runPipeline(g, ctx, TRAIN_PIPELINE, { after: 'fold-constants' }))).toBe(2);
    expect(castsOfMask(runPipeline(g, ctx, TRAIN_PIPELINE, { after: 'cse' }))).toBe(1);
    for (const policy of ['fp32', 'fp16', 'bf16', 'fp8']) expect(() => runPipeline(g, passCtx({ policy, batch: 3 }), TRAIN_PIPELINE)).not.toThrow();
    // insert-casts on its own also keeps one Cast per (value, type) when the model has two.
    expect(() => runPipeline(g, ctx, TRAIN_PIPELINE.filter((p) => p.name !== 'cse'))).not.toThrow();
  });

  it('cse keeps the forward values: the merged graph computes what the unmerged one does (interpreter)', () => {
    const g = importOnnxFile(file('masked_decoder'));
    const ctx = passCtx({ policy: 'fp32', batch: 3 });
    const r = REF.masked_decoder;
    const x = decodeArray(r.x);
    const full = runPipeline(g, ctx, EVAL_PIPELINE);
    const noCse = runPipeline(g, ctx, EVAL_PIPELINE.filter((p) => p.name !== 'cse'));
    const a = runGraph(full, { ids: x }).get(full.outputs[0])!.data;
    const b = runGraph(noCse, { ids: x }).get(noCse.outputs[0])!.data;
    expect(Array.from(a)).toEqual(Array.from(b));
  });

  it('the insert-casts post-condition covers the model\'s own Casts', () => {
    const cast = TRAIN_PIPELINE.find((p) => p.name === 'insert-casts')!;
    const g = runPipeline(importOnnxFile(file('masked_decoder')), passCtx({ policy: 'fp16', batch: 3 }), TRAIN_PIPELINE, { after: 'insert-casts' });
    const c = g.nodes.find((n) => n.op === 'Cast')!;
    g.nodes.push({ ...c, name: 'dup', outputs: ['dup.out'] });
    g.values.set('dup.out', { ...g.values.get(c.outputs[0])!, name: 'dup.out' });
    expect(cast.check!(g, passCtx({ policy: 'fp16' })).join()).toMatch(/more than one Cast/);
  });
});

describe('masked_decoder (masked_fill, causal-mask buffers, tied embeddings) vs PyTorch float64', () => {
  const r = REF.masked_decoder;
  it('trains exactly PyTorch\'s named_parameters (the mask buffers are not trained)', () => {
    const c = compile('masked_decoder');
    expect(trained(c)).toEqual(r.parameters);
    expect(r.buffers.every((b) => !trained(c).includes(b))).toBe(true);
  });

  for (const backend of ['interp', 'webgpu'] as const)
    it(`${backend}: logits, loss and every parameter gradient within 1e-4 of PyTorch`, async () => {
      const c = compile('masked_decoder');
      const x = decodeArray(r.x).data as Int32Array;
      const y = decodeArray(r.y).data as Int32Array;
      const e = await engineOf(c, backend === 'webgpu');
      expect(relToMax(await e.predict(x), decodeArray(r.logits).data)).toBeLessThan(1e-4);
      // One SGD step of lr: the update is -lr * grad, so the gradient is read from the change.
      const names = Object.keys(c.program.params);
      const before = await e.read(names);
      e.trainStep(x, y);
      expect(Math.abs((await e.loss()) - r.loss) / r.loss).toBeLessThan(1e-5);
      const after = await e.read(names);
      for (const p of names) {
        const g = decodeArray(r.grads[p]).data;
        const b = before.get(p)!.data;
        const a = after.get(p)!.data;
        const got = Float64Array.from(a, (v, i) => (b[i] - v) / 0.1);
        // The update is rounded to f32 weights: compare at the weights' resolution.
        const wmax = Math.max(...Array.from(b, Math.abs));
        const err = Math.max(...Array.from(got, (v, i) => Math.abs(v - g[i])));
        const gmax = Math.max(...Array.from(g, Math.abs));
        expect(err, p).toBeLessThan(Math.max(1e-4 * gmax, (4 * 2 ** -24 * wmax) / 0.1));
      }
    });
});

describe('BatchNormalization in training mode (opset 13: 5 outputs; opset 15: 3)', () => {
  for (const model of ['bn_cnn_op13', 'bn_cnn_op15'])
    for (const backend of ['interp', 'webgpu'] as const)
      it(`${model} ${backend}: 3 SGD steps give PyTorch's losses, weights and running statistics`, async () => {
        const r = REF[model];
        const c = compile(model);
        const sel = c.train.meta.params as ParamSelection;
        expect(sel.state.sort()).toEqual(r.buffers.filter((b) => /running_(mean|var)$/.test(b)).sort());
        expect(trained(c)).toEqual(r.parameters);
        const x = decodeArray(r.x).data as Float32Array;
        const y = decodeArray(r.y).data as Int32Array;
        const e = await engineOf(c, backend === 'webgpu');
        // Before training, evaluation uses the initial running statistics (inference mode);
        // training-mode logits equal PyTorch's.
        const losses = [];
        for (let s = 0; s < r.sgd!.steps; s++) {
          e.trainStep(x, y);
          losses.push(await e.loss());
        }
        for (let s = 0; s < losses.length; s++) expect(Math.abs(losses[s] - r.sgd!.losses[s]), `loss ${s}`).toBeLessThan(1e-5 * r.sgd!.losses[s]);
        const names = Object.keys(r.sgd!.state).filter((k) => c.train.values.has(k));
        const got = await e.read(names);
        for (const k of names) {
          const want = decodeArray(r.sgd!.state[k]).data;
          const tol = /running_(mean|var)/.test(k) ? 1e-5 : 1e-4;
          expect(relToMax(got.get(k)!.data, want), k).toBeLessThan(tol);
        }
      });

  it('evaluation runs BatchNormalization in inference mode with the running statistics', () => {
    const c = compile('bn_cnn_op13');
    const bn = c.eval.nodes.filter((n) => n.op === 'BatchNormalization');
    expect(bn.length).toBe(2);
    for (const n of bn) {
      expect(n.attrs.training_mode).toBe(0);
      expect(c.eval.values.get(n.inputs[3])!.role).toBe('state');
    }
    // The train step writes the running statistics back.
    expect(c.train.updates.map((u) => u.state).sort()).toEqual(expect.arrayContaining(['b1.running_mean', 'b1.running_var', 'b2.running_mean', 'b2.running_var']));
  });

  it('a model that reads saved_mean/saved_var is refused with a clear error', async () => {
    const { default: onnxProto } = await import('onnx-proto');
    const m = onnxProto.onnx.ModelProto.decode(readFileSync(file('bn_cnn_op13')));
    const bn = m.graph!.node!.find((n) => n.opType === 'BatchNormalization')!;
    m.graph!.output!.push(onnxProto.onnx.ValueInfoProto.create({ name: bn.output![3], type: m.graph!.output![0].type }));
    const { importOnnx } = await import('../src/onnx/import.js');
    expect(() => importOnnx(onnxProto.onnx.ModelProto.encode(m).finish())).toThrow(/saved_mean\/saved_var/);
  });
});

describe('trainable parameters: rule and overrides', () => {
  it('a non-finite initializer (an additive -inf mask) is a constant, never trained', async () => {
    const { default: onnxProto } = await import('onnx-proto');
    const O = onnxProto.onnx;
    // y = x W + mask, mask has -inf: it reaches the loss through Add, a differentiable input.
    const t = (name: string, dims: number[], vals: number[]) => O.TensorProto.create({ name, dims, dataType: 1, floatData: vals });
    const vi = (name: string, dims: number[]) => O.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
    const model = O.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: [
          { opType: 'MatMul', input: ['x', 'W'], output: ['h'], name: 'mm' },
          { opType: 'Add', input: ['h', 'mask'], output: ['y'], name: 'add' },
        ],
        initializer: [t('W', [2, 3], [1, 2, 3, 4, 5, 6]), t('mask', [3], [0, -Infinity, 0])],
        input: [vi('x', [4, 2])],
        output: [vi('y', [4, 3])],
      },
    });
    const dir = mkdtempSync(join(tmpdir(), 'mpc-mask-'));
    const path = join(dir, 'm.onnx');
    (await import('node:fs')).writeFileSync(path, O.ModelProto.encode(model).finish());
    const c = compileModel(path, { policy: 'fp32', batch: 4 });
    expect(Object.keys(c.program.params)).toEqual(['W']);
    expect((c.train.meta.params as ParamSelection).frozen).toEqual([{ name: 'mask', reason: expect.stringMatching(/infinite/) }]);
  });

  it('--freeze GLOB and --train GLOB choose the trained parameters; a glob that matches nothing is an input error', () => {
    const frozen = compile('bn_cnn_op15', { freeze: ['c*'] });
    expect(trained(frozen)).toEqual(['b1.bias', 'b1.weight', 'b2.bias', 'b2.weight', 'fc.bias', 'fc.weight']);
    const only = compile('bn_cnn_op15', { train: ['fc.*'] });
    expect(trained(only)).toEqual(['fc.bias', 'fc.weight']);
    expect((only.train.meta.params as ParamSelection).frozen.map((f) => f.name)).toContain('c1.weight');
    expect(() => compile('bn_cnn_op15', { freeze: ['nothing.*'] })).toThrow(InputError);
    expect(() => compile('bn_cnn_op15', { freeze: ['nothing.*'] })).toThrow(/matches no parameter/);
  });
});

describe('Dropout in training mode: a fresh mask every step', () => {
  /** x [4,16] -> MatMul W [16,8] -> Dropout(0.5, training) -> Dropout(0.5, training) -> y */
  async function dropoutModel(): Promise<string> {
    const { default: onnxProto } = await import('onnx-proto');
    const O = onnxProto.onnx;
    const W = Array.from({ length: 128 }, (_, i) => Math.sin(i) * 0.3);
    const vi = (name: string, dims: number[]) => O.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => ({ dimValue: d })) } } } });
    const model = O.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: [
          { opType: 'MatMul', input: ['x', 'W'], output: ['h'], name: 'mm' },
          { opType: 'Dropout', input: ['h', 'ratio', 'train'], output: ['d1'], name: 'drop1' },
          { opType: 'Dropout', input: ['h', 'ratio', 'train'], output: ['d2'], name: 'drop2' },
          { opType: 'Add', input: ['d1', 'd2'], output: ['y'], name: 'add' },
        ],
        initializer: [
          O.TensorProto.create({ name: 'W', dims: [16, 8], dataType: 1, floatData: W }),
          O.TensorProto.create({ name: 'ratio', dims: [], dataType: 1, floatData: [0.5] }),
          O.TensorProto.create({ name: 'train', dims: [], dataType: 9, int32Data: [1] }),
        ],
        input: [vi('x', [4, 16])],
        output: [vi('y', [4, 8])],
      },
    });
    const dir = mkdtempSync(join(tmpdir(), 'mpc-dropout-'));
    const path = join(dir, 'drop.onnx');
    (await import('node:fs')).writeFileSync(path, O.ModelProto.encode(model).finish());
    return path;
  }
  const x = Float32Array.from({ length: 64 }, (_, i) => Math.cos(i));
  const y = Int32Array.from({ length: 4 }, (_, i) => i);

  it('interpreter: the masks change from step to step, and two Dropouts of one value differ', async () => {
    const c = compileModel(await dropoutModel(), { policy: 'fp32', batch: 4, optimizer: { kind: 'sgd', lr: 0.01, momentum: 0 } });
    const { InterpSession } = await import('../src/interp/interpreter.js');
    const s = new InterpSession(c.train);
    const drops = c.train.nodes.filter((n) => n.op === 'Dropout' && !n.phase);
    expect(drops.length).toBe(2);
    const mask = (env: Map<string, { data: ArrayLike<number> }>, k: number) => Array.from(env.get(drops[k].outputs[0])!.data, (v) => (v === 0 ? 0 : 1)).join('');
    const e1 = s.step({ x: { dtype: 'f32', shape: [4, 16], data: x }, [c.program.io.labels]: { dtype: 'i64', shape: [4], data: y } });
    const m1 = [mask(e1, 0), mask(e1, 1)];
    const e2 = s.step({ x: { dtype: 'f32', shape: [4, 16], data: x }, [c.program.io.labels]: { dtype: 'i64', shape: [4], data: y } });
    expect(mask(e2, 0)).not.toBe(m1[0]);
    expect(m1[1]).not.toBe(m1[0]);
    // About half dropped.
    const kept = m1[0].split('').filter((b) => b === '1').length;
    expect(kept).toBeGreaterThan(8);
    expect(kept).toBeLessThan(24);
  });

  it('WebGPU draws the same masks as the interpreter at every step, and the counter is training state', async () => {
    const c = compileModel(await dropoutModel(), { policy: 'fp32', batch: 4, optimizer: { kind: 'sgd', lr: 0.05, momentum: 0 } });
    const cpu = await engineOf(c, false);
    const gpu = await engineOf(c, true);
    for (let s = 0; s < 3; s++) {
      cpu.trainStep(x, y);
      gpu.trainStep(x, y);
      expect(Math.abs((await gpu.loss()) - (await cpu.loss()))).toBeLessThan(1e-5);
    }
    const [a, b] = [await cpu.read(['W', 'rng.step']), await gpu.read(['W', 'rng.step'])];
    expect(relToMax(b.get('W')!.data, a.get('W')!.data)).toBeLessThan(1e-6);
    expect(Array.from(b.get('rng.step')!.data)).toEqual([3]);
    expect(c.program.buffers.find((buf) => buf.name === 'rng.step')!.role).toBe('state');
  });
});

describe('sequence data from npy/npz: token ids of any integer type, labels per position', () => {
  const quiet = { start() {}, update() {}, stop() {}, log() {} };
  async function compiled(): Promise<string> {
    const dir = join(mkdtempSync(join(tmpdir(), 'mpc-seq-')), 'out');
    writeCompiled(dir, compileModel(file('masked_decoder'), { policy: 'bf16', batch: 3, optimizer: { kind: 'adam', lr: 1e-2 } }));
    return dir;
  }
  /** n windows of a repeating pattern (learnable: the next token is a function of this one). */
  function windows(n: number, vocab: number, dtype: 'i8' | 'u1' | 'i4') {
    const x = new Int32Array(n * 8);
    const y = new Int32Array(n * 8);
    for (let s = 0; s < n; s++)
      for (let t = 0; t < 8; t++) {
        x[s * 8 + t] = (s + 3 * t) % vocab;
        y[s * 8 + t] = (s + 3 * t + 3) % vocab;
      }
    return { x: { dtype, shape: [n, 8], data: dtype === 'u1' ? Uint8Array.from(x) : x }, y: { dtype, shape: [n, 8], data: dtype === 'u1' ? Uint8Array.from(y) : y } };
  }

  it('npz (int64 ids) and npy (uint8 ids): a decoder trains on [n, seq] labels and its loss falls', async () => {
    const { writeNpz, saveNpy } = await import('../src/data/npy.js');
    const { train } = await import('../src/runtime/train.js');
    const dir = await compiled();
    const tmp = mkdtempSync(join(tmpdir(), 'mpc-seqdata-'));
    const w = windows(60, 32, 'i8');
    writeNpz(join(tmp, 'd.npz'), { x: w.x as never, y: w.y as never });
    const s1 = await train({ dir, data: `npz:${join(tmp, 'd.npz')}`, epochs: 8, backend: 'cpu', seed: 0, logEvery: 1 }, quiet);
    expect(s1.steps).toBeGreaterThan(100);
    expect(s1.train_loss).toBeLessThan(0.5 * Math.log(32));
    const u = windows(30, 32, 'u1');
    saveNpy(join(tmp, 'x.npy'), u.x as never);
    saveNpy(join(tmp, 'y.npy'), u.y as never);
    const s2 = await train({ dir, data: `npy:${join(tmp, 'x.npy')},${join(tmp, 'y.npy')}`, epochs: 1, backend: 'cpu', seed: 0, logEvery: 1 }, quiet);
    expect(Number.isFinite(s2.train_loss)).toBe(true);
  });

  it('a token id beyond the embedding table is a clear input error before training', async () => {
    const { writeNpz } = await import('../src/data/npy.js');
    const { train } = await import('../src/runtime/train.js');
    const dir = await compiled();
    const tmp = mkdtempSync(join(tmpdir(), 'mpc-seqdata-'));
    const w = windows(12, 40, 'i8'); // ids up to 39, the table has 32 rows
    writeNpz(join(tmp, 'd.npz'), { x: w.x as never, y: windows(12, 32, 'i8').y as never });
    await expect(train({ dir, data: `npz:${join(tmp, 'd.npz')}`, epochs: 1, backend: 'webgpu', seed: 0, logEvery: 1 }, quiet)).rejects.toThrow(
      /token id 3\d .*outside the embedding table of 32 rows/,
    );
    await expect(train({ dir, data: `npz:${join(tmp, 'd.npz')}`, epochs: 1, backend: 'cpu', seed: 0, logEvery: 1 }, quiet)).rejects.toThrow(InputError);
  });
});

describe('index-check: an out-of-range token id on the device is flagged, never silent', () => {
  it('interpreter and WebGPU both read the bad id as 0 and set the flag; valid ids leave it clear', async () => {
    const c = compileModel(file('masked_decoder'), { policy: 'fp32', batch: 3, optimizer: { kind: 'sgd', lr: 0.01, momentum: 0 } });
    const flagged = c.train.nodes.filter((n) => n.op === 'Gather' && n.inputs[2]);
    expect(flagged.length).toBe(1);
    const r = REF.masked_decoder;
    const good = decodeArray(r.x).data as Int32Array;
    const y = decodeArray(r.y).data as Int32Array;
    const bad = Int32Array.from(good);
    bad[5] = 40; // the table has 32 rows
    for (const gpu of [false, true]) {
      const e = await engineOf(c, gpu);
      e.trainStep(good, y);
      expect(Array.from((await e.read(['index.out_of_range'])).get('index.out_of_range')!.data)).toEqual([0]);
      e.trainStep(bad, y);
      expect(Number.isFinite(await e.loss())).toBe(true);
      expect(Array.from((await e.read(['index.out_of_range'])).get('index.out_of_range')!.data)).toEqual([1]);
    }
  });
});
