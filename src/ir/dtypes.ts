// The dtype table: every number format mpc knows, as data.
//
// Each float format is described by its exponent/mantissa widths and its special-value rule;
// everything else (bias, codes of max/inf/NaN, max finite value, smallest subnormal...) is
// derived here, once, by `describeFloat`. Conversions are done on the bit patterns with
// round-to-nearest-even and follow onnxruntime's Cast kernel (checked bit for bit in
// test/dtypes.test.ts); the WGSL helpers in codegen/wgsl-dtypes.ts are generated from the
// same table.

export type FloatDType = 'f32' | 'f16' | 'bf16' | 'f8e4m3fn' | 'f8e5m2';
export type IntDType = 'i64' | 'i32' | 'bool';
export type DType = FloatDType | IntDType;

export interface FloatInfo {
  kind: 'float';
  name: FloatDType;
  bits: number;
  expBits: number;
  mantBits: number;
  bias: number;
  maxFinite: number;
  minNormal: number;
  minSubnormal: number;
  hasInf: boolean;
  /**
   * Which codes are NaN. 'ieee': exponent all ones with a non-zero mantissa (all-ones exponent
   * with a zero mantissa is infinity). 'mantissa-all-ones': only S.1111.111 (e4m3fn), the
   * rest of the top binade holds finite values and there is no infinity.
   */
  nan: 'ieee' | 'mantissa-all-ones';
  /** ONNX TensorProto.DataType. */
  onnx: number;
  /** Native WGSL type, or 'packed' into u32 words. */
  wgsl: 'f32' | 'f16' | 'packed';
  /** Elements per u32 word when stored packed: 1, 2 or 4. */
  perWord: number;
  /** Positive code of the largest finite value. */
  maxCode: number;
  /** Positive code of infinity, or null when the format has none. */
  infCode: number | null;
  /** Positive code produced for NaN inputs (the sign of the input NaN is kept). */
  nanCode: number;
  /** Whether conversions into this format saturate overflow to ±max by default (ONNX Cast saturate=1 for fp8). */
  saturateByDefault: boolean;
}

export interface IntInfo {
  kind: 'int' | 'bool';
  name: IntDType;
  bits: number;
  min: number;
  max: number;
  onnx: number;
}

export type DTypeInfo = FloatInfo | IntInfo;

interface FloatSpec {
  name: FloatDType;
  expBits: number;
  mantBits: number;
  nan: FloatInfo['nan'];
  /** 'quiet': exponent all ones plus the top mantissa bit; 'all-ones': every non-sign bit set. */
  nanCode: 'quiet' | 'all-ones';
  onnx: number;
  wgsl: FloatInfo['wgsl'];
  saturateByDefault: boolean;
}

function describeFloat(s: FloatSpec): FloatInfo {
  const bits = 1 + s.expBits + s.mantBits;
  const bias = 2 ** (s.expBits - 1) - 1;
  const expAllOnes = (2 ** s.expBits - 1) * 2 ** s.mantBits;
  const hasInf = s.nan === 'ieee';
  // ieee: the top binade is inf/NaN, so max is the code just below infinity;
  // mantissa-all-ones: only the very last code is NaN, max is the one below it.
  const maxCode = hasInf ? expAllOnes - 1 : 2 ** (bits - 1) - 2;
  const nanCode = s.nanCode === 'quiet' ? expAllOnes + 2 ** (s.mantBits - 1) : 2 ** (bits - 1) - 1;
  const maxExp = Math.floor(maxCode / 2 ** s.mantBits) - bias;
  const maxMant = maxCode % 2 ** s.mantBits;
  return {
    kind: 'float',
    name: s.name,
    bits,
    expBits: s.expBits,
    mantBits: s.mantBits,
    bias,
    maxFinite: (1 + maxMant / 2 ** s.mantBits) * 2 ** maxExp,
    minNormal: 2 ** (1 - bias),
    minSubnormal: 2 ** (1 - bias - s.mantBits),
    hasInf,
    nan: s.nan,
    onnx: s.onnx,
    wgsl: s.wgsl,
    perWord: Math.max(1, 32 / bits),
    maxCode,
    infCode: hasInf ? expAllOnes : null,
    nanCode,
    saturateByDefault: s.saturateByDefault,
  };
}

const FLOAT_SPECS: FloatSpec[] = [
  { name: 'f32', expBits: 8, mantBits: 23, nan: 'ieee', nanCode: 'quiet', onnx: 1, wgsl: 'f32', saturateByDefault: false },
  { name: 'f16', expBits: 5, mantBits: 10, nan: 'ieee', nanCode: 'quiet', onnx: 10, wgsl: 'f16', saturateByDefault: false },
  { name: 'bf16', expBits: 8, mantBits: 7, nan: 'ieee', nanCode: 'quiet', onnx: 16, wgsl: 'packed', saturateByDefault: false },
  // onnxruntime produces S.1111111 for NaN in both fp8 formats (not e5m2's quiet 0x7E).
  { name: 'f8e4m3fn', expBits: 4, mantBits: 3, nan: 'mantissa-all-ones', nanCode: 'all-ones', onnx: 17, wgsl: 'packed', saturateByDefault: true },
  { name: 'f8e5m2', expBits: 5, mantBits: 2, nan: 'ieee', nanCode: 'all-ones', onnx: 19, wgsl: 'packed', saturateByDefault: true },
];

const INT_INFOS: IntInfo[] = [
  // ±2^63 are not all exact as JS numbers; the bounds are the nearest doubles.
  { kind: 'int', name: 'i64', bits: 64, min: -(2 ** 63), max: 2 ** 63 - 1, onnx: 7 },
  { kind: 'int', name: 'i32', bits: 32, min: -(2 ** 31), max: 2 ** 31 - 1, onnx: 6 },
  { kind: 'bool', name: 'bool', bits: 8, min: 0, max: 1, onnx: 9 },
];

export const DTYPES: Readonly<Record<DType, DTypeInfo>> = Object.freeze(
  Object.fromEntries([...FLOAT_SPECS.map(describeFloat), ...INT_INFOS].map((i) => [i.name, Object.freeze(i)])) as Record<
    DType,
    DTypeInfo
  >,
);

export function info(d: DType): DTypeInfo {
  const i = (DTYPES as Record<string, DTypeInfo | undefined>)[d];
  if (!i) throw new Error(`unknown dtype '${String(d)}'`);
  return i;
}

export function floatInfo(d: DType): FloatInfo {
  const i = info(d);
  if (i.kind !== 'float') throw new Error(`dtype ${d} is not a float type`);
  return i;
}

export function isFloat(d: DType): d is FloatDType {
  return info(d).kind === 'float';
}

/** Logical size of one element in bytes (bool is one byte, as ONNX stores it). */
export function byteSize(d: DType): number {
  return info(d).bits / 8;
}

const ONNX_TYPE_NAMES = [
  'UNDEFINED', 'FLOAT', 'UINT8', 'INT8', 'UINT16', 'INT16', 'INT32', 'INT64', 'STRING', 'BOOL', 'FLOAT16', 'DOUBLE',
  'UINT32', 'UINT64', 'COMPLEX64', 'COMPLEX128', 'BFLOAT16', 'FLOAT8E4M3FN', 'FLOAT8E4M3FNUZ', 'FLOAT8E5M2',
  'FLOAT8E5M2FNUZ', 'UINT4', 'INT4', 'FLOAT4E2M1', 'FLOAT8E8M0', 'UINT2', 'INT2',
];

const BY_ONNX = new Map<number, DType>(Object.values(DTYPES).map((i) => [i.onnx, i.name]));

export function fromOnnx(t: number): DType {
  const d = BY_ONNX.get(t);
  if (d === undefined) throw new Error(`unsupported ONNX data type ${t} (${ONNX_TYPE_NAMES[t] ?? 'unknown'})`);
  return d;
}

export function toOnnx(d: DType): number {
  return info(d).onnx;
}

// ---------------------------------------------------------------------------------------------
// Conversions on bit patterns.

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

/** The bits of x rounded to f32 (a NaN keeps its sign). */
export function f32Bits(x: number): number {
  scratchF32[0] = x;
  return scratchU32[0]!;
}

/** The f32 whose bits are b. */
export function f32FromBits(b: number): number {
  scratchU32[0] = b;
  return scratchF32[0]!;
}

type BitsFn = (bits: number) => number;

/**
 * Constants of the bit-level conversions between f32 and a narrower float format, shared by
 * the JS codec below and the WGSL generator (codegen/wgsl-dtypes.ts) so both do the same thing.
 */
export interface ConversionConstants {
  /** Right shift that moves the f32 sign bit onto the format's sign bit. */
  signShift: number;
  /** The format's sign bit. */
  signBit: number;
  /** Mask of the format's mantissa field. */
  mantMask: number;
  /** Largest value of the exponent field. */
  expMax: number;
  /** Code for an input that rounds past max (or is infinite), without / with saturation. */
  overflowCode: number;
  overflowCodeSaturated: number;
  /** Subtracted from the f32 bits to move the exponent field onto the format's bias. */
  rebaseBits: number;
  /** Smallest f32 exponent field whose values are normal in the format. */
  firstNormalExp32: number;
  /** Right shift from rebased f32 bits to the format's code for normal values (23 - mantBits). */
  normalShift: number;
  /** For values subnormal in the format: the significand shift is subShiftBase - max(exp32, 1). */
  subShiftBase: number;
  /** Decoding: f32 exponent field = exponent field + decodeExpRebase (normals). */
  decodeExpRebase: number;
  /** Decoding subnormals: f32 exponent field = index of the mantissa's leading bit + decodeSubRebase. */
  decodeSubRebase: number;
  /** True when the exponent field is as wide as f32's, so a code is simply the top of the f32 bits. */
  sameExponentAsF32: boolean;
}

export function conversionConstants(fi: FloatInfo): ConversionConstants {
  if (fi.bits >= 32) throw new Error(`no conversion constants for ${fi.name}: it is the f32 base format`);
  const M = fi.mantBits;
  return {
    signShift: 32 - fi.bits,
    signBit: 2 ** (fi.bits - 1),
    mantMask: 2 ** M - 1,
    expMax: 2 ** fi.expBits - 1,
    overflowCode: fi.infCode ?? fi.nanCode,
    overflowCodeSaturated: fi.maxCode,
    rebaseBits: (127 - fi.bias) * 2 ** 23,
    firstNormalExp32: 128 - fi.bias,
    normalShift: 23 - M,
    // A value subnormal in the format is sig * 2^(max(exp32,1) - 150); its code is
    // value / minSubnormal = sig * 2^(max(exp32,1) - 150 - (1 - bias - M)).
    subShiftBase: 151 - M - fi.bias,
    decodeExpRebase: 127 - fi.bias,
    // A subnormal code m with leading bit p is 2^p * (1.xxx) * 2^(1 - bias - M).
    decodeSubRebase: 128 - fi.bias - M,
    sameExponentAsF32: fi.expBits === 8,
  };
}

/**
 * Encoder from f32 bits to the format's code, round-to-nearest-even. Inputs whose magnitude
 * rounds past max give inf (saturate off, format has inf), max (saturate on) or NaN (no inf).
 */
function makeEncoder(fi: FloatInfo, saturate: boolean): BitsFn {
  if (fi.bits === 32) return (b) => b >>> 0;
  const k = conversionConstants(fi);
  const { signShift, signBit, rebaseBits, firstNormalExp32, normalShift, subShiftBase } = k;
  const overflow = saturate ? k.overflowCodeSaturated : k.overflowCode;
  const normalHalfMinus1 = 2 ** (normalShift - 1) - 1;
  const maxCode = fi.maxCode;
  const nanCode = fi.nanCode;
  return (b) => {
    const sign = (b >>> signShift) & signBit;
    const a = b & 0x7fffffff;
    if (a >= 0x7f800000) return sign | (a === 0x7f800000 ? overflow : nanCode);
    const e32 = a >>> 23;
    let code: number;
    // Round to nearest even without branching on the discarded bits: adding half-1 plus the
    // lowest kept bit carries into the kept bits exactly when RNE rounds up.
    if (e32 >= firstNormalExp32) {
      const r = a - rebaseBits;
      code = (r + normalHalfMinus1 + ((r >>> normalShift) & 1)) >>> normalShift;
    } else {
      const shift = subShiftBase - (e32 === 0 ? 1 : e32);
      if (shift >= 25) return sign; // below half the smallest subnormal
      const sig = e32 === 0 ? a : (a & 0x7fffff) | 0x800000;
      code = (sig + ((1 << (shift - 1)) - 1) + ((sig >>> shift) & 1)) >>> shift;
    }
    return sign | (code > maxCode ? overflow : code);
  };
}

/** Decoder from a code to f32 bits: exact, subnormals included; NaN gives a quiet NaN with the code's sign and payload. */
function makeDecoder(fi: FloatInfo): BitsFn {
  if (fi.bits === 32) return (c) => c >>> 0;
  const k = conversionConstants(fi);
  const { signShift, mantMask, expMax, decodeExpRebase, decodeSubRebase } = k;
  if (k.sameExponentAsF32) return (c) => (c << signShift) >>> 0;
  const M = fi.mantBits;
  const ieee = fi.nan === 'ieee';
  const nanMagnitude = fi.nanCode; // 'mantissa-all-ones': the one NaN magnitude
  return (c) => {
    const sign = (c << signShift) & 0x80000000;
    const e = (c >>> M) & expMax;
    const m = c & mantMask;
    if (ieee ? e === expMax && m !== 0 : (c & nanMagnitude) === nanMagnitude) {
      return (sign | 0x7fc00000 | (m << (23 - M))) >>> 0;
    }
    if (ieee && e === expMax) return (sign | 0x7f800000) >>> 0;
    if (e === 0) {
      if (m === 0) return sign >>> 0;
      const p = 31 - Math.clz32(m);
      return (sign | ((p + decodeSubRebase) << 23) | ((m << (23 - p)) & 0x7fffff)) >>> 0;
    }
    return (sign | ((e + decodeExpRebase) << 23) | (m << (23 - M))) >>> 0;
  };
}

interface Codec {
  encodeSat: BitsFn;
  encodeNoSat: BitsFn;
  decode: BitsFn;
  /** Decoded f32 bits of every code (formats of at most 16 bits). */
  table: Uint32Array | null;
}

const codecs = new Map<FloatDType, Codec>();

function codec(d: FloatDType): Codec {
  let c = codecs.get(d);
  if (!c) {
    const fi = floatInfo(d);
    const decodeFn = makeDecoder(fi);
    let table: Uint32Array | null = null;
    if (fi.bits <= 16) {
      table = new Uint32Array(2 ** fi.bits);
      for (let i = 0; i < table.length; i++) table[i] = decodeFn(i);
    }
    const t = table;
    c = {
      encodeSat: makeEncoder(fi, true),
      encodeNoSat: makeEncoder(fi, false),
      decode: t ? (code) => t[code & (t.length - 1)]! : decodeFn,
      table,
    };
    codecs.set(d, c);
  }
  return c;
}

function encoderFor(d: FloatDType, saturate: boolean | undefined): BitsFn {
  const c = codec(d);
  return (saturate ?? floatInfo(d).saturateByDefault) ? c.encodeSat : c.encodeNoSat;
}

/** Code of the f32 with bits `b` in format d (what `encode` does after rounding to f32). */
export function encodeBits(d: FloatDType, b: number, opts?: { saturate?: boolean }): number {
  return encoderFor(d, opts?.saturate)(b);
}

/** f32 bits of the value of code `code` in format d. */
export function decodeBits(d: FloatDType, code: number): number {
  return codec(d).decode(code);
}

/** Bit pattern of x in format d: x is first rounded to f32, then to d with round-to-nearest-even. */
export function encode(d: FloatDType, x: number, opts?: { saturate?: boolean }): number {
  return encodeBits(d, f32Bits(x), opts);
}

/** Value of the bit pattern `bits` in format d. */
export function decode(d: FloatDType, bits: number): number {
  return f32FromBits(decodeBits(d, bits));
}

/** x as the target holds it in dtype d: f32-rounded then rounded to d; ints truncate, bool is 0/1. */
export function round(d: DType, x: number, opts?: { saturate?: boolean }): number {
  if (d === 'f32') return Math.fround(x);
  if (d === 'bool') return x !== 0 ? 1 : 0;
  if (!isFloat(d)) return Math.trunc(x);
  return decode(d, encode(d, x, opts));
}

/** `round` over an array, into dst (which may be src itself) or a new Float32Array. */
export function roundArray(d: DType, src: ArrayLike<number>, dst?: Float32Array): Float32Array {
  const n = src.length;
  const out = dst ?? new Float32Array(n);
  if (out.length < n) throw new Error(`roundArray: destination holds ${out.length} elements, source ${n}`);
  if (d === 'bool' || !isFloat(d)) {
    const f = d === 'bool' ? (x: number) => (x !== 0 ? 1 : 0) : Math.trunc;
    for (let i = 0; i < n; i++) out[i] = f(src[i]!);
    return out;
  }
  if (src !== out) {
    if (src instanceof Float32Array) out.set(src);
    else for (let i = 0; i < n; i++) out[i] = src[i]!;
  }
  if (d === 'f32') return out;
  const bits = new Uint32Array(out.buffer, out.byteOffset, n);
  const enc = encoderFor(d, undefined);
  const c = codec(d);
  const table = c.table;
  if (table) {
    for (let i = 0; i < n; i++) bits[i] = table[enc(bits[i]!)]!;
  } else {
    const dec = c.decode;
    for (let i = 0; i < n; i++) bits[i] = dec(enc(bits[i]!));
  }
  return out;
}
