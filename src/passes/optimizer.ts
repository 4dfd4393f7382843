// Appends the optimizer update of every parameter. Master weights and optimizer state stay
// f32; the forward pass reads the low-precision copies that insert-casts made of them.
import { addNode, addState } from '../ir/build.js';
import { fromArray, zeros } from '../ir/tensor.js';
import { HPARAM_COUNT } from '../ops/training.js';
import type { GradMeta } from './autodiff.js';
import { RNG_STEP } from './dropout-rng.js';
import type { Pass } from './pass.js';

// The hyperparameter buffer's names and layout are the runtime's (the host sets them).
import { HPARAMS, hparamValues, STEP } from '../runtime/hparams.js';
export { HPARAMS, hparamValues, STEP };

export const optimizer: Pass = {
  name: 'optimizer',
  doc: 'append the optimizer update (sgd/adam/adamw) of every parameter, state in f32',
  run(g, ctx) {
    const grads = (g.meta.grads as GradMeta | undefined)?.params;
    if (!grads) return g;
    const o = ctx.optimizer;
    const hp = addState(g, HPARAMS, fromArray('f32', [HPARAM_COUNT], hparamValues(o)));
    let step: string | undefined;
    if (o.kind !== 'sgd') {
      addState(g, STEP, zeros('i32', []));
      step = addNode(g, 'mpc.StepCount', [STEP], { name: 'step_count' })[0];
      g.updates.push({ state: STEP, next: step });
    }
    for (const [p, d] of Object.entries(grads)) {
      const pv = g.values.get(p)!;
      const m = addState(g, `${p}.m`, zeros('f32', pv.shape as number[]));
      if (o.kind === 'sgd') {
        const [np, nm] = addNode(g, 'mpc.SGD', [p, d, m, hp], { name: `${p}.sgd`, outputNames: [`${p}.next`, `${m}.next`] });
        g.updates.push({ state: p, next: np }, { state: m, next: nm });
      } else {
        const v = addState(g, `${p}.v`, zeros('f32', pv.shape as number[]));
        const [np, nm, nv] = addNode(g, 'mpc.Adam', [p, d, m, v, step!, hp], {
          name: `${p}.${o.kind}`,
          attrs: { decoupled: o.kind === 'adamw' ? 1 : 0 },
          outputNames: [`${p}.next`, `${m}.next`, `${v}.next`],
        });
        g.updates.push({ state: p, next: np }, { state: m, next: nm }, { state: v, next: nv });
      }
    }
    // The Dropout step counter (dropout-rng) moves on after everything that read it.
    if (g.values.get(RNG_STEP)?.role === 'state') {
      const next = addNode(g, 'mpc.StepCount', [RNG_STEP], { name: 'rng_step_count' })[0];
      g.updates.push({ state: RNG_STEP, next });
    }
    g.meta.optimizer = { ...o };
    return g;
  },
  check: (g) => {
    const grads = (g.meta.grads as GradMeta | undefined)?.params ?? {};
    const updated = new Set(g.updates.map((u) => u.state));
    return Object.keys(grads).filter((p) => !updated.has(p)).map((p) => `parameter '${p}' has no update`);
  },
};
