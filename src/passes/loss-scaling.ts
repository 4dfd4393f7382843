// Loss scaling with GradScaler's semantics, decided on the device:
//  - the backward seed is the loss scale instead of 1;
//  - every parameter gradient is checked for inf/NaN into one found-inf flag before any
//    update; updates (ops with scaler inputs) unscale their gradient and skip the step
//    when the flag is set;
//  - at the end of the step the scale is halved on overflow, doubled after N finite steps
//    (dynamic), skipped steps are counted and the flag is cleared.
// Without loss scaling (--loss-scale none: fp32, bf16, fp8 by default) the same guard runs
// with the scale fixed at 1: the seed stays 1, the updates skip a step whose gradients hold
// an inf/NaN, and CountSkipped counts it, so no weight is ever written as inf/NaN.
import { addNode, addState } from '../ir/build.js';
import { scalar } from '../ir/tensor.js';
import { opRow } from '../ops/table.js';
import { CHECK_FINITE_GROUP } from '../ops/training.js';
import type { GradMeta } from './autodiff.js';
import type { Pass } from './pass.js';

export const SCALE = 'loss_scale';
export const GROWTH = 'loss_scale.growth';
export const FOUND_INF = 'found_inf';
export const SKIPPED = 'skipped_steps';

export const lossScaling: Pass = {
  name: 'loss-scaling',
  doc: 'skip steps with inf/NaN gradients (every policy); scale the loss gradient and update the scale on the device',
  run(g, ctx) {
    const grads = g.meta.grads as GradMeta | undefined;
    const cfg = ctx.lossScale;
    if (!grads) return g;
    const scaled = cfg.kind !== 'none';
    if (scaled) {
      addState(g, SCALE, scalar('f32', cfg.kind === 'static' ? cfg.scale : cfg.init));
      addState(g, GROWTH, scalar('i32', 0));
    }
    addState(g, FOUND_INF, scalar('i32', 0));
    addState(g, SKIPPED, scalar('i32', 0));
    if (scaled) for (const n of g.nodes) n.inputs = n.inputs.map((i) => (i === grads.seed ? SCALE : i));

    // The finite check goes right before the first update that depends on it.
    const first = g.nodes.findIndex((n) => opRow(n.op).scalerInputs);
    let at = first < 0 ? g.nodes.length : first;
    let flag = FOUND_INF;
    // Several gradients of one type and shape per kernel (up to CHECK_FINITE_GROUP): the
    // layers of a deep model then share a few kernels (a full group and the rest, per shape).
    const byType = new Map<string, string[]>();
    for (const d of Object.values(grads.params)) {
      const v = g.values.get(d)!;
      const key = `${v.dtype}[${v.shape}]`;
      byType.set(key, [...(byType.get(key) ?? []), d]);
    }
    for (const ds of byType.values())
      for (let i = 0; i < ds.length; i += CHECK_FINITE_GROUP)
        flag = addNode(g, 'mpc.CheckFinite', [flag, ...ds.slice(i, i + CHECK_FINITE_GROUP)], { name: `check_finite`, at: at++ })[0];
    for (const n of g.nodes) {
      const s = opRow(n.op).scalerInputs;
      if (!s) continue;
      while (n.inputs.length <= Math.max(s.flag, s.scale ?? 0)) n.inputs.push('');
      if (s.scale !== undefined && scaled) n.inputs[s.scale] = SCALE;
      n.inputs[s.flag] = flag;
    }
    if (!scaled) {
      const [flagNext, skippedNext] = addNode(g, 'mpc.CountSkipped', [flag, SKIPPED], { name: 'count_skipped' });
      g.updates.push({ state: FOUND_INF, next: flagNext }, { state: SKIPPED, next: skippedNext });
      g.meta.lossScale = { ...cfg, skipped: SKIPPED };
      return g;
    }
    const next = addNode(g, 'mpc.UpdateLossScale', [SCALE, GROWTH, flag, SKIPPED], {
      name: 'update_loss_scale',
      attrs:
        cfg.kind === 'dynamic'
          ? { dynamic: 1, growth_interval: cfg.growthInterval, growth_factor: cfg.growthFactor, backoff_factor: cfg.backoffFactor }
          : { dynamic: 0 },
    });
    g.updates.push(
      { state: SCALE, next: next[0] },
      { state: GROWTH, next: next[1] },
      { state: FOUND_INF, next: next[2] },
      { state: SKIPPED, next: next[3] },
    );
    g.meta.lossScale = { ...cfg, state: SCALE, skipped: SKIPPED };
    return g;
  },
  check: (g, ctx) => {
    const grads = g.meta.grads as GradMeta | undefined;
    if (!grads) return [];
    const scaled = ctx.lossScale.kind !== 'none';
    const errs: string[] = [];
    if (scaled && g.nodes.some((n) => n.inputs.includes(grads.seed))) errs.push('the unscaled gradient seed is still used');
    for (const n of g.nodes) {
      const s = opRow(n.op).scalerInputs;
      if (s && !n.inputs[s.flag]) errs.push(`update '${n.name}' ignores the found-inf flag`);
    }
    const last = scaled ? 'mpc.UpdateLossScale' : 'mpc.CountSkipped';
    if (g.nodes[g.nodes.length - 1]?.op !== last) errs.push(`the step does not end with ${last}`);
    return errs;
  },
};
