// The compiled folder runs on its own: `mpc compile` writes train.mjs with its own copy of the
// runtime (runtime/), so the folder trains after being copied to a fresh place where only the
// `webgpu` package is installed: no absolute paths, nothing from the mpc checkout. The
// accuracy after 20 steps is checked against chance (10 classes), the loss against ln 10 (an
// untrained classifier's), both independent of mpc.
import { cpSync, existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { buildOnce, expectOk, expectUsageError, mpc, node, ROOT, type Run } from './helpers/cli.js';

const MLP = join(ROOT, 'models', 'mlp.onnx');
let tmp: string;

/** Every file under `dir`. */
function walk(dir: string): string[] {
  return readdirSync(dir).flatMap((e) => (statSync(join(dir, e)).isDirectory() ? walk(join(dir, e)) : [join(dir, e)]));
}

beforeAll(() => {
  buildOnce();
  tmp = mkdtempSync(join(tmpdir(), 'mpc-standalone-'));
});
afterAll(() => tmp && rmSync(tmp, { recursive: true, force: true }));

describe('a compiled folder copied elsewhere', () => {
  it('trains with only the webgpu package installed beside it', async () => {
    expectOk(await mpc('compile', MLP, '-o', join(tmp, 'out'), '--policy', 'bf16', '--batch', '64', '--quiet'));
    // A fresh place: the folder, and node_modules with webgpu alone.
    const place = join(tmp, 'elsewhere');
    mkdirSync(join(place, 'node_modules'), { recursive: true });
    cpSync(join(tmp, 'out'), join(place, 'prog'), { recursive: true });
    rmSync(join(tmp, 'out'), { recursive: true });
    symlinkSync(join(ROOT, 'node_modules', 'webgpu'), join(place, 'node_modules', 'webgpu'), 'dir');
    const files = walk(join(place, 'prog'));
    expect(files.some((f) => f.endsWith(join('runtime', 'runtime', 'standalone.js')))).toBe(true);
    for (const f of files.filter((f) => /\.(m?js|json|html)$/.test(f))) {
      const text = readFileSync(f, 'utf8');
      expect(text.includes(ROOT), `${f} names the checkout`).toBe(false);
      expect(text.includes('MPC_HOME'), f).toBe(false);
    }
    // The copied runtime imports no package but webgpu (and Node's own modules).
    for (const f of files.filter((f) => f.includes(`${join('prog', 'runtime')}/`) && f.endsWith('.js')))
      for (const m of readFileSync(f, 'utf8').matchAll(/^(?:import|export)\s[^;]*?from\s+'([^']+)'/gm))
        expect(m[1].startsWith('.') || m[1].startsWith('node:') || m[1] === 'webgpu', `${f} imports ${m[1]}`).toBe(true);
    const r: Run = await node([join(place, 'prog', 'train.mjs'), '--data', 'fashion-mnist', '--steps', '20', '--json', '--quiet'], { NODE_PATH: '' });
    expectOk(r);
    const s = JSON.parse(r.stdout.trim().split('\n').at(-1)!);
    expect(s.steps).toBe(20);
    expect(s.backend).toBe('webgpu');
    expect(s.train_loss).toBeLessThan(Math.log(10));
    expect(s.test_samples).toBe(10000);
    expect(s.test_accuracy).toBeGreaterThan(0.4);
    expect(existsSync(join(place, 'prog', 'trained.safetensors'))).toBe(true);

    // Its own usage errors: one line, exit 2.
    const cpu = await node([join(place, 'prog', 'train.mjs'), '--data', 'fashion-mnist', '--backend', 'cpu']);
    expect(cpu.code).toBe(2);
    expect(cpu.stderr).toMatch(/^mpc: .*WebGPU only[^\n]*\n$/);
    const bad = await node([join(place, 'prog', 'train.mjs'), '--data', 'fashion-mnist', '--steps', 'abc']);
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^mpc: option '--steps <n>' argument 'abc' is invalid[^\n]*\n$/);
    const help = await node([join(place, 'prog', 'train.mjs'), '--help']);
    expectOk(help);
    expect(help.stdout).toMatch(/--data <spec>/);
    // Without its runtime the folder says so.
    rmSync(join(place, 'prog', 'runtime'), { recursive: true });
    const gone = await node([join(place, 'prog', 'train.mjs'), '--data', 'fashion-mnist']);
    expect(gone.code).toBe(2);
    expect(gone.stderr).toMatch(/^mpc: this folder's runtime\/ is missing/);
  }, 180_000);

  it('mpc compile --web-data rejects a bad count in one line', async () => {
    expectUsageError(await mpc('compile', MLP, '-o', join(tmp, 'bad'), '--web-data', 'abc'), /'--web-data <n>' argument 'abc' is invalid/);
    expect(existsSync(join(tmp, 'bad'))).toBe(false);
  });
});
