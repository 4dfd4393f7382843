// NumPy .npy and .npz files.
//
// .npy: magic "\x93NUMPY", version (major, minor), header length (u16 for
// version 1, u32 for 2 and 3), then a Python dict literal such as
// {'descr': '<f4', 'fortran_order': False, 'shape': (3, 4), } padded with
// spaces and a newline, then the raw C-order data.
//
// .npz: a zip archive of .npy files. Reading handles stored and deflated
// entries (numpy's savez and savez_compressed) including zip64 fields;
// writing emits stored entries with fixed timestamps so output is
// byte-for-byte reproducible.

import { readFileSync, writeFileSync } from 'node:fs';
import * as zlib from 'node:zlib';

/** Element types supported here, named by their numpy type string without the byte-order mark. */
export type NpyDtype = 'f4' | 'f8' | 'f2' | 'i8' | 'i4' | 'u1' | 'b1';

/**
 * In memory: f4 and f2 live in Float32Array (f2 is widened on read and
 * rounded to nearest-even on write), f8 in Float64Array, i4 and i8 in
 * Int32Array (i8 values outside the int32 range are an error), u1 and b1 in
 * Uint8Array.
 */
export type NpyData = Float32Array | Float64Array | Int32Array | Uint8Array;

export interface NpyArray {
  dtype: NpyDtype;
  shape: number[];
  data: NpyData;
}

const MAGIC = [0x93, 0x4e, 0x55, 0x4d, 0x50, 0x59]; // \x93NUMPY

const ITEM_SIZE: Record<NpyDtype, number> = { f4: 4, f8: 8, f2: 2, i8: 8, i4: 4, u1: 1, b1: 1 };

const DESCR: Record<NpyDtype, string> = { f4: '<f4', f8: '<f8', f2: '<f2', i8: '<i8', i4: '<i4', u1: '|u1', b1: '|b1' };

function expectedArrayType(dtype: NpyDtype): typeof Float32Array | typeof Float64Array | typeof Int32Array | typeof Uint8Array {
  switch (dtype) {
    case 'f4':
    case 'f2':
      return Float32Array;
    case 'f8':
      return Float64Array;
    case 'i4':
    case 'i8':
      return Int32Array;
    case 'u1':
    case 'b1':
      return Uint8Array;
  }
}

function parseDescr(descr: string, name: string): NpyDtype {
  const m = /^([<>|=])([a-z])(\d+)$/.exec(descr);
  if (!m) throw new Error(`${name}: unsupported npy dtype '${descr}'`);
  const [, order, kind, size] = m;
  const dtype = `${kind}${size}` as NpyDtype;
  if (!(dtype in ITEM_SIZE)) throw new Error(`${name}: unsupported npy dtype '${descr}' (supported: ${Object.values(DESCR).join(', ')})`);
  if (order === '>' && ITEM_SIZE[dtype] > 1) throw new Error(`${name}: big-endian npy dtype '${descr}' is not supported`);
  return dtype;
}

// ---------------------------------------------------------------------------
// float16 <-> float32

const f32Scratch = new Float32Array(1);
const u32Scratch = new Uint32Array(f32Scratch.buffer);

/** IEEE binary16 bits to a number. */
export function halfBitsToFloat(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const exp = (h >>> 10) & 0x1f;
  const mant = h & 0x3ff;
  if (exp === 0) return sign * mant * 2 ** -24;
  if (exp === 0x1f) return mant ? NaN : sign * Infinity;
  return sign * (1 + mant / 1024) * 2 ** (exp - 15);
}

/** A float32 value to IEEE binary16 bits, rounding to nearest even; overflow goes to infinity. */
export function floatToHalfBits(v: number): number {
  f32Scratch[0] = v;
  const x = u32Scratch[0]!;
  const sign = (x >>> 16) & 0x8000;
  const exp = (x >>> 23) & 0xff;
  const mant = x & 0x7fffff;
  if (exp === 0xff) return sign | 0x7c00 | (mant ? 0x200 | (mant >>> 13) : 0);
  const e = exp - 127 + 15;
  if (e >= 0x1f) return sign | 0x7c00;
  if (e <= 0) {
    if (e < -10) return sign;
    const full = mant | 0x800000;
    const s = 14 - e;
    let h = full >>> s;
    const rem = full & ((1 << s) - 1);
    const half = 1 << (s - 1);
    if (rem > half || (rem === half && h & 1)) h++;
    return sign | h;
  }
  let h = (e << 10) | (mant >>> 13);
  const rem = mant & 0x1fff;
  if (rem > 0x1000 || (rem === 0x1000 && h & 1)) h++;
  return sign | h;
}

// ---------------------------------------------------------------------------
// .npy

/** Parses .npy bytes, or reads and parses the file at `source`. */
export function readNpy(source: Uint8Array | string, name?: string): NpyArray {
  const label = name ?? (typeof source === 'string' ? source : '<npy>');
  let bytes: Uint8Array;
  if (typeof source === 'string') {
    try {
      bytes = readFileSync(source);
    } catch (e) {
      throw new Error(`${label}: cannot read npy file: ${(e as Error).message}`);
    }
  } else {
    bytes = source;
  }
  if (bytes.length < 10 || MAGIC.some((b, i) => bytes[i] !== b)) throw new Error(`${label}: not an npy file (bad magic)`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const major = bytes[6]!;
  let headerLen: number;
  let headerStart: number;
  if (major === 1) {
    headerLen = view.getUint16(8, true);
    headerStart = 10;
  } else if (major === 2 || major === 3) {
    if (bytes.length < 12) throw new Error(`${label}: truncated npy header`);
    headerLen = view.getUint32(8, true);
    headerStart = 12;
  } else {
    throw new Error(`${label}: unsupported npy format version ${major}.${bytes[7]}`);
  }
  const dataStart = headerStart + headerLen;
  if (bytes.length < dataStart) throw new Error(`${label}: truncated npy header (needs ${dataStart} bytes, has ${bytes.length})`);
  const header = new TextDecoder(major === 3 ? 'utf-8' : 'latin1').decode(bytes.subarray(headerStart, dataStart));

  const descr = /['"]descr['"]\s*:\s*['"]([^'"]*)['"]/.exec(header);
  if (!descr) throw new Error(`${label}: npy header has no simple 'descr' (structured dtypes are not supported): ${header.trim()}`);
  const fortran = /['"]fortran_order['"]\s*:\s*(True|False)/.exec(header);
  if (!fortran) throw new Error(`${label}: npy header has no 'fortran_order': ${header.trim()}`);
  if (fortran[1] === 'True') throw new Error(`${label}: Fortran-order npy arrays are not supported; save with numpy.ascontiguousarray first`);
  const shapeM = /['"]shape['"]\s*:\s*\(([^)]*)\)/.exec(header);
  if (!shapeM) throw new Error(`${label}: npy header has no 'shape': ${header.trim()}`);
  const shape = shapeM[1]!
    .split(',')
    .map((s) => s.trim().replace(/L$/, ''))
    .filter((s) => s.length > 0)
    .map((s) => {
      const n = Number(s);
      if (!Number.isInteger(n) || n < 0) throw new Error(`${label}: bad dimension '${s}' in npy shape`);
      return n;
    });
  const dtype = parseDescr(descr[1]!, label);
  const count = shape.reduce((a, b) => a * b, 1);
  const size = ITEM_SIZE[dtype];
  const need = dataStart + count * size;
  if (bytes.length < need) {
    throw new Error(`${label}: truncated npy data: shape (${shape.join(', ')}) of ${descr[1]} needs ${count * size} bytes, has ${bytes.length - dataStart}`);
  }
  // Copy the data so it is aligned and owned (a Node Buffer's slice() would share the file's memory).
  return { dtype, shape, data: decodeData(dtype, new Uint8Array(bytes.subarray(dataStart, need)), count, label) };
}

function decodeData(dtype: NpyDtype, raw: Uint8Array, count: number, label: string): NpyData {
  const view = new DataView(raw.buffer, raw.byteOffset, raw.byteLength);
  switch (dtype) {
    case 'f4':
      return new Float32Array(raw.buffer, raw.byteOffset, count);
    case 'f8':
      return new Float64Array(raw.buffer, raw.byteOffset, count);
    case 'i4':
      return new Int32Array(raw.buffer, raw.byteOffset, count);
    case 'u1':
    case 'b1':
      return raw;
    case 'f2': {
      const out = new Float32Array(count);
      for (let i = 0; i < count; i++) out[i] = halfBitsToFloat(view.getUint16(2 * i, true));
      return out;
    }
    case 'i8': {
      const out = new Int32Array(count);
      for (let i = 0; i < count; i++) {
        const v = view.getBigInt64(8 * i, true);
        if (v < -2147483648n || v > 2147483647n) throw new Error(`${label}: int64 value ${v} at index ${i} does not fit in int32`);
        out[i] = Number(v);
      }
      return out;
    }
  }
}

/** Serialises an array as .npy (format version 1.0, header padded to 64 bytes). */
export function writeNpy(array: NpyArray): Uint8Array {
  const { dtype, shape, data } = array;
  if (!(dtype in ITEM_SIZE)) throw new Error(`writeNpy: unsupported dtype '${dtype}'`);
  const ctor = expectedArrayType(dtype);
  if (!(data instanceof ctor)) {
    throw new Error(`writeNpy: dtype ${dtype} needs a ${ctor.name}, got ${data.constructor.name}`);
  }
  const count = shape.reduce((a, b) => a * b, 1);
  if (data.length !== count) throw new Error(`writeNpy: shape [${shape.join(', ')}] has ${count} elements but data has ${data.length}`);

  const shapeStr = shape.length === 1 ? `(${shape[0]},)` : `(${shape.join(', ')})`;
  let header = `{'descr': '${DESCR[dtype]}', 'fortran_order': False, 'shape': ${shapeStr}, }`;
  const unpadded = 10 + header.length + 1;
  header += ' '.repeat((64 - (unpadded % 64)) % 64) + '\n';
  if (header.length > 0xffff) throw new Error('writeNpy: header too long for npy version 1.0');

  const size = ITEM_SIZE[dtype];
  const out = new Uint8Array(10 + header.length + count * size);
  out.set(MAGIC, 0);
  out[6] = 1;
  out[7] = 0;
  const view = new DataView(out.buffer);
  view.setUint16(8, header.length, true);
  for (let i = 0; i < header.length; i++) out[10 + i] = header.charCodeAt(i);
  const off = 10 + header.length;
  switch (dtype) {
    case 'f4':
    case 'f8':
    case 'i4':
    case 'u1':
      out.set(new Uint8Array(data.buffer, data.byteOffset, data.byteLength), off);
      break;
    case 'b1':
      for (let i = 0; i < count; i++) out[off + i] = data[i] ? 1 : 0;
      break;
    case 'f2':
      for (let i = 0; i < count; i++) view.setUint16(off + 2 * i, floatToHalfBits(data[i]!), true);
      break;
    case 'i8':
      for (let i = 0; i < count; i++) view.setBigInt64(off + 8 * i, BigInt(data[i]!), true);
      break;
  }
  return out;
}

/** Writes an array to a .npy file. */
export function saveNpy(path: string, array: NpyArray): void {
  writeFileSync(path, writeNpy(array));
}

// ---------------------------------------------------------------------------
// CRC-32 (zip polynomial 0xEDB88320)

let crcTable: Uint32Array | undefined;

function crc32Table(bytes: Uint8Array): number {
  if (!crcTable) {
    crcTable = new Uint32Array(256);
    for (let n = 0; n < 256; n++) {
      let c = n;
      for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
      crcTable[n] = c >>> 0;
    }
  }
  let c = 0xffffffff;
  for (let i = 0; i < bytes.length; i++) c = crcTable[(c ^ bytes[i]!) & 0xff]! ^ (c >>> 8);
  return (c ^ 0xffffffff) >>> 0;
}

/** CRC-32 as used by zip and gzip; node:zlib's when this Node has it. */
export function crc32(bytes: Uint8Array): number {
  const native = (zlib as unknown as { crc32?: (data: Uint8Array) => number }).crc32;
  return native ? native(bytes) >>> 0 : crc32Table(bytes);
}

/** The portable implementation, exposed so tests can compare it with node:zlib's. */
export const crc32Portable = crc32Table;

// ---------------------------------------------------------------------------
// .npz

const SIG_LOCAL = 0x04034b50;
const SIG_CENTRAL = 0x02014b50;
const SIG_EOCD = 0x06054b50;
const SIG_ZIP64_EOCD = 0x06064b50;
const SIG_ZIP64_LOCATOR = 0x07064b50;

/** Reads every array of an .npz archive, keyed by entry name without the `.npy` suffix. */
export function readNpz(source: string | Uint8Array, name?: string): Record<string, NpyArray> {
  const label = name ?? (typeof source === 'string' ? source : '<npz>');
  let bytes: Uint8Array;
  if (typeof source === 'string') {
    try {
      bytes = readFileSync(source);
    } catch (e) {
      throw new Error(`${label}: cannot read npz file: ${(e as Error).message}`);
    }
  } else {
    bytes = source;
  }
  const result: Record<string, NpyArray> = {};
  for (const [entryName, raw] of Object.entries(readZipEntries(bytes, label))) {
    const key = entryName.endsWith('.npy') ? entryName.slice(0, -4) : entryName;
    result[key] = readNpy(raw, `${label}:${entryName}`);
  }
  return result;
}

/**
 * The uncompressed contents of every entry of a zip archive, keyed by entry
 * name. Handles stored and deflated entries and zip64 fields; checks CRC-32.
 */
export function readZipEntries(bytes: Uint8Array, label = '<zip>'): Record<string, Uint8Array> {
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const u32 = (o: number) => {
    if (o + 4 > bytes.length) throw new Error(`${label}: truncated zip structure at offset ${o}`);
    return view.getUint32(o, true);
  };
  const u16 = (o: number) => {
    if (o + 2 > bytes.length) throw new Error(`${label}: truncated zip structure at offset ${o}`);
    return view.getUint16(o, true);
  };
  const u64 = (o: number) => {
    if (o + 8 > bytes.length) throw new Error(`${label}: truncated zip structure at offset ${o}`);
    return Number(view.getBigUint64(o, true));
  };

  // The end-of-central-directory record sits at the end, before an optional comment of up to 64 KiB.
  let eocd = -1;
  for (let o = bytes.length - 22; o >= Math.max(0, bytes.length - 22 - 0xffff); o--) {
    if (view.getUint32(o, true) === SIG_EOCD) {
      eocd = o;
      break;
    }
  }
  if (eocd < 0) throw new Error(`${label}: not a zip/npz archive (no end-of-central-directory record)`);
  let entries = u16(eocd + 10);
  let cdOffset = u32(eocd + 16);
  if (entries === 0xffff || cdOffset === 0xffffffff) {
    const loc = eocd - 20;
    if (loc < 0 || u32(loc) !== SIG_ZIP64_LOCATOR) throw new Error(`${label}: zip64 archive without a zip64 locator`);
    const z64 = u64(loc + 8);
    if (u32(z64) !== SIG_ZIP64_EOCD) throw new Error(`${label}: bad zip64 end-of-central-directory record`);
    entries = u64(z64 + 32);
    cdOffset = u64(z64 + 48);
  }

  const result: Record<string, Uint8Array> = {};
  let p = cdOffset;
  for (let i = 0; i < entries; i++) {
    if (u32(p) !== SIG_CENTRAL) throw new Error(`${label}: bad central directory entry ${i} at offset ${p}`);
    const flags = u16(p + 8);
    const method = u16(p + 10);
    const crc = u32(p + 16);
    let compSize = u32(p + 20);
    let size = u32(p + 24);
    const nameLen = u16(p + 28);
    const extraLen = u16(p + 30);
    const commentLen = u16(p + 32);
    let localOffset = u32(p + 42);
    if (p + 46 + nameLen > bytes.length) throw new Error(`${label}: truncated central directory`);
    const entryName = new TextDecoder(flags & 0x800 ? 'utf-8' : 'latin1').decode(bytes.subarray(p + 46, p + 46 + nameLen));
    // zip64 extra field: the 64-bit values present are exactly those whose 32-bit field is saturated.
    let e = p + 46 + nameLen;
    const extraEnd = e + extraLen;
    while (e + 4 <= extraEnd) {
      const id = u16(e);
      const len = u16(e + 2);
      if (id === 0x0001) {
        let q = e + 4;
        if (size === 0xffffffff) {
          size = u64(q);
          q += 8;
        }
        if (compSize === 0xffffffff) {
          compSize = u64(q);
          q += 8;
        }
        if (localOffset === 0xffffffff) localOffset = u64(q);
      }
      e += 4 + len;
    }
    p = extraEnd + commentLen;

    if (flags & 1) throw new Error(`${label}: entry '${entryName}' is encrypted`);
    if (u32(localOffset) !== SIG_LOCAL) throw new Error(`${label}: bad local header for entry '${entryName}'`);
    const dataStart = localOffset + 30 + u16(localOffset + 26) + u16(localOffset + 28);
    if (dataStart + compSize > bytes.length) throw new Error(`${label}: entry '${entryName}' is truncated`);
    const stored = bytes.subarray(dataStart, dataStart + compSize);
    let raw: Uint8Array;
    if (method === 0) {
      raw = stored;
    } else if (method === 8) {
      try {
        raw = zlib.inflateRawSync(stored);
      } catch (err) {
        throw new Error(`${label}: entry '${entryName}': corrupt deflate data: ${(err as Error).message}`);
      }
    } else {
      throw new Error(`${label}: entry '${entryName}' uses unsupported zip compression method ${method}`);
    }
    if (raw.length !== size) throw new Error(`${label}: entry '${entryName}' has ${raw.length} bytes, directory says ${size}`);
    if (crc32(raw) !== crc) throw new Error(`${label}: entry '${entryName}' fails its CRC-32 check`);
    result[entryName] = raw;
  }
  return result;
}

/** Serialises arrays as an .npz archive (stored entries, no compression). */
export function encodeNpz(arrays: Record<string, NpyArray>): Uint8Array {
  const enc = new TextEncoder();
  const locals: Uint8Array[] = [];
  const centrals: Uint8Array[] = [];
  let offset = 0;
  const names = Object.keys(arrays);
  for (const key of names) {
    const name = enc.encode(`${key}.npy`);
    const data = writeNpy(arrays[key]!);
    const crc = crc32(data);
    if (data.length >= 0xffffffff || offset >= 0xffffffff) throw new Error('encodeNpz: archives over 4 GiB are not supported');

    const local = new Uint8Array(30 + name.length);
    const lv = new DataView(local.buffer);
    lv.setUint32(0, SIG_LOCAL, true);
    lv.setUint16(4, 20, true); // version needed
    lv.setUint16(6, 0x800, true); // UTF-8 names
    lv.setUint16(8, 0, true); // stored
    lv.setUint16(10, 0, true); // time 00:00
    lv.setUint16(12, (0 << 9) | (1 << 5) | 1, true); // date 1980-01-01
    lv.setUint32(14, crc, true);
    lv.setUint32(18, data.length, true);
    lv.setUint32(22, data.length, true);
    lv.setUint16(26, name.length, true);
    lv.setUint16(28, 0, true);
    local.set(name, 30);

    const central = new Uint8Array(46 + name.length);
    const cv = new DataView(central.buffer);
    cv.setUint32(0, SIG_CENTRAL, true);
    cv.setUint16(4, 20, true); // version made by
    cv.setUint16(6, 20, true); // version needed
    cv.setUint16(8, 0x800, true);
    cv.setUint16(10, 0, true);
    cv.setUint16(12, 0, true);
    cv.setUint16(14, (0 << 9) | (1 << 5) | 1, true);
    cv.setUint32(16, crc, true);
    cv.setUint32(20, data.length, true);
    cv.setUint32(24, data.length, true);
    cv.setUint16(28, name.length, true);
    cv.setUint32(38, 0o100644 << 16, true); // external attributes: regular file, rw-r--r--
    cv.setUint32(42, offset, true);
    central.set(name, 46);

    locals.push(local, data);
    centrals.push(central);
    offset += local.length + data.length;
  }
  const cdSize = centrals.reduce((a, c) => a + c.length, 0);
  if (names.length >= 0xffff || offset + cdSize >= 0xffffffff) throw new Error('encodeNpz: too many entries or too large for a non-zip64 archive');
  const eocd = new Uint8Array(22);
  const ev = new DataView(eocd.buffer);
  ev.setUint32(0, SIG_EOCD, true);
  ev.setUint16(8, names.length, true);
  ev.setUint16(10, names.length, true);
  ev.setUint32(12, cdSize, true);
  ev.setUint32(16, offset, true);

  const parts = [...locals, ...centrals, eocd];
  const out = new Uint8Array(parts.reduce((a, b) => a + b.length, 0));
  let o = 0;
  for (const part of parts) {
    out.set(part, o);
    o += part.length;
  }
  return out;
}

/** Writes arrays to an .npz file readable by numpy.load. */
export function writeNpz(path: string, arrays: Record<string, NpyArray>): void {
  writeFileSync(path, encodeNpz(arrays));
}
