// Ops that select, place or compare elements by index: ArgMax/ArgMin, Hardmax, TopK, CumSum,
// Trilu, Tile, GatherElements, GatherND, ScatterElements (and its opset-9 name Scatter),
// ScatterND, OneHot, DepthToSpace/SpaceToDepth, Size, EyeLike, Compress, and the gradient ops
// they need.
//
// Integers: i64 is carried as i32 (ir/tensor.ts), so index outputs (ArgMax, TopK's indices)
// are 'i64' values held in Int32Array / WGSL i32, like Shape's and Gather's.
//
// Indices: negative ones count from the end of their dimension (ONNX). An index out of range
// is an Error in the interpreter; WGSL kernels cannot report one, so they clamp it into the
// dimension (mpc_index below) and read or write an element that exists.
//
// Scatters and the scatter-add gradients never race: one invocation per output element scans
// the indices that could name it, in index order, and folds the matching updates in that order
// (f32 for float sums), the order the interpreter uses. Cost: (output elements) x (indices per
// line), fine for the sizes these ops see in training graphs.
import { fromOnnx, isFloat, type DType } from '../ir/dtypes.js';
import type { Attrs, Node } from '../ir/graph.js';
import { sizeOf, stridesOf, zeros, type Tensor } from '../ir/tensor.js';
import { mapKernel, type KernelWriter } from '../codegen/storage.js';
import type { Kernel } from '../codegen/kernel.js';
import { coordExpr, constInts, emptyLike, normAxis, type FoldHooks } from './shape.js';
import { attrInt, attrInts, attrString, type EmitCtx, type GradCtx, type OpRow, type ValueType } from './types.js';

// ---------------------------------------------------------------------------------------------
// Helpers.

function checkIndices(n: Node, t: ValueType, what = 'indices'): void {
  if (isFloat(t.dtype) || t.dtype === 'bool') throw new Error(`${n.op} '${n.name}': ${what} must be int32 or int64, got ${t.dtype}`);
}

/** Index `v` into a dimension of `dim`, negative counted from the end; throws when out of range. */
function indexIn(n: Node, v: number, dim: number): number {
  const j = v < 0 ? v + dim : v;
  if (!(j >= 0 && j < dim)) throw new Error(`${n.op} '${n.name}': index ${v} is out of range for a dimension of ${dim}`);
  return j;
}

/** WGSL: a (possibly negative) index into a dimension, clamped into it (see the header). */
const WGSL_INDEX = `fn mpc_index(j: i32, dim: i32) -> i32 {
  var k = j;
  if (k < 0) { k += dim; }
  return clamp(k, 0, dim - 1);
}
`;

function wgslIndex(w: KernelWriter, j: string, dim: number | string): string {
  w.define(WGSL_INDEX);
  return `mpc_index(${j}, ${typeof dim === 'number' ? `${dim}` : dim})`;
}

const zeroOf = (dtype: DType) => (isFloat(dtype) ? '0.0' : '0');

/** outer × dim × inner around an axis. */
function around(shape: readonly number[], axis: number): { outer: number; len: number; inner: number } {
  return { outer: sizeOf(shape.slice(0, axis)), len: shape[axis], inner: sizeOf(shape.slice(axis + 1)) };
}

/** Row-major coordinates of flat index `i`. */
function coords(shape: readonly number[], i: number): number[] {
  const c = new Array<number>(shape.length);
  for (let d = shape.length - 1; d >= 0; d--) {
    c[d] = i % shape[d];
    i = Math.floor(i / shape[d]);
  }
  return c;
}

/** A map kernel for output `out`, or none when it is empty. */
function mapOut(ctx: EmitCtx, n: Node, k: number, body: (w: KernelWriter, yt: ValueType) => string, suffix?: string): Kernel[] {
  const yt = ctx.type(n.outputs[k]);
  if (sizeOf(yt.shape) === 0) return [];
  const w = ctx.writer(suffix);
  const compute = body(w, yt);
  return [mapKernel(w, { out: n.outputs[k], outDtype: yt.dtype, count: sizeOf(yt.shape), compute })];
}

const bindIn = (w: KernelWriter, ctx: EmitCtx, name: string) => w.bind(name, ctx.type(name).dtype, 'read');

/** Scalar integer contents of an optional constant input, or `dflt`. */
function scalarInput(n: Node, consts: (Tensor | undefined)[], k: number, what: string, dflt: number): number {
  if (!n.inputs[k]) return dflt;
  const v = constInts(n, consts, k, what);
  if (v.length !== 1) throw new Error(`${n.op} '${n.name}': its ${what} must hold one value, got ${v.length}`);
  return v[0];
}

// ---------------------------------------------------------------------------------------------
// ArgMax / ArgMin.

function argRow(op: 'ArgMax' | 'ArgMin'): OpRow {
  const better = op === 'ArgMax' ? (a: number, b: number) => a > b : (a: number, b: number) => a < b;
  const plan = (n: Node, shape: readonly number[]) => around(shape, normAxis(n, attrInt(n, 'axis', 0), shape.length));
  return {
    op,
    domain: '',
    opsets: [1, 22],
    precision: 'follow',
    dataInputs: [0],
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => {
      if (x.dtype === 'bool') throw new Error(`${op} '${n.name}': bool input`);
      const axis = normAxis(n, attrInt(n, 'axis', 0), x.shape.length);
      const keep = attrInt(n, 'keepdims', 1) === 1;
      return [{ dtype: 'i64', shape: keep ? x.shape.map((d, k) => (k === axis ? 1 : d)) : x.shape.filter((_, k) => k !== axis) }];
    },
    interp: (n, [x], ctx) => {
      const { outer, len, inner } = plan(n, x.shape);
      const last = attrInt(n, 'select_last_index', 0) === 1;
      if (len === 0) throw new Error(`${op} '${n.name}': the axis is empty`);
      const out = new Int32Array(outer * inner);
      for (let o = 0; o < outer; o++)
        for (let r = 0; r < inner; r++) {
          const base = o * len * inner + r;
          let best = x.data[base];
          let bi = 0;
          for (let k = 1; k < len; k++) {
            const v = x.data[base + k * inner];
            if (better(v, best) || (last && v === best)) [best, bi] = [v, k];
          }
          out[o * inner + r] = bi;
        }
      return [{ dtype: 'i64', shape: ctx.outTypes[0].shape, data: out }];
    },
    wgsl: (n, ctx) =>
      mapOut(ctx, n, 0, (w) => {
        const { len, inner } = plan(n, ctx.type(n.inputs[0]).shape);
        const x = bindIn(w, ctx, n.inputs[0]);
        const cmp = op === 'ArgMax' ? '>' : '<';
        const tie = attrInt(n, 'select_last_index', 0) === 1 ? ` || v == best` : '';
        return [
          `let base = (i / ${inner}u) * ${len * inner}u + i % ${inner}u;`,
          `var best = ${w.load(x, 'base')};`,
          `var bi = 0;`,
          `for (var k = 1u; k < ${len}u; k++) {`,
          `  let v = ${w.load(x, `base + k * ${inner}u`)};`,
          `  if (v ${cmp} best${tie}) { best = v; bi = i32(k); }`,
          `}`,
          `return bi;`,
        ].join('\n');
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// TopK: values and indices of the k largest (or smallest) along an axis, sorted, ties broken
// by the lower index (as the spec requires). The kernel finds the t-th element of that order
// by t + 1 selection passes over the line: O(k · len) per output element.

function topkPlan(n: Node, shape: readonly number[]) {
  return around(shape, normAxis(n, attrInt(n, 'axis', -1), shape.length));
}

function topkK(n: Node, consts: (Tensor | undefined)[]): number {
  const k = n.inputs[1] ? scalarInput(n, consts, 1, 'k', 0) : attrInt(n, 'k');
  if (k < 0) throw new Error(`TopK '${n.name}': k = ${k} is negative`);
  return k;
}

const topkRow: OpRow = {
  op: 'TopK',
  domain: '',
  opsets: [1, 22],
  precision: 'follow',
  dataInputs: [0],
  arity: [1, 2],
  outputs: 2,
  infer: (n, [x], consts) => {
    const axis = normAxis(n, attrInt(n, 'axis', -1), x.shape.length);
    const k = topkK(n, consts);
    if (k > x.shape[axis]) throw new Error(`TopK '${n.name}': k = ${k} exceeds the axis length ${x.shape[axis]}`);
    const shape = x.shape.map((d, j) => (j === axis ? k : d));
    return [
      { dtype: x.dtype, shape },
      { dtype: 'i64', shape: [...shape] },
    ];
  },
  interp: (n, [x], ctx) => {
    const { outer, len, inner } = topkPlan(n, x.shape);
    const k = ctx.outTypes[0].shape[normAxis(n, attrInt(n, 'axis', -1), x.shape.length)];
    const largest = attrInt(n, 'largest', 1) === 1;
    const vals = emptyLike(x.dtype, outer * k * inner);
    const idx = new Int32Array(outer * k * inner);
    const order = Array.from({ length: len }, (_, j) => j);
    for (let o = 0; o < outer; o++)
      for (let r = 0; r < inner; r++) {
        const at = (j: number) => x.data[(o * len + j) * inner + r];
        const sorted = [...order].sort((a, b) => (at(a) === at(b) ? a - b : (largest ? at(a) > at(b) : at(a) < at(b)) ? -1 : 1));
        for (let t = 0; t < k; t++) {
          vals[(o * k + t) * inner + r] = at(sorted[t]);
          idx[(o * k + t) * inner + r] = sorted[t];
        }
      }
    return [
      { dtype: x.dtype, shape: ctx.outTypes[0].shape, data: vals },
      { dtype: 'i64', shape: ctx.outTypes[1].shape, data: idx },
    ];
  },
  grad: (ctx) => {
    // dY of the values goes back to the elements they came from (the indices are distinct
    // along each line): the scatter-add of GatherElements' gradient.
    const dy = ctx.dy[0];
    const n = ctx.node;
    if (!dy) return [undefined, undefined];
    const shape = ctx.type(n.inputs[0]).shape;
    return [ctx.emit('mpc.GatherElementsGrad', [dy, n.outputs[1]], { axis: normAxis(n, attrInt(n, 'axis', -1), shape.length), shape })[0], undefined];
  },
  wgsl: (n, ctx) => {
    const xt = ctx.type(n.inputs[0]);
    const { len, inner } = topkPlan(n, xt.shape);
    const k = ctx.type(n.outputs[0]).shape[normAxis(n, attrInt(n, 'axis', -1), xt.shape.length)];
    const ty = isFloat(xt.dtype) ? 'f32' : 'i32';
    const cmp = attrInt(n, 'largest', 1) === 1 ? '>' : '<';
    const body = (ret: string) => (w: KernelWriter) => {
      const x = bindIn(w, ctx, n.inputs[0]);
      w.define(`fn topk_before(a: ${ty}, ia: i32, b: ${ty}, ib: i32) -> bool {\n  return a ${cmp} b || (a == b && ia < ib);\n}\n`);
      return [
        `let r = i % ${inner}u;`,
        `let t = (i / ${inner}u) % ${k}u;`,
        `let base = (i / ${k * inner}u) * ${len * inner}u + r;`,
        `var pv = ${ty}(0);`,
        `var pi = -1;`,
        `for (var s = 0u; s <= t; s++) {`,
        `  var bv = ${ty}(0);`,
        `  var bi = -1;`,
        `  for (var e = 0u; e < ${len}u; e++) {`,
        `    let v = ${w.load(x, `base + e * ${inner}u`)};`,
        `    if (pi >= 0 && !topk_before(pv, pi, v, i32(e))) { continue; }`,
        `    if (bi < 0 || topk_before(v, i32(e), bv, bi)) { bv = v; bi = i32(e); }`,
        `  }`,
        `  pv = bv;`,
        `  pi = bi;`,
        `}`,
        `return ${ret};`,
      ].join('\n');
    };
    return [...mapOut(ctx, n, 0, body('pv')), ...(n.outputs[1] ? mapOut(ctx, n, 1, body('pi'), 'indices') : [])];
  },
};

// ---------------------------------------------------------------------------------------------
// Hardmax (opset 13: along one axis): 1 at the first maximum of each line, 0 elsewhere.

const hardmaxRow: OpRow = {
  op: 'Hardmax',
  domain: '',
  // Opsets 1-12 flatten the input into 2-D at the axis instead; rows do not see the opset.
  opsets: [13, 22],
  precision: 'deny',
  arity: [1, 1],
  outputs: 1,
  infer: (n, [x]) => {
    if (!isFloat(x.dtype)) throw new Error(`Hardmax '${n.name}': input must be floating point`);
    normAxis(n, attrInt(n, 'axis', -1), x.shape.length);
    return [{ dtype: x.dtype, shape: [...x.shape] }];
  },
  interp: (n, [x], ctx) => {
    const { outer, len, inner } = around(x.shape, normAxis(n, attrInt(n, 'axis', -1), x.shape.length));
    const out = new Float32Array(x.data.length);
    for (let o = 0; o < outer; o++)
      for (let r = 0; r < inner; r++) {
        let bi = 0;
        for (let k = 1; k < len; k++) if (x.data[(o * len + k) * inner + r] > x.data[(o * len + bi) * inner + r]) bi = k;
        if (len) out[(o * len + bi) * inner + r] = 1;
      }
    return [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: out }];
  },
  // Piecewise constant: its derivative is zero wherever it exists, so nothing flows back.
  grad: () => [undefined],
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const { len, inner } = around(yt.shape, normAxis(n, attrInt(n, 'axis', -1), yt.shape.length));
      const x = bindIn(w, ctx, n.inputs[0]);
      return [
        `let r = i % ${inner}u;`,
        `let c = (i / ${inner}u) % ${len}u;`,
        `let base = (i / ${len * inner}u) * ${len * inner}u + r;`,
        `var best = ${w.load(x, 'base')};`,
        `var bi = 0u;`,
        `for (var k = 1u; k < ${len}u; k++) {`,
        `  let v = ${w.load(x, `base + k * ${inner}u`)};`,
        `  if (v > best) { best = v; bi = k; }`,
        `}`,
        `return select(0.0, 1.0, bi == c);`,
      ].join('\n');
    }),
};

// ---------------------------------------------------------------------------------------------
// CumSum: the axis is a scalar input (not needed for the shape), read at run time by the kernel.

function cumsumAxis(n: Node, axisT: Tensor, rank: number): number {
  return normAxis(n, axisT.data[0], rank);
}

const cumsumRow: OpRow = {
  op: 'CumSum',
  domain: '',
  opsets: [11, 22],
  precision: 'deny',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [x, axis]) => {
    if (x.dtype === 'bool') throw new Error(`CumSum '${n.name}': bool input`);
    checkIndices(n, axis, 'axis');
    if (sizeOf(axis.shape) !== 1) throw new Error(`CumSum '${n.name}': axis must be a scalar`);
    return [{ dtype: x.dtype, shape: [...x.shape] }];
  },
  interp: (n, [x, axisT], ctx) => {
    const { outer, len, inner } = around(x.shape, cumsumAxis(n, axisT, x.shape.length));
    const exclusive = attrInt(n, 'exclusive', 0) === 1;
    const reverse = attrInt(n, 'reverse', 0) === 1;
    const out = emptyLike(x.dtype, x.data.length);
    for (let o = 0; o < outer; o++)
      for (let r = 0; r < inner; r++) {
        let acc = 0;
        for (let s = 0; s < len; s++) {
          const k = reverse ? len - 1 - s : s;
          const at = (o * len + k) * inner + r;
          if (exclusive) {
            out[at] = acc;
            acc += x.data[at];
          } else {
            acc += x.data[at];
            out[at] = acc;
          }
        }
      }
    return [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: out }];
  },
  grad: (ctx) => {
    // y_j sums x_i over i <= j (i < j when exclusive): dx_i sums dy_j over j >= i (j > i), the
    // cumulative sum in the other direction.
    const dy = ctx.dy[0];
    const n = ctx.node;
    if (!dy) return [undefined, undefined];
    return [ctx.emit('CumSum', [dy, n.inputs[1]], { exclusive: attrInt(n, 'exclusive', 0), reverse: 1 - attrInt(n, 'reverse', 0) })[0], undefined];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const dims = yt.shape;
      const R = dims.length;
      const arr = (xs: number[]) => `array<u32, ${R}>(${xs.map((v) => `${v}u`).join(', ')})`;
      const x = bindIn(w, ctx, n.inputs[0]);
      const a = bindIn(w, ctx, n.inputs[1]);
      const exclusive = attrInt(n, 'exclusive', 0) === 1;
      const reverse = attrInt(n, 'reverse', 0) === 1;
      // Elements k of the line that enter position p.
      const range = reverse ? (exclusive ? `k = p + 1u; k < len` : `k = p; k < len`) : exclusive ? `k = 0u; k < p` : `k = 0u; k <= p`;
      return [
        `var dims = ${arr(dims)};`,
        `var strides = ${arr(stridesOf(dims))};`,
        `var ax = ${w.load(a, '0u')};`,
        `if (ax < 0) { ax += ${R}; }`,
        `let stride = strides[u32(ax)];`,
        `let len = dims[u32(ax)];`,
        `let p = (i / stride) % len;`,
        `let first = i - p * stride;`,
        `var acc = ${zeroOf(yt.dtype)};`,
        `for (var ${range}; k++) { acc += ${w.load(x, 'first + k * stride')}; }`,
        `return acc;`,
      ].join('\n');
    }),
};

// ---------------------------------------------------------------------------------------------
// Trilu: keeps the upper (col - row >= k) or lower (col - row <= k) triangle of the last two
// dims. k (optional scalar input) is read at run time.

const triluRow: OpRow = {
  op: 'Trilu',
  domain: '',
  opsets: [14, 22],
  precision: 'follow',
  dataInputs: [0],
  arity: [1, 2],
  outputs: 1,
  infer: (n, [x, k]) => {
    if (x.shape.length < 2) throw new Error(`Trilu '${n.name}': input of rank ${x.shape.length}, needs at least 2`);
    if (k) {
      checkIndices(n, k, 'k');
      if (sizeOf(k.shape) !== 1) throw new Error(`Trilu '${n.name}': k must be a scalar`);
    }
    return [{ dtype: x.dtype, shape: [...x.shape] }];
  },
  interp: (n, [x, kT], ctx) => {
    const k = kT ? kT.data[0] : 0;
    const upper = attrInt(n, 'upper', 1) === 1;
    const [rows, cols] = x.shape.slice(-2);
    const out = emptyLike(x.dtype, x.data.length);
    for (let i = 0; i < out.length; i++) {
      const c = i % cols;
      const r = Math.floor(i / cols) % rows;
      if (upper ? c - r >= k : c - r <= k) out[i] = x.data[i];
    }
    return [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: out }];
  },
  grad: (ctx) => {
    const dy = ctx.dy[0];
    const n = ctx.node;
    if (!dy) return [undefined, undefined];
    return [ctx.emit('Trilu', n.inputs[1] ? [dy, n.inputs[1]] : [dy], { ...n.attrs })[0], undefined];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const [rows, cols] = yt.shape.slice(-2);
      const x = bindIn(w, ctx, n.inputs[0]);
      const k = n.inputs[1] ? w.load(bindIn(w, ctx, n.inputs[1]), '0u') : '0';
      const keep = attrInt(n, 'upper', 1) === 1 ? 'c - r >= k' : 'c - r <= k';
      return [
        `let k = ${k};`,
        `let c = i32(i % ${cols}u);`,
        `let r = i32((i / ${cols}u) % ${rows}u);`,
        `if (${keep}) { return ${w.load(x, 'i')}; }`,
        `return ${zeroOf(yt.dtype)};`,
      ].join('\n');
    }),
};

// ---------------------------------------------------------------------------------------------
// Tile.

function tileRepeats(n: Node, x: ValueType, consts: (Tensor | undefined)[]): number[] {
  const reps = constInts(n, consts, 1, 'repeats');
  if (reps.length !== x.shape.length) throw new Error(`Tile '${n.name}': ${reps.length} repeats for an input of rank ${x.shape.length}`);
  if (reps.some((r) => r < 0)) throw new Error(`Tile '${n.name}': negative repeat in [${reps}]`);
  return reps;
}

/** Flat input index of output element `i` (tiling reads coordinate c mod the input dim). */
function tileSource(xShape: readonly number[], yShape: readonly number[], i: number): number {
  const c = coords(yShape, i);
  const xs = stridesOf(xShape);
  return c.reduce((s, cd, d) => s + (cd % xShape[d]) * xs[d], 0);
}

const tileRow: OpRow = {
  op: 'Tile',
  domain: '',
  opsets: [6, 22],
  precision: 'follow',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [x], consts) => {
    const reps = tileRepeats(n, x, consts);
    return [{ dtype: x.dtype, shape: x.shape.map((d, k) => d * reps[k]) }];
  },
  interp: (_n, [x], ctx) => {
    const y = ctx.outTypes[0];
    const out = emptyLike(x.dtype, sizeOf(y.shape));
    for (let i = 0; i < out.length; i++) out[i] = x.data[tileSource(x.shape, y.shape, i)];
    return [{ dtype: x.dtype, shape: y.shape, data: out }];
  },
  grad: (ctx) => {
    // Sum of the tiles: dY [r0*d0, r1*d1, ...] read as [r0, d0, r1, d1, ...], summed over the r axes.
    const dy = ctx.dy[0];
    if (!dy) return [undefined, undefined];
    const xs = ctx.type(ctx.node.inputs[0]).shape;
    const ys = ctx.type(dy).shape;
    const split = xs.flatMap((d, k) => [ys[k] / Math.max(d, 1), d]);
    const shape = ctx.constant({ dtype: 'i64', shape: [split.length], data: Int32Array.from(split) });
    const r = ctx.emit('Reshape', [dy, shape])[0];
    return [ctx.emit('ReduceSum', [r], { axes: xs.map((_, k) => 2 * k), keepdims: 0 })[0], undefined];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const xt = ctx.type(n.inputs[0]);
      const x = bindIn(w, ctx, n.inputs[0]);
      const xs = stridesOf(xt.shape);
      const terms = xt.shape.flatMap((d, k) => (d === 1 ? [] : [`((${coordExpr(yt.shape, k, 'i')}) % ${d}u) * ${xs[k]}u`]));
      return `return ${w.load(x, terms.length ? terms.join(' + ') : '0u')};`;
    }),
};

// ---------------------------------------------------------------------------------------------
// GatherElements / ScatterElements and the scatter-add of GatherElements' gradient.

interface ElemPlan {
  axis: number;
  /** Shape and strides of the indices (= updates, = GatherElements' output). */
  ishape: number[];
  istr: number[];
  /** Shape and strides of the data. */
  dshape: number[];
  dstr: number[];
}

function elemPlan(n: Node, dshape: readonly number[], ishape: readonly number[]): ElemPlan {
  if (dshape.length !== ishape.length) throw new Error(`${n.op} '${n.name}': indices of rank ${ishape.length} for data of rank ${dshape.length}`);
  const axis = normAxis(n, attrInt(n, 'axis', 0), dshape.length);
  ishape.forEach((d, k) => {
    if (k !== axis && d > dshape[k]) throw new Error(`${n.op} '${n.name}': indices [${ishape}] exceed data [${dshape}] outside axis ${axis}`);
  });
  return { axis, ishape: [...ishape], istr: stridesOf(ishape), dshape: [...dshape], dstr: stridesOf(dshape) };
}

/** For each element of the indices: the flat data index it names (interpreter). */
function elemTargets(n: Node, p: ElemPlan, idx: Tensor): Int32Array {
  const out = new Int32Array(idx.data.length);
  for (let i = 0; i < out.length; i++) {
    const c = coords(p.ishape, i);
    c[p.axis] = indexIn(n, idx.data[i], p.dshape[p.axis]);
    out[i] = c.reduce((s, cd, d) => s + cd * p.dstr[d], 0);
  }
  return out;
}

/**
 * WGSL for one data element `i`: `line` = the flat index of the first indices element on its
 * line (axis coordinate 0), `own` = its own axis coordinate, or a `return miss` when no index
 * line covers it.
 */
function wgslElemLine(p: ElemPlan, miss: string): string {
  const lines = [`var line = 0u;`];
  for (let d = 0; d < p.dshape.length; d++) {
    const c = coordExpr(p.dshape, d, 'i');
    if (d === p.axis) lines.push(`let own = i32(${c});`);
    else {
      lines.push(`let c${d} = ${c};`);
      if (p.ishape[d] < p.dshape[d]) lines.push(`if (c${d} >= ${p.ishape[d]}u) { return ${miss}; }`);
      lines.push(`line += c${d} * ${p.istr[d]}u;`);
    }
  }
  return lines.join('\n');
}

type Reduction = 'none' | 'add' | 'mul' | 'max' | 'min';
const REDUCTIONS: Reduction[] = ['none', 'add', 'mul', 'max', 'min'];

function reductionOf(n: Node): Reduction {
  const r = attrString(n, 'reduction', 'none') as Reduction;
  if (!REDUCTIONS.includes(r)) throw new Error(`${n.op} '${n.name}': unknown reduction '${r}'`);
  return r;
}

const applyReduction: Record<Reduction, (a: number, u: number) => number> = {
  none: (_a, u) => u,
  add: (a, u) => a + u,
  mul: (a, u) => a * u,
  max: (a, u) => Math.max(a, u),
  min: (a, u) => Math.min(a, u),
};

const wgslReduction: Record<Reduction, (a: string, u: string) => string> = {
  none: (_a, u) => u,
  add: (a, u) => `${a} + ${u}`,
  mul: (a, u) => `${a} * ${u}`,
  max: (a, u) => `max(${a}, ${u})`,
  min: (a, u) => `min(${a}, ${u})`,
};

/** Result array of a scatter: the data copied, updates folded in index order (f32 rounding for floats). */
function scatterInto(dtype: DType, data: Tensor, targets: ArrayLike<number>, updates: ArrayLike<number>, red: Reduction, slice = 1): Float32Array | Int32Array {
  const out = emptyLike(dtype, data.data.length);
  out.set(data.data);
  const f = applyReduction[red];
  for (let t = 0; t < targets.length; t++)
    for (let s = 0; s < slice; s++) out[targets[t] + s] = f(out[targets[t] + s], updates[t * slice + s]);
  return out;
}

/**
 * Gradient of a scatter with reduction none/add (inputs data, indices, updates): dData is dY
 * where no update landed (none) or dY itself (add); dUpdates gathers dY at the indices (every
 * duplicate of an index gets it, as PyTorch's scatter backward does).
 */
function scatterGrad(ctx: GradCtx, gather: string): (string | undefined)[] {
  const dy = ctx.dy[0];
  const n = ctx.node;
  if (!dy) return [undefined, undefined, undefined];
  const red = reductionOf(n);
  if (red !== 'none' && red !== 'add') throw new Error(`${n.op} '${n.name}': no gradient for reduction '${red}'`);
  const [, idx, upd] = n.inputs;
  const attrs: Attrs = n.attrs.axis !== undefined ? { axis: n.attrs.axis } : {};
  const ut = ctx.type(upd);
  const dData = red === 'add' ? dy : ctx.emit(n.op, [dy, idx, ctx.constant(zeros(ctx.type(dy).dtype, ut.shape))], attrs)[0];
  const dUpd = ctx.emit(gather, [dy, idx], gather === 'GatherND' ? { batch_dims: 0 } : attrs)[0];
  return [dData, undefined, dUpd];
}

const gatherElementsRow: OpRow = {
  op: 'GatherElements',
  domain: '',
  opsets: [11, 22],
  precision: 'follow',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [data, idx]) => {
    checkIndices(n, idx);
    elemPlan(n, data.shape, idx.shape);
    return [{ dtype: data.dtype, shape: [...idx.shape] }];
  },
  interp: (n, [data, idx], ctx) => {
    const targets = elemTargets(n, elemPlan(n, data.shape, idx.shape), idx);
    const out = emptyLike(data.dtype, targets.length);
    targets.forEach((t, i) => (out[i] = data.data[t]));
    return [{ dtype: data.dtype, shape: ctx.outTypes[0].shape, data: out }];
  },
  grad: (ctx) => {
    const dy = ctx.dy[0];
    const n = ctx.node;
    if (!dy) return [undefined, undefined];
    const shape = ctx.type(n.inputs[0]).shape;
    return [ctx.emit('mpc.GatherElementsGrad', [dy, n.inputs[1]], { axis: normAxis(n, attrInt(n, 'axis', 0), shape.length), shape })[0], undefined];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const p = elemPlan(n, ctx.type(n.inputs[0]).shape, yt.shape);
      const data = bindIn(w, ctx, n.inputs[0]);
      const idx = bindIn(w, ctx, n.inputs[1]);
      const terms = p.dshape.map((_, d) => (d === p.axis ? `u32(${wgslIndex(w, w.load(idx, 'i'), p.dshape[d])}) * ${p.dstr[d]}u` : `(${coordExpr(p.ishape, d, 'i')}) * ${p.dstr[d]}u`));
      return `return ${w.load(data, terms.join(' + '))};`;
    }),
};

const gatherElementsGradRow: OpRow = {
  // Gradient of GatherElements (and of TopK's values): inputs dY, indices; attributes axis
  // (normalised) and shape (the data's). Sums dY over every index naming each data element.
  op: 'mpc.GatherElementsGrad',
  domain: 'mpc',
  precision: 'follow',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [dy, idx]) => {
    checkIndices(n, idx);
    if (!isFloat(dy.dtype)) throw new Error(`${n.op} '${n.name}': dy must be floating point`);
    if (dy.shape.join() !== idx.shape.join()) throw new Error(`${n.op} '${n.name}': dy [${dy.shape}] and indices [${idx.shape}] differ`);
    const shape = attrInts(n, 'shape');
    elemPlan(n, shape, idx.shape);
    return [{ dtype: dy.dtype, shape: [...shape] }];
  },
  interp: (n, [dy, idx], ctx) => {
    const shape = ctx.outTypes[0].shape;
    const targets = elemTargets(n, elemPlan(n, shape, idx.shape), idx);
    const out = new Float32Array(sizeOf(shape));
    targets.forEach((t, i) => (out[t] = Math.fround(out[t] + dy.data[i])));
    return [{ dtype: dy.dtype, shape, data: out }];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const p = elemPlan(n, yt.shape, ctx.type(n.inputs[1]).shape);
      const dy = bindIn(w, ctx, n.inputs[0]);
      const idx = bindIn(w, ctx, n.inputs[1]);
      return [
        wgslElemLine(p, '0.0'),
        `var s = 0.0;`,
        `for (var t = 0u; t < ${p.ishape[p.axis]}u; t++) {`,
        `  let at = line + t * ${p.istr[p.axis]}u;`,
        `  if (${wgslIndex(w, w.load(idx, 'at'), p.dshape[p.axis])} == own) { s += ${w.load(dy, 'at')}; }`,
        `}`,
        `return s;`,
      ].join('\n');
    }),
};

function scatterElementsRow(op: 'ScatterElements' | 'Scatter', opsets: [number, number]): OpRow {
  return {
    op,
    domain: '',
    opsets,
    precision: 'follow',
    dataInputs: [0, 2],
    arity: [3, 3],
    outputs: 1,
    infer: (n, [data, idx, upd]) => {
      checkIndices(n, idx);
      reductionOf(n);
      if (upd.dtype !== data.dtype) throw new Error(`${op} '${n.name}': updates are ${upd.dtype}, data ${data.dtype}`);
      if (upd.shape.join() !== idx.shape.join()) throw new Error(`${op} '${n.name}': updates [${upd.shape}] and indices [${idx.shape}] differ`);
      elemPlan(n, data.shape, idx.shape);
      return [{ dtype: data.dtype, shape: [...data.shape] }];
    },
    interp: (n, [data, idx, upd], ctx) => {
      const targets = elemTargets(n, elemPlan(n, data.shape, idx.shape), idx);
      return [{ dtype: data.dtype, shape: ctx.outTypes[0].shape, data: scatterInto(data.dtype, data, targets, upd.data, reductionOf(n)) }];
    },
    grad: (ctx) => scatterGrad(ctx, 'GatherElements'),
    wgsl: (n, ctx) =>
      mapOut(ctx, n, 0, (w, yt) => {
        const p = elemPlan(n, yt.shape, ctx.type(n.inputs[1]).shape);
        const [data, idx, upd] = n.inputs.map((v) => bindIn(w, ctx, v));
        const f = wgslReduction[reductionOf(n)];
        return [
          `var acc = ${w.load(data, 'i')};`,
          wgslElemLine(p, 'acc'),
          `for (var t = 0u; t < ${p.ishape[p.axis]}u; t++) {`,
          `  let at = line + t * ${p.istr[p.axis]}u;`,
          `  if (${wgslIndex(w, w.load(idx, 'at'), p.dshape[p.axis])} == own) { acc = ${f('acc', w.load(upd, 'at'))}; }`,
          `}`,
          `return acc;`,
        ].join('\n');
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// GatherND / ScatterND.

interface NdPlan {
  /** batch_dims, index tuple length. */
  b: number;
  m: number;
  /** Number of batches, tuples per batch, elements per gathered slice, data elements per batch. */
  batches: number;
  tuples: number;
  slice: number;
  block: number;
  dshape: number[];
  dstr: number[];
}

function ndPlan(n: Node, dshape: readonly number[], ishape: readonly number[], b: number): NdPlan {
  const q = ishape.length;
  if (q < 1) throw new Error(`${n.op} '${n.name}': indices must have rank >= 1`);
  const m = ishape[q - 1];
  if (b < 0 || b >= q || b > dshape.length) throw new Error(`${n.op} '${n.name}': batch_dims ${b} for indices of rank ${q}`);
  if (m > dshape.length - b) throw new Error(`${n.op} '${n.name}': index tuples of ${m} for data [${dshape}] with batch_dims ${b}`);
  for (let d = 0; d < b; d++) if (ishape[d] !== dshape[d]) throw new Error(`${n.op} '${n.name}': batch dims of indices [${ishape}] and data [${dshape}] differ`);
  return {
    b,
    m,
    batches: sizeOf(dshape.slice(0, b)),
    tuples: sizeOf(ishape.slice(b, q - 1)),
    slice: sizeOf(dshape.slice(b + m)),
    block: sizeOf(dshape.slice(b)),
    dshape: [...dshape],
    dstr: stridesOf(dshape),
  };
}

/** Flat data offset of each index tuple (interpreter), in (batch, tuple) order. */
function ndTargets(n: Node, p: NdPlan, idx: Tensor): Int32Array {
  const out = new Int32Array(p.batches * p.tuples);
  for (let t = 0; t < out.length; t++) {
    let off = Math.floor(t / Math.max(p.tuples, 1)) * p.block;
    for (let j = 0; j < p.m; j++) off += indexIn(n, idx.data[t * p.m + j], p.dshape[p.b + j]) * p.dstr[p.b + j];
    out[t] = off;
  }
  return out;
}

/** WGSL: `off` = data offset of index tuple `tup` (u32 expression) of batch `bi`. */
function wgslNdOffset(w: KernelWriter, p: NdPlan, idx: string, tup: string, bi: string): string {
  const lines = [`var off = ${bi} * ${p.block}u;`];
  for (let j = 0; j < p.m; j++) lines.push(`off += u32(${wgslIndex(w, w.load(idx, `(${tup}) * ${p.m}u + ${j}u`), p.dshape[p.b + j])}) * ${p.dstr[p.b + j]}u;`);
  return lines.join('\n');
}

const gatherNdRow: OpRow = {
  op: 'GatherND',
  domain: '',
  opsets: [11, 22],
  precision: 'follow',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [data, idx]) => {
    checkIndices(n, idx);
    const b = attrInt(n, 'batch_dims', 0);
    const p = ndPlan(n, data.shape, idx.shape, b);
    return [{ dtype: data.dtype, shape: [...idx.shape.slice(0, -1), ...data.shape.slice(b + p.m)] }];
  },
  interp: (n, [data, idx], ctx) => {
    const p = ndPlan(n, data.shape, idx.shape, attrInt(n, 'batch_dims', 0));
    const targets = ndTargets(n, p, idx);
    const out = emptyLike(data.dtype, targets.length * p.slice);
    targets.forEach((t, k) => {
      for (let s = 0; s < p.slice; s++) out[k * p.slice + s] = data.data[t + s];
    });
    return [{ dtype: data.dtype, shape: ctx.outTypes[0].shape, data: out }];
  },
  grad: (ctx) => {
    const dy = ctx.dy[0];
    const n = ctx.node;
    if (!dy) return [undefined, undefined];
    return [ctx.emit('mpc.GatherNDGrad', [dy, n.inputs[1]], { batch_dims: attrInt(n, 'batch_dims', 0), shape: ctx.type(n.inputs[0]).shape })[0], undefined];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w) => {
      const p = ndPlan(n, ctx.type(n.inputs[0]).shape, ctx.type(n.inputs[1]).shape, attrInt(n, 'batch_dims', 0));
      const data = bindIn(w, ctx, n.inputs[0]);
      const idx = bindIn(w, ctx, n.inputs[1]);
      return [`let tup = i / ${p.slice}u;`, wgslNdOffset(w, p, idx, 'tup', `(tup / ${p.tuples}u)`), `return ${w.load(data, `off + i % ${p.slice}u`)};`].join('\n');
    }),
};

/**
 * WGSL loop over the index tuples that may name data element `i` (those of its batch): `body`
 * runs with `t` (the global tuple number) when tuple t's slice holds element i.
 */
function wgslNdScan(w: KernelWriter, p: NdPlan, idx: string, body: string): string {
  return [
    `let bi = i / ${p.block}u;`,
    `let inSlice = i % ${p.slice}u;`,
    `for (var tt = 0u; tt < ${p.tuples}u; tt++) {`,
    `  let t = bi * ${p.tuples}u + tt;`,
    wgslNdOffset(w, p, idx, 't', 'bi').replace(/^/gm, '  '),
    `  if (off + inSlice == i) { ${body} }`,
    `}`,
  ].join('\n');
}

const gatherNdGradRow: OpRow = {
  // Gradient of GatherND: inputs dY, indices; attributes batch_dims and shape (the data's).
  op: 'mpc.GatherNDGrad',
  domain: 'mpc',
  precision: 'follow',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [dy, idx]) => {
    checkIndices(n, idx);
    if (!isFloat(dy.dtype)) throw new Error(`${n.op} '${n.name}': dy must be floating point`);
    const shape = attrInts(n, 'shape');
    const p = ndPlan(n, shape, idx.shape, attrInt(n, 'batch_dims', 0));
    if (sizeOf(dy.shape) !== p.batches * p.tuples * p.slice) throw new Error(`${n.op} '${n.name}': dy [${dy.shape}] does not match the gather`);
    return [{ dtype: dy.dtype, shape: [...shape] }];
  },
  interp: (n, [dy, idx], ctx) => {
    const shape = ctx.outTypes[0].shape;
    const p = ndPlan(n, shape, idx.shape, attrInt(n, 'batch_dims', 0));
    const out = new Float32Array(sizeOf(shape));
    ndTargets(n, p, idx).forEach((t, k) => {
      for (let s = 0; s < p.slice; s++) out[t + s] = Math.fround(out[t + s] + dy.data[k * p.slice + s]);
    });
    return [{ dtype: dy.dtype, shape, data: out }];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const p = ndPlan(n, yt.shape, ctx.type(n.inputs[1]).shape, attrInt(n, 'batch_dims', 0));
      const dy = bindIn(w, ctx, n.inputs[0]);
      const idx = bindIn(w, ctx, n.inputs[1]);
      return [`var s = 0.0;`, wgslNdScan(w, p, idx, `s += ${w.load(dy, `t * ${p.slice}u + inSlice`)};`), `return s;`].join('\n');
    }),
};

const scatterNdRow: OpRow = {
  op: 'ScatterND',
  domain: '',
  opsets: [11, 22],
  precision: 'follow',
  dataInputs: [0, 2],
  arity: [3, 3],
  outputs: 1,
  infer: (n, [data, idx, upd]) => {
    checkIndices(n, idx);
    reductionOf(n);
    const p = ndPlan(n, data.shape, idx.shape, 0);
    const want = [...idx.shape.slice(0, -1), ...data.shape.slice(p.m)];
    if (upd.dtype !== data.dtype) throw new Error(`ScatterND '${n.name}': updates are ${upd.dtype}, data ${data.dtype}`);
    if (upd.shape.join() !== want.join()) throw new Error(`ScatterND '${n.name}': updates are [${upd.shape}], expected [${want}]`);
    return [{ dtype: data.dtype, shape: [...data.shape] }];
  },
  interp: (n, [data, idx, upd], ctx) => {
    const p = ndPlan(n, data.shape, idx.shape, 0);
    return [{ dtype: data.dtype, shape: ctx.outTypes[0].shape, data: scatterInto(data.dtype, data, ndTargets(n, p, idx), upd.data, reductionOf(n), p.slice) }];
  },
  grad: (ctx) => scatterGrad(ctx, 'GatherND'),
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const p = ndPlan(n, yt.shape, ctx.type(n.inputs[1]).shape, 0);
      const [data, idx, upd] = n.inputs.map((v) => bindIn(w, ctx, v));
      const f = wgslReduction[reductionOf(n)];
      return [`var acc = ${w.load(data, 'i')};`, wgslNdScan(w, p, idx, `acc = ${f('acc', w.load(upd, `t * ${p.slice}u + inSlice`))};`), `return acc;`].join('\n');
    }),
};

// ---------------------------------------------------------------------------------------------
// OneHot: indices (any numeric type, truncated), depth (constant scalar), values [off, on].

function oneHotPlan(n: Node, ishape: readonly number[], depth: number) {
  const rank = ishape.length + 1;
  const axis = normAxis(n, attrInt(n, 'axis', -1), rank);
  return { axis, depth, outer: sizeOf(ishape.slice(0, axis)), inner: sizeOf(ishape.slice(axis)) };
}

function oneHotDepth(n: Node, consts: (Tensor | undefined)[]): number {
  const t = consts[1];
  if (!t) throw new Error(`OneHot '${n.name}': depth (input 1) must be a constant (the output shape depends on it)`);
  const d = Math.trunc(t.data[0]);
  if (!(d >= 1)) throw new Error(`OneHot '${n.name}': depth ${t.data[0]} must be at least 1`);
  return d;
}

const oneHotRow: OpRow = {
  op: 'OneHot',
  domain: '',
  opsets: [9, 22],
  precision: 'follow',
  dataInputs: [2],
  arity: [3, 3],
  outputs: 1,
  infer: (n, [idx, , values], consts) => {
    if (sizeOf(values.shape) !== 2) throw new Error(`OneHot '${n.name}': values must hold [off, on]`);
    const p = oneHotPlan(n, idx.shape, oneHotDepth(n, consts));
    const shape = [...idx.shape];
    shape.splice(p.axis, 0, p.depth);
    return [{ dtype: values.dtype, shape }];
  },
  interp: (n, [idx, depthT, values], ctx) => {
    const p = oneHotPlan(n, idx.shape, Math.trunc(depthT.data[0]));
    const out = emptyLike(values.dtype, sizeOf(ctx.outTypes[0].shape));
    for (let o = 0; o < p.outer; o++)
      for (let j = 0; j < p.depth; j++)
        for (let r = 0; r < p.inner; r++) {
          let v = Math.trunc(idx.data[o * p.inner + r]);
          if (v < 0) v += p.depth;
          out[(o * p.depth + j) * p.inner + r] = values.data[v === j ? 1 : 0];
        }
    return [{ dtype: values.dtype, shape: ctx.outTypes[0].shape, data: out }];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const it = ctx.type(n.inputs[0]);
      const p = oneHotPlan(n, it.shape, yt.shape[normAxis(n, attrInt(n, 'axis', -1), yt.shape.length)]);
      const idx = bindIn(w, ctx, n.inputs[0]);
      const values = bindIn(w, ctx, n.inputs[2]);
      // An index outside [-depth, depth) matches no position: the line is all `off`.
      return [
        `let r = i % ${p.inner}u;`,
        `let j = i32((i / ${p.inner}u) % ${p.depth}u);`,
        `let o = i / ${p.depth * p.inner}u;`,
        `var v = i32(${w.load(idx, `o * ${p.inner}u + r`)});`,
        `if (v < 0) { v += ${p.depth}; }`,
        `return select(${w.load(values, '0u')}, ${w.load(values, '1u')}, v == j);`,
      ].join('\n');
    }),
};

// ---------------------------------------------------------------------------------------------
// DepthToSpace / SpaceToDepth on [N, C, H, W]. Each is the other's inverse permutation for the
// same channel order: DCR (depth-column-row: the block position is the outer part of the
// channel) or CRD (the inner part). SpaceToDepth is DCR in ONNX; mpc also reads `mode` on it
// (an extension, set only by DepthToSpace's CRD gradient).

type ShuffleOp = 'DepthToSpace' | 'SpaceToDepth';

function shufflePlan(n: Node, shape: readonly number[], op: ShuffleOp) {
  if (shape.length !== 4) throw new Error(`${op} '${n.name}': input must be [N, C, H, W], got [${shape}]`);
  const b = attrInt(n, 'blocksize');
  const mode = attrString(n, 'mode', 'DCR');
  if (mode !== 'DCR' && mode !== 'CRD') throw new Error(`${op} '${n.name}': unknown mode '${mode}'`);
  if (!(b >= 1)) throw new Error(`${op} '${n.name}': blocksize ${b}`);
  const [N, C, H, W] = shape;
  if (op === 'DepthToSpace') {
    if (C % (b * b) !== 0) throw new Error(`${op} '${n.name}': ${C} channels do not divide by blocksize² = ${b * b}`);
    return { b, mode, out: [N, C / (b * b), H * b, W * b], space: [N, C / (b * b), H * b, W * b] };
  }
  if (H % b !== 0 || W % b !== 0) throw new Error(`${op} '${n.name}': [${H}, ${W}] do not divide by blocksize ${b}`);
  return { b, mode, out: [N, C * b * b, H / b, W / b], space: [...shape] };
}

/**
 * The pixel-shuffle correspondence: space element (n, c, y, x) of the space tensor [N, C', H', W']
 * is depth element (n, ch, y / b, x / b) of the depth tensor [N, C' b², H' / b, W' / b].
 */
function depthChannel(mode: string, b: number, cs: number, c: number, by: number, bx: number): number {
  return mode === 'DCR' ? (by * b + bx) * cs + c : c * b * b + by * b + bx;
}

function shuffleRow(op: ShuffleOp): OpRow {
  const other: ShuffleOp = op === 'DepthToSpace' ? 'SpaceToDepth' : 'DepthToSpace';
  return {
    op,
    domain: '',
    opsets: [1, 22],
    precision: 'follow',
    arity: [1, 1],
    outputs: 1,
    infer: (n, [x]) => [{ dtype: x.dtype, shape: shufflePlan(n, x.shape, op).out }],
    interp: (n, [x], ctx) => {
      const { b, mode, space } = shufflePlan(n, x.shape, op);
      const [N, C, H, W] = space;
      const depthShape = [N, C * b * b, H / b, W / b];
      const ds = stridesOf(depthShape);
      const out = emptyLike(x.dtype, x.data.length);
      let i = 0;
      for (let nn = 0; nn < N; nn++)
        for (let c = 0; c < C; c++)
          for (let y = 0; y < H; y++)
            for (let xx = 0; xx < W; xx++, i++) {
              const d = nn * ds[0] + depthChannel(mode, b, C, c, y % b, xx % b) * ds[1] + Math.floor(y / b) * ds[2] + Math.floor(xx / b) * ds[3];
              if (op === 'DepthToSpace') out[i] = x.data[d];
              else out[d] = x.data[i];
            }
      return [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: out }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      const n = ctx.node;
      return [dy ? ctx.emit(other, [dy], { blocksize: attrInt(n, 'blocksize'), mode: attrString(n, 'mode', 'DCR') })[0] : undefined];
    },
    wgsl: (n, ctx) =>
      mapOut(ctx, n, 0, (w, yt) => {
        const xt = ctx.type(n.inputs[0]);
        const { b, mode, space } = shufflePlan(n, xt.shape, op);
        const [, C, H, W] = space;
        const x = bindIn(w, ctx, n.inputs[0]);
        const ds = stridesOf([space[0], C * b * b, H / b, W / b]);
        const ss = stridesOf(space);
        const ch = mode === 'DCR' ? `((y % ${b}u) * ${b}u + xx % ${b}u) * ${C}u + c` : `c * ${b * b}u + (y % ${b}u) * ${b}u + xx % ${b}u`;
        if (op === 'DepthToSpace')
          return [
            `let xx = i % ${W}u;`,
            `let y = (i / ${ss[2]}u) % ${H}u;`,
            `let c = (i / ${ss[1]}u) % ${C}u;`,
            `let nn = i / ${ss[0]}u;`,
            `return ${w.load(x, `nn * ${ds[0]}u + (${ch}) * ${ds[1]}u + (y / ${b}u) * ${ds[2]}u + xx / ${b}u`)};`,
          ].join('\n');
        // SpaceToDepth: output (nn, ch, yy, xq) reads space (nn, c, yy b + by, xq b + bx).
        const chans = C * b * b;
        const split =
          mode === 'DCR'
            ? [`let c = ch % ${C}u;`, `let by = (ch / ${C}u) / ${b}u;`, `let bx = (ch / ${C}u) % ${b}u;`]
            : [`let c = ch / ${b * b}u;`, `let by = (ch % ${b * b}u) / ${b}u;`, `let bx = ch % ${b}u;`];
        return [
          `let xq = i % ${yt.shape[3]}u;`,
          `let yy = (i / ${ds[2]}u) % ${yt.shape[2]}u;`,
          `let ch = (i / ${ds[1]}u) % ${chans}u;`,
          `let nn = i / ${ds[0]}u;`,
          ...split,
          `return ${w.load(x, `nn * ${ss[0]}u + c * ${ss[1]}u + (yy * ${b}u + by) * ${ss[2]}u + xq * ${b}u + bx`)};`,
        ].join('\n');
      }),
  };
}

// ---------------------------------------------------------------------------------------------
// Size, EyeLike: functions of the input's shape only.

const sizeRow: FoldHooks = {
  op: 'Size',
  domain: '',
  opsets: [1, 22],
  precision: 'none',
  dataInputs: [],
  arity: [1, 1],
  outputs: 1,
  shapeOnlyInputs: [0],
  infer: () => [{ dtype: 'i64', shape: [] }],
  interp: (_n, [x]) => [{ dtype: 'i64', shape: [], data: Int32Array.of(sizeOf(x.shape)) }],
  wgsl: (n, ctx) => mapOut(ctx, n, 0, () => `return ${sizeOf(ctx.type(n.inputs[0]).shape)};`),
};

function eyeDtype(n: Node, x: ValueType): DType {
  return n.attrs.dtype !== undefined ? fromOnnx(attrInt(n, 'dtype')) : x.dtype;
}

const eyeLikeRow: FoldHooks = {
  op: 'EyeLike',
  domain: '',
  opsets: [9, 22],
  precision: 'none',
  dataInputs: [],
  arity: [1, 1],
  outputs: 1,
  shapeOnlyInputs: [0],
  infer: (n, [x]) => {
    if (x.shape.length !== 2) throw new Error(`EyeLike '${n.name}': input must be 2-D, got [${x.shape}]`);
    return [{ dtype: eyeDtype(n, x), shape: [...x.shape] }];
  },
  interp: (n, [x], ctx) => {
    const k = attrInt(n, 'k', 0);
    const [rows, cols] = x.shape;
    const out = emptyLike(ctx.outTypes[0].dtype, rows * cols);
    for (let r = 0; r < rows; r++) if (r + k >= 0 && r + k < cols) out[r * cols + r + k] = 1;
    return [{ dtype: ctx.outTypes[0].dtype, shape: [...x.shape], data: out }];
  },
  // The output does not depend on the input's values: nothing flows back.
  grad: () => [undefined],
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (_w, yt) => {
      const cols = yt.shape[1];
      const [one, zero] = isFloat(yt.dtype) ? ['1.0', '0.0'] : ['1', '0'];
      return `return select(${zero}, ${one}, i32(i % ${cols}u) - i32(i / ${cols}u) == ${attrInt(n, 'k', 0)});`;
    }),
};

// ---------------------------------------------------------------------------------------------
// Compress: the slices along an axis (or of the flattened input) whose condition is true. The
// output shape counts the true values, so the condition must be a constant; the kernel reads
// it at run time (the t-th true position by a scan).

function compressPlan(n: Node, shape: readonly number[]) {
  const flat = n.attrs.axis === undefined;
  const axis = flat ? 0 : normAxis(n, attrInt(n, 'axis'), shape.length);
  const line = flat ? [sizeOf(shape)] : shape;
  return { flat, axis, ...around(line, axis) };
}

function compressCount(n: Node, shape: readonly number[], cond: Tensor): number {
  const p = compressPlan(n, shape);
  if (cond.shape.length !== 1) throw new Error(`Compress '${n.name}': condition must be 1-D`);
  let k = 0;
  for (let j = 0; j < Math.min(p.len, cond.data.length); j++) if (cond.data[j]) k++;
  return k;
}

const compressRow: OpRow = {
  op: 'Compress',
  domain: '',
  opsets: [9, 22],
  precision: 'follow',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [x, c], consts) => {
    if (c.dtype !== 'bool') throw new Error(`Compress '${n.name}': condition must be bool`);
    const cond = consts[1];
    if (!cond) throw new Error(`Compress '${n.name}': the condition must be a constant (the output shape depends on it)`);
    const k = compressCount(n, x.shape, cond);
    const p = compressPlan(n, x.shape);
    return [{ dtype: x.dtype, shape: p.flat ? [k] : x.shape.map((d, j) => (j === p.axis ? k : d)) }];
  },
  interp: (n, [x, cond], ctx) => {
    const p = compressPlan(n, x.shape);
    const keep: number[] = [];
    for (let j = 0; j < Math.min(p.len, cond.data.length); j++) if (cond.data[j]) keep.push(j);
    const out = emptyLike(x.dtype, p.outer * keep.length * p.inner);
    let i = 0;
    for (let o = 0; o < p.outer; o++) for (const j of keep) for (let r = 0; r < p.inner; r++) out[i++] = x.data[(o * p.len + j) * p.inner + r];
    return [{ dtype: x.dtype, shape: ctx.outTypes[0].shape, data: out }];
  },
  grad: (ctx) => {
    const dy = ctx.dy[0];
    const n = ctx.node;
    if (!dy) return [undefined, undefined];
    return [ctx.emit('mpc.CompressGrad', [dy, n.inputs[1]], { ...n.attrs, shape: ctx.type(n.inputs[0]).shape })[0], undefined];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const xt = ctx.type(n.inputs[0]);
      const p = compressPlan(n, xt.shape);
      const k = p.flat ? yt.shape[0] : yt.shape[p.axis];
      const x = bindIn(w, ctx, n.inputs[0]);
      const cond = bindIn(w, ctx, n.inputs[1]);
      const clen = Math.min(p.len, sizeOf(ctx.type(n.inputs[1]).shape));
      return [
        `let r = i % ${p.inner}u;`,
        `let t = (i / ${p.inner}u) % ${k}u;`,
        `let o = i / ${k * p.inner}u;`,
        `var seen = 0u;`,
        `var j = 0u;`,
        `for (var q = 0u; q < ${clen}u; q++) {`,
        `  if (${w.load(cond, 'q')} != 0) { if (seen == t) { j = q; break; } seen++; }`,
        `}`,
        `return ${w.load(x, `(o * ${p.len}u + j) * ${p.inner}u + r`)};`,
      ].join('\n');
    }),
};

const compressGradRow: OpRow = {
  // Gradient of Compress: inputs dY, condition; Compress's attributes plus shape (the input's).
  // dY goes back to the kept positions, zeros elsewhere.
  op: 'mpc.CompressGrad',
  domain: 'mpc',
  precision: 'follow',
  dataInputs: [0],
  arity: [2, 2],
  outputs: 1,
  infer: (n, [dy]) => {
    if (!isFloat(dy.dtype)) throw new Error(`${n.op} '${n.name}': dy must be floating point`);
    return [{ dtype: dy.dtype, shape: attrInts(n, 'shape') }];
  },
  interp: (n, [dy, cond], ctx) => {
    const shape = ctx.outTypes[0].shape;
    const p = compressPlan(n, shape);
    const keep: number[] = [];
    for (let j = 0; j < Math.min(p.len, cond.data.length); j++) if (cond.data[j]) keep.push(j);
    if (sizeOf(dy.shape) !== p.outer * keep.length * p.inner) throw new Error(`${n.op} '${n.name}': dy [${dy.shape}] does not match the condition`);
    const out = new Float32Array(sizeOf(shape));
    let i = 0;
    for (let o = 0; o < p.outer; o++) for (const j of keep) for (let r = 0; r < p.inner; r++) out[(o * p.len + j) * p.inner + r] = dy.data[i++];
    return [{ dtype: dy.dtype, shape, data: out }];
  },
  wgsl: (n, ctx) =>
    mapOut(ctx, n, 0, (w, yt) => {
      const p = compressPlan(n, yt.shape);
      const k = sizeOf(ctx.type(n.inputs[0]).shape) / Math.max(1, p.outer * p.inner);
      if (k === 0) return 'return 0.0;';
      const dy = bindIn(w, ctx, n.inputs[0]);
      const cond = bindIn(w, ctx, n.inputs[1]);
      const clen = Math.min(p.len, sizeOf(ctx.type(n.inputs[1]).shape));
      return [
        `let r = i % ${p.inner}u;`,
        `let j = (i / ${p.inner}u) % ${p.len}u;`,
        `let o = i / ${p.len * p.inner}u;`,
        `if (j >= ${clen}u || ${w.load(cond, 'j')} == 0) { return 0.0; }`,
        `var t = 0u;`,
        `for (var q = 0u; q < j; q++) { if (${w.load(cond, 'q')} != 0) { t++; } }`,
        `return ${w.load(dy, `(o * ${k}u + t) * ${p.inner}u + r`)};`,
      ].join('\n');
    }),
};

// ---------------------------------------------------------------------------------------------
// The rows.

export const indexingOps: OpRow[] = [
  argRow('ArgMax'),
  argRow('ArgMin'),
  topkRow,
  hardmaxRow,
  cumsumRow,
  triluRow,
  tileRow,
  gatherElementsRow,
  gatherElementsGradRow,
  scatterElementsRow('ScatterElements', [11, 22]),
  scatterElementsRow('Scatter', [9, 10]),
  gatherNdRow,
  gatherNdGradRow,
  scatterNdRow,
  oneHotRow,
  shuffleRow('DepthToSpace'),
  shuffleRow('SpaceToDepth'),
  sizeRow,
  eyeLikeRow,
  compressRow,
  compressGradRow,
];
