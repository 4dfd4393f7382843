// Shared graph-editing helpers for passes: add a node with inferred output types, infer a
// node's types from the op table, add constants and state.
import { opRow } from '../ops/table.js';
import type { ValueType } from '../ops/types.js';
import type { DType } from './dtypes.js';
import { freshName, freshNodeName, staticShape, type Attrs, type Graph, type Node, type Precision, type Value } from './graph.js';
import type { Tensor } from './tensor.js';

export function typeOf(g: Graph, name: string): ValueType {
  const v = g.values.get(name);
  if (!v) throw new Error(`unknown value '${name}'`);
  return { dtype: v.dtype, shape: staticShape(v) };
}

export function constOf(g: Graph, name: string): Tensor | undefined {
  const v = g.values.get(name);
  return v && v.role === 'const' ? v.init : undefined;
}

/** Runs the op table's inference for `n` and writes the result into its output values. */
export function inferNode(g: Graph, n: Node): ValueType[] {
  const row = opRow(n.op);
  const present = n.inputs.filter((i) => i);
  if (present.length < row.arity[0] || n.inputs.length > row.arity[1])
    throw new Error(`${n.op} '${n.name}': takes ${row.arity[0]}..${row.arity[1]} inputs, got ${n.inputs.length}`);
  const ins = n.inputs.map((i) => (i ? typeOf(g, i) : (undefined as unknown as ValueType)));
  const consts = n.inputs.map((i) => (i ? constOf(g, i) : undefined));
  let outs: ValueType[];
  try {
    outs = row.infer(n, ins, consts);
  } catch (e) {
    const msg = (e as Error).message;
    throw new Error(msg.includes(n.name) ? msg : `${n.op} '${n.name}': ${msg}`);
  }
  n.outputs.forEach((o, k) => {
    if (!o) return;
    const v = g.values.get(o);
    if (!outs[k]) throw new Error(`${n.op} '${n.name}': no type for output ${k}`);
    if (v) {
      v.dtype = outs[k].dtype;
      v.shape = [...outs[k].shape];
    } else g.values.set(o, { name: o, dtype: outs[k].dtype, shape: [...outs[k].shape], role: 'activation' });
  });
  return outs;
}

export interface AddNodeOpts {
  attrs?: Attrs;
  /** Base for the node and output names. */
  name?: string;
  outputs?: number;
  /** Explicit output names (must be unused). */
  outputNames?: string[];
  prec?: Precision;
  /** Insert before this index of g.nodes (default: append). */
  at?: number;
}

/** Adds a node; its outputs get fresh names and inferred types. Returns the output names. */
export function addNode(g: Graph, op: string, inputs: string[], opts: AddNodeOpts = {}): string[] {
  const row = opRow(op);
  const base = opts.name ?? op.replace(/^mpc\./, '').toLowerCase();
  const count = opts.outputNames?.length ?? opts.outputs ?? row.outputs;
  const outputs: string[] = [];
  for (let k = 0; k < count; k++) {
    const o = opts.outputNames?.[k] ?? freshName(g, count === 1 ? base : `${base}.${k}`);
    if (g.values.has(o)) throw new Error(`value '${o}' already exists`);
    g.values.set(o, { name: o, dtype: 'f32', shape: [], role: 'activation' });
    outputs.push(o);
  }
  const n: Node = { name: freshNodeName(g, base), op, inputs, outputs, attrs: opts.attrs ?? {}, prec: opts.prec };
  if (opts.at === undefined) g.nodes.push(n);
  else g.nodes.splice(opts.at, 0, n);
  inferNode(g, n);
  return outputs;
}

export function addConst(g: Graph, base: string, t: Tensor): string {
  const name = freshName(g, base);
  g.values.set(name, { name, dtype: t.dtype, shape: [...t.shape], role: 'const', init: t });
  return name;
}

/** Adds a persistent state value (optimizer moment, loss scale...) with initial contents. */
export function addState(g: Graph, name: string, init: Tensor): string {
  if (g.values.has(name)) throw new Error(`state '${name}' already exists`);
  const v: Value = { name, dtype: init.dtype, shape: [...init.shape], role: 'state', init };
  g.values.set(name, v);
  return name;
}

export function setDtype(g: Graph, name: string, dtype: DType): void {
  const v = g.values.get(name);
  if (!v) throw new Error(`unknown value '${name}'`);
  v.dtype = dtype;
}

/** Renames a value everywhere (its entry, producers, consumers, graph outputs). */
export function renameValue(g: Graph, from: string, to: string): void {
  const v = g.values.get(from);
  if (!v) throw new Error(`unknown value '${from}'`);
  if (g.values.has(to)) throw new Error(`value '${to}' already exists`);
  g.values.delete(from);
  g.values.set(to, { ...v, name: to });
  const sub = (x: string) => (x === from ? to : x);
  for (const n of g.nodes) {
    n.inputs = n.inputs.map(sub);
    n.outputs = n.outputs.map(sub);
  }
  g.outputs = g.outputs.map(sub);
  g.updates = g.updates.map((u) => ({ state: sub(u.state), next: sub(u.next) }));
}
