// Decides what each node's arithmetic really runs in on the target. WGSL has f32 and (with
// shader-f16) f16, and neither bf16 nor fp8: values of those types are stored packed in u32
// words (see codegen/storage.ts) and every kernel converts them to f32, computes, and rounds
// the result back with round-to-nearest-even when it stores it. f16 is computed the same way
// (one rounding per op result, which for + - * / sqrt equals native f16 arithmetic).
import { isFloat } from '../ir/dtypes.js';
import type { Pass } from './pass.js';

const NATIVE = new Set(['f32']);

export const emulateDtypes: Pass = {
  name: 'emulate-dtypes',
  doc: 'lower bf16/fp8 (and f16) arithmetic to f32 compute with rounding at each store',
  run(g, ctx) {
    for (const n of g.nodes) {
      if (!n.prec) continue;
      n.arith = isFloat(n.prec.compute) ? 'f32' : n.prec.compute;
    }
    g.meta.target = { ...ctx.target };
    return g;
  },
  check: (g) =>
    g.nodes.filter((n) => n.arith && isFloat(n.arith) && !NATIVE.has(n.arith)).map((n) => `node '${n.name}' computes in ${n.arith}, which WGSL lacks`),
};
