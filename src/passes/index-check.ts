// Token ids out of range, reported instead of read silently: in the training step, every Gather whose indices are a
// model input (an embedding lookup) gets the flag INDEX_FLAG (i32 [1] training state) as its
// third input and an updated flag as its second output, chained from one Gather to the next.
// An out-of-range index then reads 0 and sets the flag, on both backends; the runtime reads
// the flag and stops with an error naming the input (see runtime/train.ts). Data files are
// also checked against the table size on load: this catches what that check cannot see.
import { addState } from '../ir/build.js';
import { zeros } from '../ir/tensor.js';
import type { Graph } from '../ir/graph.js';
import type { Pass } from './pass.js';

import { INDEX_FLAG } from '../runtime/hparams.js';

export { INDEX_FLAG };

function run(g: Graph): Graph {
  const inputs = new Set(g.inputs);
  const gathers = g.nodes.filter((n) => n.op === 'Gather' && inputs.has(n.inputs[1]) && !n.inputs[2]);
  if (!gathers.length) return g;
  addState(g, INDEX_FLAG, zeros('i32', [1]));
  let cur = INDEX_FLAG;
  for (const n of gathers) {
    const next = `${n.name}.index_flag`;
    g.values.set(next, { name: next, dtype: 'i32', shape: [1], role: 'activation' });
    n.inputs[2] = cur;
    n.outputs[1] = next;
    cur = next;
  }
  g.updates.push({ state: INDEX_FLAG, next: cur });
  return g;
}

export const indexCheck: Pass = {
  name: 'index-check',
  doc: 'give embedding lookups (Gather of a model input) an out-of-range flag the runtime reports',
  run,
  check: (g) =>
    g.nodes
      .filter((n) => n.op === 'Gather' && g.inputs.includes(n.inputs[1]) && !n.inputs[2])
      .map((n) => `Gather '${n.name}' reads the model input '${n.inputs[1]}' without the index flag`),
};
