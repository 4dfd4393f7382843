// The IR: a graph of named values (SSA: every value has exactly one producer, or is an
// input, parameter, constant or training state) and nodes in execution order.
//
// Passes never mutate the caller's graph: the pipeline copies it once (cloneGraph) and each
// pass edits that copy freely and returns it to the next. Tensor payloads are shared between
// copies and never written.
import type { DType } from './dtypes.js';
import type { Tensor } from './tensor.js';

/** A dimension: a number, or a symbol (e.g. the dynamic batch `N`) until bind-dims runs. */
export type Dim = number | string;

export type ValueRole =
  | 'input' // fed by the caller each step (images, labels)
  | 'param' // trainable weight: fp32 master copy, updated by the optimizer
  | 'const' // fixed data known at compile time
  | 'state' // persistent training state: optimizer moments, loss scale, step counter...
  | 'activation'; // produced by a node

export interface Value {
  name: string;
  dtype: DType;
  shape: Dim[];
  role: ValueRole;
  /** Initial contents for const/param/state values. */
  init?: Tensor;
}

export type AttrValue = number | string | number[] | string[] | Tensor;
export type Attrs = Record<string, AttrValue>;

export type PrecisionClass = 'allow' | 'follow' | 'deny' | 'none' | 'cast';

/** Where and how a node computes, decided by assign-precision (and autodiff for grads). */
export interface Precision {
  cls: PrecisionClass;
  /** dtype of its floating-point operands and results. */
  compute: DType;
  /** dtype of accumulation for reductions/GEMMs (f32 for every low-precision GEMM). */
  accum?: DType;
  /** Why this decision was taken (printed by `mpc inspect`). */
  reason?: string;
}

export interface Node {
  name: string;
  op: string;
  /** Value names; '' marks an omitted optional input. */
  inputs: string[];
  outputs: string[];
  attrs: Attrs;
  prec?: Precision;
  /** Set by emulate-dtypes: the dtype arithmetic really happens in on the target. */
  arith?: DType;
  /** Part of the training step the node belongs to (set by autodiff for gradient nodes). */
  phase?: 'backward';
}

/** A state value and the value holding its contents after one step. */
export interface StateUpdate {
  state: string;
  next: string;
}

export interface Graph {
  name: string;
  values: Map<string, Value>;
  nodes: Node[];
  inputs: string[];
  outputs: string[];
  /** Training state written back after every step. */
  updates: StateUpdate[];
  /** Facts passes leave for later passes and for codegen (policy, loss name, grads...). */
  meta: Record<string, unknown>;
}

export function emptyGraph(name: string): Graph {
  return { name, values: new Map(), nodes: [], inputs: [], outputs: [], updates: [], meta: {} };
}

export function cloneGraph(g: Graph): Graph {
  const values = new Map<string, Value>();
  for (const [k, v] of g.values) values.set(k, { ...v, shape: [...v.shape] });
  return {
    name: g.name,
    values,
    nodes: g.nodes.map((n) => ({
      ...n,
      inputs: [...n.inputs],
      outputs: [...n.outputs],
      attrs: { ...n.attrs },
      prec: n.prec ? { ...n.prec } : undefined,
    })),
    inputs: [...g.inputs],
    outputs: [...g.outputs],
    updates: g.updates.map((u) => ({ ...u })),
    meta: structuredCloneMeta(g.meta),
  };
}

function structuredCloneMeta(m: Record<string, unknown>): Record<string, unknown> {
  return JSON.parse(JSON.stringify(m)) as Record<string, unknown>;
}

export function getValue(g: Graph, name: string): Value {
  const v = g.values.get(name);
  if (!v) throw new Error(`unknown value '${name}'`);
  return v;
}

/** Static shape of a value; fails if a symbolic dimension is left. */
export function staticShape(v: Value): number[] {
  return v.shape.map((d) => {
    if (typeof d !== 'number') throw new Error(`value '${v.name}' has unresolved dimension '${d}'`);
    return d;
  });
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Map from value name to the node producing it. */
export function producers(g: Graph): Map<string, Node> {
  const m = new Map<string, Node>();
  for (const n of g.nodes) for (const o of n.outputs) if (o) m.set(o, n);
  return m;
}

/** Map from value name to the nodes reading it, in execution order. */
export function consumers(g: Graph): Map<string, Node[]> {
  const m = new Map<string, Node[]>();
  for (const n of g.nodes)
    for (const i of n.inputs) {
      if (!i) continue;
      const l = m.get(i);
      if (l) {
        if (!l.includes(n)) l.push(n);
      } else m.set(i, [n]);
    }
  return m;
}

/** Returns a value name not used yet, based on `base`. */
export function freshName(g: Graph, base: string): string {
  if (!g.values.has(base)) return base;
  for (let i = 1; ; i++) {
    const n = `${base}_${i}`;
    if (!g.values.has(n)) return n;
  }
}

/**
 * The node names of a node list, kept while the list only grows through freshNodeName's
 * callers (one node added per name handed out); any other change of its length rebuilds it.
 * Without it, adding N nodes one by one costs O(N^2).
 */
const nodeNames = new WeakMap<Node[], { length: number; names: Set<string>; next: Map<string, number> }>();

export function freshNodeName(g: Graph, base: string): string {
  let cache = nodeNames.get(g.nodes);
  if (!cache || cache.length !== g.nodes.length) {
    cache = { length: g.nodes.length, names: new Set(g.nodes.map((n) => n.name)), next: new Map() };
    nodeNames.set(g.nodes, cache);
  }
  // The first free `${base}_${i}`; the suffixes below the last one handed out for this base
  // are all taken (names are only added while the cache holds), so the search resumes there.
  let name = base;
  let i = cache.next.get(base) ?? 1;
  if (cache.names.has(name)) for (name = `${base}_${i}`; cache.names.has(name); ) name = `${base}_${++i}`;
  cache.next.set(base, i);
  cache.names.add(name);
  cache.length++;
  return name;
}

/** Nodes that (transitively) feed the given outputs; the rest are dead. */
export function liveNodes(g: Graph, roots: Iterable<string>): Set<Node> {
  const prod = producers(g);
  const live = new Set<Node>();
  const stack = [...roots];
  while (stack.length) {
    const v = stack.pop()!;
    const n = prod.get(v);
    if (!n || live.has(n)) continue;
    live.add(n);
    for (const i of n.inputs) if (i) stack.push(i);
  }
  return live;
}
