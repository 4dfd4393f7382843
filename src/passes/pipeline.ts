// The order of the passes, in one list. `mpc inspect --after NAME` stops after any of them.
import { assertValid, VERIFY_EACH } from '../ir/verify.js';
import { cloneGraph, type Graph } from '../ir/graph.js';
import { addLoss } from './add-loss.js';
import { assignPrecision } from './assign-precision.js';
import { autodiff } from './autodiff.js';
import { bindDims } from './bind-dims.js';
import { cse } from './cse.js';
import { dropoutRng } from './dropout-rng.js';
import { indexCheck } from './index-check.js';
import { decompose } from './decompose.js';
import { emulateDtypes } from './emulate-dtypes.js';
import { foldConstants, foldConstantsEval } from './fold-constants.js';
import { foldTransposes } from './fold-transposes.js';
import { inferTypes } from './infer-types.js';
import { insertCasts } from './insert-casts.js';
import { linearToGemm } from './linear-to-gemm.js';
import { lossScaling } from './loss-scaling.js';
import { optimizer } from './optimizer.js';
import { quantizeFp8 } from './quantize-fp8.js';
import { rematerialize } from './rematerialize.js';
import { selectParams, selectParamsEval } from './select-params.js';
import { weightLayout } from './weight-layout.js';
import type { Pass, PassCtx } from './pass.js';

/** Training step: forward, loss, backward, optimizer, loss scaling. */
export const TRAIN_PIPELINE: readonly Pass[] = [
  bindDims,
  foldConstants,
  cse,
  selectParams,
  dropoutRng,
  indexCheck,
  inferTypes,
  decompose,
  linearToGemm,
  addLoss,
  assignPrecision,
  insertCasts,
  autodiff,
  foldTransposes,
  quantizeFp8,
  rematerialize,
  optimizer,
  lossScaling,
  emulateDtypes,
];

/** Inference: the forward graph in the same precision. */
export const EVAL_PIPELINE: readonly Pass[] = [bindDims, foldConstantsEval, cse, selectParamsEval, inferTypes, decompose, linearToGemm, weightLayout, assignPrecision, insertCasts, foldTransposes, quantizeFp8, emulateDtypes];

export class PostConditionError extends Error {}

export interface PipelineOpts {
  /** Stop after this pass. */
  after?: string;
  /**
   * Called with the graph after each pass: the live graph, which the next passes go on to
   * edit (print or check it there; clone it to keep it).
   */
  onPass?: (pass: Pass, g: Graph) => void;
}

/**
 * Every pass's output is checked for structure (SSA, definitions before use, known ops,
 * arity) and its own post-condition. The type check (every value's type equal to what the op
 * table infers from its inputs) re-infers every node and costs about as much as the rest of
 * the checks together on a large model, so it runs after the last pass, or after every pass
 * with MPC_VERIFY_EACH=1 (the test suite sets it); `--after NAME` makes NAME the last.
 */
export function runPipeline(g: Graph, ctx: PassCtx, passes: readonly Pass[], opts: PipelineOpts = {}): Graph {
  if (opts.after && !passes.some((p) => p.name === opts.after))
    throw new Error(`unknown pass '${opts.after}' (passes: ${passes.map((p) => p.name).join(', ')})`);
  // Each pass may edit the graph it is given. The caller's graph is never edited: it is
  // copied once.
  let cur = cloneGraph(g);
  const last = opts.after ?? passes[passes.length - 1].name;
  for (const p of passes) {
    cur = p.run(cur, ctx);
    assertValid(cur, p.name, { types: VERIFY_EACH || p.name === last });
    const errs = p.check?.(cur, ctx) ?? [];
    if (errs.length) throw new PostConditionError(`post-condition of ${p.name} violated:\n  ${errs.join('\n  ')}`);
    opts.onPass?.(p, cur);
    if (p.name === opts.after) break;
  }
  return cur;
}
