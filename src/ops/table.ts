// The op table: every operation mpc knows, one row each. The importer, the passes, the
// interpreter and codegen look ops up here; nothing else lists op names.
import { castOps } from './cast.js';
import { convOps } from './conv.js';
import { elementwiseOps } from './elementwise.js';
import { fp8Ops } from './fp8.js';
import { gatherOps } from './gather.js';
import { gemmOps } from './gemm.js';
import { layerNormOps } from './layernorm.js';
import { lossOps } from './loss.js';
import { mathOps } from './math.js';
import { movementOps } from './movement.js';
import { normOps } from './norm.js';
import { poolOps } from './pool.js';
import { reduceOps } from './reduce.js';
import { shapeOps } from './shape.js';
import { softmaxOps } from './softmax.js';
import { trainingOps } from './training.js';
import { activationOps } from './activations.js';
import { logicOps } from './logic.js';
import { indexingOps } from './indexing.js';
import { spatialOps } from './spatial.js';
import { recurrentOps } from './recurrent.js';
import { einsumOps } from './einsum.js';
import type { Node } from '../ir/graph.js';
import type { OpRow } from './types.js';

const ROWS: OpRow[] = [...elementwiseOps, ...movementOps, ...gemmOps, ...castOps, ...lossOps, ...trainingOps, ...fp8Ops, ...convOps, ...poolOps, ...normOps, ...shapeOps, ...gatherOps, ...mathOps, ...reduceOps, ...softmaxOps, ...layerNormOps,
  ...activationOps, ...logicOps, ...indexingOps, ...spatialOps, ...recurrentOps, ...einsumOps];

const TABLE = new Map<string, OpRow>();
for (const r of ROWS) {
  if (TABLE.has(r.op)) throw new Error(`op table: duplicate row for ${r.op}`);
  TABLE.set(r.op, r);
}

export function hasOp(op: string): boolean {
  return TABLE.has(op);
}

export function opRow(op: string): OpRow {
  const r = TABLE.get(op);
  if (!r) throw new Error(`unsupported op ${op}`);
  return r;
}

/** ONNX ops (not internal ones), for the importer's support check and documentation. */
export function onnxOps(): OpRow[] {
  return ROWS.filter((r) => r.domain === '');
}

export function allOps(): readonly OpRow[] {
  return ROWS;
}

/** Inputs of `n` that carry floating-point data subject to precision decisions. */
export function dataInputs(n: Node): number[] {
  const row = opRow(n.op);
  return row.dataInputs ?? n.inputs.map((_, i) => i);
}
