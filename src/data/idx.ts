// Reader for the IDX format used by MNIST and Fashion-MNIST.
//
// Layout: two zero bytes, a type code, the number of dimensions, then one
// big-endian u32 per dimension, then the data in big-endian order.
// Files ending in `.gz` (or starting with the gzip magic) are gunzipped first.

import { readFileSync } from 'node:fs';
import { gunzipSync } from 'node:zlib';

export type IdxDtype = 'u8' | 'i8' | 'i16' | 'i32' | 'f32' | 'f64';

export type IdxArray = Uint8Array | Int8Array | Int16Array | Int32Array | Float32Array | Float64Array;

export interface IdxTensor {
  dtype: IdxDtype;
  shape: number[];
  data: IdxArray;
}

const TYPE_CODES: Record<number, { dtype: IdxDtype; size: number }> = {
  0x08: { dtype: 'u8', size: 1 },
  0x09: { dtype: 'i8', size: 1 },
  0x0b: { dtype: 'i16', size: 2 },
  0x0c: { dtype: 'i32', size: 4 },
  0x0d: { dtype: 'f32', size: 4 },
  0x0e: { dtype: 'f64', size: 8 },
};

function isGzip(bytes: Uint8Array): boolean {
  return bytes.length >= 2 && bytes[0] === 0x1f && bytes[1] === 0x8b;
}

/** Reads an IDX file (plain or gzip-compressed) from disk. */
export function readIdx(path: string): IdxTensor {
  let raw: Uint8Array;
  try {
    raw = readFileSync(path);
  } catch (e) {
    throw new Error(`${path}: cannot read IDX file: ${(e as Error).message}`);
  }
  if (isGzip(raw)) {
    try {
      raw = gunzipSync(raw);
    } catch (e) {
      throw new Error(`${path}: corrupt gzip stream: ${(e as Error).message}`);
    }
  }
  return parseIdx(raw, path);
}

/** Parses IDX bytes (already decompressed). `name` prefixes error messages. */
export function parseIdx(bytes: Uint8Array, name = '<idx>'): IdxTensor {
  if (bytes.length < 4) throw new Error(`${name}: truncated IDX header (${bytes.length} bytes)`);
  if (bytes[0] !== 0 || bytes[1] !== 0) {
    throw new Error(`${name}: not an IDX file (magic bytes ${bytes[0]}, ${bytes[1]} should be 0, 0)`);
  }
  const code = bytes[2]!;
  const type = TYPE_CODES[code];
  if (!type) throw new Error(`${name}: unknown IDX type code 0x${code.toString(16).padStart(2, '0')}`);
  const ndim = bytes[3]!;
  const headerLen = 4 + 4 * ndim;
  if (bytes.length < headerLen) throw new Error(`${name}: truncated IDX header: ${ndim} dims need ${headerLen} bytes`);
  const view = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const shape: number[] = [];
  for (let i = 0; i < ndim; i++) shape.push(view.getUint32(4 + 4 * i, false));
  const count = shape.reduce((a, b) => a * b, 1);
  const need = headerLen + count * type.size;
  if (bytes.length < need) {
    throw new Error(
      `${name}: truncated IDX data: shape [${shape.join(', ')}] of ${type.dtype} needs ${need} bytes, file has ${bytes.length}`,
    );
  }
  if (bytes.length > need) {
    throw new Error(`${name}: ${bytes.length - need} trailing bytes after IDX data of shape [${shape.join(', ')}]`);
  }
  const off = headerLen;
  let data: IdxArray;
  switch (type.dtype) {
    case 'u8':
      data = new Uint8Array(bytes.subarray(off, off + count)); // a copy: a Node Buffer's slice() would share memory
      break;
    case 'i8':
      data = new Int8Array(new Uint8Array(bytes.subarray(off, off + count)).buffer);
      break;
    case 'i16': {
      const a = new Int16Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt16(off + 2 * i, false);
      data = a;
      break;
    }
    case 'i32': {
      const a = new Int32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getInt32(off + 4 * i, false);
      data = a;
      break;
    }
    case 'f32': {
      const a = new Float32Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat32(off + 4 * i, false);
      data = a;
      break;
    }
    case 'f64': {
      const a = new Float64Array(count);
      for (let i = 0; i < count; i++) a[i] = view.getFloat64(off + 8 * i, false);
      data = a;
      break;
    }
  }
  return { dtype: type.dtype, shape, data };
}
