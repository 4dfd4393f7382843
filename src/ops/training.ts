// Internal ops of the training step: optimizer updates, the finite-gradient check and the
// dynamic loss scaler. All of them update training state in place on the device, so a
// step never needs a read-back to decide whether to skip.
//
// Hyperparameters live in a small f32 state buffer (`optim.hparams`) rather than in the
// WGSL text, so `mpc train --lr` changes them without recompiling.
import type { Node } from '../ir/graph.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { dispatch1d } from '../codegen/kernel.js';
import { f32Lit, MAP_WORKGROUP, type KernelWriter } from '../codegen/storage.js';
import { attrFloat, attrInt, type EmitCtx, type OpRow, type ValueType } from './types.js';

// Index of each hyperparameter in the `optim.hparams` buffer (the runtime's layout).
import { HPARAM, HPARAM_COUNT } from '../runtime/hparams.js';
export { HPARAM, HPARAM_COUNT };

/**
 * b^t for an integer step t by repeated squaring, every product rounded to f32: the GPU
 * runs the same sequence of multiplications (WGSL's pow is exp2(log2) and loses ~1e-4 of
 * the bias correction 1 - b2^t at small t).
 */
export function powIntF32(b: number, t: number): number {
  const f = Math.fround;
  let base = f(b);
  let r = 1;
  for (let e = t; e > 0; e = Math.floor(e / 2)) {
    if (e % 2 === 1) r = f(r * base);
    base = f(base * base);
  }
  return r;
}

const WGSL_POW_INT = `fn pow_int(b: f32, t: i32) -> f32 {
  var base = b;
  var r = 1.0;
  var e = t;
  loop {
    if (e <= 0) { break; }
    if ((e & 1) == 1) { r = r * base; }
    base = base * base;
    e = e >> 1u;
  }
  return r;
}
`;

const same = (t: ValueType): ValueType => ({ dtype: t.dtype, shape: [...t.shape] });
const isNonFinite = (v: number) => !Number.isFinite(v);
const skipped = (flag: Tensor | undefined) => flag !== undefined && flag.data[0] !== 0;

/** The end of every guarded step: a found-inf step is counted as skipped and the flag cleared. */
const countSkippedWgsl = (flag: string, skippedSteps: string) => `if (found) { ${skippedSteps}[0] = ${skippedSteps}[0] + 1; }\n${flag}[0] = 0;`;

/** WGSL test for inf/NaN on the bits (WGSL lets implementations assume floats are finite). */
/** Gradients one CheckFinite reads (with its flag: WebGPU's default 8 storage buffers per shader stage). */
export const CHECK_FINITE_GROUP = 7;

const WGSL_NONFINITE = 'fn non_finite(v: f32) -> bool { return (bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u; }\n';

/** Optional inputs shared by the optimizers: loss scale (to unscale) and found-inf flag (to skip). */
function scalerInputs(n: Node, first: number): { scale?: string; flag?: string } {
  return { scale: n.inputs[first] || undefined, flag: n.inputs[first + 1] || undefined };
}

function optimizerKernel(
  n: Node,
  ctx: EmitCtx,
  stateIdx: number[],
  first: number,
  update: (w: KernelWriter, b: Record<string, string>) => string,
) {
  const w = ctx.writer();
  const pt = ctx.type(n.inputs[0]);
  const count = sizeOf(pt.shape);
  const b: Record<string, string> = {};
  b.p = w.bind(n.inputs[0], pt.dtype, 'read_write');
  b.g = w.bind(n.inputs[1], ctx.type(n.inputs[1]).dtype, 'read');
  stateIdx.forEach((i, k) => (b[`s${k}`] = w.bind(n.inputs[i], ctx.type(n.inputs[i]).dtype, 'read_write')));
  const extra = n.inputs.slice(2 + stateIdx.length, first);
  extra.forEach((v, k) => (b[`x${k}`] = w.bind(v, ctx.type(v).dtype, 'read')));
  const { scale, flag } = scalerInputs(n, first);
  const lines = [`if (flat >= ${count}u) { return; }`];
  if (flag) lines.push(`if (${w.load(w.bind(flag, 'i32', 'read'), '0u')} != 0) { return; }`);
  lines.push(`var g = ${w.load(b.g, 'flat')};`);
  if (scale) lines.push(`g = g * (1.0 / ${w.load(w.bind(scale, 'f32', 'read'), '0u')});`);
  lines.push(update(w, b));
  return [w.finish({ body: lines.join('\n'), workgroupSize: [MAP_WORKGROUP, 1, 1], dispatch: dispatch1d(Math.ceil(count / MAP_WORKGROUP)) })];
}

function unscaled(g: Tensor, scale: Tensor | undefined): Float64Array {
  const inv = scale ? Math.fround(1 / scale.data[0]) : 1;
  return Float64Array.from(g.data, (v) => Math.fround(v * inv));
}

export const trainingOps: OpRow[] = [
  {
    // SGD with momentum (PyTorch semantics, dampening 0):
    //   g += wd * p;  m = momentum * m + g;  p -= lr * m.
    // inputs: p, g, m, hparams, [scale], [found_inf]   outputs: p', m'
    op: 'mpc.SGD',
    domain: 'mpc',
    precision: 'none',
    arity: [4, 6],
    outputs: 2,
    scalerInputs: { scale: 4, flag: 5 },
    alias: { pairs: [[0, 0], [1, 2]] },
    infer: (_n, [p, , m]) => [same(p), same(m)],
    interp: (_n, [p, g, m, hp, scale, flag]) => {
      if (skipped(flag)) return [p, m];
      const gs = unscaled(g, scale);
      const [lr, mu, wd] = [hp.data[HPARAM.lr], hp.data[HPARAM.momentum], hp.data[HPARAM.weightDecay]];
      const np = new Float32Array(p.data.length);
      const nm = new Float32Array(m.data.length);
      for (let i = 0; i < np.length; i++) {
        const gi = Math.fround(gs[i] + wd * p.data[i]);
        nm[i] = Math.fround(Math.fround(mu * m.data[i]) + gi);
        np[i] = Math.fround(p.data[i] - Math.fround(lr * nm[i]));
      }
      return [{ ...p, data: np }, { ...m, data: nm }];
    },
    wgsl: (n, ctx) =>
      optimizerKernel(n, ctx, [2], 4, (w, b) => {
        const hp = w.bind(n.inputs[3], 'f32', 'read');
        return [
          `let p = ${w.load(b.p, 'flat')};`,
          `g = g + ${w.load(hp, `${HPARAM.weightDecay}u`)} * p;`,
          `let m = ${w.load(hp, `${HPARAM.momentum}u`)} * ${w.load(b.s0, 'flat')} + g;`,
          w.store(b.s0, 'flat', 'm'),
          w.store(b.p, 'flat', `p - ${w.load(hp, `${HPARAM.lr}u`)} * m`),
        ].join('\n');
      }),
  },
  {
    // Adam / AdamW (attribute decoupled=1), PyTorch semantics:
    //   m = b1 m + (1-b1) g;  v = b2 v + (1-b2) g^2
    //   p -= (lr / (1 - b1^t)) * m / (sqrt(v) / sqrt(1 - b2^t) + eps)
    // Adam adds wd*p to g; AdamW multiplies p by (1 - lr*wd) first.
    // inputs: p, g, m, v, step, hparams, [scale], [found_inf]   outputs: p', m', v'
    op: 'mpc.Adam',
    domain: 'mpc',
    precision: 'none',
    arity: [6, 8],
    outputs: 3,
    scalerInputs: { scale: 6, flag: 7 },
    alias: { pairs: [[0, 0], [1, 2], [2, 3]] },
    infer: (_n, [p, , m, v]) => [same(p), same(m), same(v)],
    interp: (n, [p, g, m, v, step, hp, scale, flag]) => {
      if (skipped(flag)) return [p, m, v];
      const gs = unscaled(g, scale);
      const t = step.data[0];
      const f = Math.fround;
      const [lr, b1, b2, eps, wd] = [HPARAM.lr, HPARAM.beta1, HPARAM.beta2, HPARAM.eps, HPARAM.weightDecay].map((i) => hp.data[i]);
      const decoupled = attrInt(n, 'decoupled', 0) === 1;
      const bc1 = f(1 - powIntF32(b1, t));
      const bc2 = f(1 - powIntF32(b2, t));
      const stepSize = f(lr / bc1);
      const bc2Sqrt = f(Math.sqrt(bc2));
      const np = new Float32Array(p.data.length);
      const nm = new Float32Array(p.data.length);
      const nv = new Float32Array(p.data.length);
      for (let i = 0; i < np.length; i++) {
        let pi = p.data[i];
        let gi = gs[i];
        if (decoupled) pi = f(pi * f(1 - f(lr * wd)));
        else gi = f(gi + f(wd * pi));
        nm[i] = f(f(b1 * m.data[i]) + f(f(1 - b1) * gi));
        nv[i] = f(f(b2 * v.data[i]) + f(f(f(1 - b2) * gi) * gi));
        const denom = f(f(f(Math.sqrt(nv[i])) / bc2Sqrt) + eps);
        np[i] = f(pi - f(stepSize * f(nm[i] / denom)));
      }
      return [{ ...p, data: np }, { ...m, data: nm }, { ...v, data: nv }];
    },
    wgsl: (n, ctx) =>
      optimizerKernel(n, ctx, [2, 3], 6, (w, b) => {
        const step = w.bind(n.inputs[4], 'i32', 'read');
        const hp = w.bind(n.inputs[5], 'f32', 'read');
        const h = (k: number) => w.load(hp, `${k}u`);
        const decoupled = attrInt(n, 'decoupled', 0) === 1;
        w.define(WGSL_POW_INT);
        return [
          `let lr = ${h(HPARAM.lr)}; let b1 = ${h(HPARAM.beta1)}; let b2 = ${h(HPARAM.beta2)};`,
          `let eps = ${h(HPARAM.eps)}; let wd = ${h(HPARAM.weightDecay)};`,
          `let t = ${w.load(step, '0u')};`,
          `var p = ${w.load(b.p, 'flat')};`,
          decoupled ? 'p = p * (1.0 - lr * wd);' : 'g = g + wd * p;',
          `let m = b1 * ${w.load(b.s0, 'flat')} + (1.0 - b1) * g;`,
          `let v = b2 * ${w.load(b.s1, 'flat')} + (1.0 - b2) * g * g;`,
          `let step_size = lr / (1.0 - pow_int(b1, t));`,
          `let denom = sqrt(v) / sqrt(1.0 - pow_int(b2, t)) + eps;`,
          w.store(b.s0, 'flat', 'm'),
          w.store(b.s1, 'flat', 'v'),
          w.store(b.p, 'flat', 'p - step_size * (m / denom)'),
        ].join('\n');
      }),
  },
  {
    // flag' = flag | any(!isfinite(g1), ..., !isfinite(gk)), up to CHECK_FINITE_GROUP
    // gradients per node (one kernel over all their elements); chained over every gradient
    // before any update.
    op: 'mpc.CheckFinite',
    domain: 'mpc',
    precision: 'none',
    arity: [2, 1 + CHECK_FINITE_GROUP],
    outputs: 1,
    alias: { pairs: [[0, 0]] },
    infer: (_n, [flag]) => [same(flag)],
    interp: (_n, [flag, ...gs]) => {
      const bad = flag.data[0] !== 0 || gs.some((g) => g.data.some(isNonFinite));
      return [{ ...flag, data: new Int32Array([bad ? 1 : 0]) }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const flag = w.bind(n.inputs[0], 'i32', 'read_write');
      w.define(WGSL_NONFINITE);
      // One invocation per element of the gradients laid end to end.
      let start = 0;
      const tests = n.inputs.slice(1).map((v) => {
        const t = ctx.type(v);
        const g = w.bind(v, t.dtype, 'read');
        const from = start;
        start += sizeOf(t.shape);
        return `if (flat < ${start}u) { bad = non_finite(${w.load(g, from ? `flat - ${from}u` : 'flat')}); }`;
      });
      // Every writer stores the same value, so the race between invocations is benign.
      const body = `if (flat >= ${start}u) { return; }\nvar bad = false;\n${tests.join(' else ')}\nif (bad) { ${flag}[0] = 1; }`;
      return [w.finish({ body, workgroupSize: [MAP_WORKGROUP, 1, 1], dispatch: dispatch1d(Math.ceil(start / MAP_WORKGROUP)) })];
    },
  },
  {
    // GradScaler's update, run once at the end of a step; also counts skipped steps and
    // clears the flag for the next step.
    // inputs: scale f32[1], growth i32[1], found_inf i32[1], skipped i32[1]; outputs likewise.
    op: 'mpc.UpdateLossScale',
    domain: 'mpc',
    precision: 'none',
    arity: [4, 4],
    outputs: 4,
    alias: { pairs: [[0, 0], [1, 1], [2, 2], [3, 3]] },
    infer: (_n, ins) => ins.map(same),
    interp: (n, [scale, growth, flag, skippedSteps]) => {
      const found = flag.data[0] !== 0;
      const dynamic = attrInt(n, 'dynamic', 1) === 1;
      let s = scale.data[0];
      let gr = growth.data[0];
      if (dynamic) {
        if (found) {
          s = Math.fround(s * attrFloat(n, 'backoff_factor', 0.5));
          gr = 0;
        } else if (++gr >= attrInt(n, 'growth_interval', 2000)) {
          s = Math.fround(s * attrFloat(n, 'growth_factor', 2));
          gr = 0;
        }
      }
      return [
        { ...scale, data: new Float32Array([s]) },
        { ...growth, data: new Int32Array([gr]) },
        { ...flag, data: new Int32Array([0]) },
        { ...skippedSteps, data: new Int32Array([skippedSteps.data[0] + (found ? 1 : 0)]) },
      ];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const dynamic = attrInt(n, 'dynamic', 1) === 1;
      // Static scaling never touches the scale and the growth counter: bind them only when
      // dynamic, as a binding the body does not use is dropped from the 'auto' pipeline
      // layout and the bind group would no longer match it.
      const [s, gr, fl, sk] = n.inputs.map((v, i) => (dynamic || i >= 2 ? w.bind(v, i === 0 ? 'f32' : 'i32', 'read_write') : ''));
      const body = [
        'if (flat > 0u) { return; }',
        `let found = ${fl}[0] != 0;`,
        dynamic
          ? [
              `if (found) { ${s}[0] = ${s}[0] * ${f32Lit(attrFloat(n, 'backoff_factor', 0.5))}; ${gr}[0] = 0; }`,
              `else {`,
              `  ${gr}[0] = ${gr}[0] + 1;`,
              `  if (${gr}[0] >= ${attrInt(n, 'growth_interval', 2000)}) { ${s}[0] = ${s}[0] * ${f32Lit(attrFloat(n, 'growth_factor', 2))}; ${gr}[0] = 0; }`,
              `}`,
            ].join('\n')
          : '',
        countSkippedWgsl(fl, sk),
      ].join('\n');
      return [w.finish({ body, workgroupSize: [1, 1, 1], dispatch: [1, 1, 1] })];
    },
  },
  {
    // The end of a step without loss scaling (the scale is fixed at 1): counts a skipped
    // step and clears the found-inf flag, as UpdateLossScale does with a static scale.
    // inputs: found_inf i32[1], skipped i32[1]; outputs likewise.
    op: 'mpc.CountSkipped',
    domain: 'mpc',
    precision: 'none',
    arity: [2, 2],
    outputs: 2,
    alias: { pairs: [[0, 0], [1, 1]] },
    infer: (_n, ins) => ins.map(same),
    interp: (_n, [flag, skippedSteps]) => [
      { ...flag, data: new Int32Array([0]) },
      { ...skippedSteps, data: new Int32Array([skippedSteps.data[0] + (flag.data[0] !== 0 ? 1 : 0)]) },
    ],
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const [fl, sk] = n.inputs.map((v) => w.bind(v, 'i32', 'read_write'));
      const body = ['if (flat > 0u) { return; }', `let found = ${fl}[0] != 0;`, countSkippedWgsl(fl, sk)].join('\n');
      return [w.finish({ body, workgroupSize: [1, 1, 1], dispatch: [1, 1, 1] })];
    },
  },
  {
    // step' = step + 1 unless the step is skipped. inputs: step i32[1], [found_inf].
    op: 'mpc.StepCount',
    domain: 'mpc',
    precision: 'none',
    arity: [1, 2],
    outputs: 1,
    scalerInputs: { flag: 1 },
    alias: { pairs: [[0, 0]] },
    infer: (_n, [s]) => [same(s)],
    interp: (_n, [s, flag]) => [{ ...s, data: new Int32Array([s.data[0] + (skipped(flag) ? 0 : 1)]) }],
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const s = w.bind(n.inputs[0], 'i32', 'read_write');
      const cond = n.inputs[1] ? `if (${w.load(w.bind(n.inputs[1], 'i32', 'read'), '0u')} != 0) { return; }\n` : '';
      return [w.finish({ body: `if (flat > 0u) { return; }\n${cond}${s}[0] = ${s}[0] + 1;`, workgroupSize: [1, 1, 1], dispatch: [1, 1, 1] })];
    },
  },
];
