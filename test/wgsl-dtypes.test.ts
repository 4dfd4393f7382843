// The generated WGSL conversion helpers, run on the WebGPU device and compared bit for bit with
// the JS codec of ir/dtypes.ts (itself checked against onnxruntime in dtypes.test.ts).

import { describe, expect, it } from 'vitest';
import { emitWgslHelpers, wgslHelperNames } from '../src/codegen/wgsl-dtypes.js';
import { decodeBits, encodeBits, floatInfo, type FloatDType } from '../src/ir/dtypes.js';
import { getGpu, runCompute, type Gpu } from '../src/runtime/device.js';

const FORMATS: FloatDType[] = ['f16', 'bf16', 'f8e4m3fn', 'f8e5m2'];

describe('helper emission', () => {
  it('names every helper of every narrow format', () => {
    const names = wgslHelperNames();
    for (const d of FORMATS) {
      for (const kind of ['to_bits', 'from_bits', 'round', 'unpack', 'pack']) expect(names).toContain(`${kind}_${d}`);
    }
    expect(names).toContain('to_bits_f8e5m2_nosat');
    expect(names.some((n) => n.endsWith('_f32'))).toBe(false);
  });

  it('emits each helper once, after its dependencies, in the same text whatever the request order', () => {
    // (round_bf16, round_f16 and the 8-bit formats' round are branch-free and stand alone.)
    const a = emitWgslHelpers(['round_f8e5m2', 'pack_bf16', 'round_f8e5m2', 'unpack_f8e4m3fn', 'round_bf16']);
    const b = emitWgslHelpers(new Set(['unpack_f8e4m3fn', 'round_bf16', 'pack_bf16', 'round_f8e5m2']));
    expect(a).toBe(b);
    const fns = [...a.matchAll(/^fn (\w+)\(/gm)].map((m) => m[1]);
    expect(new Set(fns).size).toBe(fns.length);
    expect(fns.sort()).toEqual(['round_f8e5m2', 'from_bits_f8e4m3fn', 'pack_bf16', 'round_bf16', 'to_bits_bf16', 'unpack_f8e4m3fn'].sort());
    expect(a.indexOf('fn to_bits_bf16(')).toBeLessThan(a.indexOf('fn pack_bf16('));
    expect(a.indexOf('fn from_bits_f8e4m3fn(')).toBeLessThan(a.indexOf('fn unpack_f8e4m3fn('));
    expect(emitWgslHelpers([])).toBe('');
    expect(() => emitWgslHelpers(['round_f64'])).toThrow(/unknown WGSL dtype helper 'round_f64'/);
  });

  it('does no float arithmetic (only bitcasts between u32 and f32)', () => {
    // The vector decoders (unpack_vec_*) go through unpack2x16float and an exact power-of-two
    // product by design; the device test below checks them bit for bit against unpack_.
    const all = emitWgslHelpers(wgslHelperNames().filter((n) => !n.startsWith('unpack_vec_'))).replace(/\/\/.*$/gm, '');
    // Every f32 in the text is a parameter, a return type or a bitcast target.
    const uses = all.match(/f32/g)?.length ?? 0;
    const allowed = all.match(/(: f32|-> f32|bitcast<f32>)/g)?.length ?? 0;
    expect(uses).toBe(allowed);
    expect(all).not.toMatch(/\b(f16|vec\d<f32>)\b[^_]/);
  });
});

// ---------------------------------------------------------------------------------------------
// On the device

// CI installs lavapipe: no adapter is a failure, not a skip.
const gpuOrReason: Gpu = await getGpu();
const WG = 256;
const MAX_GROUPS = 65535;

/** Runs `body` once per index i < n (a WGSL statement list using `i`), over u32/f32 arrays src and dst. */
async function runKernel(opts: { helpers: string[]; body: string; src: Uint32Array; srcType: 'u32' | 'f32'; n: number }): Promise<Uint32Array> {
  const gpu = gpuOrReason;
  const groups = Math.ceil(opts.n / WG);
  const gx = Math.min(groups, MAX_GROUPS);
  const gy = Math.ceil(groups / gx);
  const wgsl = `${emitWgslHelpers(opts.helpers)}
@group(0) @binding(0) var<storage, read> src: array<${opts.srcType}>;
@group(0) @binding(1) var<storage, read_write> dst: array<u32>;

@compute @workgroup_size(${WG})
fn main(@builtin(global_invocation_id) gid: vec3<u32>) {
  let i = gid.y * ${gx * WG}u + gid.x;
  if (i >= ${opts.n}u) { return; }
  ${opts.body}
}
`;
  const [out] = await runCompute(gpu, {
    wgsl,
    workgroups: [gx, gy, 1],
    buffers: [
      { data: opts.src, access: 'read' },
      { bytes: opts.n * 4, access: 'read_write' },
    ],
  });
  return new Uint32Array(out!);
}

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

const f32BitsOf = (v: number) => new Uint32Array(new Float32Array([v]).buffer)[0]!;
const isNaN32 = (b: number) => (b & 0x7fffffff) > 0x7f800000;
const hex = (n: number) => `0x${(n >>> 0).toString(16)}`;

/**
 * Boundary values (each code's value, the ties between neighbouring codes and past max, and
 * their f32 neighbours, both signs, plus zeros, infinities, NaNs and f32 subnormals), then
 * random bit patterns over all of f32 and random values with exponents near the format's range.
 */
function encodeInputs(d: FloatDType, nRandom: number, seed: number): Uint32Array {
  const fi = floatInfo(d);
  const out: number[] = [
    0, 0x80000000, 0x7f800000, 0xff800000, 0x7fc00000, 0xffc00000, 0x7f800001, 0xff800001, 0x7fffffff, 0x7fc12345,
    0x7f7fffff, 0xff7fffff, 1, 0x80000001, 0x007fffff, 0x00800000, 0x00400000,
  ];
  const near = (b: number) => {
    for (let k = -1; k <= 1; k++) if (b + k >= 0 && b + k < 0x7f800000) out.push(b + k, (b + k) | 0x80000000);
  };
  const step = fi.bits > 8 ? 7 : 1; // a sample of the 16-bit codes is plenty next to the random values
  for (let c = 0; c <= fi.maxCode; c += step) {
    const lo = decodeBits(d, c);
    near(lo);
    const v = new Float32Array(new Uint32Array([lo]).buffer)[0]!;
    const next = c < fi.maxCode ? new Float32Array(new Uint32Array([decodeBits(d, c + 1)]).buffer)[0]! : v + 2 ** (Math.floor(Math.log2(v)) - fi.mantBits);
    near(f32BitsOf((v + next) / 2));
  }
  near(f32BitsOf(fi.maxFinite * 2));
  const rnd = mulberry32(seed);
  for (let i = 0; i < nRandom; i++) out.push(rnd());
  const lo = 127 - fi.bias - fi.mantBits - 2;
  const hi = Math.min(254, 127 + Math.floor(Math.log2(fi.maxFinite)) + 2);
  for (let i = 0; i < nRandom; i++) out.push((rnd() & 0x807fffff) | ((lo + (rnd() % (hi - lo + 1))) << 23));
  return Uint32Array.from(out, (b) => b >>> 0);
}

/** Compares f32 bit patterns; a NaN matches a NaN of the same sign (payload aside). */
function compareF32(x: Uint32Array, got: Uint32Array, want: Uint32Array) {
  let bad = 0;
  const sample: string[] = [];
  for (let i = 0; i < x.length; i++) {
    const g = got[i]!;
    const w = want[i]!;
    const ok = g === w || (isNaN32(g) && isNaN32(w) && g >>> 31 === w >>> 31);
    if (!ok) {
      bad++;
      if (sample.length < 10) sample.push(`in ${hex(x[i]!)}: gpu ${hex(g)} js ${hex(w)}`);
    }
  }
  return { bad, sample };
}

function compareCodes(x: Uint32Array, got: Uint32Array, want: Uint32Array) {
  let bad = 0;
  const sample: string[] = [];
  for (let i = 0; i < x.length; i++) {
    if (got[i] !== want[i]) {
      bad++;
      if (sample.length < 10) sample.push(`in ${hex(x[i]!)}: gpu ${hex(got[i]!)} js ${hex(want[i]!)}`);
    }
  }
  return { bad, sample };
}

describe.each(FORMATS)('%s helpers on the device', (d) => {
  const fi = floatInfo(d);
  const mask = 2 ** fi.bits - 1;

  it('from_bits decodes every code exactly', async () => {
    const codes = Uint32Array.from({ length: 2 ** fi.bits }, (_, i) => i);
    const got = await runKernel({
      helpers: [`from_bits_${d}`],
      body: `dst[i] = bitcast<u32>(from_bits_${d}(src[i]));`,
      src: codes,
      srcType: 'u32',
      n: codes.length,
    });
    expect(compareF32(codes, got, codes.map((c) => decodeBits(d, c)))).toEqual({ bad: 0, sample: [] });
  });

  const variants = [{ fn: `to_bits_${d}`, suffix: '', saturate: fi.saturateByDefault }];
  if (fi.saturateByDefault) variants.push({ fn: `to_bits_${d}_nosat`, suffix: '_nosat', saturate: false });
  it.each(variants)('$fn (and round) agree with the JS codec on 1,000,000 random and the boundary values', async ({ suffix, saturate }) => {
    const x = encodeInputs(d, 500_000, 11 + fi.bits);
    const got = await runKernel({
      helpers: [`to_bits_${d}${suffix}`],
      body: `dst[i] = to_bits_${d}${suffix}(src[i]);`,
      src: x,
      srcType: 'f32',
      n: x.length,
    });
    const want = x.map((b) => encodeBits(d, b, { saturate }));
    expect(compareCodes(x, got, want)).toEqual({ bad: 0, sample: [] });
    if (suffix !== '') return;
    const rounded = await runKernel({
      helpers: [`round_${d}`],
      body: `dst[i] = bitcast<u32>(round_${d}(src[i]));`,
      src: x,
      srcType: 'f32',
      n: x.length,
    });
    expect(compareF32(x, rounded, want.map((c) => decodeBits(d, c)))).toEqual({ bad: 0, sample: [] });
  });

  it(`pack_${d} and unpack_${d} use lane 0 = lowest bits`, async () => {
    const k = fi.perWord;
    const rnd = mulberry32(5);
    const words = Uint32Array.from({ length: 50_000 }, () => rnd());
    const unpacked = await runKernel({
      helpers: [`unpack_${d}`],
      body: `dst[i] = bitcast<u32>(unpack_${d}(src[i / ${k}u], i % ${k}u));`,
      src: words,
      srcType: 'u32',
      n: words.length * k,
    });
    const wantUnpacked = Uint32Array.from({ length: words.length * k }, (_, i) => decodeBits(d, (words[Math.floor(i / k)]! >>> ((i % k) * fi.bits)) & mask));
    expect(compareF32(wantUnpacked, unpacked, wantUnpacked)).toEqual({ bad: 0, sample: [] });

    const values = encodeInputs(d, 20_000, 3);
    const n = Math.floor(values.length / k);
    const args = Array.from({ length: k }, (_, j) => `src[i * ${k}u + ${j}u]`).join(', ');
    const packed = await runKernel({ helpers: [`pack_${d}`], body: `dst[i] = pack_${d}(${args});`, src: values, srcType: 'f32', n });
    const wantPacked = Uint32Array.from({ length: n }, (_, i) => {
      let w = 0;
      for (let j = 0; j < k; j++) w += encodeBits(d, values[i * k + j]!) * 2 ** (j * fi.bits);
      return w;
    });
    expect(compareCodes(wantPacked, packed, wantPacked)).toEqual({ bad: 0, sample: [] });
  });
});

describe('vector decoders of the 8-bit formats on the device', () => {
  for (const d of ['f8e4m3fn', 'f8e5m2'] as const)
    it(`unpack4_${d}, unpack2_${d} and unpack1_${d} equal unpack_${d} bit for bit on every code in every lane`, async () => {
      // Each of the 256 codes in each of the 4 lanes, the other lanes holding other codes.
      const words = new Uint32Array(256 * 4);
      for (let c = 0; c < 256; c++)
        for (let lane = 0; lane < 4; lane++) {
          let w = 0;
          for (let l = 0; l < 4; l++) w |= (l === lane ? c : (c * 37 + l * 101 + 7) & 0xff) << (8 * l);
          words[c * 4 + lane] = w >>> 0;
        }
      const n = words.length * 4;
      const one = await runKernel({ helpers: [`unpack_${d}`], body: `dst[i] = bitcast<u32>(unpack_${d}(src[i / 4u], i % 4u));`, src: words, srcType: 'u32', n });
      const four = await runKernel({ helpers: [`unpack_vec_${d}`], body: `dst[i] = bitcast<u32>(unpack4_${d}(src[i / 4u])[i % 4u]);`, src: words, srcType: 'u32', n });
      const two = await runKernel({ helpers: [`unpack_vec_${d}`], body: `dst[i] = bitcast<u32>(unpack2_${d}(src[i / 4u], (i % 4u) / 2u)[i % 2u]);`, src: words, srcType: 'u32', n });
      const single = await runKernel({ helpers: [`unpack_vec_${d}`], body: `dst[i] = bitcast<u32>(unpack1_${d}(src[i / 4u], i % 4u));`, src: words, srcType: 'u32', n });
      const diff = (got: Uint32Array) => [...got].flatMap((b, i) => (b === one[i] ? [] : [`word ${hex(words[i >> 2])} lane ${i % 4}: ${hex(b)} vs ${hex(one[i])}`])).slice(0, 5);
      expect(diff(four)).toEqual([]);
      expect(diff(two)).toEqual([]);
      expect(diff(single)).toEqual([]);
      // And unpack_ itself decodes to the dtype table's values.
      for (let i = 0; i < n; i++) {
        const code = (words[i >> 2] >>> (8 * (i % 4))) & 0xff;
        const want = decodeBits(d, code) >>> 0;
        if (!(one[i] === want || (isNaN32(one[i]) && isNaN32(want)))) expect.fail(`code ${hex(code)}: ${hex(one[i])} vs ${hex(want)}`);
      }
    });
});

describe('pair decoders of the 16-bit formats on the device', () => {
  for (const d of ['bf16', 'f16'] as const)
    it(`unpack2_${d} equals unpack_${d} on every code in both lanes${d === 'f16' ? ' (a NaN stays a NaN of its sign)' : ', bit for bit'}`, async () => {
      // Each of the 65536 codes in each lane, the other lane holding another code.
      const words = new Uint32Array(65536 * 2);
      for (let c = 0; c < 65536; c++) {
        const other = (c * 40503 + 12345) & 0xffff;
        words[2 * c] = (c | (other << 16)) >>> 0;
        words[2 * c + 1] = (other | (c << 16)) >>> 0;
      }
      const n = words.length * 2;
      const one = await runKernel({ helpers: [`unpack_${d}`], body: `dst[i] = bitcast<u32>(unpack_${d}(src[i / 2u], i % 2u));`, src: words, srcType: 'u32', n });
      const two = await runKernel({ helpers: [`unpack_vec_${d}`], body: `dst[i] = bitcast<u32>(unpack2_${d}(src[i / 2u])[i % 2u]);`, src: words, srcType: 'u32', n });
      const same = (g: number, w: number) => g === w || (d === 'f16' && isNaN32(g) && isNaN32(w) && g >>> 31 === w >>> 31);
      const bad = [...two].flatMap((b, i) => (same(b, one[i]) ? [] : [`word ${hex(words[i >> 1])} lane ${i % 2}: ${hex(b)} vs ${hex(one[i])}`]));
      expect(bad.slice(0, 5)).toEqual([]);
      // And unpack_ decodes to the dtype table's values (subnormals of f16 included).
      for (let i = 0; i < n; i++) {
        const code = (words[i >> 1] >>> (16 * (i % 2))) & 0xffff;
        const want = decodeBits(d, code) >>> 0;
        if (!(one[i] === want || (isNaN32(one[i]) && isNaN32(want)))) expect.fail(`code ${hex(code)}: ${hex(one[i])} vs ${hex(want)}`);
      }
    });
});
