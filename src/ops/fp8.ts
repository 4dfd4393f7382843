// fp8 with per-tensor scaling (Transformer Engine's recipe): the statistics of a tensor,
// its quantization with a scale, and the scale update from an amax history.
//
//   stats = Fp8Stats(x, scale)        [amax, saturated fraction, flushed fraction, scale used]
//   q, sinv = QuantizeFp8(x, stats)   q = fp8(x * s) (saturating), sinv = 1 / s
//   history', scale' = UpdateFp8Scale(history, scale, stats)   after the step
//
// Delayed scaling uses the scale from earlier steps (the state); current scaling derives it
// from this tensor's own amax inside Fp8Stats. scale = (fp8_max / amax) / 2^margin; a zero
// or non-finite amax, or a non-finite result, keeps the previous scale.
import { encode, floatInfo, fromOnnx, type DType, type FloatDType } from '../ir/dtypes.js';
import type { Node } from '../ir/graph.js';
import { sizeOf, type Tensor } from '../ir/tensor.js';
import { f32Lit, mapKernel, type KernelWriter } from '../codegen/storage.js';
import type { Kernel } from '../codegen/kernel.js';
import { attrInt, attrString, type EmitCtx, type OpRow, type StoreTail, type ValueType } from './types.js';

export const FP8_STATS = 4;
const WG = 256;
const NAN_FROM_RUNTIME = 'var nan_bits = 0x7fc00000u; // a NaN from a runtime value (a NaN const-expression is a WGSL compile error)';

function format(n: Node): FloatDType {
  const d = fromOnnx(attrInt(n, 'to'));
  if (d !== 'f8e4m3fn' && d !== 'f8e5m2') throw new Error(`${n.op} '${n.name}': format must be an fp8 type, got ${d}`);
  return d;
}

/** The scale from an amax, or `prev` when the amax (or the result) is unusable. */
export function scaleFromAmax(amax: number, fmax: number, margin: number, prev: number): number {
  if (!(amax > 0) || !Number.isFinite(amax)) return prev;
  const s = Math.fround(Math.fround(fmax / amax) / Math.fround(2 ** margin));
  return Number.isFinite(s) && s > 0 ? s : prev;
}

const WGSL_SCALE_FROM_AMAX = (fmax: number, margin: number) => `fn scale_from_amax(amax: f32, prev: f32) -> f32 {
  let ab = bitcast<u32>(amax);
  if (!(amax > 0.0) || (ab & 0x7f800000u) == 0x7f800000u) { return prev; }
  let s = (${f32Lit(fmax)} / amax) / ${f32Lit(2 ** margin)};
  if ((bitcast<u32>(s) & 0x7f800000u) == 0x7f800000u || !(s > 0.0)) { return prev; }
  return s;
}
`;

function statsRef(x: ArrayLike<number>, fmt: FloatDType, s: number): [number, number] {
  let sat = 0;
  let flush = 0;
  const fmax = floatInfo(fmt).maxFinite;
  const zeroMask = (1 << (floatInfo(fmt).bits - 1)) - 1;
  for (let i = 0; i < x.length; i++) {
    const v = Math.fround(x[i] * s);
    if (Math.abs(v) > fmax) sat++;
    else if (x[i] !== 0 && (encode(fmt, v) & zeroMask) === 0) flush++;
  }
  return [sat / Math.max(x.length, 1), flush / Math.max(x.length, 1)];
}

/** Statistics a quantizer can measure as it quantizes: delayed scaling (the scale is known first), the same tensor and format. */
function acceptsStats(p: Node, n: Node): boolean {
  return p.op === 'mpc.Fp8Stats' && attrInt(p, 'current', 0) === 0 && p.inputs[0] === n.inputs[0] && attrInt(p, 'to') === attrInt(n, 'to');
}

export const fp8Ops: OpRow[] = [
  {
    // inputs: x, scale f32[1]; attrs: to (fp8 ONNX type), current (0|1), margin
    op: 'mpc.Fp8Stats',
    domain: 'mpc',
    precision: 'none',
    arity: [2, 2],
    outputs: 1,
    infer: () => [{ dtype: 'f32', shape: [FP8_STATS] }],
    interp: (n, [x, scale]) => {
      const fmt = format(n);
      let amax = 0;
      let bad = false;
      for (const v of x.data) {
        if (!Number.isFinite(v)) bad = true;
        else amax = Math.max(amax, Math.abs(v));
      }
      if (bad) amax = NaN;
      const s = attrInt(n, 'current', 0) === 1 ? scaleFromAmax(amax, floatInfo(fmt).maxFinite, attrInt(n, 'margin', 0), scale.data[0]) : scale.data[0];
      const [sat, flush] = statsRef(x.data, fmt, s);
      return [{ dtype: 'f32', shape: [FP8_STATS], data: new Float32Array([amax, sat, flush, s]) }];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const fmt = format(n);
      const fi = floatInfo(fmt);
      const xt = ctx.type(n.inputs[0]);
      const count = sizeOf(xt.shape);
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const sc = w.bind(n.inputs[1], 'f32', 'read');
      const out = w.bind(n.outputs[0], 'f32', 'read_write');
      const toBits = w.use(`to_bits_${fmt}`);
      w.define(`var<workgroup> red_f: array<f32, ${WG}>;\nvar<workgroup> red_a: array<u32, ${WG}>;\nvar<workgroup> red_b: array<u32, ${WG}>;\n`);
      w.define(WGSL_SCALE_FROM_AMAX(fi.maxFinite, attrInt(n, 'margin', 0)));
      const current = attrInt(n, 'current', 0) === 1;
      const reduce = (arr: string, op: (a: string, b: string) => string) =>
        `workgroupBarrier();\nfor (var k = ${WG / 2}u; k > 0u; k = k >> 1u) {\n  if (t < k) { ${arr}[t] = ${op(`${arr}[t]`, `${arr}[t + k]`)}; }\n  workgroupBarrier();\n}`;
      // The saturated and flushed counts need the scale: with delayed scaling it is known
      // before the tensor is read, and one pass over x counts everything; current scaling
      // derives it from the amax, so a second pass counts.
      const count1 = (s: string) => `let q = v * ${s};
  if (abs(q) > ${f32Lit(fi.maxFinite)}) { ns += 1u; }
  else if (v != 0.0 && (${toBits}(q) & ${(1 << (fi.bits - 1)) - 1}u) == 0u) { nf += 1u; }`;
      const body = `let t = lid.x;
var m = 0.0;
var bad = 0u;
var ns = 0u;
var nf = 0u;
${current ? '' : `let s = ${sc}[0];`}
for (var i = t; i < ${count}u; i += ${WG}u) {
  let v = ${w.load(x, 'i')};
  if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { bad = 1u; } else { m = max(m, abs(v)); }
  ${current ? '' : count1('s')}
}
red_f[t] = m;
red_a[t] = bad;
${reduce('red_f', (a, b) => `max(${a}, ${b})`)}
${reduce('red_a', (a, b) => `max(${a}, ${b})`)}
var amax = red_f[0];
// A NaN from a runtime value: bitcast<f32>(0x7fc00000u) is a const-expression, and a NaN
// const-expression is a WGSL compile error.
var nan_bits = 0x7fc00000u;
if (red_a[0] != 0u) { amax = bitcast<f32>(nan_bits); }
${current ? `let s = scale_from_amax(amax, ${sc}[0]);` : ''}
workgroupBarrier();
${current ? `for (var i = t; i < ${count}u; i += ${WG}u) {\n  let v = ${w.load(x, 'i')};\n  ${count1('s')}\n}` : ''}
red_a[t] = ns;
red_b[t] = nf;
${reduce('red_a', (a, b) => `${a} + ${b}`)}
${reduce('red_b', (a, b) => `${a} + ${b}`)}
if (t == 0u) {
  ${out}[0] = amax;
  ${out}[1] = f32(red_a[0]) / ${f32Lit(Math.max(count, 1))};
  ${out}[2] = f32(red_b[0]) / ${f32Lit(Math.max(count, 1))};
  ${out}[3] = s;
}`;
      return [w.finish({ body, workgroupSize: [WG, 1, 1], dispatch: [1, 1, 1] })];
    },
  },
  {
    // inputs: x, stats; attrs: to. outputs: q (fp8), scale_inv f32[1]
    op: 'mpc.QuantizeFp8',
    domain: 'mpc',
    precision: 'none',
    arity: [2, 2],
    outputs: 2,
    // Recomputed for the backward pass from the same input and statistics (the same bits)
    // rather than kept: a weight's fp8 copy is otherwise held from its forward GEMM to its
    // backward one.
    recompute: () => true,
    // With delayed scaling the scale is known before the tensor is read: the statistics are
    // measured by the kernel that quantizes it, in the same pass.
    absorbsProducer: {
      input: 1,
      accepts: (p, n) => acceptsStats(p, n),
      wgsl: (p, n, ctx) => statsAndQuantize(p, n, ctx),
    },
    // With given statistics (the backward pass's recomputed copy of an activation or a
    // weight), computed in the loads of the GEMMs that read it: they read x, scale and round
    // each element as the kernel would store it, and take the inverse scale from the
    // statistics; the fp8 copy is never stored.
    loadPrologue: {
      apply: (n, w, v) => w.round(format(n), `(${v}) * ${w.load(w.bind(n.inputs[1], 'f32', 'read'), '3u')}`),
      scale: (n, w) => `(1.0 / ${w.load(w.bind(n.inputs[1], 'f32', 'read'), '3u')})`,
    },
    // Computed in the store of the kernel that produces x, where x has no other reader: that
    // kernel writes the fp8 copy instead of x, with the statistics it absorbed (delayed scaling).
    storeTail: {
      input: 0,
      accepts: (n, p) => p === undefined || acceptsStats(p, n),
      tail: (n, p, ctx) => quantizeTail(n, p, ctx),
    },
    infer: (n, [x]) => [
      { dtype: format(n), shape: [...x.shape] },
      { dtype: 'f32', shape: [1] },
    ],
    interp: (n, [x, stats]) => {
      const s = stats.data[3];
      const data = Float32Array.from(x.data, (v) => Math.fround(v * s));
      return [
        { dtype: format(n), shape: [...x.shape], data }, // the interpreter rounds (saturating) to fp8
        { dtype: 'f32', shape: [1], data: new Float32Array([Math.fround(1 / s)]) },
      ];
    },
    wgsl: (n, ctx) => {
      const fmt = format(n);
      const xt = ctx.type(n.inputs[0]);
      // One kernel: the element-0 invocation also writes the inverse scale.
      const w = ctx.writer();
      const x = w.bind(n.inputs[0], xt.dtype, 'read');
      const st = w.bind(n.inputs[1], 'f32', 'read');
      const inv = w.bind(n.outputs[1], 'f32', 'read_write');
      const compute = `if (i == 0u) { ${inv}[0] = 1.0 / ${st}[3]; }\nreturn ${w.load(x, 'i')} * ${st}[3];`;
      return [mapKernel(w, { out: n.outputs[0], outDtype: fmt, count: sizeOf(xt.shape), compute })];
    },
  },
  {
    // inputs: amax history f32[H], scale f32[1], stats; attrs: to, amax ('max'|'most_recent'), margin, current
    // outputs (in place): history', scale'
    op: 'mpc.UpdateFp8Scale',
    domain: 'mpc',
    precision: 'none',
    arity: [3, 3],
    outputs: 2,
    alias: { pairs: [[0, 0], [1, 1]] },
    infer: (_n, [h, s]) => [
      { dtype: 'f32', shape: [...h.shape] },
      { dtype: 'f32', shape: [...s.shape] },
    ],
    interp: (n, [h, s, stats]) => {
      const hist = new Float32Array(h.data.length);
      hist.set(h.data.subarray(0, hist.length - 1), 1);
      hist[0] = stats.data[0];
      let scale: number;
      if (attrInt(n, 'current', 0) === 1) scale = stats.data[3];
      else {
        let amax = hist[0];
        if (attrString(n, 'amax', 'max') === 'max') for (const v of hist) amax = Number.isNaN(v) || Number.isNaN(amax) ? NaN : Math.max(amax, v);
        scale = scaleFromAmax(amax, floatInfo(format(n)).maxFinite, attrInt(n, 'margin', 0), s.data[0]);
      }
      return [
        { dtype: 'f32', shape: [...h.shape], data: hist },
        { dtype: 'f32', shape: [...s.shape], data: new Float32Array([scale]) },
      ];
    },
    wgsl: (n, ctx) => {
      const w = ctx.writer();
      const H = sizeOf(ctx.type(n.inputs[0]).shape);
      const h = w.bind(n.inputs[0], 'f32', 'read_write');
      const s = w.bind(n.inputs[1], 'f32', 'read_write');
      const st = w.bind(n.inputs[2], 'f32', 'read');
      w.define(WGSL_SCALE_FROM_AMAX(floatInfo(format(n)).maxFinite, attrInt(n, 'margin', 0)));
      const useMax = attrString(n, 'amax', 'max') === 'max';
      const body =
        attrInt(n, 'current', 0) === 1
          ? `if (flat > 0u) { return; }\nfor (var i = ${H - 1}u; i > 0u; i--) { ${h}[i] = ${h}[i - 1u]; }\n${h}[0] = ${st}[0];\n${s}[0] = ${st}[3];`
          : `if (flat > 0u) { return; }
for (var i = ${H - 1}u; i > 0u; i--) { ${h}[i] = ${h}[i - 1u]; }
${h}[0] = ${st}[0];
var amax = ${h}[0];
var bad = (bitcast<u32>(amax) & 0x7f800000u) == 0x7f800000u;
${useMax ? `for (var i = 1u; i < ${H}u; i++) { let v = ${h}[i]; if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { bad = true; } amax = max(amax, v); }` : ''}
if (!bad) { ${s}[0] = scale_from_amax(amax, ${s}[0]); }`;
      return [w.finish({ body, workgroupSize: [1, 1, 1], dispatch: [1, 1, 1] })];
    },
  },
];

/**
 * The fused statistics-and-quantize kernel over many workgroups: each invocation quantizes
 * about this many words, so the per-workgroup combining (workgroup atomics, a barrier, four
 * global atomics) stays a small part of the work; at most FUSED_GROUPS workgroups.
 */
const FUSED_WORDS_PER_INVOCATION = 16;
const FUSED_GROUPS = 1024;
/**
 * Up to this many output words (4 fp8 values each) one workgroup of WG invocations quantizes
 * and measures the whole tensor in one dispatch; beyond it, the work is spread over many
 * workgroups that combine their statistics with atomics (three dispatches).
 */
const ONE_GROUP_MAX_WORDS = 16384;

/**
 * Fp8Stats (delayed scaling) and the QuantizeFp8 that reads it, computed together: every
 * invocation quantizes its elements and accumulates their amax (the bits of |v|, which order
 * as the values do for v >= 0), a non-finite flag and the saturated and flushed counts; the
 * invocations combine them with workgroup atomics. A small tensor is one workgroup's work and
 * one dispatch, which also writes the statistics and the inverse scale. A large one is spread
 * over up to FUSED_GROUPS workgroups: the statistics' four words are cleared when the schedule
 * starts (Kernel.clear), the workgroups add into them with atomics, a last kernel turns them
 * into the statistics (amax, fractions, scale) and writes the inverse scale. Maxima and counts are exact in any order,
 * so the statistics equal the unfused kernels' and the interpreter's.
 */
function statsAndQuantize(p: Node, n: Node, ctx: EmitCtx): Kernel[] {
  const fmt = format(n);
  const fi = floatInfo(fmt);
  const xt = ctx.type(n.inputs[0]);
  const count = sizeOf(xt.shape);
  const [x0, scale0] = p.inputs;
  const stats0 = p.outputs[0];
  const nan = NAN_FROM_RUNTIME;
  const fraction = (c: string) => `f32(${c}) / ${f32Lit(Math.max(count, 1))}`;

  const w = ctx.writer('q');
  // A tensor that fills its output words is read a run of `per` values at a time (two words of
  // bf16, one of packed f16, two f32 pairs): one load per word instead of one per element.
  const runs = count % 4 === 0;
  const x = w.bind(x0, xt.dtype, 'read', { words: runs });
  const sc = w.bind(scale0, 'f32', 'read');
  const q = w.bind(n.outputs[0], fmt, 'read_write');
  const toBits = w.use(`to_bits_${fmt}`);
  const per = w.layout(q).perWord;
  const words = Math.ceil(count / per);
  const one = words <= ONE_GROUP_MAX_WORDS;
  const groups = one ? 1 : Math.min(FUSED_GROUPS, Math.ceil(words / (WG * FUSED_WORDS_PER_INVOCATION)));
  const size = WG;
  w.define(`var<workgroup> red: array<atomic<u32>, ${FP8_STATS}>;\n`);
  const lanes = Array.from({ length: per }, (_, k) => k);
  // Each element is encoded once: its fp8 bits tell whether it flushed to zero, and the word
  // is assembled from them (what pack_<fmt> computes, without encoding every element twice).
  if (per * fi.bits !== 32) throw new Error(`QuantizeFp8 '${n.name}': ${fmt} is not stored ${per} to a 32-bit word`);
  const measure = `let s = ${sc}[0];
var m = 0u;
var bad = 0u;
var ns = 0u;
var nf = 0u;
for (var word = flat; word < ${words}u; word += ${groups * size}u) {
  let base = word * ${per}u;
${runs ? `  let run = ${w.loadVec(x, 'base', per as 2 | 4)};\n` : ''}${lanes
  .map((k) => {
    const element = `let v = ${runs ? `run[${k}]` : w.load(x, `base + ${k}u`)};
    if ((bitcast<u32>(v) & 0x7f800000u) == 0x7f800000u) { bad = 1u; } else { m = max(m, bitcast<u32>(abs(v))); }
    let q = v * s;
    b${k} = ${toBits}(q);
    if (abs(q) > ${f32Lit(fi.maxFinite)}) { ns += 1u; }
    else if (v != 0.0 && (b${k} & ${(1 << (fi.bits - 1)) - 1}u) == 0u) { nf += 1u; }`;
    return runs ? `  var b${k} = 0u;\n  {\n    ${element}\n  }` : `  var b${k} = 0u;\n  if (base + ${k}u < ${count}u) {\n    ${element}\n  }`;
  })
  .join('\n')}
  ${q}[word] = ${lanes.map((k) => (k === 0 ? 'b0' : `(b${k} << ${k * fi.bits}u)`)).join(' | ')};
}
atomicMax(&red[0], m);
atomicMax(&red[1], bad);
atomicAdd(&red[2], ns);
atomicAdd(&red[3], nf);
workgroupBarrier();`;

  if (one) {
    const st = w.bind(stats0, 'f32', 'read_write');
    const inv = w.bind(n.outputs[1], 'f32', 'read_write');
    const body = `${measure}
if (lid.x == 0u) {
  var amax = bitcast<f32>(atomicLoad(&red[0]));
  ${nan}
  if (atomicLoad(&red[1]) != 0u) { amax = bitcast<f32>(nan_bits); }
  ${st}[0] = amax;
  ${st}[1] = ${fraction('atomicLoad(&red[2])')};
  ${st}[2] = ${fraction('atomicLoad(&red[3])')};
  ${st}[3] = s;
  ${inv}[0] = 1.0 / s;
}`;
    return [w.finish({ body, workgroupSize: [WG, 1, 1], dispatch: [1, 1, 1] })];
  }

  const acc = w.bindAtomic(stats0);
  const body = `${measure}
if (lid.x == 0u) {
  atomicMax(&${acc}[0], atomicLoad(&red[0]));
  atomicMax(&${acc}[1], atomicLoad(&red[1]));
  atomicAdd(&${acc}[2], atomicLoad(&red[2]));
  atomicAdd(&${acc}[3], atomicLoad(&red[3]));
}`;
  // The statistics' words start at zero: the runtime clears them before the schedule runs.
  const quantize = { ...w.finish({ body, workgroupSize: [WG, 1, 1], dispatch: [groups, 1, 1] }), clear: [stats0] };

  return [quantize, finishStats(ctx, stats0, scale0, n.outputs[1], count)];
}

/**
 * The one-invocation kernel after a kernel that added a tensor's statistics into the four
 * atomic words of `stats` (the bits of the largest finite |x|, a non-finite flag, the
 * saturated and flushed counts): turns them into the statistics (amax, NaN if any value was
 * not finite; fractions; the scale used) and writes the inverse scale.
 */
function finishStats(ctx: EmitCtx, stats: string, scale: string, inverse: string, count: number): Kernel {
  const w = ctx.writer('stats');
  const st = w.bindAtomic(stats);
  const sc = w.bind(scale, 'f32', 'read');
  const inv = w.bind(inverse, 'f32', 'read_write');
  const fraction = (c: string) => `f32(${c}) / ${f32Lit(Math.max(count, 1))}`;
  return w.finish({
    body: `if (flat > 0u) { return; }
var amax = bitcast<f32>(atomicLoad(&${st}[0]));
${NAN_FROM_RUNTIME}
if (atomicLoad(&${st}[1]) != 0u) { amax = bitcast<f32>(nan_bits); }
let ns = atomicLoad(&${st}[2]);
let nf = atomicLoad(&${st}[3]);
let s = ${sc}[0];
atomicStore(&${st}[0], bitcast<u32>(amax));
atomicStore(&${st}[1], bitcast<u32>(${fraction('ns')}));
atomicStore(&${st}[2], bitcast<u32>(${fraction('nf')}));
atomicStore(&${st}[3], bitcast<u32>(s));
${inv}[0] = 1.0 / s;`,
    workgroupSize: [1, 1, 1],
    dispatch: [1, 1, 1],
  });
}

/**
 * QuantizeFp8 in the store of the kernel that produces its input x (OpRow.storeTail): that
 * kernel stores fp8(x * s) where it would have stored x. With the statistics it absorbed
 * (delayed scaling: s is the state's scale) each invocation also measures the elements it
 * stores in registers; at the kernel's end (KernelWriter.atEnd) the workgroup combines them
 * with workgroup atomics and one invocation adds them into the statistics' four atomic words,
 * as the many-workgroup quantizer does, for a one-invocation kernel to finish. Without (a
 * recomputation for the backward pass) s comes from the statistics given, and element 0
 * writes the inverse scale.
 */
function quantizeTail(n: Node, p: Node | undefined, ctx: EmitCtx): StoreTail {
  const fmt = format(n);
  const fi = floatInfo(fmt);
  const out = { buffer: n.outputs[0], dtype: fmt };
  if (!p) {
    return {
      out,
      apply: (w, v, idx) => {
        const st = w.bind(n.inputs[1], 'f32', 'read');
        const inv = w.bind(n.outputs[1], 'f32', 'read_write');
        w.define(`fn quantize_tail(v: f32, i: u32) -> f32 {\n  if (i == 0u) { ${inv}[0] = 1.0 / ${st}[3]; }\n  return v * ${st}[3];\n}\n`);
        return `quantize_tail(${v}, ${idx})`;
      },
      after: [],
    };
  }
  const [, scale] = p.inputs;
  const stats = p.outputs[0];
  const count = sizeOf(ctx.type(n.inputs[0]).shape);
  const bound = new WeakSet<KernelWriter>();
  return {
    out,
    apply: (w, v) => {
      if (!bound.has(w)) {
        bound.add(w);
        const acc = w.bindAtomic(stats);
        const sc = w.bind(scale, 'f32', 'read');
        // A value rounds to a zero code exactly when |q| is at most half the smallest
        // subnormal (the tie goes to the even code, zero): what the quantizer's
        // code & magnitude-mask == 0 tests.
        w.define(`var<private> tail_m: u32;
var<private> tail_bad: u32;
var<private> tail_ns: u32;
var<private> tail_nf: u32;
var<workgroup> tail_red: array<atomic<u32>, ${FP8_STATS}>;
fn quantize_tail(v: f32) -> f32 {
  let a = bitcast<u32>(v) & 0x7fffffffu;
  if (a >= 0x7f800000u) { tail_bad = 1u; } else { tail_m = max(tail_m, a); }
  let q = v * ${sc}[0];
  if (abs(q) > ${f32Lit(fi.maxFinite)}) { tail_ns += 1u; }
  else if (v != 0.0 && abs(q) <= ${f32Lit(fi.minSubnormal / 2)}) { tail_nf += 1u; }
  return q;
}
`);
        w.atEnd(`atomicMax(&tail_red[0], tail_m);
atomicMax(&tail_red[1], tail_bad);
atomicAdd(&tail_red[2], tail_ns);
atomicAdd(&tail_red[3], tail_nf);
workgroupBarrier();
if (lid.x == 0u) {
  atomicMax(&${acc}[0], atomicLoad(&tail_red[0]));
  let bad = atomicLoad(&tail_red[1]);
  if (bad != 0u) { atomicMax(&${acc}[1], bad); }
  let ns = atomicLoad(&tail_red[2]);
  if (ns != 0u) { atomicAdd(&${acc}[2], ns); }
  let nf = atomicLoad(&tail_red[3]);
  if (nf != 0u) { atomicAdd(&${acc}[3], nf); }
}`);
      }
      return `quantize_tail(${v})`;
    },
    clear: [stats],
    after: [finishStats(ctx, stats, scale, n.outputs[1], count)],
  };
}

// ---------------------------------------------------------------------------------------------
// Helpers for GEMM-like rows whose two operands may be fp8 (their inverse scales in the
// input slots `scales`, filled by the quantize-fp8 pass; attribute `to` is the result type).

export function hasFp8Operands(n: Node, scales: readonly [number, number]): boolean {
  return Boolean(n.inputs[scales[0]] && n.inputs[scales[1]]);
}

/** The result dtype: attribute `to` for fp8 operands (which must be fp8), else `plain`. */
export function fp8ResultDtype(n: Node, ins: readonly (ValueType | undefined)[], operands: readonly [number, number], scales: readonly [number, number], plain: DType): DType {
  if (!hasFp8Operands(n, scales)) return plain;
  for (const k of operands)
    if (ins[k]?.dtype !== 'f8e4m3fn' && ins[k]?.dtype !== 'f8e5m2') throw new Error(`${n.op} '${n.name}': operand ${k} must be fp8 when inverse scales are given`);
  return fromOnnx(attrInt(n, 'to'));
}

/** The product of the two inverse scales (1 without fp8), rounded as the kernel rounds it. */
export function fp8Factor(n: Node, ins: readonly (Tensor | undefined)[], scales: readonly [number, number]): number {
  return hasFp8Operands(n, scales) ? Math.fround(ins[scales[0]]!.data[0] * ins[scales[1]]!.data[0]) : 1;
}

/** WGSL expression of that product, or undefined without fp8 operands. */
export function wgslFp8Factor(w: KernelWriter, n: Node, scales: readonly [number, number]): string | undefined {
  if (!hasFp8Operands(n, scales)) return undefined;
  const [a, b] = scales.map((i) => w.load(w.bind(n.inputs[i], 'f32', 'read'), '0u'));
  return `(${a} * ${b})`;
}
