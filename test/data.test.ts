import { createHash } from 'node:crypto';
import { mkdtempSync, readFileSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { gzipSync, inflateRawSync } from 'node:zlib';
import { describe, expect, it } from 'vitest';

import { loadFashionMnist, loadIdxPair, loadNpyPair } from '../src/data/datasets.js';
import { parseIdx, readIdx } from '../src/data/idx.js';
import {
  crc32,
  crc32Portable,
  encodeNpz,
  floatToHalfBits,
  halfBitsToFloat,
  readNpy,
  readNpz,
  readZipEntries,
  saveNpy,
  writeNpy,
  writeNpz,
  type NpyArray,
} from '../src/data/npy.js';
import { decodeSafetensors, encodeSafetensors, readSafetensors, writeSafetensors } from '../src/data/safetensors.js';

const FIXTURES = join(import.meta.dirname, 'fixtures');
const tmp = mkdtempSync(join(tmpdir(), 'mpc-data-'));

/** An IDX file in big-endian layout: type code, dims, then values written by `put`. */
function idxBytes(code: number, shape: number[], size: number, put: (v: DataView, off: number, i: number) => void): Uint8Array {
  const count = shape.reduce((a, b) => a * b, 1);
  const out = new Uint8Array(4 + 4 * shape.length + count * size);
  const v = new DataView(out.buffer);
  out[2] = code;
  out[3] = shape.length;
  shape.forEach((d, i) => v.setUint32(4 + 4 * i, d, false));
  for (let i = 0; i < count; i++) put(v, 4 + 4 * shape.length + i * size, i);
  return out;
}

/** A hand-written .npy file with the given header dict text and data bytes. */
function npyWithHeader(dict: string, data: Uint8Array): Uint8Array {
  let header = dict;
  header += ' '.repeat((64 - ((10 + header.length + 1) % 64)) % 64) + '\n';
  const out = new Uint8Array(10 + header.length + data.length);
  out.set([0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59, 1, 0]);
  new DataView(out.buffer).setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  out.set(data, 10 + header.length);
  return out;
}

describe('idx', () => {
  it('reads u8, i16, i32, f32 and f64 in big-endian order, plain and gzipped', () => {
    const u8 = idxBytes(0x08, [2, 3], 1, (v, o, i) => v.setUint8(o, i * 40));
    writeFileSync(join(tmp, 'u8.idx'), u8);
    writeFileSync(join(tmp, 'u8.idx.gz'), gzipSync(u8));
    for (const p of ['u8.idx', 'u8.idx.gz']) {
      const t = readIdx(join(tmp, p));
      expect(t.dtype).toBe('u8');
      expect(t.shape).toEqual([2, 3]);
      expect(Array.from(t.data)).toEqual([0, 40, 80, 120, 160, 200]);
    }
    const i16 = parseIdx(idxBytes(0x0b, [3], 2, (v, o, i) => v.setInt16(o, [-2, 300, 32767][i]!, false)));
    expect([i16.dtype, Array.from(i16.data)]).toEqual(['i16', [-2, 300, 32767]]);
    const i32 = parseIdx(idxBytes(0x0c, [2], 4, (v, o, i) => v.setInt32(o, [-70000, 123456789][i]!, false)));
    expect([i32.dtype, Array.from(i32.data)]).toEqual(['i32', [-70000, 123456789]]);
    const f32 = parseIdx(idxBytes(0x0d, [1, 2], 4, (v, o, i) => v.setFloat32(o, [1.5, -0.25][i]!, false)));
    expect([f32.dtype, f32.shape, Array.from(f32.data)]).toEqual(['f32', [1, 2], [1.5, -0.25]]);
    const f64 = parseIdx(idxBytes(0x0e, [1], 8, (v, o) => v.setFloat64(o, Math.PI, false)));
    expect([f64.dtype, Array.from(f64.data)]).toEqual(['f64', [Math.PI]]);
    const i8 = parseIdx(idxBytes(0x09, [2], 1, (v, o, i) => v.setInt8(o, [-128, 5][i]!)));
    expect([i8.dtype, Array.from(i8.data)]).toEqual(['i8', [-128, 5]]);
  });

  it('rejects malformed files with messages that start with the path', () => {
    const good = idxBytes(0x08, [4, 2], 1, (v, o, i) => v.setUint8(o, i));
    const cases: Array<[string, Uint8Array, RegExp]> = [
      ['magic.idx', Uint8Array.from([1, 0, 8, 1, 0, 0, 0, 0]), /not an IDX file/],
      ['type.idx', Uint8Array.from([0, 0, 0x0a, 1, 0, 0, 0, 0]), /unknown IDX type code 0x0a/],
      ['short.idx', Uint8Array.from([0, 0]), /truncated IDX header/],
      ['dims.idx', good.subarray(0, 9), /truncated IDX header/],
      ['data.idx', good.subarray(0, good.length - 1), /truncated IDX data: shape \[4, 2\] of u8 needs 20 bytes, file has 19/],
      ['trailing.idx', Uint8Array.from([...good, 0]), /1 trailing bytes/],
      ['badgz.idx.gz', Uint8Array.from([0x1f, 0x8b, 8, 0, 1, 2, 3]), /corrupt gzip stream/],
    ];
    for (const [name, bytes, re] of cases) {
      const p = join(tmp, name);
      writeFileSync(p, bytes);
      expect(() => readIdx(p)).toThrow(re);
      expect(() => readIdx(p)).toThrow(new RegExp(`^${p.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}: `));
    }
    expect(() => readIdx(join(tmp, 'nope.idx'))).toThrow(/nope\.idx: cannot read IDX file/);
  });
});

describe('float16 conversion', () => {
  it('rounds to nearest even and handles subnormals, overflow and NaN', () => {
    const cases: Array<[number, number]> = [
      [0, 0x0000],
      [-0, 0x8000],
      [1, 0x3c00],
      [-2, 0xc000],
      [65504, 0x7bff],
      [65520, 0x7c00], // halfway to the next binade rounds to even: infinity
      [65519, 0x7bff],
      [1e9, 0x7c00],
      [-Infinity, 0xfc00],
      [2 ** -24, 0x0001], // smallest subnormal
      [2 ** -25, 0x0000], // tie between 0 and the smallest subnormal: even is 0
      [3 * 2 ** -25, 0x0002], // tie between 1 and 2 subnormal units: even is 2
      [2 ** -14, 0x0400], // smallest normal
      [1 + 2 ** -11, 0x3c00], // tie: stays at even mantissa 0
      [1 + 3 * 2 ** -11, 0x3c02], // tie: rounds up to even mantissa 2
      [0.1, 0x2e66],
    ];
    for (const [v, bits] of cases) expect(floatToHalfBits(v), `${v}`).toBe(bits);
    expect(floatToHalfBits(NaN) & 0x7c00).toBe(0x7c00);
    expect(floatToHalfBits(NaN) & 0x3ff).not.toBe(0);
    expect(halfBitsToFloat(0x7bff)).toBe(65504);
    expect(halfBitsToFloat(0x0001)).toBe(2 ** -24);
    expect(halfBitsToFloat(0xfc00)).toBe(-Infinity);
    expect(halfBitsToFloat(0x7e00)).toBeNaN();
    for (let h = 0; h < 0x10000; h++) {
      if ((h & 0x7c00) === 0x7c00 && h & 0x3ff) continue;
      const back = floatToHalfBits(halfBitsToFloat(h));
      if (back !== h) expect(back, `bits 0x${h.toString(16)}`).toBe(h);
    }
  });
});

describe('npy', () => {
  const samples: Record<string, NpyArray> = {
    f4: { dtype: 'f4', shape: [2, 3], data: Float32Array.from([0, 0.25, 0.5, 0.75, 1, 1.25]) },
    f8: { dtype: 'f8', shape: [3], data: Float64Array.from([Math.PI, -Math.E, 1e300]) },
    f2: { dtype: 'f2', shape: [6], data: Float32Array.from([1, 0.5, -2, 65504, 2 ** -24, Infinity]) },
    i8: { dtype: 'i8', shape: [4], data: Int32Array.from([-3, 2 ** 31 - 1, 0, -(2 ** 31)]) },
    i4: { dtype: 'i4', shape: [2, 2], data: Int32Array.from([7, -8, 9, -10]) },
    u1: { dtype: 'u1', shape: [3], data: Uint8Array.from([0, 255, 7]) },
    b1: { dtype: 'b1', shape: [3], data: Uint8Array.from([1, 0, 1]) },
    scalar: { dtype: 'f8', shape: [], data: Float64Array.from([42.5]) },
    empty: { dtype: 'f4', shape: [0, 3], data: new Float32Array(0) },
  };

  it('round-trips every supported dtype, scalars and empty arrays', () => {
    for (const [name, a] of Object.entries(samples)) {
      const bytes = writeNpy(a);
      expect((10 + new DataView(bytes.buffer).getUint16(8, true)) % 64, name).toBe(0);
      const b = readNpy(bytes);
      expect(b.dtype, name).toBe(a.dtype);
      expect(b.shape, name).toEqual(a.shape);
      expect(b.data.constructor, name).toBe(a.data.constructor);
      expect(Array.from(b.data), name).toEqual(Array.from(a.data));
    }
    const p = join(tmp, 'a.npy');
    saveNpy(p, samples.f4!);
    expect(Array.from(readNpy(p).data)).toEqual(Array.from(samples.f4!.data));
  });

  it('writes the same bytes as numpy (entries of the numpy-written npz)', () => {
    const entries = readZipEntries(readFileSync(join(FIXTURES, 'numpy-sample.npz')));
    expect(Object.keys(entries).sort()).toEqual(Object.keys(samples).map((k) => `${k}.npy`).sort());
    for (const [name, a] of Object.entries(samples)) {
      const mine = writeNpy(a);
      expect(Buffer.from(mine).equals(Buffer.from(entries[`${name}.npy`]!)), name).toBe(true);
    }
  });

  it('rejects malformed and unsupported files clearly', () => {
    const f4 = writeNpy(samples.f4!);
    expect(() => readNpy(Uint8Array.from([1, 2, 3]), 'x.npy')).toThrow(/^x\.npy: not an npy file/);
    expect(() => readNpy(f4.subarray(0, f4.length - 1), 'x.npy')).toThrow(/^x\.npy: truncated npy data/);
    expect(() => readNpy(f4.subarray(0, 40), 'x.npy')).toThrow(/^x\.npy: truncated npy header/);
    const four = new Uint8Array(16);
    expect(() => readNpy(npyWithHeader("{'descr': '<f4', 'fortran_order': True, 'shape': (2, 2), }", four), 'x.npy')).toThrow(
      /^x\.npy: Fortran-order npy arrays are not supported/,
    );
    expect(() => readNpy(npyWithHeader("{'descr': '>f4', 'fortran_order': False, 'shape': (4,), }", four), 'x.npy')).toThrow(
      /big-endian npy dtype '>f4'/,
    );
    expect(() => readNpy(npyWithHeader("{'descr': '<c8', 'fortran_order': False, 'shape': (2,), }", four), 'x.npy')).toThrow(
      /unsupported npy dtype '<c8'/,
    );
    expect(() => readNpy(npyWithHeader("{'descr': [('a', '<f4')], 'fortran_order': False, 'shape': (2,), }", four), 'x.npy')).toThrow(
      /structured dtypes are not supported/,
    );
    const big = new Uint8Array(8);
    new DataView(big.buffer).setBigInt64(0, 2n ** 40n, true);
    expect(() => readNpy(npyWithHeader("{'descr': '<i8', 'fortran_order': False, 'shape': (1,), }", big), 'x.npy')).toThrow(
      /int64 value 1099511627776 at index 0 does not fit in int32/,
    );
    // A one-byte type with '|' or '<' byte order, and Python 2 style long dims, read fine.
    const u1 = readNpy(npyWithHeader("{'descr': '<u1', 'fortran_order': False, 'shape': (2L, 2L), }", Uint8Array.from([1, 2, 3, 4])));
    expect([u1.dtype, u1.shape, Array.from(u1.data)]).toEqual(['u1', [2, 2], [1, 2, 3, 4]]);
    expect(() => writeNpy({ dtype: 'f4', shape: [2], data: Float64Array.from([1, 2]) })).toThrow(/needs a Float32Array, got Float64Array/);
    expect(() => writeNpy({ dtype: 'f4', shape: [3], data: Float32Array.from([1, 2]) })).toThrow(/has 3 elements but data has 2/);
  });
});

describe('npz', () => {
  function expectSample(arrays: Record<string, NpyArray>) {
    expect(arrays.f4!.shape).toEqual([2, 3]);
    expect(Array.from(arrays.f4!.data)).toEqual([0, 0.25, 0.5, 0.75, 1, 1.25]);
    expect(Array.from(arrays.f8!.data)).toEqual([Math.PI, -Math.E, 1e300]);
    expect(arrays.f2!.data).toBeInstanceOf(Float32Array);
    expect(Array.from(arrays.f2!.data)).toEqual([1, 0.5, -2, 65504, 2 ** -24, Infinity]);
    expect(arrays.i8!.data).toBeInstanceOf(Int32Array);
    expect(Array.from(arrays.i8!.data)).toEqual([-3, 2 ** 31 - 1, 0, -(2 ** 31)]);
    expect([arrays.i4!.shape, Array.from(arrays.i4!.data)]).toEqual([[2, 2], [7, -8, 9, -10]]);
    expect(Array.from(arrays.u1!.data)).toEqual([0, 255, 7]);
    expect([arrays.b1!.dtype, Array.from(arrays.b1!.data)]).toEqual(['b1', [1, 0, 1]]);
    expect([arrays.scalar!.shape, Array.from(arrays.scalar!.data)]).toEqual([[], [42.5]]);
    expect([arrays.empty!.shape, arrays.empty!.data.length]).toEqual([[0, 3], 0]);
  }

  it('reads an archive written by numpy.savez (stored, zip64 local headers)', () => {
    const arrays = readNpz(join(FIXTURES, 'numpy-sample.npz'));
    expect(Object.keys(arrays).sort()).toEqual(['b1', 'empty', 'f2', 'f4', 'f8', 'i4', 'i8', 'scalar', 'u1']);
    expectSample(arrays);
  });

  it('reads an archive written by numpy.savez_compressed (deflated)', () => {
    const arrays = readNpz(join(FIXTURES, 'numpy-sample-compressed.npz'));
    expectSample(arrays);
    expect(arrays.big!.dtype).toBe('i4');
    expect(Array.from(arrays.big!.data)).toEqual(Array.from({ length: 1000 }, (_, i) => i % 7));
  });

  it('round-trips through writeNpz and is deterministic', () => {
    const arrays = readNpz(join(FIXTURES, 'numpy-sample.npz'));
    const p = join(tmp, 'rt.npz');
    writeNpz(p, arrays);
    expectSample(readNpz(p));
    expect(Buffer.from(readFileSync(p)).equals(Buffer.from(encodeNpz(arrays)))).toBe(true);
  });

  it('checks CRC-32 and structure', () => {
    const bytes = encodeNpz({ a: { dtype: 'f4', shape: [4], data: Float32Array.from([1, 2, 3, 4]) } });
    const corrupt = bytes.slice();
    corrupt[30 + 'a.npy'.length + 130] ^= 0xff; // a byte of the float data
    expect(() => readNpz(corrupt, 'c.npz')).toThrow(/^c\.npz: entry 'a\.npy' fails its CRC-32 check/);
    expect(() => readNpz(Uint8Array.from(Array(100).fill(7)), 'c.npz')).toThrow(/^c\.npz: not a zip\/npz archive/);
    expect(() => readNpz(join(tmp, 'missing.npz'))).toThrow(/missing\.npz: cannot read npz file/);
  });

  it('computes CRC-32 the same with and without node:zlib', () => {
    const check = new TextEncoder().encode('123456789');
    expect(crc32(check)).toBe(0xcbf43926);
    expect(crc32Portable(check)).toBe(0xcbf43926);
    const random = Uint8Array.from({ length: 4097 }, (_, i) => (i * 2654435761) >>> 24);
    expect(crc32Portable(random)).toBe(crc32(random));
  });
});

describe('safetensors', () => {
  const f32 = new Uint8Array(Float32Array.from([1, -2, 3.5]).buffer);

  it('round-trips tensors and metadata with a sorted, 8-byte-aligned header', () => {
    const tensors = {
      'z.weight': { dtype: 'F32' as const, shape: [3], data: f32 },
      'a.bias': { dtype: 'BF16' as const, shape: [1, 2], data: Uint8Array.from([0x80, 0x3f, 0x00, 0xc0]) },
      fp8: { dtype: 'F8_E4M3' as const, shape: [5], data: Uint8Array.from([1, 2, 3, 4, 5]) },
      steps: { dtype: 'I64' as const, shape: [], data: new Uint8Array(8).fill(1) },
    };
    const p = join(tmp, 'x.safetensors');
    writeSafetensors(p, tensors, { format: 'pt', step: '3' });
    const bytes = readFileSync(p);
    const n = Number(bytes.readBigUInt64LE(0));
    expect((8 + n) % 8).toBe(0);
    const headerText = bytes.subarray(8, 8 + n).toString('utf8');
    expect(headerText.trimEnd()).toBe(
      '{"__metadata__":{"format":"pt","step":"3"},' +
        '"a.bias":{"dtype":"BF16","shape":[1,2],"data_offsets":[0,4]},' +
        '"fp8":{"dtype":"F8_E4M3","shape":[5],"data_offsets":[4,9]},' +
        '"steps":{"dtype":"I64","shape":[],"data_offsets":[9,17]},' +
        '"z.weight":{"dtype":"F32","shape":[3],"data_offsets":[17,29]}}',
    );
    expect(/^ *$/.test(headerText.slice(headerText.trimEnd().length))).toBe(true);
    expect(bytes.length).toBe(8 + n + 29);
    const back = readSafetensors(p);
    expect(back.metadata).toEqual({ format: 'pt', step: '3' });
    for (const [k, t] of Object.entries(tensors)) {
      expect(back.tensors[k]!.dtype).toBe(t.dtype);
      expect(back.tensors[k]!.shape).toEqual(t.shape);
      expect(Array.from(back.tensors[k]!.data)).toEqual(Array.from(t.data));
    }
    expect(Array.from(new Float32Array(back.tensors['z.weight']!.data.buffer))).toEqual([1, -2, 3.5]);
  });

  it('rejects malformed files and bad input', () => {
    const good = encodeSafetensors({ w: { dtype: 'F32', shape: [3], data: f32 } });
    const withHeader = (h: string, data = f32) => {
      const hb = Buffer.from(h);
      const out = Buffer.alloc(8 + hb.length + data.length);
      out.writeBigUInt64LE(BigInt(hb.length), 0);
      hb.copy(out, 8);
      out.set(data, 8 + hb.length);
      return out;
    };
    expect(() => decodeSafetensors(good.subarray(0, 5), 's')).toThrow(/^s: truncated safetensors file/);
    expect(() => decodeSafetensors(good.subarray(0, 20), 's')).toThrow(/^s: truncated safetensors header/);
    const huge = good.slice();
    new DataView(huge.buffer).setBigUint64(0, 2n ** 40n, true);
    expect(() => decodeSafetensors(huge, 's')).toThrow(/header length \d+ is too large/);
    expect(() => decodeSafetensors(withHeader('{"w":'), 's')).toThrow(/header is not valid JSON/);
    expect(() => decodeSafetensors(withHeader('{"w":{"dtype":"C64","shape":[3],"data_offsets":[0,12]}}'), 's')).toThrow(/unsupported dtype "C64"/);
    expect(() => decodeSafetensors(withHeader('{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,16]}}'), 's')).toThrow(/outside the 12-byte data section/);
    expect(() => decodeSafetensors(withHeader('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,12]}}'), 's')).toThrow(/needs 8 bytes, data_offsets span 12/);
    expect(() => decodeSafetensors(withHeader('{"w":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}'), 's')).toThrow(/starts at 4, expected 0/);
    expect(() => decodeSafetensors(withHeader('{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}'), 's')).toThrow(/4 bytes of data after the last tensor/);
    expect(() => decodeSafetensors(withHeader('{"__metadata__":{"a":1}}', new Uint8Array(0)), 's')).toThrow(/must be a string/);
    expect(() => encodeSafetensors({ w: { dtype: 'F32', shape: [4], data: f32 } })).toThrow(/needs 16 bytes, got 12/);
    expect(() => readSafetensors(join(tmp, 'none.safetensors'))).toThrow(/none\.safetensors: cannot read/);
  });
});

describe('datasets', () => {
  it('loads user IDX and npy pairs', () => {
    const images = idxBytes(0x08, [3, 2, 2], 1, (v, o, i) => v.setUint8(o, i * 20));
    const labels = idxBytes(0x08, [3], 1, (v, o, i) => v.setUint8(o, [2, 0, 1][i]!));
    writeFileSync(join(tmp, 'img.idx.gz'), gzipSync(images));
    writeFileSync(join(tmp, 'lab.idx'), labels);
    const d = loadIdxPair(join(tmp, 'img.idx.gz'), join(tmp, 'lab.idx'));
    expect([d.n, d.shape, Array.from(d.y)]).toEqual([3, [2, 2], [2, 0, 1]]);
    expect(d.x[11]).toBeCloseTo(220 / 255, 7);

    saveNpy(join(tmp, 'x.npy'), { dtype: 'f8', shape: [2, 3], data: Float64Array.from([1, 2, 3, 4, 5, 6]) });
    saveNpy(join(tmp, 'y.npy'), { dtype: 'i8', shape: [2], data: Int32Array.from([4, 9]) });
    const e = loadNpyPair(join(tmp, 'x.npy'), join(tmp, 'y.npy'));
    expect([e.n, e.shape, Array.from(e.x), Array.from(e.y)]).toEqual([2, [3], [1, 2, 3, 4, 5, 6], [4, 9]]);
    expect(e.x).toBeInstanceOf(Float32Array);
    expect(e.y).toBeInstanceOf(Int32Array);

    saveNpy(join(tmp, 'y3.npy'), { dtype: 'i4', shape: [3], data: Int32Array.from([1, 2, 3]) });
    expect(() => loadNpyPair(join(tmp, 'x.npy'), join(tmp, 'y3.npy'))).toThrow(/labels for 3 samples, .* has 2/);
    expect(() => loadNpyPair(join(tmp, 'x.npy'), join(tmp, 'x.npy'))).toThrow(/labels must be integers, got f8/);
  });

  it('says in one line how to install Fashion-MNIST when it is missing', () => {
    let message = '';
    try {
      loadFashionMnist(join(tmp, 'no-such-dir'));
    } catch (e) {
      message = (e as Error).message;
    }
    expect(message).toMatch(/^Fashion-MNIST data set is missing/);
    expect(message).toContain('apt-get install dataset-fashion-mnist');
    expect(message).not.toContain('\n');
  });

  // Expected values were computed once with Python's gzip module and numpy from the same
  // .gz files: an independent IDX reader.
  // scripts/setup-debian.sh installs the data set: its absence is a failure, not a skip.
  describe('Fashion-MNIST', () => {
    const data = loadFashionMnist();
    const pixelSum = (x: Float32Array, from = 0, to = x.length) => {
      let s = 0;
      for (let i = from; i < to; i++) s += Math.round(x[i]! * 255);
      return s;
    };

    it('has the documented shapes and balanced labels', () => {
      expect(data.shape).toEqual([1, 28, 28]);
      expect(data.classes).toBe(10);
      expect([data.train.n, data.train.x.length, data.train.y.length]).toEqual([60000, 60000 * 784, 60000]);
      expect([data.test.n, data.test.x.length, data.test.y.length]).toEqual([10000, 10000 * 784, 10000]);
      for (const [split, n] of [[data.train, 6000], [data.test, 1000]] as const) {
        const counts = new Array(10).fill(0);
        for (const y of split.y) counts[y]++;
        expect(counts).toEqual(new Array(10).fill(n));
      }
      let min = Infinity;
      let max = -Infinity;
      for (const v of data.train.x) {
        if (v < min) min = v;
        if (v > max) max = v;
      }
      expect([min, max]).toEqual([0, 1]);
    });

    it('matches checksums from an independent reader', () => {
      expect(Array.from(data.train.y.subarray(0, 10))).toEqual([9, 0, 0, 3, 0, 2, 7, 2, 5, 5]);
      expect(Array.from(data.test.y.subarray(0, 10))).toEqual([9, 2, 1, 1, 6, 1, 4, 6, 5, 7]);
      expect(pixelSum(data.train.x)).toBe(3431114169);
      expect(pixelSum(data.test.x)).toBe(573469082);
      expect(pixelSum(data.train.x, 0, 784)).toBe(76247);
      expect(pixelSum(data.train.x, 59999 * 784)).toBe(16684);
      expect(pixelSum(data.test.x, 0, 784)).toBe(33456);
      expect(Array.from(data.train.x.subarray(14 * 28 + 10, 14 * 28 + 16), (v) => Math.round(v * 255))).toEqual([0, 0, 237, 226, 217, 223]);
      let s = 0;
      for (let i = 0; i < 784; i++) s += data.train.x[i]!;
      expect(s).toBeCloseTo(299.0078472062014, 9);
    });

    it('agrees with the batch stored in the PyTorch fixture', () => {
      const fixture = JSON.parse(readFileSync(join(FIXTURES, 'mlp-torch.json'), 'utf8'));
      const decode = (a: { dtype: string; shape: number[]; deflate_b64: string }) => {
        const raw = inflateRawSync(Buffer.from(a.deflate_b64, 'base64'));
        const bytes = new Uint8Array(raw.buffer, raw.byteOffset, raw.byteLength).slice();
        return a.dtype === 'f32' ? new Float32Array(bytes.buffer) : new Int32Array(bytes.buffer);
      };
      expect(fixture.batch.x.shape).toEqual([8, 1, 28, 28]);
      expect(Array.from(decode(fixture.batch.x))).toEqual(Array.from(data.train.x.subarray(0, 8 * 784)));
      expect(Array.from(decode(fixture.batch.y))).toEqual(Array.from(data.train.y.subarray(0, 8)));
    });
  });
});

describe('PyTorch fixture', () => {
  it('belongs to the bundled model and holds a gradient for every initializer', () => {
    const fixture = JSON.parse(readFileSync(join(FIXTURES, 'mlp-torch.json'), 'utf8'));
    const model = readFileSync(join(import.meta.dirname, '..', 'models', 'mlp.onnx'));
    expect(fixture.format).toBe('mpc-torch-fixture/1');
    expect(fixture.model_sha256).toBe(createHash('sha256').update(model).digest('hex'));
    const shapes = { '1.weight': [256, 784], '1.bias': [256], '3.weight': [10, 256], '3.bias': [10] };
    expect(Object.fromEntries(Object.entries(fixture.grads).map(([k, v]) => [k, (v as { shape: number[] }).shape]))).toEqual(shapes);
    for (const opt of ['sgd', 'adam', 'adamw']) {
      expect(Object.keys(fixture.optim[opt].steps)).toEqual(['1', '3']);
      for (const step of ['1', '3']) {
        const delta = fixture.optim[opt].steps[step].delta as Record<string, { shape: number[] }>;
        expect(Object.fromEntries(Object.entries(delta).map(([k, v]) => [k, v.shape]))).toEqual(shapes);
      }
    }
    expect(fixture.loss).toBeCloseTo(2.304177136526667, 12);
  });
});
