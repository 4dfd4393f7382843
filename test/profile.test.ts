// The profiler on the device (lavapipe here): every kernel of a schedule timed once per
// repetition, shares that add up, GEMM FLOP counts against the MLP's known shapes, the JSON
// form, and the `mpc profile` / `mpc train --profile` command lines.
import { execFile, spawnSync } from 'node:child_process';
import { copyFileSync, mkdirSync, mkdtempSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { compileModel, writeCompiled } from '../src/compile/compile.js';
import { saveNpy } from '../src/data/npy.js';
import { loadProgramDir } from '../src/runtime/engine.js';
import { fillInputs, formatProfile, profileDir, profileSchedule, type Profile } from '../src/runtime/profile.js';
import { openProgram } from '../src/runtime/engine.js';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '..');
const BATCH = 16;
// models/mlp.onnx: Linear(784, 256), ReLU, Linear(256, 10).
const [IN, HIDDEN, OUT] = [784, 256, 10];

let scratch = '';
let mlp = '';

beforeAll(() => {
  scratch = mkdtempSync(join(tmpdir(), 'mpc-profile-test-'));
  mlp = join(scratch, 'mlp');
  writeCompiled(mlp, compileModel(join(ROOT, 'models', 'mlp.onnx'), { policy: 'fp32', batch: BATCH }));
});

afterAll(() => {
  if (scratch) rmSync(scratch, { recursive: true, force: true });
});

const GEMM_OPS = new Set(['Gemm', 'MatMul']);
/** A GEMM kernel, alone or with fused consumers in its epilogue ('Gemm+mpc.ReluGrad'). */
const isGemm = (op: string) => op.split('+').some((o) => GEMM_OPS.has(o));

/** What every profile must satisfy, whatever the timing method. */
function expectConsistent(pr: Profile, schedule: number[]): void {
  // Every kernel of the schedule exactly once, in schedule order.
  expect(pr.kernels.map((k) => k.index)).toEqual(schedule);
  for (const k of pr.kernels) {
    expect(Number.isFinite(k.ms) && k.ms > 0, `${k.node}: ${k.ms} ms`).toBe(true);
    expect(k.bytes).toBeGreaterThan(0);
  }
  const sum = pr.kernels.reduce((s, k) => s + k.ms, 0);
  expect(pr.total.kernels_ms).toBeCloseTo(sum, 9);
  expect(Number.isFinite(pr.total.step_ms) && pr.total.step_ms > 0).toBe(true);
  expect(pr.total.overhead_ms).toBeCloseTo(pr.total.step_ms - pr.total.kernels_ms, 9);
  // Per-op rows partition the kernels: counts add up to the schedule, shares to 100%.
  expect(pr.ops.reduce((s, o) => s + o.count, 0)).toBe(schedule.length);
  expect(pr.ops.reduce((s, o) => s + o.share, 0)).toBeCloseTo(1, 9);
  expect(pr.ops.reduce((s, o) => s + o.ms, 0)).toBeCloseTo(sum, 9);
  expect(new Set(pr.ops.map((o) => o.op)).size).toBe(pr.ops.length);
  for (const o of pr.ops) expect(o.count).toBe(pr.kernels.filter((k) => k.op === o.op).length);
}

describe('profileSchedule on WebGPU (MLP 784-256-10, batch 16)', () => {
  let pr: Profile;
  beforeAll(async () => {
    pr = await profileDir(mlp, { reps: 20, warmup: 1 });
  });

  it('times every kernel of the train schedule once; shares add up to the sum of the kernels', () => {
    const p = loadProgramDir(mlp);
    expectConsistent(pr, p.program.schedules.train.kernels);
    expect(pr.schedule).toBe('train');
    expect(pr.batch).toBe(BATCH);
    expect(pr.reps).toBe(20);
    // lavapipe offers timestamp queries; the device time of the one-pass step is then known too.
    expect(pr.method).toBe('timestamp-query');
    expect(pr.total.step_device_ms).toBeGreaterThan(0);
    // In Node the timestamps are not quantized (device.ts turns Dawn's quantization off), so
    // no kernel can read 0 and the plain median applies.
    expect(pr.timestamp_quantum_ns).toBeLessThan(1024);
    expect(pr.statistic).toBe('median');
  });

  it('GEMM kernels carry 2*M*N*K FLOPs from the model shapes; other kernels none', () => {
    const B = BATCH;
    const want = [
      2 * B * IN * HIDDEN, // forward layer 1
      2 * B * HIDDEN * OUT, // forward layer 2
      2 * B * OUT * HIDDEN, // dX of layer 2: [B, 10] x [10, 256]
      2 * OUT * B * HIDDEN, // dW of layer 2: [10, B] x [B, 256]
      2 * HIDDEN * B * IN, // dW of layer 1: [256, B] x [B, 784] (no dX: the input needs no gradient)
    ].sort((a, b) => a - b);
    const gemms = pr.kernels.filter((k) => isGemm(k.op));
    expect(gemms.map((k) => k.flops).sort((a, b) => a! - b!)).toEqual(want);
    for (const k of gemms) expect(k.gflops_per_s).toBeCloseTo(k.flops! / k.ms / 1e6, 6);
    for (const k of pr.kernels.filter((k) => !isGemm(k.op))) expect(k.flops, k.node).toBeNull();
    const gemmRows = pr.ops.filter((o) => isGemm(o.op));
    expect(gemmRows.reduce((s, o) => s + o.flops!, 0)).toBe(want.reduce((a, b) => a + b, 0));
  });

  it('bytes are the sum of the distinct buffers a kernel binds', () => {
    const p = loadProgramDir(mlp);
    for (const k of pr.kernels) {
      const bufs = new Set(p.program.kernels[k.index].bindings.map((b) => b.buffer));
      expect(k.bytes).toBe([...bufs].reduce((s, b) => s + p.program.buffers[b].bytes, 0));
    }
  });

  it('the text form: per-op table, top kernels and totals within ~100 columns; the JSON form round-trips', () => {
    const text = formatProfile(pr, { top: 5 });
    expect(text).toMatch(/^op\s+count\s+time ms\s+share %\s+rate$/m);
    expect(text).toMatch(/^Gemm\S*\s+\d\s+[\d.]+\s+[\d.]+\s+[\d.]+ [GM]FLOP\/s$/m);
    expect(text).toMatch(/^top 5 kernels$/m);
    expect(text).toMatch(/^sum of kernels\s+[\d.]+ ms$/m);
    expect(text).toMatch(/^whole step\s+[\d.]+ ms/m);
    expect(text).toMatch(/^difference\s+-?[\d.]+ ms/m);
    for (const line of text.split('\n')) expect(line.length, line).toBeLessThanOrEqual(104);
    expect(JSON.parse(JSON.stringify(pr))).toEqual(pr);
  });

  it('without timestamps (one submit and wait per kernel), and the eval schedule', async () => {
    const p = loadProgramDir(mlp);
    const prog = await openProgram(p);
    try {
      fillInputs(prog, p, 'eval');
      const wall = await profileSchedule(prog, p, { schedule: 'eval', reps: 3, warmup: 1, method: 'wall-clock' });
      expectConsistent(wall, p.program.schedules.eval.kernels);
      expect(wall.method).toBe('submit-per-kernel');
      expect(wall.statistic).toBe('median');
      expect(wall.total.step_device_ms).toBeNull();
      // Inference fuses layer 1's Relu into its GEMM (Gemm+Relu).
      expect(wall.kernels.filter((k) => isGemm(k.op)).map((k) => k.flops)).toEqual([2 * BATCH * IN * HIDDEN, 2 * BATCH * HIDDEN * OUT]);
    } finally {
      prog.destroy();
    }
  });
});

// ---- command line --------------------------------------------------------------------------

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

describe('mpc profile and mpc train --profile (built CLI)', () => {
  // A private build (bin/mpc.js next to its own dist/), so that it cannot race the build of
  // dist/ that test/cli.test.ts does when both files run side by side.
  let home = '';
  const mpc = (...args: string[]): Promise<Run> => {
    const env = { ...process.env };
    delete env.MPC_DEBUG;
    return new Promise((done, fail) => {
      execFile(process.execPath, [join(home, 'bin', 'mpc.js'), ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 120_000 }, (err, stdout, stderr) => {
        if (err && typeof err.code !== 'number') fail(err);
        else done({ code: err ? (err.code as number) : 0, stdout, stderr });
      });
    });
  };

  beforeAll(() => {
    home = join(scratch, 'mpc-home');
    mkdirSync(join(home, 'bin'), { recursive: true });
    const r = spawnSync(process.execPath, [join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', join(ROOT, 'tsconfig.json'), '--outDir', join(home, 'dist')], { encoding: 'utf8' });
    if (r.status !== 0) throw new Error(`tsc failed:\n${r.stdout}\n${r.stderr}`);
    copyFileSync(join(ROOT, 'bin', 'mpc.js'), join(home, 'bin', 'mpc.js'));
    copyFileSync(join(ROOT, 'package.json'), join(home, 'package.json'));
    symlinkSync(join(ROOT, 'node_modules'), join(home, 'node_modules'));
  }, 180_000);

  it('mpc profile <dir> --json prints one JSON object', async () => {
    const r = await mpc('profile', mlp, '--json', '--reps', '3', '--warmup', '1');
    expect(r.code, r.stderr).toBe(0);
    const lines = r.stdout.trim().split('\n');
    expect(lines).toHaveLength(1);
    const pr = JSON.parse(lines[0]) as Profile;
    expectConsistent(pr, loadProgramDir(mlp).program.schedules.train.kernels);
    expect(pr.reps).toBe(3);
  });

  it('mpc profile <dir> prints the tables', async () => {
    const r = await mpc('profile', mlp, '--schedule', 'eval', '--reps', '2', '--top', '2');
    expect(r.code, r.stderr).toBe(0);
    expect(r.stdout).toMatch(/^profile of the eval schedule: mlp\.onnx/);
    expect(r.stdout).toMatch(/^top 2 kernels$/m);
    expect(r.stdout).toMatch(/^whole step\s+[\d.]+ ms/m);
  });

  it.each<[string, string[], RegExp]>([
    ['a folder that is not an mpc output', ['not-mpc'], /not-mpc: not an mpc output folder \(no program\.json\)/],
    ['--schedule other', ['not-mpc', '--schedule', 'other'], /'--schedule <name>' argument 'other' is invalid/],
  ])('bad input: %s -> exit 2, one line on stderr', async (_, args, message) => {
    const other = join(scratch, 'not-mpc');
    mkdirSync(other, { recursive: true });
    writeFileSync(join(other, 'a.txt'), 'x');
    const r = await mpc('profile', ...args.map((a) => (a === 'not-mpc' ? other : a)));
    expect(r.code, r.stderr).toBe(2);
    expect(r.stderr).toMatch(/^mpc: [^\n]+\n$/);
    expect(r.stderr).toMatch(message);
    expect(r.stdout).toBe('');
  });

  it('mpc train --profile --json: the summary carries the profile of the train schedule', async () => {
    const n = 2 * BATCH;
    saveNpy(join(scratch, 'x.npy'), { dtype: 'f4', shape: [n, IN], data: Float32Array.from({ length: n * IN }, (_, i) => (i % 13) / 13) });
    saveNpy(join(scratch, 'y.npy'), { dtype: 'i8', shape: [n], data: Int32Array.from({ length: n }, (_, i) => i % OUT) });
    const data = `npy:${join(scratch, 'x.npy')},${join(scratch, 'y.npy')}`;
    const r = await mpc('train', mlp, '--data', data, '--test-data', data, '--steps', '2', '--profile', '--json', '--quiet', '--save', join(scratch, 'w.safetensors'));
    expect(r.code, r.stderr).toBe(0);
    const summary = JSON.parse(r.stdout.trim().split('\n').at(-1)!) as { steps: number; profile: Profile };
    expect(summary.steps).toBe(2);
    expectConsistent(summary.profile, loadProgramDir(mlp).program.schedules.train.kernels);
    expect(r.stderr).toMatch(/^sum of kernels/m);
    const cpu = await mpc('train', mlp, '--data', data, '--profile', '--backend', 'cpu');
    expect(cpu.code).toBe(2);
    expect(cpu.stderr).toMatch(/^mpc: --profile times WebGPU kernels: it needs --backend webgpu\n$/);
  });
});
