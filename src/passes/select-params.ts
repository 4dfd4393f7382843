// Which initializers are trained. The importer makes every float initializer a parameter; a
// real export also carries buffers (running statistics, masks, position tables) that PyTorch
// never trains. This pass applies the rule:
//
//   - BatchNormalization's running mean and variance (inputs 3 and 4 of a training-mode node)
//     are training state: the training step writes the node's running-statistics outputs back
//     into them (the momentum of the exported attribute), and the evaluation program reads
//     them in inference mode;
//   - an initializer with a NaN or infinite element (a -inf/0 attention mask) is a constant;
//   - `--train GLOB` keeps only the parameters it matches, `--freeze GLOB` makes those it
//     matches constants;
//   - of the rest, autodiff trains those a gradient path reaches through differentiable
//     inputs (the others are listed as frozen: no gradient reaches them).
//
// The decisions are recorded in g.meta.params and printed by `mpc compile`.
import { isFloat } from '../ir/dtypes.js';
import type { Graph } from '../ir/graph.js';
import { allFinite } from '../ir/tensor.js';
import { InputError } from '../onnx/import.js';
import type { Pass, PassCtx } from './pass.js';

export interface ParamDecision {
  name: string;
  reason: string;
}

export interface ParamSelection {
  /** Initializers made constants here, and why. */
  frozen: ParamDecision[];
  /** BatchNormalization running statistics (training state). */
  state: string[];
}

/** A shell-style glob (`*` any run of characters, `?` one) as a whole-name RegExp. */
export function globRegExp(glob: string): RegExp {
  const body = glob.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '.*').replace(/\?/g, '.');
  return new RegExp(`^${body}$`);
}

function select(g: Graph, ctx: PassCtx, training: boolean): Graph {
  const sel: ParamSelection = { frozen: [], state: [] };
  const outputs = new Set(g.outputs);
  for (const n of g.nodes) {
    if (n.op !== 'BatchNormalization' || n.attrs.training_mode !== 1) continue;
    const stats = [n.inputs[3], n.inputs[4]];
    for (const s of stats) {
      const v = g.values.get(s);
      if (v && (v.role === 'param' || v.role === 'state') && v.init) {
        if (v.role === 'param') sel.state.push(s);
        v.role = 'state';
      }
    }
    if (training) {
      stats.forEach((s, k) => {
        if (g.values.get(s)?.role !== 'state') return;
        if (g.updates.some((u) => u.state === s)) throw new InputError(`running statistic '${s}' is updated by more than one BatchNormalization`);
        let out = n.outputs[k + 1];
        if (!out) {
          out = `${n.name}.running_${k ? 'var' : 'mean'}`;
          while (n.outputs.length < k + 2) n.outputs.push('');
          n.outputs[k + 1] = out;
          g.values.set(out, { name: out, dtype: 'f32', shape: [], role: 'activation' });
        }
        g.updates.push({ state: s, next: out });
      });
    } else if (stats.every((s) => g.values.get(s)?.role === 'state') && !n.outputs.slice(1).some((o) => o && outputs.has(o))) {
      // Evaluation: inference mode, normalising with the running statistics.
      n.attrs = { ...n.attrs, training_mode: 0 };
      for (const o of n.outputs.slice(1)) if (o) g.values.delete(o);
      n.outputs = [n.outputs[0]];
    }
  }

  const train = (ctx.train ?? []).map(globRegExp);
  const freeze = (ctx.freeze ?? []).map(globRegExp);
  const params = [...g.values.values()].filter((v) => v.role === 'param' && isFloat(v.dtype));
  for (const [flag, globs, list] of [
    ['--train', ctx.train ?? [], train],
    ['--freeze', ctx.freeze ?? [], freeze],
  ] as const)
    globs.forEach((glob, k) => {
      if (!params.some((p) => list[k].test(p.name)))
        throw new InputError(`${flag} '${glob}' matches no parameter of the model (parameters: ${params.map((p) => p.name).slice(0, 8).join(', ')}${params.length > 8 ? ', ...' : ''})`);
    });
  for (const v of params) {
    let reason: string | undefined;
    if (!allFinite(v.init!)) reason = 'has NaN or infinite values (a mask or a buffer)';
    else if (train.length && !train.some((r) => r.test(v.name))) reason = 'not matched by --train';
    else if (freeze.some((r) => r.test(v.name))) reason = '--freeze';
    if (!reason) continue;
    v.role = 'const';
    sel.frozen.push({ name: v.name, reason });
  }
  g.meta.params = sel;
  return g;
}

function check(g: Graph): string[] {
  const errs: string[] = [];
  for (const v of g.values.values())
    if (v.role === 'param' && v.init && !allFinite(v.init)) errs.push(`parameter '${v.name}' is not finite`);
  for (const n of g.nodes)
    if (n.op === 'BatchNormalization' && n.attrs.training_mode === 1)
      for (const s of [n.inputs[3], n.inputs[4]]) if (g.values.get(s)?.role === 'param') errs.push(`running statistic '${s}' of '${n.name}' is a parameter`);
  return errs;
}

export const selectParams: Pass = {
  name: 'select-params',
  doc: 'decide which initializers are trained: BatchNorm running statistics become state, non-finite buffers and --freeze/--train choices constants',
  run: (g, ctx) => select(g, ctx, true),
  check,
};

export const selectParamsEval: Pass = {
  name: 'select-params',
  doc: selectParams.doc,
  run: (g, ctx) => select(g, ctx, false),
  check,
};
