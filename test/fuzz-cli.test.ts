// The CLI on malformed models (the built bin/mpc.js as a child process; beforeAll builds it):
// external data that is not a plain file inside the model's folder, and a few dozen cases of
// the fuzz corpus (src/conformance/fuzz.ts). Every failure is exit code 2 with exactly one
// `mpc: ` line on stderr naming the problem, nothing on stdout, no output folder; nothing
// blocks (a FIFO is never opened).
import { execFile, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import onnxProto from 'onnx-proto';
import { bundledModels, INTERNALS, makeCase, makeScratch, strayFiles, type Scratch } from '../src/conformance/fuzz.js';

const onnx = onnxProto.onnx;
const ROOT = resolve(import.meta.dirname, '..');
const BIN = join(ROOT, 'bin', 'mpc.js');
const MLP = join(ROOT, 'models', 'mlp.onnx');
const IS_ROOT = process.getuid?.() === 0;

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

function mpc(...args: string[]): Promise<Run> {
  const env = { ...process.env };
  delete env.MPC_DEBUG;
  return new Promise((done, fail) => {
    // The timeout is the "never blocks" check: a FIFO opened for reading would hang here.
    execFile(process.execPath, [BIN, ...args], { cwd: ROOT, env, encoding: 'utf8', timeout: 60_000 }, (err, stdout, stderr) => {
      if (err && typeof err.code !== 'number') fail(err);
      else done({ code: err ? (err.code as number) : 0, stdout, stderr });
    });
  });
}

function expectUsageError(r: Run, message?: RegExp): void {
  const show = `exit ${r.code}\nstdout: ${r.stdout}\nstderr: ${r.stderr}`;
  expect(r.stderr, show).toMatch(/^mpc: [^\n]+\n$/);
  expect(r.stderr, show).not.toMatch(INTERNALS);
  expect(r.stderr, show).not.toMatch(/internal error/);
  expect(r.stdout, show).toBe('');
  expect(r.code, show).toBe(2);
  if (message) expect(r.stderr, show).toMatch(message);
}

let scratch: string;
let n = 0;
const tempDir = () => {
  const d = join(scratch, `t${n++}`);
  mkdirSync(d);
  return d;
};

/** The newest modification time of the .ts files under `dir`. */
function newest(dir: string): number {
  let t = 0;
  for (const e of readdirSync(dir, { withFileTypes: true, recursive: true }))
    if (e.isFile() && e.name.endsWith('.ts')) t = Math.max(t, statSync(join(e.parentPath, e.name)).mtimeMs);
  return t;
}

beforeAll(() => {
  // Builds unless dist/ is newer than every source file (setup.sh has built it in CI).
  const built = join(ROOT, 'dist', 'src', 'cli', 'main.js');
  if (!existsSync(built) || statSync(built).mtimeMs < newest(join(ROOT, 'src'))) {
    const r = spawnSync('npm', ['run', 'build'], { cwd: ROOT, encoding: 'utf8' });
    if (r.status !== 0 && !existsSync(built)) throw new Error(`npm run build failed:\n${r.stdout}\n${r.stderr}`);
  }
  scratch = mkdtempSync(join(tmpdir(), 'mpc-fuzz-cli-'));
}, 180_000);
afterAll(() => rmSync(scratch, { recursive: true, force: true }));

describe('external data', () => {
  // mlp.onnx with its first weight matrix moved to external data at `location`.
  function externalModel(dir: string, entries: Record<string, string>): { model: string; bytes: Uint8Array; name: string } {
    const m = onnx.ModelProto.decode(readFileSync(MLP));
    const t = m.graph!.initializer!.find((x) => (x.dims ?? []).length === 2)!;
    const bytes = t.rawData!.slice();
    t.rawData = new Uint8Array(0);
    t.dataLocation = onnx.TensorProto.DataLocation.EXTERNAL;
    t.externalData = Object.entries(entries).map(([key, value]) => onnx.StringStringEntryProto.create({ key, value }));
    const model = join(dir, 'model.onnx');
    writeFileSync(model, onnx.ModelProto.encode(m).finish());
    return { model, bytes, name: t.name! };
  }

  async function rejected(setup: (dir: string, weights: Uint8Array) => Record<string, string>, message: RegExp): Promise<void> {
    const root = tempDir();
    const dir = join(root, 'model');
    mkdirSync(dir);
    const probe = externalModel(dir, { location: 'w.bin' });
    const ext = externalModel(dir, setup(dir, probe.bytes));
    const out = join(root, 'out');
    const before = readdirSync(dir).sort();
    expectUsageError(await mpc('compile', ext.model, '-o', out), message);
    expect(existsSync(out)).toBe(false);
    expect(readdirSync(dir).sort()).toEqual(before);
  }

  it('inside the folder, a plain file with offset and length: compiles (control)', async () => {
    const root = tempDir();
    const probe = externalModel(root, { location: 'w.bin' });
    writeFileSync(join(root, 'w.bin'), Buffer.concat([Buffer.alloc(16), probe.bytes, Buffer.alloc(8)]));
    const { model } = externalModel(root, { location: 'w.bin', offset: '16', length: String(probe.bytes.length) });
    const r = await mpc('compile', model, '-o', join(root, 'out'), '--batch', '2', '--quiet');
    expect(r.code, r.stderr).toBe(0);
  });

  it('a folder', () => rejected((dir) => (mkdirSync(join(dir, 'w.bin')), { location: 'w.bin' }), /tensor '.+': external data 'w\.bin' is a folder, not a regular file/));

  it('a FIFO: refused without opening it (no hang)', async () => {
    await rejected((dir) => {
      const r = spawnSync('mkfifo', [join(dir, 'w.bin')]);
      expect(r.status).toBe(0);
      return { location: 'w.bin' };
    }, /external data 'w\.bin' is a FIFO \(named pipe\), not a regular file/);
  });

  it('a symlink to a device file', () => rejected((dir) => (symlinkSync('/dev/zero', join(dir, 'w.bin')), { location: 'w.bin' }), /external data path 'w\.bin' resolves outside the model's folder/));

  it('an absolute path to a device file', () => rejected(() => ({ location: '/dev/zero' }), /external data path '\/dev\/zero' points outside the model's folder/));

  it.skipIf(!IS_ROOT)('a device file inside the folder (made with mknod, as root)', () =>
    rejected((dir) => {
      const r = spawnSync('mknod', [join(dir, 'w.bin'), 'c', '1', '5']);
      expect(r.status).toBe(0);
      return { location: 'w.bin' };
    }, /external data 'w\.bin' is a device file, not a regular file/));

  it('a symlink to a file outside the folder', () =>
    rejected((dir, w) => {
      writeFileSync(join(dir, '..', 'outside.bin'), w);
      symlinkSync('../outside.bin', join(dir, 'w.bin'));
      return { location: 'w.bin' };
    }, /external data path 'w\.bin' resolves outside the model's folder/));

  it("'..' in the path", () => rejected((dir, w) => (writeFileSync(join(dir, '..', 'outside.bin'), w), { location: '../outside.bin' }), /external data path '\.\.\/outside\.bin' points outside the model's folder/));

  it('an absolute path', () => rejected((dir, w) => (writeFileSync(join(dir, '..', 'outside.bin'), w), { location: join(dir, '..', 'outside.bin') }), /points outside the model's folder/));

  it('an offset past the end of the file', () =>
    rejected((dir, w) => (writeFileSync(join(dir, 'w.bin'), w), { location: 'w.bin', offset: String(w.length + 4) }), new RegExp(`external data offset \\d+ is past the end of 'w\\.bin' \\(\\d+ bytes\\)`)));

  it('a length past the end of the file', () =>
    rejected((dir, w) => (writeFileSync(join(dir, 'w.bin'), w), { location: 'w.bin', offset: '8', length: String(w.length) }), /external data 'w\.bin' is truncated: offset 8 \+ length \d+ is past its end/));

  it('a negative offset', () => rejected((dir, w) => (writeFileSync(join(dir, 'w.bin'), w), { location: 'w.bin', offset: '-4' }), /external data offset '-4' is not a non-negative integer/));

  it('a missing file', () => rejected(() => ({ location: 'nope.bin' }), /external data file 'nope\.bin' not found/));

  it('a symlink loop', () => rejected((dir) => (symlinkSync('w.bin', join(dir, 'w.bin')), { location: 'w.bin' }), /too many levels of symbolic links/));
});

describe('fuzz cases through the CLI', () => {
  const CASES = 24;
  const LANES = 3;
  const SEED = 4242;

  it(`${CASES} mutated models: exit 0, or exit 2 with exactly one clean stderr line; no stray files`, async () => {
    const models = bundledModels(ROOT);
    const problems: string[] = [];
    const codes: number[] = [];
    // A few lanes, each with its own scratch folder, run side by side.
    await Promise.all(
      Array.from({ length: LANES }, async (_, lane) => {
        const s: Scratch = makeScratch(scratch);
        const outDir = mkdtempSync(join(scratch, 'out-'));
        for (let i = lane; i < CASES; i += LANES) {
          const c = makeCase(SEED, i, models, s);
          writeFileSync(join(s.dir, 'case.onnx'), c.bytes);
          const out = join(outDir, 'out');
          const r = await mpc('compile', join(s.dir, 'case.onnx'), '-o', out, '--batch', '2', '--quiet');
          codes.push(r.code ?? -1);
          const what = `case ${i} (${c.mutations.join(', ')}): exit ${r.code}, stderr ${JSON.stringify(r.stderr)}`;
          if (r.code === 0) {
            if (!existsSync(join(out, 'program.json'))) problems.push(`${what}: no program.json`);
            rmSync(out, { recursive: true, force: true });
          } else if (r.code !== 2 || !/^mpc: [^\n]+\n$/.test(r.stderr) || INTERNALS.test(r.stderr) || r.stdout !== '') problems.push(what);
          const left = [...readdirSync(outDir), ...strayFiles(s)];
          if (left.length) problems.push(`${what}: stray files ${left.join(', ')}`);
        }
      }),
    );
    expect(problems, problems.join('\n')).toEqual([]);
    expect(codes.filter((c) => c === 2).length).toBeGreaterThan(CASES / 2);
  }, 240_000);
});
