// Decides, node by node, the dtype each op computes in (allow / follow / deny classes from
// the op table, moved by the policy). Values are not changed here: insert-casts applies it.
//
// allow:  the policy's low type, accumulating in f32.
// deny:   f32.
// follow: the widest type among its activation inputs (parameters and constants do not
//         vote: their f32 is a storage decision, not a precision signal).
import { isFloat, type DType } from '../ir/dtypes.js';
import { classOf, overrideMatches, widest } from '../ir/policy.js';
import { dataInputs, opRow } from '../ops/table.js';
import type { Pass } from './pass.js';

export const assignPrecision: Pass = {
  name: 'assign-precision',
  doc: 'choose each node\'s compute dtype from its class (allow/follow/deny) and the policy',
  run(g, ctx) {
    const cur = new Map<string, DType>();
    for (const [k, v] of g.values) cur.set(k, v.dtype);
    const producer = new Map(g.nodes.flatMap((n) => n.outputs.map((o) => [o, n] as const)));
    const matched = new Set<string>();
    for (const n of g.nodes) {
      const row = opRow(n.op);
      const { cls, reason } = classOf(ctx.policy, n, row.precision);
      for (const o of ctx.policy.overrides) if (overrideMatches(o.match, n)) matched.add(o.match);
      const floats = dataInputs(n).map((i) => n.inputs[i]).filter((v) => v && isFloat(cur.get(v)!));
      let compute: DType | undefined;
      let why = reason;
      if (cls === 'allow') compute = ctx.policy.low;
      else if (cls === 'deny') compute = 'f32';
      else if (cls === 'follow') {
        const voters = floats.filter((v) => g.values.get(v)!.role === 'activation' || g.values.get(v)!.role === 'input');
        const pool = voters.length ? voters : floats;
        compute = pool.length ? pool.map((v) => cur.get(v)!).reduce(widest) : undefined;
        // Which input decided it: the first one in the chosen type (for `manifest.json`).
        const by = pool.find((v) => cur.get(v) === compute);
        if (by) {
          const p = producer.get(by);
          const from = p ? `${p.op} '${p.name}'${p.prec ? ` (${p.prec.cls}, ${p.prec.compute})` : ''}` : `the ${g.values.get(by)!.role} '${by}'`;
          why = `${reason}: follows ${compute} of '${by}', from ${from}`;
        }
      } else if (cls === 'cast') compute = g.values.get(n.outputs[0])!.dtype;
      if (compute === undefined) continue;
      n.prec = { cls, compute, reason: why };
      if (cls === 'allow' && compute !== 'f32') n.prec.accum = 'f32';
      if (cls !== 'cast' && cls !== 'none')
        for (const o of n.outputs) if (o && isFloat(cur.get(o) ?? 'f32')) cur.set(o, compute);
    }
    // --class rules that reached no node (a typo, or an op the model does not have).
    g.meta.unmatchedOverrides = ctx.policy.overrides.filter((o) => !matched.has(o.match)).map((o) => `${o.match}=${o.cls}`);
    return g;
  },
  check: (g, ctx) => {
    const errs: string[] = [];
    for (const n of g.nodes) {
      const cls = opRow(n.op).precision;
      const hasFloat = n.inputs.some((i) => i && isFloat(g.values.get(i)!.dtype));
      if ((cls === 'allow' || cls === 'deny' || cls === 'follow') && hasFloat && !n.prec) errs.push(`node '${n.name}' has no precision`);
      if (n.prec?.cls === 'allow' && n.prec.compute !== ctx.policy.low) errs.push(`allow node '${n.name}' computes in ${n.prec.compute}`);
      if (n.prec?.cls === 'allow' && n.prec.compute !== 'f32' && n.prec.accum !== 'f32') errs.push(`low-precision GEMM '${n.name}' does not accumulate in f32`);
      if (n.prec?.cls === 'deny' && n.prec.compute !== 'f32') errs.push(`deny node '${n.name}' computes in ${n.prec.compute}`);
    }
    return errs;
  },
};
