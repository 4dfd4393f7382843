// The dtype table and its conversions, checked bit for bit against onnxruntime's Cast kernel.
//
// How the bits come out of onnxruntime-node, which only hands back f32/f16/int tensors:
// - decode: the codes are an initializer of the narrow type, Cast to f32 at run time;
// - f16 encode: Cast f32→f16, read as Uint16Array;
// - bf16 encode: Cast f32→bf16→f32; bf16→f32 is a plain shift (checked on all 65,536 codes
//   below), so the f32 bits hold the bf16 bits, NaN included;
// - fp8 encode: the input is an initializer, so ORT's constant folding runs its Cast kernel at
//   load time and the optimized model it saves holds the fp8 result as raw bytes. (The run-time
//   path Cast f32→fp8→f32 is checked to agree with it.)

import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import onnx from 'onnx-proto';
import * as ort from 'onnxruntime-node';
import { afterAll, describe, expect, it } from 'vitest';
import {
  DTYPES,
  byteSize,
  decode,
  decodeBits,
  encode,
  encodeBits,
  f32FromBits,
  floatInfo,
  fromOnnx,
  info,
  isFloat,
  round,
  roundArray,
  toOnnx,
  type DType,
  type FloatDType,
} from '../src/ir/dtypes.js';

const P = onnx.onnx;
const ONNX_FLOAT = 1;
const ONNX_FLOAT16 = 10;
const ONNX_BFLOAT16 = 16;
const ONNX_F8E4M3FN = 17;
const ONNX_F8E5M2 = 19;
const ATTR_INT = 2;

const workDir = mkdtempSync(join(tmpdir(), 'mpc-dtypes-'));
afterAll(() => rmSync(workDir, { recursive: true, force: true }));

// ---------------------------------------------------------------------------------------------
// onnxruntime oracles

type ValueInfo = { name: string; elemType: number };
interface NodeSpec {
  op: string;
  inputs: string[];
  output: string;
  to?: number;
  saturate?: number;
}

function modelBytes(opts: {
  nodes: NodeSpec[];
  inputs: ValueInfo[];
  outputs: ValueInfo[];
  initializers?: { name: string; dataType: number; raw: Uint8Array; n: number }[];
  opset?: number;
}): Uint8Array {
  const vi = (v: ValueInfo) => ({ name: v.name, type: { tensorType: { elemType: v.elemType, shape: { dim: [{ dimParam: 'n' }] } } } });
  const scalarOrVector = (v: ValueInfo) =>
    v.name === 's' ? { name: v.name, type: { tensorType: { elemType: v.elemType, shape: { dim: [] } } } } : vi(v);
  const graph = {
    name: 'cast',
    node: opts.nodes.map((n) => ({
      opType: n.op,
      input: n.inputs,
      output: [n.output],
      attribute: [
        ...(n.to !== undefined ? [{ name: 'to', type: ATTR_INT, i: n.to }] : []),
        ...(n.saturate !== undefined ? [{ name: 'saturate', type: ATTR_INT, i: n.saturate }] : []),
      ],
    })),
    input: opts.inputs.map(scalarOrVector),
    output: opts.outputs.map(vi),
    initializer: (opts.initializers ?? []).map((t) => ({ name: t.name, dims: [t.n], dataType: t.dataType, rawData: t.raw })),
  };
  return P.ModelProto.encode({ irVersion: 9, opsetImport: [{ domain: '', version: opts.opset ?? 19 }], graph }).finish();
}

function bytesOf(a: ArrayBufferView): Uint8Array {
  return new Uint8Array(a.buffer, a.byteOffset, a.byteLength);
}

/** ORT's f32 bits for every code of a format (codes as an initializer, Cast to f32 at run time). */
async function ortDecodeAll(onnxType: number, bits: number): Promise<Uint32Array> {
  const n = 2 ** bits;
  const codes = bits === 8 ? Uint8Array.from({ length: n }, (_, i) => i) : Uint16Array.from({ length: n }, (_, i) => i);
  const m = modelBytes({
    nodes: [{ op: 'Cast', inputs: ['x'], output: 'y', to: ONNX_FLOAT }],
    inputs: [],
    outputs: [{ name: 'y', elemType: ONNX_FLOAT }],
    initializers: [{ name: 'x', dataType: onnxType, raw: bytesOf(codes), n }],
  });
  const s = await ort.InferenceSession.create(m, { graphOptimizationLevel: 'disabled' });
  const y = (await s.run({}))['y']!.data as Float32Array;
  return new Uint32Array(y.slice().buffer);
}

/** Runs f32 inputs (given as bits) through a chain of Casts at run time; returns the output tensor data. */
async function ortRunCasts(x: Uint32Array, casts: { to: number; saturate?: number }[], outType: number): Promise<ArrayBufferView> {
  const nodes = casts.map((c, i) => ({
    op: 'Cast',
    inputs: [i === 0 ? 'x' : `c${i - 1}`],
    output: i === casts.length - 1 ? 'y' : `c${i}`,
    to: c.to,
    ...(c.saturate !== undefined ? { saturate: c.saturate } : {}),
  }));
  const m = modelBytes({ nodes, inputs: [{ name: 'x', elemType: ONNX_FLOAT }], outputs: [{ name: 'y', elemType: outType }] });
  const s = await ort.InferenceSession.create(m, { graphOptimizationLevel: 'disabled' });
  const input = new ort.Tensor('float32', new Float32Array(x.buffer, x.byteOffset, x.length), [x.length]);
  return (await s.run({ x: input }))['y']!.data as ArrayBufferView;
}

/** Raw fp8 bytes of Cast(f32 → fp8), taken from the constant-folded model ORT saves. */
async function ortEncodeFp8Folded(onnxType: number, saturate: number, x: Uint32Array): Promise<Uint8Array> {
  const m = modelBytes({
    nodes: [
      { op: 'Cast', inputs: ['x'], output: 'c', to: onnxType, saturate },
      // A consumer that cannot be folded (its scale is a graph input) keeps `c` in the saved model.
      { op: 'DequantizeLinear', inputs: ['c', 's'], output: 'y' },
    ],
    inputs: [{ name: 's', elemType: ONNX_FLOAT }],
    outputs: [{ name: 'y', elemType: ONNX_FLOAT }],
    initializers: [{ name: 'x', dataType: ONNX_FLOAT, raw: bytesOf(x), n: x.length }],
  });
  const path = join(workDir, `folded-${onnxType}-${saturate}.onnx`);
  await ort.InferenceSession.create(m, { graphOptimizationLevel: 'basic', optimizedModelFilePath: path });
  const saved = P.ModelProto.decode(readFileSync(path));
  const c = saved.graph?.initializer?.find((t) => t.dataType === onnxType);
  if (!c?.rawData) throw new Error(`the optimized model holds no folded fp8 initializer (nodes: ${saved.graph?.node?.map((n) => n.opType).join(', ')})`);
  expect(c.rawData.length).toBe(x.length);
  return Uint8Array.from(c.rawData);
}

// ---------------------------------------------------------------------------------------------
// Test inputs

function mulberry32(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return (t ^ (t >>> 14)) >>> 0;
  };
}

const SPECIAL_F32 = [
  0x00000000, 0x80000000, 0x7f800000, 0xff800000, // ±0, ±inf
  0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0xffffffff, 0x7fc12345, 0x7fa00000, // NaNs
  0x7f7fffff, 0xff7fffff, 0x00000001, 0x80000001, 0x007fffff, 0x00800000, 0x00400000, 0x3f800000, 0xbf800000,
];

/**
 * Every finite code's value, the midpoints between neighbouring codes (the ties), the
 * midpoint past max (the overflow tie), and the f32 neighbours of all of these, both signs.
 */
function boundaryInputs(d: FloatDType, decoded: Uint32Array): number[] {
  const fi = floatInfo(d);
  const out = [...SPECIAL_F32];
  const near = (b: number) => {
    for (let k = -2; k <= 2; k++) {
      const v = b + k;
      if (v >= 0 && v < 0x7f800000) out.push(v, (v | 0x80000000) >>> 0);
    }
  };
  for (let c = 0; c <= fi.maxCode; c++) {
    near(decoded[c]!);
    const lo = f32FromBits(decoded[c]!);
    const hi = c < fi.maxCode ? f32FromBits(decoded[c + 1]!) : lo + 2 ** (Math.floor(Math.log2(lo)) - fi.mantBits);
    near(f32BitsOf((lo + hi) / 2));
  }
  for (const m of [2, 4, 1024]) near(f32BitsOf(fi.maxFinite * m));
  return out;
}

/** Random bit patterns: all of f32 (every exponent equally likely), then ones whose exponent is near the format's range. */
function randomInputs(d: FloatDType, n: number, seed: number): Uint32Array {
  const fi = floatInfo(d);
  const rnd = mulberry32(seed);
  const out = new Uint32Array(2 * n);
  for (let i = 0; i < n; i++) out[i] = rnd();
  const lo = 127 - fi.bias - fi.mantBits - 2;
  const hi = Math.min(254, 127 + (Math.floor(Math.log2(fi.maxFinite)) + 2));
  for (let i = n; i < 2 * n; i++) {
    const r = rnd();
    const e = lo + (rnd() % (hi - lo + 1));
    out[i] = ((r & 0x807fffff) | (e << 23)) >>> 0;
  }
  return out;
}

function inputsFor(d: FloatDType, decoded: Uint32Array, seed: number): Uint32Array {
  const b = boundaryInputs(d, decoded);
  const r = randomInputs(d, 1_000_000, seed);
  const all = new Uint32Array(b.length + r.length);
  all.set(b);
  all.set(r, b.length);
  return all;
}

const f32BitsOf = (v: number) => new Uint32Array(new Float32Array([v]).buffer)[0]!;
const isNaN32 = (b: number) => (b & 0x7fffffff) > 0x7f800000;
const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/** Indices where ours and theirs differ, with up to 10 described. */
function mismatches(x: Uint32Array, ours: ArrayLike<number>, theirs: ArrayLike<number>, skip?: (i: number) => boolean) {
  const idx: number[] = [];
  for (let i = 0; i < x.length; i++) {
    if (ours[i] !== theirs[i] && !skip?.(i)) idx.push(i);
  }
  return {
    count: idx.length,
    sample: idx.slice(0, 10).map((i) => `x=${hex(x[i]!)} (${f32FromBits(x[i]!)}): ours ${hex(ours[i]!)} ort ${hex(theirs[i]!)}`),
  };
}

function encodeAll(d: FloatDType, x: Uint32Array, saturate?: boolean): Uint32Array {
  const out = new Uint32Array(x.length);
  const opts = saturate === undefined ? undefined : { saturate };
  for (let i = 0; i < x.length; i++) out[i] = encodeBits(d, x[i]!, opts);
  return out;
}

// ---------------------------------------------------------------------------------------------

describe('dtype table', () => {
  it('has the formats and their derived constants', () => {
    const f16 = floatInfo('f16');
    expect([f16.bits, f16.expBits, f16.mantBits, f16.bias, f16.maxFinite]).toEqual([16, 5, 10, 15, 65504]);
    expect([f16.minNormal, f16.minSubnormal, f16.hasInf, f16.wgsl, f16.perWord]).toEqual([2 ** -14, 2 ** -24, true, 'f16', 2]);
    const bf16 = floatInfo('bf16');
    expect([bf16.bias, bf16.maxFinite, bf16.minNormal, bf16.minSubnormal]).toEqual([127, 3.3895313892515355e38, 2 ** -126, 2 ** -133]);
    expect([bf16.wgsl, bf16.perWord]).toEqual(['packed', 2]);
    const e4 = floatInfo('f8e4m3fn');
    expect([e4.bias, e4.maxFinite, e4.minNormal, e4.minSubnormal, e4.hasInf, e4.nan]).toEqual([7, 448, 2 ** -6, 2 ** -9, false, 'mantissa-all-ones']);
    expect([e4.maxCode, e4.nanCode, e4.infCode, e4.perWord]).toEqual([0x7e, 0x7f, null, 4]);
    const e5 = floatInfo('f8e5m2');
    expect([e5.bias, e5.maxFinite, e5.minNormal, e5.minSubnormal, e5.hasInf, e5.nan]).toEqual([15, 57344, 2 ** -14, 2 ** -16, true, 'ieee']);
    expect([e5.maxCode, e5.infCode, e5.nanCode]).toEqual([0x7b, 0x7c, 0x7f]);
    const f32 = floatInfo('f32');
    expect([f32.maxFinite, f32.minSubnormal]).toEqual([3.4028234663852886e38, 2 ** -149]);
    expect([f16.nanCode, bf16.nanCode]).toEqual([0x7e00, 0x7fc0]);
  });

  it('sizes, ONNX codes and kinds', () => {
    const all: DType[] = ['f32', 'f16', 'bf16', 'f8e4m3fn', 'f8e5m2', 'i64', 'i32', 'bool'];
    expect(all.map(byteSize)).toEqual([4, 2, 2, 1, 1, 8, 4, 1]);
    expect(all.map(toOnnx)).toEqual([1, 10, 16, 17, 19, 7, 6, 9]);
    for (const d of all) expect(fromOnnx(toOnnx(d))).toBe(d);
    expect(Object.keys(DTYPES).sort()).toEqual([...all].sort());
    expect(all.filter(isFloat)).toEqual(['f32', 'f16', 'bf16', 'f8e4m3fn', 'f8e5m2']);
    expect(info('bool').kind).toBe('bool');
    expect(() => fromOnnx(11)).toThrow('unsupported ONNX data type 11 (DOUBLE)');
    expect(() => fromOnnx(18)).toThrow('unsupported ONNX data type 18 (FLOAT8E4M3FNUZ)');
    expect(() => floatInfo('i32')).toThrow();
  });

  it('round and roundArray agree with encode/decode; ints truncate, bool is 0/1', () => {
    const src = [0, -0, 1.1, -2.5, 65519, 65520, 1e-8, 3e38, Infinity, NaN, 448.5, 500, -1e9];
    for (const d of ['f16', 'bf16', 'f8e4m3fn', 'f8e5m2'] as const) {
      const expected = src.map((x) => decode(d, encode(d, x)));
      const arr = roundArray(d, src);
      expect([...arr]).toEqual(expected);
      expect(src.map((x) => round(d, x))).toEqual(expected);
      const inPlace = Float32Array.from(src);
      expect(roundArray(d, inPlace, inPlace)).toBe(inPlace);
      expect([...inPlace]).toEqual(expected);
    }
    expect(round('f16', 65520)).toBe(Infinity);
    expect(round('f16', 65519.99)).toBe(65504);
    expect(round('f8e4m3fn', 1e6)).toBe(448);
    expect(round('f8e4m3fn', -Infinity)).toBe(-448);
    expect(round('f8e4m3fn', 1e6, { saturate: false })).toBeNaN();
    expect(round('f8e5m2', 1e6)).toBe(57344);
    expect(round('f8e5m2', 1e6, { saturate: false })).toBe(Infinity);
    expect(Object.is(round('f16', -0), -0)).toBe(true);
    expect(Object.is(round('f8e4m3fn', -1e-9), -0)).toBe(true);
    expect(round('f32', 0.1)).toBe(Math.fround(0.1));
    expect([...roundArray('f32', [0.1, 1e40])]).toEqual([Math.fround(0.1), Infinity]);
    expect([round('i32', 2.7), round('i32', -2.7), round('i64', -0.5)]).toEqual([2, -2, -0]);
    expect([round('bool', 0), round('bool', -3), round('bool', 0.25), round('bool', NaN)]).toEqual([0, 1, 1, 1]);
    expect([...roundArray('i32', [1.5, -1.5, 7])]).toEqual([1, -1, 7]);
    expect([...roundArray('bool', [0, 2, -0])]).toEqual([0, 1, 0]);
  });
});

describe('f16 against onnxruntime', () => {
  it('decodes all 65,536 codes exactly', async () => {
    const theirs = await ortDecodeAll(ONNX_FLOAT16, 16);
    const codes = Uint32Array.from({ length: 65536 }, (_, i) => i);
    const ours = codes.map((c) => decodeBits('f16', c));
    expect(mismatches(codes, ours, theirs)).toEqual({ count: 0, sample: [] });
  });

  it('encodes boundary values and 2,000,000 random f32 values like Cast', async () => {
    const x = inputsFor('f16', await ortDecodeAll(ONNX_FLOAT16, 16), 1);
    const theirs = (await ortRunCasts(x, [{ to: ONNX_FLOAT16 }], ONNX_FLOAT16)) as Uint16Array;
    const ours = encodeAll('f16', x);
    // ORT's f16 conversion keeps NaN payload bits; ours gives the canonical NaN, same sign.
    const nanInputs = (i: number) => isNaN32(x[i]!);
    expect(mismatches(x, ours, theirs, nanInputs)).toEqual({ count: 0, sample: [] });
    for (let i = 0; i < x.length; i++) {
      if (!nanInputs(i)) continue;
      expect((theirs[i]! & 0x7c00) === 0x7c00 && (theirs[i]! & 0x3ff) !== 0).toBe(true);
      expect(ours[i]).toBe((theirs[i]! & 0x8000) | 0x7e00);
    }
  });
});

describe('bf16 against onnxruntime', () => {
  it('decodes all 65,536 codes exactly (the bf16 bits are the top half of the f32)', async () => {
    const theirs = await ortDecodeAll(ONNX_BFLOAT16, 16);
    const codes = Uint32Array.from({ length: 65536 }, (_, i) => i);
    expect(mismatches(codes, codes.map((c) => decodeBits('bf16', c)), theirs)).toEqual({ count: 0, sample: [] });
    expect(mismatches(codes, codes.map((c) => (c << 16) >>> 0), theirs)).toEqual({ count: 0, sample: [] });
  });

  it('encodes boundary values and 2,000,000 random f32 values like Cast (NaN bits included)', async () => {
    const x = inputsFor('bf16', await ortDecodeAll(ONNX_BFLOAT16, 16), 2);
    const back = (await ortRunCasts(x, [{ to: ONNX_BFLOAT16 }, { to: ONNX_FLOAT }], ONNX_FLOAT)) as Float32Array;
    const backBits = new Uint32Array(back.slice().buffer);
    const theirs = backBits.map((b) => b >>> 16);
    expect(backBits.every((b) => (b & 0xffff) === 0)).toBe(true);
    expect(mismatches(x, encodeAll('bf16', x), theirs)).toEqual({ count: 0, sample: [] });
  });
});

describe.each([
  { d: 'f8e4m3fn' as const, onnxType: ONNX_F8E4M3FN, seed: 3 },
  { d: 'f8e5m2' as const, onnxType: ONNX_F8E5M2, seed: 4 },
])('$d against onnxruntime', ({ d, onnxType, seed }) => {
  let decoded: Uint32Array | undefined;
  const ortDecoded = async () => (decoded ??= await ortDecodeAll(onnxType, 8));

  it('decodes all 256 codes exactly (NaN codes: NaN of the same sign)', async () => {
    const theirs = await ortDecoded();
    const codes = Uint32Array.from({ length: 256 }, (_, i) => i);
    const ours = codes.map((c) => decodeBits(d, c));
    expect(mismatches(codes, ours, theirs, (i) => isNaN32(theirs[i]!) && isNaN32(ours[i]!))).toEqual({ count: 0, sample: [] });
    const nanCodes = [...codes].filter((c) => isNaN32(theirs[c]!));
    for (const c of nanCodes) expect(ours[c]! >>> 31).toBe(theirs[c]! >>> 31);
    expect(nanCodes).toEqual(d === 'f8e4m3fn' ? [0x7f, 0xff] : [0x7d, 0x7e, 0x7f, 0xfd, 0xfe, 0xff]);
  });

  it('encodes with saturate=1 (the default) like Cast on boundary values and 2,000,000 random f32', async () => {
    const x = inputsFor(d, await ortDecoded(), seed);
    const theirs = await ortEncodeFp8Folded(onnxType, 1, x);
    expect(mismatches(x, encodeAll(d, x), theirs)).toEqual({ count: 0, sample: [] });
    expect(mismatches(x, encodeAll(d, x, true), theirs)).toEqual({ count: 0, sample: [] });
    // The folded result is what the run-time kernel computes too (seen through its f32 decode).
    const n = 200_000;
    const head = x.subarray(0, n);
    const runtime = new Uint32Array(((await ortRunCasts(head, [{ to: onnxType, saturate: 1 }, { to: ONNX_FLOAT }], ONNX_FLOAT)) as Float32Array).slice().buffer);
    const dec = await ortDecoded();
    expect(mismatches(head, Uint32Array.from(theirs.subarray(0, n), (c) => dec[c]!), runtime)).toEqual({ count: 0, sample: [] });
  });

  it('encodes with saturate=0 like Cast on boundary values and 2,000,000 random f32', async () => {
    const x = inputsFor(d, await ortDecoded(), seed + 10);
    const theirs = await ortEncodeFp8Folded(onnxType, 0, x);
    const ours = encodeAll(d, x, false);
    // Known differences, both where a value lies beyond max but not beyond the top binade:
    // - f8e4m3fn, |x| in [480, 496): ORT's kernel clips the truncated mantissa back to 448 and,
    //   as the discarded bits are below half, keeps ±448. RNE puts x above max, and the ONNX
    //   spec (saturate=0: |x| > max → NaN) gives NaN, which is what we produce.
    // - f8e5m2, |x| in [61440, 65536): rounding carries past max and ORT's kernel returns NaN;
    //   IEEE rounding and the ONNX spec (saturate=0: out of range → ±Inf) give ±inf, as we do.
    const band = d === 'f8e4m3fn' ? { lo: 480, hi: 496, ours: 0x7f, ort: 0x7e } : { lo: 61440, hi: 65536, ours: 0x7c, ort: 0x7f };
    const inBand = (i: number) => {
      const v = Math.abs(f32FromBits(x[i]!));
      return v >= band.lo && v < band.hi;
    };
    expect(mismatches(x, ours, theirs, inBand)).toEqual({ count: 0, sample: [] });
    let seen = 0;
    for (let i = 0; i < x.length; i++) {
      if (!inBand(i)) continue;
      seen++;
      const sign = x[i]! >>> 31 ? 0x80 : 0;
      expect([ours[i], theirs[i]]).toEqual([sign | band.ours, sign | band.ort]);
    }
    expect(seen).toBeGreaterThan(0);
  });
});

describe('encode on JS numbers', () => {
  it('rounds to f32 first, then to the format', () => {
    // 1 + 2^-11 + 2^-40 is above the f16 tie at 1 + 2^-11 but rounds to the tie in f32 first.
    expect(encode('f16', 1 + 2 ** -11 + 2 ** -40)).toBe(0x3c00);
    expect(encode('f16', 1 + 2 ** -11 + 2 ** -20)).toBe(0x3c01);
    expect(encode('bf16', 1e39)).toBe(0x7f80);
    expect(encode('f8e4m3fn', 1e39)).toBe(0x7e);
  });

  it('agrees with encodeBits on f32 values', () => {
    const rnd = mulberry32(9);
    for (const d of ['f16', 'bf16', 'f8e4m3fn', 'f8e5m2'] as const) {
      let bad = 0;
      for (let i = 0; i < 20000; i++) {
        const b = rnd();
        if (!isNaN32(b) && encode(d, f32FromBits(b)) !== encodeBits(d, b)) bad++;
      }
      expect(bad).toBe(0);
      expect(isNaN32(decodeBits(d, encode(d, NaN)))).toBe(true);
    }
  });
});

// An oracle written differently from the code under test: binary search for the nearest
// representable magnitude, ties to the even code. Past max sits one virtual code (max + one
// ulp): a value that rounds to it overflows. It backs our side of the two saturate=0
// differences with ORT above, and re-checks the ordinary rounding on random values.
describe('nearest-value oracle', () => {
  function oracle(d: FloatDType) {
    const fi = floatInfo(d);
    const values: number[] = [];
    for (let c = 0; c <= fi.maxCode; c++) values.push(decode(d, c));
    values.push(fi.maxFinite + 2 ** (Math.floor(Math.log2(fi.maxFinite)) - fi.mantBits));
    return (x: number, saturate: boolean): number => {
      const sign = x < 0 || Object.is(x, -0) ? 2 ** (fi.bits - 1) : 0;
      const a = Math.abs(x);
      const overflow = saturate ? fi.maxCode : (fi.infCode ?? fi.nanCode);
      if (Number.isNaN(x)) return sign | fi.nanCode;
      if (a === Infinity) return sign | overflow;
      let lo = 0;
      let hi = values.length - 1;
      if (a >= values[hi]!) return sign | overflow;
      while (hi - lo > 1) {
        const mid = (lo + hi) >> 1;
        if (values[mid]! <= a) lo = mid;
        else hi = mid;
      }
      const dl = a - values[lo]!;
      const dh = values[hi]! - a;
      const code = dl < dh || (dl === dh && lo % 2 === 0) ? lo : hi;
      return sign | (code > fi.maxCode ? overflow : code);
    };
  }

  it.each(['f16', 'bf16', 'f8e4m3fn', 'f8e5m2'] as const)('%s: 300,000 values agree, both saturate modes', (d) => {
    const near = oracle(d);
    const fi = floatInfo(d);
    const x = randomInputs(d, 150_000, 77);
    const bands = [480, 496, 61440, 65536, fi.maxFinite];
    const extra: number[] = [];
    for (const b of bands) for (let k = -40; k <= 40; k++) extra.push(f32BitsOf(b * (1 + k / 512)));
    const step = Math.max(1, fi.maxCode >> 8);
    for (let c = 0; c < fi.maxCode; c += step) {
      const tie = f32BitsOf((decode(d, c) + decode(d, c + 1)) / 2);
      extra.push(tie, tie + 1, tie - 1, (tie | 0x80000000) >>> 0);
    }
    let bad = 0;
    const sample: string[] = [];
    for (const b of [...x, ...extra]) {
      const v = f32FromBits(b);
      for (const saturate of [true, false]) {
        const want = near(v, saturate);
        const got = encodeBits(d, b, { saturate });
        if (got !== want && !(isNaN32(b) && got === (want | (b >>> 31 ? 2 ** (fi.bits - 1) : 0)))) {
          bad++;
          if (sample.length < 10) sample.push(`${hex(b)} sat=${saturate}: ours ${hex(got)} oracle ${hex(want)}`);
        }
      }
    }
    expect({ bad, sample }).toEqual({ bad: 0, sample: [] });
  });
});
