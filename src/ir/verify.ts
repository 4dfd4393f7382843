// Structural checks that hold after every pass: SSA, definitions before use, known ops,
// arity, and value types equal to what the op table infers. Pass-specific post-conditions
// live with each pass (`Pass.check`).
import { hasOp, opRow } from '../ops/table.js';
import { cloneGraph, type Graph } from './graph.js';
import { inferNode } from './build.js';

export function verifyGraph(g: Graph): string[] {
  const errors: string[] = [];
  const defined = new Set<string>();
  for (const [name, v] of g.values) if (v.role !== 'activation') defined.add(name);
  const produced = new Set<string>();
  for (const n of g.nodes) {
    if (!hasOp(n.op)) {
      errors.push(`node '${n.name}': unknown op ${n.op}`);
      continue;
    }
    const row = opRow(n.op);
    if (n.outputs.length > row.outputs) errors.push(`node '${n.name}': ${n.outputs.length} outputs, ${n.op} has ${row.outputs}`);
    for (const i of n.inputs) if (i && !defined.has(i)) errors.push(`node '${n.name}' reads '${i}' before it is defined`);
    for (const o of n.outputs) {
      if (!o) continue;
      if (produced.has(o) || (g.values.get(o)?.role ?? 'activation') !== 'activation') errors.push(`value '${o}' is defined twice`);
      if (!g.values.has(o)) errors.push(`node '${n.name}' writes unknown value '${o}'`);
      produced.add(o);
      defined.add(o);
    }
  }
  for (const o of g.outputs) if (!defined.has(o)) errors.push(`graph output '${o}' is never defined`);
  for (const u of g.updates) {
    if (g.values.get(u.state)?.role !== 'state' && g.values.get(u.state)?.role !== 'param') errors.push(`update of '${u.state}', which is not state`);
    if (!defined.has(u.next)) errors.push(`update of '${u.state}' from undefined '${u.next}'`);
  }
  if (errors.length || !g.meta.typed) return errors;
  // Once infer-types has run, types must be what the op table infers from the inputs.
  const copy = cloneGraph(g);
  for (const n of copy.nodes) {
    const before = n.outputs.map((o) => (o ? `${copy.values.get(o)!.dtype}[${copy.values.get(o)!.shape}]` : ''));
    try {
      inferNode(copy, n);
    } catch (e) {
      errors.push((e as Error).message);
      continue;
    }
    n.outputs.forEach((o, k) => {
      if (!o) return;
      const after = `${copy.values.get(o)!.dtype}[${copy.values.get(o)!.shape}]`;
      if (after !== before[k]) errors.push(`value '${o}' is ${before[k]} but ${n.op} '${n.name}' gives ${after}`);
    });
  }
  return errors;
}

export function assertValid(g: Graph, after: string): void {
  const errors = verifyGraph(g);
  if (errors.length) throw new Error(`invalid IR after ${after}:\n  ${errors.slice(0, 20).join('\n  ')}`);
}
