// Data movement: views that share their input's buffer (Identity, Flatten, Reshape) and
// Transpose, which moves data.
import { sizeOf, stridesOf, type Tensor } from '../ir/tensor.js';
import type { Node } from '../ir/graph.js';
import { mapKernel } from '../codegen/storage.js';
import { transposeIndex } from '../codegen/index-math.js';
import { attrInt, attrInts, attrTensor, type OpRow, type ValueType } from './types.js';

const view = { view: true, pairs: [[0, 0]] as [number, number][] };

/** A view: the output shares the input's buffer under another shape (no kernel). */
export function viewRow(op: string, opsets: [number, number], outShape: (n: Node, x: ValueType, consts: (Tensor | undefined)[]) => number[], arity: [number, number] = [1, 1]): OpRow {
  return {
    op,
    domain: '',
    opsets,
    precision: 'follow',
    dataInputs: [0],
    arity,
    outputs: 1,
    alias: view,
    infer: (n, [x], consts) => {
      const shape = outShape(n, x, consts);
      if (sizeOf(shape) !== sizeOf(x.shape)) throw new Error(`${op} '${n.name}': cannot view [${x.shape}] as [${shape}]`);
      return [{ dtype: x.dtype, shape }];
    },
    interp: (_n, [x], ctx) => [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: x.data }],
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return ctx.node.inputs.map(() => undefined);
      const shape = ctx.type(ctx.node.inputs[0]).shape;
      return [ctx.emit('mpc.View', [dy], { shape })[0], ...ctx.node.inputs.slice(1).map(() => undefined)];
    },
  };
}

/** ONNX Reshape semantics: 0 copies the input dimension (unless allowzero), -1 is inferred. */
export function reshapeTarget(n: Node, inShape: number[], spec: number[]): number[] {
  const allowZero = attrInt(n, 'allowzero', 0) === 1;
  if (spec.some((d, i) => d === 0 && !allowZero && i >= inShape.length))
    throw new Error(`Reshape '${n.name}': shape [${spec}] copies (0) a dimension the input [${inShape}] does not have`);
  if (spec.some((d) => !Number.isInteger(d) || d < -1)) throw new Error(`Reshape '${n.name}': shape [${spec}] has a negative dimension other than -1`);
  const out = spec.map((d, i) => (d === 0 && !allowZero ? inShape[i] : d));
  const neg = out.filter((d) => d === -1).length;
  if (neg > 1) throw new Error(`Reshape '${n.name}': more than one -1 in shape [${spec}]`);
  if (neg === 1) {
    const known = out.filter((d) => d !== -1).reduce((a, b) => a * b, 1);
    const inferred = known === 0 ? 0 : sizeOf(inShape) / known;
    if (!Number.isInteger(inferred)) throw new Error(`Reshape '${n.name}': cannot view [${inShape}] as [${spec}] (${sizeOf(inShape)} elements do not divide by ${known})`);
    out[out.indexOf(-1)] = inferred;
  }
  return out;
}

export const movementOps: OpRow[] = [
  viewRow('Identity', [1, 22], (_n, x) => [...x.shape]),
  viewRow('Flatten', [1, 22], (n, x) => {
    let axis = attrInt(n, 'axis', 1);
    if (axis < 0) axis += x.shape.length;
    return [sizeOf(x.shape.slice(0, axis)), sizeOf(x.shape.slice(axis))];
  }),
  viewRow(
    'Reshape',
    [5, 22],
    (n, x, consts) => {
      const s = consts[1];
      if (!s) throw new Error(`Reshape '${n.name}': the shape input must be a constant (pass --batch to fix dynamic dimensions)`);
      return reshapeTarget(n, x.shape, Array.from(s.data));
    },
    [2, 2],
  ),
  // Internal view with a static target shape (used by gradients of views).
  { ...viewRow('mpc.View', [1, 1], (n) => attrInts(n, 'shape')), domain: 'mpc' },
  {
    op: 'Transpose',
    domain: '',
    opsets: [1, 22],
    precision: 'follow',
    kind: 'movement',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => {
      const perm = attrInts(n, 'perm', x.shape.map((_, i) => x.shape.length - 1 - i));
      return [{ dtype: x.dtype, shape: perm.map((p) => x.shape[p]) }];
    },
    interp: (n, [x], ctx) => {
      const perm = attrInts(n, 'perm', x.shape.map((_, i) => x.shape.length - 1 - i));
      const outShape = ctx.outTypes[0].shape;
      const os = stridesOf(outShape);
      const is = stridesOf(x.shape);
      const out = x.data instanceof Float32Array ? new Float32Array(x.data.length) : new Int32Array(x.data.length);
      for (let i = 0; i < out.length; i++) {
        let r = i;
        let off = 0;
        for (let d = 0; d < outShape.length; d++) {
          const c = Math.floor(r / os[d]);
          r -= c * os[d];
          off += c * is[perm[d]];
        }
        out[i] = x.data[off];
      }
      return [{ dtype: x.dtype, shape: outShape, data: out }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined];
      const rank = ctx.type(ctx.node.inputs[0]).shape.length;
      const perm = attrInts(ctx.node, 'perm', [...Array(rank).keys()].reverse());
      const inv = new Array<number>(rank);
      perm.forEach((p, i) => (inv[p] = i));
      return [ctx.emit('Transpose', [dy], { perm: inv })[0]];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[0]);
      const yt = ctx.type(n.outputs[0]);
      const perm = attrInts(n, 'perm', xt.shape.map((_, i) => xt.shape.length - 1 - i));
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: `return ${w.load(x, transposeIndex(xt.shape, perm, 'i'))};` })];
    },
  },
  {
    op: 'Constant',
    domain: '',
    opsets: [1, 22],
    precision: 'none',
    arity: [0, 0],
    outputs: 1,
    infer: (n) => {
      const t = attrTensor(n, 'value');
      return [{ dtype: t.dtype, shape: [...t.shape] }];
    },
    interp: (n) => [attrTensor(n, 'value')],
  },
];
