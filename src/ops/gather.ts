// Ops that pick elements by a computed index or mask: Gather (embedding lookups, and the
// shape subgraphs of PyTorch exports), its gradient, and Dropout.
//
// Gather's gradient is a scatter-add into zeros of the data's shape. Several indices may name
// the same row, so the kernel does not scatter (that would race): one invocation per data
// element loops over all indices in order and sums the matching dy values in f32. The
// reference kernel sums in the same order with f32 rounding, so results are bit-exact.
// Cost: (data elements) x (indices), fine for the vocabularies and batches mpc trains; a
// sort-based kernel would be needed for large vocabularies with long index lists.
//
// Dropout draws its mask from a counter-based hash of (seed, step, element index), the same
// integer function in TypeScript and WGSL, so the interpreter and the GPU drop the same
// elements. The gradient rule recomputes the mask instead of storing it.
import { isFloat } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { f32Lit, MAP_WORKGROUP, mapKernel, u32Lit } from '../codegen/storage.js';
import { dispatch1d } from '../codegen/kernel.js';
import { coordExpr, emptyLike, normAxis, type FoldHooks } from './shape.js';
import { attrFloat, attrInt, attrInts, type ValueType } from './types.js';

// ---------------------------------------------------------------------------------------------
// Gather.

interface GatherDims {
  axis: number;
  /** Product of data dims before the axis, size of the axis, product after it. */
  outer: number;
  dim: number;
  inner: number;
  /** Number of indices. */
  count: number;
}

function gatherDims(n: Node, dataShape: readonly number[], indicesShape: readonly number[]): GatherDims {
  const axis = normAxis(n, attrInt(n, 'axis', 0), dataShape.length);
  return {
    axis,
    outer: sizeOf(dataShape.slice(0, axis)),
    dim: dataShape[axis],
    inner: sizeOf(dataShape.slice(axis + 1)),
    count: sizeOf(indicesShape),
  };
}

function checkIndices(n: Node, t: ValueType): void {
  if (isFloat(t.dtype) || t.dtype === 'bool') throw new Error(`${n.op} '${n.name}': indices must be int32 or int64, got ${t.dtype}`);
}

/** Index k of `idx`, negative ones counted from the end; throws when out of range. */
function indexAt(n: Node, idx: Tensor, k: number, dim: number): number {
  const v = idx.data[k];
  const j = v < 0 ? v + dim : v;
  if (j < 0 || j >= dim) throw new Error(`${n.op} '${n.name}': index ${v} is out of range for a dimension of ${dim}`);
  return j;
}

// ---------------------------------------------------------------------------------------------
// Dropout's random bits.

/** PCG-RXS-M-XS 32-bit hash (Jarzynski & Olano, "Hash Functions for GPU Rendering", 2020). */
export function pcgHash(v: number): number {
  const s = (Math.imul(v >>> 0, 747796405) + 2891336453) >>> 0;
  const w = Math.imul(((s >>> ((s >>> 28) + 4)) ^ s) >>> 0, 277803737) >>> 0;
  return ((w >>> 22) ^ w) >>> 0;
}

/** The random u32 of element i at training step `step` under `seed`. */
export function dropoutBits(seed: number, step: number, i: number): number {
  return pcgHash((i ^ pcgHash((seed ^ pcgHash(step >>> 0)) >>> 0)) >>> 0);
}

/** 24 random bits as a float in [0, 1): exact in f32, the same on both sides. */
const toUnit = (bits: number) => (bits >>> 8) / 16777216;

const WGSL_PCG = `fn pcg_hash(v: u32) -> u32 {
  let s = v * 747796405u + 2891336453u;
  let w = ((s >> ((s >> 28u) + 4u)) ^ s) * 277803737u;
  return (w >> 22u) ^ w;
}
`;

/** Dropout's mode from its inputs: ratio (default 0.5), training (default false), step (default 0). */
interface DropoutArgs {
  ratio: number;
  training: boolean;
  step: number;
}

function dropoutArgs(n: Node, ins: (Tensor | undefined)[]): DropoutArgs {
  const [, r, t, s] = ins;
  // Opset < 12: ratio is an attribute and Dropout is inference only.
  const ratio = r ? r.data[0] : attrFloat(n, 'ratio', 0.5);
  return { ratio, training: t ? t.data[0] !== 0 : false, step: s ? s.data[0] : 0 };
}

function checkRatio(n: Node, ratio: number): void {
  if (!(ratio >= 0 && ratio < 1)) throw new Error(`Dropout '${n.name}': ratio ${ratio} must be in [0, 1)`);
}

/** Dropout's seed attribute as a u32 (absent: 0, so that runs are reproducible). */
export function dropoutSeed(n: Node): number {
  return attrInt(n, 'seed', 0) >>> 0;
}

// ---------------------------------------------------------------------------------------------
// The rows.

export const gatherOps: FoldHooks[] = [
  {
    // inputs: data, indices, and (an mpc extension, added by the index-check pass) flag: an
    // i32 [1] training state. With it, an out-of-range index reads 0 and sets the flag (output
    // 1, the flag updated in place), on both backends, for the runtime to report; without it
    // the interpreter stops at such an index and WebGPU reads 0.
    op: 'Gather',
    domain: '',
    opsets: [1, 22],
    precision: 'follow',
    dataInputs: [0],
    arity: [2, 3],
    outputs: 2,
    alias: { pairs: [[1, 2]] },
    infer: (n, [data, idx, flag]) => {
      checkIndices(n, idx);
      const d = gatherDims(n, data.shape, idx.shape);
      const y = { dtype: data.dtype, shape: [...data.shape.slice(0, d.axis), ...idx.shape, ...data.shape.slice(d.axis + 1)] };
      if (n.outputs[1] && !flag) throw new Error(`Gather '${n.name}': output 1 (the index flag) needs the flag input`);
      if (flag && (flag.dtype !== 'i32' || sizeOf(flag.shape) !== 1)) throw new Error(`Gather '${n.name}': the index flag must be i32 [1]`);
      return flag ? [y, { dtype: 'i32', shape: [...flag.shape] }] : [y];
    },
    interp: (n, [data, idx, flag], ctx) => {
      const d = gatherDims(n, data.shape, idx.shape);
      const out = emptyLike(data.dtype, d.outer * d.count * d.inner);
      let bad = false;
      for (let o = 0; o < d.outer; o++)
        for (let k = 0; k < d.count; k++) {
          const dst = (o * d.count + k) * d.inner;
          if (flag) {
            const v = idx.data[k];
            const j = v < 0 ? v + d.dim : v;
            if (j < 0 || j >= d.dim) {
              bad = true;
              continue; // reads 0, as the kernel does
            }
          }
          const j = indexAt(n, idx, k, d.dim);
          const src = (o * d.dim + j) * d.inner;
          for (let r = 0; r < d.inner; r++) out[dst + r] = data.data[src + r];
        }
      const y = { dtype: data.dtype, shape: ctx.outTypes[0].shape, data: out };
      return flag ? [y, { dtype: 'i32', shape: [...flag.shape], data: Int32Array.of(bad ? 1 : flag.data[0]) }] : [y];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined];
      const [data, idx] = ctx.node.inputs;
      const shape = ctx.type(data).shape;
      return [ctx.emit('mpc.GatherGrad', [dy, idx], { axis: normAxis(ctx.node, attrInt(ctx.node, 'axis', 0), shape.length), shape })[0], undefined];
    },
    wgsl: (n, ctx) => {
      const dt = ctx.type(n.inputs[0]);
      const it = ctx.type(n.inputs[1]);
      const yt = ctx.type(n.outputs[0]);
      if (sizeOf(yt.shape) === 0) return [];
      const w = ctx.writer();
      const d = gatherDims(n, dt.shape, it.shape);
      const data = w.bind(n.inputs[0], dt.dtype, 'read');
      const idx = w.bind(n.inputs[1], it.dtype, 'read');
      const zero = isFloat(yt.dtype) ? '0.0' : '0';
      // The flag (in place: output 1 is input 2's buffer): every invocation that meets an
      // out-of-range index stores the same 1.
      const flag = n.outputs[1] ? w.bind(n.outputs[1], 'i32', 'read_write') : undefined;
      // Output element i = (o, k, r) over [outer, count, inner]; an out-of-range index reads 0
      // (ONNX leaves it undefined; the interpreter reports it, or sets the flag).
      const compute = [
        `let r = ${d.inner === 1 ? '0u' : `i % ${d.inner}u`};`,
        `let k = ${coordExpr([d.outer, d.count, d.inner], 1, 'i')};`,
        `let o = i / ${d.count * d.inner}u;`,
        `var j = ${w.load(idx, 'k')};`,
        `if (j < 0) { j += ${d.dim}; }`,
        `if (j < 0 || j >= ${d.dim}) { ${flag ? `${w.store(flag, '0u', '1')} ` : ''}return ${zero}; }`,
        `return ${w.load(data, `(o * ${d.dim}u + u32(j)) * ${d.inner}u + r`)};`,
      ].join('\n');
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
    },
  },
  {
    // Gradient of Gather: inputs dy, indices; attributes axis (normalised) and shape (the
    // data's). Sums dy over every index that names each data element.
    op: 'mpc.GatherGrad',
    domain: 'mpc',
    precision: 'follow',
    dataInputs: [0],
    arity: [2, 2],
    outputs: 1,
    infer: (n, [dy, idx]) => {
      checkIndices(n, idx);
      const shape = attrInts(n, 'shape');
      const d = gatherDims(n, shape, idx.shape);
      const want = [...shape.slice(0, d.axis), ...idx.shape, ...shape.slice(d.axis + 1)];
      if (want.join() !== dy.shape.join()) throw new Error(`GatherGrad '${n.name}': dy is [${dy.shape}], expected [${want}]`);
      if (!isFloat(dy.dtype)) throw new Error(`GatherGrad '${n.name}': dy must be floating point`);
      return [{ dtype: dy.dtype, shape }];
    },
    interp: (n, [dy, idx], ctx) => {
      const shape = ctx.outTypes[0].shape;
      const d = gatherDims(n, shape, idx.shape);
      const out = new Float32Array(sizeOf(shape));
      // Summed per output element in index order with f32 rounding, as the kernel does. An
      // out-of-range index names no row (the forward Gather read zeros there and reported it).
      for (let k = 0; k < d.count; k++) {
        const v = idx.data[k];
        const j = v < 0 ? v + d.dim : v;
        if (j < 0 || j >= d.dim) continue;
        for (let o = 0; o < d.outer; o++)
          for (let r = 0; r < d.inner; r++) {
            const at = (o * d.dim + j) * d.inner + r;
            out[at] = Math.fround(out[at] + dy.data[(o * d.count + k) * d.inner + r]);
          }
      }
      return [{ dtype: dy.dtype, shape, data: out }];
    },
    wgsl: (n, ctx) => {
      const dyt = ctx.type(n.inputs[0]);
      const it = ctx.type(n.inputs[1]);
      const yt = ctx.type(n.outputs[0]);
      if (sizeOf(yt.shape) === 0) return [];
      const w = ctx.writer();
      const d = gatherDims(n, yt.shape, it.shape);
      const dy = w.bind(n.inputs[0], dyt.dtype, 'read');
      const idx = w.bind(n.inputs[1], it.dtype, 'read');
      if (w.layout(w.bind(n.outputs[0], yt.dtype, 'read_write')).elem === 'f32') {
        // One invocation per data row (o, j): scan the indices once and add each matching dy
        // row into the output row, which only this invocation writes. The sums run in index
        // order in f32, as in the per-element form below, so the results are the same.
        const out = w.bind(n.outputs[0], yt.dtype, 'read_write');
        const rows = d.outer * d.dim;
        const body = [
          `let row = flat;`,
          `if (row >= ${rows}u) { return; }`,
          `let o = row / ${d.dim}u;`,
          `let j = i32(row % ${d.dim}u);`,
          `let ob = row * ${d.inner}u;`,
          `for (var r = 0u; r < ${d.inner}u; r++) { ${out}[ob + r] = 0.0; }`,
          `for (var k = 0u; k < ${d.count}u; k++) {`,
          `  var v = ${w.load(idx, 'k')};`,
          `  if (v < 0) { v += ${d.dim}; }`,
          `  if (v != j) { continue; }`,
          `  let src = (o * ${d.count}u + k) * ${d.inner}u;`,
          `  for (var r = 0u; r < ${d.inner}u; r++) { ${out}[ob + r] = ${out}[ob + r] + ${w.load(dy, 'src + r')}; }`,
          `}`,
        ].join('\n');
        return [w.finish({ body, workgroupSize: [MAP_WORKGROUP, 1, 1], dispatch: dispatch1d(Math.ceil(rows / MAP_WORKGROUP)) })];
      }
      const compute = [
        `let r = ${d.inner === 1 ? '0u' : `i % ${d.inner}u`};`,
        `let j = i32(${coordExpr([d.outer, d.dim, d.inner], 1, 'i')});`,
        `let o = i / ${d.dim * d.inner}u;`,
        `var s = 0.0;`,
        `for (var k = 0u; k < ${d.count}u; k++) {`,
        `  var v = ${w.load(idx, 'k')};`,
        `  if (v < 0) { v += ${d.dim}; }`,
        `  if (v == j) { s += ${w.load(dy, `(o * ${d.count}u + k) * ${d.inner}u + r`)}; }`,
        `}`,
        `return s;`,
      ].join('\n');
      return [mapKernel(w, { out: n.outputs[0], outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
    },
  },
  {
    // inputs: data, ratio, training_mode, and (an mpc extension) step: an i32 scalar that
    // changes the mask from one training step to the next (absent: step 0).
    // outputs: output, mask (optional). Attribute seed (default 0).
    // y = keep ? x * (1 / (1 - ratio)) : 0, keep = unit(hash(seed, step, i)) >= ratio; in
    // inference mode y = x and mask is all true (fold-constants turns that case into Identity,
    // a view, when training_mode is a constant).
    op: 'Dropout',
    domain: '',
    opsets: [7, 22],
    precision: 'follow',
    dataInputs: [0],
    arity: [1, 4],
    outputs: 2,
    identity: (n, [x], consts, inference) => {
      const [, r, t] = consts;
      const off = inference || !n.inputs[2] || (t !== undefined && t.data[0] === 0) || (r !== undefined && r.data[0] === 0);
      return off ? [{ dtype: 'bool', shape: [...x.shape], data: new Int32Array(sizeOf(x.shape)).fill(1) }] : undefined;
    },
    infer: (n, ins, consts) => {
      const [x, r, t, s] = ins;
      if (!isFloat(x.dtype)) throw new Error(`Dropout '${n.name}': data must be floating point, got ${x.dtype}`);
      if (r && !isFloat(r.dtype)) throw new Error(`Dropout '${n.name}': ratio must be floating point`);
      if (t && t.dtype !== 'bool') throw new Error(`Dropout '${n.name}': training_mode must be bool`);
      if (s && (isFloat(s.dtype) || sizeOf(s.shape) !== 1)) throw new Error(`Dropout '${n.name}': step must be an integer scalar`);
      if (consts[1]) checkRatio(n, consts[1].data[0]);
      return [
        { dtype: x.dtype, shape: [...x.shape] },
        { dtype: 'bool', shape: [...x.shape] },
      ];
    },
    interp: (n, ins) => {
      const x = ins[0];
      const a = dropoutArgs(n, ins);
      const count = x.data.length;
      const y = new Float32Array(count);
      const mask = new Int32Array(count).fill(1);
      if (!a.training) y.set(x.data);
      else {
        checkRatio(n, a.ratio);
        const seed = dropoutSeed(n);
        const scale = Math.fround(1 / Math.fround(1 - a.ratio));
        for (let i = 0; i < count; i++) {
          const keep = toUnit(dropoutBits(seed, a.step, i)) >= a.ratio;
          mask[i] = keep ? 1 : 0;
          y[i] = keep ? Math.fround(x.data[i] * scale) : 0;
        }
      }
      return [
        { dtype: x.dtype, shape: [...x.shape], data: y },
        { dtype: 'bool', shape: [...x.shape], data: mask },
      ];
    },
    grad: (ctx) => {
      // dx = dy * mask / (1 - ratio): the same function of dy, with the same mask.
      const dy = ctx.dy[0];
      const n = ctx.node;
      const rest = n.inputs.slice(1).map(() => undefined);
      if (!dy) return [undefined, ...rest];
      return [ctx.emit('Dropout', [dy, ...n.inputs.slice(1)], { ...n.attrs }, 1)[0], ...rest];
    },
    wgsl: (n, ctx) => {
      const xt = ctx.type(n.inputs[0]);
      const count = sizeOf(xt.shape);
      if (count === 0) return [];
      const kernel = (out: string, outDtype: ValueType['dtype'], suffix: string | undefined, inference: string, dropped: string, kept: string) => {
        const w = ctx.writer(suffix);
        const x = w.bind(n.inputs[0], xt.dtype, 'read');
        const [, r, t, s] = n.inputs;
        const ratio = r ? w.load(w.bind(r, ctx.type(r).dtype, 'read'), '0u') : f32Lit(attrFloat(n, 'ratio', 0.5));
        const training = t ? `${w.load(w.bind(t, 'bool', 'read'), '0u')} != 0` : 'false';
        const step = s ? `u32(${w.load(w.bind(s, ctx.type(s).dtype, 'read'), '0u')})` : '0u';
        w.define(WGSL_PCG);
        const lines = [
          `let x = ${w.load(x, 'i')};`,
          `if (!(${training})) { return ${inference}; }`,
          `let ratio = ${ratio};`,
          `let bits = pcg_hash(i ^ pcg_hash(${u32Lit(dropoutSeed(n))} ^ pcg_hash(${step})));`,
          // 24 bits scaled by 2^-24: exact, as in toUnit.
          `if (f32(bits >> 8u) * ${f32Lit(2 ** -24)} < ratio) { return ${dropped}; }`,
          `return ${kept};`,
        ];
        return mapKernel(w, { out, outDtype, count, compute: lines.join('\n') });
      };
      const ks = [kernel(n.outputs[0], xt.dtype, undefined, 'x', '0.0', 'x * (1.0 / (1.0 - ratio))')];
      if (n.outputs[1]) ks.push(kernel(n.outputs[1], 'bool', 'mask', '1', '0', '1'));
      return ks;
    },
  },
];
