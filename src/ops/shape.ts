// Shape computations and the data movement that PyTorch exports around them: Shape, Range,
// ConstantOfShape (compile-time values once bind-dims fixed the dimensions: fold-constants
// evaluates them), the views Squeeze/Unsqueeze, and Concat, Split, Slice, Expand, which
// move data. Inputs that give a shape, axes or indices must be constants when shapes are
// inferred; PyTorch computes them from Shape, which fold-constants turns into constants.
//
// Kernels are data movement: every output element is loaded from one input element, so
// f16/bf16/fp8 results are bit for bit the interpreter's (no arithmetic, no rounding).
import { f32Bits, isFloat, roundArray, type DType } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { broadcastShapes, broadcastStrides, sizeOf, stridesOf, zeros, type Tensor } from '../ir/tensor.js';
import { broadcastIndex } from '../codegen/index-math.js';
import { f32Lit, mapKernel, u32Lit, type KernelWriter } from '../codegen/storage.js';
import { viewRow } from './movement.js';
import { sumTo } from './elementwise.js';
import type { Kernel } from '../codegen/kernel.js';
import { attrInt, attrInts, type EmitCtx, type OpRow, type ValueType } from './types.js';

/**
 * Compile-time facts of a row that fold-constants uses (candidates for fields of OpRow; kept
 * on the rows of this file and gather.ts until then).
 */
export interface FoldHooks extends OpRow {
  /**
   * Inputs read for their static shape only, never their contents (Shape): the node can be
   * evaluated whatever produces them.
   */
  shapeOnlyInputs?: number[];
  /**
   * When the node is the identity of its input 0 (Dropout in inference), the constant
   * contents of its other outputs (Dropout's mask: ones); undefined when it is not.
   * `inference`: the evaluation pipeline, where training-only behaviour is off.
   */
  identity?(n: Node, ins: ValueType[], consts: (Tensor | undefined)[], inference: boolean): Tensor[] | undefined;
}

/** The most inputs of Concat / outputs of Split mpc accepts. */
export const MAX_VARIADIC = 1024;

// ---------------------------------------------------------------------------------------------
// Helpers shared with gather.ts.

export function normAxis(n: Node, axis: number, rank: number): number {
  const a = axis < 0 ? axis + rank : axis;
  if (!Number.isInteger(a) || a < 0 || a >= rank) throw new Error(`${n.op} '${n.name}': axis ${axis} is out of range for rank ${rank}`);
  return a;
}

/** Contents of a constant integer input, or a clear error naming the input. */
export function constInts(n: Node, consts: (Tensor | undefined)[], k: number, what: string): number[] {
  const t = consts[k];
  if (!t)
    throw new Error(
      `${n.op} '${n.name}': its ${what} (input ${k}, '${n.inputs[k]}') must be a constant; a shape computed from the model's inputs ` +
        'becomes one once --batch/--dim fix the dynamic dimensions',
    );
  if (isFloat(t.dtype)) throw new Error(`${n.op} '${n.name}': its ${what} must be integers, got ${t.dtype}`);
  return Array.from(t.data);
}

/** A tensor's buffer type: floats in Float32Array, the rest in Int32Array. */
export function emptyLike(dtype: DType, n: number): Float32Array | Int32Array {
  return isFloat(dtype) ? new Float32Array(n) : new Int32Array(n);
}

/** WGSL: coordinate d of flat index `idx` in a tensor of `shape` (u32 expression). */
export function coordExpr(shape: readonly number[], d: number, idx: string): string {
  const s = stridesOf(shape)[d];
  const div = s === 1 ? idx : `(${idx}) / ${s}u`;
  return d === 0 ? div : `(${div}) % ${shape[d]}u`;
}

/** outer × axis × inner split of a shape around one axis. */
function around(shape: readonly number[], axis: number): { outer: number; inner: number } {
  return { outer: sizeOf(shape.slice(0, axis)), inner: sizeOf(shape.slice(axis + 1)) };
}

// ---------------------------------------------------------------------------------------------
// Views (share the input's buffer, no kernel).


/** Axes from input 1 (opset 13+) or the `axes` attribute (before); undefined when neither. */
function axesOf(n: Node, consts: (Tensor | undefined)[]): number[] | undefined {
  if (n.inputs[1]) return constInts(n, consts, 1, 'axes');
  const a = n.attrs.axes;
  return a === undefined ? undefined : attrInts(n, 'axes');
}

function distinct(n: Node, axes: number[]): number[] {
  if (new Set(axes).size !== axes.length) throw new Error(`${n.op} '${n.name}': repeated axis in [${axes}]`);
  return axes;
}

function unsqueezeShape(n: Node, x: ValueType, consts: (Tensor | undefined)[]): number[] {
  const axes = axesOf(n, consts);
  if (!axes) throw new Error(`Unsqueeze '${n.name}': no axes`);
  const rank = x.shape.length + axes.length;
  const at = new Set(distinct(n, axes.map((a) => normAxis(n, a, rank))));
  const out: number[] = [];
  let k = 0;
  for (let d = 0; d < rank; d++) out.push(at.has(d) ? 1 : x.shape[k++]);
  return out;
}

function squeezeShape(n: Node, x: ValueType, consts: (Tensor | undefined)[]): number[] {
  const axes = axesOf(n, consts);
  if (!axes) return x.shape.filter((d) => d !== 1);
  const at = new Set(distinct(n, axes.map((a) => normAxis(n, a, x.shape.length))));
  for (const a of at) if (x.shape[a] !== 1) throw new Error(`Squeeze '${n.name}': axis ${a} of [${x.shape}] is not 1`);
  return x.shape.filter((_, d) => !at.has(d));
}

// ---------------------------------------------------------------------------------------------
// Concat / Split.

function concatAxis(n: Node, ins: ValueType[]): number {
  const present = ins.filter(Boolean);
  if (!present.length) throw new Error(`Concat '${n.name}': no inputs`);
  const rank = present[0].shape.length;
  const axis = normAxis(n, attrInt(n, 'axis'), rank);
  for (const t of present) {
    if (t.dtype !== present[0].dtype) throw new Error(`Concat '${n.name}': inputs have different dtypes (${present.map((x) => x.dtype).join(', ')}); a cast is missing`);
    if (t.shape.length !== rank || t.shape.some((d, i) => i !== axis && d !== present[0].shape[i]))
      throw new Error(`Concat '${n.name}': shapes ${present.map((x) => `[${x.shape}]`).join(', ')} differ outside axis ${axis}`);
  }
  return axis;
}

function splitSizes(n: Node, x: ValueType, consts: (Tensor | undefined)[], nOut: number): { axis: number; sizes: number[] } {
  const axis = normAxis(n, attrInt(n, 'axis', 0), x.shape.length);
  const dim = x.shape[axis];
  let sizes: number[];
  if (n.inputs[1]) sizes = constInts(n, consts, 1, 'split sizes');
  else if (n.attrs.split !== undefined) sizes = attrInts(n, 'split');
  else {
    const parts = attrInt(n, 'num_outputs', nOut);
    if (parts !== nOut) throw new Error(`Split '${n.name}': num_outputs ${parts} but ${nOut} outputs`);
    if (n.attrs.num_outputs === undefined && dim % parts !== 0) throw new Error(`Split '${n.name}': dimension ${dim} does not split into ${parts} equal parts`);
    // opset 18: ceil(dim / n) each, the last one smaller when it does not divide.
    const chunk = Math.ceil(dim / parts);
    sizes = Array.from({ length: parts }, (_, k) => Math.max(0, Math.min(chunk, dim - k * chunk)));
  }
  if (sizes.length !== nOut) throw new Error(`Split '${n.name}': ${sizes.length} split sizes but ${nOut} outputs`);
  if (sizes.some((s) => s < 0) || sizes.reduce((a, b) => a + b, 0) !== dim)
    throw new Error(`Split '${n.name}': sizes [${sizes}] do not add up to dimension ${axis} of [${x.shape}]`);
  return { axis, sizes };
}

/**
 * Copies `len` slices along an axis: from `src` (outer × srcTotal × inner, starting at srcOff
 * on the axis) to `dst` (outer × dstTotal × inner, at dstOff).
 */
function copyAxis(
  src: { data: Tensor['data']; total: number; off: number },
  dst: { data: Tensor['data']; total: number; off: number },
  outer: number,
  inner: number,
  len: number,
): void {
  for (let o = 0; o < outer; o++)
    for (let a = 0; a < len; a++) {
      const si = (o * src.total + src.off + a) * inner;
      const di = (o * dst.total + dst.off + a) * inner;
      for (let i = 0; i < inner; i++) dst.data[di + i] = src.data[si + i];
    }
}

/** Input groups per Concat kernel: with the output, within WebGPU's default 8 storage buffers. */
const CONCAT_GROUP = 6;

function concatKernels(n: Node, ctx: EmitCtx): Kernel[] {
  const yt = ctx.type(n.outputs[0]);
  if (sizeOf(yt.shape) === 0) return [];
  const ins = n.inputs.map((v) => ({ v, t: ctx.type(v) }));
  const axis = normAxis(n, attrInt(n, 'axis'), yt.shape.length);
  const { inner } = around(yt.shape, axis);
  const total = yt.shape[axis];
  const offsets: number[] = [];
  let off = 0;
  for (const i of ins) {
    offsets.push(off);
    off += i.t.shape[axis];
  }
  const kernels: Kernel[] = [];
  const groups = Math.ceil(ins.length / CONCAT_GROUP);
  for (let gi = 0; gi < groups; gi++) {
    const w = ctx.writer(groups > 1 ? `part${gi}` : undefined);
    const out = w.bind(n.outputs[0], yt.dtype, 'read_write');
    const lines = [`let a = ${inner === 1 ? 'i' : `i / ${inner}u`} % ${total}u;`, `let o = i / ${inner * total}u;`, `let r = ${inner === 1 ? '0u' : `i % ${inner}u`};`];
    for (let k = gi * CONCAT_GROUP; k < Math.min(ins.length, (gi + 1) * CONCAT_GROUP); k++) {
      const len = ins[k].t.shape[axis];
      if (len === 0) continue;
      const x = w.bind(ins[k].v, ins[k].t.dtype, 'read');
      lines.push(`if (a >= ${offsets[k]}u && a < ${offsets[k] + len}u) { return ${w.load(x, `(o * ${len}u + a - ${offsets[k]}u) * ${inner}u + r`)}; }`);
    }
    // Elements of other groups keep what an earlier kernel wrote (packed words are rewritten whole).
    lines.push(groups > 1 ? `return ${w.load(out, 'i')};` : `return ${isFloat(yt.dtype) ? '0.0' : '0'};`);
    kernels.push(mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: lines.join('\n') }));
  }
  return kernels;
}

// ---------------------------------------------------------------------------------------------
// Slice.

/** Per dimension of the input: first index, step and count of the slice. */
export interface SlicePlan {
  starts: number[];
  steps: number[];
  counts: number[];
}

function slicePlan(n: Node, shape: readonly number[], consts: (Tensor | undefined)[]): SlicePlan {
  const rank = shape.length;
  let starts: number[], ends: number[], axes: number[] | undefined, steps: number[] | undefined;
  if (n.inputs.length >= 3 && n.inputs[1] && n.inputs[2]) {
    starts = constInts(n, consts, 1, 'starts');
    ends = constInts(n, consts, 2, 'ends');
    if (n.inputs[3]) axes = constInts(n, consts, 3, 'axes');
    if (n.inputs[4]) steps = constInts(n, consts, 4, 'steps');
  } else {
    // Slice-1: starts/ends/axes attributes.
    starts = attrInts(n, 'starts');
    ends = attrInts(n, 'ends');
    if (n.attrs.axes !== undefined) axes = attrInts(n, 'axes');
  }
  axes ??= starts.map((_, i) => i);
  steps ??= starts.map(() => 1);
  if (ends.length !== starts.length || axes.length !== starts.length || steps.length !== starts.length)
    throw new Error(`${n.op} '${n.name}': starts, ends, axes and steps must have the same length`);
  const plan: SlicePlan = { starts: shape.map(() => 0), steps: shape.map(() => 1), counts: [...shape] };
  const seen = new Set<number>();
  axes.forEach((a0, i) => {
    const a = normAxis(n, a0, rank);
    if (seen.has(a)) throw new Error(`${n.op} '${n.name}': axis ${a0} repeated`);
    seen.add(a);
    const dim = shape[a];
    const step = steps![i];
    if (step === 0) throw new Error(`${n.op} '${n.name}': step 0 on axis ${a0}`);
    // INT64 extremes arrive saturated to i32: adding dim keeps them out of range, clamping ends them.
    let s = starts[i] < 0 ? starts[i] + dim : starts[i];
    let e = ends[i] < 0 ? ends[i] + dim : ends[i];
    if (step > 0) {
      s = Math.min(Math.max(s, 0), dim);
      e = Math.min(Math.max(e, 0), dim);
    } else {
      s = Math.min(Math.max(s, 0), dim - 1);
      e = Math.min(Math.max(e, -1), dim - 1);
    }
    plan.starts[a] = s;
    plan.steps[a] = step;
    plan.counts[a] = Math.max(0, step > 0 ? Math.ceil((e - s) / step) : Math.ceil((s - e) / -step));
  });
  return plan;
}

/** Flat input index of each output element of a slice. */
function sliceOffsets(shape: readonly number[], p: SlicePlan): Int32Array {
  const out = new Int32Array(sizeOf(p.counts));
  const is = stridesOf(shape);
  const os = stridesOf(p.counts);
  for (let i = 0; i < out.length; i++) {
    let off = 0;
    for (let d = 0; d < shape.length; d++) off += (p.starts[d] + (Math.floor(i / os[d]) % p.counts[d]) * p.steps[d]) * is[d];
    out[i] = off;
  }
  return out;
}

/**
 * WGSL lets `s<d>` (start) and `t<d>` (step) of every dimension of a slice of `shape`. Kernels
 * cannot see constants' contents, so for the input form (opset 10+) the plan is computed on
 * the device from the starts/ends/axes/steps buffers, with the same normalisation as
 * slicePlan (a few integer operations per element); Slice-1's attributes give it statically.
 */
function slicePlanWgsl(w: KernelWriter, n: Node, shape: readonly number[], type: (v: string) => ValueType): string[] {
  const rank = shape.length;
  if (!(n.inputs.length >= 3 && n.inputs[1] && n.inputs[2])) {
    const p = slicePlan(n, shape, []);
    return shape.map((_, d) => `let s${d} = ${p.starts[d]};\nlet t${d} = ${p.steps[d]};`);
  }
  const k = sizeOf(type(n.inputs[1]).shape);
  const starts = w.bind(n.inputs[1], type(n.inputs[1]).dtype, 'read');
  const axes = n.inputs[3] ? w.bind(n.inputs[3], type(n.inputs[3]).dtype, 'read') : undefined;
  const steps = n.inputs[4] ? w.bind(n.inputs[4], type(n.inputs[4]).dtype, 'read') : undefined;
  w.define(`// (start, step) of dimension d (size dim) of the slice: ONNX Slice's clamping.
fn slice_plan(d: i32, dim: i32) -> vec2<i32> {
  var s = 0;
  var t = 1;
  for (var k = 0u; k < ${k}u; k++) {
    var a = ${axes ? w.load(axes, 'k') : 'i32(k)'};
    if (a < 0) { a += ${rank}; }
    if (a != d) { continue; }
    t = ${steps ? w.load(steps, 'k') : '1'};
    s = ${w.load(starts, 'k')};
    if (s < 0) { s += dim; }
    if (t > 0) { s = clamp(s, 0, dim); } else { s = clamp(s, 0, dim - 1); }
  }
  return vec2<i32>(s, t);
}
`);
  return shape.map((dim, d) => `let p${d} = slice_plan(${d}, ${dim});\nlet s${d} = p${d}.x;\nlet t${d} = p${d}.y;`);
}

// ---------------------------------------------------------------------------------------------
// Expand.

function expandShape(n: Node, x: ValueType, consts: (Tensor | undefined)[]): number[] {
  const spec = constInts(n, consts, 1, 'shape');
  try {
    return broadcastShapes(x.shape, spec);
  } catch {
    throw new Error(`Expand '${n.name}': [${x.shape}] does not broadcast to [${spec}]`);
  }
}

function broadcastCopy(x: Tensor, to: number[]): Tensor['data'] {
  const out = emptyLike(x.dtype, sizeOf(to));
  const xs = broadcastStrides(x.shape, to);
  const os = stridesOf(to);
  for (let i = 0; i < out.length; i++) {
    let off = 0;
    for (let d = 0; d < to.length; d++) off += (Math.floor(i / os[d]) % to[d]) * xs[d];
    out[i] = x.data[off];
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Shape / Range / ConstantOfShape.

/** The dimensions Shape returns: start/end (opset 15) clamped to the rank. */
function shapeDims(n: Node, shape: readonly number[]): number[] {
  const r = shape.length;
  const clamp = (v: number) => Math.min(Math.max(v < 0 ? v + r : v, 0), r);
  const s = clamp(attrInt(n, 'start', 0));
  const e = n.attrs.end === undefined ? r : clamp(attrInt(n, 'end'));
  return shape.slice(s, Math.max(s, e));
}

function rangeCount(n: Node, [s, l, d]: number[], dtype: DType): number {
  if (d === 0) throw new Error(`Range '${n.name}': delta is 0`);
  // (limit - start) in the input type, then divided in double (as onnxruntime does).
  const span = dtype === 'f32' ? Math.fround(l - s) : l - s;
  const c = Math.max(0, Math.ceil(span / d));
  if (!Number.isFinite(c)) throw new Error(`Range '${n.name}': infinite range`);
  return c;
}

function scalarInputs(n: Node, consts: (Tensor | undefined)[]): number[] {
  return [0, 1, 2].map((k) => {
    const t = consts[k];
    if (!t) throw new Error(`Range '${n.name}': input ${k} ('${n.inputs[k]}') must be a constant once --batch/--dim fix the dynamic dimensions`);
    if (sizeOf(t.shape) !== 1) throw new Error(`Range '${n.name}': input ${k} must be a scalar, got [${t.shape}]`);
    return t.data[0];
  });
}

function fillValue(n: Node): Tensor {
  const v = n.attrs.value;
  if (v === undefined) return { dtype: 'f32', shape: [1], data: new Float32Array(1) };
  if (typeof v !== 'object' || Array.isArray(v)) throw new Error(`ConstantOfShape '${n.name}': attribute value must be a tensor`);
  if (sizeOf(v.shape) !== 1) throw new Error(`ConstantOfShape '${n.name}': value must hold one element, got [${v.shape}]`);
  return v;
}

/**
 * WGSL returning the value. Non-finite floats (a -inf attention mask) by their bits, through a
 * `var`: a constant expression may not be infinite.
 */
function returnValue(dtype: DType, v: number): string {
  if (!isFloat(dtype)) return `return i32(${v | 0});`;
  return Number.isFinite(v) ? `return ${f32Lit(v)};` : `var bits = ${u32Lit(f32Bits(v))};\nreturn bitcast<f32>(bits);`;
}

// ---------------------------------------------------------------------------------------------
// The rows.

export const shapeOps: FoldHooks[] = [
  {
    op: 'Shape',
    domain: '',
    opsets: [1, 22],
    precision: 'none',
    dataInputs: [],
    arity: [1, 1],
    outputs: 1,
    shapeOnlyInputs: [0],
    infer: (n, [x]) => [{ dtype: 'i64', shape: [shapeDims(n, x.shape).length] }],
    interp: (n, [x]) => {
      const dims = shapeDims(n, x.shape);
      return [{ dtype: 'i64', shape: [dims.length], data: Int32Array.from(dims) }];
    },
    // No kernel: its value is known at compile time and fold-constants replaces it.
  },
  {
    op: 'Range',
    domain: '',
    opsets: [11, 22],
    precision: 'none',
    dataInputs: [],
    arity: [3, 3],
    outputs: 1,
    infer: (n, ins, consts) => {
      const dt = ins[0].dtype;
      if (ins.some((t) => t.dtype !== dt)) throw new Error(`Range '${n.name}': inputs have different dtypes`);
      return [{ dtype: dt, shape: [rangeCount(n, scalarInputs(n, consts), dt)] }];
    },
    interp: (_n, ins, ctx) => {
      const [s, , d] = ins.map((t) => t.data[0]);
      const count = ctx.outTypes[0].shape[0];
      const out = emptyLike(ins[0].dtype, count);
      for (let i = 0; i < count; i++) out[i] = s + i * d;
      return [{ dtype: ins[0].dtype, shape: [count], data: out }];
    },
    wgsl: (n, ctx) => {
      const yt = ctx.type(n.outputs[0]);
      if (sizeOf(yt.shape) === 0) return [];
      const w = ctx.writer();
      const s = w.load(w.bind(n.inputs[0], yt.dtype, 'read'), '0u');
      const d = w.load(w.bind(n.inputs[2], yt.dtype, 'read'), '0u');
      const idx = isFloat(yt.dtype) ? 'f32(i)' : 'i32(i)';
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: `return ${s} + ${idx} * ${d};` })];
    },
  },
  {
    op: 'ConstantOfShape',
    domain: '',
    opsets: [9, 22],
    precision: 'none',
    dataInputs: [],
    arity: [1, 1],
    outputs: 1,
    infer: (n, _ins, consts) => {
      const shape = constInts(n, consts, 0, 'shape');
      if (shape.some((d) => d < 0)) throw new Error(`ConstantOfShape '${n.name}': negative dimension in [${shape}]`);
      return [{ dtype: fillValue(n).dtype, shape }];
    },
    interp: (n, _ins, ctx) => {
      const v = fillValue(n);
      const out = emptyLike(v.dtype, sizeOf(ctx.outTypes[0].shape));
      out.fill(v.data[0]);
      return [{ dtype: v.dtype, shape: ctx.outTypes[0].shape, data: out }];
    },
    wgsl: (n, ctx) => {
      const yt = ctx.type(n.outputs[0]);
      if (sizeOf(yt.shape) === 0) return [];
      const w = ctx.writer();
      const v = isFloat(yt.dtype) ? roundArray(yt.dtype, fillValue(n).data)[0] : fillValue(n).data[0];
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: returnValue(yt.dtype, v) })];
    },
  },
  viewRow('Unsqueeze', [1, 22], unsqueezeShape, [1, 2]),
  viewRow('Squeeze', [1, 22], squeezeShape, [1, 2]),
  {
    op: 'Concat',
    domain: '',
    opsets: [4, 22],
    precision: 'follow',
    arity: [1, MAX_VARIADIC],
    outputs: 1,
    infer: (n, ins) => {
      const axis = concatAxis(n, ins);
      const shape = [...ins[0].shape];
      shape[axis] = ins.reduce((a, t) => a + t.shape[axis], 0);
      return [{ dtype: ins[0].dtype, shape }];
    },
    interp: (n, ins, ctx) => {
      const y = ctx.outTypes[0];
      const axis = normAxis(n, attrInt(n, 'axis'), y.shape.length);
      const { outer, inner } = around(y.shape, axis);
      const out = emptyLike(ins[0].dtype, sizeOf(y.shape));
      let off = 0;
      for (const x of ins) {
        const len = x.shape[axis];
        copyAxis({ data: x.data, total: len, off: 0 }, { data: out, total: y.shape[axis], off }, outer, inner, len);
        off += len;
      }
      return [{ dtype: ins[0].dtype, shape: y.shape, data: out }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      const ins = ctx.node.inputs;
      if (!dy) return ins.map(() => undefined);
      const shapes = ins.map((v) => ctx.type(v).shape);
      const axis = normAxis(ctx.node, attrInt(ctx.node, 'axis'), shapes[0].length);
      const sizes = ctx.constant({ dtype: 'i64', shape: [ins.length], data: Int32Array.from(shapes.map((s) => s[axis])) });
      return ctx.emit('Split', [dy, sizes], { axis }, ins.length);
    },
    wgsl: concatKernels,
  },
  {
    op: 'Split',
    domain: '',
    opsets: [2, 22],
    precision: 'follow',
    dataInputs: [0],
    arity: [1, 2],
    outputs: MAX_VARIADIC,
    infer: (n, [x], consts) => {
      const { axis, sizes } = splitSizes(n, x, consts, n.outputs.length);
      return sizes.map((s) => ({ dtype: x.dtype, shape: x.shape.map((d, i) => (i === axis ? s : d)) }));
    },
    interp: (n, [x], ctx) => {
      const axis = normAxis(n, attrInt(n, 'axis', 0), x.shape.length);
      const { outer, inner } = around(x.shape, axis);
      let off = 0;
      return ctx.outTypes.map((t) => {
        const data = emptyLike(x.dtype, sizeOf(t.shape));
        const len = t.shape[axis];
        copyAxis({ data: x.data, total: x.shape[axis], off }, { data, total: len, off: 0 }, outer, inner, len);
        off += len;
        return { dtype: x.dtype, shape: t.shape, data };
      });
    },
    grad: (ctx) => {
      const n = ctx.node;
      const given = ctx.dy.find(Boolean);
      if (!given) return n.inputs.map(() => undefined);
      const dt = ctx.type(given).dtype;
      const xt = ctx.type(n.inputs[0]);
      const axis = normAxis(n, attrInt(n, 'axis', 0), xt.shape.length);
      // An output that does not reach the loss contributes zeros.
      const parts = n.outputs.map((o, k) => ctx.dy[k] ?? ctx.constant(zeros(dt, ctx.type(o).shape)));
      return [ctx.emit('Concat', parts, { axis })[0], ...n.inputs.slice(1).map(() => undefined)];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const axis = normAxis(n, attrInt(n, 'axis', 0), xt.shape.length);
      const { inner } = around(xt.shape, axis);
      const total = xt.shape[axis];
      let off = 0;
      return n.outputs.flatMap((o, k) => {
        const yt = ctx.type(o);
        const len = yt.shape[axis];
        const start = off;
        off += len;
        if (sizeOf(yt.shape) === 0) return [];
        const w = ctx.writer(`out${k}`);
        const x = w.bind(n.inputs[0], xt.dtype, 'read');
        const a = inner === 1 ? 'i' : `i / ${inner}u`;
        const r = inner === 1 ? '0u' : `i % ${inner}u`;
        const compute = `let a = (${a}) % ${len}u;\nlet o = i / ${len * inner}u;\nreturn ${w.load(x, `(o * ${total}u + ${start}u + a) * ${inner}u + ${r}`)};`;
        return [mapKernel(w, { out: o, outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
      });
    },
  },
  {
    op: 'Slice',
    domain: '',
    opsets: [1, 22],
    precision: 'follow',
    dataInputs: [0],
    arity: [1, 5],
    outputs: 1,
    infer: (n, [x], consts) => [{ dtype: x.dtype, shape: slicePlan(n, x.shape, consts).counts }],
    interp: (n, ins) => {
      const x = ins[0];
      const p = slicePlan(n, x.shape, ins);
      const offs = sliceOffsets(x.shape, p);
      const out = emptyLike(x.dtype, offs.length);
      for (let i = 0; i < offs.length; i++) out[i] = x.data[offs[i]];
      return [{ dtype: x.dtype, shape: p.counts, data: out }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      const n = ctx.node;
      const rest = n.inputs.slice(1).map(() => undefined);
      if (!dy) return [undefined, ...rest];
      // Same slice parameters (constant inputs or attributes), plus the input's shape.
      return [ctx.emit('mpc.SliceGrad', [dy, ...n.inputs.slice(1)], { ...n.attrs, shape: ctx.type(n.inputs[0]).shape })[0], ...rest];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const yt = ctx.type(n.outputs[0]);
      const count = sizeOf(yt.shape);
      if (count === 0) return [];
      const w = ctx.writer();
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const lets = slicePlanWgsl(w, n, xt.shape, ctx.type);
      const is = stridesOf(xt.shape);
      const terms = xt.shape.map((_, d) => `(s${d} + i32(${coordExpr(yt.shape, d, 'i')}) * t${d}) * ${is[d]}`);
      const compute = [...lets, `return ${w.load(x, `u32(${terms.length ? terms.join(' + ') : '0'})`)};`].join('\n');
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count, compute })];
    },
  },
  {
    // Gradient of Slice: dy scattered into zeros of the input's shape (attribute `shape`). Its
    // other inputs and attributes are the Slice's (starts, ends, axes, steps).
    op: 'mpc.SliceGrad',
    domain: 'mpc',
    precision: 'follow',
    dataInputs: [0],
    arity: [1, 5],
    outputs: 1,
    infer: (n, [dy], consts) => {
      const shape = attrInts(n, 'shape');
      const p = slicePlan(n, shape, consts);
      if (p.counts.join() !== dy.shape.join()) throw new Error(`SliceGrad '${n.name}': dy is [${dy.shape}], the slice of [${shape}] is [${p.counts}]`);
      return [{ dtype: dy.dtype, shape }];
    },
    interp: (n, ins, ctx) => {
      const dy = ins[0];
      const shape = ctx.outTypes[0].shape;
      const offs = sliceOffsets(shape, slicePlan(n, shape, ins));
      const out = emptyLike(dy.dtype, sizeOf(shape));
      for (let i = 0; i < offs.length; i++) out[offs[i]] = dy.data[i];
      return [{ dtype: dy.dtype, shape, data: out }];
    },
    wgsl: (n, ctx) => {
      const dyt = ctx.type(n.inputs[0]);
      const yt = ctx.type(n.outputs[0]);
      if (sizeOf(yt.shape) === 0) return [];
      const w = ctx.writer();
      const zero = isFloat(yt.dtype) ? '0.0' : '0';
      const lines: string[] = [];
      if (sizeOf(dyt.shape) === 0) lines.push(`return ${zero};`);
      else {
        const dy = w.bind(n.inputs[0], dyt.dtype, 'read');
        lines.push(...slicePlanWgsl(w, n, yt.shape, ctx.type));
        const ds = stridesOf(dyt.shape);
        const src: string[] = [];
        // Element x of dimension d comes from dy index q = (x - start) / step when that is exact and in range.
        for (let d = 0; d < yt.shape.length; d++) {
          lines.push(`let r${d} = i32(${coordExpr(yt.shape, d, 'i')}) - s${d};`, `let q${d} = r${d} / t${d};`);
          lines.push(`if (q${d} * t${d} != r${d} || q${d} < 0 || q${d} >= ${dyt.shape[d]}) { return ${zero}; }`);
          src.push(`q${d} * ${ds[d]}`);
        }
        lines.push(`return ${w.load(dy, `u32(${src.length ? src.join(' + ') : '0'})`)};`);
      }
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: lines.join('\n') })];
    },
  },
  {
    op: 'Expand',
    domain: '',
    opsets: [8, 22],
    precision: 'follow',
    dataInputs: [0],
    arity: [2, 2],
    outputs: 1,
    infer: (n, [x], consts) => [{ dtype: x.dtype, shape: expandShape(n, x, consts) }],
    interp: (_n, [x], ctx) => [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: broadcastCopy(x, ctx.outTypes[0].shape) }],
    grad: (ctx) => {
      const dy = ctx.dy[0];
      return [dy ? sumTo(ctx, dy, ctx.type(ctx.node.inputs[0]).shape) : undefined, undefined];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const yt = ctx.type(n.outputs[0]);
      if (sizeOf(yt.shape) === 0) return [];
      const w = ctx.writer();
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute: `return ${w.load(x, broadcastIndex(yt.shape, xt.shape, 'i'))};` })];
    },
  },
];
