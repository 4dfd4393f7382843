// WGSL helpers for the float formats WGSL lacks (bf16, fp8) and for f16 held as bits.
//
// Generated from the dtype table: one parameterised generator per helper kind, fed with the
// format's widths, bias and special-value rule, and with the same constants as the JS codec in
// ir/dtypes.ts (test/wgsl-dtypes.test.ts runs both and compares them bit for bit). Everything
// works on u32 bit patterns and ends in bitcast<f32>: WGSL leaves the rounding and overflow of
// its own f32→f16 conversion loose, and some GPUs flush subnormal f32 operands of float
// arithmetic to zero, so no float arithmetic is used.

import { DTYPES, conversionConstants, type FloatDType, type FloatInfo } from '../ir/dtypes.js';

interface Helper {
  deps: string[];
  text: string;
}

/** The formats that get helpers: every float format narrower than f32. */
function helperFormats(): FloatInfo[] {
  return Object.values(DTYPES).filter((i): i is FloatInfo => i.kind === 'float' && i.bits < 32);
}

function u32(n: number): string {
  return `0x${(n >>> 0).toString(16)}u`;
}

function emitToBits(fi: FloatInfo, name: string, saturate: boolean): string {
  const k = conversionConstants(fi);
  const overflow = u32(saturate ? k.overflowCodeSaturated : k.overflowCode);
  const what = saturate ? 'overflow and ±inf saturate to ±max' : fi.hasInf ? 'overflow gives ±inf' : 'overflow and ±inf give NaN';
  // The subtraction below is a no-op when the format has f32's bias; keep the text tidy.
  const rebased = k.rebaseBits === 0 ? 'a' : `a - ${u32(k.rebaseBits)}`;
  return `// f32 -> ${fi.name} bits, round to nearest even; ${what}; NaN keeps its sign.
fn ${name}(v: f32) -> u32 {
  let b = bitcast<u32>(v);
  let sign = (b >> ${k.signShift}u) & ${u32(k.signBit)};
  let a = b & 0x7fffffffu;
  if (a > 0x7f800000u) { return sign | ${u32(fi.nanCode)}; }
  if (a == 0x7f800000u) { return sign | ${overflow}; }
  let e32 = a >> 23u;
  var code: u32;
  if (e32 >= ${k.firstNormalExp32}u) {
    let r = ${rebased};
    code = (r + ${u32(2 ** (k.normalShift - 1) - 1)} + ((r >> ${k.normalShift}u) & 1u)) >> ${k.normalShift}u;
  } else {
    let shift = ${k.subShiftBase}u - max(e32, 1u);
    if (shift >= 25u) { return sign; }
    let sig = select(a, (a & 0x7fffffu) | 0x800000u, e32 != 0u);
    code = (sig + ((1u << (shift - 1u)) - 1u) + ((sig >> shift) & 1u)) >> shift;
  }
  if (code > ${u32(fi.maxCode)}) { return sign | ${overflow}; }
  return sign | code;
}
`;
}

function emitFromBits(fi: FloatInfo, name: string): string {
  const k = conversionConstants(fi);
  const head = `// ${fi.name} bits -> f32, exact (subnormals included); NaN gives a quiet NaN with the same sign.
fn ${name}(c: u32) -> f32 {
`;
  if (k.sameExponentAsF32) return `${head}  return bitcast<f32>(c << ${k.signShift}u);\n}\n`;
  const M = fi.mantBits;
  const nanTest =
    fi.nan === 'ieee'
      ? `e == ${u32(k.expMax)} && m != 0u`
      : `(c & ${u32(fi.nanCode)}) == ${u32(fi.nanCode)}`;
  const infLine = fi.hasInf ? `  if (e == ${u32(k.expMax)}) { return bitcast<f32>(sign | 0x7f800000u); }\n` : '';
  return `${head}  let sign = (c << ${k.signShift}u) & 0x80000000u;
  let e = (c >> ${M}u) & ${u32(k.expMax)};
  let m = c & ${u32(k.mantMask)};
  if (${nanTest}) { return bitcast<f32>(sign | 0x7fc00000u | (m << ${23 - M}u)); }
${infLine}  if (e == 0u) {
    if (m == 0u) { return bitcast<f32>(sign); }
    let p = firstLeadingBit(m);
    return bitcast<f32>(sign | ((p + ${k.decodeSubRebase}u) << 23u) | ((m << (23u - p)) & 0x7fffffu));
  }
  return bitcast<f32>(sign | ((e + ${k.decodeExpRebase}u) << 23u) | (m << ${23 - M}u));
}
`;
}

/**
 * Branch-free rounding for the 16-bit formats (the one a fused kernel applies per element, in
 * a GEMM's operand loads among others), bit-identical to from_bits(to_bits(v)) but for NaN
 * payloads (a NaN stays a NaN of the same sign):
 * - bf16 keeps f32's exponent: round to nearest even at bit 16 of the f32 bits.
 * - f16: the spacing q of f16 values at |v| (a power of two, 2^-24 below the normal range) is
 *   built from v's exponent; |v| / q is rounded to the nearest integer, ties to even, by
 *   round() and scaled back, all exact; past the largest finite value (65504) it is inf.
 */
const FAST_ROUND: Record<string, string> = {
  bf16: `// f32 rounded to the nearest bf16 value, ties to even (NaN stays NaN).
fn round_bf16(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  let r = (b + 0x7fffu + ((b >> 16u) & 1u)) & 0xffff0000u;
  return bitcast<f32>(select(r, b | 0x00400000u, (b & 0x7fffffffu) > 0x7f800000u));
}
`,
  f16: `// f32 rounded to the nearest f16 value, ties to even; overflow gives inf (NaN stays NaN).
fn round_f16(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  let a = b & 0x7fffffffu;
  let qb = max(a & 0x7f800000u, 0x38800000u) - 0x05000000u;
  let r = round(bitcast<f32>(a) * bitcast<f32>(0x7f000000u - qb)) * bitcast<f32>(qb);
  return bitcast<f32>(select(bitcast<u32>(r), 0x7f800000u, r > 65504.0) | (b & 0x80000000u));
}
`,
};

/**
 * Branch-free rounding for the 8-bit formats, as f16's: the spacing q of the format's values at
 * |v| (2^(e - mantBits) for v's exponent e, at least the subnormals' spacing) is built from v's
 * exponent bits, |v| / q rounded to the nearest integer (ties to even) and scaled back, all
 * exact; past the largest finite value it overflows as to_bits does (saturating: ±max). An fp8
 * quantizer folded into a GEMM's loads applies it to every element it loads.
 */
function emitFastRound8(fi: FloatInfo): string {
  const emin = Math.log2(fi.minNormal);
  const qMin = ((emin + 127) << 23) >>> 0;
  const over = fi.saturateByDefault ? Math.fround(fi.maxFinite) : fi.hasInf ? Infinity : NaN;
  const overBits = new Uint32Array(new Float32Array([over]).buffer)[0];
  return `// f32 rounded to the nearest ${fi.name} value, ties to even; overflow ${fi.saturateByDefault ? 'saturates to ±max' : fi.hasInf ? 'gives ±inf' : 'gives NaN'} (NaN stays NaN).
fn round_${fi.name}(v: f32) -> f32 {
  let b = bitcast<u32>(v);
  let a = b & 0x7fffffffu;
  let qb = max(a & 0x7f800000u, ${u32(qMin)}) - ${u32(fi.mantBits << 23)};
  let r = round(bitcast<f32>(a) * bitcast<f32>(0x7f000000u - qb)) * bitcast<f32>(qb);
  return bitcast<f32>(select(bitcast<u32>(r), ${u32(overBits)}, r > ${fi.maxFinite.toFixed(1)}) | (b & 0x80000000u));
}
`;
}

function emitRound(fi: FloatInfo): string {
  return `// f32 rounded to the nearest ${fi.name} value (what storing it as ${fi.name} and loading it back gives).
fn round_${fi.name}(v: f32) -> f32 {
  return from_bits_${fi.name}(to_bits_${fi.name}(v));
}
`;
}

const LANE_NAMES = ['a', 'b', 'c', 'd'];

function emitUnpack(fi: FloatInfo): string {
  return `// Lane \`lane\` (0 = lowest bits) of a u32 holding ${fi.perWord} ${fi.name} values, as f32.
fn unpack_${fi.name}(word: u32, lane: u32) -> f32 {
  return from_bits_${fi.name}((word >> (lane * ${fi.bits}u)) & ${u32(2 ** fi.bits - 1)});
}
`;
}

/**
 * Lanes of an 8-bit format decoded through f16: an 8-bit float with at most 5 exponent bits is
 * an f16 with its exponent and mantissa moved into place, off by the exponent bias (a power of
 * two, multiplied back exactly). unpack2x16float converts two f16 values per call, subnormals
 * included, with no branch. The special codes:
 * - E5M2 has f16's exponent: its inf and NaN codes are f16's own, and the conversion gives
 *   from_bits' f32 bits (a NaN quieted, its payload kept).
 * - E4M3FN's NaN (exponent and mantissa all ones) lands on an f16 exponent below 31; setting
 *   the f16 exponent's bits makes it the f16 NaN with the same (quiet) mantissa, which the
 *   conversion and the scale carry to from_bits' bits. The NaN lanes of a word are found at
 *   once: (x & 0x7f7f) + 0x0101 carries into bit 7 of a byte exactly when its low 7 bits are
 *   all ones.
 * - Any other layout of specials is selected lane by lane.
 * So the results are bit-identical to unpack_ lane by lane (test/wgsl-dtypes.test.ts).
 */
function quadCapable(fi: FloatInfo): boolean {
  return fi.bits === 8 && fi.expBits <= 5 && fi.mantBits <= 10;
}

function emitUnpackVec(fi: FloatInfo): string {
  const M = fi.mantBits;
  const shift = 10 - M;
  const factor = 2 ** (15 - fi.bias);
  const mmask = 2 ** M - 1;
  const emask = 2 ** fi.expBits - 1;
  // Lanes of a u32 holding bytes in its low 16 bits -> two f16 codes.
  const f16pair = (x: string) =>
    `((${x} & 0x7fu) << ${shift}u) | ((${x} & 0x80u) << 8u) | (((${x} >> 8u) & 0x7fu) << ${16 + shift}u) | (((${x} >> 8u) & 0x80u) << 24u)`;
  const allOnesNan = fi.nan === 'mantissa-all-ones' && fi.expBits + M === 7;
  const native = fi.nan === 'ieee' && fi.expBits === 5;
  // f16 exponent bits set in the lanes of an f16 pair whose byte (in the low 16 bits of x) is the NaN code.
  // `n_x`: bit 7 and bit 15 set where the byte below is the NaN code (see above).
  const nanLet = (x: string) => (allOnesNan ? `\n  let n_${x} = ((${x} & 0x7f7fu) + 0x0101u) & 0x8080u;` : '');
  const code = (x: string) => (allOnesNan ? `(${f16pair(x)}) | ((n_${x} & 0x80u) * 0xf8u) | ((n_${x} & 0x8000u) * 0xf800u)` : f16pair(x));
  const isNan = (b: string) => (fi.nan === 'mantissa-all-ones' ? `(${b} & 0x7fu) == 0x7fu` : `((${b} >> ${M}u) & ${u32(emask)}) == ${u32(emask)} && (${b} & ${u32(mmask)}) != 0u`);
  const nanBits = (b: string) => `((${b} << 24u) & 0x80000000u) | 0x7fc00000u | ((${b} & ${u32(mmask)}) << ${23 - M}u)`;
  const scale = (v: string) => (factor === 1 ? v : `${v} * ${factor}.0`);
  const lane = (x: string, k: number) => `((${x} >> ${8 * k}u) & 0xffu)`;
  const fix = (v: string, x: string, lanes: number) => {
    if (allOnesNan || native) return v;
    const comps = Array.from({ length: lanes }, (_, k) => `select(${v}[${k}], bitcast<f32>(${nanBits(lane(x, k))}), ${isNan(lane(x, k))})`);
    return `vec${lanes}<f32>(${comps.join(', ')})`;
  };
  return `// Lane \`lane\` of a u32 holding 4 ${fi.name} values, as f32 (bit-identical to unpack_${fi.name}).
fn unpack1_${fi.name}(word: u32, lane: u32) -> f32 {
  return unpack2_${fi.name}(word >> ((lane & 2u) * 8u), 0u)[lane & 1u];
}

// Lanes 2·half and 2·half+1 of a u32 holding 4 ${fi.name} values, as f32 (bit-identical to unpack_${fi.name}).
fn unpack2_${fi.name}(word: u32, half: u32) -> vec2<f32> {
  let x = word >> (half * 16u);${nanLet('x')}
  let v = ${scale(`unpack2x16float(${code('x')})`)};
  return ${fix('v', 'x', 2)};
}

// All 4 lanes of a u32 holding ${fi.name} values, as f32 (bit-identical to unpack_${fi.name}).
fn unpack4_${fi.name}(word: u32) -> vec4<f32> {
  let hi = word >> 16u;${nanLet('word')}${nanLet('hi')}
  let v = ${scale(`vec4<f32>(unpack2x16float(${code('word')}), unpack2x16float(${code('hi')}))`)};
  return ${fix('v', 'word', 4)};
}
`;
}

/**
 * Both lanes of a u32 holding two values of a 16-bit format with f32's exponent (bf16): each
 * is the top half of an f32, so decoding is moving it there (bit-identical to unpack_, NaN
 * payloads included).
 */
function emitUnpackPair(fi: FloatInfo): string {
  return `// Both lanes of a u32 holding 2 ${fi.name} values, as f32 (bit-identical to unpack_${fi.name}).
fn unpack2_${fi.name}(word: u32) -> vec2<f32> {
  return vec2<f32>(bitcast<f32>(word << 16u), bitcast<f32>(word & 0xffff0000u));
}
`;
}

/** f16 pairs: WGSL's own conversion of two f16 values to f32, which is exact. */
const UNPACK_PAIR_F16 = `// Both lanes of a u32 holding 2 f16 values, as f32 (exact: every f16 value is an f32 value).
fn unpack2_f16(word: u32) -> vec2<f32> {
  return unpack2x16float(word);
}
`;

function emitPack(fi: FloatInfo): string {
  const lanes = LANE_NAMES.slice(0, fi.perWord);
  const terms = lanes.map((l, i) => (i === 0 ? `to_bits_${fi.name}(${l})` : `(to_bits_${fi.name}(${l}) << ${i * fi.bits}u)`));
  return `// ${fi.perWord} f32 values rounded to ${fi.name} and packed into a u32, the first in the lowest bits.
fn pack_${fi.name}(${lanes.map((l) => `${l}: f32`).join(', ')}) -> u32 {
  return ${terms.join(' | ')};
}
`;
}

/** All helpers, in an order where every helper comes after its dependencies. */
function buildRegistry(): Map<string, Helper> {
  const reg = new Map<string, Helper>();
  for (const fi of helperFormats()) {
    const d: FloatDType = fi.name;
    reg.set(`to_bits_${d}`, { deps: [], text: emitToBits(fi, `to_bits_${d}`, fi.saturateByDefault) });
    if (fi.saturateByDefault) {
      reg.set(`to_bits_${d}_nosat`, { deps: [], text: emitToBits(fi, `to_bits_${d}_nosat`, false) });
    }
    reg.set(`from_bits_${d}`, { deps: [], text: emitFromBits(fi, `from_bits_${d}`) });
    const fast = FAST_ROUND[d] ?? (fi.bits === 8 ? emitFastRound8(fi) : undefined);
    reg.set(`round_${d}`, fast ? { deps: [], text: fast } : { deps: [`to_bits_${d}`, `from_bits_${d}`], text: emitRound(fi) });
    reg.set(`unpack_${d}`, { deps: [`from_bits_${d}`], text: emitUnpack(fi) });
    reg.set(`pack_${d}`, { deps: [`to_bits_${d}`], text: emitPack(fi) });
    if (quadCapable(fi)) reg.set(`unpack_vec_${d}`, { deps: [], text: emitUnpackVec(fi) });
    if (fi.perWord === 2 && conversionConstants(fi).sameExponentAsF32) reg.set(`unpack_vec_${d}`, { deps: [], text: emitUnpackPair(fi) });
    if (d === 'f16') reg.set(`unpack_vec_${d}`, { deps: [], text: UNPACK_PAIR_F16 });
  }
  return reg;
}

let registry: Map<string, Helper> | undefined;

function helpers(): Map<string, Helper> {
  registry ??= buildRegistry();
  return registry;
}

export function wgslHelperNames(): string[] {
  return [...helpers().keys()];
}

/**
 * WGSL text of the requested helpers and everything they call, each once. The order is the
 * registry's (dependencies first), whatever the order of `names`, so the text is deterministic.
 */
export function emitWgslHelpers(names: Iterable<string>): string {
  const reg = helpers();
  const wanted = new Set<string>();
  const visit = (name: string): void => {
    if (wanted.has(name)) return;
    const h = reg.get(name);
    if (!h) throw new Error(`unknown WGSL dtype helper '${name}' (known: ${[...reg.keys()].join(', ')})`);
    wanted.add(name);
    h.deps.forEach(visit);
  };
  for (const n of names) visit(n);
  return [...reg.entries()]
    .filter(([name]) => wanted.has(name))
    .map(([, h]) => h.text)
    .join('\n');
}
