// Reductions over a set of axes: ReduceSum, ReduceMean, ReduceMax, ReduceMin, ReduceProd,
// ReduceL1, ReduceL2, ReduceSumSquare, ReduceLogSum, ReduceLogSumExp (deny class, as PyTorch
// autocast runs sum, prod, norm and logsumexp in f32: f32 results, f32 accumulation on the
// GPU, f64 in the interpreter) and their gradient ops. Float inputs only.
//
// The axes come from the `axes` attribute (ReduceSum before opset 13, ReduceMean/ReduceMax
// before 18) or from input 1 (later opsets), which must then be a constant: the output shape
// depends on it. An empty list reduces every axis, or none with noop_with_empty_axes=1.
//
// Kernels get shapes but not constants' contents (EmitCtx has no access to them), so a kernel
// whose axes come from an input reads them from their buffer at run time; with the attribute
// they are baked in. Either way the kernel body is the same: a `red` mask over the input dims.
import { isFloat } from '../ir/dtypes.js';
import type { Attrs, Node } from '../ir/graph.js';
import { sizeOf, stridesOf, type Tensor } from '../ir/tensor.js';
import { f32Lit, mapKernel, type KernelWriter } from '../codegen/storage.js';
import { wgslMath } from './math.js';
import { attrFloat, attrInt, attrInts, attrString, type EmitCtx, type GradCtx, type OpRow, type ValueType } from './types.js';

/** Reduced dims of a rank-`rank` input, from the `axes` attribute or the axes tensor's contents. */
function reduceMask(n: Node, rank: number, axes: ArrayLike<number> | undefined): boolean[] {
  const list = n.attrs.axes !== undefined ? attrInts(n, 'axes') : Array.from(axes ?? []);
  if (list.length === 0) return new Array<boolean>(rank).fill(attrInt(n, 'noop_with_empty_axes', 0) !== 1);
  const red = new Array<boolean>(rank).fill(false);
  for (const a of list) {
    const k = a < 0 ? a + rank : a;
    if (!Number.isInteger(k) || k < 0 || k >= rank) throw new Error(`${n.op} '${n.name}': axis ${a} is out of range for rank ${rank}`);
    if (red[k]) throw new Error(`${n.op} '${n.name}': axis ${a} is listed twice`);
    red[k] = true;
  }
  return red;
}

function reducedShape(shape: number[], red: boolean[], keepdims: boolean): number[] {
  return keepdims ? shape.map((d, k) => (red[k] ? 1 : d)) : shape.filter((_, k) => !red[k]);
}

const keepdimsOf = (n: Node) => attrInt(n, 'keepdims', 1) === 1;

/** The axes tensor of input `slot` at inference: a constant, or an error saying so. */
function constAxes(n: Node, slot: number, consts: (Tensor | undefined)[]): ArrayLike<number> | undefined {
  if (n.attrs.axes !== undefined || !n.inputs[slot]) return undefined;
  const t = consts[slot];
  if (!t) throw new Error(`${n.op} '${n.name}': the axes input must be a constant (the output shape depends on it)`);
  return t.data;
}

/** For every input element, the flat index of the output element it reduces into. */
function outIndexMap(shape: number[], red: boolean[]): Int32Array {
  const keptStride = new Array<number>(shape.length).fill(0);
  for (let d = shape.length - 1, s = 1; d >= 0; d--)
    if (!red[d]) {
      keptStride[d] = s;
      s *= shape[d];
    }
  const is = stridesOf(shape);
  const map = new Int32Array(sizeOf(shape));
  for (let i = 0; i < map.length; i++) {
    let o = 0;
    for (let d = 0, r = i; d < shape.length; d++) {
      const c = Math.floor(r / is[d]);
      r -= c * is[d];
      o += c * keptStride[d];
    }
    map[i] = o;
  }
  return map;
}

/**
 * WGSL statements declaring, for the reduced tensor, `dims` and `strides` (row-major) and `red`
 * (1u for a reduced dim): baked in from the attribute, or filled from the axes buffer.
 */
function wgslPlan(w: KernelWriter, n: Node, ctx: EmitCtx, shape: number[], axesSlot: number): { code: string; rank: number } {
  const dims = shape.length ? shape : [1];
  const R = dims.length;
  const arr = (xs: (number | string)[]) => `array<u32, ${R}>(${xs.map((x) => `${x}u`).join(', ')})`;
  const lines = [`var dims = ${arr(dims)};`, `var strides = ${arr(stridesOf(dims))};`];
  const axesName = n.attrs.axes === undefined ? n.inputs[axesSlot] : undefined;
  const count = axesName ? sizeOf(ctx.type(axesName).shape) : 0;
  if (!axesName || count === 0) {
    const red = shape.length ? reduceMask(n, R, []) : [false];
    lines.push(`var red = ${arr(red.map((r) => (r ? 1 : 0)))};`);
  } else {
    const axes = w.bind(axesName, ctx.type(axesName).dtype, 'read');
    lines.push(
      `var red = ${arr(dims.map(() => 0))};`,
      `for (var k = 0u; k < ${count}u; k++) {`,
      `  var a = ${w.load(axes, 'k')};`,
      `  if (a < 0) { a += ${R}; }`,
      `  red[u32(a)] = 1u;`,
      `}`,
    );
  }
  return { code: lines.join('\n'), rank: R };
}

/** WGSL: `base` (offset of the first reduced element) and `cnt` for output element `i`. */
const wgslOutputSplit = (R: number) => `var rem = i;
var base = 0u;
var cnt = 1u;
for (var d = ${R}u; d > 0u; d--) {
  let k = d - 1u;
  if (red[k] == 1u) { cnt = cnt * dims[k]; } else { base += (rem % dims[k]) * strides[k]; rem = rem / dims[k]; }
}`;

/** WGSL: `off` = offset of the r-th element reduced into the output whose first is `base`. */
const wgslReducedOffset = (R: number) => `var rr = r;
var off = base;
for (var d = ${R}u; d > 0u; d--) {
  let k = d - 1u;
  if (red[k] == 1u) { off += (rr % dims[k]) * strides[k]; rr = rr / dims[k]; }
}`;

/** WGSL: for input element `i`, its output index `o`, the base of its group and the group size. */
const wgslInputSplit = (R: number) => `var rem = i;
var o = 0u;
var ostride = 1u;
var base = 0u;
var cnt = 1u;
for (var d = ${R}u; d > 0u; d--) {
  let k = d - 1u;
  let cc = rem % dims[k];
  rem = rem / dims[k];
  if (red[k] == 0u) { o += cc * ostride; ostride = ostride * dims[k]; base += cc * strides[k]; } else { cnt = cnt * dims[k]; }
}`;

interface ReduceKind {
  op: string;
  /** Supported opsets (default 11-22: ReduceSum/ReduceMean/ReduceMax as first written). */
  opsets?: [number, number];
  /**
   * 'max': a first pass finds the group's maximum `m` (the f64 `m` argument of fold/finish,
   * the WGSL `m`) so that log-sum-exp sums exp(v - m) <= 1 and cannot overflow.
   */
  prepass?: 'max';
  /** WGSL math library functions (src/ops/math.ts) the fold and finish call. */
  lib?: string[];
  init: number;
  /** f64 reference: folds the values of one output. */
  fold: (acc: number, v: number, m: number) => number;
  finish: (acc: number, count: number, m: number) => number;
  wgsl: { init: string; fold: string; finish: string };
  grad: (ctx: GradCtx, dy: string) => string;
}

/** Attributes of the forward node that the gradient ops need to rebuild the reduction plan. */
function planAttrs(n: Node): Attrs {
  const out: Attrs = {};
  for (const k of ['axes', 'keepdims', 'noop_with_empty_axes']) if (n.attrs[k] !== undefined) out[k] = n.attrs[k];
  return out;
}

function reduceRow(k: ReduceKind): OpRow {
  return {
    op: k.op,
    domain: '',
    opsets: k.opsets ?? [11, 22],
    precision: 'deny',
    dataInputs: [0],
    arity: [1, 2],
    outputs: 1,
    infer: (n, [x], consts) => {
      if (!isFloat(x.dtype)) throw new Error(`${n.op} '${n.name}': integer inputs are not supported yet (${x.dtype})`);
      const red = reduceMask(n, x.shape.length, constAxes(n, 1, consts));
      return [{ dtype: x.dtype, shape: reducedShape(x.shape, red, keepdimsOf(n)) }];
    },
    interp: (n, [x, axes], ctx) => {
      const red = reduceMask(n, x.shape.length, n.attrs.axes === undefined ? axes?.data : undefined);
      const map = outIndexMap(x.shape, red);
      const m = sizeOf(ctx.outTypes[0].shape);
      const acc = new Float64Array(m).fill(k.init);
      const cnt = new Float64Array(m);
      const mx = new Float64Array(m).fill(-Infinity);
      if (k.prepass === 'max') for (let i = 0; i < map.length; i++) mx[map[i]] = Math.max(mx[map[i]], x.data[i]);
      for (let i = 0; i < map.length; i++) {
        acc[map[i]] = k.fold(acc[map[i]], x.data[i], mx[map[i]]);
        cnt[map[i]]++;
      }
      return [{ ...ctx.outTypes[0], data: Float32Array.from(acc, (a, o) => k.finish(a, cnt[o], mx[o])) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      return [dy ? k.grad(ctx, dy) : undefined, undefined];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[0]);
      const yt = ctx.type(n.outputs[0]);
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const plan = wgslPlan(w, n, ctx, xt.shape, 1);
      wgslMath(w, 'mpc_inf');
      for (const f of k.lib ?? []) wgslMath(w, f);
      const prepass =
        k.prepass === 'max'
          ? [
              `var m = -mpc_inf();`,
              `for (var r = 0u; r < cnt; r++) {`,
              wgslReducedOffset(plan.rank).replace(/^/gm, '  '),
              `  m = max(m, ${w.load(x, 'off')});`,
              `}`,
            ]
          : [];
      const compute = [
        plan.code,
        wgslOutputSplit(plan.rank),
        ...prepass,
        `var acc = ${k.wgsl.init};`,
        `for (var r = 0u; r < cnt; r++) {`,
        wgslReducedOffset(plan.rank).replace(/^/gm, '  '),
        `  let v = ${w.load(x, 'off')};`,
        `  acc = ${k.wgsl.fold};`,
        `}`,
        `return ${k.wgsl.finish};`,
      ].join('\n');
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
    },
  };
}

/** dY broadcast back over the reduced dims, divided by `divisor` (1 for sums, the count for means). */
function reduceSumGrad(divisorOf: (x: ValueType, y: ValueType) => number) {
  return (ctx: GradCtx, dy: string): string => {
    const n = ctx.node;
    const xt = ctx.type(n.inputs[0]);
    const divisor = divisorOf(xt, ctx.type(n.outputs[0]));
    const ins = n.attrs.axes === undefined && n.inputs[1] ? [dy, n.inputs[1]] : [dy];
    return ctx.emit('mpc.ReduceGrad', ins, { ...planAttrs(n), shape: xt.shape, divisor })[0];
  };
}

/** Inputs dY, X, Y[, axes] of a gradient op that reads the forward values. */
function gradInputs(ctx: GradCtx, dy: string): string[] {
  const n = ctx.node;
  const ins = [dy, n.inputs[0], n.outputs[0]];
  if (n.attrs.axes === undefined && n.inputs[1]) ins.push(n.inputs[1]);
  return ins;
}

/** ReduceMax / ReduceMin: dY to the elements equal to the result, split evenly among ties. */
function extremeGrad(ctx: GradCtx, dy: string): string {
  return ctx.emit('mpc.ReduceMaxGrad', gradInputs(ctx, dy), planAttrs(ctx.node))[0];
}

/** Reductions whose dX element is a function of dY, X and Y at that element (mpc.ReduceElemGrad). */
function elemGrad(ctx: GradCtx, dy: string): string {
  return ctx.emit('mpc.ReduceElemGrad', gradInputs(ctx, dy), { ...planAttrs(ctx.node), of: ctx.node.op })[0];
}

/**
 * dX element of reduction `of` from g = dY, v = X and y = Y at its output, in f64 (the
 * interpreter) and WGSL (f32). ReduceProd's is the product of the group's other elements
 * (`others`): exact when elements are zero, unlike Y / v.
 */
const ELEM_GRADS: Record<string, { f: (g: number, v: number, y: number, others: () => number) => number; wgsl: string; lib?: string[] }> = {
  // sign(0) = 0: the subgradient PyTorch picks for |x| and the L1 norm.
  ReduceL1: { f: (g, v) => g * Math.sign(v), wgsl: 'g * sign(v)' },
  // Zero norm: 0, as PyTorch's norm backward (it masks the division by a zero norm).
  ReduceL2: { f: (g, v, y) => (y === 0 ? 0 : (g * v) / y), wgsl: 'select(g * v / y, 0.0, y == 0.0)' },
  ReduceSumSquare: { f: (g, v) => 2 * g * v, wgsl: '2.0 * g * v' },
  // y = log(s): dX = dY / s = dY / exp(y).
  ReduceLogSum: { f: (g, _v, y) => g / Math.exp(y), wgsl: 'g / mpc_exp(y)', lib: ['mpc_exp'] },
  // softmax of the group times dY.
  ReduceLogSumExp: { f: (g, v, y) => g * Math.exp(v - y), wgsl: 'g * mpc_exp(v - y)', lib: ['mpc_exp'] },
  ReduceProd: { f: (g, _v, _y, others) => g * others(), wgsl: 'g * p' },
};

function elemGradOf(n: Node): (typeof ELEM_GRADS)[string] {
  const e = ELEM_GRADS[attrString(n, 'of')];
  if (!e) throw new Error(`mpc.ReduceElemGrad '${n.name}': no rule for ${String(n.attrs.of)}`);
  return e;
}

export const reduceOps: OpRow[] = [
  reduceRow({
    op: 'ReduceSum',
    init: 0,
    fold: (a, v) => a + v,
    finish: (a) => a,
    wgsl: { init: '0.0', fold: 'acc + v', finish: 'acc' },
    grad: reduceSumGrad(() => 1),
  }),
  reduceRow({
    op: 'ReduceMean',
    init: 0,
    fold: (a, v) => a + v,
    finish: (a, c) => a / c,
    wgsl: { init: '0.0', fold: 'acc + v', finish: 'acc / f32(cnt)' },
    grad: reduceSumGrad((x, y) => sizeOf(x.shape) / Math.max(1, sizeOf(y.shape))),
  }),
  reduceRow({
    // NaN inputs: the interpreter propagates them (Math.max), WGSL's max may not.
    op: 'ReduceMax',
    init: -Infinity,
    fold: (a, v) => Math.max(a, v),
    finish: (a) => a,
    wgsl: { init: '-mpc_inf()', fold: 'max(acc, v)', finish: 'acc' },
    grad: extremeGrad,
  }),
  reduceRow({
    op: 'ReduceMin',
    opsets: [1, 22],
    init: Infinity,
    fold: (a, v) => Math.min(a, v),
    finish: (a) => a,
    wgsl: { init: 'mpc_inf()', fold: 'min(acc, v)', finish: 'acc' },
    // The rule of ReduceMax: dY to the elements equal to the result, split among ties.
    grad: extremeGrad,
  }),
  reduceRow({
    op: 'ReduceProd',
    opsets: [1, 22],
    init: 1,
    fold: (a, v) => a * v,
    finish: (a) => a,
    wgsl: { init: '1.0', fold: 'acc * v', finish: 'acc' },
    grad: elemGrad,
  }),
  reduceRow({
    op: 'ReduceL1',
    opsets: [1, 22],
    init: 0,
    fold: (a, v) => a + Math.abs(v),
    finish: (a) => a,
    wgsl: { init: '0.0', fold: 'acc + abs(v)', finish: 'acc' },
    grad: elemGrad,
  }),
  reduceRow({
    op: 'ReduceL2',
    opsets: [1, 22],
    init: 0,
    fold: (a, v) => a + v * v,
    finish: (a) => Math.sqrt(a),
    wgsl: { init: '0.0', fold: 'acc + v * v', finish: 'sqrt(acc)' },
    grad: elemGrad,
  }),
  reduceRow({
    op: 'ReduceSumSquare',
    opsets: [1, 22],
    init: 0,
    fold: (a, v) => a + v * v,
    finish: (a) => a,
    wgsl: { init: '0.0', fold: 'acc + v * v', finish: 'acc' },
    grad: elemGrad,
  }),
  reduceRow({
    op: 'ReduceLogSum',
    opsets: [1, 22],
    lib: ['mpc_log'],
    init: 0,
    fold: (a, v) => a + v,
    finish: (a) => Math.log(a),
    wgsl: { init: '0.0', fold: 'acc + v', finish: 'mpc_log(acc)' },
    grad: elemGrad,
  }),
  reduceRow({
    // log(sum(exp(v - m))) + m with m the group's maximum; an infinite m (all -inf, an empty
    // group, or a +inf element) is the result itself.
    op: 'ReduceLogSumExp',
    opsets: [1, 22],
    prepass: 'max',
    lib: ['mpc_exp', 'mpc_log'],
    init: 0,
    fold: (a, v, m) => a + Math.exp(v - m),
    finish: (a, _c, m) => (Number.isFinite(m) ? m + Math.log(a) : m),
    wgsl: { init: '0.0', fold: 'acc + mpc_exp(v - m)', finish: 'select(m + mpc_log(acc), m, (bitcast<u32>(m) & 0x7fffffffu) == 0x7f800000u)' },
    grad: elemGrad,
  }),
  {
    // dX of ReduceSum/ReduceMean: dY broadcast back to attribute `shape`, divided by attribute `divisor`.
    op: 'mpc.ReduceGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0],
    arity: [1, 2],
    outputs: 1,
    infer: (n, [dy], consts) => {
      const shape = attrInts(n, 'shape');
      const want = reducedShape(shape, reduceMask(n, shape.length, constAxes(n, 1, consts)), keepdimsOf(n));
      if (sizeOf(want) !== sizeOf(dy.shape)) throw new Error(`mpc.ReduceGrad '${n.name}': dy is [${dy.shape}], the reduction gives [${want}]`);
      return [{ dtype: dy.dtype, shape: [...shape] }];
    },
    interp: (n, [dy, axes], ctx) => {
      const shape = attrInts(n, 'shape');
      const map = outIndexMap(shape, reduceMask(n, shape.length, n.attrs.axes === undefined ? axes?.data : undefined));
      const divisor = attrFloat(n, 'divisor', 1);
      return [{ ...ctx.outTypes[0], data: Float32Array.from(map, (o) => dy.data[o] / divisor) }];
    },
    grad: (ctx) => {
      // The adjoint of a broadcast is a sum: ReduceSum over the same axes, divided.
      const n = ctx.node;
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined];
      const s = ctx.emit('ReduceSum', n.inputs[1] ? [dy, n.inputs[1]] : [dy], planAttrs(n))[0];
      const divisor = attrFloat(n, 'divisor', 1);
      return [divisor === 1 ? s : ctx.emit('Div', [s, ctx.constant({ dtype: ctx.type(s).dtype, shape: [], data: Float32Array.of(divisor) })])[0], undefined];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const dyT = ctx.type(n.inputs[0]);
      const shape = attrInts(n, 'shape');
      const dy = w.bind(n.inputs[0], dyT.dtype, 'read');
      const plan = wgslPlan(w, n, ctx, shape, 1);
      const divisor = attrFloat(n, 'divisor', 1);
      const compute = [plan.code, wgslInputSplit(plan.rank), `return ${w.load(dy, 'o')}${divisor === 1 ? '' : ` / ${f32Lit(divisor)}`};`].join('\n');
      return [mapKernel(w, { out: n.outputs[0], outDtype: dyT.dtype, count: sizeOf(shape), compute })];
    },
  },
  {
    // dX of ReduceMax (inputs dY, X, Y[, axes]): dY goes to the elements equal to the maximum,
    // split evenly among ties (PyTorch's amax rule; ONNX does not define one).
    op: 'mpc.ReduceMaxGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1, 2],
    arity: [3, 4],
    outputs: 1,
    infer: (n, [dy, x, y], consts) => {
      const want = reducedShape(x.shape, reduceMask(n, x.shape.length, constAxes(n, 3, consts)), keepdimsOf(n));
      if (want.join() !== y.shape.join() || sizeOf(dy.shape) !== sizeOf(y.shape))
        throw new Error(`mpc.ReduceMaxGrad '${n.name}': X [${x.shape}] reduces to [${want}], got Y [${y.shape}] and dY [${dy.shape}]`);
      return [{ dtype: dy.dtype, shape: [...x.shape] }];
    },
    interp: (n, [dy, x, y, axes], ctx) => {
      const map = outIndexMap(x.shape, reduceMask(n, x.shape.length, n.attrs.axes === undefined ? axes?.data : undefined));
      const ties = new Float64Array(y.data.length);
      for (let i = 0; i < map.length; i++) if (x.data[i] === y.data[map[i]]) ties[map[i]]++;
      return [{ ...ctx.outTypes[0], data: Float32Array.from(map, (o, i) => (x.data[i] === y.data[o] ? dy.data[o] / ties[o] : 0)) }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[1]);
      const [dy, x, y] = n.inputs.slice(0, 3).map((v) => w.bind(v, ctx.type(v).dtype, 'read'));
      const plan = wgslPlan(w, n, ctx, xt.shape, 3);
      const compute = [
        plan.code,
        wgslInputSplit(plan.rank),
        `let m = ${w.load(y, 'o')};`,
        `if (${w.load(x, 'i')} != m) { return 0.0; }`,
        `var ties = 0.0;`,
        `for (var r = 0u; r < cnt; r++) {`,
        wgslReducedOffset(plan.rank).replace(/^/gm, '  '),
        `  if (${w.load(x, 'off')} == m) { ties += 1.0; }`,
        `}`,
        `return ${w.load(dy, 'o')} / ties;`,
      ].join('\n');
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
  {
    // dX of ReduceL1/L2/SumSquare/LogSum/LogSumExp/Prod (inputs dY, X, Y[, axes]; attribute
    // `of`: the forward op): each element from dY and Y of its output and its own X.
    op: 'mpc.ReduceElemGrad',
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1, 2],
    arity: [3, 4],
    outputs: 1,
    infer: (n, [dy, x, y], consts) => {
      elemGradOf(n);
      const want = reducedShape(x.shape, reduceMask(n, x.shape.length, constAxes(n, 3, consts)), keepdimsOf(n));
      if (want.join() !== y.shape.join() || sizeOf(dy.shape) !== sizeOf(y.shape))
        throw new Error(`mpc.ReduceElemGrad '${n.name}': X [${x.shape}] reduces to [${want}], got Y [${y.shape}] and dY [${dy.shape}]`);
      return [{ dtype: dy.dtype, shape: [...x.shape] }];
    },
    interp: (n, [dy, x, y, axes], ctx) => {
      const e = elemGradOf(n);
      const map = outIndexMap(x.shape, reduceMask(n, x.shape.length, n.attrs.axes === undefined ? axes?.data : undefined));
      // Members of each group, for ReduceProd's product of the others.
      const groups: number[][] = Array.from({ length: y.data.length }, () => []);
      if (attrString(n, 'of') === 'ReduceProd') map.forEach((o, i) => groups[o].push(i));
      const others = (i: number) => () => groups[map[i]].reduce((p, j) => (j === i ? p : p * x.data[j]), 1);
      return [{ ...ctx.outTypes[0], data: Float32Array.from(map, (o, i) => e.f(dy.data[o], x.data[i], y.data[o], others(i))) }];
    },
    wgsl: (n, ctx) => {
      const e = elemGradOf(n);
      const w = ctx.writer();
      const xt = ctx.type(n.inputs[1]);
      const [dy, x, y] = n.inputs.slice(0, 3).map((v) => w.bind(v, ctx.type(v).dtype, 'read'));
      const plan = wgslPlan(w, n, ctx, xt.shape, 3);
      for (const f of e.lib ?? []) wgslMath(w, f);
      const prod =
        attrString(n, 'of') === 'ReduceProd'
          ? [`var p = 1.0;`, `for (var r = 0u; r < cnt; r++) {`, wgslReducedOffset(plan.rank).replace(/^/gm, '  '), `  if (off != i) { p = p * ${w.load(x, 'off')}; }`, `}`]
          : [];
      const compute = [
        plan.code,
        wgslInputSplit(plan.rank),
        `let g = ${w.load(dy, 'o')};`,
        `let v = ${w.load(x, 'i')};`,
        `let y = ${w.load(y, 'o')};`,
        ...prod,
        `return ${e.wgsl};`,
      ].join('\n');
      return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: sizeOf(xt.shape), compute })];
    },
  },
];
