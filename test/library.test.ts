// The package as a user gets it: `npm pack`, installed into an empty project, imported by
// name. `import { compile, train } from 'mpc'` must type-check against the generated
// declarations (and a wrong option must not), and the MLP must train 20 steps through the
// library: the loss falls below ln 10 (an untrained 10-class classifier's) and the accuracy
// beats chance, both independent of mpc.
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOnce, node, ROOT } from './helpers/cli.js';

const MLP = join(ROOT, 'models', 'mlp.onnx');
const TSC = join(ROOT, 'node_modules', 'typescript', 'bin', 'tsc');
let tmp: string;
let project: string;
let how: string;

/**
 * Installs the tarball into `dir` with npm (its cache, or the registry for what the cache
 * lacks); without a registry, unpacks it as node_modules/mpc and links its dependencies from
 * this checkout's node_modules (Node resolves theirs from there).
 */
function install(dir: string, tarball: string): string {
  const r = spawnSync('npm', ['install', '--prefer-offline', '--no-audit', '--no-fund', tarball], {
    cwd: dir,
    encoding: 'utf8',
    timeout: 120_000,
    env: { ...process.env, ONNXRUNTIME_NODE_INSTALL: 'skip' },
  });
  if (r.status === 0 && existsSync(join(dir, 'node_modules', 'mpc', 'package.json'))) return 'npm install';
  rmSync(join(dir, 'node_modules'), { recursive: true, force: true });
  mkdirSync(join(dir, 'node_modules', '@webgpu'), { recursive: true });
  execFileSync('tar', ['-xzf', tarball, '-C', join(dir, 'node_modules')]);
  execFileSync('mv', [join(dir, 'node_modules', 'package'), join(dir, 'node_modules', 'mpc')]);
  for (const dep of ['commander', 'cli-progress', 'onnx-proto', 'protobufjs', 'webgpu', '@webgpu/types'])
    symlinkSync(join(ROOT, 'node_modules', dep), join(dir, 'node_modules', dep), 'dir');
  return `unpacked, dependencies linked (npm install failed: ${(r.stderr || r.error?.message || '').trim().split('\n').at(-1)})`;
}

beforeAll(() => {
  buildOnce();
  tmp = mkdtempSync(join(tmpdir(), 'mpc-library-'));
  execFileSync('npm', ['pack', '--pack-destination', tmp], { cwd: ROOT, stdio: 'pipe' });
  const tarball = join(tmp, readdirSync(tmp).find((f) => f.endsWith('.tgz'))!);
  project = join(tmp, 'project');
  mkdirSync(project);
  writeFileSync(join(project, 'package.json'), JSON.stringify({ name: 'uses-mpc', private: true, type: 'module' }));
  how = install(project, tarball);
  writeFileSync(
    join(project, 'tsconfig.json'),
    JSON.stringify({
      compilerOptions: { target: 'ES2022', module: 'NodeNext', moduleResolution: 'NodeNext', strict: true, skipLibCheck: true, outDir: 'out', typeRoots: [join(ROOT, 'node_modules', '@types')], types: ['node'] },
      files: ['main.ts'],
    }),
  );
}, 240_000);
afterAll(() => tmp && rmSync(tmp, { recursive: true, force: true }));

describe("the packed package, imported as 'mpc'", () => {
  it('ships the library, its declarations and the CLI, and nothing else', () => {
    const pkg = join(project, 'node_modules', 'mpc');
    for (const f of ['dist/src/index.js', 'dist/src/index.d.ts', 'dist/src/runtime/standalone.js', 'dist/src/web/page.js', 'bin/mpc.js']) expect(existsSync(join(pkg, f)), f).toBe(true);
    for (const f of ['test', 'models', 'src', 'dist/bench']) expect(existsSync(join(pkg, f)), f).toBe(false);
  });

  it('type-checks, rejects a wrongly typed option, and trains the MLP for 20 steps', async () => {
    const main = `import { compile, loadProgram, train, type TrainSummary } from 'mpc';
const [model, out] = process.argv.slice(2);
const c = await compile(model, { policy: 'bf16', batch: 64, out });
const p = loadProgram(out);
const s: TrainSummary = await train(out, { data: 'fashion-mnist', steps: 20 });
console.log(JSON.stringify({ kernels: c.program.kernels.length, policy: p.program.policy, summary: s }));
`;
    writeFileSync(join(project, 'main.ts'), main.replace(`{ data: 'fashion-mnist',`, `{ data: 42,`));
    const bad = spawnSync(process.execPath, [TSC, '-p', project, '--noEmit'], { encoding: 'utf8' });
    expect(bad.status, bad.stdout).not.toBe(0);
    expect(bad.stdout).toMatch(/main\.ts.*'number' is not assignable to type 'string'/);
    writeFileSync(join(project, 'main.ts'), main);
    const tsc = spawnSync(process.execPath, [TSC, '-p', project], { encoding: 'utf8' });
    expect(tsc.status, `${how}\n${tsc.stdout}${tsc.stderr}`).toBe(0);

    const r = await node([join(project, 'out', 'main.js'), MLP, join(project, 'mlp-out')], { NODE_PATH: '' });
    expect(r.code, `${how}\n${r.stderr}`).toBe(0);
    const got = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(got.policy).toBe('bf16');
    expect(got.kernels).toBeGreaterThan(0);
    expect(got.summary.steps).toBe(20);
    expect(got.summary.train_loss).toBeLessThan(Math.log(10));
    expect(got.summary.test_accuracy).toBeGreaterThan(0.4);
  }, 240_000);
});
