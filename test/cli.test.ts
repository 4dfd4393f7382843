// The command line on bad input: every failure is exit code 2 and exactly one line on stderr
// starting with `mpc: ` (no stack trace, no help text, nothing on stdout), and nothing is
// left behind or lost: no output or temporary folder appears, earlier outputs and other
// files stay byte for byte as they were. Runs the built CLI (bin/mpc.js) as a child process;
// beforeAll builds it. The bad models come from test/fixtures/bad/make_bad.py.
import { spawnSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import {
  chmodSync,
  copyFileSync,
  existsSync,
  lstatSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  rmSync,
  symlinkSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { PROGRAM_FORMAT, PROGRAM_VERSION } from '../src/compile/compile.js';
import { saveNpy } from '../src/data/npy.js';
import { hasOp } from '../src/ops/table.js';
import { expectOk, expectUsageError, mpc, node, ROOT } from './helpers/cli.js';

const BAD = join(ROOT, 'test', 'fixtures', 'bad');
const MLP = join(ROOT, 'models', 'mlp.onnx');
const IS_ROOT = process.getuid?.() === 0;

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

/**
 * Every file under `dir` (recursively) with a hash of its contents; symlinks by target. The
 * `.NAME.tmp-PID` files of a process still running next door (tests of one group run
 * concurrently, and every `mpc train` probes that its output folder is writable) come and go:
 * not counted; one left by a process that is gone is.
 */
function snapshot(dir: string): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (d: string, rel: string) => {
    for (const name of readdirSync(d).sort()) {
      const pid = /^\..*\.tmp-(\d+)/.exec(name)?.[1];
      if (pid && alive(Number(pid))) continue;
      const p = join(d, name);
      const r = rel ? `${rel}/${name}` : name;
      let st;
      try {
        st = lstatSync(p);
      } catch (e) {
        if (pid) continue; // its process finished and removed it since readdir
        throw e;
      }
      if (st.isDirectory()) {
        out[`${r}/`] = 'dir';
        walk(p, r);
      } else if (st.isSymbolicLink()) out[r] = 'link';
      else out[r] = createHash('sha256').update(readFileSync(p)).digest('hex');
    }
  };
  walk(dir, '');
  return out;
}

let scratch = '';
let n = 0;
/** A fresh empty folder for one test. */
function tempDir(): string {
  const d = join(scratch, `t${n++}`);
  mkdirSync(d);
  return d;
}

/** Deterministic pseudo-random bytes. */
function randomBytes(len: number, seed: number): Uint8Array {
  const out = new Uint8Array(len);
  let a = seed >>> 0;
  for (let i = 0; i < len; i++) {
    a = (Math.imul(a, 1664525) + 1013904223) >>> 0;
    out[i] = a >>> 24;
  }
  return out;
}

/** A Float32 matrix of `n` samples × `features` and int64 labels in [0, classes). */
function writeNpyData(dir: string, nSamples: number, features: number, classes: number): string {
  const x = new Float32Array(nSamples * features).map((_, i) => (i % 7) / 7);
  const y = new Int32Array(nSamples).map((_, i) => i % classes);
  saveNpy(join(dir, 'x.npy'), { dtype: 'f4', shape: [nSamples, features], data: x });
  saveNpy(join(dir, 'y.npy'), { dtype: 'i8', shape: [nSamples], data: y });
  return `npy:${join(dir, 'x.npy')},${join(dir, 'y.npy')}`;
}

/** Compiles a model (expected to succeed) into `<dir>/<name>` and returns that folder. */
async function compiled(model: string, dir: string, name = 'out', ...extra: string[]): Promise<string> {
  const out = join(dir, name);
  expectOk(await mpc('compile', model, '-o', out, '--quiet', ...extra));
  expect(existsSync(join(out, 'program.json'))).toBe(true);
  return out;
}

beforeAll(() => {
  const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`npm run build failed:\n${r.stdout}\n${r.stderr}`);
  scratch = mkdtempSync(join(tmpdir(), 'mpc-cli-test-'));
}, 180_000);

afterAll(() => {
  if (!scratch) return;
  // undo any chmod so the folder can be removed
  const walk = (d: string) => {
    chmodSync(d, 0o755);
    for (const e of readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(join(d, e.name));
  };
  walk(scratch);
  rmSync(scratch, { recursive: true, force: true });
});

describe.concurrent('good paths', () => {
  it.each([[['--help']], [['compile', '--help']], [['train', '--help']], [['inspect', '--list-passes']], [['--version']]])('mpc %j exits 0', async (args) => {
    const r = await mpc(...args);
    expectOk(r);
    expect(r.stdout.length).toBeGreaterThan(0);
    expect(r.stderr).toBe('');
  });

  it('inspect --list-passes lists the pipeline', async () => {
    const r = await mpc('inspect', '--list-passes');
    expect(r.stdout).toMatch(/^bind-dims\s/m);
    expect(r.stdout).toMatch(/^emulate-dtypes\s/m);
  });
});

describe.concurrent('usage errors are one line', () => {
  it.each<[string, string[], RegExp]>([
    ['no command', [], /no command given.*mpc --help/],
    ['an unknown command', ['bogus'], /unknown command 'bogus'/],
    ['compile --policy fp7', ['compile', MLP, '-o', '/nonexistent/never', '--policy', 'fp7'], /'--policy <name>' argument 'fp7' is invalid.*fp32/],
    ['compile --batch -1', ['compile', MLP, '-o', '/nonexistent/never', '--batch', '-1'], /'--batch <n>' argument '-1' is invalid/],
    ['compile --batch 0', ['compile', MLP, '-o', '/nonexistent/never', '--batch', '0'], /'--batch <n>' argument '0' is invalid/],
    ['compile --lr abc', ['compile', MLP, '-o', '/nonexistent/never', '--lr', 'abc'], /'--lr <x>' argument 'abc' is invalid/],
    ['compile --dim F', ['compile', MLP, '-o', '/nonexistent/never', '--dim', 'F'], /expected NAME=N/],
    ['compile --class Foo=bar', ['compile', MLP, '-o', '/nonexistent/never', '--class', 'Foo=bar'], /Foo=bar/],
    ['compile --loss-scale weird', ['compile', MLP, '-o', '/nonexistent/never', '--loss-scale', 'weird'], /--loss-scale must be/],
    ['a misspelt option (with a suggestion)', ['compile', MLP, '-o', '/nonexistent/never', '--polcy', 'fp16'], /unknown option '--polcy'.*Did you mean --policy\?/],
    ['compile without -o', ['compile', MLP], /required option '-o, --out <dir>'/],
    ['compile without a model', ['compile', '-o', '/nonexistent/never'], /missing required argument/],
    ['inspect without a model', ['inspect'], /inspect needs a model/],
    ['inspect --after an unknown pass', ['inspect', MLP, '--after', 'nope'], /unknown pass 'nope'/],
    ['train --epochs 0', ['train', '/nonexistent', '--data', 'fashion-mnist', '--epochs', '0'], /'--epochs <n>' argument '0' is invalid/],
    ['train --lr abc', ['train', '/nonexistent', '--data', 'fashion-mnist', '--lr', 'abc'], /'--lr <x>' argument 'abc' is invalid/],
    ['train --steps -3', ['train', '/nonexistent', '--data', 'fashion-mnist', '--steps', '-3'], /'--steps <n>' argument '-3' is invalid/],
    ['train --backend tpu', ['train', '/nonexistent', '--data', 'fashion-mnist', '--backend', 'tpu'], /'--backend <name>' argument 'tpu' is invalid/],
    ['train --policy fp7 (a compile option)', ['train', '/nonexistent', '--data', 'fashion-mnist', '--policy', 'fp7'], /unknown option '--policy'/],
    ['train --batch -1 (a compile option)', ['train', '/nonexistent', '--data', 'fashion-mnist', '--batch', '-1'], /--batch: the batch size is fixed when the program is compiled; recompile with mpc compile MODEL --batch -1/],
    ['train without --data', ['train', '/nonexistent'], /required option '--data <spec>'/],
  ])('%s', async (_, args, message) => {
    expectUsageError(await mpc(...args), message);
    expect(existsSync('/nonexistent/never')).toBe(false);
  });
});

describe.concurrent('compile: bad models', () => {
  // Each case: the model file to write (or use) and what the one line must say.
  async function expectModelRejected(model: string, message: RegExp): Promise<string> {
    const dir = dirname(model);
    const before = snapshot(dir);
    const out = join(tempDir(), 'out');
    const line = expectUsageError(await mpc('compile', model, '-o', out), message);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dirname(out))).toEqual([]); // no temporary folder either
    expect(snapshot(dir)).toEqual(before);
    return line;
  }

  it('a text file', async () => {
    const f = join(tempDir(), 'model.onnx');
    writeFileSync(f, 'this is not an ONNX model\n');
    await expectModelRejected(f, /not a valid ONNX file/);
  });

  it.each([1, 2, 3])('random bytes (seed %i)', async (seed) => {
    const f = join(tempDir(), 'model.onnx');
    writeFileSync(f, randomBytes(4096, seed));
    await expectModelRejected(f, /model\.onnx: not a valid ONNX file/);
  });

  it('an empty file', async () => {
    const f = join(tempDir(), 'empty.onnx');
    writeFileSync(f, '');
    await expectModelRejected(f, /empty\.onnx: not a valid ONNX file/);
  });

  const size = readFileSync(MLP).length;
  it.each([1, 16, 100, 1000, 100_000, Math.floor(size / 2), size - 10_000, size - 100, size - 1])('mlp.onnx cut to %i bytes', async (cut) => {
    const f = join(tempDir(), 'cut.onnx');
    writeFileSync(f, readFileSync(MLP).subarray(0, cut));
    await expectModelRejected(f, /cut\.onnx: not a valid ONNX file/);
  });

  it('a missing file', async () => {
    const dir = tempDir();
    await expectModelRejected(join(dir, 'missing.onnx'), /missing\.onnx: cannot read \(ENOENT\)/);
  });

  it('a folder given as the model', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'model.onnx'));
    await expectModelRejected(join(dir, 'model.onnx'), /model\.onnx: not a file/);
  });

  it('unsupported ops: every op type with its node names, in one line', async () => {
    const line = await expectModelRejected(join(BAD, 'unsupported.onnx'), /unsupported ops at opset 13: /);
    // The model's ops (make_bad.py); should the op table learn Det or NonZero, they drop out.
    const ops: [string, string[]][] = [['Det', ['det_1']], ['NonZero', ['nonzero_1']], ['Unique', ['unique_1', 'unique_2']]];
    expect(hasOp('Unique')).toBe(false);
    for (const [op, names] of ops) if (!hasOp(op)) expect(line).toContain(`${op} (${names.join(', ')})`);
    expect(line).not.toContain('Relu');
    // inspect says the same
    expectUsageError(await mpc('inspect', join(BAD, 'unsupported.onnx')), /Unique \(unique_1, unique_2\)/);
  });

  it('inconsistent shapes inside the model', async () => {
    await expectModelRejected(join(BAD, 'shape_mismatch.onnx'), /shape_mismatch\.onnx: Gemm 'fc': inner dimensions differ/);
    expectUsageError(await mpc('inspect', join(BAD, 'shape_mismatch.onnx')), /Gemm 'fc'/);
  });

  it('a symbolic non-batch dimension without --dim names the input and the option', async () => {
    await expectModelRejected(join(BAD, 'dynamic_dim.onnx'), /input 'x' has dynamic dimension 'F' \(axis 1\): pass --dim F=N/);
    // ... and with --dim it compiles
    await compiled(join(BAD, 'dynamic_dim.onnx'), tempDir(), 'out', '--dim', 'F=4');
  });

  describe('external data', () => {
    // A weight file with valid contents outside the model's folder, so that only the
    // containment rule can refuse it.
    const weights = readFileSync(join(BAD, 'ext_inside.bin'));

    function modelDir(model: string): string {
      const dir = join(tempDir(), 'model');
      mkdirSync(dir);
      copyFileSync(join(BAD, model), join(dir, model));
      writeFileSync(join(dirname(dir), 'outside.bin'), weights);
      return dir;
    }

    it('inside the model folder is read (control)', async () => {
      const dir = modelDir('ext_inside.onnx');
      copyFileSync(join(BAD, 'ext_inside.bin'), join(dir, 'ext_inside.bin'));
      await compiled(join(dir, 'ext_inside.onnx'), tempDir());
    });

    it("'../outside.bin' is refused", async () => {
      const dir = modelDir('ext_parent.onnx');
      await expectModelRejected(join(dir, 'ext_parent.onnx'), /tensor 'w': external data path '\.\.\/outside\.bin' points outside the model's folder/);
    });

    it('an absolute path is refused', async () => {
      const dir = modelDir('ext_absolute.onnx');
      const abs = '/tmp/mpc-test-outside/outside.bin';
      const made = !existsSync(abs);
      if (made) {
        mkdirSync(dirname(abs), { recursive: true });
        writeFileSync(abs, weights);
      }
      try {
        await expectModelRejected(join(dir, 'ext_absolute.onnx'), /external data path '\/tmp\/mpc-test-outside\/outside\.bin' points outside the model's folder/);
      } finally {
        if (made) rmSync(dirname(abs), { recursive: true, force: true });
      }
    });

    it('a symlink to a file outside is refused', async () => {
      const dir = modelDir('ext_link.onnx');
      symlinkSync(join(dirname(dir), 'outside.bin'), join(dir, 'link.bin'));
      await expectModelRejected(join(dir, 'ext_link.onnx'), /external data path 'link\.bin' resolves outside the model's folder/);
    });

    it('a symlink to a file inside is read (control)', async () => {
      const dir = modelDir('ext_link.onnx');
      writeFileSync(join(dir, 'real.bin'), weights);
      symlinkSync('real.bin', join(dir, 'link.bin'));
      await compiled(join(dir, 'ext_link.onnx'), tempDir());
    });

    it('a missing external file', async () => {
      const dir = modelDir('ext_link.onnx');
      await expectModelRejected(join(dir, 'ext_link.onnx'), /external data file 'link\.bin' not found/);
    });
  });
});

describe.concurrent('compile: the output folder', () => {
  const model = join(BAD, 'linear4.onnx');

  it('whose parent is a regular file (ENOTDIR)', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'file'), 'keep me\n');
    const before = snapshot(dir);
    expectUsageError(await mpc('compile', model, '-o', join(dir, 'file', 'out')), /-o .*file\/out: .*file is a file, not a folder \(ENOTDIR\)/);
    expect(snapshot(dir)).toEqual(before);
  });

  it.skipIf(IS_ROOT)('under a read-only folder', async () => {
    const dir = tempDir();
    const ro = join(dir, 'ro');
    mkdirSync(ro);
    chmodSync(ro, 0o555);
    expectUsageError(await mpc('compile', model, '-o', join(ro, 'out')), /ro\/out: cannot write the output folder \(permission denied/);
    expect(readdirSync(ro)).toEqual([]);
  });

  it('that is an existing regular file', async () => {
    const dir = tempDir();
    writeFileSync(join(dir, 'out'), 'keep me\n');
    const before = snapshot(dir);
    expectUsageError(await mpc('compile', model, '-o', join(dir, 'out')), /out: exists and is not a folder/);
    expect(snapshot(dir)).toEqual(before);
  });

  it('an existing folder with other files is refused and left untouched', async () => {
    const dir = tempDir();
    const out = join(dir, 'out');
    mkdirSync(join(out, 'sub'), { recursive: true });
    writeFileSync(join(out, 'notes.txt'), 'mine\n');
    writeFileSync(join(out, 'sub', 'data.bin'), randomBytes(100, 7));
    const before = snapshot(dir);
    expectUsageError(await mpc('compile', model, '-o', out), /out: exists and is not an mpc output folder/);
    expect(snapshot(dir)).toEqual(before);
  });

  it("a folder with someone else's program.json is refused", async () => {
    const dir = tempDir();
    const out = join(dir, 'out');
    mkdirSync(out);
    writeFileSync(join(out, 'program.json'), '{"name": "not mpc"}\n');
    const before = snapshot(dir);
    expectUsageError(await mpc('compile', model, '-o', out), /not an mpc output folder/);
    expect(snapshot(dir)).toEqual(before);
  });

  it('an existing empty folder is used', async () => {
    const dir = tempDir();
    mkdirSync(join(dir, 'out'));
    await compiled(model, dir);
    expect(readdirSync(dir)).toEqual(['out']);
  });

  it('an earlier mpc output is replaced by a successful compile', async () => {
    const dir = tempDir();
    const out = await compiled(model, dir, 'out', '--policy', 'fp32');
    const oldKernels = readdirSync(join(out, 'kernels'));
    const r = await mpc('compile', MLP, '-o', out, '--policy', 'bf16');
    expectOk(r);
    expect(r.stdout).toMatch(/compiled .*mlp\.onnx with policy bf16/);
    const program = JSON.parse(readFileSync(join(out, 'program.json'), 'utf8'));
    expect(program.model).toBe('mlp.onnx');
    expect(program.policy).toBe('bf16');
    // a replacement, not a merge: no kernel of the earlier program is left over
    const kernels = readdirSync(join(out, 'kernels'));
    expect(kernels.sort()).toEqual([...new Set(program.kernels.map((k: { file: string }) => k.file))].sort());
    expect(oldKernels.some((k) => !kernels.includes(k))).toBe(true);
    expect(readdirSync(dir)).toEqual(['out']); // no temporary or backup folder left
  });

  it('an earlier mpc output with trained weights is replaced and the weights are carried over', async () => {
    const dir = tempDir();
    const out = await compiled(model, dir);
    const weights = randomBytes(64, 9);
    writeFileSync(join(out, 'trained.safetensors'), weights);
    const r = await mpc('compile', model, '-o', out, '--quiet');
    expect(r.code).toBe(0);
    expect(readFileSync(join(out, 'trained.safetensors')).equals(Buffer.from(weights))).toBe(true);
    expect(readdirSync(dir)).toEqual(['out']);
  });

  it('an earlier mpc output with other files compile did not write is refused untouched', async () => {
    const dir = tempDir();
    const out = await compiled(model, dir);
    writeFileSync(join(out, 'notes.txt'), 'mine');
    const before = snapshot(dir);
    expectUsageError(await mpc('compile', model, '-o', out), /files that compile did not write \(notes\.txt\); move them away or choose another -o/);
    expect(snapshot(dir)).toEqual(before);
  });

  it.each<[string, string[], RegExp]>([
    ['a model with unsupported ops', [join(BAD, 'unsupported.onnx')], /unsupported ops/],
    ['a missing model', [join(BAD, 'missing.onnx')], /cannot read/],
    ['a dynamic dimension', [join(BAD, 'dynamic_dim.onnx')], /--dim F=N/],
    ['a bad --loss-scale', [model, '--loss-scale', 'static:0'], /--loss-scale/],
  ])('an earlier mpc output survives a failing compile: %s', async (_, args, message) => {
    const dir = tempDir();
    const out = await compiled(model, dir);
    const before = snapshot(dir);
    expectUsageError(await mpc('compile', args[0], '-o', out, ...args.slice(1)), message);
    expect(snapshot(dir)).toEqual(before);
  });
});

describe.concurrent('train: bad input', () => {
  let dir = '';
  let linear4 = '';
  beforeAll(async () => {
    dir = tempDir();
    linear4 = await compiled(join(BAD, 'linear4.onnx'), dir, 'linear4');
  });

  /** `mpc train` fails with one line, and the compiled folder is unchanged (no weights written). */
  async function expectTrainRejected(args: string[], message: RegExp): Promise<string> {
    const before = snapshot(dir);
    const line = expectUsageError(await mpc('train', ...args), message);
    expect(snapshot(dir)).toEqual(before);
    return line;
  }

  it('a folder that is not an mpc output', async () => {
    const other = tempDir();
    writeFileSync(join(other, 'a.txt'), 'x');
    const before = snapshot(other);
    expectUsageError(await mpc('train', other, '--data', 'fashion-mnist'), /not an mpc output folder \(no program\.json\); run 'mpc compile' first/);
    expect(snapshot(other)).toEqual(before);
  });

  it('a missing folder', async () => {
    expectUsageError(await mpc('train', join(scratch, 'nope'), '--data', 'fashion-mnist'), /nope: not an mpc output folder/);
    expect(existsSync(join(scratch, 'nope'))).toBe(false);
  });

  it('a regular file as the folder', async () => {
    const f = join(tempDir(), 'file');
    writeFileSync(f, 'x');
    expectUsageError(await mpc('train', f, '--data', 'fashion-mnist'), /not an mpc output folder/);
  });

  it.each<[string, (d: string) => void, RegExp]>([
    ['a truncated init.safetensors', (d) => writeFileSync(join(d, 'init.safetensors'), readFileSync(join(d, 'init.safetensors')).subarray(0, 100)), /damaged mpc output folder/],
    ['no init.safetensors', (d) => rmSync(join(d, 'init.safetensors')), /damaged mpc output folder/],
    ['a broken program.json', (d) => writeFileSync(join(d, 'program.json'), '{'), /program\.json: unreadable/],
    ['a program.json of another version', (d) => writeFileSync(join(d, 'program.json'), '{"format": "mpc-program", "version": 999}'), /recompile it/],
    ['a program.json missing its fields', (d) => writeFileSync(join(d, 'program.json'), JSON.stringify({ format: PROGRAM_FORMAT, version: PROGRAM_VERSION })), /damaged mpc output folder/],
    ['a kernel file missing', (d) => rmSync(join(d, 'kernels'), { recursive: true }), /kernel file kernels\/.* is missing/],
  ])('a damaged mpc output: %s', async (_, damage, message) => {
    const d = await compiled(join(BAD, 'linear4.onnx'), tempDir());
    damage(d);
    const before = snapshot(d);
    expectUsageError(await mpc('train', d, '--data', 'fashion-mnist'), message);
    expect(snapshot(d)).toEqual(before);
  });

  it('--data naming a missing data set', async () => {
    await expectTrainRejected([linear4, '--data', 'idx:/nonexistent,/nonexistent'], /--data 'idx:\/nonexistent,\/nonexistent': \/nonexistent: no such file/);
    await expectTrainRejected([linear4, '--data', 'npy:/nonexistent/x.npy,/nonexistent/y.npy'], /\/nonexistent\/x\.npy: no such file/);
  });

  it('--test-data naming a missing data set', async () => {
    const data = writeNpyData(tempDir(), 64, 4, 3);
    await expectTrainRejected([linear4, '--data', data, '--test-data', 'idx:/nonexistent,/nonexistent'], /--test-data 'idx:\/nonexistent,\/nonexistent'/);
  });

  it('a missing text corpus', async () => {
    await expectTrainRejected([linear4, '--data', 'text:/nonexistent/corpus.txt'], /--data 'text:\/nonexistent\/corpus.txt': \/nonexistent\/corpus.txt: no such file/);
  });

  it.each(['nope', 'idx:/only-one-file', 'csv:a,b', 'idx:', 'npy:,'])('malformed --data %j', async (spec) => {
    await expectTrainRejected([linear4, '--data', spec], /--data '.*': expected fashion-mnist, text:FILE, idx:IMAGES,LABELS, npy:X,Y or npz:FILE\[,XNAME,YNAME\]/);
  });

  it('data files that are not data', async () => {
    const d = tempDir();
    writeFileSync(join(d, 'x.npy'), 'not numpy');
    writeFileSync(join(d, 'y.npy'), 'not numpy');
    await expectTrainRejected([linear4, '--data', `npy:${join(d, 'x.npy')},${join(d, 'y.npy')}`], /^mpc: --data: /);
    await expectTrainRejected([linear4, '--data', `idx:${join(d, 'x.npy')},${join(d, 'y.npy')}`], /^mpc: --data: /);
  });

  it('model/data shape mismatch (npy data with 5 features for a 4-input model)', async () => {
    const data = writeNpyData(tempDir(), 64, 5, 3);
    await expectTrainRejected([linear4, '--data', data], /input 'x' takes samples of \[4\], the data has \[5\]/);
  });

  it('--test-data with another sample shape than --data', async () => {
    const d = tempDir();
    const train = writeNpyData(d, 64, 4, 3);
    const t = tempDir();
    const test = writeNpyData(t, 16, 5, 3);
    await expectTrainRejected([linear4, '--data', train, '--test-data', test], /--test-data samples have shape \[5\], the --data samples \[4\]/);
  });

  it('more classes in the data than the model predicts', async () => {
    const data = writeNpyData(tempDir(), 64, 4, 10);
    await expectTrainRejected([linear4, '--data', data], /the data has 10 classes, the model predicts 3/);
  });

  it('model/data shape mismatch (a 4-input model on Fashion-MNIST)', async () => {
    await expectTrainRejected([linear4, '--data', 'fashion-mnist'], /input 'x' takes samples of \[4\], the data has \[1,28,28\]/);
  });

  it('the generated train.mjs reports the same way', async () => {
    const before = snapshot(dir);
    const script = join(linear4, 'train.mjs');
    expectUsageError(await node([script, '--epochs', '0', '--data', 'fashion-mnist']), /'--epochs <n>' argument '0' is invalid/);
    expectUsageError(await node([script]), /required option '--data <spec>'/);
    expectUsageError(await node([script, '--data', 'idx:/nonexistent,/nonexistent']), /\/nonexistent: no such file/);
    expect(snapshot(dir)).toEqual(before);
  });
});
