// Cast and the broadcast-sum used by gradients of broadcasting ops.
import { fromOnnx, info, isFloat, toOnnx, type DType } from '../ir/dtypes.js';
import { sizeOf, stridesOf, type Tensor } from '../ir/tensor.js';
import type { Graph, Node } from '../ir/graph.js';
import { mapKernel } from '../codegen/storage.js';
import { attrInt, attrInts, type OpRow, type ValueType } from './types.js';

export function castTarget(n: Node): DType {
  return fromOnnx(attrInt(n, 'to'));
}

/** A Cast whose every input value is exactly representable in its output type (f16 -> f32...). */
export function isExactWidening(g: Graph, n: Node): boolean {
  if (n.op !== 'Cast') return false;
  const from = g.values.get(n.inputs[0])!.dtype;
  const to = g.values.get(n.outputs[0])!.dtype;
  if (from === to || !isFloat(from) || !isFloat(to)) return false;
  const a = info(from);
  const b = info(to);
  return a.kind === 'float' && b.kind === 'float' && b.expBits >= a.expBits && b.mantBits >= a.mantBits;
}

/** Attributes of a Cast to `d`. */
export function castAttrs(d: DType): { to: number } {
  return { to: toOnnx(d) };
}

function castData(x: Tensor, to: DType): Tensor['data'] {
  if (isFloat(to)) return Float32Array.from(x.data);
  if (to === 'bool') return Int32Array.from(x.data, (v) => (v !== 0 ? 1 : 0));
  return Int32Array.from(x.data, (v) => (Number.isFinite(v) ? Math.trunc(v) : 0));
}

/** Reduced axes when summing `from` down to `to` (numpy broadcasting, right-aligned). */
function sumToPlan(from: number[], to: number[]): { keptStrides: number[]; reducedDims: number[]; reducedStrides: number[]; toPadded: number[] } {
  const pad = [...Array(from.length - to.length).fill(1), ...to];
  const fs = stridesOf(from);
  const keptStrides: number[] = [];
  const reducedDims: number[] = [];
  const reducedStrides: number[] = [];
  for (let d = 0; d < from.length; d++) {
    if (pad[d] === from[d]) keptStrides.push(fs[d]);
    else if (pad[d] === 1) {
      keptStrides.push(0);
      reducedDims.push(from[d]);
      reducedStrides.push(fs[d]);
    } else throw new Error(`cannot sum [${from}] down to [${to}]`);
  }
  return { keptStrides, reducedDims, reducedStrides, toPadded: pad };
}

function sumToInfer(n: Node, [x]: ValueType[]): ValueType[] {
  const shape = attrInts(n, 'shape');
  if (shape.length > x.shape.length) throw new Error(`SumTo '${n.name}': target rank exceeds input rank`);
  sumToPlan(x.shape, shape);
  return [{ dtype: x.dtype, shape: [...shape] }];
}

/** Cast and CastLike: `target` gives the result type from the node and its input types. */
/** Float to float: the value itself (the store rounds it); int to float; to bool; to int. */
const castExpr: NonNullable<OpRow['expr']> = (_n, _w, [x], { dtype: to }) => (v) => {
  if (isFloat(to)) return isFloat(x.dtype) ? v : `f32(${v})`;
  if (to === 'bool') return `select(0, 1, ${v} != ${isFloat(x.dtype) ? '0.0' : '0'})`;
  return isFloat(x.dtype) ? `i32(trunc(${v}))` : v;
};

function castRow(op: string, opsets: [number, number], arity: [number, number], target: (n: Node, types: ValueType[]) => DType): OpRow {
  return {
    op,
    domain: '',
    opsets,
    precision: 'cast',
    kind: 'elementwise',
    dataInputs: [0],
    arity,
    outputs: 1,
    infer: (n, ins) => [{ dtype: target(n, ins), shape: [...ins[0].shape] }],
    interp: (n, ins, ctx) => [{ ...ctx.outTypes[0], data: castData(ins[0], ctx.outTypes[0].dtype) }],
    grad: (ctx) => {
      const dy = ctx.dy[0];
      const src = ctx.type(ctx.node.inputs[0]).dtype;
      const rest = ctx.node.inputs.slice(1).map(() => undefined);
      if (!dy || !isFloat(src)) return [undefined, ...rest];
      return [ctx.emit('Cast', [dy], castAttrs(src))[0], ...rest];
    },
    expr: castExpr,
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[0]);
      const out = ctx.type(n.outputs[0]);
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const expr = castExpr(n, w, [xt], out)(w.load(x, 'i'));
      return [mapKernel(w, { out: n.outputs[0], outDtype: out.dtype, count: sizeOf(xt.shape), compute: `return ${expr};` })];
    },
  };
}

export const castOps: OpRow[] = [
  castRow('Cast', [6, 22], [1, 1], (n) => castTarget(n)),
  // CastLike: the target type is the type of input 1 (which may itself change with the policy).
  castRow('CastLike', [15, 22], [2, 2], (_n, types) => types[1].dtype),
  {
    // Sums a broadcast gradient back to an operand's shape (attribute `shape`), accumulating in f32.
    op: 'mpc.SumTo',
    domain: 'mpc',
    precision: 'follow',
    arity: [1, 1],
    outputs: 1,
    infer: sumToInfer,
    interp: (n, [x]) => {
      const to = attrInts(n, 'shape');
      const plan = sumToPlan(x.shape, to);
      const out = new Float64Array(sizeOf(to));
      const fs = stridesOf(x.shape);
      const ts = stridesOf(plan.toPadded);
      for (let i = 0; i < x.data.length; i++) {
        let r = i;
        let o = 0;
        for (let d = 0; d < x.shape.length; d++) {
          const c = Math.floor(r / fs[d]);
          r -= c * fs[d];
          if (plan.toPadded[d] !== 1) o += c * ts[d];
        }
        out[o] += x.data[i];
      }
      return [{ dtype: x.dtype, shape: to, data: Float32Array.from(out) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined];
      return [ctx.emit('mpc.Expand', [dy], { shape: ctx.type(ctx.node.inputs[0]).shape })[0]];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[0]);
      const to = attrInts(n, 'shape');
      const plan = sumToPlan(xt.shape, to);
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const ts = stridesOf(plan.toPadded);
      // Base offset in x of output element i: its coordinates (in the padded target shape) times x's strides.
      const base: string[] = [];
      for (let d = 0; d < xt.shape.length; d++)
        if (plan.toPadded[d] !== 1) base.push(`((i / ${ts[d]}u) % ${plan.toPadded[d]}u) * ${plan.keptStrides[d]}u`);
      const nRed = sizeOf(plan.reducedDims);
      const rs = stridesOf(plan.reducedDims);
      const red = plan.reducedDims.map((dim, k) => `((r / ${rs[k]}u) % ${dim}u) * ${plan.reducedStrides[k]}u`);
      return [
        mapKernel(w, {
          out: n.outputs[0],
          outDtype: xt.dtype,
          count: sizeOf(to),
          compute: `let base = ${base.length ? base.join(' + ') : '0u'};\nvar s = 0.0;\nfor (var r = 0u; r < ${nRed}u; r++) { s += ${w.load(x, `base + ${red.length ? red.join(' + ') : '0u'}`)}; }\nreturn s;`,
        }),
      ];
    },
  },
  {
    // Broadcasts a tensor to attribute `shape` (the adjoint of SumTo).
    op: 'mpc.Expand',
    domain: 'mpc',
    precision: 'follow',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => [{ dtype: x.dtype, shape: [...attrInts(n, 'shape')] }],
    interp: (n, [x]) => {
      const to = attrInts(n, 'shape');
      const out = new Float32Array(sizeOf(to));
      const plan = sumToPlan(to, x.shape);
      const os = stridesOf(to);
      const xs = stridesOf(plan.toPadded);
      for (let i = 0; i < out.length; i++) {
        let r = i;
        let o = 0;
        for (let d = 0; d < to.length; d++) {
          const c = Math.floor(r / os[d]);
          r -= c * os[d];
          if (plan.toPadded[d] !== 1) o += c * xs[d];
        }
        out[i] = x.data[o];
      }
      return [{ dtype: x.dtype, shape: to, data: out }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      return [dy ? ctx.emit('mpc.SumTo', [dy], { shape: ctx.type(ctx.node.inputs[0]).shape })[0] : undefined];
    },
  },
];
