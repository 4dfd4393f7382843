// JSON form of a lowered graph (out/ir.json), so that the interpreter backend can run a
// compiled program. Initial contents of params/state/consts travel separately (init.safetensors).
import type { AttrValue, Graph, Value } from './graph.js';
import type { Tensor } from './tensor.js';
import { isFloat } from './dtypes.js';

interface TensorJson {
  tensor: { dtype: Tensor['dtype']; shape: number[]; data: number[] };
}

function attrToJson(v: AttrValue): unknown {
  if (typeof v === 'object' && !Array.isArray(v)) return { tensor: { dtype: v.dtype, shape: v.shape, data: Array.from(v.data) } };
  return v;
}

function attrFromJson(v: unknown): AttrValue {
  if (v && typeof v === 'object' && !Array.isArray(v) && 'tensor' in v) {
    const t = (v as TensorJson).tensor;
    return { dtype: t.dtype, shape: t.shape, data: isFloat(t.dtype) ? Float32Array.from(t.data) : Int32Array.from(t.data) };
  }
  return v as AttrValue;
}

export function graphToJson(g: Graph): unknown {
  return {
    name: g.name,
    values: [...g.values.values()].map((v) => ({ name: v.name, dtype: v.dtype, shape: v.shape, role: v.role })),
    nodes: g.nodes.map((n) => ({ ...n, attrs: Object.fromEntries(Object.entries(n.attrs).map(([k, a]) => [k, attrToJson(a)])) })),
    inputs: g.inputs,
    outputs: g.outputs,
    updates: g.updates,
    meta: g.meta,
  };
}

/** Rebuilds a graph; `init` gives the contents of params, state and constants by name. */
export function graphFromJson(j: unknown, init: Map<string, Tensor>): Graph {
  const o = j as {
    name: string;
    values: Omit<Value, 'init'>[];
    nodes: Graph['nodes'];
    inputs: string[];
    outputs: string[];
    updates: Graph['updates'];
    meta: Record<string, unknown>;
  };
  const values = new Map<string, Value>();
  for (const v of o.values) {
    const t = init.get(v.name);
    if ((v.role === 'param' || v.role === 'state' || v.role === 'const') && !t) throw new Error(`no initial contents for '${v.name}'`);
    values.set(v.name, { ...v, init: t });
  }
  const nodes = o.nodes.map((n) => ({ ...n, attrs: Object.fromEntries(Object.entries(n.attrs).map(([k, a]) => [k, attrFromJson(a)])) }));
  return { name: o.name, values, nodes, inputs: o.inputs, outputs: o.outputs, updates: o.updates, meta: o.meta };
}
