// Reads the PyTorch fixtures written by models/make_fixtures.py.
import { readFileSync } from 'node:fs';
import { inflateRawSync } from 'node:zlib';
import type { Tensor } from '../../src/ir/tensor.js';

export interface FixtureArray {
  dtype: 'f32' | 'i32';
  shape: number[];
  deflate_b64: string;
}

export function decodeArray(a: FixtureArray): Tensor {
  const raw = inflateRawSync(Buffer.from(a.deflate_b64, 'base64'));
  const buf = new Uint8Array(raw.length);
  buf.set(raw);
  return a.dtype === 'f32'
    ? { dtype: 'f32', shape: a.shape, data: new Float32Array(buf.buffer) }
    : { dtype: 'i64', shape: a.shape, data: new Int32Array(buf.buffer) };
}

// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function loadFixture(name: string): any {
  return JSON.parse(readFileSync(new URL(`../fixtures/${name}`, import.meta.url), 'utf8'));
}

/** max |a-b| / max(|b|, floor) over all elements. */
export function maxRelErr(a: ArrayLike<number>, b: ArrayLike<number>, floor = 1e-3): number {
  if (a.length !== b.length) throw new Error(`length ${a.length} vs ${b.length}`);
  let m = 0;
  for (let i = 0; i < a.length; i++) m = Math.max(m, Math.abs(a[i] - b[i]) / Math.max(Math.abs(b[i]), floor));
  return m;
}
