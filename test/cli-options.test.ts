// The command line's options: numbers are validated (exit 2, one line), a --dim the model does
// not have is an error, a --class rule that matches nothing is a warning, --train/--freeze/
// --const reach the compiled program, and `mpc inspect` prints a summary and JSON / Graphviz.
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { saveNpy } from '../src/data/npy.js';
import { gptOnnx } from '../src/models/gpt.js';
import { buildOnce, expectOk, expectUsageError, mpc, ROOT } from './helpers/cli.js';

const MLP = join(ROOT, 'models', 'mlp.onnx');
const BN = join(ROOT, 'test', 'fixtures', 'import', 'bn_cnn_op15.onnx');
const tmp = () => mkdtempSync(join(tmpdir(), 'mpc-cli-opts-'));

beforeAll(buildOnce, 300_000);

describe('numeric options are validated', () => {
  for (const [args, message] of [
    [['--momentum', 'abc'], /--momentum.*expected a number in \[0, 1\)/],
    [['--momentum', '1.5'], /--momentum/],
    [['--weight-decay', '-0.1'], /--weight-decay.*non-negative/],
    [['--weight-decay', 'x'], /--weight-decay/],
    [['--lr', '0'], /--lr.*positive/],
    [['--batch', '2.5'], /--batch.*positive integer/],
    [['--dim', 'foo=3'], /--dim foo: the model has no such dimension \(its symbolic dimensions: N\)/],
  ] as [string[], RegExp][])
    it(`compile ${args.join(' ')}: exit 2, one line`, async () => {
      expectUsageError(await mpc('compile', MLP, '-o', join(tmp(), 'out'), ...args), message);
    });

  it('train --seed abc / -1: exit 2, one line', async () => {
    const out = join(tmp(), 'out');
    expectOk(await mpc('compile', MLP, '-o', out, '--batch', '8', '--quiet'));
    expectUsageError(await mpc('train', out, '--data', 'fashion-mnist', '--seed', 'abc'), /--seed.*non-negative integer/);
    expectUsageError(await mpc('train', out, '--data', 'fashion-mnist', '--seed', '-1'), /--seed/);
  });
});

describe('compile', () => {
  it('warns (stderr, exit 0) when a --class rule matches no op type or node', async () => {
    const r = await mpc('compile', MLP, '-o', join(tmp(), 'out'), '--batch', '8', '--class', 'Softmaxx=deny', '--class', 'Gemm=deny');
    expectOk(r);
    expect(r.stderr).toBe('mpc: warning: --class Softmaxx=deny matches no op type or node of the model\n');
  });

  it('prints and records trained, frozen and state initializers (--freeze)', async () => {
    const out = join(tmp(), 'out');
    const r = await mpc('compile', BN, '-o', out, '--batch', '4', '--freeze', 'c1.*');
    expectOk(r);
    expect(r.stdout).toMatch(/trained parameters: 8 \(b1\.bias, b1\.weight, b2\.bias, b2\.weight, c2\.bias, c2\.weight, fc\.bias, fc\.weight\)/);
    expect(r.stdout).toMatch(/frozen: c1\.bias \(--freeze\), c1\.weight \(--freeze\)/);
    expect(r.stdout).toMatch(/running statistics \(updated as state\): b1\.running_mean, b1\.running_var, b2\.running_mean, b2\.running_var/);
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    expect(m.params.trained).toHaveLength(8);
    expect(m.params.frozen.map((f: { name: string }) => f.name)).toEqual(['c1.bias', 'c1.weight']);
    expectUsageError(await mpc('compile', BN, '-o', join(tmp(), 'out'), '--batch', '4', '--train', 'nothing*'), /--train 'nothing\*' matches no parameter/);
  });

  it('--const NAME=FILE.npy binds an input; a wrong shape or name is an input error', async () => {
    const d = tmp();
    saveNpy(join(d, 'x.npy'), { dtype: 'f4', shape: [4, 1, 8, 8], data: new Float32Array(256) });
    saveNpy(join(d, 'bad.npy'), { dtype: 'f4', shape: [4, 1, 8, 9], data: new Float32Array(288) });
    // Binding the model's only data input leaves nothing to train on: compile says so.
    expectUsageError(await mpc('compile', BN, '-o', join(d, 'o1'), '--batch', '4', '--const', `x=${join(d, 'x.npy')}`), /one data input/);
    expectUsageError(await mpc('compile', BN, '-o', join(d, 'o2'), '--batch', '4', '--const', `x=${join(d, 'bad.npy')}`), /--const x: shape \[4,1,8,9\] does not fit/);
    expectUsageError(await mpc('compile', BN, '-o', join(d, 'o3'), '--batch', '4', '--const', `nope=${join(d, 'x.npy')}`), /--const nope: the model has no input 'nope'/);
    expectUsageError(await mpc('compile', BN, '-o', join(d, 'o4'), '--batch', '4', '--const', 'x'), /--const.*NAME=FILE/);
  });

  it('--const binds a second model input: compile and run treat it as a constant', async () => {
    const { default: onnxProto } = await import('onnx-proto');
    const O = onnxProto.onnx;
    const vi = (name: string, dims: (number | string)[]) =>
      O.ValueInfoProto.create({ name, type: { tensorType: { elemType: 1, shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) } } } });
    const model = O.ModelProto.create({
      irVersion: 8,
      opsetImport: [{ domain: '', version: 17 }],
      graph: {
        name: 'g',
        node: [
          { opType: 'MatMul', input: ['x', 'w'], output: ['h'], name: 'mm' },
          { opType: 'Add', input: ['h', 'b'], output: ['y'], name: 'add' },
        ],
        initializer: [O.TensorProto.create({ name: 'b', dims: [3], dataType: 1, floatData: [0.5, -1, 2] })],
        input: [vi('x', ['N', 4]), vi('w', [4, 3])],
        output: [vi('y', ['N', 3])],
      },
    });
    const d = tmp();
    const { writeFileSync } = await import('node:fs');
    writeFileSync(join(d, 'two.onnx'), O.ModelProto.encode(model).finish());
    const w = Float32Array.from({ length: 12 }, (_, i) => i - 5);
    const x = Float32Array.from({ length: 8 }, (_, i) => (i % 3) - 1);
    saveNpy(join(d, 'w.npy'), { dtype: 'f4', shape: [4, 3], data: w });
    saveNpy(join(d, 'x.npy'), { dtype: 'f4', shape: [2, 4], data: x });
    // Without it the model has two inputs, which training cannot feed.
    expectUsageError(await mpc('compile', join(d, 'two.onnx'), '-o', join(d, 'o0'), '--batch', '2', '--loss', 'mse'), /one data input/);
    expectOk(await mpc('compile', join(d, 'two.onnx'), '-o', join(d, 'o1'), '--batch', '2', '--loss', 'mse', '--const', `w=${join(d, 'w.npy')}`, '--quiet'));
    expectOk(await mpc('run', join(d, 'two.onnx'), '--input', join(d, 'x.npy'), '--output', join(d, 'y.npy'), '--backend', 'cpu', '--const', `w=${join(d, 'w.npy')}`));
    const { readNpy } = await import('../src/data/npy.js');
    const y = readNpy(join(d, 'y.npy'));
    const want = [0, 1].flatMap((r) => [0, 1, 2].map((c) => [0, 1, 2, 3].reduce((a, k) => a + x[r * 4 + k] * w[k * 3 + c], 0) + [0.5, -1, 2][c]));
    expect(Array.from(y.data)).toEqual(want);
  });

  it('manifest.json says which input made a follow op compute in f32', async () => {
    const out = join(tmp(), 'out');
    expectOk(await mpc('compile', BN, '-o', out, '--batch', '4', '--policy', 'bf16', '--quiet'));
    const m = JSON.parse(readFileSync(join(out, 'manifest.json'), 'utf8'));
    // The ReLU after a BatchNormalization (deny: f32) follows its f32 output.
    const relu = m.tensors.train.find((t: { producer?: { op: string } }) => t.producer?.op === 'Relu');
    expect(relu.producer.compute).toBe('f32');
    expect(relu.producer.reason).toMatch(/follows f32 of '.*BatchNormalization.*', from BatchNormalization '.*' \(deny, f32\)/);
  });
});

describe('export', () => {
  it('an output path below a regular file is one line, exit 2, before any work', async () => {
    const out = join(tmp(), 'out');
    expectOk(await mpc('compile', MLP, '-o', out, '--batch', '8', '--quiet'));
    expectUsageError(await mpc('export', out, '-o', join(out, 'program.json', 'x.onnx')), /-o .*program\.json\/x\.onnx: .*ENOTDIR/);
    expectUsageError(await mpc('export', join(out, 'nope'), '-o', join(out, 'x.onnx')), /not an mpc output folder/);
  });
});

describe('inspect', () => {
  it('text output starts with a summary (classes, ops per dtype, casts, bytes)', async () => {
    const r = await mpc('inspect', MLP, '--policy', 'fp16', '--batch', '4');
    expectOk(r);
    const lines = r.stdout.split('\n');
    expect(lines[1]).toMatch(/^# \d+ nodes; classes: .*allow \d+/);
    expect(lines[2]).toMatch(/^# ops by compute dtype: .*Gemm \d+xf16/);
    expect(lines[3]).toMatch(/^# casts: \d+x f32->f16/);
    expect(lines[4]).toMatch(/^# bytes \(a buffer per value\): param [\d.]+ KiB f32/);
  });

  it('--format json: the summary and the IR, parseable', async () => {
    const r = await mpc('inspect', MLP, '--policy', 'bf16', '--batch', '4', '--format', 'json', '--graph', 'eval');
    expectOk(r);
    const j = JSON.parse(r.stdout);
    expect(j.graph).toBe('eval');
    expect(j.summary.ops.Gemm).toEqual({ bf16: expect.any(Number) });
    const gemms = j.summary.ops.Gemm.bf16;
    expect((j.ir.nodes as { op: string }[]).filter((n) => n.op === 'Gemm')).toHaveLength(gemms);
  });

  it('--format dot: a Graphviz digraph with one box per node', async () => {
    const r = await mpc('inspect', MLP, '--batch', '4', '--format', 'dot', '--graph', 'eval');
    expectOk(r);
    expect(r.stdout).toMatch(/^digraph "/);
    expect(r.stdout.trim().endsWith('}')).toBe(true);
    const json = JSON.parse((await mpc('inspect', MLP, '--batch', '4', '--format', 'json', '--graph', 'eval')).stdout);
    expect(r.stdout.match(/^ {2}n\d+ \[label=/gm)!.length).toBe(json.summary.nodes);
    expectUsageError(await mpc('inspect', MLP, '--format', 'svg'), /--format/);
  });

  it('--graph eval follows --subgroup-size as compile does: the weight-layout copies appear with a subgroup size', async () => {
    const model = join(tmp(), 'gpt.onnx');
    writeFileSync(model, gptOnnx({ layers: 1, width: 128, heads: 4, context: 8, vocab: 32 }));
    const copies = async (size: string) => {
      const r = await mpc('inspect', model, '--batch', '2', '--format', 'json', '--graph', 'eval', '--subgroup-size', size);
      expectOk(r);
      return (JSON.parse(r.stdout).ir.nodes as { op: string; name: string }[]).filter((n) => n.op === 'Transpose' && n.name.endsWith('.kn')).length;
    };
    expect(await copies('8')).toBe(1);
    expect(await copies('off')).toBe(0);
  });
});

describe('train', () => {
  /** The MLP compiled for batch 8, and 20 samples of npy data: 2 steps an epoch. */
  async function setup(policy = 'fp32'): Promise<{ out: string; data: string; d: string }> {
    const d = tmp();
    const out = join(d, 'out');
    expectOk(await mpc('compile', MLP, '-o', out, '--batch', '8', '--policy', policy, '--quiet'));
    const x = Float32Array.from({ length: 20 * 784 }, (_, i) => ((i * 7) % 13) / 13);
    const y = Int32Array.from({ length: 20 }, (_, i) => i % 10);
    saveNpy(join(d, 'x.npy'), { dtype: 'f4', shape: [20, 1, 28, 28], data: x });
    saveNpy(join(d, 'y.npy'), { dtype: 'i8', shape: [20], data: y });
    return { out, d, data: `npy:${join(d, 'x.npy')},${join(d, 'y.npy')}` };
  }

  it('--batch is explained: fixed at compile time, how to recompile', async () => {
    const { out, data } = await setup();
    expectUsageError(await mpc('train', out, '--data', data, '--batch', '32'), /--batch: the batch size is fixed when the program is compiled \(this program's is 8\); recompile with mpc compile MODEL --batch 32/);
  });

  it('--steps counts steps across epochs; --log writes CSV (or JSON lines); step/s is training throughput', async () => {
    const { out, data, d } = await setup();
    // 16 training samples (the last sixth is held out): 2 steps an epoch.
    const r = await mpc('train', out, '--data', data, '--steps', '5', '--log-every', '1', '--log', join(d, 'loss.csv'), '--backend', 'cpu', '--json', '--quiet');
    expectOk(r);
    const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(s.steps).toBe(5);
    expect(s.epochs).toBe(3);
    expect(s.steps_per_second).toBeGreaterThan(5 / s.seconds); // the whole run includes loading and evaluation
    const rows = readFileSync(join(d, 'loss.csv'), 'utf8').trim().split('\n');
    expect(rows[0]).toBe('step,epoch,loss,loss_scale,skipped_steps');
    expect(rows.slice(1).map((l) => l.split(',').slice(0, 2).join(','))).toEqual(['1,1', '2,1', '3,2', '4,2', '5,3']);
    expect(rows.slice(1).every((l) => Number.isFinite(Number(l.split(',')[2])))).toBe(true);
    expectOk(await mpc('train', out, '--data', data, '--steps', '2', '--log-every', '1', '--log', join(d, 'loss.jsonl'), '--backend', 'cpu', '--quiet'));
    const j = readFileSync(join(d, 'loss.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    expect(j.map((e) => e.step)).toEqual([1, 2]);
    expect(typeof j[0].loss).toBe('number');
  });

  it('--fp8-stats without --json prints a table of the last log step', async () => {
    const { out, data } = await setup('fp8');
    const r = await mpc('train', out, '--data', data, '--steps', '2', '--log-every', '1', '--fp8-stats', '--backend', 'cpu', '--quiet');
    expectOk(r);
    expect(r.stdout).toMatch(/fp8 tensors at step 2:\n {2}tensor +format +amax +scale +saturated +flushed\n/);
    expect(r.stdout).toMatch(/f8e4m3fn +\d\.\d{3}e[+-]\d+ +\d\.\d{3}e[+-]\d+ +\d+\.\d\d% +\d+\.\d\d%/);
  });
});

describe('progress display', () => {
  it('on a terminal, every bar line fits 80 columns and shows loss, step/s and ETA', async () => {
    const { createProgress } = await import('../src/cli/progress.js');
    const { Writable } = await import('node:stream');
    let text = '';
    const out = Object.assign(new Writable({ write: (chunk, _enc, done) => ((text += chunk.toString()), done()) }), { isTTY: true, columns: 120, cursorTo: () => true, clearLine: () => true, moveCursor: () => true });
    const p = createProgress({ stream: out as unknown as NodeJS.WriteStream });
    p.start(4680, 'training a-model-with-a-rather-long-name.onnx (fp8, webgpu)');
    for (let s = 10; s <= 4680; s += 1000) p.update(s, { loss: 1.23456, scale: 65536 });
    p.update(4680, { loss: 0.5 });
    p.stop();
    // eslint-disable-next-line no-control-regex
    const lines = text.replace(/\x1b\[[0-9;?]*[A-Za-z]/g, '\n').split(/[\r\n]+/).filter((l) => l.trim());
    expect(lines[0]).toBe('training a-model-with-a-rather-long-name.onnx (fp8, webgpu)');
    const bars = lines.filter((l) => l.includes('step/s'));
    expect(bars.some((l) => /4680\/4680 loss 0\.5000/.test(l))).toBe(true);
    for (const l of bars) {
      expect(l.length, l).toBeLessThanOrEqual(80);
      expect(l).toMatch(/\d+\/4680 loss (\d\.\d{4}|\s+-\s+) [\d.]+ step\/s eta /);
    }
  });
});
