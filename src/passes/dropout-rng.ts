// Fresh Dropout masks every step. A Dropout node draws its mask from a counter-based hash of
// (its seed attribute, a step input, the element index); this pass gives every training-mode
// Dropout of the training step the step counter RNG_STEP (training state, saved in
// checkpoints) and, where the model sets none, a seed of its own so that two Dropouts of one
// shape never drop the same elements. The gradient rule recomputes the mask from the same
// inputs. The optimizer pass appends the counter's increment after the backward pass.
// The runtime starts the counter from the training seed (`mpc train --seed`).
import { addState } from '../ir/build.js';
import { zeros } from '../ir/tensor.js';
import type { Pass } from './pass.js';

// The counter's name and its first value for a seed belong to the runtime (the host sets it).
import { RNG_STEP, rngStart } from '../runtime/hparams.js';
export { RNG_STEP, rngStart };

export const dropoutRng: Pass = {
  name: 'dropout-rng',
  doc: 'give training-mode Dropout nodes the step counter (fresh masks every step) and distinct seeds',
  run(g) {
    const drops = g.nodes.filter((n) => n.op === 'Dropout' && n.inputs[2] && !n.inputs[3]);
    if (!drops.length) return g;
    if (!g.values.has(RNG_STEP)) addState(g, RNG_STEP, zeros('i32', []));
    drops.forEach((n, k) => {
      while (n.inputs.length < 3) n.inputs.push('');
      n.inputs[3] = RNG_STEP;
      if (n.attrs.seed === undefined) n.attrs = { ...n.attrs, seed: k + 1 };
    });
    return g;
  },
  check: (g) => g.nodes.filter((n) => n.op === 'Dropout' && n.inputs[2] && !n.inputs[3]).map((n) => `Dropout '${n.name}' has no step input`),
};
