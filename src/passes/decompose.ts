// Lowers ops whose row has `decompose` (LSTM, GRU, RNN unrolled over their static sequence
// length; Einsum as transposes, views and MatMuls) into other rows of the table. It runs once
// shapes are known (after infer-types) and before precision assignment and autodiff, so the
// GEMMs of a recurrence take the policy's low precision, its pointwise ops follow, gradients
// through time come from the rows' own rules, and codegen never meets the composite ops.
//
// The replacement keeps the node's output names, so consumers and graph outputs are untouched.
// A replacement may itself contain decomposable nodes: they are lowered in turn.
//
// Post-condition: no node of a row with `decompose` is left.
import { addConst, addNode, constOf, typeOf } from '../ir/build.js';
import type { Graph, Node } from '../ir/graph.js';
import { opRow } from '../ops/table.js';
import type { DecomposeCtx } from '../ops/types.js';
import type { Pass } from './pass.js';

const MAX_ROUNDS = 8;

/** Replaces `n` (at index `at` of g.nodes) by the nodes its row's decompose emits. */
function lower(g: Graph, n: Node, at: number): void {
  const row = opRow(n.op);
  const start = g.nodes.length;
  const ctx: DecomposeCtx = {
    node: n,
    type: (v) => typeOf(g, v),
    constValue: (v) => constOf(g, v),
    emit: (op, inputs, attrs, nOutputs) => addNode(g, op, inputs, { attrs, outputs: nOutputs, name: n.name }),
    constant: (t) => addConst(g, `${n.name}.const`, t),
  };
  let results: string[];
  try {
    results = row.decompose!(ctx);
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.includes(n.name) ? msg : `${n.op} '${n.name}': ${msg}`);
  }
  const made = g.nodes.splice(start);
  const madeOutputs = new Set(made.flatMap((m) => m.outputs));
  const renamed = new Map<string, string>(); // emitted value -> the output name it took
  n.outputs.forEach((o, k) => {
    if (!o) return;
    const r = results[k];
    if (!r) throw new Error(`${n.op} '${n.name}': its decomposition gives no value for output ${k} ('${o}')`);
    const want = typeOf(g, o);
    const got = typeOf(g, renamed.get(r) ?? r);
    if (want.dtype !== got.dtype || want.shape.join() !== got.shape.join())
      throw new Error(`${n.op} '${n.name}': output '${o}' is ${want.dtype}[${want.shape}] but its decomposition gives ${got.dtype}[${got.shape}]`);
    g.values.delete(o);
    if (madeOutputs.has(r) && !renamed.has(r) && !g.outputs.includes(r)) {
      // The emitted value takes the output's name (it is only read inside the replacement).
      g.values.set(o, { ...g.values.get(r)!, name: o });
      g.values.delete(r);
      const sub = (x: string) => (x === r ? o : x);
      for (const m of made) {
        m.inputs = m.inputs.map(sub);
        m.outputs = m.outputs.map(sub);
      }
      renamed.set(r, o);
    } else {
      // An input passed through, or a value that replaces two outputs: a view under the name.
      const mark = g.nodes.length;
      addNode(g, 'Identity', [renamed.get(r) ?? r], { name: n.name, outputNames: [o] });
      made.push(...g.nodes.splice(mark));
    }
  });
  g.nodes.splice(at, 1, ...made);
}

export const decompose: Pass = {
  name: 'decompose',
  doc: 'lower LSTM, GRU, RNN (unrolled over the sequence) and Einsum into MatMul/Gemm, pointwise and movement rows',
  run(g) {
    for (let round = 0; round < MAX_ROUNDS; round++) {
      let changed = false;
      for (let i = 0; i < g.nodes.length; i++) {
        const n = g.nodes[i];
        if (!opRow(n.op).decompose) continue;
        const before = g.nodes.length;
        lower(g, n, i);
        i += g.nodes.length - before; // skip what was just emitted; the next round revisits it
        changed = true;
      }
      if (!changed) return g;
    }
    throw new Error(`decompose: still decomposable nodes after ${MAX_ROUNDS} rounds`);
  },
  check: (g) => g.nodes.filter((n) => opRow(n.op).decompose).map((n) => `${n.op} '${n.name}' is not decomposed`),
};
