// Op rows whose kernels and gradient rules are checked case by case in a test file of their
// own (interpreter vs onnxruntime, every WebGPU kernel vs the interpreter in f32/f16/bf16,
// gradients vs finite differences), with that file's own coverage test. The generic op tests
// (test/kernels.test.ts, test/grad-check.test.ts) accept these rows without a case of their own
// rather than run the same slow lavapipe kernels twice; a row of any other module needs a case
// there.
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { convOps } from '../../src/ops/conv.js';
import { gatherOps } from '../../src/ops/gather.js';
import { layerNormOps } from '../../src/ops/layernorm.js';
import { lossOps } from '../../src/ops/loss.js';
import { mathOps } from '../../src/ops/math.js';
import { normOps } from '../../src/ops/norm.js';
import { poolOps } from '../../src/ops/pool.js';
import { reduceOps } from '../../src/ops/reduce.js';
import { shapeOps } from '../../src/ops/shape.js';
import { softmaxOps } from '../../src/ops/softmax.js';
import { activationOps } from '../../src/ops/activations.js';
import { logicOps } from '../../src/ops/logic.js';
import { indexingOps } from '../../src/ops/indexing.js';
import { spatialOps } from '../../src/ops/spatial.js';
import { recurrentOps } from '../../src/ops/recurrent.js';
import { einsumOps } from '../../src/ops/einsum.js';
import type { OpRow } from '../../src/ops/types.js';

const ELSEWHERE: { file: string; rows: readonly OpRow[] }[] = [
  { file: 'test/ops-conv.test.ts', rows: [...convOps, ...poolOps, ...normOps] },
  { file: 'test/ops-math.test.ts', rows: [...mathOps, ...reduceOps, ...softmaxOps, ...layerNormOps] },
  { file: 'test/ops-shape.test.ts', rows: [...shapeOps, ...gatherOps] },
  { file: 'test/ops-activations.test.ts', rows: [...activationOps, ...logicOps] },
  { file: 'test/ops-indexing.test.ts', rows: indexingOps },
  { file: 'test/ops-spatial.test.ts', rows: spatialOps },
  { file: 'test/ops-recurrent.test.ts', rows: [...recurrentOps, ...einsumOps] },
  // Mean squared error keeps its cases in the generic tests.
  { file: 'test/ops-loss.test.ts', rows: lossOps.filter((r) => !r.op.startsWith('mpc.MeanSquaredError')) },
];

const root = fileURLToPath(new URL('../../', import.meta.url));

/** The test file that covers `op`, when it is one of those rows and the file exists. */
export function coveredElsewhere(op: string): string | undefined {
  const e = ELSEWHERE.find((x) => x.rows.some((r) => r.op === op));
  return e && existsSync(root + e.file) ? e.file : undefined;
}
