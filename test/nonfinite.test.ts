// Non-finite training data and values. The data loaders reject NaN/inf samples, naming the
// file and the sample, unless --allow-nonfinite; every policy's training step carries the
// found-inf guard (the loss scaler's, with the scale fixed at 1 where there is no loss
// scaling), so a step with inf/NaN gradients writes nothing: weights and optimizer state stay
// bitwise as they were (the oracle: the state read before the step), the step is counted in
// skipped_steps, a warning is printed, and --max-skipped stops a run that only skips.
import { mkdtempSync, readFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { loadNpyPair } from '../src/data/datasets.js';
import { saveNpy } from '../src/data/npy.js';
import { decodeTensors } from '../src/data/tensor-files.js';
import { opRow } from '../src/ops/table.js';
import { cpuEngine, gpuEngine, loadProgramDir, type Engine } from '../src/runtime/engine.js';
import { buildOnce, expectOk, expectUsageError, mpc } from './helpers/cli.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';

const TMP = mkdtempSync(join(tmpdir(), 'mpc-nonfinite-'));
const fx = loadFixture('mlp-torch.json');
const fxX = decodeArray(fx.batch.x).data as Float32Array;
const fxY = decodeArray(fx.batch.y).data as Int32Array;
const PER = 784;

/** n samples of [1, 28, 28]: the fixture batch repeated, rows `bad` holding `value` here and there. */
function dataset(name: string, n: number, bad: number[], value: number): string {
  const batch = fxY.length;
  const x = new Float32Array(n * PER);
  const y = new Int32Array(n);
  for (let i = 0; i < n; i++) {
    x.set(fxX.subarray((i % batch) * PER, (i % batch + 1) * PER), i * PER);
    y[i] = fxY[i % batch];
  }
  for (const r of bad) for (let k = 0; k < PER; k += 5) x[r * PER + k] = value;
  const xf = join(TMP, `${name}-x.npy`);
  const yf = join(TMP, `${name}-y.npy`);
  saveNpy(xf, { dtype: 'f4', shape: [n, 1, 28, 28], data: x });
  saveNpy(yf, { dtype: 'i8', shape: [n], data: y });
  return `npy:${xf},${yf}`;
}

function weightsOf(file: string): Map<string, { data: ArrayLike<number> }> {
  return decodeTensors(readFileSync(file), file).tensors;
}

function nonFinite(file: string): number {
  let bad = 0;
  for (const t of weightsOf(file).values()) for (let i = 0; i < t.data.length; i++) if (!Number.isFinite(t.data[i])) bad++;
  return bad;
}

describe('data loaders', () => {
  it('reject NaN and inf samples, naming the file and the sample; --allow-nonfinite keeps them', () => {
    for (const [name, v, word] of [['nan', NaN, 'NaN'], ['inf', Infinity, 'inf'], ['ninf', -Infinity, '-inf']] as const) {
      const [xf, yf] = dataset(`load-${name}`, 20, [13], v).slice(4).split(',');
      expect(() => loadNpyPair(xf, yf)).toThrow(new RegExp(`${name}-x\\.npy: sample 13 holds ${word} \\(at position 0 of 784\\).*--allow-nonfinite`));
      const d = loadNpyPair(xf, yf, { allowNonFinite: true });
      expect(d.n).toBe(20);
      expect(Number.isFinite(d.x[13 * PER])).toBe(false);
    }
    // Huge but finite values are data like any other.
    const [xf, yf] = dataset('load-big', 20, [4], 1e30).slice(4).split(',');
    expect(loadNpyPair(xf, yf).x[4 * PER]).toBe(Math.fround(1e30));
  });
});

describe('the found-inf guard without loss scaling', () => {
  const STATE = ['1.weight', '1.bias', '3.weight', '3.bias', '1.weight.m', '1.weight.v', 'optim.step'];
  for (const policy of ['fp32', 'bf16', 'fp8']) {
    const dir = join(TMP, `guard-${policy}`);
    writeCompiled(dir, compileModel('models/mlp.onnx', { policy, batch: 8 }));
    const p = loadProgramDir(dir);

    it(`${policy}: the program checks every gradient and counts skipped steps`, () => {
      const train = JSON.parse(readFileSync(join(dir, 'ir.train.json'), 'utf8')) as { nodes: { op: string; inputs: string[] }[] };
      // Each gradient read by one check (several per check).
      const checked = train.nodes.filter((n) => n.op === 'mpc.CheckFinite').flatMap((n) => n.inputs.slice(1));
      expect(new Set(checked).size).toBe(checked.length);
      expect(checked.length).toBe(Object.keys(p.program.params).length);
      expect(train.nodes.at(-1)!.op).toBe('mpc.CountSkipped');
      for (const n of train.nodes) {
        const s = opRow(n.op).scalerInputs;
        if (s) expect(n.inputs[s.flag], n.op).toMatch(/check_finite/);
      }
      expect(p.program.state.skipped).toBeDefined();
      expect(p.program.state.lossScale).toBeUndefined();
    });

    for (const backend of ['cpu', 'webgpu'] as const) {
      // fp8 on the interpreter and bf16 on lavapipe are the slow ones: the CLI tests cover them.
      if ((policy === 'fp8' && backend === 'cpu') || (policy === 'bf16' && backend === 'webgpu')) continue;
      it(`${policy} on ${backend}: a NaN batch writes nothing and is counted; the next finite step trains`, async () => {
        const e: Engine = backend === 'cpu' ? cpuEngine(p) : await gpuEngine(p);
        const x = fxX.slice(0, 8 * PER);
        const y = fxY.slice(0, 8);
        e.trainStep(x, y);
        const before = await e.read(STATE);
        const bad = x.slice();
        bad[3 * PER + 100] = NaN;
        e.trainStep(bad, y);
        const after = await e.read([...STATE, 'skipped_steps', 'found_inf']);
        for (const k of STATE) expect(Buffer.from(after.get(k)!.data.buffer).equals(Buffer.from(before.get(k)!.data.buffer)), k).toBe(true);
        expect(after.get('skipped_steps')!.data[0]).toBe(1);
        expect(after.get('found_inf')!.data[0]).toBe(0);
        e.trainStep(x, y);
        const next = await e.read(['1.weight', 'optim.step', 'skipped_steps']);
        expect(next.get('optim.step')!.data[0]).toBe(2);
        expect(next.get('skipped_steps')!.data[0]).toBe(1);
        expect(Buffer.from(next.get('1.weight')!.data.buffer).equals(Buffer.from(before.get('1.weight')!.data.buffer))).toBe(false);
      });
    }
  }
});

describe('mpc train on non-finite data', () => {
  beforeAll(() => buildOnce(), 120_000);
  const n = 96; // 80 training samples (the last sixth is the test set), batch 16: 5 steps per epoch
  const programs: Record<string, string> = {};
  beforeAll(async () => {
    for (const policy of ['fp32', 'fp16', 'bf16', 'fp8']) {
      programs[policy] = join(TMP, `cli-${policy}`);
      expectOk(await mpc('compile', 'models/mlp.onnx', '--policy', policy, '--batch', '16', '-o', programs[policy], '--quiet'));
    }
  }, 120_000);

  it('NaN data: one clear error before training, naming the file and the sample', async () => {
    const spec = dataset('cli-nan', n, [7], NaN);
    expectUsageError(await mpc('train', programs.fp32, '--data', spec, '--quiet'), /cli-nan-x\.npy: sample 7 holds NaN.*--allow-nonfinite/);
  });

  // NaN under every policy; inf and 1e30 (slow on lavapipe) under the policies they used to break.
  for (const [what, value, policies] of [
    ['NaN', NaN, ['fp32', 'fp16', 'bf16', 'fp8']],
    ['inf', Infinity, ['fp32', 'bf16']],
    ['1e30', 1e30, ['fp32', 'fp8']],
  ] as const)
    it(`${what} rows with --allow-nonfinite: ${policies.join(', ')} train, no non-finite weight is saved, skipped steps are reported`, async () => {
      const spec = dataset(`cli-${what}`, n, [5, 40], value);
      for (const policy of policies) {
        const save = join(TMP, `w-${what}-${policy}.safetensors`);
        const r = await mpc('train', programs[policy], '--data', spec, '--epochs', '2', '--allow-nonfinite', '--json', '--quiet', '--save', save);
        expectOk(r);
        const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { skipped_steps: number; steps: number };
        expect(s.steps).toBe(10);
        expect(nonFinite(save), `${policy} ${what}`).toBe(0);
        // A NaN sample poisons the loss of its batch: both bad rows' steps are skipped in
        // both epochs (2 rows, maybe in one batch). inf: the same where it reaches a gradient.
        if (what === 'NaN') expect(s.skipped_steps, policy).toBeGreaterThanOrEqual(2);
        const warned = r.stderr.split('\n').filter((l) => /^mpc: warning: \d+ of 10 steps were skipped/.test(l));
        expect(warned.length, r.stderr).toBe(s.skipped_steps > 0 ? 1 : 0);
        if (s.skipped_steps > 0) expect(warned[0]).toContain(`${s.skipped_steps} of 10`);
      }
    }, 240_000);

  it('--max-skipped: a run that only skips stops with one error line, the last good weights saved', async () => {
    const spec = dataset('cli-allnan', 64, Array.from({ length: 64 }, (_, i) => i), NaN);
    const save = join(TMP, 'w-stopped.safetensors');
    const r = await mpc('train', programs.fp32, '--backend', 'cpu', '--data', spec, '--epochs', '5', '--allow-nonfinite', '--max-skipped', '3', '--log-every', '1', '--quiet', '--save', save);
    expectUsageError(r, /training stopped at step 4: the last 4 steps were all skipped for non-finite \(inf\/NaN\) gradients \(--max-skipped 3\).*last good step were written/);
    // No step was applied: the saved weights are the initial ones, bit for bit.
    const init = decodeTensors(readFileSync(join(programs.fp32, 'init.safetensors')), 'init').tensors;
    for (const [k, t] of weightsOf(save)) {
      const want = init.get(k)?.data ?? new Float32Array(t.data.length); // all-zero tensors are not stored
      expect(Buffer.from(Float32Array.from(t.data).buffer).equals(Buffer.from(Float32Array.from(want).buffer)), k).toBe(true);
    }
  }, 120_000);

  it('fp8 with 1e30 outliers: the amax history recovers and the model learns again on clean data', async () => {
    const outliers = dataset('cli-fp8-big', 256, [3, 60, 130, 200], 1e30);
    const clean = dataset('cli-fp8-clean', 256, [], 0);
    const ck = join(TMP, 'fp8-ck.safetensors');
    const a = await mpc('train', programs.fp8, '--data', outliers, '--epochs', '2', '--allow-nonfinite', '--json', '--quiet', '--checkpoint', ck, '--save', join(TMP, 'fp8-a.safetensors'));
    expectOk(a);
    expect(nonFinite(join(TMP, 'fp8-a.safetensors'))).toBe(0);
    // More clean steps than the amax history (16) holds: the outliers' amax has left it.
    const b = await mpc('train', programs.fp8, '--data', clean, '--steps', '24', '--resume', ck, '--json', '--quiet', '--save', join(TMP, 'fp8-b.safetensors'));
    expectOk(b);
    const s = JSON.parse(b.stdout.trim().split('\n').at(-1)!) as { test_accuracy: number; test_loss: number };
    expect(nonFinite(join(TMP, 'fp8-b.safetensors'))).toBe(0);
    expect(Number.isFinite(s.test_loss)).toBe(true);
    // Ten classes: chance is 0.1; the fixture batch repeated is learnt well past it.
    expect(s.test_accuracy).toBeGreaterThan(0.5);
  }, 240_000);
});
