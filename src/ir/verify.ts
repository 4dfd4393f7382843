// Structural checks that hold after every pass: SSA, definitions before use, known ops,
// arity, and value types equal to what the op table infers. Pass-specific post-conditions
// live with each pass (`Pass.check`).
import { hasOp, opRow } from '../ops/table.js';
import type { Graph, Node } from './graph.js';
import type { Tensor } from './tensor.js';
import type { ValueType } from '../ops/types.js';
import { constOf } from './build.js';

/**
 * Checks that cost time on every compile and guard what the code relies on (every pass's
 * types, every reused fused kernel regenerated and compared): on with MPC_VERIFY_EACH=1,
 * which the test suite sets.
 */
export const VERIFY_EACH = typeof process !== 'undefined' && process.env?.['MPC_VERIFY_EACH'] === '1';

/**
 * `types: false` checks only the structure (SSA, definitions, ops, arity): the pipeline does
 * that after every pass and the type check after the last (see passes/pipeline.ts).
 */
export function verifyGraph(g: Graph, opts: { types?: boolean } = {}): string[] {
  const errors: string[] = [];
  // Defined so far: a value that is not an activation, or one a node before has written.
  const produced = new Set<string>();
  const isDefined = (v: string) => produced.has(v) || (g.values.get(v)?.role ?? 'activation') !== 'activation';
  for (const n of g.nodes) {
    if (!hasOp(n.op)) {
      errors.push(`node '${n.name}': unknown op ${n.op}`);
      continue;
    }
    const row = opRow(n.op);
    if (n.outputs.length > row.outputs) errors.push(`node '${n.name}': ${n.outputs.length} outputs, ${n.op} has ${row.outputs}`);
    for (const i of n.inputs) if (i && !isDefined(i)) errors.push(`node '${n.name}' reads '${i}' before it is defined`);
    for (const o of n.outputs) {
      if (!o) continue;
      if (produced.has(o) || (g.values.get(o)?.role ?? 'activation') !== 'activation') errors.push(`value '${o}' is defined twice`);
      if (!g.values.has(o)) errors.push(`node '${n.name}' writes unknown value '${o}'`);
      produced.add(o);
    }
  }
  for (const o of g.outputs) if (!isDefined(o)) errors.push(`graph output '${o}' is never defined`);
  for (const u of g.updates) {
    if (g.values.get(u.state)?.role !== 'state' && g.values.get(u.state)?.role !== 'param') errors.push(`update of '${u.state}', which is not state`);
    if (!isDefined(u.next)) errors.push(`update of '${u.state}' from undefined '${u.next}'`);
  }
  if (errors.length || !g.meta.typed || opts.types === false) return errors;
  // Once infer-types has run, types must be what the op table infers from the inputs. A node
  // whose op, attributes and input/output types (and constant inputs) were checked before —
  // after an earlier pass, most nodes are unchanged — is not inferred again.
  for (const n of g.nodes) {
    const row = opRow(n.op);
    const type = (v: string) => {
      const val = g.values.get(v)!;
      return { dtype: val.dtype, shape: val.shape as number[] };
    };
    const ins = n.inputs.map((i) => (i ? type(i) : (undefined as unknown as ValueType)));
    const consts = n.inputs.map((i) => (i ? constOf(g, i) : undefined));
    const before = n.outputs.map((o) => (o ? `${g.values.get(o)!.dtype}[${g.values.get(o)!.shape}]` : ''));
    const key = `${n.op}|${attrKey(n)}|${ins.map((t, k) => (t ? `${t.dtype}[${t.shape}]${consts[k] ? `#${tensorId(consts[k]!)}` : ''}` : '-')).join(',')}|${before.join(',')}`;
    if (checked.has(key)) continue;
    let outs: ValueType[];
    try {
      const present = n.inputs.filter((i) => i);
      if (present.length < row.arity[0] || n.inputs.length > row.arity[1]) throw new Error(`${n.op} '${n.name}': takes ${row.arity[0]}..${row.arity[1]} inputs, got ${n.inputs.length}`);
      outs = row.infer(n, ins, consts);
    } catch (e) {
      const msg = (e as Error).message;
      errors.push(msg.includes(n.name) ? msg : `${n.op} '${n.name}': ${msg}`);
      continue;
    }
    let ok = true;
    n.outputs.forEach((o, k) => {
      if (!o) return;
      const after = outs[k] ? `${outs[k].dtype}[${outs[k].shape}]` : 'nothing';
      if (after !== before[k]) {
        errors.push(`value '${o}' is ${before[k]} but ${n.op} '${n.name}' gives ${after}`);
        ok = false;
      }
    });
    if (ok) {
      if (checked.size > 200_000) checked.clear();
      checked.add(key);
    }
  }
  return errors;
}

/** Node signatures whose inferred types matched (see verifyGraph). */
const checked = new Set<string>();

const tensorIds = new WeakMap<Tensor, number>();
let nextTensorId = 0;
function tensorId(t: Tensor): number {
  let id = tensorIds.get(t);
  if (id === undefined) {
    id = ++nextTensorId;
    tensorIds.set(t, id);
  }
  return id;
}

function attrKey(n: Node): string {
  return JSON.stringify(n.attrs, (_k, v) => (v && typeof v === 'object' && 'data' in v && 'dtype' in v ? `tensor#${tensorId(v as Tensor)}` : v));
}

export function assertValid(g: Graph, after: string, opts: { types?: boolean } = {}): void {
  const errors = verifyGraph(g, opts);
  if (errors.length) throw new Error(`invalid IR after ${after}:\n  ${errors.slice(0, 20).join('\n  ')}`);
}
