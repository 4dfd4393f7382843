// The CPU reference interpreter. Runs any IR (forward, backward, optimizer, loss scaling)
// with the op table's reference kernels, which compute in f64/f32, and rounds every result
// through the dtype table exactly as the target stores it. It is the oracle for the WGSL
// kernels and a backend of its own (`--backend cpu`).
import { isFloat, roundArray } from '../ir/dtypes.js';
import { staticShape, type Graph } from '../ir/graph.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { opRow } from '../ops/table.js';
import type { ValueType } from '../ops/types.js';

export type Env = Map<string, Tensor>;

function checkFeed(g: Graph, name: string, t: Tensor | undefined): Tensor {
  const v = g.values.get(name)!;
  if (!t) throw new Error(`missing input '${name}'`);
  const shape = staticShape(v);
  if (t.shape.join() !== shape.join()) throw new Error(`input '${name}' must be [${shape}], got [${t.shape}]`);
  if (isFloat(v.dtype) !== isFloat(t.dtype)) throw new Error(`input '${name}' must be ${v.dtype}, got ${t.dtype}`);
  return isFloat(v.dtype) ? { dtype: v.dtype, shape, data: roundArray(v.dtype, t.data) } : { dtype: v.dtype, shape, data: t.data };
}

/** Rounds an op's raw result to the value's dtype. */
function finish(t: Tensor, want: ValueType): Tensor {
  if (sizeOf(t.shape) !== sizeOf(want.shape)) throw new Error(`reference kernel produced [${t.shape}], expected [${want.shape}]`);
  if (!isFloat(want.dtype)) return { dtype: want.dtype, shape: want.shape, data: t.data instanceof Int32Array ? t.data : Int32Array.from(t.data) };
  const data = t.data instanceof Float32Array && want.dtype === 'f32' ? t.data : roundArray(want.dtype, t.data);
  return { dtype: want.dtype, shape: want.shape, data };
}

/**
 * Runs the graph once. `state` supplies current values of params/state (default: their
 * initial contents). Returns every value computed, inputs and state included.
 */
export function runGraph(g: Graph, feeds: Record<string, Tensor>, state?: Env): Env {
  const env: Env = new Map();
  for (const [name, v] of g.values) {
    if (v.role === 'const' || v.role === 'param' || v.role === 'state') {
      const t = state?.get(name) ?? v.init;
      if (!t) throw new Error(`value '${name}' has no contents`);
      env.set(name, t);
    }
  }
  for (const name of g.inputs) env.set(name, checkFeed(g, name, feeds[name]));
  for (const n of g.nodes) {
    const row = opRow(n.op);
    const ins = n.inputs.map((i) => (i ? env.get(i) : undefined)) as Tensor[];
    // An omitted optional output ('') has no value; its slot keeps a placeholder type.
    const outTypes = n.outputs.map((o) => {
      const v = o ? g.values.get(o)! : undefined;
      return v ? { dtype: v.dtype, shape: staticShape(v) } : { dtype: 'f32' as const, shape: [] };
    });
    let outs: Tensor[];
    try {
      outs = row.interp(n, ins, { outTypes });
    } catch (e) {
      throw new Error(`${n.op} '${n.name}': ${(e as Error).message}`);
    }
    n.outputs.forEach((o, k) => o && env.set(o, finish(outs[k], outTypes[k])));
  }
  return env;
}

/** Training on the interpreter: holds the state and applies the graph's updates each step. */
export class InterpSession {
  readonly state: Env = new Map();

  constructor(readonly graph: Graph) {
    for (const [name, v] of graph.values) if ((v.role === 'param' || v.role === 'state') && v.init) this.state.set(name, v.init);
  }

  step(feeds: Record<string, Tensor>): Env {
    const env = runGraph(this.graph, feeds, this.state);
    for (const u of this.graph.updates) this.state.set(u.state, env.get(u.next)!);
    return env;
  }
}
