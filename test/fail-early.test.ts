// Output paths fail before any work, with their real cause, and as exactly one stderr line:
// a path below a regular file (ENOTDIR), a pseudo file system (`-o /proc/x` used to spin
// forever), a read-only or full file system (EROFS, ENOSPC; tmpfs mounts, where the test
// may mount), for `mpc compile -o`, `mpc train --save/--checkpoint`, `mpc run --output`
// and `mpc grad -o`. Temporary files of an interrupted write (`.NAME.tmp-PID` of a process
// that is gone, e.g. killed with -9) are removed by the next run that writes that path; a
// live process's are kept. Failing WebGPU runs print one line too: Dawn's start-up warnings
// stay off stderr (a file, pipe or terminal; not a socket, which Node cannot reopen).
import { spawn, spawnSync } from 'node:child_process';
import { closeSync, existsSync, mkdirSync, mkdtempSync, openSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { saveNpy } from '../src/data/npy.js';
import { buildOnce, expectOk, expectUsageError, mpc } from './helpers/cli.js';
import { decodeArray, loadFixture } from './helpers/fixtures.js';

const TMP = mkdtempSync(join(tmpdir(), 'mpc-fail-early-'));
const FILE = join(TMP, 'a-file');
const PROGRAM = join(TMP, 'program');
const fx = loadFixture('mlp-torch.json');
const X = join(TMP, 'x.npy');
const Y = join(TMP, 'y.npy');
const DATA = `npy:${X},${Y}`;
const mounts: string[] = [];

/** A tmpfs at `dir` (read-only, or `kib` big), where this user may mount; false elsewhere. */
function mountTmpfs(dir: string, opts: string): boolean {
  mkdirSync(dir, { recursive: true });
  const r = spawnSync('mount', ['-t', 'tmpfs', '-o', opts, 'tmpfs', dir], { encoding: 'utf8' });
  if (r.status === 0) mounts.push(dir);
  return r.status === 0;
}

beforeAll(async () => {
  buildOnce();
  writeFileSync(FILE, 'not a folder\n');
  const x = decodeArray(fx.batch.x).data as Float32Array;
  const y = decodeArray(fx.batch.y).data as Int32Array;
  // 64 samples: the fixture batch of 8, 8 times.
  const xs = new Float32Array(64 * 784);
  const ys = new Int32Array(64);
  for (let i = 0; i < 8; i++) {
    xs.set(x, i * 8 * 784);
    ys.set(y, i * 8);
  }
  saveNpy(X, { dtype: 'f4', shape: [64, 1, 28, 28], data: xs });
  saveNpy(Y, { dtype: 'i8', shape: [64], data: ys });
  expectOk(await mpc('compile', 'models/mlp.onnx', '--batch', '8', '-o', PROGRAM, '--quiet'));
}, 180_000);

afterAll(() => {
  for (const m of mounts) spawnSync('umount', [m]);
});

describe('output paths are checked before any work', () => {
  it('mpc compile -o below a file: ENOTDIR, at once', async () => {
    expectUsageError(await mpc('compile', 'models/mlp.onnx', '-o', join(FILE, 'out')), /-o .*a-file\/out: .*a-file is a file, not a folder \(ENOTDIR\)/);
  });

  it('mpc compile -o /proc/x fails at once (it used to retry mkdir forever)', async () => {
    const t0 = performance.now();
    expectUsageError(await mpc('compile', 'models/mlp.onnx', '-o', '/proc/mpc-test-out'), /\/proc is on the proc pseudo file system/);
    expectUsageError(await mpc('compile', 'models/mlp.onnx', '-o', '/proc/mpc-test/deeper/out'), /proc pseudo file system/);
    expect(performance.now() - t0).toBeLessThan(30_000);
    expect(existsSync('/proc/mpc-test-out')).toBe(false);
  });

  it('mpc train --save / --checkpoint below a file: ENOTDIR before step 1', async () => {
    // --steps 100000 on fashion-mnist would take minutes: the failure comes before training.
    const t0 = performance.now();
    expectUsageError(await mpc('train', PROGRAM, '--data', DATA, '--steps', '100000', '--epochs', '100000', '--save', join(FILE, 'w.safetensors')), /--save .*: .*a-file is a file, not a folder \(ENOTDIR\)/);
    expectUsageError(await mpc('train', PROGRAM, '--data', DATA, '--epochs', '100000', '--checkpoint', join(FILE, 'ck.safetensors')), /--checkpoint .*\(ENOTDIR\)/);
    expectUsageError(await mpc('train', PROGRAM, '--data', DATA, '--epochs', '100000', '--save', join(TMP, 'no-such-folder', 'w.safetensors')), /does not exist \(ENOENT\)/);
    expectUsageError(await mpc('train', PROGRAM, '--data', DATA, '--epochs', '100000', '--save', TMP), /is a folder \(EISDIR\)/);
    expect(performance.now() - t0).toBeLessThan(60_000);
  });

  it('mpc run --output and mpc grad -o below a file: ENOTDIR', async () => {
    const xb = join(TMP, 'xb.npy');
    saveNpy(xb, { dtype: 'f4', shape: [8, 1, 28, 28], data: decodeArray(fx.batch.x).data as Float32Array });
    const yb = join(TMP, 'yb.npy');
    saveNpy(yb, { dtype: 'i8', shape: [8], data: decodeArray(fx.batch.y).data as Int32Array });
    expectUsageError(await mpc('run', 'models/mlp.onnx', '--input', xb, '--output', join(FILE, 'y.npy'), '--backend', 'cpu'), /--output .*\(ENOTDIR\)/);
    expectUsageError(await mpc('grad', 'models/mlp.onnx', '--input', xb, '--labels', yb, '-o', join(FILE, 'g.npz'), '--backend', 'cpu'), /-o .*\(ENOTDIR\)/);
  });

  it('a read-only file system: EROFS (not ENOENT), for every output option', async (ctx) => {
    const ro = join(TMP, 'ro');
    if (!mountTmpfs(ro, 'ro,size=64k')) return ctx.skip();
    expectUsageError(await mpc('compile', 'models/mlp.onnx', '-o', join(ro, 'out')), /read-only file system, EROFS/);
    expectUsageError(await mpc('compile', 'models/mlp.onnx', '-o', join(ro, 'sub', 'out')), /read-only file system, EROFS/);
    expectUsageError(await mpc('train', PROGRAM, '--data', DATA, '--save', join(ro, 'w.safetensors')), /--save .*read-only file system, EROFS/);
    expectUsageError(await mpc('train', PROGRAM, '--data', DATA, '--checkpoint', join(ro, 'ck.safetensors')), /--checkpoint .*EROFS/);
  });

  it('a full file system: ENOSPC before any work', async (ctx) => {
    const full = join(TMP, 'full');
    if (!mountTmpfs(full, 'size=64k')) return ctx.skip();
    spawnSync('dd', ['if=/dev/zero', `of=${join(full, 'filler')}`, 'bs=4k', 'count=64'], { encoding: 'utf8' });
    expectUsageError(await mpc('train', PROGRAM, '--data', DATA, '--save', join(full, 'w.safetensors')), /--save .*no space left.*ENOSPC/);
  });
});

describe('temporary files of interrupted writes', () => {
  /** The pid of a node process that wrote `.NAME.tmp-PID` files and was killed with -9. */
  async function killedWriter(dir: string, names: string[]): Promise<number> {
    const code = `const fs = require('fs'); for (const n of ${JSON.stringify(names)}) fs.writeFileSync(${JSON.stringify(dir)} + '/.' + n + '.tmp-' + process.pid, 'partial'); console.log('ready'); setInterval(() => {}, 1000);`;
    const child = spawn(process.execPath, ['-e', code], { stdio: ['ignore', 'pipe', 'inherit'] });
    await new Promise<void>((done) => child.stdout.once('data', () => done()));
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
    return child.pid!;
  }

  it('kill -9 during checkpoint and weight writes, then a rerun: no .tmp files are left; a live process\'s stay', async () => {
    const dir = join(TMP, 'rerun');
    mkdirSync(dir);
    const dead = await killedWriter(dir, ['ck.safetensors', 'w.safetensors']);
    const live = join(dir, `.ck.safetensors.tmp-${process.pid}`);
    writeFileSync(live, 'a write in progress');
    expect(readdirSync(dir).filter((f) => f.includes(`.tmp-${dead}`))).toHaveLength(2);
    expectOk(await mpc('train', PROGRAM, '--data', DATA, '--steps', '2', '--quiet', '--checkpoint', join(dir, 'ck.safetensors'), '--save', join(dir, 'w.safetensors')));
    expect(readdirSync(dir).sort()).toEqual(['.ck.safetensors.tmp-' + process.pid, 'ck.safetensors', 'w.safetensors']);
  });

  it('a real kill -9 of a training run, then a rerun: no .tmp files', async () => {
    const dir = join(TMP, 'killed');
    mkdirSync(dir);
    const child = spawn(process.execPath, ['bin/mpc.js', 'train', PROGRAM, '--data', DATA, '--epochs', '1000', '--quiet', '--checkpoint', join(dir, 'ck.safetensors'), '--save', join(dir, 'w.safetensors')], { stdio: 'ignore' });
    await new Promise((done) => setTimeout(done, 4000));
    const exited = new Promise((done) => child.once('exit', done));
    child.kill('SIGKILL');
    await exited;
    expectOk(await mpc('train', PROGRAM, '--data', DATA, '--steps', '1', '--quiet', '--checkpoint', join(dir, 'ck.safetensors'), '--save', join(dir, 'w.safetensors')));
    expect(readdirSync(dir).filter((f) => f.includes('.tmp-'))).toEqual([]);
  });

  it('mpc compile -o removes a dead run\'s temporary output folder', async () => {
    const out = join(TMP, 'compiled');
    const dead = await killedWriter(TMP, []);
    const stale = join(TMP, `.compiled.tmp-${dead}`);
    mkdirSync(join(stale, 'kernels'), { recursive: true });
    writeFileSync(join(stale, 'program.json'), '{');
    expectOk(await mpc('compile', 'models/mlp.onnx', '--batch', '8', '-o', out, '--quiet'));
    expect(existsSync(stale)).toBe(false);
    expect(existsSync(join(out, 'program.json'))).toBe(true);
  });
});

describe('exactly one stderr line per failure', () => {
  it('a bad data file, a missing one, an unwritable --save, NaN data: one line each, on WebGPU too', async () => {
    const garbage = join(TMP, 'garbage.npy');
    writeFileSync(garbage, 'this is not an npy file');
    const nan = join(TMP, 'nan.npy');
    const xs = new Float32Array(64 * 784);
    xs[10 * 784 + 3] = NaN;
    saveNpy(nan, { dtype: 'f4', shape: [64, 1, 28, 28], data: xs });
    for (const backend of ['webgpu', 'cpu']) {
      expectUsageError(await mpc('train', PROGRAM, '--backend', backend, '--data', `npy:${garbage},${Y}`), /garbage\.npy/);
      expectUsageError(await mpc('train', PROGRAM, '--backend', backend, '--data', `npy:${join(TMP, 'missing.npy')},${Y}`), /missing\.npy: no such file/);
      expectUsageError(await mpc('train', PROGRAM, '--backend', backend, '--data', DATA, '--save', join(FILE, 'w.safetensors')), /ENOTDIR/);
      expectUsageError(await mpc('train', PROGRAM, '--backend', backend, '--data', `npy:${nan},${Y}`), /nan\.npy: sample 10 holds NaN \(at position 3 of 784\)/);
    }
  });

  it('a failure after the WebGPU device is open prints one line: Dawn\'s warnings stay off stderr', async () => {
    const nan = join(TMP, 'all-nan.npy');
    saveNpy(nan, { dtype: 'f4', shape: [64, 1, 28, 28], data: new Float32Array(64 * 784).fill(NaN) });
    const args = ['train', PROGRAM, '--backend', 'webgpu', '--data', `npy:${nan},${Y}`, '--allow-nonfinite', '--max-skipped', '1', '--log-every', '1', '--quiet', '--save', join(TMP, 'w-nan.safetensors')];
    // stderr as a terminal user's shell gives it (a file here; a pipe or tty alike): Node
    // hands a child a socket, where the warnings cannot be hidden (no dup2 in Node).
    const errFile = join(TMP, 'stderr.txt');
    const fd = openSync(errFile, 'w');
    const env = { ...process.env };
    delete env.MPC_DEBUG;
    const c = spawnSync(process.execPath, ['bin/mpc.js', ...args], { stdio: ['ignore', 'pipe', fd], encoding: 'utf8', env, timeout: 120_000 });
    closeSync(fd);
    const r = { code: c.status, stdout: c.stdout, stderr: readFileSync(errFile, 'utf8') };
    expectUsageError(r, /training stopped at step 2/);
    expect(r.stderr).not.toMatch(/Warning|artificially reduced/);
  });
});
