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

/** Tensors made by `zeros` (payloads are never written after creation, see ir/graph.ts). */
const zeroTensors = new WeakSet<object>();
const zeroPayloads = new WeakSet<object>();

/**
 * A tensor of zeros. Its payload is allocated on first read: optimizer moments are zeros the
 * size of every parameter, and the compiler mostly never reads them (program.json lists them
 * as zeros and the runtime creates zero buffers), so a 10 M-parameter model with Adam is
 * spared 80 MB of allocation.
 */
export function zeros(dtype: DType, shape: number[]): Tensor {
  const n = sizeOf(shape);
  let data: TensorData | undefined;
  const t = { dtype, shape: [...shape] } as Tensor;
  Object.defineProperty(t, 'data', {
    enumerable: true,
    configurable: true,
    get(): TensorData {
      if (!data) {
        data = isFloat(dtype) ? new Float32Array(n) : new Int32Array(n);
        zeroPayloads.add(data);
      }
      return data;
    },
    set(v: TensorData) {
      data = v;
      zeroTensors.delete(t);
    },
  });
  zeroTensors.add(t);
  return t;
}

/** Whether every element of `t` is +0 (known for `zeros` tensors without reading them). */
export function isAllZero(t: Tensor): boolean {
  if (zeroTensors.has(t) || zeroPayloads.has(t.data)) return true;
  const words = new Uint32Array(t.data.buffer, t.data.byteOffset, t.data.byteLength / 4);
  for (let i = 0; i < words.length; i++) if (words[i] !== 0) return false;
  return true;
}

const finiteness = new WeakMap<object, boolean>();

/**
 * Whether every element is finite (no NaN or infinity). Payloads are never written after
 * creation, so the answer is remembered per payload (the train and eval pipelines ask about
 * the same parameters).
 */
export function allFinite(t: Tensor): boolean {
  if (!isFloat(t.dtype) || zeroTensors.has(t)) return true;
  const data = t.data;
  let known = finiteness.get(data);
  if (known === undefined) {
    // x * 0 is 0 for every finite x and NaN for NaN and ±inf; NaN sticks in the sum.
    let acc = 0;
    for (let i = 0; i < data.length; i++) acc += data[i] * 0;
    known = acc === 0;
    finiteness.set(data, known);
  }
  return known;
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
