// Recurrent layers: ONNX LSTM, GRU and RNN. mpc compiles static shapes, so each node is
// lowered by the decompose pass (OpRow.decompose) into rows the table already has, unrolled
// over the sequence:
//   - the input projection of every time step at once: one Gemm [T*B, I] x W^T + (Wb + Rb);
//   - per step: the recurrent product as a Gemm whose C operand is that step's projection (the
//     addition happens in the GEMM's f32 epilogue), a Split into gates, the activations and
//     the cell's pointwise arithmetic;
//   - the outputs Y, Y_h, Y_c assembled with views, Concat and (layout 1) Transpose.
// Gradients through time, mixed precision (GEMMs in the policy's low type, pointwise ops
// following), fusion and memory planning then come from those rows. The rows' `interp` is an
// independent reference loop in f64 (the oracle of the decomposition in the tests); they have
// no gradient rule or WGSL kernel, since nothing after the decompose pass sees them.
//
// Gate order (ONNX): LSTM i o f c, GRU z r h. sequence_lens is supported only when it is a
// constant whose entries all equal the sequence length (the unrolled graph has one length).
import { isFloat, type DType } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { scalar, sizeOf, type Tensor } from '../ir/tensor.js';
import { hasOp } from './table.js';
import { attrFloat, attrInt, attrString, type DecomposeCtx, type OpRow, type ValueType } from './types.js';

type Cell = 'LSTM' | 'GRU' | 'RNN';
const GATES: Record<Cell, number> = { LSTM: 4, GRU: 3, RNN: 1 };
const DEFAULT_ACTS: Record<Cell, string[]> = { LSTM: ['Sigmoid', 'Tanh', 'Tanh'], GRU: ['Sigmoid', 'Tanh'], RNN: ['Tanh'] };

/** The activation functions of the ONNX recurrent ops: f64 reference, which attributes they take. */
const ACTIVATIONS: Record<string, { f: (x: number, a: number, b: number) => number; alpha?: number; beta?: number }> = {
  Relu: { f: (x) => Math.max(x, 0) },
  Tanh: { f: (x) => Math.tanh(x) },
  Sigmoid: { f: (x) => 1 / (1 + Math.exp(-x)) },
  Affine: { f: (x, a, b) => a * x + b, alpha: 1, beta: 0 },
  LeakyRelu: { f: (x, a) => (x >= 0 ? x : a * x), alpha: 0.01 },
  ThresholdedRelu: { f: (x, a) => (x > a ? x : 0), alpha: 1 },
  ScaledTanh: { f: (x, a, b) => a * Math.tanh(b * x), alpha: 1, beta: 1 },
  HardSigmoid: { f: (x, a, b) => Math.max(0, Math.min(1, a * x + b)), alpha: 0.2, beta: 0.5 },
  Elu: { f: (x, a) => (x >= 0 ? x : a * (Math.exp(x) - 1)), alpha: 1 },
  Softsign: { f: (x) => x / (1 + Math.abs(x)) },
  Softplus: { f: (x) => (x > 0 ? x + Math.log1p(Math.exp(-x)) : Math.log1p(Math.exp(x))) },
};

interface Act {
  name: string;
  alpha: number;
  beta: number;
}

interface Config {
  cell: Cell;
  /** Per direction: true when it runs backwards in time. */
  reverse: boolean[];
  T: number;
  B: number;
  I: number;
  H: number;
  layout: number;
  /** Activations of each direction (LSTM f g h, GRU f g, RNN f). */
  acts: Act[][];
  clip?: number;
  inputForget: boolean;
  linearBeforeReset: boolean;
  dtype: DType;
}

function fail(n: Node, msg: string): never {
  throw new Error(`${n.op} '${n.name}': ${msg}`);
}

function stringsAttr(n: Node, key: string): string[] | undefined {
  const v = n.attrs[key];
  if (v === undefined) return undefined;
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'string')) fail(n, `attribute ${key} must be a list of strings`);
  return v as string[];
}

function floatsAttr(n: Node, key: string): number[] {
  const v = n.attrs[key];
  if (v === undefined) return [];
  if (!Array.isArray(v) || v.some((s) => typeof s !== 'number')) fail(n, `attribute ${key} must be a list of floats`);
  return v as number[];
}

/** The activation lists; alpha and beta values are consumed in order by the functions that take them. */
function activations(n: Node, cell: Cell, D: number): Act[][] {
  const per = DEFAULT_ACTS[cell].length;
  const names = stringsAttr(n, 'activations') ?? Array.from({ length: D }, () => DEFAULT_ACTS[cell]).flat();
  if (names.length !== per * D) fail(n, `${names.length} activations given, ${per * D} expected (${per} per direction)`);
  const alphas = floatsAttr(n, 'activation_alpha');
  const betas = floatsAttr(n, 'activation_beta');
  let ia = 0;
  let ib = 0;
  const acts = names.map((raw): Act => {
    const name = Object.keys(ACTIVATIONS).find((k) => k.toLowerCase() === raw.toLowerCase());
    if (!name) fail(n, `unknown activation '${raw}' (known: ${Object.keys(ACTIVATIONS).join(', ')})`);
    const spec = ACTIVATIONS[name];
    const alpha = spec.alpha === undefined ? 0 : ia < alphas.length ? alphas[ia++] : spec.alpha;
    const beta = spec.beta === undefined ? 0 : ib < betas.length ? betas[ib++] : spec.beta;
    return { name, alpha, beta };
  });
  return Array.from({ length: D }, (_, d) => acts.slice(d * per, (d + 1) * per));
}

function expectShape(n: Node, what: string, t: ValueType | undefined, shape: number[]): void {
  if (t && t.shape.join() !== shape.join()) fail(n, `${what} must be [${shape}], got [${t.shape}]`);
}

/** Checks every input's shape against X, W, R and the attributes. */
function configOf(cell: Cell, n: Node, ins: (ValueType | undefined)[]): Config {
  const [x, w, r, b, seq, h0, c0, p] = ins;
  if (!x || !w || !r) fail(n, 'X, W and R are required');
  if (!isFloat(x.dtype)) fail(n, `X must be a float tensor, got ${x.dtype}`);
  for (const [what, t] of [['W', w], ['R', r], ['B', b], ['initial_h', h0], ['initial_c', c0], ['P', p]] as const)
    if (t && t.dtype !== x.dtype) fail(n, `${what} is ${t.dtype}, X is ${x.dtype}`);
  const dir = attrString(n, 'direction', 'forward');
  if (dir !== 'forward' && dir !== 'reverse' && dir !== 'bidirectional') fail(n, `direction '${dir}' is not forward, reverse or bidirectional`);
  const reverse = dir === 'bidirectional' ? [false, true] : [dir === 'reverse'];
  const D = reverse.length;
  const layout = attrInt(n, 'layout', 0);
  if (layout !== 0 && layout !== 1) fail(n, `layout must be 0 or 1, got ${layout}`);
  if (x.shape.length !== 3) fail(n, `X must be 3-D, got [${x.shape}]`);
  const [T, B] = layout === 0 ? [x.shape[0], x.shape[1]] : [x.shape[1], x.shape[0]];
  const I = x.shape[2];
  if (r.shape.length !== 3) fail(n, `R must be 3-D, got [${r.shape}]`);
  const H = r.shape[2];
  if (n.attrs.hidden_size !== undefined && attrInt(n, 'hidden_size') !== H) fail(n, `hidden_size ${attrInt(n, 'hidden_size')} but R is [${r.shape}]`);
  const G = GATES[cell];
  expectShape(n, 'W', w, [D, G * H, I]);
  expectShape(n, 'R', r, [D, G * H, H]);
  expectShape(n, 'B', b, [D, 2 * G * H]);
  if (seq && (seq.shape.join() !== `${B}` || isFloat(seq.dtype))) fail(n, `sequence_lens must be an integer [${B}], got ${seq.dtype}[${seq.shape}]`);
  const state = layout === 0 ? [D, B, H] : [B, D, H];
  expectShape(n, 'initial_h', h0, state);
  if (cell === 'LSTM') {
    expectShape(n, 'initial_c', c0, state);
    expectShape(n, 'P', p, [D, 3 * H]);
  }
  if (T < 1) fail(n, 'the sequence is empty');
  const clip = n.attrs.clip === undefined ? undefined : attrFloat(n, 'clip');
  if (clip !== undefined && !(clip > 0)) fail(n, `clip must be positive, got ${clip}`);
  return {
    cell,
    reverse,
    T,
    B,
    I,
    H,
    layout,
    acts: activations(n, cell, D),
    clip,
    inputForget: cell === 'LSTM' && attrInt(n, 'input_forget', 0) === 1,
    linearBeforeReset: cell === 'GRU' && attrInt(n, 'linear_before_reset', 0) === 1,
    dtype: x.dtype,
  };
}

/** sequence_lens must be absent or a constant equal to T everywhere. */
function checkSeqLens(n: Node, c: Config, t: Tensor | undefined, given: boolean): void {
  if (!given) return;
  if (!t) fail(n, 'sequence_lens must be a constant (mpc unrolls the recurrence over one static length)');
  const bad = Array.from(t.data).find((v) => v !== c.T);
  if (bad !== undefined) fail(n, `sequence_lens [${Array.from(t.data)}] differs from the sequence length ${c.T}: only full-length sequences are supported`);
}

function outTypes(c: Config): ValueType[] {
  const D = c.reverse.length;
  const y = c.layout === 0 ? [c.T, D, c.B, c.H] : [c.B, c.T, D, c.H];
  const s = c.layout === 0 ? [D, c.B, c.H] : [c.B, D, c.H];
  const outs = [{ dtype: c.dtype, shape: y }, { dtype: c.dtype, shape: s }];
  if (c.cell === 'LSTM') outs.push({ dtype: c.dtype, shape: s });
  return outs;
}

// ---------------------------------------------------------------------------------------------
// Reference loop (f64).

function reference(cell: Cell, n: Node, ins: (Tensor | undefined)[]): Tensor[] {
  const c = configOf(cell, n, ins.map((t) => (t ? { dtype: t.dtype, shape: t.shape } : undefined)));
  checkSeqLens(n, c, ins[4], Boolean(n.inputs[4]));
  const [X, W, R, Bias, , H0, C0, P] = ins;
  const { T, B, I, H } = c;
  const D = c.reverse.length;
  const G = GATES[cell];
  const [ty, ts] = outTypes(c);
  const Y = new Float64Array(sizeOf(ty.shape));
  const Yh = new Float64Array(sizeOf(ts.shape));
  const Yc = new Float64Array(sizeOf(ts.shape));
  const xAt = (t: number, b: number, i: number) => X!.data[(c.layout === 0 ? t * B + b : b * T + t) * I + i];
  const stateAt = (d: number, b: number) => (c.layout === 0 ? d * B + b : b * D + d) * H;
  const yAt = (t: number, d: number, b: number) => (c.layout === 0 ? (t * D + d) * B + b : (b * T + t) * D + d) * H;
  const clip = (v: number) => (c.clip === undefined ? v : Math.min(c.clip, Math.max(-c.clip, v)));
  for (let d = 0; d < D; d++) {
    // The clip bounds the gates' pre-activations (not the cell state under LSTM's h).
    const act = c.acts[d].map((a, k) => (v: number) => ACTIVATIONS[a.name].f(cell === 'LSTM' && k === 2 ? v : clip(v), a.alpha, a.beta));
    const w = (row: number, i: number) => W!.data[(d * G * H + row) * I + i];
    const r = (row: number, k: number) => R!.data[(d * G * H + row) * H + k];
    const wb = (row: number) => (Bias ? Bias.data[d * 2 * G * H + row] : 0);
    const rb = (row: number) => (Bias ? Bias.data[d * 2 * G * H + G * H + row] : 0);
    for (let b = 0; b < B; b++) {
      const h = new Float64Array(H);
      const cs = new Float64Array(H);
      if (H0) for (let j = 0; j < H; j++) h[j] = H0.data[stateAt(d, b) + j];
      if (C0) for (let j = 0; j < H; j++) cs[j] = C0.data[stateAt(d, b) + j];
      for (let s = 0; s < T; s++) {
        const t = c.reverse[d] ? T - 1 - s : s;
        // xw[g*H + j] = W x + Wb; rh[g*H + j] = R h + Rb.
        const xw = new Float64Array(G * H);
        const rh = new Float64Array(G * H);
        for (let row = 0; row < G * H; row++) {
          let sx = wb(row);
          for (let i = 0; i < I; i++) sx += w(row, i) * xAt(t, b, i);
          let sh = rb(row);
          for (let k = 0; k < H; k++) sh += r(row, k) * h[k];
          xw[row] = sx;
          rh[row] = sh;
        }
        const next = new Float64Array(H);
        if (cell === 'RNN') for (let j = 0; j < H; j++) next[j] = act[0](xw[j] + rh[j]);
        else if (cell === 'GRU') {
          const z = new Float64Array(H);
          const rr = new Float64Array(H);
          for (let j = 0; j < H; j++) {
            z[j] = act[0](xw[j] + rh[j]);
            rr[j] = act[0](xw[H + j] + rh[H + j]);
          }
          for (let j = 0; j < H; j++) {
            let pre: number;
            if (c.linearBeforeReset) pre = xw[2 * H + j] + rr[j] * rh[2 * H + j];
            else {
              let s2 = rb(2 * H + j);
              for (let k = 0; k < H; k++) s2 += r(2 * H + j, k) * rr[k] * h[k];
              pre = xw[2 * H + j] + s2;
            }
            const hh = act[1](pre);
            next[j] = (1 - z[j]) * hh + z[j] * h[j];
          }
        } else {
          const p = (g: number, j: number) => (P ? P.data[d * 3 * H + g * H + j] : 0);
          for (let j = 0; j < H; j++) {
            const pre = (g: number) => xw[g * H + j] + rh[g * H + j];
            const i = act[0](pre(0) + p(0, j) * cs[j]);
            const f = c.inputForget ? 1 - i : act[0](pre(2) + p(2, j) * cs[j]);
            const g = act[1](pre(3));
            const cn = f * cs[j] + i * g;
            const o = act[0](pre(1) + p(1, j) * cn);
            cs[j] = cn;
            next[j] = o * act[2](cn);
          }
        }
        h.set(next);
        Y.set(h, yAt(t, d, b));
      }
      Yh.set(h, stateAt(d, b));
      Yc.set(cs, stateAt(d, b));
    }
  }
  const outs: Tensor[] = [
    { dtype: c.dtype, shape: ty.shape, data: Float32Array.from(Y) },
    { dtype: c.dtype, shape: ts.shape, data: Float32Array.from(Yh) },
  ];
  if (cell === 'LSTM') outs.push({ dtype: c.dtype, shape: ts.shape, data: Float32Array.from(Yc) });
  return outs;
}

// ---------------------------------------------------------------------------------------------
// Lowering.

/** Small builders over DecomposeCtx. */
function builder(ctx: DecomposeCtx, dtype: DType) {
  const emit1 = (op: string, inputs: string[], attrs = {}) => ctx.emit(op, inputs, attrs)[0];
  const view = (v: string, shape: number[]) => (ctx.type(v).shape.join() === shape.join() ? v : emit1('mpc.View', [v], { shape }));
  const k = (v: number) => ctx.constant(scalar(dtype, v));
  return {
    emit1,
    view,
    k,
    transpose: (v: string, perm: number[]) => emit1('Transpose', [v], { perm }),
    split: (v: string, axis: number, sizes: number[]) => (sizes.length === 1 ? [v] : ctx.emit('Split', [v], { axis, split: sizes }, sizes.length)),
    concat: (vs: string[], axis: number) => (vs.length === 1 ? vs[0] : emit1('Concat', vs, { axis })),
    add: (a: string, b: string) => emit1('Add', [a, b]),
    sub: (a: string, b: string) => emit1('Sub', [a, b]),
    mul: (a: string, b: string) => emit1('Mul', [a, b]),
    /** a · bᵀ (+ c): b is a weight [N, K]. */
    gemmT: (a: string, b: string, c?: string) => emit1('Gemm', c ? [a, b, c] : [a, b], { transB: 1 }),
  };
}

type Builder = ReturnType<typeof builder>;

/** Rows the table may or may not hold (activation functions of their own module). */
function needRow(n: Node, op: string, why: string): string {
  if (!hasOp(op)) fail(n, `${why} needs the ${op} op, which the op table lacks`);
  return op;
}

function applyAct(n: Node, b: Builder, a: Act, x: string): string {
  switch (a.name) {
    case 'Sigmoid':
    case 'Tanh':
    case 'Relu':
    case 'Softplus':
      return b.emit1(a.name, [x]);
    case 'LeakyRelu':
      return b.emit1('LeakyRelu', [x], { alpha: a.alpha });
    case 'Affine':
      return b.add(b.mul(x, b.k(a.alpha)), b.k(a.beta));
    case 'ScaledTanh':
      return b.mul(b.emit1('Tanh', [b.mul(x, b.k(a.beta))]), b.k(a.alpha));
    case 'HardSigmoid':
      return b.emit1(needRow(n, 'HardSigmoid', 'activation HardSigmoid'), [x], { alpha: a.alpha, beta: a.beta });
    case 'Elu':
    case 'ThresholdedRelu':
      return b.emit1(needRow(n, a.name, `activation ${a.name}`), [x], { alpha: a.alpha });
    case 'Softsign':
      return b.emit1(needRow(n, 'Softsign', 'activation Softsign'), [x]);
    default:
      fail(n, `activation ${a.name} is not lowered`);
  }
}

/** The activation of a gate's pre-activation value, after the cell clip when there is one. */
function gate(n: Node, b: Builder, c: Config, a: Act, x: string): string {
  if (c.clip !== undefined) {
    // clip(x) = x > c ? c : (x < -c ? -c : x): exact, with the selects' own gradient rules.
    const hi = b.k(c.clip);
    const lo = b.k(-c.clip);
    const low = b.emit1('Where', [b.emit1('Less', [x, lo]), lo, x]);
    x = b.emit1('Where', [b.emit1('Greater', [x, hi]), hi, low]);
  }
  return applyAct(n, b, a, x);
}

function decomposeRecurrent(cell: Cell, ctx: DecomposeCtx): string[] {
  const n = ctx.node;
  const ins = n.inputs.map((v) => (v ? ctx.type(v) : undefined));
  const c = configOf(cell, n, ins);
  checkSeqLens(n, c, n.inputs[4] ? ctx.constValue(n.inputs[4]) : undefined, Boolean(n.inputs[4]));
  const [X, W, R, Bias, , H0, C0, P] = n.inputs;
  const b = builder(ctx, c.dtype);
  const { T, B, I, H } = c;
  const D = c.reverse.length;
  const G = GATES[cell];

  // Time-major rows of X, and each direction's slice of the per-direction inputs.
  const xRows = b.view(c.layout === 0 ? X : b.transpose(X, [1, 0, 2]), [T * B, I]);
  const perDir = (v: string | undefined, shape: number[]) => (v ? b.split(v, 0, Array(D).fill(1)).map((p) => b.view(p, shape)) : undefined);
  const stateMajor = (v: string | undefined) => (v && c.layout === 1 ? b.transpose(v, [1, 0, 2]) : v);
  const Ws = perDir(W, [G * H, I])!;
  const Rs = perDir(R, [G * H, H])!;
  const Bs = perDir(Bias || undefined, [2 * G * H]);
  const H0s = perDir(stateMajor(H0 || undefined), [B, H]);
  const C0s = cell === 'LSTM' ? perDir(stateMajor(C0 || undefined), [B, H]) : undefined;
  const Ps = cell === 'LSTM' ? perDir(P || undefined, [3 * H]) : undefined;

  const ys: string[] = []; // per direction: [T, 1, B, H]
  const hs: string[] = []; // per direction: [1, B, H]
  const cs: string[] = [];
  for (let d = 0; d < D; d++) {
    const acts = c.acts[d];
    // Bias of the input projection; GRU with linear_before_reset keeps Rb_h inside the reset product.
    let xBias: string | undefined;
    let rbh: string | undefined;
    if (Bs) {
      const [wb, rb] = b.split(Bs[d], 0, [G * H, G * H]);
      if (cell === 'GRU' && c.linearBeforeReset) {
        const [rbzr, rbhh] = b.split(rb, 0, [2 * H, H]);
        const [wbzr, wbh] = b.split(wb, 0, [2 * H, H]);
        xBias = b.concat([b.add(wbzr, rbzr), wbh], 0);
        rbh = rbhh;
      } else xBias = b.add(wb, rb);
    }
    const xw = b.gemmT(xRows, Ws[d], xBias); // [T*B, G*H]
    const steps = b.split(b.view(xw, [T, B * G * H]), 0, Array(T).fill(1)).map((s) => b.view(s, [B, G * H]));
    const [Rzr, Rh] = cell === 'GRU' ? b.split(Rs[d], 0, [2 * H, H]) : [];
    const P3 = Ps ? b.split(Ps[d], 0, [H, H, H]) : undefined; // i o f
    let h = H0s?.[d];
    let cc = C0s?.[d];
    const out: string[] = new Array<string>(T);
    for (let s = 0; s < T; s++) {
      const t = c.reverse[d] ? T - 1 - s : s;
      const x = steps[t];
      if (cell === 'RNN') {
        h = gate(n, b, c, acts[0], h ? b.gemmT(h, Rs[d], x) : x);
      } else if (cell === 'LSTM') {
        const pre = h ? b.gemmT(h, Rs[d], x) : x;
        let [pi, po, pf, pc] = b.split(pre, 1, [H, H, H, H]);
        if (P3 && cc) {
          pi = b.add(pi, b.mul(cc, P3[0]));
          pf = b.add(pf, b.mul(cc, P3[2]));
        }
        const i = gate(n, b, c, acts[0], pi);
        const g = gate(n, b, c, acts[1], pc);
        const ig = b.mul(i, g);
        // The forget gate only matters with a previous cell state (zero otherwise).
        if (cc) cc = b.add(b.mul(c.inputForget ? b.sub(b.k(1), i) : gate(n, b, c, acts[0], pf), cc), ig);
        else cc = ig;
        if (P3) po = b.add(po, b.mul(cc, P3[1]));
        const o = gate(n, b, c, acts[0], po);
        h = b.mul(o, applyAct(n, b, acts[2], cc));
      } else {
        const [xzr, xh] = b.split(x, 1, [2 * H, H]);
        const [z, r] = b.split(gate(n, b, c, acts[0], h ? b.gemmT(h, Rzr, xzr) : xzr), 1, [H, H]);
        let preH: string;
        if (!c.linearBeforeReset) preH = h ? b.gemmT(b.mul(r, h), Rh, xh) : xh;
        else {
          const hr = h ? b.gemmT(h, Rh, rbh) : rbh;
          preH = hr ? b.add(xh, b.mul(r, hr)) : xh;
        }
        const hh = gate(n, b, c, acts[1], preH);
        // (1 - z) hh + z h = hh + z (h - hh)
        h = h ? b.add(hh, b.mul(z, b.sub(h, hh))) : b.sub(hh, b.mul(z, hh));
      }
      out[t] = h;
    }
    if (n.outputs[0]) ys.push(b.view(b.concat(out.map((v) => b.view(v, [1, B, H])), 0), [T, 1, B, H]));
    hs.push(b.view(h!, [1, B, H]));
    if (cc) cs.push(b.view(cc, [1, B, H]));
  }

  const results: string[] = [];
  if (n.outputs[0]) {
    const y = b.concat(ys, 1); // [T, D, B, H]
    results[0] = c.layout === 0 ? y : b.transpose(y, [2, 0, 1, 3]);
  } else results[0] = '';
  const state = (vs: string[]) => {
    const v = b.concat(vs, 0); // [D, B, H]
    return c.layout === 0 ? v : b.transpose(v, [1, 0, 2]);
  };
  results[1] = n.outputs[1] ? state(hs) : '';
  if (cell === 'LSTM') results[2] = n.outputs[2] ? state(cs) : '';
  return results;
}

function recurrentRow(cell: Cell): OpRow {
  return {
    op: cell,
    domain: '',
    opsets: [7, 22],
    // As PRECISION.md classes them; the decomposition's own rows carry the real decisions
    // (gate GEMMs allow, pointwise ops follow).
    precision: 'allow',
    dataInputs: [0, 1, 2, 3, 5, 6, 7],
    arity: [3, cell === 'LSTM' ? 8 : 6],
    outputs: cell === 'LSTM' ? 3 : 2,
    infer: (n, ins, consts) => {
      const c = configOf(cell, n, ins);
      if (n.inputs[4] && consts[4]) checkSeqLens(n, c, consts[4], true);
      return outTypes(c);
    },
    // Omitted outputs ('') get a placeholder scalar, as their slot's type says.
    interp: (n, ins) => reference(cell, n, ins).slice(0, n.outputs.length).map((t, k) => (n.outputs[k] ? t : { dtype: t.dtype, shape: [], data: new Float32Array(1) })),
    decompose: (ctx) => decomposeRecurrent(cell, ctx),
  };
}

export const recurrentOps: OpRow[] = [recurrentRow('LSTM'), recurrentRow('GRU'), recurrentRow('RNN')];
