// Evaluates at compile time what does not depend on the data. PyTorch exports for a dynamic
// batch compute shapes inside the graph (Shape -> Gather -> Unsqueeze -> Concat -> Reshape,
// Range, ConstantOfShape, Equal/Where over shapes); once bind-dims has fixed the dimensions,
// every such node has constant inputs, or reads only the static shape of its input (Shape).
// This pass walks the nodes in order, infers each one's types (so later nodes see the shapes
// of earlier ones), and replaces a node whose outputs are known by constant values computed
// with the op table's reference kernel. Reshape and friends then see a constant shape.
//
// Not folded (kept on purpose):
//  - nodes reading a parameter's contents: parameters are trained, their values change
//    (Shape of a parameter is folded: it reads only the shape, which never changes);
//  - nodes with an output larger than FOLD_MAX_ELEMENTS elements (a ConstantOfShape making a
//    big zero tensor): baking it into the program would bloat it; the kernel makes it.
//
// It also turns a node that its row declares the identity (`identity` hook) into Identity, a
// view: Dropout with training_mode absent or a constant false, or ratio a constant 0; its mask
// becomes a constant of ones. The evaluation pipeline uses `foldConstantsEval`, for which
// every Dropout is the identity (the model in inference).
//
// Post-condition: no node has only constant (or shape-only) inputs, except the big ones above.
import { isFloat, roundArray } from '../ir/dtypes.js';
import { constOf, inferNode, typeOf } from '../ir/build.js';
import { staticShape, type Graph, type Node } from '../ir/graph.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { InputError } from '../onnx/import.js';
import { opRow } from '../ops/table.js';
import type { FoldHooks } from '../ops/shape.js';
import type { ValueType } from '../ops/types.js';
import type { Pass } from './pass.js';

/** Largest output (in elements) that folding turns into a constant. */
export const FOLD_MAX_ELEMENTS = 1 << 20;

function shapeOnly(n: Node): Set<number> {
  return new Set((opRow(n.op) as FoldHooks).shapeOnlyInputs ?? []);
}

/** Whether every output of `n` is known at compile time (inputs constant or read for their shape only). */
function known(g: Graph, n: Node): boolean {
  const only = shapeOnly(n);
  return n.inputs.every((v, k) => !v || g.values.get(v)?.role === 'const' || (only.has(k) && g.values.has(v)));
}

function small(g: Graph, n: Node): boolean {
  return n.outputs.every((o) => !o || sizeOf(staticShape(g.values.get(o)!)) <= FOLD_MAX_ELEMENTS);
}

/** Runs the reference kernel of `n` on its constant inputs; outputs rounded to their dtypes. */
function evaluate(g: Graph, n: Node): Tensor[] {
  const only = shapeOnly(n);
  const ins = n.inputs.map((v, k) => {
    if (!v) return undefined;
    const t = constOf(g, v);
    if (t) return t;
    if (!only.has(k)) throw new Error(`fold-constants: '${v}' is not constant`);
    const val = g.values.get(v)!;
    // Read for its shape only: no contents.
    return { dtype: val.dtype, shape: staticShape(val), data: isFloat(val.dtype) ? new Float32Array(0) : new Int32Array(0) };
  }) as Tensor[];
  const outTypes = n.outputs.map((o) => (o ? { dtype: g.values.get(o)!.dtype, shape: staticShape(g.values.get(o)!) } : { dtype: 'f32' as const, shape: [] }));
  const outs = opRow(n.op).interp(n, ins, { outTypes });
  return outs.map((t, k) => {
    const want = outTypes[k];
    if (!n.outputs[k]) return t; // an omitted optional output: computed, never stored
    if (sizeOf(t.shape) !== sizeOf(want.shape)) throw new Error(`fold-constants: ${n.op} '${n.name}' computed [${t.shape}], expected [${want.shape}]`);
    const data = isFloat(want.dtype)
      ? t.data instanceof Float32Array && want.dtype === 'f32'
        ? t.data
        : roundArray(want.dtype, t.data)
      : t.data instanceof Int32Array
        ? t.data
        : Int32Array.from(t.data);
    return { dtype: want.dtype, shape: [...want.shape], data };
  });
}

/** A node that is the identity of its input (Dropout in inference) -> Identity, a view. */
function simplify(g: Graph, n: Node, inference: boolean): void {
  const row = opRow(n.op) as FoldHooks;
  if (!row.identity) return;
  const ins = n.inputs.map((v) => (v ? typeOf(g, v) : (undefined as unknown as ValueType)));
  const others = row.identity(n, ins, n.inputs.map((v) => (v ? constOf(g, v) : undefined)), inference);
  if (!others) return;
  n.outputs.slice(1).forEach((o, k) => {
    if (o) g.values.set(o, { name: o, dtype: others[k].dtype, shape: [...others[k].shape], role: 'const', init: others[k] });
  });
  n.op = 'Identity';
  n.inputs = [n.inputs[0]];
  n.outputs = [n.outputs[0]];
  n.attrs = {};
}

function makePass(inference: boolean): Pass {
  return {
    name: 'fold-constants',
    doc: 'evaluate nodes whose inputs are constants or static shapes (shape subgraphs of dynamic-batch exports)',
    run(g) {
      const folded = new Set<string>(); // constants read by folded nodes
      const kept: Node[] = [];
      for (const n of g.nodes) {
        inferOrFail(g, n);
        if ((opRow(n.op) as FoldHooks).identity) {
          simplify(g, n, inference);
          inferOrFail(g, n);
        }
        if (!known(g, n) || !small(g, n)) {
          kept.push(n);
          continue;
        }
        const outs = evaluate(g, n);
        n.outputs.forEach((o, k) => {
          if (o) g.values.set(o, { name: o, dtype: outs[k].dtype, shape: [...outs[k].shape], role: 'const', init: outs[k] });
        });
        for (const v of n.inputs) if (v && g.values.get(v)?.role === 'const') folded.add(v);
      }
      g.nodes = kept;
      // Constants that only folded nodes read are dropped (the shape subgraph's indices...).
      const used = new Set<string>([...g.outputs, ...g.updates.flatMap((u) => [u.state, u.next])]);
      for (const n of g.nodes) for (const v of n.inputs) if (v) used.add(v);
      for (const v of folded) if (!used.has(v)) g.values.delete(v);
      return g;
    },
    check: (g) =>
      g.nodes
        .filter((n) => n.inputs.some(Boolean) && known(g, n) && small(g, n))
        .map((n) => `${n.op} '${n.name}' has only constant inputs and was not folded`),
  };
}

/** Type inference of one node; a failure here is the model's (a shape left dynamic...). */
function inferOrFail(g: Graph, n: Node): void {
  try {
    inferNode(g, n);
  } catch (e) {
    throw new InputError((e as Error).message);
  }
}

/** For the training pipeline: Dropout follows its training_mode input. */
export const foldConstants: Pass = makePass(false);

/** For the evaluation pipeline: the model in inference, every Dropout is Identity. */
export const foldConstantsEval: Pass = makePass(true);
