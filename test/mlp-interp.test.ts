// The MLP on the reference interpreter against PyTorch (fixture from models/make_fixtures.py).
import { describe, expect, it } from 'vitest';
import { importOnnxFile } from '../src/onnx/import.js';
import { runPipeline, TRAIN_PIPELINE } from '../src/passes/pipeline.js';
import { passCtx } from '../src/compile/options.js';
import { InterpSession, runGraph } from '../src/interp/interpreter.js';
import type { GradMeta } from '../src/passes/autodiff.js';
import { decodeArray, loadFixture, maxRelErr } from './helpers/fixtures.js';

const fx = loadFixture('mlp-torch.json');
const x = decodeArray(fx.batch.x);
const y = decodeArray(fx.batch.y);

function compile(opt: 'sgd' | 'adam' | 'adamw', policy = 'fp32') {
  const g = importOnnxFile('models/mlp.onnx');
  return runPipeline(g, passCtx({ policy, batch: 8, optimizer: { kind: opt } }), TRAIN_PIPELINE);
}

describe('MLP on the interpreter vs PyTorch (fp32)', () => {
  it('loss and every parameter gradient within 1e-4 relative', () => {
    const g = compile('sgd');
    const env = runGraph(g, { input: x, labels: y });
    expect(Math.abs(env.get('loss')!.data[0] - fx.loss) / fx.loss).toBeLessThan(1e-5);
    expect(maxRelErr(env.get('logits')!.data, decodeArray(fx.logits).data)).toBeLessThan(1e-4);
    const grads = (g.meta.grads as GradMeta).params;
    expect(Object.keys(grads).sort()).toEqual(Object.keys(fx.grads).sort());
    for (const [p, d] of Object.entries(grads)) {
      const want = decodeArray(fx.grads[p]).data;
      const got = env.get(d)!.data;
      // relative to the gradient's largest magnitude: many entries are exact zeros (ReLU)
      const scale = want.reduce((m, v) => Math.max(m, Math.abs(v)), 0);
      expect(maxRelErr(got, want, scale), p).toBeLessThan(1e-4);
    }
  });

  for (const opt of ['sgd', 'adam', 'adamw'] as const) {
    it(`${opt}: parameters after 1 and 3 steps match PyTorch`, () => {
      const g = compile(opt);
      const s = new InterpSession(g);
      const init = new Map([...g.values.values()].filter((v) => v.role === 'param').map((v) => [v.name, v.init!.data]));
      for (let step = 1; step <= 3; step++) {
        const env = s.step({ input: x, labels: y });
        expect(Math.abs(env.get('loss')!.data[0] - fx.optim[opt].losses[step - 1])).toBeLessThan(2e-5);
        const snap = fx.optim[opt].steps[String(step)];
        if (!snap) continue;
        for (const [p, enc] of Object.entries(snap.delta)) {
          const delta = decodeArray(enc as never).data;
          const got = s.state.get(p)!.data;
          const base = init.get(p)!;
          let err = 0;
          for (let i = 0; i < got.length; i++) err = Math.max(err, Math.abs(got[i] - (base[i] + delta[i])));
          expect(err, `${opt} step ${step} ${p}`).toBeLessThan(opt === 'sgd' ? 2e-6 : 5e-6);
        }
      }
    });
  }
});
