// Appends the optimizer update of every parameter. Master weights and optimizer state stay
// f32; the forward pass reads the low-precision copies that insert-casts made of them.
//
// A gradient that autodiff computed in f16 or bf16 (the gradient of a low-precision weight
// copy) reaches the f32 parameter through a Cast to f32, an exact widening. The update reads
// the narrow value instead and widens it in its loads: the same numbers, half the bytes, and
// every parameter gradient is live at once (the finite check decides about all of them before
// any update), so on a large model this halves the step's peak.
import { addNode, addState } from '../ir/build.js';
import { consumers, producers, type Graph, type Node } from '../ir/graph.js';
import { isExactWidening } from '../ops/cast.js';
import { opRow } from '../ops/table.js';
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
    narrowGradients(g, grads);
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
    const errs = Object.keys(grads).filter((p) => !updated.has(p)).map((p) => `parameter '${p}' has no update`);
    // A widening Cast read only by updates should have been dropped (narrowGradients).
    const prod = producers(g);
    const readers = consumers(g);
    const kept = new Set([...g.outputs, ...g.updates.map((u) => u.next)]);
    for (const [p, d] of Object.entries(grads)) {
      const src = widenedFrom(g, prod.get(d));
      if (src && !kept.has(d) && !kept.has(src) && (readers.get(d) ?? []).every((n) => opRow(n.op).scalerInputs))
        errs.push(`the gradient of '${p}' is an f32 copy of a narrow value the update could read`);
    }
    return errs;
  },
};

/** The narrow input of a Cast that widens it exactly to f32 (the gradient's type), else undefined. */
function widenedFrom(g: Graph, n: Node | undefined): string | undefined {
  return n && isExactWidening(g, n) && g.values.get(n.outputs[0])!.dtype === 'f32' ? n.inputs[0] : undefined;
}

/**
 * Drops each Cast that only widens a narrow gradient for the update; the narrow value takes
 * the Cast's name (`<param>.f16.grad` stays the gradient's name, now f16).
 */
function narrowGradients(g: Graph, grads: Record<string, string>): void {
  const prod = producers(g);
  const readers = consumers(g);
  const kept = new Set([...g.outputs, ...g.updates.map((u) => u.next)]);
  const rename = new Map<string, string>();
  for (const d of Object.values(grads)) {
    const src = widenedFrom(g, prod.get(d));
    if (!src || readers.get(d)?.length || kept.has(d) || kept.has(src)) continue;
    rename.set(src, d);
  }
  if (!rename.size) return;
  const dropped = new Set(rename.values());
  g.nodes = g.nodes.filter((n) => !dropped.has(n.outputs[0]));
  for (const [src, d] of rename) {
    g.values.set(d, { ...g.values.get(src)!, name: d });
    g.values.delete(src);
  }
  const sub = (x: string) => rename.get(x) ?? x;
  for (const n of g.nodes) {
    n.inputs = n.inputs.map(sub);
    n.outputs = n.outputs.map(sub);
  }
}
