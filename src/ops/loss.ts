// Losses (deny class: always f32) and their gradient ops.
//
// SoftmaxCrossEntropyLoss and NegativeLogLikelihoodLoss, ONNX opsets 12-22 (13 only added
// types). The scores (SCE) or log-probabilities (NLL) x are [N, C] or [N, C, d1..dk], the
// labels [N] or [N, d1..dk], the optional class weights [C]. With D = d1·…·dk, position
// p = n·D + d has label y_p, weight w_p = weights[y_p] (1 without weights) and unweighted loss
//     u_p = logsumexp_c x[n, c, d] - x[n, y_p, d]   (SCE)        u_p = -x[n, y_p, d]   (NLL).
// A position whose label is ignore_index has w_p = 0. Labels outside [0, C) are undefined in
// ONNX (onnxruntime fails); here they count as ignored too. The reductions (ONNX's reference):
//     none: w_p u_p per position (the labels' shape)     sum: Σ_p w_p u_p
//     mean: Σ_p w_p u_p / Σ_p w_p, NaN when Σ_p w_p = 0 (as onnxruntime and PyTorch).
// SCE's optional second output is log_prob = log_softmax(x) along axis 1.
//
// Gradients: dx = s_p (softmax(x) - onehot(y_p)) (SCE) or -s_p onehot(y_p) (NLL) with
// s_p = w_p dy_p (none), w_p dy (sum), w_p dy / Σ w (mean), and 0 where w_p = 0; SCE's
// log_prob output adds LogSoftmax's gradient. The class weights get mpc.LossWeightGrad (they
// are usually constants, and autodiff then drops it).
//
// Kernels are map kernels (correctness first): a reduced loss is one invocation looping over
// every position, and the mean's Σ w is recomputed by every gradient invocation. The
// log-sum-exp is computed as (max, log Σ exp(x - max)) so that u = (max - x_y) + log Σ and
// log_prob = (x - max) - log Σ keep their relative accuracy when one class dominates.
import type { Node } from '../ir/graph.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { f32Lit, layoutOf, mapKernel, MAP_WORKGROUP, operandLoader, type KernelWriter } from '../codegen/storage.js';
import { dispatch1d } from '../codegen/kernel.js';
import { wgslMath } from './math.js';
import { attrInt, attrString, type EmitCtx, type GradCtx, type OpRow, type ValueType } from './types.js';

type LossKind = 'sce' | 'nll';
type Reduction = 'none' | 'sum' | 'mean';

/** The static description of one loss node (or of one of its gradient nodes). */
interface LossSpec {
  kind: LossKind;
  N: number;
  C: number;
  /** Positions per sample: d1·…·dk (1 for [N, C] scores). */
  D: number;
  /** The labels' shape [N, d1..dk]: the shape of the loss with reduction 'none'. */
  labelShape: number[];
  reduction: Reduction;
  /** ignore_index, when set and within the i32 range labels are carried in. */
  ignore?: number;
  weighted: boolean;
}

function lossSpec(n: Node, kind: LossKind, x: ValueType, labels: ValueType, weights?: ValueType): LossSpec {
  const what = kind === 'sce' ? 'scores' : 'input';
  if (x.shape.length < 2) throw new Error(`${n.op} '${n.name}': ${what} must be [N, C] or [N, C, d1, ...], got [${x.shape}]`);
  const [N, C, ...rest] = x.shape;
  const labelShape = [N, ...rest];
  if (labels.shape.join() !== labelShape.join())
    throw new Error(`${n.op} '${n.name}': labels must be [${labelShape}] for ${what} [${x.shape}], got [${labels.shape}]`);
  if (labels.dtype !== 'i64' && labels.dtype !== 'i32') throw new Error(`${n.op} '${n.name}': labels must be integers, got ${labels.dtype}`);
  if (weights && (weights.shape.length !== 1 || weights.shape[0] !== C)) throw new Error(`${n.op} '${n.name}': weights must be [${C}], got [${weights.shape}]`);
  const r = attrString(n, 'reduction', 'mean');
  if (r !== 'none' && r !== 'sum' && r !== 'mean') throw new Error(`${n.op} '${n.name}': reduction must be none, sum or mean, got '${r}'`);
  let ignore: number | undefined = n.attrs.ignore_index === undefined ? undefined : attrInt(n, 'ignore_index');
  if (ignore !== undefined && (ignore < -(2 ** 31) || ignore >= 2 ** 31)) ignore = undefined; // matches no label mpc carries
  return { kind, N, C, D: sizeOf(rest), labelShape, reduction: r, ignore, weighted: !!weights };
}

/** Shape of the loss output (and of its gradient dy). */
const lossShape = (s: LossSpec) => (s.reduction === 'none' ? [...s.labelShape] : []);

function checkDy(n: Node, s: LossSpec, dy: ValueType): void {
  if (dy.shape.join() !== lossShape(s).join()) throw new Error(`${n.op} '${n.name}': dy must be [${lossShape(s)}], got [${dy.shape}]`);
}

// ---------------------------------------------------------------------------------------------
// Reference (f64).

interface Positions {
  /** The label when it counts (not ignored, in range), else -1. */
  label: Int32Array;
  /** w_p (0 for positions that do not count). */
  w: Float64Array;
  /** u_p, the unweighted loss (0 for positions that do not count). */
  u: Float64Array;
}

const validLabel = (s: LossSpec, y: number) => y >= 0 && y < s.C && y !== s.ignore;

/** Row max and log Σ exp(x - max) along C at flat offset `base` (stride D). */
function lseParts(x: ArrayLike<number>, base: number, C: number, D: number): { m: number; ls: number } {
  let m = -Infinity;
  for (let c = 0; c < C; c++) m = Math.max(m, x[base + c * D]);
  let s = 0;
  for (let c = 0; c < C; c++) s += Math.exp(x[base + c * D] - m);
  return { m, ls: Math.log(s) };
}

const baseOf = (s: LossSpec, p: number) => Math.floor(p / s.D) * s.C * s.D + (p % s.D);

function positions(s: LossSpec, x: Tensor, labels: Tensor, weights: Tensor | undefined): Positions {
  const P = s.N * s.D;
  const out: Positions = { label: new Int32Array(P).fill(-1), w: new Float64Array(P), u: new Float64Array(P) };
  for (let p = 0; p < P; p++) {
    const y = labels.data[p];
    if (!validLabel(s, y)) continue;
    const base = baseOf(s, p);
    const xy = x.data[base + y * s.D];
    let u = -xy;
    if (s.kind === 'sce') {
      const { m, ls } = lseParts(x.data, base, s.C, s.D);
      u = m - xy + ls;
    }
    out.label[p] = y;
    out.w[p] = weights ? weights.data[y] : 1;
    out.u[p] = u;
  }
  return out;
}

const sum = (a: ArrayLike<number>) => {
  let t = 0;
  for (let i = 0; i < a.length; i++) t += a[i];
  return t;
};

/** Σ w_p u_p over the positions that carry weight (the loss of 'sum'). */
function weightedTotal(pos: Positions): number {
  let t = 0;
  for (let p = 0; p < pos.w.length; p++) if (pos.w[p] !== 0) t += pos.w[p] * pos.u[p];
  return t;
}

function lossValue(s: LossSpec, pos: Positions): Float32Array {
  if (s.reduction === 'none') return Float32Array.from(pos.w, (w, p) => (w === 0 ? 0 : w * pos.u[p]));
  const total = weightedTotal(pos);
  if (s.reduction === 'sum') return Float32Array.of(total);
  const W = sum(pos.w);
  return Float32Array.of(W === 0 ? NaN : total / W);
}

/** s_p / w_p of the gradient: dy_p, dy or dy / Σ w. */
function gradScale(s: LossSpec, dy: Tensor, pos: Positions): (p: number) => number {
  if (s.reduction === 'none') return (p) => dy.data[p];
  const k = s.reduction === 'sum' ? dy.data[0] : dy.data[0] / sum(pos.w);
  return () => k;
}

// ---------------------------------------------------------------------------------------------
// WGSL: helper functions shared by the kernels of one node, each defined (and its buffers
// bound) only when a kernel uses it, since pipelines use the 'auto' layout.

interface LossValues {
  x: string;
  labels: string;
  weights?: string;
  /** How x is loaded, by flat index (default: from its own buffer; a prologue: through a cast). */
  xAt?: (idx: string) => string;
}

function wgslLoss(w: KernelWriter, ctx: EmitCtx, s: LossSpec, v: LossValues) {
  const bind = (name: string) => w.bind(name, ctx.type(name).dtype, 'read');
  const xAt = (idx: string) => (v.xAt ? v.xAt(idx) : w.load(bind(v.x), idx));
  const { N, C, D } = s;
  const P = N * D;
  const label = () => {
    const l = bind(v.labels);
    const bad = [`y < 0`, `y >= ${C}`, ...(s.ignore !== undefined ? [`y == ${s.ignore}`] : [])].join(' || ');
    w.define(`// The label of position p when it counts (not ignored, in range), else -1.
fn loss_label(p: u32) -> i32 {
  let y = ${w.load(l, 'p')};
  if (${bad}) { return -1; }
  return y;
}
`);
    return 'loss_label';
  };
  const weight = () => {
    const lab = label();
    const wt = v.weights ? bind(v.weights) : undefined;
    w.define(`fn loss_weight(p: u32) -> f32 {
  let y = ${lab}(p);
  if (y < 0) { return 0.0; }
  return ${wt ? w.load(wt, 'u32(y)') : '1.0'};
}
`);
    return 'loss_weight';
  };
  /** (max, log Σ exp(x - max)) along C at flat offset `base`. */
  const lse = () => {
    const exp = wgslMath(w, 'mpc_exp');
    const log = wgslMath(w, 'mpc_log');
    const at = (c: string) => xAt(`base + ${c} * ${D}u`);
    w.define(`fn loss_lse(base: u32) -> vec2<f32> {
  var m = ${at('0u')};
  for (var c = 1u; c < ${C}u; c++) { m = max(m, ${at('c')}); }
  var s = 0.0;
  for (var c = 0u; c < ${C}u; c++) { s += ${exp}(${at('c')} - m); }
  return vec2<f32>(m, ${log}(s));
}
`);
    return 'loss_lse';
  };
  const base = () => {
    w.define(`fn loss_base(p: u32) -> u32 { return (p / ${D}u) * ${C * D}u + p % ${D}u; }\n`);
    return 'loss_base';
  };
  /** u_p for a position that counts. */
  const unweighted = () => {
    const lab = label();
    const b = base();
    const l = s.kind === 'sce' ? lse() : '';
    w.define(`fn loss_u(p: u32) -> f32 {
  let base = ${b}(p);
  let xy = ${xAt(`base + u32(${lab}(p)) * ${D}u`)};
${s.kind === 'sce' ? `  let ml = ${l}(base);\n  return (ml.x - xy) + ml.y;` : '  return -xy;'}
}
`);
    return 'loss_u';
  };
  const weightSum = () => {
    const wt = weight();
    w.define(`fn loss_weight_sum() -> f32 {
  var s = 0.0;
  for (var p = 0u; p < ${P}u; p++) { s += ${wt}(p); }
  return s;
}
`);
    return 'loss_weight_sum';
  };
  /** Σ_p w_p u_p and Σ_p w_p. */
  const totals = () => {
    const wt = weight();
    const u = unweighted();
    w.define(`fn loss_totals() -> vec2<f32> {
  var total = 0.0;
  var wsum = 0.0;
  for (var p = 0u; p < ${P}u; p++) {
    let w = ${wt}(p);
    if (w == 0.0) { continue; }
    total += w * ${u}(p);
    wsum += w;
  }
  return vec2<f32>(total, wsum);
}
`);
    return 'loss_totals';
  };
  const nan = () => {
    wgslMath(w, 'mpc_inf');
    return 'mpc_nan';
  };
  return { P, bind, label, weight, lse, base, unweighted, weightSum, totals, nan };
}

/** The loss output's kernel (both losses). */
function lossKernel(n: Node, ctx: EmitCtx, s: LossSpec) {
  const w = ctx.writer();
  const h = wgslLoss(w, ctx, s, { x: n.inputs[0], labels: n.inputs[1], weights: n.inputs[2] || undefined });
  let compute: string;
  let count = 1;
  if (s.reduction === 'none') {
    count = h.P;
    compute = `let w = ${h.weight()}(i);\nif (w == 0.0) { return 0.0; }\nreturn w * ${h.unweighted()}(i);`;
  } else {
    const t = `let t = ${h.totals()}();`;
    compute = s.reduction === 'sum' ? `${t}\nreturn t.x;` : `${t}\nif (t.y == 0.0) { return ${h.nan()}(); }\nreturn t.x / t.y;`;
  }
  return mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count, compute });
}

// ---------------------------------------------------------------------------------------------
// Rows.

/** The forward row of a loss: inputs (x, labels, weights?). */
function lossRow(op: string, kind: LossKind): OpRow {
  const sce = kind === 'sce';
  const spec = (n: Node, ins: (ValueType | undefined)[]) => lossSpec(n, kind, ins[0]!, ins[1]!, ins[2]);
  return {
    op,
    domain: '',
    opsets: [12, 22],
    precision: 'deny',
    dataInputs: [0, 2],
    arity: [2, 3],
    outputs: sce ? 2 : 1,
    infer: (n, ins) => {
      const s = spec(n, ins);
      if (ins[2] && ins[2].dtype !== ins[0].dtype) throw new Error(`${op} '${n.name}': weights are ${ins[2].dtype}, ${sce ? 'scores' : 'input'} ${ins[0].dtype}`);
      const out = [{ dtype: ins[0].dtype, shape: lossShape(s) }];
      if (sce) out.push({ dtype: ins[0].dtype, shape: [...ins[0].shape] });
      return out;
    },
    interp: (n, [x, l, wts], ctx) => {
      const s = lossSpec(n, kind, x, l, wts);
      const out: Tensor[] = [{ ...ctx.outTypes[0], data: lossValue(s, positions(s, x, l, wts)) }];
      if (sce && n.outputs[1]) {
        const lp = new Float32Array(x.data.length);
        for (let p = 0; p < s.N * s.D; p++) {
          const base = baseOf(s, p);
          const { m, ls } = lseParts(x.data, base, s.C, s.D);
          for (let c = 0; c < s.C; c++) lp[base + c * s.D] = x.data[base + c * s.D] - m - ls;
        }
        out.push({ ...ctx.outTypes[1], data: lp });
      }
      return out;
    },
    grad: (ctx: GradCtx) => {
      const [dy, dlp] = ctx.dy;
      const [x, l, wts] = ctx.node.inputs;
      const ins = wts ? [x, l, wts] : [x, l];
      const parts: string[] = [];
      if (dy) parts.push(ctx.emit(sce ? 'mpc.SoftmaxCrossEntropyGrad' : 'mpc.NegativeLogLikelihoodGrad', [dy, ...ins], { ...ctx.node.attrs })[0]);
      if (dlp) parts.push(ctx.emit('mpc.LogSoftmaxGrad', [dlp, ctx.node.outputs[1]], { axis: 1 })[0]);
      const dx = parts.length === 2 ? ctx.emit('Add', parts)[0] : parts[0];
      const dw = dy && wts ? ctx.emit('mpc.LossWeightGrad', [dy, x, l, wts], { ...ctx.node.attrs, loss: kind })[0] : undefined;
      return [dx, undefined, dw];
    },
    wgsl: (n, ctx) => {
      const s = lossSpec(n, kind, ctx.type(n.inputs[0]), ctx.type(n.inputs[1]), n.inputs[2] ? ctx.type(n.inputs[2]) : undefined);
      const kernels = [lossKernel(n, ctx, s)];
      if (sce && n.outputs[1]) {
        const w = ctx.writer('log_prob');
        const h = wgslLoss(w, ctx, s, { x: n.inputs[0], labels: n.inputs[1] });
        const x = h.bind(n.inputs[0]);
        const compute = `let ml = ${h.lse()}((i / ${s.C * s.D}u) * ${s.C * s.D}u + i % ${s.D}u);\nreturn (${w.load(x, 'i')} - ml.x) - ml.y;`;
        kernels.push(mapKernel(w, { out: n.outputs[1], outDtype: ctx.type(n.outputs[1]).dtype, count: sizeOf(ctx.type(n.inputs[0]).shape), compute }));
      }
      return kernels;
    },
  };
}

/** dx of a loss output: inputs (dy, x, labels, weights?). */
function lossGradRow(op: string, kind: LossKind): OpRow {
  const spec = (n: Node, ins: (ValueType | undefined)[]) => lossSpec(n, kind, ins[1]!, ins[2]!, ins[3]);
  return {
    op,
    domain: 'mpc',
    precision: 'deny',
    dataInputs: [0, 1, 3],
    arity: [3, 4],
    outputs: 1,
    // The scores may come through a prologue: f16 logits widened on load.
    prologue: [1],
    infer: (n, ins) => {
      checkDy(n, spec(n, ins), ins[0]);
      return [{ dtype: ins[1].dtype, shape: [...ins[1].shape] }];
    },
    interp: (n, [dy, x, l, wts], ctx) => {
      const s = lossSpec(n, kind, x, l, wts);
      const pos = positions(s, x, l, wts);
      const scale = gradScale(s, dy, pos);
      const out = new Float32Array(x.data.length);
      for (let p = 0; p < s.N * s.D; p++) {
        if (pos.w[p] === 0) continue;
        const k = pos.w[p] * scale(p);
        const base = baseOf(s, p);
        const y = pos.label[p];
        if (kind === 'nll') {
          out[base + y * s.D] = -k;
          continue;
        }
        const { m, ls } = lseParts(x.data, base, s.C, s.D);
        for (let c = 0; c < s.C; c++) out[base + c * s.D] = k * (Math.exp(x.data[base + c * s.D] - m - ls) - (c === y ? 1 : 0));
      }
      return [{ ...ctx.outTypes[0], data: out }];
    },
    wgsl: (n, ctx) => {
      const s = lossSpec(n, kind, ctx.type(n.inputs[1]), ctx.type(n.inputs[2]), n.inputs[3] ? ctx.type(n.inputs[3]) : undefined);
      const w = ctx.writer();
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      // NLL's gradient never reads the scores.
      const xAt = kind === 'sce' ? operandLoader(w, n, ctx, 1) : undefined;
      const h = wgslLoss(w, ctx, s, { x: n.inputs[1], labels: n.inputs[2], weights: n.inputs[3] || undefined, xAt });
      const { C, D } = s;
      const scale = s.reduction === 'none' ? w.load(dy, 'p') : s.reduction === 'sum' ? w.load(dy, '0u') : `${w.load(dy, '0u')} / ${h.weightSum()}()`;
      const head = `let c = (i / ${D}u) % ${C}u;
let p = (i / ${C * D}u) * ${D}u + i % ${D}u;
let w = ${h.weight()}(p);
if (w == 0.0) { return 0.0; }
let k = w * (${scale});
let hit = u32(${h.label()}(p)) == c;`;
      const outDtype = ctx.type(n.outputs[0]).dtype;
      if (kind === 'sce' && D === 1 && layoutOf(outDtype, ctx.target).perWord === 1) {
        // [positions, C] with one value per word: one invocation per position computes the
        // row's log-sum-exp and the reduction's scale once and writes the whole row (the
        // per-element kernel below recomputes both for every element: O(C + P) each).
        const out = w.bind(n.outputs[0], outDtype, 'read_write');
        const exp = wgslMath(w, 'mpc_exp');
        const rowScale = s.reduction === 'none' ? w.load(dy, 'p') : s.reduction === 'sum' ? w.load(dy, '0u') : `${w.load(dy, '0u')} / ${h.weightSum()}()`;
        const body = `let p = flat;
if (p >= ${s.N}u) { return; }
let base = p * ${C}u;
let wp = ${h.weight()}(p);
if (wp == 0.0) {
  for (var c = 0u; c < ${C}u; c++) { ${w.store(out, 'base + c', '0.0')} }
  return;
}
let k = wp * (${rowScale});
let y = u32(${h.label()}(p));
let ml = ${h.lse()}(base);
for (var c = 0u; c < ${C}u; c++) {
  let v = k * (${exp}((${xAt!('base + c')} - ml.x) - ml.y) - select(0.0, 1.0, y == c));
  ${w.store(out, 'base + c', 'v')}
}`;
        return [w.finish({ body, workgroupSize: [MAP_WORKGROUP, 1, 1], dispatch: dispatch1d(Math.ceil(s.N / MAP_WORKGROUP)) })];
      }
      const compute =
        kind === 'nll'
          ? `${head}\nreturn select(0.0, -k, hit);`
          : `${head}\nlet ml = ${h.lse()}(i - c * ${D}u);\nreturn k * (${wgslMath(w, 'mpc_exp')}((${xAt!('i')} - ml.x) - ml.y) - select(0.0, 1.0, hit));`;
      return [mapKernel(w, { out: n.outputs[0], outDtype, count: sizeOf(ctx.type(n.inputs[1]).shape), compute })];
    },
  };
}

/**
 * d loss / d weights[c], inputs (dy, x, labels, weights), attribute `loss` (sce | nll) besides
 * the loss's own: Σ over the counted positions with label c of dy_p u_p (none), dy u_p (sum) or
 * dy (u_p - L) / Σ w (mean, L the loss; NaN when Σ w = 0).
 */
const lossWeightGradRow: OpRow = {
  op: 'mpc.LossWeightGrad',
  domain: 'mpc',
  precision: 'deny',
  dataInputs: [0, 1, 3],
  arity: [4, 4],
  outputs: 1,
  infer: (n, [dy, x, l, wts]) => {
    checkDy(n, lossSpec(n, kindOf(n), x, l, wts), dy);
    return [{ dtype: wts.dtype, shape: [...wts.shape] }];
  },
  interp: (n, [dy, x, l, wts], ctx) => {
    const s = lossSpec(n, kindOf(n), x, l, wts);
    const pos = positions(s, x, l, wts);
    const out = new Float64Array(s.C);
    const W = sum(pos.w);
    const L = s.reduction === 'mean' ? weightedTotal(pos) / W : 0;
    for (let p = 0; p < pos.u.length; p++) {
      const y = pos.label[p];
      if (y >= 0) out[y] += s.reduction === 'none' ? dy.data[p] * pos.u[p] : pos.u[p] - L;
    }
    const k = s.reduction === 'none' ? 1 : s.reduction === 'sum' ? dy.data[0] : dy.data[0] / W;
    return [{ ...ctx.outTypes[0], data: Float32Array.from(out, (v) => (s.reduction === 'mean' && W === 0 ? NaN : v * k)) }];
  },
  wgsl: (n, ctx) => {
    const s = lossSpec(n, kindOf(n), ctx.type(n.inputs[1]), ctx.type(n.inputs[2]), ctx.type(n.inputs[3]));
    const w = ctx.writer();
    const h = wgslLoss(w, ctx, s, { x: n.inputs[1], labels: n.inputs[2], weights: n.inputs[3] });
    const dy = h.bind(n.inputs[0]);
    const lab = h.label();
    const u = h.unweighted();
    const lines = [`var acc = 0.0;`];
    if (s.reduction === 'mean') lines.unshift(`let t = ${h.totals()}();`, `if (t.y == 0.0) { return ${h.nan()}(); }`, `let l = t.x / t.y;`);
    const term = s.reduction === 'none' ? `${w.load(dy, 'p')} * ${u}(p)` : s.reduction === 'sum' ? `${u}(p)` : `(${u}(p) - l)`;
    lines.push(
      `for (var p = 0u; p < ${h.P}u; p++) {`,
      `  if (${lab}(p) != i32(i)) { continue; }`,
      `  acc += ${term};`,
      `}`,
      s.reduction === 'none' ? 'return acc;' : s.reduction === 'sum' ? `return ${w.load(dy, '0u')} * acc;` : `return ${w.load(dy, '0u')} * acc / t.y;`,
    );
    // The weights are bound by loss_weight only under 'mean'; the kernel reads them nowhere else.
    return [mapKernel(w, { out: n.outputs[0], outDtype: ctx.type(n.outputs[0]).dtype, count: s.C, compute: lines.join('\n') })];
  },
};

function kindOf(n: Node): LossKind {
  const k = attrString(n, 'loss');
  if (k !== 'sce' && k !== 'nll') throw new Error(`${n.op} '${n.name}': attribute loss must be sce or nll, got '${k}'`);
  return k;
}

export const lossOps: OpRow[] = [
  lossRow('SoftmaxCrossEntropyLoss', 'sce'),
  lossGradRow('mpc.SoftmaxCrossEntropyGrad', 'sce'),
  lossRow('NegativeLogLikelihoodLoss', 'nll'),
  lossGradRow('mpc.NegativeLogLikelihoodGrad', 'nll'),
  lossWeightGradRow,
  {
    // Mean squared error over all elements: mean((pred - target)^2).
    op: 'mpc.MeanSquaredError',
    domain: 'mpc',
    precision: 'deny',
    arity: [2, 2],
    outputs: 1,
    infer: (n, [p, t]) => {
      if (p.shape.join() !== t.shape.join()) throw new Error(`mse '${n.name}': prediction [${p.shape}] and target [${t.shape}] differ in shape`);
      return [{ dtype: p.dtype, shape: [] }];
    },
    interp: (_n, [p, t]) => {
      let s = 0;
      for (let i = 0; i < p.data.length; i++) s += (p.data[i] - t.data[i]) ** 2;
      return [{ dtype: p.dtype, shape: [], data: new Float32Array([s / p.data.length]) }];
    },
    grad: (ctx) => {
      const dy = ctx.dy[0];
      if (!dy) return [undefined, undefined];
      const [p, t] = ctx.node.inputs;
      // d/dt = -d/dp. Unused when the target is data (autodiff drops it), needed when the
      // target is computed from parameters.
      const dp = ctx.emit('mpc.MeanSquaredErrorGrad', [dy, p, t])[0];
      return [dp, ctx.emit('Neg', [dp])[0]];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const pt = ctx.type(n.inputs[0]);
      const count = sizeOf(pt.shape);
      const p = w.bind(n.inputs[0], pt.dtype, 'read');
      const t = w.bind(n.inputs[1], ctx.type(n.inputs[1]).dtype, 'read');
      return [
        mapKernel(w, {
          out: n.outputs[0],
          outDtype: ctx.type(n.outputs[0]).dtype,
          count: 1,
          compute: `var s = 0.0;\nfor (var k = 0u; k < ${count}u; k++) { let d = ${w.load(p, 'k')} - ${w.load(t, 'k')}; s += d * d; }\nreturn s / ${f32Lit(count)};`,
        }),
      ];
    },
  },
  {
    op: 'mpc.MeanSquaredErrorGrad',
    domain: 'mpc',
    precision: 'deny',
    arity: [3, 3],
    outputs: 1,
    infer: (_n, [, p]) => [{ dtype: p.dtype, shape: [...p.shape] }],
    interp: (_n, [dy, p, t]) => {
      const k = (2 * dy.data[0]) / p.data.length;
      return [{ dtype: p.dtype, shape: [...p.shape], data: Float32Array.from(p.data, (v, i) => k * (v - t.data[i])) }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const pt = ctx.type(n.inputs[1]);
      const count = sizeOf(pt.shape);
      const dy = w.bind(n.inputs[0], ctx.type(n.inputs[0]).dtype, 'read');
      const p = w.bind(n.inputs[1], pt.dtype, 'read');
      const t = w.bind(n.inputs[2], ctx.type(n.inputs[2]).dtype, 'read');
      return [
        mapKernel(w, {
          out: n.outputs[0],
          outDtype: pt.dtype,
          count,
          compute: `return (2.0 * ${w.load(dy, '0u')} / ${f32Lit(count)}) * (${w.load(p, 'i')} - ${w.load(t, 'i')});`,
        }),
      ];
    },
  },
];
