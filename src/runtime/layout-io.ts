// Host-side conversion between logical tensors and the bytes of a device buffer layout
// (f32/i32 words, native f16 halves, or 2/4 values packed per u32 word).
import { decode, encode, isFloat, type DType, type FloatDType } from '../ir/dtypes.js';
import type { TensorData } from '../ir/tensor.js';

export interface BufferLayout {
  elem: 'f32' | 'f16' | 'u32' | 'i32';
  perWord: 1 | 2 | 4;
}

/** Bytes for the device buffer of `values` (logical elements) in `layout`. */
export function packValues(dtype: DType, layout: BufferLayout, values: ArrayLike<number>, bytes: number): Uint8Array<ArrayBuffer> {
  const out = new Uint8Array(bytes);
  const dv = new DataView(out.buffer);
  const n = values.length;
  if (layout.elem === 'f32') for (let i = 0; i < n; i++) dv.setFloat32(4 * i, values[i], true);
  else if (layout.elem === 'i32') for (let i = 0; i < n; i++) dv.setInt32(4 * i, values[i], true);
  else if (layout.elem === 'f16') for (let i = 0; i < n; i++) dv.setUint16(2 * i, encode('f16', values[i]), true);
  else {
    const bits = 32 / layout.perWord;
    for (let i = 0; i < n; i++) {
      const word = Math.floor(i / layout.perWord);
      const lane = i % layout.perWord;
      const code = encode(dtype as FloatDType, values[i]);
      const prev = dv.getUint32(4 * word, true);
      dv.setUint32(4 * word, (prev | (code << (lane * bits))) >>> 0, true);
    }
  }
  return out;
}

/** Logical values from device buffer bytes. */
export function unpackValues(dtype: DType, layout: BufferLayout, bytes: Uint8Array, count: number): TensorData {
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  if (!isFloat(dtype)) {
    const out = new Int32Array(count);
    for (let i = 0; i < count; i++) out[i] = dv.getInt32(4 * i, true);
    return out;
  }
  const out = new Float32Array(count);
  if (layout.elem === 'f32') for (let i = 0; i < count; i++) out[i] = dv.getFloat32(4 * i, true);
  else if (layout.elem === 'f16') for (let i = 0; i < count; i++) out[i] = decode('f16', dv.getUint16(2 * i, true));
  else {
    const bits = 32 / layout.perWord;
    const mask = bits === 32 ? 0xffffffff : (1 << bits) - 1;
    for (let i = 0; i < count; i++) {
      const word = dv.getUint32(4 * Math.floor(i / layout.perWord), true);
      out[i] = decode(dtype as FloatDType, (word >>> ((i % layout.perWord) * bits)) & mask);
    }
  }
  return out;
}
