// Host tensors to and from safetensors files (logical values: F32 for every float format,
// whose values f32 holds exactly, and I32 for integers).
import { isFloat } from '../ir/dtypes.js';
import type { Tensor } from '../ir/tensor.js';
import { decodeSafetensors, encodeSafetensors, writeSafetensors, type SafetensorsTensor } from './safetensors.js';

function asSafetensors(tensors: Map<string, Tensor>): Record<string, SafetensorsTensor> {
  const out: Record<string, SafetensorsTensor> = {};
  for (const [name, t] of tensors) {
    const data = new Uint8Array(t.data.buffer, t.data.byteOffset, t.data.byteLength);
    out[name] = { dtype: isFloat(t.dtype) ? 'F32' : 'I32', shape: [...t.shape], data };
  }
  return out;
}

export function encodeTensors(tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): Uint8Array {
  return encodeSafetensors(asSafetensors(tensors), metadata);
}

/** Writes tensors as a safetensors file without assembling it in memory. */
export function writeTensorsFile(path: string, tensors: Map<string, Tensor>, metadata: Record<string, string> = {}): void {
  writeSafetensors(path, asSafetensors(tensors), metadata);
}

/** Reads tensors; `dtypes` gives each tensor's logical dtype (default f32 / i32 by storage). */
export function decodeTensors(bytes: Uint8Array, label: string, dtypes?: Map<string, Tensor['dtype']>): { tensors: Map<string, Tensor>; metadata: Record<string, string> } {
  const f = decodeSafetensors(bytes, label, { view: true });
  const tensors = new Map<string, Tensor>();
  for (const [name, t] of Object.entries(f.tensors)) {
    if (t.dtype !== 'F32' && t.dtype !== 'I32') throw new Error(`${label}: tensor '${name}' is ${t.dtype}; expected F32 or I32`);
    // A tensor of `bytes` viewed in place where it lies on a 4-byte boundary (the file's own
    // buffer: a tensor keeps it alive), else copied into a buffer of its own.
    const n = t.data.byteLength / 4;
    const at = t.data.byteOffset % 4 === 0 ? t.data : new Uint8Array(t.data);
    const data = t.dtype === 'F32' ? new Float32Array(at.buffer, at.byteOffset, n) : new Int32Array(at.buffer, at.byteOffset, n);
    tensors.set(name, { dtype: dtypes?.get(name) ?? (t.dtype === 'F32' ? 'f32' : 'i32'), shape: [...t.shape], data });
  }
  return { tensors, metadata: f.metadata };
}
