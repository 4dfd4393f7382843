// Host tensors. Floating-point tensors of every format hold their (already rounded) values
// in a Float32Array: every f16, bf16 and fp8 value is exactly representable in f32.
// Integer tensors (i64, i32, bool) hold Int32Array: WGSL has no 64-bit integers, so i64 is
// carried as i32 everywhere and the importer refuses values outside the i32 range.
import { isFloat, roundArray, type DType } from './dtypes.js';

export type TensorData = Float32Array | Int32Array;

export interface Tensor {
  dtype: DType;
  shape: number[];
  data: TensorData;
}

export function sizeOf(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Payloads made by `zeros` (payloads are never written after creation, see ir/graph.ts). */
const zeroPayloads = new WeakSet<object>();

export function zeros(dtype: DType, shape: number[]): Tensor {
  const n = sizeOf(shape);
  const data = isFloat(dtype) ? new Float32Array(n) : new Int32Array(n);
  zeroPayloads.add(data);
  return { dtype, shape: [...shape], data };
}

/** Whether every element of `t` is +0 (known for `zeros` tensors without reading them). */
export function isAllZero(t: Tensor): boolean {
  if (zeroPayloads.has(t.data)) return true;
  const words = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

export function fromArray(dtype: DType, shape: number[], values: ArrayLike<number>): Tensor {
  const n = sizeOf(shape);
  if (values.length !== n) throw new Error(`tensor of shape [${shape}] needs ${n} values, got ${values.length}`);
  if (isFloat(dtype)) return { dtype, shape: [...shape], data: roundArray(dtype, values) };
  const data = new Int32Array(n);
  for (let i = 0; i < n; i++) data[i] = dtype === 'bool' ? (values[i] ? 1 : 0) : Math.trunc(values[i]);
  return { dtype, shape: [...shape], data };
}

export function scalar(dtype: DType, v: number): Tensor {
  return fromArray(dtype, [], [v]);
}

/** Strides (in elements) of a row-major tensor. */
export function stridesOf(shape: readonly number[]): number[] {
  const s = new Array<number>(shape.length);
  let acc = 1;
  for (let i = shape.length - 1; i >= 0; i--) {
    s[i] = acc;
    acc *= shape[i];
  }
  return s;
}

/** Numpy-style broadcast of two shapes; throws if incompatible. */
export function broadcastShapes(a: readonly number[], b: readonly number[]): number[] {
  const n = Math.max(a.length, b.length);
  const out = new Array<number>(n);
  for (let i = 0; i < n; i++) {
    const da = a[a.length - n + i] ?? 1;
    const db = b[b.length - n + i] ?? 1;
    if (da !== db && da !== 1 && db !== 1) throw new Error(`shapes [${a}] and [${b}] do not broadcast`);
    out[i] = da === 1 ? db : da;
  }
  return out;
}

/**
 * Strides to read a tensor of shape `from` as if it had the (broadcast) shape `to`:
 * broadcast dimensions get stride 0.
 */
export function broadcastStrides(from: readonly number[], to: readonly number[]): number[] {
  const fs = stridesOf(from);
  const out = new Array<number>(to.length).fill(0);
  for (let i = 0; i < to.length; i++) {
    const j = from.length - to.length + i;
    if (j >= 0 && from[j] !== 1) out[i] = fs[j];
  }
  return out;
}

export function formatShape(shape: readonly (number | string)[]): string {
  return `[${shape.join(',')}]`;
}
