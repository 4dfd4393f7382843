// Elementwise ops with numpy broadcasting. Each op is a row built from its scalar math
// (CPU reference), its WGSL expression and its gradient rule.
import { broadcastShapes, broadcastStrides, sizeOf, stridesOf, type Tensor, type TensorData } from '../ir/tensor.js';
import { isFloat, type DType } from '../ir/dtypes.js';
import type { PrecisionClass } from '../ir/graph.js';
import { KernelWriter, mapKernel } from '../codegen/storage.js';
import { broadcastIndex } from '../codegen/index-math.js';
import type { GradCtx, OpRow, ValueType } from './types.js';

function sameFloatDtype(op: string, ins: ValueType[]): void {
  for (const t of ins)
    if (t.dtype !== ins[0].dtype)
      throw new Error(`${op}: operands have different dtypes (${ins.map((x) => x.dtype).join(', ')}); a cast is missing`);
}

/** Applies f elementwise over broadcast inputs, in f64, into a Float32Array (Int32Array for integer outputs). */
export function broadcastMap(ins: Tensor[], outShape: number[], f: (...xs: number[]) => number, outDtype: DType = 'f32'): TensorData {
  const n = sizeOf(outShape);
  const out = isFloat(outDtype) ? new Float32Array(n) : new Int32Array(n);
  const os = stridesOf(outShape);
  const strides = ins.map((t) => broadcastStrides(t.shape, outShape));
  const same = ins.map((t) => sizeOf(t.shape) === n);
  const xs = new Array<number>(ins.length);
  for (let i = 0; i < n; i++) {
    for (let k = 0; k < ins.length; k++) {
      let off = 0;
      if (same[k]) off = i;
      else {
        let r = i;
        for (let d = 0; d < outShape.length; d++) {
          const c = Math.floor(r / os[d]);
          r -= c * os[d];
          off += c * strides[k][d];
        }
      }
      xs[k] = ins[k].data[off];
    }
    out[i] = f(...xs);
  }
  return out;
}

/** Gradient of a broadcast operand: sum dY down to the operand's shape (no-op if equal). */
export function sumTo(ctx: GradCtx, dy: string, shape: number[]): string {
  const t = ctx.type(dy);
  if (t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i])) return dy;
  return ctx.emit('mpc.SumTo', [dy], { shape })[0];
}

interface UnarySpec {
  op: string;
  f: (x: number) => number;
  wgsl: (x: string) => string;
  grad?: (ctx: GradCtx, x: string, y: string, dy: string) => string;
  precision?: PrecisionClass;
  domain?: '' | 'mpc';
}

export function unaryOp(s: UnarySpec): OpRow {
  return {
    op: s.op,
    domain: s.domain ?? '',
    opsets: [6, 22],
    precision: s.precision ?? 'follow',
    kind: 'elementwise',
    expr: () => s.wgsl,
    arity: [1, 1],
    outputs: 1,
    infer: (_n, [x]) => [{ dtype: x.dtype, shape: [...x.shape] }],
    interp: (_n, [x]) => [{ dtype: x.dtype, shape: [...x.shape], data: Float32Array.from(x.data, s.f) }],
    grad: s.grad
      ? (ctx) => {
          const dy = ctx.dy[0];
          return [dy ? s.grad!(ctx, ctx.node.inputs[0], ctx.node.outputs[0], dy) : undefined];
        }
      : undefined,
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const t = ctx.type(n.outputs[0]);
      const x = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      return [mapKernel(w, { out: n.outputs[0], outDtype: t.dtype, count: sizeOf(t.shape), compute: `let x = ${w.load(x, 'i')};\nreturn ${s.wgsl('x')};` })];
    },
  };
}

interface BinarySpec {
  op: string;
  f: (a: number, b: number) => number;
  wgsl: (a: string, b: string) => string;
  grad?: (ctx: GradCtx, a: string, b: string, dy: string) => (string | undefined)[];
  precision?: PrecisionClass;
  domain?: '' | 'mpc';
  /** Extra inputs that are not broadcast operands (none for plain binary ops). */
}

/** Emits a map kernel over the broadcast output of several inputs. */
export function broadcastKernel(
  w: KernelWriter,
  ins: { name: string; type: ValueType }[],
  out: { name: string; type: ValueType },
  expr: (vals: string[]) => string,
) {
  const idents = ins.map((i) => w.bind(i.name, i.type.dtype, 'read'));
  const lets = idents.map((id, k) => `let v${k} = ${w.load(id, broadcastIndex(out.type.shape, ins[k].type.shape, 'i'))};`);
  return mapKernel(w, {
    out: out.name,
    outDtype: out.type.dtype,
    count: sizeOf(out.type.shape),
    compute: `${lets.join('\n')}\nreturn ${expr(idents.map((_, k) => `v${k}`))};`,
  });
}

export function binaryOp(s: BinarySpec): OpRow {
  return {
    op: s.op,
    domain: s.domain ?? '',
    opsets: [7, 22],
    precision: s.precision ?? 'follow',
    kind: 'elementwise',
    expr: () => s.wgsl,
    arity: [2, 2],
    outputs: 1,
    infer: (n, ins) => {
      sameFloatDtype(n.op, ins);
      return [{ dtype: ins[0].dtype, shape: broadcastShapes(ins[0].shape, ins[1].shape) }];
    },
    interp: (_n, ins, ctx) => [{ dtype: ctx.outTypes[0].dtype, shape: ctx.outTypes[0].shape, data: broadcastMap(ins, ctx.outTypes[0].shape, s.f) }],
    grad: s.grad
      ? (ctx) => {
          const dy = ctx.dy[0];
          if (!dy) return [undefined, undefined];
          return s.grad!(ctx, ctx.node.inputs[0], ctx.node.inputs[1], dy);
        }
      : undefined,
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      return [
        broadcastKernel(
          w,
          n.inputs.map((name) => ({ name, type: ctx.type(name) })),
          { name: n.outputs[0], type: ctx.type(n.outputs[0]) },
          ([a, b]) => s.wgsl(a, b),
        ),
      ];
    },
  };
}

const shapeOf = (ctx: GradCtx, v: string) => ctx.type(v).shape;

export const elementwiseOps: OpRow[] = [
  binaryOp({
    op: 'Add',
    f: (a, b) => a + b,
    wgsl: (a, b) => `${a} + ${b}`,
    grad: (ctx, a, b, dy) => [sumTo(ctx, dy, shapeOf(ctx, a)), sumTo(ctx, dy, shapeOf(ctx, b))],
  }),
  binaryOp({
    op: 'Sub',
    f: (a, b) => a - b,
    wgsl: (a, b) => `${a} - ${b}`,
    grad: (ctx, a, b, dy) => [sumTo(ctx, dy, shapeOf(ctx, a)), sumTo(ctx, ctx.emit('Neg', [dy])[0], shapeOf(ctx, b))],
  }),
  binaryOp({
    op: 'Mul',
    f: (a, b) => a * b,
    wgsl: (a, b) => `${a} * ${b}`,
    grad: (ctx, a, b, dy) => [
      sumTo(ctx, ctx.emit('Mul', [dy, b])[0], shapeOf(ctx, a)),
      sumTo(ctx, ctx.emit('Mul', [dy, a])[0], shapeOf(ctx, b)),
    ],
  }),
  binaryOp({
    op: 'Div',
    f: (a, b) => a / b,
    wgsl: (a, b) => `${a} / ${b}`,
    grad: (ctx, a, b, dy) => {
      const y = ctx.node.outputs[0];
      const da = ctx.emit('Div', [dy, b])[0];
      const db = ctx.emit('Neg', [ctx.emit('Mul', [da, y])[0]])[0];
      return [sumTo(ctx, da, shapeOf(ctx, a)), sumTo(ctx, db, shapeOf(ctx, b))];
    },
  }),
  unaryOp({ op: 'Neg', f: (x) => -x, wgsl: (x) => `-${x}`, grad: (ctx, _x, _y, dy) => ctx.emit('Neg', [dy])[0] }),
  unaryOp({
    op: 'Relu',
    f: (x) => (x > 0 ? x : 0),
    wgsl: (x) => `select(0.0, ${x}, ${x} > 0.0)`,
    // From the output: y > 0 exactly where x > 0 (NaN: neither), so the forward input need
    // not be kept for the backward pass, and the op before Relu can take it as its epilogue.
    grad: (ctx, _x, y, dy) => ctx.emit('mpc.ReluGrad', [dy, y])[0],
  }),
  binaryOp({
    op: 'mpc.ReluGrad',
    domain: 'mpc',
    f: (dy, x) => (x > 0 ? dy : 0),
    wgsl: (dy, x) => `select(0.0, ${dy}, ${x} > 0.0)`,
  }),
];
