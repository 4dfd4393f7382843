// The model zoo (models/zoo/, real PyTorch and torchvision exports; fixtures from
// models/zoo/export_zoo.py): one test per model x opset (x export mode). Each is imported and
// lowered with mpc's own pipelines and checked against PyTorch (src/conformance/zoo.ts says
// how): the inference output and the training step's output, loss, gradients and BatchNorm
// running statistics on the interpreter and on WebGPU (fp32, float64 PyTorch as the oracle),
// the set of initializers trained (PyTorch's named_parameters, none of its buffers), and, on
// each model's primary variant, 10 WebGPU training steps under fp32, fp16, bf16 and fp8 with
// finite losses and weights.
//
// A variant that fails is listed in PENDING with the reason (the first error). The test
// fails
//   - on a failure of a variant not listed (a regression, or a new zoo model that fails);
//   - when a listed variant passes (fixed: remove it from PENDING, so the list only shrinks);
//   - when an entry names no zoo variant (stale entry).
// `npm run zoo` prints the whole table (every stage of every variant, train on all of them).
import { readdirSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { beforeAll, describe, expect, it } from 'vitest';
import { covers, decode, encode, loadZoo, loadZooFixture, runVariant, zooRoot, type Stage, type ZooFixture, type ZooOptions } from '../src/conformance/zoo.js';
import { getGpu } from '../src/runtime/device.js';

interface Pending {
  /** The stage of the first error. */
  stage: Stage;
  /** The failure shows on WebGPU only (the interpreter passes that stage). */
  webgpuOnly?: boolean;
  reason: string;
}

/** Variant id → why it fails today (the first error of `npm run zoo -- --first`). */
const PENDING: Record<string, Pending> = {};

const variants = loadZoo();
// WebGPU (forward, gradients, training) on each model's primary variant; MPC_ZOO_FULL=1 runs
// it on every variant (as `npm run zoo` does).
const FULL = process.env.MPC_ZOO_FULL === '1';
const OPTS: ZooOptions = { gpu: FULL ? 'all' : 'primary', train: FULL ? 'all' : 'primary', stopAtFirst: true };

describe('model zoo: PyTorch/torchvision exports vs PyTorch', () => {
  beforeAll(async () => {
    await getGpu(); // CI installs lavapipe: no adapter is an error, not a skip
  });

  for (const v of variants)
    it(v.id, async () => {
      const r = await runVariant(v, OPTS);
      const failure = r.error ? `${r.error.stage}: ${r.error.message}` : undefined;
      if (failure) console.log(`${v.id}: ${failure}`);
      const p = PENDING[v.id];
      if (!p) {
        expect(failure, `${v.id} fails`).toBeUndefined();
        return;
      }
      // Did the failing part run at all in this mode (WebGPU on primary variants only)?
      const ran = p.stage === 'train' ? covers(OPTS.train, v) : !p.webgpuOnly || covers(OPTS.gpu, v);
      if (ran) expect(failure, `${v.id} passes now: remove it from PENDING (listed as ${p.stage}: ${p.reason})`).toBeDefined();
    }, 900_000);

  it('every PENDING entry names a zoo variant', () => {
    const ids = new Set(variants.map((v) => v.id));
    expect(Object.keys(PENDING).filter((id) => !ids.has(id))).toEqual([]);
  });

  it('covers every model at two opsets, and stays small', () => {
    const models = new Set(variants.map((v) => v.model));
    expect(models.size).toBeGreaterThanOrEqual(12);
    for (const m of models) {
      const opsets = new Set(variants.filter((v) => v.model === m && v.mode === 'train').map((v) => v.opset));
      expect(opsets.size, m).toBe(2);
    }
    const dir = join(zooRoot(), 'models', 'zoo');
    const sizes = readdirSync(dir).filter((f) => f.endsWith('.onnx')).map((f) => statSync(join(dir, f)).size);
    expect(sizes.length).toBe(variants.length);
    expect(Math.max(...sizes)).toBeLessThan(1 << 20);
    expect(sizes.reduce((a, b) => a + b, 0)).toBeLessThan(15 << 20);
  });
});

// The checks themselves: a fixture altered in one place must fail the stage that reads it.
describe('model zoo: the checks can fail', () => {
  const v = variants.find((x) => x.id === 'audio_cnn-op13')!;
  const cpuOnly: ZooOptions = { gpu: 'none', train: 'none', stopAtFirst: false };
  const altered = (edit: (fx: ZooFixture) => void): ZooFixture => {
    const fx = JSON.parse(JSON.stringify(loadZooFixture(v))) as ZooFixture;
    edit(fx);
    return fx;
  };
  const nudge = (a: ZooFixture['grads'][string], by: number) => {
    const t = decode(a);
    t.data[0] += by * Math.max(...Array.from(t.data, Math.abs));
    return encode(t);
  };

  it('the unaltered fixture passes', async () => {
    const r = await runVariant(v, cpuOnly, undefined, altered(() => {}));
    expect(r.error).toBeUndefined();
  });

  it('a gradient off by 1e-3 of its scale fails grads', async () => {
    const r = await runVariant(v, cpuOnly, undefined, altered((fx) => (fx.grads['fc.weight'] = nudge(fx.grads['fc.weight'], 1e-3))));
    expect(r.error?.stage).toBe('grads');
    expect(r.error?.message).toContain('fc.weight');
  });

  it('a running mean off by 1e-3 fails grads', async () => {
    const name = Object.keys(loadZooFixture(v).running!)[0];
    const r = await runVariant(v, cpuOnly, undefined, altered((fx) => (fx.running![name] = nudge(fx.running![name], 1e-3))));
    expect(r.error?.stage).toBe('grads');
    expect(r.error?.message).toContain(name);
  });

  it('an inference output off by 1e-3 fails forward', async () => {
    const r = await runVariant(v, cpuOnly, undefined, altered((fx) => (fx.output_eval.f64 = nudge(fx.output_eval.f64, 1e-3))));
    expect(r.error?.stage).toBe('forward');
  });

  it('a parameter that PyTorch calls a buffer fails params', async () => {
    const r = await runVariant(
      v,
      cpuOnly,
      undefined,
      altered((fx) => (fx.variants[v.file].initializers['fc.bias'] = { buffer: 'fc.bias' })),
    );
    expect(r.stages.params.status).toBe('fail');
    expect(r.stages.params.detail).toContain('fc.bias');
  });
});
