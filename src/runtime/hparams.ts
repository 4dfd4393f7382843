// Training state the host sets: the optimizer hyperparameters buffer and the dropout step
// counter. Defined here, without compiler dependencies, so the runtime copied next to a
// compiled program (and the browser page) can set them; the optimizer pass, the optimizer
// kernels and the dropout pass re-export these.
import type { OptimizerConfig } from '../passes/pass.js';

/** Index of each hyperparameter in the `optim.hparams` buffer. */
export const HPARAM = { lr: 0, momentum: 1, beta1: 1, beta2: 2, eps: 3, weightDecay: 4 } as const;
export const HPARAM_COUNT = 8;

export const HPARAMS = 'optim.hparams';
export const STEP = 'optim.step';

/** The contents of the `optim.hparams` buffer for an optimizer configuration. */
export function hparamValues(o: OptimizerConfig): number[] {
  const hp = new Array<number>(HPARAM_COUNT).fill(0);
  hp[HPARAM.lr] = o.lr;
  hp[HPARAM.weightDecay] = o.weightDecay;
  if (o.kind === 'sgd') hp[HPARAM.momentum] = o.momentum;
  else {
    hp[HPARAM.beta1] = o.beta1;
    hp[HPARAM.beta2] = o.beta2;
    hp[HPARAM.eps] = o.eps;
  }
  return hp;
}

/** The dropout step counter (training state). */
export const RNG_STEP = 'rng.step';

/** The out-of-range flag of embedding lookups (training state; see passes/index-check.ts). */
export const INDEX_FLAG = 'index.out_of_range';

/** The counter's first value for a training seed (a multiplicative hash, as i32). */
export function rngStart(seed: number): number {
  return Math.imul(seed >>> 0, 0x9e3779b1) | 0;
}
